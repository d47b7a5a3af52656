/*
 * fs_acl.c - POSIX access ACLs set as the xattr system.posix_acl_access.
 *
 * metafuse does not enforce ACLs (the kernel checks permissions against
 * the mode bits, default_permissions), but tools that copy files with
 * their permissions (cp -a, cp -p, rsync -A, tar --acls) set the mode of
 * the copy by setting its ACL, and only fall back to chmod when that
 * fails.  Storing the xattr without touching the mode left such copies
 * with the mode they were created with (0600 where the source had 0644).
 * So, as a filesystem with ACLs does:
 *
 *   1. the mode's permission bits follow the ACL: owner from the
 *      ACL_USER_OBJ entry, group from ACL_MASK when there is one, else
 *      from ACL_GROUP_OBJ, others from ACL_OTHER;
 *   2. an ACL that says no more than a mode (those three entries only)
 *      is not stored, and one stored before is removed;
 *   3. a malformed ACL is EINVAL, and nothing changes.
 *
 * The value is the kernel's xattr form: a 4-byte version (2) and 8-byte
 * entries (tag u16, perm u16, id u32), little endian.
 */
#include "util/compat.h"

#include <errno.h>
#include <string.h>

#include "fs/fs_int.h"

#define ACL_XATTR_VERSION 2
#define ACL_USER_OBJ 0x01
#define ACL_USER 0x02
#define ACL_GROUP_OBJ 0x04
#define ACL_GROUP 0x08
#define ACL_MASK 0x10
#define ACL_OTHER 0x20

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

int fs_acl_mode(const void *value, size_t size, unsigned *perm, bool *equiv)
{
	const unsigned char *p = value;
	int user = -1, group = -1, mask = -1, other = -1;
	bool named = false;
	size_t i;

	if (size < 4 || (size - 4) % 8 || le32(p) != ACL_XATTR_VERSION)
		return -EINVAL;
	for (i = 4; i < size; i += 8) {
		unsigned tag = (unsigned)p[i] | (unsigned)p[i + 1] << 8;
		int bits = p[i + 2] & 7;

		switch (tag) {
		case ACL_USER_OBJ: user = bits; break;
		case ACL_GROUP_OBJ: group = bits; break;
		case ACL_MASK: mask = bits; break;
		case ACL_OTHER: other = bits; break;
		case ACL_USER:
		case ACL_GROUP: named = true; break;
		default: return -EINVAL;
		}
	}
	if (user < 0 || group < 0 || other < 0 || (named && mask < 0))
		return -EINVAL;
	*perm = (unsigned)(user << 6 | (mask >= 0 ? mask : group) << 3 |
			   other);
	*equiv = !named && mask < 0;
	return 0;
}

int fs_acl_set(struct meta *m, uint64_t ino, const void *value, size_t size,
	       const struct timespec *now, bool *store)
{
	struct meta_attr cur, in, out;
	unsigned perm;
	bool equiv;
	int rc = fs_acl_mode(value, size, &perm, &equiv);

	if (rc)
		return rc;
	rc = meta_getattr(m, ino, &cur);
	if (rc)
		return rc;
	memset(&in, 0, sizeof(in));
	in.mode = (cur.mode & ~0777u) | perm;
	rc = meta_setattr(m, ino, &in, META_SET_MODE, now, &out);
	if (rc)
		return rc;
	*store = !equiv;
	if (equiv) {
		rc = meta_removexattr(m, ino, "system.posix_acl_access", now);
		if (rc == -ENODATA)
			rc = 0;
	}
	return rc;
}
