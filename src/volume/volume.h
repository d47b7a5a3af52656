/*
 * volume.h - the objects that make a store a metafuse volume: the volume
 * descriptor and the lease of the mounting process.  The metadata's
 * objects (checkpoints and journal entries) are journal.h's; data blocks
 * and patches are blob.h's and patch.h's.
 *
 * Store layout
 *   volume                  descriptor: format, id, block size, hash key,
 *                           block names (format 3); or, encrypted
 *                           (format 4), cipher, key slots and a MAC
 *                           (blob-framed text, written by mkfs, and
 *                           by passwd for an encrypted volume)
 *   lease                   who has the volume mounted, until when
 *                           (rewritten while mounted: with an encrypted
 *                           descriptor's passwd, the only objects of a
 *                           volume ever rewritten in place)
 *   meta/ckpt-<16 hex seq>  checkpoints, meta/ckpp-<seq>-<part> their
 *                           parts, and meta/jrnl-<16 hex seq> journal
 *                           entries (see journal.c)
 *   data/<2 hex>/<64 hex>   data blocks and patches (see blob.h, patch.h)
 */
#ifndef METAFUSE_VOLUME_H
#define METAFUSE_VOLUME_H

#include "util/compat.h"

#include "blob/blob.h"
#include "blob/crypt.h"
#include "store/store.h"

/*
 * Format 2: blocks may have patches (blob/patch.h), which a reader of
 * format 1 would not apply.  A format 1 volume is still read and written,
 * without patches, so that older binaries can go on reading it.
 */
#define VOLUME_FORMAT 5
#define VOLUME_FORMAT_MIN 1
#define VOLUME_FORMAT_PATCHES 2
/*
 * Format 3: data blocks are named by HMAC-SHA-256 (line "names=hmac-sha256"
 * in the descriptor) instead of keyed BLAKE2b, which a reader of format 2
 * would take for damage.  mkfs writes format 2 for BLAKE2b names, so that
 * such a volume stays readable by older binaries.
 */
#define VOLUME_FORMAT_NAMES 3
/*
 * Format 4: an encrypted volume (blob/crypt.h, sealed.h).  Its descriptor
 * holds no hash key but the cipher ("cipher=") and up to VOLUME_SLOTS key
 * slots ("slotN=", crypt_slot_format()), and ends with "mac=", keyed
 * BLAKE2b-256 under the master key's descriptor key of the BLAKE2b-512
 * hash of every byte before that line.  Older binaries refuse it by its
 * format.  Unencrypted volumes are still written as format 3 or 2.
 */
#define VOLUME_FORMAT_ENCRYPTED 4
/*
 * Format 5: a volume that keeps history (a history window, line
 * "history=" in seconds, or snapshots).  An older binary's collector
 * would delete the objects only past states need, so it must refuse the
 * volume, which it does by its format.  Plain or encrypted: from format
 * 5 on, a volume is encrypted when its descriptor names a cipher
 * ("cipher="), and then holds key slots and a MAC as format 4 does.
 * mkfs writes it only with --history; a volume is raised to it by
 * volume_set_history() (tune --history, the first snapshot) and stays.
 */
#define VOLUME_FORMAT_HISTORY 5
#define VOLUME_SLOTS 8
#define VOLUME_ID_HEX 32

struct volume {
	uint32_t format;
	uint32_t block_size;
	char id[VOLUME_ID_HEX + 1];
	/* the block names' key: from the descriptor, or for an encrypted
	 * volume from the master key once unlocked (volume_unlock()) */
	uint8_t hash_key[BLOB_KEY_BYTES];
	enum blob_names names;
	long long created; /* Unix time of mkfs (0: not recorded) */
	uint64_t history_s; /* the history window (format 5; 0: none) */
	/* format 4 only: */
	bool encrypted;
	enum crypt_cipher cipher;
	unsigned slots_used;                  /* bit n: slot n is in use */
	struct crypt_slot slot[VOLUME_SLOTS];
	uint8_t desc_hash[64];                /* what the MAC covers */
	uint8_t desc_mac[CRYPT_MAC_BYTES];
	/* after volume_unlock(): */
	bool unlocked;
	int unlocked_slot;                    /* the slot that opened */
	uint8_t master[CRYPT_KEY_BYTES];
	struct crypt_key key;                 /* seals the objects */
	/* the descriptor's MAC key: kept when a mount wipes the master
	 * key, so that it can still rewrite the descriptor (a window) */
	uint8_t desc_key[CRYPT_KEY_BYTES];
};

/* mkfs: -EEXIST (with a message in err) if the store already holds a
 * volume. */
int volume_create(struct store *s, uint32_t block_size,
		  enum blob_names names, struct volume *out, struct buf *err);
/* -ENOENT: not a volume; -EIO: damaged descriptor; -EPROTONOSUPPORT:
 * newer format.  err gets one line. */
int volume_load(struct store *s, struct volume *out, struct buf *err);

/*
 * mkfs of an encrypted volume: a new master key in slot 0 under the
 * passphrase pass (len bytes) with Argon2id limits kdf, objects sealed
 * with cipher.  out is unlocked.  As volume_create() otherwise.
 */
int volume_create_encrypted(struct store *s, uint32_t block_size,
			    enum blob_names names, enum crypt_cipher cipher,
			    const char *pass, size_t len,
			    const struct crypt_kdf *kdf, struct volume *out,
			    struct buf *err);
/*
 * Unlock an encrypted volume (v from volume_load()) with the passphrase:
 * try every slot, check the descriptor's MAC, derive the keys (v->key,
 * v->hash_key).  -EACCES "wrong passphrase ..." when no slot opens;
 * -EIO "... damaged" when the MAC does not match; -ENOMEM.  err gets one
 * line.  Wipe the keys with volume_wipe() when done.
 */
int volume_unlock(struct volume *v, const char *url, const char *pass,
		  size_t len, struct buf *err);
void volume_wipe(struct volume *v);

/*
 * Set the history window of v to history_s seconds (0: off) and rewrite
 * its descriptor (everything else as it was) as format 5, which older
 * binaries refuse (VOLUME_FORMAT_HISTORY); a volume already at format 5
 * stays there when the window goes back to 0 (it may hold snapshots).
 * An encrypted v must be unlocked (its MAC is redone).  err gets one
 * line.
 */
int volume_set_history(struct store *s, struct volume *v, uint64_t history_s,
		       struct buf *err);

/* What volume_passwd() does with the new passphrase. */
enum volume_passwd_mode {
	VOLUME_PASSWD_CHANGE, /* rewrap the slot that unlocked v */
	VOLUME_PASSWD_ADD,    /* into a free slot */
	VOLUME_PASSWD_REMOVE, /* empty the slot that unlocked v (no new one) */
};
/*
 * Change the key slots of the unlocked volume v and rewrite its
 * descriptor (the only object written): with the new passphrase
 * (ignored for REMOVE) under limits kdf.  *slot_out: the slot changed.
 * -ENOSPC: every slot in use; -EBUSY: the last slot would go.  err gets
 * one line.
 */
int volume_passwd(struct store *s, struct volume *v,
		  enum volume_passwd_mode mode, const char *pass, size_t len,
		  const struct crypt_kdf *kdf, unsigned *slot_out,
		  struct buf *err);

/*
 * Where the volume's metadata stands in the store, as a listing of meta/
 * shows it: the newest checkpoint's sequence (0: none) and the number of
 * journal entries (after a checkpoint's trim, those after it).  A store
 * only moves forward: a newer checkpoint, or more entries after the
 * same one; anything else was rolled back (cli/daemon.c compares it with
 * what its cache directory saw last).
 */
struct volume_pos {
	uint64_t ckpt;
	uint64_t entries;
};
int volume_pos_read(struct store *s, struct volume_pos *out);
/* Is now older than seen (a rollback)? */
bool volume_pos_older(const struct volume_pos *now,
		      const struct volume_pos *seen);

/* A lease as the store holds it (key=value lines of the "lease" object). */
struct volume_lease {
	char host[256];
	long pid;
	char owner[64];     /* random token: whose lease it is */
	long long since;    /* Unix time it was taken */
	long long expires;  /* Unix time it is valid until, unless renewed */
};

/*
 * Take the lease for this process (host, pid, a random owner token),
 * valid valid_s seconds, into *out: one read, one write, a pause and a
 * read back (lease_settle() in volume.c, for two takers at the same
 * moment).  -EBUSY with a message naming the holder when another live
 * holder has it: a lease of this host whose pid still runs metafuse, or
 * of another host that has not expired (the message says when it does).
 * force takes it anyway.
 */
int volume_lease_hold(struct store *s, unsigned valid_s, int force,
		      struct volume_lease *out, struct buf *err);
/* The same for a lease never renewed (fsck, gc): valid 2*ttl_s seconds,
 * its owner token into owner_out. */
int volume_lease_take(struct store *s, unsigned ttl_s, int force,
		      char *owner_out, size_t owner_size, struct buf *err);
/*
 * Renew l for valid_s seconds from now.  Without check one PUT: only for
 * a holder sure the lease it last wrote has not expired (so that no one
 * can have taken it over without force).  With check it reads the lease
 * first: -EBUSY, and nothing written, when another owner holds it.  l's
 * expiry follows a successful write.
 */
int volume_lease_renew(struct store *s, struct volume_lease *l,
		       unsigned valid_s, bool check);
/* Delete the lease if owner still holds it (-EBUSY otherwise). */
int volume_lease_release(struct store *s, const char *owner);

#endif
