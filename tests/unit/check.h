/*
 * check.h - the unit tests' assertion macros.
 *
 * CHECK(cond) records a failure (file, line, expression) and goes on;
 * CHECK_RC(expr, want) compares an int result; CHECK_EQ_U64 compares
 * integers; CHECK_MEM compares byte ranges.  check_done() prints
 * "N passed, N failed" and returns the process exit code.
 */
#ifndef METAFUSE_CHECK_H
#define METAFUSE_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (cond) {                                                  \
			check_passed++;                                      \
		} else {                                                     \
			check_failed++;                                      \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n",         \
				__FILE__, __LINE__, #cond);                  \
		}                                                            \
	} while (0)

#define CHECK_RC(expr, want)                                                 \
	do {                                                                 \
		long long check_got_ = (long long)(expr);                    \
		long long check_want_ = (long long)(want);                   \
		if (check_got_ == check_want_) {                             \
			check_passed++;                                      \
		} else {                                                     \
			check_failed++;                                      \
			fprintf(stderr, "%s:%d: %s = %lld, want %lld\n",     \
				__FILE__, __LINE__, #expr, check_got_,       \
				check_want_);                                \
		}                                                            \
	} while (0)

#define CHECK_EQ_U64(a, b)                                                   \
	do {                                                                 \
		unsigned long long check_a_ = (unsigned long long)(a);       \
		unsigned long long check_b_ = (unsigned long long)(b);       \
		if (check_a_ == check_b_) {                                  \
			check_passed++;                                      \
		} else {                                                     \
			check_failed++;                                      \
			fprintf(stderr, "%s:%d: %s = %llu, want %llu\n",     \
				__FILE__, __LINE__, #a, check_a_, check_b_); \
		}                                                            \
	} while (0)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

static inline int check_done(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
	return check_failed ? 1 : 0;
}

#endif
