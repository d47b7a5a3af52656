/*
 * cmd_clone.c - `metafuse clone SRC DST`: a copy of a file or a whole
 * tree inside one mounted volume, made by the mount's daemon in one
 * metadata transaction, sharing every block instead of copying it.
 *
 * How it reaches the daemon: an ioctl (FS_IOC_CLONE, fs/fs.h) on a
 * descriptor of SRC.  The kernel resolved SRC's path with the caller's
 * permissions, the request arrives on the mount SRC is in (a path on
 * another filesystem gets ENOTTY from it, never a metafuse answer), and
 * the daemon learns the caller's uid, gid and groups from the request
 * itself: nothing to find, no socket to trust.  DST's directory goes by
 * its inode number, checked to be on the same mount (st_dev) here, and
 * checked by the daemon for the caller's write and search permissions
 * (meta_clone_tree()).  SRC that cannot be opened for reading without
 * side effects (a symlink, fifo, socket or device node) goes as a name
 * in its directory (FS_CLONE_NAMED).
 *
 * Invariants
 *   1. Every failure is one line on stderr and exit status 1 (2 for bad
 *      usage), and the daemon changes nothing then (its one
 *      transaction).
 *   2. Nothing is done when DST exists: cp's "copy into the directory"
 *      is not guessed at; name the new path.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <libgen.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "fs/fs.h"
#include "util/util.h"

static const char clone_help[] =
	"usage: metafuse clone [-v] SRC DST\n"
	"\n"
	"Copies SRC (a file, or a directory with everything in it) to DST in\n"
	"the same mounted volume, in one step that copies no data: the copy\n"
	"shares every block with SRC until either is written.  As `cp -a`\n"
	"would: types, modes, times, symlinks, xattrs, and hard links\n"
	"between files inside SRC are kept; owners too when run as root,\n"
	"otherwise the copy is yours.  You need read permission on what\n"
	"you copy and write permission on DST's directory.  DST must not\n"
	"exist.  Files in SRC being written are uploaded first.\n"
	"(Plain `cp` of a file inside a volume also shares blocks: it uses\n"
	"copy_file_range.)\n"
	"\n"
	"  -v    say how many inodes were made and blocks shared\n";

const struct cli_cmd cli_cmd_clone = {
	.name = "clone",
	.summary = "copy a file or a tree inside a mounted volume, sharing its "
		   "blocks",
	.run = cmd_clone,
	.help = clone_help,
	.usage = "usage: metafuse clone [-v] SRC DST",
	.shortopts = "v",
	.min_operands = 2,
	.max_operands = 2,
	.flag_status = 2,
};

/* path without its trailing slashes ("/" stays). */
static void strip_slashes(char *path)
{
	size_t n = strlen(path);

	while (n > 1 && path[n - 1] == '/')
		path[--n] = 0;
}

/* The directory part and the last name of path (both copies). */
static int split_path(const char *path, char **dir, char **name)
{
	char *a = strdup(path), *b = strdup(path);

	*dir = *name = NULL;
	if (!a || !b) {
		free(a);
		free(b);
		return -ENOMEM;
	}
	*dir = strdup(dirname(a));
	*name = strdup(basename(b));
	free(a);
	free(b);
	if (!*dir || !*name) {
		free(*dir);
		free(*name);
		return -ENOMEM;
	}
	return 0;
}

/* The one line for what the daemon (or the kernel) answered. */
static void clone_failed(int err, const char *src, const char *dst,
			 const struct stat *sst)
{
	switch (err) {
	case ENOTTY:
	case EOPNOTSUPP:
		cli_error("clone: %s is not in a metafuse mount", src);
		break;
	case EEXIST:
		cli_error("clone: %s: File exists", dst);
		break;
	case EINVAL:
		if (S_ISDIR(sst->st_mode))
			cli_error("clone: cannot copy %s into itself (%s)", src,
				  dst);
		else
			cli_error("clone: %s: %s", dst, strerror(err));
		break;
	case EACCES:
		cli_error("clone: permission denied: something in %s is not "
			  "readable, or %s's directory is not writable",
			  src, dst);
		break;
	case EPERM:
		cli_error("clone: %s holds a device node: only root may copy "
			  "one", src);
		break;
	case EAGAIN:
		cli_error("clone: files in %s kept being written; try again",
			  src);
		break;
	default:
		cli_error("clone: %s: %s", src, strerror(err));
	}
}

/* A descriptor for the request on SRC (invariant of the header): SRC
 * itself, or its directory with r->src_name set. */
static int open_source(const char *src, const struct stat *sst,
		       struct fs_clone_req *r)
{
	char *dir, *name;
	int fd;

	if (S_ISREG(sst->st_mode) || S_ISDIR(sst->st_mode))
		return open(src, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
				 O_CLOEXEC);
	if (split_path(src, &dir, &name)) {
		errno = ENOMEM;
		return -1;
	}
	fd = -1;
	if (strlen(name) < sizeof(r->src_name)) {
		snprintf(r->src_name, sizeof(r->src_name), "%s", name);
		r->flags |= FS_CLONE_NAMED;
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		errno = ENAMETOOLONG;
	}
	free(dir);
	free(name);
	return fd;
}

/* The request for DST: its directory's inode, on SRC's device. */
static int target_of(const char *src, const struct stat *sst,
		     const char *dst, struct fs_clone_req *r)
{
	char *dir = NULL, *name = NULL;
	struct stat st;
	int rc = 1;

	if (lstat(dst, &st) == 0) {
		cli_error("clone: %s: File exists", dst);
		return 1;
	}
	if (errno != ENOENT) {
		cli_error("clone: %s: %s", dst, strerror(errno));
		return 1;
	}
	if (split_path(dst, &dir, &name)) {
		cli_error("clone: out of memory");
		return 1;
	}
	if (strlen(name) >= sizeof(r->dst_name)) {
		cli_error("clone: %s: %s", dst, strerror(ENAMETOOLONG));
	} else if (stat(dir, &st)) {
		cli_error("clone: %s: %s", dir, strerror(errno));
	} else if (!S_ISDIR(st.st_mode)) {
		cli_error("clone: %s: %s", dir, strerror(ENOTDIR));
	} else if (st.st_dev != sst->st_dev) {
		cli_error("clone: %s and %s are not in the same mounted "
			  "volume", src, dst);
	} else {
		snprintf(r->dst_name, sizeof(r->dst_name), "%s", name);
		r->dparent = st.st_ino;
		rc = 0;
	}
	free(dir);
	free(name);
	return rc;
}

int cmd_clone(int argc, char **argv)
{
	struct fs_clone_req r;
	bool verbose = false;
	struct cli_args a;
	char *src = NULL, *dst = NULL;
	struct stat sst;
	int c, fd, status = 1;

	cli_args_init(&a, &cli_cmd_clone, argc, argv);
	while ((c = cli_getopt(&a)) > 0)
		if (c == 'v')
			verbose = true;
	if (c < 0)
		return a.status;
	memset(&r, 0, sizeof(r));
	src = strdup(a.operand[0]);
	dst = strdup(a.operand[1]);
	if (!src || !dst) {
		cli_error("clone: out of memory");
		goto out;
	}
	strip_slashes(src);
	strip_slashes(dst);
	if (lstat(src, &sst)) {
		cli_error("clone: %s: %s", src, strerror(errno));
		goto out;
	}
	if (target_of(src, &sst, dst, &r))
		goto out;
	fd = open_source(src, &sst, &r);
	if (fd < 0) {
		cli_error("clone: %s: %s", src, strerror(errno));
		goto out;
	}
	if (ioctl(fd, FS_IOC_CLONE, &r)) {
		clone_failed(errno, src, dst, &sst);
	} else {
		status = 0;
		if (verbose)
			printf("%s: %" PRIu64 " inodes made, %" PRIu64
			       " blocks shared\n", dst, r.inodes, r.blocks);
	}
	close(fd);
out:
	free(src);
	free(dst);
	return status;
}
