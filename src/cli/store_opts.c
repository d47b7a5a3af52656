/*
 * store_opts.c - parsing of the store options shared by mkfs, mount, fsck
 * and gc (see store_opts.h).  Kept apart from the commands so that each
 * command has one call site.
 */
#include "util/compat.h"

#include "cli/cli.h"
#include "cli/store_opts.h"
#include "util/util.h"
#include "volume/sealed.h"

static int set_str(char **dst, const char **pub, const char *val)
{
	char *copy;

	if (!val || !*val)
		return -EINVAL;
	copy = strdup(val);
	if (!copy)
		return -ENOMEM;
	free(*dst);
	*dst = copy;
	*pub = copy;
	return 0;
}

int cli_store_opt(struct cli_store_opts *so, const char *opt)
{
	const char *eq = strchr(opt, '=');
	size_t klen = eq ? (size_t)(eq - opt) : strlen(opt);
	const char *val = eq ? eq + 1 : NULL;

#define KEY(k) (klen == strlen(k) && !strncmp(opt, k, klen))
	if (KEY("endpoint"))
		return set_str(&so->endpoint, &so->o.endpoint, val);
	if (KEY("region"))
		return set_str(&so->region, &so->o.region, val);
	if (KEY("credentials"))
		return set_str(&so->credentials, &so->o.credentials, val);
	if (KEY("ca_bundle"))
		return set_str(&so->ca_bundle, &so->o.ca_bundle, val);
	if (KEY("passphrase_file")) {
		const char *unused;

		return set_str(&so->passphrase_file, &unused, val);
	}
	if (KEY("path_style") && !val) {
		so->o.addressing = STORE_S3_ADDR_PATH;
		return 0;
	}
	if (KEY("virtual_host") && !val) {
		so->o.addressing = STORE_S3_ADDR_VHOST;
		return 0;
	}
	if (KEY("no_verify_tls") && !val) {
		so->o.no_verify_tls = true;
		return 0;
	}
	if (KEY("sign_payload") && !val) {
		so->o.sign_payload = true;
		return 0;
	}
	if (KEY("connections") && val) {
		char *end;
		unsigned long n = strtoul(val, &end, 10);

		if (*end || n < 1 || n > 256)
			return -EINVAL;
		so->o.connections = (unsigned)n;
		return 0;
	}
	if (KEY("part_size") && val) {
		uint64_t n;

		if (parse_size(val, &n) || n < (5u << 20) || n > (5ULL << 30))
			return -EINVAL;
		so->o.part_size = n;
		return 0;
	}
#undef KEY
	return -ENOENT;
}

int cli_opts_each(const char *list, int (*fn)(const char *opt, void *arg),
		  void *arg)
{
	char *copy = strdup(list), *p, *next;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	for (p = copy; p && !rc; p = next) {
		next = strchr(p, ',');
		if (next)
			*next++ = 0;
		if (*p)
			rc = fn(p, arg);
	}
	free(copy);
	return rc;
}

struct parse_arg {
	struct cli_store_opts *so;
	struct buf *rest;
};

static int parse_cb(const char *p, void *arg)
{
	struct parse_arg *a = arg;
	int rc = cli_store_opt(a->so, p);

	if (rc == -ENOENT && a->rest) {
		rc = buf_appendf(a->rest, "%s%s", a->rest->len ? "," : "", p);
	} else if (rc == -ENOENT) {
		cli_error("unknown option '%s' (store options: "
			  "endpoint=, region=, path_style, "
			  "virtual_host, credentials=, ca_bundle=, "
			  "no_verify_tls, sign_payload, "
			  "connections=, part_size=, passphrase_file=)", p);
	} else if (rc) {
		cli_error("invalid value in option '%s'", p);
	}
	return rc;
}

int cli_store_opts_parse(struct cli_store_opts *so, const char *list,
			 struct buf *rest)
{
	struct parse_arg a = { so, rest };

	return cli_opts_each(list, parse_cb, &a);
}

void cli_store_opts_free(struct cli_store_opts *so)
{
	free(so->endpoint);
	free(so->region);
	free(so->credentials);
	free(so->ca_bundle);
	free(so->passphrase_file);
	memset(so, 0, sizeof(*so));
}

int cli_test_store_wrap(struct store **s)
{
	const char *down = getenv("METAFUSE_TEST_STORE_DOWN_FILE");
	const char *delay = getenv("METAFUSE_TEST_STORE_READ_DELAY_US");
	struct store *w;

	if (!down && !delay && !getenv("METAFUSE_TEST_STORE_COUNTS"))
		return 0;
	if (store_fault_wrap(*s, &w)) {
		cli_error("cannot set up the test fault wrapper");
		return -1;
	}
	*s = w; /* the caller closes it, and with it the store */
	if (down && store_fault_down_while(w, down)) {
		cli_error("cannot set up the test fault wrapper");
		return -1;
	}
	if (delay)
		store_fault_read_delay(w, (unsigned)strtoul(delay, NULL, 10));
	return 0;
}

void cli_test_store_report(struct store *s)
{
	struct store_fault_counts n;

	if (!s || !getenv("METAFUSE_TEST_STORE_COUNTS"))
		return;
	s = sealed_store_inner(s); /* the test wrapper is under the seal */
	store_fault_get_counts(s, &n);
	fprintf(stderr, "store calls: %" PRIu64 " get, %" PRIu64 " put, %"
		PRIu64 " del, %" PRIu64 " list, %" PRIu64 " head\n",
		n.calls[1], n.calls[0], n.calls[2], n.calls[3], n.calls[4]);
}
