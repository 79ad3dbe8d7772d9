/*
 * A growable FIFO of fixed-size elements in one circular array.  Storage is
 * allocated on the first push and doubles only when the ring is full; it is
 * never shrunk, so a ring reused for each batch of work (a server's
 * outstanding requests, the statement ids that go with them) stops
 * allocating once it has seen its largest batch.  Elements are copied in and
 * out by value; ring_at() gives a pointer to one in place.
 */
#ifndef SLUICE_RING_H
#define SLUICE_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ring {
	uint8_t *slots; /* cap elements of `size` bytes; NULL until the first push */
	uint32_t head;  /* slot of the oldest element */
	uint32_t count; /* elements in use */
	uint32_t cap;   /* slots: 0, then a power of two; doubles when full, never shrinks */
	uint32_t size;  /* bytes per element */
};

/* An empty ring of `size`-byte elements; allocates nothing. */
void ring_init(struct ring *r, uint32_t size);
/* Frees the storage; the ring is empty again and may be reused. */
void ring_fini(struct ring *r);

/* Copies `elem` in as the newest element.  Returns 0, or -1 when out of memory (unchanged). */
int ring_push(struct ring *r, const void *elem);
/* Copies the oldest element to `elem` (unless NULL) and removes it; false when empty. */
bool ring_pop(struct ring *r, void *elem);

/* Doubles the storage of a full ring.  Returns 0, or -1 when out of memory (unchanged). */
int ring_grow(struct ring *r);

/*
 * Room for a new newest element, counted in: the caller writes the element
 * there.  NULL when out of memory (unchanged).  Inline, with ring_drop_head,
 * for the rings of one element per request on the relay's path, where
 * ring_push's memcpy of r->size bytes cost more than the element.
 */
static inline void *ring_push_slot(struct ring *r)
{
	if (r->count == r->cap && ring_grow(r) < 0)
		return NULL;
	return r->slots + (size_t)((r->head + r->count++) & (r->cap - 1)) * r->size;
}

/* Removes the oldest element; the ring must not be empty. */
static inline void ring_drop_head(struct ring *r)
{
	r->head = (r->head + 1) & (r->cap - 1);
	r->count--;
}

/*
 * The i-th oldest element in place (0 is the oldest), or NULL when i >= count.
 * Inline, with ring_peek and ring_count: the relay looks at the head of a
 * server's queue several times per message.
 */
static inline void *ring_at(const struct ring *r, uint32_t i)
{
	return i < r->count ? r->slots + (size_t)((r->head + i) & (r->cap - 1)) * r->size : NULL;
}

/* The oldest element in place, or NULL when empty. */
static inline void *ring_peek(const struct ring *r)
{
	return ring_at(r, 0);
}

/* The newest element in place, or NULL when empty. */
void *ring_last(const struct ring *r);

static inline uint32_t ring_count(const struct ring *r)
{
	return r->count;
}

/* Keeps the n oldest elements and drops the rest (no change when n >= count). */
void ring_truncate(struct ring *r, uint32_t n);
/* Drops every element; the storage is kept for the next use. */
void ring_clear(struct ring *r);

#endif
