/*
 * t_util.c - unit tests of src/util/util.c.
 *
 * Covers the parsers (good input, each kind of bad input, overflow at the
 * exact boundary), hex round trips, the clocks, and the file helpers in a
 * private mkdtemp() directory that is removed at the end.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "util/util.h"

static void test_parse_size(void)
{
	static const struct {
		const char *s;
		uint64_t want;
	} good[] = {
		{ "0", 0 },
		{ "4096", 4096 },
		{ "4096B", 4096 },
		{ "64K", 64 << 10 },
		{ "64k", 64 << 10 },
		{ "64KB", 64 << 10 },
		{ "64KiB", 64 << 10 },
		{ "1M", 1 << 20 },
		{ "1MiB", 1 << 20 },
		{ "2G", (uint64_t)2 << 30 },
		{ "1T", (uint64_t)1 << 40 },
		{ "16777215T", (uint64_t)16777215 << 40 },
		{ "18446744073709551615", UINT64_MAX },
		{ "007", 7 },
	};
	static const char *const bad[] = {
		"", "12X", "-1", "+1", " 1", "1 ", "K", "B", "1.5M", "1KK",
		"1Ki", "1iB", "1MBB", "0x10",
		"18446744073709551616",	/* 2^64 */
		"99999999999999999999999",
		"16777216T",		/* 2^64 exactly */
		"17179869184G",		/* 2^64 exactly */
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(good); i++) {
		v = 12345;
		CHECK_RC(parse_size(good[i].s, &v), 0);
		CHECK_EQ_U64(v, good[i].want);
	}
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		v = 12345;
		CHECK_RC(parse_size(bad[i], &v), -EINVAL);
		CHECK_EQ_U64(v, 12345); /* untouched on failure */
		if (v != 12345)
			fprintf(stderr, "  input '%s'\n", bad[i]);
	}
	CHECK_RC(parse_size(NULL, &v), -EINVAL);
}

static void test_parse_seconds(void)
{
	static const struct {
		const char *s;
		uint64_t want;
	} good[] = {
		{ "0", 0 },
		{ "5", 5000000000ull },
		{ "0.5", 500000000ull },
		{ ".25", 250000000ull },
		{ "2.", 2000000000ull },
		{ "1.000000001", 1000000001ull },
		{ "1.0000000019", 1000000001ull }, /* below 1 ns: dropped */
		{ "18446744073", 18446744073000000000ull },
		{ "18446744073.709551615", UINT64_MAX },
	};
	static const char *const bad[] = {
		"", ".", "-1", "+1", "1s", "1..2", "1.2.3", " 1", "abc",
		"18446744074", "18446744073.709551616",
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(good); i++) {
		v = 7;
		CHECK_RC(parse_seconds(good[i].s, &v), 0);
		CHECK_EQ_U64(v, good[i].want);
	}
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		v = 7;
		CHECK_RC(parse_seconds(bad[i], &v), -EINVAL);
		CHECK_EQ_U64(v, 7);
		if (v != 7)
			fprintf(stderr, "  input '%s'\n", bad[i]);
	}
}

static void test_hex(void)
{
	uint8_t in[256], back[256];
	char hex[513];
	size_t i;

	for (i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	hex_encode(in, sizeof(in), hex);
	CHECK(strlen(hex) == 512);
	CHECK(!strncmp(hex, "000102030405060708090a0b", 24));
	CHECK(!strcmp(hex + 506, "fdfeff"));
	CHECK_RC(hex_decode(hex, back, sizeof(back)), 0);
	CHECK_MEM(in, back, sizeof(in));

	hex_encode(in, 0, hex);
	CHECK(hex[0] == '\0');
	CHECK_RC(hex_decode("", back, 0), 0);

	CHECK_RC(hex_decode("DEADbeef", back, 4), 0);
	CHECK(back[0] == 0xde && back[1] == 0xad && back[2] == 0xbe &&
	      back[3] == 0xef);
	memset(back, 0x55, 4);
	CHECK_RC(hex_decode("deadbee", back, 4), -EINVAL);   /* short */
	CHECK_RC(hex_decode("deadbeeg", back, 4), -EINVAL);  /* not hex */
	CHECK_RC(hex_decode("dead beef", back, 4), -EINVAL);
	CHECK_RC(hex_decode("0x12", back, 2), -EINVAL);
	CHECK(back[0] == 0x55); /* untouched on failure */
}

static void test_clocks(void)
{
	struct timespec t = now_realtime();
	uint64_t a, b;

	CHECK(t.tv_sec > 1600000000); /* after 2020 */
	CHECK(t.tv_nsec >= 0 && t.tv_nsec < 1000000000);
	a = now_mono_ns();
	b = now_mono_ns();
	CHECK(a > 0 && b >= a);
}

static bool is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *p)
{
	struct stat st;

	return lstat(p, &st) == 0;
}

static void test_files(const char *tmp)
{
	struct buf p = BUF_INIT, q = BUF_INIT, data = BUF_INIT;
	struct stat st;
	size_t i;

	/* mkdir_p */
	buf_appendf(&p, "%s/a/b//c/", tmp);
	CHECK_RC(mkdir_p(buf_str(&p), 0755), 0);
	CHECK(is_dir(buf_str(&p)));
	CHECK_RC(mkdir_p(buf_str(&p), 0755), 0); /* existing is fine */
	buf_reset(&p);
	buf_appendf(&p, "%s/a/b/c/d", tmp);
	CHECK_RC(mkdir_p(buf_str(&p), 0700), 0);
	CHECK(stat(buf_str(&p), &st) == 0 && (st.st_mode & 0777) == 0700);

	/* write_file_atomic / read_file */
	buf_reset(&p);
	buf_appendf(&p, "%s/a/file", tmp);
	CHECK_RC(write_file_atomic(buf_str(&p), "hello", 5, 0600), 0);
	CHECK(stat(buf_str(&p), &st) == 0 && (st.st_mode & 0777) == 0600);
	buf_appends(&data, "pre:");
	CHECK_RC(read_file(buf_str(&p), &data), 0);
	CHECK(data.len == 9 && !memcmp(data.data, "pre:hello", 9));
	CHECK(data.data[data.len] == 0);
	/* replace with something longer, then empty */
	for (i = 0; i < 300000; i++)
		buf_append(&q, &(char){ (char)('a' + i % 26) }, 1);
	CHECK_RC(write_file_atomic(buf_str(&p), q.data, q.len, 0644), 0);
	buf_reset(&data);
	CHECK_RC(read_file(buf_str(&p), &data), 0);
	CHECK(data.len == q.len && !memcmp(data.data, q.data, q.len));
	CHECK_RC(write_file_atomic(buf_str(&p), "", 0, 0644), 0);
	buf_reset(&data);
	CHECK_RC(read_file(buf_str(&p), &data), 0);
	CHECK(data.len == 0);
	CHECK_RC(fsync_parent_dir(buf_str(&p)), 0);

	/* errors */
	buf_reset(&q);
	buf_appendf(&q, "%s/missing/file", tmp);
	CHECK_RC(write_file_atomic(buf_str(&q), "x", 1, 0600), -ENOENT);
	buf_reset(&data);
	buf_appends(&data, "keep");
	CHECK_RC(read_file(buf_str(&q), &data), -ENOENT);
	CHECK(data.len == 4 && !strcmp(buf_str(&data), "keep"));
	buf_reset(&q);
	buf_appendf(&q, "%s/a/file/sub", tmp);
	CHECK_RC(mkdir_p(buf_str(&q), 0755), -ENOTDIR); /* file in the way */
	buf_reset(&q);
	buf_appendf(&q, "%s/a/file", tmp);
	CHECK_RC(mkdir_p(buf_str(&q), 0755), -ENOTDIR);
	CHECK_RC(mkdir_p("", 0755), -ENOENT);

	/* rm_rf: a symlink to a tree is removed, the tree is not */
	buf_reset(&q);
	buf_appendf(&q, "%s/keep", tmp);
	CHECK_RC(mkdir_p(buf_str(&q), 0755), 0);
	buf_appends(&q, "/inside");
	CHECK_RC(write_file_atomic(buf_str(&q), "x", 1, 0600), 0);
	buf_reset(&q);
	buf_appendf(&q, "%s/keep", tmp);
	buf_reset(&p);
	buf_appendf(&p, "%s/a/b/link", tmp);
	CHECK(symlink(buf_str(&q), buf_str(&p)) == 0);
	buf_reset(&p);
	buf_appendf(&p, "%s/a", tmp);
	CHECK_RC(rm_rf(buf_str(&p)), 0);
	CHECK(!exists(buf_str(&p)));
	buf_appends(&q, "/inside");
	CHECK(exists(buf_str(&q)));
	CHECK_RC(rm_rf(buf_str(&p)), 0); /* missing is fine */
	CHECK_RC(rm_rf(buf_str(&q)), 0); /* a plain file */
	CHECK(!exists(buf_str(&q)));

	/* no temp files are left behind */
	buf_reset(&p);
	buf_appendf(&p, "%s/keep", tmp);
	CHECK(rmdir(buf_str(&p)) == 0);
	CHECK(rmdir(tmp) == 0);

	buf_free(&p);
	buf_free(&q);
	buf_free(&data);
}

static void test_buf_aligned(void)
{
	struct buf b = BUF_INIT;
	uint8_t *p;

	CHECK_RC(buf_init_aligned(&b, 4096, 10000), 0);
	CHECK(b.data && ((uintptr_t)b.data & 4095) == 0);
	CHECK(b.len == 0 && b.cap == 10001 && b.data && b.data[0] == 0);
	p = b.data;
	CHECK_RC(buf_reserve(&b, 10000), 0); /* within cap: not moved */
	CHECK(b.data == p);
	CHECK_RC(buf_append(&b, "x", 1), 0);
	CHECK_RC(buf_init_aligned(&b, 4096, 10), -EINVAL); /* not empty */
	CHECK(b.data == p && b.len == 1);
	CHECK_RC(buf_reserve(&b, 20000), 0); /* grows, keeps the bytes */
	CHECK(b.len == 1 && b.data[0] == 'x');
	buf_free(&b);
}

int main(void)
{
	char tmp[] = "/tmp/t_util.XXXXXX";

	test_parse_size();
	test_parse_seconds();
	test_hex();
	test_clocks();
	test_buf_aligned();
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	test_files(tmp);
	rm_rf(tmp);
	return check_done("t_util");
}
