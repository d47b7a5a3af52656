/*
 * cli.h - the commands of the metafuse program, which main.c dispatches:
 * cmd_mount() in cmd_mount.c (its daemon in daemon.c), cmd_mkfs() and
 * cmd_umount() in cmd_tools.c, cmd_fsck() in cmd_fsck.c, cmd_gc() in
 * cmd_gc.c.  Each takes the arguments after "metafuse" (argv[0]: the
 * command's name) and returns the process exit status; errors are
 * printed as one line on stderr.  Also what the commands share: option
 * parsing (args.c), paths and messages (main.c), offline volumes
 * (offline.c).
 */
#ifndef METAFUSE_CLI_H
#define METAFUSE_CLI_H

#include "util/compat.h"

#include <getopt.h>
#include <limits.h>
#include <pthread.h>

#include "blob/blob.h"
#include "meta/meta.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/progress.h"
#include "volume/volume.h"

int cmd_mount(int argc, char **argv);
int cmd_mkfs(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_fsck(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_clone(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_passwd(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_help(int argc, char **argv);

/*
 * The commands, each with its options and texts (struct cli_cmd below),
 * in the order the top-level help lists them: cli_commands[] (main.c),
 * NULL-terminated, is what main() dispatches and what help.c makes the
 * top-level --help, the man page and the bash completion of; the mount
 * helpers' tables (mount_helper.c) appear in the man page too.
 */
struct cli_cmd;
extern const struct cli_cmd cli_cmd_mkfs, cli_cmd_mount, cli_cmd_umount,
	cli_cmd_fsck, cli_cmd_gc, cli_cmd_stats, cli_cmd_passwd, cli_cmd_help;
extern const struct cli_cmd cli_cmd_clone;
extern const struct cli_cmd cli_cmd_snapshot;
extern const struct cli_cmd cli_cmd_tune;
extern const struct cli_cmd cli_cmd_mount_helper, cli_cmd_umount_helper;
extern const struct cli_cmd *const cli_commands[];
extern const struct cli_cmd *const cli_helpers[];

/* help.c: the top-level help; the man page (troff) and the bash
 * completion script generated from the command table. */
void cli_usage(FILE *out);
void cli_help_man(FILE *out);
void cli_help_bash(FILE *out);

/*
 * The conventions of mount(8) (argv[0]: the program's name):
 *   cmd_mount_fuse3 (cmd_mount.c): `metafuse STORE MOUNTPOINT [-o OPTS]`,
 *     what mount.fuse3 runs for `-t fuse.metafuse`: `metafuse mount`, and
 *     the mount recorded in the utab for umount(8);
 *   cmd_mount_helper (mount_helper.c): `mount.metafuse SPEC DIR [-sfnv]
 *     [-o OPTS] [-t TYPE] [-N NS]`, mount(8)'s helper for -t metafuse and
 *     -t fuse.metafuse;
 *   cmd_umount_helper (mount_helper.c): `umount.metafuse DIR [-flnrv]
 *     [-N NS] [-t TYPE]`, umount(8)'s helper for a mount whose utab line
 *     has helper=metafuse.
 */
int cmd_mount_fuse3(int argc, char **argv);
int cmd_mount_helper(int argc, char **argv);
int cmd_umount_helper(int argc, char **argv);

/* How umount_wait() unmounts. */
enum umount_flags {
	UMOUNT_LAZY = 1 << 0,    /* detach now (MNT_DETACH); do not wait */
	UMOUNT_FORCE = 1 << 1,   /* MNT_FORCE: abort the FUSE connection */
	UMOUNT_RDONLY = 1 << 2,  /* busy: remount read-only instead */
	UMOUNT_HELPER = 1 << 3,  /* run by umount(8), which keeps the utab;
				  * path is its canonical mountpoint */
	UMOUNT_FOREIGN = 1 << 4, /* not a metafuse mount: no daemon to
				  * wait for */
};

/*
 * Unmount the metafuse mount at path and wait until its daemon has
 * uploaded everything and exited (cmd_tools.c); any other mount is just
 * unmounted.  Returns the exit status (0, or 1 after one line).
 */
int umount_wait(const char *path, unsigned flags);

/*
 * The options of one command, read by cli_getopt() (args.c), the same way
 * for every command:
 *   - options and operands mix in any order ("mount STORE MNT -o x"); "--"
 *     ends the options;
 *   - short flags group (-fo LIST) and take their argument glued or apart
 *     (-oLIST, -o LIST); long options are spelled out in full (no
 *     abbreviations), their argument apart or after '=';
 *   - -h and --help print the command's help on stdout: exit status 0;
 *   - an unknown flag, or one without its argument, is one line on stderr,
 *     "unknown flag '-x' (see 'metafuse CMD --help')" (or no_arg_msg for
 *     a missing argument): exit status flag_status;
 *   - too few or too many operands: the usage line, exit status 2.
 */
#define CLI_MAX_OPERANDS 3

struct cli_cmd {
	const char *name;              /* "mkfs", as typed */
	const char *summary;           /* one line for the top-level help */
	int (*run)(int argc, char **argv); /* the command (main.c) */
	const char *help;              /* the text of --help */
	const char *usage;             /* "usage: metafuse mkfs ... STORE" */
	const char *shortopts;         /* getopt's, without h; may be NULL */
	const struct option *longopts; /* without --help; zero-terminated,
					* at most 8; vals of long-only
					* options above 255 */
	const char *no_arg_msg;        /* for a flag missing its argument;
					* NULL: as for an unknown flag */
	int min_operands, max_operands; /* max <= CLI_MAX_OPERANDS */
	int flag_status;               /* exit status after a bad flag */
};

struct cli_args {
	const struct cli_cmd *cmd;
	int argc;
	char **argv;
	const char *operand[CLI_MAX_OPERANDS]; /* in the order given */
	int noperands;
	int status; /* the exit status when cli_getopt() returned -1 */
	char shortopts[32];
	struct option longopts[10];
};

/* Start reading argv (argv[0]: the command's name; once per process, as
 * getopt_long keeps its state in globals). */
void cli_args_init(struct cli_args *a, const struct cli_cmd *cmd, int argc,
		   char **argv);
/*
 * The next option: its letter, or a long option's val (> 0), its argument
 * in optarg; 0 once argv is read and the operands are as many as the
 * command takes (a->operand[0 .. a->noperands - 1]); -1 when the command
 * is to exit at once with a->status (help or a message printed).
 */
int cli_getopt(struct cli_args *a);

/* Print "metafuse: " + message to stderr. */
void cli_error(const char *fmt, ...) MF_PRINTF(1, 2);
/* The default volume's store path ($XDG_DATA_HOME/metafuse/default). */
int cli_default_store(struct buf *out);
/* The registry file that maps a mountpoint to its daemon's pid. */
int cli_registry_path(const char *real_mountpoint, struct buf *out);
/* 1 if path (a real path) is a mount point, 0 if not. */
int cli_is_mountpoint(const char *real_path);
/* What /proc/self/mountinfo says of the last mount (the one on top) at
 * real_path: its type, its source (STORE for metafuse), its user_id= (-1
 * when it has none).  0, or -ENOENT when nothing is mounted there. */
struct cli_mount {
	char fstype[64];
	char source[PATH_MAX];
	long uid;
};
int cli_mount_find(const char *real_path, struct cli_mount *out);
/* The mountpoint of a read-write metafuse mount of source (a STORE as
 * the mount table has it) into mp: 0, or -ENOENT when there is none. */
int cli_mount_rw_of(const char *source, char *mp, size_t size);

/*
 * A volume opened without mounting it (fsck, gc; offline.c).  The
 * functions print their errors (one line each).
 */
struct offline_vol {
	struct store *s;
	struct volume v;
	struct blob_ctx bc;
	struct meta *m;     /* after offline_restore */
	char dir[40];       /* private directory holding the metadata */
	uint64_t seq;       /* the checkpoint restored */
	uint64_t applied;   /* journal entries replayed after it */
	struct progress *progress; /* the command's meter (NULL: none); set
				    * after offline_open */
	/* the volume's lease, while offline_lease() holds it: renewed by
	 * a thread of its own */
	struct volume_lease lease;
	unsigned lease_valid_s;
	bool leased;
	pthread_t renewer;
	pthread_mutex_t lease_lock;
	pthread_cond_t lease_cond;
	bool lease_stop, lease_lost; /* protected by lease_lock */
};

/* Open the store at loc and load its volume, unlocked with the
 * passphrase (cli/passphrase.h; pass_file: passphrase_file=, may be NULL)
 * when encrypted: 0, or -1 (printed, except when blob_global_init()
 * fails). */
int offline_open(struct offline_vol *ov, const char *loc,
		 const struct store_options *o, const char *pass_file);
/* Restore the newest checkpoint plus the journal into ov->dir: 0; 1 when
 * the volume has no checkpoint yet (never mounted); -1 (printed).  The
 * restore's phases go to ov->progress, erased before a message. */
int offline_restore(struct offline_vol *ov);
/*
 * Take the volume's lease for the command (force: from a live holder
 * too) and keep it: a thread renews it every third of its validity (60
 * s; METAFUSE_TEST_LEASE_S for the tests), reading it first, for as long
 * as the command runs, however long a sweep or a restore takes.  0, or
 * -errno with one line in err.
 */
int offline_lease(struct offline_vol *ov, bool force, struct buf *err);
/* Was the lease taken over (with --force) while the command held it?
 * Then it must not write any more. */
bool offline_lease_lost(struct offline_vol *ov);
/* Stop renewing and release the lease (if still ours); nothing when not
 * held.  offline_close() does it too. */
void offline_unlease(struct offline_vol *ov);
/* Close what is open and remove the private directory. */
void offline_close(struct offline_vol *ov);

/* A history window (tune --history, mkfs --history): a number with s, m,
 * h or d (bare: seconds), up to a century, into *out_s; -EINVAL
 * otherwise.  cli_format_duration() writes it back ("1d", "90s"). */
int cli_parse_duration(const char *s, uint64_t *out_s);
void cli_format_duration(uint64_t s, char *out, size_t size);

#endif
