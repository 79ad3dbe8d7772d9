/*
 * Token buckets: refill arithmetic, bursts, debt, and the all-or-none take
 * of the in-process limiter.
 */
#include "limit/limiter.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define SEC INT64_C(1000000)

static struct tenant_state *new_state(void)
{
	static struct tenant_state st;

	memset(&st, 0, sizeof(st));
	pthread_mutex_init(&st.lock, NULL);
	return &st;
}

Test(limiter, bucket_starts_full_then_refills_at_the_rate)
{
	struct bucket b = {0};
	struct rate r = {.count = 50, .period_us = SEC};
	int64_t t = 1000 * SEC;

	for (int i = 0; i < 10; i++)
		cr_assert_eq(bucket_take(&b, &r, 10, t, false), 0, "burst token %d", i);
	/* Empty: the next token is due in 1/50 s. */
	cr_assert_eq(bucket_take(&b, &r, 10, t, false), 20000 + 1);
	cr_assert_eq(bucket_take(&b, &r, 10, t + 20000, false), 0);
	/* One second later: 50 more, but never above the burst. */
	bucket_refill(&b, &r, 10, t + 20000 + 10 * SEC);
	cr_assert_float_eq(b.tokens, 10.0, 1e-9);
}

Test(limiter, accepted_count_over_time_is_rate_times_time_plus_burst)
{
	struct bucket b = {0};
	struct rate r = {.count = 100, .period_us = 60 * SEC};
	int64_t start = 5 * SEC, accepted = 0;

	/* A closed loop trying every millisecond for 60 s. */
	for (int64_t t = start; t < start + 60 * SEC; t += 1000)
		accepted += bucket_take(&b, &r, 2, t, false) == 0;
	cr_assert(accepted >= 101 && accepted <= 102, "accepted %lld", (long long)accepted);
}

Test(limiter, forced_takes_go_into_debt_bounded_by_the_burst)
{
	struct bucket b = {0};
	struct rate r = {.count = 1, .period_us = SEC};

	cr_assert_eq(bucket_take(&b, &r, 2, SEC, true), 0);
	cr_assert_eq(bucket_take(&b, &r, 2, SEC, true), 0);
	cr_assert_eq(bucket_take(&b, &r, 2, SEC, true), 0);
	cr_assert_float_eq(b.tokens, -1.0, 1e-9);
	for (int i = 0; i < 10; i++)
		bucket_take(&b, &r, 2, SEC, true);
	cr_assert_float_eq(b.tokens, -2.0, 1e-9, "debt is at most one burst");
	/* Three seconds to pay it back and earn one token. */
	cr_assert_eq(bucket_take(&b, &r, 2, SEC, false), 3 * SEC + 1);
}

Test(limiter, take_is_all_or_none_across_kinds)
{
	struct tenant_state *t = new_state();
	struct tenant_limits lim;
	struct limiter l = {.ops = &limiter_local_ops};
	enum limit_kind blocking = LIMIT_CONNECT;
	unsigned both = (1u << LIMIT_QUERY) | (1u << LIMIT_TRANSACTION);
	bool reserved;

	tenant_limits_init(&lim);
	lim.rate[LIMIT_QUERY] = (struct rate){.count = 10, .period_us = SEC};
	lim.rate[LIMIT_TRANSACTION] = (struct rate){.count = 1, .period_us = SEC};
	lim.burst[LIMIT_TRANSACTION] = 1;
	cr_assert_eq(l.ops->take(&l, NULL, t, &lim, both, SEC, false, 0, &reserved, &blocking), 0);
	cr_assert_gt(l.ops->take(&l, NULL, t, &lim, both, SEC, false, 0, &reserved, &blocking), 0);
	cr_assert_eq(blocking, LIMIT_TRANSACTION);
	/* The refused take left the query bucket alone: 9 of 10 remain. */
	cr_assert_float_eq(l.ops->peek(&l, t, LIMIT_QUERY, &lim.rate[LIMIT_QUERY], 10, SEC), 9.0,
	                   1e-9);
	/* A kind with no rate is never a limit. */
	cr_assert_eq(l.ops->take(&l, NULL, t, &lim, 1u << LIMIT_CONNECT, SEC, false, 0, &reserved,
	                         &blocking),
	             0);
}

/*
 * Waiters reserve their tokens: each is due one interval after the one
 * before, a wait beyond the allowed one reserves nothing, a waiter that
 * leaves gives its token back, and a forced take never cancels reservations.
 */
Test(limiter, waiters_reserve_their_tokens_in_the_order_they_came)
{
	struct tenant_state *t = new_state();
	struct tenant_limits lim;
	struct limiter l = {.ops = &limiter_local_ops};
	enum limit_kind blocking = LIMIT_CONNECT;
	unsigned query = 1u << LIMIT_QUERY;
	const struct rate *r = &lim.rate[LIMIT_QUERY];
	bool reserved = true;

	tenant_limits_init(&lim);
	lim.rate[LIMIT_QUERY] = (struct rate){.count = 10, .period_us = SEC};
	lim.burst[LIMIT_QUERY] = 1;
	cr_assert_eq(l.ops->take(&l, NULL, t, &lim, query, SEC, false, SEC, &reserved, &blocking),
	             0);
	cr_assert_not(reserved);
	for (int i = 1; i <= 3; i++) {
		cr_assert_eq(
		    l.ops->take(&l, NULL, t, &lim, query, SEC, false, SEC, &reserved, &blocking),
		    i * SEC / 10 + 1, "waiter %d", i);
		cr_assert(reserved, "waiter %d", i);
	}
	cr_assert_float_eq(l.ops->peek(&l, t, LIMIT_QUERY, r, 1, SEC), -3.0, 1e-9);
	/* The fourth's token is due in 0.4 s: more than it may wait, so nothing is reserved. */
	cr_assert_eq(
	    l.ops->take(&l, NULL, t, &lim, query, SEC, false, SEC / 4, &reserved, &blocking),
	    4 * SEC / 10 + 1);
	cr_assert_not(reserved);
	cr_assert_float_eq(l.ops->peek(&l, t, LIMIT_QUERY, r, 1, SEC), -3.0, 1e-9);
	/* A statement inside a transaction is counted, but not by cancelling reservations. */
	cr_assert_eq(l.ops->take(&l, NULL, t, &lim, query, SEC, true, 0, &reserved, &blocking), 0);
	cr_assert_float_eq(l.ops->peek(&l, t, LIMIT_QUERY, r, 1, SEC), -3.0, 1e-9);
	/* A waiter that leaves: the next one's token is due sooner. */
	limiter_refund(t, &lim, query);
	cr_assert_eq(l.ops->take(&l, NULL, t, &lim, query, SEC, false, 0, &reserved, &blocking),
	             3 * SEC / 10 + 1);
	/* Time pays the reservations back; then tokens are taken at once again. */
	cr_assert_eq(l.ops->take(&l, NULL, t, &lim, query, 2 * SEC, false, 0, &reserved, &blocking),
	             0);
	cr_assert_not(reserved);
}

/* ---- connect_rate_per_ip ---- */

#include <arpa/inet.h>
#include <netinet/in.h>

#include "limit/ip_limit.h"

static struct sockaddr_in addr4(const char *ip)
{
	struct sockaddr_in a = {.sin_family = AF_INET};

	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

Test(limiter, logins_are_limited_per_address)
{
	struct ip_limiter l = {0};
	struct sockaddr_in a = addr4("10.0.0.1"), b = addr4("10.0.0.2");
	int64_t t = 100 * SEC;

	for (int i = 0; i < 3; i++)
		cr_assert(ip_limiter_admit(&l, (struct sockaddr *)&a, 2, 3, t), "burst login %d",
		          i);
	cr_assert_not(ip_limiter_admit(&l, (struct sockaddr *)&a, 2, 3, t));
	cr_assert(ip_limiter_admit(&l, (struct sockaddr *)&b, 2, 3, t), "another address is apart");
	cr_assert(ip_limiter_admit(&l, (struct sockaddr *)&a, 2, 3, t + SEC / 2), "refilled");
	cr_assert(ip_limiter_admit(&l, (struct sockaddr *)&a, 0, 3, t), "0 = no limit");
	cr_assert_eq(ip_limiter_count(&l), 2);
	ip_limiter_fini(&l);
}

/* An IPv6 site gets a /64: its addresses share one bucket, the next /64 has its own. */
Test(limiter, ipv6_logins_count_by_their_64)
{
	struct ip_limiter l = {0};
	struct sockaddr_in6 a = {.sin6_family = AF_INET6}, same64 = a, other64 = a;
	int64_t t = 100 * SEC;

	inet_pton(AF_INET6, "2001:db8:1:2::1", &a.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", &same64.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:3::1", &other64.sin6_addr);
	cr_assert(ip_limiter_admit(&l, (struct sockaddr *)&a, 1, 2, t));
	cr_assert(ip_limiter_admit(&l, (struct sockaddr *)&same64, 1, 2, t));
	cr_assert_not(ip_limiter_admit(&l, (struct sockaddr *)&same64, 1, 2, t),
	              "a new address in the same /64 got a bucket of its own");
	cr_assert(ip_limiter_admit(&l, (struct sockaddr *)&other64, 1, 2, t));
	cr_assert_eq(ip_limiter_count(&l), 2);
	ip_limiter_fini(&l);
}

Test(limiter, quiet_addresses_are_swept)
{
	struct ip_limiter l = {0};
	int64_t t = 100 * SEC;
	char ip[32];

	/* A scan from many addresses, then quiet: the next sweep frees them. */
	for (int i = 0; i < 5000; i++) {
		struct sockaddr_in a;

		snprintf(ip, sizeof(ip), "10.1.%d.%d", i / 250, i % 250);
		a = addr4(ip);
		ip_limiter_admit(&l, (struct sockaddr *)&a, 10, 2, t);
	}
	cr_assert_gt(ip_limiter_count(&l), 900);
	for (int i = 0; i < 4096; i++) {
		struct sockaddr_in a;

		snprintf(ip, sizeof(ip), "10.2.%d.%d", i / 250, i % 250);
		a = addr4(ip);
		ip_limiter_admit(&l, (struct sockaddr *)&a, 10, 2, t + 10 * SEC);
	}
	cr_assert_lt(ip_limiter_count(&l), 4200, "%zu addresses kept", ip_limiter_count(&l));
	ip_limiter_fini(&l);
}

/* ---- auth_failure_delay ---- */

#include "limit/login_delay.h"

#define MS 1000

static int64_t fail(struct login_delay *d, struct sockaddr_in *a, int64_t t)
{
	return login_delay_failed(d, (struct sockaddr *)a, 100 * MS, 5 * SEC, t);
}

Test(limiter, failed_logins_wait_longer_each_time_up_to_the_cap)
{
	struct login_delay d;
	struct sockaddr_in a = addr4("10.0.0.1"), b = addr4("10.0.0.2");
	const int64_t want[] = {0,         100 * MS,  200 * MS, 400 * MS, 800 * MS,
	                        1600 * MS, 3200 * MS, 5 * SEC,  5 * SEC};
	int64_t t = 100 * SEC;

	cr_assert_eq(login_delay_init(&d), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++, t += SEC)
		cr_assert_eq(fail(&d, &a, t), want[i], "failure %zu", i + 1);
	cr_assert_eq(fail(&d, &b, t), 0, "another address is apart");
	/* A success forgives; so does a quiet minute after the last answer. */
	login_delay_succeeded(&d, (struct sockaddr *)&a, t);
	cr_assert_eq(fail(&d, &a, t), 0);
	cr_assert_eq(fail(&d, &a, t), 100 * MS);
	cr_assert_eq(fail(&d, &b, t), 100 * MS);
	cr_assert_eq(fail(&d, &b, t + 100 * MS + 61 * SEC), 0, "forgiven after a quiet minute");
	/* 0 = off; Unix sockets (no address) are not tracked. */
	cr_assert_eq(login_delay_failed(&d, (struct sockaddr *)&a, 0, 5 * SEC, t), 0);
	cr_assert_eq(login_delay_failed(&d, NULL, 100 * MS, 5 * SEC, t), 0);
	login_delay_fini(&d);
}

Test(limiter, failed_login_table_stays_bounded)
{
	struct login_delay d;
	struct sockaddr_in6 a = {.sin6_family = AF_INET6}, same64, other64;
	int64_t t = 100 * SEC;

	cr_assert_eq(login_delay_init(&d), 0);
	/* A spray from a million addresses keeps at most the table's capacity. */
	for (uint32_t i = 0; i < 1000000; i++) {
		struct sockaddr_in s = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(i)};

		login_delay_failed(&d, (struct sockaddr *)&s, 100 * MS, 5 * SEC, t);
	}
	cr_assert_leq(login_delay_count(&d, t), LOGIN_DELAY_CAPACITY);
	cr_assert_gt(login_delay_count(&d, t), LOGIN_DELAY_CAPACITY / 2);
	cr_assert_eq(login_delay_count(&d, t + 2 * 60 * SEC), 0, "all forgotten when quiet");
	/* IPv6 counts by /64: another address in the same network shares the delay. */
	inet_pton(AF_INET6, "2001:db8:1:2::1", &a.sin6_addr);
	same64 = other64 = a;
	inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", &same64.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:3::1", &other64.sin6_addr);
	cr_assert_eq(login_delay_failed(&d, (struct sockaddr *)&a, 100 * MS, 5 * SEC, t), 0);
	cr_assert_eq(login_delay_failed(&d, (struct sockaddr *)&same64, 100 * MS, 5 * SEC, t),
	             100 * MS);
	cr_assert_eq(login_delay_failed(&d, (struct sockaddr *)&other64, 100 * MS, 5 * SEC, t), 0);
	login_delay_fini(&d);
}
