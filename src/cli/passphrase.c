/*
 * passphrase.c - reading a volume's passphrase from the environment, a
 * private file or the terminal, and unlocking a volume with it (see
 * passphrase.h).
 *
 * Invariants
 *   1. A passphrase is held only in a struct buf that
 *      cli_passphrase_free() wipes, and in the terminal's line buffer
 *      here, wiped too.
 *   2. The terminal's echo is turned back on after every read, also when
 *      the read fails or a signal (^C) ends the program meanwhile.
 *   3. A passphrase file readable by group or others is refused before
 *      it is read, as the S3 credentials= file is.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/passphrase.h"
#include "util/util.h"
#include "volume/sealed.h"

#define PASS_MAX 1024
/* about a second of Argon2id here, as LUKS does */
#define KDF_TARGET_MS 1000

void cli_passphrase_free(struct buf *pass)
{
	if (pass->data)
		explicit_bzero(pass->data, pass->cap);
	buf_free(pass);
}

/* One line of the file, its newline stripped (invariant 3). */
static int pass_from_file(const char *path, struct buf *out)
{
	struct stat st;
	int rc;

	if (stat(path, &st) < 0) {
		cli_error("passphrase file %s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_mode & 077) {
		cli_error("passphrase file %s is readable by others (mode "
			  "%03o); make it private with chmod 600", path,
			  (unsigned)(st.st_mode & 0777));
		return -1;
	}
	rc = read_file(path, out);
	if (rc) {
		cli_error("cannot read passphrase file %s: %s", path,
			  strerror(-rc));
		return -1;
	}
	if (out->len && out->data[out->len - 1] == '\n')
		out->len--;
	if (out->len && out->data[out->len - 1] == '\r')
		out->len--;
	return 0;
}

/* The terminal's settings while its echo is off, for on_signal(). */
static struct termios echo_saved;
static volatile sig_atomic_t echo_fd = -1;

/* ^C or ^Z at the prompt: the echo back on, then as if unhandled
 * (invariant 2). */
static void on_signal(int sig)
{
	if (echo_fd >= 0)
		tcsetattr(echo_fd, TCSAFLUSH, &echo_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Echo off on tty (old: its settings), with on_signal() set for the
 * signals a terminal sends; their old actions into prev. */
static void echo_off(int tty, const struct termios *old,
		     struct sigaction prev[3])
{
	static const int sigs[3] = { SIGINT, SIGQUIT, SIGTERM };
	struct sigaction sa;
	struct termios quiet = *old;
	int i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	echo_saved = *old;
	echo_fd = tty;
	for (i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, &prev[i]);
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ICANON;
	tcsetattr(tty, TCSAFLUSH, &quiet);
}

static void echo_on(int tty, const struct termios *old,
		    const struct sigaction prev[3])
{
	static const int sigs[3] = { SIGINT, SIGQUIT, SIGTERM };
	int i;

	tcsetattr(tty, TCSADRAIN, old);
	echo_fd = -1;
	for (i = 0; i < 3; i++)
		sigaction(sigs[i], &prev[i], NULL);
}

/* One line from the terminal tty, without echo; -1 at EOF or error. */
static int tty_line(int tty, const char *prompt, struct buf *out)
{
	struct termios old;
	struct sigaction prev[3];
	bool restore = tcgetattr(tty, &old) == 0;
	char c;
	ssize_t n;
	int rc = 0;

	/* echo off before the prompt: what is typed after it must not be
	 * flushed by the change */
	if (restore)
		echo_off(tty, &old, prev);
	if (write(tty, prompt, strlen(prompt)) < 0)
		rc = -1;
	while (rc == 0) {
		n = read(tty, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = -1;
			break;
		}
		if (c == '\n' || c == '\r')
			break;
		if (out->len >= PASS_MAX || buf_append(out, &c, 1)) {
			rc = -1;
			break;
		}
	}
	c = 0;
	if (restore)
		echo_on(tty, &old, prev); /* invariant 2 */
	if (write(tty, "\n", 1) < 0)
		rc = -1;
	return rc;
}

static int pass_from_tty(const struct cli_pass_src *src, struct buf *out)
{
	struct buf again = BUF_INIT;
	int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	int rc = -1;

	if (tty < 0) {
		cli_error("no passphrase: set %s, give %s, or run on a "
			  "terminal to be asked", src->env, src->hint);
		return -1;
	}
	if (tty_line(tty, src->prompt, out)) {
		cli_error("no passphrase read from the terminal");
		goto out;
	}
	if (src->twice) {
		if (tty_line(tty, "Again: ", &again)) {
			cli_error("no passphrase read from the terminal");
			goto out;
		}
		if (again.len != out->len ||
		    memcmp(again.data, out->data, out->len)) {
			cli_error("the passphrases differ");
			goto out;
		}
	}
	rc = 0;
out:
	cli_passphrase_free(&again);
	close(tty);
	return rc;
}

int cli_passphrase_read(const struct cli_pass_src *src, struct buf *out)
{
	const char *env = getenv(src->env);
	int rc;

	buf_reset(out);
	if (env && *env)
		rc = buf_append(out, env, strlen(env)) ? -1 : 0;
	else if (src->file)
		rc = pass_from_file(src->file, out);
	else
		rc = pass_from_tty(src, out);
	if (rc == 0 && out->len == 0) {
		cli_error("an empty passphrase is refused");
		rc = -1;
	}
	if (rc)
		cli_passphrase_free(out);
	return rc;
}

int cli_volume_unlock(struct store **s, struct volume *v, const char *file)
{
	struct buf pass = BUF_INIT, err = BUF_INIT, prompt = BUF_INIT;
	struct cli_pass_src src = {
		.env = CLI_PASS_ENV,
		.file = file,
		.hint = "-o passphrase_file=FILE",
	};
	struct store *sealed;
	int rc = -1;

	if (!v->encrypted)
		return 0;
	if (buf_appendf(&prompt, "Passphrase for %s: ", (*s)->url)) {
		cli_error("out of memory");
		return -1;
	}
	src.prompt = buf_str(&prompt);
	if (cli_passphrase_read(&src, &pass))
		goto out;
	if (volume_unlock(v, (*s)->url, (const char *)pass.data, pass.len,
			  &err)) {
		cli_error("%s", buf_str(&err));
		goto out;
	}
	if (sealed_store_wrap(*s, &v->key, &sealed)) {
		cli_error("out of memory");
		volume_wipe(v);
		goto out;
	}
	*s = sealed;
	/* a mount lives long: of the keys only what it uses stays (the
	 * sealed store's copy of the objects' key, v's names' key) */
	explicit_bzero(v->master, sizeof(v->master));
	explicit_bzero(&v->key, sizeof(v->key));
	rc = 0;
out:
	cli_passphrase_free(&pass);
	buf_free(&prompt);
	buf_free(&err);
	return rc;
}

int cli_kdf_limits(struct crypt_kdf *out)
{
	const char *t = getenv("METAFUSE_TEST_KDF");

	if (t && !strcmp(t, "fast")) {
		crypt_kdf_fast(out);
		return 0;
	}
	if (crypt_kdf_calibrate(KDF_TARGET_MS, out)) {
		cli_error("cannot have the memory Argon2id needs");
		return -1;
	}
	return 0;
}
