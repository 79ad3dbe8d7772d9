/*
 * The process-wide table of prepared statements whose plans went stale:
 * generations only grow, two reports of the same plan give one generation,
 * a worker catches up with what it has not seen, and a full table forgets
 * the oldest and says so to whoever had not caught up with it.
 */
#include "pool/stale_plans.h"

#include <criterion/criterion.h>

/* What stale_plans_since reported, as a small list. */
struct seen {
	uint64_t hash[8];
	uint32_t generation[8];
	int n;
};

static void note(void *arg, uint64_t hash, uint32_t generation)
{
	struct seen *s = arg;

	cr_assert_lt(s->n, 8);
	s->hash[s->n] = hash;
	s->generation[s->n++] = generation;
}

Test(stale_plans, a_report_gives_a_new_generation_once_per_plan)
{
	struct stale_plans t;
	uint32_t g;

	cr_assert_eq(stale_plans_init(&t, 4), 0);
	cr_assert_eq(stale_plans_epoch(&t), 0);
	cr_assert_eq(stale_plans_generation(&t, 7), 0);
	g = stale_plans_report(&t, 7, 0);
	cr_assert_eq(g, 1);
	cr_assert_eq(stale_plans_epoch(&t), 1);
	/* Another worker's server held the same plan: same news, no new generation. */
	cr_assert_eq(stale_plans_report(&t, 7, 0), 1);
	cr_assert_eq(stale_plans_epoch(&t), 1);
	/* The plan prepared at generation 1 went stale in turn. */
	cr_assert_eq(stale_plans_report(&t, 7, 1), 2);
	cr_assert_eq(stale_plans_report(&t, 9, 0), 3);
	cr_assert_eq(stale_plans_generation(&t, 7), 2);
	cr_assert_eq(stale_plans_generation(&t, 9), 3);
	stale_plans_fini(&t);
}

Test(stale_plans, catching_up_lists_what_went_stale_after_what_was_seen)
{
	struct stale_plans t;
	struct seen s = {.n = 0};
	bool missed = true;

	cr_assert_eq(stale_plans_init(&t, 4), 0);
	stale_plans_report(&t, 7, 0);
	stale_plans_report(&t, 9, 0);
	cr_assert_eq(stale_plans_since(&t, 1, note, &s, &missed), 2);
	cr_assert_not(missed);
	cr_assert_eq(s.n, 1);
	cr_assert_eq(s.hash[0], 9);
	cr_assert_eq(s.generation[0], 2);
	s.n = 0;
	cr_assert_eq(stale_plans_since(&t, 2, note, &s, &missed), 2);
	cr_assert_eq(s.n, 0);
	stale_plans_fini(&t);
}

Test(stale_plans, a_full_table_forgets_the_oldest_and_says_who_missed_it)
{
	struct stale_plans t;
	struct seen s = {.n = 0};
	bool missed = false;

	cr_assert_eq(stale_plans_init(&t, 2), 0);
	/* 1 and 3 share a bucket (cap 2), 3 at its head: 1 goes from behind it. */
	stale_plans_report(&t, 1, 0);
	stale_plans_report(&t, 3, 0);
	stale_plans_report(&t, 2, 0);
	cr_assert_eq(stale_plans_generation(&t, 1), 0, "the oldest was forgotten");
	cr_assert_eq(stale_plans_generation(&t, 3), 2);
	cr_assert_eq(stale_plans_generation(&t, 2), 3);
	cr_assert_eq(stale_plans_since(&t, 0, note, &s, &missed), 3);
	cr_assert(missed, "generation 1 was dropped before this reader saw it");
	cr_assert_eq(s.n, 2);
	s.n = 0;
	cr_assert_eq(stale_plans_since(&t, 1, note, &s, &missed), 3);
	cr_assert_not(missed, "this reader had seen generation 1");
	/* A forgotten statement reported again gets a generation newer than any. */
	cr_assert_eq(stale_plans_report(&t, 1, 0), 4);
	cr_assert_eq(stale_plans_generation(&t, 3), 0, "now 3 was the oldest");
	cr_assert_eq(stale_plans_generation(&t, 2), 3);
	stale_plans_fini(&t);
}
