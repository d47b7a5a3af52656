/*
 * volume.c - the volume descriptor and the mount lease (see volume.h).
 *
 * Both are small "key=value" text documents framed by the blob codec, so
 * that a damaged one is detected (checksum) rather than misread.
 *
 * An encrypted volume's descriptor (format 4, volume.h) holds key slots
 * instead of the hash key, and a MAC under a key of the master key over
 * all its other lines: whoever can write the store can replace the
 * descriptor, but not change one line of it unseen by a mount that has
 * the passphrase.
 *
 * Invariants
 *   1. The descriptor is written by mkfs; the block size, hash key (or
 *      master key), cipher and block names of a volume are fixed for its
 *      life.  Only passwd (an encrypted volume's slots) and
 *      volume_set_history() (the history window, and the format raised
 *      to 5) rewrite it, with everything else as it was.
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
 *   5. An encrypted volume is unlocked only when a slot opens under the
 *      passphrase and the descriptor's MAC matches under that master key;
 *      until then neither the objects' key nor the names' key exists.
 *
 * volume_pos_read() is the one listing of meta/ a mount makes for its
 * rollback check (cli/daemon.c).
 */
#include "util/compat.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/util.h"
#include "volume/volume.h"

#define SLOT_KEY_LEN 8 /* "slotN" and its NUL, with room */

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

/*
 * The encrypted descriptor's own lines into out: cipher, slots, and the
 * MAC line, which must be the last; the hash of what it covers.  0 or
 * -EIO.
 */
static int load_encrypted(const char *text, struct volume *out)
{
	const char *mac = strstr(text, "\nmac=");
	char v[CRYPT_SLOT_TEXT], key[SLOT_KEY_LEN];
	unsigned n;
	int rc;

	/* "\nmac=" and the hex, then the last newline */
	if (!mac || strlen(mac + 5) != 2 * CRYPT_MAC_BYTES + 1 ||
	    mac[5 + 2 * CRYPT_MAC_BYTES] != '\n' ||
	    hex_decode(mac + 5, out->desc_mac, CRYPT_MAC_BYTES))
		return -EIO;
	crypt_hash(text, (size_t)(mac - text) + 1, out->desc_hash);
	if (kv_get(text, "cipher", v, sizeof(v)) ||
	    crypt_cipher_parse(v, &out->cipher))
		return -EIO;
	for (n = 0; n < VOLUME_SLOTS; n++) {
		snprintf(key, sizeof(key), "slot%u", n);
		rc = kv_get(text, key, v, sizeof(v));
		if (rc == -ENOENT)
			continue;
		if (rc || crypt_slot_parse(v, &out->slot[n]))
			return -EIO;
		out->slots_used |= 1u << n;
	}
	out->encrypted = true;
	out->unlocked_slot = -1;
	return out->slots_used ? 0 : -EIO;
}

/* Format 4 is encrypted; from format 5 on, a descriptor that names a
 * cipher. */
static bool is_encrypted(const char *text, uint32_t format)
{
	char v[64];

	return format == VOLUME_FORMAT_ENCRYPTED ||
	       (format >= VOLUME_FORMAT_HISTORY &&
		kv_get(text, "cipher", v, sizeof(v)) == 0);
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
	if (out->block_size < 4096 || out->block_size > 64 << 20)
		goto out_damaged;
	if (kv_get((char *)text.data, "created", v, sizeof(v)) == 0)
		out->created = strtoll(v, NULL, 10);
	if (out->format >= VOLUME_FORMAT_HISTORY &&
	    kv_get((char *)text.data, "history", v, sizeof(v)) == 0)
		out->history_s = strtoull(v, NULL, 10);
	if (is_encrypted((char *)text.data, out->format) ?
		    load_encrypted((char *)text.data, out) :
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

/* mkfs's first check: 0 when s holds no volume descriptor yet, else
 * -EEXIST or the store's error (err gets one line). */
static int store_empty(struct store *s, struct buf *err)
{
	uint64_t size;
	int rc = store_head(s, "volume", &size);

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
	return 0;
}

/* The descriptor of the plain volume v as text. */
static int plain_text(const struct volume *v, struct buf *text)
{
	char keyhex[2 * BLOB_KEY_BYTES + 1];
	int rc;

	hex_encode(v->hash_key, sizeof(v->hash_key), keyhex);
	rc = buf_appendf(text,
			 "metafuse-volume\nformat=%u\nid=%s\nblock_size=%u\n"
			 "hash_key=%s\ncreated=%lld\n",
			 v->format, v->id, v->block_size, keyhex, v->created);
	if (rc == 0 && v->format >= VOLUME_FORMAT_NAMES)
		rc = buf_appendf(text, "names=%s\n", blob_names_label(v->names));
	if (rc == 0 && v->format >= VOLUME_FORMAT_HISTORY)
		rc = buf_appendf(text, "history=%" PRIu64 "\n", v->history_s);
	explicit_bzero(keyhex, sizeof(keyhex));
	return rc;
}

int volume_create(struct store *s, uint32_t block_size,
		  enum blob_names names, struct volume *out, struct buf *err)
{
	struct buf text = BUF_INIT;
	uint8_t id[VOLUME_ID_HEX / 2];
	int rc;

	rc = store_empty(s, err);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	/* the oldest format that holds the volume: older binaries read it */
	out->format = names == BLOB_NAMES_BLAKE2B ? VOLUME_FORMAT_PATCHES :
						    VOLUME_FORMAT_NAMES;
	out->block_size = block_size;
	out->names = names;
	out->created = (long long)time(NULL);
	blob_random(id, sizeof(id));
	hex_encode(id, sizeof(id), out->id);
	blob_random(out->hash_key, sizeof(out->hash_key));
	rc = plain_text(out, &text);
	if (rc == 0)
		rc = put_framed(s, "volume", &text);
	if (rc)
		buf_appendf(err, "cannot write the volume descriptor to %s: %s",
			    s->url, strerror(-rc));
	buf_free(&text);
	return rc;
}

/* ---- encrypted volumes ---- */

/* The encrypted descriptor of v as text, its MAC line last (v unlocked,
 * or holding the master key of a new volume). */
static int encrypted_text(const struct volume *v, struct buf *text)
{
	uint8_t hash[CRYPT_HASH_BYTES], mac[CRYPT_MAC_BYTES];
	uint8_t dkey[CRYPT_KEY_BYTES];
	char slot[CRYPT_SLOT_TEXT], hex[2 * CRYPT_MAC_BYTES + 1];
	unsigned n;
	int rc;

	rc = buf_appendf(text,
			 "metafuse-volume\nformat=%u\nid=%s\nblock_size=%u\n"
			 "created=%lld\nnames=%s\ncipher=%s\n",
			 v->format, v->id, v->block_size, v->created,
			 blob_names_label(v->names),
			 crypt_cipher_label(v->cipher));
	if (rc == 0 && v->format >= VOLUME_FORMAT_HISTORY)
		rc = buf_appendf(text, "history=%" PRIu64 "\n", v->history_s);
	for (n = 0; rc == 0 && n < VOLUME_SLOTS; n++) {
		if (!(v->slots_used & (1u << n)))
			continue;
		crypt_slot_format(&v->slot[n], slot);
		rc = buf_appendf(text, "slot%u=%s\n", n, slot);
	}
	if (rc)
		return rc;
	crypt_hash(text->data, text->len, hash);
	if (v->unlocked) /* master may be wiped by now (a mount) */
		memcpy(dkey, v->desc_key, sizeof(dkey));
	else
		crypt_derive(v->master, CRYPT_SUB_DESC, dkey);
	crypt_mac(dkey, hash, sizeof(hash), mac);
	explicit_bzero(dkey, sizeof(dkey));
	hex_encode(mac, sizeof(mac), hex);
	return buf_appendf(text, "mac=%s\n", hex);
}

/* The keys the master key makes, into v. */
static void derive_keys(struct volume *v)
{
	crypt_derive(v->master, CRYPT_SUB_OBJECTS, v->key.key);
	v->key.cipher = v->cipher;
	crypt_derive(v->master, CRYPT_SUB_NAMES, v->hash_key);
	crypt_derive(v->master, CRYPT_SUB_DESC, v->desc_key);
	v->unlocked = true;
}

static int put_encrypted(struct store *s, const struct volume *v,
			 struct buf *err)
{
	struct buf text = BUF_INIT;
	int rc = encrypted_text(v, &text);

	if (rc == 0)
		rc = put_framed(s, "volume", &text);
	if (rc)
		buf_appendf(err, "cannot write the volume descriptor to %s: %s",
			    s->url, strerror(-rc));
	buf_free(&text);
	return rc;
}

int volume_create_encrypted(struct store *s, uint32_t block_size,
			    enum blob_names names, enum crypt_cipher cipher,
			    const char *pass, size_t len,
			    const struct crypt_kdf *kdf, struct volume *out,
			    struct buf *err)
{
	uint8_t id[VOLUME_ID_HEX / 2];
	int rc;

	rc = store_empty(s, err);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	out->format = VOLUME_FORMAT_ENCRYPTED;
	out->block_size = block_size;
	out->names = names;
	out->created = (long long)time(NULL);
	out->encrypted = true;
	out->cipher = cipher;
	blob_random(id, sizeof(id));
	hex_encode(id, sizeof(id), out->id);
	blob_random(out->master, sizeof(out->master));
	rc = crypt_slot_wrap(pass, len, kdf, out->id, 0, out->master,
			     &out->slot[0]);
	if (rc) {
		buf_appendf(err, "cannot derive a key from the passphrase: %s",
			    strerror(-rc));
		goto fail;
	}
	out->slots_used = 1;
	out->unlocked_slot = 0;
	derive_keys(out);
	rc = put_encrypted(s, out, err);
	if (rc)
		goto fail;
	return 0;
fail:
	volume_wipe(out);
	return rc;
}

int volume_unlock(struct volume *v, const char *url, const char *pass,
		  size_t len, struct buf *err)
{
	uint8_t dkey[CRYPT_KEY_BYTES], mac[CRYPT_MAC_BYTES];
	unsigned n;
	int rc = -EACCES;

	for (n = 0; n < VOLUME_SLOTS && rc == -EACCES; n++)
		if (v->slots_used & (1u << n))
			rc = crypt_slot_unwrap(pass, len, &v->slot[n], v->id,
					       n, v->master);
	if (rc == -EACCES) {
		buf_appendf(err, "wrong passphrase for the encrypted volume "
			    "%s: no key slot opens with it (or the slots "
			    "were altered)", url);
		goto fail;
	}
	if (rc) {
		buf_appendf(err, "cannot derive the key of %s from the "
			    "passphrase: %s", url, strerror(-rc));
		goto fail;
	}
	v->unlocked_slot = (int)n - 1;
	crypt_derive(v->master, CRYPT_SUB_DESC, dkey);
	crypt_mac(dkey, v->desc_hash, sizeof(v->desc_hash), mac);
	explicit_bzero(dkey, sizeof(dkey));
	if (!crypt_mac_equal(mac, v->desc_mac)) {
		buf_appendf(err, "the volume descriptor of %s is damaged "
			    "(its MAC does not match)", url);
		rc = -EIO;
		goto fail;
	}
	derive_keys(v);
	return 0;
fail:
	volume_wipe(v);
	return rc;
}

void volume_wipe(struct volume *v)
{
	explicit_bzero(v->master, sizeof(v->master));
	explicit_bzero(&v->key, sizeof(v->key));
	explicit_bzero(v->desc_key, sizeof(v->desc_key));
	if (v->encrypted)
		explicit_bzero(v->hash_key, sizeof(v->hash_key));
	v->unlocked = false;
}

/* The slot mode works on, into *n: 0, or -ENOSPC / -EBUSY (said). */
static int passwd_slot(const struct volume *v, enum volume_passwd_mode mode,
		       const char *url, unsigned *n, struct buf *err)
{
	if (mode == VOLUME_PASSWD_ADD) {
		for (*n = 0; *n < VOLUME_SLOTS; (*n)++)
			if (!(v->slots_used & (1u << *n)))
				return 0;
		buf_appendf(err, "all %u key slots of %s are in use; remove "
			    "one first (passwd --remove)", VOLUME_SLOTS, url);
		return -ENOSPC;
	}
	*n = (unsigned)v->unlocked_slot;
	if (mode == VOLUME_PASSWD_REMOVE &&
	    (v->slots_used & (v->slots_used - 1)) == 0) {
		buf_appendf(err, "slot %u is the last key slot of %s: "
			    "removing it would lock the volume for good", *n,
			    url);
		return -EBUSY;
	}
	return 0;
}

int volume_passwd(struct store *s, struct volume *v,
		  enum volume_passwd_mode mode, const char *pass, size_t len,
		  const struct crypt_kdf *kdf, unsigned *slot_out,
		  struct buf *err)
{
	struct volume next = *v;
	unsigned n;
	int rc;

	if (!v->encrypted || !v->unlocked || v->unlocked_slot < 0)
		return -EINVAL;
	rc = passwd_slot(v, mode, s->url, &n, err);
	if (rc)
		goto out;
	if (mode == VOLUME_PASSWD_REMOVE) {
		next.slots_used &= ~(1u << n);
		memset(&next.slot[n], 0, sizeof(next.slot[n]));
	} else {
		rc = crypt_slot_wrap(pass, len, kdf, v->id, n, v->master,
				     &next.slot[n]);
		if (rc) {
			buf_appendf(err, "cannot derive a key from the "
				    "passphrase: %s", strerror(-rc));
			goto out;
		}
		next.slots_used |= 1u << n;
	}
	rc = put_encrypted(s, &next, err);
	if (rc == 0) {
		v->slots_used = next.slots_used;
		v->slot[n] = next.slot[n];
		*slot_out = n;
	}
out:
	volume_wipe(&next);
	return rc;
}

int volume_set_history(struct store *s, struct volume *v, uint64_t history_s,
		       struct buf *err)
{
	struct volume next = *v;
	struct buf text = BUF_INIT;
	int rc;

	if (v->encrypted && !v->unlocked)
		return -EINVAL;
	next.history_s = history_s;
	if (next.format < VOLUME_FORMAT_HISTORY)
		next.format = VOLUME_FORMAT_HISTORY;
	if (v->encrypted) {
		rc = put_encrypted(s, &next, err);
	} else {
		rc = plain_text(&next, &text);
		if (rc == 0)
			rc = put_framed(s, "volume", &text);
		if (rc)
			buf_appendf(err, "cannot write the volume descriptor to "
				    "%s: %s", s->url, strerror(-rc));
	}
	if (rc == 0) {
		v->format = next.format;
		v->history_s = history_s;
	}
	volume_wipe(&next);
	buf_free(&text);
	return rc;
}

/* ---- the metadata's position ---- */

static int pos_cb(const char *key, uint64_t size, void *arg)
{
	struct volume_pos *p = arg;
	uint64_t seq;

	if (!strncmp(key, "meta/jrnl-", 10)) {
		p->entries++;
	} else if (!strncmp(key, "meta/ckpt-", 10)) {
		seq = strtoull(key + 10, NULL, 16);
		p->ckpt = MF_MAX(p->ckpt, seq);
	}
	return 0;
}

int volume_pos_read(struct store *s, struct volume_pos *out)
{
	memset(out, 0, sizeof(*out));
	return store_list(s, "meta/", pos_cb, out);
}

bool volume_pos_older(const struct volume_pos *now,
		      const struct volume_pos *seen)
{
	return now->ckpt < seen->ckpt ||
	       (now->ckpt == seen->ckpt && now->entries < seen->entries);
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
