/*
 * Tenant budgets at run time.  A tenant_state is shared by every worker and
 * outlives reloads (the registry in struct runtime keeps it until exit); it
 * holds the counters SHOW TENANTS reports and the token buckets behind the
 * rate limits.  The buckets sit behind `struct limiter` so a store shared by
 * several sluice processes can replace the in-process one without touching
 * the callers: a limiter only ever sees a tenant, a bucket kind, the rate and
 * burst from the caller's configuration snapshot, and the time.
 */
#ifndef SLUICE_LIMITER_H
#define SLUICE_LIMITER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/tenant.h"

/* One token bucket (in-process limiter). */
struct bucket {
	double tokens;    /* negative: debt of statements inside transactions, reserved tokens */
	int64_t last_us;  /* last refill; 0 = never used (starts full) */
	struct rate rate; /* the limit it was filled for: a reload that changes it starts afresh */
	int64_t burst;
};

struct quota_registry;
struct redis_fleet;
struct redis_link;

/*
 * limiter = redis: this process's share of a fleet bucket (redis_limiter.c).
 * Tokens are leased from Redis in batches and spent here without asking.
 */
struct lease {
	struct tenant_state *tenant; /* owner, for the refill's answer */
	uint64_t fleet_id;           /* the store it is leased from (a reload may change it) */
	double tokens;               /* leased, not spent; negative = debt of forced takes */
	int64_t size;                /* tokens the last refill asked for */
	int64_t expires_us;          /* unspent tokens are dropped then: a lease is short-lived */
	int64_t refill_us;           /* a refill is in flight since then; 0 = none */
	int64_t empty_until_us;      /* Redis said the fleet's bucket is empty until then */
	int64_t failed_until_us; /* the script failed for this bucket: failure mode until then */
	double fleet_tokens;     /* tokens left in Redis after the last refill */
	int64_t fleet_at_us;     /* when fleet_tokens was read; 0 = never (fallback starts full) */
	bool in_fallback;        /* redis_failure_mode local is deciding for this bucket */
};

struct tenant_state {
	char *name;
	struct tenant_state *next;          /* registry chain */
	pthread_mutex_t lock;               /* guards buckets (in-process limiter) */
	struct bucket buckets[LIMIT_KINDS]; /* in-process limiter; limiter = redis: the fallback */
	struct lease leases[LIMIT_KINDS];   /* limiter = redis */
	_Atomic int clients;                /* logged-in clients */
	_Atomic uint64_t admitted[LIMIT_KINDS]; /* tokens taken without waiting */
	_Atomic uint64_t delayed[LIMIT_KINDS];  /* requests that waited, then got a token */
	_Atomic uint64_t rejected[LIMIT_KINDS]; /* 53400 sent */
	_Atomic uint64_t over_max_clients;      /* logins refused by max_client_conn */
	/* fleet_max_client_conn (redis_limiter.c): this instance's part of the fleet's count. */
	_Atomic int fleet_seated;  /* clients holding a seat */
	_Atomic int fleet_asking;  /* logins whose seat Redis has not answered yet */
	_Atomic bool fleet_capped; /* ever had a seat: the heartbeat keeps its count in Redis */
	/*
	 * Current rate, for SHOW RATELIMITS: tokens taken per completed window.
	 * Atomics, not the lock: counting must not cost a second lock per request.
	 */
	_Atomic int64_t window_start_us;
	_Atomic uint64_t window_taken[LIMIT_KINDS];
	_Atomic uint64_t last_rate_milli[LIMIT_KINDS]; /* per 1000 s over the last window */
};

#define RATE_WINDOW_US INT64_C(10000000) /* SHOW RATELIMITS' current_rate: 10 s windows */

/* Count tokens taken (any limiter) into the current-rate windows. */
void tenant_note_taken(struct tenant_state *t, unsigned kinds, int64_t now_us);
/* Per second over the last completed window; 0 when it is older than one more window. */
double tenant_current_rate(struct tenant_state *t, enum limit_kind kind, int64_t now_us);

struct limiter;

/* take(): no token and none can be had (limiter = redis, Redis down, failure mode closed). */
#define LIMITER_UNAVAILABLE INT64_MAX

/* What SHOW RATELIMITS and /metrics say about the limiter behind a bucket. */
struct limiter_status {
	const char *backend; /* "local" or "redis" */
	const char *state; /* redis: "up", "down", "partial" (some workers connected); local: "" */
	int64_t lease;     /* redis: tokens per lease; local: 0 */
	int live;          /* redis: instances in the fleet; local: 1 */
	double rtt_ms;     /* redis: the latest round trip */
};

struct limiter_ops {
	/*
	 * Take one token from each bucket in `kinds` (a mask of 1 << enum
	 * limit_kind; kinds whose rate is 0 are skipped), all or none.  Returns
	 * 0 when taken, else the microseconds until all will be there, with
	 * `blocking` set to a kind that is short.  With `force` the tokens are
	 * always taken, at most one burst into debt, for work that must not be
	 * refused (statements inside a transaction).
	 *
	 * With `reserve_us` > 0 a limiter may reserve tokens that are due within
	 * that time: it takes them now, into debt, sets *reserved and returns
	 * the wait; the caller then waits that long and proceeds without taking
	 * again (or gives them back with limiter_refund if it goes away first).
	 * Waiters so queue in the order they came, each woken once, when its
	 * token is due.  The in-process limiter reserves; the shared one does
	 * not (its waiters ask again when told).
	 *
	 * A shared limiter may also answer less than 0: not known yet (its
	 * store has been asked), ask again after -return microseconds; it never
	 * stays undecided longer than its timeout.  Or LIMITER_UNAVAILABLE:
	 * refuse.  `link` is the calling worker's connection to the store
	 * (NULL for the in-process limiter).
	 */
	int64_t (*take)(struct limiter *l, struct redis_link *link, struct tenant_state *t,
	                const struct tenant_limits *lim, unsigned kinds, int64_t now_us, bool force,
	                int64_t reserve_us, bool *reserved, enum limit_kind *blocking);
	/* Tokens in the bucket now, for SHOW RATELIMITS. */
	double (*peek)(struct limiter *l, struct tenant_state *t, enum limit_kind kind,
	               const struct rate *r, int64_t burst, int64_t now_us);
	/* Backend, lease size and store state of one bucket. */
	void (*status)(struct limiter *l, struct tenant_state *t, enum limit_kind kind,
	               const struct rate *r, int64_t burst, struct limiter_status *out);
};

/* Round-trip histogram buckets (upper bounds in microseconds), for /metrics. */
#define REDIS_RTT_BUCKETS 12

/* What /metrics says about Redis; kept across reloads that change the store. */
struct redis_stats {
	_Atomic uint64_t errors;     /* failed connects, timeouts, error answers */
	_Atomic int64_t last_rtt_us; /* latest round trip */
	_Atomic uint64_t rtt_count;  /* round trips measured */
	_Atomic uint64_t rtt_sum_us; /* their sum */
	_Atomic uint64_t rtt_buckets[REDIS_RTT_BUCKETS]; /* cumulative counts are made on read */
	_Atomic int64_t last_log_us; /* error lines are at most one per second per process */
};

/*
 * The process's limiter.  `ops` never changes; with limiter_shared_ops
 * (redis_limiter.h) each take goes to Redis or to the local buckets by the
 * calling worker's link, so a reload that switches backends reaches each
 * worker on its own loop.
 */
struct limiter {
	const struct limiter_ops *ops;
	pthread_mutex_t lock;      /* guards fleet (redis_limiter.c): a reload replaces it */
	struct redis_fleet *fleet; /* limiter = redis: the current store and fleet; NULL = local */
	uint64_t fleets_made;      /* ids of fleets, under lock */
	struct redis_stats stats;  /* Redis' counters for /metrics, whichever fleet */
	char instance[96];         /* this process's name in every fleet it joins */
	struct quota_registry *tenants; /* the tenant states, for fleet_max_client_conn's beat */
};

/* The in-process limiter: buckets inside each tenant_state, one mutex per tenant. */
extern const struct limiter_ops limiter_local_ops;

/* Give back tokens of `kinds` reserved by a take that will not be used. */
void limiter_refund(struct tenant_state *t, const struct tenant_limits *lim, unsigned kinds);

/* Pure bucket arithmetic (unit-tested): refill to now, then try to take. */
void bucket_refill(struct bucket *b, const struct rate *r, int64_t burst, int64_t now_us);
int64_t bucket_take(struct bucket *b, const struct rate *r, int64_t burst, int64_t now_us,
                    bool force);

#endif
