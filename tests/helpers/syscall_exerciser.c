/*
 * syscall_exerciser.c - run a fixed, deterministic sequence of system calls
 * inside one directory and print a canonical transcript of their results.
 *
 * The end-to-end tests run it twice, once in a directory on a local disk
 * filesystem (the reference) and once inside a metafuse mount, and require
 * the two transcripts to be identical.  A line records what POSIX pins
 * down: return values, errno names, file types, permission bits, link
 * counts, sizes, owners, timestamps that were set explicitly, and a hash of
 * file contents.  It never records what legitimately differs between two
 * filesystems: inode numbers, st_blocks, st_dev, directory sizes, times the
 * kernel picked, readdir order, or where exactly SEEK_HOLE finds a hole.
 *
 * Usage: syscall_exerciser DIR     (DIR must exist and be empty)
 * Exit status: 0 when the whole sequence ran (whatever its results),
 * 2 on a usage error, 1 when the harness itself failed (out of memory).
 *
 * Invariants:
 *   1. The transcript depends only on the filesystem's behaviour: never on
 *      time, pid, fd numbers, umask or the environment.
 *   2. Each line names the call and its arguments, so a diff of two
 *      transcripts points at the call that behaved differently.
 *   3. Every step runs even when an earlier one failed, so one bug shows
 *      as a few differing lines, not as a truncated transcript.
 */
#define _GNU_SOURCE 1
#define _FILE_OFFSET_BITS 64

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define KIB 1024L
#define MIB (1024L * 1024L)

static int dirfd_root = -1;

/* ---- transcript helpers ------------------------------------------------ */

static const char *errno_name(int err)
{
	static char other[32];

	switch (err) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case EXDEV: return "EXDEV";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case EMFILE: return "EMFILE";
	case ETXTBSY: return "ETXTBSY";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case ESPIPE: return "ESPIPE";
	case EROFS: return "EROFS";
	case EMLINK: return "EMLINK";
	case ERANGE: return "ERANGE";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOSYS: return "ENOSYS";
	case ENOTEMPTY: return "ENOTEMPTY";
	case ELOOP: return "ELOOP";
	case ENODATA: return "ENODATA";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EOVERFLOW: return "EOVERFLOW";
	default:
		snprintf(other, sizeof(other), "E%d", err);
		return other;
	}
}

static void emitv(long ret, int err, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void emitv(long ret, int err, const char *fmt, va_list ap)
{
	vprintf(fmt, ap);
	if (ret < 0)
		printf(" = -1 %s\n", errno_name(err));
	else
		printf(" = %ld\n", ret);
}

/* Print "<call> = <ret>" or "<call> = -1 <ERRNO>"; return ret. */
static long step(long ret, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static long step(long ret, const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	emitv(ret, ret < 0 ? err : 0, fmt, ap);
	va_end(ap);
	errno = err;
	return ret;
}

/* Like step() for calls returning a descriptor: the number is hidden. */
static int step_fd(int fd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int step_fd(int fd, const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	if (fd < 0)
		printf(" = -1 %s\n", errno_name(err));
	else
		printf(" = fd\n");
	errno = err;
	return fd;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p) {
		fprintf(stderr, "syscall_exerciser: out of memory\n");
		exit(1);
	}
	return p;
}

/* A copy of s with every byte outside printable ASCII, and the backslash,
 * written as \\xNN; the caller frees it. */
static char *escape(const char *s)
{
	char *out = xmalloc(strlen(s) * 4 + 1), *o = out;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x21 || c > 0x7e || c == '\\')
			o += sprintf(o, "\\x%02x", c);
		else
			*o++ = (char)c;
	}
	*o = '\0';
	return out;
}

/* ---- deterministic data and hashing ------------------------------------ */

/* Fill buf with bytes that depend on seed and the absolute offset only. */
static void pattern(unsigned char *buf, size_t len, uint64_t seed,
		    uint64_t off)
{
	size_t i;

	for (i = 0; i < len; i++) {
		uint64_t x = (off + i) * 0x9e3779b97f4a7c15ULL ^ seed;

		x ^= x >> 29;
		x *= 0xbf58476d1ce4e5b9ULL;
		x ^= x >> 32;
		buf[i] = (unsigned char)x;
	}
}

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_INIT 0xcbf29ce484222325ULL

/* Write len pattern bytes at off in chunks of at most chunk bytes. */
static long write_pattern(int fd, uint64_t seed, off_t off, size_t len,
			  size_t chunk)
{
	unsigned char *buf = xmalloc(chunk);
	size_t done = 0;
	long ret = 0;

	while (done < len) {
		size_t n = len - done < chunk ? len - done : chunk;
		ssize_t w;

		pattern(buf, n, seed, (uint64_t)off + done);
		w = pwrite(fd, buf, n, off + (off_t)done);
		if (w < 0) {
			ret = -1;
			break;
		}
		if (w == 0) {
			errno = EIO;
			ret = -1;
			break;
		}
		done += (size_t)w;
	}
	free(buf);
	return ret < 0 ? ret : (long)done;
}

/* "len=N hash=H" of the whole content of an open file, read from 0. */
static void content_of_fd(int fd, char *out, size_t outlen)
{
	unsigned char *buf = xmalloc(128 * KIB);
	uint64_t h = FNV_INIT, total = 0;
	off_t off = 0;
	ssize_t n;

	while ((n = pread(fd, buf, 128 * KIB, off)) > 0) {
		h = fnv1a(h, buf, (size_t)n);
		total += (uint64_t)n;
		off += n;
	}
	if (n < 0)
		snprintf(out, outlen, "read-error=%s", errno_name(errno));
	else
		snprintf(out, outlen, "len=%" PRIu64 " hash=%016" PRIx64,
			 total, h);
	free(buf);
}

static void show_content(const char *path)
{
	char desc[96];
	int fd = openat(dirfd_root, path, O_RDONLY | O_NOFOLLOW);

	if (fd < 0) {
		note("content %s: open -1 %s", path, errno_name(errno));
		return;
	}
	content_of_fd(fd, desc, sizeof(desc));
	note("content %s: %s", path, desc);
	close(fd);
}

/* Number of bytes in [off, off+len) of path that are not zero. */
static void show_zero_range(const char *path, off_t off, size_t len)
{
	unsigned char *buf = xmalloc(len ? len : 1);
	int fd = openat(dirfd_root, path, O_RDONLY);
	size_t i, nonzero = 0;
	ssize_t n;

	if (fd < 0) {
		note("zeros %s [%lld,+%zu): open -1 %s", path, (long long)off,
		     len, errno_name(errno));
		free(buf);
		return;
	}
	n = pread(fd, buf, len, off);
	if (n < 0) {
		note("zeros %s [%lld,+%zu): pread -1 %s", path,
		     (long long)off, len, errno_name(errno));
	} else {
		for (i = 0; i < (size_t)n; i++)
			nonzero += buf[i] != 0;
		note("zeros %s [%lld,+%zu): got=%zd nonzero=%zu", path,
		     (long long)off, len, n, nonzero);
	}
	close(fd);
	free(buf);
}

static const char *type_name(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "reg";
	case S_IFDIR: return "dir";
	case S_IFLNK: return "lnk";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "sock";
	case S_IFCHR: return "chr";
	case S_IFBLK: return "blk";
	default: return "?";
	}
}

static void show_statbuf(const char *label, const struct stat *st)
{
	char size[48] = "";
	char rdev[48] = "";

	/* a directory's st_size is the filesystem's business */
	if (!S_ISDIR(st->st_mode))
		snprintf(size, sizeof(size), " size=%lld",
			 (long long)st->st_size);
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
		snprintf(rdev, sizeof(rdev), " rdev=%u:%u",
			 major(st->st_rdev), minor(st->st_rdev));
	note("%s: type=%s mode=%04o nlink=%lu uid=%u gid=%u%s%s", label,
	     type_name(st->st_mode), (unsigned)(st->st_mode & 07777),
	     (unsigned long)st->st_nlink, (unsigned)st->st_uid,
	     (unsigned)st->st_gid, size, rdev);
}

static void show_stat(const char *path)
{
	char label[4 * PATH_MAX + 16];
	char *esc = escape(path);
	struct stat st;

	snprintf(label, sizeof(label), "lstat %s", esc);
	free(esc);
	if (fstatat(dirfd_root, path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		note("%s = -1 %s", label, errno_name(errno));
		return;
	}
	show_statbuf(label, &st);
}

static void show_fstat(const char *label, int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		note("fstat %s = -1 %s", label, errno_name(errno));
		return;
	}
	show_statbuf(label, &st);
}

static void show_times(const char *path)
{
	struct stat st;

	if (fstatat(dirfd_root, path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		note("times %s = -1 %s", path, errno_name(errno));
		return;
	}
	note("times %s: atime=%lld.%09ld mtime=%lld.%09ld", path,
	     (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
	     (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted list of "name:type" of a directory read with getdents64. */
static void show_dir(const char *path)
{
	size_t cap = 64, n = 0, i, len = 0;
	char **names = xmalloc(cap * sizeof(*names));
	char buf[4096];
	char *line;
	long r;
	int fd = openat(dirfd_root, path, O_RDONLY | O_DIRECTORY);

	if (fd < 0) {
		note("dir %s: open -1 %s", path, errno_name(errno));
		free(names);
		return;
	}
	while ((r = (long)getdents64(fd, buf, sizeof(buf))) > 0) {
		long pos = 0;

		while (pos < r) {
			struct dirent64 *d = (struct dirent64 *)(buf + pos);
			const char *t;
			char *esc;
			size_t l;

			switch (d->d_type) {
			case DT_REG: t = "reg"; break;
			case DT_DIR: t = "dir"; break;
			case DT_LNK: t = "lnk"; break;
			case DT_FIFO: t = "fifo"; break;
			case DT_SOCK: t = "sock"; break;
			case DT_CHR: t = "chr"; break;
			case DT_BLK: t = "blk"; break;
			default: t = "unknown"; break;
			}
			if (n == cap) {
				char **nn;

				cap *= 2;
				nn = realloc(names, cap * sizeof(*names));
				if (!nn) {
					fprintf(stderr, "out of memory\n");
					exit(1);
				}
				names = nn;
			}
			esc = escape(d->d_name);
			l = strlen(esc) + strlen(t) + 2;
			names[n] = xmalloc(l);
			snprintf(names[n], l, "%s:%s", esc, t);
			free(esc);
			len += l;
			n++;
			pos += d->d_reclen;
		}
	}
	if (r < 0)
		note("dir %s: getdents64 -1 %s", path, errno_name(errno));
	close(fd);
	qsort(names, n, sizeof(*names), cmp_str);
	line = xmalloc(len + 1);
	line[0] = '\0';
	for (i = 0; i < n; i++) {
		if (i)
			strcat(line, " ");
		strcat(line, names[i]);
		free(names[i]);
	}
	note("dir %s (%zu): %s", path, n, line);
	free(line);
	free(names);
}

/* Sorted user.* xattr names of path. */
static void show_xattrs(const char *path)
{
	char list[4096], full[PATH_MAX];
	const char *names[128];
	size_t n = 0, i;
	ssize_t len;
	char *p;

	snprintf(full, sizeof(full), "/proc/self/fd/%d/%s", dirfd_root, path);
	len = llistxattr(full, list, sizeof(list));
	if (len < 0) {
		note("xattrs %s: llistxattr -1 %s", path, errno_name(errno));
		return;
	}
	for (p = list; p < list + len && n < ARRAY_LEN(names);
	     p += strlen(p) + 1) {
		if (!strncmp(p, "user.", 5))
			names[n++] = p;
	}
	qsort(names, n, sizeof(*names), cmp_str);
	printf("xattrs %s:", path);
	for (i = 0; i < n; i++) {
		char val[8192];
		ssize_t vl = lgetxattr(full, names[i], val, sizeof(val));

		if (vl < 0)
			printf(" %s=<%s>", names[i], errno_name(errno));
		else
			printf(" %s=%016" PRIx64 "/%zd", names[i],
			       fnv1a(FNV_INIT, (unsigned char *)val,
				     (size_t)vl), vl);
	}
	putchar('\n');
}

/* ---- the sequence ------------------------------------------------------ */

static const char *at(const char *path)
{
	static char full[2][PATH_MAX];
	static int which;

	which ^= 1;
	snprintf(full[which], sizeof(full[which]), "/proc/self/fd/%d/%s",
		 dirfd_root, path);
	return full[which];
}

static int make_file(const char *path, uint64_t seed, size_t len)
{
	int fd = openat(dirfd_root, path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	long r;

	if (fd < 0) {
		note("make %s: open -1 %s", path, errno_name(errno));
		return -1;
	}
	r = write_pattern(fd, seed, 0, len, 256 * KIB);
	if (r < 0)
		note("make %s: write -1 %s", path, errno_name(errno));
	close(fd);
	return r < 0 ? -1 : 0;
}

static void seq_basic_io(void)
{
	char buf[256];
	int fd, fd2;

	note("## basic io");
	fd = step_fd(openat(dirfd_root, "a", O_CREAT | O_EXCL | O_RDWR, 0644),
		     "open a O_CREAT|O_EXCL|O_RDWR");
	step_fd(openat(dirfd_root, "a", O_CREAT | O_EXCL | O_RDWR, 0644),
		"open a O_CREAT|O_EXCL again");
	step(write(fd, "hello world\n", 12), "write a 12");
	step(lseek(fd, 0, SEEK_CUR), "lseek a 0 SEEK_CUR");
	step(lseek(fd, 0, SEEK_SET), "lseek a 0 SEEK_SET");
	memset(buf, 0, sizeof(buf));
	step(read(fd, buf, 5), "read a 5");
	note("data: %.5s", buf);
	step(pwrite(fd, "WORLD", 5, 6), "pwrite a 5 @6");
	memset(buf, 0, sizeof(buf));
	step(pread(fd, buf, sizeof(buf), 0), "pread a 256 @0");
	note("data: %s", buf);
	step(pread(fd, buf, sizeof(buf), 100), "pread a 256 @100 (past eof)");
	step(lseek(fd, 0, SEEK_END), "lseek a 0 SEEK_END");
	step(lseek(fd, 10, SEEK_END), "lseek a 10 SEEK_END");
	step(write(fd, "X", 1), "write a 1 after gap");
	show_stat("a");
	show_zero_range("a", 12, 10);
	step(lseek(fd, -1, SEEK_SET), "lseek a -1 SEEK_SET");
	step(close(fd), "close a");
	step(close(fd), "close a again");
	show_content("a");

	fd = step_fd(openat(dirfd_root, "a", O_WRONLY | O_APPEND),
		     "open a O_WRONLY|O_APPEND");
	step(write(fd, "tail", 4), "write a 4 (append)");
	step(lseek(fd, 0, SEEK_SET), "lseek a 0 SEEK_SET");
	step(write(fd, "more", 4), "write a 4 (append after lseek 0)");
	step(pwrite(fd, "pw", 2, 0), "pwrite a 2 @0 (O_APPEND appends)");
	step(lseek(fd, 0, SEEK_CUR), "lseek a 0 SEEK_CUR");
	step(read(fd, buf, 1), "read on O_WRONLY");
	close(fd);
	show_stat("a");
	show_content("a");

	fd = step_fd(openat(dirfd_root, "a", O_RDONLY), "open a O_RDONLY");
	step(write(fd, "x", 1), "write on O_RDONLY");
	step(ftruncate(fd, 0), "ftruncate on O_RDONLY");
	fd2 = step_fd(openat(dirfd_root, "a", O_RDWR | O_TRUNC),
		      "open a O_RDWR|O_TRUNC");
	show_fstat("a via O_RDONLY fd", fd);
	step(read(fd, buf, sizeof(buf)), "read a after O_TRUNC elsewhere");
	close(fd2);
	close(fd);

	step_fd(openat(dirfd_root, "missing", O_RDONLY), "open missing");
	step_fd(openat(dirfd_root, "a/x", O_RDONLY), "open a/x (ENOTDIR)");
	step_fd(openat(dirfd_root, "a", O_RDONLY | O_DIRECTORY),
		"open a O_DIRECTORY");
	step_fd(openat(dirfd_root, ".", O_WRONLY), "open . O_WRONLY");
	step_fd(openat(dirfd_root, "b", O_CREAT | O_WRONLY | O_TRUNC, 0640),
		"open b O_CREAT mode 0640");
	show_stat("b");
}

static void seq_truncate(void)
{
	int fd;

	note("## truncate");
	make_file("t", 11, 3 * MIB + 12345);
	show_content("t");
	step(truncate(at("t"), 1 * MIB + 100), "truncate t 1MiB+100");
	show_stat("t");
	step(truncate(at("t"), 5 * MIB), "truncate t 5MiB");
	show_stat("t");
	/* stale bytes beyond the old end must not come back */
	show_zero_range("t", 1 * MIB + 100, 4096);
	show_zero_range("t", 2 * MIB, 4096);
	show_zero_range("t", 3 * MIB, 12345);
	show_content("t");
	fd = openat(dirfd_root, "t", O_RDWR);
	step(ftruncate(fd, 100), "ftruncate t 100");
	step(ftruncate(fd, 200), "ftruncate t 200");
	show_zero_range("t", 100, 100);
	step(ftruncate(fd, -1), "ftruncate t -1");
	step(ftruncate(fd, 0), "ftruncate t 0");
	show_fstat("t", fd);
	step(ftruncate(fd, 7 * MIB + 3), "ftruncate t 7MiB+3 (sparse)");
	show_fstat("t", fd);
	close(fd);
	show_content("t");
	step(truncate(at("."), 0), "truncate . 0");
	step(truncate(at("missing"), 0), "truncate missing 0");
}

static void seq_large_and_sparse(void)
{
	int fd;
	off_t r;

	note("## large and sparse");
	fd = openat(dirfd_root, "big", O_CREAT | O_RDWR, 0644);
	step(write_pattern(fd, 21, 0, 4 * MIB + 7, 1 * MIB),
	     "write big 4MiB+7 in 1MiB writes");
	step(write_pattern(fd, 22, MIB - 100, 200, 200),
	     "pwrite big 200 across block boundary");
	step(write_pattern(fd, 23, 2 * MIB + 1, 3 * MIB, 65536),
	     "pwrite big 3MiB @2MiB+1 in 64KiB writes (extends)");
	step(write_pattern(fd, 24, 3, 1, 1), "pwrite big 1 byte @3");
	show_fstat("big", fd);
	close(fd);
	show_content("big");

	fd = openat(dirfd_root, "sparse", O_CREAT | O_RDWR, 0644);
	step(write_pattern(fd, 31, 10 * MIB, 4096, 4096),
	     "pwrite sparse 4096 @10MiB");
	step(write_pattern(fd, 32, 100, 50, 50), "pwrite sparse 50 @100");
	step(write_pattern(fd, 33, 40L * 1024 * MIB, 10, 10),
	     "pwrite sparse 10 @40GiB");
	show_fstat("sparse", fd);
	show_zero_range("sparse", 0, 100);
	show_zero_range("sparse", 150, 65536);
	show_zero_range("sparse", 5 * MIB, 65536);
	show_zero_range("sparse", 10 * MIB + 4096, 65536);
	show_zero_range("sparse", 40L * 1024 * MIB - 100, 100);
	show_zero_range("sparse", 40L * 1024 * MIB, 20);

	/* invariants only: where a hole is found is the filesystem's choice */
	r = lseek(fd, 0, SEEK_DATA);
	note("SEEK_DATA sparse 0: %s", r < 0 ? errno_name(errno) :
	     r <= 100 ? "ok (<=100)" : "bad");
	r = lseek(fd, 10 * MIB, SEEK_DATA);
	note("SEEK_DATA sparse 10MiB: %s", r < 0 ? errno_name(errno) :
	     r == 10 * MIB ? "ok (==10MiB)" : "bad");
	r = lseek(fd, 10 * MIB + 1, SEEK_HOLE);
	note("SEEK_HOLE sparse 10MiB+1: %s", r < 0 ? errno_name(errno) :
	     (r >= 10 * MIB + 4096 && r <= 40L * 1024 * MIB + 10) ? "ok" :
	     "bad");
	r = lseek(fd, 40L * 1024 * MIB + 10, SEEK_DATA);
	note("SEEK_DATA sparse at eof: %s", r < 0 ? errno_name(errno) : "bad");
	r = lseek(fd, 40L * 1024 * MIB + 11, SEEK_HOLE);
	note("SEEK_HOLE sparse past eof: %s", r < 0 ? errno_name(errno) :
	     "bad");
	/* keep the final tree cheap to compare byte by byte */
	step(ftruncate(fd, 10 * MIB + 4096 + 1), "ftruncate sparse 10MiB+4097");
	show_zero_range("sparse", 10 * MIB + 4096, 1);
	close(fd);

	fd = openat(dirfd_root, "zeros", O_CREAT | O_RDWR, 0644);
	{
		unsigned char *z = xmalloc(2 * MIB);

		memset(z, 0, 2 * MIB);
		step(pwrite(fd, z, 2 * MIB, 0), "pwrite zeros 2MiB of zeros");
		free(z);
	}
	show_fstat("zeros", fd);
	close(fd);
	show_content("zeros");
}

static void seq_dirs(void)
{
	int i;

	note("## directories");
	step(mkdirat(dirfd_root, "d", 0755), "mkdir d");
	step(mkdirat(dirfd_root, "d", 0755), "mkdir d again");
	step(mkdirat(dirfd_root, "d/e", 0700), "mkdir d/e");
	step(mkdirat(dirfd_root, "d/e/f", 0750), "mkdir d/e/f");
	step(mkdirat(dirfd_root, "nope/x", 0755), "mkdir nope/x");
	step(mkdirat(dirfd_root, "a/x", 0755), "mkdir a/x (ENOTDIR)");
	show_stat("d");
	show_stat("d/e");
	make_file("d/e/file", 41, 1000);
	show_dir("d/e");
	step(unlinkat(dirfd_root, "d/e", AT_REMOVEDIR), "rmdir d/e (ENOTEMPTY)");
	step(unlinkat(dirfd_root, "a", AT_REMOVEDIR), "rmdir a (ENOTDIR)");
	step(unlinkat(dirfd_root, "d/e", 0), "unlink d/e (EISDIR)");
	step(unlinkat(dirfd_root, "d/e/f/.", AT_REMOVEDIR), "rmdir d/e/f/.");
	step(unlinkat(dirfd_root, "missing", AT_REMOVEDIR), "rmdir missing");
	step(unlinkat(dirfd_root, "d/e/f", AT_REMOVEDIR), "rmdir d/e/f");
	show_stat("d/e");
	for (i = 0; i < 300; i++) {
		char name[64];

		snprintf(name, sizeof(name), "d/many-%03d-%s", i,
			 "padding-to-make-entries-longer-than-usual");
		close(openat(dirfd_root, name, O_CREAT | O_WRONLY, 0600));
	}
	show_dir("d");
	for (i = 0; i < 300; i += 2) {
		char name[64];

		snprintf(name, sizeof(name), "d/many-%03d-%s", i,
			 "padding-to-make-entries-longer-than-usual");
		unlinkat(dirfd_root, name, 0);
	}
	show_dir("d");
	show_stat("d");
}

/* Read a directory in small getdents chunks while deleting entries. */
static void seq_readdir_while_deleting(void)
{
	enum { N = 600 };
	static unsigned char seen[N], deleted[N];
	char buf[512], name[64];
	int fd, i, dup = 0, missing = 0, stray = 0, deleted_now = 0;
	long r;

	note("## readdir while deleting");
	mkdirat(dirfd_root, "rd", 0755);
	for (i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "rd/entry-%04d", i);
		close(openat(dirfd_root, name, O_CREAT | O_WRONLY, 0600));
	}
	fd = openat(dirfd_root, "rd", O_RDONLY | O_DIRECTORY);
	while ((r = (long)getdents64(fd, buf, sizeof(buf))) > 0) {
		long pos = 0;

		while (pos < r) {
			struct dirent64 *d = (struct dirent64 *)(buf + pos);
			int k;

			pos += d->d_reclen;
			if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
				continue;
			if (sscanf(d->d_name, "entry-%d", &k) != 1 || k < 0 ||
			    k >= N) {
				stray++;
				continue;
			}
			/* a deleted entry may or may not show (POSIX) */
			if (seen[k]++)
				dup++;
		}
		/* after each chunk delete 7 entries spread over the range */
		for (i = 0; i < 7; i++) {
			int k = (deleted_now * 37 + 11) % N;

			while (deleted[k])
				k = (k + 1) % N;
			snprintf(name, sizeof(name), "rd/entry-%04d", k);
			if (!unlinkat(dirfd_root, name, 0))
				deleted[k] = 1;
			deleted_now++;
		}
	}
	if (r < 0)
		note("getdents64 rd -1 %s", errno_name(errno));
	close(fd);
	for (i = 0; i < N; i++)
		if (!deleted[i] && !seen[i])
			missing++;
	note("readdir rd while deleting: duplicates=%d missing=%d stray=%d",
	     dup, missing, stray);
}

static void seq_links(void)
{
	char buf[PATH_MAX];
	ssize_t n;
	int fd;

	note("## links");
	make_file("l1", 51, 5000);
	step(linkat(dirfd_root, "l1", dirfd_root, "l2", 0), "link l1 l2");
	step(linkat(dirfd_root, "l1", dirfd_root, "d/l3", 0), "link l1 d/l3");
	step(linkat(dirfd_root, "l1", dirfd_root, "l2", 0), "link l1 l2 again");
	step(linkat(dirfd_root, "d", dirfd_root, "dlink", 0), "link d dlink");
	step(linkat(dirfd_root, "missing", dirfd_root, "x", 0),
	     "link missing x");
	show_stat("l1");
	show_stat("d/l3");
	step(unlinkat(dirfd_root, "l1", 0), "unlink l1");
	show_stat("l2");
	show_content("d/l3");
	/* rename between two links of one inode does nothing */
	step(renameat(dirfd_root, "l2", dirfd_root, "d/l3"),
	     "rename l2 d/l3 (same inode)");
	show_stat("l2");
	show_stat("d/l3");

	step(symlinkat("l2", dirfd_root, "s1"), "symlink l2 s1");
	step(symlinkat("d/../l2", dirfd_root, "s2"), "symlink d/../l2 s2");
	step(symlinkat("dangling", dirfd_root, "s3"), "symlink dangling s3");
	step(symlinkat("s4", dirfd_root, "s4"), "symlink s4 s4 (loop)");
	step(symlinkat("x", dirfd_root, "s1"), "symlink x s1 (exists)");
	memset(buf, 0, sizeof(buf));
	n = step(readlinkat(dirfd_root, "s2", buf, sizeof(buf)), "readlink s2");
	note("target: %.*s", n > 0 ? (int)n : 0, buf);
	n = step(readlinkat(dirfd_root, "s2", buf, 3), "readlink s2 bufsize 3");
	note("target: %.*s", n > 0 ? (int)n : 0, buf);
	step(readlinkat(dirfd_root, "l2", buf, sizeof(buf)),
	     "readlink l2 (EINVAL)");
	show_stat("s1");
	show_stat("s2");
	show_content("s1");
	fd = step_fd(openat(dirfd_root, "s2", O_RDONLY), "open s2");
	if (fd >= 0) {
		char desc[96];

		content_of_fd(fd, desc, sizeof(desc));
		note("content via s2: %s", desc);
		close(fd);
	}
	step_fd(openat(dirfd_root, "s3", O_RDONLY), "open s3 (dangling)");
	step_fd(openat(dirfd_root, "s4", O_RDONLY), "open s4 (loop)");
	step_fd(openat(dirfd_root, "s1", O_RDONLY | O_NOFOLLOW),
		"open s1 O_NOFOLLOW");
	step(symlinkat("d", dirfd_root, "sd"), "symlink d sd");
	show_stat("sd/l3");
	{
		char target[300];

		memset(target, 'y', sizeof(target));
		target[sizeof(target) - 1] = '\0';
		step(symlinkat(target, dirfd_root, "slong"),
		     "symlink 299-byte target");
		n = readlinkat(dirfd_root, "slong", buf, sizeof(buf));
		note("readlink slong = %zd", n);
		show_stat("slong");
	}
	step(unlinkat(dirfd_root, "s1", 0), "unlink s1");
	show_stat("l2");
}

static void seq_rename(void)
{
	note("## rename");
	make_file("r1", 61, 100);
	make_file("r2", 62, 200);
	mkdirat(dirfd_root, "rd1", 0755);
	mkdirat(dirfd_root, "rd1/sub", 0755);
	make_file("rd1/sub/inner", 63, 300);
	mkdirat(dirfd_root, "rd2", 0755);
	mkdirat(dirfd_root, "rd3", 0755);
	make_file("rd3/x", 64, 10);
	mkdirat(dirfd_root, "emptyd", 0755);

	step(renameat(dirfd_root, "r1", dirfd_root, "r2"),
	     "rename r1 r2 (file over file)");
	show_stat("r1");
	show_content("r2");
	step(renameat(dirfd_root, "r2", dirfd_root, "rd1/r2"),
	     "rename r2 rd1/r2");
	step(renameat(dirfd_root, "rd1/r2", dirfd_root, "emptyd"),
	     "rename rd1/r2 emptyd (EISDIR)");
	step(renameat(dirfd_root, "rd2", dirfd_root, "rd1/r2"),
	     "rename rd2 rd1/r2 (ENOTDIR)");
	step(renameat(dirfd_root, "rd1", dirfd_root, "rd1/sub/deeper"),
	     "rename rd1 rd1/sub/deeper (EINVAL)");
	step(renameat(dirfd_root, "rd1", dirfd_root, "rd3"),
	     "rename rd1 rd3 (ENOTEMPTY)");
	step(renameat(dirfd_root, "missing", dirfd_root, "rd9"),
	     "rename missing rd9");
	step(renameat(dirfd_root, "rd1", dirfd_root, "nodir/rd1"),
	     "rename rd1 nodir/rd1");
	step(renameat(dirfd_root, "rd1/r2", dirfd_root, "rd1/r2/x"),
	     "rename rd1/r2 rd1/r2/x (ENOTDIR)");
	show_stat("rd1");
	step(renameat(dirfd_root, "rd1/sub", dirfd_root, "rd2/sub"),
	     "rename rd1/sub rd2/sub (dir to other parent)");
	show_stat("rd1");
	show_stat("rd2");
	show_stat("rd2/sub/..");
	show_content("rd2/sub/inner");
	step(renameat(dirfd_root, "rd2", dirfd_root, "emptyd"),
	     "rename rd2 emptyd (dir over empty dir)");
	show_stat("rd2");
	show_stat("emptyd/sub");
	show_content("emptyd/sub/inner");
	step(renameat(dirfd_root, "emptyd", dirfd_root, "rd1/moved"),
	     "rename emptyd rd1/moved");
	step(renameat(dirfd_root, "rd1", dirfd_root, "rd1"), "rename rd1 rd1");
	step(renameat(dirfd_root, "rd1/moved/sub", dirfd_root, "rd1/sub2"),
	     "rename rd1/moved/sub rd1/sub2");
	show_stat("rd1");
	show_stat("rd1/moved");
	show_dir("rd1");
	show_content("rd1/sub2/inner");
	show_dir(".");

	note("## renameat2");
	make_file("n1", 65, 11);
	make_file("n2", 66, 22);
	step(renameat2(dirfd_root, "n1", dirfd_root, "n2", RENAME_NOREPLACE),
	     "renameat2 n1 n2 NOREPLACE");
	step(renameat2(dirfd_root, "n1", dirfd_root, "n3", RENAME_NOREPLACE),
	     "renameat2 n1 n3 NOREPLACE");
	step(renameat2(dirfd_root, "n3", dirfd_root, "n2", RENAME_EXCHANGE),
	     "renameat2 n3 n2 EXCHANGE");
	show_content("n2");
	show_content("n3");
	step(renameat2(dirfd_root, "n3", dirfd_root, "rd1", RENAME_EXCHANGE),
	     "renameat2 n3 rd1 EXCHANGE (file<->dir)");
	show_stat("n3");
	show_stat("rd1");
	show_content("rd1");
	show_dir("n3");
	step(renameat2(dirfd_root, "n3", dirfd_root, "nothing",
		       RENAME_EXCHANGE), "renameat2 n3 nothing EXCHANGE");
	step(renameat2(dirfd_root, "n3", dirfd_root, "rd1",
		       RENAME_EXCHANGE | RENAME_NOREPLACE),
	     "renameat2 EXCHANGE|NOREPLACE");
	mkdirat(dirfd_root, "n3/sub2", 0755);
	step(renameat2(dirfd_root, "n3", dirfd_root, "n3/sub2",
		       RENAME_EXCHANGE), "renameat2 n3 n3/sub2 EXCHANGE (EINVAL)");
	step(renameat2(dirfd_root, "n3/sub2", dirfd_root, "n2",
		       RENAME_EXCHANGE), "renameat2 n3/sub2 n2 EXCHANGE");
	show_stat("n3");
	show_stat("n2");
	show_dir("n3");
}

static void seq_attrs(void)
{
	struct timespec ts[2];

	note("## attributes");
	make_file("m", 71, 10);
	step(fchmodat(dirfd_root, "m", 04751, 0), "chmod m 4751");
	show_stat("m");
	step(fchmodat(dirfd_root, "m", 06755, 0), "chmod m 6755");
	step(fchownat(dirfd_root, "m", 1234, 5678, 0), "chown m 1234:5678");
	show_stat("m");
	step(fchmodat(dirfd_root, "m", 0600, 0), "chmod m 0600");
	show_stat("m");
	step(fchownat(dirfd_root, "m", (uid_t)-1, 42, 0), "chown m -1:42");
	show_stat("m");
	step(fchmodat(dirfd_root, "missing", 0600, 0), "chmod missing");
	step(fchmodat(dirfd_root, "d", 01777, 0), "chmod d 1777");
	show_stat("d");
	step(fchownat(dirfd_root, "s2", 99, 98, AT_SYMLINK_NOFOLLOW),
	     "lchown s2 99:98");
	show_stat("s2");
	show_stat("l2");

	ts[0].tv_sec = 1000000000;
	ts[0].tv_nsec = 123456789;
	ts[1].tv_sec = 1200000000;
	ts[1].tv_nsec = 987654321;
	step(utimensat(dirfd_root, "m", ts, 0), "utimensat m explicit");
	show_times("m");
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_sec = 1300000000;
	ts[1].tv_nsec = 1;
	step(utimensat(dirfd_root, "m", ts, 0), "utimensat m OMIT,explicit");
	show_times("m");
	ts[0].tv_sec = 5;
	ts[0].tv_nsec = 999999999;
	ts[1].tv_nsec = UTIME_OMIT;
	step(utimensat(dirfd_root, "m", ts, 0), "utimensat m explicit,OMIT");
	show_times("m");
	ts[0].tv_nsec = 1000000000;
	step(utimensat(dirfd_root, "m", ts, 0), "utimensat m nsec=1e9");
	ts[0].tv_sec = 1400000000;
	ts[0].tv_nsec = 5;
	ts[1].tv_sec = 1400000001;
	ts[1].tv_nsec = 6;
	step(utimensat(dirfd_root, "s2", ts, AT_SYMLINK_NOFOLLOW),
	     "utimensat s2 NOFOLLOW");
	show_times("s2");
	step(utimensat(dirfd_root, "d", ts, 0), "utimensat d");
	show_times("d");
}

static void seq_xattrs(void)
{
	char val[64];

	note("## xattrs");
	make_file("x", 81, 10);
	step(setxattr(at("x"), "user.one", "1111", 4, 0), "setxattr user.one");
	step(setxattr(at("x"), "user.one", "2", 1, XATTR_CREATE),
	     "setxattr user.one XATTR_CREATE (exists)");
	step(setxattr(at("x"), "user.two", "2", 1, XATTR_REPLACE),
	     "setxattr user.two XATTR_REPLACE (missing)");
	step(setxattr(at("x"), "user.two", "22", 2, XATTR_CREATE),
	     "setxattr user.two XATTR_CREATE");
	step(setxattr(at("x"), "user.one", "one", 3, XATTR_REPLACE),
	     "setxattr user.one XATTR_REPLACE");
	step(setxattr(at("x"), "user.empty", "", 0, 0), "setxattr user.empty");
	step(getxattr(at("x"), "user.one", NULL, 0), "getxattr user.one size");
	memset(val, 0, sizeof(val));
	step(getxattr(at("x"), "user.one", val, sizeof(val)),
	     "getxattr user.one");
	note("value: %s", val);
	step(getxattr(at("x"), "user.one", val, 2), "getxattr user.one buf 2");
	step(getxattr(at("x"), "user.empty", val, sizeof(val)),
	     "getxattr user.empty");
	step(getxattr(at("x"), "user.none", val, sizeof(val)),
	     "getxattr user.none");
	step(removexattr(at("x"), "user.none"), "removexattr user.none");
	step(removexattr(at("x"), "user.two"), "removexattr user.two");
	show_xattrs("x");
	step(listxattr(at("x"), val, 1), "listxattr buf 1");
	step(setxattr(at("d"), "user.dir", "dv", 2, 0), "setxattr on dir");
	show_xattrs("d");
	step(lsetxattr(at("s2"), "user.l", "v", 1, 0),
	     "lsetxattr on symlink (EPERM)");
	{
		char big[4000];

		memset(big, 'v', sizeof(big));
		step(setxattr(at("x"), "user.big", big, sizeof(big), 0),
		     "setxattr user.big 4000 bytes");
		step(getxattr(at("x"), "user.big", NULL, 0),
		     "getxattr user.big size");
	}
	/* xattrs follow the inode across hard links and renames */
	step(linkat(dirfd_root, "x", dirfd_root, "x2", 0), "link x x2");
	step(renameat(dirfd_root, "x", dirfd_root, "x3"), "rename x x3");
	show_xattrs("x2");
}

static void seq_fallocate(void)
{
	int fd;

	note("## fallocate");
	make_file("fa", 91, 3 * MIB);
	fd = openat(dirfd_root, "fa", O_RDWR);
	step(fallocate(fd, 0, 0, 4096), "fallocate fa 0 [0,4096) inside");
	show_fstat("fa", fd);
	step(fallocate(fd, 0, 3 * MIB, 2 * MIB + 5),
	     "fallocate fa 0 extends to 5MiB+5");
	show_fstat("fa", fd);
	show_zero_range("fa", 3 * MIB, 65536);
	step(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		       1 * MIB - 10, 20),
	     "fallocate fa PUNCH_HOLE small across block boundary");
	step(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		       100, 2 * MIB), "fallocate fa PUNCH_HOLE 100+2MiB");
	step(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		       4 * MIB, 8 * MIB), "fallocate fa PUNCH_HOLE past eof");
	show_fstat("fa", fd);
	show_zero_range("fa", 100, 2 * MIB);
	show_zero_range("fa", 0, 100);
	show_zero_range("fa", 2 * MIB + 100, 10);
	step(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10),
	     "fallocate fa PUNCH_HOLE without KEEP_SIZE");
	step(fallocate(fd, 0, 0, 0), "fallocate fa len 0");
	step(fallocate(fd, 0, -1, 10), "fallocate fa offset -1");
	close(fd);
	show_content("fa");
	fd = openat(dirfd_root, "fa", O_RDONLY);
	step(fallocate(fd, 0, 0, 10), "fallocate on O_RDONLY fd");
	close(fd);
}

static void seq_unlinked_open(void)
{
	char buf[16];
	int fd, fd2;

	note("## unlinked but open");
	make_file("u", 101, 2 * MIB + 3);
	fd = openat(dirfd_root, "u", O_RDWR);
	fd2 = openat(dirfd_root, "u", O_RDONLY);
	step(unlinkat(dirfd_root, "u", 0), "unlink u (open)");
	show_stat("u");
	show_fstat("u (unlinked)", fd);
	step(write_pattern(fd, 102, MIB, 100000, 100000),
	     "pwrite unlinked u 100000 @1MiB");
	step(write_pattern(fd, 103, 4 * MIB, 10, 10),
	     "pwrite unlinked u 10 @4MiB");
	step(ftruncate(fd, 4 * MIB + 5), "ftruncate unlinked u");
	show_fstat("u (unlinked)", fd);
	{
		char desc[96];

		content_of_fd(fd2, desc, sizeof(desc));
		note("content u via second fd: %s", desc);
	}
	step(pread(fd2, buf, sizeof(buf), 4 * MIB), "pread unlinked u @4MiB");
	close(fd);
	step(pread(fd2, buf, sizeof(buf), 4 * MIB - 10),
	     "pread unlinked u after one close");
	close(fd2);
	/* a new file under the old name is a different file */
	make_file("u", 104, 10);
	show_content("u");
}

static void seq_special(void)
{
	note("## special files");
	step(mknodat(dirfd_root, "fifo", S_IFIFO | 0640, 0), "mknod fifo");
	step(mknodat(dirfd_root, "sock", S_IFSOCK | 0600, 0), "mknod sock");
	step(mknodat(dirfd_root, "reg", S_IFREG | 0604, 0), "mknod reg");
	step(mknodat(dirfd_root, "fifo", S_IFIFO | 0640, 0), "mknod fifo again");
	show_stat("fifo");
	show_stat("sock");
	show_stat("reg");
	if (geteuid() == 0) {
		step(mknodat(dirfd_root, "chr", S_IFCHR | 0600,
			     makedev(1, 3)), "mknod chr 1:3");
		step(mknodat(dirfd_root, "blk", S_IFBLK | 0600,
			     makedev(7, 200)), "mknod blk 7:200");
		show_stat("chr");
		show_stat("blk");
	} else {
		note("mknod chr: skipped (not root)");
	}
	{
		int fd = openat(dirfd_root, "fifo", O_RDONLY | O_NONBLOCK);
		int fdw;

		step(fd < 0 ? -1 : 0, "open fifo O_RDONLY|O_NONBLOCK");
		fdw = openat(dirfd_root, "fifo", O_WRONLY | O_NONBLOCK);
		step(fdw < 0 ? -1 : 0, "open fifo O_WRONLY|O_NONBLOCK");
		if (fdw >= 0) {
			char c = 0;

			step(write(fdw, "p", 1), "write fifo");
			step(read(fd, &c, 1), "read fifo");
			note("fifo byte: %c", c);
			close(fdw);
		}
		if (fd >= 0)
			close(fd);
	}
	show_dir(".");
}

static void seq_names(void)
{
	char name[300];

	note("## names");
	memset(name, 'n', sizeof(name));
	name[255] = '\0';
	step_fd(openat(dirfd_root, name, O_CREAT | O_WRONLY, 0644),
		"create 255-byte name");
	step(mkdirat(dirfd_root, name, 0755), "mkdir 255-byte name (EEXIST)");
	name[0] = 'm';
	step(mkdirat(dirfd_root, name, 0755), "mkdir 255-byte name");
	step(symlinkat("t", dirfd_root, "n255") == 0 ?
	     renameat(dirfd_root, "n255", dirfd_root, name) : -1,
	     "rename onto 255-byte dir (EISDIR)");
	name[255] = 'n';
	name[256] = '\0';
	step_fd(openat(dirfd_root, name, O_CREAT | O_WRONLY, 0644),
		"create 256-byte name");
	step(mkdirat(dirfd_root, name, 0755), "mkdir 256-byte name");
	step(symlinkat("t", dirfd_root, name), "symlink 256-byte name");
	step(renameat(dirfd_root, "n255", dirfd_root, name),
	     "rename to 256-byte name");
	step(linkat(dirfd_root, "a", dirfd_root, name, 0),
	     "link to 256-byte name");
	step_fd(openat(dirfd_root, "we\n ird\t\x01\xff name", O_CREAT |
		       O_WRONLY, 0644), "create name with odd bytes");
	show_stat("we\n ird\t\x01\xff name");
}

static void seq_mmap(void)
{
	unsigned char *p;
	int fd;

	note("## mmap");
	make_file("mm", 111, 2 * MIB + 100);
	fd = openat(dirfd_root, "mm", O_RDWR);
	p = mmap(NULL, 2 * MIB + 100, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		 0);
	step(p == MAP_FAILED ? -1 : 0, "mmap mm shared rw");
	if (p != MAP_FAILED) {
		uint64_t h = fnv1a(FNV_INIT, p, 2 * MIB + 100);

		note("mmap read hash: %016" PRIx64, h);
		memset(p + MIB - 5, 'M', 10);
		memset(p + 2 * MIB + 90, 'E', 10);
		step(msync(p, 2 * MIB + 100, MS_SYNC), "msync mm");
		step(munmap(p, 2 * MIB + 100), "munmap mm");
	}
	close(fd);
	show_content("mm");
	show_stat("mm");
}

static void seq_sync_locks_copy(void)
{
	int fd, fd2;
	struct flock fl;
	long r;

	note("## fsync, locks, copy_file_range");
	fd = openat(dirfd_root, "sy", O_CREAT | O_RDWR, 0644);
	step(write_pattern(fd, 121, 0, 300000, 300000), "write sy");
	step(fsync(fd), "fsync sy");
	step(fdatasync(fd), "fdatasync sy");
	step(flock(fd, LOCK_EX), "flock sy LOCK_EX");
	fd2 = openat(dirfd_root, "sy", O_RDONLY);
	step(flock(fd2, LOCK_SH | LOCK_NB), "flock sy LOCK_SH|LOCK_NB (busy)");
	step(flock(fd, LOCK_UN), "flock sy LOCK_UN");
	step(flock(fd2, LOCK_SH | LOCK_NB), "flock sy LOCK_SH|LOCK_NB");
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = 10;
	fl.l_len = 100;
	step(fcntl(fd, F_SETLK, &fl), "fcntl sy F_SETLK write [10,110)");
	fl.l_type = F_WRLCK;
	step(fcntl(fd, F_GETLK, &fl), "fcntl sy F_GETLK (own lock)");
	note("F_GETLK type=%s", fl.l_type == F_UNLCK ? "unlck" : "locked");
	close(fd2);
	fd2 = openat(dirfd_root, "sy2", O_CREAT | O_RDWR | O_TRUNC, 0644);
	r = copy_file_range(fd, NULL, fd2, NULL, 300000, 0);
	note("copy_file_range sy sy2: %s", r == 300000 ? "300000" :
	     r < 0 ? errno_name(errno) : "short");
	step(fsync(fd2), "fsync sy2");
	close(fd2);
	close(fd);
	show_content("sy");
	show_content("sy2");
	fd = openat(dirfd_root, ".", O_RDONLY | O_DIRECTORY);
	step(fsync(fd), "fsync directory");
	close(fd);
}

struct thread_arg {
	int fd;
	int idx;
	long result;
};

static void *thread_writer(void *p)
{
	struct thread_arg *a = p;
	char name[32];
	int fd, i;

	/* interleaved chunks of one shared file */
	a->result = 0;
	for (i = 0; i < 8; i++) {
		off_t off = ((off_t)i * 4 + a->idx) * (300 * KIB + 7);

		if (write_pattern(a->fd, 131, off, 300 * KIB + 7, 65536) < 0)
			a->result = -1;
	}
	/* and a file of its own */
	snprintf(name, sizeof(name), "thr-%d", a->idx);
	fd = openat(dirfd_root, name, O_CREAT | O_RDWR | O_TRUNC, 0644);
	if (fd < 0 || write_pattern(fd, 132 + (uint64_t)a->idx, 0,
				    (size_t)(a->idx + 1) * 700 * KIB,
				    128 * KIB) < 0)
		a->result = -1;
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void seq_threads(void)
{
	struct thread_arg args[4];
	pthread_t tids[4];
	int fd, i;

	note("## threads");
	fd = openat(dirfd_root, "shared", O_CREAT | O_RDWR | O_TRUNC, 0644);
	for (i = 0; i < 4; i++) {
		args[i].fd = fd;
		args[i].idx = i;
		pthread_create(&tids[i], NULL, thread_writer, &args[i]);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(tids[i], NULL);
		note("thread %d: %s", i, args[i].result ? "error" : "ok");
	}
	close(fd);
	show_content("shared");
	for (i = 0; i < 4; i++) {
		char name[32];

		snprintf(name, sizeof(name), "thr-%d", i);
		show_content(name);
	}
}

static void seq_final(void)
{
	note("## final tree");
	show_dir(".");
	show_dir("d");
	show_dir("rd1");
	show_dir("n3");
	show_stat(".");
	show_xattrs("x2");
}

int main(int argc, char **argv)
{
	DIR *d;
	struct dirent *e;

	if (argc != 2) {
		fprintf(stderr, "usage: syscall_exerciser DIR\n");
		return 2;
	}
	dirfd_root = open(argv[1], O_RDONLY | O_DIRECTORY);
	if (dirfd_root < 0) {
		fprintf(stderr, "syscall_exerciser: %s: %s\n", argv[1],
			strerror(errno));
		return 2;
	}
	d = fdopendir(dup(dirfd_root));
	while (d && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			fprintf(stderr, "syscall_exerciser: %s is not empty\n",
				argv[1]);
			return 2;
		}
	}
	if (d)
		closedir(d);
	umask(022);
	setvbuf(stdout, NULL, _IOLBF, 0);

	seq_basic_io();
	seq_truncate();
	seq_large_and_sparse();
	seq_dirs();
	seq_readdir_while_deleting();
	seq_links();
	seq_rename();
	seq_attrs();
	seq_xattrs();
	seq_fallocate();
	seq_unlinked_open();
	seq_special();
	seq_names();
	seq_mmap();
	seq_sync_locks_copy();
	seq_threads();
	seq_final();
	note("## done");
	return 0;
}
