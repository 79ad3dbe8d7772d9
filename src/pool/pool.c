/*
 * Pools.  A pool is per worker; its size and the per-db / per-user caps are
 * shared across workers through atomic quotas, so N workers never open more
 * server connections than configured.
 */
#include "pool/pool.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "pool/client.h"
#include "config/config.h"
#include "pool/listen.h"
#include "pool/hosts.h"
#include "limit/fairshare.h"
#include "proto/sqlstate.h"
#include "pool/server.h"
#include "pool/worker.h"

static struct pool *pool_find(struct worker *w, const char *dbname, const char *user,
                              const char *tenant, int64_t statement_timeout_us)
{
	struct list_node *pos;

	for (pos = w->pools.next; pos != &w->pools; pos = pos->next) {
		struct pool *p = list_entry(pos, struct pool, node);

		if (strcmp(p->dbname, dbname) == 0 && strcmp(p->user, user) == 0 &&
		    strcmp(p->tenant, tenant) == 0 &&
		    p->statement_timeout_us == statement_timeout_us)
			return p;
	}
	return NULL;
}

/* The group of pools with this database and server user on the worker, or NULL. */
static struct pool_group *group_find(struct worker *w, const char *dbname, const char *user)
{
	struct list_node *pos;

	for (pos = w->pools.next; pos != &w->pools; pos = pos->next) {
		struct pool *p = list_entry(pos, struct pool, node);

		if (strcmp(p->dbname, dbname) == 0 && strcmp(p->user, user) == 0)
			return p->group;
	}
	return NULL;
}

/* First non-inherited value: [users], tenant, [databases], then [sluice]. */
static int64_t pick(int64_t user, int64_t tenant, int64_t db, int64_t global)
{
	if (user != CONFIG_INHERIT)
		return user;
	if (tenant >= 0)
		return tenant;
	if (db != CONFIG_INHERIT)
		return db;
	return global;
}

static void resolve_settings(struct pool *p)
{
	const struct config *cfg = p->w->cfg;
	const struct tenant_def *t = config_tenant_named(cfg, p->tenant);
	const struct tenant_limits *l = t != NULL ? &t->limits : NULL;
	const struct user_def *u = p->udef;
	const struct db_def *db = p->db;
	struct pool_settings *set = &p->set;

#define PICK(field, tfield)                                                                        \
	pick(u ? u->field : CONFIG_INHERIT, l ? l->tfield : -1, db ? db->field : CONFIG_INHERIT,   \
	     cfg->field##_us)
	set->query_timeout_us = PICK(query_timeout, query_timeout_us);
	set->query_wait_timeout_us = PICK(query_wait_timeout, query_wait_timeout_us);
	set->idle_transaction_timeout_us =
	    PICK(idle_transaction_timeout, idle_transaction_timeout_us);
	set->client_idle_timeout_us = PICK(client_idle_timeout, client_idle_timeout_us);
#undef PICK
	set->rate_limit_wait_us = l != NULL && l->rate_limit_wait_us >= 0 ? l->rate_limit_wait_us
	                                                                  : cfg->rate_limit_wait_us;
	set->max_server_conn = l != NULL && l->max_server_conn > 0 ? (int)l->max_server_conn : 0;
	set->max_client_conn = l != NULL && l->max_client_conn > 0 ? (int)l->max_client_conn : 0;
	set->min_server_conn = l != NULL && l->min_server_conn > 0 ? (int)l->min_server_conn : 0;
	set->weight = l != NULL && l->weight > 0 ? (int)l->weight : TENANT_WEIGHT_DEFAULT;
	if (p->share != NULL)
		share_configure(p->share, set->min_server_conn, set->weight);
	set->limits = l;
	set->pool_mode = config_pool_mode(cfg, db, u);
	set->rate_limited =
	    l != NULL && (l->rate[LIMIT_QUERY].count > 0 || l->rate[LIMIT_TRANSACTION].count > 0);
}

/* statement_timeout for a client's server logins: its [users] entry, else its tenant's. */
static int64_t statement_timeout_for(const struct config *cfg, const char *client_user,
                                     const struct tenant_def *t)
{
	const struct user_def *u = config_find_user(cfg, client_user);

	if (u != NULL && u->statement_timeout != CONFIG_INHERIT)
		return u->statement_timeout;
	if (t != NULL && t->limits.statement_timeout_us > 0)
		return t->limits.statement_timeout_us;
	return 0;
}

/*
 * Every member of a group logs in as the same user to the same database, so
 * one member's server parameters serve the others' welcomes: a tenant's
 * first client need not wait for a server it may not get at once.
 */
static void borrow_defaults(struct pool *p)
{
	struct list_node *pos;

	for (pos = p->group->members.next; pos != &p->group->members; pos = pos->next) {
		struct pool *other = list_entry(pos, struct pool, group_node);

		if (other != p && other->have_defaults) {
			param_list_copy(&p->defaults, &other->defaults);
			p->have_defaults = true;
			p->defaults_generation++;
			return;
		}
	}
}

static int join_group(struct pool *p)
{
	struct pool_group *g = group_find(p->w, p->dbname, p->user);

	if (g == NULL) {
		if ((g = calloc(1, sizeof(*g))) == NULL)
			return -1;
		list_init(&g->members);
	}
	list_add_tail(&g->members, &p->group_node);
	g->count++;
	p->group = g;
	return 0;
}

static void leave_group(struct pool *p)
{
	struct pool_group *g = p->group;

	list_del(&p->group_node);
	if (--g->count == 0)
		free(g);
}

/* Is `db` the "*" entry, whose pools are made per name a client asks for? */
static bool is_auto_db(const struct db_def *db)
{
	return db != NULL && strcmp(db->name, "*") == 0;
}

struct pool *pool_get(struct worker *w, const char *dbname, const char *server_user,
                      const char *client_user, const struct db_def *db, bool *over_cap)
{
	const struct tenant_def *t = config_find_tenant(w->cfg, client_user, dbname);
	const char *tenant = t != NULL ? t->name : TENANT_DEFAULT;
	int64_t statement_timeout = statement_timeout_for(w->cfg, client_user, t);
	struct pool *p = pool_find(w, dbname, server_user, tenant, statement_timeout);
	struct quota *auto_quota = NULL;
	char key[512];

	*over_cap = false;
	if (p != NULL)
		return p;
	/* A name reached through "*" counts once, over every worker, while it has a pool. */
	if (is_auto_db(db) &&
	    (auto_quota = quota_find_capped(&w->shared->quotas, "autodb", dbname,
	                                    w->cfg->max_auto_databases)) == NULL) {
		*over_cap = true;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		quota_put(&w->shared->quotas, auto_quota);
		return NULL;
	}
	p->w = w;
	p->dbname = strdup(dbname);
	p->user = strdup(server_user);
	p->tenant = strdup(tenant);
	if (p->dbname == NULL || p->user == NULL || p->tenant == NULL || join_group(p) < 0) {
		quota_put(&w->shared->quotas, auto_quota);
		free(p->dbname);
		free(p->user);
		free(p->tenant);
		free(p);
		return NULL;
	}
	p->is_auto = auto_quota != NULL;
	p->auto_quota = auto_quota;
	list_init(&p->unused_node);
	p->statement_timeout_us = statement_timeout;
	p->db = db;
	hosts_attach(&p->hosts, &w->shared->breakers, db,
	             (uint64_t)(uintptr_t)p ^ (uint64_t)worker_now_us(w), (unsigned)w->id);
	p->udef = config_find_user(w->cfg, server_user);
	resolve_settings(p);
	list_init(&p->idle);
	list_init(&p->active);
	list_init(&p->pending);
	list_init(&p->waiting);
	list_init(&p->login_waiting);
	ring_init(&p->owed, sizeof(int));
	param_list_init(&p->defaults);
	p->stats_last_us = worker_now_us(w); /* counters start at zero now */
	snprintf(key, sizeof(key), "%s/%s", dbname, server_user);
	p->pool_quota = quota_find(&w->shared->quotas, "pool", key);
	p->db_quota = quota_find(&w->shared->quotas, "db", dbname);
	p->user_quota = quota_find(&w->shared->quotas, "user", server_user);
	p->tenant_quota = quota_find(&w->shared->quotas, "tenant", tenant);
	p->share = share_join(&w->shared->quotas, key, tenant);
	share_configure(p->share, p->set.min_server_conn, p->set.weight);
	p->ts = quota_tenant(&w->shared->quotas, tenant);
	borrow_defaults(p);
	list_add_tail(&w->pools, &p->node);
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
	struct quota_registry *reg = &p->w->shared->quotas;

	/* Closing its servers must not queue it for the reaper again. */
	p->is_auto = false;
	if (list_linked(&p->unused_node))
		list_del(&p->unused_node);
	listen_pool_free(p);
	close_list(&p->idle, "pool freed");
	close_list(&p->active, "pool freed");
	close_list(&p->pending, "pool freed");
	list_del(&p->node);
	leave_group(p);
	quota_put(reg, p->pool_quota);
	quota_put(reg, p->db_quota);
	quota_put(reg, p->user_quota);
	quota_put(reg, p->tenant_quota);
	quota_put(reg, p->auto_quota);
	share_leave(reg, p->share);
	if (p->reserve_timer != NULL)
		event_free(p->reserve_timer);
	hosts_detach(&p->hosts, &p->w->shared->breakers);
	param_list_fini(&p->defaults);
	ring_fini(&p->owed);
	record_fini(&p->lat);
	free(p->dbname);
	free(p->user);
	free(p->tenant);
	free(p);
}

/*
 * Pools made through "*".  Every made-up name a client asks for gets one, so
 * they must not outlive their use: one with neither clients nor servers dies
 * after autodb_idle_timeout, or at once when Postgres said the database does
 * not exist or no server ever logged in to it, however its clients were
 * refused (a failed login, an open breaker, no host of the role wanted).
 * Dying means joining w->dead_pools, which the reaper empties
 * after the dead servers and clients that still point at the pool.  Called
 * whenever nclients or nservers changes.
 */
static void track_use(struct pool *p)
{
	struct worker *w = p->w;
	int64_t timeout = w->cfg->autodb_idle_timeout_us;

	if (!p->is_auto)
		return;
	if (p->nclients > 0 || p->nservers > 0) {
		if (list_linked(&p->unused_node))
			list_del(&p->unused_node);
		p->dying = false;
		return;
	}
	if (p->dying)
		return;
	if (p->db_missing || !p->have_defaults || timeout == 0) {
		if (list_linked(&p->unused_node))
			list_del(&p->unused_node);
		p->dying = true;
		list_add_tail(&w->dead_pools, &p->unused_node);
		loop_schedule_reap(&w->loop);
		return;
	}
	if (list_linked(&p->unused_node))
		return;
	/* Appended in time order, so the list's head is always the next one due. */
	p->unused_since_us = worker_now_us(w);
	list_add_tail(&w->unused_pools, &p->unused_node);
	if (!evtimer_pending(w->unused_timer, NULL))
		pool_expire_unused(w);
}

void pool_attach(struct pool *p, struct client *c)
{
	if (c->pool == p)
		return;
	if (c->pool != NULL)
		pool_client_gone(c->pool);
	c->pool = p;
	p->nclients++;
	track_use(p);
}

void pool_client_gone(struct pool *p)
{
	p->nclients--;
	track_use(p);
}

void pool_expire_unused(struct worker *w)
{
	int64_t timeout = w->cfg->autodb_idle_timeout_us, now = worker_now_us(w);
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->unused_pools)
	{
		struct pool *p = list_entry(pos, struct pool, unused_node);
		int64_t left = p->unused_since_us + timeout - now;

		if (timeout > 0 && left > 0) {
			struct timeval tv = {.tv_sec = left / 1000000, .tv_usec = left % 1000000};

			evtimer_add(w->unused_timer, &tv);
			return;
		}
		list_del(&p->unused_node);
		p->dying = true;
		list_add_tail(&w->dead_pools, &p->unused_node);
		loop_schedule_reap(&w->loop);
	}
}

void pool_reap(struct worker *w)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->dead_pools)
	{
		struct pool *p = list_entry(pos, struct pool, unused_node);
		struct log_ctx ctx = {.worker = w->id, .db = p->dbname, .user = p->user};

		const char *why = "no clients and no server connections for autodb_idle_timeout";

		if (p->db_missing)
			why = "the database does not exist";
		else if (!p->have_defaults)
			why = "its clients are gone and no server ever logged in to it";
		LOG_AT(w->log, LOG_DEBUG, &ctx, "pool freed: %s", why);
		pool_free(p);
	}
}

int pool_size(const struct pool *p)
{
	return config_pool_size(p->w->cfg, p->db, p->udef);
}

/*
 * May an idle server of `other` be closed or borrowed for `p`?  Not one of
 * the servers min_server_conn guarantees another tenant: they stay idle for
 * it rather than serve others, even when the pool has room, or the
 * guaranteed tenant's next request waits for a login (docs/tenants.md).
 */
static bool may_lose_an_idle_server(const struct pool *other, const struct pool *p)
{
	return other->share == p->share || share_above_min(other->share);
}

/* An idle server of another pool on the same database, to make room under max_db_connections. */
static bool evict_idle_of_db(struct pool *p)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &p->w->pools)
	{
		struct pool *other = list_entry(pos, struct pool, node);

		if (other != p && strcmp(other->dbname, p->dbname) == 0 &&
		    !list_empty(&other->idle) && may_lose_an_idle_server(other, p)) {
			struct server *s = list_entry(other->idle.prev, struct server, node);

			server_close(s, "making room under max_db_connections");
			return true;
		}
	}
	return false;
}

/*
 * Close an idle server of another tenant's pool in the group, so its unit
 * comes free; never one of the servers min_server_conn guarantees it.
 */
static bool evict_idle_of_group(struct pool *p)
{
	struct list_node *pos;

	for (pos = p->group->members.next; pos != &p->group->members; pos = pos->next) {
		struct pool *other = list_entry(pos, struct pool, group_node);

		if (other != p && !list_empty(&other->idle) && may_lose_an_idle_server(other, p)) {
			server_close(list_entry(other->idle.prev, struct server, node),
			             "making room for another tenant's clients");
			return true;
		}
	}
	return false;
}

static void give_quotas(struct pool *p, bool pool_unit)
{
	if (pool_unit) {
		atomic_fetch_sub(&p->share->used, 1);
		quota_give(p->pool_quota);
	}
	quota_give(p->db_quota);
	quota_give(p->user_quota);
	quota_give(p->tenant_quota);
}

/*
 * Servers the group may hold for `to`, `from` giving one up (NULL: none):
 * pool_size and `extra` (reserve), less the units other tenants are entitled
 * to by min_server_conn and do not hold.  A tenant short of its own
 * guarantee may use all of pool_size: when the guarantees add up to more than
 * the pool (a configuration warning), those who come first hold theirs.
 */
static int group_limit(const struct pool *to, const struct pool *from, int extra)
{
	int limit = pool_size(to) + extra;

	if (share_short(to->share) || !share_contended(to->share))
		return limit;
	return limit - share_reserved(to->share, from != NULL ? from->share : NULL);
}

/* One unit of the group's pool_size, unless other tenants' guarantees need it. */
static bool take_pool_unit(struct pool *p, int extra)
{
	int limit = group_limit(p, NULL, extra);

	/* quota_take reads a limit of 0 as none. */
	return limit > 0 && quota_take(p->pool_quota, limit);
}

/*
 * Take one unit of every cap, or none; `extra` servers past pool_size are
 * allowed (reserve).  Without `pool_unit`, pool_size and the tenant's share of
 * it are left out (a listener, listen.h).
 */
static bool take_quotas_of(struct pool *p, int extra, bool pool_unit)
{
	const struct config *cfg = p->w->cfg;
	int max_db = cfg->max_db_connections;
	int max_user = cfg->max_user_connections;

	if (p->db != NULL && p->db->max_db_connections != CONFIG_INHERIT)
		max_db = p->db->max_db_connections;
	if (p->udef != NULL && p->udef->max_user_connections != CONFIG_INHERIT)
		max_user = p->udef->max_user_connections;
	if (!quota_take(p->tenant_quota, p->set.max_server_conn))
		return false;
	if (pool_unit && !take_pool_unit(p, extra)) {
		if (!evict_idle_of_group(p) || !take_pool_unit(p, extra)) {
			quota_give(p->tenant_quota);
			return false;
		}
	}
	if (!quota_take(p->db_quota, max_db)) {
		if (!evict_idle_of_db(p) || !quota_take(p->db_quota, max_db)) {
			if (pool_unit)
				quota_give(p->pool_quota);
			quota_give(p->tenant_quota);
			return false;
		}
	}
	if (!quota_take(p->user_quota, max_user)) {
		if (pool_unit)
			quota_give(p->pool_quota);
		quota_give(p->db_quota);
		quota_give(p->tenant_quota);
		return false;
	}
	if (pool_unit)
		atomic_fetch_add(&p->share->used, 1);
	return true;
}

static bool take_quotas(struct pool *p, int extra)
{
	return take_quotas_of(p, extra, true);
}

/*
 * A unit for min_pool_size: the group's pool_size unit taken only while its
 * servers on every worker (connecting, in transit and in use too) number
 * fewer than min_size, so all workers keep min_pool_size together, not
 * each of them, even when they warm at the same time.
 */
static bool take_min_unit(struct pool *p, int min_size)
{
	int limit = group_limit(p, NULL, 0);

	if (min_size < limit)
		limit = min_size;
	if (limit <= 0 || !quota_take(p->pool_quota, limit))
		return false;
	if (!take_quotas_of(p, 0, false)) {
		quota_give(p->pool_quota);
		return false;
	}
	atomic_fetch_add(&p->share->used, 1);
	return true;
}

/*
 * Fairness between the tenants of a group.  A server may move to another
 * member when that member logs in the same way (same statement_timeout) and
 * its tenant has room under max_server_conn; otherwise it is closed, which
 * frees the shared unit for the member to connect with.
 */
static bool can_move(const struct pool *from, const struct pool *to)
{
	return from->statement_timeout_us == to->statement_timeout_us;
}

static void move_server(struct server *s, struct pool *to)
{
	struct pool *from = s->pool;

	if (from->tenant_quota != to->tenant_quota) {
		quota_give(from->tenant_quota);
		atomic_fetch_add(&to->tenant_quota->used, 1);
	}
	if (from->share != to->share) {
		atomic_fetch_sub(&from->share->used, 1);
		atomic_fetch_add(&to->share->used, 1);
	}
	from->nservers--;
	to->nservers++;
	s->pool = to;
	track_use(from);
	track_use(to);
}

/* May `to` take a server now (its tenant under max_server_conn, or the server already its)? */
static bool tenant_has_room(const struct pool *from, const struct pool *to)
{
	return from->tenant_quota == to->tenant_quota || to->set.max_server_conn <= 0 ||
	       atomic_load(&to->tenant_quota->used) < to->set.max_server_conn;
}

static int reserve_size(const struct pool *p);

/*
 * May a server of `from` go to `to` (`from` itself: stay with its tenant)?
 * Not when it would hold one of the units other tenants are entitled to by
 * min_server_conn: the group's servers, all workers, stay within group_limit.
 */
static bool fair_may_hold(const struct pool *from, const struct pool *to)
{
	int used = atomic_load(&from->pool_quota->used);
	/*
	 * Reserve servers (reserve_pool_size) were opened past pool_size on
	 * purpose; a reserve that is not open makes no room for anyone.
	 */
	int reserve_open = used > pool_size(to) ? used - pool_size(to) : 0;

	if (reserve_open > reserve_size(to))
		reserve_open = reserve_size(to);
	return used <= group_limit(to, from, reserve_open);
}

/*
 * The member whose first waiter gets a server of `from` that came free: a
 * tenant short of its min_server_conn first, then the one with the least
 * pass (weights, fairshare.h); NULL when no waiter may have it.  Every
 * member is looked at, so one tenant's queue never blocks another's.
 */
static struct pool *next_turn(struct pool *from)
{
	struct pool *best = NULL;
	bool best_short = false;
	int64_t best_pass = 0;
	struct list_node *pos;

	for (pos = from->group->members.next; pos != &from->group->members; pos = pos->next) {
		struct pool *p = list_entry(pos, struct pool, group_node);
		bool is_short;
		int64_t pass;

		if (p->paused || list_empty(&p->waiting) || !tenant_has_room(from, p) ||
		    !fair_may_hold(from, p))
			continue;
		is_short = share_short(p->share);
		pass = atomic_load_explicit(&p->share->pass, memory_order_relaxed);
		if (best == NULL || (is_short && !best_short) ||
		    (is_short == best_short && pass < best_pass)) {
			best = p;
			best_short = is_short;
			best_pass = pass;
		}
	}
	return best;
}

/* Serve the first waiter of `to` with `s`, a server of another member going idle. */
static void hand_over(struct server *s, struct pool *to)
{
	struct client *c;

	if (!can_move(s->pool, to)) {
		/*
		 * The unit the close frees is `to`'s: server_close maintains the
		 * releasing pool, whose own waiters would take it back at once,
		 * every turn of `to`'s, and `to` would never get a server.
		 */
		to->group->unit_for = to;
		server_close(s, "handing the connection to another tenant");
		to->group->unit_for = NULL;
		pool_maintain(to);
		return;
	}
	move_server(s, to);
	c = list_entry(list_first(&to->waiting), struct client, wait_node);
	list_del(&c->wait_node);
	server_set_state(s, SERVER_ACTIVE);
	client_link(c, s);
}

/* An idle server of another member that `p` can take over, or NULL. */
static struct server *borrow_idle(struct pool *p)
{
	struct list_node *pos;

	for (pos = p->group->members.next; pos != &p->group->members; pos = pos->next) {
		struct pool *other = list_entry(pos, struct pool, group_node);

		if (other != p && !other->paused && !list_empty(&other->idle) &&
		    may_lose_an_idle_server(other, p) && can_move(other, p) &&
		    tenant_has_room(other, p) && fair_may_hold(other, p)) {
			struct server *s = list_entry(other->idle.next, struct server, node);

			move_server(s, p);
			return s;
		}
	}
	return NULL;
}

static int count_connecting(const struct pool *p)
{
	int n = 0;

	/* A listener's connection logging in serves no waiter. */
	for (const struct list_node *pos = p->pending.next; pos != &p->pending; pos = pos->next)
		n += list_entry(pos, struct server, node)->listener == NULL;
	return n;
}

/*
 * Whether more than `n` clients wait, for a server or for the pool's first
 * login.  It looks at n + 1 of them at most: pool_maintain runs each time a
 * client queues, and counting a queue of hundreds there (a walk over as many
 * clients' memory) made each transaction dearer the more clients waited.
 */
static bool waiters_exceed(const struct pool *p, int n)
{
	const struct list_node *heads[] = {&p->waiting, &p->login_waiting};

	for (size_t i = 0; i < 2; i++)
		for (const struct list_node *pos = heads[i]->next; pos != heads[i]; pos = pos->next)
			if (n-- <= 0)
				return true;
	return false;
}

/*
 * Balance across workers.  The caps are shared, the servers are not: with
 * every unit held by servers of other workers, a pool with no server of its
 * own would wait for query_wait_timeout.  So such a pool asks the others,
 * one worker after the next, for a server of the same (database, server
 * user).  In the first round, the first worker with an idle one that can
 * move (server_can_move) hands it over: its socket moves to the asking
 * worker's loop, the same Postgres backend serves there without a new login,
 * and its quota units stay counted once.  In the second round, the first
 * worker with an idle server that cannot move (TLS) closes it, so the unit
 * comes free and the asker connects; failing that, the first worker holding
 * servers of the group owes one: the next it releases goes to the asker,
 * before its own waiters, which still have servers while the asker has none.
 * A server that arrives where nobody waits any more stays there idle.
 */
struct lend_request {
	char *dbname, *user;
	char *tenant;                 /* the asking pool's; NULL when passed on for a debt */
	int64_t statement_timeout_us; /* the asking pool's: a server logged in with it */
	int from;                     /* the asking worker */
	bool second_round;            /* no worker had an idle server that can move */
	bool moving;    /* at the second round's start, a server was between workers */
	uint64_t lends; /* shared->lends then: none moved since, if still equal */
};

/* A server on its way to another worker, and what it holds. */
struct handoff {
	struct server *s;
	struct worker *to; /* the worker whose inbox has it */
	char *dbname, *user, *tenant;
	int64_t statement_timeout_us;
	struct quota *quotas[4];    /* pool, db, user, tenant: a reference each and a unit */
	struct share *share;        /* its tenant's share of the group: a reference and a unit */
	struct param_list defaults; /* the giving pool's, for a pool that has none yet */
	bool have_defaults;
};

static void lend_request_free(struct lend_request *req)
{
	if (req == NULL)
		return;
	free(req->dbname);
	free(req->user);
	free(req->tenant);
	free(req);
}

/* A request for a server of `p`'s group, for worker `from`; with `tenant`, the asker's. */
static struct lend_request *lend_request_new(const struct pool *p, int from, bool tenant)
{
	struct lend_request *req = calloc(1, sizeof(*req));

	if (req == NULL || (req->dbname = strdup(p->dbname)) == NULL ||
	    (req->user = strdup(p->user)) == NULL ||
	    (tenant && (req->tenant = strdup(p->tenant)) == NULL)) {
		lend_request_free(req);
		return NULL;
	}
	req->statement_timeout_us = p->statement_timeout_us;
	req->from = from;
	return req;
}

static void handoff_free(struct worker_shared *sh, struct handoff *h)
{
	for (int i = 0; i < 4; i++)
		quota_put(&sh->quotas, h->quotas[i]);
	if (h->share != NULL)
		share_leave(&sh->quotas, h->share);
	param_list_fini(&h->defaults);
	free(h->dbname);
	free(h->user);
	free(h->tenant);
	free(h);
}

/* A server in transit closed: the units it held come free. */
static void give_units(struct handoff *h)
{
	for (int i = 0; i < 4; i++)
		quota_give(h->quotas[i]);
	atomic_fetch_sub(&h->share->used, 1);
}

static void pool_quotas(const struct pool *p, struct quota *q[4])
{
	q[0] = p->pool_quota;
	q[1] = p->db_quota;
	q[2] = p->user_quota;
	q[3] = p->tenant_quota;
}

/*
 * A member of the group on `w` that may take a server logged in like h's; NULL
 * if none.  A waiting pool of h's own tenant first: a server kept for its
 * tenant's min_server_conn stays that tenant's, rather than being closed for
 * it again after one transaction of another.
 */
static struct pool *adopter(struct worker *w, const struct handoff *h)
{
	struct pool_group *g = group_find(w, h->dbname, h->user);
	struct pool *waiter = NULL, *room = NULL;

	if (g == NULL)
		return NULL;
	for (struct list_node *pos = g->members.next; pos != &g->members; pos = pos->next) {
		struct pool *p = list_entry(pos, struct pool, group_node);
		bool own = strcmp(p->tenant, h->tenant) == 0;

		if (p->statement_timeout_us != h->statement_timeout_us || p->db == NULL ||
		    (p->set.max_server_conn > 0 && p->tenant_quota != h->quotas[3] &&
		     atomic_load(&p->tenant_quota->used) >= p->set.max_server_conn))
			continue;
		if (!list_empty(&p->waiting) || !list_empty(&p->login_waiting)) {
			if (own)
				return p;
			if (waiter == NULL)
				waiter = p;
		}
		if (room == NULL || own)
			room = p;
	}
	return waiter != NULL ? waiter : room;
}

/*
 * A server or units arrived for `g` on this worker and went to one member:
 * any other member may have been the one that asked, and its request is
 * answered now.  Each still starving asks again, or it would wait with its
 * shed_asked set for a server nobody sends (query_wait_timeout, or for ever).
 */
static void reask_group(struct pool_group *g, const struct pool *served)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &g->members)
	{
		struct pool *p = list_entry(pos, struct pool, group_node);

		if (p == served)
			continue;
		p->shed_asked = false;
		if (!list_empty(&p->waiting) || !list_empty(&p->login_waiting))
			pool_maintain(p);
	}
}

static void learn_defaults(struct pool *p, const struct param_list *params);

static bool open_server(struct pool *p);
static void release(struct pool *p, struct server *s, bool arrived);

/*
 * Paused, draining (SIGTERM) or exiting: no server is opened.  At exit this
 * matters most: closing a warm pool's servers gives their units back, and
 * without it each close opened a new server onto the list being closed.
 */
static bool opens_no_servers(const struct pool *p)
{
	return p->paused || p->w->draining || p->w->stopping;
}

/* Units with no server: only a pool that waits and may connect now uses them. */
static bool connects_now(const struct pool *p)
{
	return !opens_no_servers(p) && worker_now_us(p->w) >= p->retry_after_us &&
	       (!list_empty(&p->waiting) || !list_empty(&p->login_waiting));
}

/*
 * On the asking worker: the server, or the units of one closed for this
 * worker, join a pool here; the units come free when no pool can use them.
 */
static void take_over_fn(void *owner, void *arg)
{
	struct worker *w = owner;
	struct handoff *h = arg;
	struct server *s = h->s;
	struct pool *p = adopter(w, h);
	struct quota *mine[4];

	atomic_fetch_sub(&w->shared->servers_in_transit, 1);
	if (s != NULL)
		w->moves.received++;
	else
		w->moves.units_received++;
	if (p == NULL || (s == NULL && !connects_now(p))) {
		/* Its asker is gone (an unused "*" pool freed), or served meanwhile. */
		log_debug(w->log, "w%d %s/%s: a %s handed over found no pool to take it: %s", w->id,
		          h->dbname, h->user, s != NULL ? "server" : "unit",
		          s != NULL ? "closed" : "freed");
		if (s != NULL)
			server_discard(s, w);
		give_units(h);
		handoff_free(w->shared, h);
		pool_kick_all(w);
		pool_kick_others(w);
		return;
	}
	/* The units move to this pool's quotas where they differ (another tenant). */
	pool_quotas(p, mine);
	for (int i = 0; i < 4; i++)
		if (mine[i] != h->quotas[i]) {
			quota_give(h->quotas[i]);
			atomic_fetch_add(&mine[i]->used, 1);
		}
	if (p->share != h->share) {
		atomic_fetch_sub(&h->share->used, 1);
		atomic_fetch_add(&p->share->used, 1);
	}
	p->shed_asked = false;
	if (s != NULL) {
		p->nservers++;
		track_use(p);
	}
	if (!p->have_defaults && h->have_defaults)
		learn_defaults(p, &h->defaults);
	handoff_free(w->shared, h);
	if (s == NULL)
		open_server(p); /* as pool_maintain after take_quotas: a failed start frees them */
	else if (server_attach(s, p) < 0)
		server_close(s, "out of memory taking over a server from another worker");
	else
		release(p, s, true);
	reask_group(p->group, p);
}

static void ask_next(struct worker *w, struct lend_request *req);

/*
 * The pool lost its last server with debts unpaid: the workers it owed ask
 * again from here, or they would wait for a server that never comes.
 */
static void pass_debts(struct pool *p)
{
	int to;

	while (ring_pop(&p->owed, &to)) {
		struct lend_request *req = lend_request_new(p, to, false);

		if (req != NULL)
			ask_next(p->w, req);
	}
}

/*
 * A handoff of `p`'s units (a reference on each quota and on the share) for
 * another worker, with no server yet; NULL when workers stop or out of memory.
 */
static struct handoff *handoff_new(struct pool *p)
{
	struct worker_shared *sh = p->w->shared;
	struct handoff *h;

	if (sh->workers_stopped || (h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	param_list_init(&h->defaults);
	h->dbname = strdup(p->dbname);
	h->user = strdup(p->user);
	h->tenant = strdup(p->tenant);
	if (h->dbname == NULL || h->user == NULL || h->tenant == NULL) {
		handoff_free(sh, h);
		return NULL;
	}
	h->statement_timeout_us = p->statement_timeout_us;
	pool_quotas(p, h->quotas);
	for (int i = 0; i < 4; i++)
		quota_hold(&sh->quotas, h->quotas[i]);
	/* A pool's reference on the share, as pool_get takes: the transit is one more holder. */
	h->share = share_join(&sh->quotas, p->share->group->key, p->tenant);
	if (p->have_defaults) {
		param_list_copy(&h->defaults, &p->defaults);
		h->have_defaults = true;
	}
	return h;
}

/*
 * A handoff still in the inbox of a worker that stopped before reading it
 * (another was still running and lent it a server): at exit the server is
 * closed and the references freed, as take_over_fn would with no pool.
 */
static void drop_handoff(void *arg)
{
	struct handoff *h = arg;

	atomic_fetch_sub(&h->to->shared->servers_in_transit, 1);
	if (h->s != NULL)
		server_discard(h->s, h->to);
	give_units(h);
	handoff_free(h->to->shared, h);
}

/* Posts `h` to worker `to`; false (h freed, its units not) when its inbox refuses. */
static bool post_handoff(struct worker_shared *sh, struct handoff *h, int to)
{
	atomic_fetch_add(&sh->servers_in_transit, 1);
	atomic_fetch_add(&sh->lends, 1);
	h->to = sh->workers[to];
	if (inbox_post_owned(&h->to->inbox, take_over_fn, drop_handoff, h) == 0)
		return true;
	atomic_fetch_sub(&sh->servers_in_transit, 1);
	handoff_free(sh, h);
	return false;
}

/*
 * Servers that hold a unit of pool_size: all but the listening connection,
 * which is never released, so it can neither pay a debt nor serve a waiter.
 * A closing one is no longer counted in nservers (server_close).
 */
static int pooled_servers(const struct pool *p)
{
	const struct server *l = p->listen != NULL ? p->listen->server : NULL;

	return p->nservers - (l != NULL && l->state != SERVER_CLOSING);
}

/*
 * Hands the idle server `s` to worker `to`.  False when it cannot move or
 * out of memory: the caller closes it instead.
 */
static bool lend(struct server *s, int to)
{
	struct pool *p = s->pool;
	struct worker *w = p->w;
	struct handoff *h;

	if (!server_can_move(s) || (h = handoff_new(p)) == NULL)
		return false;
	h->s = s;
	server_detach(s);
	p->nservers--;
	track_use(p);
	if (post_handoff(w->shared, h, to)) {
		w->moves.sent++;
	} else {
		server_discard(s, w);
		give_quotas(p, true);
		pool_kick_all(w);
		pool_kick_others(w);
	}
	if (pooled_servers(p) == 0)
		pass_debts(p);
	return true;
}

/*
 * `s`, closing, held its units for worker `to`: they go there, and that
 * worker connects with them.  Freed here, they would be taken again at once
 * by this worker's own waiters (server_close runs pool_maintain before the
 * asker even reads its inbox): with TLS servers, which never move, two busy
 * workers could close and reopen servers for one another while the asker
 * starved.  False when they could not be sent: the caller frees them.
 */
static bool pass_units(struct pool *p, int to)
{
	struct handoff *h = handoff_new(p);

	return h != NULL && post_handoff(p->w->shared, h, to);
}

/* Closes `s` for worker `to`: its units go there (pool_server_gone, pass_units). */
static void close_for(struct server *s, int to)
{
	s->lend_to = to;
	s->pool->w->moves.closed_for++;
	server_close(s, "another worker's clients need the connection");
}

/* Hands `s` to worker `to`, or closes it so that worker connects with its units. */
static void lend_or_close(struct server *s, int to)
{
	if (!lend(s, to))
		close_for(s, to);
}

/*
 * Another tenant's server goes only if that tenant keeps its min_server_conn:
 * its guaranteed server, idle between its transactions, is not the asker's to
 * take (and the asker's own cap, net of that guarantee, could not use it).
 */
static bool may_give_up_a_server(const struct pool *p, const struct lend_request *req)
{
	return (req->tenant != NULL && strcmp(p->tenant, req->tenant) == 0) ||
	       share_above_min(p->share);
}

/*
 * An idle server of the group, not paused: with `movable`, one that can go to
 * the asker now; without, any other not already promised to a worker (TLS,
 * logged in with another statement_timeout, or kept for now by something
 * buffered), to close: left idle, it would never be released again to pay
 * a debt, and the asker would wait for query_wait_timeout.
 */
static struct server *idle_of_group(struct pool_group *g, const struct lend_request *req,
                                    bool movable)
{
	for (struct list_node *pos = g->members.next; pos != &g->members; pos = pos->next) {
		struct pool *p = list_entry(pos, struct pool, group_node);
		bool same = p->statement_timeout_us == req->statement_timeout_us;

		if (p->paused || !may_give_up_a_server(p, req))
			continue;
		/* The least recently used: the asker's waiters take it at once, the hot ones stay.
		 */
		for (struct list_node *spos = p->idle.prev; spos != &p->idle; spos = spos->prev) {
			struct server *s = list_entry(spos, struct server, node);

			if (movable ? same && server_can_move(s)
			            : s->lend_to < 0 && s->listener == NULL)
				return s;
		}
	}
	return NULL;
}

/*
 * The member holding servers, which owes one to `from`; NULL if the group has
 * none it may give up.  A tenant at its min_server_conn owes nothing: paid,
 * its server would go to the asker and be closed there for that tenant again.
 */
static struct pool *holder_of_group(struct pool_group *g, const struct lend_request *req)
{
	for (struct list_node *pos = g->members.next; pos != &g->members; pos = pos->next) {
		struct pool *p = list_entry(pos, struct pool, group_node);

		if (pooled_servers(p) > 0 && may_give_up_a_server(p, req))
			return p;
	}
	return NULL;
}

static void owe(struct pool *p, int to)
{
	for (uint32_t i = 0; i < ring_count(&p->owed); i++)
		if (*(int *)ring_at(&p->owed, i) == to)
			return;
	if (ring_push(&p->owed, &to) == 0)
		p->w->moves.debts++;
}

/*
 * Pays the oldest debt with `s`, just released: false when it must stay for
 * now (something arrived on its socket meanwhile).
 */
static bool repay(struct pool *p, struct server *s)
{
	struct worker *w = p->w;

	if (s->lend_to >= 0 || ring_push(&w->lends, &s) < 0)
		return false;
	ring_pop(&p->owed, &s->lend_to);
	server_set_state(s, SERVER_IDLE);
	loop_schedule_reap(&w->loop);
	return true;
}

/*
 * `p` gave a server to another worker: that may have been its last, so its
 * own waiters ask in turn.  An ask of theirs that ended before ("no worker
 * has a server": this one was busy or pinned then) must not keep them, or
 * those that queue later, from asking now.
 */
static void lent_away(struct pool *p)
{
	p->shed_asked = false;
	pool_maintain(p);
}

void pool_lend_deferred(struct worker *w)
{
	struct server *s;

	while (ring_pop(&w->lends, &s)) {
		struct pool *p = s->pool;
		int to = s->lend_to;

		s->lend_to = -1;
		if (s->state == SERVER_CLOSING)
			continue; /* its units went to the owed worker (pool_server_gone) */
		/* A client here took it meanwhile: its release pays. */
		if (s->state != SERVER_IDLE) {
			owe(p, to);
			continue;
		}
		/*
		 * Idle: lent, or closed for the asker, which connects with its
		 * units, if it cannot move now (bytes still on their way to or from
		 * it).  Owed again instead, it was left idle with nothing to
		 * release it, and this worker's waiters and the asker's waited
		 * until query_wait_timeout.
		 */
		lend_or_close(s, to);
		lent_away(p);
	}
}

static void ask_fn(void *owner, void *arg);

/* A request still in the inbox of a worker that stopped. */
static void drop_lend_request(void *arg)
{
	lend_request_free(arg);
}

/* Passes the request on to the next worker; after the second round it is dropped. */
static void ask_next(struct worker *w, struct lend_request *req)
{
	struct worker_shared *sh = w->shared;
	int next = (w->id + 1) % sh->nworkers;

	if (next == req->from) {
		/*
		 * A second round that met no holder, with no server between workers
		 * then or since: every unit is elsewhere (another group, a connect),
		 * and a close will kick the asker.  Had one moved, the round may have
		 * missed it where it landed: go round again.
		 */
		if (req->second_round && !req->moving && atomic_load(&sh->lends) == req->lends) {
			log_debug(w->log, "w%d %s/%s: no worker has a server for worker %d", w->id,
			          req->dbname, req->user, req->from);
			lend_request_free(req);
			return;
		}
		req->second_round = !req->second_round;
		if (req->second_round) {
			/* In this order: a lend bumps the count in transit first. */
			req->lends = atomic_load(&sh->lends);
			req->moving = atomic_load(&sh->servers_in_transit) > 0;
		}
		next = (next + 1) % sh->nworkers;
	}
	if (sh->workers_stopped ||
	    inbox_post_owned(&sh->workers[next]->inbox, ask_fn, drop_lend_request, req) < 0)
		lend_request_free(req);
}

static void ask_fn(void *owner, void *arg)
{
	struct worker *w = owner;
	struct lend_request *req = arg;
	struct pool_group *g = group_find(w, req->dbname, req->user);
	struct server *s = g != NULL ? idle_of_group(g, req, true) : NULL;
	struct pool *holder;

	if (s != NULL) {
		struct pool *lender = s->pool;

		lend_or_close(s, req->from);
		lent_away(lender);
	} else if (req->second_round && g != NULL && (s = idle_of_group(g, req, false)) != NULL)
		close_for(s, req->from);
	if (s != NULL) {
		lend_request_free(req);
		return;
	}
	if (req->second_round && g != NULL && (holder = holder_of_group(g, req)) != NULL) {
		log_debug(w->log, "w%d %s/%s: owes worker %d a server", w->id, req->dbname,
		          req->user, req->from);
		owe(holder, req->from);
		lend_request_free(req);
		return;
	}
	ask_next(w, req);
}

/*
 * A server of its own that will come free: the pool's queue moves.  One pinned
 * to its client (advisory lock, temporary table...) may never do so, nor the
 * pool's listening connection logging in (count_connecting).
 */
static bool queue_moves(const struct pool *p)
{
	if (!list_empty(&p->idle) || count_connecting(p) > 0)
		return true;
	for (const struct list_node *pos = p->active.next; pos != &p->active; pos = pos->next)
		if (list_entry(pos, struct server, node)->pin == 0)
			return true;
	return false;
}

static void ask_others_to_shed(struct pool *p)
{
	struct worker_shared *sh = p->w->shared;
	struct lend_request *req;

	/* Only a pool whose queue cannot move starves. */
	if (sh->nworkers < 2 || sh->workers_stopped || p->shed_asked || queue_moves(p) ||
	    (list_empty(&p->waiting) && list_empty(&p->login_waiting)))
		return;
	req = lend_request_new(p, p->w->id, true);
	if (req == NULL)
		return;
	p->shed_asked = true;
	p->w->moves.asks++;
	ask_next(p->w, req);
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
	if (w->shared->workers_stopped)
		return;
	for (int i = 0; i < w->shared->nworkers; i++)
		if (i != w->id)
			inbox_post(&w->shared->workers[i]->inbox, kick_fn, NULL);
}

/* Fails every client waiting in the pool: it has no server and cannot open one. */
static void fail_waiters(struct pool *p, const char *sqlstate, const char *msg, const char *hint)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &p->login_waiting)
	{
		struct client *c = list_entry(pos, struct client, wait_node);

		list_del(&c->wait_node);
		client_pool_failed(c, sqlstate, msg, hint);
	}
	list_for_each_safe(pos, tmp, &p->waiting)
	{
		struct client *c = list_entry(pos, struct client, wait_node);

		list_del(&c->wait_node);
		client_pool_failed(c, sqlstate, msg, hint);
	}
}

static void no_host_message(const struct pool *p, const char *why, char *msg, size_t len)
{
	snprintf(msg, len, "no usable host for database \"%s\" (target_session_attrs=%s): %s",
	         p->dbname,
	         target_session_attrs_name(config_target_session_attrs(p->w->cfg, p->db)), why);
}

/*
 * The host for a new server.  With none (every breaker open, or no host of
 * the role wanted), a pool without servers fails its waiters now, with a
 * HINT saying when the next try is, rather than let them wait for
 * query_wait_timeout.
 */
static bool pick_host(struct pool *p, struct host_pick *pick)
{
	int64_t now = worker_now_us(p->w), retry;
	char why[256], msg[400], hint[128];

	if (hosts_pick(&p->hosts, p->w->cfg, p->db, now, pick, &retry, why, sizeof(why)))
		return true;
	if (pooled_servers(p) == 0) {
		no_host_message(p, why, msg, sizeof(msg));
		hosts_hint(retry, now, hint, sizeof(hint));
		fail_waiters(p, SQLSTATE_CONNECTION_FAILURE, msg, hint);
	}
	return false;
}

/* A host picked for a server that could not be made: what the pick claimed goes back. */
static void pick_abandoned(struct pool *p, const struct host_pick *pick)
{
	if (pick->probe)
		breaker_probe_abandoned(p->hosts.b[pick->idx]);
	if (pick->recheck)
		breaker_recheck_done(p->hosts.b[pick->idx]);
}

bool pool_refuse_if_down(struct pool *p, struct client *c)
{
	int64_t now = worker_now_us(p->w), retry;
	char why[256], msg[400], hint[128];

	if (pooled_servers(p) > 0 || p->paused)
		return false;
	if (now < p->retry_after_us) {
		hosts_hint(p->retry_after_us, now, hint, sizeof(hint));
		client_pool_failed(c, p->last_error_state, p->last_error, hint);
		return true;
	}
	if (hosts_usable(&p->hosts, p->w->cfg, p->db, now, &retry, why, sizeof(why)))
		return false;
	no_host_message(p, why, msg, sizeof(msg));
	hosts_hint(retry, now, hint, sizeof(hint));
	client_pool_failed(c, SQLSTATE_CONNECTION_FAILURE, msg, hint);
	return true;
}

/*
 * The reserve (reserve_pool_size, PgBouncer's option): when a client has
 * waited reserve_pool_timeout for a server of a full pool, the pool may open
 * up to reserve_pool_size more.  One timer per pool, armed for the first
 * waiter; a reserve server goes away when it is released with nobody waiting.
 */
static int reserve_size(const struct pool *p)
{
	if (p->db != NULL && p->db->reserve_pool_size != CONFIG_INHERIT)
		return p->db->reserve_pool_size;
	return p->w->cfg->reserve_pool_size;
}

static void reserve_cb(evutil_socket_t fd, short what, void *arg);

/* Arms the timer for the first waiter that has not waited reserve_pool_timeout yet. */
static void arm_reserve_from(struct pool *p, struct list_node *from)
{
	int64_t timeout = p->w->cfg->reserve_pool_timeout_us, now = worker_now_us(p->w);

	if (reserve_size(p) == 0 || from == &p->waiting)
		return;
	if (p->reserve_timer == NULL &&
	    (p->reserve_timer = evtimer_new(p->w->loop.base, reserve_cb, p)) == NULL)
		return; /* out of memory: the pool still serves within its size */
	if (evtimer_pending(p->reserve_timer, NULL))
		return;
	for (struct list_node *pos = from; pos != &p->waiting; pos = pos->next) {
		const struct client *c = list_entry(pos, struct client, wait_node);
		int64_t left = c->wait_start_us + timeout - now;
		struct timeval tv = {.tv_sec = left > 0 ? left / 1000000 : 0,
		                     .tv_usec = left > 0 ? left % 1000000 : 0};

		if (left > 0 || pos == from) {
			evtimer_add(p->reserve_timer, &tv);
			return;
		}
	}
}

static void arm_reserve(struct pool *p)
{
	arm_reserve_from(p, p->waiting.next);
}

/* Opens reserve servers for the clients that have waited reserve_pool_timeout. */
static void reserve_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;
	int64_t timeout = p->w->cfg->reserve_pool_timeout_us, now = worker_now_us(p->w);
	struct host_pick pick;
	int due = 0, want;
	struct list_node *pos;

	if (p->db == NULL || opens_no_servers(p) || now < p->retry_after_us)
		return;
	for (pos = p->waiting.next; pos != &p->waiting; pos = pos->next, due++)
		if (now - list_entry(pos, struct client, wait_node)->wait_start_us < timeout)
			break;
	for (want = due - count_connecting(p); want > 0; want--) {
		struct server *s;

		if (!take_quotas(p, reserve_size(p)))
			return; /* reserve used up: pool_maintain re-arms when a server goes */
		if (!pick_host(p, &pick)) {
			give_quotas(p, true);
			return;
		}
		if ((s = server_new(p, &pick, NULL)) == NULL) {
			give_quotas(p, true);
			pick_abandoned(p, &pick);
			return;
		}
		log_info(p->w->log,
		         "w%d %s/%s: reserve_pool: a client waited %lld ms, opening a server",
		         p->w->id, p->dbname, p->user, (long long)(timeout / 1000));
		track_use(p);
		if (s->state == SERVER_CLOSING)
			return;
	}
	arm_reserve_from(p, pos);
}

/* Opens a server with the units just taken: false when no more should be tried now. */
static bool open_server(struct pool *p)
{
	struct host_pick pick;
	struct server *s;

	if (!pick_host(p, &pick)) {
		give_quotas(p, true);
		return false;
	}
	s = server_new(p, &pick, NULL);
	if (s == NULL) {
		give_quotas(p, true);
		pick_abandoned(p, &pick);
		return false;
	}
	track_use(p);
	/* Failed synchronously (already closed): do not spin on retries. */
	return s->state != SERVER_CLOSING;
}

void pool_maintain(struct pool *p)
{
	int min_size;

	if (p->db == NULL || opens_no_servers(p) || worker_now_us(p->w) < p->retry_after_us ||
	    (p->group->unit_for != NULL && p->group->unit_for != p))
		return;
	/* Servers logging in or resetting, and each one opened here, will serve a waiter soon. */
	for (int serving = count_connecting(p); waiters_exceed(p, serving); serving++) {
		if (worker_now_us(p->w) < p->retry_after_us)
			return;
		if (!take_quotas(p, 0)) {
			ask_others_to_shed(p);
			arm_reserve(p);
			return;
		}
		if (!open_server(p))
			return;
	}
	min_size = config_min_pool_size(p->w->cfg, p->db);
	while (min_size > 0 && worker_now_us(p->w) >= p->retry_after_us &&
	       take_min_unit(p, min_size))
		if (!open_server(p))
			return;
}

void pool_acquire(struct pool *p, struct client *c)
{
	struct list_node *first = p->paused ? NULL : list_first(&p->idle);
	struct server *s = first != NULL ? list_entry(first, struct server, node) : NULL;

	/* Another tenant's idle server, rather than a new connection or a wait. */
	if (s == NULL && !p->paused && p->group->count > 1)
		s = borrow_idle(p);
	/* Idle long: it answers server_check_query first, and the client queues for it. */
	if (s != NULL && server_check_if_stale(s))
		s = NULL;
	if (s != NULL) {
		server_set_state(s, SERVER_ACTIVE);
		client_link(c, s);
		return;
	}
	/* Postgres is down and nothing could serve the client: say so now, not after a wait. */
	if (pooled_servers(p) == 0 && pool_refuse_if_down(p, c))
		return;
	client_set_state(c, CLIENT_WAITING);
	if (list_empty(&p->waiting))
		share_wake(p->share);
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

/*
 * `arrived`: `s` just logged in or was handed over from another worker.  It
 * serves this worker's first waiter before any debt is repaid: repaid at once
 * it would leave unused, and two workers owing each other a server would pass
 * one back and forth (for TLS, closing and reconnecting it) while both their
 * queues waited.  Every arrival serves a transaction: the queues move.
 */
static void release(struct pool *p, struct server *s, bool arrived)
{
	struct list_node *first;
	bool serve_here_first = arrived && !p->paused && !list_empty(&p->waiting);

	if (s->role_reported && !server_follow_reported_role(s)) {
		pool_maintain(p);
		return;
	}
	if (p->pause_closes || server_must_retire(p, s)) {
		const char *why = p->pause_closes ? "pool paused"
		                  : s->close_needed
		                      ? "configuration changed, RECONNECT or state unknown"
		                      : "server_lifetime";

		server_close(s, why);
		pool_maintain(p);
		return;
	}
	/* A worker with no server at all comes before this one's waiters, which have servers. */
	if (ring_count(&p->owed) > 0 && !serve_here_first && repay(p, s))
		return;
	if (p->group->count > 1 || share_contended(p->share)) {
		struct pool *turn = next_turn(p);

		if (turn != NULL)
			share_charge(turn->share);
		if (turn != NULL && turn != p) {
			hand_over(s, turn);
			/* That may have been its last server: its own waiters ask other workers. */
			if (!list_empty(&p->waiting))
				pool_maintain(p);
			return;
		}
		/* It holds a unit another tenant is entitled to (a guarantee raised, or joined
		 * late). */
		if (turn == NULL && !fair_may_hold(p, p)) {
			server_close(s, "another tenant's min_server_conn needs the connection");
			return;
		}
	}
	first = p->paused ? NULL : list_first(&p->waiting);
	if (first == NULL && atomic_load(&p->pool_quota->used) > pool_size(p)) {
		server_close(s, "reserve_pool: no client waits for it");
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

void pool_release(struct pool *p, struct server *s)
{
	release(p, s, false);
}

/* The first login of a group: welcome the members' clients waiting for it. */
static void share_defaults(struct pool *p)
{
	struct list_node *pos, *cpos, *tmp;

	for (pos = p->group->members.next; pos != &p->group->members; pos = pos->next) {
		struct pool *other = list_entry(pos, struct pool, group_node);

		if (other == p || other->have_defaults)
			continue;
		borrow_defaults(other);
		list_for_each_safe(cpos, tmp, &other->login_waiting)
		{
			struct client *c = list_entry(cpos, struct client, wait_node);

			list_del(&c->wait_node);
			client_login_ready(c);
		}
	}
}

/* A server's parameters, at its login or from its last worker: welcome the login waiters. */
static void learn_defaults(struct pool *p, const struct param_list *params)
{
	struct list_node *pos, *tmp;

	if (!p->have_defaults) {
		param_list_copy(&p->defaults, params);
		p->have_defaults = true;
		p->defaults_generation++;
		share_defaults(p);
	}
	list_for_each_safe(pos, tmp, &p->login_waiting)
	{
		struct client *c = list_entry(pos, struct client, wait_node);

		list_del(&c->wait_node);
		client_login_ready(c);
	}
}

void pool_server_ready(struct pool *p, struct server *s)
{
	p->retry_after_us = 0;
	p->db_missing = false;
	learn_defaults(p, &s->params);
	release(p, s, true);
}

void pool_connect_failed(struct pool *p, const char *sqlstate, const char *msg, bool host_down)
{
	int64_t now = worker_now_us(p->w), retry;
	char why[256], hint[128];

	snprintf(p->last_error_state, sizeof(p->last_error_state), "%s", sqlstate);
	snprintf(p->last_error, sizeof(p->last_error), "%s", msg);
	if (!host_down)
		p->retry_after_us = now + p->w->cfg->server_login_retry_us;
	/*
	 * A name Postgres says does not exist: keep nothing for it (no backoff
	 * either) once its clients are gone, even if it once logged in.
	 */
	if (p->is_auto && strcmp(sqlstate, SQLSTATE_INVALID_CATALOG_NAME) == 0) {
		p->db_missing = true;
		track_use(p);
	}
	/* Servers still alive (or just opened on another host) will serve the queue. */
	if (pooled_servers(p) > 0)
		return;
	if (!host_down)
		hosts_hint(p->retry_after_us, now, hint, sizeof(hint));
	else if (!hosts_usable(&p->hosts, p->w->cfg, p->db, now, &retry, why, sizeof(why)))
		hosts_hint(retry, now, hint, sizeof(hint));
	else
		hint[0] = '\0';
	fail_waiters(p, sqlstate, msg, hint[0] ? hint : NULL);
}

struct server *pool_open_listener(struct pool *p, struct listener *l)
{
	struct host_pick pick;
	struct server *s;

	if (p->db == NULL || !take_quotas_of(p, 0, false))
		return NULL;
	if (!pick_host(p, &pick)) {
		give_quotas(p, false);
		return NULL;
	}
	if ((s = server_new(p, &pick, l)) == NULL) {
		give_quotas(p, false);
		pick_abandoned(p, &pick);
		return NULL;
	}
	track_use(p);
	return s;
}

void pool_server_gone(struct pool *p, struct server *s)
{
	p->nservers--;
	/* Closed for a worker owed a server: its units go there, not back to the shared caps. */
	if (s->listener != NULL || s->lend_to < 0 || !pass_units(p, s->lend_to))
		give_quotas(p, s->listener == NULL);
	track_use(p);
	/* The unit came free: the workers owed one are kicked, and connect with it. */
	if (s->listener == NULL && pooled_servers(p) == 0)
		ring_clear(&p->owed);
	/*
	 * Its waiters may ask the others again: an ask of theirs that ended
	 * ("no worker has a server") counted on this server, and the unit it
	 * freed may be taken by another worker before one of them queues.
	 */
	p->shed_asked = false;
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

/*
 * Does a server opened under `old` still match `def`?  The role asked is the
 * one in effect: a database without its own follows [sluice]'s.
 */
static bool connection_changed(const struct config *old_cfg, const struct db_def *old,
                               const struct config *cfg, const struct db_def *def)
{
	return str_differs(old->host, def->host) || str_differs(old->ports, def->ports) ||
	       config_target_session_attrs(old_cfg, old) != config_target_session_attrs(cfg, def) ||
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

/*
 * A reload may move a name between its own entry and "*": a pool becomes
 * auto (counted, without the cap: it already exists) or stops being one.
 * One whose "*" entry was removed stays auto and goes once its clients do.
 */
static void follow_auto(struct pool *p, const struct db_def *def)
{
	struct quota_registry *reg = &p->w->shared->quotas;

	if (def == NULL || is_auto_db(def) == p->is_auto)
		return;
	if (is_auto_db(def)) {
		p->auto_quota = quota_find_capped(reg, "autodb", p->dbname, 0);
		p->is_auto = true;
		track_use(p);
		return;
	}
	quota_put(reg, p->auto_quota);
	p->auto_quota = NULL;
	p->is_auto = false;
	p->db_missing = false;
	p->dying = false;
	if (list_linked(&p->unused_node))
		list_del(&p->unused_node);
}

void pool_reconfigure(struct pool *p, const struct config *old_cfg)
{
	const struct db_def *def = config_find_db(p->w->cfg, p->dbname);
	bool changed =
	    def == NULL || p->db == NULL || connection_changed(old_cfg, p->db, p->w->cfg, def);

	follow_auto(p, def);
	if (changed) {
		hosts_detach(&p->hosts, &p->w->shared->breakers);
		hosts_attach(&p->hosts, &p->w->shared->breakers, def, p->hosts.rng, p->hosts.turn);
	}
	p->db = def;
	p->udef = config_find_user(p->w->cfg, p->user);
	resolve_settings(p);
	if (changed) {
		/* Servers were opened with the old definition: retire them as they come free. */
		mark_retire(&p->active);
		mark_retire(&p->pending);
		close_list(&p->idle, "configuration changed");
		listen_pool_retire(p);
	}
	/*
	 * A reload is how a refused server login gets fixed (a password in
	 * auth_file, [databases] or [users]; a rotated role): the next client
	 * tries at once instead of waiting out server_login_retry.
	 */
	p->retry_after_us = 0;
	if (def == NULL) {
		pool_connect_failed(p, SQLSTATE_INVALID_CATALOG_NAME,
		                    "database was removed from the configuration", false);
		return;
	}
	pool_maintain(p);
}

void pool_set_paused(struct pool *p, bool paused, bool close_servers)
{
	p->paused = paused;
	p->pause_closes = paused && close_servers;
	if (p->listen != NULL)
		listen_pool_paused(p);
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
	listen_pool_retire(p);
	pool_maintain(p);
}

void pool_stats_tick(struct pool *p, int64_t now_us)
{
	p->stats_prev = p->stats_last;
	p->stats_prev_us = p->stats_last_us;
	p->stats_last = p->stats;
	p->stats_last_us = now_us;
}
