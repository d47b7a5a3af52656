/*
 * fs_clone.c - clones at the filesystem level: copy_file_range that
 * shares whole blocks, and `metafuse clone`'s tree copy.
 *
 * Purpose
 *   meta_clone.c makes a clone one transaction of the metadata; this file
 *   makes it right for the cache around it: the source's dirty blocks
 *   are uploaded first (a clone names objects, and a dirty block's
 *   content is not in one yet), the destination's cached blocks are
 *   dropped in the same step that gives them new content
 *   (cache_replace()), and the partial blocks at the edges of a range
 *   are copied as bytes through the ordinary read and write paths.
 *   fs_ops.c's handlers hand their requests to the two fs_clone_*()
 *   entry points at the end, which reply.
 *
 * Data model
 *   A range [off, off + len) of a file, in a volume of block size bs:
 *     head   [off, next multiple of bs)   copied as bytes
 *     whole  the blocks after it          shared (meta_clone_blocks())
 *     tail   what is left, < bs           copied as bytes
 *   Sharing needs off_in and off_out at the same place in their blocks;
 *   otherwise no block of one lines up with a block of the other, and
 *   the kernel copies (-EOPNOTSUPP asks it to: it then reads and writes
 *   through this mount; ENOSYS would turn copy_file_range off for the
 *   whole mount).
 *
 * Invariants
 *   1. The bytes reported copied are a prefix of the range: head, then
 *      blocks, then tail; an error after some of them reports what was
 *      done, as write(2) does.
 *   2. A clone retries after uploading what its source had dirty, at
 *      most CLONE_TRIES times (a file written all the time may never be
 *      clean: the range is then left to the kernel's copy, the tree
 *      clone fails with EAGAIN).
 */
#include "util/compat.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/log.h"
#include "util/util.h"

#define CLONE_TRIES 4
#define COPY_CHUNK (1u << 20)	/* bytes per read/write of an edge */
#define DIRTY_MAX 1024		/* files uploaded per round of a tree */

/* Copy len bytes at off_in of src to off_out of dst through the cache.
 * Returns the bytes copied (short at src's end) or -errno. */
static ssize_t copy_bytes(struct meta *m, struct cache *c, uint64_t src,
			  uint64_t off_in, uint64_t dst, uint64_t off_out,
			  uint64_t len)
{
	struct meta_attr a;
	uint64_t done = 0;
	void *buf;
	int rc = 0;

	if (len == 0)
		return 0;
	buf = malloc(MF_MIN(len, (uint64_t)COPY_CHUNK));
	if (!buf)
		return -ENOMEM;
	while (done < len) {
		size_t want = (size_t)MF_MIN(len - done, (uint64_t)COPY_CHUNK);
		ssize_t n;

		rc = meta_getattr(m, src, &a);
		if (rc)
			break;
		n = cache_read(c, src, off_in + done, want, a.size, buf);
		if (n <= 0) {
			rc = (int)n;
			break;
		}
		n = cache_write(c, dst, off_out + done, buf, (size_t)n);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		done += (uint64_t)n;
		if ((size_t)n < want)
			break;
	}
	free(buf);
	return done ? (ssize_t)done : rc;
}

struct blocks_apply {
	struct meta *m;
	uint64_t src, sfirst, dst, dfirst, n, end;
	struct timespec now;
};

static int apply_blocks(void *arg)
{
	struct blocks_apply *b = arg;

	return meta_clone_blocks(b->m, b->src, b->sfirst, b->dst, b->dfirst,
				 b->n, b->end, &b->now);
}

/* Share n whole blocks (invariant 2): 0 or -errno. */
static int share_blocks(struct meta *m, struct cache *c,
			struct blocks_apply *b)
{
	int rc = -EAGAIN, i;

	for (i = 0; i < CLONE_TRIES && rc == -EAGAIN; i++) {
		if (i > 0) {
			rc = cache_flush_inode(c, b->src);
			if (rc)
				return rc;
		}
		b->now = now_realtime();
		rc = cache_replace(c, b->dst, b->dfirst, b->dfirst + b->n - 1,
				   apply_blocks, b);
	}
	return rc;
}

ssize_t fs_clone_range(struct meta *m, struct cache *c, uint64_t src,
		       uint64_t off_in, uint64_t dst, uint64_t off_out,
		       uint64_t len)
{
	uint64_t bs = meta_block_size(m), head, nblk, tail;
	struct blocks_apply b = { m, src, 0, dst, 0, 0, 0, { 0, 0 } };
	struct meta_attr a;
	ssize_t n;
	int rc;

	rc = meta_getattr(m, src, &a);
	if (rc)
		return rc;
	if (off_in >= a.size || len == 0)
		return 0;
	len = MF_MIN(len, a.size - off_in);
	head = (bs - off_in % bs) % bs;
	if (off_in % bs != off_out % bs || head >= len ||
	    (len - head) / bs == 0)
		return -EOPNOTSUPP; /* no block to share: the kernel copies */
	nblk = (len - head) / bs;
	tail = len - head - nblk * bs;

	n = copy_bytes(m, c, src, off_in, dst, off_out, head);
	if (n < 0 || (uint64_t)n < head)
		return n;
	b.sfirst = (off_in + head) / bs;
	b.dfirst = (off_out + head) / bs;
	b.n = nblk;
	b.end = off_out + head + nblk * bs;
	rc = share_blocks(m, c, &b);
	if (rc) {
		if (rc != -EAGAIN && rc != -EOPNOTSUPP)
			log_warn("clone: blocks of inode %" PRIu64
				 " into inode %" PRIu64 ": %s", src, dst,
				 strerror(-rc));
		/* invariant 1; an empty answer lets the kernel copy */
		if (head)
			return (ssize_t)head;
		return rc == -EAGAIN ? -EOPNOTSUPP : rc;
	}
	n = copy_bytes(m, c, src, off_in + head + nblk * bs, dst,
		       b.end, tail);
	if (n < 0)
		return (ssize_t)(head + nblk * bs);
	return (ssize_t)(head + nblk * bs + (uint64_t)n);
}

int fs_clone_tree(struct meta *m, struct cache *c, uint64_t src,
		  uint64_t dparent, const char *name,
		  const struct meta_caller *who, struct meta_attr *out,
		  struct meta_clone_stats *stats)
{
	uint64_t *dirty = calloc(DIRTY_MAX, sizeof(*dirty));
	size_t nd = 0, i;
	int rc = -EAGAIN, t;

	if (!dirty)
		return -ENOMEM;
	for (t = 0; t < CLONE_TRIES && rc == -EAGAIN; t++) {
		/* invariant 2: upload what was dirty, then again */
		if (nd > DIRTY_MAX)
			cache_flush_all(c, NULL, NULL);
		for (i = 0; nd <= DIRTY_MAX && i < nd; i++) {
			rc = cache_flush_inode(c, dirty[i]);
			if (rc)
				goto out_free;
		}
		rc = meta_clone_tree(m, src, dparent, name, who, NULL, out,
				     stats, dirty, DIRTY_MAX, &nd);
	}
out_free:
	free(dirty);
	return rc;
}

int fs_clone_request(struct meta *m, struct cache *c, uint64_t ino,
		     struct fs_clone_req *r, const struct meta_caller *who)
{
	struct meta_clone_stats st;
	struct meta_attr a;
	uint64_t src = ino;
	int rc;

	r->src_name[sizeof(r->src_name) - 1] = 0;
	r->dst_name[sizeof(r->dst_name) - 1] = 0;
	if (r->reserved || (r->flags & ~(uint32_t)FS_CLONE_NAMED))
		return -EINVAL;
	if (r->flags & FS_CLONE_NAMED) {
		/* a lookup in the directory the caller holds open */
		rc = meta_getattr(m, ino, &a);
		if (rc)
			return rc;
		if (!S_ISDIR(a.mode))
			return -ENOTDIR;
		if (!meta_caller_may(who, &a, X_OK))
			return -EACCES;
		rc = meta_lookup(m, ino, r->src_name, &a);
		if (rc)
			return rc;
		src = a.ino;
	}
	rc = fs_clone_tree(m, c, src, r->dparent, r->dst_name, who, &a, &st);
	if (rc)
		return rc;
	r->ino = a.ino;
	r->inodes = st.inodes;
	r->blocks = st.blocks;
	return 0;
}

/* ---- the requests ---- */

int fs_clone_copy_range(fuse_req_t req, struct meta *m, struct cache *c,
			uint64_t src, off_t off_in, uint64_t dst,
			off_t off_out, size_t len, int flags)
{
	ssize_t n;

	if (flags || off_in < 0 || off_out < 0) {
		fuse_reply_err(req, EINVAL);
		return -EINVAL;
	}
	n = fs_clone_range(m, c, src, (uint64_t)off_in, dst,
			   (uint64_t)off_out, len);
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return (int)n;
	}
	fuse_reply_write(req, (size_t)n);
	return 0;
}

/* FS_IOC_HISTORY (fs.h): the window, set by the daemon. */
static void history_ioctl(fuse_req_t req, const struct fs_config *cfg,
			  const void *in_buf, size_t in_bufsz,
			  size_t out_bufsz)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct buf err = BUF_INIT;
	struct fs_history_req r;
	int rc;

	if (in_bufsz != sizeof(r) || out_bufsz != sizeof(r)) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (cfg->read_only || !cfg->set_history) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (ctx->uid != 0 && ctx->uid != geteuid()) {
		fuse_reply_err(req, EPERM);
		return;
	}
	memcpy(&r, in_buf, sizeof(r));
	r.err[0] = 0;
	rc = cfg->set_history(cfg->history_arg, r.history_s, &r.old_s, &err);
	if (rc && err.len)
		snprintf(r.err, sizeof(r.err), "%s", buf_str(&err));
	buf_free(&err);
	if (rc && !r.err[0])
		fuse_reply_err(req, -rc);
	else
		fuse_reply_ioctl(req, rc ? 1 : 0, &r, sizeof(r));
}

void fs_clone_ioctl(fuse_req_t req, struct fuse_session *se,
		    const struct fs_config *cfg, uint64_t ino, unsigned cmd,
		    const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	uint32_t groups[256];
	gid_t g[256];
	struct meta_caller who = { ctx->uid, ctx->gid, groups, 0 };
	struct fs_clone_req r;
	int rc, i, n;

	if (cmd == FS_IOC_HISTORY) {
		history_ioctl(req, cfg, in_buf, in_bufsz, out_bufsz);
		return;
	}
	if (cmd == FS_IOC_SNAP || cmd == FS_IOC_SNAP_LIST) {
		fs_snap_ioctl(req, cfg, cmd, in_buf, in_bufsz, out_bufsz);
		return;
	}
	if (cmd != FS_IOC_CLONE || in_bufsz != sizeof(r) ||
	    out_bufsz != sizeof(r)) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (cfg->read_only) {
		fuse_reply_err(req, EROFS);
		return;
	}
	memcpy(&r, in_buf, sizeof(r));
	n = fuse_req_getgroups(req, 256, g);
	for (i = 0; i < n && i < 256; i++)
		groups[i] = (uint32_t)g[i];
	who.ngroups = n > 0 ? (size_t)MF_MIN(n, 256) : 0;
	rc = fs_clone_request(cfg->meta, cfg->cache, ino, &r, &who);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	/* the kernel may hold a negative entry for the new name, and the
	 * directory's old times and link count */
	fuse_lowlevel_notify_inval_entry(se, r.dparent, r.dst_name,
					 strlen(r.dst_name));
	fuse_lowlevel_notify_inval_inode(se, r.dparent, -1, 0);
	fuse_reply_ioctl(req, 0, &r, sizeof(r));
}
