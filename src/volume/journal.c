/*
 * journal.c - the metadata in the store: checkpoints plus a journal.
 *
 * Between checkpoints (full copies of the database, meta/ckpt-<seq>,
 * written by journal_checkpoint() and read back by checkpoint_restore()
 * below), every change goes to the store as a journal entry: the SQLite
 * changeset of everything that changed since the previous entry, framed
 * by the blob codec (compressed, checksummed), stored as
 * meta/jrnl-<seq in 16 hex digits>.  The state of the volume in the store
 * is the newest checkpoint plus the journal entries after the sequence
 * number it covers (its config "jrnl_seq"), applied in order up to the
 * first gap.
 *
 * Invariants
 *   1. Entries reach the store in sequence order: an entry is put only
 *      after every entry before it is durable (j->lock serializes cuts and
 *      uploads; failed uploads stay pending, in order, and are retried
 *      before anything newer).  So the store never holds an entry whose
 *      predecessor is missing, except below a durable checkpoint.
 *   2. An entry names only objects already in the store: the cache commits
 *      a block's object name to the database after its upload.
 *   3. Entries at or below a durable checkpoint's jrnl_seq are deleted
 *      only after that checkpoint is durable; so are older checkpoints.
 *   4. A cut that fails after taking the changes out of the recorder
 *      leaves them only in the local database: need_ckpt is set and the
 *      next sync writes a checkpoint instead of an entry.
 *   5. A mount writes a checkpoint before it serves anything
 *      (start_journal() in cli/daemon.c):
 *      changes recorded by a crashed predecessor but never cut are then
 *      in the store too, and the sequence of entries restarts from a
 *      state every later entry applies to.
 *   6. A database larger than one part (8 MiB) is checkpointed in parts,
 *      meta/ckpp-<seq>-<part>, each framed on its own, and the head
 *      meta/ckpt-<seq> (a manifest: the number of parts and the size) is
 *      put last: a checkpoint exists once its head does, and then all its
 *      parts do.  Neither writing nor restoring holds more than a part or
 *      two in memory.  Parts below the newest durable checkpoint are
 *      trimmed with the heads; parts of a checkpoint whose head never
 *      made it are overwritten or trimmed later.  A smaller database is
 *      the head itself, framed whole, as it always was.
 *
 * When to checkpoint (journal_checkpoint_due(), asked by the mount every
 * checkpoint_interval and at unmount): a checkpoint uploads the whole
 * database, so writing one whenever anything changed cost a volume with a
 * large database and a trickle of changes that whole size every interval
 * and every unmount.  Instead the journal since the last checkpoint may
 * grow to 1/JOURNAL_REPLAY_WEIGHT of the database's size (or
 * JOURNAL_CKPT_ENTRIES entries, each one GET for a restore): a restore
 * applies a journal row by row, and a byte of journal cost it about as
 * much time as 35 bytes of database restored from a checkpoint, so the
 * replay after the newest checkpoint takes at most about as long as
 * restoring the checkpoint itself (a million files made in one mount
 * were 16 MB of journal, 9-16 s of replay on a fresh machine).  A
 * checkpoint (compressed) then costs a few times the journal it saves.
 * With a history window every checkpoint stays in the store for the
 * window's length, so there it is due only once the journal is as large
 * as the database: a past mount may replay more, the store keeps fewer
 * copies of the database.
 * A checkpoint is also due while objects freed since the last one wait
 * for it to be deleted from the store (deleted data is freed at the next
 * interval or unmount), and when a failed cut requires one (invariant 4).
 * The journal's bytes and entries since the last checkpoint are kept in
 * the database's config (jrnl_since_bytes, jrnl_since_entries), so the
 * count goes on across mounts; so are the newest checkpoint's time and
 * stored size (ckpt_time, ckpt_bytes), which `metafuse stats` shows.
 *
 * The history window (journal_set_history(), the volume's history_s):
 * every state of the volume less than the window old stays mountable
 * (`mount --at`, journal_restore_at() in journal_at.c).  Each entry
 * carries its time (table jtime, meta/meta_journal.c); beside each
 * checkpoint written while the window is on, an empty marker
 * meta/ckpi-<16 hex cseq>-<16 hex jseq>-<16 hex ns> says which entry the
 * checkpoint ends with and that entry's time, so retention and a past
 * mount know every checkpoint's time from one listing.
 *   7. With a window H > 0 a checkpoint does not trim everything older:
 *      the base is the newest checkpoint whose time is at most now - H
 *      (else the oldest); it, every later checkpoint (parts, markers) and
 *      every entry after its jseq are kept, the rest trimmed (retain()).
 *      A checkpoint without a marker (written while the window was 0)
 *      counts as old as can be.  Objects freed before the base was cut
 *      (freed_epoch < base's cseq) are the only ones garbage collection
 *      may delete (journal_gc_epoch()); with H = 0 that epoch is
 *      durable_seq and nothing else changes (no marker, no request more).
 *   8. A marker is put after its checkpoint's head and deleted after it:
 *      a marker names a checkpoint that exists, or one being trimmed
 *      (journal_restore_at() ignores markers without a head).
 */
#include "util/compat.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"
#include "util/util.h"
#include "volume/journal.h"
#include "volume/journal_int.h"

#define JRNL_PREFIX "meta/jrnl-"
#define CKPT_PREFIX "meta/ckpt-"
#define PART_PREFIX "meta/ckpp-"
#define MARK_PREFIX "meta/ckpi-"
#define CKPT_PART_SIZE (8u << 20)
/* the first line of a parted checkpoint's head */
#define MANIFEST_MAGIC "metafuse-checkpoint-parts\n"
/* a checkpoint is due after this many journal entries */
#define JOURNAL_CKPT_ENTRIES 1000
/* ... or once they hold 1/JOURNAL_REPLAY_WEIGHT of the database's bytes,
 * at least JOURNAL_CKPT_MIN_BYTES.  The weight, measured 2026-12-06 on a
 * local store (100,000 empty files): 1.6 MB of journal replayed in 0.8 s,
 * a 22 MB database restored from its checkpoint in 0.3 s. */
#define JOURNAL_REPLAY_WEIGHT 32
#define JOURNAL_CKPT_MIN_BYTES (256u << 10)

struct pending {
	uint64_t seq;
	struct buf cs;
};


struct journal {
	struct meta *m;
	struct store *s;
	struct blob_ctx bc;
	char *tmp_dir;
	pthread_mutex_t lock;
	/* by lock: */
	struct pending *pend; /* cut, not yet in the store, in order */
	size_t npend, cappend;
	bool need_ckpt;
	struct journal_stats st;
	size_t part_size; /* checkpoint part size (tests make it small) */
	uint64_t entries_at_ckpt; /* st.entries at the last checkpoint */
	/* journal entries in the store after the newest checkpoint, and
	 * their stored bytes (config jrnl_since_*) */
	uint64_t since_entries, since_bytes;
	/* the newest checkpoint's Unix time and stored bytes (config
	 * ckpt_time, ckpt_bytes; 0: unknown) */
	uint64_t ckpt_time, ckpt_bytes;
	bool ckpt_done; /* the store has a checkpoint of the state as of
			 * entries_at_ckpt (written, or assumed at open) */
	int (*gate)(void *, int (*)(void *), void *); /* journal_set_gate() */
	void *gate_arg;
	progress_fn *progress; /* journal_set_progress() */
	void *progress_arg;
	/* the history window (invariant 7), by lock: */
	int64_t hist_ns;          /* the window (0: off) */
	bool hist_loaded;         /* hist lists the store's checkpoints */
	struct journal_ckpt *hist;   /* ascending cseq */
	size_t nhist, caphist;
	uint64_t hist_base;       /* the base's cseq after the last retain() */
	uint64_t hist_trimmed;    /* entries up to this one are trimmed */
	/* what journal_get_stats() gives, as of the end of the last sync or
	 * checkpoint: lock is held across uploads, which a question about
	 * the numbers must not wait for (a failing store retries for
	 * minutes).  Protected by stat_lock, a leaf taken under lock. */
	pthread_mutex_t stat_lock;
	struct journal_stats pub;
};

/* Publish the numbers for journal_get_stats().  Called with lock held. */
static void publish(struct journal *j)
{
	pthread_mutex_lock(&j->stat_lock);
	j->pub = j->st;
	j->pub.pending = j->npend;
	j->pub.ckpt_time = j->ckpt_time;
	j->pub.ckpt_bytes = j->ckpt_bytes;
	j->pub.since_entries = j->since_entries;
	j->pub.since_bytes = j->since_bytes;
	pthread_mutex_unlock(&j->stat_lock);
}

static void jrnl_key(uint64_t seq, char *key, size_t size)
{
	snprintf(key, size, JRNL_PREFIX "%016" PRIx64, seq);
}

static void ckpt_key(uint64_t seq, char *key, size_t size)
{
	snprintf(key, size, CKPT_PREFIX "%016" PRIx64, seq);
}

/* Where a copy of the database goes (invariant 6): a checkpoint's keys,
 * or a snapshot's (journal_put_copy()).  extra: lines added to the head
 * of a copy in parts; parts: always in parts, so the head is small. */
struct copy_keys {
	const char *head;  /* head prefix, the 16 hex digits of seq follow */
	const char *part;  /* part prefix: seq, '-', 8 hex digits of part */
	uint64_t seq;
	const char *extra;
	bool parts;
};

#define CKPT_KEYS(cseq) { CKPT_PREFIX, PART_PREFIX, (cseq), NULL, false }

static void copy_head_key(const struct copy_keys *k, char *key, size_t size)
{
	snprintf(key, size, "%s%016" PRIx64, k->head, k->seq);
}

static void copy_part_key(const struct copy_keys *k, uint64_t part,
			  char *key, size_t size)
{
	snprintf(key, size, "%s%016" PRIx64 "-%08" PRIx64, k->part, k->seq,
		 part);
}

static int parse_seq(const char *key, const char *prefix, uint64_t *seq)
{
	const char *p = key + strlen(prefix);
	char *end;

	if (strncmp(key, prefix, strlen(prefix)) || strlen(p) != 16)
		return -EINVAL;
	*seq = strtoull(p, &end, 16);
	return *end ? -EINVAL : 0;
}

int journal_open(struct meta *m, struct store *s, const struct blob_ctx *bc,
		 const char *tmp_dir, struct journal **out)
{
	struct journal *j = calloc(1, sizeof(*j));
	int rc;

	if (!j)
		return -ENOMEM;
	j->tmp_dir = strdup(tmp_dir);
	if (!j->tmp_dir) {
		free(j);
		return -ENOMEM;
	}
	j->m = m;
	j->s = s;
	j->bc = *bc;
	j->bc.zstd_level = 3;
	j->part_size = CKPT_PART_SIZE;
	j->since_entries = meta_config_get_u64(m, "jrnl_since_entries", 0);
	j->since_bytes = meta_config_get_u64(m, "jrnl_since_bytes", 0);
	j->ckpt_time = meta_config_get_u64(m, "ckpt_time", 0);
	j->ckpt_bytes = meta_config_get_u64(m, "ckpt_bytes", 0);
	pthread_mutex_init(&j->lock, NULL);
	pthread_mutex_init(&j->stat_lock, NULL);
	publish(j);
	rc = meta_journal_start(m);
	if (rc) {
		journal_close(j);
		return rc;
	}
	*out = j;
	return 0;
}

void journal_close(struct journal *j)
{
	size_t i;

	if (!j)
		return;
	for (i = 0; i < j->npend; i++)
		buf_free(&j->pend[i].cs);
	free(j->pend);
	pthread_mutex_destroy(&j->lock);
	pthread_mutex_destroy(&j->stat_lock);
	free(j->hist);
	free(j->tmp_dir);
	free(j);
}

static int push_pending(struct journal *j, uint64_t seq, struct buf *cs)
{
	if (j->npend == j->cappend) {
		size_t ncap = j->cappend ? j->cappend * 2 : 8;
		struct pending *p = realloc(j->pend, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		j->pend = p;
		j->cappend = ncap;
	}
	j->pend[j->npend].seq = seq;
	j->pend[j->npend].cs = *cs; /* takes the buffer */
	*cs = (struct buf)BUF_INIT;
	j->npend++;
	return 0;
}

/* Drop pending entries 0..n-1. */
static void drop_pending(struct journal *j, size_t n)
{
	size_t i;

	if (n == 0)
		return;
	for (i = 0; i < n; i++)
		buf_free(&j->pend[i].cs);
	memmove(j->pend, j->pend + n, (j->npend - n) * sizeof(*j->pend));
	j->npend -= n;
}

/* Keep the journal's size since the last checkpoint in the config (and
 * with all, the checkpoint's time and size).  A failure only makes the
 * next checkpoint come later or sooner, or stats say less: logged. */
static void save_since(struct journal *j, bool all)
{
	static const char *const keys[] = { "jrnl_since_entries",
					    "jrnl_since_bytes", "ckpt_time",
					    "ckpt_bytes" };
	uint64_t values[] = { j->since_entries, j->since_bytes,
			      j->ckpt_time, j->ckpt_bytes };
	int rc = meta_config_set_u64s(j->m, keys, values, all ? 4 : 2);

	if (rc)
		log_warn("journal: cannot record its size: %s", strerror(-rc));
}

/* Upload pending entries in order; stops at the first failure. */
static int upload_pending(struct journal *j)
{
	struct buf enc = BUF_INIT;
	char key[64];
	size_t done = 0;
	int rc = 0;

	while (done < j->npend) {
		struct pending *p = &j->pend[done];

		buf_reset(&enc);
		rc = blob_encode(&j->bc, p->cs.data, p->cs.len, &enc);
		if (rc)
			break;
		jrnl_key(p->seq, key, sizeof(key));
		rc = store_put(j->s, key, enc.data, enc.len);
		if (rc) {
			log_error("journal %s: upload failed: %s", key,
				  strerror(-rc));
			break;
		}
		j->st.entries++;
		j->st.bytes += enc.len;
		j->since_entries++;
		j->since_bytes += enc.len;
		done++;
	}
	drop_pending(j, done);
	buf_free(&enc);
	if (done)
		save_since(j, false);
	return rc;
}

struct cut_args {
	struct journal *j;
	const char *snap;
	uint64_t *cseq, jseq;
	struct buf cs;
};

static int cut_now(void *arg)
{
	struct cut_args *a = arg;

	return meta_journal_cut(a->j->m, &a->cs, &a->jseq, a->snap, a->cseq);
}

static int cut(struct journal *j, const char *snap, uint64_t *cseq,
	       uint64_t *jseq_out)
{
	struct cut_args a = { j, snap, cseq, 0, BUF_INIT };
	int rc = j->gate ? j->gate(j->gate_arg, cut_now, &a) : cut_now(&a);

	if (rc && a.cs.len)
		j->need_ckpt = true; /* the changes left the recorder */
	if (rc == 0 && a.cs.len)
		rc = push_pending(j, a.jseq, &a.cs);
	if (rc)
		j->need_ckpt = true;
	buf_free(&a.cs);
	if (jseq_out)
		*jseq_out = a.jseq;
	return rc;
}

int journal_sync(struct journal *j)
{
	int rc;

	pthread_mutex_lock(&j->lock);
	if (j->need_ckpt) {
		pthread_mutex_unlock(&j->lock);
		return journal_checkpoint(j);
	}
	rc = cut(j, NULL, NULL, NULL);
	if (rc == 0)
		rc = upload_pending(j);
	publish(j);
	pthread_mutex_unlock(&j->lock);
	return rc;
}

struct seq_list {
	const char *prefix;
	uint64_t *v;
	uint64_t *size; /* each object's size, as listed */
	size_t n, cap;
};

static int seq_list_cb(const char *key, uint64_t size, void *arg)
{
	struct seq_list *l = arg;
	uint64_t seq;

	if (parse_seq(key, l->prefix, &seq))
		return 0;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		uint64_t *p = realloc(l->v, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->v = p;
		p = realloc(l->size, ncap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		l->size = p;
		l->cap = ncap;
	}
	l->size[l->n] = size;
	l->v[l->n++] = seq;
	return 0;
}

static void seq_list_free(struct seq_list *l)
{
	free(l->v);
	free(l->size);
}

/* Sequence numbers under prefix, ascending (keys list in order). */
static int list_seqs(struct store *s, const char *prefix,
		     struct seq_list *l)
{
	l->prefix = prefix;
	l->v = NULL;
	l->size = NULL;
	l->n = l->cap = 0;
	return store_list(s, prefix, seq_list_cb, l);
}

/* Delete the listed seqs below (or, with inclusive, at) limit. */
static int trim_seqs(struct store *s, const char *prefix, uint64_t limit,
		     bool inclusive, void (*key_of)(uint64_t, char *, size_t))
{
	struct seq_list l;
	char (*keys)[64] = NULL;
	const char **ptrs = NULL;
	size_t i, n = 0;
	int rc = list_seqs(s, prefix, &l);

	if (!rc && l.n) {
		keys = calloc(l.n, sizeof(*keys));
		ptrs = calloc(l.n, sizeof(*ptrs));
		rc = keys && ptrs ? 0 : -ENOMEM;
	}
	for (i = 0; !rc && i < l.n &&
		    (l.v[i] < limit || (inclusive && l.v[i] == limit));
	     i++, n++) {
		key_of(l.v[i], keys[n], sizeof(keys[n]));
		ptrs[n] = keys[n];
	}
	if (!rc)
		rc = store_del_many(s, ptrs, n, NULL);
	free(keys);
	free(ptrs);
	seq_list_free(&l);
	return rc;
}

struct part_list {
	uint64_t below; /* parts of checkpoints before this one */
	struct buf keys; /* NUL-separated */
	size_t n;
};

static int part_list_cb(const char *key, uint64_t size, void *arg)
{
	struct part_list *l = arg;
	const char *p = key + strlen(PART_PREFIX);
	char *end;
	uint64_t seq = strtoull(p, &end, 16);

	if (end != p + 16 || *end != '-' || seq >= l->below)
		return 0;
	l->n++;
	return buf_append(&l->keys, key, strlen(key) + 1);
}

/* Delete the parts of checkpoints older than cseq. */
static int trim_parts(struct store *s, uint64_t cseq)
{
	struct part_list l = { cseq, BUF_INIT, 0 };
	const char **ptrs = NULL;
	size_t i, off;
	int rc = store_list(s, PART_PREFIX, part_list_cb, &l);

	if (!rc && l.n) {
		ptrs = calloc(l.n, sizeof(*ptrs));
		rc = ptrs ? 0 : -ENOMEM;
	}
	for (i = 0, off = 0; !rc && i < l.n; i++) {
		ptrs[i] = (const char *)l.keys.data + off;
		off += strlen(ptrs[i]) + 1;
	}
	if (!rc)
		rc = store_del_many(s, ptrs, l.n, NULL);
	free(ptrs);
	buf_free(&l.keys);
	return rc;
}

/* Delete checkpoints older than cseq (heads, then parts) and entries at or
 * below jseq. */
static int trim(struct journal *j, uint64_t cseq, uint64_t jseq)
{
	int rc = trim_seqs(j->s, CKPT_PREFIX, cseq, false, ckpt_key);

	if (!rc)
		rc = trim_parts(j->s, cseq);
	return rc ? rc : trim_seqs(j->s, JRNL_PREFIX, jseq, true, jrnl_key);
}

/* Frame data and put it under key; *stored += the object's size. */
static int put_framed(struct journal *j, const char *key, const void *data,
		      size_t len, struct buf *enc, uint64_t *stored)
{
	int rc;

	buf_reset(enc);
	rc = blob_encode(&j->bc, data, len, enc);
	if (rc == 0)
		rc = store_put(j->s, key, enc->data, enc->len);
	if (rc == 0)
		*stored += enc->len;
	else
		log_error("checkpoint %s: upload failed: %s", key,
			  strerror(-rc));
	return rc;
}

/* Put the database file at path under k's keys (invariant 6). */
static int put_copy(struct journal *j, const struct copy_keys *k,
		    const char *path, uint64_t *size, uint64_t *stored)
{
	struct buf chunk = BUF_INIT, enc = BUF_INIT;
	uint64_t nparts = 0, i;
	char key[80];
	struct stat st;
	int fd, rc = 0;

	*stored = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	*size = (uint64_t)st.st_size;
	if (*size > j->part_size || k->parts)
		nparts = MF_MAX((*size + j->part_size - 1) / j->part_size, 1);
	rc = buf_reserve(&chunk, nparts ? j->part_size : (size_t)*size);
	if (!rc && nparts && j->progress)
		j->progress(j->progress_arg, JOURNAL_WRITING, PROGRESS_BYTES, 0,
			    *size);
	for (i = 0; !rc && i < (nparts ? nparts : 1); i++) {
		size_t want = nparts ? (size_t)MF_MIN((uint64_t)j->part_size,
						      *size - i * j->part_size) :
				       (size_t)*size;
		ssize_t n = pread(fd, chunk.data, want,
				  (off_t)(i * j->part_size));

		if (n != (ssize_t)want) {
			rc = n < 0 ? -errno : -EIO;
			break;
		}
		if (nparts)
			copy_part_key(k, i, key, sizeof(key));
		else
			copy_head_key(k, key, sizeof(key));
		rc = put_framed(j, key, chunk.data, want, &enc, stored);
		if (!rc && nparts && j->progress)
			j->progress(j->progress_arg, JOURNAL_WRITING,
				    PROGRESS_BYTES, i * j->part_size + want,
				    *size);
	}
	if (!rc && nparts) {
		buf_reset(&chunk);
		rc = buf_appendf(&chunk, MANIFEST_MAGIC "parts=%" PRIu64
				 "\nsize=%" PRIu64 "\n", nparts, *size);
		if (!rc && k->extra)
			rc = buf_appends(&chunk, k->extra);
		copy_head_key(k, key, sizeof(key));
		if (!rc)
			rc = put_framed(j, key, chunk.data, chunk.len, &enc,
					stored);
	}
out:
	close(fd);
	buf_free(&chunk);
	buf_free(&enc);
	return rc;
}

/* Put the database file at path as checkpoint cseq. */
static int put_checkpoint(struct journal *j, uint64_t cseq, const char *path,
			  uint64_t *size, uint64_t *stored)
{
	const struct copy_keys k = CKPT_KEYS(cseq);

	return put_copy(j, &k, path, size, stored);
}

static int hist_checkpointed(struct journal *j, uint64_t cseq,
			     uint64_t jseq);

bool journal_changed_since_checkpoint(struct journal *j)
{
	bool changed;

	pthread_mutex_lock(&j->lock);
	changed = !j->ckpt_done || j->need_ckpt || j->npend ||
		  j->st.entries != j->entries_at_ckpt;
	pthread_mutex_unlock(&j->lock);
	return changed || meta_journal_has_changes(j->m);
}

static bool garbage_waits(struct journal *j, uint64_t durable);

bool journal_checkpoint_due(struct journal *j)
{
	uint64_t durable = meta_config_get_u64(j->m, "durable_seq", 0);
	uint64_t db = 0;
	bool due;

	pthread_mutex_lock(&j->lock);
	due = j->need_ckpt || !j->ckpt_done ||
	      j->since_entries >= JOURNAL_CKPT_ENTRIES;
	/* with a window every checkpoint stays for its length, so they
	 * come only once the journal is as large as the database */
	if (!due && j->since_bytes >= JOURNAL_CKPT_MIN_BYTES)
		due = meta_db_bytes(j->m, &db) ||
		      j->since_bytes >= db / (j->hist_ns ? 1 :
					       JOURNAL_REPLAY_WEIGHT);
	pthread_mutex_unlock(&j->lock);
	if (!due)
		due = garbage_waits(j, durable);
	return due;
}

void journal_assume_checkpointed(struct journal *j)
{
	pthread_mutex_lock(&j->lock);
	j->ckpt_done = true;
	j->entries_at_ckpt = j->st.entries;
	pthread_mutex_unlock(&j->lock);
}

void journal_set_gate(struct journal *j,
		      int (*gate)(void *arg, int (*cut)(void *),
				  void *cut_arg),
		      void *arg)
{
	pthread_mutex_lock(&j->lock);
	j->gate = gate;
	j->gate_arg = arg;
	pthread_mutex_unlock(&j->lock);
}

void journal_set_part_size(struct journal *j, size_t bytes)
{
	j->part_size = bytes ? bytes : CKPT_PART_SIZE;
}

void journal_set_progress(struct journal *j, progress_fn *progress,
			  void *progress_arg)
{
	pthread_mutex_lock(&j->lock);
	j->progress = progress;
	j->progress_arg = progress_arg;
	pthread_mutex_unlock(&j->lock);
}

int journal_checkpoint(struct journal *j)
{
	struct buf path = BUF_INIT;
	uint64_t cseq = 0, jseq = 0, size = 0, stored = 0;
	size_t covered;
	int rc;

	pthread_mutex_lock(&j->lock);
	if (buf_appendf(&path, "%s/ckpt.tmp", j->tmp_dir)) {
		rc = -ENOMEM;
		goto out;
	}
	unlink(buf_str(&path));
	rc = cut(j, buf_str(&path), &cseq, &jseq);
	if (rc)
		goto out;
	/* the entries it covers are useful only if the checkpoint fails */
	upload_pending(j);
	rc = put_checkpoint(j, cseq, buf_str(&path), &size, &stored);
	unlink(buf_str(&path));
	if (rc)
		goto out;
	j->st.checkpoints++;
	j->st.bytes += stored;
	j->need_ckpt = false;
	j->entries_at_ckpt = j->st.entries;
	j->ckpt_done = true;
	j->since_entries = j->since_bytes = 0;
	j->ckpt_time = (uint64_t)time(NULL);
	j->ckpt_bytes = stored;
	save_since(j, true);
	for (covered = 0; covered < j->npend; covered++)
		if (j->pend[covered].seq > jseq)
			break;
	drop_pending(j, covered);
	/* at once: a mount that finds a newer checkpoint than its
	 * durable_seq takes it for another writer's (cli/daemon.c,
	 * local_db_outdated()) */
	rc = meta_config_set_u64(j->m, "durable_seq", cseq);
	if (rc == 0)
		rc = j->hist_ns ? hist_checkpointed(j, cseq, jseq) :
				  trim(j, cseq, jseq);
	log_debug("checkpoint %" PRIu64 " (journal %" PRIu64 "): %" PRIu64
		  " bytes (%" PRIu64 " stored)", cseq, jseq, size, stored);
out:
	publish(j);
	pthread_mutex_unlock(&j->lock);
	buf_free(&path);
	return rc;
}

void journal_get_stats(struct journal *j, struct journal_stats *out)
{
	pthread_mutex_lock(&j->stat_lock);
	*out = j->pub;
	pthread_mutex_unlock(&j->stat_lock);
	out->ckpt_seq = meta_config_get_u64(j->m, "durable_seq", 0);
}

/*
 * Fetched ahead of the one applied: a restore may replay a thousand
 * entries (JOURNAL_CKPT_ENTRIES), a round trip each (bench/distant.sh:
 * 233 entries at 20 ms a get, 5.2 s one after the other).  What waits
 * unread is bounded by RESTORE_AHEAD entries and RESTORE_AHEAD_BYTES, or
 * RESTORE_AHEAD_PARTS parts of a checkpoint (CKPT_PART_SIZE each).  A
 * long restore says how far it is through the caller's progress_fn
 * (util/progress.h: the mount and the offline tools draw it on a
 * terminal); nothing here prints.
 */
#define RESTORE_AHEAD 16u
#define RESTORE_AHEAD_BYTES (64u << 20)
#define RESTORE_AHEAD_PARTS 4u

int journal_replay(struct store *s, const struct blob_ctx *bc,
		   struct meta *m, uint64_t *applied, progress_fn *progress,
		   void *progress_arg)
{
	uint64_t next = meta_config_get_u64(m, "jrnl_seq", 0) + 1;
	struct buf obj = BUF_INIT, cs = BUF_INIT;
	struct store_ahead *ahead = NULL;
	struct seq_list l;
	char (*keys)[64] = NULL;
	const char **ptrs = NULL;
	size_t i, first, n = 0;
	int rc;

	*applied = 0;
	rc = list_seqs(s, JRNL_PREFIX, &l);
	for (first = 0; rc == 0 && first < l.n && l.v[first] < next; first++)
		;
	/* the entries to apply: from next on, up to a gap */
	while (rc == 0 && first + n < l.n && l.v[first + n] == next + n)
		n++;
	if (rc == 0 && first + n < l.n) {
		char key[64];

		jrnl_key(l.v[first + n], key, sizeof(key));
		log_warn("journal: %s follows a gap (next would be %" PRIu64
			 "); the entries from it on are ignored", key,
			 next + n);
	}
	if (rc == 0 && n) {
		keys = calloc(n, sizeof(*keys));
		ptrs = calloc(n, sizeof(*ptrs));
		if (!keys || !ptrs)
			rc = -ENOMEM;
	}
	for (i = 0; rc == 0 && i < n; i++) {
		jrnl_key(l.v[first + i], keys[i], sizeof(keys[i]));
		ptrs[i] = keys[i];
	}
	if (rc == 0 && n)
		rc = store_ahead_start(s, ptrs, l.size + first, n,
				       RESTORE_AHEAD, RESTORE_AHEAD_BYTES,
				       &ahead);
	if (rc == 0 && n && progress)
		progress(progress_arg, JOURNAL_REPLAYING, 0, 0, n);
	for (i = 0; rc == 0 && i < n; i++) {
		buf_reset(&cs);
		rc = store_ahead_next(ahead, &obj);
		if (rc) {
			log_error("journal %s: download failed: %s", keys[i],
				  strerror(-rc));
			break;
		}
		if (blob_decode(bc, obj.data, obj.len, &cs) ||
		    meta_journal_apply(m, cs.data, cs.len)) {
			/* the state so far is consistent; what follows
			 * cannot be had */
			log_error("journal %s is damaged; the volume is "
				  "restored as of the entry before it",
				  keys[i]);
			break;
		}
		rc = meta_config_set_u64(m, "jrnl_seq", next);
		if (rc)
			break;
		next++;
		(*applied)++;
		if (progress)
			progress(progress_arg, JOURNAL_REPLAYING, 0, *applied, n);
	}
	store_ahead_end(ahead);
	seq_list_free(&l);
	free(keys);
	free(ptrs);
	buf_free(&obj);
	buf_free(&cs);
	return rc;
}

int checkpoint_latest(struct store *s, uint64_t *seq)
{
	struct seq_list l;
	int rc = list_seqs(s, CKPT_PREFIX, &l);

	if (rc == 0 && l.n == 0)
		rc = -ENOENT;
	if (rc == 0)
		*seq = l.v[l.n - 1];
	seq_list_free(&l);
	return rc;
}

/* Fetch and decode one framed object; errors are logged. */
static int get_framed(struct store *s, const struct blob_ctx *bc,
		      const char *key, struct buf *obj, struct buf *out)
{
	int rc;

	buf_reset(obj);
	buf_reset(out);
	rc = store_get(s, key, 0, 0, obj);
	if (rc) {
		log_error("checkpoint %s: download failed: %s", key,
			  strerror(-rc));
		return rc;
	}
	rc = blob_decode(bc, obj->data, obj->len, out);
	if (rc)
		log_error("checkpoint %s is damaged", key);
	return rc;
}

/* Write the parts a manifest names, in order, to fd (invariant 6); they
 * are fetched ahead of the one written. */
static int restore_copy_parts(struct store *s, const struct blob_ctx *bc,
			      const struct copy_keys *k,
			      const struct buf *manifest, int fd,
			      progress_fn *progress, void *progress_arg)
{
	struct buf obj = BUF_INIT, part = BUF_INIT;
	unsigned long long nparts = 0, size = 0, done = 0, i;
	struct store_ahead *ahead = NULL;
	char (*keys)[80] = NULL, key[80];
	const char **ptrs = NULL;
	int rc = 0;

	if (sscanf((const char *)manifest->data + strlen(MANIFEST_MAGIC),
		   "parts=%llu\nsize=%llu", &nparts, &size) != 2 ||
	    nparts == 0 || nparts > SIZE_MAX / sizeof(*keys)) {
		copy_head_key(k, key, sizeof(key));
		log_error("checkpoint %s: a damaged list of parts", key);
		return -EIO;
	}
	keys = calloc(nparts, sizeof(*keys));
	ptrs = calloc(nparts, sizeof(*ptrs));
	if (!keys || !ptrs)
		rc = -ENOMEM;
	for (i = 0; !rc && i < nparts; i++) {
		copy_part_key(k, i, keys[i], sizeof(keys[i]));
		ptrs[i] = keys[i];
	}
	if (!rc)
		rc = store_ahead_start(s, ptrs, NULL, nparts,
				       RESTORE_AHEAD_PARTS, 0, &ahead);
	if (!rc && progress)
		progress(progress_arg, JOURNAL_RESTORING, PROGRESS_BYTES, 0, size);
	for (i = 0; !rc && i < nparts; i++) {
		buf_reset(&part);
		rc = store_ahead_next(ahead, &obj);
		if (rc) {
			log_error("checkpoint %s: download failed: %s",
				  keys[i], strerror(-rc));
			break;
		}
		rc = blob_decode(bc, obj.data, obj.len, &part);
		if (rc)
			log_error("checkpoint %s is damaged", keys[i]);
		if (!rc)
			rc = pwrite_all(fd, part.data, part.len, (off_t)done);
		done += part.len;
		if (!rc && progress)
			progress(progress_arg, JOURNAL_RESTORING, PROGRESS_BYTES,
				 done, size);
	}
	store_ahead_end(ahead);
	if (!rc && done != size) {
		copy_head_key(k, key, sizeof(key));
		log_error("checkpoint %s: its parts hold %llu bytes, not %llu",
			  key, done, size);
		rc = -EIO;
	}
	free(keys);
	free(ptrs);
	buf_free(&obj);
	buf_free(&part);
	return rc;
}

/* The parts of checkpoint seq whose head is manifest, to fd. */
static int restore_parts(struct store *s, const struct blob_ctx *bc,
			 uint64_t seq, const struct buf *manifest, int fd,
			 progress_fn *progress, void *progress_arg)
{
	const struct copy_keys k = CKPT_KEYS(seq);

	return restore_copy_parts(s, bc, &k, manifest, fd, progress,
				  progress_arg);
}

/* Checkpoint seq into a new database at db_path. */
static int restore_seq(struct store *s, const struct blob_ctx *bc,
		       uint64_t seq, const char *db_path,
		       progress_fn *progress, void *progress_arg)
{
	struct buf obj = BUF_INIT, head = BUF_INIT, side = BUF_INIT;
	char key[64];
	int rc, fd = -1;

	ckpt_key(seq, key, sizeof(key));
	rc = get_framed(s, bc, key, &obj, &head);
	if (rc)
		goto out;
	buf_free(&obj);
	/* a stale WAL beside a new database would be replayed into it */
	buf_appendf(&side, "%s-wal", db_path);
	unlink(buf_str(&side));
	buf_reset(&side);
	buf_appendf(&side, "%s-shm", db_path);
	unlink(buf_str(&side));
	/* and batched write attributes of the old one (meta_pend.c) */
	buf_reset(&side);
	buf_appendf(&side, "%s-pending", db_path);
	unlink(buf_str(&side));
	if (head.len < strlen(MANIFEST_MAGIC) ||
	    memcmp(head.data, MANIFEST_MAGIC, strlen(MANIFEST_MAGIC))) {
		/* the whole database in one object */
		rc = write_file_atomic(db_path, head.data, head.len, 0600);
		goto out;
	}
	buf_reset(&side);
	buf_appendf(&side, "%s.restoring", db_path);
	fd = open(buf_str(&side), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = restore_parts(s, bc, seq, &head, fd, progress, progress_arg);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (!rc && rename(buf_str(&side), db_path) < 0)
		rc = -errno;
	if (rc)
		unlink(buf_str(&side));
out:
	buf_free(&obj);
	buf_free(&head);
	buf_free(&side);
	return rc;
}

int checkpoint_restore(struct store *s, const struct blob_ctx *bc,
		       const char *db_path, uint64_t *seq_out,
		       progress_fn *progress, void *progress_arg)
{
	uint64_t seq;
	int rc = checkpoint_latest(s, &seq);

	if (rc == 0)
		rc = restore_seq(s, bc, seq, db_path, progress, progress_arg);
	if (rc == 0)
		*seq_out = seq;
	return rc;
}


/* ---- the history window (invariants 7, 8) ---- */

#define NS_PER_S 1000000000LL
#define MARK_KEY_LEN (16 * 3 + 2)

static void mark_key(const struct journal_ckpt *c, char *key, size_t size)
{
	snprintf(key, size, MARK_PREFIX "%016" PRIx64 "-%016" PRIx64
		 "-%016" PRIx64, c->cseq, c->jseq, (uint64_t)c->ns);
}

static int parse_mark(const char *key, struct journal_ckpt *c)
{
	const char *p = key + strlen(MARK_PREFIX);
	unsigned long long cseq, jseq, ns;
	int len = 0;

	if (strncmp(key, MARK_PREFIX, strlen(MARK_PREFIX)) ||
	    strlen(p) != MARK_KEY_LEN ||
	    sscanf(p, "%16llx-%16llx-%16llx%n", &cseq, &jseq, &ns, &len) != 3 ||
	    len != MARK_KEY_LEN || ns > INT64_MAX)
		return -EINVAL;
	c->cseq = cseq;
	c->jseq = jseq;
	c->ns = (int64_t)ns;
	return 0;
}

struct hist_vec {
	struct journal_ckpt *v;
	size_t n, cap;
	uint64_t below; /* trim_marks(): the keys of markers below this */
	struct buf keys;
};

static int hist_push(struct hist_vec *h, const struct journal_ckpt *c)
{
	if (h->n == h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 16;
		struct journal_ckpt *p = realloc(h->v, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		h->v = p;
		h->cap = ncap;
	}
	h->v[h->n++] = *c;
	return 0;
}

static int mark_list_cb(const char *key, uint64_t size, void *arg)
{
	struct journal_ckpt c;

	(void)size;
	return parse_mark(key, &c) ? 0 : hist_push(arg, &c);
}

/* The store's checkpoints, ascending, with their markers' jseq and time
 * (0 without a marker).  Two listings. */
static int hist_list(struct store *s, struct hist_vec *out)
{
	struct hist_vec marks = { 0 };
	struct seq_list l;
	size_t i, k = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = list_seqs(s, CKPT_PREFIX, &l);
	if (rc == 0)
		rc = store_list(s, MARK_PREFIX, mark_list_cb, &marks);
	for (i = 0; rc == 0 && i < l.n; i++) {
		struct journal_ckpt c = { l.v[i], 0, 0 };

		while (k < marks.n && marks.v[k].cseq < c.cseq)
			k++;
		if (k < marks.n && marks.v[k].cseq == c.cseq)
			c = marks.v[k];
		rc = hist_push(out, &c);
	}
	seq_list_free(&l);
	free(marks.v);
	if (rc) {
		free(out->v);
		memset(out, 0, sizeof(*out));
	}
	return rc;
}

static int hist_load(struct journal *j)
{
	struct hist_vec h;
	int rc = hist_list(j->s, &h);

	if (rc)
		return rc;
	free(j->hist);
	j->hist = h.v;
	j->nhist = h.n;
	j->caphist = h.cap;
	j->hist_loaded = true;
	return 0;
}

static int trim_mark_cb(const char *key, uint64_t size, void *arg)
{
	struct hist_vec *h = arg;
	struct journal_ckpt c;

	(void)size;
	if (parse_mark(key, &c) || c.cseq >= h->below)
		return 0;
	h->n++;
	return buf_append(&h->keys, key, strlen(key) + 1);
}

/* Delete the markers of checkpoints older than cseq. */
static int trim_marks(struct store *s, uint64_t cseq)
{
	struct hist_vec h = { .below = cseq, .keys = BUF_INIT };
	const char **ptrs = NULL;
	size_t i, off;
	int rc = store_list(s, MARK_PREFIX, trim_mark_cb, &h);

	if (!rc && h.n) {
		ptrs = calloc(h.n, sizeof(*ptrs));
		rc = ptrs ? 0 : -ENOMEM;
	}
	for (i = 0, off = 0; !rc && i < h.n; i++) {
		ptrs[i] = (const char *)h.keys.data + off;
		off += strlen(ptrs[i]) + 1;
	}
	if (!rc && h.n)
		rc = store_del_many(s, ptrs, h.n, NULL);
	free(ptrs);
	buf_free(&h.keys);
	return rc;
}

/* Trim what the window no longer needs (invariant 7); requests only
 * when the base moved.  Lock held, hist loaded. */
static int retain(struct journal *j)
{
	int64_t edge = meta_journal_now_ns() - j->hist_ns;
	struct journal_ckpt base;
	size_t b = 0, i;
	int rc = 0;

	if (j->nhist == 0)
		return 0;
	for (i = 0; i < j->nhist; i++)
		if (j->hist[i].ns <= edge)
			b = i;
	base = j->hist[b];
	if (b > 0) {
		rc = trim_seqs(j->s, CKPT_PREFIX, base.cseq, false, ckpt_key);
		if (!rc)
			rc = trim_parts(j->s, base.cseq);
		if (!rc)
			rc = trim_marks(j->s, base.cseq);
		if (rc)
			return rc;
		memmove(j->hist, j->hist + b, (j->nhist - b) * sizeof(*j->hist));
		j->nhist -= b;
		log_debug("history: checkpoint %" PRIu64 " is the oldest kept",
			  base.cseq);
	}
	j->hist_base = base.cseq;
	if (base.jseq > j->hist_trimmed) {
		rc = trim_seqs(j->s, JRNL_PREFIX, base.jseq, true, jrnl_key);
		if (!rc)
			j->hist_trimmed = base.jseq;
	}
	return rc;
}

/* After checkpoint cseq (ending with entry jseq) is durable, with the
 * window on: its marker, then retention.  Lock held. */
static int hist_checkpointed(struct journal *j, uint64_t cseq,
			     uint64_t jseq)
{
	struct journal_ckpt c = { cseq, jseq, 0 };
	uint64_t seq;
	char key[96];
	int rc;

	/* no entry since times exist: the cut's time, later than the
	 * state's (retention keeps more, no past mount gets it too early) */
	if (meta_journal_time(j->m, &seq, &c.ns) || c.ns <= 0)
		c.ns = meta_journal_now_ns();
	mark_key(&c, key, sizeof(key));
	/* a failed marker: this mount still knows the time (the store will
	 * call the checkpoint old as can be, as one written without a
	 * window, until a later checkpoint is the base) */
	if (store_put(j->s, key, "", 0))
		log_warn("history: marker %s: upload failed", key);
	if (!j->hist_loaded) {
		rc = hist_load(j);
	} else {
		struct hist_vec h = { j->hist, j->nhist, j->caphist, 0,
				      BUF_INIT };

		rc = hist_push(&h, &c);
		j->hist = h.v;
		j->nhist = h.n;
		j->caphist = h.cap;
	}
	return rc ? rc : retain(j);
}

int journal_history_drop(struct store *s)
{
	struct hist_vec h;
	struct journal_ckpt last;
	int rc = hist_list(s, &h);

	if (rc || h.n == 0) {
		free(h.v);
		return rc;
	}
	last = h.v[h.n - 1];
	free(h.v);
	rc = trim_seqs(s, CKPT_PREFIX, last.cseq, false, ckpt_key);
	if (!rc)
		rc = trim_parts(s, last.cseq);
	if (!rc)
		rc = trim_marks(s, UINT64_MAX);
	if (!rc && last.jseq)
		rc = trim_seqs(s, JRNL_PREFIX, last.jseq, true, jrnl_key);
	return rc;
}

int journal_set_history(struct journal *j, uint64_t history_s)
{
	int rc = 0;

	pthread_mutex_lock(&j->lock);
	/* turned off: what only the window kept goes at once */
	if (j->hist_ns && !history_s)
		rc = journal_history_drop(j->s);
	j->hist_ns = history_s >= (uint64_t)(INT64_MAX / NS_PER_S) ?
			     INT64_MAX :
			     (int64_t)history_s * NS_PER_S;
	if (!j->hist_ns)
		j->hist_loaded = false;
	else if (!j->hist_loaded)
		rc = hist_load(j);
	pthread_mutex_unlock(&j->lock);
	return rc;
}

int journal_gc_epoch(struct journal *j, uint64_t *epoch)
{
	uint64_t durable = meta_config_get_u64(j->m, "durable_seq", 0);
	int rc = 0;

	pthread_mutex_lock(&j->lock);
	if (j->hist_ns) {
		rc = j->hist_loaded ? 0 : hist_load(j);
		if (rc == 0)
			rc = retain(j);
		/* a checkpoint in the store (a restored database's
		 * durable_seq may be older than the one it came from) */
		durable = rc ? 0 : j->hist_base;
	}
	pthread_mutex_unlock(&j->lock);
	*epoch = durable;
	return rc;
}

int64_t journal_history_oldest(struct journal *j)
{
	int64_t ns = 0;

	pthread_mutex_lock(&j->lock);
	if (j->hist_ns && j->hist_loaded && j->nhist)
		ns = j->hist[0].ns;
	pthread_mutex_unlock(&j->lock);
	return ns;
}

/* With a window, objects freed since the newest checkpoint wait for the
 * window anyway: a checkpoint for their sake at most every window/16
 * (each is kept for the window). */
static bool garbage_waits(struct journal *j, uint64_t durable)
{
	uint64_t waiting = 0, garbage = 0, last;
	int64_t hist;

	if (meta_gc_waiting(j->m, durable, &waiting, &garbage))
		return true;
	if (waiting == 0)
		return false;
	pthread_mutex_lock(&j->lock);
	hist = j->hist_ns;
	last = j->ckpt_time;
	pthread_mutex_unlock(&j->lock);
	return hist == 0 ||
	       (int64_t)time(NULL) - (int64_t)last >= hist / NS_PER_S / 16;
}

/* ---- for journal_at.c (journal_int.h) ---- */

int journal_ckpts_list(struct store *s, struct journal_ckpt **v, size_t *n)
{
	struct hist_vec h;
	int rc = hist_list(s, &h);

	*v = h.v;
	*n = h.n;
	return rc;
}

int journal_entries_list(struct store *s, uint64_t **seq, uint64_t **size,
			 size_t *n)
{
	struct seq_list l;
	int rc = list_seqs(s, JRNL_PREFIX, &l);

	if (rc)
		seq_list_free(&l);
	*seq = rc ? NULL : l.v;
	*size = rc ? NULL : l.size;
	*n = rc ? 0 : l.n;
	return rc;
}

int journal_ckpt_restore(struct store *s, const struct blob_ctx *bc,
			 uint64_t cseq, const char *db_path)
{
	return restore_seq(s, bc, cseq, db_path, NULL, NULL);
}

void journal_entry_key(uint64_t seq, char *key, size_t size)
{
	jrnl_key(seq, key, size);
}

void journal_ckpt_key(uint64_t seq, char *key, size_t size)
{
	ckpt_key(seq, key, size);
}

int journal_put_copy(struct journal *j, const char *head_prefix,
		     const char *part_prefix, uint64_t id, const char *path,
		     const char *extra, uint64_t *stored)
{
	const struct copy_keys k = { head_prefix, part_prefix, id, extra,
				     true };
	/* not under j->lock: syncs go on while the copy uploads; only what
	 * put_checkpoint() reads of j, which never changes after open */
	struct journal copy = { .s = j->s, .bc = j->bc,
				.part_size = j->part_size };
	uint64_t size;

	*stored = 0;
	return put_copy(&copy, &k, path, &size, stored);
}

int journal_copy_is_head(const struct buf *head)
{
	return head->len >= strlen(MANIFEST_MAGIC) &&
	       !memcmp(head->data, MANIFEST_MAGIC, strlen(MANIFEST_MAGIC));
}

int journal_restore_copy(struct store *s, const struct blob_ctx *bc,
			 const char *head_prefix, const char *part_prefix,
			 uint64_t id, const struct buf *head,
			 const char *db_path)
{
	const struct copy_keys k = { head_prefix, part_prefix, id, NULL,
				     true };
	struct buf tmp = BUF_INIT;
	int rc, fd;

	if (!journal_copy_is_head(head))
		return -EIO;
	if (buf_appendf(&tmp, "%s.restoring", db_path))
		return -ENOMEM;
	fd = open(buf_str(&tmp), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = restore_copy_parts(s, bc, &k, head, fd, NULL, NULL);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (!rc && rename(buf_str(&tmp), db_path) < 0)
		rc = -errno;
	if (rc)
		unlink(buf_str(&tmp));
out:
	buf_free(&tmp);
	return rc;
}

const char *journal_tmp_dir(struct journal *j)
{
	return j->tmp_dir;
}
