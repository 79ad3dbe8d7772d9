/*
 * Per-address login buckets; see ip_limit.h.
 */
#include "limit/ip_limit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "limit/limiter.h"

#define SLOTS       1024
#define SWEEP_EVERY 4096 /* inserts between sweeps of refilled buckets */

struct ip_bucket {
	struct ip_bucket *next;
	uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
	struct bucket b;
};

bool ip_limit_key(const struct sockaddr *sa, uint8_t key[16])
{
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		memset(key, 0, 10);
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		/* One site gets a /64 and picks any address in it; a mapped IPv4 stays whole. */
		if (!IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)key))
			memset(key + 8, 0, 8);
		return true;
	}
	return false;
}

static size_t slot_of(const struct ip_limiter *l, const uint8_t key[16])
{
	return (size_t)(hash_keyed(&l->key, key, 16) % SLOTS);
}

/* Drop buckets that are full again: their addresses have been quiet. */
static void sweep(struct ip_limiter *l, const struct rate *r, int64_t burst, int64_t now_us)
{
	for (size_t i = 0; i < l->nslots; i++) {
		struct ip_bucket **pp = &l->slots[i];

		while (*pp != NULL) {
			struct ip_bucket *e = *pp;

			bucket_refill(&e->b, r, burst, now_us);
			if (e->b.tokens >= (double)burst) {
				*pp = e->next;
				free(e);
				l->count--;
			} else {
				pp = &e->next;
			}
		}
	}
	l->inserts_since_sweep = 0;
}

bool ip_limiter_admit(struct ip_limiter *l, const struct sockaddr *addr, int per_second, int burst,
                      int64_t now_us)
{
	struct rate r = {.count = per_second, .period_us = 1000000};
	uint8_t key[16];
	struct ip_bucket *e;
	size_t slot;

	if (per_second <= 0 || !ip_limit_key(addr, key))
		return true;
	if (burst < 1)
		burst = 1;
	if (l->slots == NULL) {
		if ((l->slots = calloc(SLOTS, sizeof(*l->slots))) == NULL)
			return true; /* out of memory: do not lock everybody out */
		l->nslots = SLOTS;
		hash_key_draw(&l->key);
	}
	slot = slot_of(l, key);
	for (e = l->slots[slot]; e != NULL; e = e->next)
		if (memcmp(e->addr, key, 16) == 0)
			break;
	if (e == NULL) {
		if (++l->inserts_since_sweep >= SWEEP_EVERY)
			sweep(l, &r, burst, now_us);
		if ((e = calloc(1, sizeof(*e))) == NULL)
			return true;
		memcpy(e->addr, key, 16);
		e->next = l->slots[slot];
		l->slots[slot] = e;
		l->count++;
	}
	return bucket_take(&e->b, &r, burst, now_us, false) == 0;
}

size_t ip_limiter_count(const struct ip_limiter *l)
{
	return l->count;
}

void ip_limiter_fini(struct ip_limiter *l)
{
	for (size_t i = 0; i < l->nslots; i++) {
		while (l->slots[i] != NULL) {
			struct ip_bucket *e = l->slots[i];

			l->slots[i] = e->next;
			free(e);
		}
	}
	free(l->slots);
	memset(l, 0, sizeof(*l));
}
