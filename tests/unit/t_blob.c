/*
 * t_blob.c - unit tests of the object codec (src/blob/blob.c).
 *
 * Round trips across the raw/zstd choice, golden vectors that pin the
 * format and the naming hash (cross-checked once against Python's
 * hashlib.blake2b), and damage: every single-bit flip, every truncation,
 * and headers whose lengths lie behind a recomputed ("forged") checksum.
 * Decoding damaged input must return -EIO and append nothing.
 */
#include "util/compat.h"

#include <pthread.h>
#include <sodium.h>

#include "blob/blob.h"
#include "blob/patch.h"
#include "check.h"
#include "util/util.h"

#define MIB (1u << 20)

/* hashlib.blake2b(b"The quick brown fox jumps over the lazy dog",
 *                 key=bytes(range(32)), digest_size=32).hexdigest() */
static const char golden_fox[] =
	"5d9461aff732d77d0cc98725ea29298c914fd5193b4c08ec9e3ad6b28c3e2faf";
/* the same with b"" */
static const char golden_empty[] =
	"4e51e7a913fc80137da52880fecca175bf81e117d5c68126dc2774033517ea0d";
/* "metafuse" encoded raw: header, BLAKE2b-128 of header[0:24] + payload
 * (hashlib.blake2b(..., digest_size=16)), payload */
static const char golden_obj[] =
	"4d464231" "00" "00" "0000"
	"0800000000000000" "0800000000000000"
	"8bc8bc3c965f24601b7f22ec722ececd"
	"6d65746166757365";

static struct blob_ctx ctx;

/* Recompute the checksum of a (modified) object, as a forger would. */
static void reseal(uint8_t *obj, size_t len)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, 16);
	crypto_generichash_update(&st, obj, 24);
	crypto_generichash_update(&st, obj + 40, len - 40);
	crypto_generichash_final(&st, obj + 24, 16);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Decode must fail with -EIO and leave out as it was. */
static bool decode_fails(const void *obj, size_t len)
{
	struct buf out = BUF_INIT;
	bool ok;

	buf_appends(&out, "keep");
	ok = blob_decode(&ctx, obj, len, &out) == -EIO && out.len == 4 &&
	     !memcmp(out.data, "keep", 4);
	buf_free(&out);
	return ok;
}

/* Encode, check the codec chosen, decode (plain and named). */
static void round_trip(const void *data, size_t len, int want_codec)
{
	struct buf enc = BUF_INIT, dec = BUF_INIT;
	char name[BLOB_NAME_LEN + 1];

	buf_appends(&enc, "PFX"); /* encode appends */
	CHECK_RC(blob_encode(&ctx, data, len, &enc), 0);
	CHECK(enc.len >= 3 + BLOB_HEADER_SIZE);
	if (enc.len < 3 + BLOB_HEADER_SIZE)
		goto out;
	CHECK(!memcmp(enc.data, "PFXMFB1", 7));
	CHECK_RC(enc.data[3 + 4], want_codec);
	if (want_codec == 0)
		CHECK_EQ_U64(enc.len, 3 + BLOB_HEADER_SIZE + len);
	else
		CHECK(enc.len < 3 + BLOB_HEADER_SIZE + len);

	buf_appends(&dec, "D");
	CHECK_RC(blob_decode(&ctx, enc.data + 3, enc.len - 3, &dec), 0);
	CHECK_EQ_U64(dec.len, 1 + len);
	if (dec.len == 1 + len) {
		CHECK(dec.data[0] == 'D');
		CHECK(len == 0 || !memcmp(dec.data + 1, data, len));
	}
	buf_reset(&dec);
	blob_name(&ctx, data, len, name);
	CHECK_RC(blob_decode_named(&ctx, name, enc.data + 3, enc.len - 3,
				   &dec), 0);
	CHECK_EQ_U64(dec.len, len);
out:
	buf_free(&enc);
	buf_free(&dec);
}

static void test_round_trips(void)
{
	uint8_t *big = malloc(MIB);
	size_t i;

	round_trip("", 0, 0);
	round_trip("x", 1, 0);
	round_trip("hello hello hello hello hello hello hello", 41, 1);

	blob_random(big, MIB);
	round_trip(big, MIB, 0); /* incompressible: raw */
	memset(big, 0, MIB);
	round_trip(big, MIB, 1);
	for (i = 0; i < MIB; i++)
		big[i] = (uint8_t)("lorem ipsum dolor sit amet, "
				   "consectetur adipiscing elit\n")[i % 57];
	round_trip(big, MIB, 1);

	/* level 0: never compressed; odd levels are clamped, not refused */
	ctx.zstd_level = 0;
	round_trip(big, MIB, 0);
	ctx.zstd_level = -5;
	round_trip(big, MIB, 1);
	ctx.zstd_level = 1000;
	round_trip(big, 4096, 1);
	ctx.zstd_level = 3;
	/* random with a compressible region the samples see: compressed */
	blob_random(big, MIB);
	memset(big + MIB / 2, 'z', MIB / 4);
	round_trip(big, MIB, 1);
	/* only the samples are tried on random data: raw, and fast */
	blob_random(big, MIB);
	round_trip(big, 64 << 10, 0);
	free(big);
}

static void test_golden(void)
{
	static const char fox[] = "The quick brown fox jumps over the lazy dog";
	struct blob_ctx other = ctx;
	char name[BLOB_NAME_LEN + 1], key[BLOB_DATA_KEY_LEN + 1];
	uint8_t want[sizeof(golden_obj) / 2];
	struct buf b = BUF_INIT;

	blob_name(&ctx, fox, strlen(fox), name);
	CHECK(!strcmp(name, golden_fox));
	blob_name(&ctx, "", 0, name);
	CHECK(!strcmp(name, golden_empty));
	blob_name(&ctx, NULL, 0, name);
	CHECK(!strcmp(name, golden_empty));

	/* the name depends on the key */
	other.hash_key[31] ^= 1;
	blob_name(&other, fox, strlen(fox), name);
	CHECK(strlen(name) == BLOB_NAME_LEN && strcmp(name, golden_fox));

	blob_data_key(golden_fox, key);
	CHECK(!strcmp(key, "data/5d/" "5d9461aff732d77d0cc98725ea29298c"
			   "914fd5193b4c08ec9e3ad6b28c3e2faf"));
	CHECK_EQ_U64(strlen(key), BLOB_DATA_KEY_LEN);

	/* the format itself, byte for byte */
	CHECK_RC(hex_decode(golden_obj, want, sizeof(want)), 0);
	other = ctx;
	other.zstd_level = 0;
	CHECK_RC(blob_encode(&other, "metafuse", 8, &b), 0);
	CHECK(b.len == sizeof(want) && !memcmp(b.data, want, sizeof(want)));
	buf_reset(&b);
	CHECK_RC(blob_decode(&ctx, want, sizeof(want), &b), 0);
	CHECK(b.len == 8 && !memcmp(b.data, "metafuse", 8));
	buf_free(&b);
}

/* Every single-bit flip anywhere in obj is detected. */
static void flip_every_bit(const uint8_t *obj, size_t len)
{
	uint8_t *copy = malloc(len);
	size_t i, bad = 0;
	int bit;

	for (i = 0; i < len; i++) {
		for (bit = 0; bit < 8; bit++) {
			memcpy(copy, obj, len);
			copy[i] ^= (uint8_t)(1 << bit);
			if (!decode_fails(copy, len)) {
				bad++;
				fprintf(stderr, "  flip byte %zu bit %d\n", i,
					bit);
			}
		}
	}
	CHECK_EQ_U64(bad, 0);
	free(copy);
}

/* Two objects to damage, one stored raw and one zstd-compressed, and a
 * scratch copy with room to spare. */
struct tamper {
	struct buf raw, z;
	uint8_t *copy;
};

static const char tamper_text[] = "tamper tamper tamper tamper tamper "
				  "tamper tamper tamper tamper tamper";

static void tamper_init(struct tamper *t)
{
	struct blob_ctx level0 = ctx;

	memset(t, 0, sizeof(*t));
	level0.zstd_level = 0;
	CHECK_RC(blob_encode(&level0, "small raw object", 16, &t->raw), 0);
	CHECK_RC(blob_encode(&ctx, tamper_text, strlen(tamper_text), &t->z),
		 0);
	CHECK(t->raw.data[4] == 0 && t->z.data[4] == 1);
	t->copy = malloc(t->z.len + 64);
	CHECK(t->copy != NULL);
}

static void tamper_free(struct tamper *t)
{
	free(t->copy);
	buf_free(&t->raw);
	buf_free(&t->z);
}

/* Copy o into t->copy, set the 8-byte field at off, reseal, and check
 * that it does not decode. */
static void tamper_field(struct tamper *t, const struct buf *o, size_t off,
			 uint64_t v)
{
	memcpy(t->copy, o->data, o->len);
	put_le64(t->copy + off, v);
	reseal(t->copy, o->len);
	CHECK(decode_fails(t->copy, o->len));
}

/* every bit flipped, every length cut, a byte added, nothing at all */
static void test_tamper_bits_and_cuts(void)
{
	struct tamper t;
	size_t i;

	tamper_init(&t);
	flip_every_bit(t.raw.data, t.raw.len);
	flip_every_bit(t.z.data, t.z.len);
	for (i = 0; i < t.z.len; i++)
		CHECK(decode_fails(t.z.data, i));
	for (i = 0; i < t.raw.len; i++)
		CHECK(decode_fails(t.raw.data, i));
	buf_append(&t.z, "", 1);
	CHECK(decode_fails(t.z.data, t.z.len));
	t.z.len--;
	CHECK(decode_fails(NULL, 0));
	CHECK(decode_fails(NULL, 100));
	tamper_free(&t);
}

/* wrong magic (with and without a forged checksum), unknown codec, flags
 * and reserved bytes (all resealed) */
static void test_tamper_header(void)
{
	struct tamper t;
	uint8_t *copy;
	size_t i, len;

	tamper_init(&t);
	copy = t.copy;
	len = t.z.len;
	memcpy(copy, t.z.data, len);
	memcpy(copy, "MFB2", 4);
	CHECK(decode_fails(copy, len));
	reseal(copy, len);
	CHECK(decode_fails(copy, len));
	memcpy(copy, "mfb1", 4);
	reseal(copy, len);
	CHECK(decode_fails(copy, len));

	for (i = 4; i < 8; i++) {
		memcpy(copy, t.z.data, len);
		copy[i] = i == 4 ? 2 : 1;
		reseal(copy, len);
		CHECK(decode_fails(copy, len));
	}
	memcpy(copy, t.z.data, len);
	copy[4] = 0xff;
	reseal(copy, len);
	CHECK(decode_fails(copy, len));
	tamper_free(&t);
}

/* plain_len (zstd and raw) and payload_len lying, resealed */
static void test_tamper_lengths(void)
{
	const uint64_t tl = sizeof(tamper_text) - 1;
	const uint64_t plain_lies[] = {
		0, 1, tl - 1, tl + 1, 1000, (uint64_t)1 << 32,
		(uint64_t)1 << 63, UINT64_MAX,
	};
	struct tamper t;
	uint64_t plen;
	size_t i;

	tamper_init(&t);
	for (i = 0; i < ARRAY_SIZE(plain_lies); i++)
		tamper_field(&t, &t.z, 8, plain_lies[i]);
	for (i = 0; i < ARRAY_SIZE(plain_lies); i++)
		if (plain_lies[i] != 16)
			tamper_field(&t, &t.raw, 8, plain_lies[i]);

	plen = t.z.len - BLOB_HEADER_SIZE;
	{
		const uint64_t payload_lies[] = {
			0, plen - 1, plen + 1, plen + 64, UINT64_MAX,
			UINT64_MAX - 39,
		};

		for (i = 0; i < ARRAY_SIZE(payload_lies); i++)
			tamper_field(&t, &t.z, 16, payload_lies[i]);
	}
	tamper_free(&t);
}

/* a tiny forged frame claiming a huge size */
static void tamper_huge_frame(void)
{
	struct buf big = BUF_INIT;
	uint8_t *zeros = calloc(1, 4 * MIB);

	CHECK(zeros != NULL);
	CHECK_RC(blob_encode(&ctx, zeros, 4 * MIB, &big), 0);
	CHECK(big.data[4] == 1 && big.len < 4096);
	put_le64(big.data + 8, (uint64_t)1 << 40);
	reseal(big.data, big.len);
	CHECK(decode_fails(big.data, big.len));
	put_le64(big.data + 8, 4 * MIB - 1);
	reseal(big.data, big.len);
	CHECK(decode_fails(big.data, big.len));
	buf_free(&big);
	free(zeros);
}

/* the payload: codecs swapped, zstd over garbage or a damaged frame, a
 * frame claiming a huge size */
static void test_tamper_payload(void)
{
	struct buf dec = BUF_INIT;
	struct tamper t;
	uint8_t *copy;
	size_t i;

	tamper_init(&t);
	copy = t.copy;
	/* zstd payload called raw, raw payload called zstd */
	memcpy(copy, t.z.data, t.z.len);
	copy[4] = 0;
	reseal(copy, t.z.len);
	CHECK(decode_fails(copy, t.z.len));
	memcpy(copy, t.raw.data, t.raw.len);
	copy[4] = 1;
	reseal(copy, t.raw.len);
	CHECK(decode_fails(copy, t.raw.len));

	memcpy(copy, t.z.data, BLOB_HEADER_SIZE);
	blob_random(copy + BLOB_HEADER_SIZE, t.z.len - BLOB_HEADER_SIZE);
	reseal(copy, t.z.len);
	CHECK(decode_fails(copy, t.z.len));
	for (i = BLOB_HEADER_SIZE; i < t.z.len; i++) {
		memcpy(copy, t.z.data, t.z.len);
		copy[i] ^= 0x5a;
		reseal(copy, t.z.len);
		/* may still decode to the right length by chance: no crash,
		 * and then it must be exactly plain_len bytes */
		buf_reset(&dec);
		if (blob_decode(&ctx, copy, t.z.len, &dec) == 0)
			CHECK_EQ_U64(dec.len, strlen(tamper_text));
	}
	tamper_huge_frame();
	buf_free(&dec);
	tamper_free(&t);
}

/* random multi-byte damage, sometimes forged: never a crash, and never a
 * success unless the checksum was forged */
static void test_tamper_random(void)
{
	struct buf dec = BUF_INIT;
	struct tamper t;
	const struct buf *src[2];
	uint32_t r;
	int n, k, forged, bad = 0;

	tamper_init(&t);
	src[0] = &t.raw;
	src[1] = &t.z;
	for (n = 0; n < 20000; n++) {
		const struct buf *o = src[n & 1];
		int rc;

		memcpy(t.copy, o->data, o->len);
		randombytes_buf(&r, sizeof(r));
		for (k = 0; k <= (int)(r % 4); k++) {
			size_t at = randombytes_uniform((uint32_t)o->len);

			t.copy[at] ^= (uint8_t)(1 + randombytes_uniform(255));
		}
		forged = (r >> 8) & 1;
		if (forged)
			reseal(t.copy, o->len);
		buf_reset(&dec);
		rc = blob_decode(&ctx, t.copy, o->len, &dec);
		if (rc != 0 && rc != -EIO)
			bad++;
		if (rc == 0 && !forged && memcmp(t.copy, o->data, o->len))
			bad++;
	}
	CHECK_EQ_U64(bad, 0);
	buf_free(&dec);
	tamper_free(&t);
}

static void test_named(void)
{
	static const char data[] = "named block contents, named block contents";
	struct buf enc = BUF_INIT, out = BUF_INIT;
	char name[BLOB_NAME_LEN + 1], wrong[BLOB_NAME_LEN + 1];
	struct blob_ctx other = ctx;
	size_t i;

	blob_name(&ctx, data, sizeof(data), name);
	CHECK_RC(blob_encode(&ctx, data, sizeof(data), &enc), 0);
	CHECK_RC(blob_decode_named(&ctx, name, enc.data, enc.len, &out), 0);
	CHECK(out.len == sizeof(data) && !memcmp(out.data, data, out.len));

	/* one wrong hex digit anywhere */
	for (i = 0; i < BLOB_NAME_LEN; i++) {
		memcpy(wrong, name, sizeof(wrong));
		wrong[i] = wrong[i] == '0' ? '1' : '0';
		buf_reset(&out);
		buf_appends(&out, "keep");
		CHECK_RC(blob_decode_named(&ctx, wrong, enc.data, enc.len,
					   &out), -EIO);
		CHECK(out.len == 4 && !strcmp(buf_str(&out), "keep"));
	}
	/* uppercase, short, long, empty, NULL */
	memcpy(wrong, name, sizeof(wrong));
	for (i = 0; i < BLOB_NAME_LEN; i++)
		if (wrong[i] >= 'a')
			wrong[i] = (char)(wrong[i] - 'a' + 'A');
	buf_reset(&out);
	CHECK_RC(blob_decode_named(&ctx, wrong, enc.data, enc.len, &out),
		 strcmp(wrong, name) ? -EIO : 0);
	memcpy(wrong, name, sizeof(wrong));
	wrong[BLOB_NAME_LEN - 1] = '\0';
	CHECK_RC(blob_decode_named(&ctx, wrong, enc.data, enc.len, &out),
		 -EIO);
	{
		char longer[BLOB_NAME_LEN + 2];

		memcpy(longer, name, BLOB_NAME_LEN);
		longer[BLOB_NAME_LEN] = '0';
		longer[BLOB_NAME_LEN + 1] = '\0';
		CHECK_RC(blob_decode_named(&ctx, longer, enc.data, enc.len,
					   &out), -EIO);
	}
	CHECK_RC(blob_decode_named(&ctx, "", enc.data, enc.len, &out), -EIO);
	CHECK_RC(blob_decode_named(&ctx, NULL, enc.data, enc.len, &out),
		 -EIO);
	CHECK_EQ_U64(out.len, 0);

	/* right name, but another volume's key */
	other.hash_key[0] ^= 0x80;
	CHECK_RC(blob_decode_named(&other, name, enc.data, enc.len, &out),
		 -EIO);
	/* right name, damaged object */
	enc.data[enc.len - 1] ^= 1;
	CHECK_RC(blob_decode_named(&ctx, name, enc.data, enc.len, &out),
		 -EIO);
	CHECK_EQ_U64(out.len, 0);
	buf_free(&enc);
	buf_free(&out);
}

/*
 * blob_decode_named_view(): a raw object's plaintext is found inside the
 * object itself (no copy), a zstd one is appended to the scratch buffer;
 * every check of blob_decode_named() holds, and a refused object leaves
 * the scratch buffer as it was.
 */
static void test_named_view(void)
{
	uint8_t noise[5000], text[20000];
	struct buf enc = BUF_INIT, scratch = BUF_INIT;
	char name[BLOB_NAME_LEN + 1], wrong[BLOB_NAME_LEN + 1];
	const uint8_t *p = NULL;
	size_t i, n = 0;

	blob_random(noise, sizeof(noise));
	for (i = 0; i < sizeof(text); i++)
		text[i] = (uint8_t)("abcabcabd"[i % 9]);

	/* raw (incompressible): points into the object, scratch untouched */
	blob_name(&ctx, noise, sizeof(noise), name);
	CHECK_RC(blob_encode_named(&ctx, noise, sizeof(noise), &enc), 0);
	buf_appends(&scratch, "keep");
	CHECK_RC(blob_decode_named_view(&ctx, name, enc.data, enc.len,
					&scratch, &p, &n), 0);
	CHECK_EQ_U64(n, sizeof(noise));
	CHECK(p >= enc.data && p + n <= enc.data + enc.len);
	CHECK(!memcmp(p, noise, n));
	CHECK(scratch.len == 4 && !strcmp(buf_str(&scratch), "keep"));

	/* a wrong name, a damaged payload: -EIO, scratch as it was */
	memcpy(wrong, name, sizeof(wrong));
	wrong[7] = wrong[7] == '0' ? '1' : '0';
	CHECK_RC(blob_decode_named_view(&ctx, wrong, enc.data, enc.len,
					&scratch, &p, &n), -EIO);
	enc.data[enc.len - 1] ^= 1;
	CHECK_RC(blob_decode_named_view(&ctx, name, enc.data, enc.len,
					&scratch, &p, &n), -EIO);
	CHECK(scratch.len == 4 && !strcmp(buf_str(&scratch), "keep"));

	/* zstd: appended to scratch, after what it held */
	buf_reset(&enc);
	blob_name(&ctx, text, sizeof(text), name);
	CHECK_RC(blob_encode_named(&ctx, text, sizeof(text), &enc), 0);
	CHECK(enc.len < sizeof(text) / 2); /* it did compress */
	CHECK_RC(blob_decode_named_view(&ctx, name, enc.data, enc.len,
					&scratch, &p, &n), 0);
	CHECK_EQ_U64(n, sizeof(text));
	CHECK_EQ_U64(scratch.len, 4 + sizeof(text));
	CHECK(p == scratch.data + 4 && !memcmp(p, text, n));
	CHECK(!memcmp(scratch.data, "keep", 4));
	/* a zstd object under a wrong name appends nothing */
	memcpy(wrong, name, sizeof(wrong));
	wrong[0] = wrong[0] == '0' ? '1' : '0';
	CHECK_RC(blob_decode_named_view(&ctx, wrong, enc.data, enc.len,
					&scratch, &p, &n), -EIO);
	CHECK_EQ_U64(scratch.len, 4 + sizeof(text));
	/* and blob_decode(), which cannot check a name, refuses it */
	buf_reset(&scratch);
	CHECK_RC(blob_decode(&ctx, enc.data, enc.len, &scratch), -EIO);
	CHECK_EQ_U64(scratch.len, 0);
	buf_free(&enc);
	buf_free(&scratch);
}

/*
 * blob_encode_named_in_place() writes the same object as
 * blob_encode_named() when the plaintext already sits after the header:
 * raw (noise, and a compressible input whose scratch is too small to
 * compress into) and zstd (text), empty and with something in out before.
 */
static void test_encode_in_place(void)
{
	static uint8_t noise[200000], text[200000], scratch[200000];
	const struct { const uint8_t *d; size_t n, scratch; } cs[] = {
		{ noise, sizeof(noise), sizeof(scratch) },
		{ text, sizeof(text), sizeof(scratch) },
		{ text, 1000, sizeof(scratch) },
		{ text, sizeof(text), 10 },
		{ noise, 0, sizeof(scratch) },
	};
	struct buf want = BUF_INIT, got = BUF_INIT, out = BUF_INIT;
	char name[BLOB_NAME_LEN + 1];
	size_t i, pre;

	blob_random(noise, sizeof(noise));
	for (i = 0; i < sizeof(text); i++)
		text[i] = (uint8_t)("in place, "[i % 10] + i / 5000);
	for (i = 0; i < ARRAY_SIZE(cs); i++) {
		for (pre = 0; pre <= 3; pre += 3) {
			buf_reset(&want);
			buf_reset(&got);
			buf_append(&want, "abc", pre);
			buf_append(&got, "abc", pre);
			CHECK_RC(blob_encode_named(&ctx, cs[i].d, cs[i].n,
						   &want), 0);
			CHECK_RC(buf_reserve(&got, blob_encoded_max(
							   &ctx, cs[i].n)), 0);
			memcpy(got.data + pre + BLOB_HEADER_SIZE, cs[i].d,
			       cs[i].n);
			CHECK_RC(blob_encode_named_in_place(&ctx, &got, cs[i].n,
							    scratch,
							    cs[i].scratch), 0);
			if (cs[i].scratch < cs[i].n && cs[i].d == text) {
				/* no room to compress: stored raw */
				CHECK_EQ_U64(got.len,
					     pre + BLOB_HEADER_SIZE + cs[i].n);
				CHECK(want.len < got.len);
			} else {
				CHECK_EQ_U64(got.len, want.len);
				CHECK(!memcmp(got.data, want.data, want.len));
			}
			blob_name(&ctx, cs[i].d, cs[i].n, name);
			buf_reset(&out);
			CHECK_RC(blob_decode_named(&ctx, name, got.data + pre,
						   got.len - pre, &out), 0);
			CHECK(out.len == cs[i].n &&
			      (!cs[i].n || !memcmp(out.data, cs[i].d,
						   cs[i].n)));
		}
	}
	CHECK(want.len < sizeof(text) / 2); /* the text did compress */
	/* no room in out for the payload: refused, out untouched */
	buf_free(&got);
	buf_append(&got, "x", 1);
	pre = got.len;
	CHECK_RC(blob_encode_named_in_place(&ctx, &got, got.cap, scratch,
					    sizeof(scratch)), -EINVAL);
	CHECK_EQ_U64(got.len, pre);
	buf_free(&want);
	buf_free(&got);
	buf_free(&out);
}

/* Data blocks are encoded named: the checksum skips the payload, which
 * only the name authenticates; only blob_decode_named() accepts them. */
static void test_encode_named(void)
{
	uint8_t data[3000];
	struct buf enc = BUF_INIT, out = BUF_INIT;
	char name[BLOB_NAME_LEN + 1];
	struct blob_ctx raw = ctx;
	size_t i, at[] = { 0, 5, 24, 39, 40, 41, 1000 };

	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + i / 100);
	raw.zstd_level = 0;
	blob_name(&ctx, data, sizeof(data), name);
	for (int z = 0; z < 2; z++) {
		const struct blob_ctx *c = z ? &ctx : &raw;

		buf_reset(&enc);
		CHECK_RC(blob_encode_named(c, data, sizeof(data), &enc), 0);
		buf_reset(&out);
		CHECK_RC(blob_decode_named(c, name, enc.data, enc.len, &out),
			 0);
		CHECK(out.len == sizeof(data) &&
		      !memcmp(out.data, data, sizeof(data)));
		/* a plain decode cannot check the payload: refused */
		buf_reset(&out);
		CHECK_RC(blob_decode(c, enc.data, enc.len, &out), -EIO);
		CHECK_EQ_U64(out.len, 0);
		/* a flipped bit anywhere: header (checksum), flag (the
		 * checksum then covers the payload too) or payload (name) */
		for (i = 0; i < ARRAY_SIZE(at); i++) {
			size_t pos = at[i] < enc.len ? at[i] : enc.len - 1;

			enc.data[pos] ^= 0x01;
			buf_reset(&out);
			CHECK_RC(blob_decode_named(c, name, enc.data, enc.len,
						   &out), -EIO);
			CHECK_EQ_U64(out.len, 0);
			enc.data[pos] ^= 0x01;
		}
		enc.data[5] ^= 0x01; /* the flag off */
		CHECK_RC(blob_decode(c, enc.data, enc.len, &out), -EIO);
		enc.data[5] ^= 0x01;
	}
	buf_free(&enc);
	buf_free(&out);
}

/* Names are computed with OpenSSL when it has BLAKE2b, libsodium
 * otherwise: both must give the same names at every length (block
 * boundaries of BLAKE2b are 128 bytes). */
static void test_name_backends_agree(void)
{
	static const size_t lens[] = { 0, 1, 63, 64, 65, 127, 128, 129, 255,
				       256, 4096, 65537, 1 << 20 };
	uint8_t *data = malloc(1 << 20), h[32];
	char name[BLOB_NAME_LEN + 1], want[BLOB_NAME_LEN + 1];
	struct blob_ctx sha = ctx;
	size_t i;

	sha.names = BLOB_NAMES_SHA256;
	for (i = 0; i < (1 << 20); i++)
		data[i] = (uint8_t)(i * 31 + (i >> 9));
	for (i = 0; i < ARRAY_SIZE(lens); i++) {
		blob_name(&ctx, data, lens[i], name);
		crypto_generichash(h, sizeof(h), data, lens[i], ctx.hash_key,
				   BLOB_KEY_BYTES);
		hex_encode(h, sizeof(h), want);
		CHECK(!strcmp(name, want));
		blob_name_backend(&ctx, data, lens[i], name, true);
		CHECK(!strcmp(name, want));

		/* HMAC-SHA-256: OpenSSL and libsodium agree */
		blob_name(&sha, data, lens[i], want);
		blob_name_backend(&sha, data, lens[i], name, true);
		CHECK(!strcmp(name, want));
		blob_name(&ctx, data, lens[i], name);
		CHECK(strcmp(name, want) != 0);
	}
	free(data);
}

/* HMAC-SHA-256 names (format 3): RFC 2104 over the volume key, checked
 * against Python's hmac module; decoding checks them like BLAKE2b's. */
static void test_names_sha256(void)
{
	static const char fox[] = "The quick brown fox jumps over the lazy dog";
	struct blob_ctx sha = ctx;
	char name[BLOB_NAME_LEN + 1];
	struct buf enc = BUF_INIT, out = BUF_INIT;
	enum blob_names n;

	sha.names = BLOB_NAMES_SHA256;
	blob_name(&sha, fox, strlen(fox), name);
	CHECK(!strcmp(name, "f87ad256151fc7b4c5dffa4adb3ebe911a8eeb8a8ebdee3c"
			    "2a4a8e5f5ec02c32"));
	blob_name(&sha, NULL, 0, name);
	CHECK(!strcmp(name, "d38b42096d80f45f826b44a9d5607de72496a415d3f4a1a8"
			    "c88e3bb9da8dc1cb"));
	blob_name_backend(&sha, NULL, 0, name, true);
	CHECK(!strcmp(name, "d38b42096d80f45f826b44a9d5607de72496a415d3f4a1a8"
			    "c88e3bb9da8dc1cb"));

	/* an object named one way does not decode under the other */
	blob_name(&sha, fox, strlen(fox), name);
	CHECK_RC(blob_encode_named(&sha, fox, strlen(fox), &enc), 0);
	CHECK_RC(blob_decode_named(&sha, name, enc.data, enc.len, &out), 0);
	CHECK(out.len == strlen(fox) && !memcmp(out.data, fox, out.len));
	buf_reset(&out);
	CHECK_RC(blob_decode_named(&ctx, name, enc.data, enc.len, &out), -EIO);
	CHECK_EQ_U64(out.len, 0);

	/* labels and parsing */
	CHECK(!strcmp(blob_names_label(BLOB_NAMES_SHA256), "hmac-sha256"));
	CHECK(!strcmp(blob_names_label(BLOB_NAMES_BLAKE2B), "blake2b"));
	CHECK_RC(blob_names_parse("hmac-sha256", &n), 0);
	CHECK(n == BLOB_NAMES_SHA256);
	CHECK_RC(blob_names_parse("sha256", &n), 0);
	CHECK(n == BLOB_NAMES_SHA256);
	CHECK_RC(blob_names_parse("blake2b", &n), 0);
	CHECK(n == BLOB_NAMES_BLAKE2B);
	CHECK_RC(blob_names_parse("md5", &n), -EINVAL);
	CHECK_RC(blob_names_parse("", &n), -EINVAL);
	/* the machine's default is one of the two, and stable */
	n = blob_names_default();
	CHECK(n == BLOB_NAMES_SHA256 || n == BLOB_NAMES_BLAKE2B);
	CHECK(blob_names_default() == n);
	buf_free(&enc);
	buf_free(&out);
}

static void test_random(void)
{
	uint8_t a[32], b[32], zero[32] = { 0 };

	blob_random(a, sizeof(a));
	blob_random(b, sizeof(b));
	CHECK(memcmp(a, b, sizeof(a)) != 0);
	CHECK(memcmp(a, zero, sizeof(a)) != 0);
	blob_random(a, 0);
}

struct worker {
	pthread_t tid;
	unsigned id;
	unsigned errors;
};

static void *codec_worker(void *arg)
{
	struct worker *w = arg;
	struct buf data = BUF_INIT, enc = BUF_INIT, dec = BUF_INIT;
	char name[BLOB_NAME_LEN + 1];
	unsigned i;

	for (i = 0; i < 200; i++) {
		buf_reset(&data);
		buf_appendf(&data, "worker %u round %u ", w->id, i);
		while (data.len < 4096 * (i % 5))
			buf_appendf(&data, "%u ", i * w->id);
		blob_name(&ctx, data.data, data.len, name);
		buf_reset(&enc);
		buf_reset(&dec);
		if (blob_encode(&ctx, data.data, data.len, &enc) ||
		    blob_decode_named(&ctx, name, enc.data, enc.len, &dec) ||
		    dec.len != data.len ||
		    memcmp(dec.data, data.data, data.len))
			w->errors++;
	}
	buf_free(&data);
	buf_free(&enc);
	buf_free(&dec);
	return NULL;
}

static void test_threads(void)
{
	struct worker w[4];
	unsigned i, errors = 0;

	for (i = 0; i < ARRAY_SIZE(w); i++) {
		w[i] = (struct worker){ .id = i + 1 };
		CHECK(pthread_create(&w[i].tid, NULL, codec_worker, &w[i]) ==
		      0);
	}
	for (i = 0; i < ARRAY_SIZE(w); i++) {
		pthread_join(w[i].tid, NULL);
		errors += w[i].errors;
	}
	CHECK_EQ_U64(errors, 0);
}

/* Build a patch of ext[0..n) over below with its bytes from src. */
static size_t make_patch(uint8_t *out, const char *below, uint32_t new_len,
			 const struct patch_ext *ext, size_t n,
			 const uint8_t *src)
{
	size_t pos = patch_data_off(n);

	CHECK_RC(patch_write_header(out, below, new_len, ext, n), 0);
	for (size_t i = 0; i < n; i++) {
		memcpy(out + pos, src + ext[i].off, ext[i].len);
		pos += ext[i].len;
	}
	return pos;
}

static void test_patch(void)
{
	static const char below[] =
		"00112233445566778899aabbccddeeff"
		"0123456789abcdef0123456789abcdef";
	static const char other[] =
		"10112233445566778899aabbccddeeff"
		"0123456789abcdef0123456789abcdef";
	const struct patch_ext ext[] = { { 0, 3 }, { 4096, 4096 },
					 { 9000, 10 } };
	uint8_t src[9010], p[9010 + 200], bad[sizeof(p)];
	struct patch_iter it = { 0, 0 };
	struct patch_view v;
	struct patch_ext x;
	const uint8_t *d;
	size_t len, i;

	for (i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 7 + 1);
	len = make_patch(p, below, 9010, ext, 3, src);
	CHECK_EQ_U64(len, patch_size(3, 3 + 4096 + 10));
	/* the layout of patch.h, byte by byte */
	CHECK(!memcmp(p, "MFPATCH1", 8));
	CHECK(p[8] == 0x00 && p[9] == 0x11 && p[39] == 0xef);
	CHECK(p[40] == (9010 & 0xff) && p[41] == 9010 >> 8 && !p[42] &&
	      !p[43]);
	CHECK(p[44] == 3 && !p[45] && !p[46] && !p[47]);
	CHECK(p[48 + 8] == 0 && p[48 + 9] == 0x10 && p[48 + 12] == 0 &&
	      p[48 + 13] == 0x10); /* extent 1: 4096, 4096 */
	CHECK(!memcmp(p + patch_data_off(3), src, 3));

	CHECK_RC(patch_parse(p, len, below, 9010, &v), 0);
	CHECK_EQ_U64(v.new_len, 9010);
	CHECK_EQ_U64(v.n, 3);
	for (i = 0; patch_next(&v, &it, &x, &d); i++) {
		CHECK_EQ_U64(x.off, ext[i].off);
		CHECK_EQ_U64(x.len, ext[i].len);
		CHECK(!memcmp(d, src + x.off, x.len));
	}
	CHECK_EQ_U64(i, 3);
	/* on any object (fsck): it says which */
	CHECK(patch_has_magic(p, len) && !patch_has_magic(p, 7));
	CHECK(!patch_has_magic(src, len));
	memset(&v, 0, sizeof(v));
	CHECK_RC(patch_parse(p, len, NULL, 9010, &v), 0);
	CHECK(v.below == p + 8 && v.new_len == 9010 && v.n == 3);
	CHECK_RC(patch_parse(p, len, NULL, 9009, &v), -EIO);
	/* no extents: only a new length */
	CHECK_EQ_U64(make_patch(bad, below, 5, NULL, 0, src),
		     PATCH_HEADER_SIZE);
	CHECK_RC(patch_parse(bad, PATCH_HEADER_SIZE, below, 5, &v), 0);
	CHECK_EQ_U64(v.n, 0);

	/* refused: another object below, a block too small for it, a bad
	 * magic, short or long data, overlapping, empty or outlying
	 * extents, a truncated table, a malformed name */
	CHECK_RC(patch_parse(p, len, other, 9010, &v), -EIO);
	CHECK_RC(patch_parse(p, len, below, 9009, &v), -EIO);
	memcpy(bad, p, len);
	bad[3] ^= 1;
	CHECK_RC(patch_parse(bad, len, below, 9010, &v), -EIO);
	CHECK_RC(patch_parse(p, len - 1, below, 9010, &v), -EIO);
	memcpy(bad, p, len);
	bad[len] = 0;
	CHECK_RC(patch_parse(bad, len + 1, below, 9010, &v), -EIO);
	{
		const struct patch_ext over[] = { { 0, 10 }, { 9, 10 } };
		const struct patch_ext empty[] = { { 0, 0 } };
		const struct patch_ext past[] = { { 9000, 11 } };
		size_t n;

		n = make_patch(bad, below, 9010, over, 2, src);
		CHECK_RC(patch_parse(bad, n, below, 9010, &v), -EIO);
		n = make_patch(bad, below, 9010, empty, 1, src);
		CHECK_RC(patch_parse(bad, n, below, 9010, &v), -EIO);
		CHECK_RC(patch_write_header(bad, below, 9010, past, 1), 0);
		n = patch_size(1, 11);
		CHECK_RC(patch_parse(bad, n, below, 9010, &v), -EIO);
	}
	memcpy(bad, p, len);
	bad[44] = 0xff; /* more extents than the object holds */
	CHECK_RC(patch_parse(bad, len, below, 9010, &v), -EIO);
	CHECK_RC(patch_parse(p, 20, below, 9010, &v), -EIO);
	CHECK_RC(patch_write_header(bad, "00ff", 1, NULL, 0), -EINVAL);
	CHECK_RC(patch_parse(p, len, "zz", 9010, &v), -EIO);
}

int main(void)
{
	size_t i;

	CHECK_RC(blob_global_init(), 0);
	CHECK_RC(blob_global_init(), 0); /* idempotent */
	for (i = 0; i < BLOB_KEY_BYTES; i++)
		ctx.hash_key[i] = (uint8_t)i;
	ctx.zstd_level = 3;

	test_golden();
	test_round_trips();
	test_tamper_bits_and_cuts();
	test_tamper_header();
	test_tamper_lengths();
	test_tamper_payload();
	test_tamper_random();
	test_named();
	test_named_view();
	test_encode_named();
	test_encode_in_place();
	test_name_backends_agree();
	test_names_sha256();
	test_random();
	test_threads();
	test_patch();
	return check_done("t_blob");
}
