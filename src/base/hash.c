/*
 * Hash functions; see hash.h.
 */
#include "base/hash.h"

#include <errno.h>
#include <sys/random.h>
#include <time.h>

uint64_t hash_fnv1a(const void *data, size_t n, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h = 0xcbf29ce484222325ULL ^ seed;
	size_t i = 0;

	/* Four bytes a round: the same hash, a quarter of the loop's tests (query_stats
	 * fingerprints every statement with it). */
	for (; i + 4 <= n; i += 4) {
		h = (h ^ p[i]) * 0x100000001b3ULL;
		h = (h ^ p[i + 1]) * 0x100000001b3ULL;
		h = (h ^ p[i + 2]) * 0x100000001b3ULL;
		h = (h ^ p[i + 3]) * 0x100000001b3ULL;
	}
	for (; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
	do {                                                                                       \
		v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32);                          \
		v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                                             \
		v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                                             \
		v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32);                          \
	} while (0)

uint64_t hash_sip13(uint64_t k0, uint64_t k1, const void *data, size_t n)
{
	const unsigned char *p = data;
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
	uint64_t b = (uint64_t)n << 56, m;
	size_t i;

	for (; n >= 8; p += 8, n -= 8) {
		m = 0;
		for (i = 0; i < 8; i++)
			m |= (uint64_t)p[i] << (8 * i);
		v3 ^= m;
		SIPROUND;
		v0 ^= m;
	}
	for (i = 0; i < n; i++)
		b |= (uint64_t)p[i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

int hash_key_draw(struct hash_key *k)
{
	uint64_t key[2];
	ssize_t got;
	struct timespec ts;

	do
		got = getrandom(key, sizeof(key), 0);
	while (got < 0 && errno == EINTR);
	k->drawn = true;
	if (got == (ssize_t)sizeof(key)) {
		k->k0 = key[0], k->k1 = key[1];
		return 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	k->k0 = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)k;
	k->k1 = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&ts;
	return -1;
}

uint64_t hash_keyed(const struct hash_key *k, const void *data, size_t n)
{
	return hash_sip13(k->k0, k->k1, data, n);
}
