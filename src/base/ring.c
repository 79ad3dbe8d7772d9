/*
 * See ring.h.  cap is a power of two, so a slot index wraps with a mask.
 */
#include "base/ring.h"

#include <stdlib.h>
#include <string.h>

#define RING_FIRST_CAP 16 /* slots allocated by the first push */

void ring_init(struct ring *r, uint32_t size)
{
	memset(r, 0, sizeof(*r));
	r->size = size;
}

void ring_fini(struct ring *r)
{
	free(r->slots);
	ring_init(r, r->size);
}

/* Slot of the i-th oldest element; i < cap. */
static uint8_t *slot(const struct ring *r, uint32_t i)
{
	return r->slots + (size_t)((r->head + i) & (r->cap - 1)) * r->size;
}

/* Doubles the storage, moving the elements oldest first to slot 0. */
int ring_grow(struct ring *r)
{
	uint32_t cap = r->cap ? r->cap * 2 : RING_FIRST_CAP;
	uint32_t first = r->cap - r->head; /* elements from head to the end of the array */
	uint8_t *slots;

	if (cap < r->cap)
		return -1;
	slots = malloc((size_t)cap * r->size);
	if (slots == NULL)
		return -1;
	/* Full, so the elements run from head to the end and wrap to slot 0. */
	if (r->count > 0) {
		memcpy(slots, slot(r, 0), (size_t)first * r->size);
		memcpy(slots + (size_t)first * r->size, r->slots,
		       (size_t)(r->count - first) * r->size);
	}
	free(r->slots);
	r->slots = slots;
	r->head = 0;
	r->cap = cap;
	return 0;
}

int ring_push(struct ring *r, const void *elem)
{
	if (r->count == r->cap && ring_grow(r) < 0)
		return -1;
	memcpy(slot(r, r->count), elem, r->size);
	r->count++;
	return 0;
}

bool ring_pop(struct ring *r, void *elem)
{
	if (r->count == 0)
		return false;
	if (elem != NULL)
		memcpy(elem, slot(r, 0), r->size);
	r->head = (r->head + 1) & (r->cap - 1);
	r->count--;
	return true;
}

void *ring_last(const struct ring *r)
{
	return r->count > 0 ? slot(r, r->count - 1) : NULL;
}

void ring_truncate(struct ring *r, uint32_t n)
{
	if (n < r->count)
		r->count = n;
}

void ring_clear(struct ring *r)
{
	r->head = 0;
	r->count = 0;
}
