/*
 * Prepared statements whose plans went stale, for every worker; see
 * stale_plans.h.
 */
#include "pool/stale_plans.h"

#include <stdlib.h>

int stale_plans_init(struct stale_plans *t, uint32_t cap)
{
	atomic_init(&t->epoch, 0);
	pthread_mutex_init(&t->lock, NULL);
	t->count = 0;
	t->cap = cap;
	t->forgotten = 0;
	t->plans = calloc(cap, sizeof(*t->plans));
	t->buckets = malloc(cap * sizeof(*t->buckets));
	if (t->plans == NULL || t->buckets == NULL)
		return -1;
	for (uint32_t i = 0; i < cap; i++)
		t->buckets[i] = -1;
	return 0;
}

void stale_plans_fini(struct stale_plans *t)
{
	pthread_mutex_destroy(&t->lock);
	free(t->plans);
	free(t->buckets);
}

static int32_t *bucket_of(struct stale_plans *t, uint64_t hash)
{
	return &t->buckets[hash & (t->cap - 1)];
}

static struct stale_plan *find_locked(struct stale_plans *t, uint64_t hash)
{
	for (int32_t i = *bucket_of(t, hash); i >= 0; i = t->plans[i].next)
		if (t->plans[i].hash == hash)
			return &t->plans[i];
	return NULL;
}

/* A free slot: the next unused one, or the plan that went stale longest ago, forgotten. */
static struct stale_plan *take_slot_locked(struct stale_plans *t)
{
	struct stale_plan *old = &t->plans[0];
	int32_t *link;

	if (t->count < t->cap)
		return &t->plans[t->count++];
	for (uint32_t i = 1; i < t->cap; i++)
		if (t->plans[i].generation < old->generation)
			old = &t->plans[i];
	for (link = bucket_of(t, old->hash); *link != old - t->plans; link = &t->plans[*link].next)
		;
	*link = old->next;
	if (old->generation > t->forgotten)
		t->forgotten = old->generation;
	return old;
}

uint32_t stale_plans_report(struct stale_plans *t, uint64_t hash, uint32_t generation)
{
	struct stale_plan *p;
	uint32_t now;

	pthread_mutex_lock(&t->lock);
	p = find_locked(t, hash);
	if (p != NULL && p->generation > generation) {
		now = p->generation;
		pthread_mutex_unlock(&t->lock);
		return now;
	}
	if (p == NULL) {
		p = take_slot_locked(t);
		p->hash = hash;
		p->next = *bucket_of(t, hash);
		*bucket_of(t, hash) = (int32_t)(p - t->plans);
	}
	now = atomic_load_explicit(&t->epoch, memory_order_relaxed) + 1;
	p->generation = now;
	atomic_store_explicit(&t->epoch, now, memory_order_release);
	pthread_mutex_unlock(&t->lock);
	return now;
}

uint32_t stale_plans_generation(struct stale_plans *t, uint64_t hash)
{
	struct stale_plan *p;
	uint32_t generation;

	pthread_mutex_lock(&t->lock);
	p = find_locked(t, hash);
	generation = p != NULL ? p->generation : 0;
	pthread_mutex_unlock(&t->lock);
	return generation;
}

uint32_t stale_plans_since(struct stale_plans *t, uint32_t seen, stale_plan_fn fn, void *arg,
                           bool *missed)
{
	uint32_t epoch;

	pthread_mutex_lock(&t->lock);
	for (uint32_t i = 0; i < t->count; i++)
		if (t->plans[i].generation > seen)
			fn(arg, t->plans[i].hash, t->plans[i].generation);
	*missed = t->forgotten > seen;
	epoch = atomic_load_explicit(&t->epoch, memory_order_relaxed);
	pthread_mutex_unlock(&t->lock);
	return epoch;
}
