/*
 * log.h - the daemon's log.
 *
 * Messages go to stderr until log_set_file() redirects them (the daemon does
 * so once it detaches from the terminal).  Each line carries a UTC timestamp
 * with milliseconds and the level; on a terminal it first erases the line
 * it lands on (a progress meter's, util/progress.h).  Thread-safe: a line is written with one
 * write(2).  Secrets must never be passed to these functions.
 */
#ifndef METAFUSE_LOG_H
#define METAFUSE_LOG_H

#include "util/compat.h"

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);
/* Append to path from now on (created 0600). 0 or -errno. */
int log_set_file(const char *path);
void log_msg(enum log_level level, const char *fmt, ...) MF_PRINTF(2, 3);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
