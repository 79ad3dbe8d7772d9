/*
 * The quota and tenant registry; see quota.h.
 */
#include "limit/quota.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limit/fairshare.h"
#include "limit/limiter.h"

void quota_registry_init(struct quota_registry *reg)
{
	pthread_mutex_init(&reg->lock, NULL);
	reg->quotas = NULL;
	reg->tenants = NULL;
	reg->groups = NULL;
	reg->capped = 0;
}

void quota_registry_fini(struct quota_registry *reg)
{
	while (reg->quotas != NULL) {
		struct quota *next = reg->quotas->next;

		free(reg->quotas->key);
		free(reg->quotas);
		reg->quotas = next;
	}
	while (reg->tenants != NULL) {
		struct tenant_state *next = reg->tenants->next;

		pthread_mutex_destroy(&reg->tenants->lock);
		free(reg->tenants->name);
		free(reg->tenants);
		reg->tenants = next;
	}
	share_registry_fini(reg);
	pthread_mutex_destroy(&reg->lock);
}

/* The quota with this key, with one more reference, or NULL; under the lock. */
static struct quota *find_locked(struct quota_registry *reg, const char *key)
{
	for (struct quota *q = reg->quotas; q != NULL; q = q->next) {
		if (strcmp(q->key, key) == 0) {
			q->refs++;
			return q;
		}
	}
	return NULL;
}

/* A new quota with one reference, on the chain; NULL when out of memory.  Under the lock. */
static struct quota *make_locked(struct quota_registry *reg, const char *key)
{
	struct quota *q = calloc(1, sizeof(*q));

	if (q == NULL || (q->key = strdup(key)) == NULL) {
		free(q);
		return NULL;
	}
	atomic_init(&q->used, 0);
	q->refs = 1;
	q->next = reg->quotas;
	reg->quotas = q;
	return q;
}

static struct quota *find_or_make(struct quota_registry *reg, const char *kind, const char *name,
                                  bool capped, int max, bool *refused)
{
	char key[512];
	struct quota *q;

	snprintf(key, sizeof(key), "%s:%s", kind, name);
	pthread_mutex_lock(&reg->lock);
	q = find_locked(reg, key);
	if (q == NULL && capped && max > 0 && reg->capped >= max) {
		*refused = true;
	} else if (q == NULL && (q = make_locked(reg, key)) != NULL && capped) {
		q->capped = true;
		reg->capped++;
	}
	pthread_mutex_unlock(&reg->lock);
	/* Out of memory at pool creation: abort rather than run without caps. */
	if (q == NULL && !*refused)
		abort();
	return q;
}

struct quota *quota_find(struct quota_registry *reg, const char *kind, const char *name)
{
	bool refused = false;

	return find_or_make(reg, kind, name, false, 0, &refused);
}

struct quota *quota_find_capped(struct quota_registry *reg, const char *kind, const char *name,
                                int max)
{
	bool refused = false;

	return find_or_make(reg, kind, name, true, max, &refused);
}

void quota_hold(struct quota_registry *reg, struct quota *q)
{
	pthread_mutex_lock(&reg->lock);
	q->refs++;
	pthread_mutex_unlock(&reg->lock);
}

void quota_put(struct quota_registry *reg, struct quota *q)
{
	struct quota **link;

	if (q == NULL)
		return;
	pthread_mutex_lock(&reg->lock);
	if (--q->refs > 0) {
		pthread_mutex_unlock(&reg->lock);
		return;
	}
	for (link = &reg->quotas; *link != q; link = &(*link)->next)
		;
	*link = q->next;
	if (q->capped)
		reg->capped--;
	pthread_mutex_unlock(&reg->lock);
	free(q->key);
	free(q);
}

struct tenant_state *quota_tenant(struct quota_registry *reg, const char *name)
{
	struct tenant_state *t;

	pthread_mutex_lock(&reg->lock);
	for (t = reg->tenants; t != NULL; t = t->next)
		if (strcmp(t->name, name) == 0)
			break;
	if (t == NULL && (t = calloc(1, sizeof(*t))) != NULL) {
		if ((t->name = strdup(name)) == NULL) {
			free(t);
			t = NULL;
		} else {
			pthread_mutex_init(&t->lock, NULL);
			t->next = reg->tenants;
			reg->tenants = t;
		}
	}
	pthread_mutex_unlock(&reg->lock);
	if (t == NULL)
		abort(); /* as for quotas: never run a tenant without its limits */
	return t;
}

bool quota_take(struct quota *q, int limit)
{
	int used = atomic_load(&q->used);

	do {
		if (limit > 0 && used >= limit)
			return false;
	} while (!atomic_compare_exchange_weak(&q->used, &used, used + 1));
	return true;
}

void quota_give(struct quota *q)
{
	atomic_fetch_sub(&q->used, 1);
}
