/*
 * The keyed hash of every hash table: one key per table, drawn at random,
 * so that the bucket of a client-chosen key cannot be computed from outside.
 */
#include "base/hash.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "limit/ip_limit.h"
#include "limit/login_delay.h"

Test(hash, keyed_is_siphash_under_the_drawn_key)
{
	struct hash_key a = {0}, b = {0};
	static const char text[] = "select * from t where id = $1";

	cr_assert_eq(hash_key_draw(&a), 0);
	cr_assert_eq(hash_key_draw(&b), 0);
	cr_assert(a.drawn && b.drawn);
	cr_assert(a.k0 != b.k0 || a.k1 != b.k1, "two draws gave the same key");
	cr_assert_eq(hash_keyed(&a, text, sizeof(text)),
	             hash_sip13(a.k0, a.k1, text, sizeof(text)));
	cr_assert_eq(hash_keyed(&a, text, sizeof(text)), hash_keyed(&a, text, sizeof(text)));
	/* The same text lands elsewhere under another key: nothing to aim at. */
	cr_assert_neq(hash_keyed(&a, text, sizeof(text)), hash_keyed(&b, text, sizeof(text)));
}

/*
 * 4,096 names that an unkeyed hash would let an attacker pick to share one
 * bucket of 1,024 do not: under a random key no bucket gets more than a
 * few times its share.
 */
Test(hash, chosen_keys_spread_over_the_buckets)
{
	static unsigned counts[1024];
	struct hash_key k;
	char name[32];
	unsigned most = 0;

	hash_key_draw(&k);
	for (int i = 0; i < 4096; i++) {
		int n = snprintf(name, sizeof(name), "stmt_%d", i);
		unsigned b = (unsigned)(hash_keyed(&k, name, (size_t)n) & 1023);

		if (++counts[b] > most)
			most = counts[b];
	}
	cr_assert_leq(most, 20, "one bucket holds %u of 4096 names", most);
}

Test(hash, the_login_tables_draw_their_keys)
{
	struct ip_limiter l = {0};
	struct login_delay d;
	struct sockaddr_in a = {.sin_family = AF_INET};

	inet_pton(AF_INET, "192.0.2.1", &a.sin_addr);
	cr_assert(ip_limiter_admit(&l, (struct sockaddr *)&a, 10, 10, 1000000));
	cr_assert(l.key.drawn, "connect_rate_per_ip's buckets use an undrawn key");
	ip_limiter_fini(&l);
	cr_assert_eq(login_delay_init(&d), 0);
	cr_assert(d.key.drawn, "the failed-login table uses an undrawn key");
	login_delay_fini(&d);
}
