/*
 * checkpoint.c - full copies of the metadata database in the store.
 *
 * A checkpoint is the SQLite database as of one moment (VACUUM INTO gives
 * a consistent copy), compressed with zstd and framed by the blob codec,
 * stored as meta/ckpt-<seq> with seq in 16 hex digits so that the
 * lexicographic order of keys is the order of sequences.
 *
 * Invariants
 *   1. ckpt_seq is bumped in the database before the snapshot is taken, so
 *      an object freed after the snapshot carries freed_epoch >= seq and is
 *      not garbage until a later checkpoint is durable.
 *   2. A new checkpoint is durable in the store before older ones are
 *      deleted, and durable_seq is advanced only after both: the store
 *      always holds at least one complete checkpoint once the first is
 *      written, and no durable checkpoint names an object GC may delete.
 */
#include "util/compat.h"

#include <unistd.h>

#include "meta/volume.h"
#include "util/log.h"
#include "util/util.h"

#define CKPT_PREFIX "meta/ckpt-"

struct latest_arg {
	uint64_t seq;
	bool found;
	uint64_t *older; /* when collecting: every seq seen */
	size_t n, cap;
};

static int parse_ckpt_key(const char *key, uint64_t *seq)
{
	const char *p = key + strlen(CKPT_PREFIX);
	char *end;

	if (strlen(p) != 16)
		return -EINVAL;
	*seq = strtoull(p, &end, 16);
	return *end ? -EINVAL : 0;
}

static int latest_cb(const char *key, uint64_t size, void *arg)
{
	struct latest_arg *a = arg;
	uint64_t seq;

	if (parse_ckpt_key(key, &seq))
		return 0;
	if (!a->found || seq > a->seq) {
		a->seq = seq;
		a->found = true;
	}
	if (a->n == a->cap) {
		size_t ncap = a->cap ? a->cap * 2 : 8;
		uint64_t *p = realloc(a->older, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		a->older = p;
		a->cap = ncap;
	}
	a->older[a->n++] = seq;
	return 0;
}

int checkpoint_latest(struct store *s, uint64_t *seq)
{
	struct latest_arg a = { 0 };
	int rc = store_list(s, CKPT_PREFIX, latest_cb, &a);

	free(a.older);
	if (rc)
		return rc;
	if (!a.found)
		return -ENOENT;
	*seq = a.seq;
	return 0;
}

static void ckpt_key(uint64_t seq, char *key, size_t size)
{
	snprintf(key, size, CKPT_PREFIX "%016" PRIx64, seq);
}

int checkpoint_write(struct meta *m, struct store *s,
		     const struct blob_ctx *bc, const char *tmp_dir)
{
	struct blob_ctx zctx = *bc;
	struct buf path = BUF_INIT, db = BUF_INIT, enc = BUF_INIT;
	struct latest_arg a = { 0 };
	char key[64];
	uint64_t seq;
	size_t i;
	int rc;

	seq = meta_config_get_u64(m, "ckpt_seq", 0) + 1;
	rc = meta_config_set_u64(m, "ckpt_seq", seq);
	if (rc)
		return rc;
	if (buf_appendf(&path, "%s/ckpt-%016" PRIx64 ".tmp", tmp_dir, seq))
		return -ENOMEM;
	unlink(buf_str(&path));
	rc = meta_snapshot(m, buf_str(&path));
	if (rc)
		goto out;
	rc = read_file(buf_str(&path), &db);
	unlink(buf_str(&path));
	if (rc)
		goto out;
	zctx.zstd_level = 3;
	rc = blob_encode(&zctx, db.data, db.len, &enc);
	if (rc)
		goto out;
	ckpt_key(seq, key, sizeof(key));
	rc = store_put(s, key, enc.data, enc.len);
	if (rc) {
		log_error("checkpoint %s: upload failed: %s", key,
			  strerror(-rc));
		goto out;
	}
	rc = store_list(s, CKPT_PREFIX, latest_cb, &a);
	for (i = 0; rc == 0 && i < a.n; i++) {
		if (a.older[i] >= seq)
			continue;
		ckpt_key(a.older[i], key, sizeof(key));
		rc = store_del(s, key);
	}
	if (rc == 0)
		rc = meta_config_set_u64(m, "durable_seq", seq);
	log_debug("checkpoint %" PRIu64 ": %zu bytes (%zu compressed)", seq,
		  db.len, enc.len);
out:
	free(a.older);
	buf_free(&path);
	buf_free(&db);
	buf_free(&enc);
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
	rc = write_file_atomic(db_path, db.data, db.len, 0600);
	if (rc == 0)
		*seq_out = seq;
out:
	buf_free(&obj);
	buf_free(&db);
	buf_free(&side);
	return rc;
}
