/*
 * What each pool observes beyond stats.h's counters: latency histograms
 * (query, transaction, queue wait, server connect), ErrorResponses by SQLSTATE
 * class, timeouts, cancels and rate-limit rejections.  Written only by the
 * pool's worker, from one-line hooks in the relay, client and server code.
 *
 * latency_gather copies all of it from every worker (never blocking one: each
 * worker copies its own pools when it gets to the inbox message) into a report
 * merged by (database, user), which SHOW LATENCY (latency_show), /metrics and
 * the readiness check read.  Every pool belongs to one tenant ("default" until
 * tenants exist), so per-tenant figures are merges of pool histograms: exact,
 * because every histogram has the same buckets.
 */
#ifndef SLUICE_LATENCY_H
#define SLUICE_LATENCY_H

#include <stddef.h>
#include <stdint.h>

#include "base/histogram.h"
#include "observe/gather.h"
#include "base/types.h"

struct inbox;

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
};

/* Hooks, each called on the pool's worker. */
/* relay.c handle_ready: the server answered everything outstanding (status is Z's). */
void latency_request_done(struct server *s, int64_t now_us, char status);
/* client.c client_link: the client gets a server, after waiting in the queue or not. */
void latency_link(struct client *c, struct server *s);
/* server.c: the server's login finished. */
void latency_server_ready(struct server *s);
/* relay.c: a server reply whose body the relay read; counts ErrorResponses by class. */
void latency_server_reply(struct pool *p, uint8_t type, const uint8_t *body, size_t len);
/* client.c: the client's timer expired (timeouts are counted per pool). */
void latency_timeout(struct client *c);
/* client.c: a CancelRequest for the client arrived. */
void latency_cancel(struct client *c);
/* pool.c pool_free: release what the pool's observations own. */
void latency_fini(struct pool_latency *lat);

#define LATENCY_REPORT_CLASSES 48 /* more than Postgres defines */

/* One (database, user) pool, merged over the workers. */
struct latency_row {
	char *database;                                    /* client-facing database name */
	char *user;                                        /* server login user */
	char *tenant;                                      /* its tenant */
	struct histogram h[LATENCY_KINDS];                 /* merged histograms */
	struct pool_stats stats;                           /* summed counters */
	struct error_class errors[LATENCY_REPORT_CLASSES]; /* summed, first seen first */
	uint64_t errors_other;                             /* beyond any table */
	uint64_t timeouts, cancels, ratelimit_rejections;  /* summed */
	int clients_active;  /* logged in and not waiting (linked or between transactions) */
	int clients_waiting; /* queued for a server, or for the pool's first login */
	int servers_active;  /* linked to a client */
	int servers_idle;    /* in the pool, ready */
	int servers_used;    /* being reset or canceled before they can be reused */
	int servers_login;   /* connecting or logging in */
};

struct latency_report {
	struct latency_row *rows; /* sorted by database, then user */
	size_t nrows;
};

/* Called on the loop that owns reply_to; owns rep (latency_report_free). */
typedef void (*latency_report_fn)(struct latency_report *rep, void *arg);

/*
 * Copy every worker's pools and deliver the merged report to `done` on
 * reply_to's loop (the control loop: &rt->inbox; a worker: &w->inbox).
 * Returns -1 (done never runs) when the fan-out cannot start.
 */
int latency_gather(struct runtime *rt, struct inbox *reply_to, latency_report_fn done, void *arg);
void latency_report_free(struct latency_report *rep);

/*
 * SHOW LATENCY.  Columns: database, user, tenant, kind, count, mean_us,
 * p50_us, p90_us, p95_us, p99_us, p999_us, max_us (times in microseconds).
 * Rows: each pool and kind, then each tenant and kind with database and user
 * "*", then the whole process ("*", "*", "*").  `row` gets the values as text.
 */
#define LATENCY_SHOW_COLUMNS 12
const char *const *latency_show_columns(void);
typedef void (*latency_row_fn)(void *arg, const char *const values[LATENCY_SHOW_COLUMNS]);
void latency_show(const struct latency_report *rep, latency_row_fn row, void *arg);

#endif
