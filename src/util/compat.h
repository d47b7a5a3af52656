/*
 * compat.h - the first include of every metafuse source file.
 *
 * It sets the feature-test macros once for the whole tree (C11 plus the
 * GNU/POSIX extensions the filesystem needs: pread/pwrite, fallocate,
 * renameat2 flags, O_TMPFILE ...) and pulls in the headers nearly every file
 * uses.  Nothing here may depend on any library other than libc.
 */
#ifndef METAFUSE_COMPAT_H
#define METAFUSE_COMPAT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MF_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MF_MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(__GNUC__)
#define MF_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define MF_UNUSED __attribute__((unused))
#else
#define MF_PRINTF(f, a)
#define MF_UNUSED
#endif

#define METAFUSE_VERSION "0.1.0"

#endif
