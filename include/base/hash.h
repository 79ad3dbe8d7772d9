/*
 * The project's hash functions.  Every hash table buckets its keys with
 * SipHash-1-3 under a random key: the keys come from clients (addresses,
 * statement names and texts, user and database names), and an unkeyed hash
 * would let them choose keys that collide and turn lookups linear.  FNV-1a
 * is for values that must be the same in every process (query fingerprints
 * shown to users), never for choosing a bucket.
 */
#ifndef SLUICE_HASH_H
#define SLUICE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* FNV-1a of n bytes; `seed` (0 = plain FNV-1a) is mixed into the offset basis. */
uint64_t hash_fnv1a(const void *data, size_t n, uint64_t seed);
/* SipHash-1-3 of n bytes under the key (k0, k1). */
uint64_t hash_sip13(uint64_t k0, uint64_t k1, const void *data, size_t n);

/*
 * A random SipHash key, one per table (or per owner of several), drawn when
 * the table is set up: without the key nobody can compute which keys collide.
 */
struct hash_key {
	uint64_t k0, k1; /* SipHash key */
	bool drawn;      /* set by hash_key_draw; tables that start zeroed draw lazily */
};

/*
 * Fills k from getrandom().  Should the kernel refuse (no entropy source at
 * all), it falls back to the clock and addresses and returns -1: weaker, but
 * the tables still work.
 */
int hash_key_draw(struct hash_key *k);
/* SipHash-1-3 of n bytes under k. */
uint64_t hash_keyed(const struct hash_key *k, const void *data, size_t n);

#endif
