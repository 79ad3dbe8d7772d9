/*
 * Worker threads.  Each runs its own loop; other threads reach it only
 * through its inbox.  Closed clients and servers are freed by the loop's
 * reaper, after all I/O callbacks of the turn, so no object is freed while
 * one of its own callbacks is still on the stack.
 */
#include "pool/worker.h"

#include <event2/event.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/scram.h"
#include "limit/redis_limiter.h"
#include "limit/redis_link.h"
#include "net/snapshot.h"
#include "pool/auth_query.h"
#include "pool/client.h"
#include "pool/login.h"
#include "pool/pause.h"
#include "pool/pool.h"
#include "pool/qstats.h"
#include "pool/server.h"
#include "pool/slowlog.h"
#include "proto/sqlstate.h"

/* Draining, and nothing left: tell the runtime (once). */
static void worker_check_drained(struct worker *w)
{
	/* Closing clients still flushing a reply (a drained COMMIT's) hold the exit. */
	if ((w->draining || w->handed_over) && w->nclients == 0 &&
	    list_empty(&w->closing_clients) && !w->drain_reported) {
		w->drain_reported = true;
		w->shared->hooks->drained(w);
	}
}

static void reap(void *owner)
{
	struct worker *w = owner;
	struct list_node *pos, *tmp;

	/* First: a server owed to another worker may have been closed this turn. */
	pool_lend_deferred(w);
	list_for_each_safe(pos, tmp, &w->dead_servers)
	{
		struct server *s = list_entry(pos, struct server, node);

		list_del(&s->node);
		server_free(s);
	}
	list_for_each_safe(pos, tmp, &w->dead_clients)
	{
		struct client *c = list_entry(pos, struct client, node);

		list_del(&c->node);
		client_free(c);
	}
	/* Last: the servers and clients just freed may have pointed at these pools. */
	pool_reap(w);
	auth_query_reap(w);
	/* Every close and every last flush ends here: the moment a drain may be over. */
	worker_check_drained(w);
	if (w->stopping && list_empty(&w->closing_clients))
		loop_break(&w->loop);
}

/*
 * One tick per stats_period: every pool moves its SHOW STATS averages on,
 * then the stats log (a hook) writes the period's lines.  No timer runs
 * while stats_period is 0.
 */
static void stats_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	int64_t now = worker_now_us(w);
	struct timeval tv = {.tv_sec = w->stats_period_us / 1000000,
	                     .tv_usec = w->stats_period_us % 1000000};
	struct list_node *pos;

	for (pos = w->pools.next; pos != &w->pools; pos = pos->next)
		pool_stats_tick(list_entry(pos, struct pool, node), now);
	if (w->shared->hooks->stats_tick != NULL)
		w->shared->hooks->stats_tick(w, (double)(now - w->stats_tick_us) / 1e6);
	w->stats_tick_us = now;
	evtimer_add(w->stats_timer, &tv);
}

static void unused_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	pool_expire_unused(arg);
}

/* Follow the config's stats_period: (re)arm, or stop, the tick. */
static void stats_arm(struct worker *w)
{
	int64_t us = w->cfg->stats_period_us;
	struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};

	if (us == w->stats_period_us)
		return;
	w->stats_period_us = us;
	if (us > 0)
		evtimer_add(w->stats_timer, &tv);
	else
		evtimer_del(w->stats_timer);
}

struct worker *worker_new(struct worker_shared *shared, int id, struct snapshot *snap)
{
	struct worker *w = calloc(1, sizeof(*w));
	uint8_t salt[16];

	if (w == NULL)
		return NULL;
	w->id = id;
	w->shared = shared;
	w->snap = snapshot_ref(snap);
	w->cfg = snap->cfg;
	w->log = shared->log;
	list_init(&w->clients);
	list_init(&w->pools);
	list_init(&w->closing_clients);
	list_init(&w->dead_clients);
	list_init(&w->dead_servers);
	list_init(&w->unused_pools);
	list_init(&w->dead_pools);
	ring_init(&w->lends, sizeof(struct server *));
	prepared_registry_init(&w->prepared, &shared->prepared);
	if (auth_query_init(w) < 0)
		goto fail;
	if (loop_init(&w->loop, reap, w) < 0)
		goto fail;
	if (inbox_init(&w->inbox, w->loop.base, w) < 0)
		goto fail;
	if ((w->stats_timer = evtimer_new(w->loop.base, stats_tick_cb, w)) == NULL)
		goto fail;
	if ((w->unused_timer = evtimer_new(w->loop.base, unused_timer_cb, w)) == NULL)
		goto fail;
	w->stats_tick_us = worker_now_us(w);
	stats_arm(w);
	if (cancel_map_init(&w->cancels) < 0)
		goto fail;
	/* limiter = redis: this worker's own connection, on its own loop. */
	if (limiter_follow(&shared->limiter, &w->redis, w->loop.base, w->loop.dns) < 0)
		goto fail;
	/* Unknown users go through a full SCRAM exchange against this, then fail. */
	RAND_bytes(salt, sizeof(salt));
	if (scram_secret_from_password("", salt, sizeof(salt), SCRAM_ITERATIONS, &w->dummy_secret) <
	    0)
		goto fail;
	return w;
fail:
	worker_free(w);
	return NULL;
}

/*
 * min_pool_size before any client: a [databases] entry with a forced user
 * knows its server login, so its pool is made and filled at the worker's
 * start and after each reload, not only after a first client.  A pool made
 * while PAUSE, SUSPEND or KILL holds its database is held too, as a
 * client's login holds the pool it makes (login.c): PAUSE promises that no
 * server is opened until RESUME.
 */
static void warm_pools(struct worker *w)
{
	const struct config *cfg = w->cfg;
	bool over_cap;

	for (size_t i = 0; i < cfg->ndbs; i++) {
		const struct db_def *db = &cfg->dbs[i];
		struct pool *p;

		if (db->user == NULL || strcmp(db->name, "*") == 0 ||
		    config_min_pool_size(cfg, db) == 0)
			continue;
		p = pool_get(w, db->name, db->user, db->user, db, &over_cap);
		if (p == NULL)
			continue;
		pause_apply(p);
		pool_maintain(p);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	warm_pools(w);
	loop_run(&w->loop);
	return NULL;
}

int worker_start(struct worker *w)
{
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
		return -1;
	w->started = true;
	return 0;
}

/* How long a stopping worker's loop runs on to let its clients' last messages out. */
#define STOP_FLUSH_US 200000

/*
 * The process exits (SIGINT, or shutdown_timeout with clients left): each
 * client is told why before its socket closes, unless a server's message
 * is half relayed to it (an error in the middle would garble it).  What a
 * plain socket takes goes out here; a TLS client's error is written by its
 * bufferevent in a later turn of the loop, so the loop runs on until the
 * closing clients are gone (reap), for STOP_FLUSH_US at most: a client that
 * reads nothing does not hold up the exit.
 */
static void stop_fn(void *owner, void *arg)
{
	struct worker *w = owner;
	struct list_node *pos, *tmp;

	w->stopping = true; /* first: the servers the clients leave are not replaced */
	list_for_each_safe(pos, tmp, &w->clients)
	{
		struct client *c = list_entry(pos, struct client, node);

		if (c->server != NULL && c->server->fwd_remaining > 0)
			client_close(c, "shutdown");
		else
			client_fail(c, SQLSTATE_ADMIN_SHUTDOWN, "sluice is shutting down");
	}
	conn_flush_now(&w->loop);
	if (list_empty(&w->closing_clients))
		loop_break(&w->loop);
	else
		loop_exit_after(&w->loop, STOP_FLUSH_US);
}

void worker_stop(struct worker *w)
{
	inbox_post(&w->inbox, stop_fn, NULL);
	pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
	struct list_node *pos, *tmp;

	if (w == NULL)
		return;
	w->stopping = true; /* also for a worker never started: closing opens nothing */
	list_for_each_safe(pos, tmp, &w->clients)
	{
		struct client *c = list_entry(pos, struct client, node);

		client_close(c, "shutdown");
	}
	list_for_each_safe(pos, tmp, &w->closing_clients)
	{
		struct client *c = list_entry(pos, struct client, node);

		list_del(&c->node);
		list_add_tail(&w->dead_clients, &c->node);
	}
	/* Clients first: freeing one tells its pool, so the pools must still be there. */
	reap(w);
	list_for_each_safe(pos, tmp, &w->pools)
	{
		pool_free(list_entry(pos, struct pool, node));
	}
	reap(w);
	auth_query_fini(w);
	if (w->stats_timer != NULL)
		event_free(w->stats_timer);
	if (w->unused_timer != NULL)
		event_free(w->unused_timer);
	if (w->inbox.wake != NULL)
		inbox_fini(&w->inbox);
	/* Before the loop: freeing the link fails its pending refills, which touch no client. */
	redis_link_free(w->redis);
	cancel_map_fini(&w->cancels); /* its orphaned cancels' bufferevents need the loop */
	loop_fini(&w->loop);
	pause_state_fini(&w->pause);
	prepared_registry_fini(&w->prepared);
	ring_fini(&w->lends);
	qstats_free(w->qstats);
	scram_key_cache_wipe(&w->scram_keys);
	while (w->spare_captures != NULL) {
		struct query_capture *qc = w->spare_captures;

		w->spare_captures = qc->next_spare;
		free(qc);
	}
	if (w->snap != NULL)
		snapshot_unref(w->snap);
	free(w);
}

static void accept_fn(void *owner, void *arg)
{
	struct worker *w = owner;
	struct accepted_socket *sock = arg;

	struct client *c = client_new(w, sock->fd, (struct sockaddr *)&sock->addr,
	                              (int)sock->addrlen, sock->is_unix, &login_client_handler);

	if (c != NULL && sock->over_ip_rate && c->refuse == REFUSE_NONE)
		c->refuse = REFUSE_IP_RATE;
	free(sock);
}

void worker_post_accept(struct worker *w, struct accepted_socket *sock)
{
	if (inbox_post(&w->inbox, accept_fn, sock) < 0) {
		close(sock->fd);
		free(sock);
	}
}

static void config_fn(void *owner, void *arg)
{
	struct worker *w = owner;
	struct snapshot *old = w->snap;
	struct list_node *pos, *tmp;

	w->snap = arg;
	w->cfg = w->snap->cfg;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		pool_reconfigure(list_entry(pos, struct pool, node), old->cfg);
	}
	pool_expire_unused(w); /* autodb_idle_timeout may have changed */
	warm_pools(w);
	stats_arm(w);
	/* limiter or its Redis may have changed: the connection follows, on this loop. */
	if (limiter_follow(&w->shared->limiter, &w->redis, w->loop.base, w->loop.dns) < 0)
		log_error(w->log, "worker %d: out of memory for the limiter's Redis connection",
		          w->id);
	snapshot_unref(old);
}

void worker_post_config(struct worker *w, struct snapshot *snap)
{
	if (inbox_post(&w->inbox, config_fn, snapshot_ref(snap)) < 0)
		snapshot_unref(snap);
}

static void drain_fn(void *owner, void *arg)
{
	struct worker *w = owner;
	struct list_node *pos, *tmp;

	w->draining = true;
	list_for_each_safe(pos, tmp, &w->clients)
	{
		client_drain(list_entry(pos, struct client, node));
	}
	worker_check_drained(w);
}

void worker_post_drain(struct worker *w)
{
	inbox_post(&w->inbox, drain_fn, NULL);
}

static void handover_fn(void *owner, void *arg)
{
	struct worker *w = owner;

	w->handed_over = true;
	worker_check_drained(w);
}

void worker_post_handover(struct worker *w)
{
	inbox_post(&w->inbox, handover_fn, NULL);
}
