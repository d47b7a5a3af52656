/*
 * fs_wire.c - the few bytes of the FUSE protocol that libfuse 3.14 does
 * not hand to a filesystem: FUSE_HANDLE_KILLPRIV_V2 and its kill flags.
 *
 * Without FUSE_HANDLE_KILLPRIV_V2 (protocol 7.33) the kernel clears
 * set-id bits and file capabilities itself, and to know whether a file
 * has a capability it sends a GETXATTR of security.capability before
 * every write: a round trip that doubled the requests of a 4 KiB random
 * write.  With it, the kernel marks the superblock SB_NOSEC, stops asking
 * once an inode has been written (until its attributes are refreshed),
 * and leaves the clearing to the filesystem, telling it per request
 * whether the caller lacks CAP_FSETID:
 *   WRITE    FUSE_WRITE_KILL_SUIDGID in fuse_write_in.write_flags
 *   SETATTR  FATTR_KILL_SUIDGID in fuse_setattr_in.valid (a truncate,
 *            a chown), or nothing at all in valid (see wire_note())
 *   OPEN     FUSE_OPEN_KILL_SUIDGID in fuse_open_in.open_flags (O_TRUNC)
 * libfuse 3.14 knows neither the flag nor these fields.  So the session
 * reads and writes /dev/fuse through fuse_session_custom_io():
 *   - wire_read() notes the INIT request's unique and offered flags, and
 *     for every other request the kill flag, in a thread-local variable:
 *     fuse_session_loop_mt()'s worker that reads a request is the one
 *     that processes it, right after, so the handler finds the flag of
 *     its own request (fs_wire_kill());
 *   - wire_writev() adds FUSE_HANDLE_KILLPRIV_V2 to the INIT reply when
 *     the kernel offered it, and records that it did (fs->wire.killpriv).
 * Splice reads would bypass wire_read(): fs_op_init() never asks for them.
 *
 * Invariants
 *   1. fs->wire.killpriv is true only if the INIT reply that reached the
 *      kernel carried FUSE_HANDLE_KILLPRIV_V2; it is set before that reply
 *      is written, and never changes after it.
 *   2. fs->wire.init_unique is set (with offered) before the INIT request
 *      is processed; init_done once its reply went by.
 *   3. wire_kill is the kill flag of the last request this thread read;
 *      0 for every request that has none.
 */
#include "util/compat.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <linux/fuse.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/log.h"

/* the kill flag of the request this thread processes (invariant 3) */
static _Thread_local unsigned wire_kill;

unsigned fs_wire_kill(void)
{
	return wire_kill;
}

bool fs_wire_killpriv(struct fs *fs)
{
	return atomic_load_explicit(&fs->wire.killpriv, memory_order_acquire);
}

/* The argument of a request, when it holds at least need bytes. */
static const void *wire_arg(const void *buf, ssize_t n, size_t need)
{
	if (n < 0 || (size_t)n < sizeof(struct fuse_in_header) + need)
		return NULL;
	return (const char *)buf + sizeof(struct fuse_in_header);
}

static void wire_note(struct fs *fs, const void *buf, ssize_t n)
{
	const struct fuse_in_header *h = buf;
	const struct fuse_write_in *w;
	const struct fuse_setattr_in *s;
	const struct fuse_open_in *o;
	const struct fuse_init_in *i;

	wire_kill = 0;
	if (n < (ssize_t)sizeof(*h))
		return;
	switch (h->opcode) {
	case FUSE_WRITE:
		w = wire_arg(buf, n, sizeof(*w));
		if (w && (w->write_flags & FUSE_WRITE_KILL_SUIDGID))
			wire_kill = FS_KILL_SUIDGID;
		break;
	case FUSE_SETATTR:
		s = wire_arg(buf, n, sizeof(*s));
		/* valid 0: the kernel's own notify_change() with nothing
		 * for us but ATTR_KILL_*, whose bits it strips: chown(f, -1,
		 * -1), and file_remove_privs() before a fallocate or a write
		 * (which a caller with CAP_FSETID reaches only for a file
		 * capability, see fs_op_setattr()) */
		if (s && ((s->valid & FATTR_KILL_SUIDGID) || s->valid == 0))
			wire_kill = FS_KILL_SUIDGID;
		break;
	case FUSE_OPEN:
		o = wire_arg(buf, n, sizeof(*o));
		if (o && (o->open_flags & FUSE_OPEN_KILL_SUIDGID))
			wire_kill = FS_KILL_SUIDGID;
		break;
	case FUSE_INIT:
		/* flags came with protocol 7.6: the first four words */
		i = wire_arg(buf, n, offsetof(struct fuse_init_in, flags) +
					     sizeof(i->flags));
		fs->wire.offered = i ? i->flags : 0;
		atomic_store(&fs->wire.init_unique, h->unique);
		break;
	default:
		break;
	}
}

static ssize_t wire_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);
	int err = errno;

	wire_note(userdata, buf, n);
	errno = err;
	return n;
}

/*
 * The INIT reply with FUSE_HANDLE_KILLPRIV_V2 added, in a copy: libfuse
 * writes it as the header and struct fuse_init_out (two iovecs).  The
 * kernel sends nothing else before it has this reply.
 */
static ssize_t wire_writev(int fd, struct iovec *iov, int count,
			   void *userdata)
{
	struct fs *fs = userdata;
	const struct fuse_out_header *oh;
	struct fuse_init_out out;
	struct iovec v[2];

	if (atomic_load_explicit(&fs->wire.init_done, memory_order_acquire) ||
	    count != 2 || iov[0].iov_len != sizeof(*oh))
		return writev(fd, iov, count);
	oh = iov[0].iov_base;
	/* unique 0: a notification (fs_notify.c), never a reply */
	if (oh->unique == 0 ||
	    oh->unique != atomic_load(&fs->wire.init_unique))
		return writev(fd, iov, count);
	atomic_store(&fs->wire.init_done, true);
	if (oh->error || !(fs->wire.offered & FUSE_HANDLE_KILLPRIV_V2) ||
	    iov[1].iov_len > sizeof(out) ||
	    iov[1].iov_len < offsetof(struct fuse_init_out, flags) +
				     sizeof(out.flags))
		return writev(fd, iov, count);
	memset(&out, 0, sizeof(out));
	memcpy(&out, iov[1].iov_base, iov[1].iov_len);
	out.flags |= FUSE_HANDLE_KILLPRIV_V2;
	/* the daemon, not the kernel, clears set-id bits: not both ways */
	out.flags &= ~(uint32_t)FUSE_HANDLE_KILLPRIV;
	v[0] = iov[0];
	v[1].iov_base = &out;
	v[1].iov_len = iov[1].iov_len;
	atomic_store_explicit(&fs->wire.killpriv, true, memory_order_release);
	return writev(fd, v, 2);
}

static const struct fuse_custom_io wire_io = {
	.read = wire_read,
	.writev = wire_writev,
};

const struct fuse_custom_io *fs_wire_io(void)
{
	return &wire_io;
}

int fs_wire_install(struct fs *fs)
{
	int rc = fuse_session_custom_io(fs->se, &wire_io,
					fuse_session_fd(fs->se));

	if (rc) {
		rc = rc < 0 ? rc : -EIO;
		log_error("cannot hook the FUSE device: %s", strerror(-rc));
	}
	return rc;
}
