/*
 * Which prepared statements' plans went stale, known to every worker.  A
 * server that answers a Bind with 0A000 "cached plan must not change result
 * type" (docs/prepared.md, "Changed result types") reports the statement
 * here, by the hash of its Parse body, and it gets a new generation drawn
 * from one process-wide counter, `epoch`: generations only grow, so a
 * worker takes the newer of its own and the table's.  Workers compare the
 * epoch with the one they last caught up with (one atomic load, on each
 * Parse, Bind and Describe of a tracked statement) and take the lock only
 * when it moved, which happens once per report.
 *
 * Bounded: past `cap` statements the one that went stale longest ago is
 * forgotten, and a worker that had not caught up with it is told it missed
 * some (stale_plans_since).
 */
#ifndef SLUICE_STALE_PLANS_H
#define SLUICE_STALE_PLANS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct stale_plan {
	uint64_t hash;       /* the statement's Parse body, under the registries' shared key */
	uint32_t generation; /* the epoch at which its plan last went stale */
	int32_t next;        /* index of the next plan in its bucket; -1 = none */
};

struct stale_plans {
	_Atomic uint32_t epoch;   /* the newest generation given out; 0 = no plan went stale yet */
	pthread_mutex_t lock;     /* guards everything below */
	struct stale_plan *plans; /* count of cap, in no order */
	int32_t *buckets;         /* cap heads (power of two), by hash; -1 = empty */
	uint32_t count;
	uint32_t cap;
	uint32_t forgotten; /* generation of the newest plan dropped to make room; 0 = none */
};

/* `cap`: a power of two.  -1: out of memory. */
int stale_plans_init(struct stale_plans *t, uint32_t cap);
void stale_plans_fini(struct stale_plans *t);

/*
 * A server found the plan of statement `hash`, prepared at `generation`,
 * stale: returns the statement's generation now, a new one unless a newer
 * report (another server's, of the same plan) came first.
 */
uint32_t stale_plans_report(struct stale_plans *t, uint64_t hash, uint32_t generation);
/* The generation of `hash`: 0 if its plan never went stale (or that was forgotten). */
uint32_t stale_plans_generation(struct stale_plans *t, uint64_t hash);

typedef void (*stale_plan_fn)(void *arg, uint64_t hash, uint32_t generation);
/*
 * Calls fn, under the lock, for each statement that went stale after
 * generation `seen`, and returns the epoch that caught up with.  *missed:
 * a plan newer than `seen` was forgotten before it could be told.
 */
uint32_t stale_plans_since(struct stale_plans *t, uint32_t seen, stale_plan_fn fn, void *arg,
                           bool *missed);

/* The newest generation; compared with what a worker saw, it says whether to catch up. */
static inline uint32_t stale_plans_epoch(struct stale_plans *t)
{
	return atomic_load_explicit(&t->epoch, memory_order_acquire);
}

#endif
