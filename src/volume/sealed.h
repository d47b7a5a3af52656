/*
 * sealed.h - a store that seals every object but the descriptor: what
 * an encrypted volume's layers above this one are given as their store,
 * so that none of them knows of the encryption.
 *
 * put seals the object under its key (blob/crypt.h) and puts the sealed
 * bytes; get opens what the inner store returns, and answers -EIO, with
 * a log line naming the key, for an object that fails to open (never its
 * bytes); list and head report the plaintext's size (the stored size
 * less CRYPT_OVERHEAD); del and del_many pass through.  The object
 * "volume" (volume.h), which is read before the key is known, passes
 * through untouched.  The wrapper's counters are the inner store's.
 * A put of page-aligned data (STORE_DIRECT_ALIGN) is sealed into a
 * page-aligned buffer, so that a local store still writes it with
 * O_DIRECT.
 */
#ifndef METAFUSE_SEALED_H
#define METAFUSE_SEALED_H

#include "util/compat.h"

#include "blob/crypt.h"
#include "store/store.h"

/* Wrap inner, which the wrapper owns (and closes), under a copy of k.
 * 0 or -ENOMEM (then inner is still the caller's). */
int sealed_store_wrap(struct store *inner, const struct crypt_key *k,
		      struct store **out);
/* The store s wraps when s is a sealed store, else s itself. */
struct store *sealed_store_inner(struct store *s);

#endif
