/*
 * volume.h - the objects that make a store a metafuse volume: the volume
 * descriptor and the lease of the mounting process.  The metadata's
 * objects (checkpoints and journal entries) are journal.h's; data blocks
 * and patches are blob.h's and patch.h's.
 *
 * Store layout
 *   volume                  descriptor: format, id, block size, hash key,
 *                           block names (format 3)
 *                           (blob-framed text, written once by mkfs)
 *   lease                   who has the volume mounted, until when
 *                           (rewritten while mounted: the only object of
 *                           a volume ever rewritten in place)
 *   meta/ckpt-<16 hex seq>  checkpoints, meta/ckpp-<seq>-<part> their
 *                           parts, and meta/jrnl-<16 hex seq> journal
 *                           entries (see journal.c)
 *   data/<2 hex>/<64 hex>   data blocks and patches (see blob.h, patch.h)
 */
#ifndef METAFUSE_VOLUME_H
#define METAFUSE_VOLUME_H

#include "util/compat.h"

#include "blob/blob.h"
#include "store/store.h"

/*
 * Format 2: blocks may have patches (blob/patch.h), which a reader of
 * format 1 would not apply.  A format 1 volume is still read and written,
 * without patches, so that older binaries can go on reading it.
 */
#define VOLUME_FORMAT 3
#define VOLUME_FORMAT_MIN 1
#define VOLUME_FORMAT_PATCHES 2
/*
 * Format 3: data blocks are named by HMAC-SHA-256 (line "names=hmac-sha256"
 * in the descriptor) instead of keyed BLAKE2b, which a reader of format 2
 * would take for damage.  mkfs writes format 2 for BLAKE2b names, so that
 * such a volume stays readable by older binaries.
 */
#define VOLUME_FORMAT_NAMES 3
#define VOLUME_ID_HEX 32

struct volume {
	uint32_t format;
	uint32_t block_size;
	char id[VOLUME_ID_HEX + 1];
	uint8_t hash_key[BLOB_KEY_BYTES];
	enum blob_names names;
};

/* mkfs: -EEXIST (with a message in err) if the store already holds a
 * volume. */
int volume_create(struct store *s, uint32_t block_size,
		  enum blob_names names, struct volume *out, struct buf *err);
/* -ENOENT: not a volume; -EIO: damaged descriptor; -EPROTONOSUPPORT:
 * newer format.  err gets one line. */
int volume_load(struct store *s, struct volume *out, struct buf *err);

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
