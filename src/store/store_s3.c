/*
 * store_s3.c - the S3 store backend: any S3-compatible service (AWS S3,
 * Ceph RGW, MinIO, Garage, R2, B2, Wasabi, Storj's gateway) as the home of
 * a volume.
 *
 * Data model: location "s3://BUCKET[/PREFIX]"; key K is the object
 * PREFIX/K in BUCKET, and nothing else is stored there (no index, no
 * marker object).
 *
 * This file holds the store operations, open with its access check, and
 * close.  The other files of the backend:
 *   s3_conf.c  options, environment and AWS files into a configuration
 *              (credentials, region, endpoint, addressing, CA bundle);
 *   s3_http.c  the curl handle pool, one signed request with its retries
 *              (s3_request()), and the XML of S3's answers;
 *   s3_int.h   what they share: struct store_s3, struct s3_xfer.
 *
 * Requests: GET (ranged), PUT (multipart above part_size, its parts sent
 * in parallel), HEAD, DELETE, DeleteObjects (1,000 keys a request, with
 * Content-MD5 as S3 requires), ListObjectsV2 with continuation tokens.
 * XML (listings, errors, multipart) is parsed with libxml2.  Every request
 * the backend sends is idempotent, except completing a multipart upload,
 * whose retry may find the upload already completed: then a HEAD of the
 * object decides.  The access check of open gives up after two tries
 * when nothing listens at the endpoint, so a wrong endpoint fails at once.
 *
 * Locks: the pool's pool_lock (s3_http.c) and a multipart upload's
 * part_job.lock (here).  Neither is taken while the other is held, and
 * neither is held across network I/O, so they have no order.
 *
 * Invariants:
 *   1. Listing callbacks run with no handle and no lock held.
 *   2. Every key is checked with store_key_valid() before it reaches a
 *      request, and a listing reports only keys under our prefix that are
 *      valid keys.
 *   3. The store's url holds no secret (s3_conf.c keeps them out of logs
 *      and messages).
 */
#include "util/compat.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>

#include <libxml/tree.h>
#include <openssl/evp.h>

#include "store/s3_int.h"
#include "store/sigv4.h"
#include "store/store.h"
#include "util/log.h"

#define S3_MAX_PARTS 10000
#define S3_PART_THREADS 4
#define S3_LIST_PAGE "1000"
#define S3_DELETE_BATCH 1000

static const struct store_ops store_s3_ops;

static struct store_s3 *s3_from_store(struct store *s)
{
	assert(s->ops == &store_s3_ops);
	return (struct store_s3 *)s;
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

	s3_xfer_release(&x);
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

	s3_xfer_release(&x);
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
	s3_xfer_release(&x);
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

/* POST ?uploads: the UploadId of a new multipart upload of fk. */
static int multipart_start(struct store_s3 *s, const char *fk,
			   char *upload_id, size_t cap)
{
	const struct sigv4_kv q[] = { { "uploads", "" } };
	struct buf body = BUF_INIT;
	struct s3_xfer x = {
		.method = M_POST, .key = fk, .query = q, .nquery = 1,
		.out = &body,
	};
	xmlDoc *doc;
	const xmlNode *root;
	int rc;

	rc = s3_request(s, &x, s->attempts, 0);
	s3_xfer_release(&x);
	if (rc)
		goto out;
	doc = s3_xml_parse(&body);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	upload_id[0] = '\0';
	if (root)
		s3_xml_text(root, "UploadId", upload_id, cap);
	if (doc)
		xmlFreeDoc(doc);
	if (!upload_id[0]) {
		log_error("s3: no UploadId in the answer to starting a "
			  "multipart upload of %s", fk);
		rc = -EIO;
	}
out:
	buf_free(&body);
	return rc;
}

/* The body of CompleteMultipartUpload: every part's number and ETag. */
static int multipart_manifest(char (*etags)[128], size_t nparts,
			      struct buf *done)
{
	size_t i;
	int rc = buf_appends(done, "<CompleteMultipartUpload>");

	for (i = 0; !rc && i < nparts; i++)
		rc = buf_appendf(done, "<Part><PartNumber>%zu</PartNumber>"
				       "<ETag>%s</ETag></Part>",
				 i + 1, etags[i]);
	if (!rc)
		rc = buf_appends(done, "</CompleteMultipartUpload>");
	return rc;
}

/*
 * POST ?uploadId with the manifest done.  S3 may answer 200 and still
 * report an error in the body: that is tried again too.  A retried
 * completion may find the upload already done (-ENOENT): then the object
 * is there if a HEAD finds it with all len bytes.
 */
static int multipart_complete(struct store_s3 *s, const char *fk,
			      const char *upload_id, const struct buf *done,
			      size_t len)
{
	const struct sigv4_kv q[] = { { "uploadId", upload_id } };
	struct buf body = BUF_INIT;
	struct s3_xfer x = {
		.method = M_POST, .key = fk, .query = q, .nquery = 1,
		.body = done->data, .body_len = done->len,
		.quiet_404 = true,
	};
	xmlDoc *doc;
	const xmlNode *root;
	unsigned tries;
	int rc = 0;

	for (tries = 0; tries < s->attempts; tries++) {
		buf_reset(&body);
		x.out = &body;
		rc = s3_request(s, &x, s->attempts, 0);
		if (rc)
			break;
		doc = s3_xml_parse(&body);
		root = doc ? xmlDocGetRootElement(doc) : NULL;
		if (root && !strcmp((const char *)root->name, "Error")) {
			s3_xml_text(root, "Code", x.code, sizeof(x.code));
			log_warn("s3: completing the upload of %s: %s; "
				 "retrying", fk, x.code);
			rc = -EIO;
		}
		if (doc)
			xmlFreeDoc(doc);
		if (!rc)
			break;
		s3_backoff(tries + 1);
	}
	s3_xfer_release(&x);
	if (rc == -ENOENT) {
		struct s3_xfer hx = { .method = M_HEAD, .key = fk };

		if (s3_request(s, &hx, s->attempts, 0) == 0 &&
		    hx.content_length == len)
			rc = 0;
		s3_xfer_release(&hx);
	}
	buf_free(&body);
	return rc;
}

/* Start an upload, send the parts, complete it; abort it on failure. */
static int s3_put_multipart(struct store_s3 *s, const char *fk,
			    const uint8_t *data, size_t len)
{
	struct buf done = BUF_INIT;
	char upload_id[512], (*etags)[128] = NULL;
	/* S3 takes at most 10,000 parts: bigger objects get bigger parts */
	size_t psize = (size_t)MF_MAX(s->part_size,
				      (len + S3_MAX_PARTS - 1) / S3_MAX_PARTS);
	size_t nparts = (len + psize - 1) / psize;
	int rc;

	rc = multipart_start(s, fk, upload_id, sizeof(upload_id));
	if (rc)
		goto out;
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
	}
	if (!rc)
		rc = multipart_manifest(etags, nparts, &done);
	if (!rc)
		rc = multipart_complete(s, fk, upload_id, &done, len);
	if (!rc)
		goto out;
out_abort:
	multipart_abort(s, fk, upload_id);
out:
	free(etags);
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
	s3_xfer_release(&x);
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
	s3_xfer_release(&x);
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
	s3_xfer_release(&x);
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
	xmlDoc *doc = s3_xml_parse(body);
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
		s3_xml_text(c, "Key", key, sizeof(key));
		s3_xml_text(c, "Code", code, sizeof(code));
		s3_xml_text(c, "Message", msg, sizeof(msg));
		if (strncmp(key, s->prefix, plen))
			continue;
		for (i = 0; i < n; i++) {
			if (results[i] || strcmp(keys[i], key + plen))
				continue;
			results[i] = delete_code_errno(code);
			if (s3_retryable_code(code))
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

		s3_describe(&x, &d);
		log_error("s3: deleting %zu object(s) in %s failed: %s", n,
			  s->bucket, buf_str(&d));
		buf_free(&d);
	}
out:
	s3_xfer_release(&x);
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
	xmlDoc *doc = s3_xml_parse(body);
	const xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	const xmlNode *c;
	size_t cap = 0;
	char tmp[32];
	int rc = 0;

	if (!root || strcmp((const char *)root->name, "ListBucketResult")) {
		rc = -EIO;
		goto out;
	}
	s3_xml_text(root, "IsTruncated", tmp, sizeof(tmp));
	p->truncated = !strcmp(tmp, "true");
	c = s3_xml_child(root, "NextContinuationToken");
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
		k = s3_xml_child(c, "Key") ?
			    xmlNodeGetContent(s3_xml_child(c, "Key")) : NULL;
		if (!k)
			continue;
		p->keys[p->n] = strdup((const char *)k);
		xmlFree(k);
		if (!p->keys[p->n]) {
			rc = -ENOMEM;
			goto out;
		}
		s3_xml_text(c, "Size", tmp, sizeof(tmp));
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
		s3_xfer_release(&x);
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

/* ---- open and close ---- */

/* The traffic of a session, for benchmarks. */
static void log_traffic(struct store_s3 *s)
{
	uint64_t total = 0;
	unsigned i;

	for (i = 0; i < M_COUNT; i++)
		total += atomic_load(&s->requests[i]);
	/* the few requests of mkfs or of a mount's parent process are not
	 * worth a line */
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
}

static void s3_close(struct store *st)
{
	struct store_s3 *s = s3_from_store(st);

	if (s->opened)
		log_traffic(s);
	s3_pool_release(s);
	s3_conf_release(s);
	free(s->bucket);
	free(s->prefix);
	free(s->base.url);
	free(s);
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
		s3_describe(&x, err);
	} else {
		rc = 0;
	}
	s3_xfer_release(&x);
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
	s3_describe(&x, err);
out:
	s3_xfer_release(&x);
	return rc;
}

/*
 * s->bucket, s->prefix ("" or "PREFIX/") and s->base.url from
 * "BUCKET[/PREFIX]", whose first blen bytes are a valid bucket name.
 */
static int set_location(struct store_s3 *s, const char *bucket_and_prefix,
			size_t blen, struct buf *err)
{
	const char *slash = bucket_and_prefix[blen] ? bucket_and_prefix + blen :
						      NULL;
	struct buf tmp = BUF_INIT;
	int rc = 0;

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
				goto out;
			if (!store_key_valid(buf_str(&tmp))) {
				buf_appendf(err, "invalid prefix in S3 "
						 "location 's3://%s'",
					    bucket_and_prefix);
				rc = -EINVAL;
				goto out;
			}
			rc = buf_appends(&tmp, "/");
			if (rc)
				goto out;
		}
	}
	s->prefix = tmp.len ? (char *)buf_detach(&tmp, NULL) : strdup("");
	buf_reset(&tmp);
	if (!s->bucket || !s->prefix) {
		rc = -ENOMEM;
		goto out;
	}
	rc = buf_appendf(&tmp, "s3://%s%s%.*s", s->bucket,
			 *s->prefix ? "/" : "",
			 (int)(*s->prefix ? strlen(s->prefix) - 1 : 0),
			 s->prefix);
	if (!rc)
		s->base.url = (char *)buf_detach(&tmp, NULL);
out:
	buf_free(&tmp);
	return rc;
}

int store_s3_open(const char *bucket_and_prefix, int create,
		  const struct store_options *opts, struct store **out,
		  struct buf *err)
{
	static const struct store_options defaults = { 0 };
	const struct store_options *o = opts ? opts : &defaults;
	struct buf dummy = BUF_INIT;
	struct store_s3 *s;
	const char *slash;
	size_t blen;
	int rc;

	*out = NULL;
	if (!err)
		err = &dummy;
	rc = s3_http_init();
	if (rc) {
		buf_appends(err, "cannot initialise libcurl");
		return rc;
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
	s->base.counters = &s->ctr;
	rc = set_location(s, bucket_and_prefix, blen, err);
	if (!rc)
		rc = s3_conf_apply(s, o, err);
	if (!rc)
		rc = s3_pool_init(s);
	if (!rc)
		rc = check_access(s, create, o->create_bucket, err);
	if (rc)
		goto out_close;
	log_debug("s3: opened %s at %s (%s-style, region %s)", s->base.url,
		  s->endpoint, *s->path_base ? "path" : "virtual-host",
		  s->region);
	if (!s->verify_tls)
		log_warn("s3: TLS certificate verification is off for %s "
			 "(-o no_verify_tls): anyone on the way can read and "
			 "change the traffic", s->endpoint);
	s->opened = true;
	*out = &s->base;
	goto out_dummy;

out_close:
	s3_close(&s->base);
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
