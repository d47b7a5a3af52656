/*
 * meta_vfs.c - SQLite's own unix VFS, with each WAL frame written by one
 * system call instead of two.
 *
 * Purpose
 *   SQLite writes a frame of the write-ahead log as two pwrite(2)s: its
 *   24-byte header, then the page right after it.  A create or an unlink
 *   commits five or six pages, so that was ten or twelve pwrites, each
 *   through the file system's whole write path (the second most costly
 *   system call of the daemon after reading /dev/fuse).  This VFS holds
 *   a frame header back and writes it together with the page that
 *   follows it, in one pwrite at the header's offset: the same bytes at
 *   the same offsets, in the same order relative to every sync, read,
 *   truncate and lock.  Only the main connection uses it (meta_open()):
 *   it is the only one that writes frames.
 *
 * Data model
 *   struct vfs_file        a WAL file: the unix VFS's file right after
 *                          it, and the header held back (pend_off >= 0)
 *                          in buf, which has room for the page after it
 *   Any other file is opened by the unix VFS in place, with its methods:
 *   this VFS is not in its way at all.
 *
 * Invariants
 *   1. A header is held back only until the next call on its file: a
 *      write at the offset right after it goes out with it, in one
 *      pwrite; any other call (read, write elsewhere, sync, truncate,
 *      size, close, file control) first writes the header alone.  So no
 *      call sees the file without a byte written before it, and when a
 *      frame's write returns, its header and page are in the file, as
 *      with the unix VFS: SQLite publishes a frame (in the WAL index)
 *      only after both of its writes returned.
 *   2. The error of writing a held-back header is the error of the call
 *      that wrote it.
 */
#include "util/compat.h"

#include <pthread.h>
#include <sqlite3.h>

#include "meta/meta_int.h"

#define FRAME_HDR 24 /* WAL_FRAME_HDRSIZE of SQLite's wal.c */

struct vfs_file {
	sqlite3_file base;	/* base.pMethods = &wal_methods */
	sqlite3_file *real;	/* the unix VFS's file, right after this */
	sqlite3_int64 pend_off;	/* offset of the held-back header, or -1 */
	unsigned char *buf;	/* header, then room for cap - FRAME_HDR */
	size_t cap;
};

static sqlite3_vfs *real_vfs;	/* immutable once registered */
static sqlite3_vfs shim_vfs;

static sqlite3_file *real_of(sqlite3_file *f)
{
	return ((struct vfs_file *)f)->real;
}

/* Write the held-back header alone (invariant 1). */
static int pend_flush(struct vfs_file *p)
{
	sqlite3_int64 off = p->pend_off;

	if (off < 0)
		return SQLITE_OK;
	p->pend_off = -1;
	return p->real->pMethods->xWrite(p->real, p->buf, FRAME_HDR, off);
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

/* Room for a header and n bytes after it in buf. */
static int pend_reserve(struct vfs_file *p, size_t n)
{
	unsigned char *nb;

	if (FRAME_HDR + n <= p->cap)
		return SQLITE_OK;
	nb = sqlite3_realloc64(p->buf, FRAME_HDR + n);
	if (!nb)
		return SQLITE_NOMEM;
	p->buf = nb;
	p->cap = FRAME_HDR + n;
	return SQLITE_OK;
}

static int vfs_write(sqlite3_file *f, const void *data, int n,
		   sqlite3_int64 off)
{
	struct vfs_file *p = (struct vfs_file *)f;
	sqlite3_file *r = p->real;
	int rc;

	if (p->pend_off >= 0 && off == p->pend_off + FRAME_HDR &&
	    pend_reserve(p, (size_t)n) == SQLITE_OK) {
		memcpy(p->buf + FRAME_HDR, data, (size_t)n);
		p->pend_off = -1;
		return r->pMethods->xWrite(r, p->buf, FRAME_HDR + n,
					   off - FRAME_HDR);
	}
	rc = pend_flush(p);
	if (rc != SQLITE_OK)
		return rc;
	if (n == FRAME_HDR && pend_reserve(p, 0) == SQLITE_OK) {
		memcpy(p->buf, data, FRAME_HDR);
		p->pend_off = off;
		return SQLITE_OK;
	}
	return r->pMethods->xWrite(r, data, n, off);
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
