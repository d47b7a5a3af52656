/*
 * args.c - the one option parser of every command: getopt_long over the
 * command's option table, with what all commands share done here once
 * (--help, bad flags, the count of operands).  The rules are in cli.h
 * above struct cli_cmd.
 *
 * getopt_long runs in its "return in order" mode (optstring "-:..."):
 * operands come back one by one as code 1, in the order given, so options
 * may follow them ("mount STORE MNT -o x") whatever POSIXLY_CORRECT says,
 * and argv is left as it is.
 *
 * Invariants:
 *   1. Before each getopt_long call, argv[optind] is the argument being
 *      read (a grouped flag keeps optind on its argument until its last
 *      letter): that is the text a message quotes, whole, as before
 *      getopt ("unknown flag '-fx'").
 *   2. A long option is taken only spelled out in full: getopt_long's
 *      unique abbreviations ("--forc") stay unknown flags, so that a new
 *      option never changes what an old command line means.
 *   3. cli_getopt() prints every message itself; the command only exits
 *      with args->status when it returns -1.
 */
#include "util/compat.h"

#include <getopt.h>

#include "cli/cli.h"

void cli_args_init(struct cli_args *a, const struct cli_cmd *cmd, int argc,
		   char **argv)
{
	size_t n = 0;

	memset(a, 0, sizeof(*a));
	a->cmd = cmd;
	a->argc = argc;
	a->argv = argv;
	snprintf(a->shortopts, sizeof(a->shortopts), "-:h%s",
		 cmd->shortopts ? cmd->shortopts : "");
	for (; cmd->longopts && cmd->longopts[n].name &&
	       n + 2 < ARRAY_SIZE(a->longopts); n++)
		a->longopts[n] = cmd->longopts[n];
	a->longopts[n].name = "help";
	a->longopts[n].has_arg = no_argument;
	a->longopts[n].val = 'h';
}

/* Invariant 2: arg ("--name" or "--name=value") names o in full. */
static bool spelled_out(const char *arg, const struct option *o)
{
	size_t n = strlen(o->name);

	return !strncmp(arg, "--", 2) && !strncmp(arg + 2, o->name, n) &&
	       (arg[2 + n] == '\0' || arg[2 + n] == '=');
}

static void add_operand(struct cli_args *a, const char *arg)
{
	if (a->noperands < CLI_MAX_OPERANDS)
		a->operand[a->noperands] = arg;
	a->noperands++;
}

/* The end of argv: 0 when the operands are as many as the command takes,
 * else the usage line and -1. */
static int check_operands(struct cli_args *a)
{
	if (a->noperands >= a->cmd->min_operands &&
	    a->noperands <= a->cmd->max_operands)
		return 0;
	cli_error("%s", a->cmd->usage);
	a->status = 2;
	return -1;
}

static int bad_flag(struct cli_args *a, const char *arg, bool no_arg)
{
	if (no_arg && a->cmd->no_arg_msg)
		cli_error("%s", a->cmd->no_arg_msg);
	else
		cli_error("unknown flag '%s' (see 'metafuse %s --help')", arg,
			  a->cmd->name);
	a->status = a->cmd->flag_status;
	return -1;
}

int cli_getopt(struct cli_args *a)
{
	for (;;) {
		const char *arg = a->argv[optind]; /* invariant 1 */
		int li = -1;
		int c = getopt_long(a->argc, a->argv, a->shortopts,
				    a->longopts, &li);

		if (c == 1) {
			add_operand(a, optarg);
			continue;
		}
		if (c == -1) {
			/* past "--", everything is an operand */
			for (; optind < a->argc; optind++)
				add_operand(a, a->argv[optind]);
			return check_operands(a);
		}
		if (c == ':' || c == '?')
			return bad_flag(a, arg, c == ':');
		if (li >= 0 && !spelled_out(arg, &a->longopts[li]))
			return bad_flag(a, arg, false);
		if (c == 'h') {
			fputs(a->cmd->help, stdout);
			a->status = 0;
			return -1;
		}
		return c;
	}
}
