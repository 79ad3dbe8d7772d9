/*
 * The runtime; see runtime.h.  Signals are libevent signal events on the
 * control loop, so handlers run as ordinary callbacks, never in signal
 * context.
 */
#include "runtime/runtime.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/listener.h"
#include "observe/metrics_http.h"
#include "runtime/sdnotify.h"
#include "pool/worker.h"

struct snapshot *snapshot_new(struct config *cfg, char *err, size_t len)
{
	struct snapshot *snap = malloc(sizeof(*snap));

	if (snap == NULL) {
		snprintf(err, len, "out of memory");
		config_free(cfg);
		return NULL;
	}
	if (tls_contexts_build(cfg, &snap->tls, err, len) < 0) {
		config_free(cfg);
		free(snap);
		return NULL;
	}
	snap->cfg = cfg;
	atomic_init(&snap->refs, 1);
	return snap;
}

struct snapshot *snapshot_ref(struct snapshot *snap)
{
	atomic_fetch_add(&snap->refs, 1);
	return snap;
}

void snapshot_unref(struct snapshot *snap)
{
	if (atomic_fetch_sub(&snap->refs, 1) == 1) {
		tls_contexts_free(&snap->tls);
		config_free(snap->cfg);
		free(snap);
	}
}

struct quota *runtime_quota(struct runtime *rt, const char *kind, const char *name)
{
	char key[512];
	struct quota *q;

	snprintf(key, sizeof(key), "%s:%s", kind, name);
	pthread_mutex_lock(&rt->quota_lock);
	for (q = rt->quotas; q != NULL; q = q->next)
		if (strcmp(q->key, key) == 0)
			break;
	if (q == NULL) {
		q = calloc(1, sizeof(*q));
		if (q != NULL && (q->key = strdup(key)) != NULL) {
			atomic_init(&q->used, 0);
			q->next = rt->quotas;
			rt->quotas = q;
		} else if (q != NULL) {
			free(q);
			q = NULL;
		}
	}
	pthread_mutex_unlock(&rt->quota_lock);
	/* Out of memory at pool creation: abort rather than run without caps. */
	if (q == NULL)
		abort();
	return q;
}

struct tenant_state *runtime_tenant(struct runtime *rt, const char *name)
{
	struct tenant_state *t;

	pthread_mutex_lock(&rt->quota_lock);
	for (t = rt->tenants; t != NULL; t = t->next)
		if (strcmp(t->name, name) == 0)
			break;
	if (t == NULL && (t = calloc(1, sizeof(*t))) != NULL) {
		if ((t->name = strdup(name)) == NULL) {
			free(t);
			t = NULL;
		} else {
			pthread_mutex_init(&t->lock, NULL);
			t->next = rt->tenants;
			rt->tenants = t;
		}
	}
	pthread_mutex_unlock(&rt->quota_lock);
	if (t == NULL)
		abort(); /* as for quotas: never run a tenant without its limits */
	return t;
}

bool quota_take(struct quota *q, int limit)
{
	int used = atomic_load(&q->used);

	do {
		if (limit > 0 && used >= limit)
			return false;
	} while (!atomic_compare_exchange_weak(&q->used, &used, used + 1));
	return true;
}

void quota_give(struct quota *q)
{
	atomic_fetch_sub(&q->used, 1);
}

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

int runtime_publish(struct runtime *rt, struct config *cfg)
{
	struct snapshot *snap, *old = rt->snap;
	char err[512];

	keep_restart_options(rt, old->cfg, cfg);
	snap = snapshot_new(cfg, err, sizeof(err));
	if (snap == NULL) {
		log_error(&rt->log, "keeping the old configuration: %s", err);
		return -1;
	}
	log_configure(&rt->log, cfg->log_level, cfg->log_format);
	rt->snap = snap;
	for (int i = 0; i < rt->nworkers; i++)
		worker_post_config(rt->workers[i], snap);
	snapshot_unref(old);
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

	if (++rt->workers_drained == rt->nworkers) {
		log_info(&rt->log, "all clients gone, exiting");
		event_base_loopbreak(rt->base);
	}
}

void runtime_worker_drained(struct runtime *rt, struct worker *w)
{
	inbox_post(&rt->inbox, drained_fn, NULL);
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
	rt->shutdown_timer = evtimer_new(rt->base, shutdown_timeout_cb, rt);
	if (rt->shutdown_timer != NULL && wait > 0)
		evtimer_add(rt->shutdown_timer, &tv);
	for (int i = 0; i < rt->nworkers; i++)
		worker_post_drain(rt->workers[i]);
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

int runtime_init(struct runtime *rt, const char *config_path, const char *upstream_url,
                 char *const *envp, struct config *cfg)
{
	char err[512];

	memset(rt, 0, sizeof(*rt));
	log_init(&rt->log, cfg->log_level, cfg->log_format, 2);
	rt->config_path = config_path;
	rt->upstream_url = upstream_url;
	rt->envp = envp;
	atomic_init(&rt->next_conn_id, 1);
	atomic_init(&rt->nclients, 0);
	pthread_mutex_init(&rt->quota_lock, NULL);
	rt->limiter.ops = &limiter_local_ops;
	rt->base = event_base_new();
	rt->snap = snapshot_new(cfg, err, sizeof(err));
	if (rt->snap == NULL) {
		log_error(&rt->log, "%s", err);
		return -1;
	}
	if (rt->base == NULL || inbox_init(&rt->inbox, rt->base, rt) < 0)
		return -1;
	rt->nworkers = cfg->workers;
	rt->workers = calloc((size_t)rt->nworkers, sizeof(*rt->workers));
	if (rt->workers == NULL)
		return -1;
	for (int i = 0; i < rt->nworkers; i++) {
		rt->workers[i] = worker_new(rt, i, rt->snap);
		if (rt->workers[i] == NULL || worker_start(rt->workers[i]) < 0) {
			log_error(&rt->log, "cannot start worker %d", i);
			return -1;
		}
	}
	if (listener_open_all(rt) < 0 || metrics_http_start(rt) < 0)
		return -1;
	rt->sig_hup = add_signal(rt, SIGHUP);
	rt->sig_term = add_signal(rt, SIGTERM);
	rt->sig_int = add_signal(rt, SIGINT);
	log_info(&rt->log, "sluice started: %d worker%s, config %s", rt->nworkers,
	         rt->nworkers == 1 ? "" : "s", cfg->source);
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
	struct quota *q = rt->quotas;

	if (rt->workers != NULL) {
		/* All stopped before any is freed: a running worker may post to another's inbox. */
		for (int i = 0; i < rt->nworkers; i++)
			if (rt->workers[i] != NULL && rt->workers[i]->started)
				worker_stop(rt->workers[i]);
		rt->workers_stopped = true;
		for (int i = 0; i < rt->nworkers; i++)
			worker_free(rt->workers[i]);
		free(rt->workers);
	}
	metrics_http_free(rt->metrics);
	rt->metrics = NULL;
	listener_close_all(rt);
	free_event(rt->sig_hup);
	free_event(rt->sig_term);
	free_event(rt->sig_int);
	free_event(rt->shutdown_timer);
	free_event(rt->drain_delay_timer);
	while (q != NULL) {
		struct quota *next = q->next;

		free(q->key);
		free(q);
		q = next;
	}
	ip_limiter_fini(&rt->ip_logins);
	while (rt->tenants != NULL) {
		struct tenant_state *next = rt->tenants->next;

		pthread_mutex_destroy(&rt->tenants->lock);
		free(rt->tenants->name);
		free(rt->tenants);
		rt->tenants = next;
	}
	if (rt->inbox.wake != NULL)
		inbox_fini(&rt->inbox);
	if (rt->snap != NULL)
		snapshot_unref(rt->snap);
	if (rt->base != NULL)
		event_base_free(rt->base);
	pthread_mutex_destroy(&rt->quota_lock);
}
