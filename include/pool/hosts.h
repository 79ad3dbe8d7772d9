/*
 * Which host of a database's list a new server connection goes to.  A pool
 * holds the circuit breaker of each of its database's hosts (limit/breaker.h,
 * shared by every pool and worker) and picks among the hosts whose breaker
 * lets a connection go and whose role suits target_session_attrs, in the
 * order load_balance_hosts says.  A host whose role did not suit is asked
 * again after server_breaker_backoff, so a promoted standby is found without
 * a reload.  This file calls only the breakers below it: the pool and the
 * server call it, never the other way round.
 */
#ifndef SLUICE_HOSTS_H
#define SLUICE_HOSTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limit/breaker.h"

struct config;
struct db_def;

/* A pool's hosts: the breaker of each of its database's hosts, and its turn. */
struct pool_hosts {
	struct breaker **b; /* one per db->hosts[i], referenced in the shared registry */
	int n;              /* entries in b (db->nhosts) */
	unsigned turn;      /* round-robin: the host the next connection starts from */
	uint64_t rng;       /* random: xorshift state */
};

/* The host a new connection goes to. */
struct host_pick {
	int idx;       /* into db->hosts and the pool's breakers */
	bool probe;    /* it is the breaker's half-open probe */
	bool any_role; /* prefer-standby found no standby: a primary will do */
	bool recheck;  /* it asks the host's role again (breaker_claim_recheck) */
};

/*
 * Take (and give back) a reference on the breaker of each of `db`'s hosts.
 * `turn` is where round-robin starts: a pool passes its worker's id, so that
 * the workers' first connections go to different hosts rather than all to
 * the first.
 */
void hosts_attach(struct pool_hosts *h, struct breaker_registry *reg, const struct db_def *db,
                  uint64_t seed, unsigned turn);
void hosts_detach(struct pool_hosts *h, struct breaker_registry *reg);

/*
 * Picks the host for a new server connection and claims the breaker's probe
 * when it is half-open.  False when no host may be tried now: then `why`
 * says what each host lacks and *retry_us is when one may be tried (0 while
 * a probe is out, whose end decides).
 */
bool hosts_pick(struct pool_hosts *h, const struct config *cfg, const struct db_def *db,
                int64_t now_us, struct host_pick *out, int64_t *retry_us, char *why, size_t len);
/* Whether hosts_pick would find a host now, claiming nothing; same outputs when not. */
bool hosts_usable(struct pool_hosts *h, const struct config *cfg, const struct db_def *db,
                  int64_t now_us, int64_t *retry_us, char *why, size_t len);

/* Whether a server of this role suits the database's target_session_attrs. */
bool hosts_role_fits(int target, enum host_role role, bool read_only, bool any_role);

/*
 * The HINT for a client refused because no host may be tried: when the next
 * try is (`retry_us`, 0 = a probe is out), in milliseconds from `now_us`.
 */
void hosts_hint(int64_t retry_us, int64_t now_us, char *buf, size_t len);

#endif
