/*
 * passphrase.h - the passphrase of an encrypted volume, from where the
 * user put it, and opening a volume with it.
 *
 * A passphrase comes from, in order: an environment variable
 * (METAFUSE_PASSPHRASE; METAFUSE_NEW_PASSPHRASE for passwd's new one),
 * else a file (-o passphrase_file=FILE, --passphrase-file FILE,
 * --new-passphrase-file FILE), which must not be readable by group or
 * others and loses one trailing newline ("\n" or "\r\n"), else the
 * terminal (/dev/tty, without echo; asked twice for a new passphrase).
 * An empty passphrase is refused.  Every function prints its error (one
 * line) and returns -1, or 0.
 */
#ifndef METAFUSE_CLI_PASSPHRASE_H
#define METAFUSE_CLI_PASSPHRASE_H

#include "util/compat.h"

#include "blob/crypt.h"
#include "store/store.h"
#include "util/buf.h"
#include "volume/volume.h"

#define CLI_PASS_ENV "METAFUSE_PASSPHRASE"
#define CLI_NEW_PASS_ENV "METAFUSE_NEW_PASSPHRASE"

/* Where one passphrase is to come from. */
struct cli_pass_src {
	const char *env;    /* variable to look at first */
	const char *file;   /* then this file (NULL: none given) */
	const char *prompt; /* then the terminal, with this prompt */
	bool twice;         /* ask the terminal twice (a new passphrase) */
	const char *hint;   /* how to give a file, for the message */
};

/* The passphrase into out (wiped and freed by cli_passphrase_free()). */
int cli_passphrase_read(const struct cli_pass_src *src, struct buf *out);
void cli_passphrase_free(struct buf *pass);

/*
 * If v is encrypted: read its passphrase (METAFUSE_PASSPHRASE, file, the
 * terminal), unlock v and wrap *s in the sealed store (volume/sealed.h),
 * which from then on is the store to use (and close).  Of v's keys
 * only hash_key is kept (the master key is wiped).  Nothing when v is
 * not encrypted.
 */
int cli_volume_unlock(struct store **s, struct volume *v, const char *file);

/* Argon2id's limits for a new key slot: METAFUSE_TEST_KDF=fast gives
 * libsodium's minimum, else about one second's work here. */
int cli_kdf_limits(struct crypt_kdf *out);

#endif
