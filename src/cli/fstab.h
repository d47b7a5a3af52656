/*
 * fstab.h - what metafuse needs to know of mount(8), umount(8) and
 * libmount to mount from fstab and to make umount(8) wait (fstab.c):
 * which options are theirs, how a mount's source is written, and the
 * mount's line in libmount's utab, which sends umount(8) to
 * /sbin/umount.metafuse.
 */
#ifndef METAFUSE_CLI_FSTAB_H
#define METAFUSE_CLI_FSTAB_H

#include "util/compat.h"

#include "util/buf.h"

/*
 * true when opt ("key" or "key=value") belongs to mount(8) or systemd,
 * not to metafuse: defaults, auto, noauto, nofail, _netdev, user, users,
 * nouser, owner, group, user=, comment=, helper=, uhelper=, x-*.  The
 * caller accepts and ignores it (libmount and systemd act on them before
 * metafuse runs).
 */
bool fstab_opt_ignored(const char *opt);

/* Append s to out as the value of a FUSE option (libfuse splits options
 * on ',' and reads '\' as an escape): 0 or -ENOMEM. */
int fstab_escape_fsname(const char *s, struct buf *out);

/* The utab libmount keeps ($LIBMOUNT_UTAB, else /run/mount/utab). */
const char *fstab_utab_path(void);

/*
 * true when the utab line names target (a real path) as its TARGET=
 * (libmount writes ' ', '\t', '\n' and '\' as octal escapes).
 */
bool fstab_utab_line_names(const char *line, const char *target);

/* true when the utab has a line for target (a real path). */
bool fstab_utab_has(const char *target);

/*
 * Record the mount of store at target (a real path) in the utab with
 * helper=metafuse and the mount(8) options opts (libmount keeps those
 * of them that belong in the utab), by running
 * `mount --fake -i --no-canonicalize`: umount(8) then runs
 * /sbin/umount.metafuse for target, which waits for the upload.  Only
 * root writes the utab: for anyone else, nothing; when it fails, one
 * line on stderr says umount(8) will not wait.  mount(8), when it made
 * the mount through us, finds the line there and writes none of its own.
 */
void fstab_utab_add(const char *store, const char *target, const char *opts);

/*
 * Unmount target (a real path) through `umount -i` (the kernel, and
 * libmount drops the utab line; no helper runs): 0, or -1 when it could
 * not (nothing printed: the caller unmounts by itself and says why).
 */
int fstab_umount_internal(const char *target);

#endif
