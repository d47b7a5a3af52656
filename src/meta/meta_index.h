/*
 * meta_index.h - the metadata as the block index the cache needs.
 *
 * meta sits above cache in the layering; this adapter hands the cache a
 * struct cache_index_ops whose arg is the struct meta.
 */
#ifndef METAFUSE_META_INDEX_H
#define METAFUSE_META_INDEX_H

#include "cache/cache.h"
#include "meta/meta.h"

extern const struct cache_index_ops meta_index_ops;

#endif
