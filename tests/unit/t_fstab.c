/*
 * t_fstab.c - unit tests of src/cli/fstab.c: which mount options are
 * mount(8)'s and systemd's, the escaping of a store as FUSE's fsname=,
 * and reading libmount's utab (its octal escapes, a TARGET= that is a
 * prefix of another) from a private file named by LIBMOUNT_UTAB.  The
 * commands it runs (mount --fake, umount -i) are tried end to end by
 * tests/e2e/test_fstab.py.
 */
#include "util/compat.h"

#include <unistd.h>

#include "check.h"
#include "cli/fstab.h"
#include "util/util.h"

static void test_ignored_options(void)
{
	static const char *const ignored[] = {
		"defaults", "auto", "noauto", "nofail", "_netdev", "user",
		"users", "nouser", "owner", "group", "user=alice",
		"comment=systemd.automount", "comment=", "helper=metafuse",
		"uhelper=udisks2", "x-systemd.automount",
		"x-systemd.mount-timeout=15min", "x-initrd.mount", "x-",
	};
	static const char *const ours[] = {
		"cache_dir=/x", "ro", "rw", "noatime", "nosuid", "loop",
		"offset=0", "default", "defaults2", "_netdev2", "users=1x",
		"xsystemd.automount", "comment", "helper", "usr", "x",
		"nofail=1", "", "follow", "follow_interval=0.5",
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ignored); i++)
		CHECK(fstab_opt_ignored(ignored[i]));
	for (i = 0; i < ARRAY_SIZE(ours); i++)
		CHECK(!fstab_opt_ignored(ours[i]));
}

static void test_escape_fsname(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "/srv/vol", "/srv/vol" },
		{ "s3://bucket/pre fix", "s3://bucket/pre fix" },
		{ "a,b", "a\\,b" },
		{ "a\\b", "a\\\\b" },
		{ ",\\,", "\\,\\\\\\," },
		{ "", "" },
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct buf b = BUF_INIT;

		CHECK_RC(fstab_escape_fsname(cases[i].in, &b), 0);
		CHECK(!strcmp(buf_str(&b), cases[i].want));
		buf_free(&b);
	}
}

static void test_utab_line(void)
{
	const char *line = "SRC=/srv/v,o\\040l TARGET=/mnt/my\\040vol\\134x "
			   "ROOT=/ OPTS=helper=metafuse,_netdev\n";

	CHECK(fstab_utab_line_names(line, "/mnt/my vol\\x"));
	CHECK(!fstab_utab_line_names(line, "/mnt/my vol"));
	CHECK(!fstab_utab_line_names(line, "/mnt/my vol\\xy"));
	CHECK(!fstab_utab_line_names(line, "/mnt/my\\040vol\\134x"));
	CHECK(fstab_utab_line_names("ID=7 TARGET=/a ROOT=/", "/a"));
	CHECK(fstab_utab_line_names("TARGET=/a", "/a"));
	CHECK(!fstab_utab_line_names("TARGET=/a/b ROOT=/", "/a"));
	CHECK(!fstab_utab_line_names("TARGET=/a ROOT=/", "/a/b"));
	/* a value that holds "TARGET=" is not the field */
	CHECK(!fstab_utab_line_names("SRC=TARGET=/a TARGET=/b", "/a"));
	CHECK(fstab_utab_line_names("SRC=TARGET=/a TARGET=/b", "/b"));
	CHECK(!fstab_utab_line_names("SRC=/x ROOT=/", "/x"));
	CHECK(!fstab_utab_line_names("", "/"));
	/* a bad escape is taken as it is */
	CHECK(fstab_utab_line_names("TARGET=/a\\9b", "/a\\9b"));
}

static void test_utab_file(void)
{
	char dir[] = "/tmp/t_fstab.XXXXXX";
	struct buf path = BUF_INIT;
	const char *text = "SRC=/v TARGET=/mnt/a ROOT=/ OPTS=helper=metafuse\n"
			   "SRC=/w TARGET=/mnt/b\\040c ROOT=/ OPTS=x-a\n";

	CHECK(mkdtemp(dir) != NULL);
	CHECK_RC(buf_appendf(&path, "%s/utab", dir), 0);
	setenv("LIBMOUNT_UTAB", buf_str(&path), 1);
	CHECK(!strcmp(fstab_utab_path(), buf_str(&path)));
	CHECK(!fstab_utab_has("/mnt/a")); /* no file yet */
	CHECK_RC(write_file_atomic(buf_str(&path), text, strlen(text), 0644),
		 0);
	CHECK(fstab_utab_has("/mnt/a"));
	CHECK(fstab_utab_has("/mnt/b c"));
	CHECK(!fstab_utab_has("/mnt/b"));
	CHECK(!fstab_utab_has("/mnt"));
	unsetenv("LIBMOUNT_UTAB");
	CHECK(!strcmp(fstab_utab_path(), "/run/mount/utab"));
	unlink(buf_str(&path));
	rmdir(dir);
	buf_free(&path);
}

int main(void)
{
	test_ignored_options();
	test_escape_fsname();
	test_utab_line();
	test_utab_file();
	return check_done("t_fstab");
}
