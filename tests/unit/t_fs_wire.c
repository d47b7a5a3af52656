/*
 * t_fs_wire.c - unit tests of src/fs/fs_wire.c without a mount: requests
 * written into a pipe as the kernel writes them to /dev/fuse, read back
 * through the session's custom read (the kill flag each leaves for the
 * thread that processes it), and INIT replies written through its
 * writev into another pipe (FUSE_HANDLE_KILLPRIV_V2 added only when the
 * kernel offered it, every other reply untouched).  The mounted
 * behaviour is tests/e2e/test_posix.py's.
 */
#include "util/compat.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <errno.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"
#include "fs/fs_int.h"

static int req_fd[2], rep_fd[2];

/* Send the kernel's request opcode with arg; read it as libfuse does;
 * return fs_wire_kill() after it. */
static unsigned request(struct fs *fs, uint32_t opcode, uint64_t unique,
			const void *arg, size_t arglen)
{
	const struct fuse_custom_io *io = fs_wire_io();
	unsigned char buf[512];
	struct fuse_in_header h;
	ssize_t n;

	memset(&h, 0, sizeof(h));
	h.len = (uint32_t)(sizeof(h) + arglen);
	h.opcode = opcode;
	h.unique = unique;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), arg, arglen);
	CHECK_RC(write(req_fd[1], buf, h.len), h.len);
	memset(buf, 0, sizeof(buf));
	n = io->read(req_fd[0], buf, sizeof(buf), fs);
	CHECK_RC(n, h.len);
	return fs_wire_kill();
}

static void test_kill_flags(void)
{
	struct fs *fs = calloc(1, sizeof(*fs));
	struct fuse_write_in w;
	struct fuse_setattr_in s;
	struct fuse_open_in o;
	struct fuse_getattr_in g;

	memset(&w, 0, sizeof(w));
	w.write_flags = FUSE_WRITE_KILL_SUIDGID;
	CHECK_RC(request(fs, FUSE_WRITE, 10, &w, sizeof(w)), FS_KILL_SUIDGID);
	w.write_flags = FUSE_WRITE_CACHE;
	CHECK_RC(request(fs, FUSE_WRITE, 11, &w, sizeof(w)), 0);

	memset(&s, 0, sizeof(s));
	s.valid = FATTR_SIZE | FATTR_KILL_SUIDGID;
	CHECK_RC(request(fs, FUSE_SETATTR, 12, &s, sizeof(s)),
		 FS_KILL_SUIDGID);
	s.valid = FATTR_SIZE;
	CHECK_RC(request(fs, FUSE_SETATTR, 13, &s, sizeof(s)), 0);
	/* a SETATTR of nothing: the kernel's own request to kill */
	s.valid = 0;
	CHECK_RC(request(fs, FUSE_SETATTR, 14, &s, sizeof(s)),
		 FS_KILL_SUIDGID);

	memset(&o, 0, sizeof(o));
	o.flags = O_WRONLY | O_TRUNC;
	o.open_flags = FUSE_OPEN_KILL_SUIDGID;
	CHECK_RC(request(fs, FUSE_OPEN, 15, &o, sizeof(o)), FS_KILL_SUIDGID);
	/* the next request of the thread has no flag left over */
	memset(&g, 0, sizeof(g));
	CHECK_RC(request(fs, FUSE_GETATTR, 16, &g, sizeof(g)), 0);
	o.open_flags = 0;
	CHECK_RC(request(fs, FUSE_OPEN, 17, &o, sizeof(o)), 0);
	/* a request too short for its argument carries no flag */
	CHECK_RC(request(fs, FUSE_WRITE, 18, &w, 8), 0);
	CHECK(!fs_wire_killpriv(fs));
	free(fs);
}

static void *other_thread(void *arg)
{
	*(unsigned *)arg = fs_wire_kill();
	return NULL;
}

/* the flag is the reading thread's alone */
static void test_kill_flag_per_thread(void)
{
	struct fs *fs = calloc(1, sizeof(*fs));
	struct fuse_write_in w;
	unsigned seen = 99;
	pthread_t t;

	memset(&w, 0, sizeof(w));
	w.write_flags = FUSE_WRITE_KILL_SUIDGID;
	CHECK_RC(request(fs, FUSE_WRITE, 20, &w, sizeof(w)), FS_KILL_SUIDGID);
	CHECK_RC(pthread_create(&t, NULL, other_thread, &seen), 0);
	pthread_join(t, NULL);
	CHECK_RC(seen, 0);
	CHECK_RC(fs_wire_kill(), FS_KILL_SUIDGID);
	free(fs);
}

/* Write a reply through the session's writev; return the flags of the
 * fuse_init_out the kernel reads. */
static uint32_t reply_init(struct fs *fs, uint64_t unique, int32_t error,
			   uint32_t flags)
{
	const struct fuse_custom_io *io = fs_wire_io();
	struct fuse_out_header oh;
	struct fuse_init_out out, got;
	struct iovec iov[2];
	unsigned char buf[sizeof(oh) + sizeof(out)];

	memset(&oh, 0, sizeof(oh));
	memset(&out, 0, sizeof(out));
	oh.len = sizeof(oh) + sizeof(out);
	oh.error = error;
	oh.unique = unique;
	out.major = FUSE_KERNEL_VERSION;
	out.minor = 36;
	out.flags = flags;
	out.max_write = 1U << 20;
	iov[0].iov_base = &oh;
	iov[0].iov_len = sizeof(oh);
	iov[1].iov_base = &out;
	iov[1].iov_len = sizeof(out);
	CHECK_RC(io->writev(rep_fd[1], iov, 2, fs), sizeof(buf));
	CHECK_RC(read(rep_fd[0], buf, sizeof(buf)), sizeof(buf));
	CHECK_MEM(buf, &oh, sizeof(oh));
	memcpy(&got, buf + sizeof(oh), sizeof(got));
	/* only flags may differ, and libfuse's copy is left as it was */
	CHECK_RC(got.max_write, 1U << 20);
	CHECK_RC(out.flags, flags);
	return got.flags;
}

static void init_request(struct fs *fs, uint64_t unique, uint32_t offered)
{
	struct fuse_init_in in;

	memset(&in, 0, sizeof(in));
	in.major = FUSE_KERNEL_VERSION;
	in.minor = FUSE_KERNEL_MINOR_VERSION;
	in.flags = offered;
	CHECK_RC(request(fs, FUSE_INIT, unique, &in, sizeof(in)), 0);
}

static void test_init_reply(void)
{
	const uint32_t base = FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC;
	struct fs *fs = calloc(1, sizeof(*fs));

	/* a notification (unique 0) before the INIT request: untouched,
	 * and the INIT reply still gets the flag */
	CHECK_RC(reply_init(fs, 0, 0, base), base);
	/* offered: added (and the old way taken out), once */
	init_request(fs, 2, base | FUSE_HANDLE_KILLPRIV |
				    FUSE_HANDLE_KILLPRIV_V2);
	CHECK(!fs_wire_killpriv(fs));
	CHECK_RC(reply_init(fs, 7, 0, base), base);   /* another reply */
	CHECK(!fs_wire_killpriv(fs));
	CHECK_RC(reply_init(fs, 2, 0, base | FUSE_HANDLE_KILLPRIV),
		 base | FUSE_HANDLE_KILLPRIV_V2);
	CHECK(fs_wire_killpriv(fs));
	CHECK_RC(reply_init(fs, 2, 0, base), base);
	free(fs);

	/* not offered: the reply as libfuse made it */
	fs = calloc(1, sizeof(*fs));
	init_request(fs, 2, base);
	CHECK_RC(reply_init(fs, 2, 0, base), base);
	CHECK(!fs_wire_killpriv(fs));
	free(fs);

	/* an INIT refused: untouched */
	fs = calloc(1, sizeof(*fs));
	init_request(fs, 3, base | FUSE_HANDLE_KILLPRIV_V2);
	CHECK_RC(reply_init(fs, 3, -EPROTO, base), base);
	CHECK(!fs_wire_killpriv(fs));
	free(fs);
}

static void test_read_error(void)
{
	const struct fuse_custom_io *io = fs_wire_io();
	struct fs *fs = calloc(1, sizeof(*fs));
	char buf[64];

	errno = 0;
	CHECK_RC(io->read(-1, buf, sizeof(buf), fs), -1);
	CHECK_RC(errno, EBADF);
	CHECK_RC(fs_wire_kill(), 0);
	free(fs);
}

int main(void)
{
	if (pipe(req_fd) || pipe(rep_fd))
		return 1;
	test_kill_flags();
	test_kill_flag_per_thread();
	test_init_reply();
	test_read_error();
	return check_done("t_fs_wire");
}
