/*
 * auth_query; see auth_query.h.
 */
#include "pool/auth_query.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/client.h"
#include "config/config.h"
#include "base/list.h"
#include "proto/sqlstate.h"
#include "net/tls.h"
#include "pool/worker.h"

enum aq_state { AQ_RESOLVING, AQ_CONNECTING, AQ_IDLE, AQ_BUSY, AQ_BROKEN };

/* One dedicated connection: a database entry's server, as auth_user. */
struct aq_conn {
	struct list_node node; /* w->auth_queries */
	struct worker *w;
	char *dbname;     /* [databases] entry name */
	PGconn *pg;       /* NULL while resolving */
	struct event *ev; /* readiness of pg's socket */
	struct evdns_getaddrinfo_request *dns;
	enum aq_state state;
	struct list_node waiting; /* clients, by wait_node; the first one's user is asked */
	char *asking;             /* user name of the lookup in flight */
};

/* A cached answer. */
struct aq_answer {
	struct list_node node; /* w->auth_cache */
	char *dbname, *user;
	char *secret; /* as Postgres stored it; NULL = no such user (or no password) */
	int64_t expires_us;
};

static void aq_step(struct aq_conn *q);

static void free_text(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

static void answer_free(struct aq_answer *a)
{
	list_del(&a->node);
	free(a->dbname);
	free(a->user);
	free_text(a->secret);
	free(a);
}

static struct aq_answer *cached(struct worker *w, const char *dbname, const char *user)
{
	struct list_node *pos, *tmp;
	int64_t now = worker_now_us(w);

	list_for_each_safe(pos, tmp, &w->auth_cache)
	{
		struct aq_answer *a = list_entry(pos, struct aq_answer, node);

		if (a->expires_us <= now) {
			answer_free(a);
			continue;
		}
		if (strcmp(a->dbname, dbname) == 0 && strcmp(a->user, user) == 0)
			return a;
	}
	return NULL;
}

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

/* The connection is unusable: fail its waiters and let the next lookup start afresh. */
static void aq_broken(struct aq_conn *q, const char *why)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "%s", why);
	log_warn(q->w->log, "w%d auth_query connection for database %s: %s", q->w->id, q->dbname,
	         msg);
	q->state = AQ_BROKEN;
	if (q->ev != NULL) {
		event_free(q->ev);
		q->ev = NULL;
	}
	if (q->pg != NULL) {
		PQfinish(q->pg);
		q->pg = NULL;
	}
	free(q->asking);
	q->asking = NULL;
	fail_waiters(q, msg);
}

static void aq_event_cb(evutil_socket_t fd, short what, void *arg)
{
	aq_step(arg);
}

/* Wait for the socket (it may change while libpq tries addresses). */
static void aq_wait(struct aq_conn *q, short what)
{
	if (q->ev != NULL)
		event_free(q->ev);
	q->ev = event_new(q->w->loop.base, PQsocket(q->pg), what, aq_event_cb, q);
	if (q->ev == NULL || event_add(q->ev, NULL) < 0)
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
	snprintf(port, sizeof(port), "%d", db->port);
	keys[n] = "host", values[n++] = db->host;
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
	if (db->host[0] == '/' || inet_pton(AF_INET, db->host, buf) == 1 ||
	    inet_pton(AF_INET6, db->host, buf) == 1) {
		aq_connect(q, NULL);
		return;
	}
	q->state = AQ_RESOLVING;
	q->dns = evdns_getaddrinfo(q->w->loop.dns, db->host, NULL, &hints, resolved_cb, q);
}

/* The answer to the lookup in flight: cache it and hand it to every waiter with that user. */
static void aq_answer(struct aq_conn *q, PGresult *res)
{
	struct worker *w = q->w;
	const char *secret = NULL;
	struct list_node *pos, *tmp;
	struct aq_answer *a;

	if (PQntuples(res) > 0 && PQnfields(res) >= 2 && !PQgetisnull(res, 0, 1))
		secret = PQgetvalue(res, 0, 1);
	if (w->cfg->auth_query_cache_ttl_us > 0 && (a = calloc(1, sizeof(*a))) != NULL) {
		a->dbname = strdup(q->dbname);
		a->user = strdup(q->asking);
		a->secret = secret != NULL ? strdup(secret) : NULL;
		a->expires_us = worker_now_us(w) + w->cfg->auth_query_cache_ttl_us;
		list_add_tail(&w->auth_cache, &a->node);
		if (a->dbname == NULL || a->user == NULL || (secret != NULL && a->secret == NULL))
			answer_free(a);
	}
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
		/* Watched while idle, so a connection Postgres closed is noticed and dropped. */
		q->state = AQ_IDLE;
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
			event_free(q->ev);
			q->ev = NULL;
			PQfinish(q->pg);
			q->pg = NULL;
			q->state = AQ_BROKEN; /* reconnected at the next lookup */
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

static struct aq_conn *conn_for(struct worker *w, const char *dbname)
{
	struct list_node *pos;
	struct aq_conn *q;

	for (pos = w->auth_queries.next; pos != &w->auth_queries; pos = pos->next) {
		q = list_entry(pos, struct aq_conn, node);
		if (strcmp(q->dbname, dbname) == 0)
			return q;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL || (q->dbname = strdup(dbname)) == NULL) {
		free(q);
		return NULL;
	}
	q->w = w;
	q->state = AQ_BROKEN; /* not connected yet */
	list_init(&q->waiting);
	list_add_tail(&w->auth_queries, &q->node);
	return q;
}

bool auth_query_lookup(struct client *c)
{
	const struct db_def *db = config_find_db(c->w->cfg, c->dbname);
	struct aq_answer *a;
	struct aq_conn *q;

	if (db == NULL) {
		c->auth_queried = true; /* unknown database: fails like an unknown user */
		return true;
	}
	/* Keyed by the client's database name: a "*" entry serves many databases. */
	if ((a = cached(c->w, c->dbname, c->user)) != NULL) {
		hand_answer(c, a->secret);
		return true;
	}
	if ((q = conn_for(c->w, c->dbname)) == NULL) {
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return false;
	}
	list_add_tail(&q->waiting, &c->wait_node);
	if (q->state == AQ_BROKEN)
		aq_start(q);
	else if (q->state == AQ_IDLE) {
		event_del(q->ev);
		aq_ask_next(q);
	}
	return false;
}

void auth_query_fini(struct worker *w)
{
	struct list_node *pos, *tmp;

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
		free(q->asking);
		free(q->dbname);
		free(q);
	}
	list_for_each_safe(pos, tmp, &w->auth_cache)
	{
		answer_free(list_entry(pos, struct aq_answer, node));
	}
}
