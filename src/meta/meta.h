/*
 * meta.h - the volume's metadata: inodes, directory entries, xattrs, the
 * block map of every file, object reference counts and a few config values.
 *
 * meta/ is the only module that includes <sqlite3.h>.  The live metadata
 * is one SQLite database (WAL, synchronous=NORMAL: a process crash loses
 * no committed transaction) in the cache directory.  Each public function
 * below is one transaction: it either happens whole or not at all.  All
 * functions are thread-safe (one connection behind one mutex); none of
 * them does network I/O.
 *
 * Data model
 *   inode   (ino, mode, uid, gid, nlink, size, rdev, times with ns, parent
 *            directory for directories, symlink target, nblocks)
 *   dentry  (id, parent, name, ino); id is never reused, it is the readdir
 *            cookie, so offsets stay valid while a directory changes.  A
 *            rename keeps the entry's id.
 *   xattr   (ino, name, value)
 *   block   (ino, idx, hash, dirty): block idx of file ino.  hash names the
 *            object in the store holding its last uploaded content (NULL:
 *            none yet).  dirty = 1: the local cache holds newer content
 *            than hash.  A block without a row is a hole (zeros).
 *   patch   (ino, idx, n, hash): the patches of block (ino, idx), applied
 *            over its hash in order of n (blob/patch.h); at most
 *            PATCH_CHAIN_MAX, and only on a block with a hash.
 *   object  (hash, refcount, size, freed_epoch): one row per data object
 *            the volume knows.  refcount = number of block and patch rows
 *            naming it.
 *            When it drops to 0, freed_epoch = the checkpoint sequence
 *            current at that moment; such an object may be deleted from
 *            the store once a checkpoint with a higher sequence is durable
 *            (older checkpoints are deleted first), see meta_gc_list().
 *   snapshot (id, name, ns, jseq), snap_hold (snap, hash): snapshots and
 *            the objects each holds (meta_snap.c).
 *   inline_data (ino, data): the content of a small regular file, kept
 *            here instead of in blocks (see meta_inline_write()).
 *   config  (key, value) text pairs: "format" and "block_size" (set at
 *            creation), "ckpt_seq" (last checkpoint started), "jrnl_seq"
 *            (last journal changeset cut), "durable_seq" (last checkpoint
 *            known to be in the store), "volume_id", and the journal's
 *            own "jrnl_since_*" (volume/journal.c).
 *
 * Invariants (checked by meta_fsck()):
 *   1. nlink of a non-directory = number of dentries naming it; of a
 *      directory = 2 + number of subdirectories (root included).
 *   2. every dentry names an existing inode; every inode with nlink > 0
 *      is reachable; inodes with nlink = 0 are orphans kept only while
 *      open or looked up, and purged with meta_inode_purge().
 *   3. object.refcount = number of block and patch rows with that hash,
 *      plus the snapshots holding it (snap_hold rows, meta_snap.c).
 *   4. inode.nblocks = number of block rows of that inode.
 *   5. no block row has idx >= ceil(size / block_size).
 *   6. every patch row has a block row with a hash.
 *   7. every inline_data row belongs to a regular file without block
 *      rows.
 *
 * Errors: 0 or -errno.  SQLite failures are logged here and returned as
 * -EIO (SQLITE_FULL as -ENOSPC, SQLITE_NOMEM as -ENOMEM).
 */
#ifndef METAFUSE_META_H
#define METAFUSE_META_H

#include "util/compat.h"

#include <sys/types.h>
#include <time.h>

#include "blob/patch.h"
#include "util/buf.h"

#define META_ROOT_INO 1
#define META_NAME_MAX 255
#define META_HASH_LEN 64 /* hex chars of an object name */

struct meta;

struct meta_attr {
	uint64_t ino;
	uint32_t mode; /* type and permission bits, as st_mode */
	uint32_t uid;
	uint32_t gid;
	uint32_t nlink;
	uint64_t size;
	uint64_t rdev;
	uint64_t nblocks; /* block rows (stored or dirty) */
	struct timespec atime;
	struct timespec mtime;
	struct timespec ctime;
};

enum meta_set_flags {
	META_SET_MODE = 1 << 0,
	META_SET_UID = 1 << 1,
	META_SET_GID = 1 << 2,
	META_SET_SIZE = 1 << 3,
	META_SET_ATIME = 1 << 4,
	META_SET_MTIME = 1 << 5,
	META_SET_CTIME = 1 << 6,
};

enum meta_rename_flags {
	META_RENAME_NOREPLACE = 1 << 0,
	META_RENAME_EXCHANGE = 1 << 1,
};

enum meta_xattr_flags {
	META_XATTR_CREATE = 1 << 0,  /* fail with -EEXIST if present */
	META_XATTR_REPLACE = 1 << 1, /* fail with -ENODATA if absent */
};

/*
 * Open (creating when missing, with the root directory owned by uid/gid,
 * mode 0755) the database at path.  block_size is recorded on creation
 * and must match afterwards (-EINVAL otherwise).  path ":memory:" works
 * for tests.  The caller frees with meta_close().
 */
int meta_open(const char *path, uint32_t block_size, uint32_t root_uid,
	      uint32_t root_gid, struct meta **out);
/* meta_close(NULL) is a no-op. */
void meta_close(struct meta *m);
uint32_t meta_block_size(const struct meta *m);

/* ---- config ---- */
/* Text value of key into out (appended); -ENOENT if unset. */
int meta_config_get(struct meta *m, const char *key, struct buf *out);
int meta_config_set(struct meta *m, const char *key, const char *value);
/* Same for integer values; missing key yields def. */
uint64_t meta_config_get_u64(struct meta *m, const char *key, uint64_t def);
int meta_config_set_u64(struct meta *m, const char *key, uint64_t value);
/* n integer values in one transaction. */
int meta_config_set_u64s(struct meta *m, const char *const *keys,
			 const uint64_t *values, size_t n);

/* ---- namespace ---- */
int meta_getattr(struct meta *m, uint64_t ino, struct meta_attr *out);
/* ino's mode (type and permission bits) alone, without writing the
 * batched attributes of writes (meta_getattr() writes them); -ENOENT. */
int meta_getmode(struct meta *m, uint64_t ino, uint32_t *mode);
/* -ENOENT when parent has no such entry, -ENOTDIR when parent is not a
 * directory. name is NUL-terminated, at most META_NAME_MAX bytes
 * (-ENAMETOOLONG past that). */
int meta_lookup(struct meta *m, uint64_t parent, const char *name,
		struct meta_attr *out);

/*
 * Create an inode of type mode & S_IFMT (regular, directory, symlink,
 * fifo, socket, character or block device) named name in parent, with
 * owner uid/gid and all three times = now.  target is the symlink's
 * target (required for S_IFLNK, ignored otherwise; size = its length).
 * A parent with the set-group-ID bit passes its gid on, and to a new
 * directory its S_ISGID bit too.  A new directory has nlink 2 and adds
 * one to its parent's nlink.  The parent's mtime and ctime become now.
 * -EEXIST if the name exists, -ENOTDIR if parent is not a directory,
 * -ENOENT if parent does not exist (or was removed).
 */
int meta_mknod(struct meta *m, uint64_t parent, const char *name,
	       uint32_t mode, uint64_t rdev, uint32_t uid, uint32_t gid,
	       const char *target, const struct timespec *now,
	       struct meta_attr *out);

/* New name for existing non-directory ino (-EPERM for a directory).
 * nlink + 1, ctime = now; parent mtime/ctime = now. */
int meta_link(struct meta *m, uint64_t ino, uint64_t newparent,
	      const char *newname, const struct timespec *now,
	      struct meta_attr *out);

/* Remove a non-directory entry (-EISDIR for a directory).  nlink - 1 and
 * ctime = now on the inode; the inode itself stays, even at nlink 0,
 * until meta_inode_purge().  *ino_out receives the inode number. */
int meta_unlink(struct meta *m, uint64_t parent, const char *name,
		const struct timespec *now, uint64_t *ino_out);

/* Remove an empty directory entry: -ENOTDIR, -ENOTEMPTY.  The directory
 * inode gets nlink 0 (purge it when unreferenced); the parent loses one
 * link.  *ino_out receives the removed directory's inode number. */
int meta_rmdir(struct meta *m, uint64_t parent, const char *name,
	       const struct timespec *now, uint64_t *ino_out);

/*
 * rename(2)/renameat2(2) with the POSIX and Linux errors: -ENOENT (no
 * source), -EEXIST (NOREPLACE and target exists), -ENOENT (EXCHANGE and
 * no target), -EINVAL (a directory moved into its own subtree, or both
 * flags), -ENOTEMPTY (target is a non-empty directory), -EISDIR (source
 * not a directory, target a directory), -ENOTDIR (source a directory,
 * target not).  Same inode on both sides: success, nothing changes.
 * A replaced target loses one link (a directory: nlink 0) and its number
 * is returned in *replaced_ino (0 if none) so the caller can purge it
 * when unreferenced.  Link counts of both parents follow moved
 * directories; ctime of moved inodes and mtime/ctime of both parents =
 * now.  One transaction, whatever the size of a moved directory.
 */
int meta_rename(struct meta *m, uint64_t parent, const char *name,
		uint64_t newparent, const char *newname, unsigned flags,
		const struct timespec *now, uint64_t *replaced_ino);

/*
 * Set the fields named by to_set (enum meta_set_flags) from in.  With
 * META_SET_SIZE, block rows wholly past the new size are removed (and
 * their objects' refcounts decremented); zeroing the tail of the last
 * block is the cache's job, before this call.  ctime is set to *now
 * whenever anything changes unless META_SET_CTIME gives it explicitly.
 * out receives the new attributes.
 */
int meta_setattr(struct meta *m, uint64_t ino, const struct meta_attr *in,
		 unsigned to_set, const struct timespec *now,
		 struct meta_attr *out);

/* After a write of [.., end): size = max(size, end); mtime = ctime = now.
 * Blocks idx[0..n) are marked dirty (rows created with hash NULL when
 * missing) in the same transaction.  With n == 0, for a file a write
 * already recorded, there may be no transaction: the size and times wait
 * in a crash-safe record for the next transaction (meta_pend.c); every
 * later call sees them. */
int meta_write_done(struct meta *m, uint64_t ino, uint64_t end,
		    const struct timespec *now, const uint64_t *idx, size_t n);

/*
 * Inline data: a regular file of at most `max` bytes written while it
 * was empty keeps its content in the database instead of blocks (no
 * cache file, no object; it reaches the store with the metadata).  An
 * inline file has no block rows; bytes past its data and below its size
 * read as zeros.
 *
 * meta_inline_write(): the write of [off, off+len) as one transaction
 * (size, mtime, ctime like meta_write_done) when the file is inline or
 * empty without blocks and the write ends within max: 1.  0: not inline
 * (write blocks).  2: inline but the write goes past max: move it to
 * block 0 first (meta_inline_to_block(), which marks block 0 dirty in the
 * same transaction that drops the inline data: the caller has put the
 * data into its cache before).
 * meta_inline_read(): the data, -ENOENT when not inline.
 * meta_inline_cut(): keep at most size bytes (size 0: no longer inline),
 * zero [zero_off, zero_off+zero_len); no-op when not inline.
 */
int meta_inline_write(struct meta *m, uint64_t ino, uint64_t off,
		      const void *data, size_t len, size_t max,
		      const struct timespec *now);
int meta_inline_read(struct meta *m, uint64_t ino, struct buf *out);
int meta_inline_to_block(struct meta *m, uint64_t ino);
int meta_inline_cut(struct meta *m, uint64_t ino, uint64_t size,
		    uint64_t zero_off, uint64_t zero_len);

/* The relatime rule: a read at now updates atime when atime <= mtime,
 * atime <= ctime, or atime is more than a day old. */
bool meta_atime_due(const struct meta_attr *a, const struct timespec *now);
/* relatime: set atime = now if meta_atime_due().  No-op otherwise. */
int meta_touch_atime(struct meta *m, uint64_t ino, const struct timespec *now);

/* Symlink target into out (appended). -EINVAL if not a symlink. */
int meta_readlink(struct meta *m, uint64_t ino, struct buf *out);

/*
 * Directory listing: entries of dir whose cookie is > off, in cookie
 * order.  cb gets each name, its attributes and its cookie (pass the
 * cookie back as off to continue after it); a non-zero return stops the
 * listing (and is not an error).  "." and ".." are not listed: cookies
 * start at 3, the caller uses 1 and 2 for them.  -ENOTDIR.
 */
typedef int (*meta_readdir_cb)(const char *name, const struct meta_attr *attr,
			       uint64_t cookie, void *arg);
int meta_readdir(struct meta *m, uint64_t dir, uint64_t off,
		 meta_readdir_cb cb, void *arg);
/* The highest cookie any directory entry has now.  Entries created later
 * get higher cookies: a reader that stops here never chases the entries
 * it creates itself while listing (which would not end). */
int meta_last_cookie(struct meta *m, uint64_t *cookie);
/* The parent directory of directory ino (the root's is itself). */
int meta_parent(struct meta *m, uint64_t dir, uint64_t *parent);

/* Remove an inode with nlink 0 and everything it owns (blocks, xattrs),
 * decrementing object refcounts.  -EBUSY if nlink > 0; -ENOENT if gone. */
int meta_inode_purge(struct meta *m, uint64_t ino);
/* The same for each of inos, in one transaction; one with nlink > 0 or
 * gone is left as it is.  An error undoes them all. */
int meta_inodes_purge(struct meta *m, const uint64_t *inos, size_t n);
/* Visit every inode with nlink 0 (left by a crash). */
int meta_orphans(struct meta *m, int (*cb)(uint64_t ino, void *arg),
		 void *arg);

/* ---- xattrs ---- */
int meta_setxattr(struct meta *m, uint64_t ino, const char *name,
		  const void *value, size_t len, unsigned flags,
		  const struct timespec *now);
/* used[i]: whether some inode has an xattr called names[i] (n at most
 * 16; one scan of the xattr table).  0 or -errno. */
int meta_xattr_names_used(struct meta *m, const char *const *names,
			  size_t n, bool *used);
/* Value appended to out; -ENODATA if absent. */
int meta_getxattr(struct meta *m, uint64_t ino, const char *name,
		  struct buf *out);
/* All names, each followed by NUL, appended to out. */
int meta_listxattr(struct meta *m, uint64_t ino, struct buf *out);
int meta_removexattr(struct meta *m, uint64_t ino, const char *name,
		     const struct timespec *now);

/* ---- block map ---- */
/* hash receives the hex name (META_HASH_LEN+1 bytes, "" if NULL) and
 * *dirty the flag.  -ENOENT when the block has no row (a hole). */
int meta_block_get(struct meta *m, uint64_t ino, uint64_t idx, char *hash,
		   int *dirty);
/*
 * Record the result of an upload of block (ino, idx): hash (NULL: the
 * content was all zeros, the block becomes a hole) of `size` stored bytes.
 * Only valid while the row exists with dirty = 1; otherwise (truncated or
 * purged meanwhile) returns -ESTALE and only makes sure an object row for
 * hash exists (refcount 0, so GC frees it).  Otherwise the row's hash
 * becomes hash (object refcounts adjusted: new + 1, inserted when missing;
 * old - 1) and dirty becomes still_dirty (the cache was written again
 * during the upload).  A NULL hash with still_dirty = 0 deletes the row.
 */
int meta_block_commit(struct meta *m, uint64_t ino, uint64_t idx,
		      const char *hash, uint64_t size, int still_dirty);
/* A block with its patches: struct patch_chain (blob/patch.h). */
/* -ENOENT when the block has no row (a hole); -EIO when it has more than
 * PATCH_CHAIN_MAX patches. */
int meta_block_chain(struct meta *m, uint64_t ino, uint64_t idx,
		     struct patch_chain *out);
/*
 * Record the upload of a patch of block (ino, idx), written on the object
 * below: like meta_block_commit(), but the patch is appended to the
 * block's chain (its object referenced) instead of replacing the block's
 * content.  -ESTALE as there; -EILSEQ when below is not the top of the
 * block's chain (the block is then left alone, the object recorded for
 * garbage collection: upload the block whole).
 */
int meta_block_patch(struct meta *m, uint64_t ino, uint64_t idx,
		     const char *below, const char *hash, uint64_t size,
		     int still_dirty);
/* A dirty block whose written data is lost keeps its last uploaded
 * content: it becomes clean (a row without hash is removed). */
int meta_block_reset(struct meta *m, uint64_t ino, uint64_t idx);
/* Record an uploaded object no block references (refcount 0, so garbage
 * once a newer checkpoint is durable); an existing row is kept. */
int meta_object_note(struct meta *m, const char *hash, uint64_t size);
/* Remove block rows [first, last] of ino (hole punching). */
int meta_block_drop(struct meta *m, uint64_t ino, uint64_t first,
		    uint64_t last);
/*
 * lseek(SEEK_DATA) (hole false) and lseek(SEEK_HOLE) (hole true) of
 * regular file ino from off (meta_seek.c): *out = the first byte at or
 * after off that is data (a block with a row, or an inline file's data),
 * or that is in a hole (a block without a row, or the end of the file).
 * -ENXIO when off >= size, or for data when there is none after off;
 * -EISDIR / -EINVAL for a directory / another kind of inode.  Reads the
 * block table through its key from off's block on: a hole costs nothing,
 * a run of data one row per block up to its end (SEEK_HOLE only).
 */
int meta_seek(struct meta *m, uint64_t ino, uint64_t off, bool hole,
	      uint64_t *out);
/* Visit every dirty block. */
int meta_blocks_dirty(struct meta *m,
		      int (*cb)(uint64_t ino, uint64_t idx, void *arg),
		      void *arg);
/* How many blocks of ino are dirty (the cache's self-check after a
 * flush: each is in the cache, dirty). */
int meta_inode_dirty_count(struct meta *m, uint64_t ino, uint64_t *n);
/* Visit every block that has patches (fsck --verify-data follows their
 * chains: meta_block_chain()). */
int meta_blocks_patched(struct meta *m,
			int (*cb)(uint64_t ino, uint64_t idx, void *arg),
			void *arg);
/* The local cache is gone: rows with NULL hash are deleted, the others
 * become clean, except those of a block that reaches past its file's end:
 * their last upload may predate a truncate that cut them, so they stay
 * dirty, and the cache fetches them and cuts them again when it opens.
 * Returns the number of dirty blocks that were lost (>= 0) or -errno. */
int64_t meta_blocks_forget_dirty(struct meta *m);

/* ---- objects and garbage ---- */
/* -ENOENT when unknown; else *refcount. */
int meta_object_get(struct meta *m, const char *hash, uint64_t *refcount);
/* Up to limit hashes with refcount 0 and freed_epoch < durable_seq. */
int meta_gc_list(struct meta *m, uint64_t durable_seq, size_t limit,
		 int (*cb)(const char *hash, void *arg), void *arg);
/* Garbage that waits for a checkpoint newer than durable_seq before
 * meta_gc_list() gives it: objects with refcount 0 and freed_epoch >=
 * durable_seq, their number and stored bytes. */
int meta_gc_waiting(struct meta *m, uint64_t durable_seq, uint64_t *count,
		    uint64_t *bytes);
/* Bytes of the database's pages in use (free pages left out): about what
 * a checkpoint copies, before compression. */
int meta_db_bytes(struct meta *m, uint64_t *bytes);
/* Forget an object deleted from the store: removes its row if refcount
 * is still 0.  Returns 1 if removed, 0 if it was referenced again. */
int meta_gc_forget(struct meta *m, const char *hash);

/* ---- whole-database ---- */
struct meta_stats {
	uint64_t inodes;
	uint64_t objects;
	uint64_t object_bytes; /* stored bytes of referenced objects */
	uint64_t blocks;       /* block rows */
	uint64_t dirty_blocks;
};
int meta_stats(struct meta *m, struct meta_stats *out);
/* Write a consistent copy of the database to path (VACUUM INTO).  path
 * must not exist. */
int meta_snapshot(struct meta *m, const char *path);
/*
 * The journal (meta_journal.c).  After meta_journal_start() every change
 * to the volume's tables is recorded.  meta_journal_cut() appends to cs
 * the changeset of everything recorded since the previous cut (nothing
 * when there was no change) and sets *jseq to the journal sequence number
 * of that changeset (config "jrnl_seq", bumped only when cs grew).  With
 * snap_path it also bumps "ckpt_seq" (into *ckpt_seq) and writes a copy
 * of the database as of exactly that cut to snap_path, which must not
 * exist.  meta_journal_apply() applies one changeset in one transaction;
 * any conflict aborts it (-EIO): journal entries apply in order or not at
 * all.
 */
int meta_journal_start(struct meta *m);
int meta_journal_cut(struct meta *m, struct buf *cs, uint64_t *jseq,
		     const char *snap_path, uint64_t *ckpt_seq);
int meta_journal_apply(struct meta *m, const void *cs, size_t len);
/* Whether changes were recorded since the last cut. */
bool meta_journal_has_changes(struct meta *m);
/*
 * The times of the journal (table jtime, meta_journal.c): every cut with
 * changes records its entry's sequence and wall time (Unix ns, strictly
 * increasing) in the database, inside that entry.  meta_journal_time():
 * the newest entry's (-ENOENT: none recorded, *seq = *ns = 0).
 * meta_journal_cs_time(): the time a changeset carries (-ENOENT: none,
 * written before times were; -EIO: damaged).  meta_journal_times_init()
 * creates the table (meta_journal_start() does too), so that a database
 * restored from an older checkpoint records the times of the entries
 * applied to it.  meta_journal_now_ns() is the clock of these times,
 * meta_journal_set_clock() replaces it (tests; NULL: the real clock).
 */
int meta_journal_time(struct meta *m, uint64_t *seq, int64_t *ns);
int meta_journal_cs_time(const void *cs, size_t len, int64_t *ns);
int meta_journal_times_init(struct meta *m);
int64_t meta_journal_now_ns(void);
void meta_journal_set_clock(int64_t (*now_ns)(void));

/*
 * Followers (meta_journal.c): a read-only mount that applies the journal
 * a writer elsewhere sends.  What a changeset changed, as the kernel and
 * the cache must hear of it: the inodes whose attributes, data, xattrs
 * or link count changed (sorted, unique), their blocks whose content
 * changed (block or patch rows; sorted, unique) and the names added or
 * removed (parent, name; old and new of a rename).  Owned by the struct;
 * meta_changes_free() frees it (and zeroes it).
 */
struct meta_block_key {
	uint64_t ino, idx;
};
struct meta_name_key {
	uint64_t parent;
	char *name; /* NUL-terminated */
};
struct meta_changes {
	uint64_t *inodes;
	size_t ninodes, cap_inodes;
	struct meta_block_key *blocks;
	size_t nblocks, cap_blocks;
	struct meta_name_key *names;
	size_t nnames, cap_names;
};
void meta_changes_free(struct meta_changes *ch);
/*
 * The changes of changeset cs (len bytes) into out (appended to), as of
 * m's state before it is applied: the unchanged columns of a renamed
 * entry are read from m.  0, -EIO (not a changeset) or -ENOMEM.
 */
int meta_changes_of(struct meta *m, const void *cs, size_t len,
		    struct meta_changes *out);
/*
 * From now on meta_journal_apply() tells fn(arg, ch) what each changeset
 * it applied changed (after the commit, without m's lock), and
 * fn(arg, NULL) when one did not apply.  fn NULL: no longer.  Set while
 * no apply runs.
 */
typedef void meta_applied_fn(void *arg, const struct meta_changes *ch);
void meta_journal_on_apply(struct meta *m, meta_applied_fn *fn, void *arg);
/*
 * Append to cs the changeset that turns m's volume tables (all but
 * config) into those of the database file at path (the same schema: a
 * restored checkpoint): a follower that missed journal entries catches
 * up with it, through meta_journal_apply(), without reopening.
 */
int meta_journal_diff(struct meta *m, const char *path, struct buf *cs);
/* A counter bumped by every committed change; lets the checkpointer skip
 * idle periods. */
uint64_t meta_change_count(struct meta *m);

/*
 * Snapshots (meta_snap.c): a snapshot holds every object named by block
 * and patch rows at its creation (one snap_hold row each), and each hold
 * counts in object.refcount like a block row (invariant 3), so GC keeps
 * them until the snapshot is dropped.
 */
#define META_SNAP_NAME_MAX 255
struct meta_snap {
	uint64_t id;	  /* never reused; names its copy in the store */
	char name[META_SNAP_NAME_MAX + 1];
	int64_t time_ns;  /* when it was made (Unix ns) */
	uint64_t jseq;	  /* the journal entry that carries it */
	uint64_t objects; /* objects it holds */
	uint64_t alone_bytes; /* stored bytes of those only it holds */
};
/* 0 for a valid name; -EINVAL: empty, '/' or a control character;
 * -ENAMETOOLONG: more than META_SNAP_NAME_MAX bytes. */
int meta_snap_name_check(const char *name);
/*
 * One transaction: the snapshot name made at time_ns, holding every
 * object the volume names now.  With copy_path (which must not exist),
 * a copy of the database as of exactly that transaction is written
 * there (a file database is copied after the lock is released).  out
 * (may be NULL) gets the new row.  -EEXIST: the name exists; errors of
 * meta_snap_name_check(); nothing is left made on failure.
 */
int meta_snap_create(struct meta *m, const char *name, int64_t time_ns,
		     const char *copy_path, struct meta_snap *out);
/* Drop snapshot id and its holds (objects at 0 get a freed epoch as a
 * block's would).  -ENOENT: no such snapshot. */
int meta_snap_drop(struct meta *m, uint64_t id);
/* One snapshot by id or by name; -ENOENT when there is none. */
int meta_snap_get(struct meta *m, uint64_t id, struct meta_snap *out);
int meta_snap_find(struct meta *m, const char *name, struct meta_snap *out);
/* Up to max snapshots with ids above after_id, in id order (oldest
 * first); *n gets how many. */
int meta_snap_list(struct meta *m, uint64_t after_id, struct meta_snap *out,
		   size_t max, size_t *n);

/*
 * Check invariants 1-7 above.  Each problem found is reported through
 * report (one line of text, no newline).  With repair, fixes what it can:
 * recounts link counts, refcounts and nblocks, removes dangling entries,
 * blocks past EOF or of no regular file, patches without a base and stray
 * inline data, links unreachable inodes into /lost+found (created when
 * needed) named by inode number.  Returns the number of problems
 * found (>= 0) or -errno.
 */
int meta_fsck(struct meta *m, int repair,
	      void (*report)(const char *line, void *arg), void *arg);
/* Visit every object name referenced by a block row (for checks against
 * the store). */
int meta_objects(struct meta *m,
		 int (*cb)(const char *hash, uint64_t refcount, void *arg),
		 void *arg);

/* ---- clones (meta_clone.c) ---- */
/*
 * Blocks [sfirst, sfirst + n) of regular file src become blocks [dfirst,
 * dfirst + n) of regular file dst, naming the same objects: block and
 * patch rows are copied (clean), and each object's refcount grows by the
 * rows that now name it (invariant 3 holds: a shared object is freed
 * only when its last holder lets go).  dst's rows in its range go first
 * (their objects released); a hole of src becomes a hole of dst.  dst's
 * size becomes max(size, end), its mtime and ctime now.  One transaction.
 * -EAGAIN: a block of src in the range is dirty (its content is only in
 * the cache: upload it, then call again); -EOPNOTSUPP: src or dst keeps
 * inline data (copy the bytes instead); -EISDIR, -EINVAL: not regular
 * files, end not reaching into dst's last new block, src's range past
 * its size, or two overlapping ranges of one file; -ENOENT.
 */
int meta_clone_blocks(struct meta *m, uint64_t src, uint64_t sfirst,
		      uint64_t dst, uint64_t dfirst, uint64_t n, uint64_t end,
		      const struct timespec *now);

/* Who asks for a tree clone: the permissions it checks are theirs. */
struct meta_caller {
	uint32_t uid, gid;
	const uint32_t *groups; /* supplementary groups, ngroups of them */
	size_t ngroups;
};

/* Whether who may do want (R_OK, W_OK, X_OK bits) on a, as the
 * kernel's default_permissions decides (root: anything but executing a
 * file no one may execute). */
bool meta_caller_may(const struct meta_caller *who, const struct meta_attr *a,
		     unsigned want);

struct meta_clone_stats {
	uint64_t inodes; /* inodes made (a hard link inside the tree: one) */
	uint64_t blocks; /* block rows that share an object */
};

/*
 * A copy of the tree at src (a directory with everything below it, or
 * one inode of any type) named name in directory dparent, as `cp -a`
 * run by who would make it, in one transaction: types, modes, sizes,
 * symlink targets, device numbers, xattrs, atime and mtime kept (ctime
 * now); inline data copied; blocks shared (as meta_clone_blocks()); a
 * file with several names inside the tree keeps them as hard links of
 * one new inode (links from outside the tree are not followed: the copy
 * has only the names inside it).  Owner and group are kept for root;
 * for anyone else the copy is theirs, with the source's group when they
 * are in it, and loses its set-user-ID and set-group-ID bits when either
 * changed, and its security.* and trusted.* xattrs (file capabilities:
 * only root may set them).  dparent's mtime and ctime become now.
 * Errors (nothing changed): -ENOENT (src or dparent gone), -ENOTDIR,
 * -EEXIST (name taken), -EINVAL (bad name, or dparent is src or inside
 * it), -ENAMETOOLONG, -EACCES (who may not read a file, list or search
 * a directory of the tree, search dparent's ancestors, or write
 * dparent), -EPERM (a device node, and who is not root), -EAGAIN (files
 * of the tree have dirty blocks: up to dirty_max of their numbers are
 * put in dirty, how many there are in *ndirty; upload them and call
 * again).
 */
int meta_clone_tree(struct meta *m, uint64_t src, uint64_t dparent,
		    const char *name, const struct meta_caller *who,
		    const struct timespec *now, struct meta_attr *out,
		    struct meta_clone_stats *stats, uint64_t *dirty,
		    size_t dirty_max, size_t *ndirty);

#endif
