/*
 * s3_conf.c - the S3 backend's configuration: what the options of open,
 * the environment and the AWS CLI's files say about the credentials, the
 * region, the endpoint and its addressing, TLS and the CA bundle, applied
 * to a struct store_s3 (s3_conf_apply()).
 *
 * Sources, in the order the AWS CLI uses; the first that sets a value
 * wins:
 *   - the options: endpoint, region, ca_bundle, and credentials, a file
 *     of our own that group and others may not read;
 *   - the environment: AWS_ACCESS_KEY_ID with AWS_SECRET_ACCESS_KEY (and
 *     AWS_SESSION_TOKEN), AWS_REGION, AWS_DEFAULT_REGION,
 *     AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS_CA_BUNDLE;
 *   - when no keys were found yet, the shared credentials file
 *     (AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials), section
 *     PROFILE;
 *   - the config file (AWS_CONFIG_FILE, else ~/.aws/config), section
 *     "profile PROFILE" ("default" for the default profile), whose keys
 *     count only when no other source had any.
 * PROFILE is AWS_PROFILE, else "default".  The region defaults to
 * us-east-1, the endpoint to AWS's own for the region.
 *
 * The endpoint is "http[s]://HOST[:PORT]" and nothing after.  Addressing
 * is path style (ORIGIN/BUCKET/KEY) when asked, or by default for an
 * endpoint that is an IP address or localhost and for a bucket name
 * with '.' or '_'; else virtual-host style (BUCKET.HOST/KEY).  Bodies are
 * left out of the signature (UNSIGNED-PAYLOAD, see s3_http.c) over
 * verified HTTPS and to a loopback endpoint, unless sign_payload.
 *
 * Data model: struct s3_conf collects the values while the sources are
 * read; s3_conf_apply() then moves them into struct store_s3, which owns
 * them until s3_conf_release().
 *
 * Invariants:
 *   1. Secrets (the secret key, the session token, the text of a file
 *      that may hold them) are never logged nor put in a message, and are
 *      wiped before their memory is freed.
 *   2. A value, once set, is never replaced by a later source
 *      (set_once()).
 *   3. A profile named by AWS_PROFILE that no file has, when the keys had
 *      to come from the files, is an error of its own (-ENOENT), so that
 *      a typo is not reported as "no credentials".
 */
#include "util/compat.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "store/s3_int.h"
#include "util/util.h"

#define S3_DEFAULT_CONNECTIONS 16
#define S3_DEFAULT_PART_SIZE (16ULL << 20)
#define S3_MIN_PART_SIZE (5ULL << 20)
#define S3_DEFAULT_ATTEMPTS 8

static void wipe_free(char *p)
{
	if (p) {
		sodium_memzero(p, strlen(p));
		free(p);
	}
}

/* ---- reading the sources ---- */

struct s3_conf {
	char *access_key;
	char *secret_key;
	char *token;
	char *region;
	char *endpoint;
	char *ca_bundle;
	bool profile_found; /* a file read had the profile's section */
};

static void conf_free(struct s3_conf *c)
{
	free(c->access_key);
	wipe_free(c->secret_key);
	wipe_free(c->token);
	free(c->region);
	free(c->endpoint);
	free(c->ca_bundle);
	memset(c, 0, sizeof(*c));
}

static char *trim(char *p)
{
	char *e;

	while (*p == ' ' || *p == '\t')
		p++;
	e = p + strlen(p);
	while (e > p && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return p;
}

/* Set *dst to a copy of val unless already set. 0 or -ENOMEM. */
static int set_once(char **dst, const char *val)
{
	if (*dst || !val || !*val)
		return 0;
	*dst = strdup(val);
	return *dst ? 0 : -ENOMEM;
}

/*
 * Read the INI file path and take from section `section` the keys the
 * AWS tools use.  A missing file is fine (0).  With private_only, a file
 * readable by group or others is refused (-EPERM).
 */
static int conf_read_ini(const char *path, const char *section,
			 bool private_only, struct s3_conf *c,
			 struct buf *err)
{
	struct buf text = BUF_INIT;
	struct stat st;
	char *line, *next;
	bool in = false;
	int rc;

	if (private_only) {
		if (stat(path, &st) < 0) {
			int e = errno;

			buf_appendf(err, "credentials file %s: %s", path,
				    strerror(e));
			return -e;
		}
		if (st.st_mode & 077) {
			buf_appendf(err, "credentials file %s is readable by "
					 "others (mode %03o); make it private "
					 "with chmod 600",
				    path, (unsigned)(st.st_mode & 0777));
			return -EPERM;
		}
	}
	rc = read_file(path, &text);
	if (rc == -ENOENT && !private_only)
		return 0;
	if (rc) {
		buf_appendf(err, "cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	for (line = (char *)text.data; line && !rc; line = next) {
		char *eq, *k, *v;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		line = trim(line);
		if (!*line || *line == '#' || *line == ';')
			continue;
		if (*line == '[') {
			char *end = strchr(line, ']');

			if (end)
				*end = '\0';
			in = !strcmp(trim(line + 1), section);
			c->profile_found |= in;
			continue;
		}
		if (!in || !(eq = strchr(line, '=')))
			continue;
		*eq = '\0';
		k = trim(line);
		v = trim(eq + 1);
		if (!strcmp(k, "aws_access_key_id"))
			rc = set_once(&c->access_key, v);
		else if (!strcmp(k, "aws_secret_access_key"))
			rc = set_once(&c->secret_key, v);
		else if (!strcmp(k, "aws_session_token"))
			rc = set_once(&c->token, v);
		else if (!strcmp(k, "region"))
			rc = set_once(&c->region, v);
		else if (!strcmp(k, "endpoint_url"))
			rc = set_once(&c->endpoint, v);
		else if (!strcmp(k, "ca_bundle"))
			rc = set_once(&c->ca_bundle, v);
	}
	if (text.data)
		sodium_memzero(text.data, text.len);
	buf_free(&text);
	return rc;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

/* Add path to the list of files searched, for the message of a profile
 * not found. */
static int searched_add(struct buf *searched, const char *path)
{
	return buf_appendf(searched, "%s%s", searched->len ? ", " : "", path);
}

/* The AWS file named by the variable var, else ~/.aws/name; path stays
 * empty when neither var nor HOME is set. */
static int aws_file(const char *var, const char *name, struct buf *path)
{
	const char *home = env("HOME");

	if (env(var))
		return buf_appends(path, env(var));
	if (home)
		return buf_appendf(path, "%s/.aws/%s", home, name);
	return 0;
}

/* The options, and the credentials file they name (which must be
 * private). */
static int conf_from_options(const struct store_options *o,
			     const char *profile, struct s3_conf *c,
			     struct buf *searched, struct buf *err)
{
	int rc = set_once(&c->endpoint, o->endpoint);

	if (!rc)
		rc = set_once(&c->region, o->region);
	if (!rc)
		rc = set_once(&c->ca_bundle, o->ca_bundle);
	if (!rc && o->credentials) {
		rc = conf_read_ini(o->credentials, profile, true, c, err);
		if (!rc)
			rc = searched_add(searched, o->credentials);
	}
	return rc;
}

/* The environment; the keys only as a pair. */
static int conf_from_env(struct s3_conf *c)
{
	int rc = 0;

	if (!c->access_key && env("AWS_ACCESS_KEY_ID") &&
	    env("AWS_SECRET_ACCESS_KEY")) {
		rc = set_once(&c->access_key, env("AWS_ACCESS_KEY_ID"));
		if (!rc)
			rc = set_once(&c->secret_key,
				      env("AWS_SECRET_ACCESS_KEY"));
		if (!rc)
			rc = set_once(&c->token, env("AWS_SESSION_TOKEN"));
	}
	if (!rc)
		rc = set_once(&c->region, env("AWS_REGION"));
	if (!rc)
		rc = set_once(&c->region, env("AWS_DEFAULT_REGION"));
	if (!rc)
		rc = set_once(&c->endpoint, env("AWS_ENDPOINT_URL_S3"));
	if (!rc)
		rc = set_once(&c->endpoint, env("AWS_ENDPOINT_URL"));
	if (!rc)
		rc = set_once(&c->ca_bundle, env("AWS_CA_BUNDLE"));
	return rc;
}

/* The shared credentials file, section profile. */
static int conf_from_credentials_file(const char *profile,
				      struct s3_conf *c, struct buf *searched,
				      struct buf *err)
{
	struct buf path = BUF_INIT;
	int rc = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials", &path);

	if (!rc && path.len)
		rc = conf_read_ini(buf_str(&path), profile, false, c, err);
	if (!rc && path.len)
		rc = searched_add(searched, buf_str(&path));
	buf_free(&path);
	return rc;
}

/* The config file, section "profile PROFILE" (or "default"); its keys
 * only when no other source had any. */
static int conf_from_config_file(const char *profile, struct s3_conf *c,
				 struct buf *searched, struct buf *err)
{
	struct buf path = BUF_INIT, sect = BUF_INIT;
	struct s3_conf keys = { 0 };
	int rc = aws_file("AWS_CONFIG_FILE", "config", &path);

	if (!rc)
		rc = !strcmp(profile, "default") ?
			     buf_appends(&sect, "default") :
			     buf_appendf(&sect, "profile %s", profile);
	if (rc || !path.len)
		goto out;
	rc = conf_read_ini(buf_str(&path), buf_str(&sect), false, &keys, err);
	/* credentials found in config only count when none were */
	if (!rc && !c->access_key && keys.access_key && keys.secret_key) {
		c->access_key = keys.access_key;
		c->secret_key = keys.secret_key;
		c->token = keys.token;
		keys.access_key = keys.secret_key = keys.token = NULL;
	}
	if (!rc)
		rc = set_once(&c->region, keys.region);
	if (!rc)
		rc = set_once(&c->endpoint, keys.endpoint);
	if (!rc)
		rc = set_once(&c->ca_bundle, keys.ca_bundle);
	if (!rc)
		rc = searched_add(searched, buf_str(&path));
	c->profile_found |= keys.profile_found;
	conf_free(&keys);
out:
	buf_free(&path);
	buf_free(&sect);
	return rc;
}

/* Everything in the order the AWS CLI uses: explicit options, then the
 * environment, then the shared files.  A profile named by AWS_PROFILE
 * that no file has, when the keys had to come from the files, is an
 * error of its own (-ENOENT), so a typo is not reported as "no
 * credentials". */
static int conf_load(const struct store_options *o, struct s3_conf *c,
		     struct buf *err)
{
	const char *profile = env("AWS_PROFILE");
	struct buf searched = BUF_INIT;
	int rc;

	if (!profile)
		profile = "default";
	rc = conf_from_options(o, profile, c, &searched, err);
	if (!rc)
		rc = conf_from_env(c);
	if (!rc && !c->access_key)
		rc = conf_from_credentials_file(profile, c, &searched, err);
	if (!rc)
		rc = conf_from_config_file(profile, c, &searched, err);
	if (!rc && env("AWS_PROFILE") && !c->access_key &&
	    !c->profile_found) {
		buf_appendf(err, "AWS profile '%s' (AWS_PROFILE) not found in "
				 "%s",
			    profile,
			    searched.len ? buf_str(&searched) : "any file "
								"(HOME is "
								"not set)");
		rc = -ENOENT;
	}
	if (!rc)
		rc = set_once(&c->region, "us-east-1");
	buf_free(&searched);
	return rc;
}

/* ---- the endpoint ---- */

/* host (without port) is an IPv4/IPv6 literal or localhost. */
static bool host_is_local_or_ip(const char *host, size_t n)
{
	size_t i;
	bool digits_dots = n > 0;

	if (n && host[0] == '[')
		return true;
	if ((n == 9 && !strncasecmp(host, "localhost", 9)) ||
	    (n > 10 && !strncasecmp(host + n - 10, ".localhost", 10)))
		return true;
	for (i = 0; i < n; i++)
		if (!((host[i] >= '0' && host[i] <= '9') || host[i] == '.'))
			digits_dots = false;
	return digits_dots;
}

/* host (without port) is localhost or a loopback address literal:
 * 127.0.0.0/8 or [::1].  Traffic to it never leaves the machine. */
static bool host_is_loopback(const char *host, size_t n)
{
	char lit[INET6_ADDRSTRLEN];
	struct in6_addr a6;
	struct in_addr a4;

	if (n == 9 && !strncasecmp(host, "localhost", 9))
		return true;
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' &&
	    n - 2 < sizeof(lit)) {
		memcpy(lit, host + 1, n - 2);
		lit[n - 2] = 0;
		return inet_pton(AF_INET6, lit, &a6) == 1 &&
		       IN6_IS_ADDR_LOOPBACK(&a6);
	}
	if (n >= sizeof(lit))
		return false;
	memcpy(lit, host, n);
	lit[n] = 0;
	return inet_pton(AF_INET, lit, &a4) == 1 &&
	       (ntohl(a4.s_addr) >> 24) == 127;
}

/* Split endpoint "scheme://hostport[/]" and fill origin/host/path_base. */
static int setup_endpoint(struct store_s3 *s, const char *endpoint,
			  enum store_s3_addressing addr, struct buf *err)
{
	const char *sep = strstr(endpoint, "://"), *hp, *end, *colon;
	size_t scheme_len, hlen, namelen;
	struct buf b = BUF_INIT;
	bool path_style;
	int rc;

	if (!sep || ((scheme_len = (size_t)(sep - endpoint)) != 4 &&
		     scheme_len != 5) ||
	    (strncasecmp(endpoint, "http", 4) ||
	     (scheme_len == 5 && tolower((unsigned char)endpoint[4]) != 's'))) {
		buf_appendf(err, "invalid S3 endpoint '%s' (want http://HOST"
				 "[:PORT] or https://HOST[:PORT])", endpoint);
		return -EINVAL;
	}
	hp = sep + 3;
	end = hp + strcspn(hp, "/?#");
	if (end == hp || (*end && strcmp(end, "/"))) {
		buf_appendf(err, "invalid S3 endpoint '%s' (no path allowed "
				 "after the host)", endpoint);
		return -EINVAL;
	}
	hlen = (size_t)(end - hp);
	/* the host name without the port, for the addressing decision */
	colon = hp[0] == '[' ? memchr(hp, ']', hlen) : memchr(hp, ':', hlen);
	if (hp[0] == '[')
		namelen = colon ? (size_t)(colon - hp) + 1 : hlen;
	else
		namelen = colon ? (size_t)(colon - hp) : hlen;
	s->loopback = host_is_loopback(hp, namelen);
	path_style = addr == STORE_S3_ADDR_PATH ||
		     (addr == STORE_S3_ADDR_AUTO &&
		      (host_is_local_or_ip(hp, namelen) ||
		       strchr(s->bucket, '.') || strchr(s->bucket, '_')));

	if (path_style) {
		rc = buf_appendf(&b, "%.*s", (int)hlen, hp);
		s->host = rc ? NULL : (char *)buf_detach(&b, NULL);
		rc = buf_appendf(&b, "/%s", s->bucket);
		s->path_base = rc ? NULL : (char *)buf_detach(&b, NULL);
		rc = buf_appendf(&b, "%.*s://%.*s", (int)scheme_len, endpoint,
				 (int)hlen, hp);
	} else {
		rc = buf_appendf(&b, "%s.%.*s", s->bucket, (int)hlen, hp);
		s->host = rc ? NULL : (char *)buf_detach(&b, NULL);
		s->path_base = strdup("");
		rc = buf_appendf(&b, "%.*s://%s", (int)scheme_len, endpoint,
				 s->host ? s->host : "");
	}
	s->origin = rc ? NULL : (char *)buf_detach(&b, NULL);
	s->endpoint = strdup(endpoint);
	buf_free(&b);
	if (!s->host || !s->path_base || !s->origin || !s->endpoint)
		return -ENOMEM;
	return 0;
}

/* ---- applying the configuration ---- */

/* The keys, the token and the region move from c to s. */
static int conf_take_credentials(struct store_s3 *s, struct s3_conf *c,
				 struct buf *err)
{
	if (!c->access_key || !c->secret_key) {
		buf_appendf(err, "no S3 credentials for %s: set "
				 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
				 "AWS_PROFILE with ~/.aws/credentials, or "
				 "-o credentials=FILE", s->base.url);
		return -EACCES;
	}
	s->access_key = c->access_key;
	s->secret_key = c->secret_key;
	s->token = c->token;
	s->region = c->region;
	c->access_key = c->secret_key = c->token = c->region = NULL;
	return 0;
}

/* The endpoint (AWS's own for the region when none was given) into s's
 * origin, host and path_base. */
static int conf_take_endpoint(struct store_s3 *s, struct s3_conf *c,
			      enum store_s3_addressing addr, struct buf *err)
{
	struct buf b = BUF_INIT;
	int rc;

	if (!c->endpoint) {
		rc = buf_appendf(&b, "https://s3.%s.amazonaws.com",
				 s->region);
		if (rc) {
			buf_free(&b);
			return rc;
		}
		c->endpoint = (char *)buf_detach(&b, NULL);
	}
	return setup_endpoint(s, c->endpoint, addr, err);
}

/* Certificate checks, what the signature covers, and the CA bundle,
 * which must be readable. */
static int conf_take_tls(struct store_s3 *s, struct s3_conf *c,
			 const struct store_options *o, struct buf *err)
{
	s->verify_tls = !o->no_verify_tls;
	s->unsigned_payload = !o->sign_payload &&
			      (s->loopback ||
			       (s->verify_tls &&
				!strncasecmp(s->origin, "https://", 8)));
	if (c->ca_bundle && access(c->ca_bundle, R_OK) < 0) {
		int e = errno;

		buf_appendf(err, "CA bundle %s: %s", c->ca_bundle,
			    strerror(e));
		return -e;
	}
	s->ca_bundle = c->ca_bundle;
	c->ca_bundle = NULL;
	return 0;
}

static void conf_limits(struct store_s3 *s, const struct store_options *o)
{
	s->max_conns = o->connections ? o->connections : S3_DEFAULT_CONNECTIONS;
	s->part_size = o->part_size ? o->part_size : S3_DEFAULT_PART_SIZE;
	if (s->part_size < S3_MIN_PART_SIZE)
		s->part_size = S3_MIN_PART_SIZE;
	s->attempts = o->attempts ? o->attempts : S3_DEFAULT_ATTEMPTS;
}

int s3_conf_apply(struct store_s3 *s, const struct store_options *o,
		  struct buf *err)
{
	struct s3_conf c = { 0 };
	int rc = conf_load(o, &c, err);

	if (!rc)
		rc = conf_take_credentials(s, &c, err);
	if (!rc)
		rc = conf_take_endpoint(s, &c, o->addressing, err);
	if (!rc)
		rc = conf_take_tls(s, &c, o, err);
	if (!rc)
		conf_limits(s, o);
	conf_free(&c);
	return rc;
}

void s3_conf_release(struct store_s3 *s)
{
	free(s->origin);
	free(s->host);
	free(s->path_base);
	free(s->endpoint);
	free(s->region);
	free(s->ca_bundle);
	free(s->access_key);
	wipe_free(s->secret_key);
	wipe_free(s->token);
}
