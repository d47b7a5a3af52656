/*
 * meta_seek.c - where a file's data and holes are: the answer to
 * lseek(SEEK_DATA) and lseek(SEEK_HOLE), from the block map.
 *
 * Data model
 *   A file's bytes [0, size) are data where the file has data in the
 *   metadata and a hole everywhere else:
 *     - an inline file (a row in inline_data) is data from 0 to its size;
 *     - otherwise block idx is data when it has a row in block (uploaded,
 *       patched or dirty: a block written but not yet uploaded has its
 *       row from the write on, meta_write_done()), and a hole when it has
 *       none (never written, punched, truncated away, or uploaded as all
 *       zeros, meta_block_commit() with a NULL hash).
 *   The end of the file is a hole: SEEK_HOLE never answers past size.
 *
 * Invariants
 *   1. Both searches read the block table through its primary key
 *      (ino, idx) from the offset's block on: SEEK_DATA reads one row
 *      (the first at or after it), SEEK_HOLE reads the rows of the run of
 *      data it starts in and stops at the first missing index.  Holes
 *      cost nothing, so a 3 GiB file with 1 MiB of data is answered
 *      with a row or two.
 *   2. The answer is never before off and never at or past size, except
 *      SEEK_HOLE's size itself; an off at or past size is -ENXIO (POSIX).
 *   3. Granularity is the block: a block partly written is data whole
 *      (its unwritten bytes read as zeros), as on filesystems whose
 *      extents are larger than a write.
 *   4. The inode's size and its rows are read under one hold of the lock
 *      (every write of the metadata takes it), so they agree.
 */
#include "util/compat.h"

#include <sys/stat.h>

#include "meta/meta_int.h"

/* The first block at or after idx that has a row (*data), and the first
 * at or after idx that has none (*hole, when want_hole). */
static int seek_blocks_locked(struct meta *m, uint64_t ino, uint64_t idx,
			      bool want_hole, uint64_t *found)
{
	sqlite3_stmt *st = m->st[ST_SEEK_BLOCKS];
	uint64_t expect = idx;
	int rc;

	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	for (;;) {
		uint64_t i;

		rc = meta_step(m, st);
		if (rc < 0)
			goto out_reset;
		if (rc == 0) {
			/* no more rows: data has none, a hole starts here */
			rc = want_hole ? 0 : -ENXIO;
			*found = expect;
			goto out_reset;
		}
		i = col_u64(st, 0);
		if (!want_hole) {
			*found = i;
			rc = 0;
			goto out_reset;
		}
		if (i != expect) {
			*found = expect;
			rc = 0;
			goto out_reset;
		}
		expect = i + 1;
	}
out_reset:
	sqlite3_reset(st);
	return rc;
}

static int inline_has_locked(struct meta *m, uint64_t ino)
{
	sqlite3_stmt *st = m->st[ST_INLINE_ANY];
	int rc;

	bind_u64(st, 1, ino);
	rc = meta_step(m, st);
	sqlite3_reset(st);
	return rc;
}

static int seek_locked(struct meta *m, uint64_t ino, uint64_t off,
		       bool hole, uint64_t *out)
{
	uint64_t bs = m->block_size, idx;
	struct meta_attr a;
	int rc;

	rc = meta_inode_get_locked(m, ino, &a);
	if (rc)
		return rc;
	if (S_ISDIR(a.mode))
		return -EISDIR;
	if (!S_ISREG(a.mode))
		return -EINVAL;
	if (off >= a.size)
		return -ENXIO;
	rc = inline_has_locked(m, ino);
	if (rc < 0)
		return rc;
	if (rc > 0) {
		*out = hole ? a.size : off;
		return 0;
	}
	rc = seek_blocks_locked(m, ino, off / bs, hole, &idx);
	if (rc)
		return rc;
	/* the block found may start before off (off's own block) */
	*out = idx > off / bs ? idx * bs : off;
	if (*out >= a.size) {
		if (!hole)
			return -ENXIO;
		*out = a.size;
	}
	return 0;
}

int meta_seek(struct meta *m, uint64_t ino, uint64_t off, bool hole,
	      uint64_t *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, seek_locked(m, ino, off, hole, out));
}
