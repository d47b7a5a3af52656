/*
 * daemon_stats.c - what a mount tells `metafuse stats` (cmd_stats.c):
 * the store's requests and bytes since the mount and in the last hour,
 * what waits to be uploaded, the cache, the journal, what the store
 * holds and the prices to cost it with.  Also the price options of
 * `metafuse mount`.
 *
 * The channel: a Unix socket beside the registry file that `metafuse
 * umount` already finds the daemon by (cli_registry_path(): /run/metafuse
 * as root, else $XDG_RUNTIME_DIR/metafuse), named after it + ".sock",
 * mode 0600 in a directory of mode 0700.  A client connects, writes
 * "stats\n" and reads "key value" lines up to "end"; the connection then
 * closes.  A socket rather than a file the daemon rewrites: nothing is
 * written while nobody asks (an idle mount stays idle), every answer is
 * current, and a socket nobody answers says at once that the daemon is
 * gone (ECONNREFUSED), where a file would only grow old.
 *
 * Threads: the statistics thread (stats_thread()) waits in poll() for a
 * client or for the byte on wake[] that ends it; it reads the counters
 * of store, cache, journal and meta, which take their own locks, never
 * a lock of the I/O path for long (the cache's to walk its dirty list,
 * meta's for two one-row queries).  The maintenance thread adds a sample
 * of the store's counters every minute (daemon_stats_tick()).
 *
 * Invariants:
 *   1. Only the mounting user and root are answered (SO_PEERCRED), on top
 *      of the socket's mode: a client of any other uid gets one "error"
 *      line.
 *   2. A client cannot hold the thread: reads and writes time out after
 *      2 s, and a write never raises SIGPIPE (MSG_NOSIGNAL).
 *   3. The samples are a ring of STATS_SAMPLES a minute apart (or more:
 *      the maintenance thread ticks every second or so), the first
 *      one (zero traffic) at the start: "the last hour" is the traffic
 *      since the oldest sample at most an hour old, and the answer says
 *      over how long (hour_ns), an hour or, for a younger mount, less.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/follow.h"
#include "cli/mount_int.h"
#include "util/log.h"
#include "util/util.h"

/* a sample a minute (METAFUSE_TEST_STATS_MINUTE_MS shortens the minute
 * for the tests, and with it the hour, 60 of them) */
#define SAMPLE_EVERY_NS (60ULL * 1000000000ULL)
#define CLIENT_TIMEOUT_S 2

/* ---- the price options of `metafuse mount` ---- */

/* price_file=FILE: its lines into p; -ECANCELED after one line printed */
static int price_file(struct store_prices *p, const char *path)
{
	struct buf text = BUF_INIT, err = BUF_INIT;
	int rc = read_file(path, &text);

	if (rc) {
		cli_error("cannot read the price file %s: %s", path,
			  strerror(-rc));
	} else if (buf_append(&text, "", 1) ||
		   store_prices_parse(p, buf_str(&text), &err)) {
		cli_error("price file %s, %s", path,
			  err.len ? buf_str(&err) : "out of memory");
		rc = -1;
	}
	buf_free(&text);
	buf_free(&err);
	return rc ? -ECANCELED : 0;
}

int mount_price_opt(struct store_prices *p, const char *opt)
{
	const char *eq = strchr(opt, '=');
	char key[64];
	int rc;

	if (!eq || (size_t)(eq - opt) >= sizeof(key) ||
	    strncmp(opt, "price_", 6))
		return -ENOENT;
	memcpy(key, opt, (size_t)(eq - opt));
	key[eq - opt] = 0;
	if (!strcmp(key, "price_file"))
		return eq[1] ? price_file(p, eq + 1) : -EINVAL;
	rc = store_price_set(p, key, eq + 1);
	if (rc == -EINVAL) {
		cli_error("invalid price in mount option '%s': not a "
			  "non-negative number (USD, like 0.023)", opt);
		return -ECANCELED;
	}
	return rc;
}

/* ---- samples ---- */

void daemon_stats_init(struct mounted *mt)
{
	struct daemon_stats *st = &mt->stats;

	const char *knob = getenv("METAFUSE_TEST_STATS_MINUTE_MS");

	st->start_ns = now_mono_ns();
	st->minute_ns = SAMPLE_EVERY_NS;
	if (knob && strtoull(knob, NULL, 10) > 0)
		st->minute_ns = strtoull(knob, NULL, 10) * 1000000ULL;
	st->listen_fd = -1;
	st->wake[0] = st->wake[1] = -1;
	pthread_mutex_init(&st->lock, NULL);
	/* invariant 3: the traffic before the first minute counts from 0 */
	st->samples[0].t_ns = st->start_ns;
	st->nsamples = 1;
	st->next = 1;
	st->next_sample_ns = st->start_ns + st->minute_ns;
}

void daemon_stats_tick(struct mounted *mt, uint64_t now_ns)
{
	struct daemon_stats *st = &mt->stats;
	struct stats_sample s;

	if (now_ns < st->next_sample_ns)
		return;
	st->next_sample_ns = now_ns + st->minute_ns;
	s.t_ns = now_ns;
	store_counters_read(mt->store->counters, &s.traffic);
	pthread_mutex_lock(&st->lock);
	st->samples[st->next] = s;
	st->next = (st->next + 1) % STATS_SAMPLES;
	if (st->nsamples < STATS_SAMPLES)
		st->nsamples++;
	pthread_mutex_unlock(&st->lock);
}

/* The traffic of the last hour (invariant 3) into d, over *span_ns. */
static void last_hour(struct mounted *mt, const struct store_traffic *now_t,
		      uint64_t now_ns, struct store_traffic *d,
		      uint64_t *span_ns)
{
	struct daemon_stats *st = &mt->stats;
	struct stats_sample base;
	unsigned i, k;

	pthread_mutex_lock(&st->lock);
	base = st->samples[(st->next + STATS_SAMPLES - st->nsamples) %
			   STATS_SAMPLES];
	for (i = 0; i < st->nsamples; i++) {
		k = (st->next + STATS_SAMPLES - st->nsamples + i) %
		    STATS_SAMPLES;
		if (now_ns - st->samples[k].t_ns <= 60 * st->minute_ns) {
			base = st->samples[k];
			break;
		}
	}
	pthread_mutex_unlock(&st->lock);
	for (i = 0; i < STORE_REQ_KINDS; i++)
		d->req[i] = now_t->req[i] - base.traffic.req[i];
	d->bytes_up = now_t->bytes_up - base.traffic.bytes_up;
	d->bytes_down = now_t->bytes_down - base.traffic.bytes_down;
	d->errors = now_t->errors - base.traffic.errors;
	d->retries = now_t->retries - base.traffic.retries;
	*span_ns = now_ns - base.t_ns;
}

/* ---- the answer ---- */

static void put_traffic(struct buf *b, const char *prefix,
			const struct store_traffic *t)
{
	unsigned i;

	for (i = 0; i < STORE_REQ_KINDS; i++)
		buf_appendf(b, "%sreq_%s %" PRIu64 "\n", prefix,
			    store_req_name((enum store_req)i), t->req[i]);
	buf_appendf(b, "%sbytes_up %" PRIu64 "\n%sbytes_down %" PRIu64 "\n"
		    "%serrors %" PRIu64 "\n%sretries %" PRIu64 "\n",
		    prefix, t->bytes_up, prefix, t->bytes_down, prefix,
		    t->errors, prefix, t->retries);
}

/* The history window and the oldest moment it keeps (a writer's). */
static void put_history(struct mounted *mt, struct buf *b)
{
	int64_t oldest;

	if (!mt->journal || !mt->vol.history_s)
		return;
	buf_appendf(b, "history_s %" PRIu64 "\n", mt->vol.history_s);
	oldest = journal_history_oldest(mt->journal);
	if (oldest > 0)
		buf_appendf(b, "history_oldest_ns %" PRId64 "\n", oldest);
}

/* Where a follower stands (as of its last round). */
static void put_follow(struct mounted *mt, struct buf *b)
{
	struct follow_stats f;

	if (!mt->follower)
		return;
	follow_get_stats(mt->follower, &f);
	buf_appendf(b, "follow_interval_ns %" PRIu64 "\n"
		    "follow_entries %" PRIu64 "\nfollow_catch_ups %" PRIu64
		    "\nfollow_jseq %" PRIu64 "\nfollow_state_ns %" PRId64
		    "\nfollow_round_ns %" PRId64 "\nfollow_failing %d\n",
		    mt->o->follow_interval_ns, f.entries, f.catch_ups, f.jseq,
		    f.state_ns, f.round_ns, f.failing ? 1 : 0);
}

/* What the cache and the journal say. */
static void put_cache_journal(struct mounted *mt, struct buf *b,
			      uint64_t now_ns)
{
	struct journal_stats js = { 0 };
	struct cache_stats cs;

	cache_get_stats(mt->cache, &cs);
	buf_appendf(b, "dirty_bytes %" PRIu64 "\noldest_dirty_ns %" PRIu64
		    "\nuploads_in_flight %" PRIu64 "\nuploads %" PRIu64
		    "\nupload_bytes %" PRIu64 "\nupload_errors %" PRIu64
		    "\ncache_bytes %" PRIu64 "\ncache_size %" PRIu64
		    "\ncache_hits %" PRIu64 "\ncache_misses %" PRIu64
		    "\nfetches %" PRIu64 "\nfetch_bytes %" PRIu64 "\n",
		    cs.dirty_bytes,
		    cs.oldest_dirty_ns && now_ns > cs.oldest_dirty_ns ?
			    now_ns - cs.oldest_dirty_ns : 0,
		    cs.uploads_in_flight, cs.uploads, cs.upload_bytes,
		    cs.upload_errors, cs.cached_bytes, mt->o->cache_size,
		    cs.read_hits, cs.read_misses, cs.fetches,
		    cs.fetch_bytes);
	if (mt->journal) {
		journal_get_stats(mt->journal, &js);
	} else {
		/* read-only: what the last writer recorded (journal.c) */
		js.ckpt_seq = meta_config_get_u64(mt->meta, "durable_seq", 0);
		js.ckpt_time = meta_config_get_u64(mt->meta, "ckpt_time", 0);
		js.ckpt_bytes = meta_config_get_u64(mt->meta, "ckpt_bytes", 0);
		js.since_bytes = meta_config_get_u64(mt->meta,
						     "jrnl_since_bytes", 0);
		js.since_entries = meta_config_get_u64(mt->meta,
						       "jrnl_since_entries", 0);
	}
	buf_appendf(b, "journal_entries %" PRIu64 "\njournal_pending %" PRIu64
		    "\ncheckpoints %" PRIu64 "\nckpt_seq %" PRIu64 "\n",
		    js.entries, js.pending, js.checkpoints, js.ckpt_seq);
	if (js.ckpt_time)
		buf_appendf(b, "ckpt_time %" PRIu64 "\n", js.ckpt_time);
	buf_appendf(b, "stored_meta_bytes %" PRIu64 "\n"
		    "meta_since_entries %" PRIu64 "\n",
		    js.ckpt_bytes + js.since_bytes, js.since_entries);
	put_history(mt, b);
	put_follow(mt, b);
}

/* The whole answer, "key value" lines without "end". */
static void stats_answer(struct mounted *mt, struct buf *b)
{
	uint64_t now = now_mono_ns(), span = 0, gcount = 0, gbytes = 0;
	struct store_traffic t, hour = { 0 };
	struct meta_stats ms = { 0 };
	unsigned i;

	store_counters_read(mt->store->counters, &t);
	last_hour(mt, &t, now, &hour, &span);
	buf_appendf(b, "version 1\nstore %s\nstore_kind %s\npid %d\n"
		    "uptime_ns %" PRIu64 "\nblock_size %" PRIu32 "\n"
		    "read_only %d\n",
		    mt->store->url,
		    strncmp(mt->store->url, "s3://", 5) ? "file" : "s3",
		    (int)getpid(), now - mt->stats.start_ns,
		    mt->vol.block_size, mt->o->read_only ? 1 : 0);
	put_traffic(b, "", &t);
	buf_appendf(b, "hour_ns %" PRIu64 "\n", span);
	put_traffic(b, "hour_", &hour);
	put_cache_journal(mt, b, now);
	meta_stats(mt->meta, &ms);
	meta_gc_waiting(mt->meta, 0, &gcount, &gbytes);
	buf_appendf(b, "stored_data_bytes %" PRIu64 "\n"
		    "stored_garbage_bytes %" PRIu64 "\nobjects %" PRIu64
		    "\n", ms.object_bytes, gbytes, ms.objects);
	for (i = 0; i < STORE_PRICES; i++)
		buf_appendf(b, "%s %.17g\n",
			    store_price_name((enum store_price)i),
			    store_price(&mt->o->prices, (enum store_price)i));
	buf_appendf(b, "lease_valid_s %u\nlease_renew_s %u\n",
		    mt->o->read_only ? 0 : mt->lease_valid_s,
		    mt->o->read_only ? 0 : mt->lease_valid_s / 2);
}

/* Write all of b to fd, without SIGPIPE (invariant 2). */
static int send_all(int fd, const struct buf *b)
{
	size_t off = 0;

	while (off < b->len) {
		ssize_t n = send(fd, b->data + off, b->len - off,
				 MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

/* One client, fd connected: check who, read its request, answer. */
static void serve_client(struct mounted *mt, int fd)
{
	struct timeval tv = { CLIENT_TIMEOUT_S, 0 };
	struct buf b = BUF_INIT;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char req[64];
	size_t got = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		buf_appends(&b, "error permission denied\n");
		goto out;
	}
	while (got < sizeof(req) - 1 && !memchr(req, '\n', got)) {
		ssize_t n = recv(fd, req + got, sizeof(req) - 1 - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	req[got] = 0;
	if (strcmp(req, "stats\n")) {
		buf_appends(&b, "error unknown request\n");
		goto out;
	}
	stats_answer(mt, &b);
	buf_appends(&b, "end\n");
out:
	send_all(fd, &b);
	buf_free(&b);
}

static void *stats_thread(void *arg)
{
	struct mounted *mt = arg;
	struct daemon_stats *st = &mt->stats;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = st->listen_fd, .events = POLLIN },
			{ .fd = st->wake[0], .events = POLLIN },
		};
		int fd;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("stats: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		if (p[0].revents & (POLLERR | POLLNVAL)) {
			log_error("stats: the statistics socket failed");
			break;
		}
		if (!(p[0].revents & POLLIN))
			continue;
		fd = accept4(st->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve_client(mt, fd);
		close(fd);
	}
	return NULL;
}

/* ---- the socket ---- */

/* A listening socket at path, mode 0600; the fd or -errno. */
static int listen_at(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd, rc;

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	memcpy(a.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* a socket left by a daemon that died at this mountpoint */
	unlink(path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    chmod(path, 0600) || listen(fd, 8)) {
		rc = -errno;
		close(fd);
		unlink(path);
		return rc;
	}
	return fd;
}

void daemon_stats_start(struct mounted *mt, const char *registry)
{
	struct daemon_stats *st = &mt->stats;
	struct buf path = BUF_INIT;
	int rc;

	if (buf_appendf(&path, "%s.sock", registry))
		goto out;
	rc = listen_at(buf_str(&path));
	if (rc < 0) {
		log_warn("no statistics for this mount: cannot listen at %s: "
			 "%s", buf_str(&path), strerror(-rc));
		goto out;
	}
	st->listen_fd = rc;
	if (pipe2(st->wake, O_CLOEXEC) ||
	    pthread_create(&st->thread, NULL, stats_thread, mt)) {
		log_warn("no statistics for this mount: %s", strerror(errno));
		goto out_close;
	}
	st->running = true;
	st->sock_path = (char *)buf_detach(&path, NULL);
	goto out;

out_close:
	close(st->listen_fd);
	st->listen_fd = -1;
	unlink(buf_str(&path));
out:
	buf_free(&path);
}

void daemon_stats_stop(struct mounted *mt)
{
	struct daemon_stats *st = &mt->stats;
	char c = 0;

	if (st->running) {
		if (write(st->wake[1], &c, 1) != 1)
			log_warn("stats: cannot wake the thread");
		pthread_join(st->thread, NULL);
		st->running = false;
	}
	if (st->sock_path) {
		unlink(st->sock_path);
		free(st->sock_path);
		st->sock_path = NULL;
	}
	if (st->listen_fd >= 0)
		close(st->listen_fd);
	if (st->wake[0] >= 0)
		close(st->wake[0]);
	if (st->wake[1] >= 0)
		close(st->wake[1]);
	st->listen_fd = st->wake[0] = st->wake[1] = -1;
}
