/*
 * The ring of base/ring.h: FIFO order, wrap-around, growth while the
 * elements wrap past the end of the array, access in place, truncation,
 * clearing that keeps the storage, and elements of different sizes.
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "base/ring.h"

static void push_u32(struct ring *r, uint32_t v)
{
	cr_assert_eq(ring_push(r, &v), 0);
}

static uint32_t pop_u32(struct ring *r)
{
	uint32_t v = 0;

	cr_assert(ring_pop(r, &v));
	return v;
}

Test(ring, empty)
{
	struct ring r;
	uint32_t v = 7;

	ring_init(&r, sizeof(uint32_t));
	cr_assert_eq(ring_count(&r), 0);
	cr_assert_null(ring_peek(&r));
	cr_assert_null(ring_last(&r));
	cr_assert_null(ring_at(&r, 0));
	cr_assert_not(ring_pop(&r, &v));
	cr_assert_eq(v, 7, "a failed pop leaves the output alone");
	cr_assert_null(r.slots, "nothing is allocated before the first push");
	ring_fini(&r);
}

Test(ring, fifo_order)
{
	struct ring r;

	ring_init(&r, sizeof(uint32_t));
	for (uint32_t i = 0; i < 100; i++)
		push_u32(&r, i);
	cr_assert_eq(ring_count(&r), 100);
	for (uint32_t i = 0; i < 100; i++)
		cr_assert_eq(pop_u32(&r), i);
	cr_assert_eq(ring_count(&r), 0);
	cr_assert_not(ring_pop(&r, NULL));
	ring_fini(&r);
}

Test(ring, wraps_without_growing)
{
	struct ring r;
	uint32_t next_in = 0, next_out = 0, cap;

	ring_init(&r, sizeof(uint32_t));
	for (int i = 0; i < 10; i++)
		push_u32(&r, next_in++);
	cap = r.cap;
	/* Keep 10 in flight for many laps of the array: head and tail wrap. */
	for (int i = 0; i < 1000; i++) {
		push_u32(&r, next_in++);
		cr_assert_eq(pop_u32(&r), next_out++);
	}
	cr_assert_eq(r.cap, cap, "a ring that never fills never grows");
	cr_assert_eq(ring_count(&r), 10);
	while (ring_count(&r) > 0)
		cr_assert_eq(pop_u32(&r), next_out++);
	cr_assert_eq(next_out, next_in);
	ring_fini(&r);
}

Test(ring, grows_while_wrapped)
{
	struct ring r;
	uint32_t next_in = 0, next_out = 0, cap;

	ring_init(&r, sizeof(uint32_t));
	push_u32(&r, next_in++);
	cap = r.cap;
	/* Move the head near the end of the array, then fill it so the elements wrap. */
	for (uint32_t i = 0; i < cap - 3; i++) {
		push_u32(&r, next_in++);
		cr_assert_eq(pop_u32(&r), next_out++);
	}
	cr_assert_gt(r.head, 0);
	while (ring_count(&r) < cap)
		push_u32(&r, next_in++);
	cr_assert_eq(r.cap, cap);
	cr_assert_lt(r.head + ring_count(&r) - 1, 2 * cap);
	cr_assert_gt(r.head + ring_count(&r), cap, "the elements wrap past the array's end");
	/* One more doubles the storage and must keep the order. */
	push_u32(&r, next_in++);
	cr_assert_eq(r.cap, 2 * cap);
	for (uint32_t i = 0; i < ring_count(&r); i++)
		cr_assert_eq(*(uint32_t *)ring_at(&r, i), next_out + i);
	while (ring_count(&r) > 0)
		cr_assert_eq(pop_u32(&r), next_out++);
	cr_assert_eq(next_out, next_in);
	ring_fini(&r);
}

Test(ring, peek_at_last_in_place)
{
	struct ring r;

	ring_init(&r, sizeof(uint32_t));
	for (uint32_t i = 0; i < 5; i++)
		push_u32(&r, 10 + i);
	pop_u32(&r);
	cr_assert_eq(*(uint32_t *)ring_peek(&r), 11);
	cr_assert_eq(*(uint32_t *)ring_last(&r), 14);
	cr_assert_eq(*(uint32_t *)ring_at(&r, 2), 13);
	cr_assert_null(ring_at(&r, 4));
	/* Pointers are to the elements themselves: writing through one changes it. */
	*(uint32_t *)ring_at(&r, 1) = 99;
	cr_assert_eq(pop_u32(&r), 11);
	cr_assert_eq(pop_u32(&r), 99);
	ring_fini(&r);
}

Test(ring, truncate_keeps_the_oldest)
{
	struct ring r;

	ring_init(&r, sizeof(uint32_t));
	for (uint32_t i = 0; i < 6; i++)
		push_u32(&r, i);
	ring_truncate(&r, 10);
	cr_assert_eq(ring_count(&r), 6);
	ring_truncate(&r, 2);
	cr_assert_eq(ring_count(&r), 2);
	cr_assert_eq(*(uint32_t *)ring_last(&r), 1);
	push_u32(&r, 42);
	cr_assert_eq(pop_u32(&r), 0);
	cr_assert_eq(pop_u32(&r), 1);
	cr_assert_eq(pop_u32(&r), 42);
	ring_fini(&r);
}

Test(ring, clear_keeps_storage)
{
	struct ring r;
	uint8_t *slots;
	uint32_t cap;

	ring_init(&r, sizeof(uint32_t));
	for (uint32_t i = 0; i < 40; i++)
		push_u32(&r, i);
	slots = r.slots;
	cap = r.cap;
	ring_clear(&r);
	cr_assert_eq(ring_count(&r), 0);
	cr_assert_null(ring_peek(&r));
	for (uint32_t i = 0; i < cap; i++)
		push_u32(&r, 100 + i);
	cr_assert_eq(r.slots, slots, "refilling a cleared ring up to its size allocates nothing");
	cr_assert_eq(r.cap, cap);
	for (uint32_t i = 0; i < cap; i++)
		cr_assert_eq(pop_u32(&r), 100 + i);
	ring_fini(&r);
	cr_assert_null(r.slots);
	cr_assert_eq(ring_count(&r), 0);
	push_u32(&r, 5); /* usable again after fini */
	cr_assert_eq(pop_u32(&r), 5);
	ring_fini(&r);
}

Test(ring, element_sizes)
{
	struct ring bytes, ids;
	uint8_t b;
	uint64_t id;

	ring_init(&bytes, sizeof(uint8_t));
	ring_init(&ids, sizeof(uint64_t));
	for (unsigned i = 0; i < 300; i++) {
		b = (uint8_t)i;
		id = 0x100000000ULL * i + i;
		cr_assert_eq(ring_push(&bytes, &b), 0);
		cr_assert_eq(ring_push(&ids, &id), 0);
	}
	for (unsigned i = 0; i < 300; i++) {
		cr_assert(ring_pop(&bytes, &b));
		cr_assert(ring_pop(&ids, &id));
		cr_assert_eq(b, (uint8_t)i);
		cr_assert_eq(id, 0x100000000ULL * i + i);
	}
	ring_fini(&bytes);
	ring_fini(&ids);
}
