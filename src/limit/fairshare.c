/*
 * Fair shares of pool groups between tenants; see fairshare.h.
 */
#include "limit/fairshare.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limit/quota.h"

/* A weight-1 tenant's pass grows by this per server; large, so weights up to 1000 divide it finely.
 */
#define STRIDE INT64_C(1048576)

static struct share_group *group_find_locked(struct quota_registry *reg, const char *key)
{
	for (struct share_group *g = reg->groups; g != NULL; g = g->next)
		if (strcmp(g->key, key) == 0)
			return g;
	return NULL;
}

static struct share_group *group_make_locked(struct quota_registry *reg, const char *key)
{
	struct share_group *g = calloc(1, sizeof(*g));

	if (g == NULL || (g->key = strdup(key)) == NULL) {
		free(g);
		return NULL;
	}
	atomic_init(&g->shares, NULL);
	atomic_init(&g->live, 0);
	atomic_init(&g->vtime, 0);
	g->next = reg->groups;
	reg->groups = g;
	return g;
}

static struct share *share_make_locked(struct share_group *g, const char *tenant)
{
	struct share *s = calloc(1, sizeof(*s));

	if (s == NULL || (s->tenant = strdup(tenant)) == NULL) {
		free(s);
		return NULL;
	}
	s->group = g;
	atomic_init(&s->live, false);
	atomic_init(&s->used, 0);
	atomic_init(&s->min, 0);
	atomic_init(&s->weight, 1);
	atomic_init(&s->pass, atomic_load(&g->vtime));
	s->next = atomic_load(&g->shares);
	atomic_store_explicit(&g->shares, s, memory_order_release);
	return s;
}

struct share *share_join(struct quota_registry *reg, const char *key, const char *tenant)
{
	struct share_group *g;
	struct share *s = NULL;

	pthread_mutex_lock(&reg->lock);
	if ((g = group_find_locked(reg, key)) == NULL)
		g = group_make_locked(reg, key);
	if (g != NULL) {
		for (s = atomic_load(&g->shares); s != NULL; s = s->next)
			if (strcmp(s->tenant, tenant) == 0)
				break;
		if (s == NULL)
			s = share_make_locked(g, tenant);
	}
	if (s != NULL) {
		g->refs++;
		if (s->pools++ == 0) {
			atomic_store(&s->live, true);
			atomic_fetch_add(&g->live, 1);
		}
	}
	pthread_mutex_unlock(&reg->lock);
	/* As for quotas: never run a tenant without its guarantees. */
	if (s == NULL)
		abort();
	return s;
}

static void group_free(struct share_group *g)
{
	struct share *s = atomic_load(&g->shares);

	while (s != NULL) {
		struct share *next = s->next;

		free(s->tenant);
		free(s);
		s = next;
	}
	free(g->key);
	free(g);
}

void share_leave(struct quota_registry *reg, struct share *s)
{
	struct share_group *g = s->group, **link;

	pthread_mutex_lock(&reg->lock);
	if (--s->pools == 0) {
		atomic_store(&s->live, false);
		atomic_fetch_sub(&g->live, 1);
	}
	if (--g->refs > 0) {
		pthread_mutex_unlock(&reg->lock);
		return;
	}
	for (link = &reg->groups; *link != g; link = &(*link)->next)
		;
	*link = g->next;
	pthread_mutex_unlock(&reg->lock);
	group_free(g);
}

void share_registry_fini(struct quota_registry *reg)
{
	while (reg->groups != NULL) {
		struct share_group *next = reg->groups->next;

		group_free(reg->groups);
		reg->groups = next;
	}
}

void share_configure(struct share *s, int min, int weight)
{
	atomic_store(&s->min, min > 0 ? min : 0);
	atomic_store(&s->weight, weight > 0 ? weight : 1);
}

int share_reserved(const struct share *to, const struct share *from)
{
	int reserved = 0;

	for (const struct share *s = atomic_load_explicit(&to->group->shares, memory_order_acquire);
	     s != NULL; s = s->next) {
		int deficit;

		if (s == to || !atomic_load_explicit(&s->live, memory_order_relaxed))
			continue;
		deficit = atomic_load_explicit(&s->min, memory_order_relaxed) -
		          atomic_load_explicit(&s->used, memory_order_relaxed) + (s == from);
		if (deficit > 0)
			reserved += deficit;
	}
	return reserved;
}

/* *v = max(*v, at_least). */
static void raise_to(_Atomic int64_t *v, int64_t at_least)
{
	int64_t cur = atomic_load_explicit(v, memory_order_relaxed);

	while (cur < at_least && !atomic_compare_exchange_weak_explicit(
	                             v, &cur, at_least, memory_order_relaxed, memory_order_relaxed))
		;
}

void share_wake(struct share *s)
{
	raise_to(&s->pass, atomic_load_explicit(&s->group->vtime, memory_order_relaxed));
}

void share_charge(struct share *s)
{
	int64_t stride = STRIDE / atomic_load_explicit(&s->weight, memory_order_relaxed);
	int64_t pass = atomic_fetch_add_explicit(&s->pass, stride, memory_order_relaxed);

	raise_to(&s->group->vtime, pass);
}
