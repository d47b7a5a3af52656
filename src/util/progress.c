/*
 * progress.c - a progress meter on a terminal (see progress.h).
 *
 * Data model: the operation's start (for the quiet delay), the current
 * phase (label, counts, totals) and a short history of samples of the
 * counted quantity (one per PROGRESS_SAMPLE_NS, the newest
 * PROGRESS_SAMPLES kept), from which the rate is the slope between the
 * oldest sample and now: a rate over the last few seconds, which follows
 * a change of pace (a store slowing down) yet does not jump with every
 * batch.  The line on the screen is remembered by its width only.
 *
 * Invariants:
 *   1. Nothing is written unless p->on, except progress_note()'s
 *      messages; nothing is drawn before PROGRESS_DELAY_NS after the
 *      first phase began, nor twice within PROGRESS_REDRAW_NS unless
 *      p->redraw (a new phase, a note, a clear).
 *   2. p->drawn is the width of what the last draw left on the line (0
 *      once erased): every draw covers it, progress_clear() and
 *      progress_end() blank it, so no stale characters are left.
 *   3. A line never reaches the last column (width - 1 at most), so the
 *      terminal never wraps it and the carriage return finds its start.
 *   4. Samples are in time order, the first taken when the phase began;
 *      the rate is 0 (not shown) until 100 ms separate the oldest from
 *      now.
 */
#include "util/compat.h"

#include <stdarg.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "util/progress.h"
#include "util/util.h"

static uint64_t mono_clock(void *arg)
{
	(void)arg;
	return now_mono_ns();
}

void progress_init(struct progress *p, FILE *out)
{
	const char *env = getenv("METAFUSE_PROGRESS");

	memset(p, 0, sizeof(*p));
	p->out = out;
	p->clock = mono_clock;
	if (env && !strcmp(env, "0"))
		p->on = false;
	else if (env && !strcmp(env, "1"))
		p->on = true;
	else
		p->on = out && isatty(fileno(out));
}

void progress_set_clock(struct progress *p, uint64_t (*clock)(void *arg),
			void *arg)
{
	p->clock = clock;
	p->clock_arg = arg;
}

/* What the rate counts (invariant 4). */
static uint64_t rate_value(const struct progress *p)
{
	return p->flags & PROGRESS_ITEM_BYTES ? p->bytes : p->done;
}

static void add_sample(struct progress *p, uint64_t now)
{
	if (p->nsample == PROGRESS_SAMPLES) {
		memmove(&p->sample[0], &p->sample[1],
			(PROGRESS_SAMPLES - 1) * sizeof(p->sample[0]));
		p->nsample--;
	}
	p->sample[p->nsample].t = now;
	p->sample[p->nsample].v = rate_value(p);
	p->nsample++;
}

/* A phase begins; drawn at the next update. */
static void phase_begin(struct progress *p, const char *what,
			unsigned flags, uint64_t total)
{
	uint64_t now = p->clock(p->clock_arg);

	if (!p->started) {
		p->start = now;
		p->started = true;
	}
	snprintf(p->what, sizeof(p->what), "%s", what);
	p->flags = flags;
	p->done = p->bytes = p->total_bytes = 0;
	p->total = total;
	p->phase_start = now;
	p->nsample = 0;
	add_sample(p, now);
	p->redraw = true;
}

void progress_phase(struct progress *p, const char *what, unsigned flags,
		    uint64_t total)
{
	phase_begin(p, what, flags, total);
	progress_update(p, 0);
}

void progress_set_total(struct progress *p, uint64_t total)
{
	p->total = total;
}

void progress_set_total_bytes(struct progress *p, uint64_t total_bytes)
{
	p->total_bytes = total_bytes;
}

/* Columns of the terminal (invariant 3). */
static size_t line_width(const struct progress *p)
{
	struct winsize ws;

	if (p->width)
		return p->width;
	if (ioctl(fileno(p->out), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

/* Counted per second, over the samples (invariant 4); 0: not known. */
static double rate_now(const struct progress *p, uint64_t now)
{
	const struct progress_sample *old = &p->sample[0];
	uint64_t v = rate_value(p);

	if (p->nsample == 0 || now < old->t + 100000000ULL || v < old->v)
		return 0;
	return (double)(v - old->v) * 1e9 / (double)(now - old->t);
}

void progress_fmt_bytes(uint64_t n, char *out, size_t size)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB",
					    "PiB", "EiB" };
	double v = (double)n;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < ARRAY_SIZE(unit)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, size, "%" PRIu64 " B", n);
	else if (v < 9.95)
		snprintf(out, size, "%.1f %s", v, unit[u]);
	else
		snprintf(out, size, "%.0f %s", v, unit[u]);
}

void progress_fmt_secs(uint64_t secs, char *out, size_t size)
{
	if (secs < 3600)
		snprintf(out, size, "%u:%02u", (unsigned)(secs / 60),
			 (unsigned)(secs % 60));
	else
		snprintf(out, size, "%" PRIu64 ":%02u:%02u", secs / 3600,
			 (unsigned)(secs / 60 % 60), (unsigned)(secs % 60));
}

/* ", 52 MiB/s" or ", 410/s" (nothing when not known) */
static void append_rate(const struct progress *p, double rate,
			struct buf *b)
{
	char s[32];

	if (rate <= 0)
		return;
	if (p->flags & (PROGRESS_BYTES | PROGRESS_ITEM_BYTES)) {
		progress_fmt_bytes((uint64_t)rate, s, sizeof(s));
		buf_appendf(b, ", %s/s", s);
	} else if (rate < 9.95) {
		buf_appendf(b, ", %.1f/s", rate);
	} else {
		buf_appendf(b, ", %.0f/s", rate);
	}
}

/* ", 0:14 left" when the total is known and the rate too */
static void append_eta(const struct progress *p, double rate,
		       struct buf *b)
{
	uint64_t total = p->total, v = p->done;
	double secs;
	char s[32];

	if (p->flags & PROGRESS_ITEM_BYTES) {
		total = p->total_bytes;
		v = p->bytes;
	}
	if (rate <= 0 || total == 0 || v >= total)
		return;
	secs = (double)(total - v) / rate + 0.999;
	if (secs >= 100.0 * 3600)
		return; /* no meaning left in it */
	progress_fmt_secs((uint64_t)secs, s, sizeof(s));
	buf_appendf(b, ", %s left", s);
}

/* "1234 of 5000 (24%)", "120 MiB of 1.2 GiB (10%)", "12000", "5 MiB" */
static void append_amount(struct buf *b, bool bytes, uint64_t done,
			  uint64_t total, bool pct)
{
	char d[32], t[32];

	if (bytes) {
		progress_fmt_bytes(done, d, sizeof(d));
		progress_fmt_bytes(total, t, sizeof(t));
	} else {
		snprintf(d, sizeof(d), "%" PRIu64, done);
		snprintf(t, sizeof(t), "%" PRIu64, total);
	}
	if (!total) {
		buf_appends(b, d);
		return;
	}
	buf_appendf(b, "%s of %s", d, t);
	if (pct)
		buf_appendf(b, " (%u%%)",
			    (unsigned)(done >= total ? 100 :
						       done * 100 / total));
}

size_t progress_format(const struct progress *p, char *out, size_t size)
{
	uint64_t now = p->clock(p->clock_arg);
	double rate = rate_now(p, now);
	struct buf b = BUF_INIT;
	size_t n = 0;

	buf_appends(&b, p->what);
	if (p->done == 0 && p->bytes == 0 && rate <= 0) {
		/* nothing counted yet: how long it has waited */
		uint64_t secs = (now - p->phase_start) / 1000000000ULL;
		char s[32];

		if (p->total) {
			buf_appends(&b, ": ");
			append_amount(&b, p->flags & PROGRESS_BYTES, 0,
				      p->total, false);
		}
		progress_fmt_secs(secs, s, sizeof(s));
		if (secs)
			buf_appendf(&b, "%s%s elapsed", p->total ? ", " : ": ",
				    s);
		else if (!p->total)
			buf_appends(&b, " ...");
	} else {
		buf_appends(&b, ": ");
		append_amount(&b, p->flags & PROGRESS_BYTES, p->done,
			      p->total, true);
		if (p->flags & PROGRESS_ITEM_BYTES) {
			buf_appends(&b, ", ");
			append_amount(&b, true, p->bytes, p->total_bytes,
				      false);
		}
		append_rate(p, rate, &b);
		append_eta(p, rate, &b);
	}
	if (size) {
		n = MF_MIN(b.len, size - 1);
		if (n)
			memcpy(out, b.data, n);
		out[n] = '\0';
	}
	buf_free(&b);
	return n;
}

/* Redraw the line in place, covering what the last draw left
 * (invariants 2, 3). */
static void draw(struct progress *p, uint64_t now)
{
	char line[512];
	size_t width = MF_MIN(line_width(p) - 1, sizeof(line) - 1);
	size_t n = progress_format(p, line, width + 1);

	fprintf(p->out, "\r%s%*s", line,
		(int)(p->drawn > n ? p->drawn - n : 0), "");
	if (p->drawn > n)
		fprintf(p->out, "\r%s", line);
	fflush(p->out);
	p->drawn = n;
	p->last_draw = now;
	p->redraw = false;
}

static void update(struct progress *p)
{
	uint64_t now;

	if (!p->started)
		return;
	now = p->clock(p->clock_arg);
	if (now >= p->sample[p->nsample - 1].t + PROGRESS_SAMPLE_NS)
		add_sample(p, now);
	if (!p->on || now < p->start + PROGRESS_DELAY_NS)
		return; /* invariant 1 */
	if (p->redraw || p->drawn == 0 ||
	    now >= p->last_draw + PROGRESS_REDRAW_NS)
		draw(p, now);
}

void progress_update(struct progress *p, uint64_t done)
{
	p->done = done;
	update(p);
}

void progress_update_bytes(struct progress *p, uint64_t done,
			   uint64_t bytes)
{
	p->done = done;
	p->bytes = bytes;
	update(p);
}

void progress_report(void *arg, const char *what, unsigned flags,
		     uint64_t done, uint64_t total)
{
	struct progress *p = arg;

	if (!p->started || flags != p->flags || strcmp(what, p->what))
		phase_begin(p, what, flags, total);
	else if (total)
		p->total = total;
	progress_update(p, done);
}

void progress_clear(struct progress *p)
{
	if (p->drawn) {
		fprintf(p->out, "\r%*s\r", (int)p->drawn, "");
		fflush(p->out);
		p->drawn = 0;
	}
	p->redraw = true;
}

void progress_note(struct progress *p, const char *fmt, ...)
{
	va_list ap;

	progress_clear(p);
	va_start(ap, fmt);
	vfprintf(p->out, fmt, ap);
	va_end(ap);
	fputc('\n', p->out);
	fflush(p->out);
}

void progress_end(struct progress *p)
{
	progress_clear(p);
	p->started = false;
	p->redraw = false;
}
