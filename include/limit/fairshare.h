/*
 * Fair shares of a pool group between tenants, over every worker.  A pool
 * group is the pools that log in as one server user to one database (one per
 * tenant, on each worker); they share the group's pool_size.  Each tenant of
 * a group has one `share`, reached by all its pools on all workers, holding
 * what fairness must see process-wide (docs/tenants.md, "Fairness"):
 *
 * - `used`, its servers in the group, so `min_server_conn` is a guarantee over
 *   the process: the units other tenants are entitled to and do not hold are
 *   never taken (share_reserved);
 * - `pass`, its virtual time for `weight`: a server going free goes to the
 *   waiting tenant with the least pass, which then grows by STRIDE / weight
 *   (stride scheduling), so tenants that all wait are served in proportion to
 *   their weights, whichever worker serves them.
 *
 * Shares live in the quota registry, found on the cold path (pool creation,
 * under the registry's lock) and counted like quotas; everything read on the
 * release path is atomic.
 */
#ifndef SLUICE_FAIRSHARE_H
#define SLUICE_FAIRSHARE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct quota_registry;
struct share_group;

/* One tenant in one pool group. */
struct share {
	struct share *next;        /* the group's chain; removed only with the group */
	struct share_group *group; /* owner */
	char *tenant;
	int pools;            /* its pools in the group, all workers.  Under the registry's lock */
	_Atomic bool live;    /* pools > 0: a share without pools reserves nothing */
	_Atomic int used;     /* its servers in the group, all workers */
	_Atomic int min;      /* min_server_conn, from the latest snapshot a pool saw */
	_Atomic int weight;   /* >= 1 */
	_Atomic int64_t pass; /* virtual time of its next server: least is served first */
};

/* The tenants of one (database, server user) group. */
struct share_group {
	struct share_group *next;     /* the registry's chain */
	char *key;                    /* "DB/USER" */
	struct share *_Atomic shares; /* chain; new ones at the head, so readers walk unlocked */
	_Atomic int live;             /* shares with pools */
	_Atomic int64_t vtime;        /* pass of the latest share served: where a waker starts */
	int refs;                     /* pools, all tenants.  Under the registry's lock */
};

/* The share of `tenant` in group `key`, with one more pool; aborts when out of memory. */
struct share *share_join(struct quota_registry *reg, const char *key, const char *tenant);
/* A pool of the share went; the group's last pool frees the group and its shares. */
void share_leave(struct quota_registry *reg, struct share *s);
/* The registry goes (exit): free what is left. */
void share_registry_fini(struct quota_registry *reg);

/* min_server_conn and weight from a pool's settings (creation, reload). */
void share_configure(struct share *s, int min, int weight);

/* The tenant holds more servers than min_server_conn guarantees it: one may go to another. */
static inline bool share_above_min(const struct share *s)
{
	return atomic_load(&s->used) > atomic_load(&s->min);
}

/* More than one tenant has pools in the group: fairness has work to do. */
static inline bool share_contended(const struct share *s)
{
	return atomic_load_explicit(&s->group->live, memory_order_relaxed) > 1;
}

/* Holds fewer servers than min_server_conn: it may take any unit. */
static inline bool share_short(const struct share *s)
{
	return atomic_load_explicit(&s->used, memory_order_relaxed) <
	       atomic_load_explicit(&s->min, memory_order_relaxed);
}

/*
 * Units of the group that tenants other than `to` are entitled to and do not
 * hold: the sum of min_server_conn - used over them, with `from` (NULL:
 * none) counted one server short, as when it hands one to `to`.
 */
int share_reserved(const struct share *to, const struct share *from);

/* The share's waiters queue again: it starts at the group's virtual time, banking no credit. */
void share_wake(struct share *s);
/* One server went to the share's waiters: its pass moves on by its weight's stride. */
void share_charge(struct share *s);

#endif
