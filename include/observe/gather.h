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
struct worker_shared;

/*
 * Fan-out to every worker: `each` runs on each worker's thread (concurrently,
 * so it must only write worker-private parts of ctx, e.g. a slot indexed by
 * worker->id); when the last one is done, `done` runs on the loop that owns
 * `reply_to`.  Never blocks any worker.  Returns -1 on allocation failure.
 */
typedef void (*gather_each_fn)(struct worker *w, void *ctx);
typedef void (*gather_done_fn)(void *ctx);
/*
 * Frees ctx in done's place when done can never run: sluice stopped with a
 * part of the gather unread in an inbox (inbox_fini), e.g. a console SHOW
 * or a /metrics scrape in flight at shutdown.  It runs on the thread that
 * frees that inbox, once every worker has stopped; NULL: nothing to free.
 */
typedef void (*gather_drop_fn)(void *ctx);
int gather_start(struct worker_shared *shared, struct inbox *reply_to, gather_each_fn each,
                 gather_done_fn done, gather_drop_fn drop, void *ctx);

#endif
