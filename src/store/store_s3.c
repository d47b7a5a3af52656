/*
 * store_s3.c - the S3 store backend: any S3-compatible service (AWS S3,
 * Ceph RGW, MinIO, Garage, R2, B2, Wasabi, Storj's gateway) as the home of
 * a volume.  Location "s3://BUCKET[/PREFIX]": key K is the object
 * PREFIX/K in BUCKET.
 *
 * Requests: GET (ranged), PUT (multipart above part_size, its parts sent
 * in parallel), HEAD, DELETE, DeleteObjects (1,000 keys a request, with
 * Content-MD5 as S3 requires), ListObjectsV2 with continuation tokens.
 * Every request is signed with SigV4 (sigv4.c).  Over plain HTTP, or
 * HTTPS without certificate checks, x-amz-content-sha256 is the SHA-256
 * of the body, so S3 checks the payload too.  Over verified HTTPS it is
 * UNSIGNED-PAYLOAD: TLS already guarantees the body, and hashing it again
 * was about a tenth of the daemon's CPU on a sequential write.  So it is
 * to a loopback endpoint (localhost, 127.0.0.0/8, [::1]): the body never
 * crosses a wire that could damage or alter it, and the hash cost the
 * server as much CPU again to check, on the same machine.  The option
 * sign_payload hashes every body regardless.  XML (listings, errors,
 * multipart) is parsed with libxml2.
 *
 * Connections: a pool of at most `connections` curl easy handles.  A
 * handle keeps its connection alive between requests (curl_easy_reset
 * keeps the connection cache), so a steady stream of requests reuses TCP
 * (and TLS) sessions.  A thread takes a handle for one whole request (all
 * its attempts) and gives it back; with every handle busy, it waits.
 *
 * Retries: a request is retried, up to `attempts` tries in all, after a
 * transport failure (refused, reset, timeout, a body cut short), an HTTP
 * 5xx, 429 or 408, or an S3 error code that says "try again"
 * (SlowDown, RequestTimeout, InternalError).  The pause doubles from
 * 100 ms up to 5 s, with full jitter.  Every request the backend sends
 * is idempotent, except completing a multipart upload, whose retry may
 * find the upload already completed: then a HEAD of the object decides.
 * The access check of open gives up after two tries when nothing listens
 * at the endpoint, so a wrong endpoint fails at once.
 * After the last try: 404 is -ENOENT, 403 -EACCES, anything else -EIO,
 * and the log has the S3 error code and request id.
 *
 * Invariants:
 *   1. No lock is held across network I/O: pool_lock only guards the idle
 *      list and the counts.  Listing callbacks run with no handle held.
 *   2. Secrets (the secret key, the session token) are never logged, and
 *      never part of an error message or of the store's url.
 *   3. A failed attempt leaves the caller's output buffer as it found it
 *      (its length is restored before a retry and on failure).
 *   4. curl_global_init and xmlInitParser run once, before any handle
 *      exists (pthread_once).
 */
#include "util/compat.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "store/sigv4.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"

#define S3_DEFAULT_CONNECTIONS 16
#define S3_DEFAULT_PART_SIZE (16ULL << 20)
#define S3_MIN_PART_SIZE (5ULL << 20)
#define S3_MAX_PARTS 10000
#define S3_PART_THREADS 4
#define S3_DEFAULT_ATTEMPTS 8
#define S3_BACKOFF_BASE_MS 100
#define S3_BACKOFF_MAX_MS 5000
#define S3_ERR_BODY_MAX 65536
#define S3_LIST_PAGE "1000"
#define S3_DELETE_BATCH 1000

enum s3_method { M_GET, M_PUT, M_HEAD, M_DELETE, M_POST, M_COUNT };
static const char *const method_names[M_COUNT] = {
	"GET", "PUT", "HEAD", "DELETE", "POST",
};

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

	atomic_uint_fast64_t requests[M_COUNT];
	atomic_uint_fast64_t retries;
	atomic_uint_fast64_t bytes_sent;
	atomic_uint_fast64_t bytes_received;
};

static const struct store_ops store_s3_ops;

static struct store_s3 *s3_from_store(struct store *s)
{
	assert(s->ops == &store_s3_ops);
	return (struct store_s3 *)s;
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 :
									-EIO;
	xmlInitParser();
}

/* ---- the connection pool ---- */

static CURL *pool_take(struct store_s3 *s)
{
	CURL *h = NULL;
	bool make = false;

	pthread_mutex_lock(&s->pool_lock);
	if (s->owner != getpid()) {
		/* We were forked (mount opens the store, then daemonizes):
		 * the idle handles' connections are shared with the parent,
		 * which only waits for our verdict and then closes them.
		 * Start over with fresh connections. */
		while (s->nidle)
			curl_easy_cleanup(s->idle[--s->nidle]);
		s->nopen = 0;
		s->owner = getpid();
	}
	while (!s->nidle && s->nopen >= s->max_conns)
		pthread_cond_wait(&s->pool_cond, &s->pool_lock);
	if (s->nidle) {
		h = s->idle[--s->nidle];
	} else {
		s->nopen++;
		make = true;
	}
	pthread_mutex_unlock(&s->pool_lock);
	if (make) {
		h = curl_easy_init();
		if (!h) {
			pthread_mutex_lock(&s->pool_lock);
			s->nopen--;
			pthread_cond_signal(&s->pool_cond);
			pthread_mutex_unlock(&s->pool_lock);
		}
	}
	return h;
}

static void pool_give(struct store_s3 *s, CURL *h)
{
	curl_easy_reset(h); /* keeps the live connection */
	pthread_mutex_lock(&s->pool_lock);
	s->idle[s->nidle++] = h;
	pthread_cond_signal(&s->pool_cond);
	pthread_mutex_unlock(&s->pool_lock);
}

/* ---- one request ---- */

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

static void xfer_release(struct s3_xfer *x)
{
	buf_free(&x->err_body);
}

static size_t on_read(char *p, size_t size, size_t n, void *arg)
{
	struct s3_xfer *x = arg;
	size_t len = MF_MIN(size * n, x->body_len - x->body_pos);

	if (len)
		memcpy(p, x->body + x->body_pos, len);
	x->body_pos += len;
	return len;
}

static int on_seek(void *arg, curl_off_t off, int origin)
{
	struct s3_xfer *x = arg;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > x->body_len)
		return CURL_SEEKFUNC_FAIL;
	x->body_pos = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
	struct s3_xfer *x = arg;
	size_t len = size * n;
	long code = 0;

	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 200 && code < 300) {
		if (x->out && buf_append(x->out, p, len))
			return 0; /* out of memory: curl aborts the transfer */
	} else if (x->err_body.len < S3_ERR_BODY_MAX) {
		if (buf_append(&x->err_body, p,
			       MF_MIN(len, S3_ERR_BODY_MAX - x->err_body.len)))
			return 0;
	}
	return len;
}

/* Copy a header's value (trimmed) into dst if line is "name: value". */
static void header_value(const char *line, size_t len, const char *name,
			 char *dst, size_t cap)
{
	size_t nlen = strlen(name), i, j;

	if (len <= nlen || strncasecmp(line, name, nlen) || line[nlen] != ':')
		return;
	for (i = nlen + 1; i < len && (line[i] == ' ' || line[i] == '\t');
	     i++)
		;
	for (j = len; j > i && isspace((unsigned char)line[j - 1]); j--)
		;
	if (j - i >= cap)
		j = i + cap - 1;
	memcpy(dst, line + i, j - i);
	dst[j - i] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct s3_xfer *x = arg;
	size_t len = size * n;

	if (len >= 5 && !strncmp(p, "HTTP/", 5)) {
		/* a new response (after a 100 Continue, say) */
		x->etag[0] = '\0';
		x->request_id[0] = '\0';
	}
	header_value(p, len, "etag", x->etag, sizeof(x->etag));
	header_value(p, len, "x-amz-request-id", x->request_id,
		     sizeof(x->request_id));
	return len;
}

/* Text of the first child element of node named name, or NULL. */
static const xmlNode *xml_child(const xmlNode *node, const char *name)
{
	const xmlNode *c;

	for (c = node ? node->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE &&
		    !strcmp((const char *)c->name, name))
			return c;
	return NULL;
}

/* Copy the text content of node's child name into dst ("" if none). */
static void xml_text(const xmlNode *node, const char *name, char *dst,
		     size_t cap)
{
	const xmlNode *c = xml_child(node, name);
	xmlChar *t = c ? xmlNodeGetContent(c) : NULL;

	dst[0] = '\0';
	if (t) {
		snprintf(dst, cap, "%s", (const char *)t);
		xmlFree(t);
	}
}

static xmlDoc *xml_parse(const struct buf *b)
{
	if (!b->len || b->len > INT32_MAX)
		return NULL;
	return xmlReadMemory((const char *)b->data, (int)b->len, "s3.xml",
			     NULL, XML_PARSE_NONET | XML_PARSE_NOERROR |
					   XML_PARSE_NOWARNING);
}

/* Fill code/message (and request_id when the header had none) from an
 * <Error> document. */
static void parse_error_body(struct s3_xfer *x, const struct buf *body)
{
	xmlDoc *doc = xml_parse(body);
	const xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;

	if (root && !strcmp((const char *)root->name, "Error")) {
		xml_text(root, "Code", x->code, sizeof(x->code));
		xml_text(root, "Message", x->message, sizeof(x->message));
		if (!x->request_id[0])
			xml_text(root, "RequestId", x->request_id,
				 sizeof(x->request_id));
	}
	if (doc)
		xmlFreeDoc(doc);
}

static bool retryable_code(const char *code)
{
	return !strcmp(code, "SlowDown") || !strcmp(code, "RequestTimeout") ||
	       !strcmp(code, "InternalError") ||
	       !strcmp(code, "ServiceUnavailable");
}

static bool retryable(const struct s3_xfer *x)
{
	if (x->cc != CURLE_OK) {
		switch (x->cc) {
		case CURLE_WRITE_ERROR:   /* our callback: out of memory */
		case CURLE_OUT_OF_MEMORY:
		case CURLE_URL_MALFORMAT:
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CACERT_BADFILE:
			return false;
		default:
			return true;
		}
	}
	if (x->status >= 500 || x->status == 429 || x->status == 408)
		return true;
	return retryable_code(x->code);
}

/* Full jitter over an exponential ceiling. */
static void backoff(unsigned attempt)
{
	uint64_t ceil_ms = S3_BACKOFF_BASE_MS;
	uint64_t ms;
	struct timespec ts;

	while (attempt-- > 1 && ceil_ms < S3_BACKOFF_MAX_MS)
		ceil_ms *= 2;
	if (ceil_ms > S3_BACKOFF_MAX_MS)
		ceil_ms = S3_BACKOFF_MAX_MS;
	ms = ceil_ms / 4 + randombytes_uniform((uint32_t)(ceil_ms * 3 / 4) + 1);
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The raw (unencoded) request path: path_base + "/" + key. */
static int request_path(struct store_s3 *s, const char *key,
			struct buf *path)
{
	if (key)
		return buf_appendf(path, "%s/%s", s->path_base, key);
	return buf_appends(path, *s->path_base ? s->path_base : "/");
}

/* One attempt: sign, send, collect the answer into x. */
static int attempt_once(struct store_s3 *s, struct s3_xfer *x,
			const char *payload_hash)
{
	struct buf path = BUF_INIT, url = BUF_INIT, auth = BUF_INIT;
	struct buf hdr = BUF_INIT;
	struct curl_slist *list = NULL, *nl;
	struct sigv4_kv h[7];
	size_t nh = 0, i;
	char date[SIGV4_DATE_LEN + 1];
	const struct sigv4_creds creds = {
		s->access_key, s->secret_key, s->region, "s3",
	};
	struct sigv4_request r;
	CURL *c = x->h;
	int rc;

	sigv4_amz_date(time(NULL), date);
	h[nh++] = (struct sigv4_kv){ "host", s->host };
	h[nh++] = (struct sigv4_kv){ "x-amz-content-sha256", payload_hash };
	h[nh++] = (struct sigv4_kv){ "x-amz-date", date };
	if (x->range)
		h[nh++] = (struct sigv4_kv){ "range", x->range };
	if (x->content_md5)
		h[nh++] = (struct sigv4_kv){ "content-md5", x->content_md5 };
	if (s->token)
		h[nh++] = (struct sigv4_kv){ "x-amz-security-token", s->token };

	rc = request_path(s, x->key, &path);
	if (!rc)
		rc = buf_appends(&url, s->origin);
	if (!rc)
		rc = sigv4_uri_encode(&url, buf_str(&path), true);
	if (!rc && x->nquery) {
		rc = buf_appends(&url, "?");
		if (!rc)
			rc = sigv4_canonical_query(x->query, x->nquery, &url);
	}
	r = (struct sigv4_request){
		method_names[x->method], buf_str(&path), x->query, x->nquery,
		h, nh, payload_hash,
	};
	if (!rc)
		rc = sigv4_authorization(&r, &creds, date, &auth, NULL, NULL);
	for (i = 0; !rc && i < nh; i++) {
		buf_reset(&hdr);
		rc = buf_appendf(&hdr, "%s: %s", h[i].name, h[i].value);
		if (!rc) {
			nl = curl_slist_append(list, buf_str(&hdr));
			rc = nl ? 0 : -ENOMEM;
			list = nl ? nl : list;
		}
	}
	if (!rc) {
		buf_reset(&hdr);
		rc = buf_appendf(&hdr, "Authorization: %s", buf_str(&auth));
	}
	if (!rc) {
		nl = curl_slist_append(list, buf_str(&hdr));
		if (nl)
			list = nl;
		nl = nl ? curl_slist_append(list, "Expect:") : NULL;
		if (nl)
			list = nl;
		rc = nl ? 0 : -ENOMEM;
	}
	if (rc)
		goto out;

	x->body_pos = 0;
	x->status = 0;
	x->etag[0] = x->request_id[0] = x->curl_err[0] = '\0';
	x->code[0] = x->message[0] = '\0';
	buf_reset(&x->err_body);
	if (x->out)
		x->out->len = x->out_base;

	curl_easy_setopt(c, CURLOPT_URL, buf_str(&url));
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->curl_err);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	/* a transfer that stalls for 30 s is a dropped connection */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, s->verify_tls ? 1L : 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, s->verify_tls ? 2L : 0L);
	if (s->ca_bundle) {
		/* the bundle replaces the system's CAs, as in the AWS CLI */
		curl_easy_setopt(c, CURLOPT_CAINFO, s->ca_bundle);
		curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
	}
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	switch (x->method) {
	case M_GET:
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
		break;
	case M_HEAD:
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
		break;
	case M_DELETE:
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
		break;
	case M_PUT:
	case M_POST:
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		/* curl's default 64 KiB chunks cost a read callback, a
		 * poll and a send each: 512 KiB ones took 7% off the
		 * daemon's CPU in a sequential write to a loopback radosgw
		 * (5 alternating runs).  Only handles that upload get one. */
		curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 512L << 10);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, x);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, x);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)x->body_len);
		if (x->method == M_POST)
			curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "POST");
		break;
	default:
		break;
	}

	atomic_fetch_add(&s->requests[x->method], 1);
	x->cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
	{
		curl_off_t up = 0, down = 0, clen = -1;

		curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &up);
		curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &down);
		curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
		atomic_fetch_add(&s->bytes_sent, (uint64_t)up);
		atomic_fetch_add(&s->bytes_received, (uint64_t)down);
		x->content_length = clen >= 0 ? (uint64_t)clen : 0;
	}
	if (x->cc == CURLE_OK && (x->status < 200 || x->status >= 300))
		parse_error_body(x, &x->err_body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
out:
	curl_slist_free_all(list);
	buf_free(&path);
	buf_free(&url);
	if (auth.data)
		sodium_memzero(auth.data, auth.len);
	buf_free(&auth);
	buf_free(&hdr);
	return rc;
}

/* One line describing what went wrong, for logs and messages. */
static void describe(const struct s3_xfer *x, struct buf *b)
{
	if (x->cc != CURLE_OK) {
		buf_appends(b, x->curl_err[0] ? x->curl_err :
						curl_easy_strerror(x->cc));
		return;
	}
	buf_appendf(b, "HTTP %ld", x->status);
	if (x->code[0])
		buf_appendf(b, " %s", x->code);
	if (x->message[0])
		buf_appendf(b, " (%s)", x->message);
	if (x->request_id[0])
		buf_appendf(b, ", request id %s", x->request_id);
}

static int status_errno(const struct s3_xfer *x)
{
	if (x->cc != CURLE_OK)
		return x->cc == CURLE_WRITE_ERROR ||
				       x->cc == CURLE_OUT_OF_MEMORY ?
			       -ENOMEM :
			       -EIO;
	if (x->status >= 200 && x->status < 300)
		return 0;
	if (x->status == 404)
		return -ENOENT;
	if (x->status == 403)
		return -EACCES;
	return -EIO;
}

/*
 * Send x with retries; returns 0 for a 2xx answer, else -errno (and x
 * holds the last answer).  Statuses in ok_extra (416 for ranged reads)
 * also count as answers, returned as 0.
 */
static int s3_request(struct store_s3 *s, struct s3_xfer *x,
		      unsigned attempts, long ok_extra)
{
	char hash[SIGV4_HEX_LEN + 1];
	unsigned n;
	int rc;

	x->h = pool_take(s);
	if (!x->h)
		return -ENOMEM;
	if (x->out)
		x->out_base = x->out->len;
	if (s->unsigned_payload)
		snprintf(hash, sizeof(hash), "UNSIGNED-PAYLOAD");
	else
		sigv4_sha256_hex(x->body ? (const void *)x->body : "",
				 x->body_len, hash);
	for (n = 1;; n++) {
		rc = attempt_once(s, x, hash);
		if (rc)
			break;
		if (x->cc == CURLE_OK &&
		    ((x->status >= 200 && x->status < 300) ||
		     (ok_extra && x->status == ok_extra)))
			break;
		if (!retryable(x) || n >= attempts ||
		    (x->fast_fail && n >= 2 &&
		     (x->cc == CURLE_COULDNT_CONNECT ||
		      x->cc == CURLE_COULDNT_RESOLVE_HOST))) {
			rc = status_errno(x);
			break;
		}
		if (!x->quiet) {
			struct buf d = BUF_INIT;

			describe(x, &d);
			log_warn("s3: %s %s: %s; retrying (%u of %u)",
				 method_names[x->method],
				 x->key ? x->key : s->bucket, buf_str(&d), n,
				 attempts - 1);
			buf_free(&d);
		}
		atomic_fetch_add(&s->retries, 1);
		backoff(n);
	}
	pool_give(s, x->h);
	x->h = NULL;
	if (rc && x->out)
		x->out->len = x->out_base;
	if (rc && x->out && x->out->data)
		x->out->data[x->out->len] = 0;
	if (rc && !(rc == -ENOENT && x->quiet_404) && rc != -ENOMEM &&
	    !x->quiet) {
		struct buf d = BUF_INIT;

		describe(x, &d);
		log_error("s3: %s %s/%s failed: %s", method_names[x->method],
			  s->bucket, x->key ? x->key : "", buf_str(&d));
		buf_free(&d);
	}
	return rc;
}

/* ---- the store operations ---- */

static int full_key(struct store_s3 *s, const char *key, struct buf *out)
{
	if (!store_key_valid(key))
		return -EINVAL;
	return buf_appendf(out, "%s%s", s->prefix, key);
}

static int s3_put_single(struct store_s3 *s, const char *fk,
			 const void *data, size_t len)
{
	struct s3_xfer x = {
		.method = M_PUT, .key = fk, .body = data, .body_len = len,
	};
	int rc = s3_request(s, &x, s->attempts, 0);

	xfer_release(&x);
	return rc;
}

static int multipart_abort(struct store_s3 *s, const char *fk,
			   const char *upload_id)
{
	const struct sigv4_kv q[] = { { "uploadId", upload_id } };
	struct s3_xfer x = {
		.method = M_DELETE, .key = fk, .query = q, .nquery = 1,
		.quiet_404 = true,
	};
	int rc = s3_request(s, &x, s->attempts, 0);

	xfer_release(&x);
	return rc;
}

/* The parts of one multipart upload, sent by a few threads. */
struct part_job {
	struct store_s3 *s;
	const char *fk;
	const char *upload_id;
	const uint8_t *data;
	size_t len, psize, nparts;
	char (*etags)[128];
	pthread_mutex_t lock;
	size_t next; /* protected by lock */
	int rc;      /* the first failure; protected by lock */
};

static int send_part(struct part_job *j, size_t i)
{
	char num[24];
	const struct sigv4_kv q[] = {
		{ "partNumber", num }, { "uploadId", j->upload_id },
	};
	size_t off = i * j->psize;
	struct s3_xfer x = {
		.method = M_PUT, .key = j->fk, .query = q, .nquery = 2,
		.body = j->data + off,
		.body_len = MF_MIN(j->psize, j->len - off),
	};
	int rc;

	snprintf(num, sizeof(num), "%zu", i + 1);
	rc = s3_request(j->s, &x, j->s->attempts, 0);
	snprintf(j->etags[i], sizeof(j->etags[i]), "%s", x.etag);
	xfer_release(&x);
	if (!rc && !j->etags[i][0]) {
		log_error("s3: no ETag for part %zu of %s", i + 1, j->fk);
		rc = -EIO;
	}
	return rc;
}

static void *part_worker(void *arg)
{
	struct part_job *j = arg;

	for (;;) {
		size_t i;
		int rc;

		pthread_mutex_lock(&j->lock);
		i = j->next++;
		if (j->rc || i >= j->nparts) {
			pthread_mutex_unlock(&j->lock);
			return NULL;
		}
		pthread_mutex_unlock(&j->lock);
		rc = send_part(j, i);
		if (rc) {
			pthread_mutex_lock(&j->lock);
			if (!j->rc)
				j->rc = rc;
			pthread_mutex_unlock(&j->lock);
		}
	}
}

/* Send every part, S3_PART_THREADS at a time (the calling thread is one
 * of them); the first failure stops the others after their current part. */
static int send_parts(struct part_job *j)
{
	pthread_t t[S3_PART_THREADS - 1];
	size_t nt = 0, want = MF_MIN((size_t)S3_PART_THREADS, j->nparts);

	pthread_mutex_init(&j->lock, NULL);
	while (nt + 1 < want && pthread_create(&t[nt], NULL, part_worker, j) == 0)
		nt++;
	part_worker(j);
	while (nt > 0)
		pthread_join(t[--nt], NULL);
	pthread_mutex_destroy(&j->lock);
	return j->rc;
}

static int s3_put_multipart(struct store_s3 *s, const char *fk,
			    const uint8_t *data, size_t len)
{
	struct buf body = BUF_INIT, done = BUF_INIT;
	char upload_id[512], (*etags)[128] = NULL;
	/* S3 takes at most 10,000 parts: bigger objects get bigger parts */
	size_t psize = (size_t)MF_MAX(s->part_size,
				      (len + S3_MAX_PARTS - 1) / S3_MAX_PARTS);
	size_t nparts = (len + psize - 1) / psize, i;
	xmlDoc *doc;
	const xmlNode *root;
	int rc;

	{
		const struct sigv4_kv q[] = { { "uploads", "" } };
		struct s3_xfer x = {
			.method = M_POST, .key = fk, .query = q, .nquery = 1,
			.out = &body,
		};

		rc = s3_request(s, &x, s->attempts, 0);
		xfer_release(&x);
		if (rc)
			goto out;
	}
	doc = xml_parse(&body);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	upload_id[0] = '\0';
	if (root)
		xml_text(root, "UploadId", upload_id, sizeof(upload_id));
	if (doc)
		xmlFreeDoc(doc);
	if (!upload_id[0]) {
		log_error("s3: no UploadId in the answer to starting a "
			  "multipart upload of %s", fk);
		rc = -EIO;
		goto out;
	}
	etags = calloc(nparts, sizeof(*etags));
	if (!etags) {
		rc = -ENOMEM;
		goto out_abort;
	}
	{
		struct part_job job = {
			.s = s, .fk = fk, .upload_id = upload_id,
			.data = data, .len = len, .psize = psize,
			.nparts = nparts, .etags = etags,
		};

		rc = send_parts(&job);
		if (rc)
			goto out_abort;
	}
	rc = buf_appends(&done, "<CompleteMultipartUpload>");
	for (i = 0; !rc && i < nparts; i++)
		rc = buf_appendf(&done, "<Part><PartNumber>%zu</PartNumber>"
					"<ETag>%s</ETag></Part>",
				 i + 1, etags[i]);
	if (!rc)
		rc = buf_appends(&done, "</CompleteMultipartUpload>");
	if (rc)
		goto out_abort;
	{
		const struct sigv4_kv q[] = { { "uploadId", upload_id } };
		struct s3_xfer x = {
			.method = M_POST, .key = fk, .query = q, .nquery = 1,
			.body = done.data, .body_len = done.len,
			.quiet_404 = true,
		};
		unsigned tries;

		/* S3 may answer 200 and still report an error in the body */
		for (tries = 0; tries < s->attempts; tries++) {
			buf_reset(&body);
			x.out = &body;
			rc = s3_request(s, &x, s->attempts, 0);
			if (rc)
				break;
			doc = xml_parse(&body);
			root = doc ? xmlDocGetRootElement(doc) : NULL;
			if (root && !strcmp((const char *)root->name,
					    "Error")) {
				xml_text(root, "Code", x.code,
					 sizeof(x.code));
				log_warn("s3: completing the upload of %s: "
					 "%s; retrying", fk, x.code);
				rc = -EIO;
			}
			if (doc)
				xmlFreeDoc(doc);
			if (!rc)
				break;
			backoff(tries + 1);
		}
		xfer_release(&x);
		/* a retried completion may find the upload already done */
		if (rc == -ENOENT) {
			struct s3_xfer hx = {
				.method = M_HEAD, .key = fk,
			};

			if (s3_request(s, &hx, s->attempts, 0) == 0 &&
			    hx.content_length == len)
				rc = 0;
			xfer_release(&hx);
		}
	}
	if (!rc)
		goto out;
out_abort:
	multipart_abort(s, fk, upload_id);
out:
	free(etags);
	buf_free(&body);
	buf_free(&done);
	return rc;
}

static int s3_put(struct store *st, const char *key, const void *data,
		  size_t len)
{
	struct store_s3 *s = s3_from_store(st);
	struct buf fk = BUF_INIT;
	int rc = full_key(s, key, &fk);

	if (rc)
		goto out;
	if (len > s->part_size)
		rc = s3_put_multipart(s, buf_str(&fk), data, len);
	else
		rc = s3_put_single(s, buf_str(&fk), data, len);
out:
	buf_free(&fk);
	return rc;
}

static int s3_head(struct store *st, const char *key, uint64_t *size)
{
	struct store_s3 *s = s3_from_store(st);
	struct buf fk = BUF_INIT;
	struct s3_xfer x = { .method = M_HEAD, .quiet_404 = true };
	int rc = full_key(s, key, &fk);

	if (rc)
		goto out;
	x.key = buf_str(&fk);
	rc = s3_request(s, &x, s->attempts, 0);
	if (!rc)
		*size = x.content_length;
out:
	xfer_release(&x);
	buf_free(&fk);
	return rc;
}

static int s3_get(struct store *st, const char *key, uint64_t off,
		  size_t len, struct buf *out)
{
	struct store_s3 *s = s3_from_store(st);
	struct buf fk = BUF_INIT;
	struct s3_xfer x = { .method = M_GET, .quiet_404 = true, .out = out };
	char range[64];
	size_t base = out->len, got;
	int rc = full_key(s, key, &fk);

	if (rc)
		goto out;
	x.key = buf_str(&fk);
	if (off > (UINT64_C(1) << 62)) {
		/* past any object: only whether it exists matters */
		uint64_t size;

		rc = s3_head(st, key, &size);
		goto out;
	}
	if (off || len) {
		if (len && off + len - 1 >= off)
			snprintf(range, sizeof(range),
				 "bytes=%" PRIu64 "-%" PRIu64, off,
				 off + len - 1);
		else
			snprintf(range, sizeof(range), "bytes=%" PRIu64 "-",
				 off);
		x.range = range;
	}
	rc = s3_request(s, &x, s->attempts, 416);
	if (rc)
		goto out;
	if (x.status == 416) {
		/* the range starts at or after the end: no bytes */
		out->len = base;
		if (out->data)
			out->data[out->len] = 0;
		goto out;
	}
	got = out->len - base;
	if (x.range && x.status == 200) {
		/* the server ignored the range: cut it out ourselves */
		size_t start = off < got ? (size_t)off : got;
		size_t n = got - start;

		if (len && len < n)
			n = len;
		memmove(out->data + base, out->data + base + start, n);
		out->len = base + n;
		out->data[out->len] = 0;
	} else if (len && got > len) {
		out->len = base + len;
		out->data[out->len] = 0;
	}
	if (!out->data)
		rc = buf_reserve(out, 0);
out:
	xfer_release(&x);
	buf_free(&fk);
	return rc;
}

static int s3_del(struct store *st, const char *key)
{
	struct store_s3 *s = s3_from_store(st);
	struct buf fk = BUF_INIT;
	struct s3_xfer x = { .method = M_DELETE, .quiet_404 = true };
	int rc = full_key(s, key, &fk);

	if (rc)
		goto out;
	x.key = buf_str(&fk);
	rc = s3_request(s, &x, s->attempts, 0);
	if (rc == -ENOENT)
		rc = 0;
out:
	xfer_release(&x);
	buf_free(&fk);
	return rc;
}

/* Append s with XML's five special characters escaped. */
static int xml_escape(struct buf *b, const char *s)
{
	int rc = 0;

	for (; !rc && *s; s++) {
		switch (*s) {
		case '&': rc = buf_appends(b, "&amp;"); break;
		case '<': rc = buf_appends(b, "&lt;"); break;
		case '>': rc = buf_appends(b, "&gt;"); break;
		case '"': rc = buf_appends(b, "&quot;"); break;
		case '\'': rc = buf_appends(b, "&apos;"); break;
		default: rc = buf_append(b, s, 1); break;
		}
	}
	return rc;
}

/* The errno of one key's <Error> in a DeleteObjects answer. */
static int delete_code_errno(const char *code)
{
	if (!strcmp(code, "NoSuchKey"))
		return 0;
	if (!strcmp(code, "AccessDenied"))
		return -EACCES;
	return -EIO;
}

/*
 * Read a DeleteObjects answer (Quiet mode: only the failures are listed)
 * into results; keys the server retried-worthy failed are sent again one
 * by one, with the ordinary retries.
 */
static int delete_answer(struct store_s3 *s, const struct buf *body,
			 const char *const *keys, size_t n, int *results)
{
	size_t plen = strlen(s->prefix), i;
	xmlDoc *doc = xml_parse(body);
	const xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	const xmlNode *c;

	if (!root || strcmp((const char *)root->name, "DeleteResult")) {
		log_error("s3: POST %s?delete: the answer is not a "
			  "DeleteResult", s->bucket);
		if (doc)
			xmlFreeDoc(doc);
		return -EIO;
	}
	for (c = root->children; c; c = c->next) {
		char key[1024], code[64], msg[256];

		if (c->type != XML_ELEMENT_NODE ||
		    strcmp((const char *)c->name, "Error"))
			continue;
		xml_text(c, "Key", key, sizeof(key));
		xml_text(c, "Code", code, sizeof(code));
		xml_text(c, "Message", msg, sizeof(msg));
		if (strncmp(key, s->prefix, plen))
			continue;
		for (i = 0; i < n; i++) {
			if (results[i] || strcmp(keys[i], key + plen))
				continue;
			results[i] = delete_code_errno(code);
			if (retryable_code(code))
				results[i] = s3_del(&s->base, keys[i]);
			else if (results[i])
				log_error("s3: deleting %s/%s failed: %s (%s)",
					  s->bucket, key, code, msg);
			break;
		}
	}
	xmlFreeDoc(doc);
	return 0;
}

/* One DeleteObjects request for n <= 1000 valid keys. */
static int s3_del_batch(struct store_s3 *s, const char *const *keys,
			size_t n, int *results)
{
	const struct sigv4_kv q[] = { { "delete", "" } };
	struct buf body = BUF_INIT, answer = BUF_INIT;
	unsigned char md5[EVP_MAX_MD_SIZE];
	unsigned md5_len = 0;
	char md5_b64[32];
	struct s3_xfer x = {
		.method = M_POST, .query = q, .nquery = 1, .out = &answer,
		.content_md5 = md5_b64, .quiet = true,
	};
	size_t i;
	int rc;

	rc = buf_appends(&body, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
				"<Delete xmlns=\"http://s3.amazonaws.com/doc/"
				"2006-03-01/\"><Quiet>true</Quiet>");
	for (i = 0; !rc && i < n; i++) {
		rc = buf_appends(&body, "<Object><Key>");
		if (!rc)
			rc = xml_escape(&body, s->prefix);
		if (!rc)
			rc = xml_escape(&body, keys[i]);
		if (!rc)
			rc = buf_appends(&body, "</Key></Object>");
	}
	if (!rc)
		rc = buf_appends(&body, "</Delete>");
	if (!rc && !EVP_Digest(body.data, body.len, md5, &md5_len, EVP_md5(),
			       NULL))
		rc = -ENOMEM;
	if (rc)
		goto out;
	EVP_EncodeBlock((unsigned char *)md5_b64, md5, (int)md5_len);
	x.body = body.data;
	x.body_len = body.len;
	rc = s3_request(s, &x, s->attempts, 0);
	if (rc && x.cc == CURLE_OK &&
	    (x.status == 501 || !strcmp(x.code, "NotImplemented") ||
	     (!x.code[0] && (x.status == 400 || x.status == 405)))) {
		/* a service without DeleteObjects: one DELETE per key */
		log_info("s3: %s does not take DeleteObjects (HTTP %ld); "
			 "deleting one object per request",
			 s->endpoint, x.status);
		atomic_store(&s->no_batch_delete, true);
		rc = 1;
		goto out;
	}
	if (!rc) {
		memset(results, 0, n * sizeof(*results));
		rc = delete_answer(s, &answer, keys, n, results);
	}
	if (rc) {
		struct buf d = BUF_INIT;

		describe(&x, &d);
		log_error("s3: deleting %zu object(s) in %s failed: %s", n,
			  s->bucket, buf_str(&d));
		buf_free(&d);
	}
out:
	xfer_release(&x);
	buf_free(&body);
	buf_free(&answer);
	return rc;
}

static int s3_del_many(struct store *st, const char *const *keys, size_t n,
		       int *results)
{
	struct store_s3 *s = s3_from_store(st);
	const char **valid = calloc(S3_DELETE_BATCH, sizeof(*valid));
	int *vres = calloc(S3_DELETE_BATCH, sizeof(*vres));
	size_t *idx = calloc(S3_DELETE_BATCH, sizeof(*idx));
	size_t i = 0, j, nv;
	int first = 0, rc;

	if (!valid || !vres || !idx) {
		for (j = 0; j < n; j++)
			results[j] = -ENOMEM;
		first = -ENOMEM;
		goto out;
	}
	while (i < n) {
		for (nv = 0; i < n && nv < S3_DELETE_BATCH; i++) {
			results[i] = store_key_valid(keys[i]) ? 0 : -EINVAL;
			if (!results[i]) {
				idx[nv] = i;
				valid[nv++] = keys[i];
			}
		}
		/* one key: a DELETE is simpler than a batch of one */
		rc = 1;
		if (nv > 1 && !atomic_load(&s->no_batch_delete))
			rc = s3_del_batch(s, valid, nv, vres);
		for (j = 0; j < nv; j++)
			results[idx[j]] = rc == 1 ? s3_del(st, valid[j]) :
				rc ? rc : vres[j];
	}
	for (j = 0; j < n && !first; j++)
		first = results[j];
out:
	free(valid);
	free(vres);
	free(idx);
	return first;
}

/* One page of a listing. */
struct list_page {
	char **keys;
	uint64_t *sizes;
	size_t n;
	bool truncated;
	char *next_token;
};

static void page_free(struct list_page *p)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		free(p->keys[i]);
	free(p->keys);
	free(p->sizes);
	free(p->next_token);
	memset(p, 0, sizeof(*p));
}

static int parse_list_page(const struct buf *body, struct list_page *p)
{
	xmlDoc *doc = xml_parse(body);
	const xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	const xmlNode *c;
	size_t cap = 0;
	char tmp[32];
	int rc = 0;

	if (!root || strcmp((const char *)root->name, "ListBucketResult")) {
		rc = -EIO;
		goto out;
	}
	xml_text(root, "IsTruncated", tmp, sizeof(tmp));
	p->truncated = !strcmp(tmp, "true");
	c = xml_child(root, "NextContinuationToken");
	if (c) {
		xmlChar *t = xmlNodeGetContent(c);

		p->next_token = t ? strdup((const char *)t) : NULL;
		if (t)
			xmlFree(t);
		if (!p->next_token) {
			rc = -ENOMEM;
			goto out;
		}
	}
	for (c = root->children; c; c = c->next) {
		xmlChar *k;

		if (c->type != XML_ELEMENT_NODE ||
		    strcmp((const char *)c->name, "Contents"))
			continue;
		if (p->n == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			char **nk = realloc(p->keys, ncap * sizeof(*nk));
			uint64_t *ns;

			if (!nk) {
				rc = -ENOMEM;
				goto out;
			}
			p->keys = nk;
			ns = realloc(p->sizes, ncap * sizeof(*ns));
			if (!ns) {
				rc = -ENOMEM;
				goto out;
			}
			p->sizes = ns;
			cap = ncap;
		}
		k = xml_child(c, "Key") ?
			    xmlNodeGetContent(xml_child(c, "Key")) : NULL;
		if (!k)
			continue;
		p->keys[p->n] = strdup((const char *)k);
		xmlFree(k);
		if (!p->keys[p->n]) {
			rc = -ENOMEM;
			goto out;
		}
		xml_text(c, "Size", tmp, sizeof(tmp));
		p->sizes[p->n] = strtoull(tmp, NULL, 10);
		p->n++;
	}
out:
	if (doc)
		xmlFreeDoc(doc);
	return rc;
}

static bool prefix_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
	       c == '/';
}

/* 1 if prefix can start a valid key (the file backend's rule). */
static bool list_prefix_ok(const char *prefix)
{
	const char *p, *slash;
	char dir[600];
	size_t dlen;

	if (strlen(prefix) > 512)
		return false;
	for (p = prefix; *p; p++)
		if (!prefix_char_ok(*p))
			return false;
	slash = strrchr(prefix, '/');
	if (!slash)
		return true;
	dlen = (size_t)(slash - prefix);
	memcpy(dir, prefix, dlen);
	dir[dlen] = '\0';
	return store_key_valid(dir);
}

static int s3_list(struct store *st, const char *prefix, store_list_cb cb,
		   void *arg)
{
	struct store_s3 *s = s3_from_store(st);
	struct buf full = BUF_INIT, body = BUF_INIT;
	struct list_page page = { 0 };
	char *token = NULL;
	size_t plen = strlen(s->prefix), i;
	int rc;

	if (!prefix)
		prefix = "";
	if (!list_prefix_ok(prefix))
		return -EINVAL;
	rc = buf_appendf(&full, "%s%s", s->prefix, prefix);
	while (!rc) {
		struct sigv4_kv q[4];
		size_t nq = 0;
		struct s3_xfer x = { .method = M_GET, .out = &body };

		q[nq++] = (struct sigv4_kv){ "list-type", "2" };
		q[nq++] = (struct sigv4_kv){ "max-keys", S3_LIST_PAGE };
		q[nq++] = (struct sigv4_kv){ "prefix", buf_str(&full) };
		if (token)
			q[nq++] = (struct sigv4_kv){ "continuation-token",
						     token };
		x.query = q;
		x.nquery = nq;
		buf_reset(&body);
		rc = s3_request(s, &x, s->attempts, 0);
		xfer_release(&x);
		if (rc)
			break;
		page_free(&page);
		rc = parse_list_page(&body, &page);
		if (rc) {
			log_error("s3: cannot parse a listing of %s/%s",
				  s->bucket, buf_str(&full));
			break;
		}
		/* callbacks run with no handle held (invariant 1) */
		for (i = 0; !rc && i < page.n; i++) {
			const char *k = page.keys[i];

			if (strncmp(k, s->prefix, plen) ||
			    !store_key_valid(k + plen))
				continue; /* not one of ours */
			rc = cb(k + plen, page.sizes[i], arg);
		}
		if (rc || !page.truncated)
			break;
		if (!page.next_token) {
			log_error("s3: truncated listing of %s without a "
				  "continuation token", s->bucket);
			rc = -EIO;
			break;
		}
		free(token);
		token = page.next_token;
		page.next_token = NULL;
	}
	page_free(&page);
	free(token);
	buf_free(&full);
	buf_free(&body);
	return rc;
}

static void wipe_free(char *p)
{
	if (p) {
		sodium_memzero(p, strlen(p));
		free(p);
	}
}

static void s3_close(struct store *st)
{
	struct store_s3 *s = s3_from_store(st);
	unsigned i;

	uint64_t total = 0;

	for (i = 0; i < M_COUNT; i++)
		total += atomic_load(&s->requests[i]);
	/* the traffic of a session, for benchmarks; the few requests of
	 * mkfs or of a mount's parent process are not worth a line */
	if (s->opened)
		log_msg(total > 10 ? LOG_INFO : LOG_DEBUG,
			"s3: %s: %" PRIuFAST64 " GET, %" PRIuFAST64
			 " PUT, %" PRIuFAST64 " HEAD, %" PRIuFAST64
			 " DELETE, %" PRIuFAST64 " POST requests (%"
			 PRIuFAST64 " retried); %" PRIuFAST64
			 " bytes sent, %" PRIuFAST64 " received",
			 s->base.url, atomic_load(&s->requests[M_GET]),
			 atomic_load(&s->requests[M_PUT]),
			 atomic_load(&s->requests[M_HEAD]),
			 atomic_load(&s->requests[M_DELETE]),
			 atomic_load(&s->requests[M_POST]),
			 atomic_load(&s->retries),
			 atomic_load(&s->bytes_sent),
			 atomic_load(&s->bytes_received));
	for (i = 0; i < s->nidle; i++)
		curl_easy_cleanup(s->idle[i]);
	free(s->idle);
	pthread_mutex_destroy(&s->pool_lock);
	pthread_cond_destroy(&s->pool_cond);
	free(s->origin);
	free(s->host);
	free(s->path_base);
	free(s->bucket);
	free(s->prefix);
	free(s->endpoint);
	free(s->region);
	free(s->ca_bundle);
	free(s->access_key);
	wipe_free(s->secret_key);
	wipe_free(s->token);
	free(s->base.url);
	free(s);
}

/* ---- configuration: credentials, region, endpoint ---- */

struct s3_conf {
	char *access_key;
	char *secret_key;
	char *token;
	char *region;
	char *endpoint;
	char *ca_bundle;
	bool profile_found; /* a file read had the profile's section */
};

static void conf_free(struct s3_conf *c)
{
	free(c->access_key);
	wipe_free(c->secret_key);
	wipe_free(c->token);
	free(c->region);
	free(c->endpoint);
	free(c->ca_bundle);
	memset(c, 0, sizeof(*c));
}

static char *trim(char *p)
{
	char *e;

	while (*p == ' ' || *p == '\t')
		p++;
	e = p + strlen(p);
	while (e > p && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return p;
}

/* Set *dst to a copy of val unless already set. 0 or -ENOMEM. */
static int set_once(char **dst, const char *val)
{
	if (*dst || !val || !*val)
		return 0;
	*dst = strdup(val);
	return *dst ? 0 : -ENOMEM;
}

/*
 * Read the INI file path and take from section `section` the keys the
 * AWS tools use.  A missing file is fine (0).  With private_only, a file
 * readable by group or others is refused (-EPERM).
 */
static int conf_read_ini(const char *path, const char *section,
			 bool private_only, struct s3_conf *c,
			 struct buf *err)
{
	struct buf text = BUF_INIT;
	struct stat st;
	char *line, *next;
	bool in = false;
	int rc;

	if (private_only) {
		if (stat(path, &st) < 0) {
			int e = errno;

			buf_appendf(err, "credentials file %s: %s", path,
				    strerror(e));
			return -e;
		}
		if (st.st_mode & 077) {
			buf_appendf(err, "credentials file %s is readable by "
					 "others (mode %03o); make it private "
					 "with chmod 600",
				    path, (unsigned)(st.st_mode & 0777));
			return -EPERM;
		}
	}
	rc = read_file(path, &text);
	if (rc == -ENOENT && !private_only)
		return 0;
	if (rc) {
		buf_appendf(err, "cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	for (line = (char *)text.data; line && !rc; line = next) {
		char *eq, *k, *v;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		line = trim(line);
		if (!*line || *line == '#' || *line == ';')
			continue;
		if (*line == '[') {
			char *end = strchr(line, ']');

			if (end)
				*end = '\0';
			in = !strcmp(trim(line + 1), section);
			c->profile_found |= in;
			continue;
		}
		if (!in || !(eq = strchr(line, '=')))
			continue;
		*eq = '\0';
		k = trim(line);
		v = trim(eq + 1);
		if (!strcmp(k, "aws_access_key_id"))
			rc = set_once(&c->access_key, v);
		else if (!strcmp(k, "aws_secret_access_key"))
			rc = set_once(&c->secret_key, v);
		else if (!strcmp(k, "aws_session_token"))
			rc = set_once(&c->token, v);
		else if (!strcmp(k, "region"))
			rc = set_once(&c->region, v);
		else if (!strcmp(k, "endpoint_url"))
			rc = set_once(&c->endpoint, v);
		else if (!strcmp(k, "ca_bundle"))
			rc = set_once(&c->ca_bundle, v);
	}
	if (text.data)
		sodium_memzero(text.data, text.len);
	buf_free(&text);
	return rc;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

/* Everything in the order the AWS CLI uses: explicit options, then the
 * environment, then the shared files.  A profile named by AWS_PROFILE
 * that no file has, when the keys had to come from the files, is an
 * error of its own (-ENOENT), so a typo is not reported as "no
 * credentials". */
static int conf_load(const struct store_options *o, struct s3_conf *c,
		     struct buf *err)
{
	const char *profile = env("AWS_PROFILE");
	const char *home = env("HOME");
	struct buf path = BUF_INIT, sect = BUF_INIT, searched = BUF_INIT;
	int rc = 0;

	if (!profile)
		profile = "default";
	rc = set_once(&c->endpoint, o->endpoint);
	if (!rc)
		rc = set_once(&c->region, o->region);
	if (!rc)
		rc = set_once(&c->ca_bundle, o->ca_bundle);
	if (!rc && o->credentials) {
		rc = conf_read_ini(o->credentials, profile, true, c, err);
		if (!rc)
			rc = buf_appends(&searched, o->credentials);
	}
	if (rc)
		goto out;
	if (!c->access_key && env("AWS_ACCESS_KEY_ID") &&
	    env("AWS_SECRET_ACCESS_KEY")) {
		rc = set_once(&c->access_key, env("AWS_ACCESS_KEY_ID"));
		if (!rc)
			rc = set_once(&c->secret_key,
				      env("AWS_SECRET_ACCESS_KEY"));
		if (!rc)
			rc = set_once(&c->token, env("AWS_SESSION_TOKEN"));
	}
	if (!rc)
		rc = set_once(&c->region, env("AWS_REGION"));
	if (!rc)
		rc = set_once(&c->region, env("AWS_DEFAULT_REGION"));
	if (!rc)
		rc = set_once(&c->endpoint, env("AWS_ENDPOINT_URL_S3"));
	if (!rc)
		rc = set_once(&c->endpoint, env("AWS_ENDPOINT_URL"));
	if (!rc)
		rc = set_once(&c->ca_bundle, env("AWS_CA_BUNDLE"));
	if (rc)
		goto out;
	if (!c->access_key) {
		if (env("AWS_SHARED_CREDENTIALS_FILE"))
			rc = buf_appends(&path,
					 env("AWS_SHARED_CREDENTIALS_FILE"));
		else if (home)
			rc = buf_appendf(&path, "%s/.aws/credentials", home);
		if (!rc && path.len)
			rc = conf_read_ini(buf_str(&path), profile, false, c,
					   err);
		if (!rc && path.len)
			rc = buf_appendf(&searched, "%s%s",
					 searched.len ? ", " : "",
					 buf_str(&path));
	}
	if (rc)
		goto out;
	buf_reset(&path);
	if (env("AWS_CONFIG_FILE"))
		rc = buf_appends(&path, env("AWS_CONFIG_FILE"));
	else if (home)
		rc = buf_appendf(&path, "%s/.aws/config", home);
	if (!rc)
		rc = !strcmp(profile, "default") ?
			     buf_appends(&sect, "default") :
			     buf_appendf(&sect, "profile %s", profile);
	if (!rc && path.len) {
		struct s3_conf keys = { 0 };

		rc = conf_read_ini(buf_str(&path), buf_str(&sect), false,
				   &keys, err);
		/* credentials found in config only count when none were */
		if (!rc && !c->access_key && keys.access_key &&
		    keys.secret_key) {
			c->access_key = keys.access_key;
			c->secret_key = keys.secret_key;
			c->token = keys.token;
			keys.access_key = keys.secret_key = keys.token = NULL;
		}
		if (!rc)
			rc = set_once(&c->region, keys.region);
		if (!rc)
			rc = set_once(&c->endpoint, keys.endpoint);
		if (!rc)
			rc = set_once(&c->ca_bundle, keys.ca_bundle);
		if (!rc)
			rc = buf_appendf(&searched, "%s%s",
					 searched.len ? ", " : "",
					 buf_str(&path));
		c->profile_found |= keys.profile_found;
		conf_free(&keys);
	}
	if (!rc && env("AWS_PROFILE") && !c->access_key &&
	    !c->profile_found) {
		buf_appendf(err, "AWS profile '%s' (AWS_PROFILE) not found in "
				 "%s",
			    profile,
			    searched.len ? buf_str(&searched) : "any file "
								"(HOME is "
								"not set)");
		rc = -ENOENT;
	}
	if (!rc)
		rc = set_once(&c->region, "us-east-1");
out:
	buf_free(&path);
	buf_free(&sect);
	buf_free(&searched);
	return rc;
}

static bool bucket_name_ok(const char *b, size_t n)
{
	size_t i;

	if (n < 3 || n > 63)
		return false;
	for (i = 0; i < n; i++)
		if (!((b[i] >= 'a' && b[i] <= 'z') ||
		      (b[i] >= '0' && b[i] <= '9') || b[i] == '.' ||
		      b[i] == '-' || b[i] == '_' ||
		      (b[i] >= 'A' && b[i] <= 'Z')))
			return false;
	return true;
}

/* host (without port) is an IPv4/IPv6 literal or localhost. */
static bool host_is_local_or_ip(const char *host, size_t n)
{
	size_t i;
	bool digits_dots = n > 0;

	if (n && host[0] == '[')
		return true;
	if ((n == 9 && !strncasecmp(host, "localhost", 9)) ||
	    (n > 10 && !strncasecmp(host + n - 10, ".localhost", 10)))
		return true;
	for (i = 0; i < n; i++)
		if (!((host[i] >= '0' && host[i] <= '9') || host[i] == '.'))
			digits_dots = false;
	return digits_dots;
}

/* host (without port) is localhost or a loopback address literal:
 * 127.0.0.0/8 or [::1].  Traffic to it never leaves the machine. */
static bool host_is_loopback(const char *host, size_t n)
{
	char lit[INET6_ADDRSTRLEN];
	struct in6_addr a6;
	struct in_addr a4;

	if (n == 9 && !strncasecmp(host, "localhost", 9))
		return true;
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' &&
	    n - 2 < sizeof(lit)) {
		memcpy(lit, host + 1, n - 2);
		lit[n - 2] = 0;
		return inet_pton(AF_INET6, lit, &a6) == 1 &&
		       IN6_IS_ADDR_LOOPBACK(&a6);
	}
	if (n >= sizeof(lit))
		return false;
	memcpy(lit, host, n);
	lit[n] = 0;
	return inet_pton(AF_INET, lit, &a4) == 1 &&
	       (ntohl(a4.s_addr) >> 24) == 127;
}

/* Split endpoint "scheme://hostport[/]" and fill origin/host/path_base. */
static int setup_endpoint(struct store_s3 *s, const char *endpoint,
			  enum store_s3_addressing addr, struct buf *err)
{
	const char *sep = strstr(endpoint, "://"), *hp, *end, *colon;
	size_t scheme_len, hlen, namelen;
	struct buf b = BUF_INIT;
	bool path_style;
	int rc;

	if (!sep || ((scheme_len = (size_t)(sep - endpoint)) != 4 &&
		     scheme_len != 5) ||
	    (strncasecmp(endpoint, "http", 4) ||
	     (scheme_len == 5 && tolower((unsigned char)endpoint[4]) != 's'))) {
		buf_appendf(err, "invalid S3 endpoint '%s' (want http://HOST"
				 "[:PORT] or https://HOST[:PORT])", endpoint);
		return -EINVAL;
	}
	hp = sep + 3;
	end = hp + strcspn(hp, "/?#");
	if (end == hp || (*end && strcmp(end, "/"))) {
		buf_appendf(err, "invalid S3 endpoint '%s' (no path allowed "
				 "after the host)", endpoint);
		return -EINVAL;
	}
	hlen = (size_t)(end - hp);
	/* the host name without the port, for the addressing decision */
	colon = hp[0] == '[' ? memchr(hp, ']', hlen) : memchr(hp, ':', hlen);
	if (hp[0] == '[')
		namelen = colon ? (size_t)(colon - hp) + 1 : hlen;
	else
		namelen = colon ? (size_t)(colon - hp) : hlen;
	s->loopback = host_is_loopback(hp, namelen);
	path_style = addr == STORE_S3_ADDR_PATH ||
		     (addr == STORE_S3_ADDR_AUTO &&
		      (host_is_local_or_ip(hp, namelen) ||
		       strchr(s->bucket, '.') || strchr(s->bucket, '_')));

	if (path_style) {
		rc = buf_appendf(&b, "%.*s", (int)hlen, hp);
		s->host = rc ? NULL : (char *)buf_detach(&b, NULL);
		rc = buf_appendf(&b, "/%s", s->bucket);
		s->path_base = rc ? NULL : (char *)buf_detach(&b, NULL);
		rc = buf_appendf(&b, "%.*s://%.*s", (int)scheme_len, endpoint,
				 (int)hlen, hp);
	} else {
		rc = buf_appendf(&b, "%s.%.*s", s->bucket, (int)hlen, hp);
		s->host = rc ? NULL : (char *)buf_detach(&b, NULL);
		s->path_base = strdup("");
		rc = buf_appendf(&b, "%.*s://%s", (int)scheme_len, endpoint,
				 s->host ? s->host : "");
	}
	s->origin = rc ? NULL : (char *)buf_detach(&b, NULL);
	s->endpoint = strdup(endpoint);
	buf_free(&b);
	if (!s->host || !s->path_base || !s->origin || !s->endpoint)
		return -ENOMEM;
	return 0;
}

static int create_bucket(struct store_s3 *s, struct buf *err)
{
	struct buf body = BUF_INIT;
	struct s3_xfer x = { .method = M_PUT, .key = NULL, .quiet = true };
	int rc = 0;

	if (strcmp(s->region, "us-east-1"))
		rc = buf_appendf(&body,
				 "<CreateBucketConfiguration xmlns=\"http://s3."
				 "amazonaws.com/doc/2006-03-01/\"><Location"
				 "Constraint>%s</LocationConstraint></Create"
				 "BucketConfiguration>",
				 s->region);
	if (rc)
		return rc;
	x.body = body.data;
	x.body_len = body.len;
	rc = s3_request(s, &x, s->attempts, 0);
	if (rc && strcmp(x.code, "BucketAlreadyOwnedByYou")) {
		buf_appendf(err, "cannot create bucket '%s' at %s: ", s->bucket,
			    s->endpoint);
		describe(&x, err);
	} else {
		rc = 0;
	}
	xfer_release(&x);
	buf_free(&body);
	return rc;
}

/* The answer to a request that carried a session token blames the
 * token: AWS's codes, and radosgw's InvalidArgument (it cannot decrypt a
 * token it did not issue). */
static bool token_refused(const struct s3_xfer *x)
{
	return !strcmp(x->code, "InvalidToken") ||
	       !strcmp(x->code, "ExpiredToken") ||
	       !strcmp(x->code, "TokenRefreshRequired") ||
	       (x->status == 400 && !strcmp(x->code, "InvalidArgument"));
}

/* The access check of open: a one-key listing of our prefix. */
static int check_access(struct store_s3 *s, int create, bool make_bucket,
			struct buf *err)
{
	const struct sigv4_kv q[] = {
		{ "list-type", "2" },
		{ "max-keys", "1" },
		{ "prefix", s->prefix },
	};
	struct s3_xfer x = {
		.method = M_GET, .query = q, .nquery = 3, .quiet = true,
		.fast_fail = true,
	};
	int rc = s3_request(s, &x, s->attempts, 0);

	if (!rc)
		goto out;
	if (rc == -ENOENT && create && make_bucket) {
		rc = create_bucket(s, err);
		goto out;
	}
	if (x.cc == CURLE_PEER_FAILED_VERIFICATION) {
		buf_appendf(err, "the TLS certificate of S3 endpoint %s is not "
				 "trusted (give its CA with -o ca_bundle=FILE "
				 "or AWS_CA_BUNDLE): ",
			    s->endpoint);
	} else if (x.cc != CURLE_OK) {
		buf_appendf(err, "cannot reach S3 endpoint %s (bucket '%s'): ",
			    s->endpoint, s->bucket);
	} else if (rc == -ENOENT) {
		buf_appendf(err, "bucket '%s' does not exist at %s%s: ",
			    s->bucket, s->endpoint,
			    create ? " (mkfs --create-bucket creates it)" : "");
	} else if (s->token && token_refused(&x)) {
		buf_appendf(err, "access to bucket '%s' at %s refused: the "
				 "session token was not accepted (check "
				 "AWS_SESSION_TOKEN or aws_session_token): ",
			    s->bucket, s->endpoint);
	} else if (rc == -EACCES) {
		buf_appendf(err, "access to bucket '%s' at %s refused "
				 "(check the credentials): ",
			    s->bucket, s->endpoint);
	} else {
		buf_appendf(err, "cannot access bucket '%s' at %s: ",
			    s->bucket, s->endpoint);
	}
	describe(&x, err);
out:
	xfer_release(&x);
	return rc;
}

int store_s3_open(const char *bucket_and_prefix, int create,
		  const struct store_options *opts, struct store **out,
		  struct buf *err)
{
	static const struct store_options defaults = { 0 };
	const struct store_options *o = opts ? opts : &defaults;
	struct buf tmp = BUF_INIT, dummy = BUF_INIT;
	struct s3_conf c = { 0 };
	struct store_s3 *s;
	const char *slash;
	size_t blen;
	int rc;

	*out = NULL;
	if (!err)
		err = &dummy;
	pthread_once(&global_once, global_init);
	if (global_rc) {
		buf_appends(err, "cannot initialise libcurl");
		return global_rc;
	}
	slash = strchr(bucket_and_prefix, '/');
	blen = slash ? (size_t)(slash - bucket_and_prefix) :
		       strlen(bucket_and_prefix);
	if (!bucket_name_ok(bucket_and_prefix, blen)) {
		buf_appendf(err, "invalid S3 location 's3://%s' (want "
				 "s3://BUCKET[/PREFIX], a bucket name of 3 to "
				 "63 characters)", bucket_and_prefix);
		rc = -EINVAL;
		goto out_dummy;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		rc = -ENOMEM;
		goto out_dummy;
	}
	s->base.ops = &store_s3_ops;
	s->base.block_size = STORE_BLOCK_REMOTE;
	pthread_mutex_init(&s->pool_lock, NULL);
	pthread_cond_init(&s->pool_cond, NULL);
	s->bucket = strndup(bucket_and_prefix, blen);
	/* the prefix, without leading/trailing '/', must be a valid key */
	if (slash) {
		const char *p = slash + 1;
		size_t plen = strlen(p);

		while (plen && p[plen - 1] == '/')
			plen--;
		if (plen) {
			rc = buf_appendf(&tmp, "%.*s", (int)plen, p);
			if (rc)
				goto out_free;
			if (!store_key_valid(buf_str(&tmp))) {
				buf_appendf(err, "invalid prefix in S3 "
						 "location 's3://%s'",
					    bucket_and_prefix);
				rc = -EINVAL;
				goto out_free;
			}
			rc = buf_appends(&tmp, "/");
			if (rc)
				goto out_free;
		}
	}
	s->prefix = tmp.len ? (char *)buf_detach(&tmp, NULL) : strdup("");
	buf_reset(&tmp);
	if (!s->bucket || !s->prefix) {
		rc = -ENOMEM;
		goto out_free;
	}
	rc = buf_appendf(&tmp, "s3://%s%s%.*s", s->bucket,
			 *s->prefix ? "/" : "",
			 (int)(*s->prefix ? strlen(s->prefix) - 1 : 0),
			 s->prefix);
	if (rc)
		goto out_free;
	s->base.url = (char *)buf_detach(&tmp, NULL);

	rc = conf_load(o, &c, err);
	if (rc)
		goto out_free;
	if (!c.access_key || !c.secret_key) {
		buf_appendf(err, "no S3 credentials for %s: set "
				 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
				 "AWS_PROFILE with ~/.aws/credentials, or "
				 "-o credentials=FILE", s->base.url);
		rc = -EACCES;
		goto out_free;
	}
	s->access_key = c.access_key;
	s->secret_key = c.secret_key;
	s->token = c.token;
	s->region = c.region;
	c.access_key = c.secret_key = c.token = c.region = NULL;
	if (!c.endpoint) {
		rc = buf_appendf(&tmp, "https://s3.%s.amazonaws.com",
				 s->region);
		if (rc)
			goto out_free;
		c.endpoint = (char *)buf_detach(&tmp, NULL);
	}
	rc = setup_endpoint(s, c.endpoint, o->addressing, err);
	if (rc)
		goto out_free;
	s->verify_tls = !o->no_verify_tls;
	s->unsigned_payload = !o->sign_payload &&
			      (s->loopback ||
			       (s->verify_tls &&
				!strncasecmp(s->origin, "https://", 8)));
	if (c.ca_bundle && access(c.ca_bundle, R_OK) < 0) {
		int e = errno;

		buf_appendf(err, "CA bundle %s: %s", c.ca_bundle, strerror(e));
		rc = -e;
		goto out_free;
	}
	s->ca_bundle = c.ca_bundle;
	c.ca_bundle = NULL;
	s->max_conns = o->connections ? o->connections : S3_DEFAULT_CONNECTIONS;
	s->part_size = o->part_size ? o->part_size : S3_DEFAULT_PART_SIZE;
	if (s->part_size < S3_MIN_PART_SIZE)
		s->part_size = S3_MIN_PART_SIZE;
	s->attempts = o->attempts ? o->attempts : S3_DEFAULT_ATTEMPTS;
	s->owner = getpid();
	s->idle = calloc(s->max_conns, sizeof(*s->idle));
	if (!s->idle) {
		rc = -ENOMEM;
		goto out_free;
	}
	rc = check_access(s, create, o->create_bucket, err);
	if (rc)
		goto out_free;
	log_debug("s3: opened %s at %s (%s-style, region %s)", s->base.url,
		  s->endpoint, *s->path_base ? "path" : "virtual-host",
		  s->region);
	if (!s->verify_tls)
		log_warn("s3: TLS certificate verification is off for %s "
			 "(-o no_verify_tls): anyone on the way can read and "
			 "change the traffic", s->endpoint);
	s->opened = true;
	*out = &s->base;
	rc = 0;
	goto out_conf;

out_free:
	s3_close(&s->base);
out_conf:
	conf_free(&c);
	buf_free(&tmp);
out_dummy:
	buf_free(&dummy);
	return rc;
}

static const struct store_ops store_s3_ops = {
	.name = "s3",
	.put = s3_put,
	.get = s3_get,
	.del = s3_del,
	.del_many = s3_del_many,
	.list = s3_list,
	.head = s3_head,
	.close = s3_close,
};
