/*
 * crypt.c - sealing objects, deriving keys, wrapping the master key
 * (the formats are drawn in crypt.h).
 *
 * The two ciphers are libsodium's XChaCha20-Poly1305 (24-byte random
 * nonces are safe for any number of objects) and OpenSSL's AES-256-GCM,
 * whose 12-byte IV is not: AES-GCM gets a key of its own per object from
 * the first 16 nonce bytes, so that a repeated IV under one key would
 * need two objects with the same 128-bit random value first.
 *
 * Invariants
 *   1. crypt_open() writes plaintext to out only once the tag is checked
 *      (libsodium), or wipes out when the check fails (OpenSSL decrypts
 *      before it checks): a caller never sees bytes that failed.
 *   2. The associated data of an object is its header and its store
 *      key, so no byte of a sealed object, nor its place in the store,
 *      can change without crypt_open() failing.
 *   3. Every key and passphrase-derived key this file makes on its stack
 *      is wiped before return.
 *   4. A slot's Argon2id limits come from the store: crypt_slot_parse()
 *      accepts only limits libsodium takes and at most 4 GiB of memory,
 *      so a forged slot cannot make a mount ask for more.
 */
#include "util/compat.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "blob/crypt.h"
#include "util/log.h"
#include "util/util.h"

#define CRYPT_MAGIC "MFE1"
#define CRYPT_KDF_CONTEXT "mfvolume"
#define CRYPT_KEY_MAX 512 /* the longest store key (store.h) */
/* OpenSSL takes int lengths: larger objects go through in pieces */
#define CRYPT_GCM_CHUNK ((size_t)1 << 30)
#define CRYPT_KDF_MEM_DEFAULT ((uint64_t)256 << 20)
#define CRYPT_KDF_MEM_MAX ((uint64_t)4 << 30)
#define CRYPT_KDF_OPS_MAX 1000

const char *crypt_cipher_label(enum crypt_cipher c)
{
	return c == CRYPT_AES256GCM ? "aes-256-gcm" : "xchacha20-poly1305";
}

int crypt_cipher_parse(const char *s, enum crypt_cipher *out)
{
	if (!strcmp(s, "xchacha20-poly1305") || !strcmp(s, "xchacha20"))
		*out = CRYPT_XCHACHA20;
	else if (!strcmp(s, "aes-256-gcm") || !strcmp(s, "aes"))
		*out = CRYPT_AES256GCM;
	else
		return -EINVAL;
	return 0;
}

enum crypt_cipher crypt_cipher_default(void)
{
#if defined(__x86_64__) || defined(__i386__)
	unsigned a, b, c, d;

	/* CPUID 1, ECX: bit 25 AES-NI, bit 1 PCLMULQDQ */
	if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 25)) &&
	    (c & (1u << 1)))
		return CRYPT_AES256GCM;
#elif defined(__aarch64__)
	unsigned long hw = getauxval(AT_HWCAP);

	if ((hw & HWCAP_AES) && (hw & HWCAP_PMULL))
		return CRYPT_AES256GCM;
#endif
	return CRYPT_XCHACHA20;
}

/* The associated data: the header, then the key (crypt.h).  0 or
 * -EINVAL for a key longer than a store takes. */
static int make_ad(const uint8_t *hdr, const char *key,
		   uint8_t ad[CRYPT_HEADER + CRYPT_KEY_MAX], size_t *adlen)
{
	size_t klen = strlen(key);

	if (klen > CRYPT_KEY_MAX)
		return -EINVAL;
	memcpy(ad, hdr, CRYPT_HEADER);
	memcpy(ad + CRYPT_HEADER, key, klen);
	*adlen = CRYPT_HEADER + klen;
	return 0;
}

/*
 * AES-256-GCM over len bytes in -> out (enc: encrypt and write the tag;
 * else decrypt and check it).  The per-object key and IV come from the
 * nonce (crypt.h).  0, or -EIO (a failed tag, or OpenSSL failed).
 */
static int gcm_run(const struct crypt_key *k, const uint8_t *nonce,
		   const uint8_t *ad, size_t adlen, const uint8_t *in,
		   size_t len, uint8_t *out, uint8_t *tag, bool enc)
{
	uint8_t okey[CRYPT_KEY_BYTES], iv[12];
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	size_t done = 0;
	int n, ok;

	crypto_generichash(okey, sizeof(okey), nonce, 16, k->key,
			   CRYPT_KEY_BYTES);
	memcpy(iv, nonce + 16, 8);
	memset(iv + 8, 0, 4);
	ok = c && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, okey, iv,
				    enc ? 1 : 0) &&
	     EVP_CipherUpdate(c, NULL, &n, ad, (int)adlen);
	while (ok && done < len) {
		size_t piece = MF_MIN(len - done, CRYPT_GCM_CHUNK);

		ok = EVP_CipherUpdate(c, out + done, &n, in + done,
				      (int)piece) && (size_t)n == piece;
		done += piece;
	}
	if (ok && !enc)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CRYPT_TAG,
					 tag);
	if (ok)
		ok = EVP_CipherFinal_ex(c, out + len, &n) > 0;
	if (ok && enc)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CRYPT_TAG,
					 tag);
	EVP_CIPHER_CTX_free(c);
	sodium_memzero(okey, sizeof(okey));
	return ok ? 0 : -EIO;
}

int crypt_seal(const struct crypt_key *k, const char *key, const void *plain,
	       size_t len, uint8_t *out)
{
	uint8_t ad[CRYPT_HEADER + CRYPT_KEY_MAX];
	uint8_t *nonce = out + 8, *tag = out + CRYPT_HEADER + len;
	size_t adlen;
	int rc;

	if (k->cipher != CRYPT_XCHACHA20 && k->cipher != CRYPT_AES256GCM)
		return -EINVAL;
	memcpy(out, CRYPT_MAGIC, 4);
	out[4] = (uint8_t)k->cipher;
	memset(out + 5, 0, 3);
	randombytes_buf(nonce, CRYPT_NONCE);
	rc = make_ad(out, key, ad, &adlen);
	if (rc)
		return rc;
	if (k->cipher == CRYPT_AES256GCM) {
		rc = gcm_run(k, nonce, ad, adlen, plain, len,
			     out + CRYPT_HEADER, tag, true);
		if (rc)
			log_error("AES-256-GCM failed sealing %s", key);
		return rc;
	}
	crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
		out + CRYPT_HEADER, tag, NULL, plain, len, ad, adlen, NULL,
		nonce, k->key);
	return 0;
}

int crypt_open(const struct crypt_key *k, const char *key, const uint8_t *obj,
	       size_t len, uint8_t *out)
{
	uint8_t ad[CRYPT_HEADER + CRYPT_KEY_MAX], tag[CRYPT_TAG];
	size_t n, adlen;
	int rc;

	if (len < CRYPT_OVERHEAD || memcmp(obj, CRYPT_MAGIC, 4) ||
	    obj[4] != (uint8_t)k->cipher || obj[5] || obj[6] || obj[7])
		return -EIO;
	n = len - CRYPT_OVERHEAD;
	if (make_ad(obj, key, ad, &adlen))
		return -EIO;
	/* the tag first: in place, the plaintext may overwrite nothing of
	 * it, but a copy keeps the contract simple */
	memcpy(tag, obj + CRYPT_HEADER + n, CRYPT_TAG);
	if (k->cipher == CRYPT_AES256GCM) {
		rc = gcm_run(k, obj + 8, ad, adlen, obj + CRYPT_HEADER, n,
			     out, tag, false);
		if (rc)
			sodium_memzero(out, n); /* invariant 1 */
		return rc;
	}
	if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
		    out, NULL, obj + CRYPT_HEADER, n, tag, ad, adlen,
		    obj + 8, k->key))
		return -EIO;
	return 0;
}

void crypt_derive(const uint8_t master[CRYPT_KEY_BYTES], enum crypt_subkey id,
		  uint8_t out[CRYPT_KEY_BYTES])
{
	crypto_kdf_derive_from_key(out, CRYPT_KEY_BYTES, (uint64_t)id,
				   CRYPT_KDF_CONTEXT, master);
}

void crypt_mac(const uint8_t key[CRYPT_KEY_BYTES], const void *data,
	       size_t len, uint8_t out[CRYPT_MAC_BYTES])
{
	crypto_generichash(out, CRYPT_MAC_BYTES, data, len, key,
			   CRYPT_KEY_BYTES);
}

void crypt_hash(const void *data, size_t len, uint8_t out[CRYPT_HASH_BYTES])
{
	crypto_generichash(out, CRYPT_HASH_BYTES, data, len, NULL, 0);
}

bool crypt_mac_equal(const uint8_t *a, const uint8_t *b)
{
	return sodium_memcmp(a, b, CRYPT_MAC_BYTES) == 0;
}

/* ---- Argon2id ---- */

void crypt_kdf_fast(struct crypt_kdf *out)
{
	out->ops = crypto_pwhash_argon2id_OPSLIMIT_MIN;
	out->mem = crypto_pwhash_argon2id_MEMLIMIT_MIN;
}

bool crypt_kdf_valid(const struct crypt_kdf *k)
{
	return k->ops >= crypto_pwhash_argon2id_OPSLIMIT_MIN &&
	       k->ops <= CRYPT_KDF_OPS_MAX &&
	       k->mem >= crypto_pwhash_argon2id_MEMLIMIT_MIN &&
	       k->mem <= CRYPT_KDF_MEM_MAX && k->mem <= SIZE_MAX;
}

/* The KEK of a passphrase: 0 or -ENOMEM (libsodium fails only when it
 * cannot have the memory). */
static int kdf_run(const char *pass, size_t len, const uint8_t *salt,
		   const struct crypt_kdf *kdf, uint8_t kek[CRYPT_KEY_BYTES])
{
	if (!crypt_kdf_valid(kdf))
		return -EINVAL;
	if (crypto_pwhash(kek, CRYPT_KEY_BYTES, pass, len, salt,
			  (unsigned long long)kdf->ops, (size_t)kdf->mem,
			  crypto_pwhash_ALG_ARGON2ID13))
		return -ENOMEM;
	return 0;
}

/* Milliseconds of one derivation at limits k (at least 1); -ENOMEM. */
static int64_t kdf_time_ms(const struct crypt_kdf *k)
{
	uint8_t salt[CRYPT_SALT] = { 0 }, kek[CRYPT_KEY_BYTES];
	uint64_t t0 = now_mono_ns();
	int rc = kdf_run("calibrate", 9, salt, k, kek);

	sodium_memzero(kek, sizeof(kek));
	if (rc)
		return rc;
	return (int64_t)MF_MAX((now_mono_ns() - t0) / 1000000, 1);
}

/*
 * A derivation costs a fixed part (the memory's allocation and first
 * touch) plus one part per pass: two timings, of one pass and of two,
 * give both.
 */
int crypt_kdf_calibrate(unsigned target_ms, struct crypt_kdf *out)
{
	struct crypt_kdf k = { 1, CRYPT_KDF_MEM_DEFAULT };
	int64_t one = kdf_time_ms(&k), two, per, fixed, ops;

	if (one < 0)
		return (int)one;
	k.ops = 2;
	two = kdf_time_ms(&k);
	if (two < 0)
		return (int)two;
	per = MF_MAX(two - one, 1);
	fixed = MF_MAX(one - per, 0);
	ops = ((int64_t)target_ms - fixed + per / 2) / per;
	out->ops = (uint64_t)MF_MIN(MF_MAX(ops, 2), CRYPT_KDF_OPS_MAX);
	out->mem = CRYPT_KDF_MEM_DEFAULT;
	return 0;
}

/* ---- key slots ---- */

/* The slot's associated data: "<volume id>/slot<n>". */
static size_t slot_ad(const char *volume_id, unsigned n, char *ad, size_t size)
{
	int len = snprintf(ad, size, "%s/slot%u", volume_id, n);

	return len < 0 ? 0 : MF_MIN((size_t)len, size - 1);
}

int crypt_slot_wrap(const char *pass, size_t len, const struct crypt_kdf *kdf,
		    const char *volume_id, unsigned n,
		    const uint8_t master[CRYPT_KEY_BYTES], struct crypt_slot *out)
{
	uint8_t kek[CRYPT_KEY_BYTES];
	char ad[128];
	size_t adlen = slot_ad(volume_id, n, ad, sizeof(ad));
	int rc;

	memset(out, 0, sizeof(*out));
	out->kdf = *kdf;
	randombytes_buf(out->salt, sizeof(out->salt));
	randombytes_buf(out->nonce, sizeof(out->nonce));
	rc = kdf_run(pass, len, out->salt, kdf, kek);
	if (rc == 0)
		crypto_aead_xchacha20poly1305_ietf_encrypt(
			out->wrapped, NULL, master, CRYPT_KEY_BYTES,
			(const uint8_t *)ad, adlen, NULL, out->nonce, kek);
	sodium_memzero(kek, sizeof(kek));
	return rc;
}

int crypt_slot_unwrap(const char *pass, size_t len, const struct crypt_slot *s,
		      const char *volume_id, unsigned n,
		      uint8_t master[CRYPT_KEY_BYTES])
{
	uint8_t kek[CRYPT_KEY_BYTES];
	char ad[128];
	size_t adlen = slot_ad(volume_id, n, ad, sizeof(ad));
	int rc = kdf_run(pass, len, s->salt, &s->kdf, kek);

	if (rc == 0 &&
	    crypto_aead_xchacha20poly1305_ietf_decrypt(
		    master, NULL, NULL, s->wrapped, sizeof(s->wrapped),
		    (const uint8_t *)ad, adlen, s->nonce, kek))
		rc = -EACCES;
	sodium_memzero(kek, sizeof(kek));
	return rc;
}

void crypt_slot_format(const struct crypt_slot *s, char *out)
{
	char salt[2 * CRYPT_SALT + 1], nonce[2 * CRYPT_NONCE + 1];
	char wrapped[2 * sizeof(s->wrapped) + 1];

	hex_encode(s->salt, sizeof(s->salt), salt);
	hex_encode(s->nonce, sizeof(s->nonce), nonce);
	hex_encode(s->wrapped, sizeof(s->wrapped), wrapped);
	snprintf(out, CRYPT_SLOT_TEXT, "argon2id:%" PRIu64 ":%" PRIu64
		 ":%s:%s:%s", s->kdf.ops, s->kdf.mem, salt, nonce, wrapped);
}

/* The next ':'-separated field of *p as hex into out (exactly len
 * bytes); 0 or -EINVAL. */
static int slot_hex(const char **p, uint8_t *out, size_t len)
{
	char field[2 * sizeof(((struct crypt_slot *)0)->wrapped) + 1];
	const char *end = strchr(*p, ':');
	size_t flen = end ? (size_t)(end - *p) : strlen(*p);

	if (flen != 2 * len)
		return -EINVAL;
	memcpy(field, *p, flen);
	field[flen] = 0;
	*p += flen + (end ? 1 : 0);
	return hex_decode(field, out, len) ? -EINVAL : 0;
}

int crypt_slot_parse(const char *text, struct crypt_slot *out)
{
	const char *p = text;
	char *end;

	memset(out, 0, sizeof(*out));
	if (strncmp(p, "argon2id:", 9))
		return -EINVAL;
	p += 9;
	errno = 0;
	out->kdf.ops = strtoull(p, &end, 10);
	if (errno || end == p || *end != ':')
		return -EINVAL;
	p = end + 1;
	out->kdf.mem = strtoull(p, &end, 10);
	if (errno || end == p || *end != ':' || !crypt_kdf_valid(&out->kdf))
		return -EINVAL;
	p = end + 1;
	if (slot_hex(&p, out->salt, sizeof(out->salt)) ||
	    slot_hex(&p, out->nonce, sizeof(out->nonce)) ||
	    slot_hex(&p, out->wrapped, sizeof(out->wrapped)) || *p)
		return -EINVAL;
	return 0;
}
