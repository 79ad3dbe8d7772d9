/*
 * Caps shared by every worker: a quota is an atomic count of server
 * connections held against one limit (per pool key, database, user or
 * tenant), and the registry also keeps each tenant's shared state (its
 * token buckets and counters, limiter.h).  Quotas are found or made on the
 * cold path (pool creation, under the registry's lock) and counted: each
 * holder puts its reference back, and the last one frees the quota, so names
 * that come and go (databases reached through "*") leave nothing behind.
 * Tenant states live until exit (tenants are named by the configuration).
 * Taking and giving a unit is one atomic operation.
 */
#ifndef SLUICE_QUOTA_H
#define SLUICE_QUOTA_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct share_group;
struct tenant_state;

struct quota {
	char *key;          /* "KIND:NAME": db, user, pool (NAME is DB/USER), tenant, autodb */
	_Atomic int used;   /* server connections counted against it */
	int refs;           /* holders (pools, readers); freed at 0.  Under the registry's lock */
	bool capped;        /* made by quota_find_capped: counted in the registry's `capped` */
	struct quota *next; /* registry chain */
};

struct quota_registry {
	pthread_mutex_t lock;         /* guards the chains and `capped` */
	struct quota *quotas;         /* chain of quotas */
	struct tenant_state *tenants; /* chain of tenant states */
	struct share_group *groups;   /* chain of pool groups' fair shares (fairshare.h) */
	int capped; /* live quotas made by quota_find_capped (the names reached through "*") */
};

void quota_registry_init(struct quota_registry *reg);
void quota_registry_fini(struct quota_registry *reg);
/*
 * Find or make the quota `kind`:`name` and take a reference on it, which the
 * caller gives back with quota_put; aborts when out of memory (never run
 * uncapped).
 */
struct quota *quota_find(struct quota_registry *reg, const char *kind, const char *name);
/*
 * The same, but a quota that does not exist yet is made only while fewer
 * than `max` quotas made this way are alive (max <= 0: no cap); NULL when
 * refused.  Every capped quota counts against the same total (the
 * registry's `capped`): sluice caps one kind, "autodb".
 */
struct quota *quota_find_capped(struct quota_registry *reg, const char *kind, const char *name,
                                int max);
/* One more reference on a quota already held (a server on its way to another worker). */
void quota_hold(struct quota_registry *reg, struct quota *q);
/* Give back a reference from quota_find; the last one frees the quota (its `used` is 0). */
void quota_put(struct quota_registry *reg, struct quota *q);
/* Find or make a tenant's shared state; aborts when out of memory, as quotas do. */
struct tenant_state *quota_tenant(struct quota_registry *reg, const char *name);
/* Take one unit if `used < limit` (limit <= 0 means unlimited). */
bool quota_take(struct quota *q, int limit);
void quota_give(struct quota *q);

#endif
