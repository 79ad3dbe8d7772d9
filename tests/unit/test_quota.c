/*
 * The quota registry: quotas are shared by name and counted, the last
 * reference frees one, and quota_find_capped refuses a new name once `max`
 * capped quotas are alive (names already there are still found).
 */
#include "limit/quota.h"

#include <criterion/criterion.h>

Test(quota, same_name_same_quota_freed_with_the_last_reference)
{
	struct quota_registry reg;
	struct quota *a, *b, *other;

	quota_registry_init(&reg);
	a = quota_find(&reg, "db", "app");
	b = quota_find(&reg, "db", "app");
	other = quota_find(&reg, "user", "app");
	cr_assert_eq(a, b);
	cr_assert_neq(a, other);
	cr_assert_eq(a->refs, 2);
	quota_put(&reg, a);
	cr_assert_not_null(reg.quotas);
	quota_put(&reg, b);
	quota_put(&reg, other);
	cr_assert_null(reg.quotas, "a quota outlived its last reference");
	quota_registry_fini(&reg);
}

Test(quota, capped_names_are_refused_past_max_until_one_is_freed)
{
	struct quota_registry reg;
	struct quota *a, *b, *again, *plain;

	quota_registry_init(&reg);
	a = quota_find_capped(&reg, "autodb", "a", 2);
	b = quota_find_capped(&reg, "autodb", "b", 2);
	/* Uncapped quotas do not count against the cap. */
	plain = quota_find(&reg, "db", "c");
	cr_assert(a != NULL && b != NULL);
	cr_assert_eq(reg.capped, 2);
	cr_assert_null(quota_find_capped(&reg, "autodb", "c", 2));
	/* A name that is there already is not a new one. */
	again = quota_find_capped(&reg, "autodb", "a", 2);
	cr_assert_eq(again, a);
	quota_put(&reg, again);
	quota_put(&reg, b);
	cr_assert_eq(reg.capped, 1);
	b = quota_find_capped(&reg, "autodb", "c", 2);
	cr_assert_not_null(b);
	/* 0 = no cap. */
	cr_assert_not_null(quota_find_capped(&reg, "autodb", "d", 0));
	cr_assert_eq(reg.capped, 3);
	quota_put(&reg, plain);
	quota_registry_fini(&reg);
}
