/*
 * Pools.  A pool is per worker; its size and the per-db / per-user caps are
 * shared across workers through atomic quotas, so N workers never open more
 * server connections than configured.
 */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "client.h"
#include "config.h"
#include "proto/sqlstate.h"
#include "runtime.h"
#include "server.h"
#include "worker.h"

static struct pool *pool_find(struct worker *w, const char *dbname, const char *user)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);

		if (strcmp(p->dbname, dbname) == 0 && strcmp(p->user, user) == 0)
			return p;
	}
	return NULL;
}

struct pool *pool_get(struct worker *w, const char *dbname, const char *user,
                      const struct db_def *db)
{
	struct pool *p = pool_find(w, dbname, user);
	char key[512];

	if (p != NULL)
		return p;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->w = w;
	p->dbname = strdup(dbname);
	p->user = strdup(user);
	if (p->dbname == NULL || p->user == NULL) {
		free(p->dbname);
		free(p->user);
		free(p);
		return NULL;
	}
	p->db = db;
	p->udef = config_find_user(w->cfg, user);
	list_init(&p->idle);
	list_init(&p->active);
	list_init(&p->pending);
	list_init(&p->waiting);
	list_init(&p->login_waiting);
	param_list_init(&p->defaults);
	p->stats_last_us = worker_now_us(w); /* counters start at zero now */
	snprintf(key, sizeof(key), "%s/%s", dbname, user);
	p->pool_quota = runtime_quota(w->rt, "pool", key);
	p->db_quota = runtime_quota(w->rt, "db", dbname);
	p->user_quota = runtime_quota(w->rt, "user", user);
	list_add_tail(&w->pools, &p->node);
	admin_pool_created(p);
	return p;
}

static void close_list(struct list_node *head, const char *reason)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, head)
	{
		server_close(list_entry(pos, struct server, node), reason);
	}
}

void pool_free(struct pool *p)
{
	close_list(&p->idle, "pool freed");
	close_list(&p->active, "pool freed");
	close_list(&p->pending, "pool freed");
	list_del(&p->node);
	param_list_fini(&p->defaults);
	latency_fini(&p->lat);
	free(p->dbname);
	free(p->user);
	free(p);
}

int pool_mode(const struct pool *p)
{
	return config_pool_mode(p->w->cfg, p->db, p->udef);
}

int pool_size(const struct pool *p)
{
	return config_pool_size(p->w->cfg, p->db, p->udef);
}

/* An idle server of another pool on the same database, to make room under max_db_connections. */
static bool evict_idle_of_db(struct pool *p)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &p->w->pools)
	{
		struct pool *other = list_entry(pos, struct pool, node);

		if (other != p && strcmp(other->dbname, p->dbname) == 0 &&
		    !list_empty(&other->idle)) {
			struct server *s = list_entry(other->idle.prev, struct server, node);

			server_close(s, "making room under max_db_connections");
			return true;
		}
	}
	return false;
}

/* Take one unit of every cap, or none. */
static bool take_quotas(struct pool *p)
{
	const struct config *cfg = p->w->cfg;
	int max_db = cfg->max_db_connections;
	int max_user = cfg->max_user_connections;

	if (p->db != NULL && p->db->max_db_connections != CONFIG_INHERIT)
		max_db = p->db->max_db_connections;
	if (p->udef != NULL && p->udef->max_user_connections != CONFIG_INHERIT)
		max_user = p->udef->max_user_connections;
	if (!quota_take(p->pool_quota, pool_size(p)))
		return false;
	if (!quota_take(p->db_quota, max_db)) {
		if (!evict_idle_of_db(p) || !quota_take(p->db_quota, max_db)) {
			quota_give(p->pool_quota);
			return false;
		}
	}
	if (!quota_take(p->user_quota, max_user)) {
		quota_give(p->pool_quota);
		quota_give(p->db_quota);
		return false;
	}
	return true;
}

static int count_connecting(const struct pool *p)
{
	int n = 0;

	for (const struct list_node *pos = p->pending.next; pos != &p->pending; pos = pos->next)
		n++;
	return n;
}

/*
 * Balance across workers.  The caps are shared, the servers are not: with
 * every unit held by servers of another worker, a pool with no server of its
 * own would wait for query_wait_timeout.  So such a pool asks the others to shed:
 * each closes an idle server of the same pool now, or the next one released
 * while nobody waits there, and a closed server kicks the other workers, whose
 * pools then connect with the unit that came free.
 */
struct shed_request {
	char *dbname, *user;
};

static void shed_fn(void *owner, void *arg)
{
	struct worker *w = owner;
	struct shed_request *req = arg;
	struct pool *p = pool_find(w, req->dbname, req->user);
	struct list_node *idle;

	if (p != NULL && list_empty(&p->waiting) && list_empty(&p->login_waiting)) {
		idle = list_first(&p->idle);
		if (idle != NULL)
			server_close(list_entry(idle, struct server, node),
			             "another worker's clients need the connection");
		else if (p->shed_owed < pool_size(p))
			p->shed_owed++;
	}
	free(req->dbname);
	free(req->user);
	free(req);
}

static void ask_others_to_shed(struct pool *p)
{
	struct runtime *rt = p->w->rt;

	/* With a server of its own, the pool's queue moves; only one with none starves. */
	if (rt->nworkers < 2 || rt->workers_stopped || p->shed_asked || p->nservers > 0 ||
	    (list_empty(&p->waiting) && list_empty(&p->login_waiting)))
		return;
	p->shed_asked = true;
	for (int i = 0; i < rt->nworkers; i++) {
		struct shed_request *req;

		if (i == p->w->id)
			continue;
		req = calloc(1, sizeof(*req));
		if (req == NULL || (req->dbname = strdup(p->dbname)) == NULL ||
		    (req->user = strdup(p->user)) == NULL ||
		    inbox_post(&rt->workers[i]->inbox, shed_fn, req) < 0) {
			if (req != NULL) {
				free(req->dbname);
				free(req->user);
			}
			free(req);
		}
	}
}

static void kick_fn(void *owner, void *arg)
{
	struct worker *w = owner;
	struct list_node *pos;

	/* A unit came free somewhere: a pool still starving may ask again. */
	for (pos = w->pools.next; pos != &w->pools; pos = pos->next)
		list_entry(pos, struct pool, node)->shed_asked = false;
	pool_kick_all(w);
}

void pool_kick_others(struct worker *w)
{
	if (w->rt->workers_stopped)
		return;
	for (int i = 0; i < w->rt->nworkers; i++)
		if (i != w->id)
			inbox_post(&w->rt->workers[i]->inbox, kick_fn, NULL);
}

void pool_maintain(struct pool *p)
{
	int want, min_size;

	if (p->db == NULL || p->paused || p->w->draining || worker_now_us(p->w) < p->retry_after_us)
		return;
	/* Servers still logging in or resetting will serve waiters soon. */
	want =
	    (int)list_count(&p->waiting) + (int)list_count(&p->login_waiting) - count_connecting(p);
	min_size = config_min_pool_size(p->w->cfg, p->db);
	if (p->nservers + (want > 0 ? want : 0) < min_size)
		want = min_size - p->nservers;
	while (want-- > 0) {
		if (worker_now_us(p->w) < p->retry_after_us)
			return;
		if (!take_quotas(p)) {
			ask_others_to_shed(p);
			return;
		}
		struct server *s = server_new(p);

		if (s == NULL) {
			quota_give(p->pool_quota);
			quota_give(p->db_quota);
			quota_give(p->user_quota);
			return;
		}
		/* Failed synchronously (already closed): do not spin on retries. */
		if (s->state == SERVER_CLOSING)
			return;
	}
}

void pool_acquire(struct pool *p, struct client *c)
{
	struct list_node *first = p->paused ? NULL : list_first(&p->idle);

	if (first != NULL) {
		struct server *s = list_entry(first, struct server, node);

		server_set_state(s, SERVER_ACTIVE);
		client_link(c, s);
		return;
	}
	/* Postgres is down and nothing could serve the client: say so now, not after a wait. */
	if (p->nservers == 0 && worker_now_us(p->w) < p->retry_after_us) {
		client_pool_failed(c, p->last_error_state, p->last_error);
		return;
	}
	client_set_state(c, CLIENT_WAITING);
	list_add_tail(&p->waiting, &c->wait_node);
	clog(c, LOG_DEBUG, "queued for a server");
	pool_maintain(p);
}

void pool_dequeue(struct pool *p, struct client *c)
{
	if (list_linked(&c->wait_node))
		list_del(&c->wait_node);
}

static bool server_must_retire(const struct pool *p, const struct server *s)
{
	int64_t lifetime = p->w->cfg->server_lifetime_us;

	if (s->close_needed || p->db == NULL)
		return true;
	return lifetime > 0 && worker_now_us(p->w) - s->connect_us > lifetime;
}

void pool_release(struct pool *p, struct server *s)
{
	struct list_node *first;

	if (p->pause_closes || server_must_retire(p, s)) {
		const char *why = p->pause_closes   ? "pool paused"
		                  : s->close_needed ? "configuration changed or RECONNECT"
		                                    : "server_lifetime";

		server_close(s, why);
		pool_maintain(p);
		return;
	}
	first = p->paused ? NULL : list_first(&p->waiting);
	if (first == NULL && p->shed_owed > 0) {
		p->shed_owed--;
		server_close(s, "another worker's clients need the connection");
		return;
	}
	if (first != NULL) {
		struct client *c = list_entry(first, struct client, wait_node);

		list_del(&c->wait_node);
		server_set_state(s, SERVER_ACTIVE);
		client_link(c, s);
		return;
	}
	server_set_state(s, SERVER_IDLE);
}

void pool_server_ready(struct pool *p, struct server *s)
{
	struct list_node *pos, *tmp;

	p->retry_after_us = 0;
	if (!p->have_defaults) {
		param_list_copy(&p->defaults, &s->params);
		p->have_defaults = true;
		p->defaults_generation++;
	}
	list_for_each_safe(pos, tmp, &p->login_waiting)
	{
		struct client *c = list_entry(pos, struct client, wait_node);

		list_del(&c->wait_node);
		client_login_ready(c);
	}
	pool_release(p, s);
}

void pool_connect_failed(struct pool *p, const char *sqlstate, const char *msg)
{
	struct list_node *pos, *tmp;

	snprintf(p->last_error_state, sizeof(p->last_error_state), "%s", sqlstate);
	snprintf(p->last_error, sizeof(p->last_error), "%s", msg);
	p->retry_after_us = worker_now_us(p->w) + p->w->cfg->server_login_retry_us;
	/* Servers still alive will serve the queue; only a pool with none fails its clients. */
	if (p->nservers > 0)
		return;
	list_for_each_safe(pos, tmp, &p->login_waiting)
	{
		struct client *c = list_entry(pos, struct client, wait_node);

		list_del(&c->wait_node);
		client_pool_failed(c, sqlstate, msg);
	}
	list_for_each_safe(pos, tmp, &p->waiting)
	{
		struct client *c = list_entry(pos, struct client, wait_node);

		list_del(&c->wait_node);
		client_pool_failed(c, sqlstate, msg);
	}
}

void pool_server_gone(struct pool *p, struct server *s)
{
	p->nservers--;
	quota_give(p->pool_quota);
	quota_give(p->db_quota);
	quota_give(p->user_quota);
}

void pool_kick_all(struct worker *w)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);

		if (!list_empty(&p->waiting) || !list_empty(&p->login_waiting))
			pool_maintain(p);
	}
}

static bool str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

/* Does a server opened under `old` still match `def`? */
static bool connection_changed(const struct db_def *old, const struct db_def *def)
{
	return str_differs(old->host, def->host) || old->port != def->port ||
	       str_differs(old->dbname, def->dbname) || str_differs(old->user, def->user) ||
	       str_differs(old->password, def->password) ||
	       str_differs(old->connect_options, def->connect_options) ||
	       str_differs(old->application_name, def->application_name);
}

static void mark_retire(struct list_node *head)
{
	for (struct list_node *pos = head->next; pos != head; pos = pos->next)
		list_entry(pos, struct server, node)->close_needed = true;
}

void pool_reconfigure(struct pool *p)
{
	const struct db_def *def = config_find_db(p->w->cfg, p->dbname);
	bool changed = def == NULL || p->db == NULL || connection_changed(p->db, def);

	p->db = def;
	p->udef = config_find_user(p->w->cfg, p->user);
	if (changed) {
		/* Servers were opened with the old definition: retire them as they come free. */
		mark_retire(&p->active);
		mark_retire(&p->pending);
		close_list(&p->idle, "configuration changed");
		p->retry_after_us = 0;
	}
	if (def == NULL) {
		pool_connect_failed(p, SQLSTATE_INVALID_CATALOG_NAME,
		                    "database was removed from the configuration");
		return;
	}
	pool_maintain(p);
}

void pool_set_paused(struct pool *p, bool paused, bool close_servers)
{
	p->paused = paused;
	p->pause_closes = paused && close_servers;
	if (p->pause_closes) {
		close_list(&p->idle, "pool paused");
		return;
	}
	if (paused)
		return;
	/* Serve the clients that queued meanwhile: idle servers first, then new ones. */
	while (!list_empty(&p->idle) && !list_empty(&p->waiting)) {
		struct server *s = list_entry(p->idle.next, struct server, node);
		struct client *c = list_entry(p->waiting.next, struct client, wait_node);

		list_del(&c->wait_node);
		server_set_state(s, SERVER_ACTIVE);
		client_link(c, s);
	}
	pool_maintain(p);
}

void pool_reconnect(struct pool *p)
{
	mark_retire(&p->active);
	mark_retire(&p->pending);
	close_list(&p->idle, "RECONNECT");
	pool_maintain(p);
}

void pool_stats_tick(struct pool *p, int64_t now_us)
{
	p->stats_prev = p->stats_last;
	p->stats_prev_us = p->stats_last_us;
	p->stats_last = p->stats;
	p->stats_last_us = now_us;
}
