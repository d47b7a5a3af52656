/*
 * util.c - small helpers on top of libc (see util.h for the contracts).
 *
 * Parsing is done by hand rather than with strtoull(), which silently
 * accepts leading blanks, a sign ("-1" wraps to 2^64-1) and saturates on
 * overflow; every byte of the input must be accounted for here.
 *
 * File helpers work on paths, never on global state, so they are safe to
 * call from any thread.
 *
 * Invariants:
 *   1. Every parser either stores a result and returns 0, or returns
 *      -EINVAL and leaves *out untouched.
 *   2. write_file_atomic() never leaves path half-written: readers see the
 *      old file or the new one.  On failure the temp file is removed.
 *   3. read_file() leaves out as it was on failure.
 *   4. rm_rf() never follows a symbolic link: a link is removed, not the
 *      tree it points to.
 */
#include "util/compat.h"

#include <signal.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "util/util.h"

/* Multiply *v by m, -EINVAL on overflow. */
static int mul_u64(uint64_t *v, uint64_t m)
{
	if (m && *v > UINT64_MAX / m)
		return -EINVAL;
	*v *= m;
	return 0;
}

/* Decimal digits at *sp into *v; at least one digit, no overflow. */
static int parse_digits(const char **sp, uint64_t *v)
{
	const char *s = *sp;
	uint64_t n = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	while (*s >= '0' && *s <= '9') {
		unsigned d = (unsigned)(*s - '0');

		if (n > (UINT64_MAX - d) / 10)
			return -EINVAL;
		n = n * 10 + d;
		s++;
	}
	*sp = s;
	*v = n;
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	uint64_t v, mult = 1;
	int shift = 0;

	if (!s || parse_digits(&s, &v))
		return -EINVAL;
	switch (*s) {
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	case 't': case 'T':
		shift = 40;
		break;
	default:
		break;
	}
	if (shift) {
		s++;
		mult = (uint64_t)1 << shift;
		/* "iB" only makes sense after a binary multiplier */
		if (s[0] == 'i' && s[1] == 'B')
			s += 2;
		else if (s[0] == 'B')
			s++;
	} else if (s[0] == 'B') {
		s++;
	}
	if (*s != '\0' || mul_u64(&v, mult))
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_seconds(const char *s, uint64_t *out_ns)
{
	uint64_t secs = 0, frac = 0, scale = 100000000;
	bool digits = false;

	if (!s)
		return -EINVAL;
	if (*s >= '0' && *s <= '9') {
		if (parse_digits(&s, &secs))
			return -EINVAL;
		digits = true;
	}
	if (*s == '.') {
		s++;
		/* digits past the ninth are below one ns: ignored */
		while (*s >= '0' && *s <= '9') {
			frac += (uint64_t)(*s - '0') * scale;
			scale /= 10;
			digits = true;
			s++;
		}
	}
	if (!digits || *s != '\0')
		return -EINVAL;
	if (mul_u64(&secs, 1000000000) || secs > UINT64_MAX - frac)
		return -EINVAL;
	*out_ns = secs + frac;
	return 0;
}

void hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_decode(const char *in, uint8_t *out, size_t len)
{
	size_t i;

	/* Validate first so out is untouched on failure; a NUL before
	 * 2*len digits is not a hex digit and stops the scan. */
	for (i = 0; i < 2 * len; i++)
		if (hex_value(in[i]) < 0)
			return -EINVAL;
	for (i = 0; i < len; i++)
		out[i] = (uint8_t)((unsigned)hex_value(in[2 * i]) << 4 |
				   (unsigned)hex_value(in[2 * i + 1]));
	return 0;
}

struct timespec now_realtime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

uint64_t now_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t now_real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* mkdir that accepts an existing directory (but not an existing file). */
static int mkdir_one(const char *path, unsigned mode)
{
	struct stat st;
	int err;

	if (mkdir(path, (mode_t)mode) == 0)
		return 0;
	err = errno;
	if (err != EEXIST)
		return -err;
	if (stat(path, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int mkdir_p(const char *path, unsigned mode)
{
	char *copy, *p;
	int rc = 0;

	if (!path || !*path)
		return -ENOENT;
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	/* Create each proper prefix ending before a '/', then the whole. */
	for (p = copy + 1; *p; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		rc = mkdir_one(copy, mode);
		*p = '/';
		if (rc)
			goto out_free_copy;
	}
	rc = mkdir_one(copy, mode);
out_free_copy:
	free(copy);
	return rc;
}

/* Remove name (relative to parent) and everything below it. */
static int rm_rf_at(int parent, const char *name)
{
	struct dirent *de;
	struct stat st;
	DIR *dir;
	int fd, err, rc = 0;

	if (unlinkat(parent, name, 0) == 0)
		return 0;
	err = errno;
	if (err == ENOENT)
		return 0;
	/* Linux says EISDIR for a directory, POSIX allows EPERM. */
	if (err != EISDIR && err != EPERM)
		return -err;
	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return -err;

	fd = openat(parent, name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	dir = fdopendir(fd);
	if (!dir) {
		err = errno;
		close(fd);
		return -err;
	}
	for (;;) {
		errno = 0;
		de = readdir(dir);
		if (!de) {
			if (errno)
				rc = -errno;
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		rc = rm_rf_at(fd, de->d_name);
		if (rc)
			break;
	}
	closedir(dir);
	if (rc)
		return rc;
	if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int rm_rf(const char *path)
{
	if (!path || !*path)
		return -EINVAL;
	return rm_rf_at(AT_FDCWD, path);
}

/* Length of the directory part of path ("" for a bare name, "/" kept). */
static size_t dir_len(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return 0;
	while (slash > path && slash[-1] == '/')
		slash--;
	return slash == path ? 1 : (size_t)(slash - path);
}

int fsync_parent_dir(const char *path)
{
	char *dir;
	size_t n = dir_len(path);
	int fd, rc = 0;

	dir = n ? strndup(path, n) : strdup(".");
	if (!dir)
		return -ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto out_free_dir;
	}
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
out_free_dir:
	free(dir);
	return rc;
}

/* write() all of len bytes, retrying on EINTR and short writes. */
static int write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len,
		      unsigned mode)
{
	static atomic_uint_fast64_t seq;
	struct buf tmp = BUF_INIT;
	size_t n = dir_len(path);
	int fd = -1, rc, tries;

	for (tries = 0; tries < 100; tries++) {
		buf_reset(&tmp);
		rc = buf_append(&tmp, path, n);
		if (!rc && n && path[n - 1] != '/')
			rc = buf_appends(&tmp, "/");
		if (!rc)
			rc = buf_appendf(&tmp, ".tmp-%ld-%" PRIuFAST64 "~",
					 (long)getpid(),
					 atomic_fetch_add(&seq, 1));
		if (rc)
			goto out_free_tmp;
		fd = open(buf_str(&tmp),
			  O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			  (mode_t)mode);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0) {
		rc = -errno;
		goto out_free_tmp;
	}
	rc = write_all(fd, data, len);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		goto out_unlink_tmp;
	if (rename(buf_str(&tmp), path) < 0) {
		rc = -errno;
		goto out_unlink_tmp;
	}
	rc = fsync_parent_dir(path);
	goto out_free_tmp;

out_unlink_tmp:
	unlink(buf_str(&tmp));
out_free_tmp:
	buf_free(&tmp);
	return rc;
}

int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

int read_file(const char *path, struct buf *out)
{
	size_t start = out->len;
	struct stat st;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out_close;
	}
	/* The size is only a hint (files may grow or be special). */
	if (S_ISREG(st.st_mode) && st.st_size > 0 &&
	    (uint64_t)st.st_size < SIZE_MAX / 2) {
		rc = buf_reserve(out, (size_t)st.st_size);
		if (rc)
			goto out_close;
	}
	for (;;) {
		ssize_t n;

		rc = buf_reserve(out, 65536);
		if (rc)
			goto out_restore;
		n = read(fd, out->data + out->len, out->cap - out->len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out_restore;
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
	}
	out->data[out->len] = 0;
	goto out_close;

out_restore:
	out->len = start;
	if (out->data)
		out->data[start] = 0;
out_close:
	close(fd);
	return rc;
}

int proc_running(long pid)
{
	char path[64], st[512] = "";
	const char *rp;
	FILE *f;

	if (pid <= 0 || (kill((pid_t)pid, 0) && errno != EPERM))
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(st, sizeof(st), f))
		st[0] = 0;
	fclose(f);
	rp = strrchr(st, ')');
	return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}
