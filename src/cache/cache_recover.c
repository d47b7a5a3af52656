/*
 * cache_recover.c - what the cache directory an earlier run left is
 * worth at open (cache_recover()), and what a clean close leaves in it
 * for the next open (cache_keep_clean()).
 *
 * Data model
 *   blocks/ holds <ino>.<idx>.<gen>, the files of entries (see cache.c),
 *   and, after a clean close, <ino>.<idx>.<gen>.<hash>: files of clean
 *   blocks named after the content they hold, with the marker
 *   blocks/kept (the boot id of the kernel holding their pages, or
 *   "synced").  The index says which blocks are dirty (dirty_blocks).
 *
 * Invariants
 *   1. A block dirty in the index is served from its newest file (the
 *      highest gen).  Without a file it keeps its last uploaded content
 *      (block_reset), unless that content reaches past its file's end:
 *      then it is fetched and cut there again (refill_tail()), to go up
 *      whole.
 *   2. A kept clean file is believed only after a clean close during the
 *      same boot (or synced), and only while the index still names its
 *      content; the marker speaks for one close only (removed at open).
 *   3. Every other file is deleted; next_gen ends above every gen kept.
 *   4. Both run while no other thread uses the cache: recovery before
 *      the workers and fetchers start, cache_keep_clean() after they
 *      stopped.
 *
 * Locks: none of its own (invariant 4); the table is changed without
 * lock, and the helpers it calls take lock as anywhere else.
 */
#include "util/compat.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include "cache/cache_int.h"
#include "util/log.h"
#include "util/util.h"

/* ---- recovery at open ---- */

/* A block the index says is dirty: a DIRTY entry, its file not found
 * yet (recover_file() finds it). */
static int recover_dirty_cb(uint64_t ino, uint64_t idx, void *arg)
{
	struct cache *c = arg;
	struct centry *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	e->ino = ino;
	e->idx = idx;
	e->fd = -1;
	e->state = CE_DIRTY;
	e->version = 1;
	cache_table_insert(c, e);
	elist_add_tail(&c->dirty, e);
	c->dirty_bytes += c->cfg.block_size;
	/* what a crash left unsent is not known page by page */
	e->dirty_acct = (uint32_t)c->cfg.block_size;
	c->dirty_data += e->dirty_acct;
	c->cached_bytes += c->cfg.block_size;
	return 0;
}

/*
 * The marker of a clean close, blocks/kept: the boot id of the running
 * kernel (its page cache is what the kept files hold, written to disk or
 * not), or "synced" when there is no boot id and the files were synced.
 */
#define KEPT_NAME "kept"
#define BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"

static void kept_path(const struct cache *c, char *path, size_t size)
{
	snprintf(path, size, "%s/%s", c->blocks_dir, KEPT_NAME);
}

/* The boot id, or "" when unknown. */
static void boot_id(struct buf *out)
{
	buf_reset(out);
	if (read_file(BOOT_ID_PATH, out) || out->len < 16)
		buf_reset(out);
	while (out->len && (out->data[out->len - 1] == '\n'))
		out->data[--out->len] = 0;
}

/* Was the last close clean, and are its files to be believed?  Removes
 * the marker: it speaks for the files of one close only. */
static bool kept_trusted(struct cache *c)
{
	struct buf mark = BUF_INIT, boot = BUF_INIT;
	char path[PATH_MAX];
	bool ok;

	kept_path(c, path, sizeof(path));
	if (read_file(path, &mark)) {
		buf_free(&mark);
		return false;
	}
	unlink(path);
	boot_id(&boot);
	ok = !strcmp(buf_str(&mark), "synced") ||
	     (boot.len && !strcmp(buf_str(&mark), buf_str(&boot)));
	buf_free(&mark);
	buf_free(&boot);
	return ok;
}

/*
 * A file kept by a clean close (cache_keep_clean()), named
 * <ino>.<idx>.<gen>.<hash>: serve it again as a clean entry when the
 * index still says block (ino, idx) is clean with that content, under its
 * plain name again (so that a write and a crash later leave nothing that
 * claims a content).  Called with no other thread running.  False: the
 * caller deletes the file.
 */
static bool adopt_clean(struct cache *c, const char *name, uint64_t ino,
			uint64_t idx, uint64_t gen, const char *hash)
{
	char have[BLOB_NAME_LEN + 1], from[PATH_MAX], to[PATH_MAX];
	struct centry *e;

	if (cache_table_find(c, ino, idx))
		return false; /* dirty, or a second file of the block */
	if (cache_content_name(c, ino, idx, have) || strcmp(have, hash))
		return false;
	e = calloc(1, sizeof(*e));
	if (!e)
		return false;
	e->ino = ino;
	e->idx = idx;
	e->gen = gen;
	e->fd = -1;
	snprintf(from, sizeof(from), "%s/%s", c->blocks_dir, name);
	entry_path(c, e, to, sizeof(to));
	if (rename(from, to)) {
		free(e);
		return false;
	}
	e->has_file = true;
	e->state = CE_CLEAN;
	e->dmap_ok = true;
	cache_table_insert(c, e);
	elist_add_tail(&c->lru, e);
	c->cached_bytes += c->cfg.block_size;
	if (gen >= c->next_gen)
		c->next_gen = gen + 1;
	return true;
}

/*
 * A dirty block of cache_recover() whose file is gone (a crash took the
 * cache directory or the file) keeps its last uploaded content, unless that
 * content reaches past the file's end: a truncate cut the block, and the
 * crash came before the cut went up (meta_blocks_forget_dirty() keeps
 * such blocks dirty).  The bytes past the end would come back if the
 * file grew, where zeros belong: fetch the block, cut it at the end, and
 * keep it dirty, to go up whole.  0 when done, 1 when e is no such
 * block, or -errno.  Called before the cache serves anything.
 */
static int refill_tail(struct cache *c, struct centry *e)
{
	uint64_t size, bs = c->cfg.block_size;
	bool dirty = false;
	char path[PATH_MAX];
	int rc;

	rc = c->ops->file_size(c->index_arg, e->ino, &size);
	if (rc)
		return rc == -ENOENT ? 1 : rc;
	if (size >= (e->idx + 1) * bs)
		return 1;
	e->gen = c->next_gen++;
	rc = cache_load_block(c, e, NULL, &dirty);
	if (rc == 0)
		rc = cache_zero_in_block(c, e, size > e->idx * bs ?
					 size - e->idx * bs : 0, bs);
	if (rc) {
		if (e->has_file) {
			entry_path(c, e, path, sizeof(path));
			unlink(path);
			e->has_file = false;
		}
		/* recover_reset() frees the entry: not its descriptor,
		 * which the load may have kept */
		if (e->fd >= 0) {
			close(e->fd);
			e->fd = -1;
			pthread_mutex_lock(&c->lock);
			c->nfds--;
			pthread_mutex_unlock(&c->lock);
		}
		return rc;
	}
	e->dmap_ok = false; /* its next upload is whole */
	return 0;
}

/* What recover_scan() does with a file of blocks/. */
enum recover_verdict { FILE_DELETE, FILE_KEEP, FILE_ADOPTED };

/*
 * A file of blocks/ named name: a clean block's that a trusted clean
 * close kept (adopted, adopt_clean()), the newest file of a dirty block
 * (kept, its entry's file from now on), or neither (deleted).
 */
static enum recover_verdict recover_file(struct cache *c, const char *name,
					 bool trusted)
{
	unsigned long long ino, idx, gen;
	char path[PATH_MAX], hash[BLOB_NAME_LEN + 2];
	struct centry *e;
	int nch = 0;

	if (trusted &&
	    sscanf(name, "%llu.%llu.%llu.%65[0-9a-f]%n", &ino, &idx, &gen,
		   hash, &nch) == 4 &&
	    name[nch] == 0 && strlen(hash) == BLOB_NAME_LEN &&
	    adopt_clean(c, name, ino, idx, gen, hash))
		return FILE_ADOPTED;
	if (sscanf(name, "%llu.%llu.%llu%n", &ino, &idx, &gen, &nch) != 3 ||
	    name[nch] != 0)
		return FILE_DELETE;
	e = cache_table_find(c, ino, idx);
	if (e && e->has_file && e->gen == gen)
		return FILE_KEEP; /* adopted above, seen again under its new
				   * name */
	if (e && e->state == CE_DIRTY && (!e->has_file || gen > e->gen)) {
		/*
		 * The newest file of the block is its data.  An older one
		 * outlives its entry while an upload of it runs after a
		 * truncate or punch dropped it; the block's next write made
		 * a new file (a higher gen), and a crash then left both.
		 */
		if (e->has_file) {
			entry_path(c, e, path, sizeof(path));
			unlink(path);
		}
		e->gen = gen;
		e->has_file = true;
		if (gen >= c->next_gen)
			c->next_gen = gen + 1;
		return FILE_KEEP;
	}
	return FILE_DELETE;
}

/* Go through the files of blocks/ (recover_file()) and delete those that
 * hold no block; *kept: the clean ones adopted. */
static int recover_scan(struct cache *c, bool trusted, uint64_t *kept)
{
	struct dirent *de;
	DIR *d = opendir(c->blocks_dir);

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char path[PATH_MAX];
		enum recover_verdict v;

		if (de->d_name[0] == '.')
			continue;
		v = recover_file(c, de->d_name, trusted);
		if (v == FILE_ADOPTED)
			(*kept)++;
		if (v != FILE_DELETE)
			continue;
		snprintf(path, sizeof(path), "%s/%s", c->blocks_dir,
			 de->d_name);
		unlink(path);
	}
	closedir(d);
	return 0;
}

/* The dirty blocks left without a file: cut again at their file's end
 * when refill_tail() can (*nrefilled), else out of the table, returned
 * chained through hnext. */
static struct centry *recover_missing(struct cache *c, uint64_t *nrefilled)
{
	struct centry *lost = NULL, *e, *next;
	size_t b;
	int rc;

	/* gens of kept files are known now: give the others fresh ones */
	for (b = 0; b < c->nbuckets; b++) {
		for (e = c->buckets[b]; e; e = next) {
			next = e->hnext;
			if (e->has_file)
				continue;
			rc = refill_tail(c, e);
			if (rc == 0) {
				(*nrefilled)++;
				continue;
			}
			if (rc < 0)
				log_warn("cache: block %" PRIu64 " of inode "
					 "%" PRIu64 " reaches past the file's "
					 "end and cannot be cut there (%s): "
					 "if the file grows, old bytes may "
					 "show", e->idx, e->ino,
					 strerror(-rc));
			cache_table_remove(c, e);
			c->cached_bytes -= c->cfg.block_size;
			e->hnext = lost;
			lost = e;
		}
	}
	return lost;
}

/* Tell the index that the lost blocks keep their last uploaded content
 * (clean again), and free them; how many there were. */
static uint64_t recover_reset(struct cache *c, struct centry *lost)
{
	struct centry *e, *next;
	uint64_t nlost = 0;
	int rc;

	for (e = lost; e; e = next) {
		char hash[BLOB_NAME_LEN + 1];

		next = e->hnext;
		nlost++;
		if (c->ops->block_reset) {
			rc = c->ops->block_reset(c->index_arg, e->ino, e->idx);
		} else {
			rc = c->ops->block_get(c->index_arg, e->ino, e->idx,
					       hash);
			if (rc == 0)
				rc = c->ops->block_commit(c->index_arg, e->ino,
							  e->idx,
							  hash[0] ? hash : NULL,
							  0, 0);
		}
		if (rc && rc != -ENOENT && rc != -ESTALE)
			log_warn("cache: cannot reset block %llu of inode "
				 "%llu: %s", (unsigned long long)e->idx,
				 (unsigned long long)e->ino, strerror(-rc));
		free(e);
	}
	return nlost;
}

/* What recovery found, in the log. */
static void recover_report(struct cache *c, uint64_t nlost,
			   uint64_t nrefilled, uint64_t kept)
{
	if (nlost)
		log_warn("cache: %" PRIu64 " block(s) written before a crash "
			 "were not in the cache directory any more; those "
			 "blocks keep their last uploaded content", nlost);
	if (nrefilled)
		log_info("cache: %" PRIu64 " block(s) cut by a truncate "
			 "before a crash are cut again and uploaded",
			 nrefilled);
	if (c->dirty.n)
		log_info("cache: %zu block(s) written before a restart are "
			 "being uploaded", c->dirty.n);
	if (kept)
		log_info("cache: %" PRIu64 " clean block(s) kept from the "
			 "last mount", kept);
}

/*
 * Match cache files left by an earlier run with the blocks the index says
 * are dirty, and adopt the clean files a clean close left (adopt_clean());
 * delete every other file.  Dirty blocks without a file are lost: tell
 * the index they are clean again (their last upload stands), unless
 * refill_tail() can cut them at their file's end.  Called by
 * cache_open() before any other thread runs.
 */
int cache_recover(struct cache *c)
{
	uint64_t kept = 0, nrefilled = 0, nlost;
	struct centry *lost;
	int rc;

	rc = c->ops->dirty_blocks(c->index_arg, recover_dirty_cb, c);
	if (rc)
		return rc;
	rc = recover_scan(c, kept_trusted(c), &kept);
	if (rc)
		return rc;
	lost = recover_missing(c, &nrefilled);
	nlost = recover_reset(c, lost);
	recover_report(c, nlost, nrefilled, kept);
	cache_evict_some(c); /* cache_size may be smaller than last time */
	return 0;
}

/* ---- keeping clean blocks at close ---- */

/*
 * A clean close keeps the files of clean blocks for the next open, named
 * after the content they hold (the hash of the object their block names
 * in the index), so that a remount serves them without fetching them
 * again.  A name is a claim on the content: the next open believes it
 * only while the kernel that holds the files' pages still runs (same
 * boot id in the marker), since a power loss, the only way to lose
 * written pages that were not synced, means a new boot; without a boot
 * id the files are synced first.  A crash keeps nothing clean: a file
 * without such a name may hold a write that never reached the index.
 * Called by cache_close() once the workers and fetchers stopped.
 */
void cache_keep_clean(struct cache *c)
{
	char hash[BLOB_NAME_LEN + 1], from[PATH_MAX], to[PATH_MAX + 80];
	struct buf mark = BUF_INIT;
	uint64_t kept = 0;
	size_t b;

	boot_id(&mark);
	if (!mark.len) {
		int dfd = open(c->blocks_dir, O_RDONLY | O_DIRECTORY |
			       O_CLOEXEC);

		if (dfd < 0 || syncfs(dfd)) {
			log_warn("cache: cannot sync %s: %s; no block kept",
				 c->blocks_dir, strerror(errno));
			if (dfd >= 0)
				close(dfd);
			return;
		}
		close(dfd);
		buf_appends(&mark, "synced");
	}
	for (b = 0; b < c->nbuckets; b++) {
		struct centry *e;

		for (e = c->buckets[b]; e; e = e->hnext) {
			if (e->state != CE_CLEAN || !e->has_file)
				continue;
			if (cache_content_name(c, e->ino, e->idx, hash) ||
			    !hash[0])
				continue;
			entry_path(c, e, from, sizeof(from));
			snprintf(to, sizeof(to), "%s.%s", from, hash);
			if (rename(from, to) == 0)
				kept++;
		}
	}
	if (kept) {
		kept_path(c, from, sizeof(from));
		if (write_file_atomic(from, mark.data, mark.len, 0600))
			log_warn("cache: cannot write %s", from);
		else
			log_info("cache: %" PRIu64 " clean block(s) kept for "
				 "the next mount", kept);
	}
	buf_free(&mark);
}
