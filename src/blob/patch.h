/*
 * patch.h - block patches: the bytes of a block that changed since its
 * last upload, as an object of their own.
 *
 * A block written in a few places (random writes into a large file) need
 * not be uploaded whole: the cache may upload a patch instead, and the
 * block's content is then its base object with its patches applied in
 * order.  A patch's plaintext is
 *
 *   offset size  field
 *   0      8     magic "MFPATCH1"
 *   8      32    name (binary) of the object below: the base block or
 *                the previous patch of the same block
 *   40     4     length of the block after the patch (little endian)
 *   44     4     number of extents n (little endian)
 *   48     8n    extents: offset, length (u32 little endian each),
 *                ascending, not overlapping, within the new length
 *   48+8n  ...   the extents' bytes, in order
 *
 * Applying a patch cuts or zero-extends the block to the new length, then
 * writes each extent.  It is framed and named like a block (blob.h): its
 * name is the keyed hash of this plaintext, so it is checked on reading,
 * and since it names the object below it, the name of a chain's last
 * patch names the block's whole content.  patch_parse() refuses a patch
 * that is malformed or that does not sit on the expected object: -EIO.
 * Pure functions, no I/O.
 */
#ifndef METAFUSE_PATCH_H
#define METAFUSE_PATCH_H

#include "util/compat.h"

#include "blob/blob.h"

/* the most patches a block has: a longer chain is refused as damaged */
#define PATCH_CHAIN_MAX 16
#define PATCH_HEADER_SIZE 48
#define PATCH_EXT_SIZE 8

struct patch_ext {
	uint32_t off, len;
};

/* Bytes of a patch of n extents holding data_len bytes in all. */
size_t patch_size(size_t n, size_t data_len);
/* Offset of the extents' bytes in a patch of n extents. */
size_t patch_data_off(size_t n);
/* Write the header and extent table of a patch on below (a name,
 * BLOB_NAME_LEN hex) into p (patch_data_off(n) bytes).  -EINVAL when
 * below is not a name. */
int patch_write_header(uint8_t *p, const char *below, uint32_t new_len,
		       const struct patch_ext *ext, size_t n);

struct patch_view {
	const uint8_t *below; /* the name of the object below, binary */
	uint32_t new_len;
	size_t n;
	const uint8_t *table; /* n extents */
	const uint8_t *data;  /* their bytes */
};

/* Check a patch of len bytes: magic, that it sits on below (any object
 * when below is NULL: the caller compares v->below), that its extents
 * are ordered, inside new_len <= max_len and add up to its data.  0 or
 * -EIO. */
int patch_parse(const uint8_t *p, size_t len, const char *below,
		uint32_t max_len, struct patch_view *v);
/* Whether p begins with a patch's magic (what a patch must; its name
 * says nothing of what an object is). */
bool patch_has_magic(const uint8_t *p, size_t len);
/* A block's uploaded content, as the metadata records it and the cache
 * loads it: its base object with patch[0..n) applied in order. */
struct patch_chain {
	char base[BLOB_NAME_LEN + 1]; /* "" when never uploaded */
	int dirty;                    /* written since that upload */
	unsigned n;
	uint64_t patch_bytes;         /* stored bytes of the patches */
	char patch[PATCH_CHAIN_MAX][BLOB_NAME_LEN + 1];
};

struct patch_iter {
	size_t i, pos; /* zero to start */
};

/* The next extent of a parsed patch into *ext, *data pointing at its
 * bytes; false after the last. */
bool patch_next(const struct patch_view *v, struct patch_iter *it,
		struct patch_ext *ext, const uint8_t **data);

#endif
