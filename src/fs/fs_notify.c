/*
 * fs_notify.c - a follower's invalidations: what a changeset the
 * metadata applied changed goes out of the block cache and out of the
 * kernel's caches, so that the next access asks the daemon, which
 * answers from the new metadata.
 *
 * Data model: struct meta_changes (meta/meta.h): the inodes whose
 * attributes, data, xattrs or links changed, their blocks whose rows
 * changed, and the names added or removed.  The kernel hears, for each
 * name, fuse_lowlevel_notify_inval_entry(parent, name) (a negative entry
 * too: a name that appeared), and for each inode
 * fuse_lowlevel_notify_inval_inode(ino, 0, 0): its attributes and every
 * cached page.
 *
 * Invariants
 *   1. Called from the follower's thread only, never from a request: an
 *      invalidation waits for locks that a request in flight on the same
 *      inode holds until it is answered.
 *   2. The kernel hears nothing unless fs->notify_live, checked and held
 *      under notify_lock across each notification: fs_run() clears it
 *      before it unmounts and destroys the session.
 *   3. The cached blocks go before the kernel hears of them: a read the
 *      invalidation sends us loads what the metadata names now.
 */
#include "util/compat.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "fs/fs.h"
#include "fs/fs_int.h"
#include "util/log.h"

void fs_notify_live(struct fs *fs, bool live)
{
	pthread_mutex_lock(&fs->notify_lock);
	fs->notify_live = live;
	pthread_mutex_unlock(&fs->notify_lock);
}

/* The kernel's number of a metadata inode. */
static fuse_ino_t kernel_ino(uint64_t ino)
{
	return ino == META_ROOT_INO ? FUSE_ROOT_ID : (fuse_ino_t)ino;
}

/* Tell the kernel; -ENOENT (it does not know the inode or name) is what
 * most changes get and says nothing. */
static void notify_kernel(struct fs *fs, const struct meta_changes *ch)
{
	size_t i;
	int rc;

	pthread_mutex_lock(&fs->notify_lock);
	for (i = 0; fs->notify_live && i < ch->nnames; i++) {
		const struct meta_name_key *n = &ch->names[i];

		rc = fuse_lowlevel_notify_inval_entry(fs->se,
						      kernel_ino(n->parent),
						      n->name, strlen(n->name));
		if (rc && rc != -ENOENT)
			log_debug("follow: invalidating name %s in %" PRIu64
				  ": %s", n->name, n->parent, strerror(-rc));
	}
	for (i = 0; fs->notify_live && i < ch->ninodes; i++) {
		rc = fuse_lowlevel_notify_inval_inode(
			fs->se, kernel_ino(ch->inodes[i]), 0, 0);
		if (rc && rc != -ENOENT)
			log_debug("follow: invalidating inode %" PRIu64 ": %s",
				  ch->inodes[i], strerror(-rc));
	}
	pthread_mutex_unlock(&fs->notify_lock);
}

void fs_follow_changed(struct fs *fs, const struct meta_changes *ch)
{
	size_t i, j;

	/* runs of one inode's blocks, dropped a range at a time */
	for (i = 0; i < ch->nblocks; i = j) {
		for (j = i + 1; j < ch->nblocks &&
				ch->blocks[j].ino == ch->blocks[i].ino &&
				ch->blocks[j].idx == ch->blocks[j - 1].idx + 1;
		     j++)
			;
		cache_forget_range(fs->cfg.cache, ch->blocks[i].ino,
				   ch->blocks[i].idx, ch->blocks[j - 1].idx);
	}
	notify_kernel(fs, ch);
}
