/*
 * store_tool.c - the end-to-end tests' window into a store of any kind.
 *
 *   store_tool LOCATION ls PREFIX      print "key<TAB>size" per object
 *   store_tool LOCATION put KEY FILE   store FILE's bytes under KEY
 *   store_tool LOCATION get KEY FILE   write the object KEY to FILE
 *   store_tool LOCATION del KEY
 *
 * LOCATION is whatever metafuse takes (a directory, file://, s3:// with
 * the endpoint and keys from the environment), so a test can look at and
 * damage objects through the same store layer on every backend.
 */
#include "util/compat.h"

#include <stdio.h>

#include "store/store.h"
#include "util/buf.h"
#include "util/util.h"

static int print_cb(const char *key, uint64_t size, void *arg)
{
	printf("%s\t%" PRIu64 "\n", key, size);
	return 0;
}

int main(int argc, char **argv)
{
	struct store_options so = { 0 };
	struct buf err = BUF_INIT, data = BUF_INIT;
	struct store *s = NULL;
	int rc;

	if (argc < 4) {
		fprintf(stderr, "usage: store_tool LOCATION ls|put|get|del "
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
