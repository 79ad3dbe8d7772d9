/*
 * Reading query insights (pool/qstats.h): queries_gather copies every
 * worker's fingerprint table on that worker and merges the copies by
 * (fingerprint, database, user, tenant) into one report, rows ordered by
 * total time, which SHOW QUERIES and SHOW QUERY_TYPES (admin/show.c),
 * /metrics (runtime/metrics_http.c) read.  queries_log_top adds a pool's
 * busiest fingerprints of the period to its stats log line, on the pool's
 * own worker.
 */
#ifndef SLUICE_QUERIES_H
#define SLUICE_QUERIES_H

#include <stddef.h>
#include <stdint.h>

#include "base/histogram.h"
#include "base/types.h"
#include "pool/qstats.h"

struct evbuffer;
struct query_copies;
struct inbox;
struct latency_report;
struct worker_shared;

/* One fingerprint of one (database, user, tenant), merged over the workers. */
struct query_row {
	uint64_t fp;                    /* fingerprint; 0 = the scope's "other" row */
	const char *database;           /* owned by the report */
	const char *user;               /* likewise */
	const char *tenant;             /* likewise */
	enum query_type type;           /* from its text */
	struct qstats_figures fig;      /* summed */
	char text[QSTATS_TEXT_MAX + 1]; /* normalised text, NUL-terminated; "" for "other" */
};

struct query_report {
	struct query_row *rows;                /* by total time, largest first */
	size_t nrows;                          /* rows with calls */
	struct qstats_type types[QUERY_TYPES]; /* summed over the workers */
	uint64_t evictions;                    /* entries evicted, all workers */
	struct query_copies *source;           /* the workers' copies, whose names rows point to */
};

typedef void (*query_report_fn)(struct query_report *rep, void *arg);

/*
 * Deliver the merged report to `done` on reply_to's loop; -1 when it cannot
 * start.  `drop` (may be NULL) frees arg in done's place if sluice stops first.
 */
int queries_gather(struct worker_shared *shared, struct inbox *reply_to, query_report_fn done,
                   void (*drop)(void *arg), void *arg);
void query_report_free(struct query_report *rep);

/* /metrics needs both reports: the latency one, then this one. */
typedef void (*metrics_report_fn)(struct latency_report *lat, struct query_report *q, void *arg);
int queries_gather_metrics(struct worker_shared *shared, struct inbox *reply_to,
                           metrics_report_fn done, void (*drop)(void *arg), void *arg);

/*
 * Copies s into out (cap bytes, NUL included) with every byte that is not
 * part of valid UTF-8 replaced by '?': label values and JSON must be UTF-8,
 * and a client may use another client_encoding.  Returns the length.
 */
size_t queries_utf8_clean(const char *s, char *out, size_t cap);

/* Fingerprints /metrics exports, the top by total time: a bounded number of series. */
#define QUERIES_METRICS_TOP 20
/* Fingerprints a pool's stats log line names. */
#define QUERIES_LOG_TOP 5

/*
 * The stats log: the pool's QUERIES_LOG_TOP fingerprints by time in the
 * period, as text (" top_queries=fp:calls:total_us,...") and JSON
 * (",\"top_queries\":[...]"); nothing when none ran.  queries_tick_done
 * starts the next period once every pool's line is written.
 */
void queries_log_top(struct worker *w, struct pool *p, struct evbuffer *text,
                     struct evbuffer *json);
void queries_tick_done(struct worker *w);

#endif
