/*
 * cli.h - the subcommands of the metafuse program.  Each returns the
 * process exit status; errors are printed as one line on stderr.
 */
#ifndef METAFUSE_CLI_H
#define METAFUSE_CLI_H

#include "util/compat.h"

#include "util/buf.h"

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

#endif
