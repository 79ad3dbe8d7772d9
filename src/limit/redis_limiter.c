/*
 * The shared limiter; see redis_limiter.h.  The lease state of a bucket is
 * in the tenant's state (struct lease, limiter.h) under the tenant's mutex;
 * refills go out on the calling worker's link after the mutex is released
 * and come back on that worker's loop.
 *
 * A reload may replace the store (limiter_configure): workers move to it
 * one by one, each on its own loop, so for a moment some use the old fleet
 * and some the new.  A lease belongs to one fleet (by id) and only ever
 * moves to a newer one; what the old store leased and nobody spent is
 * dropped, as at a lease's expiry, and a debt is carried over.
 */
#include "limit/redis_limiter.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "base/clock.h"
#include "config/config.h"
#include "limit/quota.h"
#include "limit/redis_link.h"

#define UNDECIDED_RETRY_US INT64_C(1000)    /* a request waiting for a refill looks again */
#define SCRIPT_RETRY_US    INT64_C(1000000) /* after the script failed for a bucket */
#define KEY_MAX            320

static const char *const kind_keys[LIMIT_KINDS] = {"query", "transaction", "connect"};

/*
 * KEYS[1]: the bucket.  ARGV: count, period (us), burst, tokens wanted, key
 * TTL (ms).  Refills by Redis' clock, grants what it has up to the wish
 * and, when empty, says in how many microseconds one token will be there.
 * A bucket whose limit changed (a reload) starts full, as the local one
 * does.  Numbers are stored as text with all their digits (Lua's tostring
 * would keep 14).  Returns {granted, wait_us, tokens_left * 1000}.
 */
static const char take_script[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local count, period = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local burst, want = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local limit = ARGV[1] .. '/' .. ARGV[2] .. '/' .. ARGV[3]\n"
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'limit')\n"
    "local tokens, ts = tonumber(b[1]), tonumber(b[2])\n"
    "if tokens == nil or ts == nil or b[3] ~= limit then\n"
    "  tokens = burst\n"
    "elseif now > ts then\n"
    "  tokens = math.min(burst, tokens + (now - ts) * count / period)\n"
    "end\n"
    "local granted, wait = 0, 0\n"
    "if tokens >= 1 then\n"
    "  granted = math.min(want, math.floor(tokens))\n"
    "  tokens = tokens - granted\n"
    "else\n"
    "  wait = math.ceil((1 - tokens) * period / count)\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),\n"
    "           'ts', string.format('%.0f', now), 'limit', limit)\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "return {granted, wait, math.floor(tokens * 1000)}\n";

/*
 * fleet_max_client_conn.  KEYS[1]: the tenant's hash of instances, fields
 * n:INSTANCE (its clients) and t:INSTANCE (its last word, ms of Redis'
 * time).  ARGV: this instance, op, this instance's count as it knows it,
 * cap, TTL (ms).  An instance silent for the TTL is dropped from the sum,
 * so a dead one's clients stop counting; the hash itself expires with the
 * last instance.  op join: one more client if the fleet stays within cap;
 * leave: one less; beat: refresh; sync: set the count.  A missing count
 * (Redis restarted) is taken from ARGV.  Returns {admitted, fleet count}.
 */
static const char clients_script[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local me, op, known = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
    "local cap, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "local seen, count = {}, {}\n"
    "for i = 1, #h, 2 do\n"
    "  local kind, inst = string.sub(h[i], 1, 1), string.sub(h[i], 3)\n"
    "  if kind == 't' then seen[inst] = tonumber(h[i + 1]) end\n"
    "  if kind == 'n' then count[inst] = tonumber(h[i + 1]) end\n"
    "end\n"
    "local others = 0\n"
    "for inst, n in pairs(count) do\n"
    "  if inst ~= me then\n"
    "    if seen[inst] == nil or seen[inst] < now - ttl then\n"
    "      redis.call('HDEL', KEYS[1], 'n:' .. inst, 't:' .. inst)\n"
    "    else\n"
    "      others = others + n\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local mine, admitted = count[me] or known, 1\n"
    "if op == 'join' then\n"
    "  if cap > 0 and others + mine + 1 > cap then admitted = 0 else mine = mine + 1 end\n"
    "elseif op == 'leave' then\n"
    "  mine = math.max(0, mine - 1)\n"
    "elseif op == 'sync' then\n"
    "  mine = known\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'n:' .. me, mine, 't:' .. me, now)\n"
    "redis.call('PEXPIRE', KEYS[1], ttl)\n"
    "return {admitted, others + mine}\n";

int64_t lease_size(const struct rate *r, int64_t burst, int live)
{
	double want;
	int64_t size, cap;

	if (live < 1)
		live = 1;
	want = (double)r->count * (double)LEASE_WINDOW_US / (double)r->period_us / live;
	size = (int64_t)want;
	if ((double)size < want)
		size++; /* rounded up */
	cap = burst / (2 * (int64_t)live);
	if (size > cap)
		size = cap;
	return size < 1 ? 1 : size;
}

/* The fallback bucket of failure mode local: this instance's share of the rate. */
static void fallback_limit(const struct rate *r, int64_t burst, int live, struct rate *out,
                           int64_t *out_burst)
{
	if (live < 1)
		live = 1;
	out->count = r->count;
	out->period_us = r->period_us * live;
	*out_burst = burst / live > 0 ? burst / live : 1;
}

/* Can the lease be used now, or does redis_failure_mode decide? */
static bool lease_usable(const struct redis_fleet *f, const struct lease *le, bool up, int64_t now)
{
	if (!up || le->failed_until_us > now)
		return false;
	/* A refill past redis_timeout: the link will notice; the request must not wait for it. */
	return le->refill_us == 0 || now - le->refill_us < f->timeout_us;
}

/* What one kind needs before the request may go. */
struct verdict {
	int64_t wait;      /* > 0: no token until then */
	int64_t undecided; /* > 0: a refill is out; look again after this */
	bool refuse;       /* failure mode closed */
};

/*
 * The lease follows a newer fleet: unspent tokens of the old store are
 * dropped (as at expiry: the accuracy bound counts them already), a debt of
 * forced takes is carried over for the new store's next batch to pay, and
 * an answer still out from the old store will be ignored (refill_done).
 */
static void lease_move(struct lease *le, uint64_t fleet_id)
{
	if (le->tokens > 0)
		le->tokens = 0;
	le->fleet_id = fleet_id;
	le->expires_us = 0;
	le->refill_us = 0;
	le->empty_until_us = 0;
	le->failed_until_us = 0;
	le->fleet_tokens = 0;
	le->fleet_at_us = 0;
}

static void judge_fallback(struct redis_fleet *f, struct tenant_state *t, int k,
                           const struct rate *r, int64_t burst, int64_t now, bool force,
                           struct verdict *v)
{
	struct lease *le = &t->leases[k];
	struct rate fr;
	int64_t fb;

	if (f->failure_mode == REDIS_FAIL_OPEN || force)
		return;
	if (f->failure_mode == REDIS_FAIL_CLOSED) {
		v->refuse = true;
		return;
	}
	fallback_limit(r, burst, atomic_load(&f->live), &fr, &fb);
	bucket_refill(&t->buckets[k], &fr, fb, now);
	if (!le->in_fallback && le->fleet_at_us != 0) {
		/*
		 * Redis just became unusable: start from this instance's share of
		 * what the fleet's bucket holds by now, not from a full burst, so a
		 * blip of Redis does not give every instance a burst on top of the
		 * fleet's.  (Never heard from Redis: the bucket starts full.)
		 */
		double held = le->fleet_tokens + (double)(now - le->fleet_at_us) *
		                                     (double)r->count / (double)r->period_us;
		double share = held / atomic_load(&f->live);

		t->buckets[k].tokens = share < 0 ? 0 : share < (double)fb ? share : (double)fb;
	}
	le->in_fallback = true;
	if (t->buckets[k].tokens < 1.0)
		v->wait = bucket_take(&t->buckets[k], &fr, fb, now, false);
}

static void judge_lease(struct redis_fleet *f, struct lease *le, int64_t now, bool force,
                        struct verdict *v)
{
	if (force || le->tokens >= 1.0)
		return;
	if (le->empty_until_us > now) {
		v->wait = le->empty_until_us - now;
		return;
	}
	/* A refill is out, or is sent below: the answer is due within redis_timeout. */
	v->undecided = le->refill_us != 0 ? le->refill_us + f->timeout_us - now : f->timeout_us;
	if (v->undecided > UNDECIDED_RETRY_US)
		v->undecided = UNDECIDED_RETRY_US;
	if (v->undecided < 1)
		v->undecided = 1;
}

static void spend(struct redis_fleet *f, struct tenant_state *t, int k, const struct rate *r,
                  int64_t burst, bool usable, int64_t now)
{
	struct lease *le = &t->leases[k];
	struct rate fr;
	int64_t fb;

	if (usable) {
		le->tokens -= 1.0;
		if (le->tokens < -(double)burst)
			le->tokens = -(double)burst;
	} else if (f->failure_mode == REDIS_FAIL_LOCAL) {
		fallback_limit(r, burst, atomic_load(&f->live), &fr, &fb);
		bucket_take(&t->buckets[k], &fr, fb, now, true);
	}
}

/* One refill to send once the mutex is released. */
struct refill {
	struct lease *lease;
	char key[KEY_MAX];
	char args[5][24];
};

static void refill_done(void *arg, struct redis_fleet *f, const struct redisReply *reply);

static void plan_refill(struct redis_fleet *f, struct tenant_state *t, int k, const struct rate *r,
                        int64_t burst, int64_t now, struct refill *out)
{
	struct lease *le = &t->leases[k];
	int64_t ttl_ms = burst * r->period_us / r->count / 1000 + 1000;

	le->refill_us = now;
	out->lease = le;
	snprintf(out->key, sizeof(out->key), "%sbucket:%s:%s", f->prefix, t->name, kind_keys[k]);
	snprintf(out->args[0], sizeof(out->args[0]), "%lld", (long long)r->count);
	snprintf(out->args[1], sizeof(out->args[1]), "%lld", (long long)r->period_us);
	snprintf(out->args[2], sizeof(out->args[2]), "%lld", (long long)burst);
	snprintf(out->args[3], sizeof(out->args[3]), "%lld", (long long)le->size);
	snprintf(out->args[4], sizeof(out->args[4]), "%lld", (long long)ttl_ms);
}

static void send_refills(struct redis_link *link, struct redis_fleet *f, struct tenant_state *t,
                         struct refill *plan, int n)
{
	for (int i = 0; i < n; i++) {
		const char *args[5];

		for (int a = 0; a < 5; a++)
			args[a] = plan[i].args[a];
		if (redis_link_eval(link, &f->take, plan[i].key, args, 5, refill_done,
		                    plan[i].lease) < 0) {
			pthread_mutex_lock(&t->lock);
			plan[i].lease->refill_us = 0;
			pthread_mutex_unlock(&t->lock);
		}
	}
}

static int64_t redis_take(struct limiter *l, struct redis_link *link, struct tenant_state *t,
                          const struct tenant_limits *lim, unsigned kinds, int64_t now, bool force,
                          enum limit_kind *blocking)
{
	struct redis_fleet *f = redis_link_fleet(link);
	bool up = redis_link_is_up(link), usable[LIMIT_KINDS] = {false}, behind[LIMIT_KINDS] = {0};
	int live = atomic_load(&f->live), nplan = 0;
	struct verdict all = {0};
	struct refill plan[LIMIT_KINDS];

	pthread_mutex_lock(&t->lock);
	for (int k = 0; k < LIMIT_KINDS; k++) {
		struct lease *le = &t->leases[k];
		int64_t burst = tenant_burst(lim, k);
		struct verdict v = {0};

		if (!(kinds & (1u << k)) || lim->rate[k].count <= 0)
			continue;
		le->tenant = t;
		if (le->fleet_id < f->id)
			lease_move(le, f->id);
		/* A reload's new fleet this worker has not reached yet: spend, never refill. */
		behind[k] = le->fleet_id > f->id;
		le->size = lease_size(&lim->rate[k], burst, live);
		if (le->expires_us != 0 && now >= le->expires_us && le->tokens > 0) {
			le->tokens = 0;
			le->expires_us = 0;
		}
		usable[k] = lease_usable(f, le, up, now);
		if (usable[k]) {
			le->in_fallback = false;
			judge_lease(f, le, now, force, &v);
		} else {
			judge_fallback(f, t, k, &lim->rate[k], burst, now, force, &v);
		}
		if (v.refuse && !all.refuse) {
			all.refuse = true;
			*blocking = (enum limit_kind)k;
		}
		if (v.wait > all.wait) {
			all.wait = v.wait;
			if (!all.refuse)
				*blocking = (enum limit_kind)k;
		}
		if (v.undecided > all.undecided)
			all.undecided = v.undecided;
	}
	for (int k = 0; k < LIMIT_KINDS; k++) {
		struct lease *le = &t->leases[k];

		if (!(kinds & (1u << k)) || lim->rate[k].count <= 0)
			continue;
		if (!all.refuse && all.wait == 0 && all.undecided == 0)
			spend(f, t, k, &lim->rate[k], tenant_burst(lim, k), usable[k], now);
		/* Half the lease gone (or none held): the next batch is asked for now. */
		if (usable[k] && !behind[k] && le->refill_us == 0 && le->empty_until_us <= now &&
		    le->tokens <= (double)le->size / 2.0)
			plan_refill(f, t, k, &lim->rate[k], tenant_burst(lim, k), now,
			            &plan[nplan++]);
	}
	pthread_mutex_unlock(&t->lock);
	send_refills(link, f, t, plan, nplan);
	if (all.refuse)
		return LIMITER_UNAVAILABLE;
	if (all.wait > 0)
		return all.wait;
	return -all.undecided;
}

static void refill_done(void *arg, struct redis_fleet *f, const struct redisReply *reply)
{
	struct lease *le = arg;
	struct tenant_state *t = le->tenant;
	int k = (int)(le - t->leases);
	int64_t now = clock_monotonic_us(); /* the workers' clock (loop_now_us) */
	bool ok = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3;
	bool repeat = false;

	for (size_t i = 0; ok && i < 3; i++)
		ok = reply->element[i]->type == REDIS_REPLY_INTEGER;
	pthread_mutex_lock(&t->lock);
	if (le->fleet_id != f->id) {
		/* Sent to a store a reload has replaced: its tokens are dropped (lease_move). */
		pthread_mutex_unlock(&t->lock);
		return;
	}
	le->refill_us = 0;
	if (ok) {
		long long granted = reply->element[0]->integer, wait = reply->element[1]->integer;

		le->failed_until_us = 0;
		le->fleet_tokens = (double)reply->element[2]->integer / 1000.0;
		le->fleet_at_us = now;
		if (granted > 0) {
			le->tokens += (double)granted;
			le->expires_us = now + LEASE_TTL_US;
			le->empty_until_us = 0;
		} else {
			le->empty_until_us = now + (wait > 0 ? wait : 1);
		}
	} else if (reply != NULL) {
		/* Said at warn when it starts failing; while it goes on failing, at debug. */
		repeat = le->failed_until_us != 0;
		le->failed_until_us = now + SCRIPT_RETRY_US;
	}
	pthread_mutex_unlock(&t->lock);
	if (reply != NULL && !ok)
		LOG_AT(
		    f->log, repeat ? LOG_DEBUG : LOG_WARN, NULL,
		    "redis: bucket script failed for tenant \"%s\" %s_rate (key %sbucket:%s:%s): "
		    "%.200s; redis_failure_mode applies to it for 1 s",
		    t->name, kind_keys[k], f->prefix, t->name, kind_keys[k],
		    reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer");
}

static double redis_peek(struct redis_fleet *f, struct tenant_state *t, enum limit_kind kind,
                         const struct rate *r, int64_t burst, int64_t now_us)
{
	double tokens;

	pthread_mutex_lock(&t->lock);
	if (atomic_load(&f->links_up) > 0) {
		tokens = t->leases[kind].fleet_id == f->id ? t->leases[kind].tokens : 0;
	} else {
		struct rate fr;
		int64_t fb;

		fallback_limit(r, burst, atomic_load(&f->live), &fr, &fb);
		bucket_refill(&t->buckets[kind], &fr, fb, now_us);
		tokens = t->buckets[kind].tokens;
	}
	pthread_mutex_unlock(&t->lock);
	return tokens;
}

static void redis_status(struct limiter *l, struct redis_fleet *f, const struct rate *r,
                         int64_t burst, struct limiter_status *out)
{
	int live = atomic_load(&f->live);

	*out = (struct limiter_status){
	    .backend = "redis",
	    .state = redis_fleet_state(f),
	    .lease = lease_size(r, burst, live),
	    .live = live,
	    .rtt_ms = (double)atomic_load(&l->stats.last_rtt_us) / 1000.0,
	};
}

/* ---------------------------------------------------------------------------
 * fleet_max_client_conn
 */

#define CLIENTS_TTL_MS "3000" /* an instance silent this long: its clients stop counting */

enum seat_state { SEAT_ASKING, SEAT_GOT, SEAT_REFUSED, SEAT_FAILED };

struct fleet_seat {
	struct tenant_state *t;
	enum seat_state state;
	bool abandoned; /* the login went away while Redis was asked: the answer frees it */
};

/* The tenant's hash of instances: op join, leave, sync (clients_script). */
static int send_clients(struct redis_link *link, struct redis_fleet *f, struct tenant_state *t,
                        const char *op, int known, int64_t cap, redis_reply_fn fn, void *arg)
{
	char key[KEY_MAX], n[24], c[24];
	const char *args[5] = {f->instance, op, n, c, CLIENTS_TTL_MS};

	snprintf(key, sizeof(key), "%sclients:%s", f->prefix, t->name);
	snprintf(n, sizeof(n), "%d", known);
	snprintf(c, sizeof(c), "%lld", (long long)cap);
	return redis_link_eval(link, &f->clients, key, args, 5, fn, arg);
}

static void clients_synced(void *arg, struct redis_fleet *f, const struct redisReply *reply)
{
	(void)arg;
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
		redis_fleet_log(f, "fleet_max_client_conn script failed: %.200s", reply->str);
}

/*
 * The heartbeat of the counts: each tenant that ever had a seat here sets
 * its count again, so an answer lost with a connection, or a Redis that
 * restarted empty, is mended within a second.  Logins still asked for are
 * counted as seated: the fleet may refuse one too many for a second, never
 * admit one too many.
 */
static void clients_beat(void *arg, struct redis_fleet *f, struct redis_link *link)
{
	struct limiter *l = arg;
	struct tenant_state *t;

	pthread_mutex_lock(&l->tenants->lock);
	t = l->tenants->tenants; /* states are only ever prepended, and live until exit */
	pthread_mutex_unlock(&l->tenants->lock);
	for (; t != NULL; t = t->next)
		if (atomic_load(&t->fleet_capped))
			send_clients(link, f, t, "sync",
			             atomic_load(&t->fleet_seated) + atomic_load(&t->fleet_asking),
			             0, clients_synced, NULL);
}

static void join_done(void *arg, struct redis_fleet *f, const struct redisReply *reply)
{
	struct fleet_seat *s = arg;
	struct tenant_state *t = s->t;
	bool ok = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
	          reply->element[0]->type == REDIS_REPLY_INTEGER;

	if (reply != NULL && !ok)
		redis_fleet_log(
		    f, "fleet_max_client_conn script failed for tenant \"%s\": %.200s", t->name,
		    reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer");
	if (!ok)
		s->state = SEAT_FAILED;
	else if (reply->element[0]->integer == 1)
		s->state = SEAT_GOT;
	else
		s->state = SEAT_REFUSED;
	if (s->state == SEAT_GOT && !s->abandoned)
		atomic_fetch_add(&t->fleet_seated, 1);
	atomic_fetch_sub(&t->fleet_asking, 1);
	/* Abandoned and seated: Redis counts it until the next sync, a second at most. */
	if (s->abandoned)
		free(s);
}

/* Redis cannot decide: redis_failure_mode does, with this instance's share of the cap. */
static enum seat_answer join_locally(struct redis_fleet *f, struct tenant_state *t, int64_t cap,
                                     struct fleet_seat *s, struct fleet_seat **seatp)
{
	int mode = f != NULL ? atomic_load(&f->failure_mode) : REDIS_FAIL_LOCAL;
	int live = f != NULL ? atomic_load(&f->live) : 1;
	int64_t share = (cap + live - 1) / (live > 0 ? live : 1);
	int seated = atomic_load(&t->fleet_seated);

	*seatp = NULL;
	if (mode == REDIS_FAIL_CLOSED || (s == NULL && (s = calloc(1, sizeof(*s))) == NULL)) {
		free(s);
		return SEAT_UNAVAILABLE;
	}
	if (mode == REDIS_FAIL_LOCAL) {
		do {
			if (seated >= share) {
				free(s);
				return SEAT_FULL;
			}
		} while (!atomic_compare_exchange_weak(&t->fleet_seated, &seated, seated + 1));
	} else {
		atomic_fetch_add(&t->fleet_seated, 1);
	}
	s->t = t;
	s->state = SEAT_GOT;
	*seatp = s;
	return SEAT_TAKEN;
}

enum seat_answer limiter_join(struct redis_link *link, struct tenant_state *t, int64_t cap,
                              struct fleet_seat **seatp, int64_t *retry_us)
{
	struct fleet_seat *s = *seatp;
	struct redis_fleet *f = link != NULL ? redis_link_fleet(link) : NULL;

	if (s != NULL) {
		switch (s->state) {
		case SEAT_ASKING:
			*retry_us = UNDECIDED_RETRY_US; /* the link answers within redis_timeout */
			return SEAT_WAIT;
		case SEAT_GOT:
			return SEAT_TAKEN;
		case SEAT_REFUSED:
			free(s);
			*seatp = NULL;
			return SEAT_FULL;
		case SEAT_FAILED:
			break;
		}
	} else if (f != NULL && redis_link_settled(link) && redis_link_is_up(link) &&
	           (s = calloc(1, sizeof(*s))) != NULL) {
		s->t = t;
		s->state = SEAT_ASKING;
		atomic_store(&t->fleet_capped, true);
		atomic_fetch_add(&t->fleet_asking, 1);
		if (send_clients(link, f, t, "join", atomic_load(&t->fleet_seated), cap, join_done,
		                 s) == 0) {
			*seatp = s;
			*retry_us = UNDECIDED_RETRY_US;
			return SEAT_WAIT;
		}
		atomic_fetch_sub(&t->fleet_asking, 1);
	}
	if (f != NULL)
		atomic_store(&t->fleet_capped, true); /* Redis hears of it at the next sync */
	return join_locally(f, t, cap, s, seatp);
}

void limiter_leave(struct redis_link *link, struct fleet_seat **seatp)
{
	struct fleet_seat *s = *seatp;
	int before;

	if (s == NULL)
		return;
	*seatp = NULL;
	if (s->state == SEAT_ASKING) {
		s->abandoned = true;
		return;
	}
	if (s->state == SEAT_GOT) {
		before = atomic_fetch_sub(&s->t->fleet_seated, 1);
		/* Not sent (Redis down, limiter = local): the next sync says it. */
		if (redis_link_is_up(link))
			send_clients(link, redis_link_fleet(link), s->t, "leave", before, 0,
			             clients_synced, NULL);
	}
	free(s);
}

/*
 * The worker's link says which backend decides: a reload reaches workers
 * one by one.  A link still making its first connect leaves it to the
 * local buckets (redis_link_settled).
 */
static int64_t shared_take(struct limiter *l, struct redis_link *link, struct tenant_state *t,
                           const struct tenant_limits *lim, unsigned kinds, int64_t now, bool force,
                           int64_t reserve_us, bool *reserved, enum limit_kind *blocking)
{
	if (link == NULL || !redis_link_settled(link))
		return limiter_local_ops.take(l, NULL, t, lim, kinds, now, force, reserve_us,
		                              reserved, blocking);
	/* Leases are spent as they come: the fleet's waiters ask again when told. */
	*reserved = false;
	return redis_take(l, link, t, lim, kinds, now, force, blocking);
}

static double shared_peek(struct limiter *l, struct tenant_state *t, enum limit_kind kind,
                          const struct rate *r, int64_t burst, int64_t now_us)
{
	struct redis_fleet *f = limiter_fleet(l);
	double tokens = f == NULL ? limiter_local_ops.peek(l, t, kind, r, burst, now_us)
	                          : redis_peek(f, t, kind, r, burst, now_us);

	redis_fleet_unref(f);
	return tokens;
}

static void shared_status(struct limiter *l, struct tenant_state *t, enum limit_kind kind,
                          const struct rate *r, int64_t burst, struct limiter_status *out)
{
	struct redis_fleet *f = limiter_fleet(l);

	if (f == NULL)
		limiter_local_ops.status(l, t, kind, r, burst, out);
	else
		redis_status(l, f, r, burst, out);
	redis_fleet_unref(f);
}

const struct limiter_ops limiter_shared_ops = {
    .take = shared_take, .peek = shared_peek, .status = shared_status};

void limiter_init(struct limiter *l, struct quota_registry *tenants)
{
	memset(l, 0, sizeof(*l));
	l->tenants = tenants;
	l->ops = &limiter_shared_ops;
	pthread_mutex_init(&l->lock, NULL);
}

void limiter_fini(struct limiter *l)
{
	redis_fleet_unref(l->fleet);
	l->fleet = NULL;
	pthread_mutex_destroy(&l->lock);
}

struct redis_fleet *limiter_fleet(struct limiter *l)
{
	struct redis_fleet *f;

	pthread_mutex_lock(&l->lock);
	f = redis_fleet_ref(l->fleet);
	pthread_mutex_unlock(&l->lock);
	return f;
}

static void set_fleet(struct limiter *l, struct redis_fleet *f)
{
	struct redis_fleet *old;

	pthread_mutex_lock(&l->lock);
	old = l->fleet;
	if (f != NULL)
		f->id = ++l->fleets_made;
	l->fleet = f;
	pthread_mutex_unlock(&l->lock);
	redis_fleet_unref(old); /* links still on it keep it until they move */
}

int limiter_configure(struct limiter *l, const struct config *cfg, const struct logger *log,
                      int nworkers, char *msg, size_t len)
{
	struct redis_fleet *cur = l->fleet, *f; /* only this thread replaces it */

	if (cfg->limiter != LIMITER_REDIS) {
		if (cur == NULL)
			return 0;
		set_fleet(l, NULL);
		return 1;
	}
	if (cur != NULL && redis_fleet_same_store(cur, cfg)) {
		/* Same store: the connections and leases stay; these two apply at once. */
		atomic_store(&cur->timeout_us, cfg->redis_timeout_us);
		atomic_store(&cur->failure_mode, cfg->redis_failure_mode);
		return 0;
	}
	f = redis_fleet_new(cfg, log, &l->stats, l->instance[0] != '\0' ? l->instance : NULL,
	                    take_script, clients_script, nworkers, msg, len);
	if (f == NULL)
		return -1;
	f->beat_hook = clients_beat;
	f->beat_arg = l;
	/* One name for this process in every fleet it joins. */
	snprintf(l->instance, sizeof(l->instance), "%s", f->instance);
	set_fleet(l, f);
	return 1;
}

int limiter_follow(struct limiter *l, struct redis_link **link, struct event_base *base,
                   struct evdns_base *dns)
{
	struct redis_fleet *f = limiter_fleet(l);
	int rc = 0;

	if (f == NULL) {
		redis_link_free(*link);
		*link = NULL;
	} else if (*link == NULL) {
		*link = redis_link_new(f, base, dns);
		rc = *link != NULL ? 0 : -1;
	} else {
		rc = redis_link_follow(*link, f);
	}
	redis_fleet_unref(f);
	return rc;
}
