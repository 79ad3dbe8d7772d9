/*
 * Caps shared by every worker: a quota is an atomic count of server
 * connections held against one limit (per pool key, database, user or
 * tenant), and the registry also keeps each tenant's shared state (its
 * token buckets and counters, limiter.h).  Entries are found or made on the
 * cold path (pool creation, under the registry's lock) and live until exit;
 * taking and giving a unit is one atomic operation.
 */
#ifndef SLUICE_QUOTA_H
#define SLUICE_QUOTA_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct tenant_state;

struct quota {
	char *key;          /* "db:NAME", "user:NAME", "pool:DB/USER" or "tenant:NAME" */
	_Atomic int used;   /* server connections counted against it */
	struct quota *next; /* registry chain */
};

struct quota_registry {
	pthread_mutex_t lock;         /* guards the two chains only */
	struct quota *quotas;         /* chain of quotas */
	struct tenant_state *tenants; /* chain of tenant states */
};

void quota_registry_init(struct quota_registry *reg);
void quota_registry_fini(struct quota_registry *reg);
/* Find or make the quota `kind`:`name`; aborts when out of memory (never run uncapped). */
struct quota *quota_find(struct quota_registry *reg, const char *kind, const char *name);
/* Find or make a tenant's shared state; aborts when out of memory, as quotas do. */
struct tenant_state *quota_tenant(struct quota_registry *reg, const char *name);
/* Take one unit if `used < limit` (limit <= 0 means unlimited). */
bool quota_take(struct quota *q, int limit);
void quota_give(struct quota *q);

#endif
