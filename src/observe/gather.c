/*
 * Gathering from all workers; see stats.h.  The counters themselves are
 * plain fields of struct pool.
 */
#include "observe/gather.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/inbox.h"
#include "pool/worker.h"

struct gather {
	gather_each_fn each;    /* per worker */
	gather_done_fn done;    /* once, on reply_to's loop */
	gather_drop_fn drop;    /* instead of done, when it cannot run */
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

/* Its message was freed unread (inbox_fini): the caller's ctx goes with it. */
static void gather_dropped(void *arg)
{
	struct gather *g = arg;

	if (g->drop != NULL)
		g->drop(g->ctx);
	free(g);
}

/* A worker is through with the gather, its part copied or not. */
static void worker_through(struct gather *g, bool stopping)
{
	if (atomic_fetch_sub(&g->remaining, 1) != 1 ||
	    inbox_post_owned(g->reply_to, gather_done, gather_dropped, g) == 0)
		return;
	/*
	 * Out of memory: done never runs.  While sluice runs, ctx is left to
	 * leak rather than be freed under its owner's loop; stopping, nothing
	 * else runs and it is freed now.
	 */
	if (stopping)
		gather_dropped(g);
	else
		free(g);
}

static void gather_each(void *owner, void *arg)
{
	struct gather *g = arg;

	g->each(owner, g->ctx);
	worker_through(g, false);
}

/*
 * A worker stopped before reading its part: it counts as through, with
 * nothing copied, so the last one still reports to reply_to, whose own
 * inbox_fini then drops the report (its owner stopped too) or, when that
 * inbox is the one being freed, takes it in the same pass.  reply_to is
 * still there: a gather left unread was posted after this worker stopped,
 * by a worker stopped after it, and runtime_fini frees workers in the order
 * they stopped, the control loop's inbox last.
 */
static void gather_each_dropped(void *arg)
{
	worker_through(arg, true);
}

int gather_start(struct worker_shared *shared, struct inbox *reply_to, gather_each_fn each,
                 gather_done_fn done, gather_drop_fn drop, void *ctx)
{
	struct gather *g = malloc(sizeof(*g));

	if (g == NULL)
		return -1;
	g->each = each;
	g->done = done;
	g->drop = drop;
	g->ctx = ctx;
	g->reply_to = reply_to;
	atomic_init(&g->remaining, shared->nworkers);
	for (int i = 0; i < shared->nworkers; i++) {
		/* A worker that cannot take the message still counts, so done always runs. */
		if (inbox_post_owned(&shared->workers[i]->inbox, gather_each, gather_each_dropped,
		                     g) < 0)
			worker_through(g, false);
	}
	return 0;
}
