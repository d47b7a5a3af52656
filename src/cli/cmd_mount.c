/*
 * cmd_mount.c - `metafuse mount`: from a store location to a serving
 * mount, and from unmount back to a volume whose every byte is in the
 * store.
 *
 * Order of a mount (each step can fail with one clear line):
 *   parse options -> check the mountpoint -> open the store, read the
 *   volume descriptor -> fork (unless -f; the parent waits for the child's
 *   verdict on a pipe) -> lock the cache directory -> take the lease ->
 *   restore the metadata from the store (newest checkpoint + journal) if
 *   the local copy is missing or older -> open meta, start the journal
 *   and write a checkpoint (journal.c, invariant 5) -> after a crash or a
 *   restore, delete objects no metadata names (uploaded by a mount that
 *   died before naming them) -> open the cache (upload workers start) ->
 *   mount and answer -> tell the parent "ready" -> serve.
 * On unmount: stop maintenance, upload everything, checkpoint (when one
 * is due, journal.c; else send the journal), collect garbage, release the
 * lease, remove the "running" marker.
 *
 * The maintenance thread sends the journal when the metadata changed
 * (every journal_interval), checkpoints when one is due (looked at every
 * checkpoint_interval; otherwise it sends the journal then too),
 * deletes garbage objects no durable checkpoint names, and renews the
 * lease.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blob/blob.h"
#include "cache/cache.h"
#include "cli/cli.h"
#include "cli/store_opts.h"
#include "fs/fs.h"
#include "meta/meta.h"
#include "meta/meta_index.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"
#include "volume/journal.h"
#include "volume/sweep.h"
#include "volume/volume.h"

#define LEASE_TTL_S 30

struct mount_opts {
	bool foreground;
	bool force;
	bool read_only;
	bool debug;
	bool writeback_cache;
	char *cache_dir;
	uint64_t cache_size;
	uint64_t max_dirty;
	uint64_t writeback_delay_ns;
	uint64_t checkpoint_interval_ns;
	uint64_t journal_interval_ns;
	uint64_t inline_max;
	unsigned upload_threads;
	struct buf fuse_opts; /* passed through to FUSE */
	struct cli_store_opts store; /* endpoint=, region= ... */
};

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
	return cli_store_opt(&o->store, opt);
}

static int parse_opt_cb(const char *p, void *arg)
{
	int rc = parse_one_opt(arg, p);

	if (rc == -ENOENT) {
		cli_error("unknown mount option '%s'", p);
		list_valid_options();
	} else if (rc) {
		cli_error("invalid value in mount option '%s'", p);
	}
	return rc;
}

static int parse_opts(struct mount_opts *o, const char *list)
{
	return cli_opts_each(list, parse_opt_cb, o);
}

/* ---- the running mount ---- */

struct mounted {
	struct mount_opts *o;
	struct store *store;
	struct volume vol;
	struct blob_ctx blob;
	struct meta *meta;
	struct cache *cache;
	struct fs *fs;
	struct journal *journal;
	char *cache_dir;
	bool restored; /* the metadata came from the store at this mount */
	char lease_owner[64];
	int ready_fd; /* write end of the pipe to the waiting parent */

	pthread_t maint;
	bool maint_running;
	pthread_mutex_t maint_lock;
	pthread_cond_t maint_cond;
	bool maint_stop; /* protected by maint_lock */
};

/* Metadata transactions after which the journal is cut before its
 * interval is up (checked every second). */
#define JOURNAL_EARLY_CHANGES 4096

/* Objects looked at, and deleted in one store_del_many, at a time. */
#define GC_BATCH 512

/* Delete objects that no block names and no durable checkpoint needs. */
static int gc_cb(const char *hash, void *arg)
{
	struct buf *list = arg;

	return buf_append(list, hash, BLOB_NAME_LEN + 1);
}

static void collect_garbage(struct mounted *mt)
{
	uint64_t durable = meta_config_get_u64(mt->meta, "durable_seq", 0);
	struct buf list = BUF_INIT;
	char (*keys)[BLOB_DATA_KEY_LEN + 1] = calloc(GC_BATCH, sizeof(*keys));
	const char *ptrs[GC_BATCH], *hashes[GC_BATCH];
	int results[GC_BATCH];
	size_t i, n, ndel, freed = 0;

	if (mt->o->read_only || !keys) {
		free(keys);
		return;
	}
	do {
		buf_reset(&list);
		if (meta_gc_list(mt->meta, durable, GC_BATCH, gc_cb, &list))
			break;
		n = list.len / (BLOB_NAME_LEN + 1);
		/* claim the batch, keep what is still unreferenced, delete
		 * it in one store request, then let uploads reuse names */
		for (i = 0, ndel = 0; i < n; i++) {
			const char *hash = (const char *)list.data +
					   i * (BLOB_NAME_LEN + 1);
			uint64_t refs = 1;

			cache_claim(mt->cache, hash);
			if (meta_object_get(mt->meta, hash, &refs) == 0 &&
			    refs == 0) {
				blob_data_key(hash, keys[ndel]);
				hashes[ndel] = hash;
				ptrs[ndel] = keys[ndel];
				ndel++;
			}
		}
		store_del_many(mt->store, ptrs, ndel, results);
		for (i = 0; i < ndel; i++) {
			if (results[i] == 0) {
				meta_gc_forget(mt->meta, hashes[i]);
				freed++;
			} else {
				log_warn("gc: cannot delete %s: %s", keys[i],
					 strerror(-results[i]));
			}
		}
		for (i = 0; i < n; i++)
			cache_unclaim(mt->cache, (const char *)list.data +
						 i * (BLOB_NAME_LEN + 1));
	} while (n == GC_BATCH);
	buf_free(&list);
	free(keys);
	if (freed)
		log_debug("gc: deleted %zu unreferenced object(s)", freed);
}

/*
 * Delete the data objects the metadata does not know: uploaded by a
 * mount that crashed before it recorded them, or recorded only in
 * metadata that never reached the store.  Runs before the cache starts
 * uploading, with the lease held, so no object is in flight.
 */
static void sweep_unknown_objects(struct mounted *mt)
{
	struct sweep_result r;
	int rc = store_sweep(mt->meta, mt->store, false, &r);

	if (rc)
		log_warn("cannot remove the objects an earlier crash left in "
			 "%s: %s", mt->store->url, strerror(-rc));
	if (r.deleted)
		log_info("deleted %" PRIu64 " unreferenced object(s) of %"
			 PRIu64 " left by an earlier crash", r.deleted,
			 r.seen);
}

/* While uploads fail, say every so often what waits for the store. */
static bool report_pending(struct mounted *mt, uint64_t *errors_seen)
{
	struct journal_stats js;
	struct cache_stats cs;

	cache_get_stats(mt->cache, &cs);
	journal_get_stats(mt->journal, &js);
	if (cs.upload_errors == *errors_seen && !js.pending)
		return false;
	*errors_seen = cs.upload_errors;
	log_warn("the store %s is failing; waiting to be uploaded: %" PRIu64
		 " KiB of data, %" PRIu64 " metadata journal entries "
		 "(retrying; nothing is lost while the cache holds them)",
		 mt->store->url, cs.dirty_bytes >> 10, js.pending);
	return true;
}

/* The journal's cuts wait for the blocks that truncates cut. */
static int cut_gate(void *cache, int (*cut)(void *), void *cut_arg)
{
	return cache_cut_barrier(cache, cut, cut_arg);
}

/* Send the journal; on success the metadata as of change count change is
 * in the store. */
static void send_journal(struct mounted *mt, uint64_t change,
			 uint64_t *last_change, bool *failing)
{
	int rc = journal_sync(mt->journal);

	*failing = rc != 0;
	if (rc)
		log_error("journal: cannot send the metadata to the store: %s",
			  strerror(-rc));
	else
		*last_change = change;
}

static void *maintenance(void *arg)
{
	struct mounted *mt = arg;
	uint64_t last_change = meta_change_count(mt->meta);
	uint64_t ckpt_change = last_change;
	uint64_t next_ckpt = now_mono_ns() + mt->o->checkpoint_interval_ns;
	uint64_t next_jrnl = now_mono_ns() + mt->o->journal_interval_ns;
	uint64_t next_report = now_mono_ns(), errors_seen = 0;
	uint64_t next_lease = now_mono_ns() + LEASE_TTL_S / 3 * 1000000000ULL;
	bool jrnl_failing = false;

	pthread_mutex_lock(&mt->maint_lock);
	while (!mt->maint_stop) {
		struct timespec ts;
		uint64_t now, wait = 1000000000ULL;

		/* a second, or less when the journal is due sooner (a
		 * journal_interval under a second is kept) */
		now = now_mono_ns();
		if (next_jrnl > now && next_jrnl - now < wait)
			wait = next_jrnl - now;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(wait % 1000000000ULL);
		ts.tv_sec += (time_t)(wait / 1000000000ULL + ts.tv_nsec /
				      1000000000L);
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&mt->maint_cond, &mt->maint_lock, &ts);
		if (mt->maint_stop)
			break;
		pthread_mutex_unlock(&mt->maint_lock);
		now = now_mono_ns();
		if (!mt->o->read_only && now >= next_lease) {
			int rc = volume_lease_renew(mt->store, mt->lease_owner,
						    LEASE_TTL_S);

			if (rc == -EBUSY)
				log_error("the volume's lease was taken over "
					  "by another mount; this mount "
					  "should be unmounted");
			else if (rc)
				log_warn("cannot renew the lease: %s",
					 strerror(-rc));
			next_lease = now + LEASE_TTL_S / 3 * 1000000000ULL;
		}
		/* at most every 10 s, as soon as something fails */
		if (!mt->o->read_only && now >= next_report &&
		    report_pending(mt, &errors_seen))
			next_report = now + 10ULL * 1000000000ULL;
		if (!mt->o->read_only) {
			uint64_t change = meta_change_count(mt->meta);

			/* a burst of changes is cut early, so that a journal
			 * entry (held twice in memory while it is framed)
			 * stays small whatever journal_interval is */
			if (change - last_change >= JOURNAL_EARLY_CHANGES &&
			    !jrnl_failing)
				next_jrnl = now;
			/* while the store fails, only every interval */
			if (now >= next_jrnl && change != last_change)
				send_journal(mt, change, &last_change,
					     &jrnl_failing);
			if (now >= next_jrnl)
				next_jrnl = now + mt->o->journal_interval_ns;
		}
		if (!mt->o->read_only && now >= next_ckpt) {
			uint64_t change = meta_change_count(mt->meta);

			if (change != ckpt_change &&
			    journal_checkpoint_due(mt->journal)) {
				int rc = journal_checkpoint(mt->journal);

				if (rc)
					log_error("checkpoint failed: %s",
						  strerror(-rc));
				/* the checkpoint itself changes config */
				ckpt_change = meta_change_count(mt->meta);
			} else if (change != last_change && !jrnl_failing) {
				/* no checkpoint worth its cost (journal.c):
				 * the journal takes the changes to the store
				 * at least this often */
				send_journal(mt, change, &last_change,
					     &jrnl_failing);
			}
			collect_garbage(mt);
			next_ckpt = now + mt->o->checkpoint_interval_ns;
		}
		pthread_mutex_lock(&mt->maint_lock);
	}
	pthread_mutex_unlock(&mt->maint_lock);
	return NULL;
}

static void tell_parent(struct mounted *mt, char status)
{
	if (mt->ready_fd >= 0) {
		if (write(mt->ready_fd, &status, 1) != 1) {
			/* the parent is gone: nobody to tell */
		}
		close(mt->ready_fd);
		mt->ready_fd = -1;
	}
}

static void on_ready(void *arg, int rc)
{
	struct mounted *mt = arg;

	if (rc)
		return; /* reported by the caller */
	if (mt->ready_fd >= 0) {
		int null = open("/dev/null", O_RDWR), logfd = -1;
		struct buf p = BUF_INIT;

		/* detach from the terminal now that the mount answers; what
		 * still reaches stderr (sanitizer reports, libfuse) goes to
		 * the log */
		if (buf_appendf(&p, "%s/metafuse.log", mt->cache_dir) == 0)
			logfd = open(buf_str(&p), O_WRONLY | O_APPEND |
				     O_CREAT | O_CLOEXEC, 0600);
		buf_free(&p);
		setsid();
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(logfd >= 0 ? logfd : null, 2);
			if (null > 2)
				close(null);
		}
		if (logfd > 2)
			close(logfd);
	}
	tell_parent(mt, 0);
}

static int default_cache_dir(const char *volume_id, struct buf *out)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");

	if (xdg && *xdg)
		return buf_appendf(out, "%s/metafuse/%s", xdg, volume_id);
	if (!home || !*home)
		return -ENOENT;
	return buf_appendf(out, "%s/.cache/metafuse/%s", home, volume_id);
}

/*
 * Bring the local database up to the store's state (newest checkpoint
 * plus journal) when it is missing, or when the store holds a checkpoint
 * newer than the last one this copy made durable: another mount wrote
 * after it.  Otherwise the local copy stays: it may hold changes the
 * store has not seen yet.
 */
static int prepare_db(struct mounted *mt, const char *db_path)
{
	struct buf local_id = BUF_INIT, blocks = BUF_INIT;
	uint64_t latest = 0, seq = 0, applied = 0;
	bool have_local = access(db_path, F_OK) == 0, restore = false;
	struct meta *m;
	int rc;

	rc = checkpoint_latest(mt->store, &latest);
	if (rc && rc != -ENOENT) {
		cli_error("cannot list the checkpoints of %s: %s",
			  mt->store->url, strerror(-rc));
		return rc;
	}
	if (have_local) {
		rc = meta_open(db_path, mt->vol.block_size, getuid(), getgid(),
			       &m);
		if (rc) {
			cli_error("cannot open the local metadata %s: %s",
				  db_path, strerror(-rc));
			return rc;
		}
		if (meta_config_get(m, "volume_id", &local_id) == 0 &&
		    strcmp(buf_str(&local_id), mt->vol.id)) {
			cli_error("cache directory %s belongs to another "
				  "volume (%s)", mt->cache_dir,
				  buf_str(&local_id));
			meta_close(m);
			buf_free(&local_id);
			return -EINVAL;
		}
		if (latest > meta_config_get_u64(m, "durable_seq", 0)) {
			struct meta_stats st;

			if (meta_stats(m, &st) == 0 && st.dirty_blocks)
				log_warn("the store holds newer metadata than "
					 "this cache; %" PRIu64 " block(s) "
					 "written here and never uploaded "
					 "are dropped", st.dirty_blocks);
			restore = true;
		}
		meta_close(m);
		buf_free(&local_id);
	} else if (latest) {
		restore = true;
	}
	if (!restore)
		return 0;
	if (isatty(2))
		fprintf(stderr, "metafuse: restoring metadata from %s ...\n",
			mt->store->url);
	rc = checkpoint_restore(mt->store, &mt->blob, db_path, &seq);
	if (rc) {
		cli_error("cannot restore the metadata of %s: %s",
			  mt->store->url, strerror(-rc));
		return rc;
	}
	/* cached blocks of the old database mean nothing to the new one */
	buf_appendf(&blocks, "%s/blocks", mt->cache_dir);
	rm_rf(buf_str(&blocks));
	buf_free(&blocks);
	rc = meta_open(db_path, mt->vol.block_size, getuid(), getgid(), &m);
	if (rc)
		return rc;
	rc = journal_replay(mt->store, &mt->blob, m, &applied);
	if (rc) {
		cli_error("cannot read the metadata journal of %s: %s",
			  mt->store->url, strerror(-rc));
		meta_close(m);
		return rc;
	}
	if (meta_blocks_forget_dirty(m) < 0)
		rc = -EIO;
	if (!rc)
		rc = meta_config_set_u64(m, "ckpt_seq", seq);
	if (!rc)
		rc = meta_config_set_u64(m, "durable_seq", seq);
	meta_close(m);
	log_info("restored metadata checkpoint %" PRIu64 " and %" PRIu64
		 " journal entries from %s", seq, applied, mt->store->url);
	mt->restored = true;
	return rc;
}

/* The store's newest checkpoint is the one this database last wrote. */
static bool checkpoint_is_current(struct mounted *mt)
{
	uint64_t latest;

	return checkpoint_latest(mt->store, &latest) == 0 &&
	       latest == meta_config_get_u64(mt->meta, "durable_seq", 0);
}

static void progress_cb(uint64_t left, void *arg)
{
	log_info("unmount: %" PRIu64 " KiB left to upload", left >> 10);
}

static int serve(struct mounted *mt, const char *mountpoint)
{
	struct mount_opts *o = mt->o;
	struct cache_config cc;
	struct fs_config fc;
	struct buf path = BUF_INIT, reg = BUF_INIT;
	int lock_fd = -1, rc, rc2;
	struct buf err = BUF_INIT;

#ifdef __GLIBC__
	/* Block-sized buffers come and go all the time; served from mmap
	 * they cost a page fault per 4 KiB each time (a tenth of a cold
	 * read's CPU).  Keep them in the heap, and keep freed heap. */
	mallopt(M_MMAP_THRESHOLD, (int)MF_MIN(4ULL * mt->vol.block_size +
					       (1U << 20), 64ULL << 20));
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
	/* one mount per cache directory, whatever the store */
	rc = mkdir_p(mt->cache_dir, 0700);
	if (rc) {
		cli_error("cannot create cache directory %s: %s",
			  mt->cache_dir, strerror(-rc));
		goto out;
	}
	buf_appendf(&path, "%s/lock", mt->cache_dir);
	lock_fd = open(buf_str(&path), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB)) {
		rc = -errno;
		cli_error("cache directory %s is in use by another metafuse "
			  "mount", mt->cache_dir);
		goto out;
	}
	if (!o->foreground) {
		buf_reset(&path);
		buf_appendf(&path, "%s/metafuse.log", mt->cache_dir);
		log_set_file(buf_str(&path));
	}
	if (!o->read_only) {
		rc = volume_lease_take(mt->store, LEASE_TTL_S, o->force,
				       mt->lease_owner,
				       sizeof(mt->lease_owner), &err);
		if (rc) {
			cli_error("%s", buf_str(&err));
			goto out;
		}
	}
	buf_reset(&path);
	buf_appendf(&path, "%s/meta.db", mt->cache_dir);
	rc = prepare_db(mt, buf_str(&path));
	if (rc)
		goto out_lease;
	rc = meta_open(buf_str(&path), mt->vol.block_size, getuid(), getgid(),
		       &mt->meta);
	if (rc) {
		cli_error("cannot open the metadata %s: %s", buf_str(&path),
			  strerror(-rc));
		goto out_lease;
	}
	meta_config_set(mt->meta, "volume_id", mt->vol.id);
	if (!o->read_only) {
		bool crashed;

		rc = journal_open(mt->meta, mt->store, &mt->blob,
				  mt->cache_dir, &mt->journal);
		if (rc) {
			cli_error("cannot start the metadata journal: %s",
				  strerror(-rc));
			goto out_meta;
		}
		buf_reset(&path);
		buf_appendf(&path, "%s/running", mt->cache_dir);
		crashed = access(buf_str(&path), F_OK) == 0;
		if (crashed)
			log_warn("the previous mount of this cache did not "
				 "end cleanly; finishing its work");
		/* after a clean unmount the store's newest checkpoint is
		 * this database: writing it again would only cost */
		if (!crashed && !mt->restored && checkpoint_is_current(mt)) {
			journal_assume_checkpointed(mt->journal);
			rc = 0;
		} else {
			rc = journal_checkpoint(mt->journal);
		}
		if (rc) {
			cli_error("cannot write the metadata to %s: %s",
				  mt->store->url, strerror(-rc));
			goto out_meta;
		}
		if (crashed || mt->restored)
			sweep_unknown_objects(mt);
		write_file_atomic(buf_str(&path), "", 0, 0600);
	}

	memset(&cc, 0, sizeof(cc));
	cc.dir = mt->cache_dir;
	cc.block_size = mt->vol.block_size;
	cc.cache_size = o->cache_size;
	cc.max_dirty = o->max_dirty;
	cc.whole_after = o->max_dirty / 32;
	cc.writeback_delay_ns = o->writeback_delay_ns;
	cc.upload_threads = o->upload_threads;
	/* with the kernel's writeback cache, writes of one file can reach
	 * us concurrently: no inline data then */
	cc.inline_max = o->writeback_cache ? 0 : (uint32_t)o->inline_max;
	cc.patches = mt->vol.format >= VOLUME_FORMAT_PATCHES;
	rc = cache_open(&cc, mt->store, &mt->blob, &meta_index_ops, mt->meta,
			&mt->cache);
	if (rc) {
		cli_error("cannot open the cache in %s: %s", mt->cache_dir,
			  strerror(-rc));
		goto out_meta;
	}
	if (mt->journal)
		journal_set_gate(mt->journal, cut_gate, mt->cache);
	memset(&fc, 0, sizeof(fc));
	fc.meta = mt->meta;
	fc.cache = mt->cache;
	fc.store = mt->store;
	fc.blob = &mt->blob;
	fc.journal = mt->journal;
	fc.read_only = o->read_only;
	fc.writeback_cache = o->writeback_cache;
	fc.attr_timeout = 1.0;
	fc.entry_timeout = 1.0;
	rc = fs_new(&fc, &mt->fs);
	if (rc)
		goto out_cache;
	if (!o->read_only)
		fs_purge_orphans(mt->fs);

	pthread_mutex_init(&mt->maint_lock, NULL);
	pthread_cond_init(&mt->maint_cond, NULL);
	if (pthread_create(&mt->maint, NULL, maintenance, mt) == 0)
		mt->maint_running = true;

	if (cli_registry_path(mountpoint, &reg) == 0) {
		struct buf line = BUF_INIT;

		/* read by `metafuse umount`: whom to wait for, where its
		 * log is */
		if (buf_appendf(&line, "%d\n%s\n", (int)getpid(),
				mt->cache_dir) == 0)
			write_file_atomic(buf_str(&reg), line.data, line.len,
					  0600);
		buf_free(&line);
	}
	log_info("mounting %s at %s (cache %s)", mt->store->url, mountpoint,
		 mt->cache_dir);
	/* the store said so at open, but that went to the terminal */
	if (o->store.o.no_verify_tls && !strncmp(mt->store->url, "s3://", 5))
		log_warn("TLS certificate verification is off "
			 "(-o no_verify_tls)");
	rc = fs_run(mt->fs, mountpoint, buf_str(&o->fuse_opts), on_ready, mt);
	if (rc && mt->ready_fd >= 0)
		cli_error("cannot mount at %s (see messages above)",
			  mountpoint);
	log_info("unmounted %s; uploading what is left", mountpoint);

	if (mt->maint_running) {
		pthread_mutex_lock(&mt->maint_lock);
		mt->maint_stop = true;
		pthread_cond_broadcast(&mt->maint_cond);
		pthread_mutex_unlock(&mt->maint_lock);
		pthread_join(mt->maint, NULL);
	}
	/* the kernel holds no inode any more: files deleted while open (or
	 * whose FORGET never came) go now rather than be uploaded */
	if (!o->read_only)
		fs_purge_orphans(mt->fs);
	rc2 = cache_flush_all(mt->cache, progress_cb, NULL);
	/* everything to the store: a checkpoint when one is worth its cost
	 * (journal.c), else the journal */
	if (!rc2 && !o->read_only &&
	    journal_changed_since_checkpoint(mt->journal))
		rc2 = journal_checkpoint_due(mt->journal) ?
			      journal_checkpoint(mt->journal) :
			      journal_sync(mt->journal);
	if (!rc2)
		collect_garbage(mt);
	if (rc2)
		log_error("final upload failed: %s", strerror(-rc2));
	if (!rc)
		rc = rc2;
	if (reg.len)
		unlink(buf_str(&reg));
	fs_free(mt->fs);
out_cache:
	if (mt->journal)
		journal_set_gate(mt->journal, NULL, NULL);
	rc2 = cache_close(mt->cache, 0);
	if (!rc)
		rc = rc2;
out_meta:
	journal_close(mt->journal);
	meta_close(mt->meta);
out_lease:
	if (!o->read_only && mt->lease_owner[0])
		volume_lease_release(mt->store, mt->lease_owner);
out:
	if (rc == 0) {
		log_info("volume %s is clean: everything is in the store",
			 mt->store->url);
		buf_reset(&path);
		buf_appendf(&path, "%s/running", mt->cache_dir);
		unlink(buf_str(&path));
	}
	if (lock_fd >= 0)
		close(lock_fd);
	buf_free(&path);
	buf_free(&reg);
	buf_free(&err);
	return rc;
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
	const char *const *pos;
	char real_mp[PATH_MAX];
	struct buf err = BUF_INIT, cdir = BUF_INIT;
	struct stat st;
	int npos, c, rc, status = 1;
	int pipefd[2] = { -1, -1 };

	memset(&mt, 0, sizeof(mt));
	mt.ready_fd = -1;
	mt.o = &o;
	cli_args_init(&a, &mount_cmd, argc, argv);
	while ((c = cli_getopt(&a)) > 0) {
		if (c == 'f')
			o.foreground = true;
		else if (c == OPT_FORCE)
			o.force = true;
		else if (c == 'o' && parse_opts(&o, optarg))
			goto out;
	}
	if (c < 0) {
		status = a.status;
		goto out;
	}
	pos = a.operand;
	npos = a.noperands;
	if (o.debug)
		log_set_level(LOG_DEBUG);

	/* the mountpoint */
	if (!realpath(pos[npos - 1], real_mp) || stat(real_mp, &st)) {
		cli_error("mountpoint %s: %s", pos[npos - 1], strerror(errno));
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		cli_error("mountpoint %s is not a directory", pos[npos - 1]);
		goto out;
	}
	if (cli_is_mountpoint(real_mp)) {
		cli_error("%s is already a mount point", real_mp);
		goto out;
	}

	/* the store and its volume */
	if (npos == 2) {
		rc = store_open_opts(pos[0], 0, &o.store.o, &mt.store, &err);
		if (rc) {
			cli_error("%s", buf_str(&err));
			goto out;
		}
	} else if (open_default_store(&mt.store)) {
		goto out;
	}
	if (cli_test_store_wrap(&mt.store))
		goto out_store;
	if (blob_global_init()) {
		cli_error("cannot initialise libsodium");
		goto out_store;
	}
	buf_reset(&err);
	if (volume_load(mt.store, &mt.vol, &err)) {
		cli_error("%s", buf_str(&err));
		goto out_store;
	}
	memcpy(mt.blob.hash_key, mt.vol.hash_key, BLOB_KEY_BYTES);
	mt.blob.names = mt.vol.names;
	mt.blob.zstd_level = 1;
	if (o.cache_dir) {
		rc = buf_appends(&cdir, o.cache_dir);
	} else {
		rc = default_cache_dir(mt.vol.id, &cdir);
	}
	if (rc) {
		cli_error("no cache_dir given and neither XDG_CACHE_HOME nor "
			  "HOME is set");
		goto out_store;
	}
	mt.cache_dir = (char *)cdir.data;
	if (o.max_dirty > o.cache_size)
		o.max_dirty = o.cache_size;

	if (!o.foreground) {
		pid_t pid;
		char verdict = 1;

		if (pipe(pipefd)) {
			cli_error("pipe: %s", strerror(errno));
			goto out_store;
		}
		fflush(NULL);
		pid = fork();
		if (pid < 0) {
			cli_error("fork: %s", strerror(errno));
			goto out_store;
		}
		if (pid > 0) {
			/* the parent: wait for the child's verdict */
			ssize_t n;

			close(pipefd[1]);
			do {
				n = read(pipefd[0], &verdict, 1);
			} while (n < 0 && errno == EINTR);
			close(pipefd[0]);
			if (n != 1) {
				int ws;

				waitpid(pid, &ws, 0);
				verdict = 1;
			}
			status = verdict ? 1 : 0;
			goto out_store;
		}
		close(pipefd[0]);
		mt.ready_fd = pipefd[1];
	}
	rc = serve(&mt, real_mp);
	tell_parent(&mt, rc ? 1 : 0);
	status = rc ? 1 : 0;
out_store:
	store_close(mt.store);
out:
	free(o.cache_dir);
	buf_free(&o.fuse_opts);
	cli_store_opts_free(&o.store);
	buf_free(&cdir);
	buf_free(&err);
	return status;
}
