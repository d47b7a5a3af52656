/*
 * s3_http.c - how the S3 backend talks to the service: a pool of curl
 * handles, one signed request with its retries, and the XML of S3's
 * answers.  The store operations (store_s3.c) describe a request in a
 * struct s3_xfer and call s3_request().
 *
 * Signing: every request is signed with SigV4 (sigv4.c).  Over plain
 * HTTP, or HTTPS without certificate checks, x-amz-content-sha256 is the
 * SHA-256 of the body, so S3 checks the payload too.  Over verified HTTPS
 * it is UNSIGNED-PAYLOAD: TLS already guarantees the body, and hashing it
 * again was about a tenth of the daemon's CPU on a sequential write.  So
 * it is to a loopback endpoint (localhost, 127.0.0.0/8, [::1]): the body
 * never crosses a wire that could damage or alter it, and the hash cost
 * the server as much CPU again to check, on the same machine.  The option
 * sign_payload hashes every body regardless (s3_conf.c decides, in
 * s->unsigned_payload).
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
 * 100 ms up to 5 s, with full jitter.  A request marked fast_fail (the
 * access check of open) gives up after two tries when nothing listens at
 * the endpoint.  After the last try: 404 is -ENOENT, 403 -EACCES,
 * anything else -EIO, and the log has the S3 error code and request id.
 *
 * Data model: the pool is the stack idle[0, nidle) of handles not in use
 * and the count nopen of handles made (at most max_conns), owned by the
 * process in owner.  A request is a struct s3_xfer (s3_int.h); each
 * attempt at it signs it anew (attempt_sign), sets the handle up
 * (attempt_configure) and sends it (attempt_perform).
 *
 * Invariants:
 *   1. No lock is held across network I/O: pool_lock only guards the idle
 *      list and the counts.
 *   2. Secrets (the secret key, the session token) are never logged, and
 *      never part of an error message; the Authorization value is wiped
 *      once sent.
 *   3. A failed attempt leaves the caller's output buffer as it found it
 *      (its length is restored before a retry and on failure).
 *   4. curl_global_init and xmlInitParser run once, before any handle
 *      exists (pthread_once).
 */
#include "util/compat.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <sodium.h>

#include "store/s3_int.h"
#include "store/sigv4.h"
#include "util/log.h"

#define S3_BACKOFF_BASE_MS 100
#define S3_BACKOFF_MAX_MS 5000
#define S3_ERR_BODY_MAX 65536

static const char *const method_names[M_COUNT] = {
	"GET", "PUT", "HEAD", "DELETE", "POST",
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 :
									-EIO;
	xmlInitParser();
}

int s3_http_init(void)
{
	pthread_once(&global_once, global_init);
	return global_rc;
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

int s3_pool_init(struct store_s3 *s)
{
	s->idle = calloc(s->max_conns, sizeof(*s->idle));
	if (!s->idle)
		return -ENOMEM;
	pthread_mutex_init(&s->pool_lock, NULL);
	pthread_cond_init(&s->pool_cond, NULL);
	s->owner = getpid();
	return 0;
}

void s3_pool_release(struct store_s3 *s)
{
	unsigned i;

	if (!s->idle)
		return;
	for (i = 0; i < s->nidle; i++)
		curl_easy_cleanup(s->idle[i]);
	free(s->idle);
	s->idle = NULL;
	pthread_mutex_destroy(&s->pool_lock);
	pthread_cond_destroy(&s->pool_cond);
}

/* ---- one request ---- */

void s3_xfer_release(struct s3_xfer *x)
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
const xmlNode *s3_xml_child(const xmlNode *node, const char *name)
{
	const xmlNode *c;

	for (c = node ? node->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE &&
		    !strcmp((const char *)c->name, name))
			return c;
	return NULL;
}

/* Copy the text content of node's child name into dst ("" if none). */
void s3_xml_text(const xmlNode *node, const char *name, char *dst,
		 size_t cap)
{
	const xmlNode *c = s3_xml_child(node, name);
	xmlChar *t = c ? xmlNodeGetContent(c) : NULL;

	dst[0] = '\0';
	if (t) {
		snprintf(dst, cap, "%s", (const char *)t);
		xmlFree(t);
	}
}

xmlDoc *s3_xml_parse(const struct buf *b)
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
	xmlDoc *doc = s3_xml_parse(body);
	const xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;

	if (root && !strcmp((const char *)root->name, "Error")) {
		s3_xml_text(root, "Code", x->code, sizeof(x->code));
		s3_xml_text(root, "Message", x->message, sizeof(x->message));
		if (!x->request_id[0])
			s3_xml_text(root, "RequestId", x->request_id,
				 sizeof(x->request_id));
	}
	if (doc)
		xmlFreeDoc(doc);
}

bool s3_retryable_code(const char *code)
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
	return s3_retryable_code(x->code);
}

/* Full jitter over an exponential ceiling. */
void s3_backoff(unsigned attempt)
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

/* origin + the encoded path + "?" and the canonical query, if any. */
static int request_url(struct store_s3 *s, const struct s3_xfer *x,
		       const char *path, struct buf *url)
{
	int rc = buf_appends(url, s->origin);

	if (!rc)
		rc = sigv4_uri_encode(url, path, true);
	if (!rc && x->nquery) {
		rc = buf_appends(url, "?");
		if (!rc)
			rc = sigv4_canonical_query(x->query, x->nquery, url);
	}
	return rc;
}

/* The signed headers h, then Authorization and an empty Expect (no
 * 100-continue round trip), as a curl header list appended to *list. */
static int header_list(const struct sigv4_kv *h, size_t nh,
		       const struct buf *auth, struct curl_slist **list)
{
	struct buf hdr = BUF_INIT;
	struct curl_slist *nl;
	size_t i;
	int rc = 0;

	for (i = 0; !rc && i < nh; i++) {
		buf_reset(&hdr);
		rc = buf_appendf(&hdr, "%s: %s", h[i].name, h[i].value);
		if (!rc) {
			nl = curl_slist_append(*list, buf_str(&hdr));
			rc = nl ? 0 : -ENOMEM;
			*list = nl ? nl : *list;
		}
	}
	if (!rc) {
		buf_reset(&hdr);
		rc = buf_appendf(&hdr, "Authorization: %s", buf_str(auth));
	}
	if (!rc) {
		nl = curl_slist_append(*list, buf_str(&hdr));
		if (nl)
			*list = nl;
		nl = nl ? curl_slist_append(*list, "Expect:") : NULL;
		if (nl)
			*list = nl;
		rc = nl ? 0 : -ENOMEM;
	}
	buf_free(&hdr);
	return rc;
}

/*
 * Sign x as of now: its URL into url, its headers (Authorization
 * included) into *list, which the caller frees, also on failure.
 */
static int attempt_sign(struct store_s3 *s, const struct s3_xfer *x,
			const char *payload_hash, struct buf *url,
			struct curl_slist **list)
{
	struct buf path = BUF_INIT, auth = BUF_INIT;
	struct sigv4_kv h[7];
	size_t nh = 0;
	char date[SIGV4_DATE_LEN + 1];
	const struct sigv4_creds creds = {
		s->access_key, s->secret_key, s->region, "s3",
	};
	struct sigv4_request r;
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
		rc = request_url(s, x, buf_str(&path), url);
	r = (struct sigv4_request){
		method_names[x->method], buf_str(&path), x->query, x->nquery,
		h, nh, payload_hash,
	};
	if (!rc)
		rc = sigv4_authorization(&r, &creds, date, &auth, NULL, NULL);
	if (!rc)
		rc = header_list(h, nh, &auth, list);
	buf_free(&path);
	if (auth.data)
		sodium_memzero(auth.data, auth.len);
	buf_free(&auth);
	return rc;
}

/* Forget what the previous attempt left in x. */
static void attempt_reset(struct s3_xfer *x)
{
	x->body_pos = 0;
	x->status = 0;
	x->etag[0] = x->request_id[0] = x->curl_err[0] = '\0';
	x->code[0] = x->message[0] = '\0';
	buf_reset(&x->err_body);
	if (x->out)
		x->out->len = x->out_base;
}

/* The options that depend on the method: an upload reads x's body. */
static void configure_method(CURL *c, struct s3_xfer *x)
{
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
}

/* Set x's handle up for one attempt at url with the headers list. */
static void attempt_configure(struct store_s3 *s, struct s3_xfer *x,
			      const char *url, struct curl_slist *list)
{
	CURL *c = x->h;

	curl_easy_setopt(c, CURLOPT_URL, url);
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
	configure_method(c, x);
}

/* The kind of request x is, as the store's counters and a price list
 * know it (store_stats.h): a GET with list-type is a LIST, a POST with
 * delete a DeleteObjects. */
static enum store_req xfer_kind(const struct s3_xfer *x)
{
	const char *q = x->nquery ? x->query[0].name : "";

	switch (x->method) {
	case M_GET:
		return !strcmp(q, "list-type") ? STORE_REQ_LIST :
						 STORE_REQ_GET;
	case M_PUT:
		return STORE_REQ_PUT;
	case M_HEAD:
		return STORE_REQ_HEAD;
	case M_DELETE:
		return STORE_REQ_DELETE;
	case M_POST:
	default:
		return !strcmp(q, "delete") ? STORE_REQ_DELETE_MULTI :
					      STORE_REQ_POST;
	}
}

/* Send, count the traffic, and read the answer's status and error. */
static void attempt_perform(struct store_s3 *s, struct s3_xfer *x)
{
	CURL *c = x->h;
	curl_off_t up = 0, down = 0, clen = -1;

	atomic_fetch_add(&s->requests[x->method], 1);
	x->cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
	curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &up);
	curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &down);
	curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
	atomic_fetch_add(&s->bytes_sent, (uint64_t)up);
	atomic_fetch_add(&s->bytes_received, (uint64_t)down);
	store_counters_add(s->base.counters, xfer_kind(x),
			   up > 0 ? (uint64_t)up : 0,
			   down > 0 ? (uint64_t)down : 0);
	x->content_length = clen >= 0 ? (uint64_t)clen : 0;
	if (x->cc == CURLE_OK && (x->status < 200 || x->status >= 300))
		parse_error_body(x, &x->err_body);
	/* the handle outlives the header list and x's error buffer */
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
}

/* One attempt: sign, send, collect the answer into x.  0 when the
 * attempt was made (x says how it went), -errno when it could not be. */
static int attempt_once(struct store_s3 *s, struct s3_xfer *x,
			const char *payload_hash)
{
	struct buf url = BUF_INIT;
	struct curl_slist *list = NULL;
	int rc = attempt_sign(s, x, payload_hash, &url, &list);

	if (!rc) {
		attempt_reset(x);
		attempt_configure(s, x, buf_str(&url), list);
		attempt_perform(s, x);
	}
	curl_slist_free_all(list);
	buf_free(&url);
	return rc;
}

/* One line describing what went wrong, for logs and messages. */
void s3_describe(const struct s3_xfer *x, struct buf *b)
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
int s3_request(struct store_s3 *s, struct s3_xfer *x, unsigned attempts,
	       long ok_extra)
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

			s3_describe(x, &d);
			log_warn("s3: %s %s: %s; retrying (%u of %u)",
				 method_names[x->method],
				 x->key ? x->key : s->bucket, buf_str(&d), n,
				 attempts - 1);
			buf_free(&d);
		}
		atomic_fetch_add(&s->retries, 1);
		store_counters_retry(s->base.counters);
		s3_backoff(n);
	}
	pool_give(s, x->h);
	x->h = NULL;
	if (rc && rc != -ENOENT)
		store_counters_error(s->base.counters);
	if (rc && x->out)
		x->out->len = x->out_base;
	if (rc && x->out && x->out->data)
		x->out->data[x->out->len] = 0;
	if (rc && !(rc == -ENOENT && x->quiet_404) && rc != -ENOMEM &&
	    !x->quiet) {
		struct buf d = BUF_INIT;

		s3_describe(x, &d);
		log_error("s3: %s %s/%s failed: %s", method_names[x->method],
			  s->bucket, x->key ? x->key : "", buf_str(&d));
		buf_free(&d);
	}
	return rc;
}
