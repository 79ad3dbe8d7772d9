/*
 * Circuit breakers per upstream host; see breaker.h.
 */
#include "limit/breaker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"

static const char *const state_names[] = {"closed", "open", "half-open"};
static const char *const role_names[] = {"unknown", "primary", "standby"};

const char *breaker_state_name(enum breaker_state state)
{
	return state_names[state];
}

const char *host_role_name(enum host_role role)
{
	return role_names[role];
}

void breaker_registry_init(struct breaker_registry *reg)
{
	pthread_mutex_init(&reg->lock, NULL);
	reg->chain = NULL;
}

static void breaker_free(struct breaker *b)
{
	pthread_mutex_destroy(&b->lock);
	free(b->host);
	free(b);
}

void breaker_registry_fini(struct breaker_registry *reg)
{
	struct breaker *b, *next;

	for (b = reg->chain; b != NULL; b = next) {
		next = b->next;
		breaker_free(b);
	}
	reg->chain = NULL;
	pthread_mutex_destroy(&reg->lock);
}

static struct breaker *find_locked(struct breaker_registry *reg, const char *host, int port)
{
	for (struct breaker *b = reg->chain; b != NULL; b = b->next)
		if (b->port == port && strcmp(b->host, host) == 0)
			return b;
	return NULL;
}

struct breaker *breaker_find(struct breaker_registry *reg, const char *host, int port)
{
	struct breaker *b;

	pthread_mutex_lock(&reg->lock);
	b = find_locked(reg, host, port);
	if (b == NULL) {
		b = calloc(1, sizeof(*b));
		if (b == NULL || (b->host = strdup(host)) == NULL) {
			/* As quotas do: a host without its breaker would hammer a dead server. */
			fprintf(stderr, "sluice: out of memory making a host's circuit breaker\n");
			abort();
		}
		b->port = port;
		pthread_mutex_init(&b->lock, NULL);
		/* Seeded apart per host, so hosts that failed together do not retry in step. */
		b->jitter = hash_fnv1a(host, strlen(host), (uint64_t)port) ^ (uintptr_t)b;
		if (b->jitter == 0)
			b->jitter = 1;
		b->next = reg->chain;
		reg->chain = b;
	}
	b->refs++;
	pthread_mutex_unlock(&reg->lock);
	return b;
}

void breaker_hold(struct breaker_registry *reg, struct breaker *b)
{
	pthread_mutex_lock(&reg->lock);
	b->refs++;
	pthread_mutex_unlock(&reg->lock);
}

void breaker_put(struct breaker_registry *reg, struct breaker *b)
{
	struct breaker **pp;

	if (b == NULL)
		return;
	pthread_mutex_lock(&reg->lock);
	if (--b->refs == 0) {
		for (pp = &reg->chain; *pp != b; pp = &(*pp)->next)
			;
		*pp = b->next;
		breaker_free(b);
	}
	pthread_mutex_unlock(&reg->lock);
}

bool breaker_peek(struct breaker_registry *reg, const char *host, int port, int64_t now_us,
                  struct breaker_view *view)
{
	struct breaker *b;

	pthread_mutex_lock(&reg->lock);
	b = find_locked(reg, host, port);
	if (b != NULL)
		breaker_view(b, now_us, view);
	pthread_mutex_unlock(&reg->lock);
	return b != NULL;
}

static void set_state_locked(struct breaker *b, enum breaker_state state)
{
	if (b->state != state) {
		b->state = state;
		b->transitions++;
	}
}

/* An open breaker whose wait is over turns half-open. */
static void expire_locked(struct breaker *b, int64_t now_us)
{
	if (b->state == BREAKER_OPEN && now_us >= b->next_try_us) {
		set_state_locked(b, BREAKER_HALF_OPEN);
		b->probe_out = false;
	}
}

enum breaker_verdict breaker_ask(struct breaker *b, int64_t now_us, int64_t *retry_us)
{
	enum breaker_verdict v = BREAKER_GO;

	pthread_mutex_lock(&b->lock);
	expire_locked(b, now_us);
	if (b->state == BREAKER_OPEN) {
		v = BREAKER_WAIT;
		if (retry_us != NULL)
			*retry_us = b->next_try_us;
	} else if (b->state == BREAKER_HALF_OPEN) {
		v = b->probe_out ? BREAKER_WAIT : BREAKER_PROBE;
		b->probe_out = true;
		if (retry_us != NULL)
			*retry_us = 0;
	}
	pthread_mutex_unlock(&b->lock);
	return v;
}

int64_t breaker_next_try(struct breaker *b, int64_t now_us)
{
	int64_t at = 0;

	pthread_mutex_lock(&b->lock);
	expire_locked(b, now_us);
	if (b->state == BREAKER_OPEN)
		at = b->next_try_us;
	else if (b->state == BREAKER_HALF_OPEN && b->probe_out)
		at = now_us + b->backoff_us; /* at the latest; the probe's end decides sooner */
	pthread_mutex_unlock(&b->lock);
	return at;
}

void breaker_succeeded(struct breaker *b, int64_t now_us, int64_t latency_us)
{
	pthread_mutex_lock(&b->lock);
	set_state_locked(b, BREAKER_CLOSED);
	b->failures = 0;
	b->backoff_us = 0;
	b->next_try_us = 0;
	b->probe_out = false;
	b->last_latency_us = latency_us;
	b->last_check_us = now_us;
	b->last_error[0] = '\0';
	pthread_mutex_unlock(&b->lock);
}

/* xorshift64: the jitter needs spread, not secrecy. */
static uint64_t next_random(struct breaker *b)
{
	uint64_t x = b->jitter;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return b->jitter = x;
}

/*
 * Opens for `backoff`, less up to half of it at random: many sluices (or
 * workers' pools) that saw a host fail together then probe it apart.
 */
static void open_locked(struct breaker *b, int64_t backoff_us, int64_t now_us)
{
	int64_t half = backoff_us / 2;

	b->backoff_us = backoff_us;
	b->next_try_us =
	    now_us + backoff_us - (half > 0 ? (int64_t)(next_random(b) % (uint64_t)half) : 0);
	b->probe_out = false;
	set_state_locked(b, BREAKER_OPEN);
}

void breaker_failed(struct breaker *b, const struct breaker_policy *policy, int64_t now_us,
                    const char *why)
{
	pthread_mutex_lock(&b->lock);
	b->failures++;
	b->last_check_us = now_us;
	snprintf(b->last_error, sizeof(b->last_error), "%s", why);
	expire_locked(b, now_us);
	if (b->state == BREAKER_HALF_OPEN) {
		int64_t longer = b->backoff_us * 2;

		open_locked(b,
		            longer < policy->backoff_us ? policy->backoff_us
		            : longer > policy->max_us   ? policy->max_us
		                                        : longer,
		            now_us);
	} else if (b->state == BREAKER_CLOSED && b->failures >= policy->failures) {
		open_locked(b, policy->backoff_us, now_us);
	}
	pthread_mutex_unlock(&b->lock);
}

void breaker_probe_abandoned(struct breaker *b)
{
	pthread_mutex_lock(&b->lock);
	b->probe_out = false;
	pthread_mutex_unlock(&b->lock);
}

void breaker_set_role(struct breaker *b, enum host_role role, bool read_only, int64_t now_us)
{
	pthread_mutex_lock(&b->lock);
	b->role = role;
	b->read_only = read_only;
	b->role_checked_us = now_us;
	pthread_mutex_unlock(&b->lock);
}

bool breaker_claim_recheck(struct breaker *b)
{
	bool claimed;

	pthread_mutex_lock(&b->lock);
	claimed = !b->recheck_out;
	b->recheck_out = true;
	pthread_mutex_unlock(&b->lock);
	return claimed;
}

void breaker_recheck_done(struct breaker *b)
{
	pthread_mutex_lock(&b->lock);
	b->recheck_out = false;
	pthread_mutex_unlock(&b->lock);
}

enum host_role breaker_role(struct breaker *b, bool *read_only, int64_t *checked_us)
{
	enum host_role role;

	pthread_mutex_lock(&b->lock);
	role = b->role;
	*read_only = b->read_only;
	*checked_us = b->role_checked_us;
	pthread_mutex_unlock(&b->lock);
	return role;
}

void breaker_view(struct breaker *b, int64_t now_us, struct breaker_view *view)
{
	pthread_mutex_lock(&b->lock);
	expire_locked(b, now_us);
	view->state = b->state;
	view->failures = b->failures;
	view->next_try_us = b->state == BREAKER_OPEN ? b->next_try_us : 0;
	view->transitions = b->transitions;
	view->role = b->role;
	view->read_only = b->read_only;
	view->role_checked_us = b->role_checked_us;
	view->last_latency_us = b->last_latency_us;
	view->last_check_us = b->last_check_us;
	snprintf(view->last_error, sizeof(view->last_error), "%s", b->last_error);
	pthread_mutex_unlock(&b->lock);
	view->servers = atomic_load(&b->servers);
}
