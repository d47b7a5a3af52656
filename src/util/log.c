/*
 * log.c - timestamped, leveled log lines to stderr or a file.
 *
 * Invariant: a message is formatted into a local buffer and written with a
 * single write(2) on an O_APPEND descriptor, so concurrent threads never
 * interleave inside a line and no lock is needed.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

static int log_fd = 2;
static enum log_level log_level = LOG_INFO;

void log_set_level(enum log_level level)
{
	log_level = level;
}

int log_set_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	if (log_fd > 2)
		close(log_fd);
	log_fd = fd;
	return 0;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	char line[2048];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	size_t n;
	int k;

	if (level > log_level)
		return;
	n = 0;
	/* on a terminal, over a progress meter's line (util/progress.h):
	 * back to its start, erased */
	if (isatty(log_fd)) {
		memcpy(line, "\r\033[K", 4);
		n = 4;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n += strftime(line + n, sizeof(line) - n, "%Y-%m-%dT%H:%M:%S", &tm);
	k = snprintf(line + n, sizeof(line) - n, ".%03ldZ metafuse[%d] %s: ",
		     ts.tv_nsec / 1000000, (int)getpid(), names[level]);
	if (k > 0)
		n += (size_t)k;
	va_start(ap, fmt);
	k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (k > 0)
		n += (size_t)k;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(log_fd, line, n) < 0) {
		/* nowhere left to report a failing log */
	}
}
