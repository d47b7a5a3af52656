/*
 * cmd_passwd.c - `metafuse passwd`: the passphrases of an encrypted
 * volume, its key slots (volume.h, blob/crypt.h).
 *
 * The volume is named by its STORE, or by a MOUNTPOINT where it is
 * mounted (its store is then the mount's source in the mount table, as
 * the mount was given it).  The current passphrase unlocks the volume
 * (METAFUSE_PASSPHRASE, -o passphrase_file= / --passphrase-file, the
 * terminal); the new one comes from METAFUSE_NEW_PASSPHRASE,
 * --new-passphrase-file or the terminal, asked twice.  Without a flag it
 * replaces the slot the current passphrase opened; --add puts it in a
 * free slot; --remove empties the slot the current passphrase opened.
 *
 * Invariants
 *   1. Only the descriptor is written, once, after both passphrases are
 *      read and the current one has opened a slot: a mistake writes
 *      nothing.  No data object changes: the master key stays.
 *   2. A mount of the volume goes on as it was (it holds the master key,
 *      not a passphrase).
 */
#include "util/compat.h"

#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/passphrase.h"
#include "cli/store_opts.h"
#include "util/util.h"
#include "volume/volume.h"

static const char passwd_help[] =
	"usage: metafuse passwd [--add | --remove] [--passphrase-file FILE]\n"
	"         [--new-passphrase-file FILE] [-o OPT[,OPT...]] "
	"STORE|MOUNTPOINT\n"
	"\n"
	"Changes a passphrase of the encrypted volume in STORE (or mounted "
	"at\nMOUNTPOINT; a mount goes on).  Only the volume's descriptor is "
	"rewritten: the\nmaster key, and every object sealed under it, "
	"stay.  The current passphrase\ncomes from METAFUSE_PASSPHRASE, else "
	"--passphrase-file FILE (or\n-o passphrase_file=FILE), else the "
	"terminal; the new one from\nMETAFUSE_NEW_PASSPHRASE, else "
	"--new-passphrase-file FILE, else the terminal\n(asked twice).  "
	"Files must be mode 600.\n"
	"\n"
	"  (no flag)   replace the passphrase of the key slot the current "
	"one opens:\n"
	"              the current passphrase stops working\n"
	"  --add       add the new passphrase in a free key slot (at most 8), "
	"e.g. a\n"
	"              recovery passphrase kept apart; both work\n"
	"  --remove    remove the key slot the current passphrase opens "
	"(never the\n"
	"              last one)\n"
	"A copy of the old descriptor, kept by anyone, still opens with the "
	"old\npassphrase: the master key does not change.\n"
	"\n" CLI_STORE_OPTS_HELP;

enum { OPT_ADD = 256, OPT_REMOVE, OPT_PASS_FILE, OPT_NEW_PASS_FILE };

static const struct option passwd_longopts[] = {
	{ "add", no_argument, NULL, OPT_ADD },
	{ "remove", no_argument, NULL, OPT_REMOVE },
	{ "passphrase-file", required_argument, NULL, OPT_PASS_FILE },
	{ "new-passphrase-file", required_argument, NULL, OPT_NEW_PASS_FILE },
	{ NULL, 0, NULL, 0 },
};

const struct cli_cmd cli_cmd_passwd = {
	.name = "passwd",
	.summary = "change, add or remove a passphrase of an encrypted volume",
	.run = cmd_passwd,
	.help = passwd_help,
	.usage = "usage: metafuse passwd [--add | --remove] "
		 "[--passphrase-file FILE] [--new-passphrase-file FILE] "
		 "[-o OPT[,OPT...]] STORE|MOUNTPOINT",
	.shortopts = "o:",
	.longopts = passwd_longopts,
	.min_operands = 1,
	.max_operands = 1,
	.flag_status = 2,
};

/* The store the operand names: itself, or a mount point's source. */
static const char *store_of(const char *operand, char *buf, size_t size)
{
	char real[PATH_MAX];
	struct cli_mount mi;
	struct stat st;

	if (stat(operand, &st) == 0 && S_ISDIR(st.st_mode) &&
	    realpath(operand, real) && cli_mount_find(real, &mi) == 0 &&
	    !strncmp(mi.fstype, "fuse", 4)) {
		snprintf(buf, size, "%s", mi.source);
		return buf;
	}
	return operand;
}

/* Unlock v in s with the current passphrase: 0 or -1 (printed). */
static int passwd_unlock(struct store *s, struct volume *v, const char *file)
{
	struct buf pass = BUF_INIT, err = BUF_INIT;
	struct cli_pass_src src = {
		.env = CLI_PASS_ENV,
		.file = file,
		.prompt = "Current passphrase: ",
		.hint = "--passphrase-file FILE (-o passphrase_file=FILE)",
	};
	int rc = cli_passphrase_read(&src, &pass);

	if (rc == 0 && volume_unlock(v, s->url, (const char *)pass.data,
				     pass.len, &err)) {
		cli_error("%s", buf_str(&err));
		rc = -1;
	}
	cli_passphrase_free(&pass);
	buf_free(&err);
	return rc;
}

/* The new passphrase into pass, and the limits of its slot. */
static int passwd_new(const char *file, struct buf *pass,
		      struct crypt_kdf *kdf)
{
	struct cli_pass_src src = {
		.env = CLI_NEW_PASS_ENV,
		.file = file,
		.prompt = "New passphrase: ",
		.twice = true,
		.hint = "--new-passphrase-file FILE",
	};

	if (cli_passphrase_read(&src, pass))
		return -1;
	return cli_kdf_limits(kdf);
}

/* Open, unlock and change the volume at loc. */
static int passwd_run(const char *loc, const struct cli_store_opts *so,
		      enum volume_passwd_mode mode, const char *pass_file,
		      const char *new_file)
{
	static const char *const done[] = { "changed", "added", "removed" };
	struct buf err = BUF_INIT, pass = BUF_INIT;
	struct crypt_kdf kdf = { 0, 0 };
	struct store *s = NULL;
	struct volume v;
	unsigned slot;
	int status = 1;

	memset(&v, 0, sizeof(v));
	if (store_open_opts(loc, 0, &so->o, &s, &err) ||
	    volume_load(s, &v, &err)) {
		cli_error("%s", buf_str(&err));
		goto out;
	}
	if (!v.encrypted) {
		cli_error("volume %s is not encrypted: it has no passphrase "
			  "(make an encrypted one with 'metafuse mkfs "
			  "--encrypt')", s->url);
		goto out;
	}
	if (passwd_unlock(s, &v, pass_file))
		goto out;
	if (mode != VOLUME_PASSWD_REMOVE && passwd_new(new_file, &pass, &kdf))
		goto out;
	if (volume_passwd(s, &v, mode, (const char *)pass.data, pass.len,
			  &kdf, &slot, &err)) {
		cli_error("%s", buf_str(&err));
		goto out;
	}
	printf("key slot %u of %s %s\n", slot, s->url, done[mode]);
	status = 0;
out:
	volume_wipe(&v);
	cli_passphrase_free(&pass);
	store_close(s);
	buf_free(&err);
	return status;
}

int cmd_passwd(int argc, char **argv)
{
	enum volume_passwd_mode mode = VOLUME_PASSWD_CHANGE;
	const char *pass_file = NULL, *new_file = NULL;
	struct cli_store_opts so = { 0 };
	char src[PATH_MAX];
	struct cli_args a;
	int c, status = 2;

	cli_args_init(&a, &cli_cmd_passwd, argc, argv);
	while ((c = cli_getopt(&a)) > 0) {
		if ((c == OPT_ADD && mode == VOLUME_PASSWD_REMOVE) ||
		    (c == OPT_REMOVE && mode == VOLUME_PASSWD_ADD)) {
			cli_error("--add and --remove exclude each other");
			goto out;
		}
		if (c == OPT_ADD)
			mode = VOLUME_PASSWD_ADD;
		else if (c == OPT_REMOVE)
			mode = VOLUME_PASSWD_REMOVE;
		else if (c == OPT_PASS_FILE)
			pass_file = optarg;
		else if (c == OPT_NEW_PASS_FILE)
			new_file = optarg;
		else if (c == 'o' && cli_store_opts_parse(&so, optarg, NULL))
			goto out;
	}
	if (c < 0) {
		status = a.status;
		goto out;
	}
	status = 1;
	if (blob_global_init()) {
		cli_error("cannot initialise libsodium");
		goto out;
	}
	status = passwd_run(store_of(a.operand[0], src, sizeof(src)), &so,
			    mode, pass_file ? pass_file : so.passphrase_file,
			    new_file);
out:
	cli_store_opts_free(&so);
	return status;
}
