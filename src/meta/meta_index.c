/*
 * meta_index.c - struct cache_index_ops implemented on struct meta.
 *
 * Purpose
 *   The cache keeps its block index in the metadata without knowing meta,
 *   which sits above it in the layering: each callback calls one function
 *   of meta.h, its arg being the struct meta.
 *
 * Data model
 *   None of its own: the block, patch, object and inline_data tables of
 *   meta_block.c, and the size of the inode.
 *
 * Invariants
 *   1. Each callback is one meta transaction; the cache calls them
 *      without holding its own table lock (see the lock order in
 *      cache/cache_int.h).
 *   2. Only an object some row references (refcount > 0) counts as in
 *      the store (ix_object_known()).
 */
#include "util/compat.h"

#include "meta/meta_index.h"
#include "util/util.h"

/* the metadata's hex hashes are the blob layer's names */
_Static_assert(META_HASH_LEN == BLOB_NAME_LEN, "one name length");

static int ix_block_get(void *arg, uint64_t ino, uint64_t idx, char *hash)
{
	int dirty;

	return meta_block_get(arg, ino, idx, hash, &dirty);
}

static int ix_write_done(void *arg, uint64_t ino, uint64_t end,
			 const uint64_t *idx, size_t n)
{
	struct timespec now = now_realtime();

	return meta_write_done(arg, ino, end, &now, idx, n);
}

static int ix_file_size(void *arg, uint64_t ino, uint64_t *size)
{
	struct meta_attr a;
	int rc = meta_getattr(arg, ino, &a);

	if (rc == 0)
		*size = a.size;
	return rc;
}

/*
 * Only an object some block references is surely in the store.  One with
 * refcount 0 may already be deleted by the collector, and after a restore
 * the checkpoint can still list objects that the collector deleted after
 * the checkpoint was taken: such an object is uploaded again.
 */
static int ix_object_known(void *arg, const char *hash)
{
	uint64_t refs = 0;

	return meta_object_get(arg, hash, &refs) == 0 && refs > 0;
}

static int ix_block_commit(void *arg, uint64_t ino, uint64_t idx,
			   const char *hash, uint64_t size, int still_dirty)
{
	return meta_block_commit(arg, ino, idx, hash, size, still_dirty);
}

static int ix_block_chain(void *arg, uint64_t ino, uint64_t idx,
			  struct patch_chain *out)
{
	return meta_block_chain(arg, ino, idx, out);
}

static int ix_block_patch(void *arg, uint64_t ino, uint64_t idx,
			  const char *below, const char *hash, uint64_t size,
			  int still_dirty)
{
	return meta_block_patch(arg, ino, idx, below, hash, size,
				still_dirty);
}

static int ix_block_reset(void *arg, uint64_t ino, uint64_t idx)
{
	return meta_block_reset(arg, ino, idx);
}

static int ix_object_note(void *arg, const char *hash, uint64_t size)
{
	return meta_object_note(arg, hash, size);
}

static int ix_dirty_count(void *arg, uint64_t ino, uint64_t *n)
{
	return meta_inode_dirty_count(arg, ino, n);
}

static int ix_dirty_blocks(void *arg,
			   int (*cb)(uint64_t ino, uint64_t idx, void *cbarg),
			   void *cbarg)
{
	return meta_blocks_dirty(arg, cb, cbarg);
}

static int ix_inline_write(void *arg, uint64_t ino, uint64_t off,
			   const void *data, size_t len, size_t max)
{
	struct timespec now = now_realtime();

	return meta_inline_write(arg, ino, off, data, len, max, &now);
}

static int ix_inline_read(void *arg, uint64_t ino, struct buf *out)
{
	return meta_inline_read(arg, ino, out);
}

static int ix_inline_to_block(void *arg, uint64_t ino)
{
	return meta_inline_to_block(arg, ino);
}

static int ix_inline_cut(void *arg, uint64_t ino, uint64_t size,
			 uint64_t zero_off, uint64_t zero_len)
{
	return meta_inline_cut(arg, ino, size, zero_off, zero_len);
}

const struct cache_index_ops meta_index_ops = {
	.block_get = ix_block_get,
	.write_done = ix_write_done,
	.file_size = ix_file_size,
	.object_known = ix_object_known,
	.block_commit = ix_block_commit,
	.block_chain = ix_block_chain,
	.block_patch = ix_block_patch,
	.block_reset = ix_block_reset,
	.dirty_blocks = ix_dirty_blocks,
	.dirty_count = ix_dirty_count,
	.object_note = ix_object_note,
	.inline_write = ix_inline_write,
	.inline_read = ix_inline_read,
	.inline_to_block = ix_inline_to_block,
	.inline_cut = ix_inline_cut,
};
