/*
 * patch.c - block patches; the format is in patch.h.
 */
#include "util/compat.h"

#include <errno.h>
#include <string.h>

#include "blob/patch.h"
#include "util/util.h"

static const char patch_magic[8] = { 'M', 'F', 'P', 'A', 'T', 'C', 'H', '1' };

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

size_t patch_data_off(size_t n)
{
	return PATCH_HEADER_SIZE + n * PATCH_EXT_SIZE;
}

size_t patch_size(size_t n, size_t data_len)
{
	return patch_data_off(n) + data_len;
}

int patch_write_header(uint8_t *p, const char *below, uint32_t new_len,
		       const struct patch_ext *ext, size_t n)
{
	if (strlen(below) != BLOB_NAME_LEN || n > UINT32_MAX ||
	    hex_decode(below, p + 8, BLOB_HASH_BYTES))
		return -EINVAL;
	memcpy(p, patch_magic, sizeof(patch_magic));
	put_le32(p + 40, new_len);
	put_le32(p + 44, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		put_le32(p + patch_data_off(i), ext[i].off);
		put_le32(p + patch_data_off(i) + 4, ext[i].len);
	}
	return 0;
}

bool patch_has_magic(const uint8_t *p, size_t len)
{
	return len >= sizeof(patch_magic) &&
	       !memcmp(p, patch_magic, sizeof(patch_magic));
}

int patch_parse(const uint8_t *p, size_t len, const char *below,
		uint32_t max_len, struct patch_view *v)
{
	uint8_t want[BLOB_HASH_BYTES];
	uint64_t end = 0, total = 0;
	size_t n, i;

	if (len < PATCH_HEADER_SIZE || memcmp(p, patch_magic, 8))
		return -EIO;
	if (below && (strlen(below) != BLOB_NAME_LEN ||
		      hex_decode(below, want, sizeof(want)) ||
		      memcmp(p + 8, want, sizeof(want))))
		return -EIO;
	v->below = p + 8;
	v->new_len = get_le32(p + 40);
	n = get_le32(p + 44);
	if (v->new_len > max_len ||
	    n > (len - PATCH_HEADER_SIZE) / PATCH_EXT_SIZE)
		return -EIO;
	for (i = 0; i < n; i++) {
		uint64_t off = get_le32(p + patch_data_off(i));
		uint64_t elen = get_le32(p + patch_data_off(i) + 4);

		if (off < end || elen == 0 || off + elen > v->new_len)
			return -EIO;
		end = off + elen;
		total += elen;
	}
	if (patch_size(n, 0) + total != len)
		return -EIO;
	v->n = n;
	v->table = p + PATCH_HEADER_SIZE;
	v->data = p + patch_data_off(n);
	return 0;
}

bool patch_next(const struct patch_view *v, struct patch_iter *it,
		struct patch_ext *ext, const uint8_t **data)
{
	const uint8_t *t = v->table + it->i * PATCH_EXT_SIZE;

	if (it->i >= v->n)
		return false;
	ext->off = get_le32(t);
	ext->len = get_le32(t + 4);
	*data = v->data + it->pos;
	it->i++;
	it->pos += ext->len;
	return true;
}
