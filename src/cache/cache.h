/*
 * cache.h - the local write-back block cache.
 *
 * The cache keeps blocks of files in files on local disk, one cache file
 * per block, and moves them between the local disk and the store:
 * written blocks are uploaded by worker threads after writeback_delay, or
 * sooner when dirty data passes max_dirty or someone waits on a flush;
 * clean blocks are evicted least-recently-used down to cache_size; blocks
 * not cached are fetched from the store (a block's object and the patches
 * on it, decoded and verified) when read or partially written, or before,
 * by read-ahead.  The implementation's files are listed in cache_int.h.
 *
 * The cache sits below meta in the layering: it does not know SQLite.
 * What it needs to know about the block map, and what it reports back, goes
 * through struct cache_index_ops, implemented by the layer above
 * (meta/meta_index.c).
 *
 * All functions are thread-safe.  Errors are 0 or -errno; store and codec
 * errors surface as -EIO (damaged object), -ENOSPC (cache disk full), or
 * what the store returned.
 */
#ifndef METAFUSE_CACHE_H
#define METAFUSE_CACHE_H

#include "util/compat.h"

#include "blob/blob.h"
#include "blob/patch.h"
#include "store/store.h"

struct cache;

/* Callbacks into the block index (the metadata).  arg is index_arg. */
struct cache_index_ops {
	/* Hash of the last uploaded content of block (ino, idx) into hash
	 * (BLOB_NAME_LEN+1 bytes; "" when never uploaded). -ENOENT: hole. */
	int (*block_get)(void *arg, uint64_t ino, uint64_t idx, char *hash);
	/* A write of [.., end) to ino finished: size = max(size, end), mtime
	 * and ctime = now, blocks idx[0..n) become dirty.  All or nothing,
	 * and kept across a crash of the process once it returned. */
	int (*write_done)(void *arg, uint64_t ino, uint64_t end,
			  const uint64_t *idx, size_t n);
	/* Current size of ino (-ENOENT when the inode is gone). */
	int (*file_size)(void *arg, uint64_t ino, uint64_t *size);
	/* 1 if an object named hash is surely in the store (referenced by
	 * some block), 0 if it must be uploaded. */
	int (*object_known)(void *arg, const char *hash);
	/* Upload of (ino, idx) done: see meta_block_commit(). hash NULL =
	 * all zeros.  -ESTALE when the block is gone meanwhile. */
	int (*block_commit)(void *arg, uint64_t ino, uint64_t idx,
			    const char *hash, uint64_t size, int still_dirty);
	/* An uploaded object that no block will reference (its block was
	 * dropped meanwhile): record it for garbage collection.  Optional. */
	int (*object_note)(void *arg, const char *hash, uint64_t size);
	/*
	 * Patches (optional: NULL, and blocks are always uploaded whole).
	 * block_chain: like block_get, with the block's patches.
	 * block_patch: like block_commit for a patch on the object below
	 * (see meta_block_patch(): -EILSEQ when below is not the chain's
	 * top).  block_reset: a dirty block whose cache file is lost keeps
	 * its uploaded content (meta_block_reset()).
	 */
	int (*block_chain)(void *arg, uint64_t ino, uint64_t idx,
			   struct patch_chain *out);
	int (*block_patch)(void *arg, uint64_t ino, uint64_t idx,
			   const char *below, const char *hash, uint64_t size,
			   int still_dirty);
	int (*block_reset)(void *arg, uint64_t ino, uint64_t idx);
	/* Visit every block the index says is dirty (startup recovery). */
	int (*dirty_blocks)(void *arg,
			    int (*cb)(uint64_t ino, uint64_t idx, void *cbarg),
			    void *cbarg);
	/* How many blocks of ino the index says are dirty (optional; a
	 * self-check: each must be in the cache, dirty). */
	int (*dirty_count)(void *arg, uint64_t ino, uint64_t *n);
	/*
	 * Inline data (optional; NULL or inline_max 0: never).  Small files
	 * live in the index, not in blocks; see meta_inline_*() for the
	 * contract: inline_write returns 1 (done), 0 (not inline: write
	 * blocks) or 2 (inline, but too big now: move it to block 0 with
	 * inline_to_block, which marks block 0 dirty, then write blocks).
	 */
	int (*inline_write)(void *arg, uint64_t ino, uint64_t off,
			    const void *data, size_t len, size_t max);
	int (*inline_read)(void *arg, uint64_t ino, struct buf *out);
	int (*inline_to_block)(void *arg, uint64_t ino);
	int (*inline_cut)(void *arg, uint64_t ino, uint64_t size,
			  uint64_t zero_off, uint64_t zero_len);
};

struct cache_config {
	const char *dir;            /* cache files live in dir/blocks */
	uint32_t block_size;
	uint64_t cache_size;        /* bytes of cache files, dirty included */
	uint64_t max_dirty;         /* upload at once past this */
	/* past this much dirty data, a block written whole since it became
	 * dirty is uploaded at once (UINT64_MAX: never early; the mount
	 * uses max_dirty / 32, see pick_upload()) */
	uint64_t whole_after;
	uint64_t writeback_delay_ns;
	unsigned upload_threads;    /* >= 1 */
	/* files written while empty and never past this size stay inline
	 * in the index (0: off).  Requires that the kernel serializes the
	 * writes of a file (no writeback cache), and <= block_size. */
	uint32_t inline_max;
	/* a block written in a few places since its upload goes up as a
	 * patch (blob/patch.h; needs the index's block_chain and
	 * block_patch) */
	bool patches;
	/* a follower's (cli/follow.c), whose index is the writer's
	 * journal: an object the store no longer has was collected by the
	 * writer after the index here named it, so a read of it is -ESTALE
	 * (logged as such), not -EIO; and a block the index says is dirty
	 * (written by the writer, not yet uploaded: its content is in no
	 * store) is -EAGAIN, never its last uploaded bytes or zeros */
	bool follower;
};

struct cache_stats {
	uint64_t cached_bytes;
	uint64_t dirty_bytes;
	uint64_t entries;
	uint64_t uploads;
	uint64_t upload_bytes;   /* encoded bytes put */
	uint64_t dedup_hits;
	uint64_t fetches;
	uint64_t fetch_bytes;
	uint64_t evictions;
	uint64_t upload_errors;
	uint64_t patches;        /* uploads that were patches */
	uint64_t uploads_in_flight; /* blocks being uploaded now */
	/* when the oldest dirty block became dirty (CLOCK_MONOTONIC ns; a
	 * block left dirty by an earlier run: when the cache opened); 0
	 * when nothing is dirty */
	uint64_t oldest_dirty_ns;
	/* block reads served from the cache (or from a load already under
	 * way), and those that had to fetch their block; holes and inline
	 * files are neither */
	uint64_t read_hits;
	uint64_t read_misses;
};

/*
 * Open the cache: scan dir/blocks, keep cache files of blocks the index
 * says are dirty (they are uploaded again) and the clean ones the last
 * close kept while the index still names their content, delete the
 * rest, and tell the index about dirty blocks whose file is missing (they
 * are lost: their block keeps its last uploaded content).  Starts the
 * upload workers and the fetchers.
 * Store, blob context and index must outlive the cache.
 */
int cache_open(const struct cache_config *cfg, struct store *store,
	       const struct blob_ctx *blob, const struct cache_index_ops *ops,
	       void *index_arg, struct cache **out);
/* Upload everything (unless abandon), stop workers, free; a close that
 * uploaded everything keeps the files of clean blocks for the next open.
 * NULL: no-op.  Returns what cache_flush_all() returned (so far always
 * 0: it waits, retrying failed uploads, until nothing is dirty). */
int cache_close(struct cache *c, int abandon);

/* Read up to len bytes at off of ino whose size is file_size into out.
 * Returns bytes read (short only at EOF) or -errno: a block that cannot
 * be read fails the whole read, whatever came before it. */
ssize_t cache_read(struct cache *c, uint64_t ino, uint64_t off, size_t len,
		   uint64_t file_size, void *out);
/* Write len bytes at off; the index's write_done is called. Returns len
 * or -errno (nothing is acknowledged that is not in the cache file). */
ssize_t cache_write(struct cache *c, uint64_t ino, uint64_t off,
		    const void *data, size_t len);

/*
 * Change the size of ino from old_size to new_size: zero the tail of the
 * new last block, forget cached blocks wholly past it, then call
 * apply(apply_arg) (which records the new size and drops block rows in
 * the index) while no upload can commit for ino.
 */
int cache_truncate(struct cache *c, uint64_t ino, uint64_t old_size,
		   uint64_t new_size, int (*apply)(void *), void *apply_arg);
/* Zero [off, off+len) of ino (size file_size): partial blocks are zeroed
 * in the cache, whole blocks dropped, then apply(first, last) removes the
 * whole blocks [first,last] from the index (not called when none). */
int cache_punch(struct cache *c, uint64_t ino, uint64_t off, uint64_t len,
		uint64_t file_size,
		int (*apply)(void *, uint64_t first, uint64_t last),
		void *apply_arg);
/*
 * Blocks [first, last] of ino get new content in the index (a clone):
 * apply(apply_arg) changes the index while no write or upload can record
 * anything for ino; when it returns 0, the cached blocks of the range are
 * dropped, uploads under way record nothing, and the next read fetches
 * what the index names.  When it fails, the cache is left as it was.
 */
int cache_replace(struct cache *c, uint64_t ino, uint64_t first,
		  uint64_t last, int (*apply)(void *), void *apply_arg);
/* Drop every cached block of ino (deleted file); no upload. */
void cache_forget_inode(struct cache *c, uint64_t ino);
/* Drop the cached blocks [first, last] of ino, clean ones (a follower's:
 * the index names other content for them now); no upload.  A load
 * under way hands what it fetched to its reader only. */
void cache_forget_range(struct cache *c, uint64_t ino, uint64_t first,
			uint64_t last);

/* Upload every block of ino dirty now and wait for it. -EIO (or the
 * store's error) when an upload failed since the call. */
int cache_flush_inode(struct cache *c, uint64_t ino);
/*
 * The journal's barrier (journal_set_gate()): upload every block that a
 * truncate or punch cut since its last upload, wait until the index
 * names the cut content, then return fn(arg), with truncates and punches
 * held back meanwhile.  A journal entry or checkpoint cut by fn thus
 * never records a cut whose block the store has only as it was before:
 * after a lost cache, that block's bytes past the cut would come back
 * once the file grows past them.  Upload errors do not hold fn back.
 */
int cache_cut_barrier(struct cache *c, int (*fn)(void *), void *arg);
/* Upload everything dirty now and wait (failed uploads are retried
 * meanwhile; returns 0).  progress (may be NULL) is called about once a
 * second with the dirty bytes left. */
int cache_flush_all(struct cache *c,
		    void (*progress)(uint64_t left, void *arg), void *arg);

/*
 * Claims on object names, so that the garbage collector never deletes an
 * object while an upload decides it can be reused.  cache_claim blocks
 * while another thread holds the claim on hash.
 */
void cache_claim(struct cache *c, const char *hash);
void cache_unclaim(struct cache *c, const char *hash);

/* The counters above, and a walk of the dirty blocks (under the cache's
 * lock, a few thousand entries at most) for the oldest. */
void cache_get_stats(struct cache *c, struct cache_stats *out);

#endif
