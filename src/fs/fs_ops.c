/*
 * fs_ops.c - FUSE low-level operations (inode numbers, not paths).
 *
 * Every handler turns one kernel request into calls on meta (namespace,
 * attributes, xattrs) and cache (file data), then replies exactly once.
 * Inode numbers are the metadata's; FUSE_ROOT_ID is META_ROOT_INO.
 *
 * In-memory state: one struct fs_inode per inode the kernel knows (lookup
 * count > 0) or has open.  It decides when an unlinked inode may go: an
 * inode with nlink 0 is purged (its blocks freed, its cache dropped) when
 * the kernel forgets it and its last open file is released.
 *
 * Invariants
 *   1. An inode with nlink 0 stays in the metadata while it is in the
 *      table; whoever takes its last reference (maybe_purge()) drops its
 *      cached blocks and hands it to the purge thread, which purges
 *      batches of such inodes, a transaction each (see struct purger).
 *   2. Handlers hold fs->lock only around table updates, never across a
 *      meta or cache call or a fuse_reply_*.
 */
#include "util/compat.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <linux/limits.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fs/fs.h"
#include "fs/fs_int.h"
#include "util/log.h"
#include "util/util.h"
#include "volume/volume.h"

/* ---- inode table ---- */

static struct fs_inode **slot_of(struct fs *fs, uint64_t ino)
{
	struct fs_inode **pp = &fs->table[ino % fs->nbuckets];

	while (*pp && (*pp)->ino != ino)
		pp = &(*pp)->next;
	return pp;
}

/*
 * Twice the buckets once there is more than one inode per bucket: the
 * kernel keeps an inode of every name it looked up within the entry
 * timeout, and with a fixed table of 4,096 chains a tree of 100,000 files
 * made each create walk chains of 25 (2.6% of the daemon's time), a
 * million of 250.  Without memory for a larger table, chains grow.
 */
static void table_grow(struct fs *fs)
{
	size_t nb = fs->nbuckets * 2, i;
	struct fs_inode **t;

	if (fs->ninodes <= fs->nbuckets)
		return;
	t = calloc(nb, sizeof(*t));
	if (!t)
		return;
	for (i = 0; i < fs->nbuckets; i++) {
		while (fs->table[i]) {
			struct fs_inode *n = fs->table[i];

			fs->table[i] = n->next;
			n->next = t[n->ino % nb];
			t[n->ino % nb] = n;
		}
	}
	free(fs->table);
	fs->table = t;
	fs->nbuckets = nb;
}

/* Add lookups/opens to ino's record (creating it).  -ENOMEM. */
static int inode_ref(struct fs *fs, uint64_t ino, uint64_t lookups,
		     uint64_t opens)
{
	struct fs_inode **pp, *n;

	pthread_mutex_lock(&fs->lock);
	pp = slot_of(fs, ino);
	if (!*pp) {
		n = calloc(1, sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&fs->lock);
			return -ENOMEM;
		}
		n->ino = ino;
		*pp = n;
		fs->ninodes++;
	}
	(*pp)->nlookup += lookups;
	(*pp)->nopen += opens;
	table_grow(fs);
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

/* Free the inode's data and metadata if it has no links left. */
static void purge_if_unlinked(struct fs *fs, uint64_t ino)
{
	struct meta_attr a;
	int rc;

	if (meta_getattr(fs->cfg.meta, ino, &a) || a.nlink > 0)
		return;
	cache_forget_inode(fs->cfg.cache, ino);
	rc = meta_inode_purge(fs->cfg.meta, ino);
	if (rc && rc != -ENOENT && rc != -EBUSY)
		log_error("cannot free inode %" PRIu64 ": %s", ino,
			  strerror(-rc));
}

/*
 * Deleted files are purged by one thread, in a transaction per batch
 * (PURGE_BATCH at most).  Purged in the FORGET that let each go, a
 * deleted file cost a second transaction besides its unlink, and the
 * two contended for meta's lock: 10,000 unlinks of 4 KiB files ran at
 * about 3,000/s, and at about 6,000/s with no purge at all.  Nothing is
 * lost by the wait: a crash leaves the queued inodes as orphans (nlink
 * 0), which the next mount purges (fs_purge_orphans()).
 */
#define PURGE_BATCH 256
#define PURGE_GATHER_NS 20000000ULL

static void *purge_main(void *arg)
{
	struct fs *fs = arg;
	struct purger *p = &fs->purge;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		uint64_t *q;
		size_t n, i;

		while (!p->n && !p->stop)
			pthread_cond_wait(&p->cond, &p->lock);
		if (!p->n)
			break;
		/* a batch is the point: let deletes gather a moment */
		if (!p->stop && p->n < PURGE_BATCH) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += (time_t)(p->gather_ns / 1000000000ULL);
			ts.tv_nsec += (long)(p->gather_ns % 1000000000ULL);
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			while (!p->stop && p->n < PURGE_BATCH &&
			       pthread_cond_timedwait(&p->cond, &p->lock,
						      &ts) == 0)
				;
		}
		q = p->q;
		n = p->n;
		p->q = NULL;
		p->n = p->cap = 0;
		pthread_mutex_unlock(&p->lock);
		/* the cached blocks first, as purge_if_unlinked() does: a
		 * crash before the purge finds the deleted files' dirty
		 * blocks where it expects them */
		for (i = 0; i < n; i++)
			cache_forget_inode(fs->cfg.cache, q[i]);
		for (i = 0; i < n; i += PURGE_BATCH) {
			size_t k = MF_MIN(PURGE_BATCH, n - i);
			int rc = meta_inodes_purge(fs->cfg.meta, q + i, k);

			if (rc)
				log_error("cannot free %zu deleted file(s): %s "
					  "(the next mount frees them)", k,
					  strerror(-rc));
		}
		free(q);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void purge_start(struct fs *fs)
{
	struct purger *p = &fs->purge;
	/* tests widen the window in which a crash finds files deleted
	 * but not purged */
	const char *ms = getenv("METAFUSE_TEST_PURGE_GATHER_MS");

	p->gather_ns = ms ? strtoull(ms, NULL, 10) * 1000000ULL :
			    PURGE_GATHER_NS;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	if (!fs->cfg.read_only &&
	    pthread_create(&p->thread, NULL, purge_main, fs) == 0)
		p->running = true;
}

/* Purge what is queued and end the thread: purges happen at once after. */
static void purge_stop(struct fs *fs)
{
	struct purger *p = &fs->purge;

	if (!p->running)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	p->running = false;
}

/* ino lost its last reference: if it has no link left, have it purged
 * (its cached blocks dropped, then its metadata). */
static void release_unlinked(struct fs *fs, uint64_t ino)
{
	struct purger *p = &fs->purge;
	struct meta_attr a;
	bool queued = false;

	if (!p->running) {
		purge_if_unlinked(fs, ino);
		return;
	}
	if (meta_getattr(fs->cfg.meta, ino, &a) || a.nlink > 0)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->n == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 64;
		uint64_t *nq = realloc(p->q, ncap * sizeof(*nq));

		if (nq) {
			p->q = nq;
			p->cap = ncap;
		}
	}
	if (p->n < p->cap) {
		p->q[p->n++] = ino;
		/* the first starts the gathering, a full batch ends it */
		if (p->n == 1 || p->n == PURGE_BATCH)
			pthread_cond_signal(&p->cond);
		queued = true;
	}
	pthread_mutex_unlock(&p->lock);
	if (!queued)
		purge_if_unlinked(fs, ino);
}

/* Drop lookups/opens; the last reference of an unlinked inode purges. */
static void inode_unref(struct fs *fs, uint64_t ino, uint64_t lookups,
			uint64_t opens)
{
	struct fs_inode **pp, *n = NULL;
	bool last = false;

	pthread_mutex_lock(&fs->lock);
	pp = slot_of(fs, ino);
	if (*pp) {
		n = *pp;
		n->nlookup -= MF_MIN(lookups, n->nlookup);
		n->nopen -= MF_MIN(opens, n->nopen);
		if (n->nlookup == 0 && n->nopen == 0) {
			*pp = n->next;
			fs->ninodes--;
			last = true;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (last) {
		free(n);
		if (ino != META_ROOT_INO && !fs->cfg.read_only)
			release_unlinked(fs, ino);
	}
}

/* After an unlink/rmdir/rename dropped a link of ino: purge it now when
 * the kernel holds no reference. */
static void maybe_purge(struct fs *fs, uint64_t ino)
{
	bool known;

	if (!ino)
		return;
	pthread_mutex_lock(&fs->lock);
	known = *slot_of(fs, ino) != NULL;
	pthread_mutex_unlock(&fs->lock);
	if (!known)
		release_unlinked(fs, ino);
}

static void inode_set_atime_done(struct fs *fs, uint64_t ino, bool done)
{
	struct fs_inode *n;

	pthread_mutex_lock(&fs->lock);
	n = *slot_of(fs, ino);
	if (n)
		n->atime_done = done;
	pthread_mutex_unlock(&fs->lock);
}

static bool inode_atime_done(struct fs *fs, uint64_t ino)
{
	struct fs_inode *n;
	bool done = true;

	pthread_mutex_lock(&fs->lock);
	n = *slot_of(fs, ino);
	if (n)
		done = n->atime_done;
	pthread_mutex_unlock(&fs->lock);
	return done;
}

/* ---- conversions ---- */

static void attr_to_stat(const struct fs *fs, const struct meta_attr *a,
			 struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)a->size;
	st->st_rdev = (dev_t)a->rdev;
	st->st_blksize = (blksize_t)MF_MIN(fs->bs, 1U << 20);
	/* a short file is one short object: count its bytes, not a block */
	st->st_blocks = (blkcnt_t)(MF_MIN(a->nblocks * fs->bs,
					  (a->size + 511) / 512 * 512) / 512);
	st->st_atim = a->atime;
	st->st_mtim = a->mtime;
	st->st_ctim = a->ctime;
}

static void fill_entry(struct fs *fs, const struct meta_attr *a,
		       struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = a->ino;
	e->generation = 1;
	e->attr_timeout = fs->cfg.attr_timeout;
	e->entry_timeout = fs->cfg.entry_timeout;
	attr_to_stat(fs, a, &e->attr);
}

static int check_name(const char *name)
{
	return strlen(name) > META_NAME_MAX ? -ENAMETOOLONG : 0;
}

/* Reply with a new entry and count the kernel's new reference. */
static void reply_entry(fuse_req_t req, struct fs *fs,
			const struct meta_attr *a)
{
	struct fuse_entry_param e;

	if (inode_ref(fs, a->ino, 1, 0)) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fill_entry(fs, a, &e);
	if (fuse_reply_entry(req, &e))
		inode_unref(fs, a->ino, 1, 0);
}

/* ---- lifecycle ---- */

static void fs_op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	/* Without the kernel's writeback cache every write() reaches the
	 * local cache before it returns: an acknowledged write survives a
	 * crash of the daemon, and a full cache disk fails the write() itself
	 * rather than a later fsync. */
	if (fs->cfg.writeback_cache && !fs->cfg.read_only &&
	    (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	else
		conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	/* no flock/getlk/setlk handlers: the kernel keeps locks locally,
	 * which is exact for a volume with one mount */
	conn->want &= ~(unsigned)(FUSE_CAP_FLOCK_LOCKS | FUSE_CAP_POSIX_LOCKS);
	/* set-id bits and capabilities: the kernel clears them itself, or
	 * (FUSE_HANDLE_KILLPRIV_V2, which fs_wire.c adds to the reply when
	 * offered) leaves them to us, never the old way in between */
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
	/* every request must come through fs_wire.c's read */
	conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
	/* open(O_TRUNC) arrives as one request, truncated in fs_op_open */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->max_write = 1U << 20;
	conn->max_readahead = 1U << 20;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
}

static void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct meta_attr a;
	int rc = check_name(name);

	if (!rc)
		rc = meta_lookup(fs->cfg.meta, ino_of(parent), name, &a);
	if (rc == -ENOENT) {
		struct fuse_entry_param e;

		/* a negative entry the kernel may cache */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->cfg.entry_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry(req, fs, &a);
}

static void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	inode_unref(fs_of(req), ino_of(ino), nlookup, 0);
	fuse_reply_none(req);
}

static void fs_op_forget_multi(fuse_req_t req, size_t count,
			       struct fuse_forget_data *forgets)
{
	size_t i;

	for (i = 0; i < count; i++)
		inode_unref(fs_of(req), ino_of(forgets[i].ino),
			    forgets[i].nlookup, 0);
	fuse_reply_none(req);
}

static void fs_op_getattr(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct meta_attr a;
	struct stat st;
	int rc = meta_getattr(fs->cfg.meta, ino_of(ino), &a);

	if (rc) {
		/* a follower's inode the writer deleted: the kernel's
		 * handle of it is stale (as NFS says) */
		fuse_reply_err(req, rc == -ENOENT && fs->cfg.follow ? ESTALE
								     : -rc);
		return;
	}
	attr_to_stat(fs, &a, &st);
	fuse_reply_attr(req, &st, fs->cfg.attr_timeout);
}

struct size_apply {
	struct fs *fs;
	uint64_t ino;
	const struct meta_attr *in;
	unsigned to_set;
	const struct timespec *now;
	struct meta_attr *out;
};

static int apply_setattr(void *arg)
{
	struct size_apply *s = arg;

	return meta_setattr(s->fs->cfg.meta, s->ino, s->in, s->to_set,
			    s->now, s->out);
}

static void fs_op_setattr(fuse_req_t req, fuse_ino_t fino, struct stat *attr,
			  int to_set, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	uint64_t ino = ino_of(fino);
	struct timespec now = now_realtime();
	struct meta_attr in, out, cur;
	unsigned set = 0;
	struct stat st;
	bool need_cur;
	int rc = 0;

	memset(&in, 0, sizeof(in));
	if (to_set & FUSE_SET_ATTR_MODE) {
		set |= META_SET_MODE;
		in.mode = attr->st_mode;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		set |= META_SET_UID;
		in.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		set |= META_SET_GID;
		in.gid = attr->st_gid;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
		set |= META_SET_ATIME;
		in.atime = (to_set & FUSE_SET_ATTR_ATIME_NOW) ? now :
							       attr->st_atim;
	}
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
		set |= META_SET_MTIME;
		in.mtime = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? now :
							       attr->st_mtim;
	}
	if (to_set & FUSE_SET_ATTR_CTIME) {
		set |= META_SET_CTIME;
		in.ctime = attr->st_ctim;
	}
	/* a chown, or the kernel's own kill, may clear bits (fs_kill.c) */
	need_cur = (to_set & FUSE_SET_ATTR_SIZE) ||
		   (fs_wire_killpriv(fs) &&
		    ((set & (META_SET_UID | META_SET_GID)) || fs_wire_kill()));
	if (need_cur) {
		rc = meta_getattr(fs->cfg.meta, ino, &cur);
		if (rc)
			goto out_err;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		struct size_apply sa = { fs, ino, &in, 0, &now, &out };

		if (S_ISDIR(cur.mode)) {
			rc = -EISDIR;
			goto out_err;
		}
		if (!S_ISREG(cur.mode)) {
			rc = -EINVAL;
			goto out_err;
		}
		set |= META_SET_SIZE;
		in.size = (uint64_t)attr->st_size;
		/* a size change also sets mtime unless the caller set it */
		if (in.size != cur.size && !(set & META_SET_MTIME)) {
			set |= META_SET_MTIME;
			in.mtime = now;
		}
		rc = fs_kill_on_setattr(fs, &cur, &set, &in, &now);
		if (rc)
			goto out_err;
		sa.to_set = set;
		rc = cache_truncate(fs->cfg.cache, ino, cur.size, in.size,
				    apply_setattr, &sa);
	} else {
		if (need_cur)
			rc = fs_kill_on_setattr(fs, &cur, &set, &in, &now);
		if (rc == 0)
			rc = meta_setattr(fs->cfg.meta, ino, &in, set, &now,
					  &out);
	}
	if (rc)
		goto out_err;
	inode_set_atime_done(fs, ino, false);
	attr_to_stat(fs, &out, &st);
	fuse_reply_attr(req, &st, fs->cfg.attr_timeout);
	return;
out_err:
	fuse_reply_err(req, -rc);
}

static void fs_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct buf target = BUF_INIT;
	int rc = meta_readlink(fs->cfg.meta, ino_of(ino), &target);

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, buf_str(&target));
	buf_free(&target);
}

static void make_node(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, dev_t rdev, const char *target)
{
	struct fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct timespec now = now_realtime();
	struct meta_attr a;
	int rc = check_name(name);

	if (!rc)
		rc = meta_mknod(fs->cfg.meta, ino_of(parent), name, mode,
				rdev, ctx->uid, ctx->gid, target, &now, &a);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry(req, fs, &a);
}

static void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
			mode_t mode, dev_t rdev)
{
	make_node(req, parent, name, mode, rdev, NULL);
}

static void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
			mode_t mode)
{
	make_node(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL);
}

static void fs_op_symlink(fuse_req_t req, const char *link,
			  fuse_ino_t parent, const char *name)
{
	make_node(req, parent, name, S_IFLNK | 0777, 0, link);
}

static void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		       const char *newname)
{
	struct fs *fs = fs_of(req);
	struct timespec now = now_realtime();
	struct meta_attr a;
	int rc = check_name(newname);

	if (!rc)
		rc = meta_link(fs->cfg.meta, ino_of(ino), ino_of(newparent),
			       newname, &now, &a);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry(req, fs, &a);
}

static void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct timespec now = now_realtime();
	uint64_t ino = 0;
	int rc = meta_unlink(fs->cfg.meta, ino_of(parent), name, &now, &ino);

	if (rc == 0)
		maybe_purge(fs, ino);
	fuse_reply_err(req, -rc);
}

static void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct timespec now = now_realtime();
	uint64_t ino = 0;
	int rc = meta_rmdir(fs->cfg.meta, ino_of(parent), name, &now, &ino);

	if (rc == 0)
		maybe_purge(fs, ino);
	fuse_reply_err(req, -rc);
}

static void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			 fuse_ino_t newparent, const char *newname,
			 unsigned int flags)
{
	struct fs *fs = fs_of(req);
	struct timespec now = now_realtime();
	uint64_t replaced = 0;
	unsigned mflags = 0;
	int rc = check_name(newname);

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (flags & RENAME_NOREPLACE)
		mflags |= META_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		mflags |= META_RENAME_EXCHANGE;
	if (!rc)
		rc = meta_rename(fs->cfg.meta, ino_of(parent), name,
				 ino_of(newparent), newname, mflags, &now,
				 &replaced);
	if (rc == 0)
		maybe_purge(fs, replaced);
	fuse_reply_err(req, -rc);
}

/* ---- files ---- */

/*
 * open(O_TRUNC) of the regular file a (FUSE_CAP_ATOMIC_O_TRUNC): size 0,
 * and what a truncate clears under FUSE_HANDLE_KILLPRIV_V2, even when
 * the file was empty already.
 */
static int open_truncate(struct fs *fs, const struct meta_attr *a,
			 const struct timespec *now)
{
	unsigned set = META_SET_SIZE | META_SET_MTIME;
	struct meta_attr in, out;
	struct size_apply sa = { fs, a->ino, &in, 0, now, &out };
	int rc;

	memset(&in, 0, sizeof(in));
	in.mtime = *now;
	rc = fs_kill_on_setattr(fs, a, &set, &in, now);
	if (rc)
		return rc;
	if (a->size == 0)
		return (set & META_SET_MODE) ?
			       meta_setattr(fs->cfg.meta, a->ino, &in,
					    META_SET_MODE, now, &out) :
			       0;
	sa.to_set = set;
	return cache_truncate(fs->cfg.cache, a->ino, a->size, 0,
			      apply_setattr, &sa);
}

static void fs_op_open(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct timespec now = now_realtime();
	struct meta_attr a;
	int rc = meta_getattr(fs->cfg.meta, ino_of(ino), &a);

	if (rc) {
		fuse_reply_err(req, rc == -ENOENT && fs->cfg.follow ? ESTALE
								     : -rc);
		return;
	}
	if (S_ISDIR(a.mode)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_TRUNC) && S_ISREG(a.mode)) {
		rc = open_truncate(fs, &a, &now);
		if (rc) {
			fuse_reply_err(req, -rc);
			return;
		}
	}
	if (inode_ref(fs, a.ino, 0, 1)) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* this mount is the volume's only writer: cached pages stay valid,
	 * unless a read must reach us to update atime (relatime) */
	fi->keep_cache = (fi->flags & O_ACCMODE) != O_RDONLY ||
			 !meta_atime_due(&a, &now);
	/* a follower's pages may be stale whatever atime says: each open
	 * reads again what the last invalidation may have missed (a read
	 * in flight while a changeset applied) */
	if (fs->cfg.follow)
		fi->keep_cache = 0;
	if (!fi->keep_cache)
		inode_set_atime_done(fs, a.ino, false);
	fi->fh = a.ino;
	if (fuse_reply_open(req, fi))
		inode_unref(fs, a.ino, 0, 1);
}

static void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
			 mode_t mode, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct timespec now = now_realtime();
	struct fuse_entry_param e;
	struct meta_attr a;
	int rc = check_name(name);

	if (!rc)
		rc = meta_mknod(fs->cfg.meta, ino_of(parent), name,
				S_IFREG | (mode & 07777), 0, ctx->uid,
				ctx->gid, NULL, &now, &a);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (inode_ref(fs, a.ino, 1, 1)) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fill_entry(fs, &a, &e);
	fi->keep_cache = 1;
	fi->fh = a.ino;
	if (fuse_reply_create(req, &e, fi))
		inode_unref(fs, a.ino, 1, 1);
}

/*
 * A follower's read ran while a changeset may have applied: the blocks
 * it found missing may be a file deleted or cut meanwhile, which must not
 * read as zeros.  Gone: ESTALE; shorter: the bytes up to its new end.
 */
static ssize_t follow_read_check(struct fs *fs, uint64_t ino, uint64_t off,
				 ssize_t n)
{
	struct meta_attr a;
	int rc = meta_getattr(fs->cfg.meta, ino, &a);

	if (rc)
		return rc == -ENOENT ? -ESTALE : rc;
	if (a.size <= off)
		return 0;
	return (ssize_t)MF_MIN((uint64_t)n, a.size - off);
}

static void fs_op_read(fuse_req_t req, fuse_ino_t fino, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	uint64_t ino = ino_of(fino);
	struct meta_attr a;
	ssize_t n;
	void *buf;
	int rc;

	rc = meta_getattr(fs->cfg.meta, ino, &a);
	if (rc) {
		/* an open file whose inode is gone: a follower's, which the
		 * writer deleted */
		fuse_reply_err(req, rc == -ENOENT ? ESTALE : -rc);
		return;
	}
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = cache_read(fs->cfg.cache, ino, (uint64_t)off, size, a.size, buf);
	if (n > 0 && fs->cfg.follow)
		n = follow_read_check(fs, ino, (uint64_t)off, n);
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
	} else {
		/* with the writeback cache the kernel also reads to fill
		 * pages it writes; only reads through read-only handles
		 * are surely the application's */
		if (!fs->cfg.read_only &&
		    (fi->flags & O_ACCMODE) == O_RDONLY &&
		    !inode_atime_done(fs, ino)) {
			struct timespec now = now_realtime();

			if (meta_touch_atime(fs->cfg.meta, ino, &now) == 0)
				inode_set_atime_done(fs, ino, true);
		}
		fuse_reply_buf(req, buf, (size_t)n);
	}
	free(buf);
}

static void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *data,
			size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	ssize_t n = fs_kill_on_write(fs, ino_of(ino));

	if (n == 0)
		n = cache_write(fs->cfg.cache, ino_of(ino), (uint64_t)off,
				data, size);
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	inode_set_atime_done(fs, ino_of(ino), false);
	fuse_reply_write(req, (size_t)n);
}

static void fs_op_flush(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void fs_op_release(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	inode_unref(fs_of(req), ino_of(ino), 0, 1);
	fuse_reply_err(req, 0);
}

static void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	int rc = cache_flush_inode(fs->cfg.cache, ino_of(ino));

	/* the data is in the store; now the metadata that names it */
	if (rc == 0)
		rc = fs_sync(fs);
	fuse_reply_err(req, -rc);
}

struct punch_apply {
	struct fs *fs;
	uint64_t ino;
};

static int apply_punch(void *arg, uint64_t first, uint64_t last)
{
	struct punch_apply *p = arg;

	return meta_block_drop(p->fs->cfg.meta, p->ino, first, last);
}

/*
 * FALLOC_FL_ZERO_RANGE (mode: with or without FALLOC_FL_KEEP_SIZE): the
 * range reads as zeros, by the punch's path, so the blocks it covers
 * whole become holes (nothing written, nothing uploaded) and only a
 * partial first or last block is zeroed and goes up again; without
 * KEEP_SIZE a range past the end makes the file that long.  The kernel
 * has written back and will drop its cached pages of the range.
 */
static int fallocate_zero(struct fs *fs, uint64_t ino, int mode,
			  uint64_t off, uint64_t len, uint64_t size,
			  const struct timespec *now)
{
	struct punch_apply pa = { fs, ino };
	struct meta_attr in, out;
	unsigned set = META_SET_MTIME;
	int rc;

	rc = cache_punch(fs->cfg.cache, ino, off, len, size, apply_punch, &pa);
	if (rc)
		return rc;
	memset(&in, 0, sizeof(in));
	in.mtime = *now;
	if (!(mode & FALLOC_FL_KEEP_SIZE) && off + len > size) {
		in.size = off + len;
		set |= META_SET_SIZE;
	}
	return meta_setattr(fs->cfg.meta, ino, &in, set, now, &out);
}

static void fs_op_fallocate(fuse_req_t req, fuse_ino_t fino, int mode,
			    off_t off, off_t len, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	uint64_t ino = ino_of(fino);
	struct timespec now = now_realtime();
	struct meta_attr a, in, out;
	int rc;

	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	rc = meta_getattr(fs->cfg.meta, ino, &a);
	if (rc)
		goto out;
	if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
		struct punch_apply pa = { fs, ino };

		rc = cache_punch(fs->cfg.cache, ino, (uint64_t)off,
				 (uint64_t)len, a.size, apply_punch, &pa);
		if (rc == 0) {
			memset(&in, 0, sizeof(in));
			in.mtime = now;
			rc = meta_setattr(fs->cfg.meta, ino, &in,
					  META_SET_MTIME, &now, &out);
		}
	} else if ((mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE) {
		rc = fallocate_zero(fs, ino, mode, (uint64_t)off,
				    (uint64_t)len, a.size, &now);
	} else if (mode == 0 || mode == FALLOC_FL_KEEP_SIZE) {
		/* blocks are allocated in the store when written; there is
		 * nothing to reserve, only the size to extend */
		uint64_t end = (uint64_t)off + (uint64_t)len;

		if (mode == 0 && end > a.size) {
			memset(&in, 0, sizeof(in));
			in.size = end;
			rc = meta_setattr(fs->cfg.meta, ino, &in,
					  META_SET_SIZE, &now, &out);
		}
	} else {
		rc = -EOPNOTSUPP;
	}
out:
	fuse_reply_err(req, -rc);
}

/*
 * SEEK_DATA / SEEK_HOLE from the block map (meta_seek()).  Under
 * writeback_cache the kernel holds writes (and a size) this daemon has
 * not seen, and does not flush them before asking: ENOSYS makes it fall
 * back to its own answer (the whole file is data) for this mount.
 */
static void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off,
			int whence, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	uint64_t pos = 0;
	int rc;

	if (fs->cfg.writeback_cache && !fs->cfg.read_only) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	rc = meta_seek(fs->cfg.meta, ino_of(ino), (uint64_t)off,
		       whence == SEEK_HOLE, &pos);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_lseek(req, (off_t)pos);
}

/* ---- directories ---- */

static void fs_op_opendir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct meta_attr a;
	uint64_t cap;
	int rc = meta_getattr(fs->cfg.meta, ino_of(ino), &a);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (!S_ISDIR(a.mode)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	/* the listing of this handle ends at the entries that exist now */
	rc = meta_last_cookie(fs->cfg.meta, &cap);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = cap;
	fi->cache_readdir = 0;
	fuse_reply_open(req, fi);
}

struct dir_fill {
	struct fs *fs;
	fuse_req_t req;
	char *buf;
	size_t size, used;
	uint64_t cap; /* last cookie this listing returns */
	bool plus;
	bool full;
};

static int dir_add(struct dir_fill *d, const char *name,
		   const struct meta_attr *a, uint64_t cookie, bool counted)
{
	size_t n;

	if (d->plus) {
		struct fuse_entry_param e;

		fill_entry(d->fs, a, &e);
		n = fuse_add_direntry_plus(d->req, d->buf + d->used,
					   d->size - d->used, name, &e,
					   (off_t)cookie);
		if (n > d->size - d->used) {
			d->full = true;
			return 1;
		}
		if (counted && inode_ref(d->fs, a->ino, 1, 0)) {
			d->full = true;
			return 1;
		}
	} else {
		struct stat st;

		memset(&st, 0, sizeof(st));
		st.st_ino = a->ino;
		st.st_mode = a->mode;
		n = fuse_add_direntry(d->req, d->buf + d->used,
				      d->size - d->used, name, &st,
				      (off_t)cookie);
		if (n > d->size - d->used) {
			d->full = true;
			return 1;
		}
	}
	d->used += n;
	return 0;
}

static int dir_cb(const char *name, const struct meta_attr *a,
		  uint64_t cookie, void *arg)
{
	struct dir_fill *d = arg;

	if (cookie > d->cap)
		return 1;
	return dir_add(d, name, a, cookie, true);
}

static void do_readdir(fuse_req_t req, fuse_ino_t fino, size_t size,
		       off_t off, struct fuse_file_info *fi, bool plus)
{
	struct fs *fs = fs_of(req);
	uint64_t ino = ino_of(fino), parent;
	struct dir_fill d = { fs, req, NULL, size, 0, fi->fh, plus, false };
	struct meta_attr self, up;
	int rc = 0;

	/* a listing started over (rewinddir) sees entries made since */
	if (off == 0 && meta_last_cookie(fs->cfg.meta, &fi->fh) == 0)
		d.cap = fi->fh;
	if (off == 0 && !fs->cfg.read_only) {
		struct timespec now = now_realtime();

		meta_touch_atime(fs->cfg.meta, ino, &now);
	}

	d.buf = malloc(size ? size : 1);
	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off < 2) {
		rc = meta_getattr(fs->cfg.meta, ino, &self);
		if (!rc)
			rc = meta_parent(fs->cfg.meta, ino, &parent);
		if (!rc)
			rc = meta_getattr(fs->cfg.meta, parent, &up);
		if (rc)
			goto out;
		/* "." and ".." are not looked up: no reference counted */
		if (off < 1 && dir_add(&d, ".", &self, 1, false))
			goto out;
		if (dir_add(&d, "..", &up, 2, false))
			goto out;
		off = 2;
	}
	rc = meta_readdir(fs->cfg.meta, ino, (uint64_t)off, dir_cb, &d);
out:
	if (rc && d.used == 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, d.buf, d.used);
	free(d.buf);
}

static void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
			  off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			      off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino,
			     struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			   struct fuse_file_info *fi)
{
	fuse_reply_err(req, -fs_sync(fs_of(req)));
}

static void fs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct meta_stats ms;
	struct statvfs sv;
	/* an object store has no fixed size: report 1 PiB */
	uint64_t total = (1ULL << 50) / fs->bs;
	int rc = meta_stats(fs->cfg.meta, &ms);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = fs->bs;
	sv.f_frsize = fs->bs;
	sv.f_blocks = total;
	sv.f_bfree = total - MF_MIN(ms.blocks, total);
	sv.f_bavail = sv.f_bfree;
	sv.f_files = 1ULL << 40;
	sv.f_ffree = sv.f_files - ms.inodes;
	sv.f_favail = sv.f_ffree;
	sv.f_namemax = META_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

/* ---- xattrs ---- */

/* ---- clones (fs_clone.c) ---- */

static void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in,
				  off_t off_in, struct fuse_file_info *fi_in,
				  fuse_ino_t ino_out, off_t off_out,
				  struct fuse_file_info *fi_out, size_t len,
				  int flags)
{
	struct fs *fs = fs_of(req);

	if (fs_clone_copy_range(req, fs->cfg.meta, fs->cfg.cache,
				ino_of(ino_in), off_in, ino_of(ino_out),
				off_out, len, flags) == 0)
		inode_set_atime_done(fs, ino_of(ino_out), false);
}

static void fs_op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
			void *arg, struct fuse_file_info *fi, unsigned flags,
			const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct fs *fs = fs_of(req);

	fs_clone_ioctl(req, fs->se, &fs->cfg, ino_of(ino), cmd, in_buf,
		       in_bufsz, out_bufsz);
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_op_init,
	.lookup = fs_op_lookup,
	.forget = fs_op_forget,
	.forget_multi = fs_op_forget_multi,
	.getattr = fs_op_getattr,
	.setattr = fs_op_setattr,
	.readlink = fs_op_readlink,
	.mknod = fs_op_mknod,
	.mkdir = fs_op_mkdir,
	.symlink = fs_op_symlink,
	.link = fs_op_link,
	.unlink = fs_op_unlink,
	.rmdir = fs_op_rmdir,
	.rename = fs_op_rename,
	.open = fs_op_open,
	.create = fs_op_create,
	.read = fs_op_read,
	.write = fs_op_write,
	.flush = fs_op_flush,
	.release = fs_op_release,
	.fsync = fs_op_fsync,
	.fallocate = fs_op_fallocate,
	.lseek = fs_op_lseek,
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.readdirplus = fs_op_readdirplus,
	.releasedir = fs_op_releasedir,
	.fsyncdir = fs_op_fsyncdir,
	.statfs = fs_op_statfs,
	.setxattr = fs_op_setxattr,
	.getxattr = fs_op_getxattr,
	.listxattr = fs_op_listxattr,
	.removexattr = fs_op_removexattr,
	.copy_file_range = fs_op_copy_file_range,
	.ioctl = fs_op_ioctl,
};

/* ---- the rest of the public API ---- */

int fs_sync(struct fs *fs)
{
	if (fs->cfg.read_only)
		return 0;
	/* concurrent callers coalesce: the journal cuts under its lock, so
	 * a caller that waited finds its changes already cut and sent */
	return journal_sync(fs->cfg.journal);
}

static int orphan_cb(uint64_t ino, void *arg)
{
	uint64_t *list = arg;

	/* collected first: purging inside the meta callback would re-enter
	 * meta */
	if (list[0] + 1 < list[1])
		list[2 + list[0]++] = ino;
	return 0;
}

int fs_purge_orphans(struct fs *fs)
{
	enum { MAXN = 4096 };
	uint64_t *list = calloc(MAXN + 2, sizeof(*list));
	uint64_t i;
	int rc;

	if (!list)
		return -ENOMEM;
	list[1] = MAXN;
	rc = meta_orphans(fs->cfg.meta, orphan_cb, list);
	for (i = 0; rc == 0 && i < list[0]; i++)
		purge_if_unlinked(fs, list[2 + i]);
	if (list[0])
		log_info("freed %" PRIu64 " file(s) deleted before a crash "
			 "(open then, or not yet freed)", list[0]);
	free(list);
	return rc;
}

int fs_new(const struct fs_config *cfg, struct fs **out)
{
	struct fs *fs = calloc(1, sizeof(*fs));

	if (!fs)
		return -ENOMEM;
	fs->nbuckets = FS_BUCKETS;
	fs->table = calloc(fs->nbuckets, sizeof(*fs->table));
	if (!fs->table) {
		free(fs);
		return -ENOMEM;
	}
	fs->cfg = *cfg;
	fs->bs = meta_block_size(cfg->meta);
	fs_xattr_init(fs);
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->notify_lock, NULL);
	purge_start(fs);
	*out = fs;
	return 0;
}

void fs_free(struct fs *fs)
{
	size_t i;

	if (!fs)
		return;
	purge_stop(fs);
	pthread_mutex_destroy(&fs->purge.lock);
	pthread_cond_destroy(&fs->purge.cond);
	for (i = 0; i < fs->nbuckets; i++) {
		while (fs->table[i]) {
			struct fs_inode *n = fs->table[i];

			fs->table[i] = n->next;
			free(n);
		}
	}
	free(fs->table);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->notify_lock);
	free(fs);
}

void fs_exit(struct fs *fs)
{
	if (fs->se)
		fuse_session_exit(fs->se);
}

int fs_run(struct fs *fs, const char *mountpoint, const char *fuse_opts,
	   void (*ready)(void *arg, int rc), void *ready_arg)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *lc;
	struct buf opts = BUF_INIT;
	int rc = -ENOMEM;

	if (buf_appendf(&opts, "default_permissions,fsname=metafuse,"
			"subtype=metafuse%s%s%s",
			fs->cfg.read_only ? ",ro" : "",
			fuse_opts && *fuse_opts ? "," : "",
			fuse_opts ? fuse_opts : ""))
		goto out;
	if (fuse_opt_add_arg(&args, "metafuse") ||
	    fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, buf_str(&opts)))
		goto out;
	fs->se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), fs);
	if (!fs->se) {
		rc = -EINVAL;
		ready(ready_arg, rc);
		goto out;
	}
	if (fuse_set_signal_handlers(fs->se)) {
		rc = -EIO;
		ready(ready_arg, rc);
		goto out_destroy;
	}
	if (fuse_session_mount(fs->se, mountpoint)) {
		rc = -EIO;
		ready(ready_arg, rc);
		goto out_signals;
	}
	rc = fs_wire_install(fs);
	if (rc) {
		ready(ready_arg, rc);
		fuse_session_unmount(fs->se);
		goto out_signals;
	}
	fs_notify_live(fs, true);
	ready(ready_arg, 0);
	/*
	 * FUSE_USE_VERSION 312: with an older one, fuse_session_loop_mt()
	 * is libfuse's 3.2 entry point, which reads a struct fuse_loop_config
	 * as the old layout: a cloned /dev/fuse per worker and an idle limit
	 * of 0, so a thread was created and destroyed around each request
	 * (60% of a 4 KiB random write), and a worker's exit can race with a
	 * waiting request (a hang seen with 3.14).  The default idle limit
	 * of this entry point (-1) never ends a worker.
	 */
	lc = fuse_loop_cfg_create();
	if (!lc) {
		rc = -ENOMEM;
		fs_notify_live(fs, false);
		fuse_session_unmount(fs->se);
		goto out_signals;
	}
	fuse_loop_cfg_set_clone_fd(lc, 0);
	fuse_loop_cfg_set_max_threads(lc, 16);
	rc = fuse_session_loop_mt(fs->se, lc);
	fs_notify_live(fs, false);
	fuse_loop_cfg_destroy(lc);
	/* no FORGET comes any more: what is queued goes now, before the
	 * unmount's last uploads */
	purge_stop(fs);
	rc = rc < 0 ? rc : 0;
	fuse_session_unmount(fs->se);
out_signals:
	fuse_remove_signal_handlers(fs->se);
out_destroy:
	fuse_session_destroy(fs->se);
	fs->se = NULL;
out:
	fuse_opt_free_args(&args);
	buf_free(&opts);
	return rc;
}
