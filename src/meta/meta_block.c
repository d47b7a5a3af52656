/*
 * meta_block.c - the block map of regular files: block and patch rows,
 * the writes that make blocks dirty, inline data, object reference
 * counts, and the lists garbage collection works from.
 *
 * Purpose
 *   The cache (through meta_index.c) records here which blocks are dirty,
 *   what each upload produced and which objects make up a block's
 *   content; the collector asks which objects nothing references any
 *   more.  Every call is one transaction of meta.c.
 *
 * Data model (the tables are in meta.c's data model)
 *   block(ino, idx, hash, dirty)  hash: the object of the last upload
 *                                 (NULL: none yet); no row: a hole
 *   patch(ino, idx, n, hash)      applied over the block's hash in
 *                                 order of n (blob/patch.h)
 *   object(hash, refcount, size, freed_epoch)
 *   inline_data(ino, data)        a small file's content, kept instead
 *                                 of blocks
 *   inode.size, inode.nblocks     kept with the block rows
 *
 * Invariants (besides 3-7 of meta.h and 3-4 of meta.c)
 *   1. A change of block or patch rows adjusts the refcounts of the
 *      objects they name in the same transaction, the new reference
 *      taken before the old one is released (block_commit_locked()): an
 *      object named on both sides never touches refcount 0.
 *   2. A change of the number of block rows adjusts inode.nblocks in the
 *      same transaction (nblocks_add()).
 *   3. An upload is recorded only on a row that exists and is dirty;
 *      otherwise the object's row is only made sure of, with refcount 0,
 *      for the collector (-ESTALE).
 *   4. Only an empty regular file without block rows becomes inline
 *      (meta_inline_write()); meta_inline_to_block() drops the inline
 *      data in the transaction that makes block 0 dirty.
 *   5. Callbacks (dirty or patched blocks, the GC list, objects) run with
 *      the lock released: rows are read in batches and the walk resumes
 *      after the last key seen.
 */
#include "util/compat.h"

#include <sys/stat.h>

#include <sqlite3.h>

#include "meta/meta_int.h"
#include "util/log.h"

#define HASH_BATCH 128			/* object names per lock */

/* ---- block rows (lock held) ---- */

static int nblocks_add(struct meta *m, uint64_t ino, int64_t delta)
{
	sqlite3_stmt *st = m->st[ST_INODE_NBLOCKS];

	if (delta == 0)
		return 0;
	bind_u64(st, 1, ino);
	bind_i64(st, 2, delta);
	return meta_run(m, st);
}

/* Run statement id, a range [first, last] of blocks of ino. */
static int range_run(struct meta *m, int id, uint64_t ino, uint64_t first,
		     uint64_t last)
{
	sqlite3_stmt *st = m->st[id];

	bind_u64(st, 1, ino);
	bind_u64(st, 2, first);
	bind_u64(st, 3, last);
	return meta_run(m, st);
}

/* Remove the patch rows of blocks [first, last] of ino (last <=
 * INT64_MAX), decrementing the refcounts of the objects they name. */
static int patches_drop(struct meta *m, uint64_t ino, uint64_t first,
			uint64_t last)
{
	int rc = range_run(m, ST_PATCH_UNREF_RANGE, ino, first, last);

	return rc ? rc : range_run(m, ST_PATCH_DELETE_RANGE, ino, first,
				   last);
}

/*
 * Remove block rows [first, last] of ino and their patches, decrementing
 * the refcounts of the objects they name (one UPDATE .. FROM for the
 * whole range) and ino's nblocks.
 */
int meta_blocks_drop_locked(struct meta *m, uint64_t ino, uint64_t first,
			    uint64_t last)
{
	int rc;

	if (first > INT64_MAX)
		return 0;
	last = MF_MIN(last, (uint64_t)INT64_MAX);
	if (first > last)
		return 0;
	rc = patches_drop(m, ino, first, last);
	if (!rc)
		rc = range_run(m, ST_BLOCK_UNREF_RANGE, ino, first, last);
	if (!rc)
		rc = range_run(m, ST_BLOCK_DELETE_RANGE, ino, first, last);
	if (rc)
		return rc;
	return nblocks_add(m, ino, -sqlite3_changes64(m->db));
}

/* ---- writes ---- */

/* Mark block idx of ino dirty; 1 if a row was created, 0, or -errno. */
static int block_mark_dirty(struct meta *m, uint64_t ino, uint64_t idx)
{
	sqlite3_stmt *st = m->st[ST_BLOCK_DIRTY];
	int rc;

	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	rc = meta_run(m, st);
	if (rc || sqlite3_changes64(m->db) > 0)
		return rc;
	st = m->st[ST_BLOCK_INSERT];
	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	rc = meta_run(m, st);
	return rc ? rc : 1;
}

static int write_done_locked(struct meta *m, uint64_t ino, uint64_t end,
			     const struct timespec *now, const uint64_t *idx,
			     size_t n)
{
	sqlite3_stmt *st;
	struct meta_attr a;
	uint64_t nblk;
	int64_t added = 0;
	size_t i;
	int rc;

	if (end > INT64_MAX)
		return -EFBIG;
	rc = meta_inode_get_locked(m, ino, &a);
	if (rc)
		return rc;
	if (!S_ISREG(a.mode))
		return S_ISDIR(a.mode) ? -EISDIR : -EINVAL;
	a.size = MF_MAX(a.size, end);
	nblk = meta_blocks_for(m, a.size);
	for (i = 0; i < n; i++)
		if (idx[i] >= nblk)
			return -EINVAL; /* would break meta.h's invariant 5 */
	st = m->st[ST_INODE_WRITE];
	bind_u64(st, 1, ino);
	bind_u64(st, 2, a.size);
	bind_time(st, 3, now);
	rc = meta_run(m, st);
	for (i = 0; !rc && i < n; i++) {
		rc = block_mark_dirty(m, ino, idx[i]);
		if (rc > 0) {
			added++;
			rc = 0;
		}
	}
	if (!rc)
		rc = nblocks_add(m, ino, added);
	return rc;
}

int meta_write_done(struct meta *m, uint64_t ino, uint64_t end,
		    const struct timespec *now, const uint64_t *idx, size_t n)
{
	struct timespec t = meta_now(now);
	struct meta_attr a;
	int rc;

	/* no new dirty block: only size and times change (meta_pend.c) */
	if (n == 0) {
		bool done;

		rc = meta_lock(m);
		if (rc)
			return rc;
		done = meta_pend_write_locked(m, ino, end, &t);
		meta_unlock(m);
		if (done)
			return 0;
	}
	rc = meta_txn_begin_pend(m, META_TXN_WRITE, META_PEND_KEEP);
	if (rc)
		return rc;
	rc = write_done_locked(m, ino, end, &t, idx, n);
	if (rc == 0)
		rc = meta_inode_get_locked(m, ino, &a);
	if (rc == 0) {
		/* a file with data in blocks: later writes may batch */
		m->note_ino = ino;
		m->note_size = a.size;
		m->note_time = t;
	}
	return meta_txn_end(m, rc);
}

/* ---- inline data (small files kept in the database) ---- */

/* The inline data of ino into out (replacing it): 1, 0 when none. */
static int inline_get_locked(struct meta *m, uint64_t ino, struct buf *out)
{
	sqlite3_stmt *st = m->st[ST_INLINE_GET];
	int rc;

	buf_reset(out);
	bind_u64(st, 1, ino);
	rc = meta_step(m, st);
	if (rc > 0) {
		int n = sqlite3_column_bytes(st, 0);

		rc = buf_append(out, sqlite3_column_blob(st, 0), (size_t)n);
		rc = rc ? rc : 1;
	}
	sqlite3_reset(st);
	return rc;
}

static int inline_set_locked(struct meta *m, uint64_t ino,
			     const struct buf *data)
{
	sqlite3_stmt *st = m->st[ST_INLINE_SET];

	bind_u64(st, 1, ino);
	sqlite3_bind_blob(st, 2, data->len ? (const void *)data->data : "",
			  (int)data->len, SQLITE_STATIC);
	return meta_run(m, st);
}

static int inline_delete_locked(struct meta *m, uint64_t ino)
{
	sqlite3_stmt *st = m->st[ST_INLINE_DELETE];

	bind_u64(st, 1, ino);
	return meta_run(m, st);
}

/* Put len bytes at off into d, zero-filling a gap. */
static int patch(struct buf *d, uint64_t off, const void *data, size_t len)
{
	size_t end = (size_t)off + len;
	int rc = buf_reserve(d, end > d->len ? end - d->len : 0);

	if (rc)
		return rc;
	if (off > d->len)
		memset(d->data + d->len, 0, (size_t)off - d->len);
	if (data)
		memcpy(d->data + off, data, len);
	else
		memset(d->data + off, 0, len);
	if (end > d->len)
		d->len = end;
	return 0;
}

int meta_inline_write(struct meta *m, uint64_t ino, uint64_t off,
		      const void *data, size_t len, size_t max,
		      const struct timespec *now)
{
	struct timespec t = meta_now(now);
	struct buf d = BUF_INIT;
	struct meta_attr a;
	int rc, have;

	/* a file known to keep its data in blocks (meta_pend.c) */
	rc = meta_lock(m);
	if (rc)
		return rc;
	have = meta_pend_known_locked(m, ino);
	meta_unlock(m);
	if (have)
		return 0;
	/* only ino changes: the other inodes' records stay true */
	rc = meta_txn_begin_pend(m, META_TXN_WRITE, META_PEND_KEEP);
	if (rc)
		return rc;
	have = inline_get_locked(m, ino, &d);
	if (have < 0) {
		rc = have;
		goto out;
	}
	if (off > max || len > max - off) {
		rc = have ? 2 : 0; /* too big: to blocks, if it is inline */
		goto out;
	}
	rc = meta_inode_get_locked(m, ino, &a);
	if (rc)
		goto out;
	if (!have) {
		/* only an empty file without blocks becomes inline */
		if (!S_ISREG(a.mode) || a.size != 0 || a.nblocks != 0)
			goto out; /* rc 0: not inline */
	} else if (d.len > a.size) {
		d.len = (size_t)a.size; /* bytes a crash left past the size */
	}
	rc = patch(&d, off, data, len);
	if (!rc)
		rc = inline_set_locked(m, ino, &d);
	if (!rc)
		rc = write_done_locked(m, ino, off + len, &t, NULL, 0);
	if (!rc)
		rc = 1;
out:
	buf_free(&d);
	return meta_txn_end(m, rc);
}

int meta_inline_read(struct meta *m, uint64_t ino, struct buf *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	rc = inline_get_locked(m, ino, out);
	return meta_txn_end(m, rc > 0 ? 0 : rc == 0 ? -ENOENT : rc);
}

int meta_inline_to_block(struct meta *m, uint64_t ino)
{
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = inline_delete_locked(m, ino);
	if (!rc && sqlite3_changes64(m->db) > 0) {
		rc = block_mark_dirty(m, ino, 0);
		if (rc > 0)
			rc = nblocks_add(m, ino, 1);
	}
	return meta_txn_end(m, rc);
}

int meta_inline_cut(struct meta *m, uint64_t ino, uint64_t size,
		    uint64_t zero_off, uint64_t zero_len)
{
	struct buf d = BUF_INIT;
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = inline_get_locked(m, ino, &d);
	if (rc <= 0)
		goto out;
	if (size < d.len)
		d.len = (size_t)size;
	if (zero_off < d.len)
		rc = patch(&d, zero_off, NULL,
			   (size_t)MF_MIN(zero_len, d.len - zero_off));
	else
		rc = 0;
	if (!rc)
		rc = size == 0 ? inline_delete_locked(m, ino)
			       : inline_set_locked(m, ino, &d);
out:
	buf_free(&d);
	return meta_txn_end(m, rc);
}

/* ---- block map ---- */

static int block_get_locked(struct meta *m, uint64_t ino, uint64_t idx,
			    char *hash, int *dirty)
{
	sqlite3_stmt *st = m->st[ST_BLOCK_GET];
	int rc;

	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	rc = meta_step(m, st);
	if (rc > 0) {
		col_hash(st, 0, hash);
		*dirty = sqlite3_column_int(st, 1) != 0;
	}
	sqlite3_reset(st);
	return rc > 0 ? 0 : rc == 0 ? -ENOENT : rc;
}

int meta_block_get(struct meta *m, uint64_t ino, uint64_t idx, char *hash,
		   int *dirty)
{
	char h[META_HASH_LEN + 1];
	int d = 0;
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	rc = meta_txn_end(m, block_get_locked(m, ino, idx, h, &d));
	if (rc)
		return rc;
	if (hash)
		memcpy(hash, h, strlen(h) + 1);
	if (dirty)
		*dirty = d;
	return 0;
}

static int object_stmt(struct meta *m, int id, const char *hash,
		       uint64_t size)
{
	sqlite3_stmt *st = m->st[id];

	bind_text(st, 1, hash);
	if (id != ST_OBJECT_UNREF)
		bind_u64(st, 2, size);
	return meta_run(m, st);
}

/* 0 when committed, 1 when stale (the object row is made sure of and
 * the transaction must still commit), or -errno. */
static int block_commit_locked(struct meta *m, uint64_t ino, uint64_t idx,
			       const char *hash, uint64_t size,
			       int still_dirty)
{
	char old[META_HASH_LEN + 1];
	sqlite3_stmt *st;
	int dirty, rc;

	rc = block_get_locked(m, ino, idx, old, &dirty);
	if (rc && rc != -ENOENT)
		return rc;
	if (rc == -ENOENT || !dirty) {
		rc = hash ? object_stmt(m, ST_OBJECT_ENSURE, hash, size) : 0;
		return rc ? rc : 1;
	}
	/* Reference the new object before releasing the old one: with the
	 * same name on both sides, its count never touches 0. */
	if (hash) {
		rc = object_stmt(m, ST_OBJECT_REF, hash, size);
		if (rc)
			return rc;
	}
	if (old[0]) {
		rc = object_stmt(m, ST_OBJECT_UNREF, old, 0);
		if (rc)
			return rc;
		/* the new content is whole: the old one's patches go */
		rc = patches_drop(m, ino, idx, idx);
		if (rc)
			return rc;
	}
	if (!hash && !still_dirty) {
		st = m->st[ST_BLOCK_DELETE];
		bind_u64(st, 1, ino);
		bind_u64(st, 2, idx);
		rc = meta_run(m, st);
		return rc ? rc : nblocks_add(m, ino, -1);
	}
	st = m->st[ST_BLOCK_SET];
	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	if (hash)
		bind_text(st, 3, hash);
	else
		bind_null(st, 3);
	bind_i64(st, 4, still_dirty ? 1 : 0);
	return meta_run(m, st);
}

int meta_block_commit(struct meta *m, uint64_t ino, uint64_t idx,
		      const char *hash, uint64_t size, int still_dirty)
{
	int rc;

	if (hash) {
		size_t n = strnlen(hash, META_HASH_LEN + 1);

		if (n == 0 || n > META_HASH_LEN)
			return -EINVAL;
	}
	rc = meta_txn_begin(m, META_TXN_WRITE);
	if (rc)
		return rc;
	rc = block_commit_locked(m, ino, idx, hash, size, still_dirty);
	rc = meta_txn_end(m, rc);
	return rc == 1 ? -ESTALE : rc;
}

static int chain_locked(struct meta *m, uint64_t ino, uint64_t idx,
			struct patch_chain *out)
{
	sqlite3_stmt *st = m->st[ST_PATCH_LIST];
	int rc;

	out->n = 0;
	out->patch_bytes = 0;
	rc = block_get_locked(m, ino, idx, out->base, &out->dirty);
	if (rc)
		return rc;
	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	while ((rc = meta_step(m, st)) > 0) {
		if (out->n == PATCH_CHAIN_MAX || !out->base[0]) {
			log_error("meta: block %" PRIu64 " of inode %" PRIu64
				  " has %s patches", idx, ino,
				  out->base[0] ? "too many" : "orphan");
			rc = -EIO;
			break;
		}
		col_hash(st, 0, out->patch[out->n++]);
		out->patch_bytes += col_u64(st, 1);
	}
	sqlite3_reset(st);
	return rc;
}

int meta_block_chain(struct meta *m, uint64_t ino, uint64_t idx,
		     struct patch_chain *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, chain_locked(m, ino, idx, out));
}

static bool name_ok(const char *hash)
{
	return hash && strnlen(hash, META_HASH_LEN + 1) == META_HASH_LEN;
}

/* 0 when committed, 1 when stale, 2 when below is not the chain's top
 * (the object row is made sure of in both cases, and the transaction
 * must still commit), or -errno. */
static int block_patch_locked(struct meta *m, uint64_t ino, uint64_t idx,
			      const char *below, const char *hash,
			      uint64_t size, int still_dirty)
{
	struct patch_chain *ch = malloc(sizeof(*ch));
	sqlite3_stmt *st;
	const char *top;
	int rc;

	if (!ch)
		return -ENOMEM;
	rc = chain_locked(m, ino, idx, ch);
	if (rc && rc != -ENOENT)
		goto out;
	if (rc == -ENOENT || !ch->dirty) {
		rc = object_stmt(m, ST_OBJECT_ENSURE, hash, size);
		rc = rc ? rc : 1;
		goto out;
	}
	top = ch->n ? ch->patch[ch->n - 1] : ch->base;
	if (!ch->base[0] || strcmp(top, below) || ch->n == PATCH_CHAIN_MAX) {
		rc = object_stmt(m, ST_OBJECT_ENSURE, hash, size);
		rc = rc ? rc : 2;
		goto out;
	}
	rc = object_stmt(m, ST_OBJECT_REF, hash, size);
	if (rc)
		goto out;
	st = m->st[ST_PATCH_INSERT];
	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	bind_i64(st, 3, (int64_t)ch->n + 1);
	bind_text(st, 4, hash);
	rc = meta_run(m, st);
	if (rc)
		goto out;
	st = m->st[ST_BLOCK_SET];
	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	bind_text(st, 3, ch->base);
	bind_i64(st, 4, still_dirty ? 1 : 0);
	rc = meta_run(m, st);
out:
	free(ch);
	return rc;
}

int meta_block_patch(struct meta *m, uint64_t ino, uint64_t idx,
		     const char *below, const char *hash, uint64_t size,
		     int still_dirty)
{
	int rc;

	if (!name_ok(below) || !name_ok(hash))
		return -EINVAL;
	rc = meta_txn_begin(m, META_TXN_WRITE);
	if (rc)
		return rc;
	rc = block_patch_locked(m, ino, idx, below, hash, size, still_dirty);
	rc = meta_txn_end(m, rc);
	return rc == 1 ? -ESTALE : rc == 2 ? -EILSEQ : rc;
}

int meta_block_reset(struct meta *m, uint64_t ino, uint64_t idx)
{
	char hash[META_HASH_LEN + 1];
	sqlite3_stmt *st;
	int dirty, rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = block_get_locked(m, ino, idx, hash, &dirty);
	if (rc == 0 && dirty && !hash[0]) {
		st = m->st[ST_BLOCK_DELETE];
		bind_u64(st, 1, ino);
		bind_u64(st, 2, idx);
		rc = meta_run(m, st);
		if (rc == 0)
			rc = nblocks_add(m, ino, -1);
	} else if (rc == 0 && dirty) {
		st = m->st[ST_BLOCK_SET];
		bind_u64(st, 1, ino);
		bind_u64(st, 2, idx);
		bind_text(st, 3, hash);
		bind_i64(st, 4, 0);
		rc = meta_run(m, st);
	}
	return meta_txn_end(m, rc);
}

int meta_object_note(struct meta *m, const char *hash, uint64_t size)
{
	int rc;

	if (!hash || strnlen(hash, META_HASH_LEN + 1) != META_HASH_LEN)
		return -EINVAL;
	rc = meta_txn_begin(m, META_TXN_WRITE);
	if (rc)
		return rc;
	return meta_txn_end(m, object_stmt(m, ST_OBJECT_ENSURE, hash, size));
}

int meta_block_drop(struct meta *m, uint64_t ino, uint64_t first,
		    uint64_t last)
{
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	return meta_txn_end(m, meta_blocks_drop_locked(m, ino, first, last));
}

struct block_key {
	uint64_t ino;
	uint64_t idx;
};

/* The next (at most META_ID_BATCH) blocks after *after that statement id
 * lists (ST_BLOCKS_DIRTY, ST_BLOCKS_PATCHED). */
static int key_batch(struct meta *m, int id, const struct block_key *after,
		     struct block_key *keys, size_t *n)
{
	sqlite3_stmt *st = m->st[id];
	int rc;

	*n = 0;
	bind_u64(st, 1, after->ino);
	bind_u64(st, 2, after->idx);
	bind_i64(st, 3, META_ID_BATCH);
	while ((rc = meta_step(m, st)) > 0) {
		keys[*n].ino = col_u64(st, 0);
		keys[*n].idx = col_u64(st, 1);
		(*n)++;
	}
	sqlite3_reset(st);
	return rc;
}

/* Visit the blocks statement id lists, a batch per transaction, so that
 * cb may use the index. */
static int blocks_each(struct meta *m, int id,
		       int (*cb)(uint64_t ino, uint64_t idx, void *arg),
		       void *arg)
{
	struct block_key keys[META_ID_BATCH], after = { 0, 0 };
	size_t n, i;
	int rc;

	for (;;) {
		rc = meta_txn_begin(m, META_TXN_NONE);
		if (rc)
			return rc;
		rc = meta_txn_end(m, key_batch(m, id, &after, keys, &n));
		if (rc)
			return rc;
		for (i = 0; i < n; i++) {
			rc = cb(keys[i].ino, keys[i].idx, arg);
			if (rc)
				return rc;
		}
		if (n < META_ID_BATCH)
			return 0;
		after = keys[n - 1];
	}
}

int meta_blocks_dirty(struct meta *m,
		      int (*cb)(uint64_t ino, uint64_t idx, void *arg),
		      void *arg)
{
	return blocks_each(m, ST_BLOCKS_DIRTY, cb, arg);
}

int meta_blocks_patched(struct meta *m,
			int (*cb)(uint64_t ino, uint64_t idx, void *arg),
			void *arg)
{
	return blocks_each(m, ST_BLOCKS_PATCHED, cb, arg);
}

static int64_t count_locked(struct meta *m, int id)
{
	sqlite3_stmt *st = m->st[id];
	int64_t v = 0;
	int rc;

	rc = meta_step(m, st);
	if (rc > 0)
		v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc < 0 ? rc : v;
}

int meta_inode_dirty_count(struct meta *m, uint64_t ino, uint64_t *n)
{
	int64_t v;
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	bind_u64(m->st[ST_INODE_DIRTY_COUNT], 1, ino);
	v = count_locked(m, ST_INODE_DIRTY_COUNT);
	if (v >= 0)
		*n = (uint64_t)v;
	return meta_txn_end(m, v < 0 ? (int)v : 0);
}

static int64_t forget_dirty_locked(struct meta *m)
{
	int64_t lost = count_locked(m, ST_DIRTY_COUNT);
	int rc;

	if (lost <= 0)
		return lost;
	/* nblocks first: it counts the rows about to go. */
	rc = meta_run(m, m->st[ST_FORGET_NBLOCKS]);
	if (!rc)
		rc = meta_run(m, m->st[ST_FORGET_DELETE]);
	if (!rc) {
		bind_u64(m->st[ST_FORGET_CLEAN], 1, m->block_size);
		rc = meta_run(m, m->st[ST_FORGET_CLEAN]);
	}
	return rc ? rc : lost;
}

int64_t meta_blocks_forget_dirty(struct meta *m)
{
	int64_t lost;
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	lost = forget_dirty_locked(m);
	rc = meta_txn_end(m, lost < 0 ? (int)lost : 0);
	return rc ? rc : lost;
}

/* ---- objects and garbage ---- */

static int object_get_locked(struct meta *m, const char *hash,
			     uint64_t *refcount)
{
	sqlite3_stmt *st = m->st[ST_OBJECT_GET];
	int rc;

	bind_text(st, 1, hash);
	rc = meta_step(m, st);
	if (rc > 0)
		*refcount = col_u64(st, 0);
	sqlite3_reset(st);
	return rc > 0 ? 0 : rc == 0 ? -ENOENT : rc;
}

int meta_object_get(struct meta *m, const char *hash, uint64_t *refcount)
{
	int rc;

	if (!hash)
		return -EINVAL;
	rc = meta_txn_begin(m, META_TXN_NONE);
	if (rc)
		return rc;
	return meta_txn_end(m, object_get_locked(m, hash, refcount));
}

struct gc_batch {
	int64_t epoch[HASH_BATCH];
	char hash[HASH_BATCH][META_HASH_LEN + 1];
};

static int gc_batch(struct meta *m, int64_t below, int64_t after_epoch,
		    const char *after_hash, size_t max, struct gc_batch *b,
		    size_t *n)
{
	sqlite3_stmt *st = m->st[ST_GC_LIST];
	int rc;

	*n = 0;
	bind_i64(st, 1, below);
	bind_i64(st, 2, after_epoch);
	bind_text(st, 3, after_hash);
	bind_i64(st, 4, (int64_t)max);
	while ((rc = meta_step(m, st)) > 0) {
		b->epoch[*n] = sqlite3_column_int64(st, 0);
		col_hash(st, 1, b->hash[*n]);
		(*n)++;
	}
	sqlite3_reset(st);
	return rc;
}

/* The one row statement id gives (bound to arg when it takes one):
 * columns 0 and 1 (when b is not NULL). */
static int one_row(struct meta *m, int id, const int64_t *arg, uint64_t *a,
		   uint64_t *b)
{
	sqlite3_stmt *st = m->st[id];
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	if (arg)
		bind_i64(st, 1, *arg);
	rc = meta_step(m, st);
	if (rc > 0) {
		*a = col_u64(st, 0);
		if (b)
			*b = col_u64(st, 1);
		rc = 0;
	} else if (rc == 0) {
		rc = -EIO;
	}
	sqlite3_reset(st);
	return meta_txn_end(m, rc);
}

int meta_gc_waiting(struct meta *m, uint64_t durable_seq, uint64_t *count,
		    uint64_t *bytes)
{
	int64_t epoch = durable_seq > INT64_MAX ? INT64_MAX :
						  (int64_t)durable_seq;

	return one_row(m, ST_GC_WAITING, &epoch, count, bytes);
}

int meta_db_bytes(struct meta *m, uint64_t *bytes)
{
	return one_row(m, ST_DB_BYTES, NULL, bytes, NULL);
}

int meta_gc_list(struct meta *m, uint64_t durable_seq, size_t limit,
		 int (*cb)(const char *hash, void *arg), void *arg)
{
	char after_hash[META_HASH_LEN + 1] = "";
	int64_t below = durable_seq > INT64_MAX ? INT64_MAX :
						  (int64_t)durable_seq;
	int64_t after_epoch = -1;
	struct gc_batch *b;
	size_t n, i, want;
	int rc = 0;

	b = malloc(sizeof(*b));
	if (!b)
		return -ENOMEM;
	while (limit > 0) {
		want = MF_MIN(limit, (size_t)HASH_BATCH);
		rc = meta_txn_begin(m, META_TXN_NONE);
		if (rc)
			break;
		rc = gc_batch(m, below, after_epoch, after_hash, want, b, &n);
		rc = meta_txn_end(m, rc);
		if (rc)
			break;
		for (i = 0; i < n; i++) {
			rc = cb(b->hash[i], arg);
			if (rc)
				goto out_free_b;
		}
		if (n < want)
			break;
		limit -= n;
		after_epoch = b->epoch[n - 1];
		memcpy(after_hash, b->hash[n - 1], sizeof(after_hash));
	}
out_free_b:
	free(b);
	return rc;
}

int meta_gc_forget(struct meta *m, const char *hash)
{
	sqlite3_stmt *st;
	int rc;

	if (!hash)
		return -EINVAL;
	rc = meta_txn_begin(m, META_TXN_WRITE);
	if (rc)
		return rc;
	st = m->st[ST_GC_FORGET];
	bind_text(st, 1, hash);
	rc = meta_run(m, st);
	if (!rc)
		rc = sqlite3_changes64(m->db) > 0;
	return meta_txn_end(m, rc);
}

struct obj_batch {
	uint64_t refcount[HASH_BATCH];
	char hash[HASH_BATCH][META_HASH_LEN + 1];
};

static int objects_batch(struct meta *m, const char *after,
			 struct obj_batch *b, size_t *n)
{
	sqlite3_stmt *st = m->st[ST_OBJECTS];
	int rc;

	*n = 0;
	bind_text(st, 1, after);
	bind_i64(st, 2, HASH_BATCH);
	while ((rc = meta_step(m, st)) > 0) {
		col_hash(st, 0, b->hash[*n]);
		b->refcount[*n] = col_u64(st, 1);
		(*n)++;
	}
	sqlite3_reset(st);
	return rc;
}

int meta_objects(struct meta *m,
		 int (*cb)(const char *hash, uint64_t refcount, void *arg),
		 void *arg)
{
	char after[META_HASH_LEN + 1] = "";
	struct obj_batch *b;
	size_t n, i;
	int rc;

	b = malloc(sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (;;) {
		rc = meta_txn_begin(m, META_TXN_NONE);
		if (rc)
			break;
		rc = meta_txn_end(m, objects_batch(m, after, b, &n));
		if (rc)
			break;
		for (i = 0; i < n; i++) {
			rc = cb(b->hash[i], b->refcount[i], arg);
			if (rc)
				goto out_free_b;
		}
		if (n < HASH_BATCH)
			break;
		memcpy(after, b->hash[n - 1], sizeof(after));
	}
out_free_b:
	free(b);
	return rc;
}
