/*
 * Host selection for new server connections; see hosts.h.
 */
#include "pool/hosts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/msg.h"

void hosts_attach(struct pool_hosts *h, struct breaker_registry *reg, const struct db_def *db,
                  uint64_t seed, unsigned turn)
{
	memset(h, 0, sizeof(*h));
	h->rng = seed != 0 ? seed : 1;
	h->turn = turn;
	if (db == NULL || db->nhosts == 0)
		return;
	h->b = calloc((size_t)db->nhosts, sizeof(*h->b));
	if (h->b == NULL) {
		/* As quotas do: a pool without its breakers would hammer a dead server. */
		fprintf(stderr, "sluice: out of memory attaching a pool to its hosts\n");
		abort();
	}
	for (int i = 0; i < db->nhosts; i++)
		h->b[i] = breaker_find(reg, db->hosts[i].host, db->hosts[i].port);
	h->n = db->nhosts;
}

void hosts_detach(struct pool_hosts *h, struct breaker_registry *reg)
{
	for (int i = 0; i < h->n; i++)
		breaker_put(reg, h->b[i]);
	free(h->b);
	h->b = NULL;
	h->n = 0;
}

bool hosts_role_fits(int target, enum host_role role, bool read_only, bool any_role)
{
	if (role == HOST_ROLE_UNKNOWN || any_role)
		return true; /* unknown: the login will tell */
	switch (target) {
	case TARGET_READ_WRITE:
		return role == HOST_ROLE_PRIMARY && !read_only;
	case TARGET_PRIMARY:
		return role == HOST_ROLE_PRIMARY;
	case TARGET_STANDBY:
	case TARGET_PREFER_STANDBY:
		return role == HOST_ROLE_STANDBY;
	case TARGET_READ_ONLY:
		return role == HOST_ROLE_STANDBY || read_only;
	default:
		return true;
	}
}

/* xorshift64: load balancing needs spread, not secrecy. */
static uint64_t next_random(struct pool_hosts *h)
{
	uint64_t x = h->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return h->rng = x;
}

/* The order to try the hosts in; `advance` moves the round-robin turn on. */
static void host_order(struct pool_hosts *h, int balance, bool advance, int *order)
{
	unsigned start = balance == BALANCE_ROUND_ROBIN ? h->turn % (unsigned)h->n : 0;

	for (int i = 0; i < h->n; i++)
		order[i] = (int)((start + (unsigned)i) % (unsigned)h->n);
	if (balance == BALANCE_ROUND_ROBIN && advance)
		h->turn++;
	if (balance == BALANCE_RANDOM && advance) {
		for (int i = h->n - 1; i > 0; i--) {
			int j = (int)(next_random(h) % (uint64_t)(i + 1)), t = order[i];

			order[i] = order[j];
			order[j] = t;
		}
	}
}

/* How a host's known role stands against the target. */
enum fit { FIT_YES, FIT_NO, FIT_RECHECK };

static enum fit role_fit(struct breaker *b, int target, bool any_role, int64_t now_us,
                         int64_t recheck_us)
{
	bool read_only;
	int64_t checked;
	enum host_role role = breaker_role(b, &read_only, &checked);

	if (hosts_role_fits(target, role, read_only, any_role))
		return FIT_YES;
	/* A role is not forever: a standby may have been promoted since. */
	return now_us - checked >= recheck_us ? FIT_RECHECK : FIT_NO;
}

/*
 * Says what each host lacks and when the first may be tried: a host of the
 * wrong role when its role is asked again, one behind an open breaker when
 * its wait ends (0 while a probe is out).
 */
static void describe(struct pool_hosts *h, const struct config *cfg, const struct db_def *db,
                     int64_t now_us, int64_t *retry_us, char *why, size_t len)
{
	int target = config_target_session_attrs(cfg, db);
	int64_t soonest = INT64_MAX;

	why[0] = '\0';
	for (int i = 0; i < h->n; i++) {
		struct breaker_view v;
		int64_t at;

		breaker_view(h->b[i], now_us, &v);
		msg_append(why, len, "%s%s:%d", i ? "; " : "", db->hosts[i].host,
		           db->hosts[i].port);
		if (!hosts_role_fits(target, v.role, v.read_only,
		                     target == TARGET_PREFER_STANDBY)) {
			msg_append(why, len, " is a %s%s", host_role_name(v.role),
			           v.read_only ? " (read-only)" : "");
			at = v.role_checked_us + cfg->server_breaker_backoff_us;
		} else {
			msg_append(why, len, ": %s",
			           v.last_error[0] ? v.last_error : "not answering");
			at = breaker_next_try(h->b[i], now_us);
		}
		if (at < soonest)
			soonest = at;
	}
	*retry_us = soonest == INT64_MAX ? 0 : soonest;
}

/*
 * Pass 0 takes hosts whose role fits; pass 1, for prefer-standby only, any
 * role; pass 2 hosts whose role did not fit when last learnt, long enough
 * ago to ask again.
 */
static bool pick(struct pool_hosts *h, const struct config *cfg, const struct db_def *db,
                 int64_t now_us, bool claim, struct host_pick *out)
{
	int target = config_target_session_attrs(cfg, db), order[DB_MAX_HOSTS];
	int64_t recheck = cfg->server_breaker_backoff_us;

	host_order(h, config_load_balance_hosts(cfg, db), claim, order);
	for (int pass = 0; pass < 3; pass++) {
		if (pass == 1 && target != TARGET_PREFER_STANDBY)
			continue;
		for (int k = 0; k < h->n; k++) {
			struct breaker *b = h->b[order[k]];
			enum fit fit = role_fit(b, target, pass == 1, now_us, recheck);

			if (fit != (pass == 2 ? FIT_RECHECK : FIT_YES))
				continue;
			if (!claim) {
				if (breaker_next_try(b, now_us) == 0)
					return true;
				continue;
			}
			/* One connection asks again; the clients wait for its answer. */
			if (pass == 2 && !breaker_claim_recheck(b))
				continue;
			switch (breaker_ask(b, now_us, NULL)) {
			case BREAKER_WAIT:
				if (pass == 2)
					breaker_recheck_done(b);
				continue;
			case BREAKER_PROBE:
				out->probe = true;
				break;
			case BREAKER_GO:
				out->probe = false;
				break;
			}
			out->idx = order[k];
			out->any_role = pass == 1;
			out->recheck = pass == 2;
			return true;
		}
	}
	return false;
}

bool hosts_pick(struct pool_hosts *h, const struct config *cfg, const struct db_def *db,
                int64_t now_us, struct host_pick *out, int64_t *retry_us, char *why, size_t len)
{
	if (db == NULL || h->n == 0) {
		snprintf(why, len, "the database was removed from the configuration");
		*retry_us = 0;
		return false;
	}
	if (pick(h, cfg, db, now_us, true, out))
		return true;
	describe(h, cfg, db, now_us, retry_us, why, len);
	return false;
}

bool hosts_usable(struct pool_hosts *h, const struct config *cfg, const struct db_def *db,
                  int64_t now_us, int64_t *retry_us, char *why, size_t len)
{
	if (db == NULL || h->n == 0) {
		snprintf(why, len, "the database was removed from the configuration");
		*retry_us = 0;
		return false;
	}
	if (pick(h, cfg, db, now_us, false, NULL))
		return true;
	describe(h, cfg, db, now_us, retry_us, why, len);
	return false;
}

void hosts_hint(int64_t retry_us, int64_t now_us, char *buf, size_t len)
{
	if (retry_us == 0 || retry_us <= now_us)
		snprintf(buf, len,
		         "A probe connection is testing the host now; try again shortly.");
	else
		snprintf(buf, len, "The next try is in %lld ms.",
		         (long long)((retry_us - now_us + 999) / 1000));
}
