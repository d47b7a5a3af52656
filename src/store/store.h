/*
 * store.h - the object store interface.
 *
 * A store holds immutable objects under string keys.  Keys are relative,
 * '/'-separated, made of [A-Za-z0-9._-] segments (no "..", no leading '/'),
 * at most 512 bytes.  metafuse writes an object once and never rewrites it
 * in place, with two exceptions: the volume's "lease" object, which the
 * mounting process writes again each time it takes or renews the lease
 * (volume_lease_take(), volume_lease_renew()), and the descriptor
 * "volume" of an encrypted volume, which `metafuse passwd` rewrites with
 * its key slots.
 *
 * Every backend implements struct store_ops and embeds struct store as its
 * first member ("base"), so a backend can downcast with an assertion on ops.
 * Wrappers (fault injection, counting) are stores that forward to another.
 *
 * Contract for every operation (checked by tests/unit/t_store.c, which runs
 * against every backend):
 *   - all operations are safe to call concurrently from many threads;
 *   - put is atomic: a reader sees the old object, or the whole new one,
 *     never a torn one; when put returns 0 the object is durable;
 *   - get of a missing key returns -ENOENT; a range past the end is clipped
 *     (off >= size yields 0 bytes, not an error);
 *   - del of a missing key returns 0;
 *   - del_many is del for each key, in any order and in as few requests
 *     as the backend can; a key's result is what del would return for it;
 *   - list visits every key that starts with prefix, in lexicographic
 *     order, each exactly once; the callback's non-zero return stops the
 *     listing and is returned by list;
 *   - errors are negative errno values: -ENOENT, -EACCES (refused by the
 *     store), -EIO (store damaged or unreachable after retries), -ENOSPC,
 *     -ENOMEM, -EINVAL (bad key).
 */
#ifndef METAFUSE_STORE_H
#define METAFUSE_STORE_H

#include "util/compat.h"
#include "util/buf.h"
#include "store/store_stats.h"

struct store;

/*
 * A put of data at an address aligned to this may skip the page cache
 * (the local store writes large objects with O_DIRECT: they are not read
 * back soon, the cache has the block).
 */
#define STORE_DIRECT_ALIGN 4096

/* Called once per listed key; return non-zero to stop the listing. */
typedef int (*store_list_cb)(const char *key, uint64_t size, void *arg);

struct store_ops {
	const char *name;
	/* Store len bytes under key, replacing any object there. */
	int (*put)(struct store *s, const char *key, const void *data,
		   size_t len);
	/* Append to out the bytes [off, off+len) of the object (len == 0:
	 * from off to the end). */
	int (*get)(struct store *s, const char *key, uint64_t off, size_t len,
		   struct buf *out);
	/* Remove the object; missing is success. */
	int (*del)(struct store *s, const char *key);
	/* Remove n objects, results[i] for keys[i]; NULL: one del per key. */
	int (*del_many)(struct store *s, const char *const *keys, size_t n,
			int *results);
	/* Visit all keys starting with prefix ("" = all). */
	int (*list)(struct store *s, const char *prefix, store_list_cb cb,
		    void *arg);
	/* Size of the object, -ENOENT when missing. */
	int (*head)(struct store *s, const char *key, uint64_t *size);
	/*
	 * Optional, a put in two steps for store_batch_*() below (NULL: a
	 * batch puts each object at once).  stage writes the object where
	 * no reader finds it and returns its handle; publish makes n staged
	 * objects durable under their keys, results[i] for handles[i] (put's
	 * result), and releases the handles; drop releases one unpublished.
	 */
	int (*stage)(struct store *s, const char *key, const void *data,
		     size_t len, void **handle);
	void (*publish)(struct store *s, void *const *handles, size_t n,
			int *results);
	void (*drop)(struct store *s, void *handle);
	/* Free the store and everything it owns. */
	void (*close)(struct store *s);
};

struct store {
	const struct store_ops *ops;
	/* Human-readable location without secrets ("file:///srv/vol"). */
	char *url;
	/*
	 * The block size a new volume in this store gets when mkfs is not
	 * told one: STORE_BLOCK_LOCAL for a directory, STORE_BLOCK_REMOTE
	 * for S3, where every request costs money and a round trip.
	 */
	uint32_t block_size;
	/*
	 * The requests made and bytes moved since the store was opened
	 * (store_stats.h); a backend points it at counters of its own, a
	 * wrapper at its inner store's.  NULL: not counted.
	 */
	struct store_counters *counters;
};

#define STORE_BLOCK_LOCAL (1U << 20)
#define STORE_BLOCK_REMOTE (4U << 20)

static inline int store_put(struct store *s, const char *key,
			    const void *data, size_t len)
{
	return s->ops->put(s, key, data, len);
}

static inline int store_get(struct store *s, const char *key, uint64_t off,
			    size_t len, struct buf *out)
{
	return s->ops->get(s, key, off, len, out);
}

static inline int store_del(struct store *s, const char *key)
{
	return s->ops->del(s, key);
}

/*
 * Delete n keys in batches where the backend has them (S3's DeleteObjects
 * takes 1,000 per request).  results (may be NULL) gets each key's result;
 * returns 0 when every key was deleted, else the first error.
 */
int store_del_many(struct store *s, const char *const *keys, size_t n,
		   int *results);

static inline int store_list(struct store *s, const char *prefix,
			     store_list_cb cb, void *arg)
{
	return s->ops->list(s, prefix, cb, arg);
}

static inline int store_head(struct store *s, const char *key, uint64_t *size)
{
	return s->ops->head(s, key, size);
}

/*
 * A put batch: many objects made durable together, for less than a put
 * each costs where durability is per file (the local store: each put
 * fsyncs its file and its directory; a batch writes every object, then
 * fsyncs the files while their data goes to the disk together, then each
 * directory once).  store_batch_put() hands one object over (data may be
 * reused when it returns); store_batch_sync() makes every object handed
 * over since the last sync durable, results[i] (may be NULL) the result
 * of the i-th as put would return it, 0 when every one is, else the
 * first error; the batch is then empty.  Until its sync an object may
 * be in the store or not, never torn (a store without stage puts it at
 * once, and the sync returns that put's result).  store_batch_free()
 * drops what was not synced (NULL: no-op).  One thread at a time uses a
 * batch.
 */
struct store_batch;
int store_batch_new(struct store *s, struct store_batch **out);
int store_batch_put(struct store_batch *b, const char *key, const void *data,
		    size_t len);
/* Objects handed over since the last sync. */
size_t store_batch_len(const struct store_batch *b);
int store_batch_sync(struct store_batch *b, int *results);
void store_batch_free(struct store_batch *b);
/* 1 when s stages puts (a batch is cheaper than its puts), else 0. */
int store_batch_native(const struct store *s);

/*
 * Read n objects in order while up to window threads fetch the following
 * ones (store_ahead.c): a restore reads hundreds of small objects, and
 * one at a time each costs a round trip.  keys (and sizes, when not NULL:
 * the objects' sizes from a listing) are borrowed until the end.  At most
 * window objects wait unread, and when sizes are known at most budget
 * bytes of them (one object always goes ahead, whatever its size).
 * store_ahead_next() puts the next object in out (replacing what out held)
 * and returns its get's result; past the last, -ENOENT.
 * store_ahead_end() may come at any point; NULL is a no-op.
 */
struct store_ahead;
int store_ahead_start(struct store *s, const char *const *keys,
		      const uint64_t *sizes, size_t n, unsigned window,
		      uint64_t budget, struct store_ahead **out);
int store_ahead_next(struct store_ahead *a, struct buf *out);
void store_ahead_end(struct store_ahead *a);

/* close(NULL) is a no-op. */
void store_close(struct store *s);

/* 1 if key is well-formed (see above), else 0. */
int store_key_valid(const char *key);

/*
 * Open a store from a location: a path ("/srv/vol", "./vol"),
 * "file:///srv/vol" or "s3://BUCKET[/PREFIX]".  With create != 0 the
 * directory is created when missing; otherwise a missing directory is
 * -ENOENT.  On failure, err (if not NULL) receives a one-line human
 * message.  Caller closes the store.  Same as store_open_opts() with
 * default options.
 */
int store_open(const char *location, int create, struct store **out,
	       struct buf *err);

/* Addressing of S3 buckets: AUTO is path-style for an endpoint that is an
 * IP address or localhost and for a bucket name with '.' or '_',
 * virtual-host style otherwise. */
enum store_s3_addressing {
	STORE_S3_ADDR_AUTO = 0,
	STORE_S3_ADDR_PATH,
	STORE_S3_ADDR_VHOST,
};

/*
 * Options of remote backends; a zeroed struct means "the defaults", which
 * come from the environment the way the AWS CLI finds them
 * (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, AWS_PROFILE
 * with ~/.aws/credentials and ~/.aws/config or AWS_SHARED_CREDENTIALS_FILE
 * and AWS_CONFIG_FILE, AWS_REGION, AWS_ENDPOINT_URL, AWS_CA_BUNDLE).
 * Strings are borrowed for the duration of the open.
 * The file backend ignores them.
 */
struct store_options {
	const char *endpoint;    /* "https://host[:port]"; NULL: environment */
	const char *region;      /* NULL: environment, else us-east-1 */
	enum store_s3_addressing addressing;
	const char *credentials; /* an AWS credentials file (mode 0600) */
	bool no_verify_tls;      /* accept any TLS certificate */
	/* hash every request body into its signature, also over verified
	 * HTTPS and to a loopback endpoint (where it is UNSIGNED-PAYLOAD) */
	bool sign_payload;
	/* PEM file of the CAs to trust instead of the system's; NULL:
	 * AWS_CA_BUNDLE, else the profile's ca_bundle, else the system's */
	const char *ca_bundle;
	bool create_bucket;      /* with create: make the bucket if missing */
	unsigned connections;    /* 0: default (16) */
	uint64_t part_size;      /* multipart above this; 0: 16 MiB */
	unsigned attempts;       /* tries per request; 0: default (8) */
};

int store_open_opts(const char *location, int create,
		    const struct store_options *opts, struct store **out,
		    struct buf *err);

/*
 * S3 backend (store_s3.c).  bucket_and_prefix is "BUCKET[/PREFIX]".  The
 * open checks access at once (a one-key listing) and fails with one line
 * naming the bucket, the endpoint and what the server said.
 */
int store_s3_open(const char *bucket_and_prefix, int create,
		  const struct store_options *opts, struct store **out,
		  struct buf *err);

/* Local-directory backend (store_file.c). root is created when create. */
int store_file_open(const char *root, int create, struct store **out);
/* The fsync(2) calls a file store made since it was opened (for tests
 * and measurements). */
uint64_t store_file_fsyncs(struct store *s);

/*
 * Fault-injecting wrapper (store_fault.c), for tests.  It forwards every
 * call to inner (which it owns and closes) and can be told to fail calls.
 */
enum store_fault_op {
	STORE_OP_PUT = 1 << 0,
	STORE_OP_GET = 1 << 1,
	STORE_OP_DEL = 1 << 2,
	STORE_OP_LIST = 1 << 3,
	STORE_OP_HEAD = 1 << 4,
	STORE_OP_ALL = 0x1f,
	/* the publishing of a batch's staged puts (not in ALL: each is also
	 * counted, and failed, as a PUT when staged) */
	STORE_OP_SYNC = 1 << 5,
};

struct store_fault_counts {
	uint64_t calls[6]; /* indexed by bit position of store_fault_op */
	uint64_t bytes_put;
	uint64_t bytes_got;
	uint64_t failed;
	uint64_t gets_max_in_flight; /* most gets at once in the inner store */
};

int store_fault_wrap(struct store *inner, struct store **out);
/*
 * Fail calls whose op is in ops_mask: skip the next `after` matching calls,
 * then fail `count` of them (count < 0: forever) with -err.  A new call
 * replaces the previous setting; count == 0 disarms.
 */
void store_fault_arm(struct store *s, unsigned ops_mask, uint64_t after,
		     int64_t count, int err);
/* Make puts wait (on) until released (off), to order races in tests;
 * wait_held returns once n puts are waiting. */
void store_fault_hold_puts(struct store *s, int on);
void store_fault_wait_held(struct store *s, unsigned n);
/* While a file exists at path, every call fails with -EIO (the store is
 * "down"); the test suite uses it from outside a daemon through
 * METAFUSE_TEST_STORE_DOWN_FILE.  Call before the store is shared. */
int store_fault_down_while(struct store *s, const char *path);
/* Corrupt every object got from now on by flipping one bit in the middle
 * of the data returned (on/off). */
void store_fault_corrupt_reads(struct store *s, int on);
void store_fault_get_counts(struct store *s, struct store_fault_counts *out);
/* Every get, head and list waits usec first (0: none), as a request to a
 * distant service would. */
void store_fault_read_delay(struct store *s, unsigned usec);

#endif
