/*
 * cmd_tune.c - `metafuse tune --history DURATION STORE|MOUNTPOINT`:
 * change a volume's history window (how long every past state stays
 * mountable with `mount --at`; volume/journal.c, invariant 7).
 *
 * Two ways, by what the operand is:
 *   MOUNTPOINT of a read-write mount: the daemon does it (an ioctl,
 *     FS_IOC_HISTORY, on a descriptor of the mount; the daemon answers
 *     root and the mount's owner only): it rewrites the descriptor
 *     (volume_set_history()) and its journal keeps the new window at once.
 *   STORE of an unmounted volume: the volume's lease is taken as `gc`
 *     does (no mount can start meanwhile), the descriptor rewritten, the
 *     lease released; the next mount keeps the new window.
 * Also the DURATION parser mkfs --history uses (cli_parse_duration()).
 *
 * Invariants
 *   1. Every refusal is one line and a non-zero status, with nothing
 *      changed: an invalid DURATION, a read-only or past mount, a STORE
 *      mounted here (the line names the mountpoint) or elsewhere (the
 *      lease's holder), another user's mount.
 *   2. A window set on a volume below format 5 raises it to format 5,
 *      which older binaries refuse (their collector would delete what the
 *      window keeps).
 */
#include "util/compat.h"

#include <fcntl.h>
#include <ctype.h>
#include <math.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/store_opts.h"
#include "fs/fs.h"
#include "util/util.h"
#include "volume/journal.h"
#include "volume/volume.h"

static const char tune_help[] =
	"usage: metafuse tune --history DURATION [-o OPT[,OPT...]] "
	"STORE|MOUNTPOINT\n"
	"\n"
	"Changes the history window of a volume: every state of the volume\n"
	"less than DURATION old stays mountable with 'metafuse mount --at "
	"TIME',\nand the objects those states need stay in the store for as "
	"long.\nDURATION is a number with s, m, h or d (a bare number is "
	"seconds); 0\nturns history off (the states older than the newest "
	"checkpoint are\nthen freed).  On the MOUNTPOINT of a read-write "
	"mount the mount applies\nit at once (root or the mount's owner); on "
	"the STORE of a volume that is\nnot mounted, the next mount does.  "
	"A window raises the volume to format\n5, which metafuse versions "
	"before it refuse to mount.\n"
	"\n" CLI_STORE_OPTS_HELP;

enum { OPT_HISTORY = 256 };

static const struct option tune_longopts[] = {
	{ "history", required_argument, NULL, OPT_HISTORY },
	{ NULL, 0, NULL, 0 },
};

const struct cli_cmd cli_cmd_tune = {
	.name = "tune",
	.summary = "change a volume's history window",
	.run = cmd_tune,
	.help = tune_help,
	.usage = "usage: metafuse tune --history DURATION [-o OPT[,OPT...]] "
		 "STORE|MOUNTPOINT",
	.shortopts = "o:",
	.longopts = tune_longopts,
	.min_operands = 1,
	.max_operands = 1,
	.flag_status = 2,
};

int cli_parse_duration(const char *s, uint64_t *out_s)
{
	static const struct { char c; double s; } units[] = {
		{ 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 },
	};
	double unit = 1, v;
	char *end;
	size_t i;

	if (!*s || *s == '-' || *s == '+' || isspace((unsigned char)*s))
		return -EINVAL;
	v = strtod(s, &end);
	if (end == s)
		return -EINVAL;
	if (*end) {
		for (i = 0; i < ARRAY_SIZE(units) && units[i].c != *end; i++)
			;
		if (i == ARRAY_SIZE(units) || end[1])
			return -EINVAL;
		unit = units[i].s;
	}
	v *= unit;
	/* a century at most */
	if (!isfinite(v) || v < 0 || v > 100.0 * 366 * 86400)
		return -EINVAL;
	*out_s = (uint64_t)(v + 0.5);
	return 0;
}

void cli_format_duration(uint64_t s, char *out, size_t size)
{
	if (s && s % 86400 == 0)
		snprintf(out, size, "%" PRIu64 "d", s / 86400);
	else if (s && s % 3600 == 0)
		snprintf(out, size, "%" PRIu64 "h", s / 3600);
	else if (s && s % 60 == 0)
		snprintf(out, size, "%" PRIu64 "m", s / 60);
	else
		snprintf(out, size, "%" PRIu64 "s", s);
}

/* mountinfo's octal escapes undone, in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] &&
		    s[3]) {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				      (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

/* Where a read-write metafuse mount of the store src is on this machine
 * (into where), if one is. */
static bool store_mounted_at(const char *src, char *where, size_t size)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[3 * PATH_MAX], mp[PATH_MAX], opts[512], type[64];
	char source[PATH_MAX];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *dash = strstr(line, " - ");

		if (!dash ||
		    sscanf(line, "%*s %*s %*s %*s %4095s %511s", mp, opts) != 2 ||
		    sscanf(dash + 3, "%63s %4095s", type, source) != 2)
			continue;
		unescape(mp);
		unescape(source);
		found = !strcmp(type, "fuse.metafuse") &&
			strncmp(opts, "ro", 2) != 0 && !strcmp(source, src);
		if (found)
			snprintf(where, size, "%s", mp);
	}
	fclose(f);
	return found;
}

/* Through the daemon of the mount at path (real).  0 or -1 (printed). */
static int tune_mount(const char *path, uint64_t history_s)
{
	struct fs_history_req r;
	char was[32], now[32];
	int fd, rc;

	memset(&r, 0, sizeof(r));
	r.history_s = history_s;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		cli_error("tune: %s: %s", path, strerror(errno));
		return -1;
	}
	rc = ioctl(fd, FS_IOC_HISTORY, &r);
	if (rc < 0 && errno == EROFS)
		cli_error("tune: %s is a read-only (or past) mount: change the "
			  "window on the volume's read-write mount, or on its "
			  "STORE while it is not mounted", path);
	else if (rc < 0 && (errno == EPERM || errno == EACCES))
		cli_error("tune: %s is another user's mount: only that user "
			  "and root can change its window", path);
	else if (rc < 0 && errno == ENOTTY)
		cli_error("tune: %s is mounted by a metafuse without history "
			  "windows (unmount and tune its STORE)", path);
	else if (rc < 0)
		cli_error("tune: %s: %s", path, strerror(errno));
	else if (rc > 0)
		cli_error("tune: %s: %s", path, r.err);
	close(fd);
	if (rc)
		return -1;
	cli_format_duration(r.old_s, was, sizeof(was));
	cli_format_duration(history_s, now, sizeof(now));
	printf("history window of %s: %s (was %s)\n", path, now, was);
	return 0;
}

/* Offline, with the lease held.  0 or -1 (printed). */
static int tune_store(const char *loc, const struct cli_store_opts *so,
		      uint64_t history_s)
{
	struct offline_vol ov = { 0 };
	struct buf err = BUF_INIT;
	char owner[64] = "", where[PATH_MAX], real[PATH_MAX];
	char was[32], now[32];
	uint64_t old;
	int rc = -1;

	if (offline_open(&ov, loc, &so->o, so->passphrase_file))
		goto out;
	if (store_mounted_at(ov.s->url, where, sizeof(where)) ||
	    store_mounted_at(loc, where, sizeof(where)) ||
	    (realpath(loc, real) &&
	     store_mounted_at(real, where, sizeof(where)))) {
		cli_error("tune: %s is mounted at %s: run 'metafuse tune "
			  "--history DURATION %s'", loc, where, where);
		goto out;
	}
	if (volume_lease_take(ov.s, 30, false, owner, sizeof(owner), &err)) {
		owner[0] = 0;
		cli_error("tune: %s", buf_str(&err));
		goto out;
	}
	old = ov.v.history_s;
	if (volume_set_history(ov.s, &ov.v, history_s, &err)) {
		cli_error("tune: %s", buf_str(&err));
		goto out;
	}
	/* off: the states only the window kept go now (as a mount does) */
	if (old && !history_s && journal_history_drop(ov.s))
		cli_error("tune: the window is off, but the past states of %s "
			  "could not all be deleted (the next mount's "
			  "checkpoints trim them)", ov.s->url);
	cli_format_duration(old, was, sizeof(was));
	cli_format_duration(history_s, now, sizeof(now));
	printf("history window of %s: %s (was %s; volume format %u)\n",
	       ov.s->url, now, was, ov.v.format);
	rc = 0;
out:
	if (owner[0])
		volume_lease_release(ov.s, owner);
	offline_close(&ov);
	buf_free(&err);
	return rc;
}

int cmd_tune(int argc, char **argv)
{
	struct cli_store_opts so = { 0 };
	const char *history = NULL;
	char real[PATH_MAX];
	struct cli_mount mi;
	uint64_t history_s = 0;
	struct cli_args a;
	int c, status = 2;

	cli_args_init(&a, &cli_cmd_tune, argc, argv);
	while ((c = cli_getopt(&a)) > 0) {
		if (c == OPT_HISTORY)
			history = optarg;
		else if (c == 'o' && cli_store_opts_parse(&so, optarg, NULL))
			goto out;
	}
	if (c < 0) {
		status = a.status;
		goto out;
	}
	if (!history) {
		cli_error("tune: say what to change (--history DURATION)");
		goto out;
	}
	if (cli_parse_duration(history, &history_s)) {
		cli_error("tune: invalid --history '%s' (a number with s, m, h "
			  "or d, as 90s, 10m, 2h, 7d)", history);
		goto out;
	}
	status = 1;
	if (realpath(a.operand[0], real) && cli_mount_find(real, &mi) == 0 &&
	    !strcmp(mi.fstype, "fuse.metafuse") && cli_is_mountpoint(real) == 1)
		status = tune_mount(a.operand[0], history_s) ? 1 : 0;
	else
		status = tune_store(a.operand[0], &so, history_s) ? 1 : 0;
out:
	cli_store_opts_free(&so);
	return status;
}
