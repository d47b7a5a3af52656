/*
 * buf.c - growable byte buffer (see buf.h for the contract).
 *
 * Invariants: cap == 0 <=> data == NULL; len < cap whenever cap > 0, and
 * data[len] == 0, so text buffers are always terminated.
 */
#include "util/compat.h"

#include <stdarg.h>

#include "util/buf.h"

int buf_reserve(struct buf *b, size_t extra)
{
	size_t need, ncap;
	uint8_t *p;

	if (extra > SIZE_MAX - b->len - 1)
		return -ENOMEM;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 64;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	p = realloc(b->data, ncap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = ncap;
	b->data[b->len] = 0;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	int rc = buf_reserve(b, len);

	if (rc)
		return rc;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = 0;
	return 0;
}

int buf_appends(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	rc = buf_reserve(b, (size_t)n);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int buf_init_aligned(struct buf *b, size_t align, size_t cap)
{
	void *p;

	if (b->cap || cap == SIZE_MAX)
		return -EINVAL;
	if (posix_memalign(&p, align, cap + 1))
		return -ENOMEM;
	b->data = p;
	b->cap = cap + 1;
	b->len = 0;
	b->data[0] = 0;
	return 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

uint8_t *buf_detach(struct buf *b, size_t *len)
{
	uint8_t *p = b->data;

	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}

const char *buf_str(const struct buf *b)
{
	return b->data ? (const char *)b->data : "";
}
