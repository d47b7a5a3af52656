/*
 * buf.h - a growable, bounds-checked byte buffer.
 *
 * struct buf owns its memory.  data is NUL-terminated whenever len < cap so
 * a buffer that holds text can be printed directly.  All functions that may
 * allocate return 0 or -ENOMEM and leave the buffer unchanged on failure.
 * buf_free() of a zeroed or already freed buffer is a no-op.
 */
#ifndef METAFUSE_BUF_H
#define METAFUSE_BUF_H

#include "util/compat.h"

struct buf {
	uint8_t *data; /* owned; NULL while cap == 0 */
	size_t len;
	size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

/* Make room for at least extra more bytes (plus a NUL). */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_appends(struct buf *b, const char *s);
int buf_appendf(struct buf *b, const char *fmt, ...) MF_PRINTF(2, 3);
/*
 * Give an empty, unallocated b room for cap bytes at an address aligned to
 * align (a power of two, a multiple of sizeof(void *)), for O_DIRECT I/O.
 * A later buf_reserve() beyond cap may move the data to an unaligned
 * address.
 */
int buf_init_aligned(struct buf *b, size_t align, size_t cap);
/* Set len to 0; keeps the allocation. */
void buf_reset(struct buf *b);
/* Free the memory and zero the struct. */
void buf_free(struct buf *b);
/* Hand the memory to the caller (who frees it with free()); b is zeroed. */
uint8_t *buf_detach(struct buf *b, size_t *len);
/* The buffer as a C string ("" when empty). Borrowed. */
const char *buf_str(const struct buf *b);

#endif
