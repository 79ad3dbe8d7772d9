/*
 * A worker: one thread, one event_base, and everything that lives on it:
 * clients, servers, pools, the cancel-key map and the deferred-free list.
 * Objects on a worker are touched only by that worker's thread.
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auth/auth_file.h"
#include "base/inbox.h"
#include "base/list.h"
#include "pool/prepared.h"
#include "base/types.h"

struct admin_worker;
struct event_base;
struct evdns_base;
struct snapshot;

struct worker {
	int id;                           /* index, also the top byte of cancel keys */
	struct runtime *rt;               /* owner */
	pthread_t thread;                 /* runs worker_main */
	bool started;                     /* thread is running */
	struct event_base *base;          /* this worker's loop */
	struct evdns_base *dns;           /* non-blocking resolver for server host names */
	struct snapshot *snap;            /* config in use; swapped between callbacks */
	const struct config *cfg;         /* == snap->cfg, for brevity */
	const struct logger *log;         /* == &rt->log */
	struct inbox inbox;               /* work posted by other threads */
	struct list_node clients;         /* every live client */
	struct list_node pools;           /* every pool */
	struct list_node auth_queries;    /* auth_query connections (auth_query.c) */
	struct list_node auth_cache;      /* auth_query answers, until they expire */
	struct list_node closing_clients; /* closed, still flushing a final message */
	struct list_node dead_clients;    /* closed, freed by the reaper */
	struct list_node dead_servers;    /* closed, freed by the reaper */
	struct event *reaper;             /* low-priority event that frees dead objects */
	struct list_node flush_list;      /* conns with output to send this turn (conn.c) */
	struct event *flusher;            /* sends it, after this turn's callbacks */
	struct list_node kick_list;       /* conns whose buffered input is to be read again */
	struct event *kicker;             /* does that, after this turn's callbacks */
	struct evbuffer *no_data;        /* what idle conns point at instead of a buffer (conn.c) */
	struct evbuffer **spare_buffers; /* empty buffers given back by idle conns, for reuse */
	int nspare;
	struct evbuffer *sink;          /* output of a conn that could not get a buffer: dropped */
	struct client **cancel_map;     /* open hash of clients by cancel pid */
	uint32_t cancel_map_size;       /* power of two */
	uint32_t cancel_seq;            /* next candidate cancel pid (low 24 bits) */
	struct pstmt_registry prepared; /* distinct prepared statements of all clients */
	struct admin_worker *admin;     /* console state: paused/disabled dbs, stats_period timer */
	struct event *stats_timer;      /* stats log tick (statslog.c) */
	int64_t stats_period_us;        /* period stats_timer is armed with; 0 = off */
	int64_t stats_tick_us;          /* time of the last stats log tick */
	struct scram_secret dummy_secret; /* for unknown users, so failure looks like success */
	int nclients;                     /* live clients on this worker */
	bool draining;                    /* SIGTERM: close clients at transaction end */
	bool drain_reported;              /* runtime_worker_drained already called */
};

struct worker *worker_new(struct runtime *rt, int id, struct snapshot *snap);
int worker_start(struct worker *w);
/* Ask the worker loop to exit and join its thread. */
void worker_stop(struct worker *w);
void worker_free(struct worker *w);

/* Cached loop time in microseconds (monotonic enough for timeouts and stats). */
int64_t worker_now_us(struct worker *w);

/* Schedule the reaper to run after the current callbacks. */
void worker_schedule_reap(struct worker *w);

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

/* Cancel-key map (cancel.c uses it; client.c registers keys). */
int worker_cancel_register(struct worker *w, struct client *c);
void worker_cancel_unregister(struct worker *w, struct client *c);
struct client *worker_cancel_lookup(struct worker *w, uint32_t pid);

/* Called when a client count drops to zero while draining. */
void worker_check_drained(struct worker *w);

#endif
