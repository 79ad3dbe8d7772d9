/*
 * The fan-out of observe/gather.h over real inboxes (base/inbox.h): the
 * caller's done runs once when every worker copied its part; when sluice
 * stops with a part or the report unread in an inbox, the caller's drop
 * runs once instead, whichever inbox is freed first, also when the report
 * goes to an inbox that is being freed.  Under ASan a gather or context left
 * behind fails the run as a leak.
 */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <stdlib.h>

#include "base/inbox.h"
#include "observe/gather.h"
#include "pool/worker.h"

#define NWORKERS 2

/* Inboxes on a loop that never runs: a worker or control loop that stopped. */
#define HALT_WORKER0 1
#define HALT_CONTROL 2

struct bed {
	struct event_base *base; /* the running loops' */
	struct event_base *halt; /* the stopped ones' */
	struct worker *workers[NWORKERS];
	struct worker_shared shared;
	struct inbox control; /* the control loop's, for gathers it asks */
};

struct calls {
	int each[NWORKERS]; /* by worker id */
	int done;
	int drop;
};

static void bed_init(struct bed *b, int halted)
{
	*b = (struct bed){.base = event_base_new(), .halt = event_base_new()};
	cr_assert_not_null(b->base);
	cr_assert_not_null(b->halt);
	for (int i = 0; i < NWORKERS; i++) {
		struct event_base *on = i == 0 && (halted & HALT_WORKER0) ? b->halt : b->base;

		b->workers[i] = calloc(1, sizeof(*b->workers[i]));
		cr_assert_not_null(b->workers[i]);
		b->workers[i]->id = i;
		b->workers[i]->shared = &b->shared;
		cr_assert_eq(inbox_init(&b->workers[i]->inbox, on, b->workers[i]), 0);
	}
	b->shared.workers = b->workers;
	b->shared.nworkers = NWORKERS;
	cr_assert_eq(inbox_init(&b->control, halted & HALT_CONTROL ? b->halt : b->base, NULL), 0);
}

/* Stopping: each worker's inbox goes with what it still holds, in worker order. */
static void bed_fini(struct bed *b)
{
	for (int i = 0; i < NWORKERS; i++) {
		inbox_fini(&b->workers[i]->inbox);
		free(b->workers[i]);
	}
	inbox_fini(&b->control);
	event_base_free(b->base);
	event_base_free(b->halt);
}

/* One pass of the loop all the inboxes share: whatever was posted runs. */
static void run_posted(struct bed *b)
{
	cr_assert_geq(event_base_loop(b->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
}

/* Stops the bed: the gather's context goes through drop, once, and done never ran. */
static void stop_expecting_one_drop(struct bed *b, const struct calls *n)
{
	bed_fini(b);
	cr_assert_eq(n->done, 0, "done ran at exit");
	cr_assert_eq(n->drop, 1, "dropped %d times", n->drop);
}

static void count_each(struct worker *w, void *ctx)
{
	((struct calls *)ctx)->each[w->id]++;
}

static void count_done(void *ctx)
{
	((struct calls *)ctx)->done++;
}

static void count_drop(void *ctx)
{
	((struct calls *)ctx)->drop++;
}

Test(gather, every_part_copied_reports_once)
{
	struct bed b;
	struct calls n = {0};

	bed_init(&b, 0);
	cr_assert_eq(gather_start(&b.shared, &b.control, count_each, count_done, count_drop, &n),
	             0);
	run_posted(&b); /* the workers' parts, which post the report */
	run_posted(&b); /* the report */
	cr_assert_eq(n.each[0], 1);
	cr_assert_eq(n.each[1], 1);
	cr_assert_eq(n.done, 1);
	cr_assert_eq(n.drop, 0);
	bed_fini(&b);
	cr_assert_eq(n.done, 1, "nothing is left to drop");
	cr_assert_eq(n.drop, 0);
}

Test(gather, stopped_with_every_part_unread_drops_once)
{
	struct bed b;
	struct calls n = {0};

	bed_init(&b, 0);
	cr_assert_eq(gather_start(&b.shared, &b.control, count_each, count_done, count_drop, &n),
	             0);
	bed_fini(&b);
	cr_assert_eq(n.each[0] + n.each[1], 0);
	cr_assert_eq(n.done, 0);
	cr_assert_eq(n.drop, 1);
}

Test(gather, stopped_with_the_report_unread_drops_once)
{
	struct bed b;
	struct calls n = {0};

	bed_init(&b, HALT_CONTROL);
	cr_assert_eq(gather_start(&b.shared, &b.control, count_each, count_done, count_drop, &n),
	             0);
	run_posted(&b); /* the workers copy their parts; the control loop has stopped */
	cr_assert_eq(n.each[0], 1);
	cr_assert_eq(n.each[1], 1);
	cr_assert_eq(n.drop, 0, "the report is still on its way");
	stop_expecting_one_drop(&b, &n);
}

/*
 * A console on worker 1 asks; worker 0 had stopped before its part came,
 * worker 1 copies its own.  Worker 0's inbox goes first: its part counts as
 * through and the report goes to worker 1, dropped with worker 1's inbox.
 */
Test(gather, one_worker_stopped_before_its_part_drops_once)
{
	struct bed b;
	struct calls n = {0};

	bed_init(&b, HALT_WORKER0);
	cr_assert_eq(
	    gather_start(&b.shared, &b.workers[1]->inbox, count_each, count_done, count_drop, &n),
	    0);
	run_posted(&b); /* worker 1's part; worker 0's loop never runs */
	cr_assert_eq(n.each[1], 1);
	cr_assert_eq(n.each[0], 0);
	cr_assert_eq(n.done + n.drop, 0, "worker 0 has not copied its part");
	stop_expecting_one_drop(&b, &n);
}

/* The report goes to the very inbox being freed: the same inbox_fini drops it. */
Test(gather, report_to_the_inbox_being_freed_drops_once)
{
	struct bed b;
	struct calls n = {0};

	bed_init(&b, 0);
	cr_assert_eq(gather_start(&b.shared, &b.workers[NWORKERS - 1]->inbox, count_each,
	                          count_done, count_drop, &n),
	             0);
	stop_expecting_one_drop(&b, &n);
}

/* A caller whose context is freed elsewhere passes no drop: the gather alone goes. */
Test(gather, no_drop_frees_the_gather_alone)
{
	struct bed b;
	struct calls n = {0};

	bed_init(&b, 0);
	cr_assert_eq(gather_start(&b.shared, &b.control, count_each, count_done, NULL, &n), 0);
	bed_fini(&b);
	cr_assert_eq(n.done + n.drop, 0);
}
