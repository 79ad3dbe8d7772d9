/*
 * The auth_query answer cache: answers found by (database, user) until they
 * expire, "no such user" kept as NULL, at most `max` entries (the oldest
 * evicted first), expired entries dropped without a lookup for them.
 */
#include "auth/secret_cache.h"

#include <criterion/criterion.h>
#include <stdio.h>

Test(secret_cache, finds_answers_by_database_and_user_until_they_expire)
{
	struct secret_cache sc;
	const char *secret = "unset";

	cr_assert_eq(secret_cache_init(&sc, 100), 0);
	cr_assert_eq(secret_cache_put(&sc, "app", "alice", "SCRAM-SHA-256$a", 0, 1000), 0);
	cr_assert_eq(secret_cache_put(&sc, "app", "nobody", NULL, 0, 1000), 0);
	cr_assert_eq(secret_cache_put(&sc, "appa", "lice", "other", 0, 1000), 0);
	cr_assert(secret_cache_get(&sc, "app", "alice", 999, &secret));
	cr_assert_str_eq(secret, "SCRAM-SHA-256$a");
	cr_assert(secret_cache_get(&sc, "appa", "lice", 999, &secret));
	cr_assert_str_eq(secret, "other");
	cr_assert(secret_cache_get(&sc, "app", "nobody", 999, &secret));
	cr_assert_null(secret, "\"no such user\" is an answer too");
	cr_assert_not(secret_cache_get(&sc, "other", "alice", 999, &secret));
	cr_assert_not(secret_cache_get(&sc, "app", "alice", 1000, &secret), "expired at 1000");
	cr_assert_eq(sc.count, 0, "the expired entries were not dropped");
	secret_cache_fini(&sc);
}

Test(secret_cache, a_new_answer_replaces_the_old_one)
{
	struct secret_cache sc;
	const char *secret;

	cr_assert_eq(secret_cache_init(&sc, 100), 0);
	cr_assert_eq(secret_cache_put(&sc, "app", "alice", "old", 0, 100), 0);
	cr_assert_eq(secret_cache_put(&sc, "app", "alice", "new", 50, 150), 0);
	cr_assert_eq(sc.count, 1);
	cr_assert(secret_cache_get(&sc, "app", "alice", 120, &secret));
	cr_assert_str_eq(secret, "new");
	secret_cache_fini(&sc);
}

Test(secret_cache, holds_at_most_max_entries_evicting_the_oldest)
{
	struct secret_cache sc;
	const char *secret;
	char user[32];

	cr_assert_eq(secret_cache_init(&sc, 1000), 0);
	for (int i = 0; i < 50000; i++) {
		snprintf(user, sizeof(user), "u%d", i);
		cr_assert_eq(secret_cache_put(&sc, "db", user, NULL, i, i + 1000000), 0);
		cr_assert_leq(sc.count, 1000);
	}
	cr_assert_eq(sc.count, 1000);
	cr_assert_leq(sc.nbuckets, 1024, "the table grew past what max needs");
	cr_assert_not(secret_cache_get(&sc, "db", "u48999", 50000, &secret), "not evicted");
	for (int i = 49000; i < 50000; i++) {
		snprintf(user, sizeof(user), "u%d", i);
		cr_assert(secret_cache_get(&sc, "db", user, 50000, &secret), "%s evicted", user);
	}
	secret_cache_fini(&sc);
}

Test(secret_cache, expired_entries_go_as_the_cache_is_used)
{
	struct secret_cache sc;
	const char *secret;
	char user[32];

	cr_assert_eq(secret_cache_init(&sc, 10000), 0);
	for (int i = 0; i < 5000; i++) {
		snprintf(user, sizeof(user), "u%d", i);
		cr_assert_eq(secret_cache_put(&sc, "db", user, "s", 0, i + 100), 0);
	}
	cr_assert_eq(sc.count, 5000);
	/* One lookup of another key later, everything due is gone: u4851..u4999 remain. */
	cr_assert_not(secret_cache_get(&sc, "db", "someone", 4950, &secret));
	cr_assert_eq(sc.count, 149, "%zu entries left", sc.count);
	secret_cache_fini(&sc);
}

/* A TTL shortened by a reload: a newer entry may expire before an older one. */
Test(secret_cache, an_entry_out_of_expiry_order_still_expires)
{
	struct secret_cache sc;
	const char *secret;

	cr_assert_eq(secret_cache_init(&sc, 100), 0);
	cr_assert_eq(secret_cache_put(&sc, "db", "long", "a", 0, 1000), 0);
	cr_assert_eq(secret_cache_put(&sc, "db", "short", "b", 1, 10), 0);
	cr_assert_not(secret_cache_get(&sc, "db", "short", 10, &secret));
	cr_assert(secret_cache_get(&sc, "db", "long", 10, &secret));
	secret_cache_fini(&sc);
}
