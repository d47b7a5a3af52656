/*
 * meta_vfs.c - SQLite's own unix VFS, with the frames a commit adds to
 * the WAL written by one system call.
 *
 * Purpose
 *   SQLite writes a frame of the write-ahead log as two pwrite(2)s: its
 *   24-byte header, then the page right after it.  A create or an unlink
 *   commits five or six pages, so that was ten or twelve pwrites, each
 *   through the file system's whole write path (the second most costly
 *   system call of the daemon after reading /dev/fuse).  This VFS holds
 *   the writes of a transaction's frames back while each follows the one
 *   before, and writes them in one pwrite at the first one's offset when
 *   the page of the commit frame comes (a frame whose header gives the
 *   database's size after the commit): the same bytes at the same
 *   offsets, in the same order relative to every sync, read, truncate
 *   and lock.  Only the main connection uses it (meta_open()): it is
 *   the only one that writes frames.
 *
 * Data model
 *   struct vfs_file        a WAL file: the unix VFS's file right after
 *                          it, and the bytes held back (pend_off >= 0,
 *                          pend_len of them) in buf
 *   Any other file is opened by the unix VFS in place, with its methods:
 *   this VFS is not in its way at all.
 *
 * Invariants
 *   1. Bytes are held back only while the writes go on one after the
 *      other, up to PEND_MAX, and no longer than the write of a commit
 *      frame's page: that write writes them all before it returns, so a
 *      commit is in the file when SQLite publishes it (in the WAL
 *      index's header), as with the unix VFS.  Any other call (read,
 *      write elsewhere, sync, truncate, size, close, file control) first
 *      writes what is held back, so no call on this file sees it without
 *      a byte written before.  The frames of a transaction written
 *      before its commit (a cache spill) are listed in the WAL index
 *      when their writes return, but no other connection reads a frame
 *      past the last commit, and this one reads through this file.
 *   2. The error of writing held-back bytes is the error of the call
 *      that wrote them; SQLite then rolls the transaction back.
 */
#include "util/compat.h"

#include <pthread.h>
#include <sqlite3.h>

#include "meta/meta_int.h"

#define FRAME_HDR 24 /* WAL_FRAME_HDRSIZE of SQLite's wal.c */
/* The most bytes held back: the unix VFS writes at most 128 KiB - 1 in
 * one call (seekAndWriteFd() masks the length with 0x1ffff; it never
 * writes more than a page), and a longer write fails as a full disk. */
#define PEND_MAX (64 * 1024)

struct vfs_file {
	sqlite3_file base;	/* base.pMethods = &wal_methods */
	sqlite3_file *real;	/* the unix VFS's file, right after this */
	sqlite3_int64 pend_off;	/* offset of the held-back bytes, or -1 */
	size_t pend_len;	/* how many: buf[0, pend_len) */
	bool commit_next;	/* the last write was a commit frame's header */
	unsigned char *buf;
	size_t cap;
};

static sqlite3_vfs *real_vfs;	/* immutable once registered */
static sqlite3_vfs shim_vfs;

static sqlite3_file *real_of(sqlite3_file *f)
{
	return ((struct vfs_file *)f)->real;
}

/* Write what is held back (invariant 1). */
static int pend_flush(struct vfs_file *p)
{
	sqlite3_int64 off = p->pend_off;

	if (off < 0)
		return SQLITE_OK;
	p->pend_off = -1;
	return p->real->pMethods->xWrite(p->real, p->buf, (int)p->pend_len,
					 off);
}

static int vfs_close(sqlite3_file *f)
{
	struct vfs_file *p = (struct vfs_file *)f;
	int rc = pend_flush(p), crc = p->real->pMethods->xClose(p->real);

	sqlite3_free(p->buf);
	p->buf = NULL;
	return rc != SQLITE_OK ? rc : crc;
}

static int vfs_read(sqlite3_file *f, void *out, int n, sqlite3_int64 off)
{
	int rc = pend_flush((struct vfs_file *)f);

	return rc != SQLITE_OK ? rc :
	       real_of(f)->pMethods->xRead(real_of(f), out, n, off);
}

/* Room for n bytes in buf. */
static int pend_reserve(struct vfs_file *p, size_t n)
{
	unsigned char *nb;
	size_t cap = p->cap ? p->cap : 16384;

	if (n <= p->cap)
		return SQLITE_OK;
	while (cap < n)
		cap *= 2;
	nb = sqlite3_realloc64(p->buf, cap);
	if (!nb)
		return SQLITE_NOMEM;
	p->buf = nb;
	p->cap = cap;
	return SQLITE_OK;
}

/* Whether a frame header says its frame commits: its bytes 4-7 (big
 * endian) give the database's size in pages after the commit, 0 in
 * every other frame. */
static bool hdr_commits(const unsigned char *h)
{
	return h[4] | h[5] | h[6] | h[7];
}

static int vfs_write(sqlite3_file *f, const void *data, int n,
		   sqlite3_int64 off)
{
	struct vfs_file *p = (struct vfs_file *)f;
	sqlite3_file *r = p->real;
	size_t at = p->pend_len;
	bool commit = p->commit_next;
	int rc;

	p->commit_next = n == FRAME_HDR && hdr_commits(data);
	if (p->pend_off < 0 || off != p->pend_off + (sqlite3_int64)at ||
	    at + (size_t)n > PEND_MAX) {
		rc = pend_flush(p);
		if (rc != SQLITE_OK)
			return rc;
		at = 0;
	}
	if (n <= 0 || (size_t)n > PEND_MAX ||
	    pend_reserve(p, at + (size_t)n) != SQLITE_OK) {
		rc = pend_flush(p);
		return rc != SQLITE_OK ? rc :
		       r->pMethods->xWrite(r, data, n, off);
	}
	memcpy(p->buf + at, data, (size_t)n);
	if (at == 0)
		p->pend_off = off;
	p->pend_len = at + (size_t)n;
	/* a commit frame's page: the commit is whole in the file when
	 * this returns */
	return commit && n != FRAME_HDR ? pend_flush(p) : SQLITE_OK;
}

static int vfs_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	int rc = pend_flush((struct vfs_file *)f);

	return rc != SQLITE_OK ? rc :
	       real_of(f)->pMethods->xTruncate(real_of(f), size);
}

static int vfs_sync(sqlite3_file *f, int flags)
{
	int rc = pend_flush((struct vfs_file *)f);

	return rc != SQLITE_OK ? rc :
	       real_of(f)->pMethods->xSync(real_of(f), flags);
}

static int vfs_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	int rc = pend_flush((struct vfs_file *)f);

	return rc != SQLITE_OK ? rc :
	       real_of(f)->pMethods->xFileSize(real_of(f), size);
}

static int vfs_lock(sqlite3_file *f, int level)
{
	return real_of(f)->pMethods->xLock(real_of(f), level);
}

static int vfs_unlock(sqlite3_file *f, int level)
{
	return real_of(f)->pMethods->xUnlock(real_of(f), level);
}

static int vfs_check_reserved(sqlite3_file *f, int *out)
{
	return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}

static int vfs_file_control(sqlite3_file *f, int op, void *arg)
{
	int rc = pend_flush((struct vfs_file *)f);

	return rc != SQLITE_OK ? rc :
	       real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}

static int vfs_sector_size(sqlite3_file *f)
{
	return real_of(f)->pMethods->xSectorSize(real_of(f));
}

static int vfs_device_characteristics(sqlite3_file *f)
{
	return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

/* A WAL file has no WAL index and is not mapped: SQLite calls these on
 * the database file only, but a version-3 io_methods must have them. */
static int vfs_shm_map(sqlite3_file *f, int pg, int sz, int extend,
		     void volatile **out)
{
	return real_of(f)->pMethods->xShmMap(real_of(f), pg, sz, extend, out);
}

static int vfs_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	return real_of(f)->pMethods->xShmLock(real_of(f), off, n, flags);
}

static void vfs_shm_barrier(sqlite3_file *f)
{
	real_of(f)->pMethods->xShmBarrier(real_of(f));
}

static int vfs_shm_unmap(sqlite3_file *f, int del)
{
	return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}

static int vfs_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out)
{
	int rc = pend_flush((struct vfs_file *)f);

	return rc != SQLITE_OK ? rc :
	       real_of(f)->pMethods->xFetch(real_of(f), off, n, out);
}

static int vfs_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	return real_of(f)->pMethods->xUnfetch(real_of(f), off, p);
}

static sqlite3_io_methods wal_methods = {
	.iVersion = 3,
	.xClose = vfs_close,
	.xRead = vfs_read,
	.xWrite = vfs_write,
	.xTruncate = vfs_truncate,
	.xSync = vfs_sync,
	.xFileSize = vfs_file_size,
	.xLock = vfs_lock,
	.xUnlock = vfs_unlock,
	.xCheckReservedLock = vfs_check_reserved,
	.xFileControl = vfs_file_control,
	.xSectorSize = vfs_sector_size,
	.xDeviceCharacteristics = vfs_device_characteristics,
	.xShmMap = vfs_shm_map,
	.xShmLock = vfs_shm_lock,
	.xShmBarrier = vfs_shm_barrier,
	.xShmUnmap = vfs_shm_unmap,
	.xFetch = vfs_fetch,
	.xUnfetch = vfs_unfetch,
};

/* A WAL file is wrapped; any other is the unix VFS's own, in place. */
static int vfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f,
		     int flags, int *out_flags)
{
	struct vfs_file *p = (struct vfs_file *)f;
	int rc;

	(void)vfs;
	if (!(flags & SQLITE_OPEN_WAL))
		return real_vfs->xOpen(real_vfs, name, f, flags, out_flags);
	memset(p, 0, sizeof(*p));
	p->real = (sqlite3_file *)(p + 1);
	p->pend_off = -1;
	rc = real_vfs->xOpen(real_vfs, name, p->real, flags, out_flags);
	/* a file SQLite must not close: no methods (as unixOpen does) */
	p->base.pMethods = p->real->pMethods ? &wal_methods : NULL;
	return rc;
}

/* Every other method of the VFS is the unix VFS's (shim_vfs copies it). */
static void vfs_register(void)
{
	real_vfs = sqlite3_vfs_find(NULL);
	if (!real_vfs || real_vfs->iVersion < 1 ||
	    real_vfs->szOsFile < 0)
		return;
	/* a version-3 io_methods forwards to the unix VFS's, which is one */
	shim_vfs = *real_vfs;
	shim_vfs.szOsFile = (int)sizeof(struct vfs_file) + real_vfs->szOsFile;
	shim_vfs.zName = "metafuse-wal";
	shim_vfs.pNext = NULL;
	shim_vfs.xOpen = vfs_open;
	if (sqlite3_vfs_register(&shim_vfs, 0) != SQLITE_OK)
		real_vfs = NULL;
}

const char *meta_vfs_name(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, vfs_register);
	return real_vfs ? shim_vfs.zName : NULL;
}
