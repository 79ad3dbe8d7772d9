/*
 * The project's hash functions, for its hash tables.  FNV-1a is quick on
 * short keys that an attacker cannot choose freely (or that are seeded at
 * start); SipHash-1-3 under a random key is for tables whose keys come from
 * unauthenticated clients, where chosen collisions would turn lookups linear.
 */
#ifndef SLUICE_HASH_H
#define SLUICE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a of n bytes; `seed` (0 = plain FNV-1a) is mixed into the offset basis. */
uint64_t hash_fnv1a(const void *data, size_t n, uint64_t seed);
/* SipHash-1-3 of n bytes under the key (k0, k1). */
uint64_t hash_sip13(uint64_t k0, uint64_t k1, const void *data, size_t n);

#endif
