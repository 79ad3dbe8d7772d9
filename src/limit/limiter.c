/*
 * The in-process limiter: a token bucket per tenant and kind.  Refill is
 * computed from the elapsed time at each take, so an idle tenant costs
 * nothing and no timer runs.  Buckets start full.  A request that must wait
 * reserves its token (the bucket goes below zero by the tokens reserved), so
 * the next waiter's token is due one interval later: waiters are served in
 * the order they came, each woken once.  Polling instead (every waiter
 * retrying when the next token is due) served whichever timer fired first,
 * so with many waiters some were served at once and others ran out of
 * rate_limit_wait.
 */
#include "limit/limiter.h"

void bucket_refill(struct bucket *b, const struct rate *r, int64_t burst, int64_t now_us)
{
	/* New, or the limit changed on reload: the tenant starts with a full bucket. */
	if (b->last_us == 0 || b->rate.count != r->count || b->rate.period_us != r->period_us ||
	    b->burst != burst) {
		b->rate = *r;
		b->burst = burst;
		b->tokens = (double)burst;
		b->last_us = now_us;
		return;
	}
	if (now_us > b->last_us) {
		b->tokens +=
		    (double)(now_us - b->last_us) * (double)r->count / (double)r->period_us;
		b->last_us = now_us;
	}
	if (b->tokens > (double)burst)
		b->tokens = (double)burst;
}

int64_t bucket_take(struct bucket *b, const struct rate *r, int64_t burst, int64_t now_us,
                    bool force)
{
	double missing;

	bucket_refill(b, r, burst, now_us);
	if (b->tokens >= 1.0 || force) {
		/* Forced: at most one burst into debt, but reservations below that stay. */
		double floor = b->tokens < -(double)burst ? b->tokens : -(double)burst;

		b->tokens -= 1.0;
		if (b->tokens < floor)
			b->tokens = floor;
		return 0;
	}
	missing = 1.0 - b->tokens;
	return (int64_t)(missing * (double)r->period_us / (double)r->count) + 1;
}

static int64_t local_take(struct limiter *l, struct redis_link *link, struct tenant_state *t,
                          const struct tenant_limits *lim, unsigned kinds, int64_t now_us,
                          bool force, int64_t reserve_us, bool *reserved, enum limit_kind *blocking)
{
	int64_t wait = 0, need;

	(void)l;
	(void)link;
	*reserved = false;
	pthread_mutex_lock(&t->lock);
	for (int k = 0; k < LIMIT_KINDS && !force; k++) {
		if (!(kinds & (1u << k)) || lim->rate[k].count <= 0)
			continue;
		bucket_refill(&t->buckets[k], &lim->rate[k], tenant_burst(lim, k), now_us);
		if (t->buckets[k].tokens < 1.0) {
			need = bucket_take(&t->buckets[k], &lim->rate[k], tenant_burst(lim, k),
			                   now_us, false);
			if (need > wait) {
				wait = need;
				*blocking = (enum limit_kind)k;
			}
		}
	}
	if (wait == 0) {
		for (int k = 0; k < LIMIT_KINDS; k++)
			if ((kinds & (1u << k)) && lim->rate[k].count > 0)
				bucket_take(&t->buckets[k], &lim->rate[k], tenant_burst(lim, k),
				            now_us, true);
	} else if (wait <= reserve_us) {
		/* Into debt without the forced take's floor: the wait pays for them. */
		for (int k = 0; k < LIMIT_KINDS; k++)
			if ((kinds & (1u << k)) && lim->rate[k].count > 0)
				t->buckets[k].tokens -= 1.0;
		*reserved = true;
	}
	pthread_mutex_unlock(&t->lock);
	return wait;
}

void limiter_refund(struct tenant_state *t, const struct tenant_limits *lim, unsigned kinds)
{
	pthread_mutex_lock(&t->lock);
	for (int k = 0; k < LIMIT_KINDS; k++) {
		struct bucket *b = &t->buckets[k];

		if (!(kinds & (1u << k)) || lim->rate[k].count <= 0)
			continue;
		b->tokens += 1.0;
		/* A reload may have refilled the bucket meanwhile. */
		if (b->tokens > (double)b->burst)
			b->tokens = (double)b->burst;
	}
	pthread_mutex_unlock(&t->lock);
}

static double local_peek(struct limiter *l, struct tenant_state *t, enum limit_kind kind,
                         const struct rate *r, int64_t burst, int64_t now_us)
{
	double tokens;

	(void)l;
	pthread_mutex_lock(&t->lock);
	bucket_refill(&t->buckets[kind], r, burst, now_us);
	tokens = t->buckets[kind].tokens;
	pthread_mutex_unlock(&t->lock);
	return tokens;
}

static void local_status(struct limiter *l, struct tenant_state *t, enum limit_kind kind,
                         const struct rate *r, int64_t burst, struct limiter_status *out)
{
	(void)l;
	(void)t;
	(void)kind;
	(void)r;
	(void)burst;
	*out = (struct limiter_status){.backend = "local", .state = "", .lease = 0, .live = 1};
}

const struct limiter_ops limiter_local_ops = {
    .take = local_take, .peek = local_peek, .status = local_status};

void tenant_note_taken(struct tenant_state *t, unsigned kinds, int64_t now_us)
{
	int64_t start = atomic_load(&t->window_start_us);

	if (start == 0) {
		atomic_compare_exchange_strong(&t->window_start_us, &start, now_us);
	} else if (now_us - start >= RATE_WINDOW_US &&
	           atomic_compare_exchange_strong(&t->window_start_us, &start, now_us)) {
		/* This thread closed the window; counts racing in land in the next one. */
		for (int k = 0; k < LIMIT_KINDS; k++) {
			uint64_t taken = atomic_exchange(&t->window_taken[k], 0);

			atomic_store(&t->last_rate_milli[k],
			             taken * UINT64_C(1000000000) / (uint64_t)(now_us - start));
		}
	}
	for (int k = 0; k < LIMIT_KINDS; k++)
		if (kinds & (1u << k))
			atomic_fetch_add(&t->window_taken[k], 1);
}

double tenant_current_rate(struct tenant_state *t, enum limit_kind kind, int64_t now_us)
{
	int64_t start = atomic_load(&t->window_start_us);

	if (start == 0 || now_us - start >= 2 * RATE_WINDOW_US)
		return 0.0;
	return (double)atomic_load(&t->last_rate_milli[kind]) / 1000.0;
}
