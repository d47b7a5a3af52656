/*
 * journal.c - the metadata in the store: checkpoints plus a journal.
 *
 * Between checkpoints (full copies of the database, checkpoint.c names
 * them), every change goes to the store as a journal entry: the SQLite
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
 *   5. A mount writes a checkpoint before it serves anything (cmd_mount):
 *      changes recorded by a crashed predecessor but never cut are then
 *      in the store too, and the sequence of entries restarts from a
 *      state every later entry applies to.
 */
#include "util/compat.h"

#include <pthread.h>
#include <unistd.h>

#include "meta/journal.h"
#include "util/log.h"
#include "util/util.h"

#define JRNL_PREFIX "meta/jrnl-"
#define CKPT_PREFIX "meta/ckpt-"

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
};

static void jrnl_key(uint64_t seq, char *key, size_t size)
{
	snprintf(key, size, JRNL_PREFIX "%016" PRIx64, seq);
}

static void ckpt_key(uint64_t seq, char *key, size_t size)
{
	snprintf(key, size, CKPT_PREFIX "%016" PRIx64, seq);
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
	pthread_mutex_init(&j->lock, NULL);
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
		done++;
	}
	drop_pending(j, done);
	buf_free(&enc);
	return rc;
}

static int cut(struct journal *j, const char *snap, uint64_t *cseq,
	       uint64_t *jseq_out)
{
	struct buf cs = BUF_INIT;
	uint64_t jseq = 0;
	int rc = meta_journal_cut(j->m, &cs, &jseq, snap, cseq);

	if (rc && cs.len)
		j->need_ckpt = true; /* the changes left the recorder */
	if (rc == 0 && cs.len)
		rc = push_pending(j, jseq, &cs);
	if (rc)
		j->need_ckpt = true;
	buf_free(&cs);
	if (jseq_out)
		*jseq_out = jseq;
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
	pthread_mutex_unlock(&j->lock);
	return rc;
}

struct seq_list {
	const char *prefix;
	uint64_t *v;
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
		l->cap = ncap;
	}
	l->v[l->n++] = seq;
	return 0;
}

/* Sequence numbers under prefix, ascending (keys list in order). */
static int list_seqs(struct store *s, const char *prefix,
		     struct seq_list *l)
{
	l->prefix = prefix;
	l->v = NULL;
	l->n = l->cap = 0;
	return store_list(s, prefix, seq_list_cb, l);
}

/* Delete checkpoints older than cseq and entries at or below jseq. */
static int trim(struct journal *j, uint64_t cseq, uint64_t jseq)
{
	struct seq_list l;
	char key[64];
	size_t i;
	int rc;

	rc = list_seqs(j->s, CKPT_PREFIX, &l);
	for (i = 0; rc == 0 && i < l.n && l.v[i] < cseq; i++) {
		ckpt_key(l.v[i], key, sizeof(key));
		rc = store_del(j->s, key);
	}
	free(l.v);
	if (rc)
		return rc;
	rc = list_seqs(j->s, JRNL_PREFIX, &l);
	for (i = 0; rc == 0 && i < l.n && l.v[i] <= jseq; i++) {
		jrnl_key(l.v[i], key, sizeof(key));
		rc = store_del(j->s, key);
	}
	free(l.v);
	return rc;
}

int journal_checkpoint(struct journal *j)
{
	struct buf path = BUF_INIT, db = BUF_INIT, enc = BUF_INIT;
	uint64_t cseq = 0, jseq = 0;
	size_t covered;
	char key[64];
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
	rc = read_file(buf_str(&path), &db);
	unlink(buf_str(&path));
	if (rc)
		goto out;
	rc = blob_encode(&j->bc, db.data, db.len, &enc);
	if (rc)
		goto out;
	ckpt_key(cseq, key, sizeof(key));
	rc = store_put(j->s, key, enc.data, enc.len);
	if (rc) {
		log_error("checkpoint %s: upload failed: %s", key,
			  strerror(-rc));
		goto out;
	}
	j->st.checkpoints++;
	j->st.bytes += enc.len;
	j->need_ckpt = false;
	for (covered = 0; covered < j->npend; covered++)
		if (j->pend[covered].seq > jseq)
			break;
	drop_pending(j, covered);
	/* at once: a mount that finds a newer checkpoint than its
	 * durable_seq takes it for another writer's (cmd_mount.c) */
	rc = meta_config_set_u64(j->m, "durable_seq", cseq);
	if (rc == 0)
		rc = trim(j, cseq, jseq);
	log_debug("checkpoint %" PRIu64 " (journal %" PRIu64 "): %zu bytes "
		  "(%zu stored)", cseq, jseq, db.len, enc.len);
out:
	pthread_mutex_unlock(&j->lock);
	buf_free(&path);
	buf_free(&db);
	buf_free(&enc);
	return rc;
}

void journal_get_stats(struct journal *j, struct journal_stats *out)
{
	pthread_mutex_lock(&j->lock);
	*out = j->st;
	out->pending = j->npend;
	pthread_mutex_unlock(&j->lock);
}

int journal_replay(struct store *s, const struct blob_ctx *bc,
		   struct meta *m, uint64_t *applied)
{
	uint64_t next = meta_config_get_u64(m, "jrnl_seq", 0) + 1;
	struct buf obj = BUF_INIT, cs = BUF_INIT;
	struct seq_list l;
	char key[64];
	size_t i;
	int rc;

	*applied = 0;
	rc = list_seqs(s, JRNL_PREFIX, &l);
	for (i = 0; rc == 0 && i < l.n; i++) {
		if (l.v[i] < next)
			continue;
		jrnl_key(l.v[i], key, sizeof(key));
		if (l.v[i] > next) {
			log_warn("journal: %s follows a gap (next would be %"
				 PRIu64 "); the entries from it on are "
				 "ignored", key, next);
			break;
		}
		buf_reset(&obj);
		buf_reset(&cs);
		rc = store_get(s, key, 0, 0, &obj);
		if (rc) {
			log_error("journal %s: download failed: %s", key,
				  strerror(-rc));
			break;
		}
		if (blob_decode(bc, obj.data, obj.len, &cs) ||
		    meta_journal_apply(m, cs.data, cs.len)) {
			/* the state so far is consistent; what follows
			 * cannot be had */
			log_error("journal %s is damaged; the volume is "
				  "restored as of the entry before it", key);
			break;
		}
		rc = meta_config_set_u64(m, "jrnl_seq", next);
		if (rc)
			break;
		next++;
		(*applied)++;
	}
	free(l.v);
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
	free(l.v);
	return rc;
}

int checkpoint_restore(struct store *s, const struct blob_ctx *bc,
		       const char *db_path, uint64_t *seq_out)
{
	struct buf obj = BUF_INIT, db = BUF_INIT, side = BUF_INIT;
	char key[64];
	uint64_t seq;
	int rc;

	rc = checkpoint_latest(s, &seq);
	if (rc)
		return rc;
	ckpt_key(seq, key, sizeof(key));
	rc = store_get(s, key, 0, 0, &obj);
	if (rc) {
		log_error("checkpoint %s: download failed: %s", key,
			  strerror(-rc));
		goto out;
	}
	rc = blob_decode(bc, obj.data, obj.len, &db);
	if (rc) {
		log_error("checkpoint %s is damaged", key);
		goto out;
	}
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
	rc = write_file_atomic(db_path, db.data, db.len, 0600);
	if (rc == 0)
		*seq_out = seq;
out:
	buf_free(&obj);
	buf_free(&db);
	buf_free(&side);
	return rc;
}
