/*
 * The quota and tenant registry; see quota.h.
 */
#include "limit/quota.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limit/limiter.h"

void quota_registry_init(struct quota_registry *reg)
{
	pthread_mutex_init(&reg->lock, NULL);
	reg->quotas = NULL;
	reg->tenants = NULL;
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
	pthread_mutex_destroy(&reg->lock);
}

struct quota *quota_find(struct quota_registry *reg, const char *kind, const char *name)
{
	char key[512];
	struct quota *q;

	snprintf(key, sizeof(key), "%s:%s", kind, name);
	pthread_mutex_lock(&reg->lock);
	for (q = reg->quotas; q != NULL; q = q->next)
		if (strcmp(q->key, key) == 0)
			break;
	if (q == NULL) {
		q = calloc(1, sizeof(*q));
		if (q != NULL && (q->key = strdup(key)) != NULL) {
			atomic_init(&q->used, 0);
			q->next = reg->quotas;
			reg->quotas = q;
		} else if (q != NULL) {
			free(q);
			q = NULL;
		}
	}
	pthread_mutex_unlock(&reg->lock);
	/* Out of memory at pool creation: abort rather than run without caps. */
	if (q == NULL)
		abort();
	return q;
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
