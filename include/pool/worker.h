/*
 * A worker: one thread, its event loop, and everything that lives on it:
 * clients, servers, pools, the cancel-key map, the console's pause state and
 * the deferred-free lists.  Objects on a worker are touched only by that
 * worker's thread.
 *
 * What workers share is a `struct worker_shared`, owned by the runtime:
 * the worker list (for cross-worker posts), process-wide counters, the quota
 * and tenant registry, the limiter and what prepared statements need to be
 * the same on every worker (ids, stale plans).  The runtime and the console reach
 * the worker through hooks set there, so nothing in pool/ names a layer
 * above it.
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auth/auth_file.h"
#include "auth/scram.h"
#include "auth/secret_cache.h"
#include "base/inbox.h"
#include "base/list.h"
#include "base/types.h"
#include "limit/breaker.h"
#include "limit/limiter.h"
#include "limit/login_delay.h"
#include "limit/quota.h"
#include "net/loop.h"
#include "pool/cancel.h"
#include "pool/pause.h"
#include "pool/prepared.h"

struct client_handler;
struct qstats;
struct query_capture;
struct snapshot;

/* What the layers above the pool plug into every worker (set by the runtime). */
struct worker_hooks {
	/* Called on any thread when a draining worker has no client left. */
	void (*drained)(struct worker *w);
	/* Each stats_period, after every pool's counters moved on; `seconds` since the last. */
	void (*stats_tick)(struct worker *w, double seconds);
	/* Serves clients that ask for the console database (config_is_console_db). */
	const struct client_handler *console;
};

/* The pieces of process-wide state a worker uses; owned by the runtime. */
struct worker_shared {
	const struct logger *log;         /* shared by all threads */
	const struct worker_hooks *hooks; /* see above */
	struct worker **workers; /* every worker, by id: cancel routing, shedding, gathers */
	int nworkers;
	bool workers_stopped;             /* every worker thread joined: post nothing to an inbox */
	_Atomic uint64_t next_conn_id;    /* ids for clients and servers, unique process-wide */
	_Atomic int nclients;             /* for max_client_conn */
	_Atomic int servers_in_transit;   /* idle servers handed between workers, not arrived */
	_Atomic uint64_t lends;           /* servers ever handed between workers */
	struct quota_registry quotas;     /* connection caps and tenant state */
	struct limiter limiter;           /* token buckets behind tenant rate limits */
	struct login_delay failures;      /* failed logins per address (auth_failure_delay) */
	struct breaker_registry breakers; /* a circuit breaker and role per upstream host */
	struct pstmt_shared prepared;     /* statement ids and stale plans of every registry */
};

/*
 * Servers moving between workers, counted on this worker's thread (SHOW
 * WORKERS): how often a pool's queue could not move on its own servers, and
 * what that cost.
 */
struct worker_moves {
	uint64_t asks;           /* a starving pool asked the other workers for a server */
	uint64_t debts;          /* a busy pool promised another worker its next free server */
	uint64_t sent;           /* idle servers handed to another worker (no reconnect) */
	uint64_t received;       /* servers handed here by another worker */
	uint64_t closed_for;     /* servers closed so that another worker could connect */
	uint64_t units_received; /* such a closed server's units, arrived here to connect */
};

struct worker {
	int id;                           /* index, also the top byte of cancel keys */
	struct worker_shared *shared;     /* what all workers share */
	pthread_t thread;                 /* runs worker_main */
	bool started;                     /* thread is running */
	struct loop loop;                 /* event_base, resolver, reaper, flush and kick lists */
	struct snapshot *snap;            /* config in use; swapped between callbacks */
	const struct config *cfg;         /* == snap->cfg, for brevity */
	const struct logger *log;         /* == shared->log */
	struct inbox inbox;               /* work posted by other threads */
	struct list_node clients;         /* every live client */
	struct list_node pools;           /* every pool */
	struct list_node auth_queries;    /* auth_query connections (auth_query.c) */
	struct list_node auth_idle;       /* of those, the ones with nothing to do, oldest first */
	struct list_node auth_dead;       /* closed auth_query connections, freed by the reaper */
	int nauth_queries;                /* on auth_queries, at most AUTH_QUERY_MAX_CONNS */
	struct secret_cache auth_cache;   /* auth_query answers, until they expire */
	struct list_node closing_clients; /* closed, still flushing a final message */
	struct list_node dead_clients;    /* closed, freed by the reaper */
	struct list_node dead_servers;    /* closed, freed by the reaper */
	struct list_node unused_pools;    /* "*" pools without clients or servers, oldest first */
	struct list_node dead_pools;      /* unused "*" pools, freed by the reaper (pool_reap) */
	struct event *unused_timer;       /* autodb_idle_timeout of unused_pools' oldest */
	struct cancel_map cancels;        /* clients by cancel pid */
	struct pstmt_registry prepared;   /* distinct prepared statements of all clients */
	struct ring lends;                /* struct server *: owed to other workers, handed over
	                                     by the reaper (pool_lend_deferred) */
	struct qstats *qstats;            /* query insights (qstats.h); NULL until first used */
	struct query_capture *spare_captures; /* slow log buffers of clients between requests */
	struct pause_state pause;             /* console PAUSE/SUSPEND/DISABLE of this worker */
	struct redis_link *redis;         /* limiter = redis: this worker's connection; else NULL */
	struct event *stats_timer;        /* stats_period tick; NULL while stats_period is 0 */
	int64_t stats_period_us;          /* period stats_timer is armed with; 0 = off */
	int64_t stats_tick_us;            /* time of the last stats tick */
	struct scram_secret dummy_secret; /* for unknown users, so failure looks like success */
	struct scram_key_cache scram_keys; /* server logins' keys derived from passwords */
	int nclients;                      /* live clients on this worker */
	bool draining;                     /* SIGTERM: close clients at transaction end */
	bool drain_reported;               /* hooks->drained already called */
	bool stopping; /* exiting: no server opens; the loop ends once closing_clients is empty */
	bool handed_over; /* a takeover: report drained once the clients have left on their own */
	struct worker_moves moves; /* servers handed between workers (SHOW WORKERS) */
};

struct worker *worker_new(struct worker_shared *shared, int id, struct snapshot *snap);
int worker_start(struct worker *w);
/* Ask the worker loop to exit and join its thread. */
void worker_stop(struct worker *w);
void worker_free(struct worker *w);

/* Wall-clock microseconds (loop_read_now_us), for timeouts and stats. */
static inline int64_t worker_now_us(struct worker *w)
{
	return loop_read_now_us(&w->loop);
}

/* Called from other threads through the inbox. */
struct accepted_socket {
	int fd;                       /* accepted socket */
	struct sockaddr_storage addr; /* peer */
	socklen_t addrlen;
	bool is_unix;      /* came in on the Unix socket */
	bool over_ip_rate; /* its address is over connect_rate_per_ip */
};
void worker_post_accept(struct worker *w, struct accepted_socket *sock);
void worker_post_config(struct worker *w, struct snapshot *snap);
void worker_post_drain(struct worker *w);
/* Another process accepts now: serve our clients as usual, report drained when none is left. */
void worker_post_handover(struct worker *w);

#endif
