/*
 * secret_cache: answers of auth_query per (database, user), for a fixed time.
 * A hash table keyed by a random per-cache SipHash key (chosen names cannot
 * pile up in one bucket), plus a list in insertion order: with one TTL that
 * is also the order of expiry, so expired entries are dropped from its head
 * as the cache is used, and past `max` entries the oldest is evicted.  Every
 * operation is O(1) on average; nothing walks the whole cache.  Secrets are
 * wiped (OPENSSL_cleanse) when an entry goes.  One per worker: not locked.
 */
#ifndef SLUICE_SECRET_CACHE_H
#define SLUICE_SECRET_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/list.h"

struct secret_entry;

struct secret_cache {
	struct secret_entry **buckets; /* nbuckets chains */
	size_t nbuckets;               /* a power of two; grows with count, never past max */
	size_t count;                  /* entries */
	size_t max;                    /* cap on count: the oldest goes to make room */
	struct list_node order;        /* entries, oldest first */
	uint64_t k0, k1;               /* SipHash key */
};

/* 0, or -1 when out of memory.  max >= 1. */
int secret_cache_init(struct secret_cache *sc, size_t max);
/* Frees every entry (secrets wiped). */
void secret_cache_fini(struct secret_cache *sc);
/*
 * The answer for (dbname, user) if one has not expired at `now_us`: returns
 * true and sets *secret (NULL = "no such user"), valid until the next put
 * or fini.  Drops expired entries it meets on the way.
 */
bool secret_cache_get(struct secret_cache *sc, const char *dbname, const char *user, int64_t now_us,
                      const char **secret);
/*
 * Keeps an answer until expires_us, replacing one for the same key; evicts
 * the oldest entry when the cache is full.  0, or -1 when out of memory.
 */
int secret_cache_put(struct secret_cache *sc, const char *dbname, const char *user,
                     const char *secret, int64_t now_us, int64_t expires_us);

#endif
