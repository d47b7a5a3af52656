/*
 * mount_helper.c - metafuse as mount(8)'s and umount(8)'s helper:
 * /sbin/mount.metafuse (also named mount.fuse.metafuse) and
 * /sbin/umount.metafuse are links to the metafuse program, which main.c
 * sends here by the name it was run as.
 *
 *   mount.metafuse SPEC DIR [-sfnv] [-o OPTS] [-t TYPE] [-N NS]
 *     mount(8) runs it for `-t metafuse` and, before mount.fuse3, for
 *     `-t fuse.metafuse` (an fstab line of either type).  SPEC is the
 *     STORE; OPTS are the mount options (mount_opts_parse(), which
 *     ignores mount(8)'s and systemd's own).  -s: an unknown option is a
 *     warning; -f: nothing is mounted (mount -f); -n: no utab line;
 *     -v: accepted; -N: mount in that mount namespace.  The mount is
 *     recorded in the utab with helper=metafuse (fstab.c says why), so
 *     that umount(8) of DIR runs:
 *   umount.metafuse DIR [-flnrv] [-N NS] [-t TYPE]
 *     umount_wait() (cmd_tools.c): unmount, then wait until the daemon
 *     has put everything in the store, as `metafuse umount` does.  -l
 *     detaches and does not wait; -f aborts the FUSE connection (the
 *     daemon then uploads what it has); -r remounts read-only when the
 *     mount is busy; -n and -v are accepted.
 *
 * Invariants:
 *   1. A helper prints one line for each thing that went wrong, and its
 *      exit status is the one mount(8) expects of a helper (0 done, else
 *      failed), which mount(8) passes on.
 *   2. A helper never acts as metafuse on what is not metafuse's: a
 *      mount of another TYPE is refused; the unmount of another TYPE
 *      (a utab line left behind by a metafuse mount that ended without
 *      umount(8), now naming another mount) is what umount(8) does
 *      without a helper: umount2() and no waiting.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/mount_int.h"

static const char mount_helper_help[] =
	"usage: mount.metafuse STORE MOUNTPOINT [-sfnv] [-o OPT[,OPT...]] "
	"[-t TYPE] [-N NS]\n"
	"\n"
	"mount(8)'s helper for `mount -t metafuse` and `-t fuse.metafuse` (and\n"
	"their fstab lines): mounts the volume in STORE at MOUNTPOINT as\n"
	"`metafuse mount -o OPTS STORE MOUNTPOINT` does, and records it so that\n"
	"umount(8) waits for the upload.  OPTS as in 'metafuse mount --help'.\n"
	"\n"
	"  -s       sloppy: warn about unknown options instead of failing\n"
	"  -f       fake: mount nothing\n"
	"  -n       do not record the mount in /run/mount/utab (umount(8) then\n"
	"           does not wait)\n"
	"  -v       accepted\n"
	"  -t TYPE  metafuse or fuse.metafuse\n"
	"  -N NS    mount in the mount namespace NS (a /proc/PID/ns/mnt)\n";

const struct cli_cmd cli_cmd_mount_helper = {
	.name = "mount",
	.help = mount_helper_help,
	.usage = "usage: mount.metafuse STORE MOUNTPOINT [-sfnv] "
		 "[-o OPT[,OPT...]] [-t TYPE] [-N NS]",
	.shortopts = "sfnvo:t:N:",
	.no_arg_msg = "-o, -t and -N need a value",
	.min_operands = 2,
	.max_operands = 2,
	.flag_status = 1,
};

static const char umount_helper_help[] =
	"usage: umount.metafuse MOUNTPOINT [-flnrv] [-t TYPE] [-N NS]\n"
	"\n"
	"umount(8)'s helper for a metafuse mount made through mount(8): "
	"unmounts,\nthen waits until the daemon has uploaded everything, as\n"
	"`metafuse umount` does.\n"
	"\n"
	"  -l       lazy: detach now and do not wait (the daemon uploads once\n"
	"           the last open file is closed)\n"
	"  -f       force: abort the FUSE connection, then wait\n"
	"  -r       when busy, remount read-only\n"
	"  -n, -v   accepted\n"
	"  -t TYPE  fuse.metafuse or metafuse\n"
	"  -N NS    unmount in the mount namespace NS\n";

const struct cli_cmd cli_cmd_umount_helper = {
	.name = "umount",
	.help = umount_helper_help,
	.usage = "usage: umount.metafuse MOUNTPOINT [-flnrv] [-t TYPE] "
		 "[-N NS]",
	.shortopts = "flnrvt:N:",
	.no_arg_msg = "-t and -N need a value",
	.min_operands = 1,
	.max_operands = 1,
	.flag_status = 1,
};

static bool is_our_type(const char *type)
{
	return !strcmp(type, "metafuse") || !strcmp(type, "fuse.metafuse");
}

/* Invariant 2: 0 for metafuse's types, else -1 (printed). */
static int check_type(const char *type)
{
	if (is_our_type(type))
		return 0;
	cli_error("type '%s' is not metafuse's (metafuse or fuse.metafuse)",
		  type);
	return -1;
}

/* Move to the mount namespace at path (mount(8)'s -N): 0 or -1 (printed). */
static int enter_namespace(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || setns(fd, CLONE_NEWNS)) {
		cli_error("mount namespace %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int cmd_mount_helper(int argc, char **argv)
{
	struct mount_opts o;
	struct buf lists = BUF_INIT;
	struct cli_args a;
	bool fake = false, nomtab = false;
	int c, status = 1;

	mount_opts_init(&o);
	cli_args_init(&a, &cli_cmd_mount_helper, argc, argv);
	while ((c = cli_getopt(&a)) > 0) {
		if (c == 's')
			o.sloppy = true;
		else if (c == 'f')
			fake = true;
		else if (c == 'n')
			nomtab = true;
		else if (c == 't' && check_type(optarg))
			goto out;
		else if (c == 'N' && enter_namespace(optarg))
			goto out;
		else if (c == 'o' &&
			 buf_appendf(&lists, "%s%s", lists.len ? "," : "",
				     optarg)) {
			cli_error("out of memory");
			goto out;
		}
	}
	if (c < 0) {
		status = a.status;
		goto out;
	}
	/* after -s, wherever it stood */
	if (mount_opts_parse(&o, buf_str(&lists)))
		goto out;
	if (fake) {
		status = 0;
		goto out;
	}
	if (!nomtab)
		o.utab_opts = buf_str(&lists);
	status = mount_volume(&o, a.operand[0], a.operand[1]);
out:
	mount_opts_free(&o);
	buf_free(&lists);
	return status;
}

int cmd_umount_helper(int argc, char **argv)
{
	struct cli_args a;
	unsigned flags = UMOUNT_HELPER;
	int c;

	cli_args_init(&a, &cli_cmd_umount_helper, argc, argv);
	while ((c = cli_getopt(&a)) > 0) {
		if (c == 'l')
			flags |= UMOUNT_LAZY;
		else if (c == 'f')
			flags |= UMOUNT_FORCE;
		else if (c == 'r')
			flags |= UMOUNT_RDONLY;
		else if (c == 't' && !is_our_type(optarg))
			flags |= UMOUNT_FOREIGN; /* invariant 2 */
		else if (c == 'N' && enter_namespace(optarg))
			return 1;
	}
	if (c < 0)
		return a.status;
	return umount_wait(a.operand[0], flags);
}
