/*
 * fs_snap.c - `metafuse snapshot` on a mounted volume: the FS_IOC_SNAP
 * and FS_IOC_SNAP_LIST ioctls (fs/fs.h), answered by the daemon.
 *
 * Purpose
 *   A snapshot of a mounted volume must hold everything written before
 *   the command, as fsync would make it durable: every block dirty then
 *   is uploaded first (invariant 3), so that the state the snapshot
 *   holds names objects already in the store; volume/snapshot.c then
 *   makes the holds, the copy and the journal entry durable before the
 *   answer.  (The caller's kernel-side dirty pages were written back by
 *   its syncfs() before the ioctl; cli/cmd_snapshot.c.)
 *
 * Why an ioctl, as `metafuse clone` does, rather than the stats socket:
 * the request goes to the mount TARGET names (no registry of sockets to
 * find, which differs between root and the mounting user), and the
 * kernel tells who asks (fuse_req_ctx()), and whether the mount is
 * read-only is the fs's own configuration.
 *
 * Invariants
 *   1. Only root and the user the daemon runs as (the mount's owner) are
 *      answered; anyone else gets EPERM.
 *   2. Requests that change snapshots run one at a time (snap_lock), so
 *      the first snapshot raises the volume's format once, and their
 *      copies never share a temporary file.
 *   3. A snapshot holds every block written before the request: the
 *      blocks dirty when it arrives are uploaded (cache_flush_inode())
 *      before the holds are made.  A block written again meanwhile is
 *      held as its last upload, which is at least what it held then.
 */
#include "util/compat.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <pthread.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/log.h"
#include "util/util.h"
#include "volume/snapshot.h"

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;

static void entry_of(const struct meta_snap *sn, struct fs_snap_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->id = sn->id;
	e->time_ns = sn->time_ns;
	e->objects = sn->objects;
	e->alone_bytes = sn->alone_bytes;
	snprintf(e->name, sizeof(e->name), "%s", sn->name);
}

struct inos {
	uint64_t *v;
	size_t n, cap;
};

/* The files with dirty blocks, each once (the rows come in ino order). */
static int dirty_cb(uint64_t ino, uint64_t idx, void *arg)
{
	struct inos *l = arg;

	(void)idx;
	if (l->n && l->v[l->n - 1] == ino)
		return 0;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? 2 * l->cap : 64;
		uint64_t *nv = realloc(l->v, ncap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n++] = ino;
	return 0;
}

/*
 * Upload what is dirty now, as fsync of each file would (invariant 3):
 * only the blocks dirty at the call, so a file written all the time
 * cannot hold the snapshot back.
 */
static int flush_dirty(const struct fs_config *cfg)
{
	struct inos l = { NULL, 0, 0 };
	size_t i;
	int rc = meta_blocks_dirty(cfg->meta, dirty_cb, &l);

	for (i = 0; !rc && i < l.n; i++) {
		rc = cache_flush_inode(cfg->cache, l.v[i]);
		if (rc == -ENOENT || rc == -ESTALE)
			rc = 0; /* deleted meanwhile: nothing to keep */
	}
	free(l.v);
	return rc;
}

/* Create or delete r->e.name: 0 or -errno (the store's errors logged). */
static int snap_change(const struct fs_config *cfg, struct fs_snap_req *r)
{
	struct buf err = BUF_INIT;
	struct meta_snap sn;
	int rc;

	r->e.name[sizeof(r->e.name) - 1] = 0;
	rc = meta_snap_name_check(r->e.name);
	if (rc)
		return rc;
	pthread_mutex_lock(&snap_lock);
	if (r->op == FS_SNAP_CREATE) {
		rc = flush_dirty(cfg);
		if (!rc)
			rc = snapshot_create(cfg->meta, cfg->journal,
					     cfg->store, cfg->volume,
					     journal_tmp_dir(cfg->journal),
					     r->e.name, &sn, &err);
		if (!rc) {
			entry_of(&sn, &r->e);
			log_info("snapshot '%s' made (id %" PRIu64 ", %" PRIu64
				 " objects)", sn.name, sn.id, sn.objects);
		}
	} else {
		rc = snapshot_delete(cfg->meta, cfg->journal, cfg->store,
				     r->e.name, &err);
		if (!rc)
			log_info("snapshot '%s' deleted", r->e.name);
	}
	pthread_mutex_unlock(&snap_lock);
	if (rc && err.len && rc != -ENOENT)
		log_error("snapshot '%s': %s", r->e.name, buf_str(&err));
	buf_free(&err);
	return rc;
}

static int snap_list(const struct fs_config *cfg, struct fs_snap_list *l)
{
	struct meta_snap sn[FS_SNAP_LIST_MAX];
	size_t n = 0, i;
	int rc = meta_snap_list(cfg->meta, l->after, sn, FS_SNAP_LIST_MAX, &n);

	l->n = 0;
	for (i = 0; !rc && i < n; i++)
		entry_of(&sn[i], &l->e[l->n++]);
	return rc;
}

void fs_snap_ioctl(fuse_req_t req, const struct fs_config *cfg, unsigned cmd,
		   const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct fs_snap_list l;
	struct fs_snap_req r;
	int rc;

	if (ctx->uid != 0 && ctx->uid != getuid()) {
		fuse_reply_err(req, EPERM); /* invariant 1 */
		return;
	}
	if (cmd == FS_IOC_SNAP_LIST) {
		if (in_bufsz != sizeof(l) || out_bufsz != sizeof(l)) {
			fuse_reply_err(req, ENOTTY);
			return;
		}
		memcpy(&l, in_buf, sizeof(l));
		rc = snap_list(cfg, &l);
		if (rc)
			fuse_reply_err(req, -rc);
		else
			fuse_reply_ioctl(req, 0, &l, sizeof(l));
		return;
	}
	if (in_bufsz != sizeof(r) || out_bufsz != sizeof(r)) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	memcpy(&r, in_buf, sizeof(r));
	if (r.reserved ||
	    (r.op != FS_SNAP_CREATE && r.op != FS_SNAP_DELETE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (cfg->read_only || !cfg->journal) {
		fuse_reply_err(req, EROFS);
		return;
	}
	rc = snap_change(cfg, &r);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_ioctl(req, 0, &r, sizeof(r));
}
