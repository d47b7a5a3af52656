/*
 * t_fsck_tree.h - the small tree that every fsck scenario starts from,
 * shared by t_meta_fsck.c (what a repair does) and t_fsck.c (the exact
 * words of a report).  Include after t_meta.h (mk(), BS, CHECK).
 */
#ifndef METAFUSE_T_FSCK_TREE_H
#define METAFUSE_T_FSCK_TREE_H

#include "t_meta.h"

/*
 * The tree every scenario starts from (inode numbers are fixed):
 *   /a (2)  /a/f (3, 2 blocks: H1 H2)  /a/b (4)  /a/b/g (5, also /hl)
 *   /x (6)  /x/y (7)  /s -> target (8)  orphan 9 (nlink 0, 1 block: H3)
 */
enum { INO_A = 2, INO_F, INO_B, INO_G, INO_X, INO_Y, INO_S, INO_O };

#define H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222222222222222222222222222"
#define H3 "3333333333333333333333333333333333333333333333333333333333333333"
#define H4 "4444444444444444444444444444444444444444444444444444444444444444"
#define H5 "5555555555555555555555555555555555555555555555555555555555555555"

static inline bool build_tree(struct meta *m)
{
	struct timespec t = ts(10, 0);
	uint64_t idx[2] = { 0, 1 };
	bool ok;

	ok = mk(m, 1, "a", S_IFDIR | 0755) == INO_A &&
	     mk(m, INO_A, "f", S_IFREG | 0644) == INO_F &&
	     mk(m, INO_A, "b", S_IFDIR | 0755) == INO_B &&
	     mk(m, INO_B, "g", S_IFREG | 0644) == INO_G &&
	     mk(m, 1, "x", S_IFDIR | 0755) == INO_X &&
	     mk(m, INO_X, "y", S_IFDIR | 0755) == INO_Y &&
	     mk(m, 1, "s", S_IFLNK | 0777) == INO_S &&
	     mk(m, 1, "o", S_IFREG | 0644) == INO_O;
	CHECK(ok);
	CHECK_RC(meta_link(m, INO_G, 1, "hl", &t, NULL), 0);
	CHECK_RC(meta_write_done(m, INO_F, 2 * BS, &t, idx, 2), 0);
	CHECK_RC(meta_block_commit(m, INO_F, 0, H1, 10, 0), 0);
	CHECK_RC(meta_block_commit(m, INO_F, 1, H2, 10, 0), 0);
	/* block 1 of f is H2 with patch H5 */
	CHECK_RC(meta_write_done(m, INO_F, 2 * BS, &t, idx + 1, 1), 0);
	CHECK_RC(meta_block_patch(m, INO_F, 1, H2, H5, 10, 0), 0);
	CHECK_RC(meta_write_done(m, INO_O, 5, &t, idx, 1), 0);
	CHECK_RC(meta_block_commit(m, INO_O, 0, H3, 10, 0), 0);
	CHECK_RC(meta_unlink(m, 1, "o", &t, NULL), 0);
	return ok;
}

#endif
