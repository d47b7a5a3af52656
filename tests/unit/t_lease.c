/*
 * t_lease.c - the volume's lease (volume.c): what taking and renewing it
 * ask of the store (a renewal is one PUT; read first only when asked to
 * check), a renewal that finds another owner writes nothing, and a lease
 * of another host is refused until it expires (the refusal says when),
 * taken with force at once.
 */
#include "util/compat.h"

#include <time.h>
#include <unistd.h>

#include "blob/blob.h"
#include "check.h"
#include "store/store.h"
#include "util/util.h"
#include "volume/volume.h"

/* Store calls since c0: get, put, del. */
static void calls_since(struct store *s, const struct store_fault_counts *c0,
			uint64_t *get, uint64_t *put, uint64_t *del)
{
	struct store_fault_counts c;

	store_fault_get_counts(s, &c);
	*get = c.calls[1] - c0->calls[1];
	*put = c.calls[0] - c0->calls[0];
	*del = c.calls[2] - c0->calls[2];
}

/* A lease as another process wrote it. */
static void put_lease(struct store *s, const char *host, long pid,
		      const char *owner, long long expires)
{
	static const struct blob_ctx plain;
	struct buf text = BUF_INIT, enc = BUF_INIT;

	buf_appendf(&text, "host=%s\npid=%ld\nowner=%s\nsince=%lld\n"
		    "expires=%lld\n", host, pid, owner,
		    (long long)time(NULL) - 100, expires);
	CHECK_RC(blob_encode(&plain, text.data, text.len, &enc), 0);
	CHECK_RC(store_put(s, "lease", enc.data, enc.len), 0);
	buf_free(&text);
	buf_free(&enc);
}

static void test_requests(struct store *s)
{
	struct store_fault_counts c0;
	struct volume_lease l;
	struct buf err = BUF_INIT;
	uint64_t get, put, del;
	long long before;

	store_fault_get_counts(s, &c0);
	before = (long long)time(NULL);
	CHECK_RC(volume_lease_hold(s, 900, 0, &l, &err), 0);
	/* read (none), write, read back after the pause */
	calls_since(s, &c0, &get, &put, &del);
	CHECK_EQ_U64(get, 2);
	CHECK_EQ_U64(put, 1);
	CHECK(l.expires >= before + 900 && l.expires <= time(NULL) + 900);
	CHECK(l.pid == (long)getpid());

	/* a renewal is one PUT, nothing read */
	store_fault_get_counts(s, &c0);
	CHECK_RC(volume_lease_renew(s, &l, 900, false), 0);
	calls_since(s, &c0, &get, &put, &del);
	CHECK_EQ_U64(get, 0);
	CHECK_EQ_U64(put, 1);
	/* checked: read, then written */
	store_fault_get_counts(s, &c0);
	CHECK_RC(volume_lease_renew(s, &l, 60, true), 0);
	calls_since(s, &c0, &get, &put, &del);
	CHECK_EQ_U64(get, 1);
	CHECK_EQ_U64(put, 1);
	CHECK(l.expires <= time(NULL) + 60);

	/* taken over with force by another mount: a checked renewal finds
	 * it and writes nothing */
	put_lease(s, "elsewhere", 42, "someone-else", time(NULL) + 900);
	store_fault_get_counts(s, &c0);
	CHECK_RC(volume_lease_renew(s, &l, 900, true), -EBUSY);
	calls_since(s, &c0, &get, &put, &del);
	CHECK_EQ_U64(put, 0);
	/* nor does a release */
	CHECK_RC(volume_lease_release(s, l.owner), -EBUSY);
	calls_since(s, &c0, &get, &put, &del);
	CHECK_EQ_U64(del, 0);
	store_del(s, "lease");
	buf_free(&err);
}

static void test_other_host(struct store *s)
{
	struct volume_lease l;
	struct buf err = BUF_INIT;
	char owner[64];

	/* alive elsewhere until its expiry: refused, saying until when */
	put_lease(s, "elsewhere", 42, "theirs", time(NULL) + 600);
	CHECK_RC(volume_lease_hold(s, 900, 0, &l, &err), -EBUSY);
	CHECK(strstr(buf_str(&err), "already mounted by host elsewhere") !=
	      NULL);
	CHECK(strstr(buf_str(&err), "can be taken after") != NULL);
	CHECK(strstr(buf_str(&err), "--force") != NULL);
	CHECK(strchr(buf_str(&err), '\n') == NULL);
	buf_reset(&err);
	/* the offline commands' form says the same */
	CHECK_RC(volume_lease_take(s, 30, 0, owner, sizeof(owner), &err),
		 -EBUSY);
	buf_reset(&err);
	/* with force at once */
	CHECK_RC(volume_lease_hold(s, 900, 1, &l, &err), 0);
	CHECK(strcmp(l.owner, "theirs") != 0);
	CHECK_RC(volume_lease_release(s, l.owner), 0);

	/* expired: taken without force */
	put_lease(s, "elsewhere", 42, "theirs", time(NULL) - 1);
	CHECK_RC(volume_lease_hold(s, 900, 0, &l, &err), 0);
	CHECK_RC(volume_lease_release(s, l.owner), 0);

	/* this host, a pid that is not a running metafuse: at once */
	{
		char host[256];

		CHECK_RC(gethostname(host, sizeof(host)), 0);
		host[sizeof(host) - 1] = 0;
		put_lease(s, host, 999999999L, "dead", time(NULL) + 600);
		CHECK_RC(volume_lease_hold(s, 900, 0, &l, &err), 0);
		CHECK_RC(volume_lease_release(s, l.owner), 0);
	}
	/* the offline commands' lease: valid twice their ttl */
	CHECK_RC(volume_lease_take(s, 30, 0, owner, sizeof(owner), &err), 0);
	CHECK_RC(volume_lease_release(s, owner), 0);
	buf_free(&err);
}

int main(void)
{
	char tmp[] = "/tmp/t_lease.XXXXXX";
	struct store *inner = NULL, *s = NULL;

	if (!mkdtemp(tmp) || blob_global_init()) {
		perror("t_lease");
		return 1;
	}
	CHECK_RC(store_open(tmp, 1, &inner, NULL), 0);
	CHECK_RC(store_fault_wrap(inner, &s), 0);
	if (s) {
		test_requests(s);
		test_other_host(s);
		store_close(s);
	}
	rm_rf(tmp);
	return check_done("t_lease");
}
