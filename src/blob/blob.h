/*
 * blob.h - the object codec: how bytes are framed before they reach a
 * store, and how object names are derived.
 *
 * An encoded object is
 *
 *   offset size  field
 *   0      4     magic "MFB1"
 *   4      1     codec: 0 = raw, 1 = zstd
 *   5      1     flags: bit 0 = named (a data block, see below); the
 *                other bits 0 (reserved for encryption)
 *   6      2     reserved, 0
 *   8      8     plain_len   (little endian)
 *   16     8     payload_len (little endian)
 *   24     16    checksum: BLAKE2b-128 over bytes [0,24) and the payload
 *                (for a named object, over bytes [0,24) only)
 *   40     ...   payload (payload_len bytes)
 *
 * blob_encode() compresses with zstd and keeps the result only when it is
 * smaller than the input; otherwise the payload is raw.  blob_decode()
 * checks magic, lengths, checksum and the decompressed length; any
 * mismatch is -EIO (never wrong bytes).  All functions are thread-safe and
 * pure (no I/O).
 *
 * Data block names are a keyed hash of the plaintext (key: the volume's
 * 32-byte secret hash key), in hex: BLAKE2b-256 keyed, or HMAC-SHA-256
 * (the volume's choice at mkfs, enum blob_names): identical blocks share one
 * object, and a name reveals nothing about content to anyone without the
 * key.  A data block is encoded named: reading it recomputes the name
 * from the plaintext, which checks the payload, so its checksum skips the
 * payload and each byte is hashed once on the way up and once on the way
 * down.  blob_data_key() turns a name into the store key
 * "data/<first 2 hex>/<64 hex>".
 */
#ifndef METAFUSE_BLOB_H
#define METAFUSE_BLOB_H

#include "util/compat.h"
#include "util/buf.h"

#define BLOB_HEADER_SIZE 40
#define BLOB_HASH_BYTES 32
#define BLOB_NAME_LEN 64 /* hex chars, without NUL */
#define BLOB_KEY_BYTES 32
#define BLOB_DATA_KEY_LEN (5 + 3 + BLOB_NAME_LEN) /* "data/ab/" + name */

/* How a volume names its data blocks, fixed at mkfs (volume.h). */
enum blob_names {
	BLOB_NAMES_BLAKE2B = 0, /* keyed BLAKE2b-256: formats 1 and 2 */
	BLOB_NAMES_SHA256 = 1,  /* HMAC-SHA-256: format 3 */
};

struct blob_ctx {
	uint8_t hash_key[BLOB_KEY_BYTES];
	int zstd_level; /* 0 = no compression attempted */
	enum blob_names names;
};

/* Must be called once before any other blob function (sodium_init).
 * 0 or -EIO. Idempotent and thread-safe. */
int blob_global_init(void);

/* name: BLOB_NAME_LEN+1 bytes, receives the hex keyed hash of data. */
void blob_name(const struct blob_ctx *ctx, const void *data, size_t len,
	       char *name);
/* blob_name() through OpenSSL (sodium false; libsodium when OpenSSL
 * cannot) or through libsodium: the same names (for tests). */
void blob_name_backend(const struct blob_ctx *ctx, const void *data,
		       size_t len, char *name, bool sodium);
/* "blake2b" or "hmac-sha256", and back (also "sha256"); -EINVAL. */
const char *blob_names_label(enum blob_names names);
int blob_names_parse(const char *s, enum blob_names *out);
/* What mkfs picks: HMAC-SHA-256 where the CPU has SHA-256 instructions
 * (x86's SHA extensions, ARMv8's SHA2), BLAKE2b elsewhere. */
enum blob_names blob_names_default(void);
/* key: BLOB_DATA_KEY_LEN+1 bytes, receives "data/ab/<name>". */
void blob_data_key(const char *name, char *key);

/* The most bytes blob_encode() appends for len bytes of data. */
size_t blob_encoded_max(const struct blob_ctx *ctx, size_t len);
/* Append the encoded object to out. 0 or -ENOMEM / -EIO. */
int blob_encode(const struct blob_ctx *ctx, const void *data, size_t len,
		struct buf *out);
/* The same for a data block whose name is blob_name() of data: the
 * checksum covers the header only (the name authenticates the rest), so
 * only blob_decode_named() decodes it. */
int blob_encode_named(const struct blob_ctx *ctx, const void *data,
		      size_t len, struct buf *out);
/* The same for len bytes of plaintext already at out->data + out->len +
 * BLOB_HEADER_SIZE (out's capacity reserved for blob_encoded_max()): a
 * raw payload stays where it is; compression goes through scratch.
 * -EINVAL when out has no room. */
int blob_encode_named_in_place(const struct blob_ctx *ctx, struct buf *out,
			       size_t len, void *scratch, size_t scratch_len);
/* Append the decoded plaintext to out. -EIO on any damage, and for a
 * named object (use blob_decode_named). */
int blob_decode(const struct blob_ctx *ctx, const void *obj, size_t len,
		struct buf *out);
/* Decode and check that the plaintext hashes to name (data blocks).
 * -EIO on mismatch. */
int blob_decode_named(const struct blob_ctx *ctx, const char *name,
		      const void *obj, size_t len, struct buf *out);

/* The same without copying a raw payload: on success *plain points at the
 * checked plaintext, inside obj (raw) or appended to scratch (zstd); on
 * failure nothing is appended.  For block-sized objects, one copy fewer. */
int blob_decode_named_view(const struct blob_ctx *ctx, const char *name,
			   const void *obj, size_t len, struct buf *scratch,
			   const uint8_t **plain, size_t *plain_len);

/* Fill buf with len cryptographically random bytes. */
void blob_random(void *buf, size_t len);

#endif
