/*
 * crypt.h - the cryptography of encrypted volumes: sealing one object
 * with an AEAD, the keys derived from a volume's master key, and the key
 * slots that wrap the master key under a passphrase.  Pure byte
 * transforms (no I/O), thread-safe; blob_global_init() first.
 *
 * A sealed object is
 *
 *   offset  size  field
 *   0       4     magic "MFE1"
 *   4       1     cipher: 1 = XChaCha20-Poly1305, 2 = AES-256-GCM
 *   5       3     reserved, 0
 *   8       24    nonce (random per object)
 *   32      n     ciphertext of the n-byte plaintext (a blob-encoded
 *                 object, blob.h)
 *   32+n    16    tag
 *
 * The associated data is the 32 header bytes followed by the object's
 * store key ("data/ab/<64 hex>", "meta/jrnl-<seq>", "lease"), so that an
 * object copied under another key, a changed header or a truncation
 * fails to open.  AES-256-GCM takes a 12-byte IV, too short to pick at
 * random for any number of objects: each object gets its own key, keyed
 * BLAKE2b-256 (key: the object key, message: nonce bytes 0..16), and the
 * IV nonce bytes 16..24 followed by four zero bytes.
 *
 * Keys: a volume has a random 32-byte master key; crypt_derive() makes
 * from it (libsodium's crypto_kdf, context "mfvolume") the object key,
 * the block-name hash key and the descriptor's MAC key.  A key slot
 * holds the master key wrapped (XChaCha20-Poly1305, associated data the
 * volume id and the slot number) under a key derived from a passphrase
 * by Argon2id with the slot's own salt and limits.
 */
#ifndef METAFUSE_CRYPT_H
#define METAFUSE_CRYPT_H

#include "util/compat.h"

#define CRYPT_KEY_BYTES 32
#define CRYPT_HEADER 32
#define CRYPT_NONCE 24
#define CRYPT_TAG 16
#define CRYPT_OVERHEAD (CRYPT_HEADER + CRYPT_TAG)
#define CRYPT_SALT 16
#define CRYPT_MAC_BYTES 32

enum crypt_cipher {
	CRYPT_XCHACHA20 = 1, /* XChaCha20-Poly1305 (libsodium) */
	CRYPT_AES256GCM = 2, /* AES-256-GCM (OpenSSL) */
};

/* What seals and opens a volume's objects. */
struct crypt_key {
	uint8_t key[CRYPT_KEY_BYTES];
	enum crypt_cipher cipher;
};

/* "xchacha20-poly1305" / "aes-256-gcm", and back: -EINVAL. */
const char *crypt_cipher_label(enum crypt_cipher c);
int crypt_cipher_parse(const char *s, enum crypt_cipher *out);
/*
 * What mkfs picks: the faster of the two on this machine, by what was
 * measured where metafuse was developed (AES-256-GCM when the CPU has
 * AES and carry-less multiply instructions, XChaCha20-Poly1305 else).
 */
enum crypt_cipher crypt_cipher_default(void);

/*
 * Seal len bytes of plain as the object named key into out, which has
 * room for len + CRYPT_OVERHEAD bytes and does not overlap plain.
 * 0, or -EIO (the library failed; logged), -EINVAL (unknown cipher).
 */
int crypt_seal(const struct crypt_key *k, const char *key, const void *plain,
	       size_t len, uint8_t *out);
/*
 * Open the sealed object obj of len bytes, stored under key: its
 * len - CRYPT_OVERHEAD bytes of plaintext into out, which may be
 * obj + CRYPT_HEADER (in place) or not overlap obj at all.  -EIO on any
 * mismatch (magic, cipher, reserved bytes, length, tag): then out holds
 * no plaintext (it is wiped).
 */
int crypt_open(const struct crypt_key *k, const char *key, const uint8_t *obj,
	       size_t len, uint8_t *out);

/* The keys a master key makes (crypt_derive()). */
enum crypt_subkey {
	CRYPT_SUB_OBJECTS = 1, /* seals every object (struct crypt_key) */
	CRYPT_SUB_NAMES = 2,   /* keys the data blocks' names (blob.h) */
	CRYPT_SUB_DESC = 3,    /* the descriptor's MAC */
};
void crypt_derive(const uint8_t master[CRYPT_KEY_BYTES], enum crypt_subkey id,
		  uint8_t out[CRYPT_KEY_BYTES]);

/* Keyed BLAKE2b-256 of len bytes of data under key. */
void crypt_mac(const uint8_t key[CRYPT_KEY_BYTES], const void *data,
	       size_t len, uint8_t out[CRYPT_MAC_BYTES]);
/* Unkeyed BLAKE2b-512 of len bytes of data. */
#define CRYPT_HASH_BYTES 64
void crypt_hash(const void *data, size_t len, uint8_t out[CRYPT_HASH_BYTES]);
/* Constant-time comparison of two MACs: true when equal. */
bool crypt_mac_equal(const uint8_t *a, const uint8_t *b);

/* Argon2id's limits, as libsodium's crypto_pwhash takes them. */
struct crypt_kdf {
	uint64_t ops;
	uint64_t mem; /* bytes */
};

/* libsodium's minimum limits (tests: METAFUSE_TEST_KDF=fast). */
void crypt_kdf_fast(struct crypt_kdf *out);
/*
 * Limits that make one derivation take about target_ms here: memory
 * 256 MiB, and as many passes (at least 2) as the time of one and of
 * two passes, measured now, allow.  0, or -ENOMEM.
 */
int crypt_kdf_calibrate(unsigned target_ms, struct crypt_kdf *out);
/* Are these limits ones libsodium takes (a slot read from a store)? */
bool crypt_kdf_valid(const struct crypt_kdf *k);

/* One key slot: the master key wrapped under a passphrase. */
struct crypt_slot {
	struct crypt_kdf kdf;
	uint8_t salt[CRYPT_SALT];
	uint8_t nonce[CRYPT_NONCE];
	uint8_t wrapped[CRYPT_KEY_BYTES + CRYPT_TAG];
};

/*
 * Wrap master under the passphrase pass (len bytes) into slot number n
 * of the volume volume_id, with limits kdf, a new salt and nonce.  0,
 * -ENOMEM (Argon2id could not have its memory), -EINVAL.
 */
int crypt_slot_wrap(const char *pass, size_t len, const struct crypt_kdf *kdf,
		    const char *volume_id, unsigned n,
		    const uint8_t master[CRYPT_KEY_BYTES], struct crypt_slot *out);
/* Unwrap: 0 and the master key; -EACCES when pass is not the slot's
 * passphrase (or the slot was changed); -ENOMEM. */
int crypt_slot_unwrap(const char *pass, size_t len, const struct crypt_slot *s,
		      const char *volume_id, unsigned n,
		      uint8_t master[CRYPT_KEY_BYTES]);
/* A slot as one text value ("argon2id:OPS:MEM:SALT:NONCE:WRAPPED", hex)
 * into out (CRYPT_SLOT_TEXT bytes), and back: -EINVAL when malformed. */
#define CRYPT_SLOT_TEXT 256
void crypt_slot_format(const struct crypt_slot *s, char *out);
int crypt_slot_parse(const char *text, struct crypt_slot *out);

#endif
