/*
 * A circuit breaker per upstream host (host and port), shared by every
 * worker, pool and tenant that connects to it, and what sluice knows of the
 * host's role.  Closed: connections go.  After `failures` consecutive
 * connect or login failures it opens: nothing goes until a backoff (from
 * `backoff` doubling per failed probe up to `backoff_max`, with jitter) has
 * passed; then it is half-open and exactly one connection, the probe, may
 * go.  The probe's success closes the breaker, its failure opens it again
 * for a longer wait.
 *
 * Breakers are found on the cold path (pool creation, reload) in the
 * registry and counted like quotas; asking one whether a connection may go
 * takes its mutex, which happens once per new server connection, never per
 * query.  The role (primary or standby, and default_transaction_read_only)
 * is learnt from each login and from ParameterStatus, so every pool of every
 * worker sees a promotion as soon as one connection has.
 */
#ifndef SLUICE_BREAKER_H
#define SLUICE_BREAKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

enum host_role { HOST_ROLE_UNKNOWN, HOST_ROLE_PRIMARY, HOST_ROLE_STANDBY };

/* What a caller that wants to open a connection to the host may do. */
enum breaker_verdict {
	BREAKER_GO,    /* closed: connect */
	BREAKER_PROBE, /* half-open and the probe is this caller's: connect, then report */
	BREAKER_WAIT,  /* open, or another caller's probe is out: do not connect */
};

/* The [sluice] options that drive every breaker. */
struct breaker_policy {
	int failures;       /* consecutive failures that open it (server_breaker_failures) */
	int64_t backoff_us; /* first wait (server_breaker_backoff) */
	int64_t max_us;     /* longest wait (server_breaker_backoff_max) */
};

struct breaker {
	char *host;               /* as configured: name, IP or Unix socket directory */
	int port;                 /* its port */
	pthread_mutex_t lock;     /* guards everything below but `servers` */
	enum breaker_state state; /* see above */
	int failures;             /* consecutive connect or login failures */
	int64_t backoff_us;       /* the wait the breaker opened (or last opened) for */
	int64_t next_try_us;      /* open: when it turns half-open */
	bool probe_out;           /* half-open: the one probe connection is in flight */
	uint64_t transitions;     /* state changes since start, for /metrics */
	uint64_t jitter;          /* xorshift state for the backoff's jitter */
	enum host_role role;      /* learnt at the last login or ParameterStatus */
	bool read_only;           /* default_transaction_read_only was on */
	int64_t role_checked_us;  /* when role was learnt; 0 = never */
	bool recheck_out;         /* a connection asking a role that did not fit again is out */
	int64_t last_latency_us;  /* connect + login time of the last successful connection */
	int64_t last_check_us;    /* when the last connection attempt ended */
	char last_error[200];     /* why the last attempt failed ("" after a success) */
	_Atomic int servers;      /* live server connections to the host, every worker */
	int refs;                 /* holders; freed at 0.  Under the registry's lock */
	struct breaker *next;     /* registry chain */
};

/* A copy of a breaker's state for reports. */
struct breaker_view {
	enum breaker_state state;
	int failures;
	int64_t next_try_us; /* open: when the next probe may go; 0 otherwise */
	uint64_t transitions;
	enum host_role role;
	bool read_only;
	int64_t role_checked_us;
	int64_t last_latency_us;
	int64_t last_check_us;
	int servers;
	char last_error[200];
};

struct breaker_registry {
	pthread_mutex_t lock;  /* guards the chain and the refs */
	struct breaker *chain; /* every breaker with a holder */
};

void breaker_registry_init(struct breaker_registry *reg);
void breaker_registry_fini(struct breaker_registry *reg);
/* Find or make the breaker of host:port and take a reference; aborts when out of memory. */
struct breaker *breaker_find(struct breaker_registry *reg, const char *host, int port);
/* Another reference on a breaker the caller holds one on. */
void breaker_hold(struct breaker_registry *reg, struct breaker *b);
/* Give the reference back; the last one frees the breaker. */
void breaker_put(struct breaker_registry *reg, struct breaker *b);
/* The breaker of host:port if someone holds it, for reports; its view filled. */
bool breaker_peek(struct breaker_registry *reg, const char *host, int port, int64_t now_us,
                  struct breaker_view *view);

/*
 * May a connection go now?  On BREAKER_WAIT *retry_us (when not NULL) is
 * when to ask again: the end of the backoff, or 0 while a probe is out.
 */
enum breaker_verdict breaker_ask(struct breaker *b, int64_t now_us, int64_t *retry_us);
/* When the breaker would let a connection go, without claiming the probe (0 = now). */
int64_t breaker_next_try(struct breaker *b, int64_t now_us);
/* A connection logged in after `latency_us`: the breaker closes. */
void breaker_succeeded(struct breaker *b, int64_t now_us, int64_t latency_us);
/* A connection failed to connect or log in; `policy` decides whether the breaker opens. */
void breaker_failed(struct breaker *b, const struct breaker_policy *policy, int64_t now_us,
                    const char *why);
/* A probe ended neither way (closed for another reason): the next caller may probe. */
void breaker_probe_abandoned(struct breaker *b);
/* The host said what it is now. */
void breaker_set_role(struct breaker *b, enum host_role role, bool read_only, int64_t now_us);
/*
 * Claims the one connection that asks a host whose role did not fit again:
 * false while another is out.  breaker_recheck_done gives the claim back
 * when that connection ends, its role learnt or not.
 */
bool breaker_claim_recheck(struct breaker *b);
void breaker_recheck_done(struct breaker *b);
/* Its role and when that was learnt (0 = never). */
enum host_role breaker_role(struct breaker *b, bool *read_only, int64_t *checked_us);
/* A copy for reports; an open breaker whose wait is over shows half-open. */
void breaker_view(struct breaker *b, int64_t now_us, struct breaker_view *view);

const char *breaker_state_name(enum breaker_state state);
const char *host_role_name(enum host_role role);

#endif
