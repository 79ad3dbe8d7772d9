/*
 * A pool: server connections for one (database, server user) on one worker,
 * a FIFO of clients waiting for one, and the parameter defaults replayed to
 * new clients.  pool_acquire / pool_release are the only ways servers change
 * hands.
 */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/auth_file.h"
#include "pool/hosts.h"
#include "pool/record.h"
#include "base/list.h"
#include "base/ring.h"
#include "proto/params.h"
#include "base/types.h"

struct event;
struct quota;
struct share;
struct tenant_state;

/*
 * Effective per-pool settings, resolved at creation and on every reload:
 * [users] wins over the tenant (or its tier), which wins over [databases],
 * which wins over [sluice].
 */
struct pool_settings {
	int64_t query_timeout_us;
	int64_t query_wait_timeout_us;
	int64_t idle_transaction_timeout_us;
	int64_t client_idle_timeout_us;
	int64_t rate_limit_wait_us;
	int max_server_conn;                /* the tenant's cap over all its pools; 0 = none */
	int max_client_conn;                /* the tenant's logged-in clients; 0 = none */
	int min_server_conn;                /* the tenant's guaranteed servers in the group */
	int weight;                         /* the tenant's share when several wait (>= 1) */
	const struct tenant_limits *limits; /* the tenant's, in w->cfg; NULL = none */
	bool rate_limited;                  /* a query or transaction rate is set */
	int pool_mode;                      /* POOL_*: resolved here, the relay asks per message */
};

/*
 * The pools of one worker that log in as the same server user to the same
 * database, one per tenant (and statement_timeout).  They share the
 * pool_size cap, so a released server goes to the waiters of the tenant
 * whose turn it is by min_server_conn and weight (the tenants' shares,
 * limit/fairshare.h, which span the workers): a noisy tenant cannot starve
 * a quiet one.
 */
struct pool_group {
	struct list_node members; /* pools, by group_node */
	int count;                /* members */
	struct pool *unit_for;    /* a server closed for this member's turn: none other opens */
};

struct pool {
	struct worker *w;               /* owner */
	struct list_node node;          /* worker->pools */
	char *dbname;                   /* client-facing database name */
	char *user;                     /* server login user */
	char *tenant;                   /* tenant name (TENANT_DEFAULT when none matched) */
	int64_t statement_timeout_us;   /* sent at server login; 0 = none.  Part of the key */
	struct tenant_state *ts;        /* the tenant's shared counters and buckets */
	struct quota *tenant_quota;     /* the tenant's server connections (max_server_conn) */
	struct share *share;            /* the tenant's share of the group, over all workers */
	struct pool_group *group;       /* pools sharing this pool's servers' cap */
	struct list_node group_node;    /* group->members */
	struct pool_settings set;       /* effective settings */
	const struct db_def *db;        /* definition in w->cfg; NULL once removed by reload */
	const struct user_def *udef;    /* [users] override or NULL */
	struct list_node idle;          /* idle servers, most recently used first */
	struct list_node active;        /* linked to a client */
	struct list_node pending;       /* connecting, logging in, resetting, being canceled */
	struct list_node waiting;       /* clients queued for a server, FIFO */
	struct list_node login_waiting; /* clients waiting for the first server's parameters */
	int nservers;                   /* servers in any state */
	struct param_list defaults;     /* ParameterStatus set from the first login */
	bool have_defaults;             /* defaults filled */
	uint64_t defaults_generation;   /* bumped when defaults change */
	struct quota *pool_quota;       /* pool_size across workers */
	struct quota *db_quota;         /* max_db_connections */
	struct quota *user_quota;       /* max_user_connections */
	int64_t retry_after_us;         /* server_login_retry: no new connect before this time */
	char last_error_state[6];       /* SQLSTATE of the last connect/login failure */
	char last_error[256];           /* its message, sent to clients during backoff */
	struct pool_hosts hosts;        /* its database's hosts: breakers, load-balancing turn */
	bool has_client_key;            /* SCRAM pass-through keys learned from a client */
	uint8_t client_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN]; /* from that client's verifier (file or auth_query) */
	bool needs_reconnect;              /* db definition changed on reload: retire servers */
	struct pool_stats stats;           /* counters, written only by this worker */
	struct pool_latency lat;      /* histograms, outcome counters (latency.h); this worker's */
	struct pool_stats stats_prev; /* counters at the stats_period tick before the last */
	struct pool_stats stats_last; /* counters at the last stats_period tick */
	int64_t stats_prev_us;        /* when stats_prev was taken; 0 = not yet */
	int64_t stats_last_us;        /* when stats_last was taken (pool creation at first) */
	bool shed_asked;              /* asked the other workers for a server for our waiters */
	struct ring owed;             /* int ids of starving workers: the next servers released
	                                 here go to them (pool.c, "Balance across workers") */
	bool paused;                  /* console PAUSE/KILL/SUSPEND: hand out and open no servers */
	bool pause_closes;            /* paused by PAUSE/KILL: close servers as they come free */
	int nclients;                 /* clients whose c->pool this is, until they are freed */
	bool is_auto;                 /* made for a name the "*" entry serves: freed when unused */
	bool db_missing;              /* auto: Postgres said 3D000: free it once unused */
	bool dying;                   /* on w->dead_pools: the reaper frees it */
	struct quota *auto_quota;     /* auto: "autodb:NAME", its name under max_auto_databases */
	struct list_node unused_node; /* auto and unused: w->unused_pools, or w->dead_pools */
	int64_t unused_since_us;      /* auto: when it last lost its last client or server */
	struct event
	    *reserve_timer;      /* reserve_pool_timeout of the first waiter; made when needed */
	struct listener *listen; /* its listening connection and channels (listen.h); or NULL */
};

/*
 * The pool for a client `client_user` of database `dbname` logging in to
 * the server as `server_user`: its tenant and statement_timeout come from
 * the client's user, so tenants never share a server connection.  NULL when
 * out of memory, or with *over_cap set when `db` is the "*" entry, the name
 * is new and max_auto_databases names already have pools (on any worker).
 */
struct pool *pool_get(struct worker *w, const char *dbname, const char *server_user,
                      const char *client_user, const struct db_def *db, bool *over_cap);
void pool_free(struct pool *p);

/*
 * Pools made through "*" live only while used.  A pool counts its clients
 * from pool_attach (login) to pool_client_gone (client_free); one with no
 * client and no server waits autodb_idle_timeout on w->unused_pools (at once
 * after a 3D000), then goes to w->dead_pools, which the reaper empties with
 * pool_reap after freeing the dead servers and clients that point at it.
 */
void pool_attach(struct pool *p, struct client *c);
void pool_client_gone(struct pool *p);
/* The unused_timer: pools unused for autodb_idle_timeout die; re-arms for the next one. */
void pool_expire_unused(struct worker *w);
void pool_reap(struct worker *w);

/* The pool's tenant name for reports and logs. */
static inline const char *pool_tenant(const struct pool *p)
{
	return p->tenant;
}

/* POOL_SESSION, POOL_TRANSACTION or POOL_STATEMENT (resolved with the other settings). */
static inline int pool_mode(const struct pool *p)
{
	return p->set.pool_mode;
}
int pool_size(const struct pool *p);

/* Link an idle server to the client, or queue the client (and maybe connect). */
void pool_acquire(struct pool *p, struct client *c);
/* Return a clean server: to the first waiter, or to the idle list. */
void pool_release(struct pool *p, struct server *s);
/* Start connections up to min_pool_size and for waiters; respects caps and backoff. */
void pool_maintain(struct pool *p);
/* A server finished login: fill defaults, serve login waiters. */
void pool_server_ready(struct pool *p, struct server *s);
/*
 * A connect or login failed: remember, fail clients that cannot be served.
 * A failure of the host is the breaker's to count (it was told already);
 * any other (authentication, a missing database) makes the pool wait
 * server_login_retry before its next login.
 */
void pool_connect_failed(struct pool *p, const char *sqlstate, const char *msg, bool host_down);
/*
 * Refuses `c` at once (true) when the pool has no server and none can be
 * opened now: every host's breaker is open or of the wrong role, or the pool
 * waits server_login_retry.  The error carries a HINT saying when the next
 * try is.
 */
bool pool_refuse_if_down(struct pool *p, struct client *c);
/*
 * A listener's connection: one more server outside pool_size, within
 * max_db_connections, max_user_connections and the tenant's max_server_conn.
 * NULL when none may be opened now; a server closed already when it failed
 * at once (listen_server_gone was told).
 */
struct server *pool_open_listener(struct pool *p, struct listener *l);
/* A server is going away: give back its quota units. */
void pool_server_gone(struct pool *p, struct server *s);
/* Re-resolve the definition after a reload; old_cfg: the configuration it replaced. */
void pool_reconfigure(struct pool *p, const struct config *old_cfg);
/* Remove a queued client (cancel, timeout, disconnect). */
void pool_dequeue(struct pool *p, struct client *c);
/*
 * Hand the servers released this turn to the workers they are owed to.  The
 * reaper calls it, after the turn's callbacks: a server is never moved from
 * under its own read callback.
 */
void pool_lend_deferred(struct worker *w);
/* Kick every pool on the worker that has waiters (a quota unit came free). */
void pool_kick_all(struct worker *w);
/* The same on every other worker: their waiters may take the unit. */
void pool_kick_others(struct worker *w);

/*
 * Admin console.  Paused: no server is handed out or opened and new
 * requests queue; with close_servers (PAUSE, KILL) idle servers close now
 * and the others as they are released, without it (SUSPEND) they stay.
 * Unpausing serves the queue.  Reconnect: retire every server once it is
 * released (idle ones now).  Stats tick: shift the stats_period snapshots
 * that SHOW STATS averages are computed from.
 */
void pool_set_paused(struct pool *p, bool paused, bool close_servers);
void pool_reconnect(struct pool *p);
void pool_stats_tick(struct pool *p, int64_t now_us);

#endif
