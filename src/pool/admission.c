/*
 * Tenant admission; see admission.h.  The buckets are the limiter's
 * (limiter.h); this file decides when to ask, and what the client sees.
 */
#include "config/config.h"
#include "pool/admission.h"

#include <event2/buffer.h>
#include <stdio.h>

#include "pool/client.h"
#include "limit/limiter.h"
#include "limit/redis_limiter.h"
#include "pool/pool.h"
#include "proto/build.h"
#include "proto/sqlstate.h"
#include "pool/requests.h"
#include "pool/server.h"
#include "pool/worker.h"

static const char *const limit_names[LIMIT_KINDS] = {"query_rate", "transaction_rate",
                                                     "connect_rate"};

/* Messages that begin a request when no request is open. */
static bool starts_request(uint8_t type)
{
	return type == 'Q' || type == 'F' || type == 'P' || type == 'B' || type == 'D' ||
	       type == 'E' || type == 'C';
}

/* 53400 with the tenant, the limit and a retry-after hint, as ERROR or FATAL. */
static void send_refusal(struct client *c, const char *severity, enum limit_kind kind,
                         int64_t wait_us)
{
	const struct pool *p = c->pool;
	char rate[32], msg[256], hint[96];

	tenant_format_rate(&p->set.limits->rate[kind], rate, sizeof(rate));
	if (wait_us == LIMITER_UNAVAILABLE) {
		/* limiter = redis, Redis down, redis_failure_mode = closed. */
		snprintf(msg, sizeof(msg),
		         "rate limit for tenant \"%s\" cannot be checked: %s %s is shared through "
		         "Redis, which is unavailable",
		         p->tenant, limit_names[kind], rate);
		snprintf(hint, sizeof(hint), "retry later (redis_failure_mode = closed)");
	} else {
		snprintf(msg, sizeof(msg), "rate limit exceeded for tenant \"%s\": %s %s",
		         p->tenant, limit_names[kind], rate);
		snprintf(hint, sizeof(hint), "retry after %lld ms",
		         (long long)((wait_us + 999) / 1000));
	}
	/* Debug only: a tenant over its rate would otherwise flood the log; SHOW RATELIMITS counts.
	 */
	clog(c, LOG_DEBUG, "%s %s: %s (%s)", severity, SQLSTATE_CONFIGURATION_LIMIT, msg, hint);
	build_error_hint(conn_out(&c->conn), severity, SQLSTATE_CONFIGURATION_LIMIT, msg, NULL,
	                 hint);
	atomic_fetch_add(&p->ts->rejected[kind], 1);
	c->pool->lat.ratelimit_rejections++;
}

/* The tokens in `kinds` were taken: count them, the client waits no more. */
static enum admit taken(struct client *c, unsigned kinds, int64_t now)
{
	struct pool *p = c->pool;

	tenant_note_taken(p->ts, kinds, now);
	for (int k = 0; k < LIMIT_KINDS; k++)
		if (kinds & (1u << k))
			atomic_fetch_add(c->throttle_deadline_us != 0 ? &p->ts->delayed[k]
			                                              : &p->ts->admitted[k],
			                 1);
	c->throttle_deadline_us = 0;
	return ADMIT_GO;
}

/*
 * Take the tokens in `kinds`.  GO when taken; WAIT with the client
 * suspended and its timer armed when they are due within rate_limit_wait
 * (counted from the first try), reserved where the limiter reserves, so
 * the client goes when the timer fires; REFUSED otherwise, with *kind and
 * *wait_us saying which limit and when it would have been due.
 */
static enum admit take_or_wait(struct client *c, unsigned kinds, enum limit_kind *kind,
                               int64_t *wait_us)
{
	struct pool *p = c->pool;
	struct limiter *l = &c->w->shared->limiter;
	int64_t now = worker_now_us(c->w), wait, deadline;
	bool reserved;

	if (c->reserved_kinds != 0) {
		c->reserved_kinds = 0;
		return taken(c, kinds, now);
	}
	deadline = c->throttle_deadline_us != 0 ? c->throttle_deadline_us
	                                        : now + p->set.rate_limit_wait_us;
	wait = l->ops->take(l, c->w->redis, p->ts, p->set.limits, kinds, now, false, deadline - now,
	                    &reserved, kind);

	if (wait < 0) {
		/* A shared limiter is fetching tokens: look again soon (within redis_timeout). */
		conn_suspend(&c->conn, SUSPEND_THROTTLE);
		client_arm_timer(c, -wait);
		return ADMIT_WAIT;
	}
	if (wait == LIMITER_UNAVAILABLE) {
		c->throttle_deadline_us = 0;
		*wait_us = wait;
		return ADMIT_REFUSED;
	}
	if (wait == 0)
		return taken(c, kinds, now);
	if (now + wait <= deadline) {
		c->throttle_deadline_us = deadline;
		if (reserved)
			c->reserved_kinds = (uint8_t)kinds;
		conn_suspend(&c->conn, SUSPEND_THROTTLE);
		client_arm_timer(c, wait);
		return ADMIT_WAIT;
	}
	c->throttle_deadline_us = 0;
	*wait_us = wait;
	return ADMIT_REFUSED;
}

/* fleet_max_client_conn: a seat in the tenant's count over every sluice of the fleet. */
static enum admit take_seat(struct client *c)
{
	struct pool *p = c->pool;
	int64_t cap = p->set.limits->fleet_max_client_conn, retry = 0;

	switch (limiter_join(c->w->redis, p->ts, cap, &c->fleet_seat, &retry)) {
	case SEAT_TAKEN:
		return ADMIT_GO;
	case SEAT_WAIT:
		conn_suspend(&c->conn, SUSPEND_THROTTLE);
		client_arm_timer(c, retry);
		c->login = LOGIN_THROTTLED;
		return ADMIT_WAIT;
	case SEAT_FULL:
		atomic_fetch_add(&p->ts->over_max_clients, 1);
		client_fail(c, SQLSTATE_TOO_MANY_CONNECTIONS,
		            "too many connections for tenant \"%s\" across the fleet "
		            "(fleet_max_client_conn %lld)",
		            p->tenant, (long long)cap);
		return ADMIT_REFUSED;
	case SEAT_UNAVAILABLE:
		break;
	}
	atomic_fetch_add(&p->ts->over_max_clients, 1);
	client_fail(c, SQLSTATE_TOO_MANY_CONNECTIONS,
	            "fleet_max_client_conn %lld of tenant \"%s\" cannot be checked: Redis is "
	            "unavailable (redis_failure_mode = closed)",
	            (long long)cap, p->tenant);
	return ADMIT_REFUSED;
}

enum admit admission_login(struct client *c)
{
	struct pool *p = c->pool;
	const struct tenant_limits *lim = p->set.limits;
	enum limit_kind kind = LIMIT_CONNECT;
	int64_t wait = 0;
	enum admit a;

	if (!c->tenant_counted) {
		int before = atomic_fetch_add(&p->ts->clients, 1);

		if (p->set.max_client_conn > 0 && before >= p->set.max_client_conn) {
			atomic_fetch_sub(&p->ts->clients, 1);
			atomic_fetch_add(&p->ts->over_max_clients, 1);
			client_fail(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			            "too many connections for tenant \"%s\" (max_client_conn %d)",
			            p->tenant, p->set.max_client_conn);
			return ADMIT_REFUSED;
		}
		c->tenant_counted = true;
	}
	if (lim != NULL && lim->fleet_max_client_conn > 0 && (a = take_seat(c)) != ADMIT_GO)
		return a;
	if (lim == NULL || lim->rate[LIMIT_CONNECT].count <= 0)
		return ADMIT_GO;
	a = take_or_wait(c, 1u << LIMIT_CONNECT, &kind, &wait);
	if (a == ADMIT_WAIT)
		c->login = LOGIN_THROTTLED;
	if (a == ADMIT_REFUSED) {
		send_refusal(c, "FATAL", kind, wait);
		client_close(c, "connect_rate exceeded");
	}
	return a;
}

enum admit admission_request(struct client *c, uint8_t type)
{
	struct server *s = c->server;
	enum limit_kind kind = LIMIT_QUERY;
	int64_t wait = 0;
	unsigned kinds;
	enum admit a;

	if (type == 'S') {
		c->in_request = false;
		return ADMIT_GO;
	}
	if (c->in_request || !starts_request(type))
		return ADMIT_GO;
	/*
	 * Requests pipelined behind unanswered ones: whether they open a
	 * transaction is known only once the server has answered, so they
	 * wait for that (the queue drains, then reading resumes).  So do
	 * requests that come while sluice reads back the settings the last
	 * transaction changed: the client holds the server only until that
	 * ends, and its request is then charged as one between transactions.
	 */
	if (s != NULL && (requests_count(&s->requests) > 0 || s->sync_pending > 0)) {
		conn_suspend(&c->conn, SUSPEND_PIPELINE);
		return ADMIT_WAIT;
	}
	if (s != NULL && s->tx_status != 'I') {
		/* Inside a transaction: counted, never refused. */
		struct limiter *l = &c->w->shared->limiter;
		bool reserved;

		l->ops->take(l, c->w->redis, c->pool->ts, c->pool->set.limits, 1u << LIMIT_QUERY,
		             worker_now_us(c->w), true, 0, &reserved, &kind);
		tenant_note_taken(c->pool->ts, 1u << LIMIT_QUERY, worker_now_us(c->w));
		atomic_fetch_add(&c->pool->ts->admitted[LIMIT_QUERY], 1);
		a = ADMIT_GO;
	} else {
		kinds = (1u << LIMIT_QUERY) | (1u << LIMIT_TRANSACTION);
		a = take_or_wait(c, kinds, &kind, &wait);
	}
	if (a == ADMIT_GO)
		c->in_request = true;
	if (a == ADMIT_REFUSED) {
		send_refusal(c, "ERROR", kind, wait);
		/* Drop the request up to its Sync (or this Query): that gets ReadyForQuery. */
		c->discarding = true;
		/* The throttle may have used the idle timer; the client is idle again. */
		client_arm_timer(c, c->pool->set.client_idle_timeout_us);
	}
	return a;
}

void admission_request_sent(struct client *c, uint8_t type)
{
	/* A Query or FunctionCall is a whole request; an extended one ends at its Sync. */
	if (type == 'Q' || type == 'F')
		c->in_request = false;
}

void admission_retry(struct client *c)
{
	if (c->state == CLIENT_LOGIN) {
		int64_t login_left =
		    c->connect_us + c->w->cfg->client_login_timeout_us - worker_now_us(c->w);

		conn_resume(&c->conn, SUSPEND_THROTTLE);
		/* The throttle borrowed the login timer: what is left of client_login_timeout. */
		if (c->w->cfg->client_login_timeout_us > 0)
			client_arm_timer(c, login_left > 0 ? login_left : 1);
		c->handler->wake(c);
		return;
	}
	conn_resume(&c->conn, SUSPEND_THROTTLE);
}

void admission_client_gone(struct client *c)
{
	/* It waited for tokens it will not use: the next waiter's are due sooner. */
	if (c->reserved_kinds != 0) {
		limiter_refund(c->pool->ts, c->pool->set.limits, c->reserved_kinds);
		c->reserved_kinds = 0;
	}
	if (c->tenant_counted) {
		atomic_fetch_sub(&c->pool->ts->clients, 1);
		c->tenant_counted = false;
	}
	limiter_leave(c->w->redis, &c->fleet_seat);
}
