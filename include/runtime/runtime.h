/*
 * The runtime: the control event loop (signals, listeners, reload, drain),
 * the current configuration snapshot and the worker threads.  Workers never
 * touch runtime state except through the atomic counters, the quota registry
 * (cold path, mutex) and runtime_post (the control loop's inbox).
 */
#ifndef SLUICE_RUNTIME_H
#define SLUICE_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "base/inbox.h"
#include "limit/ip_limit.h"
#include "limit/limiter.h"
#include "base/log.h"
#include "net/tls.h"
#include "base/types.h"

/* A refcounted, immutable configuration snapshot shared by all threads. */
struct snapshot {
	struct config *cfg;      /* never modified once published */
	struct tls_contexts tls; /* built from cfg: certificates are re-read on reload */
	_Atomic int refs;        /* one per holder (runtime, each worker) */
};

/* Takes cfg (freed on failure too); NULL with `err` when the TLS files do not load. */
struct snapshot *snapshot_new(struct config *cfg, char *err, size_t len);
struct snapshot *snapshot_ref(struct snapshot *snap);
void snapshot_unref(struct snapshot *snap);

/* A shared cap (server connections per db, per user, per pool key) across workers. */
struct quota {
	char *key;          /* "db:NAME", "user:NAME" or "pool:DB/USER" */
	_Atomic int used;   /* server connections counted against it */
	struct quota *next; /* registry chain */
};

struct listener;
struct metrics_http;

struct runtime {
	struct event_base *base;  /* control loop */
	struct logger log;        /* shared by all threads */
	const char *config_path;  /* NULL for file-less starts */
	const char *upstream_url; /* from --upstream, or NULL */
	char *const *envp;        /* environment for SLUICE_* overrides */
	struct snapshot *snap;    /* current config; swapped on reload */
	struct worker **workers;  /* one per configured worker */
	int nworkers;
	bool workers_stopped;        /* every worker thread joined: post nothing to an inbox */
	int next_worker;             /* round-robin target for accepted sockets */
	struct listener **listeners; /* TCP and Unix listeners */
	int nlisteners;
	struct inbox inbox; /* messages from workers to the control loop */
	struct event *sig_hup, *sig_term, *sig_int, *sig_pipe;
	struct event *shutdown_timer;    /* shutdown_timeout after SIGTERM */
	struct event *drain_delay_timer; /* shutdown_delay: unready but accepting until it fires */
	struct metrics_http *metrics;    /* HTTP endpoint; NULL when metrics_listen is off */
	_Atomic uint64_t next_conn_id;   /* ids for clients and servers, unique process-wide */
	_Atomic int nclients;            /* for max_client_conn */
	pthread_mutex_t quota_lock;      /* guards the quota registry list only */
	struct quota *quotas;            /* registry, entries live until exit */
	struct tenant_state *tenants;    /* registry (same lock), entries live until exit */
	struct limiter limiter;          /* token buckets behind tenant rate limits */
	struct ip_limiter ip_logins;     /* connect_rate_per_ip buckets (control loop only) */
	bool draining;                   /* SIGTERM received */
	int workers_drained;             /* workers that reported zero clients */
	int exit_code;
};

int runtime_init(struct runtime *rt, const char *config_path, const char *upstream_url,
                 char *const *envp, struct config *cfg);
/* Runs the control loop until shutdown; returns the process exit code. */
int runtime_run(struct runtime *rt);
void runtime_fini(struct runtime *rt);

/* Find or create a quota (cold path: pool creation). */
struct quota *runtime_quota(struct runtime *rt, const char *kind, const char *name);
/* Find or create a tenant's shared state (cold path: pool creation). */
struct tenant_state *runtime_tenant(struct runtime *rt, const char *name);
/* Take one unit if `used < limit` (limit <= 0 means unlimited). */
bool quota_take(struct quota *q, int limit);
void quota_give(struct quota *q);

/* Called by a worker (any thread) when it has no clients left while draining. */
void runtime_worker_drained(struct runtime *rt, struct worker *w);

/*
 * Control-loop actions (call them on the control loop, e.g. through
 * inbox_post(&rt->inbox, ...)): graceful drain as on SIGTERM, and exit now as
 * on SIGINT.
 */
void runtime_begin_drain(struct runtime *rt);
void runtime_stop_now(struct runtime *rt);

/* Reload the config file now (SIGHUP); returns 0 on success. */
int runtime_reload(struct runtime *rt);
/*
 * Make `cfg` (validated, owned by the callee from now on) the current
 * snapshot and hand it to every worker, as a reload does; options of reload
 * class restart keep their running values.  Control loop only.
 */
int runtime_publish(struct runtime *rt, struct config *cfg);

#endif
