/*
 * cmd_mount.c - `metafuse mount`: from the command line to a daemon
 * serving the volume (daemon.c), and back to the caller with its verdict.
 *
 * Order (each step can fail with one clear line on stderr):
 *   parse options (parse_args) -> check the mountpoint -> open the store,
 *   read the volume descriptor, unlock an encrypted one (its passphrase
 *   asked here, before the fork, while the terminal is ours) and seal
 *   the store, choose the cache directory (open_volume)
 *   -> fork unless -f (fork_daemon): the parent waits on a pipe for the
 *   child's verdict and exits with it -> the child, or the foreground
 *   process, serves the mount (daemon_serve()) until it is unmounted.
 *
 * Exit status: 0 mounted (with -f: unmounted clean), 1 failed, 2 wrong
 * operands.  Without -f the command returns once the mount answers, so a
 * script can use the mountpoint at once.
 *
 * The same code serves mount(8) (mount_helper.c): "metafuse STORE
 * MOUNTPOINT -o OPTS" (what mount.fuse3 runs) and /sbin/mount.metafuse
 * reach mount_volume() with options parsed here.  So that an fstab line
 * works, the options that belong to mount(8) and systemd are accepted
 * and ignored (fstab_opt_ignored(), fstab.c), and the mount's source
 * in the mount table is STORE (fsname=), which is how libmount pairs
 * the mount with its utab entry.
 *
 * Invariants:
 *   1. Every bad option is one line on stderr and no mount.
 *   2. Only the parent that heard the daemon's "mounted" records the
 *      mount in utab (o->utab_opts); the daemon never does.
 */
#include "util/compat.h"

#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blob/blob.h"
#include "cli/cli.h"
#include "cli/fstab.h"
#include "cli/mount_int.h"
#include "cli/passphrase.h"
#include "cli/past.h"
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
	"  --at TIME      mount the volume as it was at TIME, read-only: ISO "
	"8601\n"
	"                 (2026-12-06T10:15:00Z, or local time without a "
	"zone) or\n"
	"                 before now (-10m, -2h, -1d); the state after the "
	"newest\n"
	"                 journal entry written at or before it\n"
	"  --snapshot NAME  mount the snapshot NAME, read-only\n"
	"  --force        take the volume's lease even if another mount "
	"holds it,\n"
	"                 and mount a store older than this cache last saw "
	"it\n"
	"                 (rolled back)\n"
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
	"  at=TIME, snapshot=NAME the same as --at, --snapshot (for fstab)\n"
	"  follow                 with ro: a follower, showing what another\n"
	"                         mount of the volume (the writer) makes durable\n"
	"  follow_interval=SECS   how often a follower reads the journal\n"
	"                         (default 5; fractions allowed)\n"
	"  writeback_cache        let the kernel cache writes: faster small\n"
	"                         writes, but a crash of the daemon loses what\n"
	"                         the kernel held, and ENOSPC shows at fsync\n"
	"  debug                  verbose log\n"
	"  force                  the same as --force\n"
	"  price_storage_gb_month=USD, price_put_1k=USD, price_get_1k=USD,\n"
	"  price_egress_gb=USD    prices for `metafuse stats` (default AWS S3\n"
	"                         Standard, us-east-1)\n"
	"  price_file=FILE        the same as key=value lines\n"
	"  allow_other, allow_root, auto_unmount, nodev, dev, nosuid, suid,\n"
	"  noexec, exec, noatime, atime, relatime, sync, async, dirsync, rw:\n"
	"                         passed to FUSE\n"
	"  defaults, auto, noauto, nofail, _netdev, user, users, nouser, owner,\n"
	"  group, comment=, helper=, x-*:  mount(8)'s and systemd's (fstab),\n"
	"                         ignored\n"
	"SIZE takes K, M, G, T suffixes.\n" CLI_STORE_OPTS_HELP;

enum { OPT_FORCE = 256, OPT_AT, OPT_SNAPSHOT };

static const struct option mount_longopts[] = {
	{ "force", no_argument, NULL, OPT_FORCE },
	{ "at", required_argument, NULL, OPT_AT },
	{ "snapshot", required_argument, NULL, OPT_SNAPSHOT },
	{ NULL, 0, NULL, 0 },
};

const struct cli_cmd cli_cmd_mount = {
	.name = "mount",
	.summary = "mount a volume",
	.run = cmd_mount,
	.help = mount_help,
	.usage = "usage: metafuse mount [-f] [--at TIME | --snapshot NAME] "
		 "[-o OPT[,OPT...]] [STORE] MOUNTPOINT",
	.shortopts = "fo:",
	.longopts = mount_longopts,
	.no_arg_msg = "-o needs an option list",
	.min_operands = 1,
	.max_operands = 2,
	.flag_status = 1,
};

/* The one line of an unknown option: the option and every valid one. */
static void unknown_option(const char *opt)
{
	struct buf line = BUF_INIT;
	size_t i;

	buf_appends(&line, "cache_dir=, cache_size=, max_dirty=, "
		    "writeback_delay=, journal_interval=, "
		    "checkpoint_interval=, upload_threads=, inline_max=, ro, "
		    "follow, follow_interval=, "
		    "debug, writeback_cache, default_permissions, endpoint=, "
		    "region=, path_style, virtual_host, credentials=, "
		    "ca_bundle=, no_verify_tls, sign_payload, connections=, "
		    "part_size=, passphrase_file=, force, at=, snapshot=, "
		    "price_storage_gb_month=, price_put_1k=, "
		    "price_get_1k=, price_egress_gb=, price_file=");
	for (i = 0; i < ARRAY_SIZE(fuse_passthrough); i++)
		buf_appendf(&line, ", %s", fuse_passthrough[i]);
	cli_error("unknown mount option '%s' (valid: %s; and mount(8)'s "
		  "defaults, noauto, nofail, _netdev, x-*...)", opt,
		  buf_str(&line));
	buf_free(&line);
}

static int parse_one_opt(struct mount_opts *o, const char *opt)
{
	const char *eq = strchr(opt, '=');
	size_t klen = eq ? (size_t)(eq - opt) : strlen(opt);
	const char *val = eq ? eq + 1 : NULL;
	size_t i;
	int price_rc;

	if (fstab_opt_ignored(opt))
		return 0;
#define KEY(k) (klen == strlen(k) && !strncmp(opt, k, klen))
	if (KEY("cache_dir") && val && *val) {
		free(o->cache_dir);
		o->cache_dir = strdup(val);
		return o->cache_dir ? 0 : -ENOMEM;
	}
	if (KEY("cache_size") && val)
		return parse_size(val, &o->cache_size);
	if ((KEY("at") || KEY("snapshot")) && val && *val) {
		char **dst = KEY("at") ? &o->at : &o->snapshot;

		free(*dst);
		*dst = strdup(val);
		return *dst ? 0 : -ENOMEM;
	}
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
	if (KEY("follow") && !val) {
		o->follow = true;
		return 0;
	}
	if (KEY("follow_interval") && val) {
		int rc = parse_seconds(val, &o->follow_interval_ns);

		/* 10 ms to a day: a round is a LIST or two */
		if (!rc && (o->follow_interval_ns < 10000000ULL ||
			    o->follow_interval_ns > 86400ULL * 1000000000ULL))
			rc = -EINVAL;
		return rc;
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
	if (KEY("force") && !val) {
		o->force = true;
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

	if (rc == -ENOENT && ((struct mount_opts *)arg)->sloppy) {
		cli_error("ignoring unknown mount option '%s' (mount -s)", p);
		rc = 0;
	} else if (rc == -ENOENT) {
		unknown_option(p);
	} else if (rc && rc != -ECANCELED) { /* ECANCELED: said already */
		cli_error("invalid value in mount option '%s'", p);
	}
	return rc;
}

int mount_opts_parse(struct mount_opts *o, const char *list)
{
	return cli_opts_each(list, parse_opt_cb, o) ? -1 : 0;
}

/* ---- the store and the cache directory ---- */

/*
 * $XDG_CACHE_HOME/metafuse/VOLUME-ID, or ~/.cache/metafuse/VOLUME-ID.
 * mount(8) and systemd run us without HOME: the home directory in the
 * password database then, the same directory as from a login shell, so
 * that a mount from fstab finds what a crashed manual mount left.
 */
static int default_cache_dir(const char *volume_id, struct buf *out)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	struct passwd *pw;

	if (xdg && *xdg)
		return buf_appendf(out, "%s/metafuse/%s", xdg, volume_id);
	if (!home || !*home) {
		pw = getpwuid(geteuid());
		home = pw ? pw->pw_dir : NULL;
	}
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
		       struct mount_opts *o, struct buf *lists, int *status)
{
	int c;

	cli_args_init(a, &cli_cmd_mount, argc, argv);
	while ((c = cli_getopt(a)) > 0) {
		if (c == 'f') {
			o->foreground = true;
		} else if (c == OPT_FORCE) {
			o->force = true;
		} else if (c == OPT_AT || c == OPT_SNAPSHOT) {
			char **dst = c == OPT_AT ? &o->at : &o->snapshot;

			free(*dst);
			*dst = strdup(optarg);
		} else if (c == 'o' && mount_opts_parse(o, optarg)) {
			*status = 1;
			return false;
		}
		if (c == 'o' && lists &&
		    buf_appendf(lists, "%s%s", lists->len ? "," : "", optarg)) {
			cli_error("out of memory");
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
 * A past mount (past.h): one of --at and --snapshot, TIME parsed now (a
 * relative one counts from the command), read-only.  0 or -1 (printed).
 */
static int check_past(struct mount_opts *o)
{
	struct buf err = BUF_INIT;
	int rc = 0;

	if (!past_wanted(o))
		return 0;
	if (o->at && o->snapshot) {
		cli_error("--at and --snapshot cannot be given together");
		return -1;
	}
	if (o->at && past_parse_time(o->at, (int64_t)now_real_ns(), &o->at_ns,
				     &err)) {
		cli_error("--at: %s", buf_str(&err));
		rc = -1;
	}
	o->read_only = true;
	buf_free(&err);
	return rc;
}

/*
 * A past mount without cache_dir= gets a fresh one beside the volume's
 * (VOLUME-ID.past-XXXXXX), removed at its end: the writer's cache, which
 * a mount of the same volume here may hold, is never shared.
 */
static int past_cache_dir(struct mounted *mt, struct buf *cdir)
{
	char *slash;

	if (buf_appends(cdir, ".past-XXXXXX"))
		return -ENOMEM;
	slash = strrchr((char *)cdir->data, '/');
	*slash = 0;
	if (mkdir_p((char *)cdir->data, 0700))
		return -EIO;
	*slash = '/';
	if (!mkdtemp((char *)cdir->data))
		return -errno;
	mt->cache_dir_tmp = true;
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
	/* an encrypted volume: from here on the store seals its objects */
	if (cli_volume_unlock(&mt->store, &mt->vol, o->store.passphrase_file))
		goto out;
	memcpy(mt->blob.hash_key, mt->vol.hash_key, BLOB_KEY_BYTES);
	mt->blob.names = mt->vol.names;
	mt->blob.zstd_level = 1;
	if (o->cache_dir ? buf_appends(cdir, o->cache_dir) :
			   default_cache_dir(mt->vol.id, cdir)) {
		cli_error("no cache_dir given, and neither XDG_CACHE_HOME nor "
			  "HOME nor a home directory for uid %u",
			  (unsigned)geteuid());
		goto out;
	}
	if (!o->cache_dir && past_wanted(o) && past_cache_dir(mt, cdir)) {
		cli_error("cannot create a cache directory for the past mount "
			  "beside %s", buf_str(cdir));
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

/* The mount's source in the mount table: STORE as given (a relative
 * path made absolute, so that commands run elsewhere, such as `metafuse
 * passwd MOUNTPOINT`, find the same store), or the default volume's path
 * (libfuse reads '\\' and ',' escaped). */
static int add_fsname(struct mount_opts *o, const char *store)
{
	struct buf def = BUF_INIT;
	char abs[PATH_MAX];
	int rc = 0;

	if (!store) {
		rc = cli_default_store(&def);
		store = buf_str(&def);
	} else if (store[0] != '/' && !strstr(store, "://") &&
		   realpath(store, abs)) {
		store = abs;
	}
	if (!rc && o->fuse_opts.len)
		rc = buf_appends(&o->fuse_opts, ",");
	if (!rc)
		rc = buf_appends(&o->fuse_opts, "fsname=");
	if (!rc)
		rc = fstab_escape_fsname(store, &o->fuse_opts);
	buf_free(&def);
	return rc;
}

/* follow and follow_interval= make sense only together, and follow only
 * read-only: the writer holds the lease.  0 or -1 (printed). */
static int check_follow_opts(struct mount_opts *o)
{
	if (o->follow && past_wanted(o)) {
		cli_error("mount option 'follow' cannot be given with --at or "
			  "--snapshot: a past state does not change");
		return -1;
	}
	if (o->follow && !o->read_only) {
		cli_error("mount option 'follow' needs 'ro': a follower is "
			  "read-only (-o ro,follow)");
		return -1;
	}
	if (o->follow_interval_ns && !o->follow) {
		cli_error("mount option 'follow_interval=' needs 'follow' "
			  "(-o ro,follow,follow_interval=SECS)");
		return -1;
	}
	if (!o->follow_interval_ns)
		o->follow_interval_ns = 5ULL * 1000000000ULL;
	return 0;
}

void mount_opts_init(struct mount_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->cache_size = 4ULL << 30;
	o->max_dirty = 256ULL << 20;
	o->writeback_delay_ns = 5ULL * 1000000000ULL;
	o->checkpoint_interval_ns = 300ULL * 1000000000ULL;
	o->journal_interval_ns = 5ULL * 1000000000ULL;
	o->inline_max = 4096;
	o->upload_threads = 4;
}

void mount_opts_free(struct mount_opts *o)
{
	free(o->cache_dir);
	free(o->at);
	free(o->snapshot);
	buf_free(&o->fuse_opts);
	cli_store_opts_free(&o->store);
}

int mount_volume(struct mount_opts *o, const char *store,
		 const char *mountpoint)
{
	struct mounted mt;
	char real_mp[PATH_MAX];
	struct buf cdir = BUF_INIT;
	int rc, status = 1;

	memset(&mt, 0, sizeof(mt));
	mt.ready_fd = -1;
	mt.o = o;
	if (o->debug)
		log_set_level(LOG_DEBUG);
	if (check_past(o) || check_follow_opts(o))
		goto out;
	if (check_mountpoint(mountpoint, real_mp))
		goto out;
	if (add_fsname(o, store)) {
		cli_error("out of memory");
		goto out;
	}
	if (open_volume(&mt, store, &cdir))
		goto out_store;
	if (fork_daemon(&mt, &status)) {
		/* the parent (invariant 2), or no child */
		if (status == 0 && o->utab_opts && store)
			fstab_utab_add(store, real_mp, o->utab_opts);
		goto out_store;
	}
	rc = daemon_serve(&mt, real_mp);
	daemon_tell_parent(&mt, rc ? 1 : 0);
	status = rc ? 1 : 0;
out_store:
	store_close(mt.store);
	volume_wipe(&mt.vol);
	explicit_bzero(mt.blob.hash_key, sizeof(mt.blob.hash_key));
out:
	buf_free(&cdir);
	return status;
}

/* `metafuse mount ...`, or with lists, the form mount.fuse3 runs
 * (`metafuse STORE MOUNTPOINT -o OPTS`), which mount(8) made. */
static int mount_command(int argc, char **argv, struct buf *lists)
{
	struct mount_opts o;
	struct cli_args a;
	int status = 1;

	mount_opts_init(&o);
	if (parse_args(&a, argc, argv, &o, lists, &status)) {
		if (lists && a.noperands == 2)
			o.utab_opts = buf_str(lists);
		status = mount_volume(&o, a.noperands == 2 ? a.operand[0] :
							     NULL,
				      a.operand[a.noperands - 1]);
	}
	mount_opts_free(&o);
	return status;
}

int cmd_mount(int argc, char **argv)
{
	return mount_command(argc, argv, NULL);
}

int cmd_mount_fuse3(int argc, char **argv)
{
	struct buf lists = BUF_INIT;
	int status = mount_command(argc, argv, &lists);

	buf_free(&lists);
	return status;
}
