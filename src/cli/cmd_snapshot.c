/*
 * cmd_snapshot.c - `metafuse snapshot create|list|delete TARGET [NAME]`:
 * named snapshots of a volume, kept until deleted, mounted with
 * `metafuse mount --snapshot NAME`.
 *
 * TARGET is either the mountpoint of a read-write mount, whose daemon
 * does the work (the FS_IOC_SNAP ioctls on a descriptor of the mount,
 * fs/fs_snap.c; the caller's dirty pages are written back by syncfs()
 * first, the daemon uploads its own), or the STORE of a volume nobody
 * mounts, done here with the volume's lease (as `metafuse gc` does):
 * its state restored, changed, written back as a checkpoint.  A STORE
 * that is mounted read-write is refused with the mountpoint to use.
 *
 * Invariants
 *   1. Every failure is one line on stderr and exit status 1 (2 for bad
 *      usage); the name is checked before anything is opened, and a
 *      failed create or delete changes nothing.
 *   2. The answer comes once the change is durable in the store.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/store_opts.h"
#include "fs/fs.h"
#include "util/progress.h"
#include "util/util.h"
#include "volume/journal.h"
#include "volume/snapshot.h"

static const char snapshot_help[] =
	"usage: metafuse snapshot create [-o OPT[,OPT...]] TARGET NAME\n"
	"       metafuse snapshot list [-o OPT[,OPT...]] TARGET\n"
	"       metafuse snapshot delete [-o OPT[,OPT...]] TARGET NAME\n"
	"\n"
	"A snapshot keeps the volume's state as it is when it is made: every\n"
	"file, name and attribute, and the data in the store that they need,\n"
	"until the snapshot is deleted.  `metafuse mount --snapshot NAME`\n"
	"mounts it read-only, beside the volume's read-write mount.\n"
	"\n"
	"TARGET is the mountpoint of a read-write mount (everything written\n"
	"before the command is in the snapshot, made durable as fsync would),\n"
	"or the STORE of a volume that is not mounted (the command then takes\n"
	"the volume's lease for create and delete).  Only root and the user\n"
	"who mounted may ask a mount.\n"
	"\n"
	"  create   make snapshot NAME (1 to 255 bytes, no '/' and no\n"
	"           control characters, not a name already there)\n"
	"  list     each snapshot: name, time (UTC), and the bytes in the\n"
	"           store that only it keeps (what deleting it would free)\n"
	"  delete   delete snapshot NAME; the data only it kept is freed by\n"
	"           the next garbage collection\n"
	"\n" CLI_STORE_OPTS_HELP;

const struct cli_cmd cli_cmd_snapshot = {
	.name = "snapshot",
	.summary = "create, list or delete named snapshots of a volume",
	.run = cmd_snapshot,
	.help = snapshot_help,
	.usage = "usage: metafuse snapshot create|list|delete "
		 "[-o OPT[,OPT...]] TARGET [NAME]",
	.shortopts = "o:",
	.min_operands = 2,
	.max_operands = 3,
	.flag_status = 2,
};

enum verb { V_CREATE, V_LIST, V_DELETE };

/* "2026-12-06T10:15:00Z" */
static void iso_utc(int64_t ns, char *out, size_t size)
{
	time_t t = (time_t)(ns / 1000000000LL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void print_entry(const struct fs_snap_entry *e)
{
	char when[32], size[32];

	iso_utc(e->time_ns, when, sizeof(when));
	progress_fmt_bytes(e->alone_bytes, size, sizeof(size));
	printf("%s\t%s\t%s\t(%" PRIu64 " bytes)\n", e->name, when, size,
	       e->alone_bytes);
}

static void entry_of(const struct meta_snap *sn, struct fs_snap_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->time_ns = sn->time_ns;
	e->alone_bytes = sn->alone_bytes;
	e->objects = sn->objects;
	snprintf(e->name, sizeof(e->name), "%s", sn->name);
}

/* name with its control characters as \xNN, for a message of one line */
static void printable_name(const char *name, char *out, size_t size)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t n = 0;

	for (; *p && n + 5 < size; p++)
		n += (size_t)snprintf(out + n, size - n,
				      *p < 0x20 || *p == 0x7f ? "\\x%02x" :
								"%c", *p);
	out[n] = 0;
}

/* The one line for a name refused (invariant 1). */
static int name_refused(int rc, const char *name)
{
	char shown[4 * META_SNAP_NAME_MAX + 8];

	if (rc == -ENAMETOOLONG)
		cli_error("snapshot: a snapshot name is at most %d bytes",
			  META_SNAP_NAME_MAX);
	else if (!*name)
		cli_error("snapshot: a snapshot name cannot be empty");
	else {
		printable_name(name, shown, sizeof(shown));
		cli_error("snapshot: '%s': a snapshot name cannot hold '/' or "
			  "control characters", shown);
	}
	return 1;
}

/* ---- through the daemon of a mount ---- */

/* The names the mount has, as "'a', 'b'", for a message. */
static void mount_names(int fd, struct buf *out)
{
	struct fs_snap_list l;
	size_t total = 0;
	uint32_t i;

	memset(&l, 0, sizeof(l));
	do {
		if (ioctl(fd, FS_IOC_SNAP_LIST, &l))
			break;
		for (i = 0; i < l.n; i++, total++) {
			buf_appendf(out, "%s'%s'", total ? ", " : "",
				    l.e[i].name);
			l.after = l.e[i].id;
		}
	} while (l.n == FS_SNAP_LIST_MAX);
	if (!total)
		buf_appends(out, "none");
}

static int mount_list(int fd, const char *target)
{
	struct fs_snap_list l;
	uint32_t i;

	memset(&l, 0, sizeof(l));
	do {
		if (ioctl(fd, FS_IOC_SNAP_LIST, &l)) {
			if (errno == EPERM)
				cli_error("snapshot: %s: only root and the "
					  "user who mounted it may see its "
					  "snapshots", target);
			else
				cli_error("snapshot: %s: %s", target,
					  errno == ENOTTY ? "not a metafuse "
					  "mount that has snapshots" :
					  strerror(errno));
			return 1;
		}
		for (i = 0; i < l.n; i++) {
			print_entry(&l.e[i]);
			l.after = l.e[i].id;
		}
	} while (l.n == FS_SNAP_LIST_MAX);
	return 0;
}

static void mount_failed(int fd, int err, enum verb v, const char *target,
			 const char *name)
{
	struct buf names = BUF_INIT;

	switch (err) {
	case EEXIST:
		cli_error("snapshot: %s already has a snapshot named '%s'",
			  target, name);
		break;
	case ENOENT:
		mount_names(fd, &names);
		cli_error("snapshot: %s has no snapshot named '%s' (there are: "
			  "%s)", target, name, buf_str(&names));
		break;
	case EROFS:
		cli_error("snapshot: %s is a read-only mount (of the volume, "
			  "a snapshot or a past moment): %s a snapshot on the "
			  "read-write mount", target,
			  v == V_CREATE ? "make" : "delete");
		break;
	case EPERM:
		cli_error("snapshot: %s: only root and the user who mounted "
			  "it may change its snapshots", target);
		break;
	case ENOTTY:
		cli_error("snapshot: %s is not a metafuse mount that has "
			  "snapshots", target);
		break;
	default:
		cli_error("snapshot: %s: %s (see the mount's log)", target,
			  strerror(err));
	}
	buf_free(&names);
}

static int on_mount(enum verb v, const char *target, const char *name)
{
	struct fs_snap_req r;
	int fd, status = 1;

	fd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		cli_error("snapshot: %s: %s", target, strerror(errno));
		return 1;
	}
	if (v == V_LIST) {
		status = mount_list(fd, target);
		goto out;
	}
	memset(&r, 0, sizeof(r));
	r.op = v == V_CREATE ? FS_SNAP_CREATE : FS_SNAP_DELETE;
	snprintf(r.e.name, sizeof(r.e.name), "%s", name);
	/* the kernel's dirty pages (writeback cache) reach the daemon */
	if (v == V_CREATE && syncfs(fd) < 0) {
		cli_error("snapshot: %s: sync: %s", target, strerror(errno));
		goto out;
	}
	if (ioctl(fd, FS_IOC_SNAP, &r)) {
		mount_failed(fd, errno, v, target, name);
		goto out;
	}
	status = 0;
	if (v == V_CREATE)
		printf("snapshot '%s' of %s made (%" PRIu64 " objects held)\n",
		       name, target, r.e.objects);
	else
		printf("snapshot '%s' of %s deleted\n", name, target);
out:
	close(fd);
	return status;
}

/* ---- offline, on the store of a volume nobody mounts ---- */

static int offline_list(struct offline_vol *ov)
{
	struct meta_snap sn[16];
	struct fs_snap_entry e;
	uint64_t after = 0;
	size_t n, i;

	do {
		if (meta_snap_list(ov->m, after, sn, ARRAY_SIZE(sn), &n)) {
			cli_error("snapshot: cannot read the snapshots of %s",
				  ov->s->url);
			return 1;
		}
		for (i = 0; i < n; i++) {
			entry_of(&sn[i], &e);
			print_entry(&e);
			after = sn[i].id;
		}
	} while (n == ARRAY_SIZE(sn));
	return 0;
}

/* Create or delete in the restored state; a checkpoint of the result. */
static int offline_change(struct offline_vol *ov, enum verb v,
			  const char *name)
{
	struct buf err = BUF_INIT;
	struct journal *j = NULL;
	struct meta_snap sn;
	int rc;

	/* dirty rows of a crashed mount name nothing in the store */
	rc = meta_blocks_forget_dirty(ov->m) < 0 ? -EIO : 0;
	if (!rc)
		rc = journal_open(ov->m, ov->s, &ov->bc, ov->dir, &j);
	if (rc) {
		cli_error("snapshot: cannot prepare the metadata of %s: %s",
			  ov->s->url, strerror(-rc));
		goto out;
	}
	if (v == V_CREATE)
		rc = snapshot_create(ov->m, j, ov->s, &ov->v, ov->dir, name,
				     &sn, &err);
	else
		rc = snapshot_delete(ov->m, j, ov->s, name, &err);
	if (rc == -EEXIST)
		cli_error("snapshot: %s already has a snapshot named '%s'",
			  ov->s->url, name);
	else if (rc)
		cli_error("snapshot: %s", buf_str(&err));
	if (!rc) {
		rc = journal_checkpoint(j);
		if (rc)
			cli_error("snapshot: done, but the new checkpoint "
				  "could not be written: %s (the journal "
				  "holds it)", strerror(-rc));
		rc = 0;
	}
	if (!rc && v == V_CREATE)
		printf("snapshot '%s' of %s made (%" PRIu64 " objects held)\n",
		       name, ov->s->url, sn.objects);
	else if (!rc)
		printf("snapshot '%s' of %s deleted\n", name, ov->s->url);
out:
	journal_close(j);
	buf_free(&err);
	return rc ? 1 : 0;
}

/* TARGET as a STORE: refused while it is mounted read-write. */
static int on_store(enum verb v, const char *target, const char *name,
		    struct cli_store_opts *so)
{
	struct offline_vol ov = { 0 };
	struct buf err = BUF_INIT;
	char owner[64] = "", mp[PATH_MAX], real[PATH_MAX];
	int rc, status = 1;

	if (!cli_mount_rw_of(target, mp, sizeof(mp)) ||
	    (realpath(target, real) &&
	     !cli_mount_rw_of(real, mp, sizeof(mp)))) {
		cli_error("snapshot: %s is mounted at %s: give the mountpoint "
			  "as TARGET", target, mp);
		return 1;
	}
	if (offline_open(&ov, target, &so->o, so->passphrase_file))
		goto out;
	if (v != V_LIST) {
		rc = volume_lease_take(ov.s, 30, false, owner, sizeof(owner),
				       &err);
		if (rc) {
			owner[0] = 0;
			cli_error("snapshot: %s", buf_str(&err));
			goto out;
		}
	}
	rc = offline_restore(&ov);
	if (rc == 1) {
		cli_error("snapshot: volume %s was never mounted: it has no "
			  "state to snapshot yet", ov.s->url);
		goto out;
	}
	if (rc == 0)
		status = v == V_LIST ? offline_list(&ov) :
				       offline_change(&ov, v, name);
out:
	if (owner[0])
		volume_lease_release(ov.s, owner);
	offline_close(&ov);
	buf_free(&err);
	return status;
}

int cmd_snapshot(int argc, char **argv)
{
	struct cli_store_opts so = { 0 };
	const char *target, *name = NULL;
	char real[PATH_MAX];
	struct cli_mount mi;
	struct cli_args a;
	enum verb v;
	int c, rc, status = 2;

	cli_args_init(&a, &cli_cmd_snapshot, argc, argv);
	while ((c = cli_getopt(&a)) > 0)
		if (c == 'o' && cli_store_opts_parse(&so, optarg, NULL))
			goto out;
	if (c < 0) {
		status = a.status;
		goto out;
	}
	if (!strcmp(a.operand[0], "create")) {
		v = V_CREATE;
	} else if (!strcmp(a.operand[0], "list")) {
		v = V_LIST;
	} else if (!strcmp(a.operand[0], "delete")) {
		v = V_DELETE;
	} else {
		cli_error("snapshot: unknown action '%s' (create, list or "
			  "delete)", a.operand[0]);
		goto out;
	}
	if ((v == V_LIST) != (a.noperands == 2)) {
		fprintf(stderr, "%s\n", cli_cmd_snapshot.usage);
		goto out;
	}
	target = a.operand[1];
	status = 1;
	if (v != V_LIST) {
		name = a.operand[2];
		rc = meta_snap_name_check(name);
		if (rc) {
			status = name_refused(rc, name);
			goto out;
		}
	}
	if (realpath(target, real) && cli_mount_find(real, &mi) == 0 &&
	    strstr(mi.fstype, "metafuse"))
		status = on_mount(v, real, name);
	else
		status = on_store(v, target, name, &so);
out:
	cli_store_opts_free(&so);
	return status;
}
