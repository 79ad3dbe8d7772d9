/*
 * Gathering from all workers; see stats.h.  The counters themselves are
 * plain fields of struct pool.
 */
#include "observe/gather.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "base/inbox.h"
#include "pool/worker.h"

struct gather {
	gather_each_fn each;    /* per worker */
	gather_done_fn done;    /* once, on reply_to's loop */
	void *ctx;              /* the caller's */
	struct inbox *reply_to; /* where done runs */
	_Atomic int remaining;  /* workers not yet finished */
};

static void gather_done(void *owner, void *arg)
{
	struct gather *g = arg;

	g->done(g->ctx);
	free(g);
}

static void gather_each(void *owner, void *arg)
{
	struct gather *g = arg;

	g->each(owner, g->ctx);
	if (atomic_fetch_sub(&g->remaining, 1) == 1 &&
	    inbox_post(g->reply_to, gather_done, g) < 0) {
		/* Cannot report back: the caller's done never runs; its ctx leaks. */
		free(g);
	}
}

int gather_start(struct worker_shared *shared, struct inbox *reply_to, gather_each_fn each,
                 gather_done_fn done, void *ctx)
{
	struct gather *g = malloc(sizeof(*g));

	if (g == NULL)
		return -1;
	g->each = each;
	g->done = done;
	g->ctx = ctx;
	g->reply_to = reply_to;
	atomic_init(&g->remaining, shared->nworkers);
	for (int i = 0; i < shared->nworkers; i++) {
		/* A worker that cannot take the message still counts, so done always runs. */
		if (inbox_post(&shared->workers[i]->inbox, gather_each, g) < 0 &&
		    atomic_fetch_sub(&g->remaining, 1) == 1)
			inbox_post(reply_to, gather_done, g);
	}
	return 0;
}
