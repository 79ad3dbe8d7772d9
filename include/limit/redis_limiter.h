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

#define LEASE_WINDOW_US INT64_C(100000)  /* a lease lasts about this long at the full rate */
#define LEASE_TTL_US    INT64_C(2000000) /* tokens unspent this long are dropped */

extern const struct limiter_ops limiter_redis_ops;

/*
 * Tokens per lease: a LEASE_WINDOW_US share of the rate for one of `live`
 * instances, at most a half burst's share (so the fleet's leases together
 * never hold the whole burst), at least 1.
 */
int64_t lease_size(const struct rate *r, int64_t burst, int live);

/* Makes `l` the Redis limiter for `nworkers` links; -1 with `msg` on a bad configuration. */
int redis_limiter_init(struct limiter *l, const struct config *cfg, const struct logger *log,
                       int nworkers, char *msg, size_t len);
void redis_limiter_fini(struct limiter *l);

#endif
