/*
 * Login attempts per source address (connect_rate_per_ip): a token bucket per
 * address, kept by the control loop that accepts every TCP connection, so no
 * lock is needed.  A flood from one address is refused after its startup
 * packet (53400), before any authentication work, while other addresses and
 * established clients are untouched.  Buckets that have refilled are swept,
 * so memory follows the addresses active within about one burst's refill.
 */
#ifndef SLUICE_IP_LIMIT_H
#define SLUICE_IP_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/hash.h"

struct ip_bucket;

struct ip_limiter {
	struct ip_bucket **slots; /* chained hash table */
	size_t nslots;
	size_t count;
	size_t inserts_since_sweep;
	struct hash_key key; /* drawn with the slots: chosen addresses cannot share one chain */
};

/*
 * The key an address counts under, in both per-address limits (this one and
 * login_delay.h): IPv4 as IPv4-mapped IPv6, IPv6 by its /64, which one site
 * gets whole.  False for an address that is neither (a Unix socket).
 */
bool ip_limit_key(const struct sockaddr *sa, uint8_t key[16]);
/* Take a login token for the address; false when it has none (per_second > 0). */
bool ip_limiter_admit(struct ip_limiter *l, const struct sockaddr *addr, int per_second, int burst,
                      int64_t now_us);
/* Addresses tracked (for tests and SHOW). */
size_t ip_limiter_count(const struct ip_limiter *l);
void ip_limiter_fini(struct ip_limiter *l);

#endif
