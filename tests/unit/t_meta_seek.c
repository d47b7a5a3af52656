/*
 * t_meta_seek.c - unit tests of meta_seek() (src/meta/meta_seek.c), the
 * answer to lseek(SEEK_DATA) and lseek(SEEK_HOLE).
 *
 * Purpose: every kind of place an offset can fall in (a hole at the
 * start, in the middle, at the end; a dirty block, an uploaded one, one
 * uploaded as zeros, a punched range; a partial last block; an inline
 * file; an empty or size-only file; past the end), every documented
 * error, and a file of 2^50 bytes with one block at its end, which an
 * answer that visited the holes block by block would never finish.
 *
 * Data model: each test opens its own in-memory database (t_meta.h);
 * blocks are BS bytes.
 *
 * Invariants: a test leaves no database open.
 */
#include "util/compat.h"

#include "t_meta.h"

#define NONE UINT64_MAX

/* meta_seek() as a value: the offset, or NONE for -ENXIO (other errors
 * fail the check). */
static uint64_t sk(struct meta *m, uint64_t ino, uint64_t off, bool hole)
{
	uint64_t out = 0;
	int rc = meta_seek(m, ino, off, hole, &out);

	if (rc == -ENXIO)
		return NONE;
	CHECK_RC(rc, 0);
	CHECK(out >= off);
	return out;
}

#define DATA(m, f, off) sk(m, f, off, false)
#define HOLE(m, f, off) sk(m, f, off, true)

static void dirty(struct meta *m, uint64_t f, uint64_t end, uint64_t idx)
{
	struct timespec t = ts(5, 0);

	CHECK_RC(meta_write_done(m, f, end, &t, &idx, 1), 0);
}

static void set_size(struct meta *m, uint64_t f, uint64_t size)
{
	struct timespec t = ts(6, 0);

	CHECK_RC(meta_setattr(m, f, &(struct meta_attr){ .size = size },
			      META_SET_SIZE, &t, NULL), 0);
}

/* Files without data: empty, and grown by truncate only. */
static void test_no_data(void)
{
	struct meta *m = open_mem();
	uint64_t f;

	if (!m)
		return;
	f = mk(m, 1, "f", S_IFREG | 0644);
	CHECK_EQ_U64(DATA(m, f, 0), NONE);
	CHECK_EQ_U64(HOLE(m, f, 0), NONE);
	set_size(m, f, 10 * BS);
	CHECK_EQ_U64(DATA(m, f, 0), NONE);
	CHECK_EQ_U64(HOLE(m, f, 0), 0);
	CHECK_EQ_U64(HOLE(m, f, 10 * BS - 1), 10 * BS - 1);
	CHECK_EQ_U64(HOLE(m, f, 10 * BS), NONE);
	CHECK_EQ_U64(DATA(m, f, 20 * BS), NONE);
	meta_close(m);
}

/* Holes at the start, between runs and at the end; a partial last
 * block; dirty, uploaded and all-zero blocks; a punched range. */
static void test_blocks(void)
{
	struct meta *m = open_mem();
	char h[META_HASH_LEN + 1];
	uint64_t f;

	if (!m)
		return;
	f = mk(m, 1, "f", S_IFREG | 0644);
	dirty(m, f, 10 * BS, 2);
	dirty(m, f, 10 * BS, 3);
	dirty(m, f, 10 * BS, 7);
	/* a hole at the start, data runs [2, 4) and [7, 8), hole at end */
	CHECK_EQ_U64(DATA(m, f, 0), 2 * BS);
	CHECK_EQ_U64(DATA(m, f, 2 * BS + 5), 2 * BS + 5);
	CHECK_EQ_U64(DATA(m, f, 3 * BS + BS - 1), 4 * BS - 1);
	CHECK_EQ_U64(DATA(m, f, 4 * BS), 7 * BS);
	CHECK_EQ_U64(DATA(m, f, 8 * BS), NONE);
	CHECK_EQ_U64(HOLE(m, f, 0), 0);
	CHECK_EQ_U64(HOLE(m, f, 1 * BS + 7), 1 * BS + 7);
	CHECK_EQ_U64(HOLE(m, f, 2 * BS), 4 * BS);
	CHECK_EQ_U64(HOLE(m, f, 3 * BS + 1), 4 * BS);
	CHECK_EQ_U64(HOLE(m, f, 7 * BS), 8 * BS);
	CHECK_EQ_U64(HOLE(m, f, 9 * BS), 9 * BS);
	CHECK_EQ_U64(HOLE(m, f, 10 * BS), NONE);
	/* uploaded: still data; uploaded as zeros: the row goes, a hole */
	CHECK_RC(meta_block_commit(m, f, 2, hash_of('a', h), 10, 0), 0);
	CHECK_EQ_U64(DATA(m, f, 0), 2 * BS);
	CHECK_EQ_U64(HOLE(m, f, 2 * BS), 4 * BS);
	CHECK_RC(meta_block_commit(m, f, 3, NULL, 0, 0), 0);
	CHECK_EQ_U64(HOLE(m, f, 2 * BS), 3 * BS);
	CHECK_EQ_U64(DATA(m, f, 3 * BS), 7 * BS);
	/* punched */
	CHECK_RC(meta_block_drop(m, f, 2, 2), 0);
	CHECK_EQ_U64(DATA(m, f, 0), 7 * BS);
	/* the last block partial: the hole is the end of the file */
	set_size(m, f, 7 * BS + 10);
	CHECK_EQ_U64(HOLE(m, f, 7 * BS), 7 * BS + 10);
	CHECK_EQ_U64(DATA(m, f, 7 * BS + 9), 7 * BS + 9);
	CHECK_EQ_U64(DATA(m, f, 7 * BS + 10), NONE);
	/* data to the end: the hole is the end */
	dirty(m, f, 7 * BS + 10, 6);
	dirty(m, f, 7 * BS + 10, 5);
	CHECK_EQ_U64(DATA(m, f, 0), 5 * BS);
	CHECK_EQ_U64(HOLE(m, f, 5 * BS), 7 * BS + 10);
	/* data from the start */
	dirty(m, f, 7 * BS + 10, 0);
	CHECK_EQ_U64(DATA(m, f, 0), 0);
	CHECK_EQ_U64(HOLE(m, f, 0), BS);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
	meta_close(m);
}

/* An inline file is data up to its size; other kinds are errors. */
static void test_inline_and_kinds(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(7, 0);
	uint64_t f, d, l, out = 0;

	if (!m)
		return;
	f = mk(m, 1, "f", S_IFREG | 0644);
	CHECK_RC(meta_inline_write(m, f, 10, "abc", 3, 64, &t), 1);
	CHECK_EQ_U64(DATA(m, f, 0), 0);
	CHECK_EQ_U64(DATA(m, f, 12), 12);
	CHECK_EQ_U64(HOLE(m, f, 0), 13);
	CHECK_EQ_U64(HOLE(m, f, 12), 13);
	CHECK_EQ_U64(DATA(m, f, 13), NONE);
	CHECK_EQ_U64(HOLE(m, f, 13), NONE);
	d = mk(m, 1, "d", S_IFDIR | 0755);
	l = mk(m, 1, "l", S_IFLNK | 0777);
	CHECK_RC(meta_seek(m, d, 0, false, &out), -EISDIR);
	CHECK_RC(meta_seek(m, l, 0, true, &out), -EINVAL);
	CHECK_RC(meta_seek(m, 99999, 0, true, &out), -ENOENT);
	meta_close(m);
}

/* A file of 2^50 bytes (2^38 blocks) with data only in its last block:
 * both answers come from the rows, whatever lies between. */
static void test_huge_sparse(void)
{
	struct meta *m = open_mem();
	uint64_t size = 1ULL << 50, last = size / BS - 1, f;

	if (!m)
		return;
	f = mk(m, 1, "f", S_IFREG | 0644);
	dirty(m, f, size, 3);
	dirty(m, f, size, last);
	CHECK_EQ_U64(DATA(m, f, 4 * BS), last * BS);
	CHECK_EQ_U64(HOLE(m, f, 3 * BS), 4 * BS);
	CHECK_EQ_U64(HOLE(m, f, last * BS), size);
	CHECK_EQ_U64(DATA(m, f, size - 1), size - 1);
	meta_close(m);
}

int main(void)
{
	test_no_data();
	test_blocks();
	test_inline_and_kinds();
	test_huge_sparse();
	return check_done("t_meta_seek");
}
