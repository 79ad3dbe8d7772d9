/*
 * limiter = redis: tenant buckets shared by every sluice of a fleet
 * (docs/tenants.md).  Each bucket lives in Redis as a hash, updated only by
 * one Lua script that refills it by Redis' own clock and hands out tokens.
 * A process does not ask per request: it leases tokens in batches sized to
 * the tenant's rate and the number of live instances, spends them locally
 * under the tenant's mutex, and asks for the next batch when half is gone,
 * so a request waits for Redis only when the lease ran dry.  Unlimited
 * kinds never reach Redis.  While Redis is down, slow or failing for a
 * bucket, redis_failure_mode decides: a local bucket of rate / live
 * instances (local), admit (open) or refuse with 53400 (closed).
 */
#ifndef SLUICE_REDIS_LIMITER_H
#define SLUICE_REDIS_LIMITER_H

#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "config/tenant.h"
#include "limit/limiter.h"

struct config;
struct quota_registry;
struct event_base;
struct evdns_base;
struct redis_link;

#define LEASE_WINDOW_US INT64_C(100000)  /* a lease lasts about this long at the full rate */
#define LEASE_TTL_US    INT64_C(2000000) /* tokens unspent this long are dropped */

/*
 * The process's limiter ops: a take goes to Redis when the calling worker
 * has a link, else to the in-process buckets; SHOW RATELIMITS reports the
 * current backend.
 */
extern const struct limiter_ops limiter_shared_ops;

/*
 * Tokens per lease: a LEASE_WINDOW_US share of the rate for one of `live`
 * instances, at most a half burst's share (so the fleet's leases together
 * never hold the whole burst), at least 1.
 */
int64_t lease_size(const struct rate *r, int64_t burst, int live);

/* `tenants`: the registry of tenant states, for fleet_max_client_conn's heartbeat. */
void limiter_init(struct limiter *l, struct quota_registry *tenants);
void limiter_fini(struct limiter *l);

/*
 * Start and reload, on the control thread: make the limiter what `cfg`
 * says.  Another store (URL, password, key prefix) makes a new fleet; the
 * same one takes a new redis_timeout and redis_failure_mode in place.
 * Returns 1 when the store changed (workers must follow), 0 when not, -1
 * with `msg` when the new one cannot be made (the old one stays).
 */
int limiter_configure(struct limiter *l, const struct config *cfg, const struct logger *log,
                      int nworkers, char *msg, size_t len);
/* The current fleet, referenced (redis_fleet_unref), or NULL for limiter = local. */
struct redis_fleet *limiter_fleet(struct limiter *l);
/*
 * On a worker's loop, after a reload: make `*link` follow the current fleet
 * (made, moved, or freed for limiter = local).  -1 when out of memory.
 */
int limiter_follow(struct limiter *l, struct redis_link **link, struct event_base *base,
                   struct evdns_base *dns);

/*
 * fleet_max_client_conn: a login's seat in its tenant's count over the
 * fleet.  Each instance keeps its count in the tenant's Redis hash with the
 * time of its last word; the counts of instances silent for 3 s are dropped,
 * so a dead instance's clients stop counting.  Without a usable Redis (or
 * with limiter = local) redis_failure_mode decides: local admits up to this
 * instance's share of the cap (cap / live instances, rounded up), open
 * admits, closed refuses.
 */
struct fleet_seat;
enum seat_answer {
	SEAT_TAKEN,       /* counted: limiter_leave gives it back */
	SEAT_WAIT,        /* Redis was asked: call again after *retry_us with the same *seat */
	SEAT_FULL,        /* the fleet (or this instance's share) is at the cap */
	SEAT_UNAVAILABLE, /* Redis cannot be used and redis_failure_mode = closed */
};
/* On the worker's loop; `link` is its own (NULL with limiter = local). */
enum seat_answer limiter_join(struct redis_link *link, struct tenant_state *t, int64_t cap,
                              struct fleet_seat **seat, int64_t *retry_us);
/* The client is gone: the seat goes back (a login still asked for is let go). */
void limiter_leave(struct redis_link *link, struct fleet_seat **seat);

#endif
