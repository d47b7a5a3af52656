/*
 * store_tool.c - the end-to-end tests' window into a store of any kind.
 *
 *   store_tool LOCATION ls PREFIX      print "key<TAB>size" per object
 *   store_tool LOCATION put KEY FILE   store FILE's bytes under KEY
 *   store_tool LOCATION get KEY FILE   write the object KEY to FILE
 *   store_tool LOCATION del KEY
 *   store_tool LOCATION putrate PREFIX COUNT SIZE THREADS
 *                                      PUT COUNT objects of SIZE random
 *                                      bytes under PREFIX from THREADS
 *                                      threads, print the seconds taken,
 *                                      delete them (bench/s3-ceiling.sh:
 *                                      what the server takes at best)
 *
 * LOCATION is whatever metafuse takes (a directory, file://, s3:// with
 * the endpoint and keys from the environment), so a test can look at and
 * damage objects through the same store layer on every backend.
 */
#include "util/compat.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "blob/blob.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/util.h"

static int print_cb(const char *key, uint64_t size, void *arg)
{
	printf("%s\t%" PRIu64 "\n", key, size);
	return 0;
}

struct putrate {
	struct store *s;
	const char *prefix;
	const uint8_t *data;
	size_t size;
	unsigned count, threads, id;
	int rc;
};

static void *putrate_thread(void *arg)
{
	struct putrate *p = arg;
	char key[512];
	unsigned i;

	for (i = p->id; i < p->count && !p->rc; i += p->threads) {
		snprintf(key, sizeof(key), "%s/%08u", p->prefix, i);
		/* a different first word per object: no two are the same */
		p->rc = store_put(p->s, key, p->data + i * 8, p->size);
	}
	return NULL;
}

static int putrate(struct store *s, const char *prefix, unsigned count,
		   uint64_t size, unsigned threads)
{
	struct putrate *p = calloc(threads, sizeof(*p));
	pthread_t *t = calloc(threads, sizeof(*t));
	uint8_t *data = malloc(size + (size_t)count * 8);
	char key[512];
	uint64_t t0;
	unsigned i;
	int rc = 0;

	if (!p || !t || !data) {
		rc = -ENOMEM;
		goto out;
	}
	if (blob_global_init()) {
		rc = -EIO;
		goto out;
	}
	blob_random(data, size + (size_t)count * 8);
	t0 = now_mono_ns();
	for (i = 0; i < threads; i++) {
		p[i] = (struct putrate){ s, prefix, data, size, count,
					 threads, i, 0 };
		pthread_create(&t[i], NULL, putrate_thread, &p[i]);
	}
	for (i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		if (p[i].rc)
			rc = p[i].rc;
	}
	printf("%.3f\n", (double)(now_mono_ns() - t0) / 1e9);
	for (i = 0; i < count; i++) {
		snprintf(key, sizeof(key), "%s/%08u", prefix, i);
		store_del(s, key);
	}
out:
	free(p);
	free(t);
	free(data);
	return rc;
}

int main(int argc, char **argv)
{
	struct store_options so = { 0 };
	struct buf err = BUF_INIT, data = BUF_INIT;
	struct store *s = NULL;
	int rc;

	if (argc < 4) {
		fprintf(stderr, "usage: store_tool LOCATION ls|put|get|del|putrate "
			"ARG [FILE]\n");
		return 2;
	}
	if (store_open_opts(argv[1], 0, &so, &s, &err)) {
		fprintf(stderr, "store_tool: %s\n", buf_str(&err));
		return 1;
	}
	if (!strcmp(argv[2], "ls")) {
		rc = store_list(s, argv[3], print_cb, NULL);
	} else if (!strcmp(argv[2], "put") && argc == 5) {
		rc = read_file(argv[4], &data);
		if (!rc)
			rc = store_put(s, argv[3], data.data, data.len);
	} else if (!strcmp(argv[2], "get") && argc == 5) {
		rc = store_get(s, argv[3], 0, 0, &data);
		if (!rc)
			rc = write_file_atomic(argv[4], data.data, data.len,
					       0600);
	} else if (!strcmp(argv[2], "putrate") && argc == 7) {
		uint64_t size;

		rc = parse_size(argv[5], &size);
		if (!rc && (size == 0 || size > (1ULL << 30) ||
			    atoi(argv[4]) < 1 || atoi(argv[6]) < 1))
			rc = -EINVAL;
		if (!rc)
			rc = putrate(s, argv[3], (unsigned)atoi(argv[4]), size,
				     (unsigned)atoi(argv[6]));
	} else if (!strcmp(argv[2], "del")) {
		rc = store_del(s, argv[3]);
	} else {
		fprintf(stderr, "store_tool: unknown command %s\n", argv[2]);
		rc = -EINVAL;
	}
	if (rc)
		fprintf(stderr, "store_tool: %s %s: %s\n", argv[2], argv[3],
			strerror(-rc));
	store_close(s);
	buf_free(&err);
	buf_free(&data);
	return rc ? 1 : 0;
}
