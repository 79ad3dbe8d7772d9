/*
 * auth_query; see auth_query.h.
 */
#include "pool/auth_query.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/list.h"
#include "config/config.h"
#include "net/loop.h"
#include "net/tls.h"
#include "pool/client.h"
#include "pool/worker.h"
#include "proto/sqlstate.h"

/*
 * Postgres' longest name (NAMEDATALEN - 1): answers for longer database or
 * user names are not cached, so one cache entry costs at most ~0.25 kB.
 */
#define AQ_CACHE_NAME_MAX 63

enum aq_state { AQ_NEW, AQ_RESOLVING, AQ_CONNECTING, AQ_IDLE, AQ_BUSY, AQ_CLOSED };

/* One dedicated connection: a database entry's server, as auth_user. */
struct aq_conn {
	struct list_node node;      /* w->auth_queries; w->auth_dead once closed */
	struct list_node idle_node; /* w->auth_idle while AQ_IDLE */
	struct worker *w;
	char *dbname;     /* the client's database name ("*" serves many) */
	PGconn *pg;       /* NULL while resolving */
	struct event *ev; /* readiness of pg's socket, with the state's timeout */
	struct evdns_getaddrinfo_request *dns;
	enum aq_state state;
	struct list_node waiting; /* clients, by wait_node; the first one's user is asked */
	char *asking;             /* user name of the lookup in flight */
};

static void aq_step(struct aq_conn *q);

/* Gives the client its own copy of the answer (the cache entry may expire mid-login). */
static void hand_answer(struct client *c, const char *secret)
{
	c->auth_queried = true;
	if (secret == NULL)
		return;
	c->queried_secret = calloc(1, sizeof(*c->queried_secret));
	if (c->queried_secret != NULL &&
	    user_secret_from_text(c->queried_secret, c->user, secret) < 0) {
		free(c->queried_secret);
		c->queried_secret = NULL;
	}
}

static void fail_waiters(struct aq_conn *q, const char *why)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &q->waiting)
	{
		struct client *c = list_entry(pos, struct client, wait_node);

		list_del(&c->wait_node);
		client_fail(c, SQLSTATE_CONNECTION_FAILURE, "auth_query failed: %s", why);
	}
}

/*
 * Closes the connection and forgets it: the reaper frees it after this loop
 * turn (callbacks of q may still be on the stack).  A later lookup for the
 * same name makes a new one.  Its waiters must be gone.
 */
static void aq_close(struct aq_conn *q)
{
	struct worker *w = q->w;

	if (q->state == AQ_CLOSED)
		return;
	if (q->dns != NULL) {
		evdns_getaddrinfo_cancel(q->dns); /* resolved_cb sees EAI_CANCEL and leaves q */
		q->dns = NULL;
	}
	if (q->ev != NULL) {
		event_free(q->ev);
		q->ev = NULL;
	}
	if (q->pg != NULL) {
		PQfinish(q->pg);
		q->pg = NULL;
	}
	if (list_linked(&q->idle_node))
		list_del(&q->idle_node);
	q->state = AQ_CLOSED;
	list_del(&q->node);
	w->nauth_queries--;
	list_add_tail(&w->auth_dead, &q->node);
	loop_schedule_reap(&w->loop);
}

/* The connection is unusable: fail its waiters and close it; the next lookup starts afresh. */
static void aq_broken(struct aq_conn *q, const char *why)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "%s", why);
	log_warn(q->w->log, "w%d auth_query connection for database %s: %s", q->w->id, q->dbname,
	         msg);
	fail_waiters(q, msg);
	aq_close(q);
}

static void aq_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct aq_conn *q = arg;

	if (!(what & EV_TIMEOUT)) {
		aq_step(q);
	} else if (q->state == AQ_IDLE) {
		log_debug(q->w->log, "w%d auth_query connection for database %s: idle, closed",
		          q->w->id, q->dbname);
		aq_close(q);
	} else {
		aq_broken(q, q->state == AQ_CONNECTING ? "server_connect_timeout: no connection"
		                                       : "client_login_timeout: no answer");
	}
}

/*
 * Wait for the socket (it may change while libpq tries addresses), at most
 * for the state's time: server_connect_timeout to connect,
 * client_login_timeout for an answer, server_idle_timeout while idle.
 */
static void aq_wait(struct aq_conn *q, short what)
{
	const struct config *cfg = q->w->cfg;
	int64_t us = q->state == AQ_CONNECTING ? cfg->server_connect_timeout_us
	             : q->state == AQ_IDLE     ? cfg->server_idle_timeout_us
	                                       : cfg->client_login_timeout_us;
	struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};

	if (q->ev != NULL)
		event_free(q->ev);
	q->ev = event_new(q->w->loop.base, PQsocket(q->pg), what, aq_event_cb, q);
	if (q->ev == NULL || event_add(q->ev, us > 0 ? &tv : NULL) < 0)
		aq_broken(q, "out of memory");
}

static void aq_connect(struct aq_conn *q, const char *hostaddr)
{
	const struct config *cfg = q->w->cfg;
	const struct db_def *db = config_find_db(cfg, q->dbname);
	const struct user_secret *login = auth_file_find(&cfg->auth, cfg->auth_user);
	const char *password = db != NULL && db->password != NULL ? db->password
	                       : login != NULL                    ? login->plain
	                                                          : NULL;
	const char *keys[12], *values[12];
	char port[16];
	int n = 0;

	if (db == NULL) {
		aq_broken(q, "the database was removed");
		return;
	}
	snprintf(port, sizeof(port), "%d", db->hosts[0].port);
	keys[n] = "host", values[n++] = db->hosts[0].host;
	if (hostaddr != NULL)
		keys[n] = "hostaddr", values[n++] = hostaddr;
	keys[n] = "port", values[n++] = port;
	keys[n] = "dbname", values[n++] = db->dbname != NULL ? db->dbname : q->dbname;
	keys[n] = "user", values[n++] = cfg->auth_user;
	if (password != NULL)
		keys[n] = "password", values[n++] = password;
	keys[n] = "sslmode", values[n++] = sslmode_name(tls_server_sslmode(cfg, db));
	if (db->sslrootcert != NULL || cfg->server_tls_ca_file[0] != '\0')
		keys[n] = "sslrootcert",
		values[n++] = db->sslrootcert != NULL ? db->sslrootcert : cfg->server_tls_ca_file;
	keys[n] = "application_name", values[n++] = "sluice auth_query";
	keys[n] = NULL, values[n] = NULL;
	q->pg = PQconnectStartParams(keys, values, 0);
	if (q->pg == NULL || PQstatus(q->pg) == CONNECTION_BAD) {
		aq_broken(q, q->pg != NULL ? PQerrorMessage(q->pg) : "out of memory");
		return;
	}
	q->state = AQ_CONNECTING;
	aq_wait(q, EV_WRITE);
}

static void resolved_cb(int err, struct evutil_addrinfo *res, void *arg)
{
	struct aq_conn *q = arg;
	char ip[INET6_ADDRSTRLEN];

	if (err == EVUTIL_EAI_CANCEL) { /* shutdown: q is gone */
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	q->dns = NULL;
	if (err != 0 || res == NULL) {
		aq_broken(q, evutil_gai_strerror(err));
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	if (res->ai_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof(ip));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, ip,
		          sizeof(ip));
	evutil_freeaddrinfo(res);
	aq_connect(q, ip);
}

/* libpq resolves host names with a blocking call: resolve them here first. */
static void aq_start(struct aq_conn *q)
{
	const struct db_def *db = config_find_db(q->w->cfg, q->dbname);
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	unsigned char buf[16];

	if (db == NULL) {
		aq_broken(q, "the database was removed");
		return;
	}
	if (db->hosts[0].host[0] == '/' || inet_pton(AF_INET, db->hosts[0].host, buf) == 1 ||
	    inet_pton(AF_INET6, db->hosts[0].host, buf) == 1) {
		aq_connect(q, NULL);
		return;
	}
	q->state = AQ_RESOLVING;
	q->dns = evdns_getaddrinfo(q->w->loop.dns, db->hosts[0].host, NULL, &hints, resolved_cb, q);
}

/* The answer to the lookup in flight: cache it and hand it to every waiter with that user. */
static void aq_answer(struct aq_conn *q, PGresult *res)
{
	struct worker *w = q->w;
	const char *secret = NULL;
	int64_t now = worker_now_us(w);
	struct list_node *pos, *tmp;

	if (PQntuples(res) > 0 && PQnfields(res) >= 2 && !PQgetisnull(res, 0, 1))
		secret = PQgetvalue(res, 0, 1);
	/* Out of memory only means no caching. */
	if (w->cfg->auth_query_cache_ttl_us > 0 && strlen(q->dbname) <= AQ_CACHE_NAME_MAX &&
	    strlen(q->asking) <= AQ_CACHE_NAME_MAX)
		(void)secret_cache_put(&w->auth_cache, q->dbname, q->asking, secret, now,
		                       now + w->cfg->auth_query_cache_ttl_us);
	list_for_each_safe(pos, tmp, &q->waiting)
	{
		struct client *c = list_entry(pos, struct client, wait_node);

		if (strcmp(c->user, q->asking) != 0)
			continue;
		list_del(&c->wait_node);
		hand_answer(c, secret);
		c->handler->wake(c);
	}
}

static void aq_ask_next(struct aq_conn *q)
{
	const char *params[1];
	struct client *first;

	if (list_empty(&q->waiting)) {
		/*
		 * Watched while idle, so a connection Postgres closed is noticed and
		 * dropped; closed after server_idle_timeout, or sooner for another
		 * database name once this worker's share of AUTH_QUERY_MAX_CONNS
		 * is open.
		 */
		q->state = AQ_IDLE;
		list_add_tail(&q->w->auth_idle, &q->idle_node);
		aq_wait(q, EV_READ);
		return;
	}
	first = list_entry(q->waiting.next, struct client, wait_node);
	q->asking = strdup(first->user);
	params[0] = q->asking;
	if (q->asking == NULL ||
	    !PQsendQueryParams(q->pg, q->w->cfg->auth_query, 1, NULL, params, NULL, NULL, 0)) {
		aq_broken(q, q->asking == NULL ? "out of memory" : PQerrorMessage(q->pg));
		return;
	}
	q->state = AQ_BUSY;
	aq_wait(q, PQflush(q->pg) == 1 ? EV_READ | EV_WRITE : EV_READ);
}

static void aq_step(struct aq_conn *q)
{
	PGresult *res;

	if (q->state == AQ_CONNECTING) {
		switch (PQconnectPoll(q->pg)) {
		case PGRES_POLLING_READING:
			aq_wait(q, EV_READ);
			return;
		case PGRES_POLLING_WRITING:
			aq_wait(q, EV_WRITE);
			return;
		case PGRES_POLLING_OK:
			PQsetnonblocking(q->pg, 1);
			aq_ask_next(q);
			return;
		default:
			aq_broken(q, PQerrorMessage(q->pg));
			return;
		}
	}
	if (q->state == AQ_IDLE) {
		if (!PQconsumeInput(q->pg) || PQstatus(q->pg) == CONNECTION_BAD) {
			aq_close(q); /* a new one at the next lookup */
			return;
		}
		aq_wait(q, EV_READ);
		return;
	}
	if (q->state != AQ_BUSY)
		return;
	if (PQflush(q->pg) == 1) {
		aq_wait(q, EV_READ | EV_WRITE);
		return;
	}
	if (!PQconsumeInput(q->pg)) {
		aq_broken(q, PQerrorMessage(q->pg));
		return;
	}
	if (PQisBusy(q->pg)) {
		aq_wait(q, EV_READ);
		return;
	}
	while ((res = PQgetResult(q->pg)) != NULL) {
		if (PQresultStatus(res) == PGRES_TUPLES_OK) {
			aq_answer(q, res);
		} else {
			char why[256];

			snprintf(why, sizeof(why), "%s", PQresultErrorMessage(res));
			why[strcspn(why, "\n")] = '\0';
			PQclear(res);
			aq_broken(q, why);
			return;
		}
		PQclear(res);
	}
	free(q->asking);
	q->asking = NULL;
	aq_ask_next(q);
}

/*
 * This worker's share of AUTH_QUERY_MAX_CONNS: made-up database names on
 * every worker must not take more of Postgres' connection slots than one
 * worker would, however many cores workers = auto finds.
 */
static int aq_cap(const struct worker *w)
{
	int cap = AUTH_QUERY_MAX_CONNS / w->shared->nworkers;

	return cap > 0 ? cap : 1;
}

/*
 * The connection for dbname, or a new one (not connected yet).  Past this
 * worker's share of AUTH_QUERY_MAX_CONNS the longest idle one is closed to
 * make room; when none is idle, NULL with *full set.
 */
static struct aq_conn *conn_for(struct worker *w, const char *dbname, bool *full)
{
	struct list_node *pos;
	struct aq_conn *q;

	*full = false;
	for (pos = w->auth_queries.next; pos != &w->auth_queries; pos = pos->next) {
		q = list_entry(pos, struct aq_conn, node);
		if (strcmp(q->dbname, dbname) == 0)
			return q;
	}
	if (w->nauth_queries >= aq_cap(w)) {
		if (list_empty(&w->auth_idle)) {
			*full = true;
			return NULL;
		}
		aq_close(list_entry(w->auth_idle.next, struct aq_conn, idle_node));
	}
	if ((q = calloc(1, sizeof(*q))) == NULL || (q->dbname = strdup(dbname)) == NULL) {
		free(q);
		return NULL;
	}
	q->w = w;
	q->state = AQ_NEW;
	list_init(&q->waiting);
	list_init(&q->idle_node);
	list_add_tail(&w->auth_queries, &q->node);
	w->nauth_queries++;
	return q;
}

bool auth_query_lookup(struct client *c)
{
	struct worker *w = c->w;
	/* auth_dbname: one database answers for all, so one connection and cache serve them. */
	const char *dbname = w->cfg->auth_dbname[0] != '\0' ? w->cfg->auth_dbname : c->dbname;
	const struct db_def *db = config_find_db(w->cfg, dbname);
	const char *secret;
	struct aq_conn *q;
	bool full;

	if (db == NULL) {
		c->auth_queried = true; /* unknown database: fails like an unknown user */
		return true;
	}
	/* Keyed by the client's database name: a "*" entry serves many databases. */
	if (w->cfg->auth_query_cache_ttl_us > 0 &&
	    secret_cache_get(&w->auth_cache, dbname, c->user, worker_now_us(w), &secret)) {
		hand_answer(c, secret);
		return true;
	}
	if ((q = conn_for(w, dbname, &full)) == NULL) {
		if (!full) {
			client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
			return false;
		}
		/* Every connection is busy: fail like an unknown user, never wait unbounded. */
		log_warn(
		    w->log,
		    "w%d auth_query: %d connections busy, database %s answered as unknown user",
		    w->id, aq_cap(w), dbname);
		c->auth_queried = true;
		return true;
	}
	list_add_tail(&q->waiting, &c->wait_node);
	if (q->state == AQ_NEW) {
		aq_start(q);
	} else if (q->state == AQ_IDLE) {
		list_del(&q->idle_node);
		event_del(q->ev);
		aq_ask_next(q);
	}
	return false;
}

int auth_query_init(struct worker *w)
{
	list_init(&w->auth_queries);
	list_init(&w->auth_idle);
	list_init(&w->auth_dead);
	w->nauth_queries = 0;
	return secret_cache_init(&w->auth_cache, AUTH_QUERY_CACHE_MAX);
}

void auth_query_reap(struct worker *w)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->auth_dead)
	{
		struct aq_conn *q = list_entry(pos, struct aq_conn, node);

		list_del(&q->node);
		free(q->asking);
		free(q->dbname);
		free(q);
	}
}

void auth_query_fini(struct worker *w)
{
	struct list_node *pos, *tmp;

	if (w->auth_dead.next == NULL)
		return; /* auth_query_init never ran */
	list_for_each_safe(pos, tmp, &w->auth_queries)
	{
		struct aq_conn *q = list_entry(pos, struct aq_conn, node);

		if (q->dns != NULL)
			evdns_getaddrinfo_cancel(q->dns);
		if (q->ev != NULL)
			event_free(q->ev);
		if (q->pg != NULL)
			PQfinish(q->pg);
		list_del(&q->node);
		list_add_tail(&w->auth_dead, &q->node);
	}
	auth_query_reap(w);
	secret_cache_fini(&w->auth_cache);
}
