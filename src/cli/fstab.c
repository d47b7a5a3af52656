/*
 * fstab.c - metafuse as mount(8), umount(8) and libmount see it (the
 * contract is in fstab.h).
 *
 * What this machine's util-linux (2.38) does, found by trying it:
 *   - `mount -t fuse.metafuse SPEC DIR -o OPTS` runs /sbin/mount.fuse.
 *     metafuse when it exists, else /sbin/mount.fuse (mount.fuse3), which
 *     runs `sh -c 'metafuse SPEC DIR -o OPTS'` with the environment
 *     mount(8) cleaned: no PATH (sh's default one), HOME=/root.  libmount
 *     takes out of OPTS what is its own (defaults, auto, noauto, comment=,
 *     x-*); mount.fuse3 takes out nofail, _netdev, user, users.  Whatever
 *     else reaches metafuse is metafuse's to accept or refuse.
 *   - `umount DIR` of a FUSE mount runs /sbin/umount.fuse DIR -n when it
 *     exists, and never looks for umount.fuse.metafuse: it learns the
 *     type from statfs(), which says "fuse".  Unless DIR has a line in
 *     the utab: then the type comes from the mount table
 *     ("fuse.metafuse"), and a helper=NAME option in that line sends
 *     every unmount of DIR, by root or not, to /sbin/umount.NAME.  So a
 *     metafuse mount made through mount(8) records helper=metafuse
 *     (fstab_utab_add()), /sbin/umount.metafuse waits for the upload, and
 *     nothing is installed in a place other FUSE filesystems use.
 *   - libmount pairs a utab line with its mount by source and target: the
 *     mount's source must be STORE as mount(8) gave it (the daemon's
 *     fsname=, cmd_mount.c), not "metafuse".
 *   - A line whose mount went away without umount(8) (`metafuse umount`,
 *     fusermount3, a daemon ended by SIGTERM, a crash) stays in the utab:
 *     `metafuse umount` unmounts through `umount -i` when the utab names
 *     the mount, so that libmount drops the line, and a new mount drops
 *     the lines left for its mountpoint before it writes its own.
 *
 * Invariants:
 *   1. Only fstab_utab_add() prints (one warning line, the mount being
 *      made); the rest leaves it to its callers.
 *   2. The commands run are mount(8) and umount(8) with -i (no helper),
 *      so a helper never runs itself again.
 *   3. A utab line is added only for a mount that answers, and the lines
 *      dropped are those of its mountpoint only.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/fstab.h"

bool fstab_opt_ignored(const char *opt)
{
	static const char *const plain[] = {
		"defaults", "auto", "noauto", "nofail", "_netdev", "user",
		"users", "nouser", "owner", "group",
	};
	static const char *const keyed[] = {
		"user=", "comment=", "helper=", "uhelper=",
	};
	size_t i;

	if (!strncmp(opt, "x-", 2))
		return true;
	for (i = 0; i < ARRAY_SIZE(plain); i++)
		if (!strcmp(opt, plain[i]))
			return true;
	for (i = 0; i < ARRAY_SIZE(keyed); i++)
		if (!strncmp(opt, keyed[i], strlen(keyed[i])))
			return true;
	return false;
}

int fstab_escape_fsname(const char *s, struct buf *out)
{
	for (; *s; s++) {
		if ((*s == ',' || *s == '\\') && buf_appends(out, "\\"))
			return -ENOMEM;
		if (buf_append(out, s, 1))
			return -ENOMEM;
	}
	return 0;
}

const char *fstab_utab_path(void)
{
	const char *p = getenv("LIBMOUNT_UTAB");

	return p && *p ? p : "/run/mount/utab";
}

bool fstab_utab_line_names(const char *line, const char *target)
{
	const char *p = line;

	while (*p) {
		if (!strncmp(p, "TARGET=", 7)) {
			const char *t = target;

			for (p += 7; *p && *p != ' ' && *p != '\n'; t++) {
				char c = *p++;

				if (c == '\\' && p[0] >= '0' && p[0] <= '3' &&
				    p[1] >= '0' && p[1] <= '7' &&
				    p[2] >= '0' && p[2] <= '7') {
					c = (char)((p[0] - '0') * 64 +
						   (p[1] - '0') * 8 +
						   (p[2] - '0'));
					p += 3;
				}
				if (c != *t)
					return false;
			}
			return *t == '\0';
		}
		p = strchr(p, ' ');
		if (!p)
			break;
		p++;
	}
	return false;
}

bool fstab_utab_has(const char *target)
{
	FILE *f = fopen(fstab_utab_path(), "re");
	char line[8192];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = fstab_utab_line_names(line, target);
	fclose(f);
	return found;
}

/* Run argv (argv[0] looked up in PATH, or the C library's default path
 * when mount(8) left none) with no output: its exit status, or -1. */
static int run_quiet(const char *const argv[])
{
	pid_t pid;
	int ws;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &ws, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/*
 * Drop the utab's lines for target, which was no mount point before ours
 * (cmd_mount.c checks): left by a mount that went without umount(8) (a
 * daemon that ended on SIGTERM, a crash), they would stay after ours.
 * `umount --fake -i` drops the newest line for target and unmounts
 * nothing.
 */
static void utab_drop_stale(const char *target)
{
	const char *argv[] = { "umount", "--fake", "-i", "--no-canonicalize",
			       "--", target, NULL };
	int i;

	for (i = 0; i < 16 && fstab_utab_has(target); i++)
		if (run_quiet(argv) != 0)
			break;
}

void fstab_utab_add(const char *store, const char *target, const char *opts)
{
	struct buf o = BUF_INIT;
	const char *why = NULL;

	if (geteuid() != 0)
		return; /* only root writes the utab */
	if (buf_appendf(&o, "helper=metafuse%s%s", opts && *opts ? "," : "",
			opts ? opts : "")) {
		why = "out of memory";
		goto out;
	}
	utab_drop_stale(target);
	{
		const char *argv[] = { "mount", "--fake", "-i",
				       "--no-canonicalize", "-t",
				       "fuse.metafuse", "-o", buf_str(&o),
				       "--", store, target, NULL };

		if (run_quiet(argv) != 0 || !fstab_utab_has(target))
			why = "`mount --fake -i` failed";
	}
out:
	if (why)
		fprintf(stderr, "metafuse: warning: umount(8) of %s will not "
			"wait for the upload (%s; 'metafuse umount' does)\n",
			target, why);
	buf_free(&o);
}

int fstab_umount_internal(const char *target)
{
	const char *argv[] = { "umount", "-i", "--", target, NULL };

	return run_quiet(argv) == 0 ? 0 : -1;
}
