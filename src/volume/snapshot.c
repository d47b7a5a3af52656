/*
 * snapshot.c - named snapshots of a volume in the store.
 *
 * Purpose
 *   `metafuse snapshot create/delete` (through the mount's daemon, or
 *   offline) and `mount --snapshot NAME` meet here: the holds are
 *   meta_snap.c's, the copy of the database in checkpoint format is
 *   journal.c's (journal_put_copy()); this file orders the steps so that
 *   a crash between any two leaves nothing unsafe.
 *
 * Data model (snapshot.h)
 *   meta/snap-<16 hex id>           head: a manifest of the copy's parts,
 *                                   then "name=", "time_ns=", "jseq="
 *                                   lines, so that a name is found by
 *                                   listing and reading the small heads,
 *                                   without the live database
 *   meta/snpp-<16 hex id>-<part>    the parts of the copy
 *
 * Invariants
 *   1. A head in the store names a snapshot whose holds are durable:
 *      create syncs the journal (holds in the store) before it puts the
 *      copy, head last; delete removes the head before the holds.  So
 *      every object a copy in the store names is kept by GC, and a
 *      crash leaves at worst a snapshot row without a copy (listed,
 *      deletable, not mountable), never a mountable copy whose objects
 *      may be collected.  (The design had delete drop the holds first;
 *      that order leaves the mountable copy of a crash without holds.)
 *   2. A failed create leaves nothing made: the copy's keys are deleted
 *      and the row with its holds dropped.
 */
#include "util/compat.h"

#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "util/log.h"
#include "util/util.h"
#include "volume/snapshot.h"

/* ---- the store's side ---- */

static void head_key(uint64_t id, char *key, size_t size)
{
	snprintf(key, size, SNAPSHOT_HEAD_PREFIX "%016" PRIx64, id);
}

struct id_list {
	uint64_t *v;
	size_t n, cap;
	const char *prefix;
};


static int id_cb(const char *key, uint64_t size, void *arg)
{
	struct id_list *l = arg;
	const char *p = key + strlen(l->prefix);
	char *end;
	uint64_t id;

	(void)size;
	if (strncmp(key, l->prefix, strlen(l->prefix)) || strlen(p) < 16)
		return 0;
	id = strtoull(p, &end, 16);
	if (end != p + 16)
		return 0;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		uint64_t *nv = realloc(l->v, ncap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n++] = id;
	return 0;
}

/* The value of "\n<key>=" in the head, into out (size bytes). */
static bool head_field(const struct buf *head, const char *key, char *out,
		       size_t size)
{
	const char *text = (const char *)head->data, *p, *end;
	char pat[32];
	size_t n;

	snprintf(pat, sizeof(pat), "\n%s=", key);
	p = memmem(text, head->len, pat, strlen(pat));
	if (!p)
		return false;
	p += strlen(pat);
	end = memchr(p, '\n', head->len - (size_t)(p - text));
	if (!end)
		return false;
	n = (size_t)(end - p);
	if (n >= size)
		return false;
	memcpy(out, p, n);
	out[n] = 0;
	return true;
}

/* Fetch and decode the head of snapshot id; parse it into h. */
static int head_read(struct store *s, const struct blob_ctx *bc, uint64_t id,
		     struct buf *head, struct snapshot_head *h)
{
	struct buf obj = BUF_INIT;
	char key[64], num[32];
	int rc;

	head_key(id, key, sizeof(key));
	buf_reset(head);
	rc = store_get(s, key, 0, 0, &obj);
	if (rc == 0)
		rc = blob_decode(bc, obj.data, obj.len, head);
	buf_free(&obj);
	if (rc)
		return rc;
	memset(h, 0, sizeof(*h));
	h->id = id;
	if (!journal_copy_is_head(head) ||
	    !head_field(head, "name", h->name, sizeof(h->name)))
		return -EIO;
	if (head_field(head, "time_ns", num, sizeof(num)))
		h->time_ns = strtoll(num, NULL, 10);
	if (head_field(head, "jseq", num, sizeof(num)))
		h->jseq = strtoull(num, NULL, 10);
	return 0;
}

int snapshot_heads(struct store *s, const struct blob_ctx *bc,
		   struct snapshot_head **out, size_t *n)
{
	struct id_list l = { NULL, 0, 0, SNAPSHOT_HEAD_PREFIX };
	struct buf head = BUF_INIT;
	size_t i;
	int rc;

	*out = NULL;
	*n = 0;
	rc = store_list(s, SNAPSHOT_HEAD_PREFIX, id_cb, &l);
	if (!rc && l.n) {
		*out = calloc(l.n, sizeof(**out));
		if (!*out)
			rc = -ENOMEM;
	}
	for (i = 0; !rc && i < l.n; i++) {
		int hrc = head_read(s, bc, l.v[i], &head, &(*out)[*n]);

		if (hrc == 0)
			(*n)++;
		else if (hrc != -ENOENT)
			log_warn("snapshot " SNAPSHOT_HEAD_PREFIX "%016" PRIx64
				 ": cannot read its head: %s", l.v[i],
				 strerror(-hrc));
	}
	buf_free(&head);
	free(l.v);
	if (rc) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

struct key_list {
	struct buf keys; /* NUL-separated */
	size_t n;
};

static int key_cb(const char *key, uint64_t size, void *arg)
{
	struct key_list *l = arg;

	(void)size;
	l->n++;
	return buf_append(&l->keys, key, strlen(key) + 1);
}

/* Delete the copy of snapshot id: head first (invariant 1), then every
 * part there is. */
static int copy_delete(struct store *s, uint64_t id)
{
	struct key_list l = { BUF_INIT, 0 };
	const char **ptrs = NULL;
	char head[64], prefix[64];
	size_t i, off;
	int rc;

	head_key(id, head, sizeof(head));
	rc = store_del(s, head);
	if (rc == -ENOENT)
		rc = 0;
	snprintf(prefix, sizeof(prefix), SNAPSHOT_PART_PREFIX "%016" PRIx64 "-",
		 id);
	if (!rc)
		rc = store_list(s, prefix, key_cb, &l);
	if (!rc && l.n) {
		ptrs = calloc(l.n, sizeof(*ptrs));
		rc = ptrs ? 0 : -ENOMEM;
	}
	for (i = 0, off = 0; !rc && i < l.n; i++) {
		ptrs[i] = (const char *)l.keys.data + off;
		off += strlen(ptrs[i]) + 1;
	}
	if (!rc && l.n)
		rc = store_del_many(s, ptrs, l.n, NULL);
	free(ptrs);
	buf_free(&l.keys);
	return rc;
}

/* ---- the live database's side ---- */

void snapshot_names(struct meta *m, struct buf *out)
{
	struct meta_snap batch[16];
	uint64_t after = 0;
	size_t n, i, total = 0;

	do {
		if (meta_snap_list(m, after, batch, ARRAY_SIZE(batch), &n))
			break;
		for (i = 0; i < n; i++, total++) {
			buf_appendf(out, "%s'%s'", total ? ", " : "",
				    batch[i].name);
			after = batch[i].id;
		}
	} while (n == ARRAY_SIZE(batch));
	if (!total)
		buf_appends(out, "none");
}

/* The copy of snapshot sn at path into the store, head last. */
static int copy_put(struct journal *j, const struct meta_snap *sn,
		    const char *path)
{
	struct buf extra = BUF_INIT;
	uint64_t stored = 0;
	int rc;

	rc = buf_appendf(&extra, "name=%s\ntime_ns=%" PRId64 "\njseq=%" PRIu64
			 "\n", sn->name, sn->time_ns, sn->jseq);
	if (!rc)
		rc = journal_put_copy(j, SNAPSHOT_HEAD_PREFIX,
				      SNAPSHOT_PART_PREFIX, sn->id, path,
				      buf_str(&extra), &stored);
	buf_free(&extra);
	return rc;
}

int snapshot_create(struct meta *m, struct journal *j, struct store *s,
		    struct volume *v, const char *tmp_dir, const char *name,
		    struct meta_snap *out, struct buf *err)
{
	struct timespec now = now_realtime();
	struct buf path = BUF_INIT;
	int rc = meta_snap_name_check(name);

	if (rc)
		return rc;
	if (v && v->format < VOLUME_FORMAT_HISTORY) {
		rc = volume_set_history(s, v, v->history_s, err);
		if (rc)
			return rc;
	}
	rc = buf_appendf(&path, "%s/snapshot-%d.tmp", tmp_dir, (int)getpid());
	if (rc)
		return rc;
	unlink(buf_str(&path));
	rc = meta_snap_create(m, name, (int64_t)now.tv_sec * 1000000000LL +
			      now.tv_nsec, buf_str(&path), out);
	if (rc == -EEXIST || rc == -EINVAL || rc == -ENAMETOOLONG)
		goto out;
	if (rc) {
		buf_appendf(err, "cannot record the snapshot: %s",
			    strerror(-rc));
		goto out;
	}
	/* invariant 1: the holds are in the store before the copy is */
	rc = journal_sync(j);
	if (rc)
		buf_appendf(err, "cannot write the metadata journal to %s: %s",
			    s->url, strerror(-rc));
	if (!rc) {
		rc = copy_put(j, out, buf_str(&path));
		if (rc)
			buf_appendf(err, "cannot write the snapshot's copy of "
				    "the metadata to %s: %s", s->url,
				    strerror(-rc));
	}
	if (rc) {
		/* invariant 2 */
		copy_delete(s, out->id);
		meta_snap_drop(m, out->id);
		journal_sync(j);
	}
out:
	unlink(buf_str(&path));
	buf_free(&path);
	return rc;
}

int snapshot_delete(struct meta *m, struct journal *j, struct store *s,
		    const char *name, struct buf *err)
{
	struct meta_snap sn;
	int rc = meta_snap_find(m, name, &sn);

	if (rc == -ENOENT) {
		buf_appendf(err, "no snapshot named '%s' (there are: ", name);
		snapshot_names(m, err);
		buf_appends(err, ")");
		return rc;
	}
	if (rc) {
		buf_appendf(err, "cannot read the snapshots: %s",
			    strerror(-rc));
		return rc;
	}
	rc = copy_delete(s, sn.id);
	if (rc) {
		buf_appendf(err, "cannot delete the snapshot's copy of the "
			    "metadata from %s: %s", s->url, strerror(-rc));
		return rc;
	}
	rc = meta_snap_drop(m, sn.id);
	if (!rc)
		rc = journal_sync(j);
	if (rc)
		buf_appendf(err, "cannot record the deletion: %s",
			    strerror(-rc));
	return rc;
}

int snapshot_restore(struct store *s, const struct blob_ctx *bc,
		     const char *name, const char *db_path, struct buf *err)
{
	struct snapshot_head *heads = NULL, h;
	struct buf head = BUF_INIT;
	size_t n = 0, i;
	int rc = snapshot_heads(s, bc, &heads, &n);

	if (rc) {
		buf_appendf(err, "cannot list the snapshots of %s: %s", s->url,
			    strerror(-rc));
		return rc;
	}
	for (i = 0; i < n && strcmp(heads[i].name, name); i++)
		;
	if (i == n) {
		buf_appendf(err, "%s has no snapshot named '%s' (", s->url,
			    name);
		if (n == 0)
			buf_appends(err, "it has none");
		for (i = 0; i < n; i++)
			buf_appendf(err, "%s'%s'", i ? ", " : "there are: ",
				    heads[i].name);
		buf_appends(err, ")");
		rc = -ENOENT;
		goto out;
	}
	rc = head_read(s, bc, heads[i].id, &head, &h);
	if (!rc)
		rc = journal_restore_copy(s, bc, SNAPSHOT_HEAD_PREFIX,
					  SNAPSHOT_PART_PREFIX, h.id, &head,
					  db_path);
	if (rc)
		buf_appendf(err, "cannot restore snapshot '%s' of %s: %s", name,
			    s->url, strerror(-rc));
out:
	buf_free(&head);
	free(heads);
	return rc;
}
