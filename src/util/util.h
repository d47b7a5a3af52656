/*
 * util.h - small helpers on top of libc: sizes, hex, time, files.
 * All return 0 or -errno unless stated otherwise.
 */
#ifndef METAFUSE_UTIL_H
#define METAFUSE_UTIL_H

#include "util/compat.h"

#include <time.h>

#include "util/buf.h"

/* "4096", "64K", "1M", "2G", "1T" (binary multiples, optional trailing
 * "B" or "iB") into bytes.  -EINVAL on anything else or on overflow. */
int parse_size(const char *s, uint64_t *out);
/* Non-negative decimal seconds, fractions allowed ("0.5"), into ns. */
int parse_seconds(const char *s, uint64_t *out_ns);

/* Lowercase hex of len bytes into out (2*len+1 bytes, NUL-terminated). */
void hex_encode(const uint8_t *in, size_t len, char *out);
/* Exactly 2*len hex digits into len bytes. -EINVAL otherwise. */
int hex_decode(const char *in, uint8_t *out, size_t len);

/* CLOCK_REALTIME now. */
struct timespec now_realtime(void);
/* CLOCK_MONOTONIC in ns. */
uint64_t now_mono_ns(void);
/* CLOCK_REALTIME in ns since the Unix epoch. */
uint64_t now_real_ns(void);

/* mkdir -p with mode for every created component. */
int mkdir_p(const char *path, unsigned mode);
/* Remove a tree (like rm -rf). Missing path is not an error. */
int rm_rf(const char *path);
/* Write a whole file durably: temp file in the same directory, fsync,
 * rename over path, fsync of the directory. */
int write_file_atomic(const char *path, const void *data, size_t len,
		      unsigned mode);
/* Read a whole file into out (appended). */
int read_file(const char *path, struct buf *out);
/* pwrite all len bytes at off (retrying short writes and EINTR): 0 or
 * -errno. */
int pwrite_all(int fd, const void *buf, size_t len, off_t off);
/* 1 if process pid exists and has not exited (a zombie, not yet reaped
 * by its parent, has exited), else 0. */
int proc_running(long pid);
/* fsync the directory that holds path. */
int fsync_parent_dir(const char *path);

#endif
