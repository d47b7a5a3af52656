/*
 * t_progress.c - the progress meter (util/progress.c) with a fake clock:
 * its words and figures, the rate and the time left, the throttle, the
 * quiet start, and that nothing at all reaches a stream that is not a
 * terminal unless METAFUSE_PROGRESS=1 says so (and nothing reaches a
 * terminal with METAFUSE_PROGRESS=0).
 */
#include "util/compat.h"

#include <fcntl.h>
#include <unistd.h>

#include "check.h"
#include "util/progress.h"

#define MS 1000000ULL
#define SEC 1000000000ULL

static uint64_t fake_now;

static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return fake_now;
}

/* A meter on a memory stream, with the fake clock at 0. */
struct mem {
	char *text;
	size_t len;
	FILE *f;
	struct progress p;
};

static void mem_open(struct mem *m)
{
	m->text = NULL;
	m->len = 0;
	m->f = open_memstream(&m->text, &m->len);
	fake_now = 0;
	progress_init(&m->p, m->f);
	progress_set_clock(&m->p, fake_clock, NULL);
}

static const char *mem_text(struct mem *m)
{
	fflush(m->f);
	return m->text ? m->text : "";
}

static void mem_close(struct mem *m)
{
	fclose(m->f);
	free(m->text);
}

static size_t count_char(const char *s, char c)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == c;
	return n;
}

/* The last line drawn: the text after the last '\r' that has any. */
static void last_line(const char *s, char *out, size_t size)
{
	const char *best = NULL, *p;

	for (p = s; (p = strchr(p, '\r')); p++)
		if (p[1] && p[1] != ' ' && p[1] != '\r')
			best = p + 1;
	snprintf(out, size, "%s", best ? best : "");
	/* the padding that covers a longer line before */
	for (size_t n = strlen(out); n && out[n - 1] == ' '; n--)
		out[n - 1] = '\0';
}

static void test_formats(void)
{
	char s[32];

	progress_fmt_bytes(0, s, sizeof(s));
	CHECK(!strcmp(s, "0 B"));
	progress_fmt_bytes(1023, s, sizeof(s));
	CHECK(!strcmp(s, "1023 B"));
	progress_fmt_bytes(1024, s, sizeof(s));
	CHECK(!strcmp(s, "1.0 KiB"));
	progress_fmt_bytes(3565158, s, sizeof(s)); /* 3.4 MiB */
	CHECK(!strcmp(s, "3.4 MiB"));
	progress_fmt_bytes(310ULL << 20, s, sizeof(s));
	CHECK(!strcmp(s, "310 MiB"));
	progress_fmt_bytes(1288490189ULL, s, sizeof(s)); /* 1.2 GiB */
	CHECK(!strcmp(s, "1.2 GiB"));
	progress_fmt_bytes(UINT64_MAX, s, sizeof(s));
	CHECK(!strcmp(s, "16 EiB"));
	progress_fmt_secs(0, s, sizeof(s));
	CHECK(!strcmp(s, "0:00"));
	progress_fmt_secs(14, s, sizeof(s));
	CHECK(!strcmp(s, "0:14"));
	progress_fmt_secs(725, s, sizeof(s));
	CHECK(!strcmp(s, "12:05"));
	progress_fmt_secs(3723, s, sizeof(s));
	CHECK(!strcmp(s, "1:02:03"));
}

/* Not a terminal, no knob: never a byte, whatever happens. */
static void test_not_a_terminal(void)
{
	struct mem m;
	uint64_t i;

	unsetenv("METAFUSE_PROGRESS");
	mem_open(&m);
	CHECK(!m.p.on);
	progress_phase(&m.p, "deleting objects", 0, 1000);
	for (i = 0; i < 100; i++) {
		fake_now = i * 100 * MS;
		progress_update(&m.p, i * 10);
	}
	progress_report(&m.p, "listing objects", 0, 5, 0);
	fake_now += 5 * SEC;
	progress_update(&m.p, 50);
	progress_clear(&m.p);
	progress_end(&m.p);
	CHECK_EQ_U64(strlen(mem_text(&m)), 0);
	mem_close(&m);
}

/* An operation over within the quiet delay shows nothing. */
static void test_quiet_when_short(void)
{
	struct mem m;
	uint64_t i;

	setenv("METAFUSE_PROGRESS", "1", 1);
	mem_open(&m);
	CHECK(m.p.on);
	progress_phase(&m.p, "verifying objects", 0, 100);
	for (i = 0; i < 90; i++) {
		fake_now = i * 10 * MS;
		progress_update(&m.p, i);
	}
	/* a second phase does not restart the delay */
	progress_phase(&m.p, "checking chains", 0, 10);
	fake_now = 990 * MS;
	progress_update(&m.p, 5);
	progress_end(&m.p);
	CHECK_EQ_U64(strlen(mem_text(&m)), 0);
	mem_close(&m);
}

/* Items: done of total, the rate, the time left; redrawn at most every
 * PROGRESS_REDRAW_NS; erased at the end. */
static void test_items_rate_eta_throttle(void)
{
	struct mem m;
	char line[256];
	const char *t;

	setenv("METAFUSE_PROGRESS", "1", 1);
	mem_open(&m);
	progress_phase(&m.p, "deleting objects", 0, 1000);
	fake_now = 500 * MS;
	progress_update(&m.p, 100);
	CHECK_EQ_U64(strlen(mem_text(&m)), 0);
	fake_now = 1000 * MS;
	progress_update(&m.p, 200);
	t = mem_text(&m);
	CHECK_EQ_U64(count_char(t, '\r'), 1);
	last_line(t, line, sizeof(line));
	CHECK(!strcmp(line, "deleting objects: 200 of 1000 (20%), 200/s, "
			    "0:04 left"));
	if (strcmp(line, "deleting objects: 200 of 1000 (20%), 200/s, "
			 "0:04 left"))
		fprintf(stderr, "got '%s'\n", line);
	/* within 250 ms of the last draw: nothing more */
	fake_now = 1100 * MS;
	progress_update(&m.p, 220);
	fake_now = 1249 * MS;
	progress_update(&m.p, 250);
	CHECK_EQ_U64(count_char(mem_text(&m), '\r'), 1);
	fake_now = 1250 * MS;
	progress_update(&m.p, 250);
	t = mem_text(&m);
	CHECK_EQ_U64(count_char(t, '\r'), 2);
	last_line(t, line, sizeof(line));
	CHECK(!strcmp(line, "deleting objects: 250 of 1000 (25%), 200/s, "
			    "0:04 left"));
	/* a thousand updates in a second: four draws at most */
	for (uint64_t i = 1; i <= 1000; i++) {
		fake_now = 1250 * MS + i * MS;
		progress_update(&m.p, 250 + i / 2);
	}
	CHECK(count_char(mem_text(&m), '\r') <= 2 + 4);
	CHECK(count_char(mem_text(&m), '\r') >= 2 + 3);
	/* the end erases the line: blanks over it, back to its start */
	progress_end(&m.p);
	t = mem_text(&m);
	CHECK(strlen(t) >= 2 && t[strlen(t) - 1] == '\r' &&
	      t[strlen(t) - 2] == ' ');
	CHECK(!strchr(t, '\n'));
	mem_close(&m);
}

/* The rate follows a change of pace within a few seconds. */
static void test_rate_window(void)
{
	struct mem m;
	char line[256];
	uint64_t done = 0, i;

	setenv("METAFUSE_PROGRESS", "1", 1);
	mem_open(&m);
	progress_phase(&m.p, "verifying objects", 0, 100000);
	for (i = 1; i <= 100; i++) { /* 10 s at 1000/s */
		fake_now = i * 100 * MS;
		done += 100;
		progress_update(&m.p, done);
	}
	progress_format(&m.p, line, sizeof(line));
	CHECK(strstr(line, ", 1000/s, ") != NULL);
	for (i = 1; i <= 100; i++) { /* then 10 s at 10/s */
		fake_now = 10 * SEC + i * 100 * MS;
		done += 1;
		progress_update(&m.p, done);
	}
	progress_format(&m.p, line, sizeof(line));
	CHECK(strstr(line, "10100 of 100000 (10%), 10/s, 2:29:50 left") !=
	      NULL);
	if (!strstr(line, "10100 of 100000 (10%), 10/s, 2:29:50 left"))
		fprintf(stderr, "got '%s'\n", line);
	progress_end(&m.p);
	mem_close(&m);
}

/* Bytes, items with their bytes, an unknown total, nothing yet. */
static void test_bytes_and_unknown(void)
{
	struct mem m;
	char line[256];

	setenv("METAFUSE_PROGRESS", "1", 1);
	mem_open(&m);
	progress_phase(&m.p, "uploading", PROGRESS_BYTES, 0);
	progress_format(&m.p, line, sizeof(line));
	CHECK(!strcmp(line, "uploading ..."));
	fake_now = 3 * SEC;
	progress_format(&m.p, line, sizeof(line));
	CHECK(!strcmp(line, "uploading: 0:03 elapsed"));
	progress_set_total(&m.p, 1200ULL << 20);
	progress_update(&m.p, 0);
	progress_format(&m.p, line, sizeof(line));
	CHECK(!strcmp(line, "uploading: 0 B of 1.2 GiB, 0:03 elapsed"));
	fake_now = 5 * SEC;
	progress_update(&m.p, 120ULL << 20); /* 120 MiB in 5 s */
	progress_format(&m.p, line, sizeof(line));
	CHECK(!strcmp(line, "uploading: 120 MiB of 1.2 GiB (10%), "
			    "24 MiB/s, 0:45 left"));
	if (strcmp(line, "uploading: 120 MiB of 1.2 GiB (10%), 24 MiB/s, "
			 "0:45 left"))
		fprintf(stderr, "got '%s'\n", line);

	/* items with their bytes: the rate and time left by bytes */
	fake_now = 10 * SEC;
	progress_phase(&m.p, "verifying objects", PROGRESS_ITEM_BYTES, 50);
	progress_set_total_bytes(&m.p, 100ULL << 20);
	fake_now = 12 * SEC;
	progress_update_bytes(&m.p, 10, 40ULL << 20);
	progress_format(&m.p, line, sizeof(line));
	CHECK(!strcmp(line, "verifying objects: 10 of 50 (20%), 40 MiB of "
			    "100 MiB, 20 MiB/s, 0:03 left"));
	if (strcmp(line, "verifying objects: 10 of 50 (20%), 40 MiB of "
			 "100 MiB, 20 MiB/s, 0:03 left"))
		fprintf(stderr, "got '%s'\n", line);

	/* an unknown total: the count and the rate only */
	progress_report(&m.p, "listing objects", 0, 0, 0);
	fake_now = 14 * SEC;
	progress_report(&m.p, "listing objects", 0, 5000, 0);
	progress_format(&m.p, line, sizeof(line));
	CHECK(!strcmp(line, "listing objects: 5000, 2500/s"));
	/* the same label again is the same phase; a total comes later */
	fake_now = 15 * SEC;
	progress_report(&m.p, "listing objects", 0, 6000, 12000);
	progress_format(&m.p, line, sizeof(line));
	CHECK(!strcmp(line, "listing objects: 6000 of 12000 (50%), 2000/s, "
			    "0:03 left"));
	/* a slow start: under 10 a second */
	progress_report(&m.p, "restoring journal entries", 0, 0, 40);
	fake_now = 17 * SEC;
	progress_report(&m.p, "restoring journal entries", 0, 3, 40);
	progress_format(&m.p, line, sizeof(line));
	CHECK(!strcmp(line, "restoring journal entries: 3 of 40 (7%), "
			    "1.5/s, 0:25 left"));
	progress_end(&m.p);
	mem_close(&m);
}

/* Never as wide as the terminal; a shorter line covers a longer one. */
static void test_width_and_cover(void)
{
	struct mem m;
	const char *t, *cr;

	setenv("METAFUSE_PROGRESS", "1", 1);
	mem_open(&m);
	m.p.width = 30;
	progress_phase(&m.p, "a very long label for a narrow terminal", 0,
		       10);
	fake_now = 2 * SEC;
	progress_update(&m.p, 1);
	t = mem_text(&m);
	CHECK_EQ_U64(strlen(t), 1 + 29);
	progress_phase(&m.p, "short", 0, 0);
	t = mem_text(&m);
	cr = strrchr(t, '\r');
	/* "\rshort ..." + blanks to column 29, "\r" + the line */
	CHECK(strstr(t + 30, "\rshort ...                   ") != NULL);
	CHECK(cr && !strcmp(cr, "\rshort ..."));
	progress_end(&m.p);
	mem_close(&m);
}

/* A phase that a progress_fn begins is drawn at once with its count. */
static void test_report_draws_the_count(void)
{
	struct mem m;
	char line[256];

	setenv("METAFUSE_PROGRESS", "1", 1);
	mem_open(&m);
	progress_phase(&m.p, "restoring the metadata", 0, 0);
	fake_now = 2 * SEC;
	progress_update(&m.p, 0);
	fake_now += MS;
	progress_report(&m.p, "listing objects", 0, 1, 0);
	last_line(mem_text(&m), line, sizeof(line));
	CHECK(!strcmp(line, "listing objects: 1"));
	fake_now += MS;
	progress_report(&m.p, "deleting objects", 0, 0, 300);
	last_line(mem_text(&m), line, sizeof(line));
	CHECK(!strcmp(line, "deleting objects: 0 of 300"));
	progress_end(&m.p);
	mem_close(&m);
}

/* A note is a line of its own, meter or not; the meter comes back. */
static void test_note(void)
{
	struct mem m;
	const char *t;

	unsetenv("METAFUSE_PROGRESS");
	mem_open(&m);
	progress_note(&m.p, "metafuse: %s", "hello");
	CHECK(!strcmp(mem_text(&m), "metafuse: hello\n"));
	mem_close(&m);

	setenv("METAFUSE_PROGRESS", "1", 1);
	mem_open(&m);
	progress_phase(&m.p, "uploading", PROGRESS_BYTES, 100);
	fake_now = 2 * SEC;
	progress_update(&m.p, 10);
	progress_note(&m.p, "a problem");
	fake_now += MS; /* well within the redraw interval */
	progress_update(&m.p, 11);
	t = mem_text(&m);
	CHECK(strstr(t, "\ra problem\n\ruploading: 11 B of 100 B (11%)") !=
	      NULL);
	progress_end(&m.p);
	mem_close(&m);
}

/* On a real terminal (a pty): on by itself; METAFUSE_PROGRESS=0 off. */
static void test_terminal(void)
{
	struct progress p;
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	const char *name;
	FILE *f;

	if (master < 0 || grantpt(master) || unlockpt(master) ||
	    !(name = ptsname(master))) {
		printf("no pty: terminal checks skipped\n");
		return;
	}
	f = fopen(name, "w");
	CHECK(f != NULL);
	if (f) {
		unsetenv("METAFUSE_PROGRESS");
		progress_init(&p, f);
		CHECK(p.on);
		setenv("METAFUSE_PROGRESS", "0", 1);
		progress_init(&p, f);
		CHECK(!p.on);
		setenv("METAFUSE_PROGRESS", "yes", 1); /* not a word of ours */
		progress_init(&p, f);
		CHECK(p.on);
		fclose(f);
	}
	close(master);
	unsetenv("METAFUSE_PROGRESS");
}

int main(void)
{
	test_formats();
	test_not_a_terminal();
	test_quiet_when_short();
	test_items_rate_eta_throttle();
	test_rate_window();
	test_bytes_and_unknown();
	test_width_and_cover();
	test_report_draws_the_count();
	test_note();
	test_terminal();
	return check_done("t_progress");
}
