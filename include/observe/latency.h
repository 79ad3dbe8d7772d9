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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/histogram.h"
#include "observe/gather.h"
#include "pool/record.h"
#include "base/types.h"

struct inbox;
struct worker_shared;

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
	int clients_active;    /* logged in and not waiting (linked or between transactions) */
	int clients_waiting;   /* queued for a server, or for the pool's first login */
	int servers_active;    /* linked to a client */
	int servers_idle;      /* in the pool, ready */
	int servers_used;      /* waiting for a check query (SHOW POOLS' sv_used): none in sluice */
	int servers_tested;    /* being reset after a client (sv_tested) */
	int servers_canceling; /* a cancel of theirs in flight (sv_being_canceled) */
	int servers_login;     /* connecting or logging in */
	int listen_servers;    /* listening connections logged in (listen.h) */
	int listen_channels;   /* channels they LISTEN on */
	int listen_subs;       /* client subscriptions to those channels */
	int64_t
	    maxwait_us;    /* how long the oldest waiting client has waited (SHOW POOLS' maxwait) */
	int pool_size;     /* the pool's cap on server connections */
	int min_pool_size; /* idle servers kept open */
	int max_db_connections; /* the database's cap over all its pools; 0 = none */
	bool paused;            /* PAUSE or SUSPEND holds the pool */
	bool disabled;          /* DISABLE: its database takes no new logins */
};

struct worker_moves;

struct latency_report {
	struct latency_row *rows; /* sorted by database, then user */
	size_t nrows;
	struct worker_moves *moves; /* each worker's server moves, by worker id; NULL if none */
	int nworkers;               /* entries of moves */
};

/* Called on the loop that owns reply_to; owns rep (latency_report_free). */
typedef void (*latency_report_fn)(struct latency_report *rep, void *arg);

/*
 * Copy every worker's pools and deliver the merged report to `done` on
 * reply_to's loop (the control loop's inbox, or a worker's: &w->inbox).
 * Returns -1 (done never runs) when the fan-out cannot start.  `drop` (may
 * be NULL) frees arg in done's place if sluice stops first (gather.h).
 */
int latency_gather(struct worker_shared *shared, struct inbox *reply_to, latency_report_fn done,
                   void (*drop)(void *arg), void *arg);
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
