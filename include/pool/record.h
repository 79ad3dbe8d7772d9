/*
 * What each pool records on the hot path, and the one-line hooks that record
 * it: counters (struct pool_stats), latency histograms (query, transaction,
 * queue wait, server connect), ErrorResponses by SQLSTATE class, timeouts,
 * cancels and rate-limit rejections, and the slow query log (slowlog.h).
 * Everything is written only by the pool's worker, with plain stores: readers
 * (observe/: the console, /metrics, the stats log) copy it on that worker
 * through a gather, so no counter is shared between threads.
 */
#ifndef SLUICE_RECORD_H
#define SLUICE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "base/histogram.h"
#include "base/types.h"

struct pool_stats {
	uint64_t xact_count;         /* ReadyForQuery 'I' after work: transactions finished */
	uint64_t query_count;        /* Query and Execute messages forwarded */
	uint64_t bytes_received;     /* bytes from clients to servers */
	uint64_t bytes_sent;         /* bytes from servers to clients */
	uint64_t xact_time_us;       /* sum over transactions: first request to ReadyForQuery 'I' */
	uint64_t query_time_us;      /* sum over requests: forwarded to ReadyForQuery */
	uint64_t wait_time_us;       /* sum of time clients queued for a server */
	uint64_t server_assignments; /* times a server was linked to a client */
	uint64_t client_logins;      /* successful client logins */
	uint64_t errors;             /* ErrorResponses relayed from servers */
	uint64_t pins; /* times a server got pinned to its client (session-state.md) */
	uint64_t listen_notifications; /* NotificationResponses its listening connection got */
	uint64_t listen_delivered;     /* and copies of them written to subscribers */
	uint64_t listen_dropped;       /* subscribers closed over listen_queue_size */
	uint64_t listen_lost;          /* listening connections lost (and opened again) */
};

enum latency_kind {
	LATENCY_QUERY,   /* request forwarded to the server until its ReadyForQuery */
	LATENCY_XACT,    /* first request after ReadyForQuery 'I' until the next 'I' */
	LATENCY_WAIT,    /* queued for a server; 0 when one was idle */
	LATENCY_CONNECT, /* server connect started until its login's ReadyForQuery */
	LATENCY_KINDS,
};

/* "query", "transaction", "wait", "connect". */
const char *latency_kind_name(enum latency_kind kind);

#define LATENCY_POOL_CLASSES 16 /* SQLSTATE classes counted per pool and worker */

struct error_class {
	char cls[3];    /* SQLSTATE class ("42"); "" = unused slot */
	uint64_t count; /* ErrorResponses relayed with it */
};

struct latency_period;

struct pool_latency {
	struct histogram h[LATENCY_KINDS];               /* by enum latency_kind */
	struct error_class errors[LATENCY_POOL_CLASSES]; /* in the order first seen */
	uint64_t errors_other;                           /* classes once the table is full */
	uint64_t timeouts;             /* client timers that ended a request or a connection */
	uint64_t cancels;              /* CancelRequests for this pool's clients */
	uint64_t ratelimit_rejections; /* requests refused by a tenant rate limit (53400) */
	struct latency_period *period; /* stats log baseline (statslog.c); NULL before a tick */
	size_t gather_slot;            /* scratch for the gather running on this worker */
	uint32_t qscope; /* the pool's scope in the worker's qstats, + 1; 0 = unknown */
};

/* Hooks, each called on the pool's worker. */
/* relay.c handle_ready: the server answered everything outstanding (status is Z's). */
void record_request_done(struct server *s, int64_t now_us, char status);
/* client.c client_link: the client gets a server, after waiting in the queue or not. */
void record_link(struct client *c, struct server *s);
/* server.c: the server's login finished. */
void record_server_ready(struct server *s);
/* relay.c: a server reply whose body the relay read; counts ErrorResponses by class. */
void record_server_reply(struct pool *p, uint8_t type, const uint8_t *body, size_t len);
/* client.c: the client's timer expired (timeouts are counted per pool). */
void record_timeout(struct client *c);
/* client.c: a CancelRequest for the client arrived. */
void record_cancel(struct client *c);
/* pool.c pool_free: release what the pool's observations own. */
void record_fini(struct pool_latency *lat);

#endif
