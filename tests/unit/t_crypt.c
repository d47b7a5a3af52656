/*
 * t_crypt.c - encrypted volumes below the mount: sealing and opening an
 * object with each cipher, each tampered field, the wrong key or store
 * key; key slots with the right and a wrong passphrase; the descriptor's
 * MAC; the sealed store over a file store; the metadata's position
 * that the rollback check compares.
 *
 * `t_crypt bench` measures instead: seal and open of 1 MiB objects with
 * both ciphers (MB/s), and one Argon2id derivation at mkfs's limits.
 */
#include "util/compat.h"

#include <stdlib.h>
#include <time.h>

#include "blob/blob.h"
#include "blob/crypt.h"
#include "check.h"
#include "store/store.h"
#include "util/util.h"
#include "volume/sealed.h"
#include "volume/volume.h"

#define OBJ_KEY "data/ab/" \
	"abababababababababababababababababababababababababababababababab"

static void make_key(struct crypt_key *k, enum crypt_cipher c, uint8_t fill)
{
	memset(k->key, fill, sizeof(k->key));
	k->cipher = c;
}

/* Every field of a sealed object matters: each flip fails to open. */
static void test_seal_open(enum crypt_cipher cipher)
{
	struct crypt_key k, other;
	uint8_t plain[1000], sealed[1000 + CRYPT_OVERHEAD], back[1000];
	const size_t flips[] = { 0, 4, 5, 7, 8, 31, 32, 500, 1031, 1047 };
	size_t i, n = sizeof(plain);

	make_key(&k, cipher, 7);
	make_key(&other, cipher, 8);
	blob_random(plain, n);
	CHECK_RC(crypt_seal(&k, OBJ_KEY, plain, n, sealed), 0);
	CHECK(!memcmp(sealed, "MFE1", 4) && sealed[4] == (uint8_t)cipher);
	CHECK(memcmp(sealed + CRYPT_HEADER, plain, 64) != 0);
	CHECK_RC(crypt_open(&k, OBJ_KEY, sealed, sizeof(sealed), back), 0);
	CHECK_MEM(back, plain, n);
	for (i = 0; i < ARRAY_SIZE(flips); i++) {
		sealed[flips[i]] ^= 0x10;
		memset(back, 0xee, sizeof(back));
		CHECK_RC(crypt_open(&k, OBJ_KEY, sealed, sizeof(sealed), back),
			 -EIO);
		sealed[flips[i]] ^= 0x10;
	}
	/* truncated, the wrong key, another object's name */
	CHECK_RC(crypt_open(&k, OBJ_KEY, sealed, sizeof(sealed) - 1, back),
		 -EIO);
	CHECK_RC(crypt_open(&k, OBJ_KEY, sealed, CRYPT_OVERHEAD - 1, back),
		 -EIO);
	CHECK_RC(crypt_open(&other, OBJ_KEY, sealed, sizeof(sealed), back),
		 -EIO);
	CHECK_RC(crypt_open(&k, "meta/jrnl-0000000000000002", sealed,
			    sizeof(sealed), back), -EIO);
	/* in place, as the sealed store opens */
	CHECK_RC(crypt_open(&k, OBJ_KEY, sealed, sizeof(sealed),
			    sealed + CRYPT_HEADER), 0);
	CHECK_MEM(sealed + CRYPT_HEADER, plain, n);
	/* an empty object seals too */
	CHECK_RC(crypt_seal(&k, "lease", plain, 0, sealed), 0);
	CHECK_RC(crypt_open(&k, "lease", sealed, CRYPT_OVERHEAD, back), 0);
}

/* The same object sealed twice differs (random nonce). */
static void test_nonce(void)
{
	struct crypt_key k;
	uint8_t a[16 + CRYPT_OVERHEAD], b[16 + CRYPT_OVERHEAD], p[16] = { 0 };

	make_key(&k, CRYPT_AES256GCM, 1);
	CHECK_RC(crypt_seal(&k, "lease", p, 16, a), 0);
	CHECK_RC(crypt_seal(&k, "lease", p, 16, b), 0);
	CHECK(memcmp(a + 8, b + 8, CRYPT_NONCE) != 0);
	CHECK(memcmp(a + CRYPT_HEADER, b + CRYPT_HEADER, 16) != 0);
}

static void test_slots(void)
{
	struct crypt_kdf kdf;
	struct crypt_slot s, back;
	uint8_t master[CRYPT_KEY_BYTES], got[CRYPT_KEY_BYTES];
	char text[CRYPT_SLOT_TEXT];

	crypt_kdf_fast(&kdf);
	blob_random(master, sizeof(master));
	CHECK_RC(crypt_slot_wrap("right", 5, &kdf, "vol1", 0, master, &s), 0);
	CHECK_RC(crypt_slot_unwrap("right", 5, &s, "vol1", 0, got), 0);
	CHECK_MEM(got, master, sizeof(master));
	CHECK_RC(crypt_slot_unwrap("wrong", 5, &s, "vol1", 0, got), -EACCES);
	CHECK_RC(crypt_slot_unwrap("righ", 4, &s, "vol1", 0, got), -EACCES);
	/* a slot moved to another number or volume does not open */
	CHECK_RC(crypt_slot_unwrap("right", 5, &s, "vol1", 1, got), -EACCES);
	CHECK_RC(crypt_slot_unwrap("right", 5, &s, "vol2", 0, got), -EACCES);
	crypt_slot_format(&s, text);
	CHECK_RC(crypt_slot_parse(text, &back), 0);
	CHECK(!memcmp(&back, &s, sizeof(s)));
	CHECK_RC(crypt_slot_unwrap("right", 5, &back, "vol1", 0, got), 0);
	text[strlen(text) - 1] = 0; /* one hex digit short */
	CHECK_RC(crypt_slot_parse(text, &back), -EINVAL);
	CHECK_RC(crypt_slot_parse("argon2id:1:99999999999999:00", &back),
		 -EINVAL);
	CHECK_RC(crypt_slot_parse("scrypt:1:8192:00", &back), -EINVAL);
}

static void put_descriptor(struct store *s, const char *text)
{
	static const struct blob_ctx plain;
	struct buf enc = BUF_INIT;

	CHECK_RC(blob_encode(&plain, text, strlen(text), &enc), 0);
	CHECK_RC(store_put(s, "volume", enc.data, enc.len), 0);
	buf_free(&enc);
}

/* The descriptor as text (the blob frame taken off). */
static void get_descriptor(struct store *s, struct buf *text)
{
	static const struct blob_ctx plain;
	struct buf raw = BUF_INIT;

	buf_reset(text);
	CHECK_RC(store_get(s, "volume", 0, 0, &raw), 0);
	CHECK_RC(blob_decode(&plain, raw.data, raw.len, text), 0);
	CHECK_RC(buf_append(text, "", 1), 0);
	text->len--;
	buf_free(&raw);
}

/* Replace the first occurrence of from with to in the descriptor. */
static void edit_descriptor(struct store *s, const struct buf *orig,
			    const char *from, const char *to)
{
	struct buf t = BUF_INIT;
	const char *p = strstr(buf_str(orig), from);

	CHECK(p != NULL);
	if (!p)
		return;
	buf_append(&t, orig->data, (size_t)(p - buf_str(orig)));
	buf_appends(&t, to);
	buf_appends(&t, p + strlen(from));
	put_descriptor(s, buf_str(&t));
	buf_free(&t);
}

static void test_descriptor(struct store *s)
{
	struct crypt_kdf kdf;
	struct volume v, w;
	struct buf err = BUF_INIT, orig = BUF_INIT;
	unsigned slot = 99;

	crypt_kdf_fast(&kdf);
	CHECK_RC(volume_create_encrypted(s, 65536, BLOB_NAMES_SHA256,
					 CRYPT_XCHACHA20, "pw", 2, &kdf, &v,
					 &err), 0);
	CHECK(v.unlocked && v.format == VOLUME_FORMAT_ENCRYPTED);
	get_descriptor(s, &orig);
	CHECK(strstr(buf_str(&orig), "hash_key") == NULL);
	CHECK_RC(volume_load(s, &w, &err), 0);
	CHECK(w.encrypted && !w.unlocked && w.slots_used == 1);
	CHECK_RC(volume_unlock(&w, "x", "bad", 3, &err), -EACCES);
	CHECK(strstr(buf_str(&err), "wrong passphrase") != NULL);
	CHECK_RC(volume_unlock(&w, "x", "pw", 2, &err), 0);
	CHECK_MEM(w.hash_key, v.hash_key, BLOB_KEY_BYTES);
	CHECK_MEM(w.key.key, v.key.key, CRYPT_KEY_BYTES);
	/* a changed line reads as damaged once unlocked */
	edit_descriptor(s, &orig, "block_size=65536", "block_size=131072");
	buf_reset(&err);
	CHECK_RC(volume_load(s, &w, &err), 0);
	CHECK_RC(volume_unlock(&w, "x", "pw", 2, &err), -EIO);
	CHECK(strstr(buf_str(&err), "damaged") != NULL);
	edit_descriptor(s, &orig, "cipher=xchacha20-poly1305",
			"cipher=aes-256-gcm");
	CHECK_RC(volume_load(s, &w, &err), 0);
	CHECK_RC(volume_unlock(&w, "x", "pw", 2, &err), -EIO);
	/* a malformed slot or MAC is damaged at once */
	edit_descriptor(s, &orig, "slot0=argon2id:", "slot0=argon2:");
	buf_reset(&err);
	CHECK_RC(volume_load(s, &w, &err), -EIO);
	CHECK(strstr(buf_str(&err), "damaged") != NULL);
	edit_descriptor(s, &orig, "\nmac=", "\nmac=0");
	CHECK_RC(volume_load(s, &w, &err), -EIO);
	put_descriptor(s, buf_str(&orig));
	/* passwd: the old passphrase stops, the new one opens */
	CHECK_RC(volume_passwd(s, &v, VOLUME_PASSWD_CHANGE, "new", 3, &kdf,
			       &slot, &err), 0);
	CHECK_RC(slot, 0);
	CHECK_RC(volume_load(s, &w, &err), 0);
	CHECK_RC(volume_unlock(&w, "x", "pw", 2, &err), -EACCES);
	CHECK_RC(volume_load(s, &w, &err), 0);
	CHECK_RC(volume_unlock(&w, "x", "new", 3, &err), 0);
	CHECK_MEM(w.key.key, v.key.key, CRYPT_KEY_BYTES);
	/* --add, then --remove of the first; the last one stays */
	CHECK_RC(volume_passwd(s, &w, VOLUME_PASSWD_ADD, "rescue", 6, &kdf,
			       &slot, &err), 0);
	CHECK_RC(slot, 1);
	CHECK_RC(volume_passwd(s, &w, VOLUME_PASSWD_REMOVE, NULL, 0, &kdf,
			       &slot, &err), 0);
	CHECK_RC(slot, 0);
	CHECK_RC(volume_load(s, &w, &err), 0);
	CHECK_RC(w.slots_used, 2);
	CHECK_RC(volume_unlock(&w, "x", "new", 3, &err), -EACCES);
	CHECK_RC(volume_load(s, &w, &err), 0);
	CHECK_RC(volume_unlock(&w, "x", "rescue", 6, &err), 0);
	CHECK_RC(w.unlocked_slot, 1);
	buf_reset(&err);
	CHECK_RC(volume_passwd(s, &w, VOLUME_PASSWD_REMOVE, NULL, 0, &kdf,
			       &slot, &err), -EBUSY);
	CHECK(strstr(buf_str(&err), "last key slot") != NULL);
	/* a history window: format 5, still encrypted, its MAC redone */
	CHECK_RC(volume_set_history(s, &w, 3600, &err), 0);
	CHECK_RC(volume_load(s, &v, &err), 0);
	CHECK(v.encrypted && v.format == VOLUME_FORMAT_HISTORY);
	CHECK_EQ_U64(v.history_s, 3600);
	CHECK_RC(volume_unlock(&v, "x", "rescue", 6, &err), 0);
	CHECK_MEM(w.key.key, v.key.key, CRYPT_KEY_BYTES);
	get_descriptor(s, &orig);
	edit_descriptor(s, &orig, "history=3600", "history=7200");
	CHECK_RC(volume_load(s, &v, &err), 0);
	CHECK_RC(volume_unlock(&v, "x", "rescue", 6, &err), -EIO);
	put_descriptor(s, buf_str(&orig));
	/* a mount wipes the master key (cli_volume_unlock()): the window
	 * is still written with a MAC that matches */
	explicit_bzero(w.master, sizeof(w.master));
	CHECK_RC(volume_set_history(s, &w, 60, &err), 0);
	CHECK_RC(volume_load(s, &v, &err), 0);
	CHECK_EQ_U64(v.history_s, 60);
	CHECK_RC(volume_unlock(&v, "x", "rescue", 6, &err), 0);
	volume_wipe(&v);
	volume_wipe(&w);
	buf_free(&err);
	buf_free(&orig);
}

struct listed {
	uint64_t size;
	int n;
};

static int list_cb(const char *key, uint64_t size, void *arg)
{
	struct listed *l = arg;

	if (!strcmp(key, "meta/jrnl-0000000000000001")) {
		l->size = size;
		l->n++;
	}
	return 0;
}

/* The sealed store over a file store: round trips, ranges, sizes, and
 * what the inner store holds. */
/* Over a store that stages puts, a batch stages sealed copies: nothing
 * is found before the sync, every object opens after it, none is
 * plaintext in the inner store, and the descriptor stays plain. */
static void test_sealed_batch(struct store *s, struct store *inner)
{
	struct store_batch *b = NULL;
	struct buf out = BUF_INIT;
	int results[3];
	uint64_t size;

	CHECK_EQ_U64(store_batch_native(s), store_batch_native(inner));
	CHECK(store_batch_native(s) == 1);
	CHECK_RC(store_batch_new(s, &b), 0);
	if (!b)
		return;
	CHECK_RC(store_batch_put(b, "meta/jrnl-0000000000000007",
				 "batched-secret", 14), 0);
	CHECK_RC(store_batch_put(b, "meta/jrnl-0000000000000008", "two", 3),
		 0);
	CHECK_RC(store_batch_put(b, "volume", "plain2", 6), 0);
	CHECK_RC(store_head(s, "meta/jrnl-0000000000000007", &size), -ENOENT);
	CHECK_RC(store_batch_sync(b, results), 0);
	CHECK(results[0] == 0 && results[1] == 0 && results[2] == 0);
	CHECK_RC(store_get(s, "meta/jrnl-0000000000000007", 0, 0, &out), 0);
	CHECK(out.len == 14 && !memcmp(out.data, "batched-secret", 14));
	buf_reset(&out);
	CHECK_RC(store_get(inner, "meta/jrnl-0000000000000007", 0, 0, &out),
		 0);
	CHECK(out.len == 14 + CRYPT_OVERHEAD &&
	      memmem(out.data, out.len, "secret", 6) == NULL);
	buf_reset(&out);
	CHECK_RC(store_get(inner, "volume", 0, 0, &out), 0);
	CHECK(out.len == 6 && !memcmp(out.data, "plain2", 6));
	/* dropped unsynced: not there */
	CHECK_RC(store_batch_put(b, "meta/jrnl-0000000000000009", "x", 1), 0);
	store_batch_free(b);
	CHECK_RC(store_head(inner, "meta/jrnl-0000000000000009", &size),
		 -ENOENT);
	CHECK_RC(store_del(s, "meta/jrnl-0000000000000007"), 0);
	CHECK_RC(store_del(s, "meta/jrnl-0000000000000008"), 0);
	buf_free(&out);
}

static void test_sealed_store(struct store *inner_file)
{
	struct crypt_key k;
	struct store *s;
	struct buf out = BUF_INIT, raw = BUF_INIT;
	struct listed l = { 0, 0 };
	uint8_t *big;
	size_t n = 3 << 20;
	uint64_t size;
	void *aligned;

	make_key(&k, CRYPT_AES256GCM, 3);
	CHECK_RC(sealed_store_wrap(inner_file, &k, &s), 0);
	CHECK(sealed_store_inner(s) == inner_file);
	big = malloc(n);
	blob_random(big, n);
	CHECK_RC(posix_memalign(&aligned, STORE_DIRECT_ALIGN, n), 0);
	memcpy(aligned, big, n);
	CHECK_RC(store_put(s, OBJ_KEY, aligned, n), 0); /* O_DIRECT path */
	CHECK_RC(store_put(s, "meta/jrnl-0000000000000001", "secret-text",
			   11), 0);
	CHECK_RC(store_get(s, OBJ_KEY, 0, 0, &out), 0);
	CHECK(out.len == n && !memcmp(out.data, big, n));
	buf_reset(&out);
	CHECK_RC(buf_append(&out, "pre", 3), 0);
	CHECK_RC(store_get(s, "meta/jrnl-0000000000000001", 7, 3, &out), 0);
	CHECK(out.len == 6 && !memcmp(out.data, "pretex", 6));
	CHECK_RC(store_head(s, OBJ_KEY, &size), 0);
	CHECK_EQ_U64(size, n);
	CHECK_RC(store_head(inner_file, OBJ_KEY, &size), 0);
	CHECK_EQ_U64(size, n + CRYPT_OVERHEAD);
	CHECK_RC(store_list(s, "meta/", list_cb, &l), 0);
	CHECK(l.n == 1 && l.size == 11);
	/* the inner store holds no plaintext */
	CHECK_RC(store_get(inner_file, "meta/jrnl-0000000000000001", 0, 0,
			   &raw), 0);
	CHECK(memmem(raw.data, raw.len, "secret", 6) == NULL);
	/* copied under another key: EIO, out untouched */
	CHECK_RC(store_put(inner_file, "meta/jrnl-0000000000000002", raw.data,
			   raw.len), 0);
	buf_reset(&out);
	CHECK_RC(buf_append(&out, "keep", 4), 0);
	CHECK_RC(store_get(s, "meta/jrnl-0000000000000002", 0, 0, &out), -EIO);
	CHECK(out.len == 4 && !memcmp(out.data, "keep", 4));
	/* truncated: EIO */
	CHECK_RC(store_put(inner_file, "meta/jrnl-0000000000000002", raw.data,
			   raw.len - 1), 0);
	CHECK_RC(store_get(s, "meta/jrnl-0000000000000002", 0, 0, &out), -EIO);
	CHECK_RC(store_get(s, "meta/none", 0, 0, &out), -ENOENT);
	/* the descriptor passes through as it is */
	CHECK_RC(store_put(s, "volume", "plain", 5), 0);
	buf_reset(&raw);
	CHECK_RC(store_get(inner_file, "volume", 0, 0, &raw), 0);
	CHECK(raw.len == 5 && !memcmp(raw.data, "plain", 5));
	CHECK_RC(store_del(s, "meta/jrnl-0000000000000002"), 0);
	CHECK_RC(store_head(inner_file, "meta/jrnl-0000000000000002", &size),
		 -ENOENT);
	test_sealed_batch(s, inner_file);
	store_close(s); /* and the inner store with it */
	free(aligned);
	free(big);
	buf_free(&out);
	buf_free(&raw);
}

/* The metadata's position (the rollback check's) from a listing. */
static void test_pos(struct store *s)
{
	const char *keys[] = { "meta/ckpt-0000000000000002",
			       "meta/ckpt-000000000000000a",
			       "meta/ckpp-000000000000000b-0000000000000001",
			       "meta/jrnl-0000000000000007",
			       "meta/jrnl-0000000000000008", "data/x" };
	struct volume_pos p, seen;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(keys); i++)
		CHECK_RC(store_put(s, keys[i], "x", 1), 0);
	CHECK_RC(volume_pos_read(s, &p), 0);
	CHECK_EQ_U64(p.ckpt, 10);
	CHECK_EQ_U64(p.entries, 2);
	seen = p;
	CHECK(!volume_pos_older(&p, &seen));
	seen.entries = 3; /* an entry deleted */
	CHECK(volume_pos_older(&p, &seen));
	seen.ckpt = 9; /* a newer checkpoint since: fewer entries is fine */
	CHECK(!volume_pos_older(&p, &seen));
	seen.ckpt = 11; /* the newest checkpoint gone */
	seen.entries = 0;
	CHECK(volume_pos_older(&p, &seen));
	store_del_many(s, keys, ARRAY_SIZE(keys), NULL);
}

static double mb_per_s(size_t bytes, uint64_t ns)
{
	return (double)bytes / 1e6 / ((double)ns / 1e9);
}

static int bench(void)
{
	const enum crypt_cipher ciphers[] = { CRYPT_XCHACHA20,
					      CRYPT_AES256GCM };
	size_t n = 1 << 20, rounds = 512, i, c;
	uint8_t *plain = malloc(n), *sealed = malloc(n + CRYPT_OVERHEAD);
	struct crypt_kdf kdf;
	uint8_t master[CRYPT_KEY_BYTES] = { 0 };
	struct crypt_slot slot;
	uint64_t t;

	blob_random(plain, n);
	for (c = 0; c < ARRAY_SIZE(ciphers); c++) {
		struct crypt_key k;

		make_key(&k, ciphers[c], 9);
		t = now_mono_ns();
		for (i = 0; i < rounds; i++)
			crypt_seal(&k, OBJ_KEY, plain, n, sealed);
		printf("%-20s seal %7.0f MB/s", crypt_cipher_label(k.cipher),
		       mb_per_s(n * rounds, now_mono_ns() - t));
		t = now_mono_ns();
		for (i = 0; i < rounds; i++)
			crypt_open(&k, OBJ_KEY, sealed, n + CRYPT_OVERHEAD,
				   plain);
		printf("   open %7.0f MB/s\n",
		       mb_per_s(n * rounds, now_mono_ns() - t));
	}
	printf("default here: %s\n",
	       crypt_cipher_label(crypt_cipher_default()));
	t = now_mono_ns();
	if (crypt_kdf_calibrate(1000, &kdf))
		return 1;
	printf("Argon2id calibration took %.2f s: %" PRIu64 " passes, %" PRIu64
	       " MiB\n", (double)(now_mono_ns() - t) / 1e9, kdf.ops,
	       kdf.mem >> 20);
	t = now_mono_ns();
	crypt_slot_wrap("pw", 2, &kdf, "v", 0, master, &slot);
	printf("one derivation at those limits: %.2f s\n",
	       (double)(now_mono_ns() - t) / 1e9);
	free(plain);
	free(sealed);
	return 0;
}

int main(int argc, char **argv)
{
	char tmp[] = "/tmp/t_crypt.XXXXXX";
	struct store *s;

	if (blob_global_init())
		return 1;
	if (argc > 1 && !strcmp(argv[1], "bench"))
		return bench();
	test_seal_open(CRYPT_XCHACHA20);
	test_seal_open(CRYPT_AES256GCM);
	test_nonce();
	test_slots();
	if (!mkdtemp(tmp))
		return 1;
	CHECK_RC(store_open(tmp, 1, &s, NULL), 0);
	test_descriptor(s);
	test_pos(s);
	test_sealed_store(s);
	rm_rf(tmp);
	return check_done("t_crypt");
}
