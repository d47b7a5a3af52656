/*
 * meta_pend.c - batched write attributes: the size and mtime/ctime of a
 * write that changes nothing else, kept out of SQLite until the next
 * transaction.
 *
 * Purpose
 *   A write into blocks that are already dirty changes only the file's
 *   size (when it grows) and its mtime and ctime.  Recording that in its
 *   own SQLite transaction cost about as much as the write itself (the
 *   WAL append, its locks, the session recorder).  Instead meta keeps the
 *   new values in a record per inode, here, and writes them to the
 *   database in one transaction just before anyone else uses the
 *   database (meta_txn_begin() calls meta_pend_flush_locked()): every
 *   reader, writer, journal cut and checkpoint sees them, so nothing
 *   outside this file knows they were batched.
 *
 * Data model
 *   An array of records {ino, size, time_ns, dirty} in a file mapped
 *   MAP_SHARED beside the database (<db>-pending, one page or two).
 *   Stores into a shared mapping are in the page cache at once, so a
 *   crash of the process (kill -9) loses none of them, exactly like the
 *   WAL's committed transactions, and meta_pend_open() applies what it
 *   finds.  A database in memory keeps the records in memory.
 *
 *   A clean record (dirty 0) only says "ino is a regular file whose
 *   blocks are in use, and its size is size": meta_write_done() and
 *   meta_inline_write() may then skip the database for it.  A dirty
 *   record also holds values newer than the database's.
 *
 * Invariants
 *   1. Before any transaction begins, the dirty records are written in
 *      a transaction of their own (meta_pend_flush_locked()), so what a
 *      record says is never older than the database.  Then all records
 *      are forgotten (meta_txn_begin()), so a transaction that may
 *      change an inode (truncate, unlink, setattr) never runs while a
 *      record of it exists; except for the two transactions that change
 *      only their own inode's size and times, the slow paths of
 *      meta_write_done() and meta_inline_write(), which keep the other
 *      records (META_PEND_KEEP) and leave their own up to date at commit
 *      (meta_pend_note_locked(), a record only for files whose data is
 *      in blocks).  meta_getxattr(), which reads no size or time, does
 *      neither (META_PEND_IGNORE).
 *   2. Kill -9 between that commit and the forgetting leaves dirty
 *      records equal to the database: applying them again is harmless.
 *   3. A record is published by its ino, stored last; the values of a
 *      dirty record are stored before its dirty flag (volatile stores:
 *      the compiler keeps their order).  A crash in the middle of an
 *      update leaves part of a write whose reply was never sent.
 *
 * Errors: a flush that fails (a full disk) keeps the records, dirty, in
 * the file, and fails the transaction that needed it: nobody reads a
 * size or time older than a write that was acknowledged.
 *
 * Locking: every function is called with meta's lock held.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "meta/meta_int.h"
#include "util/log.h"
#include "util/util.h"

#define PEND_MAGIC "mfpend01"
#define PEND_RECS 255

struct pend_rec {
	uint64_t ino;		/* 0: free */
	uint64_t size;
	int64_t time_ns;	/* mtime = ctime */
	uint64_t dirty;		/* 1: newer than the database */
};

struct pend_file {
	char magic[8];
	uint32_t nrec;
	uint32_t pad;
	uint64_t reserved[2];
	struct pend_rec rec[PEND_RECS];
};

struct meta_pend {
	volatile struct pend_file *f;	/* mapped, or malloc'ed */
	bool mapped;
	unsigned n;			/* records in use: rec[0..n) */
	unsigned ndirty;
	sqlite3_stmt *upd;
};

static const char upd_sql[] =
	"UPDATE inode SET size = ?2, mtime_s = ?3, mtime_ns = ?4,"
	" ctime_s = ?3, ctime_ns = ?4"
	" WHERE ino = ?1 AND (mode & 61440) = 32768";

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static int exec(struct meta *m, const char *sql)
{
	int rc = sqlite3_exec(m->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : meta_sql_err(m, rc, sql);
}

static int apply_rec(struct meta *m, uint64_t ino, uint64_t size,
		     int64_t time_ns)
{
	sqlite3_stmt *st = m->pend->upd;
	int64_t s = time_ns / 1000000000LL, ns = time_ns % 1000000000LL;
	int rc;

	if (ns < 0) {
		ns += 1000000000LL;
		s--;
	}
	if (ino > INT64_MAX || size > INT64_MAX)
		return 0; /* not a record we wrote */
	sqlite3_bind_int64(st, 1, (int64_t)ino);
	sqlite3_bind_int64(st, 2, (int64_t)size);
	sqlite3_bind_int64(st, 3, s);
	sqlite3_bind_int64(st, 4, ns);
	rc = meta_step(m, st);
	sqlite3_reset(st);
	return rc < 0 ? rc : 0;
}

/* Forget every record (the database holds what they said). */
static void forget_all(struct meta_pend *p)
{
	unsigned i;

	for (i = 0; i < p->n; i++) {
		p->f->rec[i].dirty = 0;
		p->f->rec[i].ino = 0;
	}
	p->n = 0;
	p->ndirty = 0;
}

/* Apply the dirty records found in the file (left by a crash). */
static int recover(struct meta *m)
{
	volatile struct pend_file *f = m->pend->f;
	unsigned i, found = 0;
	int rc;

	for (i = 0; i < PEND_RECS; i++)
		if (f->rec[i].ino && f->rec[i].dirty)
			found++;
	if (found) {
		rc = exec(m, "BEGIN IMMEDIATE");
		for (i = 0; !rc && i < PEND_RECS; i++)
			if (f->rec[i].ino && f->rec[i].dirty)
				rc = apply_rec(m, f->rec[i].ino,
					       f->rec[i].size,
					       f->rec[i].time_ns);
		if (!rc)
			rc = exec(m, "COMMIT");
		if (rc) {
			if (!sqlite3_get_autocommit(m->db))
				exec(m, "ROLLBACK");
			return rc;
		}
		log_info("meta: %u file size/time update(s) written before "
			 "a crash recovered", found);
	}
	for (i = 0; i < PEND_RECS; i++) {
		f->rec[i].dirty = 0;
		f->rec[i].ino = 0;
	}
	return 0;
}

static int map_file(struct meta_pend *p, const char *db_path)
{
	struct buf path = BUF_INIT;
	struct stat sb;
	void *map;
	int fd, rc = 0;

	if (buf_appendf(&path, "%s-pending", db_path))
		return -ENOMEM;
	fd = open(buf_str(&path), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (fstat(fd, &sb)) {
		rc = -errno;
		goto out_close;
	}
	if ((size_t)sb.st_size != sizeof(struct pend_file) &&
	    ftruncate(fd, sizeof(struct pend_file))) {
		rc = -errno;
		goto out_close;
	}
	map = mmap(NULL, sizeof(struct pend_file), PROT_READ | PROT_WRITE,
		   MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		goto out_close;
	}
	p->f = map;
	p->mapped = true;
	if (memcmp(map, PEND_MAGIC, 8) != 0 ||
	    p->f->nrec != PEND_RECS) {
		/* new, or not ours: start empty */
		memset(map, 0, sizeof(struct pend_file));
		memcpy(map, PEND_MAGIC, 8);
		p->f->nrec = PEND_RECS;
	}
out_close:
	close(fd);
out:
	if (rc)
		log_warn("meta: cannot map %s (%s): every write is its own "
			 "transaction", buf_str(&path), strerror(-rc));
	buf_free(&path);
	return rc;
}

int meta_pend_open(struct meta *m)
{
	struct meta_pend *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return -ENOMEM;
	m->pend = p;
	rc = meta_prepare(m, upd_sql, &p->upd);
	if (rc)
		return rc;
	if (m->path) {
		if (map_file(p, m->path))
			return 0; /* p->f NULL: batching off */
	} else {
		p->f = calloc(1, sizeof(struct pend_file));
		if (!p->f)
			return -ENOMEM;
	}
	return recover(m);
}

void meta_pend_close(struct meta *m)
{
	struct meta_pend *p = m->pend;

	if (!p)
		return;
	if (p->mapped)
		munmap((void *)p->f, sizeof(struct pend_file));
	else
		free((void *)p->f);
	sqlite3_finalize(p->upd);
	free(p);
	m->pend = NULL;
}

int meta_pend_flush_locked(struct meta *m, bool forget)
{
	struct meta_pend *p = m->pend;
	unsigned i;
	int rc;

	if (!p || p->n == 0)
		return 0;
	if (p->ndirty == 0) {
		if (forget)
			forget_all(p);
		return 0;
	}
	rc = exec(m, "BEGIN IMMEDIATE");
	for (i = 0; !rc && i < p->n; i++)
		if (p->f->rec[i].dirty)
			rc = apply_rec(m, p->f->rec[i].ino, p->f->rec[i].size,
				       p->f->rec[i].time_ns);
	if (!rc)
		rc = exec(m, "COMMIT");
	if (rc) {
		/* the records stay: the next transaction tries again */
		if (!sqlite3_get_autocommit(m->db))
			exec(m, "ROLLBACK");
		return rc;
	}
	m->change_count++;
	if (forget) {
		forget_all(p);
		return 0;
	}
	/* the records now equal the database: clean, kept (invariant 2:
	 * a crash here re-applies equal values) */
	for (i = 0; i < p->n; i++)
		p->f->rec[i].dirty = 0;
	p->ndirty = 0;
	return 0;
}

static volatile struct pend_rec *find(struct meta_pend *p, uint64_t ino)
{
	unsigned i;

	if (!p || !p->f)
		return NULL;
	for (i = 0; i < p->n; i++)
		if (p->f->rec[i].ino == ino)
			return &p->f->rec[i];
	return NULL;
}

bool meta_pend_known_locked(struct meta *m, uint64_t ino)
{
	return find(m->pend, ino) != NULL;
}

bool meta_pend_write_locked(struct meta *m, uint64_t ino, uint64_t end,
			    const struct timespec *now)
{
	struct meta_pend *p = m->pend;
	volatile struct pend_rec *r = find(p, ino);

	if (!r || end > INT64_MAX)
		return false;
	if (end > r->size)
		r->size = end;
	r->time_ns = ts_ns(now);
	if (!r->dirty) {
		r->dirty = 1;
		p->ndirty++;
	}
	m->change_count++; /* the journal has something to send */
	return true;
}

void meta_pend_note_locked(struct meta *m, uint64_t ino, uint64_t size,
			   const struct timespec *now)
{
	struct meta_pend *p = m->pend;
	volatile struct pend_rec *r;

	if (!p || !p->f)
		return;
	r = find(p, ino);
	if (r) {
		/* clean: the flush before this transaction wrote it */
		r->size = size;
		r->time_ns = ts_ns(now);
		return;
	}
	if (p->n == PEND_RECS)
		return; /* full: this inode's writes stay transactions */
	r = &p->f->rec[p->n++];
	r->size = size;
	r->time_ns = ts_ns(now);
	r->dirty = 0;
	r->ino = ino;
}
