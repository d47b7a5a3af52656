/*
 * store_file.c - the local-directory store backend.
 *
 * Data model: key "a/b/c" is the regular file ROOT/a/b/c; the segments
 * before the last one are directories, created on demand by put.  Nothing
 * else is kept: no index, no lock file.  A listing is a recursive walk.
 *
 * put writes ROOT/a/b/.tmp-<pid>-<seq>~ (O_EXCL, so concurrent puts, even
 * of the same key, never share a temp file), fsyncs it, renames it over
 * the key and fsyncs the directory.  rename(2) is atomic, so a reader
 * opens either the old inode or the complete new one; an open reader
 * keeps its inode even when a put replaces the key under it.  A put
 * batch (store.h) does the same in steps: stage writes each temp file
 * and starts its writeback; publish fsyncs the files, renames them, and
 * fsyncs each directory once; a put is a batch of one.
 *
 * Invariants:
 *   1. A temp name is never a valid key segment (it ends in '~'), so list
 *      never reports one and no key can collide with one.  A crash may
 *      leave temp files behind; they are invisible and harmless.
 *   2. When put returns 0 the file, its directory entry and every
 *      directory on the way up to ROOT are durable.  A directory enters
 *      the durable set (dirs) only after this process fsynced its parent
 *      with the directory's entry in it, so a put that finds it there
 *      may skip that fsync; a put racing with the creator of a directory
 *      fsyncs the parent itself.  Such an fsync also enters the parent's
 *      other subdirectories, listed before it began (sync_parent()).
 *   3. del never removes directories.  A directory is therefore never
 *      pulled from under a concurrent put, and an entry of the durable
 *      set stays true unless something outside metafuse removes the
 *      directory (put then finds ENOENT, forgets the entry, recreates
 *      it).
 *   4. list reads and sorts one directory at a time, comparing a
 *      directory's name as "name/", which is exactly the order of the
 *      keys below it.  Callbacks run with no lock held and may call back
 *      into the store.
 *
 * Every call is counted in the store's counters (store_stats.h) as the
 * request S3 would make for it: a put, get, head or del one request
 * (del_many is one del per key), a listing one LIST per 1,000 keys.
 *
 * Limits of the medium: a key cannot be both an object and a "directory"
 * of other keys ("a" and "a/b"); such a put fails with -ENOTDIR or
 * -EISDIR.  Segments longer than NAME_MAX fail with -ENAMETOOLONG.
 * EDQUOT is reported as -ENOSPC.  Deletes are not fsynced: a delete lost
 * in a crash leaves garbage that the next gc removes again.
 */
#include "util/compat.h"

#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "store/store.h"
#include "util/util.h"

#define STORE_KEY_MAX 512
#define FILE_MODE 0600
#define DIR_MODE 0700
#define DURABLE_BUCKETS 64

/* A directory (relative to ROOT) whose entry is known to be durable. */
struct durable_dir {
	struct durable_dir *next;
	size_t len;
	char path[];
};

struct store_file {
	struct store base;
	int root_fd;
	atomic_uint_fast64_t tmp_seq;
	atomic_bool no_direct; /* the file system refused O_DIRECT once */
	atomic_uint_fast64_t fsyncs; /* made since open */
	struct store_counters ctr; /* base.counters points here */
	pthread_mutex_t dirs_lock;
	struct durable_dir *dirs[DURABLE_BUCKETS]; /* protected by dirs_lock */
};

static const struct store_ops store_file_ops;

static struct store_file *file_from_store(struct store *s)
{
	assert(s->ops == &store_file_ops);
	return (struct store_file *)s;
}

static int map_errno(int err)
{
	return err == EDQUOT ? -ENOSPC : -err;
}

static unsigned dir_hash(const char *path, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ (uint8_t)path[i]) * 16777619u;
	return h % DURABLE_BUCKETS;
}

/* Find path in a bucket; the caller holds dirs_lock. */
static struct durable_dir **durable_slot(struct store_file *fs,
					 const char *path, size_t len)
{
	struct durable_dir **pp, *d;

	for (pp = &fs->dirs[dir_hash(path, len)]; (d = *pp); pp = &d->next)
		if (d->len == len && !memcmp(d->path, path, len))
			break;
	return pp;
}

static bool durable_has(struct store_file *fs, const char *path, size_t len)
{
	bool found;

	pthread_mutex_lock(&fs->dirs_lock);
	found = *durable_slot(fs, path, len) != NULL;
	pthread_mutex_unlock(&fs->dirs_lock);
	return found;
}

static void durable_forget(struct store_file *fs, const char *path,
			   size_t len)
{
	struct durable_dir **pp, *d = NULL;

	pthread_mutex_lock(&fs->dirs_lock);
	pp = durable_slot(fs, path, len);
	if (*pp) {
		d = *pp;
		*pp = d->next;
	}
	pthread_mutex_unlock(&fs->dirs_lock);
	free(d);
}

/* Best effort: a failed allocation only costs a later fsync. */
static void durable_add(struct store_file *fs, const char *path, size_t len)
{
	struct durable_dir **pp, *d;

	d = malloc(sizeof(*d) + len + 1);
	if (!d)
		return;
	d->len = len;
	memcpy(d->path, path, len);
	d->path[len] = '\0';
	pthread_mutex_lock(&fs->dirs_lock);
	pp = durable_slot(fs, path, len);
	if (!*pp) {
		d->next = NULL;
		*pp = d;
		d = NULL;
	}
	pthread_mutex_unlock(&fs->dirs_lock);
	free(d);
}

static int open_dir_at(int dfd, const char *path)
{
	int fd = openat(dfd, path,
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* fsync(2) counted (store_file_fsyncs()); errors through map_errno(). */
static int sync_fd(struct store_file *fs, int fd)
{
	atomic_fetch_add(&fs->fsyncs, 1);
	return fsync(fd) < 0 ? map_errno(errno) : 0;
}

/*
 * Make the entries of the directory parent (path[0, plen) below ROOT,
 * "" for ROOT) durable: note its subdirectories, then fsync it, then add
 * them to the durable set.  Every one noted existed before the fsync
 * began, so the fsync made its entry durable, whoever created it: a
 * fresh process putting into a store of many directories (data/00 to
 * data/ff) pays one fsync of their parent, not one per directory.
 * Noting is best effort; the fsync is not.
 */
static int sync_parent(struct store_file *fs, int parent, char *path,
		       size_t plen)
{
	struct dirent *de;
	struct buf names = BUF_INIT;
	const char *n;
	DIR *dir = NULL;
	int fd, rc;

	fd = openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 && !(dir = fdopendir(fd)))
		close(fd);
	while (dir && (de = readdir(dir))) {
		if (de->d_type != DT_DIR || !store_key_valid(de->d_name) ||
		    plen + 1 + strlen(de->d_name) > STORE_KEY_MAX)
			continue;
		if (buf_append(&names, de->d_name, strlen(de->d_name) + 1))
			break;
	}
	if (dir)
		closedir(dir);
	rc = sync_fd(fs, parent);
	for (n = (const char *)names.data; !rc && names.len &&
	     n < (const char *)names.data + names.len; n += strlen(n) + 1) {
		size_t len = plen ? plen + 1 + strlen(n) : strlen(n);

		if (plen)
			path[plen] = '/';
		memcpy(path + (plen ? plen + 1 : 0), n, strlen(n) + 1);
		durable_add(fs, path, len);
	}
	path[plen] = '\0';
	buf_free(&names);
	return rc;
}

/*
 * Create every directory of dir[0, len) below ROOT, making each one's
 * entry durable: a directory not in the durable set is created (or found)
 * and its parent synced (sync_parent(), which adds its siblings too).
 * Returns an open fd of the last one (ROOT when len == 0) or -errno.
 */
static int make_dirs(struct store_file *fs, const char *dir, size_t len)
{
	char path[STORE_KEY_MAX + 1], cur[STORE_KEY_MAX + 1];
	int parent, child, err;
	size_t seg, end;

	if (len == 0)
		return open_dir_at(fs->root_fd, ".");
	memcpy(path, dir, len);
	path[len] = '\0';
	if (durable_has(fs, path, len)) {
		child = open_dir_at(fs->root_fd, path);
		if (child != -ENOENT)
			return child;
		durable_forget(fs, path, len);
	}

	parent = open_dir_at(fs->root_fd, ".");
	if (parent < 0)
		return parent;
	for (seg = 0; seg < len; seg = end + 1) {
		const char *slash = memchr(path + seg, '/', len - seg);

		end = slash ? (size_t)(slash - path) : len;
		memcpy(cur, path, end);
		cur[end] = '\0';
		if (durable_has(fs, cur, end)) {
			child = open_dir_at(parent, cur + seg);
			if (child >= 0)
				goto next;
			if (child != -ENOENT) {
				err = child;
				goto out_close_parent;
			}
			durable_forget(fs, cur, end);
		}
		if (mkdirat(parent, cur + seg, DIR_MODE) < 0 &&
		    errno != EEXIST) {
			err = map_errno(errno);
			goto out_close_parent;
		}
		child = open_dir_at(parent, cur + seg);
		if (child < 0) {
			err = child;
			goto out_close_parent;
		}
		/* Made now, or by someone else who may not have synced yet. */
		cur[seg ? seg - 1 : 0] = '\0';
		err = sync_parent(fs, parent, cur, seg ? seg - 1 : 0);
		if (err) {
			close(child);
			goto out_close_parent;
		}
		durable_add(fs, path, end);
next:
		close(parent);
		parent = child;
	}
	return parent;

out_close_parent:
	close(parent);
	return err;
}

/* write() all of len bytes, retrying on EINTR and short writes; errors
 * through map_errno() (EDQUOT is -ENOSPC).  Not util.h's pwrite_all(),
 * which writes at an offset, maps nothing and takes a 0-byte write for
 * -EIO. */
static int write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return map_errno(errno);
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Write a new object to fd (empty, at offset 0).  A large one whose data
 * is aligned (STORE_DIRECT_ALIGN) goes past the page cache, its aligned
 * head with O_DIRECT and the tail buffered: an uploaded block is not read
 * back soon (the cache has it), and copying it into the page cache and
 * writing it back cost more CPU than the write itself (a third of a
 * sequential write's upload CPU, on a 2-core machine).  A file system
 * that refuses O_DIRECT (EINVAL) gets buffered writes from then on.
 */
#define DIRECT_MIN (256u << 10)

static int write_object(struct store_file *fs, int fd, const void *data,
			size_t len)
{
	size_t head = len & ~(size_t)(STORE_DIRECT_ALIGN - 1);
	int fl, rc;

	if (len < DIRECT_MIN ||
	    ((uintptr_t)data & (STORE_DIRECT_ALIGN - 1)) ||
	    atomic_load(&fs->no_direct))
		return write_all(fd, data, len);
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return map_errno(errno);
	if (fcntl(fd, F_SETFL, fl | O_DIRECT) < 0) {
		atomic_store(&fs->no_direct, true);
		return write_all(fd, data, len);
	}
	rc = write_all(fd, data, head);
	if (fcntl(fd, F_SETFL, fl) < 0 && !rc)
		rc = map_errno(errno);
	if (rc == -EINVAL) { /* refused after all: start again, buffered */
		atomic_store(&fs->no_direct, true);
		if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
			return map_errno(errno);
		return write_all(fd, data, len);
	}
	if (rc)
		return rc;
	return write_all(fd, (const uint8_t *)data + head, len - head);
}

/* Count a call of kind that ended with rc (store_stats.h): "not found"
 * is an answer, anything else failing an error. */
static int counted(struct store_file *fs, enum store_req kind, int rc,
		   uint64_t up, uint64_t down)
{
	store_counters_add(&fs->ctr, kind, up, down);
	if (rc && rc != -ENOENT)
		store_counters_error(&fs->ctr);
	return rc;
}

/* A staged put: its object written to tmp in the directory dfd. */
struct staged {
	int dfd, fd;      /* fd: -1 once closed */
	bool renamed;
	size_t len;       /* the object's */
	size_t dirlen;    /* of key's directory part */
	char tmp[64];
	char key[];
};

static void staged_free(struct staged *st)
{
	if (st->fd >= 0)
		close(st->fd);
	if (!st->renamed)
		unlinkat(st->dfd, st->tmp, 0);
	close(st->dfd);
	free(st);
}

/*
 * Write the object to a new temp file in its directory, and start its
 * writeback (sync_file_range(2): the data of many staged objects goes to
 * the disk together, where one fsync after another wrote each alone).
 */
static int stage_object(struct store_file *fs, const char *key,
			const void *data, size_t len, struct staged **out)
{
	const char *slash;
	struct staged *st;
	size_t klen;
	int rc = 0, tries;

	if (!store_key_valid(key))
		return -EINVAL;
	klen = strlen(key);
	st = malloc(sizeof(*st) + klen + 1);
	if (!st)
		return -ENOMEM;
	memcpy(st->key, key, klen + 1);
	slash = strrchr(key, '/');
	st->dirlen = slash ? (size_t)(slash - key) : 0;
	st->len = len;
	st->renamed = false;
	st->fd = -1;
	st->dfd = make_dirs(fs, key, st->dirlen);
	if (st->dfd < 0) {
		rc = st->dfd;
		free(st);
		return rc;
	}
	/* A stale temp file of a dead process with our pid may exist. */
	for (tries = 0; tries < 100 && st->fd < 0; tries++) {
		snprintf(st->tmp, sizeof(st->tmp), ".tmp-%ld-%" PRIuFAST64 "~",
			 (long)getpid(), atomic_fetch_add(&fs->tmp_seq, 1));
		st->fd = openat(st->dfd, st->tmp,
				O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
				FILE_MODE);
		if (st->fd < 0 && errno != EEXIST)
			break;
	}
	if (st->fd < 0) {
		rc = map_errno(errno);
		close(st->dfd);
		free(st);
		return rc;
	}
	rc = write_object(fs, st->fd, data, len);
	if (rc) {
		staged_free(st);
		return rc;
	}
	/* only a head start: the fsync reports what fails */
	sync_file_range(st->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	*out = st;
	return 0;
}

static bool same_dir(const struct staged *a, const struct staged *b)
{
	return a->dirlen == b->dirlen && !memcmp(a->key, b->key, a->dirlen);
}

/*
 * Publish n staged objects, results[i] for st[i]: fsync every file, then
 * rename each over its key, then fsync each directory once (a crash
 * before a directory's fsync may lose a rename, never a file's data
 * under its key).  Each counts as a put; every st[i] is freed.
 */
static void publish_objects(struct store_file *fs, struct staged *const *st,
			    size_t n, int *results)
{
	size_t i, j;
	int rc;

	for (i = 0; i < n; i++) {
		results[i] = sync_fd(fs, st[i]->fd);
		if (close(st[i]->fd) < 0 && !results[i])
			results[i] = map_errno(errno);
		st[i]->fd = -1;
	}
	for (i = 0; i < n; i++) {
		if (results[i])
			continue;
		if (renameat(st[i]->dfd, st[i]->tmp, st[i]->dfd,
			     st[i]->key + st[i]->dirlen +
			     (st[i]->dirlen ? 1 : 0)) < 0)
			results[i] = map_errno(errno);
		else
			st[i]->renamed = true;
	}
	for (i = 0; i < n; i++) {
		for (j = 0; j < i; j++)
			if (st[j]->renamed && same_dir(st[i], st[j]))
				break;
		if (!st[i]->renamed || j < i)
			continue;
		rc = sync_fd(fs, st[i]->dfd);
		for (j = i; rc && j < n; j++)
			if (st[j]->renamed && same_dir(st[i], st[j]))
				results[j] = rc;
	}
	for (i = 0; i < n; i++) {
		counted(fs, STORE_REQ_PUT, results[i],
			results[i] ? 0 : st[i]->len, 0);
		staged_free(st[i]);
	}
}

/* Errors that mean "there is no object under this key". */
static bool is_missing(int err)
{
	return err == ENOENT || err == ENOTDIR || err == ELOOP;
}

static size_t round_up_direct(size_t n)
{
	return (n + STORE_DIRECT_ALIGN - 1) & ~(size_t)(STORE_DIRECT_ALIGN - 1);
}

/*
 * A whole large object read into an aligned buffer with room for its
 * size rounded up (the last block comes whole) goes past the page cache
 * too: the cache keeps what it fetched, and filling the page cache on the
 * way cost a fifth of a cold read's CPU.  Sets O_DIRECT on fd when so.
 */
static bool direct_read_ok(struct store_file *fs, int fd, uint64_t off,
			   size_t n, const struct buf *out)
{
	if (off != 0 || n < DIRECT_MIN || atomic_load(&fs->no_direct) ||
	    ((uintptr_t)(out->data + out->len) & (STORE_DIRECT_ALIGN - 1)) ||
	    out->cap - out->len - 1 < round_up_direct(n))
		return false;
	if (fcntl(fd, F_SETFL, O_RDONLY | O_DIRECT) < 0) {
		atomic_store(&fs->no_direct, true);
		return false;
	}
	return true;
}

static int file_put(struct store *s, const char *key, const void *data,
		    size_t len)
{
	struct store_file *fs = file_from_store(s);
	struct staged *st;
	int rc = stage_object(fs, key, data, len, &st);

	if (rc)
		return counted(fs, STORE_REQ_PUT, rc, 0, 0);
	publish_objects(fs, &st, 1, &rc);
	return rc;
}

static int file_stage(struct store *s, const char *key, const void *data,
		      size_t len, void **handle)
{
	struct store_file *fs = file_from_store(s);
	struct staged *st;
	int rc = stage_object(fs, key, data, len, &st);

	*handle = rc ? NULL : st;
	return rc ? counted(fs, STORE_REQ_PUT, rc, 0, 0) : 0;
}

static void file_publish(struct store *s, void *const *handles, size_t n,
			 int *results)
{
	publish_objects(file_from_store(s), (struct staged *const *)handles,
			n, results);
}

static void file_drop(struct store *s, void *handle)
{
	staged_free(handle);
}

static int get_object(struct store *s, const char *key, uint64_t off,
		      size_t len, struct buf *out)
{
	struct store_file *fs = file_from_store(s);
	uint64_t avail;
	struct stat st;
	size_t n, got = 0;
	bool direct;
	int fd, rc = 0;

	if (!store_key_valid(key))
		return -EINVAL;
	fd = openat(fs->root_fd, key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return is_missing(errno) ? -ENOENT : map_errno(errno);
	if (fstat(fd, &st) < 0) {
		rc = map_errno(errno);
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -ENOENT;
		goto out_close;
	}
	if (off >= (uint64_t)st.st_size)
		goto out_close;
	avail = (uint64_t)st.st_size - off;
	if (len == 0 || len > avail) {
		if (avail >= SIZE_MAX) {
			rc = -ENOMEM;
			goto out_close;
		}
		n = (size_t)avail;
	} else {
		n = len;
	}
	rc = buf_reserve(out, n);
	if (rc)
		goto out_close;
	direct = direct_read_ok(fs, fd, off, n, out);
	while (got < n) {
		size_t want = direct ? round_up_direct(n) - got : n - got;
		ssize_t r = pread(fd, out->data + out->len + got, want,
				  (off_t)(off + got));

		if (r < 0 && errno == EINVAL && direct) {
			/* refused after all: the rest buffered */
			atomic_store(&fs->no_direct, true);
			direct = false;
			if (fcntl(fd, F_SETFL, O_RDONLY) < 0) {
				rc = map_errno(errno);
				break;
			}
			continue;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = map_errno(errno);
			break;
		}
		/* objects are immutable: shrinking means outside damage */
		if (r == 0) {
			rc = -EIO;
			break;
		}
		got += (size_t)r;
	}
	if (!rc)
		out->len += n;
	out->data[out->len] = 0;
out_close:
	close(fd);
	return rc;
}

static int file_get(struct store *s, const char *key, uint64_t off,
		    size_t len, struct buf *out)
{
	size_t before = out->len;
	int rc = get_object(s, key, off, len, out);

	return counted(file_from_store(s), STORE_REQ_GET, rc, 0,
		       rc ? 0 : out->len - before);
}

static int del_object(struct store *s, const char *key)
{
	struct store_file *fs = file_from_store(s);

	if (!store_key_valid(key))
		return -EINVAL;
	if (unlinkat(fs->root_fd, key, 0) == 0)
		return 0;
	/* a directory is not an object, so "a" is missing when "a/b" exists */
	if (is_missing(errno) || errno == EISDIR)
		return 0;
	return map_errno(errno);
}

static int file_del(struct store *s, const char *key)
{
	return counted(file_from_store(s), STORE_REQ_DELETE,
		       del_object(s, key), 0, 0);
}

static int head_object(struct store *s, const char *key, uint64_t *size)
{
	struct store_file *fs = file_from_store(s);
	struct stat st;

	if (!store_key_valid(key))
		return -EINVAL;
	if (fstatat(fs->root_fd, key, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return is_missing(errno) ? -ENOENT : map_errno(errno);
	if (!S_ISREG(st.st_mode))
		return -ENOENT;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int file_head(struct store *s, const char *key, uint64_t *size)
{
	return counted(file_from_store(s), STORE_REQ_HEAD,
		       head_object(s, key, size), 0, 0);
}

struct list_ent {
	char *name;
	uint64_t size;
	bool dir;
};

struct list_walk {
	store_list_cb cb;
	void *arg;
	uint64_t keys; /* visited: S3 would list them in pages of 1,000 */
	bool stopped;  /* by the callback */
	char key[STORE_KEY_MAX + 2]; /* the current directory's key prefix */
};

/* Order of the keys below: a directory compares as "name/". */
static int list_ent_cmp(const void *pa, const void *pb)
{
	const struct list_ent *a = pa, *b = pb;
	const unsigned char *x = (const unsigned char *)a->name;
	const unsigned char *y = (const unsigned char *)b->name;
	int cx, cy;

	for (;; x++, y++) {
		cx = *x ? *x : (a->dir ? '/' : 0);
		cy = *y ? *y : (b->dir ? '/' : 0);
		if (cx != cy || !*x || !*y)
			break;
	}
	return cx - cy;
}

static void free_ents(struct list_ent *ents, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(ents[i].name);
	free(ents);
}

/* Entries of dir that may hold keys starting with w->key + filter. */
static int read_ents(DIR *dir, size_t keylen, const char *filter,
		     struct list_ent **out, size_t *nout)
{
	struct list_ent *ents = NULL, *e;
	size_t n = 0, cap = 0, flen = strlen(filter), nlen;
	struct dirent *de;
	struct stat st;
	int rc = 0;

	for (;;) {
		errno = 0;
		de = readdir(dir);
		if (!de) {
			rc = errno ? map_errno(errno) : 0;
			break;
		}
		nlen = strlen(de->d_name);
		/* skips ".", "..", temp files and foreign names */
		if (!store_key_valid(de->d_name) ||
		    strncmp(de->d_name, filter, flen) != 0 ||
		    keylen + nlen > STORE_KEY_MAX)
			continue;
		if (fstatat(dirfd(dir), de->d_name, &st,
			    AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			rc = map_errno(errno);
			break;
		}
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;

			e = realloc(ents, ncap * sizeof(*ents));
			if (!e) {
				rc = -ENOMEM;
				break;
			}
			ents = e;
			cap = ncap;
		}
		e = &ents[n];
		e->name = strdup(de->d_name);
		if (!e->name) {
			rc = -ENOMEM;
			break;
		}
		e->dir = S_ISDIR(st.st_mode);
		e->size = e->dir ? 0 : (uint64_t)st.st_size;
		n++;
	}
	if (rc) {
		free_ents(ents, n);
		return rc;
	}
	if (n)
		qsort(ents, n, sizeof(*ents), list_ent_cmp);
	*out = ents;
	*nout = n;
	return 0;
}

/* Walk the directory dfd (consumed), whose keys start with w->key. */
static int walk_dir(struct list_walk *w, int dfd, size_t keylen,
		    const char *filter)
{
	struct list_ent *ents = NULL;
	size_t i, n = 0, nlen;
	DIR *dir;
	int rc, sub;

	dir = fdopendir(dfd);
	if (!dir) {
		rc = map_errno(errno);
		close(dfd);
		return rc;
	}
	rc = read_ents(dir, keylen, filter, &ents, &n);
	for (i = 0; !rc && i < n; i++) {
		nlen = strlen(ents[i].name);
		memcpy(w->key + keylen, ents[i].name, nlen + 1);
		if (!ents[i].dir) {
			w->keys++;
			rc = w->cb(w->key, ents[i].size, w->arg);
			w->stopped = rc != 0;
			continue;
		}
		sub = open_dir_at(dirfd(dir), ents[i].name);
		if (sub == -ENOENT || sub == -ENOTDIR)
			continue;
		if (sub < 0) {
			rc = sub;
			break;
		}
		w->key[keylen + nlen] = '/';
		w->key[keylen + nlen + 1] = '\0';
		rc = walk_dir(w, sub, keylen + nlen + 1, "");
	}
	free_ents(ents, n);
	closedir(dir);
	return rc;
}

static bool prefix_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
	       c == '/';
}

static int list_keys(struct store *s, const char *prefix,
		     struct list_walk *w)
{
	struct store_file *fs = file_from_store(s);
	size_t plen, dlen;
	const char *p, *slash;
	int dfd;

	/* The prefix must be the start of some valid key. */
	if (!prefix)
		prefix = "";
	plen = strlen(prefix);
	if (plen > STORE_KEY_MAX)
		return -EINVAL;
	for (p = prefix; *p; p++)
		if (!prefix_char_ok(*p))
			return -EINVAL;
	slash = strrchr(prefix, '/');
	dlen = slash ? (size_t)(slash - prefix) : 0;
	memcpy(w->key, prefix, dlen);
	w->key[dlen] = '\0';
	if (slash && !store_key_valid(w->key))
		return -EINVAL;

	dfd = open_dir_at(fs->root_fd, slash ? w->key : ".");
	if (dfd < 0)
		return is_missing(-dfd) ? 0 : dfd;
	if (slash) {
		w->key[dlen++] = '/';
		w->key[dlen] = '\0';
	}
	return walk_dir(w, dfd, dlen, slash ? slash + 1 : prefix);
}

static int file_list(struct store *s, const char *prefix, store_list_cb cb,
		     void *arg)
{
	struct store_file *fs = file_from_store(s);
	struct list_walk w = { .cb = cb, .arg = arg };
	int rc = list_keys(s, prefix, &w);
	uint64_t pages = MF_MAX((w.keys + 999) / 1000, 1);

	while (pages-- > 1)
		store_counters_add(&fs->ctr, STORE_REQ_LIST, 0, 0);
	/* what the callback returned is not the store's failure */
	counted(fs, STORE_REQ_LIST, w.stopped ? 0 : rc, 0, 0);
	return rc;
}

static void file_close(struct store *s)
{
	struct store_file *fs = file_from_store(s);
	struct durable_dir *d;
	size_t i;

	for (i = 0; i < DURABLE_BUCKETS; i++) {
		while ((d = fs->dirs[i])) {
			fs->dirs[i] = d->next;
			free(d);
		}
	}
	pthread_mutex_destroy(&fs->dirs_lock);
	close(fs->root_fd);
	free(fs->base.url);
	free(fs);
}

int store_file_open(const char *root, int create, struct store **out)
{
	struct store_file *fs;
	struct buf url = BUF_INIT;
	char *abs;
	int fd, rc;

	*out = NULL;
	if (!root || !*root)
		return -EINVAL;
	if (create) {
		rc = mkdir_p(root, DIR_MODE);
		if (!rc)
			rc = fsync_parent_dir(root);
		if (rc)
			return rc;
	}
	fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return map_errno(errno);

	abs = realpath(root, NULL);
	rc = buf_appendf(&url, "file://%s", abs ? abs : root);
	free(abs);
	if (rc)
		goto out_close_fd;
	fs = calloc(1, sizeof(*fs));
	if (!fs) {
		rc = -ENOMEM;
		goto out_free_url;
	}
	rc = -pthread_mutex_init(&fs->dirs_lock, NULL);
	if (rc)
		goto out_free_fs;
	fs->base.ops = &store_file_ops;
	fs->base.url = (char *)buf_detach(&url, NULL);
	fs->base.block_size = STORE_BLOCK_LOCAL;
	fs->root_fd = fd;
	fs->base.counters = &fs->ctr;
	atomic_init(&fs->tmp_seq, 0);
	atomic_init(&fs->no_direct, false);
	atomic_init(&fs->fsyncs, 0);
	*out = &fs->base;
	return 0;

out_free_fs:
	free(fs);
out_free_url:
	buf_free(&url);
out_close_fd:
	close(fd);
	return rc;
}

uint64_t store_file_fsyncs(struct store *s)
{
	return atomic_load(&file_from_store(s)->fsyncs);
}

static const struct store_ops store_file_ops = {
	.name = "file",
	.put = file_put,
	.get = file_get,
	.del = file_del,
	.list = file_list,
	.head = file_head,
	.stage = file_stage,
	.publish = file_publish,
	.drop = file_drop,
	.close = file_close,
};
