/*
 * store_opts.h - the -o options that say how to reach a remote store,
 * shared by mkfs, mount, fsck and gc:
 *
 *   endpoint=URL  region=NAME  path_style  virtual_host
 *   credentials=FILE  ca_bundle=FILE  no_verify_tls  sign_payload
 *   connections=N  part_size=SIZE
 *   passphrase_file=FILE (an encrypted volume's passphrase: not the
 *   store's, but every command that opens a volume takes it here)
 *
 * The strings of the resulting struct store_options point into the
 * struct cli_store_opts, which owns them until cli_store_opts_free().
 */
#ifndef METAFUSE_CLI_STORE_OPTS_H
#define METAFUSE_CLI_STORE_OPTS_H

#include "util/compat.h"

#include "store/store.h"

struct cli_store_opts {
	struct store_options o; /* pass &x.o to store_open_opts() */
	char *endpoint;
	char *region;
	char *credentials;
	char *ca_bundle;
	char *passphrase_file; /* passphrase_file=: cli/passphrase.h */
};

/*
 * If opt ("key" or "key=value") is one of the store options, take it and
 * return 0; -ENOENT when it is not one; -EINVAL for a bad value; -ENOMEM.
 */
int cli_store_opt(struct cli_store_opts *so, const char *opt);

/* Call fn on each non-empty item of a comma-separated option list, until
 * one returns non-zero (returned). */
int cli_opts_each(const char *list, int (*fn)(const char *opt, void *arg),
		  void *arg);

/*
 * Take the store options out of a comma-separated list; the others are
 * appended to rest (comma-separated) when rest is not NULL, else refused
 * with a message.  0, or -errno after printing a message.
 */
int cli_store_opts_parse(struct cli_store_opts *so, const char *list,
			 struct buf *rest);

void cli_store_opts_free(struct cli_store_opts *so);

/* For help texts. */
#define CLI_STORE_OPTS_HELP                                                  \
	"store options (S3):\n"                                              \
	"  endpoint=URL           S3 endpoint (default AWS_ENDPOINT_URL, "    \
	"else AWS)\n"                                                        \
	"  region=NAME            region (default AWS_REGION, else "          \
	"us-east-1)\n"                                                       \
	"  path_style             path-style bucket addressing (default for " \
	"IP\n"                                                               \
	"                         addresses and localhost)\n"                \
	"  virtual_host           virtual-host addressing\n"                 \
	"  credentials=FILE       AWS credentials file (mode 600)\n"         \
	"  ca_bundle=FILE         trust the CAs in this PEM file instead of " \
	"the\n"                                                              \
	"                         system's (default AWS_CA_BUNDLE, else the\n" \
	"                         profile's ca_bundle)\n"                     \
	"  no_verify_tls          accept any TLS certificate (insecure)\n"   \
	"  sign_payload           hash every request body into its "         \
	"signature\n"                                                        \
	"                         (default: only over plain HTTP to a "      \
	"host\n"                                                             \
	"                         that is not loopback)\n"                   \
	"  connections=N          parallel connections (default 16)\n"       \
	"  part_size=SIZE         multipart uploads above SIZE (default "     \
	"16M)\n"                                                            \
	"encrypted volumes:\n"                                              \
	"  passphrase_file=FILE   read the passphrase from FILE (mode 600;\n" \
	"                         default METAFUSE_PASSPHRASE, else asked on\n" \
	"                         the terminal)\n"

/*
 * For the test suite and bench/: wrap *s in the fault wrapper when the
 * environment asks for it, METAFUSE_TEST_STORE_DOWN_FILE=PATH (every call
 * fails while PATH exists), METAFUSE_TEST_STORE_READ_DELAY_US=N (every
 * get, head and list first waits N microseconds, as on a distant
 * service) or METAFUSE_TEST_STORE_COUNTS=1 (cli_test_store_report()
 * prints the calls made).  0, or -1 with a message.
 */
int cli_test_store_wrap(struct store **s);
/* With METAFUSE_TEST_STORE_COUNTS=1, one line on stderr before s closes:
 * "store calls: N get, N put, N del, N list, N head". */
void cli_test_store_report(struct store *s);

#endif
