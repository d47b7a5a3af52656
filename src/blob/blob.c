/*
 * blob.c - the object codec: framing, checksum, zstd and naming (the
 * format is drawn in blob.h).
 *
 * Decoding trusts nothing: an object may come from a damaged disk, a
 * buggy or hostile store, or a fuzzer.  The checksum is unkeyed, so it
 * catches damage but not forgery; every length is therefore checked on its
 * own before it sizes an allocation or a copy.
 *
 * Invariants:
 *   1. blob_decode() appends exactly plain_len bytes and returns 0, or
 *      appends nothing and returns -EIO (-ENOMEM when memory runs out).
 *      It never returns bytes that failed a check.
 *   2. An accepted object has: the magic, a known codec, known flags and
 *      reserved bytes 0, payload_len == object length - 40, a matching
 *      checksum, plain_len == payload_len for raw, and for zstd a frame
 *      whose declared and actual decompressed size are both plain_len.
 *      A named object (flag BLOB_F_NAMED, data blocks) has a checksum of
 *      its header only: its plaintext is authenticated by the keyed hash
 *      its name is, which blob_decode_named() recomputes, so a second
 *      pass over the payload would buy nothing.  blob_decode() refuses
 *      named objects, whose payload it could not check.
 *   3. The allocation for a zstd plaintext is bounded by the payload
 *      size times the largest ratio zstd can reach (a 128 KiB block
 *      costs at least 4 bytes), so a forged plain_len cannot make a small
 *      object ask for gigabytes.
 *   4. blob_encode() output is deterministic for a given input, zstd
 *      level and libzstd version.
 */
#include "util/compat.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <sodium.h>
#include <zstd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "blob/blob.h"
#include "util/log.h"
#include "util/util.h"

#define BLOB_MAGIC "MFB1"
#define BLOB_CODEC_RAW 0
#define BLOB_CODEC_ZSTD 1
#define BLOB_SUM_OFFSET 24
#define BLOB_SUM_BYTES 16
#define BLOB_F_NAMED 0x01
/* ZSTD_BLOCKSIZE_MAX of output from a 4-byte RLE block */
#define BLOB_ZSTD_MAX_RATIO 32768

static void put_le64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* BLAKE2b-128 over the first 24 header bytes and the payload. */
static void blob_checksum(const uint8_t *hdr, const uint8_t *payload,
			  size_t len, uint8_t sum[BLOB_SUM_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, BLOB_SUM_BYTES);
	crypto_generichash_update(&st, hdr, BLOB_SUM_OFFSET);
	if (len)
		crypto_generichash_update(&st, payload, len);
	crypto_generichash_final(&st, sum, BLOB_SUM_BYTES);
}

/*
 * Block names are the hottest hash (every byte written and read).  A
 * volume names them one of two ways, fixed at mkfs (blob.h):
 *
 *   BLAKE2b-256 keyed: OpenSSL's BLAKE2BMAC, the same keyed BLAKE2b as
 *   libsodium's crypto_generichash bit for bit (about 1.5 times its speed
 *   on the Intel machine it was measured on); without it, libsodium.
 *
 *   HMAC-SHA-256: OpenSSL's HMAC, which uses the CPU's SHA-256
 *   instructions; without it, libsodium's crypto_auth_hmacsha256, the
 *   same function.
 */
static EVP_MAC *name_mac, *hmac_mac;
static pthread_once_t name_mac_once = PTHREAD_ONCE_INIT;

static void name_mac_fetch(void)
{
	name_mac = EVP_MAC_fetch(NULL, "BLAKE2BMAC", NULL);
	if (!name_mac)
		log_debug("OpenSSL has no BLAKE2BMAC; names use libsodium");
	hmac_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!hmac_mac)
		log_debug("OpenSSL has no HMAC; names use libsodium");
}

int blob_global_init(void)
{
	/* sodium_init() is itself idempotent and thread-safe */
	if (sodium_init() < 0) {
		log_error("libsodium initialisation failed");
		return -EIO;
	}
	pthread_once(&name_mac_once, name_mac_fetch);
	return 0;
}

static bool name_openssl(const struct blob_ctx *ctx, const void *data,
			 size_t len, uint8_t hash[BLOB_HASH_BYTES])
{
	size_t size = BLOB_HASH_BYTES, got = 0;
	char digest[] = "SHA256";
	bool sha = ctx->names == BLOB_NAMES_SHA256;
	OSSL_PARAM params[] = {
		sha ? OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						       digest, 0) :
		      OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
		OSSL_PARAM_END,
	};
	EVP_MAC *mac = sha ? hmac_mac : name_mac;
	EVP_MAC_CTX *c;
	bool ok;

	if (!mac)
		return false;
	c = EVP_MAC_CTX_new(mac);
	ok = c && EVP_MAC_init(c, ctx->hash_key, BLOB_KEY_BYTES, params) &&
	     (len == 0 || EVP_MAC_update(c, data, len)) &&
	     EVP_MAC_final(c, hash, &got, BLOB_HASH_BYTES) &&
	     got == BLOB_HASH_BYTES;
	EVP_MAC_CTX_free(c);
	return ok;
}

static void name_sodium(const struct blob_ctx *ctx, const void *data,
			size_t len, uint8_t hash[BLOB_HASH_BYTES])
{
	static const uint8_t empty;
	crypto_auth_hmacsha256_state st;

	if (ctx->names != BLOB_NAMES_SHA256) {
		crypto_generichash(hash, BLOB_HASH_BYTES, len ? data : &empty,
				   len, ctx->hash_key, BLOB_KEY_BYTES);
		return;
	}
	crypto_auth_hmacsha256_init(&st, ctx->hash_key, BLOB_KEY_BYTES);
	if (len)
		crypto_auth_hmacsha256_update(&st, data, len);
	crypto_auth_hmacsha256_final(&st, hash);
	sodium_memzero(&st, sizeof(st));
}

void blob_name_backend(const struct blob_ctx *ctx, const void *data,
		       size_t len, char *name, bool sodium)
{
	uint8_t hash[BLOB_HASH_BYTES];

	if (sodium || !name_openssl(ctx, data, len, hash))
		name_sodium(ctx, data, len, hash);
	hex_encode(hash, sizeof(hash), name);
}

void blob_name(const struct blob_ctx *ctx, const void *data, size_t len,
	       char *name)
{
	blob_name_backend(ctx, data, len, name, false);
}

const char *blob_names_label(enum blob_names names)
{
	return names == BLOB_NAMES_SHA256 ? "hmac-sha256" : "blake2b";
}

int blob_names_parse(const char *s, enum blob_names *out)
{
	if (!strcmp(s, "blake2b")) {
		*out = BLOB_NAMES_BLAKE2B;
		return 0;
	}
	if (!strcmp(s, "hmac-sha256") || !strcmp(s, "sha256")) {
		*out = BLOB_NAMES_SHA256;
		return 0;
	}
	return -EINVAL;
}

/*
 * SHA-256 in the CPU's instructions runs at up to twice BLAKE2b's speed
 * (AMD EPYC: 1.80 against 0.95-1.05 GB/s; an Intel Xeon with AVX-512:
 * 2.06 against 1.43); without them it is the slower of the two.  The CPU
 * of the machine that makes the volume decides, which is most often the
 * class of machine that will use it.
 */
enum blob_names blob_names_default(void)
{
	bool sha = false;
#if defined(__x86_64__) || defined(__i386__)
	unsigned a, b, c, d;

	/* CPUID leaf 7, EBX bit 29: the SHA extensions */
	sha = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b >> 29 & 1);
#elif defined(__aarch64__)
	sha = (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
#endif
	return sha ? BLOB_NAMES_SHA256 : BLOB_NAMES_BLAKE2B;
}

void blob_data_key(const char *name, char *key)
{
	snprintf(key, BLOB_DATA_KEY_LEN + 1, "data/%.2s/%s", name, name);
}

/*
 * Incompressible input (random bytes, media, archives: what fills most
 * big files that do not compress) cost a full zstd pass for nothing, a
 * fifth of an upload's CPU.  So inputs of SAMPLE_MIN bytes and more are
 * sampled first: SAMPLES windows of SAMPLE_LEN bytes spread evenly over
 * the input, compressed together; when that saves less than 1/32, the
 * input is stored raw without trying the rest.  Input whose only
 * redundancy is between regions farther apart than the samples see, or
 * that is incompressible in every sampled window but not between them,
 * is stored raw too: the price of the shortcut.
 */
#define SAMPLE_MIN (64U << 10)
#define SAMPLES 8U
#define SAMPLE_LEN 4096U

static bool looks_incompressible(const uint8_t *data, size_t len, int level)
{
	uint8_t *in, *out;
	size_t bound = ZSTD_compressBound(SAMPLES * SAMPLE_LEN), r;
	unsigned i;
	bool no = false;

	if (len < SAMPLE_MIN)
		return false;
	in = malloc(SAMPLES * SAMPLE_LEN + bound);
	if (!in)
		return false;
	out = in + SAMPLES * SAMPLE_LEN;
	for (i = 0; i < SAMPLES; i++)
		memcpy(in + i * SAMPLE_LEN,
		       data + (len - SAMPLE_LEN) / (SAMPLES - 1) * i,
		       SAMPLE_LEN);
	r = ZSTD_compress(out, bound, in, SAMPLES * SAMPLE_LEN, level);
	if (!ZSTD_isError(r))
		no = r > SAMPLES * SAMPLE_LEN - SAMPLES * SAMPLE_LEN / 32;
	free(in);
	return no;
}

/* Write the header at hdr for a payload of plen bytes right after it. */
static void finish(uint8_t *hdr, uint8_t codec, uint8_t flags, size_t len,
		   size_t plen, struct buf *out)
{
	memcpy(hdr, BLOB_MAGIC, 4);
	hdr[4] = codec;
	hdr[5] = flags;
	hdr[6] = 0;
	hdr[7] = 0;
	put_le64(hdr + 8, len);
	put_le64(hdr + 16, plen);
	blob_checksum(hdr, hdr + BLOB_HEADER_SIZE,
		      flags & BLOB_F_NAMED ? 0 : plen, hdr + BLOB_SUM_OFFSET);
	out->len += BLOB_HEADER_SIZE + plen;
	out->data[out->len] = 0;
}

/*
 * Compress len bytes of src into dst (cap bytes) at the context's level:
 * the compressed size when it is smaller than len, else 0 (store raw).
 * Compression is an optimisation: on any failure the input goes raw.
 */
static size_t compress_smaller(const struct blob_ctx *ctx, void *dst,
			       size_t cap, const void *src, size_t len)
{
	int level = MF_MAX(ZSTD_minCLevel(),
			   MF_MIN(ctx->zstd_level, ZSTD_maxCLevel()));
	size_t r;

	if (looks_incompressible(src, len, level))
		return 0;
	r = ZSTD_compress(dst, cap, src, len, level);
	if (ZSTD_isError(r)) {
		log_debug("zstd compress: %s", ZSTD_getErrorName(r));
		return 0;
	}
	return r < len ? r : 0;
}

static int encode(const struct blob_ctx *ctx, const void *data, size_t len,
		  uint8_t flags, struct buf *out)
{
	size_t bound = 0, plen = 0;
	uint8_t *hdr;
	int rc;

	if (ctx && ctx->zstd_level != 0 && len > 0) {
		bound = ZSTD_compressBound(len);
		if (ZSTD_isError(bound))
			bound = 0;
	}
	if (MF_MAX(len, bound) > SIZE_MAX - BLOB_HEADER_SIZE - 1)
		return -ENOMEM;
	rc = buf_reserve(out, BLOB_HEADER_SIZE + MF_MAX(len, bound));
	if (rc)
		return rc;
	hdr = out->data + out->len;
	if (bound)
		plen = compress_smaller(ctx, hdr + BLOB_HEADER_SIZE, bound, data,
					len);
	if (plen) {
		finish(hdr, BLOB_CODEC_ZSTD, flags, len, plen, out);
		return 0;
	}
	if (len)
		memcpy(hdr + BLOB_HEADER_SIZE, data, len);
	finish(hdr, BLOB_CODEC_RAW, flags, len, len, out);
	return 0;
}

/*
 * blob_encode_named() of a plaintext that already sits where its payload
 * goes, so that a raw one (most big blocks) is never copied: the 4 MiB
 * memmove per block was 7% of the daemon's CPU in a sequential S3 write.
 * A payload that compresses by more than scratch_len allows is stored raw.
 */
int blob_encode_named_in_place(const struct blob_ctx *ctx, struct buf *out,
			       size_t len, void *scratch, size_t scratch_len)
{
	uint8_t *hdr, *payload;
	size_t plen = 0;

	if (len > SIZE_MAX - BLOB_HEADER_SIZE - 1 - out->len ||
	    out->len + BLOB_HEADER_SIZE + len + 1 > out->cap)
		return -EINVAL;
	hdr = out->data + out->len;
	payload = hdr + BLOB_HEADER_SIZE;
	if (ctx && ctx->zstd_level != 0 && len > 0)
		plen = compress_smaller(ctx, scratch, MF_MIN(scratch_len, len),
					payload, len);
	if (plen) {
		memcpy(payload, scratch, plen);
		finish(hdr, BLOB_CODEC_ZSTD, BLOB_F_NAMED, len, plen, out);
	} else {
		finish(hdr, BLOB_CODEC_RAW, BLOB_F_NAMED, len, len, out);
	}
	return 0;
}

size_t blob_encoded_max(const struct blob_ctx *ctx, size_t len)
{
	size_t bound = 0;

	if (ctx && ctx->zstd_level != 0 && len > 0) {
		bound = ZSTD_compressBound(len);
		if (ZSTD_isError(bound))
			bound = 0;
	}
	return BLOB_HEADER_SIZE + MF_MAX(len, bound);
}

int blob_encode(const struct blob_ctx *ctx, const void *data, size_t len,
		struct buf *out)
{
	return encode(ctx, data, len, 0, out);
}

int blob_encode_named(const struct blob_ctx *ctx, const void *data,
		      size_t len, struct buf *out)
{
	return encode(ctx, data, len, BLOB_F_NAMED, out);
}

/* Append the zstd frame(s) in payload, which must yield plain_len bytes. */
static int decode_zstd(const uint8_t *payload, size_t plen,
		       uint64_t plain_len, struct buf *out)
{
	unsigned long long declared;
	size_t r;
	int rc;

	if (plen > UINT64_MAX / BLOB_ZSTD_MAX_RATIO ||
	    plain_len > (uint64_t)plen * BLOB_ZSTD_MAX_RATIO ||
	    plain_len > SIZE_MAX - 1)
		return -EIO;
	declared = ZSTD_getFrameContentSize(payload, plen);
	if (declared != plain_len)
		return -EIO;
	rc = buf_reserve(out, (size_t)plain_len);
	if (rc)
		return rc;
	r = ZSTD_decompress(out->data + out->len, (size_t)plain_len, payload,
			    plen);
	if (ZSTD_isError(r) || r != plain_len) {
		if (ZSTD_isError(r))
			log_debug("zstd decompress: %s", ZSTD_getErrorName(r));
		out->data[out->len] = 0;
		return -EIO;
	}
	out->len += (size_t)plain_len;
	out->data[out->len] = 0;
	return 0;
}

/*
 * Check the object and find its plaintext; a named object only when
 * named_ok (its caller checks the plaintext against the name).  A raw
 * payload is the plaintext: *plain points into obj.  A zstd payload is
 * decompressed, appended to scratch, and *plain points there.  Nothing is
 * appended unless every check passed.
 */
static int decode_view(const void *obj, size_t len, bool named_ok,
		       struct buf *scratch, const uint8_t **plain,
		       size_t *plain_n)
{
	const uint8_t *hdr = obj, *payload;
	uint8_t sum[BLOB_SUM_BYTES];
	uint64_t plain_len, payload_len;
	size_t plen, start = scratch->len;
	bool named;
	int rc;

	if (!hdr || len < BLOB_HEADER_SIZE)
		return -EIO;
	if (memcmp(hdr, BLOB_MAGIC, 4) != 0 || hdr[4] > BLOB_CODEC_ZSTD ||
	    (hdr[5] & ~BLOB_F_NAMED) != 0 || hdr[6] != 0 || hdr[7] != 0)
		return -EIO;
	named = hdr[5] & BLOB_F_NAMED;
	if (named && !named_ok)
		return -EIO;
	plain_len = get_le64(hdr + 8);
	payload_len = get_le64(hdr + 16);
	plen = len - BLOB_HEADER_SIZE;
	if (payload_len != plen)
		return -EIO;
	payload = hdr + BLOB_HEADER_SIZE;
	blob_checksum(hdr, payload, named ? 0 : plen, sum);
	if (sodium_memcmp(sum, hdr + BLOB_SUM_OFFSET, BLOB_SUM_BYTES) != 0)
		return -EIO;

	if (hdr[4] == BLOB_CODEC_ZSTD) {
		rc = decode_zstd(payload, plen, plain_len, scratch);
		if (rc)
			return rc;
		*plain = scratch->data + start;
		*plain_n = scratch->len - start;
		return 0;
	}
	if (plain_len != payload_len)
		return -EIO;
	*plain = payload;
	*plain_n = plen;
	return 0;
}

/* Decode, appending the plaintext to out. */
static int decode(const void *obj, size_t len, bool named_ok,
		  struct buf *out)
{
	const uint8_t *plain;
	size_t start = out->len, n;
	int rc;

	rc = decode_view(obj, len, named_ok, out, &plain, &n);
	if (rc || out->len != start)
		return rc; /* an error, or zstd: already in out */
	return buf_append(out, plain, n);
}

int blob_decode(const struct blob_ctx *ctx, const void *obj, size_t len,
		struct buf *out)
{
	return decode(obj, len, false, out);
}

int blob_decode_named(const struct blob_ctx *ctx, const char *name,
		      const void *obj, size_t len, struct buf *out)
{
	const uint8_t *plain;
	size_t start = out->len, n;
	int rc;

	rc = blob_decode_named_view(ctx, name, obj, len, out, &plain, &n);
	if (rc || out->len != start)
		return rc; /* an error, or zstd: already in out */
	return buf_append(out, plain, n);
}

int blob_decode_named_view(const struct blob_ctx *ctx, const char *name,
			   const void *obj, size_t len, struct buf *scratch,
			   const uint8_t **plain, size_t *plain_len)
{
	char got[BLOB_NAME_LEN + 1];
	size_t start = scratch->len;
	int rc;

	if (!name || strnlen(name, BLOB_NAME_LEN + 1) != BLOB_NAME_LEN)
		return -EIO;
	rc = decode_view(obj, len, true, scratch, plain, plain_len);
	if (rc)
		return rc;
	blob_name(ctx, *plain, *plain_len, got);
	if (sodium_memcmp(got, name, BLOB_NAME_LEN) != 0) {
		scratch->len = start;
		if (scratch->data)
			scratch->data[start] = 0;
		return -EIO;
	}
	return 0;
}

void blob_random(void *buf, size_t len)
{
	randombytes_buf(buf, len);
}
