/*
 * cmd_mount.c - `metafuse mount`: from the command line to a daemon
 * serving the volume (daemon.c), and back to the caller with its verdict.
 *
 * Order (each step can fail with one clear line on stderr):
 *   parse options (parse_args) -> check the mountpoint -> open the store,
 *   read the volume descriptor, choose the cache directory (open_volume)
 *   -> fork unless -f (fork_daemon): the parent waits on a pipe for the
 *   child's verdict and exits with it -> the child, or the foreground
 *   process, serves the mount (daemon_serve()) until it is unmounted.
 *
 * Exit status: 0 mounted (with -f: unmounted clean), 1 failed, 2 wrong
 * operands.  Without -f the command returns once the mount answers, so a
 * script can use the mountpoint at once.
 */
#include "util/compat.h"

#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blob/blob.h"
#include "cli/cli.h"
#include "cli/mount_int.h"
#include "cli/store_opts.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"
#include "volume/volume.h"

/* ---- options ---- */

static const char *const fuse_passthrough[] = {
	"allow_other", "allow_root", "auto_unmount", "nodev", "dev",
	"nosuid", "suid", "noexec", "exec", "noatime", "atime", "relatime",
	"sync", "async", "dirsync", "rw",
};

static const char mount_help[] =
	"usage: metafuse mount [-f] [--force] [-o OPT[,OPT...]] [STORE] "
	"MOUNTPOINT\n"
	"\n"
	"Mounts the volume in STORE (a directory, file:///path or\n"
	"s3://BUCKET[/PREFIX]; default: $XDG_DATA_HOME/metafuse/default,\n"
	"created on first use) at MOUNTPOINT.\n"
	"Returns once the mount answers; the daemon logs to "
	"CACHE_DIR/metafuse.log.\n"
	"\n"
	"  -f             stay in the foreground, log to stderr\n"
	"  --force        take the volume's lease even if another mount "
	"holds it\n"
	"options:\n"
	"  cache_dir=DIR          local cache (default "
	"$XDG_CACHE_HOME/metafuse/VOLUME-ID)\n"
	"  cache_size=SIZE        disk the cache may use (default 4G)\n"
	"  max_dirty=SIZE         upload at once past this much unsent data "
	"(default 256M;\n"
	"                         blocks written whole, past a 32nd of it)\n"
	"  writeback_delay=SECS   upload written data after this delay "
	"(default 5)\n"
	"  journal_interval=SECS  how often changed metadata goes to the "
	"store (default 5)\n"
	"  inline_max=SIZE  files up to SIZE live in the metadata, not in "
	"blocks\n"
	"                   (default 4K; 0: never)\n"
	"  checkpoint_interval=SECS  full metadata checkpoint period "
	"(default 300)\n"
	"  upload_threads=N       parallel uploads (default 4)\n"
	"  ro                     read-only\n"
	"  writeback_cache        let the kernel cache writes: faster small\n"
	"                         writes, but a crash of the daemon loses what\n"
	"                         the kernel held, and ENOSPC shows at fsync\n"
	"  debug                  verbose log\n"
	"  allow_other, allow_root, auto_unmount, nodev, dev, nosuid, suid,\n"
	"  noexec, exec, noatime, atime, relatime, sync, async, dirsync, rw:\n"
	"                         passed to FUSE\n"
	"SIZE takes K, M, G, T suffixes.\n" CLI_STORE_OPTS_HELP;

enum { OPT_FORCE = 256 };

static const struct option mount_longopts[] = {
	{ "force", no_argument, NULL, OPT_FORCE },
	{ NULL, 0, NULL, 0 },
};

static const struct cli_cmd mount_cmd = {
	.name = "mount",
	.help = mount_help,
	.usage = "usage: metafuse mount [-f] [-o OPT[,OPT...]] [STORE] "
		 "MOUNTPOINT",
	.shortopts = "fo:",
	.longopts = mount_longopts,
	.no_arg_msg = "-o needs an option list",
	.min_operands = 1,
	.max_operands = 2,
	.flag_status = 1,
};

static void list_valid_options(void)
{
	size_t i;

	fprintf(stderr, "valid options: cache_dir=, cache_size=, max_dirty=, "
		"writeback_delay=, journal_interval=, checkpoint_interval=, "
		"upload_threads=, inline_max=, ro, "
		"debug, writeback_cache, default_permissions, endpoint=, "
		"region=, path_style, virtual_host, credentials=, "
		"ca_bundle=, no_verify_tls, sign_payload, connections=, "
		"part_size=");
	fprintf(stderr, ", price_storage_gb_month=, price_put_1k=, "
		"price_get_1k=, price_egress_gb=, price_file=");
	for (i = 0; i < ARRAY_SIZE(fuse_passthrough); i++)
		fprintf(stderr, ", %s", fuse_passthrough[i]);
	fprintf(stderr, "\n");
}

static int parse_one_opt(struct mount_opts *o, const char *opt)
{
	const char *eq = strchr(opt, '=');
	size_t klen = eq ? (size_t)(eq - opt) : strlen(opt);
	const char *val = eq ? eq + 1 : NULL;
	size_t i;
	int price_rc;

#define KEY(k) (klen == strlen(k) && !strncmp(opt, k, klen))
	if (KEY("cache_dir") && val && *val) {
		free(o->cache_dir);
		o->cache_dir = strdup(val);
		return o->cache_dir ? 0 : -ENOMEM;
	}
	if (KEY("cache_size") && val)
		return parse_size(val, &o->cache_size);
	if (KEY("max_dirty") && val)
		return parse_size(val, &o->max_dirty);
	if (KEY("writeback_delay") && val)
		return parse_seconds(val, &o->writeback_delay_ns);
	if (KEY("inline_max") && val) {
		int rc = parse_size(val, &o->inline_max);

		return !rc && o->inline_max > (1U << 20) ? -EINVAL : rc;
	}
	if (KEY("journal_interval") && val) {
		int rc = parse_seconds(val, &o->journal_interval_ns);

		if (!rc && o->journal_interval_ns < 100000000ULL)
			rc = -EINVAL;
		return rc;
	}
	if (KEY("checkpoint_interval") && val) {
		int rc = parse_seconds(val, &o->checkpoint_interval_ns);

		if (!rc && o->checkpoint_interval_ns < 100000000ULL)
			rc = -EINVAL;
		return rc;
	}
	if (KEY("upload_threads") && val) {
		char *end;
		unsigned long n = strtoul(val, &end, 10);

		if (*end || n < 1 || n > 64)
			return -EINVAL;
		o->upload_threads = (unsigned)n;
		return 0;
	}
	if (KEY("ro") && !val) {
		o->read_only = true;
		return 0;
	}
	if (KEY("default_permissions") && !val)
		return 0; /* always on */
	if (KEY("writeback_cache") && !val) {
		o->writeback_cache = true;
		return 0;
	}
	if (KEY("debug") && !val) {
		o->debug = true;
		return 0;
	}
	for (i = 0; i < ARRAY_SIZE(fuse_passthrough); i++) {
		if (KEY(fuse_passthrough[i]) && !val) {
			if (o->fuse_opts.len && buf_appends(&o->fuse_opts, ","))
				return -ENOMEM;
			return buf_appends(&o->fuse_opts, fuse_passthrough[i]);
		}
	}
#undef KEY
	price_rc = mount_price_opt(&o->prices, opt);
	if (price_rc != -ENOENT)
		return price_rc;
	return cli_store_opt(&o->store, opt);
}

static int parse_opt_cb(const char *p, void *arg)
{
	int rc = parse_one_opt(arg, p);

	if (rc == -ENOENT) {
		cli_error("unknown mount option '%s'", p);
		list_valid_options();
	} else if (rc && rc != -ECANCELED) { /* ECANCELED: said already */
		cli_error("invalid value in mount option '%s'", p);
	}
	return rc;
}

static int parse_opts(struct mount_opts *o, const char *list)
{
	return cli_opts_each(list, parse_opt_cb, o);
}

/* ---- the store and the cache directory ---- */

/* $XDG_CACHE_HOME/metafuse/VOLUME-ID, or ~/.cache/metafuse/VOLUME-ID. */
static int default_cache_dir(const char *volume_id, struct buf *out)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");

	if (xdg && *xdg)
		return buf_appendf(out, "%s/metafuse/%s", xdg, volume_id);
	if (!home || !*home)
		return -ENOENT;
	return buf_appendf(out, "%s/.cache/metafuse/%s", home, volume_id);
}

/* Create the default volume on first use. */
static int open_default_store(struct store **st)
{
	struct buf path = BUF_INIT, err = BUF_INIT;
	struct volume v;
	int rc = cli_default_store(&path);

	if (rc) {
		cli_error("no STORE given and neither XDG_DATA_HOME nor HOME "
			  "is set");
		goto out;
	}
	rc = store_open(buf_str(&path), 1, st, &err);
	if (rc) {
		cli_error("%s", buf_str(&err));
		goto out;
	}
	if (volume_load(*st, &v, &err) == -ENOENT) {
		buf_reset(&err);
		rc = volume_create(*st, (*st)->block_size,
				   blob_names_default(), &v, &err);
		if (rc) {
			cli_error("%s", buf_str(&err));
			store_close(*st);
			goto out;
		}
		fprintf(stderr, "metafuse: created the default volume in %s\n",
			buf_str(&path));
	}
out:
	buf_free(&path);
	buf_free(&err);
	return rc;
}

/* ---- the command ---- */

/* Read argv into o (the operands stay in a); false when the command is to
 * exit at once with *status (help, or a message printed). */
static bool parse_args(struct cli_args *a, int argc, char **argv,
		       struct mount_opts *o, int *status)
{
	int c;

	cli_args_init(a, &mount_cmd, argc, argv);
	while ((c = cli_getopt(a)) > 0) {
		if (c == 'f') {
			o->foreground = true;
		} else if (c == OPT_FORCE) {
			o->force = true;
		} else if (c == 'o' && parse_opts(o, optarg)) {
			*status = 1;
			return false;
		}
	}
	if (c < 0) {
		*status = a->status;
		return false;
	}
	return true;
}

/* path: a directory, not a mount point yet; its real path to real_mp
 * (PATH_MAX bytes).  0 or -1 (printed). */
static int check_mountpoint(const char *path, char *real_mp)
{
	struct stat st;

	if (!realpath(path, real_mp) || stat(real_mp, &st)) {
		cli_error("mountpoint %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		cli_error("mountpoint %s is not a directory", path);
		return -1;
	}
	if (cli_is_mountpoint(real_mp)) {
		cli_error("%s is already a mount point", real_mp);
		return -1;
	}
	return 0;
}

/*
 * The store at loc (NULL: the default volume, created on first use) and
 * its volume, into mt->store, vol and blob; the cache directory into cdir
 * (mt->cache_dir points there).  0 or -1 (printed).  mt->store is for the
 * caller to close, after a failure too (NULL when none is open).
 */
static int open_volume(struct mounted *mt, const char *loc, struct buf *cdir)
{
	struct mount_opts *o = mt->o;
	struct buf err = BUF_INIT;
	int rc = -1;

	if (loc ? store_open_opts(loc, 0, &o->store.o, &mt->store, &err) :
		  open_default_store(&mt->store)) {
		if (loc)
			cli_error("%s", buf_str(&err));
		mt->store = NULL;
		goto out;
	}
	if (cli_test_store_wrap(&mt->store))
		goto out;
	if (blob_global_init()) {
		cli_error("cannot initialise libsodium");
		goto out;
	}
	buf_reset(&err);
	if (volume_load(mt->store, &mt->vol, &err)) {
		cli_error("%s", buf_str(&err));
		goto out;
	}
	memcpy(mt->blob.hash_key, mt->vol.hash_key, BLOB_KEY_BYTES);
	mt->blob.names = mt->vol.names;
	mt->blob.zstd_level = 1;
	if (o->cache_dir ? buf_appends(cdir, o->cache_dir) :
			   default_cache_dir(mt->vol.id, cdir)) {
		cli_error("no cache_dir given and neither XDG_CACHE_HOME nor "
			  "HOME is set");
		goto out;
	}
	mt->cache_dir = (char *)cdir->data;
	if (o->max_dirty > o->cache_size)
		o->max_dirty = o->cache_size;
	rc = 0;
out:
	buf_free(&err);
	return rc;
}

/* The parent: the child's verdict on fd, as an exit status (1 also when
 * the child died without one). */
static int wait_for_verdict(pid_t pid, int fd)
{
	char verdict = 1;
	ssize_t n;

	do {
		n = read(fd, &verdict, 1);
	} while (n < 0 && errno == EINTR);
	close(fd);
	if (n != 1) {
		int ws;

		waitpid(pid, &ws, 0);
		verdict = 1;
	}
	return verdict ? 1 : 0;
}

/*
 * Unless -f, fork: 0 in the child, which is to serve and tell its verdict
 * on mt->ready_fd; 1 in the parent, which has it in *status; -1 (printed)
 * when there is no child.  With -f: 0, and nobody waits.
 */
static int fork_daemon(struct mounted *mt, int *status)
{
	int pipefd[2];
	pid_t pid;

	if (mt->o->foreground)
		return 0;
	if (pipe(pipefd)) {
		cli_error("pipe: %s", strerror(errno));
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		cli_error("fork: %s", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		close(pipefd[1]);
		*status = wait_for_verdict(pid, pipefd[0]);
		return 1;
	}
	close(pipefd[0]);
	mt->ready_fd = pipefd[1];
	return 0;
}

int cmd_mount(int argc, char **argv)
{
	struct mount_opts o = {
		.cache_size = 4ULL << 30,
		.max_dirty = 256ULL << 20,
		.writeback_delay_ns = 5ULL * 1000000000ULL,
		.checkpoint_interval_ns = 300ULL * 1000000000ULL,
		.journal_interval_ns = 5ULL * 1000000000ULL,
		.inline_max = 4096,
		.upload_threads = 4,
	};
	struct mounted mt;
	struct cli_args a;
	char real_mp[PATH_MAX];
	struct buf cdir = BUF_INIT;
	int rc, status = 1;

	memset(&mt, 0, sizeof(mt));
	mt.ready_fd = -1;
	mt.o = &o;
	if (!parse_args(&a, argc, argv, &o, &status))
		goto out;
	if (o.debug)
		log_set_level(LOG_DEBUG);
	if (check_mountpoint(a.operand[a.noperands - 1], real_mp))
		goto out;
	if (open_volume(&mt, a.noperands == 2 ? a.operand[0] : NULL, &cdir))
		goto out_store;
	if (fork_daemon(&mt, &status))
		goto out_store; /* the parent, or no child */
	rc = daemon_serve(&mt, real_mp);
	daemon_tell_parent(&mt, rc ? 1 : 0);
	status = rc ? 1 : 0;
out_store:
	store_close(mt.store);
out:
	free(o.cache_dir);
	buf_free(&o.fuse_opts);
	cli_store_opts_free(&o.store);
	buf_free(&cdir);
	return status;
}
