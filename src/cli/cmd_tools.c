/*
 * cmd_tools.c - `metafuse mkfs`, `umount` and `fsck`.
 *
 * umount is more than fusermount3 -u: the daemon still has to upload what
 * is dirty, checkpoint and release the lease after the kernel lets go, so
 * umount waits for the daemon (found through the registry file it wrote
 * for the mountpoint) to exit, and shows progress on a terminal.
 *
 * fsck works on a private copy of the volume's state in the store (newest
 * checkpoint plus journal): it never touches a mounted volume's live
 * database.  With --repair it writes the repaired copy back as a new
 * checkpoint, which requires the volume not mounted.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blob/blob.h"
#include "blob/patch.h"
#include "cli/cli.h"
#include "cli/store_opts.h"
#include "meta/meta.h"
#include "store/store.h"
#include "util/util.h"
#include "volume/journal.h"
#include "volume/volume.h"

/* ---- mkfs ---- */

static const char mkfs_help[] =
	"usage: metafuse mkfs [--block-size SIZE] [--names HASH] "
	"[--create-bucket]\n"
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
	"\n" CLI_STORE_OPTS_HELP;

enum { OPT_NAMES = 256, OPT_BLOCK_SIZE, OPT_CREATE_BUCKET };

static const struct option mkfs_longopts[] = {
	{ "names", required_argument, NULL, OPT_NAMES },
	{ "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
	{ "create-bucket", no_argument, NULL, OPT_CREATE_BUCKET },
	{ NULL, 0, NULL, 0 },
};

static const struct cli_cmd mkfs_cmd = {
	.name = "mkfs",
	.help = mkfs_help,
	.usage = "usage: metafuse mkfs [--block-size SIZE] [--names HASH] "
		 "[--create-bucket] [-o OPT[,OPT...]] STORE",
	.shortopts = "o:",
	.longopts = mkfs_longopts,
	.min_operands = 1,
	.max_operands = 1,
	.flag_status = 2,
};

int cmd_mkfs(int argc, char **argv)
{
	uint64_t bs = 0; /* 0: the store's own default */
	const char *loc = NULL;
	struct buf err = BUF_INIT;
	struct cli_store_opts so = { 0 };
	struct store *s = NULL;
	struct volume v;
	enum blob_names names = blob_names_default();
	struct cli_args a;
	int c, status = 1;

	cli_args_init(&a, &mkfs_cmd, argc, argv);
	while ((c = cli_getopt(&a)) > 0) {
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
	if (blob_global_init()) {
		cli_error("cannot initialise libsodium");
		goto out;
	}
	if (store_open_opts(loc, 1, &so.o, &s, &err)) {
		cli_error("%s", buf_str(&err));
		goto out;
	}
	if (!bs)
		bs = s->block_size;
	if (volume_create(s, (uint32_t)bs, names, &v, &err)) {
		cli_error("%s", buf_str(&err));
		goto out;
	}
	printf("created volume %s in %s (block size %" PRIu64 ")\n"
	       "block names: %s (volume format %u)\n", v.id, s->url, bs,
	       blob_names_label(v.names), v.format);
	status = 0;
out:
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
	"exited, saying every few seconds how much is left.  Interrupting\n"
	"the wait does not lose data: the daemon goes on uploading, and\n"
	"what is left stays in the cache for the next mount.\n";

static const struct cli_cmd umount_cmd = {
	.name = "umount",
	.help = umount_help,
	.usage = "usage: metafuse umount MOUNTPOINT",
	.min_operands = 1,
	.max_operands = 1,
	.flag_status = 2,
};

/*
 * The newest "KiB left to upload" figure and the newest warning or error
 * in the daemon's log (its last 64 KiB), as one status line for umount.
 */
static void upload_status(const char *cache_dir, struct buf *out)
{
	struct buf path = BUF_INIT;
	char tail[65536], *line, *save = NULL;
	const char *left = NULL, *problem = NULL;
	off_t size;
	ssize_t n;
	int fd;

	buf_reset(out);
	if (!cache_dir || buf_appendf(&path, "%s/metafuse.log", cache_dir))
		goto out;
	fd = open(buf_str(&path), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto out;
	size = lseek(fd, 0, SEEK_END);
	n = size < 0 ? -1 :
		       pread(fd, tail, sizeof(tail) - 1,
			     size > (off_t)sizeof(tail) - 1 ?
				     size - (off_t)sizeof(tail) + 1 : 0);
	close(fd);
	if (n <= 0)
		goto out;
	tail[n] = '\0';
	for (line = strtok_r(tail, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		const char *p = strstr(line, "unmount: ");

		if (p && strstr(p, "left to upload"))
			left = p + 9;
		else if (strstr(line, "] warn: ") || strstr(line, "] error: "))
			problem = strstr(line, ": ") + 2;
	}
	if (left)
		buf_appends(out, left);
	if (problem)
		buf_appendf(out, "%s%s", left ? "; last problem: " :
						 "last problem: ", problem);
out:
	buf_free(&path);
}

int cmd_umount(int argc, char **argv)
{
	char real[PATH_MAX];
	struct buf reg = BUF_INIT, text = BUF_INIT, st = BUF_INIT;
	const char *cache_dir = NULL;
	pid_t pid = 0;
	uint64_t start, last, every;
	bool hinted = false;
	struct cli_args a;
	const char *mnt;
	int c, status = 1;

	cli_args_init(&a, &umount_cmd, argc, argv);
	while ((c = cli_getopt(&a)) > 0)
		;
	if (c < 0)
		return a.status;
	mnt = a.operand[0];
	if (!realpath(mnt, real)) {
		cli_error("%s: %s", mnt, strerror(errno));
		return 1;
	}
	if (!cli_is_mountpoint(real)) {
		cli_error("%s is not mounted", real);
		return 1;
	}
	if (cli_registry_path(real, &reg) == 0 &&
	    read_file(buf_str(&reg), &text) == 0) {
		char *nl = strchr(buf_str(&text), '\n');

		pid = (pid_t)strtol(buf_str(&text), NULL, 10);
		if (nl && nl[1]) {
			cache_dir = nl + 1;
			nl = strchr(cache_dir, '\n');
			if (nl)
				*nl = '\0';
		}
	}
	if (geteuid() == 0) {
		if (umount2(real, 0)) {
			cli_error("cannot unmount %s: %s", real,
				  strerror(errno));
			goto out;
		}
	} else {
		pid_t child = fork();
		int ws = 0;

		if (child == 0) {
			execlp("fusermount3", "fusermount3", "-u", real,
			       (char *)NULL);
			_exit(127);
		}
		if (child < 0 || waitpid(child, &ws, 0) < 0 ||
		    !WIFEXITED(ws) || WEXITSTATUS(ws)) {
			cli_error("cannot unmount %s (fusermount3 failed)",
				  real);
			goto out;
		}
	}
	start = last = now_mono_ns();
	/* a terminal hears every 2 s, a script's log every 10 s */
	every = isatty(2) ? 2000000000ULL : 10000000000ULL;
	while (proc_running(pid)) {
		struct timespec ts = { 0, 50000000L };
		uint64_t now = now_mono_ns();

		if (now - last > every) {
			upload_status(cache_dir, &st);
			fprintf(stderr, "metafuse: waiting for the daemon "
				"(pid %d) to finish uploading (%" PRIu64
				" s)%s%s\n", (int)pid,
				(uint64_t)((now - start) / 1000000000ULL),
				st.len ? ": " : "...", buf_str(&st));
			if (!hinted) {
				fprintf(stderr, "metafuse: interrupting this "
					"wait loses nothing: the daemon goes "
					"on uploading, and what is left stays "
					"in the cache%s%s for the next mount\n",
					cache_dir ? " " : "",
					cache_dir ? cache_dir : "");
				hinted = true;
			}
			last = now;
		}
		nanosleep(&ts, NULL);
	}
	status = 0;
out:
	buf_free(&reg);
	buf_free(&text);
	buf_free(&st);
	return status;
}

/* ---- fsck ---- */

static const char fsck_help[] =
	"usage: metafuse fsck [--repair] [--verify-data] [-o OPT[,OPT...]] "
	"STORE\n"
	"\n"
	"Checks the volume in STORE as the store holds it (newest metadata\n"
	"checkpoint plus journal): link counts, orphans, dangling entries,\n"
	"reference counts, and that every referenced object exists.\n"
	"--verify-data downloads every referenced object and checks its\n"
	"checksum and name, and that every block's patches sit on the\n"
	"objects below them.  --repair fixes what it can and writes a new\n"
	"checkpoint (the volume must not be mounted).\n"
	"Exit status: 0 clean, 1 problems found, 2 error.\n"
	"\n" CLI_STORE_OPTS_HELP;

enum { OPT_REPAIR = 256, OPT_VERIFY_DATA };

static const struct option fsck_longopts[] = {
	{ "repair", no_argument, NULL, OPT_REPAIR },
	{ "verify-data", no_argument, NULL, OPT_VERIFY_DATA },
	{ NULL, 0, NULL, 0 },
};

static const struct cli_cmd fsck_cmd = {
	.name = "fsck",
	.help = fsck_help,
	.usage = "usage: metafuse fsck [--repair] [--verify-data] "
		 "[-o OPT[,OPT...]] STORE",
	.shortopts = "o:",
	.longopts = fsck_longopts,
	.min_operands = 1,
	.max_operands = 1,
	.flag_status = 2,
};

/*
 * The store's data objects, from one listing (a request per 1,000 keys on
 * S3, where a HEAD per referenced object cost a round trip each): binary
 * names, sorted, with their sizes.
 */
struct listed {
	uint8_t name[BLOB_HASH_BYTES];
	uint64_t size;
};

/* Referenced objects whose content --verify-data fetches together, up to
 * FSCK_AHEAD at a time and FSCK_AHEAD_BYTES waiting (store_ahead). */
#define FSCK_BATCH 1024u
#define FSCK_AHEAD 8u
#define FSCK_AHEAD_BYTES (64u << 20)

/* --verify-data: what a verified object said of itself, for the chain
 * check (only patches and damaged objects are noted) */
struct seen {
	uint8_t name[BLOB_HASH_BYTES];
	uint8_t below[BLOB_HASH_BYTES]; /* a patch's object below */
	char kind; /* 'p' patch, 'x' not a valid patch, 'd' damaged */
};

struct fsck_ctx {
	struct store *s;
	struct meta *m;
	const struct blob_ctx *bc;
	uint32_t block_size;
	bool verify;
	struct buf obj, plain;
	struct listed *have; /* the listing, sorted by name */
	size_t nhave, cap;
	/* --verify-data: the batch's keys ("data/ab/" + name) and sizes */
	char (*bkey)[BLOB_DATA_KEY_LEN + 1];
	const char **bptr;
	uint64_t *bsize;
	size_t nbatch;
	uint64_t checked, missing, damaged, total, bytes, broken;
	uint64_t last_ns;
	struct seen *seen; /* sorted by name before the chain check */
	size_t nseen, capseen;
};

static void report_line(const char *line, void *arg)
{
	uint64_t *n = arg;

	(*n)++;
	printf("%s\n", line);
}

static int listed_cmp(const void *a, const void *b)
{
	return memcmp(a, b, BLOB_HASH_BYTES);
}

static int list_data_cb(const char *key, uint64_t size, void *arg)
{
	struct fsck_ctx *f = arg;
	const char *name = strrchr(key, '/');

	name = name ? name + 1 : key;
	if (strlen(name) != BLOB_NAME_LEN)
		return 0; /* not an object of ours: gc's business */
	if (f->nhave == f->cap) {
		size_t ncap = f->cap ? f->cap * 2 : 1024;
		struct listed *p = realloc(f->have, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		f->have = p;
		f->cap = ncap;
	}
	if (hex_decode(name, f->have[f->nhave].name, BLOB_HASH_BYTES))
		return 0;
	f->have[f->nhave++].size = size;
	return 0;
}

static int list_data(struct fsck_ctx *f)
{
	int rc = store_list(f->s, "data/", list_data_cb, f);

	/* qsort and bsearch want a base even for no elements */
	if (rc == 0 && f->nhave)
		qsort(f->have, f->nhave, sizeof(*f->have), listed_cmp);
	return rc;
}

static void progress(struct fsck_ctx *f)
{
	if (isatty(2) && now_mono_ns() - f->last_ns > 500000000ULL) {
		fprintf(stderr, "\r%s objects: %" PRIu64 " (%" PRIu64
			" MiB)", f->verify ? "verifying" : "checking",
			f->checked, f->bytes >> 20);
		f->last_ns = now_mono_ns();
	}
}

/* Note what object name (hex) is: damaged ('d'), or a patch by its
 * plaintext's magic, on which object ('p'), or malformed ('x'). */
static int note_seen(struct fsck_ctx *f, const char *name, bool damaged)
{
	struct patch_view v;
	struct seen *s;

	if (!damaged && !patch_has_magic(f->plain.data, f->plain.len))
		return 0; /* a block: the chain check needs nothing of it */
	if (f->nseen == f->capseen) {
		size_t ncap = f->capseen ? f->capseen * 2 : 256;
		struct seen *p = realloc(f->seen, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		f->seen = p;
		f->capseen = ncap;
	}
	s = &f->seen[f->nseen];
	if (hex_decode(name, s->name, sizeof(s->name)))
		return 0;
	memset(s->below, 0, sizeof(s->below));
	if (damaged) {
		s->kind = 'd';
	} else if (patch_parse(f->plain.data, f->plain.len, NULL,
			       f->block_size, &v)) {
		s->kind = 'x';
	} else {
		s->kind = 'p';
		memcpy(s->below, v.below, sizeof(s->below));
	}
	f->nseen++;
	return 0;
}

static void report_missing(struct fsck_ctx *f, const char *key)
{
	printf("object %s is referenced but missing from the store\n", key);
	f->missing++;
}

/* Fetch the batch's objects (ahead of the one checked) and check each
 * against its name. */
static int verify_batch(struct fsck_ctx *f)
{
	struct store_ahead *a = NULL;
	const char *name;
	bool damaged;
	size_t i;
	int rc;

	if (f->nbatch == 0)
		return 0;
	rc = store_ahead_start(f->s, f->bptr, f->bsize, f->nbatch,
			       FSCK_AHEAD, FSCK_AHEAD_BYTES, &a);
	for (i = 0; rc == 0 && i < f->nbatch; i++) {
		buf_reset(&f->plain);
		rc = store_ahead_next(a, &f->obj);
		if (rc == -ENOENT) { /* gone since the listing */
			report_missing(f, f->bkey[i]);
			rc = 0;
			continue;
		}
		if (rc)
			break;
		name = f->bkey[i] + BLOB_DATA_KEY_LEN - BLOB_NAME_LEN;
		damaged = blob_decode_named(f->bc, name, f->obj.data,
					    f->obj.len, &f->plain) != 0;
		if (damaged) {
			printf("object %s is damaged (checksum or name does "
			       "not match its content)\n", f->bkey[i]);
			f->damaged++;
		}
		rc = note_seen(f, name, damaged);
		f->bytes += f->obj.len;
		f->checked++;
		progress(f);
	}
	store_ahead_end(a);
	f->nbatch = 0;
	return rc;
}

static int object_cb(const char *hash, uint64_t refs, void *arg)
{
	struct fsck_ctx *f = arg;
	char key[BLOB_DATA_KEY_LEN + 1];
	const struct listed *l = NULL;
	uint8_t bin[BLOB_HASH_BYTES];

	if (refs == 0)
		return 0;
	blob_data_key(hash, key);
	if (f->nhave && strlen(hash) == BLOB_NAME_LEN &&
	    hex_decode(hash, bin, sizeof(bin)) == 0)
		l = bsearch(bin, f->have, f->nhave, sizeof(*f->have),
			    listed_cmp);
	if (!l) {
		report_missing(f, key);
		f->checked++;
		return 0;
	}
	if (!f->verify) {
		f->bytes += l->size;
		f->checked++;
		progress(f);
		return 0;
	}
	memcpy(f->bkey[f->nbatch], key, sizeof(key));
	f->bptr[f->nbatch] = f->bkey[f->nbatch];
	f->bsize[f->nbatch] = l->size;
	return ++f->nbatch == FSCK_BATCH ? verify_batch(f) : 0;
}

static int seen_cmp(const void *a, const void *b)
{
	return memcmp(a, b, BLOB_HASH_BYTES);
}

/*
 * With --verify-data: that each patch of a block's chain sits on the
 * object below it (blob/patch.h), as its reader will require, from what
 * verifying each object noted of it (note_seen()): no object is fetched
 * twice.  A patch missing or damaged was reported then and is passed over
 * here.
 */
static int chain_cb(uint64_t ino, uint64_t idx, void *arg)
{
	struct fsck_ctx *f = arg;
	struct patch_chain *ch = malloc(sizeof(*ch));
	uint8_t name[BLOB_HASH_BYTES], below[BLOB_HASH_BYTES];
	const struct seen *s;
	unsigned k;
	int rc;

	if (!ch)
		return -ENOMEM;
	rc = meta_block_chain(f->m, ino, idx, ch);
	/* no base, or a chain too long to read (-EIO): fsck's own checks
	 * (check_patches) report those */
	if (rc == -ENOENT || rc == -EIO || (rc == 0 && !ch->base[0]))
		rc = 0;
	else if (rc == 0)
		for (k = 0; k < ch->n; k++) {
			const char *bname = k ? ch->patch[k - 1] : ch->base;

			if (hex_decode(ch->patch[k], name, sizeof(name)) ||
			    hex_decode(bname, below, sizeof(below)))
				break; /* not a name: fsck said so */
			s = f->nseen ? bsearch(name, f->seen, f->nseen,
					       sizeof(*f->seen), seen_cmp) :
				       NULL;
			if (s && s->kind == 'd')
				break; /* damaged: reported */
			if (!s && (!f->nhave ||
				   !bsearch(name, f->have, f->nhave,
					    sizeof(*f->have), listed_cmp)))
				break; /* missing: reported */
			if (!s || s->kind != 'p' ||
			    memcmp(s->below, below, sizeof(below))) {
				char key[BLOB_DATA_KEY_LEN + 1];

				blob_data_key(ch->patch[k], key);
				printf("block %" PRIu64 " of inode %" PRIu64
				       ": patch %u of %u (%s) does not sit on "
				       "the object below it (%s): the block "
				       "cannot be read (not repairable)\n",
				       idx, ino, k + 1, ch->n, key, bname);
				f->broken++;
				break;
			}
		}
	free(ch);
	return rc;
}

int cmd_fsck(int argc, char **argv)
{
	struct buf err = BUF_INIT;
	struct fsck_ctx f = { 0 };
	struct offline_vol ov = { 0 };
	const char *loc = NULL;
	struct cli_store_opts so = { 0 };
	struct meta *m;
	bool repair = false;
	uint64_t problems = 0;
	struct journal *jr = NULL;
	struct cli_args a;
	int c, rc, status = 2;

	cli_args_init(&a, &fsck_cmd, argc, argv);
	while ((c = cli_getopt(&a)) > 0) {
		if (c == OPT_REPAIR)
			repair = true;
		else if (c == OPT_VERIFY_DATA)
			f.verify = true;
		else if (c == 'o' && cli_store_opts_parse(&so, optarg, NULL))
			goto out;
	}
	if (c < 0) {
		status = a.status;
		goto out;
	}
	loc = a.operand[0];
	if (offline_open(&ov, loc, &so.o))
		goto out;
	f.s = ov.s;
	rc = offline_restore(&ov);
	if (rc == 1) {
		printf("volume %s has no metadata checkpoint yet (never "
		       "mounted): nothing to check\n", f.s->url);
		status = 0;
		goto out;
	}
	if (rc)
		goto out;
	m = ov.m;
	f.bc = &ov.bc;
	rc = meta_fsck(m, repair, report_line, &problems);
	if (rc < 0) {
		cli_error("fsck failed: %s", strerror(-rc));
		goto out;
	}
	f.block_size = ov.v.block_size;
	f.bkey = calloc(FSCK_BATCH, sizeof(*f.bkey));
	f.bptr = calloc(FSCK_BATCH, sizeof(*f.bptr));
	f.bsize = calloc(FSCK_BATCH, sizeof(*f.bsize));
	rc = f.bkey && f.bptr && f.bsize ? 0 : -ENOMEM;
	if (rc == 0)
		rc = list_data(&f);
	if (rc == 0)
		rc = meta_objects(m, object_cb, &f);
	if (rc == 0)
		rc = verify_batch(&f);
	if (isatty(2) && f.checked)
		fprintf(stderr, "\r");
	if (rc == 0 && f.verify) {
		f.m = m;
		if (f.nseen)
			qsort(f.seen, f.nseen, sizeof(*f.seen), seen_cmp);
		rc = meta_blocks_patched(m, chain_cb, &f);
	}
	if (rc) {
		cli_error("cannot check objects in %s: %s", f.s->url,
			  strerror(-rc));
		goto out;
	}
	problems += f.missing + f.damaged + f.broken;
	printf("checkpoint %" PRIu64 " + %" PRIu64 " journal entries: %"
	       PRIu64 " object(s) %s (%" PRIu64 " MiB), %" PRIu64
	       " problem(s)\n", ov.seq, ov.applied, f.checked,
	       f.verify ? "verified" : "checked", f.bytes >> 20, problems);
	if (repair && problems) {
		char owner[64];

		buf_reset(&err);
		rc = volume_lease_take(f.s, 30, 0, owner, sizeof(owner), &err);
		if (rc) {
			cli_error("%s; not writing the repair", buf_str(&err));
			goto out;
		}
		rc = journal_open(m, f.s, &ov.bc, ov.dir, &jr);
		if (rc == 0)
			rc = journal_checkpoint(jr);
		volume_lease_release(f.s, owner);
		if (rc) {
			cli_error("cannot write the repaired checkpoint: %s",
				  strerror(-rc));
			goto out;
		}
		printf("repaired metadata written as a new checkpoint\n");
	}
	status = problems ? 1 : 0;
out:
	journal_close(jr);
	buf_free(&f.obj);
	buf_free(&f.plain);
	free(f.have);
	free(f.seen);
	free(f.bkey);
	free(f.bptr);
	free(f.bsize);
	offline_close(&ov);
	cli_store_opts_free(&so);
	buf_free(&err);
	return status;
}
