/*
 * cli.h - the subcommands of the metafuse program.  Each returns the
 * process exit status; errors are printed as one line on stderr.
 */
#ifndef METAFUSE_CLI_H
#define METAFUSE_CLI_H

#include "util/compat.h"

#include "blob/blob.h"
#include "meta/meta.h"
#include "store/store.h"
#include "util/buf.h"
#include "volume/volume.h"

int cmd_mount(int argc, char **argv);
int cmd_mkfs(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_fsck(int argc, char **argv);
int cmd_gc(int argc, char **argv);

/* Print "metafuse: " + message to stderr. */
void cli_error(const char *fmt, ...) MF_PRINTF(1, 2);
/* The default volume's store path ($XDG_DATA_HOME/metafuse/default). */
int cli_default_store(struct buf *out);
/* The registry file that maps a mountpoint to its daemon's pid. */
int cli_registry_path(const char *real_mountpoint, struct buf *out);
/* 1 if path (a real path) is a mount point, 0 if not. */
int cli_is_mountpoint(const char *real_path);

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
};

/* Open the store at loc and load its volume: 0, or -1 (printed). */
int offline_open(struct offline_vol *ov, const char *loc,
		 const struct store_options *o);
/* Restore the newest checkpoint plus the journal into ov->dir: 0; 1 when
 * the volume has no checkpoint yet (never mounted); -1 (printed). */
int offline_restore(struct offline_vol *ov);
/* Close what is open and remove the private directory. */
void offline_close(struct offline_vol *ov);

#endif
