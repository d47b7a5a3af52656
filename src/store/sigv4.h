/*
 * sigv4.h - AWS Signature Version 4 (header form), as S3 uses it.
 *
 * The signer is pure: it takes a request description and returns strings,
 * never touches the network, and is checked against AWS's published test
 * suite (tests/unit/t_sigv4.c).  S3 rules: the path is URI-encoded once
 * ('/' kept) and never normalized; every header passed is signed.
 *
 * All functions that fill a struct buf append to it and return 0 or
 * -ENOMEM.  Secrets are only read, and derived keys are wiped after use.
 */
#ifndef METAFUSE_SIGV4_H
#define METAFUSE_SIGV4_H

#include "util/compat.h"
#include "util/buf.h"

/* SHA-256 of the empty string: the payload hash of a bodiless request. */
#define SIGV4_EMPTY_SHA256 \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SIGV4_HEX_LEN 64
/* "YYYYMMDDTHHMMSSZ" */
#define SIGV4_DATE_LEN 16

/* A query parameter or a header; values may be "" (never NULL). */
struct sigv4_kv {
	const char *name;
	const char *value;
};

struct sigv4_request {
	const char *method;    /* "GET", "PUT" ... */
	const char *path;      /* raw (not encoded), starting with '/' */
	const struct sigv4_kv *query; /* raw names and values, any order */
	size_t nquery;
	/* every header to sign, any order and case, duplicates allowed (they
	 * are joined with ','); must include host and x-amz-date */
	const struct sigv4_kv *headers;
	size_t nheaders;
	const char *payload_hash; /* hex SHA-256 of the body */
};

struct sigv4_creds {
	const char *access_key;
	const char *secret_key;
	const char *region;  /* "us-east-1" */
	const char *service; /* "s3" */
};

/* Lowercase hex SHA-256 of data into out (65 bytes with the NUL). */
void sigv4_sha256_hex(const void *data, size_t len,
		      char out[SIGV4_HEX_LEN + 1]);

/* The x-amz-date form of t (UTC) into out (17 bytes). */
void sigv4_amz_date(time_t t, char out[SIGV4_DATE_LEN + 1]);

/* RFC 3986 encoding as SigV4 wants it: unreserved bytes (A-Z a-z 0-9 - . _
 * ~) as they are, '/' too when keep_slash, everything else %XX. */
int sigv4_uri_encode(struct buf *out, const char *s, bool keep_slash);

/* The canonical query string: encoded pairs sorted by name then value,
 * joined with '&' ("" when n == 0).  Also usable as the URL's query. */
int sigv4_canonical_query(const struct sigv4_kv *q, size_t n,
			  struct buf *out);

int sigv4_canonical_request(const struct sigv4_request *r, struct buf *out);

/* "AWS4-HMAC-SHA256\n<date>\n<scope>\n<hex sha256 of creq>" */
int sigv4_string_to_sign(const char *amz_date, const char *region,
			 const char *service, const char *creq,
			 struct buf *out);

/* Hex HMAC signature of sts with the key derived from secret and scope. */
void sigv4_signature(const char *secret, const char *amz_date,
		     const char *region, const char *service, const char *sts,
		     char out[SIGV4_HEX_LEN + 1]);

/*
 * The value of the Authorization header for r, signed at amz_date (which
 * must equal r's x-amz-date header).  creq and sts, when not NULL,
 * receive the intermediate strings (for tests and debugging; they hold
 * no secret).
 */
int sigv4_authorization(const struct sigv4_request *r,
			const struct sigv4_creds *c, const char *amz_date,
			struct buf *out, struct buf *creq, struct buf *sts);

#endif
