/*
 * main.c - the metafuse program: the top-level help and version, the
 * table that hands argv to a command (each reads its options with
 * cli_getopt(), args.c), and the helpers the commands share.  Run as
 * mount.metafuse, mount.fuse.metafuse or umount.metafuse (links in
 * /sbin), it is mount(8)'s helper (mount_helper.c); as `metafuse STORE
 * MOUNTPOINT -o OPTS` (mount.fuse3's call), it mounts.
 *
 * Files named here:
 *   - the default volume: $XDG_DATA_HOME/metafuse/default, else
 *     ~/.local/share/metafuse/default (mount creates it on first use);
 *   - the registry: a file a mountpoint's daemon writes (daemon.c:
 *     "PID\nCACHE_DIR\n") and umount reads to know whom to wait for, in
 *     /run/metafuse as root, else $XDG_RUNTIME_DIR/metafuse, else
 *     /tmp/metafuse-UID; named after the FNV-1a hash of the real
 *     mountpoint.
 */
#include "util/compat.h"

#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "util/util.h"

void cli_error(const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "metafuse: %s\n", line);
}

int cli_default_store(struct buf *out)
{
	const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");

	if (xdg && *xdg)
		return buf_appendf(out, "%s/metafuse/default", xdg);
	if (!home || !*home)
		return -ENOENT;
	return buf_appendf(out, "%s/.local/share/metafuse/default", home);
}

int cli_registry_path(const char *real_mountpoint, struct buf *out)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	uint64_t h = 0xcbf29ce484222325ULL;
	const char *p;
	int rc;

	for (p = real_mountpoint; *p; p++) {
		h ^= (uint8_t)*p;
		h *= 0x100000001b3ULL;
	}
	if (geteuid() == 0)
		rc = buf_appends(out, "/run/metafuse");
	else if (xdg && *xdg)
		rc = buf_appendf(out, "%s/metafuse", xdg);
	else
		rc = buf_appendf(out, "/tmp/metafuse-%u", (unsigned)geteuid());
	if (rc)
		return rc;
	rc = mkdir_p(buf_str(out), 0700);
	if (rc)
		return rc;
	return buf_appendf(out, "/mnt-%016" PRIx64, h);
}

/* Undo mountinfo's octal escapes of len bytes of s into out (size bytes). */
static void mountinfo_unescape(const char *s, size_t len, char *out,
			       size_t size)
{
	size_t o = 0;

	while (len && o + 1 < size) {
		if (len >= 4 && s[0] == '\\' && s[1] >= '0' && s[1] <= '3') {
			out[o++] = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
					  (s[3] - '0'));
			s += 4;
			len -= 4;
		} else {
			out[o++] = *s++;
			len--;
		}
	}
	out[o] = 0;
}

/* One line of mountinfo: its mount point, and what follows " - " (type,
 * source, super options) into mi; false for a line of another shape. */
static bool mountinfo_line(char *line, char *mp, size_t mpsize,
			   struct cli_mount *mi)
{
	char *p = line, *end, *sep, *uid;
	int field;

	for (field = 1; field < 5 && p; field++)
		if ((p = strchr(p, ' ')))
			p++;
	if (!p || !(end = strchr(p, ' ')))
		return false;
	mountinfo_unescape(p, (size_t)(end - p), mp, mpsize);
	if (!(sep = strstr(end, " - ")))
		return false;
	sep += 3;
	end = strchr(sep, ' ');
	snprintf(mi->fstype, sizeof(mi->fstype), "%.*s",
		 (int)(end ? end - sep : (ptrdiff_t)strlen(sep)), sep);
	mi->source[0] = 0;
	if (end && (p = strchr(end + 1, ' ')))
		mountinfo_unescape(end + 1, (size_t)(p - end - 1), mi->source,
				   sizeof(mi->source));
	uid = strstr(sep, "user_id=");
	mi->uid = uid ? strtol(uid + 8, NULL, 10) : -1;
	return true;
}

int cli_mount_find(const char *real_path, struct cli_mount *out)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[8192], mp[PATH_MAX];
	struct cli_mount mi;
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (mountinfo_line(line, mp, sizeof(mp), &mi) &&
		    !strcmp(mp, real_path)) {
			*out = mi;
			rc = 0;
		}
	fclose(f);
	return rc;
}

int cli_is_mountpoint(const char *real_path)
{
	struct cli_mount mi;

	return cli_mount_find(real_path, &mi) == 0;
}

int cli_mount_rw_of(const char *source, char *mp, size_t size)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[8192], where[PATH_MAX];
	struct cli_mount mi;
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while (rc && fgets(line, sizeof(line), f)) {
		/* field 6: the mount's options, "ro," or "rw," first */
		char *opts = line;
		int i;

		for (i = 1; i < 6 && opts; i++)
			if ((opts = strchr(opts, ' ')))
				opts++;
		if (opts && !strncmp(opts, "rw", 2) &&
		    mountinfo_line(line, where, sizeof(where), &mi) &&
		    strstr(mi.fstype, "metafuse") &&
		    !strcmp(mi.source, source)) {
			snprintf(mp, size, "%s", where);
			rc = 0;
		}
	}
	fclose(f);
	return rc;
}

/* argv[1] names the command, which reads argv[1..] with cli_getopt(); the
 * order is the top-level help's */
const struct cli_cmd *const cli_commands[] = {
	&cli_cmd_mkfs, &cli_cmd_mount, &cli_cmd_umount, &cli_cmd_fsck,
	&cli_cmd_gc,   &cli_cmd_stats,
	&cli_cmd_clone, &cli_cmd_snapshot, &cli_cmd_passwd,
	&cli_cmd_tune,
	&cli_cmd_help,   NULL,
};

const struct cli_cmd *const cli_helpers[] = {
	&cli_cmd_mount_helper,
	&cli_cmd_umount_helper,
	NULL,
};

/* The helpers of mount(8) and umount(8) are links to this program. */
static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} helpers[] = {
	{ "mount.metafuse", cmd_mount_helper },
	{ "mount.fuse.metafuse", cmd_mount_helper },
	{ "umount.metafuse", cmd_umount_helper },
};

int main(int argc, char **argv)
{
	const char *cmd, *base = argc > 0 ? strrchr(argv[0], '/') : NULL;
	struct stat st;
	size_t i;

	base = base ? base + 1 : argc > 0 ? argv[0] : "";
	for (i = 0; i < ARRAY_SIZE(helpers); i++)
		if (!strcmp(base, helpers[i].name))
			return helpers[i].run(argc, argv);
	if (argc < 2) {
		cli_usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		cli_usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
		printf("metafuse %s\n", METAFUSE_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "unmount"))
		cmd = "umount";
	for (i = 0; cli_commands[i]; i++)
		if (!strcmp(cmd, cli_commands[i]->name))
			return cli_commands[i]->run(argc - 1, argv + 1);
	/* mount.fuse3 runs `metafuse STORE MOUNTPOINT -o OPTS`; a STORE is a
	 * path or a URL, not a mistyped command */
	if (argc >= 3 && cmd[0] != '-' && argv[2][0] != '-' &&
	    (strchr(cmd, '/') || stat(cmd, &st) == 0))
		return cmd_mount_fuse3(argc, argv);
	cli_error("unknown command '%s' (try 'metafuse --help')", cmd);
	return 2;
}
