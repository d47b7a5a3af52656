/*
 * t_store_file.c - the file backend's own tests, beyond the contract that
 * t_store.c runs against it: locations, the layout on disk, O_DIRECT for
 * large aligned objects, names that are not keys, the limits of the
 * medium, durability across a reopen.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "check.h"
#include "store/store.h"
#include "t_store.h"
#include "util/util.h"

/* Locations: a missing directory, foreign schemes, file:// URLs. */
static void test_file_locations(const char *tmp, const char *root)
{
	struct buf loc = BUF_INIT, err = BUF_INIT, p = BUF_INIT;
	struct store *s = NULL, *s2 = NULL;

	CHECK_RC(store_open(root, 0, &s, &err), -ENOENT);
	CHECK(s == NULL);
	buf_appendf(&loc, "store '%s' does not exist", root);
	CHECK(!strcmp(buf_str(&err), buf_str(&loc)));
	buf_reset(&err);
	CHECK_RC(store_open("gs://bucket/vol", 0, &s, &err), -EINVAL);
	CHECK(!strcmp(buf_str(&err),
		      "unsupported store location 'gs://bucket/vol' (use a "
		      "directory path, file:///path or s3://BUCKET/PREFIX)"));
	buf_reset(&err);
	CHECK_RC(store_open("file://host/vol", 0, &s, &err), -EINVAL);
	CHECK(strstr(buf_str(&err), "unsupported store location"));
	CHECK_RC(store_open("", 0, &s, NULL), -EINVAL);
	CHECK_RC(store_open(root, 1, &s, &err), 0);
	CHECK(s && !strncmp(s->url, "file:///", 8));
	CHECK(s && !strcmp(s->ops->name, "file"));
	store_close(s);
	buf_reset(&loc);
	buf_appendf(&loc, "file://%s", root);
	CHECK_RC(store_open(buf_str(&loc), 0, &s, NULL), 0);
	CHECK(s && !strcmp(s->url, buf_str(&loc)));
	store_close(s);
	store_close(NULL);
	buf_appendf(&p, "%s/file/x/y/z", tmp);
	CHECK_RC(store_file_open(buf_str(&p), 1, &s2), 0);
	store_close(s2);
	buf_free(&loc);
	buf_free(&err);
	buf_free(&p);
}

/* Key a/b/c is the file ROOT/a/b/c, private to the owner. */
static void test_file_layout(struct store *s, const char *root)
{
	struct buf p = BUF_INIT;
	struct stat st;

	CHECK_RC(store_put(s, "lay/out/obj", "abc", 3), 0);
	buf_appendf(&p, "%s/lay/out/obj", root);
	CHECK(stat(buf_str(&p), &st) == 0 && st.st_size == 3 &&
	      (st.st_mode & 0777) == 0600);
	buf_free(&p);
}

/* Pages of the file at path in the page cache, -1 if unknown. */
static long resident_pages(const char *path)
{
	long pg = sysconf(_SC_PAGESIZE), n = -1;
	unsigned char *vec;
	struct stat st;
	void *map;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) == 0 && st.st_size > 0) {
		size_t pages = ((size_t)st.st_size + (size_t)pg - 1) / (size_t)pg;

		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd,
			   0);
		vec = malloc(pages);
		if (map != MAP_FAILED && vec &&
		    mincore(map, (size_t)st.st_size, vec) == 0) {
			n = 0;
			for (size_t i = 0; i < pages; i++)
				n += vec[i] & 1;
		}
		free(vec);
		if (map != MAP_FAILED)
			munmap(map, (size_t)st.st_size);
	}
	close(fd);
	return n;
}

/*
 * Large objects from aligned memory are written past the page cache (the
 * aligned head with O_DIRECT, the tail buffered), and read past it into an
 * aligned buffer with room for the last block whole: every size comes
 * back whole either way, and on a disk file system the head is not left in
 * the page cache.
 */
static void test_file_direct(struct store *s, const char *root)
{
	static const size_t sizes[] = {
		1u << 20, (1u << 20) + 40, (256u << 10) + 1, (256u << 10) - 1,
		(2u << 20) + 4095,
	};
	struct buf data = BUF_INIT, out = BUF_INIT, path = BUF_INIT;
	struct buf al = BUF_INIT;
	struct statfs sf;
	bool disk = statfs(root, &sf) == 0 && sf.f_type != TMPFS_MAGIC;
	size_t i, j;

	CHECK_RC(buf_init_aligned(&data, STORE_DIRECT_ALIGN, 3u << 20), 0);
	CHECK(((uintptr_t)data.data & (STORE_DIRECT_ALIGN - 1)) == 0);
	if (!data.data)
		return;
	for (i = 0; i < sizes[4]; i++)
		data.data[i] = (uint8_t)(i * 2654435761u >> 13);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		data.data[0] = (uint8_t)i; /* a different object each time */
		CHECK_RC(store_put(s, "direct/obj", data.data, sizes[i]), 0);
		buf_reset(&path);
		buf_appendf(&path, "%s/direct/obj", root);
		if (disk && sizes[i] >= (1u << 20))
			CHECK(resident_pages(buf_str(&path)) <= 1);
		buf_free(&al);
		CHECK_RC(buf_init_aligned(&al, STORE_DIRECT_ALIGN, 3u << 20),
			 0);
		CHECK_RC(store_get(s, "direct/obj", 0, 0, &al), 0);
		CHECK(al.len == sizes[i] && al.data[al.len] == 0 &&
		      !memcmp(al.data, data.data, sizes[i]));
		if (disk && sizes[i] >= (1u << 20))
			CHECK(resident_pages(buf_str(&path)) <= 1);
		buf_reset(&out);
		CHECK_RC(store_get(s, "direct/obj", 0, 0, &out), 0);
		CHECK_EQ_U64(out.len, sizes[i]);
		j = out.len == sizes[i] && !memcmp(out.data, data.data, sizes[i]);
		CHECK(j);
		/* a range, into an aligned buffer: buffered, the same */
		buf_reset(&al);
		CHECK_RC(store_get(s, "direct/obj", 4096, 300000, &al), 0);
		CHECK(al.len == MF_MIN(300000, sizes[i] - 4096) &&
		      !memcmp(al.data, data.data + 4096, al.len));
	}
	buf_free(&al);
	/* the same bytes from an unaligned address: buffered, the same */
	memmove(data.data + 1, data.data, 1u << 20);
	CHECK_RC(store_put(s, "direct/obj", data.data + 1, 1u << 20), 0);
	buf_reset(&out);
	CHECK_RC(store_get(s, "direct/obj", 0, 0, &out), 0);
	CHECK(out.len == (1u << 20) &&
	      !memcmp(out.data, data.data + 1, 1u << 20));
	CHECK_RC(store_del(s, "direct/obj"), 0);
	buf_free(&data);
	buf_free(&out);
	buf_free(&path);
}

/* Stray temp files, foreign names and symlinks are not listed; prefixes
 * that no valid key can start with are refused. */
static void test_file_foreign(struct store *s, const char *root)
{
	struct buf p = BUF_INIT, out = BUF_INIT;
	struct listing l;
	uint64_t size;
	int fd;

	buf_appendf(&p, "%s/lay/.tmp-1-2~", root);
	fd = open(buf_str(&p), O_WRONLY | O_CREAT, 0600);
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	buf_reset(&p);
	buf_appendf(&p, "%s/lay/out/bad name", root);
	CHECK_RC(write_file_atomic(buf_str(&p), "x", 1, 0600), 0);
	buf_reset(&p);
	buf_appendf(&p, "%s/lay/out/link", root);
	CHECK(symlink("obj", buf_str(&p)) == 0);
	CHECK_RC(list_all(s, "lay", &l), 0);
	CHECK(l.n == 1 && !strcmp(l.keys[0], "lay/out/obj"));
	listing_free(&l);
	CHECK_RC(store_head(s, "lay/out/link", &size), -ENOENT);
	CHECK_RC(store_get(s, "lay/out/link", 0, 0, &out), -ENOENT);

	CHECK_RC(list_all(s, "/lay", &l), -EINVAL);
	CHECK_RC(list_all(s, "../", &l), -EINVAL);
	CHECK_RC(list_all(s, "lay//", &l), -EINVAL);
	CHECK_RC(list_all(s, "lay/./", &l), -EINVAL);
	CHECK_RC(list_all(s, "la y", &l), -EINVAL);
	buf_free(&p);
	buf_free(&out);
}

/* Limits of the medium: "f" and "f/g" cannot both be objects. */
static void test_file_limits(struct store *s, const char *root)
{
	CHECK_RC(store_put(s, "lim/f", "f", 1), 0);
	CHECK_RC(store_put(s, "lim/f/g", "g", 1), -ENOTDIR);
	CHECK_RC(store_put(s, "lim/d/e", "e", 1), 0);
	CHECK_RC(store_put(s, "lim/d", "d", 1), -EISDIR);
	/* the failed puts left none: the one is test_file_foreign's */
	CHECK_EQ_U64(count_names_with(root, '~'), 1);
}

/* Durable across close and reopen; a directory removed behind our back
 * is recreated. */
static void test_file_reopen(const char *root)
{
	struct buf p = BUF_INIT, out = BUF_INIT;
	struct store *s = NULL;
	uint64_t size;

	CHECK_RC(store_file_open(root, 0, &s), 0);
	if (!s)
		goto out;
	CHECK_RC(store_get(s, "lay/out/obj", 0, 0, &out), 0);
	CHECK(out.len == 3 && !memcmp(out.data, "abc", 3));

	CHECK_RC(store_del(s, "lim/d/e"), 0);
	buf_appendf(&p, "%s/lim/d", root);
	CHECK(rmdir(buf_str(&p)) == 0);
	CHECK_RC(store_put(s, "lim/d/e", "e2", 2), 0);
	CHECK_RC(store_head(s, "lim/d/e", &size), 0);
	store_close(s);
out:
	buf_free(&p);
	buf_free(&out);
}

/*
 * A fresh process putting into directories that exist already (a mount
 * after the first: data/00 to data/ff) syncs their parent once, not once
 * per directory: 32 puts into 32 known directories cost the 2 fsyncs of
 * each put (file, directory) and one of "sib" and ROOT, where every first
 * put into a directory used to sync its parents too (4 each).
 */
static void test_file_sibling_dirs(const char *root)
{
	struct store *s = NULL;
	char key[64];
	uint64_t before;
	int i;

	CHECK_RC(store_file_open(root, 0, &s), 0);
	for (i = 0; s && i < 32; i++) {
		snprintf(key, sizeof(key), "sib/%02x/a", i);
		CHECK_RC(store_put(s, key, "a", 1), 0);
	}
	store_close(s);
	CHECK_RC(store_file_open(root, 0, &s), 0);
	if (!s)
		return;
	before = store_file_fsyncs(s);
	for (i = 0; i < 32; i++) {
		snprintf(key, sizeof(key), "sib/%02x/b", i);
		CHECK_RC(store_put(s, key, "b", 1), 0);
	}
	CHECK_EQ_U64(store_file_fsyncs(s) - before, 32 * 2 + 2);
	/* a new sibling is made durable by its own sync of the parent */
	before = store_file_fsyncs(s);
	CHECK_RC(store_put(s, "sib/new/c", "c", 1), 0);
	CHECK_EQ_U64(store_file_fsyncs(s) - before, 3);
	store_close(s);
}

/*
 * A batch syncs each file and then each directory once: 16 objects in 2
 * known directories cost 18 fsyncs where 16 puts cost 32; one dropped
 * unsynced leaves no temp file.
 */
static void test_file_batch(struct store *s, const char *root)
{
	struct store_batch *b = NULL;
	uint64_t before;
	char key[64];
	int i;

	CHECK_RC(store_put(s, "bat/0/x", "x", 1), 0);
	CHECK_RC(store_put(s, "bat/1/x", "x", 1), 0);
	CHECK_RC(store_batch_new(s, &b), 0);
	if (!b)
		return;
	before = store_file_fsyncs(s);
	for (i = 0; i < 16; i++) {
		snprintf(key, sizeof(key), "bat/%d/k%d", i % 2, i);
		CHECK_RC(store_batch_put(b, key, key, strlen(key)), 0);
	}
	CHECK_EQ_U64(store_file_fsyncs(s) - before, 0);
	CHECK_RC(store_batch_sync(b, NULL), 0);
	CHECK_EQ_U64(store_file_fsyncs(s) - before, 16 + 2);
	CHECK_RC(store_batch_put(b, "bat/0/gone", "g", 1), 0);
	store_batch_free(b);
	CHECK_EQ_U64(count_names_with(root, '~'), 1); /* test_file_foreign's */
}

static void test_file_backend(const char *tmp)
{
	struct buf root = BUF_INIT;
	struct store *s = NULL;

	buf_appendf(&root, "%s/file", tmp);
	test_file_locations(tmp, buf_str(&root));
	CHECK_RC(store_file_open(buf_str(&root), 0, &s), 0);
	if (s) {
		test_file_layout(s, buf_str(&root));
		test_file_direct(s, buf_str(&root));
		test_file_foreign(s, buf_str(&root));
		test_file_limits(s, buf_str(&root));
		test_file_batch(s, buf_str(&root));
		store_close(s);
		test_file_reopen(buf_str(&root));
		test_file_sibling_dirs(buf_str(&root));
	}
	buf_free(&root);
}

int main(void)
{
	char tmp[] = "/tmp/t_store_file.XXXXXX";

	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	test_file_backend(tmp);
	rm_rf(tmp);
	return check_done("t_store_file");
}
