/*
 * sigv4.c - AWS Signature Version 4, header form.
 *
 * Four stages, each a function so the unit test can check every one
 * against the published suite:
 *   canonical request = METHOD \n encoded path \n canonical query \n
 *                       canonical headers \n signed header names \n
 *                       payload hash
 *   string to sign    = algorithm \n date \n scope \n hex(sha256(creq))
 *   signing key       = HMAC chain "AWS4"+secret -> date -> region ->
 *                       service -> "aws4_request"
 *   signature         = hex(HMAC(signing key, string to sign))
 *
 * Invariants:
 *   1. The path is encoded exactly once and not normalized (S3's rule; the
 *      generic services' double encoding would break keys with '%').
 *   2. Header values are trimmed and inner runs of spaces collapsed; names
 *      are lowercased; headers of the same name are joined with ',' in
 *      the order given; the sort is by name only, so that order is kept.
 *   3. Derived keys live on the stack and are wiped before returning.
 *
 * SHA-256 comes from OpenSSL (it uses the CPU's SHA extensions), with
 * libsodium's as the fallback; HMAC-SHA-256 from libsodium.
 */
#include "util/compat.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <time.h>

#include "store/sigv4.h"

static const char hexdig[] = "0123456789abcdef";

static void to_hex(const uint8_t *in, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hexdig[in[i] >> 4];
		out[2 * i + 1] = hexdig[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void sigv4_sha256_hex(const void *data, size_t len,
		      char out[SIGV4_HEX_LEN + 1])
{
	uint8_t h[crypto_hash_sha256_BYTES];
	unsigned int n = 0;

	/* every PUT hashes its whole body: OpenSSL's SHA-256 uses the CPU's
	 * SHA extensions (about 2 GB/s here, several times libsodium's) */
	if (!EVP_Digest(len ? data : (const void *)"", len, h, &n,
			EVP_sha256(), NULL) || n != sizeof(h))
		crypto_hash_sha256(h, data, len);
	to_hex(h, sizeof(h), out);
}

void sigv4_amz_date(time_t t, char out[SIGV4_DATE_LEN + 1])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

int sigv4_uri_encode(struct buf *out, const char *s, bool keep_slash)
{
	static const char up[] = "0123456789ABCDEF";
	const unsigned char *p;
	int rc = 0;

	for (p = (const unsigned char *)s; *p && !rc; p++) {
		if (unreserved(*p) || (keep_slash && *p == '/')) {
			rc = buf_append(out, p, 1);
		} else {
			char e[3] = { '%', up[*p >> 4], up[*p & 15] };

			rc = buf_append(out, e, 3);
		}
	}
	return rc;
}

/* An encoded query pair or a normalized header, for sorting. */
struct item {
	char *name;
	char *value;
	size_t order;
};

static void items_free(struct item *it, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(it[i].name);
		free(it[i].value);
	}
	free(it);
}

static int query_cmp(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

/* Headers sort by name; the original order breaks ties (invariant 2). */
static int header_cmp(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

static char *encoded(const char *s)
{
	struct buf b = BUF_INIT;

	if (sigv4_uri_encode(&b, s, false) || buf_append(&b, "", 0)) {
		buf_free(&b);
		return NULL;
	}
	if (!b.data)
		return strdup("");
	return (char *)buf_detach(&b, NULL);
}

int sigv4_canonical_query(const struct sigv4_kv *q, size_t n,
			  struct buf *out)
{
	struct item *it;
	size_t i;
	int rc = 0;

	if (n == 0)
		return 0;
	it = calloc(n, sizeof(*it));
	if (!it)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		it[i].name = encoded(q[i].name);
		it[i].value = encoded(q[i].value ? q[i].value : "");
		if (!it[i].name || !it[i].value) {
			rc = -ENOMEM;
			goto out;
		}
	}
	qsort(it, n, sizeof(*it), query_cmp);
	for (i = 0; i < n && !rc; i++)
		rc = buf_appendf(out, "%s%s=%s", i ? "&" : "", it[i].name,
				 it[i].value);
out:
	items_free(it, n);
	return rc;
}

/* Lowercased copy of a header name. */
static char *lower_dup(const char *s)
{
	char *d = strdup(s), *p;

	if (d)
		for (p = d; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	return d;
}

/* Value with leading/trailing spaces and tabs removed, inner runs as one
 * space. */
static char *trim_dup(const char *s)
{
	char *d = malloc(strlen(s) + 1), *o;
	bool space = false;

	if (!d)
		return NULL;
	o = d;
	for (; *s; s++) {
		if (*s == ' ' || *s == '\t') {
			space = o != d;
			continue;
		}
		if (space)
			*o++ = ' ';
		space = false;
		*o++ = *s;
	}
	*o = '\0';
	return d;
}

/* Canonical headers ("name:v1,v2\n"...) and the signed names ("a;b"). */
static int canonical_headers(const struct sigv4_kv *h, size_t n,
			     struct buf *hdrs, struct buf *names)
{
	struct item *it;
	size_t i;
	int rc = 0;

	it = calloc(n ? n : 1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		it[i].name = lower_dup(h[i].name);
		it[i].value = trim_dup(h[i].value ? h[i].value : "");
		it[i].order = i;
		if (!it[i].name || !it[i].value) {
			rc = -ENOMEM;
			goto out;
		}
	}
	qsort(it, n, sizeof(*it), header_cmp);
	for (i = 0; i < n && !rc; i++) {
		bool same = i > 0 && !strcmp(it[i].name, it[i - 1].name);
		bool last = i + 1 == n || strcmp(it[i].name, it[i + 1].name);

		if (same) {
			rc = buf_appendf(hdrs, ",%s", it[i].value);
		} else {
			rc = buf_appendf(hdrs, "%s:%s", it[i].name,
					 it[i].value);
			if (!rc && names)
				rc = buf_appendf(names, "%s%s",
						 i ? ";" : "", it[i].name);
		}
		if (!rc && last)
			rc = buf_appends(hdrs, "\n");
	}
out:
	items_free(it, n);
	return rc;
}

int sigv4_canonical_request(const struct sigv4_request *r, struct buf *out)
{
	struct buf names = BUF_INIT;
	int rc;

	rc = buf_appendf(out, "%s\n", r->method);
	if (!rc)
		rc = sigv4_uri_encode(out, r->path && *r->path ? r->path : "/",
				      true);
	if (!rc)
		rc = buf_appends(out, "\n");
	if (!rc)
		rc = sigv4_canonical_query(r->query, r->nquery, out);
	if (!rc)
		rc = buf_appends(out, "\n");
	if (!rc)
		rc = canonical_headers(r->headers, r->nheaders, out, &names);
	if (!rc)
		rc = buf_appendf(out, "\n%s\n%s", buf_str(&names),
				 r->payload_hash);
	buf_free(&names);
	return rc;
}

int sigv4_string_to_sign(const char *amz_date, const char *region,
			 const char *service, const char *creq,
			 struct buf *out)
{
	char h[SIGV4_HEX_LEN + 1];

	sigv4_sha256_hex(creq, strlen(creq), h);
	return buf_appendf(out,
			   "AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request\n%s",
			   amz_date, amz_date, region, service, h);
}

static void hmac(const uint8_t *key, size_t klen, const void *msg,
		 size_t mlen, uint8_t out[crypto_auth_hmacsha256_BYTES])
{
	crypto_auth_hmacsha256_state st;

	crypto_auth_hmacsha256_init(&st, key, klen);
	crypto_auth_hmacsha256_update(&st, msg, mlen);
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof(st));
}

void sigv4_signature(const char *secret, const char *amz_date,
		     const char *region, const char *service, const char *sts,
		     char out[SIGV4_HEX_LEN + 1])
{
	uint8_t k[crypto_auth_hmacsha256_BYTES];
	size_t slen = strlen(secret);
	uint8_t *k0 = malloc(slen + 4);

	if (!k0) {
		/* cannot happen in practice; an invalid signature is refused
		 * by the server, never a crash */
		memset(out, '0', SIGV4_HEX_LEN);
		out[SIGV4_HEX_LEN] = '\0';
		return;
	}
	memcpy(k0, "AWS4", 4);
	memcpy(k0 + 4, secret, slen);
	hmac(k0, slen + 4, amz_date, 8, k);
	sodium_memzero(k0, slen + 4);
	free(k0);
	hmac(k, sizeof(k), region, strlen(region), k);
	hmac(k, sizeof(k), service, strlen(service), k);
	hmac(k, sizeof(k), "aws4_request", 12, k);
	hmac(k, sizeof(k), sts, strlen(sts), k);
	to_hex(k, sizeof(k), out);
	sodium_memzero(k, sizeof(k));
}

int sigv4_authorization(const struct sigv4_request *r,
			const struct sigv4_creds *c, const char *amz_date,
			struct buf *out, struct buf *creq_out,
			struct buf *sts_out)
{
	struct buf creq = BUF_INIT, sts = BUF_INIT, names = BUF_INIT;
	struct buf hdrs = BUF_INIT;
	char sig[SIGV4_HEX_LEN + 1];
	int rc;

	rc = sigv4_canonical_request(r, &creq);
	if (!rc)
		rc = sigv4_string_to_sign(amz_date, c->region, c->service,
					  buf_str(&creq), &sts);
	if (!rc)
		rc = canonical_headers(r->headers, r->nheaders, &hdrs, &names);
	if (rc)
		goto out;
	sigv4_signature(c->secret_key, amz_date, c->region, c->service,
			buf_str(&sts), sig);
	rc = buf_appendf(out,
			 "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/"
			 "aws4_request, SignedHeaders=%s, Signature=%s",
			 c->access_key, amz_date, c->region, c->service,
			 buf_str(&names), sig);
	if (!rc && creq_out)
		rc = buf_append(creq_out, creq.data, creq.len);
	if (!rc && sts_out)
		rc = buf_append(sts_out, sts.data, sts.len);
out:
	buf_free(&creq);
	buf_free(&sts);
	buf_free(&names);
	buf_free(&hdrs);
	return rc;
}
