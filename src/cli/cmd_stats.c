/*
 * cmd_stats.c - `metafuse stats [--json] [--watch SECS [--count N]]
 * MOUNTPOINT`: what a mount has asked of its store and what that costs.
 *
 * The daemon serving MOUNTPOINT answers on its statistics socket
 * (daemon_stats.c: "stats\n" in, "key value" lines out, up to "end");
 * this command finds the socket, reads one answer (or one per interval
 * with --watch) and prints it for a person, as one JSON object, or as a
 * line of rates per interval in the manner of vmstat.  It computes the
 * cost from the counters and the mount's prices (store_stats.c).
 *
 * Finding the daemon: MOUNTPOINT must be a mount point of type
 * fuse.metafuse (/proc/self/mountinfo); its socket is its registry file
 * (cli_registry_path()) + ".sock", and for root looking at another
 * user's mount, the same name in that user's runtime directory
 * (/run/user/UID/metafuse or /tmp/metafuse-UID, the uid from the mount's
 * user_id=).
 *
 * Invariants:
 *   1. Every failure is one line on stderr and a non-zero status: not a
 *      metafuse mount, a daemon that is gone (its socket refuses or is
 *      missing), a mount of another user, a bad flag.
 *   2. Nothing here writes to the mount or its store: the command only
 *      reads the daemon's answer.
 *   3. Rates in --watch are differences of the daemon's own counters over
 *      the daemon's own clock (uptime_ns), so a slow or late interval
 *      shows the right rate, not a spike.
 */
#include "util/compat.h"

#include <limits.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "store/store_stats.h"
#include "util/util.h"

static const char stats_help[] =
	"usage: metafuse stats [--json] [--watch SECS [--count N]] "
	"MOUNTPOINT\n"
	"\n"
	"Shows what the mount at MOUNTPOINT has asked of its store since it\n"
	"was mounted and in the last hour (requests by kind, bytes up and\n"
	"down, errors and retries), what waits to be uploaded and how old\n"
	"the oldest unsent write is, the cache and the metadata journal,\n"
	"what the store holds, and an estimate of the cost per month at the\n"
	"request rate since the mount, with the mount's prices (AWS S3\n"
	"Standard, us-east-1, unless -o price_...= said otherwise).\n"
	"\n"
	"  --json         one JSON object (with --watch: one per interval)\n"
	"  --watch SECS   a line of rates every SECS seconds, until "
	"interrupted\n"
	"  --count N      with --watch: stop after N lines\n"
	"\n"
	"Works for the user who mounted and for root.\n";

enum { OPT_JSON = 256, OPT_WATCH, OPT_COUNT };

static const struct option stats_longopts[] = {
	{ "json", no_argument, NULL, OPT_JSON },
	{ "watch", required_argument, NULL, OPT_WATCH },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ NULL, 0, NULL, 0 },
};

const struct cli_cmd cli_cmd_stats = {
	.name = "stats",
	.summary = "what a mount asks of its store, and what it costs",
	.run = cmd_stats,
	.help = stats_help,
	.usage = "usage: metafuse stats [--json] [--watch SECS [--count N]] "
		 "MOUNTPOINT",
	.longopts = stats_longopts,
	.min_operands = 1,
	.max_operands = 1,
	.flag_status = 2,
};

/* ---- the daemon's answer ---- */

#define SNAP_MAX 128

/* One answer: "key value" pairs, in the text they were read into. */
struct snap {
	struct buf text;
	const char *key[SNAP_MAX], *val[SNAP_MAX];
	size_t n;
};

static const char *snap_str(const struct snap *s, const char *key)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (!strcmp(s->key[i], key))
			return s->val[i];
	return NULL;
}

static uint64_t snap_u64(const struct snap *s, const char *key)
{
	const char *v = snap_str(s, key);

	return v ? strtoull(v, NULL, 10) : 0;
}

/* Split s->text into its lines; 0 when it ended with "end". */
static int snap_parse(struct snap *s)
{
	char *p = (char *)buf_str(&s->text), *nl;

	s->n = 0;
	for (; (nl = strchr(p, '\n')); p = nl + 1) {
		char *sp;

		*nl = 0;
		if (!strcmp(p, "end"))
			return 0;
		sp = strchr(p, ' ');
		if (!sp || s->n == SNAP_MAX)
			continue;
		*sp = 0;
		s->key[s->n] = p;
		s->val[s->n++] = sp + 1;
	}
	return -EPROTO;
}

/* The traffic in s, since the mount (prefix "") or in the last hour
 * ("hour_"). */
static void snap_traffic(const struct snap *s, const char *prefix,
			 struct store_traffic *t)
{
	char key[64];
	unsigned i;

	for (i = 0; i < STORE_REQ_KINDS; i++) {
		snprintf(key, sizeof(key), "%sreq_%s", prefix,
			 store_req_name((enum store_req)i));
		t->req[i] = snap_u64(s, key);
	}
#define FIELD(f)                                                     \
	do {                                                         \
		snprintf(key, sizeof(key), "%s" #f, prefix);         \
		t->f = snap_u64(s, key);                             \
	} while (0)
	FIELD(bytes_up);
	FIELD(bytes_down);
	FIELD(errors);
	FIELD(retries);
#undef FIELD
}

static void snap_prices(const struct snap *s, struct store_prices *p)
{
	unsigned i;

	memset(p, 0, sizeof(*p));
	for (i = 0; i < STORE_PRICES; i++) {
		const char *name = store_price_name((enum store_price)i);

		if (snap_str(s, name))
			store_price_set(p, name, snap_str(s, name));
	}
}

/* ---- finding the daemon ---- */

/* The real path of the mount point: a dead FUSE mount cannot be
 * stat'ed (ENOTCONN), so its parent is resolved instead. */
static int resolve(const char *path, char *real)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	const char *base;
	size_t len;

	if (realpath(path, real))
		return 0;
	if (errno != ENOTCONN && errno != ECONNABORTED)
		return -errno;
	snprintf(tmp, sizeof(tmp), "%s", path);
	len = strlen(tmp);
	while (len > 1 && tmp[len - 1] == '/')
		tmp[--len] = 0;
	base = strrchr(tmp, '/');
	if (!base) {
		if (!realpath(".", dir))
			return -errno;
		base = tmp;
	} else {
		tmp[base - tmp] = 0;
		if (!realpath(base == tmp ? "/" : tmp, dir))
			return -errno;
		base++;
	}
	if ((size_t)snprintf(real, PATH_MAX, "%s/%s",
			     strcmp(dir, "/") ? dir : "", base) >= PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/* Connect to path: the fd or -errno. */
static int connect_to(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct timeval tv = { 10, 0 };
	int fd, rc;

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	memcpy(a.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

/* Where the daemon of real may listen: its registry file (without
 * ".sock") into reg[0..], at most 3. */
static size_t socket_candidates(const char *real, const struct cli_mount *mi,
				struct buf reg[3])
{
	const char *name;
	size_t n = 0;

	if (cli_registry_path(real, &reg[0]))
		return 0;
	n = 1;
	name = strrchr(buf_str(&reg[0]), '/') + 1;
	/* root, at another user's mount: that user's runtime directory */
	if (geteuid() == 0 && mi->uid > 0) {
		buf_appendf(&reg[n++], "/run/user/%ld/metafuse/%s", mi->uid,
			    name);
		buf_appendf(&reg[n++], "/tmp/metafuse-%ld/%s", mi->uid, name);
	}
	return n;
}

/* The daemon's pid from a registry file, 0 when none runs. */
static long registry_pid(const char *path)
{
	struct buf text = BUF_INIT;
	long pid = 0;

	if (read_file(path, &text) == 0 && buf_append(&text, "", 1) == 0)
		pid = strtol(buf_str(&text), NULL, 10);
	buf_free(&text);
	return pid > 0 && proc_running(pid) ? pid : 0;
}

/* The socket of the daemon serving real: a connected fd, or -1 with the
 * one line in err (invariant 1). */
static int open_daemon(const char *path, const char *real,
		       const struct cli_mount *mi, struct buf *err)
{
	struct buf reg[3] = { BUF_INIT, BUF_INIT, BUF_INIT }, sock = BUF_INIT;
	size_t i, n = socket_candidates(real, mi, reg);
	long pid = 0;
	int fd = -ENOENT, rc;

	for (i = 0; i < n && fd < 0; i++) {
		buf_reset(&sock);
		buf_appendf(&sock, "%s.sock", buf_str(&reg[i]));
		rc = connect_to(buf_str(&sock));
		if (rc >= 0 || rc != -ENOENT)
			fd = rc;
		if (!pid)
			pid = registry_pid(buf_str(&reg[i]));
	}
	if (fd == -EACCES || fd == -EPERM)
		buf_appendf(err, "%s is mounted by another user (uid %ld): "
			    "only that user and root can read its statistics",
			    path, mi->uid);
	else if (fd < 0 && pid)
		buf_appendf(err, "the metafuse daemon of %s (pid %ld) does "
			    "not answer for statistics (mounted by an older "
			    "metafuse?)", path, pid);
	else if (fd < 0)
		buf_appendf(err, "the metafuse daemon of %s is not running "
			    "(it died; unmount with 'fusermount3 -u %s' and "
			    "mount again)", path, path);
	for (i = 0; i < ARRAY_SIZE(reg); i++)
		buf_free(&reg[i]);
	buf_free(&sock);
	return fd < 0 ? -1 : fd;
}

/* The mount at path: its real path into real, or -1 with one line in
 * err. */
static int check_mount(const char *path, char *real, struct cli_mount *mi,
		       struct buf *err)
{
	int rc = resolve(path, real);

	if (rc) {
		buf_appendf(err, "%s: %s", path, strerror(-rc));
		return -1;
	}
	if (cli_mount_find(real, mi)) {
		buf_appendf(err, "%s is not a metafuse mount (not a mount "
			    "point)", path);
		return -1;
	}
	if (strcmp(mi->fstype, "fuse.metafuse")) {
		buf_appendf(err, "%s is not a metafuse mount (a %s mount)",
			    path, mi->fstype);
		return -1;
	}
	if (geteuid() != 0 && mi->uid >= 0 && mi->uid != (long)geteuid()) {
		buf_appendf(err, "%s is mounted by another user (uid %ld): "
			    "only that user and root can read its statistics",
			    path, mi->uid);
		return -1;
	}
	return 0;
}

/* Whether path is no longer a metafuse mount. */
static bool mount_gone(const char *path)
{
	char real[PATH_MAX];
	struct cli_mount mi;

	return resolve(path, real) || cli_mount_find(real, &mi) ||
	       strcmp(mi.fstype, "fuse.metafuse");
}

/* One answer of the daemon of the mount at path into s: 0, or -1 with
 * one line in err. */
static int fetch(const char *path, struct snap *s, struct buf *err)
{
	char real[PATH_MAX];
	struct cli_mount mi;
	int fd, rc = -1;

	if (check_mount(path, real, &mi, err))
		return -1;
	fd = open_daemon(path, real, &mi, err);
	if (fd < 0)
		return -1;
	buf_reset(&s->text);
	if (send(fd, "stats\n", 6, MSG_NOSIGNAL) != 6) {
		buf_appendf(err, "the daemon of %s did not answer: %s", path,
			    strerror(errno));
		goto out;
	}
	for (;;) {
		ssize_t n;

		if (buf_reserve(&s->text, 4096)) {
			buf_appendf(err, "out of memory");
			goto out;
		}
		n = recv(fd, s->text.data + s->text.len, 4096, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		s->text.len += (size_t)n;
		s->text.data[s->text.len] = 0;
	}
	if (!s->text.len) {
		buf_appendf(err, "the daemon of %s did not answer", path);
		goto out;
	}
	if (!strncmp(buf_str(&s->text), "error ", 6)) {
		buf_appendf(err, "the daemon of %s refused: %.*s", path,
			    (int)strcspn(buf_str(&s->text) + 6, "\n"),
			    buf_str(&s->text) + 6);
		goto out;
	}
	rc = snap_parse(s);
	if (rc) {
		buf_appendf(err, "the daemon of %s gave an incomplete "
			    "answer", path);
		rc = -1;
	}
out:
	close(fd);
	return rc;
}

/* ---- printing ---- */

/* 1536 -> "1.5 KiB" */
static void human_bytes(double v, char *out, size_t size)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB",
					    "PiB" };
	unsigned u = 0;

	while (v >= 1024 && u + 1 < ARRAY_SIZE(unit)) {
		v /= 1024;
		u++;
	}
	snprintf(out, size, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

/* 125.3 -> "2 min 5 s" */
static void human_secs(double s, char *out, size_t size)
{
	unsigned long t = (unsigned long)(s + 0.5);

	if (s < 10)
		snprintf(out, size, "%.1f s", s);
	else if (t < 3600)
		snprintf(out, size, "%lu min %lu s", t / 60, t % 60);
	else if (t < 86400)
		snprintf(out, size, "%lu h %lu min", t / 3600, t / 60 % 60);
	else
		snprintf(out, size, "%lu d %lu h", t / 86400, t / 3600 % 24);
}

static void print_requests(const char *label, const struct store_traffic *t)
{
	unsigned i;

	printf("%-22s", label);
	for (i = 0; i < STORE_REQ_KINDS; i++)
		printf("%s%s %" PRIu64, i ? ", " : "",
		       store_req_name((enum store_req)i), t->req[i]);
	printf("\n");
}

/* What the cost is computed from. */
struct costs {
	struct store_traffic all, hour;
	double uptime, hour_s;
	uint64_t stored_data, stored_garbage, stored_meta, stored;
	struct store_prices prices;
	struct store_cost since, last_hour;
	bool local;
};

static void compute_costs(const struct snap *s, struct costs *c)
{
	snap_traffic(s, "", &c->all);
	snap_traffic(s, "hour_", &c->hour);
	snap_prices(s, &c->prices);
	c->uptime = (double)snap_u64(s, "uptime_ns") / 1e9;
	c->hour_s = (double)snap_u64(s, "hour_ns") / 1e9;
	c->stored_data = snap_u64(s, "stored_data_bytes");
	c->stored_garbage = snap_u64(s, "stored_garbage_bytes");
	c->stored_meta = snap_u64(s, "stored_meta_bytes");
	c->stored = c->stored_data + c->stored_garbage + c->stored_meta;
	c->local = strcmp(snap_str(s, "store_kind") ?
			  snap_str(s, "store_kind") : "", "s3") != 0;
	store_cost_month(&c->prices, &c->all, c->uptime, c->stored,
			 &c->since);
	store_cost_month(&c->prices, &c->hour, c->hour_s, c->stored,
			 &c->last_hour);
}

/* UTC ISO 8601 to the second (rounded up: a moment that mounts). */
static void iso_secs(uint64_t ns, char *out, size_t size)
{
	time_t t = (time_t)((ns + 999999999ULL) / 1000000000ULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The history window's line, when the volume keeps one. */
static void print_text_history(const struct snap *s)
{
	char d[32], when[40];

	if (!snap_u64(s, "history_s"))
		return;
	cli_format_duration(snap_u64(s, "history_s"), d, sizeof(d));
	printf("%-22s%s", "history window:", d);
	if (snap_u64(s, "history_oldest_ns")) {
		iso_secs(snap_u64(s, "history_oldest_ns"), when, sizeof(when));
		printf("; the oldest moment kept %s (mount --at)", when);
	}
	printf("\n");
}

/* Seconds from Unix ns then to now (0 when then is 0 or later). */
static double secs_ago(uint64_t then_ns)
{
	uint64_t now = now_real_ns();

	return then_ns && now > then_ns ? (double)(now - then_ns) / 1e9 : 0;
}

/* A follower's line: where its copy stands in the writer's journal. */
static void print_text_follow(const struct snap *s)
{
	char when[40];

	if (!snap_u64(s, "follow_interval_ns"))
		return;
	printf("%-22sjournal entry %" PRIu64, "following:",
	       snap_u64(s, "follow_jseq"));
	if (snap_u64(s, "follow_state_ns")) {
		/* to the second, as the writer cut it (not rounded up) */
		time_t t = (time_t)(snap_u64(s, "follow_state_ns") /
				    1000000000ULL);
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf(" of the writer, cut %s (%.1f s ago)", when,
		       secs_ago(snap_u64(s, "follow_state_ns")));
	}
	printf("; last round %.1f s ago, every %.3g s; %" PRIu64
	       " entries applied, %" PRIu64 " catch-up(s) from a checkpoint%s\n",
	       secs_ago(snap_u64(s, "follow_round_ns")),
	       (double)snap_u64(s, "follow_interval_ns") / 1e9,
	       snap_u64(s, "follow_entries"), snap_u64(s, "follow_catch_ups"),
	       snap_u64(s, "follow_failing") ?
		       "; the store is failing: serving what this mount has" :
		       "");
}

/* The text's lines on the backlog, the cache and the journal. */
static void print_text_state(const struct snap *s)
{
	char a[32], b[32];
	uint64_t hits = snap_u64(s, "cache_hits");
	uint64_t misses = snap_u64(s, "cache_misses");
	uint64_t ckpt_time = snap_u64(s, "ckpt_time");

	human_bytes((double)snap_u64(s, "dirty_bytes"), a, sizeof(a));
	human_secs((double)snap_u64(s, "oldest_dirty_ns") / 1e9, b,
		   sizeof(b));
	printf("%-22s", "waiting for upload:");
	if (snap_u64(s, "dirty_bytes"))
		printf("%s, the oldest written %s ago; ", a, b);
	else
		printf("no data; ");
	printf("%" PRIu64 " uploads in flight, %" PRIu64 " journal entries\n",
	       snap_u64(s, "uploads_in_flight"),
	       snap_u64(s, "journal_pending"));
	human_bytes((double)snap_u64(s, "cache_bytes"), a, sizeof(a));
	human_bytes((double)snap_u64(s, "cache_size"), b, sizeof(b));
	printf("%-22s%s of %s; %" PRIu64 " block reads hit, %" PRIu64
	       " missed", "cache:", a, b, hits, misses);
	if (hits + misses)
		printf(" (%.1f%% hits)", 100.0 * (double)hits /
						 (double)(hits + misses));
	printf("\n%-22s%" PRIu64 " entries sent; checkpoint %" PRIu64,
	       "metadata journal:", snap_u64(s, "journal_entries"),
	       snap_u64(s, "ckpt_seq"));
	if (ckpt_time && (uint64_t)time(NULL) >= ckpt_time) {
		human_secs((double)((uint64_t)time(NULL) - ckpt_time), a,
			   sizeof(a));
		printf(", written %s ago", a);
	}
	printf("\n");
	print_text_history(s);
	print_text_follow(s);
}

/* The text's lines on what the store holds and what it costs. */
static void print_text_money(const struct snap *s, const struct costs *c)
{
	char a[32], b[32], d[32], e[32];
	unsigned renew = (unsigned)snap_u64(s, "lease_renew_s");

	human_bytes((double)c->stored, a, sizeof(a));
	human_bytes((double)c->stored_data, b, sizeof(b));
	human_bytes((double)c->stored_garbage, d, sizeof(d));
	human_bytes((double)c->stored_meta, e, sizeof(e));
	printf("%-22s%s (data %s, garbage waiting for deletion %s, "
	       "metadata %s)\n", "stored:", a, b, d, e);
	printf("%-22s$%.2f (storage $%.2f, requests $%.2f, downloads "
	       "$%.2f) at the rate since mount;\n%-22s$%.2f at the last "
	       "hour's\n", "cost per month:", c->since.total,
	       c->since.storage, c->since.requests, c->since.egress, "",
	       c->last_hour.total);
	if (c->uptime < 600)
		printf("%-22s(a mount this young: its start-up requests weigh "
		       "heavily)\n", "");
	printf("%-22s$%g per GB-month, $%g per 1,000 PUT/POST/LIST, $%g per "
	       "1,000 GET/HEAD, $%g per GB down%s\n", "prices:",
	       store_price(&c->prices, STORE_PRICE_STORAGE_GB_MONTH),
	       store_price(&c->prices, STORE_PRICE_PUT_1K),
	       store_price(&c->prices, STORE_PRICE_GET_1K),
	       store_price(&c->prices, STORE_PRICE_EGRESS_GB),
	       c->local ? " (a local directory, priced as S3)" : "");
	if (renew) {
		human_secs(renew, a, sizeof(a));
		printf("%-22srenewed every %s (%u requests an hour when "
		       "idle)\n", "lease:", a, (3600 + renew - 1) / renew);
	}
}

static void print_text(const char *path, const struct snap *s)
{
	struct costs c;
	char a[32], b[32];

	compute_costs(s, &c);
	human_secs(c.uptime, a, sizeof(a));
	printf("%s: %s, mounted %s ago (daemon pid %s)\n", path,
	       snap_str(s, "store"), a, snap_str(s, "pid"));
	print_requests("requests since mount:", &c.all);
	printf("%-22s%" PRIu64 " errors, %" PRIu64 " retries\n", "",
	       c.all.errors, c.all.retries);
	print_requests("requests, last hour:", &c.hour);
	if (c.hour_s < 3599) {
		human_secs(c.hour_s, a, sizeof(a));
		printf("%-22s(the mount is %s old)\n", "", a);
	}
	human_bytes((double)c.all.bytes_up, a, sizeof(a));
	human_bytes((double)c.all.bytes_down, b, sizeof(b));
	printf("%-22s%s up, %s down\n", "transferred:", a, b);
	print_text_state(s);
	print_text_money(s, &c);
}

/* s as a JSON string (quotes included) */
static void json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void json_requests(const struct store_traffic *t)
{
	unsigned i;

	printf("{");
	for (i = 0; i < STORE_REQ_KINDS; i++)
		printf("%s\"%s\":%" PRIu64, i ? "," : "",
		       store_req_name((enum store_req)i), t->req[i]);
	printf("}");
}

static void json_u64(const struct snap *s, const char *name, const char *key);

/* "follow": where a follower's copy stands, or null on other mounts. */
static void json_follow(const struct snap *s)
{
	if (!snap_u64(s, "follow_interval_ns")) {
		printf(",\"follow\":null");
		return;
	}
	printf(",\"follow\":{\"interval_s\":%.3f,\"jseq\":%" PRIu64,
	       (double)snap_u64(s, "follow_interval_ns") / 1e9,
	       snap_u64(s, "follow_jseq"));
	if (snap_u64(s, "follow_state_ns"))
		printf(",\"state_ns\":%" PRIu64 ",\"state_age_s\":%.3f",
		       snap_u64(s, "follow_state_ns"),
		       secs_ago(snap_u64(s, "follow_state_ns")));
	else
		printf(",\"state_ns\":null,\"state_age_s\":null");
	printf(",\"last_round_s\":%.3f,\"entries\":%" PRIu64
	       ",\"catch_ups\":%" PRIu64 ",\"failing\":%s}",
	       secs_ago(snap_u64(s, "follow_round_ns")),
	       snap_u64(s, "follow_entries"), snap_u64(s, "follow_catch_ups"),
	       snap_u64(s, "follow_failing") ? "true" : "false");
}

static void json_u64(const struct snap *s, const char *name, const char *key)
{
	printf(",\"%s\":%" PRIu64, name, snap_u64(s, key));
}

static void print_json(const char *path, const struct snap *s)
{
	static const char *const same[] = {
		"dirty_bytes", "uploads_in_flight", "uploads", "upload_bytes",
		"upload_errors", "cache_bytes", "cache_size", "cache_hits",
		"cache_misses", "fetches", "fetch_bytes", "journal_entries",
		"journal_pending", "stored_data_bytes",
		"stored_garbage_bytes", "stored_meta_bytes", "objects",
		"lease_renew_s", "lease_valid_s", "block_size",
	};
	uint64_t ckpt_time = snap_u64(s, "ckpt_time");
	struct costs c;
	size_t i;

	compute_costs(s, &c);
	printf("{\"mountpoint\":");
	json_str(path);
	printf(",\"store\":");
	json_str(snap_str(s, "store"));
	printf(",\"store_kind\":");
	json_str(snap_str(s, "store_kind"));
	printf(",\"pid\":%" PRIu64 ",\"uptime_s\":%.3f,\"requests\":",
	       snap_u64(s, "pid"), c.uptime);
	json_requests(&c.all);
	printf(",\"bytes_up\":%" PRIu64 ",\"bytes_down\":%" PRIu64
	       ",\"errors\":%" PRIu64 ",\"retries\":%" PRIu64,
	       c.all.bytes_up, c.all.bytes_down, c.all.errors, c.all.retries);
	printf(",\"last_hour\":{\"seconds\":%.3f,\"requests\":", c.hour_s);
	json_requests(&c.hour);
	printf(",\"bytes_up\":%" PRIu64 ",\"bytes_down\":%" PRIu64 "}",
	       c.hour.bytes_up, c.hour.bytes_down);
	printf(",\"oldest_dirty_s\":%.3f",
	       (double)snap_u64(s, "oldest_dirty_ns") / 1e9);
	for (i = 0; i < ARRAY_SIZE(same); i++)
		json_u64(s, same[i], same[i]);
	json_u64(s, "checkpoint_seq", "ckpt_seq");
	json_u64(s, "history_s", "history_s");
	if (snap_u64(s, "history_oldest_ns")) {
		char when[40];

		iso_secs(snap_u64(s, "history_oldest_ns"), when, sizeof(when));
		printf(",\"history_oldest\":");
		json_str(when);
	} else {
		printf(",\"history_oldest\":null");
	}
	json_follow(s);
	if (ckpt_time && (uint64_t)time(NULL) >= ckpt_time)
		printf(",\"checkpoint_age_s\":%" PRIu64,
		       (uint64_t)time(NULL) - ckpt_time);
	else
		printf(",\"checkpoint_age_s\":null");
	printf(",\"stored_bytes\":%" PRIu64 ",\"prices\":{", c.stored);
	for (i = 0; i < STORE_PRICES; i++)
		printf("%s\"%s\":%.10g", i ? "," : "",
		       store_price_name((enum store_price)i) + 6,
		       store_price(&c.prices, (enum store_price)i));
	printf("},\"priced_as_s3\":%s", c.local ? "true" : "false");
	printf(",\"cost_usd_month\":%.10g,\"cost_usd_month_parts\":{"
	       "\"storage\":%.10g,\"requests\":%.10g,\"egress\":%.10g}"
	       ",\"cost_usd_month_last_hour\":%.10g}\n",
	       c.since.total, c.since.storage, c.since.requests,
	       c.since.egress, c.last_hour.total);
}

/* ---- --watch ---- */

static void watch_header(void)
{
	printf("%8s %7s %7s %7s %7s %8s %9s %9s %7s %5s\n", "time", "GET/s",
	       "PUT/s", "LIST/s", "other/s", "up MB/s", "down MB/s",
	       "dirty", "oldest", "hit%");
}

/* One line of rates between snapshots a and b (invariant 3). */
static void watch_line(const struct snap *a, const struct snap *b)
{
	struct store_traffic ta, tb;
	double dt = (double)(snap_u64(b, "uptime_ns") -
			     snap_u64(a, "uptime_ns")) / 1e9;
	uint64_t other = 0, hits, misses;
	char now[16], dirty[32], hit[16];
	time_t t = time(NULL);
	struct tm tm;
	unsigned i;

	snap_traffic(a, "", &ta);
	snap_traffic(b, "", &tb);
	if (dt <= 0)
		dt = 1e-9;
	for (i = 0; i < STORE_REQ_KINDS; i++)
		if (i != STORE_REQ_GET && i != STORE_REQ_PUT &&
		    i != STORE_REQ_LIST)
			other += tb.req[i] - ta.req[i];
	hits = snap_u64(b, "cache_hits") - snap_u64(a, "cache_hits");
	misses = snap_u64(b, "cache_misses") - snap_u64(a, "cache_misses");
	if (hits + misses)
		snprintf(hit, sizeof(hit), "%.0f",
			 100.0 * (double)hits / (double)(hits + misses));
	else
		snprintf(hit, sizeof(hit), "-");
	localtime_r(&t, &tm);
	strftime(now, sizeof(now), "%H:%M:%S", &tm);
	human_bytes((double)snap_u64(b, "dirty_bytes"), dirty, sizeof(dirty));
#define RATE(k) ((double)(tb.req[k] - ta.req[k]) / dt)
	printf("%8s %7.1f %7.1f %7.1f %7.1f %8.2f %9.2f %9s %6.1fs %5s\n",
	       now, RATE(STORE_REQ_GET), RATE(STORE_REQ_PUT),
	       RATE(STORE_REQ_LIST),
	       (double)other / dt,
	       (double)(tb.bytes_up - ta.bytes_up) / dt / 1e6,
	       (double)(tb.bytes_down - ta.bytes_down) / dt / 1e6, dirty,
	       (double)snap_u64(b, "oldest_dirty_ns") / 1e9, hit);
#undef RATE
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ULL),
			       (long)(ns % 1000000000ULL) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Until interrupted, count lines printed (0: no end) or the mount gone. */
static int watch(const char *path, uint64_t every_ns, uint64_t count,
		 bool json)
{
	struct snap s[2] = { { .text = BUF_INIT }, { .text = BUF_INIT } };
	struct buf err = BUF_INIT;
	uint64_t lines = 0;
	int cur = 0, rc;

	rc = fetch(path, &s[cur], &err);
	if (!json && !rc)
		watch_header();
	while (!rc && (!count || lines < count)) {
		fflush(stdout);
		sleep_ns(every_ns);
		rc = fetch(path, &s[!cur], &err);
		/* unmounted while watched: the end, not a failure */
		if (rc && mount_gone(path)) {
			fprintf(stderr, "metafuse: %s was unmounted\n", path);
			buf_reset(&err);
			rc = 0;
			break;
		}
		if (rc)
			break;
		cur = !cur;
		if (json)
			print_json(path, &s[cur]);
		else
			watch_line(&s[!cur], &s[cur]);
		lines++;
	}
	fflush(stdout);
	if (rc)
		cli_error("%s", buf_str(&err));
	buf_free(&err);
	buf_free(&s[0].text);
	buf_free(&s[1].text);
	return rc ? 1 : 0;
}

int cmd_stats(int argc, char **argv)
{
	struct snap s = { .text = BUF_INIT };
	struct buf err = BUF_INIT;
	uint64_t every_ns = 0, count = 0;
	bool json = false;
	struct cli_args a;
	char *end;
	int c, status = 1;

	cli_args_init(&a, &cli_cmd_stats, argc, argv);
	while ((c = cli_getopt(&a)) > 0) {
		if (c == OPT_JSON) {
			json = true;
		} else if (c == OPT_WATCH) {
			if (parse_seconds(optarg, &every_ns) ||
			    every_ns < 100000000ULL) {
				cli_error("--watch takes seconds, at least "
					  "0.1 (not '%s')", optarg);
				return 2;
			}
		} else if (c == OPT_COUNT) {
			count = strtoull(optarg, &end, 10);
			if (*end || !*optarg || !count) {
				cli_error("--count takes a number of lines "
					  "(not '%s')", optarg);
				return 2;
			}
		}
	}
	if (c < 0)
		return a.status;
	if (count && !every_ns) {
		cli_error("--count goes with --watch");
		return 2;
	}
	if (every_ns)
		return watch(a.operand[0], every_ns, count, json);
	if (fetch(a.operand[0], &s, &err) == 0) {
		if (json)
			print_json(a.operand[0], &s);
		else
			print_text(a.operand[0], &s);
		status = 0;
	} else {
		cli_error("%s", buf_str(&err));
	}
	buf_free(&s.text);
	buf_free(&err);
	return status;
}
