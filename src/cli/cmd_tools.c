/*
 * cmd_tools.c - `metafuse mkfs` and `metafuse umount`.
 *
 * mkfs writes a new volume's descriptor (volume_create(): its id, block
 * size, block names and secret) into an empty store; it refuses a store
 * that already holds a volume, before it asks for anything.  With
 * --encrypt the descriptor holds a new master key in key slot 0 under
 * the passphrase (volume_create_encrypted(); cli/passphrase.h), and the
 * Argon2id limits measured here.
 *
 * umount is more than fusermount3 -u: the daemon still has to upload what
 * is dirty, checkpoint and release the lease after the kernel lets go, so
 * umount waits for the daemon (found through the registry file it wrote
 * for the mountpoint, daemon.c) to exit.  It follows the upload in the
 * daemon's log ("unmount: N KiB left to upload", about once a second,
 * and the newest warning): on a terminal as a progress line (bytes done
 * of the most ever left, the rate, the time left; util/progress.h), else
 * as a status line every 10 s.  umount_wait() is that, for `metafuse
 * umount` and for umount(8)'s helper /sbin/umount.metafuse
 * (mount_helper.c), which adds umount(8)'s -l, -f and -r.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blob/blob.h"
#include "cli/cli.h"
#include "cli/fstab.h"
#include "cli/passphrase.h"
#include "cli/store_opts.h"
#include "store/store.h"
#include "util/progress.h"
#include "util/util.h"
#include "volume/volume.h"

/* ---- mkfs ---- */

static const char mkfs_help[] =
	"usage: metafuse mkfs [--block-size SIZE] [--names HASH] "
	"[--create-bucket]\n"
	"                     [--encrypt [--passphrase-file FILE] "
	"[--cipher C]]\n"
	"                     [--history DURATION]\n"
	"                     [-o OPT[,OPT...]] STORE\n"
	"\n"
	"Creates an empty volume in STORE (a directory, created if missing, "
	"or\nfile:///path, or s3://BUCKET[/PREFIX] in an existing bucket; "
	"--create-bucket\ncreates the bucket too).  SIZE is a power of two "
	"from 4K to 64M (default 1M\nin a directory, 4M in S3, where each "
	"request costs a round trip and money).\n"
	"HASH names the data blocks, keyed with the volume's secret: "
	"hmac-sha256\n(the default where this CPU has SHA-256 instructions, "
	"which run it at about\ntwice BLAKE2b's speed; volume format 3) or "
	"blake2b (the default elsewhere;\nformat 2, which older metafuse "
	"reads too).  Fixed for the volume's life.\n"
	"--encrypt makes an encrypted volume (format 4): every object but "
	"the\ndescriptor is sealed, names and contents alike.  Its "
	"passphrase comes from\nMETAFUSE_PASSPHRASE, else from FILE (mode "
	"600; one trailing newline is\ndropped), else it is asked twice on "
	"the terminal; every command that\nopens the volume asks for it "
	"the same way (-o passphrase_file=FILE).\n"
	"'metafuse passwd' changes it and manages up to 8 key slots.  C is "
	"the\ncipher: aes-256-gcm (the default where the CPU has AES "
	"instructions) or\nxchacha20-poly1305.\n"
	"\n" CLI_STORE_OPTS_HELP;

enum {
	OPT_NAMES = 256,
	OPT_BLOCK_SIZE,
	OPT_CREATE_BUCKET,
	OPT_ENCRYPT,
	OPT_PASS_FILE,
	OPT_CIPHER,
	OPT_HISTORY,
};

static const struct option mkfs_longopts[] = {
	{ "names", required_argument, NULL, OPT_NAMES },
	{ "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
	{ "create-bucket", no_argument, NULL, OPT_CREATE_BUCKET },
	{ "encrypt", no_argument, NULL, OPT_ENCRYPT },
	{ "passphrase-file", required_argument, NULL, OPT_PASS_FILE },
	{ "cipher", required_argument, NULL, OPT_CIPHER },
	{ "history", required_argument, NULL, OPT_HISTORY },
	{ NULL, 0, NULL, 0 },
};

const struct cli_cmd cli_cmd_mkfs = {
	.name = "mkfs",
	.summary = "create a volume",
	.run = cmd_mkfs,
	.help = mkfs_help,
	.usage = "usage: metafuse mkfs [--block-size SIZE] [--names HASH] "
		 "[--create-bucket] [--encrypt [--passphrase-file FILE] "
		 "[--cipher C]] [--history DURATION] [-o OPT[,OPT...]] STORE",
	.shortopts = "o:",
	.longopts = mkfs_longopts,
	.min_operands = 1,
	.max_operands = 1,
	.flag_status = 2,
};

/* What mkfs --encrypt needs before it touches the store: the new
 * passphrase and the Argon2id limits.  0 or -1 (printed). */
static int mkfs_secret(const char *file, struct buf *pass,
		       struct crypt_kdf *kdf)
{
	struct cli_pass_src src = {
		.env = CLI_PASS_ENV,
		.file = file,
		.prompt = "Passphrase for the new volume: ",
		.twice = true,
		.hint = "--passphrase-file FILE (-o passphrase_file=FILE)",
	};

	if (cli_passphrase_read(&src, pass))
		return -1;
	return cli_kdf_limits(kdf);
}

/* A store that holds a volume already is refused before the passphrase
 * is asked (volume_create*() would refuse it too, but later). */
static int mkfs_refuse_volume(struct store *s)
{
	uint64_t size;

	if (store_head(s, "volume", &size) == 0) {
		cli_error("%s already holds a metafuse volume; refusing to "
			  "overwrite it", s->url);
		return -1;
	}
	return 0;
}

/* The new volume in s, encrypted when pass is not NULL. */
static int mkfs_create(struct store *s, uint32_t bs, enum blob_names names,
		       enum crypt_cipher cipher, const struct buf *pass,
		       const struct crypt_kdf *kdf, struct volume *v,
		       struct buf *err)
{
	if (!pass)
		return volume_create(s, bs, names, v, err);
	return volume_create_encrypted(s, bs, names, cipher,
				       (const char *)pass->data, pass->len,
				       kdf, v, err);
}

/* What mkfs printed: the volume, and an encrypted one's cipher and
 * Argon2id limits. */
static void mkfs_report(const struct volume *v, const struct store *s,
			uint64_t bs, const struct crypt_kdf *kdf)
{
	bool mib = kdf->mem >= (1 << 20);

	printf("created volume %s in %s (block size %" PRIu64 ")\n"
	       "block names: %s (volume format %u)\n", v->id, s->url, bs,
	       blob_names_label(v->names), v->format);
	if (v->encrypted)
		printf("encrypted: %s; key slot 0 (Argon2id, %" PRIu64
		       " pass%s over %" PRIu64 " %s)\n",
		       crypt_cipher_label(v->cipher), kdf->ops,
		       kdf->ops == 1 ? "" : "es", kdf->mem >> (mib ? 20 : 10),
		       mib ? "MiB" : "KiB");
}

int cmd_mkfs(int argc, char **argv)
{
	uint64_t bs = 0; /* 0: the store's own default */
	const char *loc = NULL, *pass_file = NULL;
	struct buf err = BUF_INIT, pass = BUF_INIT;
	struct cli_store_opts so = { 0 };
	struct store *s = NULL;
	struct volume v;
	struct crypt_kdf kdf = { 0, 0 };
	enum blob_names names = blob_names_default();
	enum crypt_cipher cipher = crypt_cipher_default();
	bool encrypt = false;
	uint64_t history_s = 0;
	struct cli_args a;
	int c, status = 1;

	memset(&v, 0, sizeof(v));
	cli_args_init(&a, &cli_cmd_mkfs, argc, argv);
	while ((c = cli_getopt(&a)) > 0) {
		if (c == OPT_CIPHER && crypt_cipher_parse(optarg, &cipher)) {
			cli_error("invalid --cipher '%s' (aes-256-gcm or "
				  "xchacha20-poly1305)", optarg);
			return 2;
		}
		encrypt |= c == OPT_ENCRYPT;
		pass_file = c == OPT_PASS_FILE ? optarg : pass_file;
		if (c == OPT_NAMES && blob_names_parse(optarg, &names)) {
			cli_error("invalid --names '%s' (hmac-sha256 or "
				  "blake2b)", optarg);
			return 2;
		}
		if (c == OPT_BLOCK_SIZE &&
		    (parse_size(optarg, &bs) || bs < 4096 ||
		     bs > (64U << 20) || (bs & (bs - 1)))) {
			cli_error("invalid block size '%s' (a power of two "
				  "from 4K to 64M)", optarg);
			return 2;
		}
		if (c == OPT_HISTORY &&
		    cli_parse_duration(optarg, &history_s)) {
			cli_error("invalid --history '%s' (a number with s, m, "
				  "h or d, as 90s, 10m, 2h, 7d)", optarg);
			return 2;
		}
		if (c == OPT_CREATE_BUCKET)
			so.o.create_bucket = true;
		if (c == 'o' && cli_store_opts_parse(&so, optarg, NULL)) {
			status = 2;
			goto out;
		}
	}
	if (c < 0) {
		status = a.status;
		goto out;
	}
	loc = a.operand[0];
	if (!pass_file)
		pass_file = so.passphrase_file;
	if (!encrypt && pass_file) {
		cli_error("a passphrase file is for an encrypted volume "
			  "(--encrypt)");
		status = 2;
		goto out;
	}
	if (blob_global_init()) {
		cli_error("cannot initialise libsodium");
		goto out;
	}
	if (store_open_opts(loc, 1, &so.o, &s, &err)) {
		cli_error("%s", buf_str(&err));
		goto out;
	}
	if (encrypt && (mkfs_refuse_volume(s) ||
			mkfs_secret(pass_file, &pass, &kdf)))
		goto out;
	if (!bs)
		bs = s->block_size;
	if (mkfs_create(s, (uint32_t)bs, names, cipher,
			encrypt ? &pass : NULL, &kdf, &v, &err)) {
		cli_error("%s", buf_str(&err));
		goto out;
	}
	if (history_s && volume_set_history(s, &v, history_s, &err)) {
		cli_error("%s", buf_str(&err));
		goto out;
	}
	mkfs_report(&v, s, bs, &kdf);
	if (history_s) {
		char d[32];

		cli_format_duration(history_s, d, sizeof(d));
		printf("history window: %s\n", d);
	}
	status = 0;
out:
	volume_wipe(&v);
	cli_passphrase_free(&pass);
	store_close(s);
	cli_store_opts_free(&so);
	buf_free(&err);
	return status;
}

/* ---- umount ---- */

static const char umount_help[] =
	"usage: metafuse umount MOUNTPOINT\n"
	"\n"
	"Unmounts, then waits until the daemon has uploaded everything and\n"
	"exited, saying how much is left (on a terminal, as a progress line;\n"
	"else every 10 seconds).  Interrupting the wait does not lose data:\n"
	"the daemon goes on uploading, and what is left stays in the cache\n"
	"for the next mount.\n";

const struct cli_cmd cli_cmd_umount = {
	.name = "umount",
	.summary = "upload everything, then unmount",
	.run = cmd_umount,
	.help = umount_help,
	.usage = "usage: metafuse umount MOUNTPOINT",
	.min_operands = 1,
	.max_operands = 1,
	.flag_status = 2,
};

/* What the daemon's log says of its upload (upload_news()). */
struct upload_news {
	struct buf left;    /* the newest "N KiB left to upload"; "": none */
	uint64_t left_kib;  /* its N */
	struct buf problem; /* the newest warning or error; "": none */
	bool unmounted;     /* the daemon logged that the kernel let go */
};

/* The size of the daemon's log now (0: none), where umount's meter
 * starts reading: what an earlier mount logged is not this upload's. */
static off_t log_size(const char *cache_dir)
{
	struct buf path = BUF_INIT;
	struct stat st;
	off_t size = 0;

	if (cache_dir &&
	    buf_appendf(&path, "%s/metafuse.log", cache_dir) == 0 &&
	    stat(buf_str(&path), &st) == 0)
		size = st.st_size;
	buf_free(&path);
	return size;
}

/*
 * The newest "KiB left to upload" figure and the newest warning or error
 * in the daemon's log, in the part written from offset from on (at most
 * its last 64 KiB), into n.
 */
static void upload_news(const char *cache_dir, off_t from,
			struct upload_news *n)
{
	struct buf path = BUF_INIT;
	char tail[65536], *line, *save = NULL;
	const char *left = NULL, *problem = NULL;
	off_t size;
	ssize_t got;
	int fd;

	buf_reset(&n->left);
	buf_reset(&n->problem);
	n->unmounted = false;
	if (!cache_dir || buf_appendf(&path, "%s/metafuse.log", cache_dir))
		goto out;
	fd = open(buf_str(&path), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto out;
	size = lseek(fd, 0, SEEK_END);
	if (size >= 0 && size < from)
		from = 0; /* not the file it was */
	if (size >= 0 && size - from > (off_t)sizeof(tail) - 1)
		from = size - (off_t)sizeof(tail) + 1;
	got = size < 0 ? -1 : pread(fd, tail, (size_t)(size - from), from);
	close(fd);
	if (got <= 0)
		goto out;
	tail[got] = '\0';
	for (line = strtok_r(tail, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		const char *p = strstr(line, "unmount: ");

		if (strstr(line, "] info: unmounted "))
			n->unmounted = true;
		if (p && strstr(p, "left to upload"))
			left = p + 9;
		else if (strstr(line, "] warn: ") || strstr(line, "] error: "))
			problem = strstr(line, ": ") + 2;
	}
	if (left) {
		buf_appends(&n->left, left);
		n->left_kib = strtoull(left, NULL, 10);
	}
	if (problem)
		buf_appends(&n->problem, problem);
out:
	buf_free(&path);
}

/* The news as one status line: "N KiB left to upload; last problem:
 * ...". */
static void upload_status(const struct upload_news *n, struct buf *out)
{
	buf_reset(out);
	if (n->left.len)
		buf_appends(out, buf_str(&n->left));
	if (n->problem.len)
		buf_appendf(out, "%s%s", n->left.len ? "; last problem: " :
						       "last problem: ",
			    buf_str(&n->problem));
}

/* From the registry file the daemon serving real wrote (daemon.c): its pid
 * (0: unknown) and its cache directory (NULL: unknown; it points into
 * text). */
static pid_t read_registry(const char *real, struct buf *text,
			   const char **cache_dir)
{
	struct buf reg = BUF_INIT;
	pid_t pid = 0;

	*cache_dir = NULL;
	if (cli_registry_path(real, &reg) == 0 &&
	    read_file(buf_str(&reg), text) == 0) {
		char *nl = strchr(buf_str(text), '\n');

		pid = (pid_t)strtol(buf_str(text), NULL, 10);
		if (nl && nl[1]) {
			*cache_dir = nl + 1;
			nl = strchr(*cache_dir, '\n');
			if (nl)
				*nl = '\0';
		}
	}
	buf_free(&reg);
	return pid;
}

/*
 * umount -r on a busy mount: the mount read-only, its other flags kept (a
 * remount takes the flags it is given: without them nosuid and nodev
 * would go).  0, or -1 with errno EBUSY (the caller says so).
 */
static int remount_read_only(const char *real)
{
	static const struct {
		unsigned long st, ms;
	} map[] = {
		{ ST_NOSUID, MS_NOSUID },       { ST_NODEV, MS_NODEV },
		{ ST_NOEXEC, MS_NOEXEC },       { ST_SYNCHRONOUS, MS_SYNCHRONOUS },
		{ ST_NOATIME, MS_NOATIME },     { ST_NODIRATIME, MS_NODIRATIME },
		{ ST_RELATIME, MS_RELATIME },
	};
	unsigned long ms = MS_REMOUNT | MS_RDONLY;
	struct statvfs sv;
	size_t i;

	if (statvfs(real, &sv))
		goto busy;
	for (i = 0; i < ARRAY_SIZE(map); i++)
		if (sv.f_flag & map[i].st)
			ms |= map[i].ms;
	if (mount(NULL, real, NULL, ms, NULL) == 0)
		return 0;
busy:
	errno = EBUSY;
	return -1;
}

/*
 * The kernel lets go of real: as root umount2() (through `umount -i` when
 * the utab has a line for it, so that libmount drops the line; not when
 * umount(8) runs us, as it does that itself), else fusermount3 -u.  0; 1
 * when, busy, it was remounted read-only instead (UMOUNT_RDONLY); -1
 * (printed).
 */
static int unmount_kernel(const char *real, unsigned flags)
{
	int mflags = (flags & UMOUNT_LAZY ? MNT_DETACH : 0) |
		     (flags & UMOUNT_FORCE ? MNT_FORCE : 0);
	pid_t child;
	int ws = 0;

	if (geteuid() == 0) {
		if (!(flags & UMOUNT_HELPER) && !mflags &&
		    fstab_utab_has(real) && fstab_umount_internal(real) == 0)
			return 0;
		if (umount2(real, mflags) == 0)
			return 0;
		if (errno == EBUSY && (flags & UMOUNT_RDONLY) &&
		    remount_read_only(real) == 0) {
			fprintf(stderr, "metafuse: %s is busy: remounted "
				"read-only\n", real);
			return 1;
		}
		cli_error("cannot unmount %s: %s", real, strerror(errno));
		return -1;
	}
	child = fork();
	if (child == 0) {
		if (flags & UMOUNT_LAZY)
			execlp("fusermount3", "fusermount3", "-u", "-z", real,
			       (char *)NULL);
		else
			execlp("fusermount3", "fusermount3", "-u", real,
			       (char *)NULL);
		_exit(127);
	}
	if (child < 0 || waitpid(child, &ws, 0) < 0 || !WIFEXITED(ws) ||
	    WEXITSTATUS(ws)) {
		cli_error("cannot unmount %s (fusermount3 failed)", real);
		return -1;
	}
	return 0;
}

/*
 * The kernel ends a FUSE connection only when the mount is gone from
 * every mount namespace: one made (unshare(1), a systemd service with
 * PrivateTmp= or ProtectSystem=) while the volume was mounted keeps a
 * copy, and the daemon never hears of this unmount until it ends.  Said
 * once, when the daemon has not logged the unmount NS_HINT_NS into the
 * wait.
 */
#define NS_HINT_NS 10000000000ULL

static void namespace_hint(const struct upload_news *n, uint64_t waited,
			   bool *told, struct progress *meter)
{
	if (*told || n->unmounted || waited < NS_HINT_NS)
		return;
	progress_note(meter, "metafuse: the daemon has not seen the unmount "
		      "yet: another mount namespace still holds the mount (a "
		      "process started with unshare, or a service with "
		      "PrivateTmp= or ProtectSystem= started after the mount); "
		      "the upload starts when those end");
	*told = true;
}

static void print_hint(const char *cache_dir, struct progress *meter)
{
	progress_note(meter, "metafuse: interrupting this wait loses nothing: "
		      "the daemon goes on uploading, and what is left stays "
		      "in the cache%s%s for the next mount",
		      cache_dir ? " " : "", cache_dir ? cache_dir : "");
}

/*
 * On a terminal: until the daemon (pid) has exited, a progress line of
 * the upload (its bytes done of the most ever left, from the daemon's
 * log written since offset from); once the wait passes 2 s the hint, and
 * each new problem as a line of its own (at most every 10 s).
 */
static void wait_with_meter(pid_t pid, const char *cache_dir, off_t from,
			    struct progress *meter)
{
	struct upload_news n = { BUF_INIT, 0, BUF_INIT, false };
	struct buf told = BUF_INIT;
	uint64_t start, next_scan = 0, next_note = 0, total = 0;
	bool hinted = false, ns_told = false;

	start = now_mono_ns();
	progress_phase(meter, "uploading", PROGRESS_BYTES, 0);
	while (proc_running(pid)) {
		struct timespec ts = { 0, 50000000L };
		uint64_t now = now_mono_ns(), left;

		if (now >= next_scan) {
			upload_news(cache_dir, from, &n);
			left = n.left_kib << 10;
			if (n.left.len && left > total) {
				total = left;
				progress_set_total(meter, total);
			}
			progress_update(meter, n.left.len ? total - left : 0);
			/* a wait that lasts, as for the hint: a problem
			 * overcome at once is no news */
			if (n.problem.len && now >= next_note &&
			    now - start > 2000000000ULL &&
			    strcmp(buf_str(&n.problem), buf_str(&told))) {
				progress_note(meter, "metafuse: last problem: "
					      "%s", buf_str(&n.problem));
				buf_reset(&told);
				buf_appends(&told, buf_str(&n.problem));
				next_note = now + 10000000000ULL;
			}
			if (!hinted && now - start > 2000000000ULL) {
				print_hint(cache_dir, meter);
				hinted = true;
			}
			namespace_hint(&n, now - start, &ns_told, meter);
			next_scan = now + PROGRESS_REDRAW_NS;
		}
		nanosleep(&ts, NULL);
	}
	progress_end(meter);
	buf_free(&n.left);
	buf_free(&n.problem);
	buf_free(&told);
}

/* Until the daemon (pid) has exited, say every so often how long it has
 * taken and what is left (upload_status()); on a terminal, a progress
 * line instead (wait_with_meter()). */
static void wait_for_daemon(pid_t pid, const char *cache_dir, off_t from)
{
	struct upload_news n = { BUF_INIT, 0, BUF_INIT, false };
	struct upload_news since = { BUF_INIT, 0, BUF_INIT, false };
	struct progress meter;
	struct buf st = BUF_INIT;
	uint64_t start, last, every;
	bool hinted = false, ns_told = false;

	progress_init(&meter, stderr);
	if (meter.on) {
		wait_with_meter(pid, cache_dir, from, &meter);
		return;
	}
	start = last = now_mono_ns();
	/* a terminal hears every 2 s, a script's log every 10 s */
	every = isatty(2) ? 2000000000ULL : 10000000000ULL;
	while (proc_running(pid)) {
		struct timespec ts = { 0, 50000000L };
		uint64_t now = now_mono_ns();

		if (now - last > every) {
			upload_news(cache_dir, 0, &n);
			upload_status(&n, &st);
			fprintf(stderr, "metafuse: waiting for the daemon "
				"(pid %d) to finish uploading (%" PRIu64
				" s)%s%s\n", (int)pid,
				(uint64_t)((now - start) / 1000000000ULL),
				st.len ? ": " : "...", buf_str(&st));
			if (!hinted) {
				print_hint(cache_dir, &meter);
				hinted = true;
			}
			/* the status reads the log's tail (an earlier
			 * problem is news too); the unmount must be this
			 * one's */
			upload_news(cache_dir, from, &since);
			namespace_hint(&since, now - start, &ns_told, &meter);
			last = now;
		}
		nanosleep(&ts, NULL);
	}
	buf_free(&n.left);
	buf_free(&n.problem);
	buf_free(&since.left);
	buf_free(&since.problem);
	buf_free(&st);
}

/*
 * After the daemon (pid) serving real exited: true, with one line, when
 * it ended before its final upload was done (killed, by a shutdown that
 * did not wait, or crashed): the registry file it removes after that
 * upload (daemon.c) still names it.
 */
static bool ended_unclean(const char *real, pid_t pid, const char *cache_dir)
{
	struct buf text = BUF_INIT;
	const char *dir;
	bool unclean = read_registry(real, &text, &dir) == pid;

	if (unclean)
		cli_error("the daemon (pid %d) ended before everything was in "
			  "the store: what is left stays in the cache%s%s and "
			  "goes up at the next mount", (int)pid,
			  cache_dir ? " " : "", cache_dir ? cache_dir : "");
	buf_free(&text);
	return unclean;
}

int umount_wait(const char *path, unsigned flags)
{
	char real[PATH_MAX];
	struct buf text = BUF_INIT;
	const char *cache_dir = NULL;
	off_t from;
	pid_t pid;
	int rc;

	/* umount(8)'s path is canonical, and a dead daemon's mountpoint
	 * cannot be resolved (ENOTCONN) */
	if (flags & UMOUNT_HELPER) {
		if (snprintf(real, sizeof(real), "%s", path) >= (int)sizeof(real)) {
			cli_error("%s: %s", path, strerror(ENAMETOOLONG));
			return 1;
		}
	} else if (!realpath(path, real)) {
		cli_error("%s: %s", path, strerror(errno));
		return 1;
	}
	if (!cli_is_mountpoint(real)) {
		cli_error("%s is not mounted", real);
		return 1;
	}
	/* before the unmount: the daemon removes it once all is uploaded */
	pid = flags & UMOUNT_FOREIGN ? 0 : read_registry(real, &text,
							 &cache_dir);
	from = log_size(cache_dir);
	rc = unmount_kernel(real, flags);
	/* lazy: the daemon goes on while files are open */
	if (rc == 0 && pid && !(flags & UMOUNT_LAZY)) {
		wait_for_daemon(pid, cache_dir, from);
		if (ended_unclean(real, pid, cache_dir))
			rc = -1;
	}
	buf_free(&text);
	return rc < 0 ? 1 : 0;
}

int cmd_umount(int argc, char **argv)
{
	struct cli_args a;
	int c;

	cli_args_init(&a, &cli_cmd_umount, argc, argv);
	while ((c = cli_getopt(&a)) > 0)
		;
	if (c < 0)
		return a.status;
	return umount_wait(a.operand[0], 0);
}
