/*
 * The runtime: the control event loop (signals, listeners, reload, drain),
 * the current configuration snapshot and the worker threads.  Workers see
 * only `shared` (struct worker_shared: counters, quotas, limiter, the worker
 * list) and reach the runtime back only through the hooks it sets there.
 */
#ifndef SLUICE_RUNTIME_H
#define SLUICE_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/inbox.h"
#include "base/log.h"
#include "config/config.h"
#include "limit/ip_limit.h"
#include "net/snapshot.h"
#include "pool/worker.h"
#include "runtime/inherit.h"

struct listener;
struct metrics_http;
struct takeover;

struct runtime {
	struct event_base *base;     /* control loop */
	struct logger log;           /* shared by all threads */
	const char *config_path;     /* NULL for file-less starts */
	const char *upstream_url;    /* from --upstream, or NULL */
	char *const *envp;           /* environment for SLUICE_* overrides */
	struct snapshot *snap;       /* current config; swapped on reload */
	struct tls_ca_cache tls_cas; /* CA stores the snapshots share (tls.h) */
	struct worker_shared shared; /* workers, counters, quotas, limiter: what workers see */
	struct worker_hooks hooks;   /* shared.hooks: drain report, stats log, console */
	int next_worker;             /* round-robin target for accepted sockets */
	struct listener **listeners; /* TCP and Unix listeners */
	int nlisteners;
	struct inbox inbox; /* messages from workers to the control loop */
	struct event *sig_hup, *sig_term, *sig_int, *sig_pipe;
	struct event *shutdown_timer;    /* shutdown_timeout after SIGTERM */
	struct event *drain_delay_timer; /* shutdown_delay: unready but accepting until it fires */
	struct metrics_http *metrics;    /* HTTP endpoint; NULL when metrics_listen is off */
	struct ip_limiter ip_logins;     /* connect_rate_per_ip buckets (control loop only) */
	struct inherited inherited;      /* sockets from systemd or a takeover, until adopted */
	struct takeover *takeover;       /* takeover_socket; NULL when off or handed over */
	bool handed_over;                /* a takeover's new process accepts now */
	bool draining;                   /* SIGTERM received */
	int workers_drained;             /* workers that reported zero clients */
	int exit_code;
};

/*
 * `console` serves clients of the console database (main.c passes the admin
 * console's).  With `takeover`, the listening sockets come from the process
 * running at takeover_socket, which then lets go of them (takeover.h).
 */
int runtime_init(struct runtime *rt, const char *config_path, const char *upstream_url,
                 char *const *envp, struct config *cfg, const struct client_handler *console,
                 bool takeover);
/* Runs the control loop until shutdown; returns the process exit code. */
int runtime_run(struct runtime *rt);
void runtime_fini(struct runtime *rt);

/* The runtime that owns a worker (workers know only their worker_shared). */
struct runtime *runtime_of(const struct worker *w);

/*
 * Control-loop actions (call them on the control loop, e.g. through
 * inbox_post(&rt->inbox, ...)): graceful drain as on SIGTERM, and exit now as
 * on SIGINT.
 */
void runtime_begin_drain(struct runtime *rt);
/*
 * A takeover's new process (`pid`) accepts on our sockets now: stop
 * accepting, keep serving our clients until they leave on their own, then
 * exit; shutdown_timeout bounds the wait.  SIGTERM still drains as usual.
 */
void runtime_hand_over(struct runtime *rt, pid_t pid);
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
