/*
 * volume.c - the volume descriptor and the mount lease (see volume.h).
 *
 * Both are small "key=value" text documents framed by the blob codec, so
 * that a damaged one is detected (checksum) rather than misread.
 *
 * Invariants
 *   1. The descriptor is written once, by mkfs, and never changes: the
 *      block size, hash key and block names of a volume are fixed for
 *      its life.
 *   2. A lease names its holder by host, pid and a random owner token;
 *      only the token decides whether a lease is still ours.
 *   3. A lease is taken over without force only from a holder known to
 *      be dead: on this host, its pid no longer runs metafuse; on
 *      another, its expiry (by the taker's clock) has passed.
 *   4. The holder renews with one PUT, without reading the lease first,
 *      only while the lease it last wrote is certainly still its own
 *      (the caller, volume.h, says when; then no taker can have found
 *      it expired); otherwise it reads it back first and writes nothing
 *      when another owner holds it.
 */
#include "util/compat.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/util.h"
#include "volume/volume.h"

static const struct blob_ctx plain_ctx; /* no key needed for framing */

/* Value of "key=" in a key=value text into out; 0 or -ENOENT. */
static int kv_get(const char *text, const char *key, char *out, size_t size)
{
	size_t klen = strlen(key);
	const char *p = text;

	while (p && *p) {
		const char *eol = strchr(p, '\n');
		size_t llen = eol ? (size_t)(eol - p) : strlen(p);

		if (llen > klen && !strncmp(p, key, klen) && p[klen] == '=') {
			size_t vlen = llen - klen - 1;

			if (vlen >= size)
				return -EINVAL;
			memcpy(out, p + klen + 1, vlen);
			out[vlen] = 0;
			return 0;
		}
		p = eol ? eol + 1 : NULL;
	}
	return -ENOENT;
}

static int get_framed(struct store *s, const char *key, struct buf *text)
{
	struct buf raw = BUF_INIT;
	int rc = store_get(s, key, 0, 0, &raw);

	if (rc == 0) {
		rc = blob_decode(&plain_ctx, raw.data, raw.len, text);
		if (rc == 0)
			rc = buf_append(text, "", 1) ? -ENOMEM : 0;
	}
	buf_free(&raw);
	return rc;
}

static int put_framed(struct store *s, const char *key, const struct buf *t)
{
	struct buf enc = BUF_INIT;
	int rc = blob_encode(&plain_ctx, t->data, t->len, &enc);

	if (rc == 0)
		rc = store_put(s, key, enc.data, enc.len);
	buf_free(&enc);
	return rc;
}

int volume_load(struct store *s, struct volume *out, struct buf *err)
{
	struct buf text = BUF_INIT;
	char v[128];
	int rc;

	memset(out, 0, sizeof(*out));
	rc = get_framed(s, "volume", &text);
	if (rc == -ENOENT) {
		buf_appendf(err, "%s is not a metafuse volume (no volume "
			    "descriptor; create one with 'metafuse mkfs')",
			    s->url);
		goto out;
	}
	if (rc) {
		buf_appendf(err, "cannot read the volume descriptor of %s: %s",
			    s->url, rc == -EIO ? "it is damaged" :
			    strerror(-rc));
		goto out;
	}
	rc = -EIO;
	if (strncmp((char *)text.data, "metafuse-volume\n", 16) ||
	    kv_get((char *)text.data, "format", v, sizeof(v)))
		goto out_damaged;
	out->format = (uint32_t)strtoul(v, NULL, 10);
	if (out->format < VOLUME_FORMAT_MIN || out->format > VOLUME_FORMAT) {
		buf_appendf(err, "volume %s has format %u; this metafuse "
			    "reads formats %u to %u", s->url, out->format,
			    VOLUME_FORMAT_MIN, VOLUME_FORMAT);
		rc = -EPROTONOSUPPORT;
		goto out;
	}
	if (kv_get((char *)text.data, "id", out->id, sizeof(out->id)) ||
	    strlen(out->id) != VOLUME_ID_HEX ||
	    kv_get((char *)text.data, "block_size", v, sizeof(v)))
		goto out_damaged;
	out->block_size = (uint32_t)strtoul(v, NULL, 10);
	if (out->block_size < 4096 || out->block_size > 64 << 20 ||
	    kv_get((char *)text.data, "hash_key", v, sizeof(v)) ||
	    hex_decode(v, out->hash_key, BLOB_KEY_BYTES))
		goto out_damaged;
	/* names: given exactly from format 3 on, BLAKE2b before */
	out->names = BLOB_NAMES_BLAKE2B;
	if (out->format >= VOLUME_FORMAT_NAMES &&
	    (kv_get((char *)text.data, "names", v, sizeof(v)) ||
	     blob_names_parse(v, &out->names)))
		goto out_damaged;
	rc = 0;
	goto out;
out_damaged:
	buf_appendf(err, "the volume descriptor of %s is damaged", s->url);
out:
	buf_free(&text);
	return rc;
}

int volume_create(struct store *s, uint32_t block_size,
		  enum blob_names names, struct volume *out, struct buf *err)
{
	struct buf text = BUF_INIT;
	uint8_t id[VOLUME_ID_HEX / 2];
	char keyhex[2 * BLOB_KEY_BYTES + 1];
	uint64_t size;
	int rc;

	rc = store_head(s, "volume", &size);
	if (rc == 0) {
		buf_appendf(err, "%s already holds a metafuse volume; "
			    "refusing to overwrite it", s->url);
		return -EEXIST;
	}
	if (rc != -ENOENT) {
		buf_appendf(err, "cannot access %s: %s", s->url,
			    strerror(-rc));
		return rc;
	}
	memset(out, 0, sizeof(*out));
	/* the oldest format that holds the volume: older binaries read it */
	out->format = names == BLOB_NAMES_BLAKE2B ? VOLUME_FORMAT_PATCHES :
						    VOLUME_FORMAT_NAMES;
	out->block_size = block_size;
	out->names = names;
	blob_random(id, sizeof(id));
	hex_encode(id, sizeof(id), out->id);
	blob_random(out->hash_key, sizeof(out->hash_key));
	hex_encode(out->hash_key, sizeof(out->hash_key), keyhex);
	rc = buf_appendf(&text,
			 "metafuse-volume\nformat=%u\nid=%s\nblock_size=%u\n"
			 "hash_key=%s\ncreated=%lld\n",
			 out->format, out->id, out->block_size, keyhex,
			 (long long)time(NULL));
	if (rc == 0 && out->format >= VOLUME_FORMAT_NAMES)
		rc = buf_appendf(&text, "names=%s\n",
				 blob_names_label(names));
	if (rc == 0)
		rc = put_framed(s, "volume", &text);
	if (rc)
		buf_appendf(err, "cannot write the volume descriptor to %s: %s",
			    s->url, strerror(-rc));
	explicit_bzero(keyhex, sizeof(keyhex));
	buf_free(&text);
	return rc;
}

/* ---- lease ---- */

static int lease_read(struct store *s, struct volume_lease *l)
{
	struct buf text = BUF_INIT;
	char v[64];
	int rc = get_framed(s, "lease", &text);

	memset(l, 0, sizeof(*l));
	if (rc)
		goto out;
	rc = -EIO;
	if (kv_get((char *)text.data, "host", l->host, sizeof(l->host)) ||
	    kv_get((char *)text.data, "owner", l->owner, sizeof(l->owner)))
		goto out;
	if (kv_get((char *)text.data, "pid", v, sizeof(v)))
		goto out;
	l->pid = strtol(v, NULL, 10);
	if (kv_get((char *)text.data, "since", v, sizeof(v)))
		goto out;
	l->since = strtoll(v, NULL, 10);
	if (kv_get((char *)text.data, "expires", v, sizeof(v)))
		goto out;
	l->expires = strtoll(v, NULL, 10);
	rc = 0;
out:
	buf_free(&text);
	return rc;
}

static int lease_write(struct store *s, const struct volume_lease *l)
{
	struct buf text = BUF_INIT;
	int rc = buf_appendf(&text,
			     "host=%s\npid=%ld\nowner=%s\nsince=%lld\n"
			     "expires=%lld\n",
			     l->host, l->pid, l->owner, l->since, l->expires);

	if (rc == 0)
		rc = put_framed(s, "lease", &text);
	buf_free(&text);
	return rc;
}

/* Is pid on this host a running metafuse? */
static bool local_holder_alive(long pid)
{
	char path[64], comm[64] = "";
	FILE *f;

	if (pid == (long)getpid() || !proc_running(pid))
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	f = fopen(path, "r");
	if (!f)
		return true; /* cannot tell: assume it is */
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = 0;
	fclose(f);
	return strstr(comm, "metafuse") != NULL;
}

/*
 * The store has no compare-and-swap, so two takers that both read "no
 * live lease" both write one.  Each then pauses and reads the lease back:
 * the later write is what both see, and the earlier writer gives up.
 * This is safe whenever the pause is longer than the time the other
 * taker spends between its read and its write: the pause is four times
 * our own (the same store, the same kind of machine), at least 100 ms.
 */
static int lease_settle(struct store *s, const struct volume_lease *mine,
			uint64_t window_ns, struct buf *err)
{
	uint64_t pause = MF_MIN(MF_MAX(4 * window_ns, 100000000ULL),
				2000000000ULL);
	struct timespec ts = { (time_t)(pause / 1000000000ULL),
			       (long)(pause % 1000000000ULL) };
	struct volume_lease back;
	int rc;

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	rc = lease_read(s, &back);
	if (rc) {
		buf_appendf(err, "cannot read back the lease of %s: %s",
			    s->url, strerror(-rc));
		return rc;
	}
	if (strcmp(back.owner, mine->owner)) {
		buf_appendf(err, "volume %s is already mounted by host %s, "
			    "pid %ld, which took it at the same moment",
			    s->url, back.host, back.pid);
		return -EBUSY;
	}
	return 0;
}

/* "2026-01-31 12:00:00 UTC" */
static void utc_time(long long t, char *out, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* -EBUSY, with the message, when old's holder may be alive (invariant
 * 3). */
static int lease_refuse_live(struct store *s, const struct volume_lease *old,
			     const char *host, struct buf *err)
{
	char when[64], until[64];

	if (!strcmp(old->host, host) ? !local_holder_alive(old->pid) :
				       old->expires <= (long long)time(NULL))
		return 0;
	utc_time(old->since, when, sizeof(when));
	utc_time(old->expires, until, sizeof(until));
	if (!strcmp(old->host, host))
		buf_appendf(err, "volume %s is already mounted by host %s, "
			    "pid %ld, since %s (use --force if that mount is "
			    "dead)", s->url, old->host, old->pid, when);
	else
		buf_appendf(err, "volume %s is already mounted by host %s, "
			    "pid %ld, since %s; if that mount is dead its "
			    "lease can be taken after %s (or now with "
			    "--force)", s->url, old->host, old->pid, when,
			    until);
	return -EBUSY;
}

int volume_lease_take(struct store *s, unsigned ttl_s, int force,
		      char *owner_out, size_t owner_size, struct buf *err)
{
	struct volume_lease l;
	int rc = volume_lease_hold(s, 2 * ttl_s, force, &l, err);

	if (rc == 0)
		snprintf(owner_out, owner_size, "%s", l.owner);
	return rc;
}

int volume_lease_hold(struct store *s, unsigned valid_s, int force,
		      struct volume_lease *out, struct buf *err)
{
	struct volume_lease old, l;
	uint8_t tok[16];
	char host[256];
	uint64_t start;
	int rc;

	if (gethostname(host, sizeof(host)))
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = 0;
	start = now_mono_ns();
	rc = lease_read(s, &old);
	if (rc == 0 && !force) {
		rc = lease_refuse_live(s, &old, host, err);
		if (rc)
			return rc;
	} else if (rc && rc != -ENOENT && rc != -EIO) {
		buf_appendf(err, "cannot read the lease of %s: %s", s->url,
			    strerror(-rc));
		return rc;
	}
	memset(&l, 0, sizeof(l));
	memcpy(l.host, host, sizeof(l.host));
	l.pid = (long)getpid();
	blob_random(tok, sizeof(tok));
	hex_encode(tok, sizeof(tok), l.owner);
	l.since = (long long)time(NULL);
	l.expires = l.since + (long long)valid_s;
	rc = lease_write(s, &l);
	if (rc) {
		buf_appendf(err, "cannot write the lease of %s: %s", s->url,
			    strerror(-rc));
		return rc;
	}
	rc = lease_settle(s, &l, now_mono_ns() - start, err);
	if (rc)
		return rc;
	*out = l;
	return 0;
}

int volume_lease_renew(struct store *s, struct volume_lease *l,
		       unsigned valid_s, bool check)
{
	struct volume_lease back, next = *l;
	int rc;

	if (check) {
		rc = lease_read(s, &back);
		if (rc)
			return rc;
		if (strcmp(back.owner, l->owner))
			return -EBUSY;
	}
	next.expires = (long long)time(NULL) + (long long)valid_s;
	rc = lease_write(s, &next);
	if (rc == 0)
		*l = next;
	return rc;
}

int volume_lease_release(struct store *s, const char *owner)
{
	struct volume_lease l;
	int rc = lease_read(s, &l);

	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	if (strcmp(l.owner, owner))
		return -EBUSY;
	return store_del(s, "lease");
}
