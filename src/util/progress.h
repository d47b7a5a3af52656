/*
 * progress.h - a progress meter for the long commands, on a terminal.
 *
 * One line, redrawn in place (a carriage return, no escape sequences) at
 * most every PROGRESS_REDRAW_NS: what is being done, done of total (items
 * or bytes, human-readable), the rate over the last few seconds and the
 * time left, for example
 *
 *   verifying objects: 1234 of 5000 (24%), 310 MiB of 1.2 GiB,
 *     52 MiB/s, 0:14 left
 *
 * Nothing at all is drawn when the stream is not a terminal (pipes, logs,
 * systemd's journal: their output stays as it was), and nothing for an
 * operation that ends within PROGRESS_DELAY_NS of its start.  The
 * environment's METAFUSE_PROGRESS=1 draws it on any stream, =0 on none.
 *
 * An operation may go through phases (restoring the metadata, then
 * listing, then deleting): each phase has its own label, counts, total
 * and rate; the quiet delay runs from the first.  progress_end() erases
 * the line, so what the command prints next starts on a clean line.
 *
 * A meter is used by one thread at a time; it allocates nothing (the
 * caller owns struct progress, and nothing needs freeing).
 */
#ifndef METAFUSE_PROGRESS_H
#define METAFUSE_PROGRESS_H

#include "util/compat.h"

/* nothing is drawn before the operation has run this long */
#define PROGRESS_DELAY_NS 1000000000ULL
/* ... nor more often than this */
#define PROGRESS_REDRAW_NS 250000000ULL
/* the rate is measured over up to PROGRESS_SAMPLES samples, one per
 * PROGRESS_SAMPLE_NS (the last few seconds) */
#define PROGRESS_SAMPLES 8
#define PROGRESS_SAMPLE_NS 500000000ULL

enum progress_flags {
	/* done and total are bytes (else items: objects, entries) */
	PROGRESS_BYTES = 1 << 0,
	/* items, and the bytes they hold (progress_update_bytes()): the
	 * rate and the time left go by the bytes */
	PROGRESS_ITEM_BYTES = 1 << 1,
};

/*
 * How a long operation below cli/ says how far it has come, through a
 * function pointer and its argument (volume/ and store/ print nothing):
 * what it is doing (a constant string, "deleting objects"), flags
 * (enum progress_flags), done of total (0: not known yet).  Called on
 * the thread that runs the operation.  progress_report() is one, over a
 * struct progress.
 */
typedef void progress_fn(void *arg, const char *what, unsigned flags,
			 uint64_t done, uint64_t total);

struct progress_sample {
	uint64_t t; /* clock, ns */
	uint64_t v; /* what the rate counts: done, or bytes */
};

struct progress {
	FILE *out;
	bool on; /* drawing at all (a terminal, or METAFUSE_PROGRESS=1) */
	uint64_t (*clock)(void *arg); /* ns; monotonic */
	void *clock_arg;
	uint64_t start;     /* of the operation: the quiet delay runs from it */
	bool started;       /* a phase began */
	/* the current phase */
	char what[80];
	unsigned flags;
	uint64_t done, total;        /* total 0: not known */
	uint64_t bytes, total_bytes; /* with PROGRESS_ITEM_BYTES */
	uint64_t phase_start;
	struct progress_sample sample[PROGRESS_SAMPLES]; /* oldest first */
	unsigned nsample;
	/* the line on the screen */
	uint64_t last_draw;
	bool redraw;  /* draw at the next update, whenever the last was */
	size_t drawn; /* columns of the line now shown; 0: none */
	unsigned width; /* columns; 0: the terminal's (80 when unknown) */
};

/*
 * A meter drawing on out (stderr, usually) when it is a terminal, with
 * the monotonic clock.  Nothing is drawn until a phase begins.
 */
void progress_init(struct progress *p, FILE *out);
/* Read the time from clock(arg) instead (ns, never going back): for
 * tests.  Call before the first phase. */
void progress_set_clock(struct progress *p, uint64_t (*clock)(void *arg),
			void *arg);
/* A phase begins: its label (copied), flags and total (0: not known);
 * its counts start at 0.  The first phase starts the operation's
 * clock. */
void progress_phase(struct progress *p, const char *what, unsigned flags,
		    uint64_t total);
/* The phase's total (items or bytes), once known or when it grows; and,
 * with PROGRESS_ITEM_BYTES, the bytes the items hold. */
void progress_set_total(struct progress *p, uint64_t total);
void progress_set_total_bytes(struct progress *p, uint64_t total_bytes);
/* So much is done (and, with PROGRESS_ITEM_BYTES, holds bytes): the line
 * is redrawn when it is due. */
void progress_update(struct progress *p, uint64_t done);
void progress_update_bytes(struct progress *p, uint64_t done,
			   uint64_t bytes);
/* A progress_fn over a struct progress (arg): a new label or new flags
 * begin a phase, then as progress_set_total() (when total is not 0) and
 * progress_update(). */
void progress_report(void *arg, const char *what, unsigned flags,
		     uint64_t done, uint64_t total);
/* Erase the line (when drawn) before something else is printed on the
 * same terminal; the next update draws it again at once. */
void progress_clear(struct progress *p);
/* Print a message as a line of its own on the meter's stream (always,
 * drawing or not), the meter's line erased first and drawn again at the
 * next update. */
void progress_note(struct progress *p, const char *fmt, ...)
	MF_PRINTF(2, 3);
/* The operation is over: the line is erased.  The meter may begin
 * another operation (progress_phase()). */
void progress_end(struct progress *p);

/* The line as it would be drawn now (no carriage return), into out (size
 * bytes, NUL-terminated, cut to size - 1); its length. */
size_t progress_format(const struct progress *p, char *out, size_t size);
/* Human-readable sizes and times as the meter writes them: "512 B",
 * "3.4 MiB", "310 MiB"; "0:14", "12:05", "1:02:03". */
void progress_fmt_bytes(uint64_t n, char *out, size_t size);
void progress_fmt_secs(uint64_t secs, char *out, size_t size);

#endif
