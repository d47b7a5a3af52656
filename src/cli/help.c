/*
 * help.c - what metafuse says of itself: the top-level --help, and the
 * metafuse(1) man page and bash completion generated from the same
 * texts at build time (`metafuse help --man`, `metafuse help
 * --bash-completion`; meson.build installs their output).
 *
 * Data model
 *   The source of every text is the command table (cli_commands[],
 *   main.c): each struct cli_cmd's summary, usage line and --help text,
 *   plus the few paragraphs below that only the top-level help has
 *   (what metafuse is, the kinds of STORE, environment, files).  The man
 *   page quotes each --help text whole, without its usage line (which
 *   goes to SYNOPSIS) and without the store options every command that
 *   opens a store repeats (which go to one section of their own); the
 *   completion takes each command's long options from its table and the
 *   -o option names from the lines of its --help that describe one.
 *
 * Invariants
 *   1. No text is written twice: a change to an option's help changes
 *      the man page and the completion at the next build.
 *   2. The man page is plain troff (man(7) macros) with every character
 *      that troff reads as a request or an escape escaped (man_text()).
 */
#include "util/compat.h"

#include <ctype.h>

#include "cli/cli.h"
#include "cli/store_opts.h"

static const char about[] =
	"metafuse mounts a volume kept in object storage as an ordinary POSIX\n"
	"directory.  What is written there is cached on local disk,\n"
	"acknowledged at once, and uploaded in the background; after a\n"
	"restart, or on a new machine that has only the store, every file\n"
	"comes back.\n";

static const char stores[] =
	"STORE is where a volume lives:\n"
	"  DIR, file:///DIR          a local directory (blocks of 1M)\n"
	"  s3://BUCKET[/PREFIX]      a bucket of any S3-compatible service\n"
	"                            (AWS S3, MinIO, Ceph RGW, Garage, B2, R2;\n"
	"                            blocks of 4M); see the store options\n"
	"Without STORE, mount uses the default volume in\n"
	"$XDG_DATA_HOME/metafuse/default (created on first use).\n";

static const char environment[] =
	"environment:\n"
	"  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN\n"
	"                            S3 credentials\n"
	"  AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE\n"
	"                            S3 credentials and settings, as the AWS\n"
	"                            CLI reads them\n"
	"  AWS_REGION, AWS_ENDPOINT_URL, AWS_CA_BUNDLE\n"
	"                            S3 region, endpoint, trusted CAs\n"
	"  XDG_DATA_HOME, XDG_CACHE_HOME, XDG_RUNTIME_DIR\n"
	"                            the default volume, cache and registry\n"
	"  METAFUSE_PASSPHRASE       the passphrase of an encrypted volume\n"
	"                            (before passphrase_file= and the\n"
	"                            terminal)\n"
	"  METAFUSE_NEW_PASSPHRASE   passwd's new passphrase\n"
	"  METAFUSE_PROGRESS=0|1     progress lines off, or on when stderr\n"
	"                            is not a terminal\n";

static const char files[] =
	"files:\n"
	"  CACHE_DIR/metafuse.log    the daemon's log (when detached)\n"
	"  CACHE_DIR/meta.db         the live metadata (SQLite)\n"
	"  CACHE_DIR/blocks/         cached blocks, unsent data included\n"
	"                            (plaintext, also of encrypted volumes)\n"
	"  CACHE_DIR/store-seen      the newest state of the volume this\n"
	"                            cache saw (a rollback is refused)\n"
	"  /run/metafuse, $XDG_RUNTIME_DIR/metafuse\n"
	"                            which daemon serves which mountpoint\n"
	"  /sbin/mount.metafuse, /sbin/mount.fuse.metafuse,\n"
	"  /sbin/umount.metafuse     mount(8)'s and umount(8)'s helpers\n";

void cli_usage(FILE *out)
{
	size_t i;

	fputs("usage: metafuse COMMAND [ARGS]\n\n", out);
	fputs(about, out);
	fputs("\ncommands:\n", out);
	for (i = 0; cli_commands[i]; i++)
		fprintf(out, "  %-8s %s\n", cli_commands[i]->name,
			cli_commands[i]->summary);
	fputs("  STORE MOUNTPOINT [-o OPT[,OPT...]]\n"
	      "           mount, as mount.fuse3 runs it for fstab's "
	      "fuse.metafuse\n\n", out);
	fputs(stores, out);
	fputs("\n", out);
	fputs(environment, out);
	fputs("\n'metafuse COMMAND --help' describes each command; "
	      "'man metafuse' all of them.\n", out);
}

/* ---- the man page ---- */

/* One line of text for troff: escapes, and a leading '.' or '\'' that
 * would read as a request. */
static void man_text(FILE *out, const char *s, size_t n)
{
	size_t i;

	if (n && (s[0] == '.' || s[0] == '\''))
		fputs("\\&", out);
	for (i = 0; i < n; i++) {
		if (s[i] == '\\')
			fputs("\\e", out);
		else if (s[i] == '-')
			fputs("\\-", out);
		else
			fputc(s[i], out);
	}
}

/* Text lines as they are (no fill), each escaped. */
static void man_verbatim(FILE *out, const char *s, size_t n)
{
	const char *end = s + n;

	fputs(".nf\n", out);
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);

		man_text(out, s, len);
		fputc('\n', out);
		s += len + (nl ? 1 : 0);
	}
	fputs(".fi\n", out);
}

/* A --help text without its usage lines (up to the first empty line)
 * and without the store options (they have a section of their own). */
static void man_command_body(FILE *out, const char *help)
{
	const char *body = strstr(help, "\n\n");
	const char *opts = strstr(help, CLI_STORE_OPTS_HELP);
	size_t n;

	body = body ? body + 2 : help;
	n = opts && opts > body ? (size_t)(opts - body) : strlen(body);
	while (n && body[n - 1] == '\n')
		n--;
	if (n)
		man_verbatim(out, body, n);
	if (opts)
		fputs("The store options below apply too.\n", out);
}

/* "usage: metafuse mkfs [...]" without "usage: " */
static const char *usage_line(const char *usage)
{
	return !strncmp(usage, "usage: ", 7) ? usage + 7 : usage;
}

static void man_section_text(FILE *out, const char *title,
			     const char *intro, const char *s)
{
	const char *nl = strchr(s, '\n');

	/* the text's own first line ("environment:") is the title */
	fprintf(out, ".SH %s\n", title);
	if (intro)
		fputs(intro, out);
	if (nl)
		s = nl + 1;
	man_verbatim(out, s, strlen(s) - (s[strlen(s) - 1] == '\n'));
}

void cli_help_man(FILE *out)
{
	size_t i;

	fprintf(out, ".TH METAFUSE 1 \"\" \"metafuse %s\" "
		"\"User Commands\"\n", METAFUSE_VERSION);
	fputs(".SH NAME\nmetafuse \\- mount a volume kept in object storage "
	      "as a POSIX directory\n", out);
	fputs(".SH SYNOPSIS\n", out);
	for (i = 0; cli_commands[i]; i++) {
		man_verbatim(out, usage_line(cli_commands[i]->usage),
			     strlen(usage_line(cli_commands[i]->usage)));
		fputs(".br\n", out);
	}
	fputs(".SH DESCRIPTION\n", out);
	man_verbatim(out, about, strlen(about) - 1);
	fputs(".PP\n", out);
	man_verbatim(out, stores, strlen(stores) - 1);
	fputs(".SH COMMANDS\n", out);
	for (i = 0; cli_commands[i]; i++) {
		const struct cli_cmd *c = cli_commands[i];

		fprintf(out, ".SS %s\n", c->name);
		man_text(out, c->summary, strlen(c->summary));
		fputs(".\n.PP\n", out);
		man_command_body(out, c->help);
	}
	man_section_text(out, "STORE OPTIONS",
			 "Taken by every command that opens a store, in its "
			 "\\fB\\-o\\fR list.\n", CLI_STORE_OPTS_HELP);
	fputs(".SH MOUNT HELPERS\n"
	      "mount(8) and umount(8) run these for a volume in /etc/fstab "
	      "(type \\fBfuse.metafuse\\fR or \\fBmetafuse\\fR).\n", out);
	for (i = 0; cli_helpers[i]; i++) {
		fputs(".PP\n", out);
		man_verbatim(out, cli_helpers[i]->help,
			     strlen(cli_helpers[i]->help) - 1);
	}
	man_section_text(out, "ENVIRONMENT", NULL, environment);
	man_section_text(out, "FILES", NULL, files);
	fputs(".SH EXIT STATUS\n"
	      "0 on success; 1 when the command failed (a message on "
	      "stderr says why) or, for \\fBfsck\\fR, found problems; 2 for "
	      "a usage error or, for \\fBfsck\\fR, an error.\n", out);
	fputs(".SH SEE ALSO\n"
	      "\\fBmount\\fR(8), \\fBumount\\fR(8), \\fBfstab\\fR(5), "
	      "\\fBfusermount3\\fR(1)\n", out);
}

/* ---- bash completion ---- */

/* The -o option names a help text describes: its lines "  name" or
 * "  name=VALUE" (two spaces, then a lower-case name), as "name" or
 * "name=" for those that take a value; also the names listed in a
 * line "  a, b, c=, x-*:" (the passed-through ones). */
static void bash_o_names(FILE *out, const char *help)
{
	const char *p = help;

	while ((p = strstr(p, "\n  "))) {
		const char *q = p + 3;

		p += 3;
		if (!islower((unsigned char)*q) && *q != '_')
			continue;
		for (;;) {
			size_t n = 0;

			while (islower((unsigned char)q[n]) || q[n] == '_' ||
			       isdigit((unsigned char)q[n]))
				n++;
			if (!n)
				break;
			/* "x-*": a pattern, not a name */
			if (q[n] != '-' && q[n] != '*')
				fprintf(out, " %.*s%s", (int)n, q,
					q[n] == '=' ? "=" : "");
			q += n;
			while (*q && *q != ',' && *q != ' ' && *q != '\n' &&
			       *q != ':')
				q++;
			if (*q != ',')
				break;
			q++;
			while (*q == ' ')
				q++;
		}
	}
}

void cli_help_bash(FILE *out)
{
	size_t i, k;

	fputs("# bash completion for metafuse(1); generated by "
	      "'metafuse help --bash-completion'\n"
	      "_metafuse()\n{\n"
	      "\tlocal cur prev cmd words\n"
	      "\tcur=${COMP_WORDS[COMP_CWORD]}\n"
	      "\tprev=${COMP_WORDS[COMP_CWORD-1]}\n"
	      "\tif [ \"$COMP_CWORD\" -eq 1 ]; then\n"
	      "\t\tCOMPREPLY=($(compgen -W \"", out);
	for (i = 0; cli_commands[i]; i++)
		fprintf(out, "%s%s", i ? " " : "", cli_commands[i]->name);
	fputs(" --help --version\" -- \"$cur\"))\n"
	      "\t\treturn\n\tfi\n"
	      "\tcmd=${COMP_WORDS[1]}\n"
	      "\tcase $cmd in\n", out);
	for (i = 0; cli_commands[i]; i++) {
		const struct cli_cmd *c = cli_commands[i];

		fprintf(out, "\t%s)\n\t\tif [ \"$prev\" = -o ]; then\n"
			"\t\t\tlocal o=${cur##*,} pre=\n"
			"\t\t\t[ \"$o\" != \"$cur\" ] && pre=${cur%%,*},\n"
			"\t\t\tCOMPREPLY=($(compgen -P \"$pre\" -W \"",
			c->name);
		bash_o_names(out, c->help);
		fputs("\" -- \"$o\"))\n"
		      "\t\t\tcompopt -o nospace 2>/dev/null\n"
		      "\t\t\treturn\n\t\tfi\n"
		      "\t\twords=\"--help", out);
		for (k = 0; c->shortopts && c->shortopts[k]; k++)
			if (c->shortopts[k] != ':')
				fprintf(out, " -%c", c->shortopts[k]);
		for (k = 0; c->longopts && c->longopts[k].name; k++)
			fprintf(out, " --%s", c->longopts[k].name);
		fputs("\"\n\t\t;;\n", out);
	}
	fputs("\t*) return ;;\n\tesac\n"
	      "\tif [[ $cur == -* ]]; then\n"
	      "\t\tCOMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
	      "\telse\n"
	      "\t\tCOMPREPLY=($(compgen -d -- \"$cur\"))\n"
	      "\tfi\n}\n"
	      "complete -F _metafuse metafuse\n", out);
}

/* ---- `metafuse help` ---- */

static const char help_help[] =
	"usage: metafuse help [COMMAND | --man | --bash-completion]\n"
	"\n"
	"Describes metafuse, or COMMAND (as 'metafuse COMMAND --help').\n"
	"--man prints the metafuse(1) man page (troff) and --bash-completion\n"
	"the bash completion script, both made from the same texts as\n"
	"--help (the build installs them).\n";

enum { OPT_MAN = 256, OPT_BASH };

static const struct option help_longopts[] = {
	{ "man", no_argument, NULL, OPT_MAN },
	{ "bash-completion", no_argument, NULL, OPT_BASH },
	{ NULL, 0, NULL, 0 },
};

const struct cli_cmd cli_cmd_help = {
	.name = "help",
	.summary = "describe metafuse or a command",
	.run = cmd_help,
	.help = help_help,
	.usage = "usage: metafuse help [COMMAND | --man | --bash-completion]",
	.longopts = help_longopts,
	.min_operands = 0,
	.max_operands = 1,
	.flag_status = 2,
};

int cmd_help(int argc, char **argv)
{
	struct cli_args a;
	int c, what = 0;
	size_t i;

	cli_args_init(&a, &cli_cmd_help, argc, argv);
	while ((c = cli_getopt(&a)) > 0)
		what = c;
	if (c < 0)
		return a.status;
	if (what == OPT_MAN) {
		cli_help_man(stdout);
		return 0;
	}
	if (what == OPT_BASH) {
		cli_help_bash(stdout);
		return 0;
	}
	if (a.noperands == 0) {
		cli_usage(stdout);
		return 0;
	}
	for (i = 0; cli_commands[i]; i++)
		if (!strcmp(a.operand[0], cli_commands[i]->name)) {
			fputs(cli_commands[i]->help, stdout);
			return 0;
		}
	cli_error("unknown command '%s' (try 'metafuse --help')",
		  a.operand[0]);
	return 2;
}
