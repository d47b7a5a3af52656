/*
 * meta_clone.c - clones: blocks of one file shared by another
 * (copy_file_range) and a whole tree copied without copying its data
 * (`metafuse clone`), each in one transaction.
 *
 * Purpose
 *   A block is an immutable object named by its content, and a block row
 *   only names it: a copy of whole blocks is a copy of rows.  The objects
 *   a clone names gain one reference per row that now names them
 *   (meta.h's invariant 3: object.refcount = the number of block and
 *   patch rows naming it), so garbage collection frees an object only
 *   when its last holder is gone, and fsck's recount counts every holder
 *   without knowing that clones exist.  A later holder of another kind
 *   (a snapshot) can hold objects the same way: by rows that count.
 *
 * Data model (the tables are in meta.h)
 *   A cloned block gets a block row (ino, idx, hash, dirty 0) naming its
 *   source's object and patch rows copying its source's patch chain.
 *   A cloned tree gets new inodes (attributes, xattrs, inline data, block
 *   and patch rows copied), directory entries in the same order, and one
 *   inode per hard-linked file inside the tree (struct link_map).
 *
 * Invariants
 *   1. Only clean blocks are cloned: a dirty block's newest content is
 *      in the cache, not in an object.  A dirty source block fails the
 *      call (-EAGAIN) and nothing changes; the caller uploads it and
 *      calls again.
 *   2. Rows are copied first and counted after: each object's refcount
 *      grows by the number of copied rows naming it (refs_add()), in the
 *      same transaction, so invariant 3 of meta.h holds at every commit.
 *   3. A block is never shared with its own range: the two ranges of one
 *      file are disjoint (-EINVAL), and a tree is never cloned into
 *      itself (-EINVAL).
 *   4. The tree clone checks, for the caller, what `cp -a` would need:
 *      read on every file, read and search on every directory, write
 *      and search on the new name's directory and search on each of its
 *      ancestors (-EACCES); device nodes only for root (-EPERM).  An
 *      owner other than the caller (or a group the caller is not in) is
 *      kept only for root, as chown(2) allows; when it changes, the
 *      set-user-ID and set-group-ID bits are dropped.  Only root's copy
 *      keeps security.* and trusted.* xattrs (a file capability copied
 *      to a file of one's own would be a privilege gained).
 */
#include "util/compat.h"

#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "meta/meta_int.h"
#include "util/log.h"

/* Each object named by a row of table tab ("block" or "patch") of ino in
 * blocks [first, last] gains one reference per such row. */
#define REFS_ADD_SQL(tab, cond)                                             \
	"UPDATE object SET refcount = refcount + c.n, freed_epoch = NULL"   \
	" FROM (SELECT hash, count(*) AS n FROM " tab                       \
	" WHERE ino = ?1 AND idx BETWEEN ?2 AND ?3" cond                   \
	" GROUP BY hash) AS c WHERE object.hash = c.hash"

/* The one-off statements of the clones (prepared per call). */
enum clone_stmt {
	CS_DIRTY_RANGE,
	CS_INLINE_ANY,
	CS_PARENT,
	CS_BLOCK_COPY,
	CS_PATCH_COPY,
	CS_BLOCK_REFS,
	CS_PATCH_REFS,
	CS_NBLOCKS,
	CS_SIZE,
	CS_CHILDREN,
	CS_INODE_COPY,
	CS_XATTR_COPY,
	CS_INLINE_COPY,
	CS_LINK_ADD,
	CS_COUNT
};

static const char *const clone_sql[CS_COUNT] = {
	[CS_DIRTY_RANGE] = "SELECT 1 FROM block WHERE ino = ?1"
			   " AND idx BETWEEN ?2 AND ?3 AND dirty = 1 LIMIT 1",
	[CS_INLINE_ANY] = "SELECT 1 FROM inline_data WHERE ino IN (?1, ?2)",
	[CS_PARENT] = "SELECT parent FROM inode WHERE ino = ?1",
	/* ?1 src, ?2 first, ?3 last, ?4 dst, ?5 its first */
	[CS_BLOCK_COPY] = "INSERT INTO block(ino, idx, hash, dirty)"
			  " SELECT ?4, idx - ?2 + ?5, hash, 0 FROM block"
			  " WHERE ino = ?1 AND idx BETWEEN ?2 AND ?3"
			  " AND hash IS NOT NULL",
	[CS_PATCH_COPY] = "INSERT INTO patch(ino, idx, n, hash)"
			  " SELECT ?4, idx - ?2 + ?5, n, hash FROM patch"
			  " WHERE ino = ?1 AND idx BETWEEN ?2 AND ?3",
	[CS_BLOCK_REFS] = REFS_ADD_SQL("block", " AND hash IS NOT NULL"),
	[CS_PATCH_REFS] = REFS_ADD_SQL("patch", ""),
	[CS_NBLOCKS] = "UPDATE inode SET nblocks = nblocks + ?2"
		       " WHERE ino = ?1",
	[CS_SIZE] = "UPDATE inode SET size = max(size, ?2), mtime_s = ?3,"
		    " mtime_ns = ?4, ctime_s = ?3, ctime_ns = ?4"
		    " WHERE ino = ?1",
	[CS_CHILDREN] = "SELECT d.name, i.ino, i.mode, i.uid, i.gid,"
			" i.nlink, i.size, i.rdev, i.nblocks, i.atime_s,"
			" i.atime_ns, i.mtime_s, i.mtime_ns, i.ctime_s,"
			" i.ctime_ns FROM dentry AS d JOIN inode AS i"
			" ON i.ino = d.ino WHERE d.parent = ?1"
			" ORDER BY d.id",
	/* ?1 src, ?2 mode, ?3 uid, ?4 gid, ?5 nlink, ?6/?7 ctime,
	 * ?8 parent (NULL: not a directory) */
	[CS_INODE_COPY] =
		"INSERT INTO inode(mode, uid, gid, nlink, size, rdev, nblocks,"
		" atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns,"
		" parent, target) SELECT ?2, ?3, ?4, ?5, size, rdev, 0,"
		" atime_s, atime_ns, mtime_s, mtime_ns, ?6, ?7, ?8, target"
		" FROM inode WHERE ino = ?1",
	/* ?3: the caller is root; else security.* (file capabilities,
	 * labels) and trusted.* stay behind, as setxattr(2) refuses
	 * them to others */
	[CS_XATTR_COPY] = "INSERT INTO xattr(ino, name, value)"
			  " SELECT ?2, name, value FROM xattr WHERE ino = ?1"
			  " AND (?3 OR (CAST(name AS TEXT) NOT GLOB 'security.*'"
			  " AND CAST(name AS TEXT) NOT GLOB 'trusted.*'))",
	[CS_INLINE_COPY] = "INSERT INTO inline_data(ino, data)"
			   " SELECT ?2, data FROM inline_data WHERE ino = ?1",
	[CS_LINK_ADD] = "UPDATE inode SET nlink = nlink + 1 WHERE ino = ?1",
};

struct clone_stmts {
	sqlite3_stmt *st[CS_COUNT];
};

static void stmts_free(struct clone_stmts *s)
{
	size_t i;

	for (i = 0; i < CS_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	memset(s, 0, sizeof(*s));
}

/* The statements a block clone uses (a tree clone uses them all):
 * preparing the others would be a tenth of a 1 GiB file's clone. */
#define CS_BLOCKS                                                           \
	(1u << CS_DIRTY_RANGE | 1u << CS_INLINE_ANY | 1u << CS_BLOCK_COPY |  \
	 1u << CS_PATCH_COPY | 1u << CS_BLOCK_REFS | 1u << CS_PATCH_REFS |   \
	 1u << CS_NBLOCKS | 1u << CS_SIZE)
#define CS_ALL ((1u << CS_COUNT) - 1)

/* Prepare the statements of mask (bits of enum clone_stmt). */
static int stmts_prepare(struct meta *m, struct clone_stmts *s,
			 unsigned mask)
{
	size_t i;
	int rc;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < CS_COUNT; i++) {
		if (!(mask & (1u << i)))
			continue;
		rc = meta_prepare(m, clone_sql[i], &s->st[i]);
		if (rc) {
			stmts_free(s);
			return rc;
		}
	}
	return 0;
}

/* Bind (ino, first, last) as ?1..?3 of st and run it. */
static int run_range(struct meta *m, sqlite3_stmt *st, uint64_t ino,
		     uint64_t first, uint64_t last)
{
	bind_u64(st, 1, ino);
	bind_u64(st, 2, first);
	bind_u64(st, 3, last);
	return meta_run(m, st);
}

/* 1 when statement st, bound to (ino, first, last), gives a row. */
static int any_range(struct meta *m, sqlite3_stmt *st, uint64_t ino,
		     uint64_t first, uint64_t last)
{
	int rc;

	bind_u64(st, 1, ino);
	bind_u64(st, 2, first);
	bind_u64(st, 3, last);
	rc = meta_step(m, st);
	sqlite3_reset(st);
	return rc;
}

/*
 * Copy the block and patch rows of src's blocks [first, last] to dst
 * from dfirst on (dst has no rows there), count the new references
 * (invariant 2) and dst's nblocks.  *copied: the block rows made.
 */
static int rows_copy(struct meta *m, struct clone_stmts *s, uint64_t src,
		     uint64_t first, uint64_t last, uint64_t dst,
		     uint64_t dfirst, uint64_t *copied)
{
	sqlite3_stmt *st = s->st[CS_BLOCK_COPY];
	uint64_t dlast = dfirst + (last - first);
	int64_t n;
	int rc;

	bind_u64(st, 4, dst);
	bind_u64(st, 5, dfirst);
	rc = run_range(m, st, src, first, last);
	if (rc)
		return rc;
	n = sqlite3_changes64(m->db);
	*copied = (uint64_t)n;
	if (n == 0)
		return 0; /* only holes: nothing has patches either */
	st = s->st[CS_PATCH_COPY];
	bind_u64(st, 4, dst);
	bind_u64(st, 5, dfirst);
	rc = run_range(m, st, src, first, last);
	if (!rc && sqlite3_changes64(m->db) > 0)
		rc = run_range(m, s->st[CS_PATCH_REFS], dst, dfirst, dlast);
	if (!rc)
		rc = run_range(m, s->st[CS_BLOCK_REFS], dst, dfirst, dlast);
	if (rc)
		return rc;
	st = s->st[CS_NBLOCKS];
	bind_u64(st, 1, dst);
	bind_i64(st, 2, n);
	return meta_run(m, st);
}

/* ---- blocks of one file into another (copy_file_range) ---- */

static int check_files(struct meta *m, uint64_t src, uint64_t dst,
		       struct meta_attr *sa, struct meta_attr *da)
{
	int rc = meta_inode_get_locked(m, src, sa);

	if (!rc)
		rc = meta_inode_get_locked(m, dst, da);
	if (rc)
		return rc;
	if (S_ISDIR(sa->mode) || S_ISDIR(da->mode))
		return -EISDIR;
	if (!S_ISREG(sa->mode) || !S_ISREG(da->mode))
		return -EINVAL;
	return 0;
}

static int clone_blocks_locked(struct meta *m, struct clone_stmts *s,
			       uint64_t src, uint64_t sfirst, uint64_t dst,
			       uint64_t dfirst, uint64_t n, uint64_t end,
			       const struct timespec *now)
{
	uint64_t slast = sfirst + n - 1, dlast = dfirst + n - 1, copied;
	struct meta_attr sa, da;
	sqlite3_stmt *st;
	int rc;

	rc = check_files(m, src, dst, &sa, &da);
	if (rc)
		return rc;
	/* dst's new size must cover the last block it gets (meta.h's
	 * invariant 5); src's blocks must be inside src */
	if (end <= dlast * m->block_size || end > INT64_MAX ||
	    slast >= meta_blocks_for(m, sa.size))
		return -EINVAL;
	if (src == dst && sfirst <= dlast && dfirst <= slast)
		return -EINVAL; /* invariant 3 */
	st = s->st[CS_INLINE_ANY];
	bind_u64(st, 1, src);
	bind_u64(st, 2, dst);
	rc = meta_step(m, st);
	sqlite3_reset(st);
	if (rc)
		return rc < 0 ? rc : -EOPNOTSUPP;
	rc = any_range(m, s->st[CS_DIRTY_RANGE], src, sfirst, slast);
	if (rc)
		return rc < 0 ? rc : -EAGAIN; /* invariant 1 */
	st = s->st[CS_SIZE];
	bind_u64(st, 1, dst);
	bind_u64(st, 2, end);
	bind_time(st, 3, now);
	rc = meta_run(m, st);
	if (!rc)
		rc = meta_blocks_drop_locked(m, dst, dfirst, dlast);
	if (!rc)
		rc = rows_copy(m, s, src, sfirst, slast, dst, dfirst, &copied);
	return rc;
}

int meta_clone_blocks(struct meta *m, uint64_t src, uint64_t sfirst,
		      uint64_t dst, uint64_t dfirst, uint64_t n, uint64_t end,
		      const struct timespec *now)
{
	struct timespec t = meta_now(now);
	struct clone_stmts s;
	int rc;

	if (n == 0)
		return 0;
	if (sfirst > INT64_MAX || dfirst > INT64_MAX ||
	    n > (uint64_t)INT64_MAX - MF_MAX(sfirst, dfirst))
		return -EINVAL;
	rc = meta_txn_begin(m, META_TXN_WRITE);
	if (rc)
		return rc;
	rc = stmts_prepare(m, &s, CS_BLOCKS);
	if (!rc) {
		rc = clone_blocks_locked(m, &s, src, sfirst, dst, dfirst, n,
					 end, &t);
		stmts_free(&s);
	}
	return meta_txn_end(m, rc);
}

/* ---- a tree (metafuse clone) ---- */

/* The inodes of the source tree with more than one name, and their
 * copies: a file linked twice inside the tree is linked twice in the
 * clone.  Open addressing on src. */
struct link_map {
	struct link_pair {
		uint64_t src, copy;
	} *slot;
	size_t cap, n;
};

static uint64_t *link_find(struct link_map *lm, uint64_t src)
{
	size_t i;

	if (!lm->cap)
		return NULL;
	for (i = (size_t)(src * 0x9e3779b97f4a7c15ULL) & (lm->cap - 1);
	     lm->slot[i].src; i = (i + 1) & (lm->cap - 1))
		if (lm->slot[i].src == src)
			return &lm->slot[i].copy;
	return NULL;
}

static int link_add(struct link_map *lm, uint64_t src, uint64_t copy)
{
	size_t i;

	if (2 * (lm->n + 1) > lm->cap) {
		struct link_map big = { NULL, lm->cap ? 2 * lm->cap : 64, 0 };

		big.slot = calloc(big.cap, sizeof(*big.slot));
		if (!big.slot)
			return -ENOMEM;
		for (i = 0; i < lm->cap; i++)
			if (lm->slot[i].src)
				link_add(&big, lm->slot[i].src,
					 lm->slot[i].copy);
		free(lm->slot);
		*lm = big;
	}
	for (i = (size_t)(src * 0x9e3779b97f4a7c15ULL) & (lm->cap - 1);
	     lm->slot[i].src; i = (i + 1) & (lm->cap - 1))
		;
	lm->slot[i].src = src;
	lm->slot[i].copy = copy;
	lm->n++;
	return 0;
}

/* Directories still to copy: (source, copy) pairs. */
struct dir_pair {
	uint64_t src, copy;
};

struct tree_clone {
	struct meta *m;
	struct clone_stmts s;
	const struct meta_caller *who;
	struct timespec now;
	struct link_map links;
	struct dir_pair *dirs; /* a stack */
	size_t ndirs, dirs_cap;
	uint64_t *dirty;       /* files with dirty blocks (invariant 1) */
	size_t dirty_max, ndirty;
	struct meta_clone_stats stats;
};

static bool in_group(const struct meta_caller *w, uint32_t gid)
{
	size_t i;

	if (gid == w->gid)
		return true;
	for (i = 0; i < w->ngroups; i++)
		if (w->groups[i] == gid)
			return true;
	return false;
}

bool meta_caller_may(const struct meta_caller *w, const struct meta_attr *a,
		     unsigned want)
{
	unsigned bits;

	if (w->uid == 0)
		return !(want & X_OK) || S_ISDIR(a->mode) ||
		       (a->mode & 0111);
	if (a->uid == w->uid)
		bits = (a->mode >> 6) & 7;
	else if (in_group(w, a->gid))
		bits = (a->mode >> 3) & 7;
	else
		bits = a->mode & 7;
	return (bits & want) == want;
}

/* Invariant 4: what the caller must be allowed on a source inode. */
static int may_copy(const struct tree_clone *tc, const struct meta_attr *a)
{
	uint32_t type = a->mode & S_IFMT;

	if (type == S_IFDIR)
		return meta_caller_may(tc->who, a, R_OK | X_OK) ? 0 : -EACCES;
	if (type == S_IFREG)
		return meta_caller_may(tc->who, a, R_OK) ? 0 : -EACCES;
	if ((type == S_IFCHR || type == S_IFBLK) && tc->who->uid != 0)
		return -EPERM;
	return 0;
}

/* The owner, group and mode of the copy of a (invariant 4). */
static void copy_owner(const struct tree_clone *tc, const struct meta_attr *a,
		       struct meta_attr *c)
{
	const struct meta_caller *w = tc->who;

	*c = *a;
	if (w->uid == 0)
		return;
	c->uid = w->uid;
	c->gid = in_group(w, a->gid) ? a->gid : w->gid;
	if (c->uid != a->uid || c->gid != a->gid)
		c->mode &= ~(uint32_t)(S_ISUID | S_ISGID);
}

/* Run clone statement id bound to (src, copy). */
static int run_pair(struct tree_clone *tc, int id, uint64_t src,
		    uint64_t copy)
{
	sqlite3_stmt *st = tc->s.st[id];

	bind_u64(st, 1, src);
	bind_u64(st, 2, copy);
	return meta_run(tc->m, st);
}

/* The content of regular file a (inline data or blocks) for copy. */
static int copy_content(struct tree_clone *tc, const struct meta_attr *a,
			uint64_t copy)
{
	uint64_t n = 0;
	int rc;

	rc = run_pair(tc, CS_INLINE_COPY, a->ino, copy);
	if (rc || a->nblocks == 0)
		return rc;
	rc = any_range(tc->m, tc->s.st[CS_DIRTY_RANGE], a->ino, 0, INT64_MAX);
	if (rc < 0)
		return rc;
	if (rc) {
		/* collect every such file, then fail (invariant 1) */
		if (tc->ndirty < tc->dirty_max)
			tc->dirty[tc->ndirty] = a->ino;
		tc->ndirty++;
		return 0;
	}
	/* the copy starts with nblocks 0: rows_copy() counts its rows */
	rc = rows_copy(tc->m, &tc->s, a->ino, 0, INT64_MAX - 1, copy, 0, &n);
	tc->stats.blocks += n;
	return rc;
}

static int dirs_push(struct tree_clone *tc, uint64_t src, uint64_t copy)
{
	if (tc->ndirs == tc->dirs_cap) {
		size_t cap = tc->dirs_cap ? 2 * tc->dirs_cap : 64;
		struct dir_pair *d = realloc(tc->dirs, cap * sizeof(*d));

		if (!d)
			return -ENOMEM;
		tc->dirs = d;
		tc->dirs_cap = cap;
	}
	tc->dirs[tc->ndirs].src = src;
	tc->dirs[tc->ndirs].copy = copy;
	tc->ndirs++;
	return 0;
}

/* A second name inside the tree for a file already copied: 1, 0 when
 * a is not such a file, or -errno. */
static int copy_link(struct tree_clone *tc, const struct meta_attr *a,
		     uint64_t parent, const void *name, size_t len)
{
	sqlite3_stmt *st = tc->s.st[CS_LINK_ADD];
	uint64_t *copy;
	int rc;

	if (S_ISDIR(a->mode) || a->nlink < 2)
		return 0;
	copy = link_find(&tc->links, a->ino);
	if (!copy)
		return 0;
	rc = meta_dentry_insert(tc->m, parent, name, len, *copy);
	if (rc)
		return rc;
	bind_u64(st, 1, *copy);
	rc = meta_run(tc->m, st);
	return rc ? rc : 1;
}

/* Copy inode a, named name in directory parent (a copy). */
static int copy_one(struct tree_clone *tc, const struct meta_attr *a,
		    uint64_t parent, const void *name, size_t len,
		    uint64_t *copy_out)
{
	sqlite3_stmt *st = tc->s.st[CS_INODE_COPY];
	struct meta_attr c;
	uint64_t copy;
	int rc;

	rc = copy_link(tc, a, parent, name, len);
	if (rc)
		return rc < 0 ? rc : 0;
	rc = may_copy(tc, a);
	if (rc)
		return rc;
	copy_owner(tc, a, &c);
	bind_u64(st, 1, a->ino);
	bind_i64(st, 2, c.mode);
	bind_i64(st, 3, c.uid);
	bind_i64(st, 4, c.gid);
	/* a directory's links: 2 + its subdirectories, all copied */
	bind_i64(st, 5, S_ISDIR(a->mode) ? a->nlink : 1);
	bind_time(st, 6, &tc->now);
	if (S_ISDIR(a->mode))
		bind_u64(st, 8, parent);
	else
		bind_null(st, 8);
	rc = meta_run(tc->m, st);
	if (rc)
		return rc;
	copy = (uint64_t)sqlite3_last_insert_rowid(tc->m->db);
	tc->stats.inodes++;
	rc = meta_dentry_insert(tc->m, parent, name, len, copy);
	if (!rc) {
		bind_i64(tc->s.st[CS_XATTR_COPY], 3, tc->who->uid == 0);
		rc = run_pair(tc, CS_XATTR_COPY, a->ino, copy);
	}
	if (!rc && S_ISREG(a->mode))
		rc = copy_content(tc, a, copy);
	if (!rc && S_ISDIR(a->mode))
		rc = dirs_push(tc, a->ino, copy);
	if (!rc && !S_ISDIR(a->mode) && a->nlink > 1)
		rc = link_add(&tc->links, a->ino, copy);
	if (!rc && copy_out)
		*copy_out = copy;
	return rc;
}

/* The entries of directory src, read whole before any is copied (the
 * copies go into the same table). */
struct child_list {
	struct meta_attr *a;
	size_t *name_off, *name_len;
	size_t n, cap;
	struct buf names;
};

static int children_read(struct tree_clone *tc, uint64_t src,
			 struct child_list *cl)
{
	sqlite3_stmt *st = tc->s.st[CS_CHILDREN];
	int rc;

	cl->n = 0;
	buf_reset(&cl->names);
	bind_u64(st, 1, src);
	while ((rc = meta_step(tc->m, st)) > 0) {
		size_t len = (size_t)sqlite3_column_bytes(st, 0);

		if (cl->n == cl->cap) {
			size_t cap = cl->cap ? 2 * cl->cap : 64;
			void *a = realloc(cl->a, cap * sizeof(*cl->a));
			void *o = a ? realloc(cl->name_off,
					      cap * sizeof(size_t)) : NULL;
			void *l = o ? realloc(cl->name_len,
					      cap * sizeof(size_t)) : NULL;

			if (a)
				cl->a = a;
			if (o)
				cl->name_off = o;
			if (!l) {
				rc = -ENOMEM;
				break;
			}
			cl->name_len = l;
			cl->cap = cap;
		}
		cl->name_off[cl->n] = cl->names.len;
		cl->name_len[cl->n] = len;
		rc = buf_append(&cl->names, sqlite3_column_blob(st, 0), len);
		if (rc)
			break;
		col_attr(st, 1, &cl->a[cl->n]);
		cl->n++;
	}
	sqlite3_reset(st);
	return rc;
}

/* Copy the entries of every directory on the stack, depth first. */
static int copy_dirs(struct tree_clone *tc)
{
	struct child_list cl = { .names = BUF_INIT };
	size_t i;
	int rc = 0;

	while (!rc && tc->ndirs > 0) {
		struct dir_pair d = tc->dirs[--tc->ndirs];

		rc = children_read(tc, d.src, &cl);
		for (i = 0; !rc && i < cl.n; i++)
			rc = copy_one(tc, &cl.a[i], d.copy,
				      cl.names.data + cl.name_off[i],
				      cl.name_len[i], NULL);
	}
	free(cl.a);
	free(cl.name_off);
	free(cl.name_len);
	buf_free(&cl.names);
	return rc;
}

/* The parent of directory ino. */
static int parent_of(struct tree_clone *tc, uint64_t ino, uint64_t *up)
{
	sqlite3_stmt *st = tc->s.st[CS_PARENT];
	int rc;

	bind_u64(st, 1, ino);
	rc = meta_step(tc->m, st);
	if (rc > 0)
		*up = col_u64(st, 0);
	sqlite3_reset(st);
	return rc > 0 ? 0 : rc == 0 ? -ENOENT : rc;
}

/* The new name's directory: writable and searchable, reachable by the
 * caller (every ancestor searchable), and not src or inside it. */
static int check_target(struct tree_clone *tc, const struct meta_attr *sa,
			uint64_t dparent, struct meta_attr *pa)
{
	struct meta_attr a;
	uint64_t ino = dparent;
	int rc, depth = 0;

	rc = meta_inode_get_locked(tc->m, dparent, pa);
	if (rc)
		return rc;
	if (!S_ISDIR(pa->mode))
		return -ENOTDIR;
	if (pa->nlink == 0)
		return -ENOENT;
	if (!meta_caller_may(tc->who, pa, W_OK | X_OK))
		return -EACCES;
	for (;;) {
		uint64_t up;

		if (ino == sa->ino)
			return -EINVAL; /* invariant 3 */
		rc = meta_inode_get_locked(tc->m, ino, &a);
		if (rc)
			return rc;
		if (!meta_caller_may(tc->who, &a, X_OK))
			return -EACCES;
		if (ino == META_ROOT_INO || ++depth > 100000)
			return 0;
		rc = parent_of(tc, ino, &up);
		if (rc)
			return rc;
		ino = up;
	}
}

static int clone_tree_locked(struct tree_clone *tc, uint64_t src,
			     uint64_t dparent, const char *name,
			     struct meta_attr *out)
{
	struct meta *m = tc->m;
	struct meta_attr sa, pa;
	size_t len = strnlen(name, META_NAME_MAX + 1);
	uint64_t copy = 0;
	sqlite3_stmt *st;
	int rc;

	if (len == 0 || memchr(name, '/', len) || !strcmp(name, ".") ||
	    !strcmp(name, ".."))
		return -EINVAL;
	if (len > META_NAME_MAX)
		return -ENAMETOOLONG;
	rc = meta_inode_get_locked(m, src, &sa);
	if (!rc && sa.nlink == 0)
		rc = -ENOENT;
	if (!rc)
		rc = check_target(tc, &sa, dparent, &pa);
	if (rc)
		return rc;
	st = m->st[ST_DENTRY_EXISTS];
	bind_u64(st, 1, dparent);
	bind_blob(st, 2, name, len);
	rc = meta_step(m, st);
	sqlite3_reset(st);
	if (rc)
		return rc < 0 ? rc : -EEXIST;
	rc = copy_one(tc, &sa, dparent, name, len, &copy);
	if (!rc)
		rc = copy_dirs(tc);
	if (!rc && tc->ndirty)
		return -EAGAIN;
	if (rc)
		return rc;
	st = m->st[ST_INODE_DIR_TOUCH];
	bind_u64(st, 1, dparent);
	bind_i64(st, 2, S_ISDIR(sa.mode) ? 1 : 0);
	bind_time(st, 3, &tc->now);
	rc = meta_run(m, st);
	if (!rc && out)
		rc = meta_inode_get_locked(m, copy, out);
	return rc;
}

int meta_clone_tree(struct meta *m, uint64_t src, uint64_t dparent,
		    const char *name, const struct meta_caller *who,
		    const struct timespec *now, struct meta_attr *out,
		    struct meta_clone_stats *stats, uint64_t *dirty,
		    size_t dirty_max, size_t *ndirty)
{
	struct tree_clone tc;
	int rc;

	memset(&tc, 0, sizeof(tc));
	tc.m = m;
	tc.who = who;
	tc.now = meta_now(now);
	tc.dirty = dirty;
	tc.dirty_max = dirty ? dirty_max : 0;
	rc = meta_txn_begin(m, META_TXN_WRITE);
	if (rc)
		return rc;
	rc = stmts_prepare(m, &tc.s, CS_ALL);
	if (!rc) {
		rc = clone_tree_locked(&tc, src, dparent, name, out);
		stmts_free(&tc.s);
	}
	rc = meta_txn_end(m, rc);
	free(tc.links.slot);
	free(tc.dirs);
	if (ndirty)
		*ndirty = tc.ndirty;
	if (stats)
		*stats = rc ? (struct meta_clone_stats){ 0 } : tc.stats;
	return rc;
}
