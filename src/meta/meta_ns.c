/*
 * meta_ns.c - the namespace: names (lookup, mknod, link, unlink, rmdir,
 * rename), attributes (getattr, setattr, atime, readlink), readdir, the
 * purge of deleted inodes, and xattrs.
 *
 * Purpose
 *   The POSIX semantics of directories, links and attributes on the
 *   tables inode, dentry and xattr.  Each public function checks the
 *   POSIX errors, then changes its rows in one transaction of meta.c;
 *   the block rows a truncate or a purge removes are meta_block.c's
 *   (meta_blocks_drop_locked()).
 *
 * Data model (the tables are in meta.c's data model)
 *   inode    one row per inode; parent: the directory holding a
 *            directory's only entry, target: a symlink's target
 *   dentry   (id, parent, name, ino); readdir cookie = id + 2, since "."
 *            and ".." are 1 and 2
 *   xattr    (ino, name, value)
 *
 * Invariants (besides those of meta.h and meta.c)
 *   1. (parent, name) is unique because every insert and move checks it
 *      first (dentry_exists(), dentry_find()): the schema has no UNIQUE
 *      constraint (see meta.c).
 *   2. A parent's nlink changes only in the statement that sets its
 *      mtime and ctime (dir_touch()), by the number of subdirectories it
 *      gains or loses; a removed directory's own drops to 0.
 *   3. A removed directory (nlink 0) takes no new entries, an unlinked
 *      inode no new name; an inode stays, at nlink 0, until
 *      meta_inode_purge(), which refuses one with links (-EBUSY).
 *   4. Names are 1..META_NAME_MAX bytes; a new name has no '/' and is not
 *      "." or "..".  xattr names are 1..META_XATTR_NAME_MAX bytes.
 *   5. Callbacks (readdir, orphans) run with the lock released: rows are
 *      read in batches and the walk resumes after the last key seen.
 */
#include "util/compat.h"

#include <sys/stat.h>

#include <sqlite3.h>

#include "meta/meta_int.h"
#include "util/log.h"

#define META_SYMLINK_MAX 4095		/* PATH_MAX - 1 */
#define META_XATTR_NAME_MAX 255
#define META_XATTR_SIZE_MAX 65536
#define META_LINK_MAX (UINT32_MAX - 1)
#define META_MAX_DEPTH 1000000		/* parent-chain walk bound */
#define RD_BATCH 64			/* readdir entries per lock */

/* ---- namespace helpers (lock held) ---- */

/* A name to look up: -EINVAL when empty, -ENAMETOOLONG past the limit. */
static int name_len(const char *name, size_t *len)
{
	size_t n;

	if (!name || !*name)
		return -EINVAL;
	n = strnlen(name, META_NAME_MAX + 1);
	if (n > META_NAME_MAX)
		return -ENAMETOOLONG;
	*len = n;
	return 0;
}

/* A name to create: also no '/', ".", "..". */
static int new_name_len(const char *name, size_t *len)
{
	int rc = name_len(name, len);

	if (rc)
		return rc;
	if (memchr(name, '/', *len) || !strcmp(name, ".") ||
	    !strcmp(name, ".."))
		return -EINVAL;
	return 0;
}

static int inode_read(struct meta *m, uint64_t ino, struct meta_attr *a)
{
	sqlite3_stmt *st = m->st[ST_INODE_GET];
	int rc;

	bind_u64(st, 1, ino);
	rc = meta_step(m, st);
	if (rc > 0)
		col_attr(st, 0, a);
	sqlite3_reset(st);
	return rc > 0 ? 0 : rc == 0 ? -ENOENT : rc;
}

int meta_inode_get_locked(struct meta *m, uint64_t ino,
			  struct meta_attr *a)
{
	int rc;

	if (meta_acache_get(m, ino, a)) {
#ifndef NDEBUG
		struct meta_attr row;

		assert(inode_read(m, ino, &row) == 0 &&
		       !memcmp(&row, a, sizeof(row)));
#endif
		return 0;
	}
	rc = inode_read(m, ino, a);
	if (!rc)
		meta_acache_put(m, a);
	return rc;
}

/*
 * Run st, which changes inode a->ino's row from *a (the row as it is) to
 * *after, and keep *after in the cache: the kernel asks for a changed
 * directory's attributes before its next change, and for a deleted
 * file's when it forgets it.  *a comes from the cache, where it usually
 * is (the request before read it), and the new row is computed rather
 * than read back: one statement per change instead of two (debug builds
 * compare the next hit with the row).
 */
static int inode_change(struct meta *m, sqlite3_stmt *st,
			const struct meta_attr *after)
{
	int rc = meta_run(m, st);

	if (!rc)
		meta_acache_put(m, after);
	return rc;
}

/* -ENOENT when missing (or, with live, removed), -ENOTDIR. */
static int dir_get(struct meta *m, uint64_t ino, struct meta_attr *a,
		   bool live)
{
	int rc = meta_inode_get_locked(m, ino, a);

	if (rc)
		return rc;
	if (!S_ISDIR(a->mode))
		return -ENOTDIR;
	if (live && a->nlink == 0)
		return -ENOENT;
	return 0;
}

/* The error for a name missing from parent: -ENOENT or -ENOTDIR. */
static int missing_entry(struct meta *m, uint64_t parent)
{
	struct meta_attr pa;
	int rc = dir_get(m, parent, &pa, false);

	return rc ? rc : -ENOENT;
}

static int dentry_find(struct meta *m, uint64_t parent, const char *name,
		       size_t len, int64_t *id, struct meta_attr *a)
{
	sqlite3_stmt *st = m->st[ST_DENTRY_FIND];
	int rc;

	bind_u64(st, 1, parent);
	bind_blob(st, 2, name, len);
	rc = meta_step(m, st);
	if (rc > 0) {
		*id = sqlite3_column_int64(st, 0);
		col_attr(st, 1, a);
		meta_acache_put(m, a);
	}
	sqlite3_reset(st);
	return rc > 0 ? 0 : rc == 0 ? -ENOENT : rc;
}

/* 1 if parent holds name, 0 if not, or -errno. */
static int dentry_exists(struct meta *m, uint64_t parent, const char *name,
			 size_t len)
{
	sqlite3_stmt *st = m->st[ST_DENTRY_EXISTS];
	int rc;

	bind_u64(st, 1, parent);
	bind_blob(st, 2, name, len);
	rc = meta_step(m, st);
	sqlite3_reset(st);
	return rc;
}

int meta_dentry_insert(struct meta *m, uint64_t parent, const void *name,
		       size_t len, uint64_t ino)
{
	sqlite3_stmt *st = m->st[ST_DENTRY_INSERT];

	bind_u64(st, 1, parent);
	bind_blob(st, 2, name, len);
	bind_u64(st, 3, ino);
	return meta_run(m, st);
}

static int dentry_delete(struct meta *m, int64_t id)
{
	sqlite3_stmt *st = m->st[ST_DENTRY_DELETE];

	bind_i64(st, 1, id);
	return meta_run(m, st);
}

/* 1 if dir has at least one entry, 0 if empty, or -errno. */
static int dir_has_entries(struct meta *m, uint64_t dir)
{
	sqlite3_stmt *st = m->st[ST_DENTRY_ANY];
	int rc;

	bind_u64(st, 1, dir);
	rc = meta_step(m, st);
	sqlite3_reset(st);
	return rc;
}

/* A directory's content changed: mtime = ctime = now, nlink += delta. */
static int dir_touch(struct meta *m, uint64_t dir, int delta,
		     const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_INODE_DIR_TOUCH];
	struct meta_attr a;
	int rc = meta_inode_get_locked(m, dir, &a);

	if (rc)
		return rc;
	bind_u64(st, 1, dir);
	bind_i64(st, 2, delta);
	bind_time(st, 3, now);
	a.nlink = (uint32_t)((int64_t)a.nlink + delta);
	a.mtime = a.ctime = *now;
	return inode_change(m, st, &a);
}

static int set_nlink(struct meta *m, uint64_t ino, uint32_t nlink,
		     const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_INODE_NLINK];
	struct meta_attr a;
	int rc = meta_inode_get_locked(m, ino, &a);

	if (rc)
		return rc;
	bind_u64(st, 1, ino);
	bind_i64(st, 2, nlink);
	bind_time(st, 3, now);
	a.nlink = nlink;
	a.ctime = *now;
	return inode_change(m, st, &a);
}

/* An inode got a new name: ctime = now; parent column for directories. */
static int set_moved(struct meta *m, const struct meta_attr *a,
		     uint64_t newparent, const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_INODE_MOVED];

	bind_u64(st, 1, a->ino);
	bind_time(st, 2, now);
	if (S_ISDIR(a->mode))
		bind_u64(st, 4, newparent);
	else
		bind_null(st, 4);
	return meta_run(m, st);
}

/* ---- namespace ---- */

int meta_getattr(struct meta *m, uint64_t ino, struct meta_attr *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, meta_inode_get_locked(m, ino, out));
}

int meta_getmode(struct meta *m, uint64_t ino, uint32_t *mode)
{
	/* asked before every write of a user without CAP_FSETID (fs_kill.c):
	 * keep it from ending the batching of writes, which changes no mode */
	int rc = meta_txn_begin_pend(m, META_TXN_NONE, META_PEND_IGNORE);
	struct meta_attr a;

	if (rc)
		return rc;
	rc = meta_inode_get_locked(m, ino, &a);
	if (rc == 0)
		*mode = a.mode;
	return meta_txn_end(m, rc);
}

static int lookup_locked(struct meta *m, uint64_t parent, const char *name,
			 struct meta_attr *out)
{
	struct meta_attr pa;
	sqlite3_stmt *st;
	size_t len;
	int64_t id;
	int rc;

	rc = name_len(name, &len);
	if (rc)
		return rc;
	/* The kernel asks for these only with export support (NFS). */
	if (!strcmp(name, ".") || !strcmp(name, "..")) {
		rc = dir_get(m, parent, &pa, false);
		if (rc)
			return rc;
		if (name[1] == 0) {
			*out = pa;
			return 0;
		}
		st = m->st[ST_INODE_PARENT];
		bind_u64(st, 1, parent);
		rc = meta_step(m, st);
		if (rc > 0)
			parent = col_u64(st, 1);
		sqlite3_reset(st);
		if (rc < 0)
			return rc;
		return meta_inode_get_locked(m, parent, out);
	}
	rc = dentry_find(m, parent, name, len, &id, out);
	if (rc == -ENOENT)
		return missing_entry(m, parent);
	return rc;
}

int meta_lookup(struct meta *m, uint64_t parent, const char *name,
		struct meta_attr *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, lookup_locked(m, parent, name, out));
}

static bool valid_type(uint32_t type)
{
	switch (type) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFCHR:
	case S_IFBLK:
		return true;
	default:
		return false;
	}
}

/* A symlink's target: its length into *tlen (0 for other types), or
 * -EINVAL, -ENOENT (empty), -ENAMETOOLONG. */
static int target_len(uint32_t type, const char *target, size_t *tlen)
{
	*tlen = 0;
	if (type != S_IFLNK)
		return 0;
	if (!target)
		return -EINVAL;
	*tlen = strnlen(target, META_SYMLINK_MAX + 1);
	if (*tlen == 0)
		return -ENOENT;
	if (*tlen > META_SYMLINK_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/* Insert the inode a describes (a->ino is set from the new row); parent
 * is recorded for a directory, target for a symlink. */
static int inode_insert(struct meta *m, struct meta_attr *a,
			uint64_t parent, const char *target, size_t tlen,
			const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_INODE_INSERT];
	uint32_t type = a->mode & S_IFMT;
	int rc;

	bind_i64(st, 1, a->mode);
	bind_i64(st, 2, a->uid);
	bind_i64(st, 3, a->gid);
	bind_i64(st, 4, a->nlink);
	bind_u64(st, 5, a->size);
	bind_u64(st, 6, a->rdev);
	bind_time(st, 7, now);
	if (type == S_IFDIR)
		bind_u64(st, 9, parent);
	else
		bind_null(st, 9);
	if (type == S_IFLNK)
		bind_blob(st, 10, target, tlen);
	else
		bind_null(st, 10);
	rc = meta_run(m, st);
	if (rc)
		return rc;
	a->ino = (uint64_t)sqlite3_last_insert_rowid(m->db);
	return 0;
}

int meta_mknod_locked(struct meta *m, uint64_t parent, const char *name,
		      uint32_t mode, uint64_t rdev, uint32_t uid,
		      uint32_t gid, const char *target,
		      const struct timespec *now, struct meta_attr *out)
{
	uint32_t type = mode & S_IFMT;
	struct meta_attr pa, a;
	size_t len, tlen;
	int rc;

	if (!valid_type(type))
		return -EINVAL;
	rc = new_name_len(name, &len);
	if (!rc)
		rc = target_len(type, target, &tlen);
	if (rc)
		return rc;
	rc = dir_get(m, parent, &pa, true);
	if (rc)
		return rc;
	rc = dentry_exists(m, parent, name, len);
	if (rc)
		return rc < 0 ? rc : -EEXIST;
	if (type == S_IFDIR && pa.nlink >= META_LINK_MAX)
		return -EMLINK;
	if (pa.mode & S_ISGID) {
		gid = pa.gid;
		if (type == S_IFDIR)
			mode |= S_ISGID;
	}

	memset(&a, 0, sizeof(a));
	a.mode = type | (mode & 07777);
	a.uid = uid;
	a.gid = gid;
	a.nlink = type == S_IFDIR ? 2 : 1;
	a.size = tlen;
	a.rdev = (type == S_IFCHR || type == S_IFBLK) ? rdev : 0;
	a.atime = a.mtime = a.ctime = *now;
	rc = inode_insert(m, &a, parent, target, tlen, now);
	if (!rc)
		rc = meta_dentry_insert(m, parent, name, len, a.ino);
	if (!rc)
		rc = dir_touch(m, parent, type == S_IFDIR, now);
	if (!rc && out)
		*out = a;
	return rc;
}

int meta_mknod(struct meta *m, uint64_t parent, const char *name,
	       uint32_t mode, uint64_t rdev, uint32_t uid, uint32_t gid,
	       const char *target, const struct timespec *now,
	       struct meta_attr *out)
{
	struct timespec t = meta_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = meta_mknod_locked(m, parent, name, mode, rdev, uid, gid, target,
			       &t, out);
	return meta_txn_end(m, rc);
}

static int link_locked(struct meta *m, uint64_t ino, uint64_t newparent,
		       const char *newname, const struct timespec *now,
		       struct meta_attr *out)
{
	struct meta_attr a, pa;
	size_t len;
	int rc;

	rc = new_name_len(newname, &len);
	if (rc)
		return rc;
	rc = meta_inode_get_locked(m, ino, &a);
	if (rc)
		return rc;
	if (S_ISDIR(a.mode))
		return -EPERM;
	/* As the kernel: no new name for an unlinked inode. */
	if (a.nlink == 0)
		return -ENOENT;
	if (a.nlink >= META_LINK_MAX)
		return -EMLINK;
	rc = dir_get(m, newparent, &pa, true);
	if (rc)
		return rc;
	rc = dentry_exists(m, newparent, newname, len);
	if (rc)
		return rc < 0 ? rc : -EEXIST;
	rc = meta_dentry_insert(m, newparent, newname, len, ino);
	if (!rc)
		rc = set_nlink(m, ino, a.nlink + 1, now);
	if (!rc)
		rc = dir_touch(m, newparent, 0, now);
	if (!rc && out) {
		a.nlink++;
		a.ctime = *now;
		*out = a;
	}
	return rc;
}

int meta_link(struct meta *m, uint64_t ino, uint64_t newparent,
	      const char *newname, const struct timespec *now,
	      struct meta_attr *out)
{
	struct timespec t = meta_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = link_locked(m, ino, newparent, newname, &t, out);
	return meta_txn_end(m, rc);
}

static int unlink_locked(struct meta *m, uint64_t parent, const char *name,
			 const struct timespec *now, uint64_t *ino_out,
			 bool dir)
{
	struct meta_attr a;
	size_t len;
	int64_t id;
	int rc;

	rc = name_len(name, &len);
	if (rc)
		return rc;
	rc = dentry_find(m, parent, name, len, &id, &a);
	if (rc == -ENOENT)
		return missing_entry(m, parent);
	if (rc)
		return rc;
	if (!dir && S_ISDIR(a.mode))
		return -EISDIR;
	if (dir) {
		if (!S_ISDIR(a.mode))
			return -ENOTDIR;
		rc = dir_has_entries(m, a.ino);
		if (rc)
			return rc < 0 ? rc : -ENOTEMPTY;
	}
	rc = dentry_delete(m, id);
	if (!rc)
		rc = set_nlink(m, a.ino, dir || !a.nlink ? 0 : a.nlink - 1,
			       now);
	if (!rc)
		rc = dir_touch(m, parent, dir ? -1 : 0, now);
	if (!rc && ino_out)
		*ino_out = a.ino;
	return rc;
}

int meta_unlink(struct meta *m, uint64_t parent, const char *name,
		const struct timespec *now, uint64_t *ino_out)
{
	struct timespec t = meta_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = unlink_locked(m, parent, name, &t, ino_out, false);
	return meta_txn_end(m, rc);
}

int meta_rmdir(struct meta *m, uint64_t parent, const char *name,
	       const struct timespec *now, uint64_t *ino_out)
{
	struct timespec t = meta_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = unlink_locked(m, parent, name, &t, ino_out, true);
	return meta_txn_end(m, rc);
}

/*
 * -EINVAL if directory dir is start or one of its ancestors.  Walks the
 * inode.parent chain from start up to the root: O(depth).
 */
static int check_not_ancestor(struct meta *m, uint64_t dir, uint64_t start)
{
	sqlite3_stmt *st = m->st[ST_INODE_PARENT];
	uint64_t x = start, up = 0;
	unsigned long steps;
	uint32_t mode = 0;
	int rc;

	for (steps = 0; steps < META_MAX_DEPTH; steps++) {
		if (x == dir)
			return -EINVAL;
		if (x == META_ROOT_INO)
			return 0;
		bind_u64(st, 1, x);
		rc = meta_step(m, st);
		if (rc > 0) {
			mode = (uint32_t)col_u64(st, 0);
			up = col_u64(st, 1);
		}
		sqlite3_reset(st);
		if (rc < 0)
			return rc;
		if (rc == 0 || !S_ISDIR(mode))
			break;
		x = up;
	}
	log_error("meta: broken parent chain above directory %" PRIu64
		  " (at %" PRIu64 "); run fsck", start, x);
	return -EIO;
}

struct rename_side {
	uint64_t dir;
	int64_t id;
	struct meta_attr a;
	int delta; /* change of dir's nlink */
};

static int rename_exchange(struct meta *m, struct rename_side *s,
			   struct rename_side *d, const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_DENTRY_SET_INO];
	int rc;

	bind_i64(st, 1, s->id);
	bind_u64(st, 2, d->a.ino);
	rc = meta_run(m, st);
	if (rc)
		return rc;
	bind_i64(st, 1, d->id);
	bind_u64(st, 2, s->a.ino);
	rc = meta_run(m, st);
	if (!rc)
		rc = set_moved(m, &s->a, d->dir, now);
	if (!rc)
		rc = set_moved(m, &d->a, s->dir, now);
	if (s->dir != d->dir) {
		if (S_ISDIR(s->a.mode)) {
			s->delta--;
			d->delta++;
		}
		if (S_ISDIR(d->a.mode)) {
			d->delta--;
			s->delta++;
		}
	}
	return rc;
}

static int rename_replace(struct meta *m, struct rename_side *s,
			  struct rename_side *d, bool have_dst,
			  const char *newname, size_t newlen,
			  const struct timespec *now, uint64_t *replaced)
{
	sqlite3_stmt *st;
	int rc;

	if (have_dst) {
		rc = dentry_delete(m, d->id);
		if (!rc && S_ISDIR(d->a.mode)) {
			rc = set_nlink(m, d->a.ino, 0, now);
			d->delta--;
		} else if (!rc) {
			rc = set_nlink(m, d->a.ino,
				       d->a.nlink ? d->a.nlink - 1 : 0, now);
		}
		if (rc)
			return rc;
		*replaced = d->a.ino;
	}
	st = m->st[ST_DENTRY_MOVE];
	bind_i64(st, 1, s->id);
	bind_u64(st, 2, d->dir);
	bind_blob(st, 3, newname, newlen);
	rc = meta_run(m, st);
	if (!rc)
		rc = set_moved(m, &s->a, d->dir, now);
	if (S_ISDIR(s->a.mode) && s->dir != d->dir) {
		s->delta--;
		d->delta++;
	}
	return rc;
}

/*
 * The errors of rename(2) once both sides are found (d->a only when
 * have_dst): a directory moved into its own subtree, a type mismatch, a
 * non-empty target directory, a full link count.  npa: the attributes of
 * the new parent.
 */
static int rename_check(struct meta *m, const struct rename_side *s,
			const struct rename_side *d, bool have_dst,
			unsigned flags, const struct meta_attr *npa)
{
	bool sdir = S_ISDIR(s->a.mode);
	bool ddir = have_dst && S_ISDIR(d->a.mode);
	int rc;

	if (s->dir != d->dir) {
		if (sdir) {
			rc = check_not_ancestor(m, s->a.ino, d->dir);
			if (rc)
				return rc;
		}
		if (ddir && (flags & META_RENAME_EXCHANGE)) {
			rc = check_not_ancestor(m, d->a.ino, s->dir);
			if (rc)
				return rc;
		}
	}
	if (have_dst && !(flags & META_RENAME_EXCHANGE)) {
		if (sdir && !ddir)
			return -ENOTDIR;
		if (!sdir && ddir)
			return -EISDIR;
		if (ddir) {
			rc = dir_has_entries(m, d->a.ino);
			if (rc)
				return rc < 0 ? rc : -ENOTEMPTY;
		}
	}
	if (sdir && !ddir && s->dir != d->dir &&
	    npa->nlink >= META_LINK_MAX)
		return -EMLINK;
	return 0;
}

/* Both parents' mtime and ctime, and the link counts the move changed. */
static int rename_touch(struct meta *m, const struct rename_side *s,
			const struct rename_side *d,
			const struct timespec *now)
{
	int rc;

	if (s->dir == d->dir)
		return dir_touch(m, s->dir, s->delta + d->delta, now);
	rc = dir_touch(m, s->dir, s->delta, now);
	if (!rc)
		rc = dir_touch(m, d->dir, d->delta, now);
	return rc;
}

static int rename_locked(struct meta *m, uint64_t parent, const char *name,
			 uint64_t newparent, const char *newname,
			 unsigned flags, const struct timespec *now,
			 uint64_t *replaced)
{
	const unsigned both = META_RENAME_NOREPLACE | META_RENAME_EXCHANGE;
	struct rename_side s = { .dir = parent }, d = { .dir = newparent };
	struct meta_attr npa;
	size_t len, newlen;
	bool have_dst;
	int rc;

	if ((flags & ~both) || (flags & both) == both)
		return -EINVAL;
	rc = name_len(name, &len);
	if (!rc)
		rc = new_name_len(newname, &newlen);
	if (rc)
		return rc;
	rc = dentry_find(m, parent, name, len, &s.id, &s.a);
	if (rc == -ENOENT)
		return missing_entry(m, parent);
	if (rc)
		return rc;
	rc = dir_get(m, newparent, &npa, true);
	if (rc)
		return rc;
	rc = dentry_find(m, newparent, newname, newlen, &d.id, &d.a);
	if (rc && rc != -ENOENT)
		return rc;
	have_dst = rc == 0;
	if (have_dst && (flags & META_RENAME_NOREPLACE))
		return -EEXIST;
	if (!have_dst && (flags & META_RENAME_EXCHANGE))
		return -ENOENT;
	if (have_dst && d.a.ino == s.a.ino)
		return 0;
	rc = rename_check(m, &s, &d, have_dst, flags, &npa);
	if (rc)
		return rc;

	if (flags & META_RENAME_EXCHANGE)
		rc = rename_exchange(m, &s, &d, now);
	else
		rc = rename_replace(m, &s, &d, have_dst, newname, newlen, now,
				    replaced);
	return rc ? rc : rename_touch(m, &s, &d, now);
}

int meta_rename(struct meta *m, uint64_t parent, const char *name,
		uint64_t newparent, const char *newname, unsigned flags,
		const struct timespec *now, uint64_t *replaced_ino)
{
	struct timespec t = meta_now(now);
	uint64_t replaced = 0;
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = rename_locked(m, parent, name, newparent, newname, flags, &t,
			   &replaced);
	rc = meta_txn_end(m, rc);
	if (replaced_ino)
		*replaced_ino = rc ? 0 : replaced;
	return rc;
}

static int inode_put(struct meta *m, const struct meta_attr *a)
{
	sqlite3_stmt *st = m->st[ST_INODE_PUT];

	bind_u64(st, 1, a->ino);
	bind_i64(st, 2, a->mode);
	bind_i64(st, 3, a->uid);
	bind_i64(st, 4, a->gid);
	bind_u64(st, 5, a->size);
	bind_time(st, 6, &a->atime);
	bind_time(st, 8, &a->mtime);
	bind_time(st, 10, &a->ctime);
	return meta_run(m, st);
}

static int setattr_locked(struct meta *m, uint64_t ino,
			  const struct meta_attr *in, unsigned to_set,
			  const struct timespec *now, struct meta_attr *out)
{
	const unsigned all = META_SET_MODE | META_SET_UID | META_SET_GID |
			     META_SET_SIZE | META_SET_ATIME | META_SET_MTIME |
			     META_SET_CTIME;
	struct meta_attr a;
	int rc;

	if (to_set & ~all)
		return -EINVAL;
	rc = meta_inode_get_locked(m, ino, &a);
	if (rc)
		return rc;
	if (to_set & META_SET_SIZE) {
		if (S_ISDIR(a.mode))
			return -EISDIR;
		if (!S_ISREG(a.mode))
			return -EINVAL;
		if (in->size > INT64_MAX)
			return -EFBIG;
		if (in->size < a.size) {
			rc = meta_blocks_drop_locked(
				m, ino, meta_blocks_for(m, in->size),
				UINT64_MAX);
			if (rc)
				return rc;
		}
		a.size = in->size;
	}
	if (to_set & META_SET_MODE)
		a.mode = (a.mode & S_IFMT) | (in->mode & 07777);
	if (to_set & META_SET_UID)
		a.uid = in->uid;
	if (to_set & META_SET_GID)
		a.gid = in->gid;
	if (to_set & META_SET_ATIME)
		a.atime = in->atime;
	if (to_set & META_SET_MTIME)
		a.mtime = in->mtime;
	if (to_set & META_SET_CTIME)
		a.ctime = in->ctime;
	else if (to_set)
		a.ctime = *now;
	rc = inode_put(m, &a);
	if (!rc && out && (to_set & META_SET_SIZE))
		/* nblocks may have changed */
		rc = meta_inode_get_locked(m, ino, out);
	else if (!rc && out)
		*out = a; /* what inode_put() wrote */
	return rc;
}

int meta_setattr(struct meta *m, uint64_t ino, const struct meta_attr *in,
		 unsigned to_set, const struct timespec *now,
		 struct meta_attr *out)
{
	struct timespec t = meta_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = setattr_locked(m, ino, in, to_set, &t, out);
	return meta_txn_end(m, rc);
}


/* ---- atime, readlink, readdir, purge ---- */

static int ts_cmp(const struct timespec *a, const struct timespec *b)
{
	if (a->tv_sec != b->tv_sec)
		return a->tv_sec < b->tv_sec ? -1 : 1;
	if (a->tv_nsec != b->tv_nsec)
		return a->tv_nsec < b->tv_nsec ? -1 : 1;
	return 0;
}

bool meta_atime_due(const struct meta_attr *a, const struct timespec *now)
{
	return ts_cmp(&a->atime, &a->mtime) <= 0 ||
	       ts_cmp(&a->atime, &a->ctime) <= 0 ||
	       (int64_t)now->tv_sec - (int64_t)a->atime.tv_sec > 24 * 3600;
}

static int touch_atime_locked(struct meta *m, uint64_t ino,
			      const struct timespec *now)
{
	sqlite3_stmt *st;
	struct meta_attr a;
	int rc;

	rc = meta_inode_get_locked(m, ino, &a);
	if (rc)
		return rc;
	if (!meta_atime_due(&a, now))
		return 0;
	st = m->st[ST_INODE_ATIME];
	bind_u64(st, 1, ino);
	bind_time(st, 2, now);
	return meta_run(m, st);
}

int meta_touch_atime(struct meta *m, uint64_t ino, const struct timespec *now)
{
	struct timespec t = meta_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	return meta_txn_end(m, touch_atime_locked(m, ino, &t));
}

static int readlink_locked(struct meta *m, uint64_t ino, struct buf *out)
{
	sqlite3_stmt *st = m->st[ST_INODE_TARGET];
	int rc;

	bind_u64(st, 1, ino);
	rc = meta_step(m, st);
	if (rc > 0) {
		if (S_ISLNK((uint32_t)col_u64(st, 0)))
			rc = buf_append(out, sqlite3_column_blob(st, 1),
					(size_t)sqlite3_column_bytes(st, 1));
		else
			rc = -EINVAL;
	} else if (rc == 0) {
		rc = -ENOENT;
	}
	sqlite3_reset(st);
	return rc;
}

int meta_readlink(struct meta *m, uint64_t ino, struct buf *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, readlink_locked(m, ino, out));
}

struct rd_entry {
	struct meta_attr attr;
	uint64_t cookie;
	char name[META_NAME_MAX + 1];
};

/* Up to RD_BATCH entries of dir with id > after into ents. */
static int readdir_batch(struct meta *m, uint64_t dir, int64_t after,
			 struct rd_entry *ents, size_t *n)
{
	sqlite3_stmt *st = m->st[ST_READDIR];
	struct rd_entry *e;
	size_t len;
	int rc;

	*n = 0;
	bind_u64(st, 1, dir);
	bind_i64(st, 2, after);
	bind_i64(st, 3, RD_BATCH);
	while ((rc = meta_step(m, st)) > 0) {
		e = &ents[(*n)++];
		e->cookie = col_u64(st, 0) + 2;
		len = (size_t)sqlite3_column_bytes(st, 1);
		len = MF_MIN(len, (size_t)META_NAME_MAX);
		if (len)
			memcpy(e->name, sqlite3_column_blob(st, 1), len);
		e->name[len] = 0;
		col_attr(st, 2, &e->attr);
	}
	sqlite3_reset(st);
	return rc;
}

int meta_readdir(struct meta *m, uint64_t dir, uint64_t off,
		 meta_readdir_cb cb, void *arg)
{
	struct rd_entry *ents;
	struct meta_attr a;
	bool first = true;
	int64_t after;
	size_t n = 0, i;
	int rc;

	/* Cookies 1 and 2 are "." and ".."; entry id k has cookie k + 2. */
	if (off < 2)
		after = 0;
	else if (off - 2 > INT64_MAX)
		after = INT64_MAX;
	else
		after = (int64_t)(off - 2);
	ents = malloc(RD_BATCH * sizeof(*ents));
	if (!ents)
		return -ENOMEM;
	for (;;) {
		rc = meta_txn_begin(m, META_TXN_NONE);
		if (rc)
			break;
		if (first)
			rc = dir_get(m, dir, &a, false);
		if (!rc)
			rc = readdir_batch(m, dir, after, ents, &n);
		rc = meta_txn_end(m, rc);
		if (rc)
			break;
		first = false;
		for (i = 0; i < n; i++)
			if (cb(ents[i].name, &ents[i].attr, ents[i].cookie,
			       arg))
				goto out_free_ents;
		if (n < RD_BATCH)
			break;
		after = (int64_t)(ents[n - 1].cookie - 2);
	}
out_free_ents:
	free(ents);
	return rc;
}

static int parent_locked(struct meta *m, uint64_t dir, uint64_t *parent)
{
	sqlite3_stmt *st = m->st[ST_INODE_PARENT];
	int rc;

	bind_u64(st, 1, dir);
	rc = meta_step(m, st);
	if (rc > 0) {
		if (S_ISDIR((uint32_t)col_u64(st, 0))) {
			*parent = col_u64(st, 1);
			rc = 0;
		} else {
			rc = -ENOTDIR;
		}
	} else if (rc == 0) {
		rc = -ENOENT;
	}
	sqlite3_reset(st);
	return rc;
}

int meta_parent(struct meta *m, uint64_t dir, uint64_t *parent)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, parent_locked(m, dir, parent));
}

int meta_last_cookie(struct meta *m, uint64_t *cookie)
{
	sqlite3_stmt *st;
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	st = m->st[ST_LAST_COOKIE];
	rc = meta_step(m, st);
	*cookie = rc == 1 ? col_u64(st, 0) + 2 : 2;
	sqlite3_reset(st);
	return meta_txn_end(m, rc < 0 ? rc : 0);
}

static int purge_locked(struct meta *m, uint64_t ino)
{
	struct meta_attr a;
	sqlite3_stmt *st;
	int rc;

	rc = meta_inode_get_locked(m, ino, &a);
	if (rc)
		return rc;
	if (a.nlink > 0)
		return -EBUSY;
	/* nblocks counts the block rows (meta.h invariant 4), and a patch
	 * is of a block that has a row: an empty or inline file, most of
	 * what a tree holds, has none of the four statements' rows */
	rc = a.nblocks ? meta_blocks_drop_locked(m, ino, 0, UINT64_MAX) : 0;
	if (rc)
		return rc;
	st = m->st[ST_INLINE_DELETE];
	bind_u64(st, 1, ino);
	rc = meta_run(m, st);
	if (rc)
		return rc;
	st = m->st[ST_XATTR_PURGE];
	bind_u64(st, 1, ino);
	rc = meta_run(m, st);
	if (rc)
		return rc;
	st = m->st[ST_INODE_DELETE];
	bind_u64(st, 1, ino);
	return meta_run(m, st);
}

int meta_inode_purge(struct meta *m, uint64_t ino)
{
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	return meta_txn_end(m, purge_locked(m, ino));
}

int meta_inodes_purge(struct meta *m, const uint64_t *inos, size_t n)
{
	size_t i;
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	for (i = 0; i < n && !rc; i++) {
		rc = purge_locked(m, inos[i]);
		if (rc == -EBUSY || rc == -ENOENT)
			rc = 0;
	}
	return meta_txn_end(m, rc);
}

static int orphans_batch(struct meta *m, uint64_t after, uint64_t *inos,
			 size_t *n)
{
	sqlite3_stmt *st = m->st[ST_ORPHANS];
	int rc;

	*n = 0;
	bind_u64(st, 1, after);
	bind_i64(st, 2, META_ID_BATCH);
	while ((rc = meta_step(m, st)) > 0)
		inos[(*n)++] = col_u64(st, 0);
	sqlite3_reset(st);
	return rc;
}

int meta_orphans(struct meta *m, int (*cb)(uint64_t ino, void *arg),
		 void *arg)
{
	uint64_t inos[META_ID_BATCH], after = 0;
	size_t n, i;
	int rc;

	for (;;) {
		rc = meta_txn_begin(m, META_TXN_NONE);
		if (rc)
			return rc;
		rc = meta_txn_end(m, orphans_batch(m, after, inos, &n));
		if (rc)
			return rc;
		for (i = 0; i < n; i++) {
			rc = cb(inos[i], arg);
			if (rc)
				return rc;
		}
		if (n < META_ID_BATCH)
			return 0;
		after = inos[n - 1];
	}
}

/* ---- xattrs ---- */

static int xattr_name_len(const char *name, size_t *len)
{
	if (!name)
		return -EINVAL;
	*len = strnlen(name, META_XATTR_NAME_MAX + 1);
	if (*len == 0 || *len > META_XATTR_NAME_MAX)
		return -ERANGE;
	return 0;
}

static int set_ctime(struct meta *m, uint64_t ino, const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_INODE_CTIME];
	int rc;

	bind_u64(st, 1, ino);
	bind_time(st, 2, now);
	rc = meta_run(m, st);
	if (!rc && sqlite3_changes64(m->db) == 0)
		rc = -ENOENT;
	return rc;
}

static int setxattr_locked(struct meta *m, uint64_t ino, const char *name,
			   const void *value, size_t len, unsigned flags,
			   const struct timespec *now)
{
	const unsigned both = META_XATTR_CREATE | META_XATTR_REPLACE;
	sqlite3_stmt *st;
	size_t nlen;
	bool existed;
	int rc;

	if ((flags & ~both) || (flags & both) == both)
		return -EINVAL;
	rc = xattr_name_len(name, &nlen);
	if (rc)
		return rc;
	if (len > META_XATTR_SIZE_MAX)
		return -E2BIG;
	if (len && !value)
		return -EINVAL;
	rc = set_ctime(m, ino, now);
	if (rc)
		return rc;
	st = m->st[ST_XATTR_UPDATE];
	bind_u64(st, 1, ino);
	bind_blob(st, 2, name, nlen);
	bind_blob(st, 3, value, len);
	rc = meta_run(m, st);
	if (rc)
		return rc;
	existed = sqlite3_changes64(m->db) > 0;
	if (existed)
		return (flags & META_XATTR_CREATE) ? -EEXIST : 0;
	if (flags & META_XATTR_REPLACE)
		return -ENODATA;
	st = m->st[ST_XATTR_INSERT];
	bind_u64(st, 1, ino);
	bind_blob(st, 2, name, nlen);
	bind_blob(st, 3, value, len);
	return meta_run(m, st);
}

int meta_setxattr(struct meta *m, uint64_t ino, const char *name,
		  const void *value, size_t len, unsigned flags,
		  const struct timespec *now)
{
	struct timespec t = meta_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = setxattr_locked(m, ino, name, value, len, flags, &t);
	return meta_txn_end(m, rc);
}

/* -ENOENT if ino does not exist, else fallback. */
static int absent_or(struct meta *m, uint64_t ino, int fallback)
{
	struct meta_attr a;
	int rc = meta_inode_get_locked(m, ino, &a);

	return rc ? rc : fallback;
}

static int getxattr_locked(struct meta *m, uint64_t ino, const char *name,
			   struct buf *out)
{
	sqlite3_stmt *st = m->st[ST_XATTR_GET];
	size_t nlen;
	int rc;

	rc = xattr_name_len(name, &nlen);
	if (rc)
		return rc;
	bind_u64(st, 1, ino);
	bind_blob(st, 2, name, nlen);
	rc = meta_step(m, st);
	if (rc > 0)
		rc = buf_append(out, sqlite3_column_blob(st, 0),
				(size_t)sqlite3_column_bytes(st, 0));
	else if (rc == 0)
		rc = 1; /* absent */
	sqlite3_reset(st);
	return rc == 1 ? absent_or(m, ino, -ENODATA) : rc;
}

int meta_xattr_names_used(struct meta *m, const char *const *names,
			  size_t n, bool *used)
{
	struct buf sql = BUF_INIT;
	sqlite3_stmt *st = NULL;
	size_t i, nlen;
	int rc = 0;

	if (n == 0 || n > 16)
		return -EINVAL;
	for (i = 0; i < n && !rc; i++) {
		used[i] = false;
		rc = xattr_name_len(names[i], &nlen);
	}
	if (rc)
		return rc;
	/* one scan of the table for all of them */
	rc = buf_appendf(&sql, "SELECT name FROM xattr WHERE name IN (");
	for (i = 0; i < n && !rc; i++)
		rc = buf_appendf(&sql, "%s?%zu", i ? "," : "", i + 1);
	if (!rc)
		rc = buf_appendf(&sql, ") GROUP BY name");
	if (rc) {
		buf_free(&sql);
		return -ENOMEM;
	}
	rc = meta_txn_begin(m, META_TXN_NONE);
	if (rc)
		goto out;
	rc = meta_prepare(m, buf_str(&sql), &st);
	if (!rc) {
		for (i = 0; i < n; i++)
			bind_blob(st, (int)i + 1, names[i], strlen(names[i]));
		while ((rc = meta_step(m, st)) > 0) {
			const void *name = sqlite3_column_blob(st, 0);
			size_t len = (size_t)sqlite3_column_bytes(st, 0);

			for (i = 0; i < n; i++)
				if (strlen(names[i]) == len &&
				    !memcmp(names[i], name, len))
					used[i] = true;
		}
		sqlite3_finalize(st);
	}
	rc = meta_txn_end(m, rc);
out:
	buf_free(&sql);
	return rc;
}

int meta_getxattr(struct meta *m, uint64_t ino, const char *name,
		  struct buf *out)
{
	/* asked before every write (security.capability): keep it from
	 * ending the batching of writes */
	int rc = meta_txn_begin_pend(m, META_TXN_NONE, META_PEND_IGNORE);

	if (rc)
		return rc;
	return meta_txn_end(m, getxattr_locked(m, ino, name, out));
}

static int listxattr_locked(struct meta *m, uint64_t ino, struct buf *out)
{
	sqlite3_stmt *st = m->st[ST_XATTR_LIST];
	struct meta_attr a;
	size_t len;
	int rc;

	rc = meta_inode_get_locked(m, ino, &a);
	if (rc)
		return rc;
	bind_u64(st, 1, ino);
	while ((rc = meta_step(m, st)) > 0) {
		len = (size_t)sqlite3_column_bytes(st, 0);
		rc = buf_reserve(out, len + 1);
		if (rc)
			break;
		buf_append(out, sqlite3_column_blob(st, 0), len);
		buf_append(out, "", 1);
	}
	sqlite3_reset(st);
	return rc;
}

int meta_listxattr(struct meta *m, uint64_t ino, struct buf *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, listxattr_locked(m, ino, out));
}

static int removexattr_locked(struct meta *m, uint64_t ino, const char *name,
			      const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_XATTR_DELETE];
	size_t nlen;
	int rc;

	rc = xattr_name_len(name, &nlen);
	if (rc)
		return rc;
	bind_u64(st, 1, ino);
	bind_blob(st, 2, name, nlen);
	rc = meta_run(m, st);
	if (rc)
		return rc;
	if (sqlite3_changes64(m->db) == 0)
		return absent_or(m, ino, -ENODATA);
	return set_ctime(m, ino, now);
}

int meta_removexattr(struct meta *m, uint64_t ino, const char *name,
		     const struct timespec *now)
{
	struct timespec t = meta_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	return meta_txn_end(m, removexattr_locked(m, ino, name, &t));
}
