/*
 * s3_int.h - internals shared by the files of the S3 backend only
 * (store_s3.c, s3_conf.c, s3_http.c).  Nothing else may include it: it
 * brings in curl and libxml2, which no other part of metafuse sees.
 *
 * struct store_s3 is the backend's store.  Its configuration (the fields
 * from origin to attempts) is written once by open (store_s3_open(),
 * s3_conf_apply()) before the store is shared, and only read afterwards;
 * the pool fields are protected by pool_lock; the counters are atomic.
 *
 * struct s3_xfer is one request: what to send, set by the caller; the
 * state of the attempt in flight; what came back, set by s3_request().
 */
#ifndef METAFUSE_S3_INT_H
#define METAFUSE_S3_INT_H

#include "util/compat.h"

#include <pthread.h>
#include <stdatomic.h>

#include <curl/curl.h>
#include <libxml/tree.h>

#include "store/sigv4.h"
#include "store/store.h"
#include "util/buf.h"

enum s3_method { M_GET, M_PUT, M_HEAD, M_DELETE, M_POST, M_COUNT };

struct store_s3 {
	struct store base;
	char *origin;      /* "http://127.0.0.1:8000" (no trailing '/') */
	char *host;        /* the Host header */
	char *path_base;   /* "/bucket" (path style) or "" */
	char *bucket;
	char *prefix;      /* "" or "some/prefix/" */
	char *endpoint;    /* for messages */
	char *region;
	char *access_key;
	char *secret_key;  /* never logged */
	char *token;       /* session token or NULL; never logged */
	bool verify_tls;
	bool loopback;         /* the endpoint is localhost or 127/8, ::1 */
	/* verified HTTPS or loopback (and no sign_payload): the body is not
	 * hashed into the signature */
	bool unsigned_payload;
	char *ca_bundle;   /* CAs to trust instead of the system's, or NULL */
	uint64_t part_size;
	unsigned attempts;
	bool opened; /* the access check passed */
	atomic_bool no_batch_delete; /* the server refused DeleteObjects */

	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	CURL **idle;       /* protected by pool_lock */
	unsigned nidle;    /* protected by pool_lock */
	unsigned nopen;    /* protected by pool_lock */
	unsigned max_conns;
	pid_t owner;       /* protected by pool_lock; see pool_take */

	/* the store's counters (base.counters points here, store_stats.h)
	 * and, for the log line of a session, these by HTTP method */
	struct store_counters ctr;
	atomic_uint_fast64_t requests[M_COUNT];
	atomic_uint_fast64_t retries;
	atomic_uint_fast64_t bytes_sent;
	atomic_uint_fast64_t bytes_received;
};

struct s3_xfer {
	/* what to send */
	enum s3_method method;
	const char *key;  /* full object key (with prefix); NULL: the bucket */
	const struct sigv4_kv *query;
	size_t nquery;
	const uint8_t *body;
	size_t body_len;
	const char *range; /* "bytes=a-b" or NULL */
	const char *content_md5; /* base64, or NULL */
	struct buf *out;   /* a 2xx body is appended here (NULL: dropped) */
	bool quiet_404;    /* a 404 is an expected answer: do not log it */
	bool quiet;        /* the caller reports failures (open's check) */
	bool fast_fail;    /* give up after 2 tries when nothing listens */

	/* while running */
	CURL *h;
	size_t body_pos;
	size_t out_base;

	/* what came back */
	CURLcode cc;
	long status;
	struct buf err_body; /* a non-2xx body, capped */
	char etag[128];
	char request_id[128];
	char curl_err[CURL_ERROR_SIZE];
	char code[64];       /* S3 error Code, "" if none */
	char message[256];   /* S3 error Message */
	uint64_t content_length;
};

/* ---- s3_http.c: the handle pool, one request, S3's XML ---- */

/* curl_global_init and xmlInitParser, once per process.  0, or -EIO
 * when curl cannot be initialised (then on every call). */
int s3_http_init(void);
/* Make the pool of s->max_conns handles (none open yet), owned by this
 * process.  0 or -ENOMEM. */
int s3_pool_init(struct store_s3 *s);
/* Close the idle handles and free the pool; a no-op when s3_pool_init
 * did not succeed. */
void s3_pool_release(struct store_s3 *s);
/*
 * Send x with retries, up to attempts tries; returns 0 for a 2xx answer,
 * else -errno (and x holds the last answer).  A status equal to ok_extra
 * (416 for ranged reads) also counts as an answer, returned as 0.
 */
int s3_request(struct store_s3 *s, struct s3_xfer *x, unsigned attempts,
	       long ok_extra);
/* Free what s3_request left in x (not x itself). */
void s3_xfer_release(struct s3_xfer *x);
/* Append one line describing what went wrong with x, for logs and
 * messages. */
void s3_describe(const struct s3_xfer *x, struct buf *b);
/* An S3 error code that says "try again" (SlowDown and the like). */
bool s3_retryable_code(const char *code);
/* Sleep before try attempt + 1: full jitter over a ceiling that doubles
 * from S3_BACKOFF_BASE_MS up to S3_BACKOFF_MAX_MS. */
void s3_backoff(unsigned attempt);
/* Parse an XML answer; NULL when empty or not XML.  xmlFreeDoc it. */
xmlDoc *s3_xml_parse(const struct buf *b);
/* The first child element of node named name, or NULL. */
const xmlNode *s3_xml_child(const xmlNode *node, const char *name);
/* Copy the text content of node's child name into dst ("" if none). */
void s3_xml_text(const xmlNode *node, const char *name, char *dst,
		 size_t cap);

/* ---- s3_conf.c: options, environment and AWS files ---- */

/*
 * Fill s's credentials, region, endpoint (origin, host, path_base,
 * loopback), TLS and payload-signing settings, CA bundle and limits
 * from o, the environment and the AWS files, as the AWS CLI finds them.
 * s->bucket and s->base.url must be set.  0, or -errno with one line in
 * err.
 */
int s3_conf_apply(struct store_s3 *s, const struct store_options *o,
		  struct buf *err);
/* Free (wiping the secrets) what s3_conf_apply set; safe on a partly
 * applied configuration. */
void s3_conf_release(struct store_s3 *s);

#endif
