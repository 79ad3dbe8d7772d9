/*
 * The runtime; see runtime.h.  Signals are libevent signal events on the
 * control loop, so handlers run as ordinary callbacks, never in signal
 * context.
 */
#include "runtime/runtime.h"

#include <event2/event.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/syslogger.h"
#include "config/console_auth.h"
#include "config/redis_url.h"
#include "limit/breaker.h"
#include "limit/redis_limiter.h"
#include "limit/redis_link.h"
#include "runtime/listener.h"
#include "runtime/metrics_http.h"
#include "observe/statslog.h"
#include "runtime/process.h"
#include "runtime/sdnotify.h"
#include "runtime/takeover.h"
#include "pool/prepared.h"
#include "pool/worker.h"

/* Keep the old value of every option that needs a restart, and say so. */
static void keep_restart_options(struct runtime *rt, const struct config *old, struct config *cfg)
{
	size_t n;
	const struct config_option *opts = config_options(&n);

	for (size_t i = 0; i < n; i++) {
		char was[512], now[512];
		struct config_error err;

		if (opts[i].reload != RELOAD_RESTART)
			continue;
		config_format_value(old, &opts[i], was, sizeof(was));
		config_format_value(cfg, &opts[i], now, sizeof(now));
		if (strcmp(was, now) == 0)
			continue;
		log_warn(&rt->log, "%s changed from %s to %s: takes effect after a restart",
		         opts[i].name, was, now);
		config_set(cfg, opts[i].name, was, &err);
	}
}

/* Said at every start and reload, so a trust left over from testing is not missed. */
static void warn_console_trust(struct runtime *rt, const struct config *cfg)
{
	int line = console_auth_trust_line(cfg);

	if (line == 0)
		log_warn(&rt->log,
		         "auth_type = trust: anyone who can connect logs in without a password, to "
		         "the admin console (as any of admin_users) and to every database; set "
		         "auth_type = scram-sha-256 and give the users passwords in auth_file");
	else if (line > 0)
		log_warn(&rt->log,
		         "auth_hba_file %s line %d: trust lets clients into the admin console "
		         "without a password; use scram-sha-256 (or cert) for the console "
		         "database there",
		         cfg->auth_hba_file, line);
}

/* logfile and syslog, then the configuration's warnings, so they reach those too. */
static int apply_log_outputs(struct runtime *rt, const struct config *cfg)
{
	char err[512];
	int rc = log_set_outputs(&rt->log, cfg->logfile, cfg->syslog, cfg->syslog_ident,
	                         syslogger_facility(cfg->syslog_facility), err, sizeof(err));

	if (rc < 0)
		log_error(&rt->log, "%s", err);
	for (size_t i = 0; i < cfg->nnotes; i++)
		LOG_AT(&rt->log, cfg->notes[i].level, NULL, "%s", cfg->notes[i].text);
	return rc;
}

/*
 * Once listening: the pidfile, then the switch to `user`, which may no
 * longer open a port below 1024 or write where root can.
 */
static int become_daemon(struct runtime *rt, const struct config *cfg, bool takeover)
{
	char err[512];

	if (cfg->pidfile[0] != '\0' &&
	    process_pidfile_write(cfg->pidfile, cfg->user, takeover, err, sizeof(err)) < 0) {
		log_error(&rt->log, "%s", err);
		return -1;
	}
	if (cfg->user[0] != '\0' && process_drop_privileges(cfg->user, err, sizeof(err)) < 0) {
		log_error(&rt->log, "%s", err);
		return -1;
	}
	return 0;
}

/*
 * limiter, redis_url and the other Redis options, at start and on reload.
 * A new store is made here; each worker moves its connection to it on its
 * own loop when the new snapshot reaches it (worker_post_config).
 */
static int apply_limiter(struct runtime *rt, const struct config *cfg, bool start)
{
	char err[512], url[512];
	int rc = limiter_configure(&rt->shared.limiter, cfg, &rt->log, config_workers(cfg), err,
	                           sizeof(err));

	if (rc < 0) {
		log_error(&rt->log, "limiter = redis: %s%s", err,
		          start ? "" : "; the limiter stays as it was");
		return -1;
	}
	if (rc == 0 && !start)
		return 0;
	if (cfg->limiter != LIMITER_REDIS) {
		if (!start)
			log_info(&rt->log,
			         "limiter = local: each worker drops its Redis connection");
		return 0;
	}
	redis_url_mask(cfg->redis_url, url, sizeof(url));
	log_info(&rt->log, "limiter = redis: %s, key prefix \"%s\", instance %s%s", url,
	         cfg->redis_key_prefix, rt->shared.limiter.instance,
	         start ? "" : "; workers move to it as it answers");
	return 0;
}

int runtime_publish(struct runtime *rt, struct config *cfg)
{
	struct snapshot *snap, *old = rt->snap;
	char err[512];

	keep_restart_options(rt, old->cfg, cfg);
	snap = snapshot_new(cfg, &rt->tls_cas, err, sizeof(err));
	if (snap == NULL) {
		log_error(&rt->log, "keeping the old configuration: %s", err);
		return -1;
	}
	log_configure(&rt->log, cfg->log_level, cfg->log_format);
	apply_log_outputs(rt, cfg); /* a logfile that cannot be reopened keeps the old one */
	rt->snap = snap;
	apply_limiter(rt, snap->cfg, false); /* before the workers hear of the snapshot */
	for (int i = 0; i < rt->shared.nworkers; i++)
		worker_post_config(rt->shared.workers[i], snap);
	snapshot_unref(old);
	warn_console_trust(rt, rt->snap->cfg);
	return 0;
}

int runtime_reload(struct runtime *rt)
{
	struct config_error err;
	struct config *cfg = config_load(rt->config_path, rt->upstream_url, rt->envp, &err);

	if (cfg == NULL) {
		log_error(&rt->log, "reload failed, keeping the old configuration: %s",
		          err.message);
		return -1;
	}
	if (runtime_publish(rt, cfg) < 0)
		return -1; /* logged */
	log_info(&rt->log, "configuration reloaded from %s", rt->snap->cfg->source);
	return 0;
}

static void drained_fn(void *owner, void *arg)
{
	struct runtime *rt = owner;

	if (++rt->workers_drained == rt->shared.nworkers) {
		log_info(&rt->log, "all clients gone, exiting");
		event_base_loopbreak(rt->base);
	}
}

/* worker_hooks.drained: runs on the worker's thread. */
static void worker_drained(struct worker *w)
{
	struct runtime *rt = runtime_of(w);

	inbox_post(&rt->inbox, drained_fn, NULL);
}

struct runtime *runtime_of(const struct worker *w)
{
	return (struct runtime *)((char *)w->shared - offsetof(struct runtime, shared));
}

static void shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct runtime *rt = arg;

	log_warn(&rt->log, "shutdown_timeout expired with clients still connected, exiting");
	event_base_loopbreak(rt->base);
}

/* Second step of a drain: stop accepting and let transactions finish. */
static void drain_now(struct runtime *rt)
{
	int64_t wait = rt->snap->cfg->shutdown_timeout_us;
	struct timeval tv = {.tv_sec = wait / 1000000, .tv_usec = wait % 1000000};

	log_info(&rt->log, "draining: no new connections; waiting for transactions to finish");
	listener_close_all(rt);
	takeover_free(rt->takeover, true);
	rt->takeover = NULL;
	/* After a takeover the timer exists already: it is re-armed for this drain. */
	if (rt->shutdown_timer == NULL)
		rt->shutdown_timer = evtimer_new(rt->base, shutdown_timeout_cb, rt);
	if (rt->shutdown_timer != NULL && wait > 0)
		evtimer_add(rt->shutdown_timer, &tv);
	for (int i = 0; i < rt->shared.nworkers; i++)
		worker_post_drain(rt->shared.workers[i]);
}

static void drain_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	drain_now(arg);
}

/*
 * First step: /readyz fails at once (it reads rt->draining).  With
 * shutdown_delay the listeners keep accepting, and clients are served as
 * usual, until the delay ends, so load balancers and orchestrators that
 * poll readiness stop routing here before connections are refused.
 */
void runtime_begin_drain(struct runtime *rt)
{
	int64_t delay = rt->snap->cfg->shutdown_delay_us;
	struct timeval tv = {.tv_sec = delay / 1000000, .tv_usec = delay % 1000000};
	char text[32];

	if (rt->draining)
		return;
	rt->draining = true;
	sdnotify_send(rt->envp, "STOPPING=1");
	if (delay > 0) {
		rt->drain_delay_timer = evtimer_new(rt->base, drain_delay_cb, rt);
		if (rt->drain_delay_timer != NULL && evtimer_add(rt->drain_delay_timer, &tv) == 0) {
			config_format_duration(delay, text, sizeof(text));
			log_info(&rt->log, "draining: not ready, still accepting for %s", text);
			return;
		}
	}
	drain_now(rt);
}

void runtime_hand_over(struct runtime *rt, pid_t pid)
{
	int64_t wait = rt->snap->cfg->shutdown_timeout_us;
	struct timeval tv = {.tv_sec = wait / 1000000, .tv_usec = wait % 1000000};

	log_info(&rt->log,
	         "takeover: pid %d accepts on our sockets now; serving our %d clients until they "
	         "leave",
	         (int)pid, (int)atomic_load(&rt->shared.nclients));
	rt->handed_over = true;
	sdnotify_send(rt->envp, "STOPPING=1");
	listener_release_all(rt);
	metrics_http_release(rt->metrics);
	takeover_free(rt->takeover, false);
	rt->takeover = NULL;
	rt->shutdown_timer = evtimer_new(rt->base, shutdown_timeout_cb, rt);
	if (rt->shutdown_timer != NULL && wait > 0)
		evtimer_add(rt->shutdown_timer, &tv);
	for (int i = 0; i < rt->shared.nworkers; i++)
		worker_post_handover(rt->shared.workers[i]);
}

void runtime_stop_now(struct runtime *rt)
{
	sdnotify_send(rt->envp, "STOPPING=1");
	event_base_loopbreak(rt->base);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct runtime *rt = arg;

	switch (sig) {
	case SIGHUP:
		log_info(&rt->log, "SIGHUP: reloading configuration");
		sdnotify_reloading(rt->envp);
		runtime_reload(rt);
		sdnotify_send(rt->envp, "READY=1");
		break;
	case SIGTERM:
		runtime_begin_drain(rt);
		break;
	case SIGINT:
		log_info(&rt->log, "SIGINT: exiting now");
		runtime_stop_now(rt);
		break;
	default:
		break;
	}
}

static struct event *add_signal(struct runtime *rt, int sig)
{
	struct event *ev = evsignal_new(rt->base, sig, signal_cb, rt);

	if (ev != NULL)
		evsignal_add(ev, NULL);
	return ev;
}

/* Sockets from systemd, or from the process we take over; `*conn` confirms the latter. */
static int inherit_sockets(struct runtime *rt, bool takeover, int *conn)
{
	char err[256];

	*conn = -1;
	if (inherit_from_systemd(&rt->inherited, rt->envp, err, sizeof(err)) < 0) {
		log_error(&rt->log, "%s", err);
		return -1;
	}
	if (!takeover)
		return 0;
	if (rt->inherited.from_systemd) {
		log_error(&rt->log, "--takeover with socket activation: systemd holds the sockets");
		return -1;
	}
	*conn = takeover_fetch(rt);
	return *conn == -1 ? -1 : 0;
}

int runtime_init(struct runtime *rt, const char *config_path, const char *upstream_url,
                 char *const *envp, struct config *cfg, const struct client_handler *console,
                 bool takeover)
{
	char err[512];
	int conn;

	memset(rt, 0, sizeof(*rt));
	log_init(&rt->log, cfg->log_level, cfg->log_format, 2);
	if (apply_log_outputs(rt, cfg) < 0)
		return -1;
	rt->config_path = config_path;
	rt->upstream_url = upstream_url;
	rt->envp = envp;
	rt->hooks.drained = worker_drained;
	rt->hooks.stats_tick = statslog_tick;
	rt->hooks.console = console;
	rt->shared.log = &rt->log;
	rt->shared.hooks = &rt->hooks;
	atomic_init(&rt->shared.next_conn_id, 1);
	atomic_init(&rt->shared.nclients, 0);
	quota_registry_init(&rt->shared.quotas);
	breaker_registry_init(&rt->shared.breakers);
	if (prepared_shared_init(&rt->shared.prepared) < 0)
		return -1;
	limiter_init(&rt->shared.limiter, &rt->shared.quotas);
	if (apply_limiter(rt, cfg, true) < 0)
		return -1;
	if (login_delay_init(&rt->shared.failures) < 0)
		return -1;
	rt->base = event_base_new();
	rt->snap = snapshot_new(cfg, &rt->tls_cas, err, sizeof(err));
	if (rt->snap == NULL) {
		log_error(&rt->log, "%s", err);
		return -1;
	}
	if (rt->base == NULL || inbox_init(&rt->inbox, rt->base, rt) < 0)
		return -1;
	if (inherit_sockets(rt, takeover, &conn) < 0)
		return -1;
	rt->shared.nworkers = config_workers(cfg);
	rt->shared.workers = calloc((size_t)rt->shared.nworkers, sizeof(*rt->shared.workers));
	if (rt->shared.workers == NULL)
		return -1;
	/*
	 * Every worker exists before any runs: a running worker posts to the
	 * others' inboxes (a pool warming min_pool_size kicks them at its first
	 * failed login), and thread creation publishes the whole array to it.
	 */
	for (int i = 0; i < rt->shared.nworkers; i++) {
		rt->shared.workers[i] = worker_new(&rt->shared, i, rt->snap);
		if (rt->shared.workers[i] == NULL) {
			log_error(&rt->log, "cannot create worker %d", i);
			return -1;
		}
	}
	for (int i = 0; i < rt->shared.nworkers; i++)
		if (worker_start(rt->shared.workers[i]) < 0) {
			log_error(&rt->log, "cannot start worker %d", i);
			return -1;
		}
	if (listener_open_all(rt) < 0 || metrics_http_start(rt) < 0 || takeover_listen(rt) < 0 ||
	    become_daemon(rt, cfg, conn >= 0) < 0) {
		if (conn >= 0)
			close(conn);
		return -1;
	}
	inherit_close_rest(&rt->inherited, &rt->log);
	if (conn >= 0)
		takeover_confirm(rt, conn);
	rt->sig_hup = add_signal(rt, SIGHUP);
	rt->sig_term = add_signal(rt, SIGTERM);
	rt->sig_int = add_signal(rt, SIGINT);
	log_info(&rt->log, "sluice started: %d worker%s, config %s", rt->shared.nworkers,
	         rt->shared.nworkers == 1 ? "" : "s", cfg->source);
	warn_console_trust(rt, rt->snap->cfg);
	return 0;
}

int runtime_run(struct runtime *rt)
{
	sdnotify_send(rt->envp, "READY=1"); /* listeners are open: runtime_init did that */
	event_base_dispatch(rt->base);
	return rt->exit_code;
}

static void free_event(struct event *ev)
{
	if (ev != NULL)
		event_free(ev);
}

void runtime_fini(struct runtime *rt)
{
	if (rt->shared.workers != NULL) {
		/* All stopped before any is freed: a running worker may post to another's inbox. */
		for (int i = 0; i < rt->shared.nworkers; i++)
			if (rt->shared.workers[i] != NULL && rt->shared.workers[i]->started)
				worker_stop(rt->shared.workers[i]);
		rt->shared.workers_stopped = true;
		for (int i = 0; i < rt->shared.nworkers; i++)
			worker_free(rt->shared.workers[i]);
		free(rt->shared.workers);
	}
	metrics_http_free(rt->metrics);
	rt->metrics = NULL;
	listener_close_all(rt);
	takeover_free(rt->takeover, true);
	rt->takeover = NULL;
	inherit_close_rest(&rt->inherited, &rt->log);
	free_event(rt->sig_hup);
	free_event(rt->sig_term);
	free_event(rt->sig_int);
	free_event(rt->shutdown_timer);
	free_event(rt->drain_delay_timer);
	ip_limiter_fini(&rt->ip_logins);
	login_delay_fini(&rt->shared.failures);
	quota_registry_fini(&rt->shared.quotas);
	limiter_fini(&rt->shared.limiter); /* after the workers: their links hold its fleets */
	breaker_registry_fini(&rt->shared.breakers);
	prepared_shared_fini(&rt->shared.prepared); /* after the workers: their registries use it */
	if (rt->inbox.wake != NULL)
		inbox_fini(&rt->inbox);
	if (rt->snap != NULL) {
		process_pidfile_remove(rt->snap->cfg->pidfile);
		snapshot_unref(rt->snap);
	}
	tls_ca_cache_fini(&rt->tls_cas);
	if (rt->base != NULL)
		event_base_free(rt->base);
	log_fini(&rt->log);
}
