/*
 * Per-pool counters, kept by the worker that owns the pool and only ever
 * written by its thread (plain increments on the hot path).  Readers (admin
 * console, metrics) copy them on that worker through gather_start, so no
 * counter is shared between threads.
 */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include <stdint.h>

#include "base/types.h"

struct inbox;

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
};

/*
 * Fan-out to every worker: `each` runs on each worker's thread (concurrently,
 * so it must only write worker-private parts of ctx, e.g. a slot indexed by
 * worker->id); when the last one is done, `done` runs on the loop that owns
 * `reply_to`.  Never blocks any worker.  Returns -1 on allocation failure.
 */
typedef void (*gather_each_fn)(struct worker *w, void *ctx);
typedef void (*gather_done_fn)(void *ctx);
int gather_start(struct runtime *rt, struct inbox *reply_to, gather_each_fn each,
                 gather_done_fn done, void *ctx);

#endif
