/*
 * Redis for the shared limiter (limiter = redis): a `struct redis_fleet`
 * per process (the URL, the key prefix, this instance's name in the fleet,
 * how many instances are alive, and the counters /metrics and SHOW
 * RATELIMITS report), and a `struct redis_link` per worker: one hiredis
 * connection driven by the worker's own event_base through hiredis'
 * libevent adapter, so no call ever blocks a loop.  The host name is
 * resolved with the loop's evdns, the connection made without blocking,
 * and every answer is awaited at most redis_timeout: later, the link is
 * closed and made again with a backoff of 100 ms doubling to 1 s.
 *
 * Scripts run with EVALSHA; a NOSCRIPT answer (a restarted or flushed
 * Redis) sends the script itself with EVAL, which also caches it again.
 * Each link also beats for the instance every second: a sorted set of
 * instances scored by Redis' time, from which the live count comes.
 *
 * A reload that points the limiter elsewhere (another URL, password or key
 * prefix) makes a new fleet; the old one lives on, counted by references,
 * while links still use it.  A link follows the new fleet on its own loop:
 * it connects to it beside its current connection and switches once the
 * new one answers (or fails: the new configuration is then what is down),
 * so a switch costs no request a fallback when the new Redis is there.
 */
#ifndef SLUICE_REDIS_LINK_H
#define SLUICE_REDIS_LINK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "config/redis_url.h"
#include "limit/limiter.h"

struct config;
struct event_base;
struct evdns_base;
struct redisReply;

enum redis_state { REDIS_DOWN, REDIS_CONNECTING, REDIS_UP };

extern const int64_t redis_rtt_le_us[REDIS_RTT_BUCKETS];

struct redis_script {
	const char *body; /* Lua */
	char sha[41];     /* its SHA-1 in hex, for EVALSHA */
};

struct redis_fleet;
struct redis_link;

/*
 * Called about once a second for the whole fleet, on one worker's link (the
 * first to beat in that second), to refresh what this instance keeps in
 * Redis besides its heartbeat (fleet_max_client_conn's counts).
 */
typedef void (*redis_beat_fn)(void *arg, struct redis_fleet *f, struct redis_link *link);

struct redis_fleet {
	uint64_t id;                 /* made later = larger: a lease follows only newer fleets */
	_Atomic int refs;            /* the limiter while current, and each connection to it */
	struct redis_url url;        /* parsed redis_url, password from redis_password if set */
	char prefix[128];            /* redis_key_prefix */
	char instance[96];           /* this process in the instance set: host:pid:random */
	_Atomic int64_t timeout_us;  /* redis_timeout: a reload changes it in place */
	_Atomic int failure_mode;    /* enum redis_failure_mode, likewise */
	const struct logger *log;    /* shared */
	struct redis_stats *stats;   /* the limiter's: counters outlive a fleet */
	struct redis_script take;    /* the bucket script (redis_limiter.c) */
	struct redis_script beat;    /* the heartbeat script */
	struct redis_script clients; /* fleet_max_client_conn's script (redis_limiter.c) */
	redis_beat_fn beat_hook;     /* see above; NULL = none */
	void *beat_arg;
	_Atomic int64_t hooked_us; /* when beat_hook last ran */
	int nlinks;                /* one per worker */
	_Atomic int links_up;      /* of those, connected and answering */
	_Atomic int live;          /* instances that beat within the last 3 s (>= 1) */
};

/*
 * A fleet for `cfg` with one reference; `instance` names this process (NULL:
 * a new name); the scripts are the limiter's Lua.  NULL and `msg` on a bad
 * URL or no memory.
 */
struct redis_fleet *redis_fleet_new(const struct config *cfg, const struct logger *log,
                                    struct redis_stats *stats, const char *instance,
                                    const char *take_script, const char *clients_script, int nlinks,
                                    char *msg, size_t len);
/* Does `cfg` name the same store (URL, password, prefix) as `f`? */
bool redis_fleet_same_store(const struct redis_fleet *f, const struct config *cfg);
struct redis_fleet *redis_fleet_ref(struct redis_fleet *f);
/* Frees with the last reference; any thread. */
void redis_fleet_unref(struct redis_fleet *f);
/* "up" (every link), "down" (none), "partial" (some), for SHOW RATELIMITS. */
const char *redis_fleet_state(struct redis_fleet *f);
/* Logs at warn unless a line was written less than a second ago (then at debug). */
void redis_fleet_log(struct redis_fleet *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The answer to a script, on the link's loop: `reply` is Redis' (an error
 * answer included), or NULL when the link failed or timed out first; `f`
 * is the fleet it was sent to.
 */
typedef void (*redis_reply_fn)(void *arg, struct redis_fleet *f, const struct redisReply *reply);

/* A link on `base`; it starts connecting when the loop runs. */
struct redis_link *redis_link_new(struct redis_fleet *f, struct event_base *base,
                                  struct evdns_base *dns);
/* Fails what is pending (their callbacks see NULL) and frees; on the link's thread or after it. */
void redis_link_free(struct redis_link *l);
/* Reload: move to `f` (make-before-break, see above); -1 when out of memory. */
int redis_link_follow(struct redis_link *l, struct redis_fleet *f);
/* The fleet the link uses now. */
struct redis_fleet *redis_link_fleet(const struct redis_link *l);
/*
 * Has the link's connection finished its first connect (answered or
 * failed)?  Until then the local buckets decide: a reload from limiter =
 * local, or a start, does not put requests in the failure mode for the
 * moment a connect takes.
 */
bool redis_link_settled(const struct redis_link *l);
bool redis_link_is_up(const struct redis_link *l);
/*
 * EVALSHA `s` with one key and `nargs` arguments.  Returns 0 when sent (fn
 * will be called exactly once), -1 when the link is not up (fn is not called).
 */
int redis_link_eval(struct redis_link *l, const struct redis_script *s, const char *key,
                    const char *const *args, int nargs, redis_reply_fn fn, void *arg);

#endif
