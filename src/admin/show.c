/*
 * Console SHOW commands, with PgBouncer's column names and order and
 * sluice's own columns appended.  Values come from every worker: each one
 * counts its own pools, clients and servers into a census (census.c) or
 * renders its SHOW CLIENTS / SERVERS rows, and the console's worker renders
 * the census sums and sends the rows.  SHOW of a driver probe parameter
 * (SHOW client_encoding ...) is answered by the console's probes.
 */
#define _GNU_SOURCE /* struct ucred */
#include "admin/show.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "admin/census.h"
#include "admin/console.h"
#include "admin/tenants.h"
#include "base/list.h"
#include "config/config.h"
#include "net/conn.h"
#include "net/tls.h"
#include "observe/latency.h"
#include "observe/queries.h"
#include "pool/listen.h"
#include "pool/client.h"
#include "pool/pause.h"
#include "pool/prepared.h"
#include "pool/pool.h"
#include "pool/server.h"
#include "pool/worker.h"
#include "proto/build.h"
#include "proto/params.h"
#include "proto/sqlstate.h"
#include "runtime/procstat.h"

#define T        ADMIN_TEXT
#define I4       ADMIN_INT4
#define I8       ADMIN_INT8
#define NUM      ADMIN_NUMERIC
#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))
#define ROW_MAX  48

/* ---- one result row ---- */

struct row {
	size_t n;                  /* values so far */
	const char *vals[ROW_MAX]; /* NULL = SQL NULL */
	char buf[ROW_MAX][64];     /* storage for numbers, times and TLS descriptions */
};

static void put_str(struct row *r, const char *s)
{
	if (r->n < ROW_MAX)
		r->vals[r->n++] = s;
}

static void put_fmt(struct row *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put_fmt(struct row *r, const char *fmt, ...)
{
	va_list ap;

	if (r->n >= ROW_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(r->buf[r->n], sizeof(r->buf[r->n]), fmt, ap);
	va_end(ap);
	r->vals[r->n] = r->buf[r->n];
	r->n++;
}

static void put_u64(struct row *r, uint64_t v)
{
	put_fmt(r, "%" PRIu64, v);
}

static void put_i64(struct row *r, int64_t v)
{
	put_fmt(r, "%" PRId64, v);
}

/* A time of the workers' clock (loop_now_us) as PgBouncer prints timestamps. */
static void put_time(struct row *r, int64_t us)
{
	time_t t = (time_t)(loop_wall_us(us) / 1000000);
	struct tm tm;

	if (r->n >= ROW_MAX)
		return;
	gmtime_r(&t, &tm);
	strftime(r->buf[r->n], sizeof(r->buf[r->n]), "%Y-%m-%d %H:%M:%S UTC", &tm);
	r->vals[r->n] = r->buf[r->n];
	r->n++;
}

/* The connection's TLS version and cipher, "" for a plain one (PgBouncer's tls column). */
static void put_tls(struct row *r, struct bufferevent *tls_bev)
{
	if (r->n >= ROW_MAX)
		return;
	r->buf[r->n][0] = '\0';
	if (tls_bev != NULL)
		tls_describe(tls_bev, r->buf[r->n], sizeof(r->buf[r->n]));
	r->vals[r->n] = r->buf[r->n];
	r->n++;
}

static void row_to(struct evbuffer *out, const struct row *r)
{
	build_data_row(out, r->n, r->vals);
}

static void row_send(struct console_conn *conn, const struct row *r)
{
	console_reply_row(conn, r->n, r->vals);
}

/* ---- SHOW POOLS ---- */

static const struct console_col pools_cols[] = {
    {"database", T},
    {"user", T},
    {"cl_active", I4},
    {"cl_waiting", I4},
    {"cl_active_cancel_req", I4},
    {"cl_waiting_cancel_req", I4},
    {"sv_active", I4},
    {"sv_active_cancel", I4},
    {"sv_being_canceled", I4},
    {"sv_idle", I4},
    {"sv_used", I4},
    {"sv_tested", I4},
    {"sv_login", I4},
    {"maxwait", I4},
    {"maxwait_us", I4},
    {"pool_mode", T},
    {"load_balance_hosts", T},
    /* sluice */
    {"cl_idle", I4},
    {"cl_login", I4},
    {"paused", I4},
};

static void render_pools(struct console_conn *conn, struct console_op *op)
{
	struct census_merged m;

	census_merge_pools(op, false, &m);
	console_reply_header(conn, pools_cols, NCOLS(pools_cols));
	for (size_t i = 0; i < m.n; i++) {
		const struct census_pool *p = &m.recs[i];
		struct row r = {0};

		put_str(&r, p->db);
		put_str(&r, p->user);
		put_i64(&r, p->cl_idle + p->cl_active);
		put_i64(&r, p->cl_waiting);
		put_i64(&r, 0);
		put_i64(&r, 0);
		put_i64(&r, p->sv_active);
		put_i64(&r, p->sv_cancels);
		put_i64(&r, p->sv_being_canceled);
		put_i64(&r, p->sv_idle);
		put_i64(&r, 0);
		put_i64(&r, p->sv_tested);
		put_i64(&r, p->sv_login);
		put_i64(&r, p->maxwait_us / 1000000);
		put_i64(&r, p->maxwait_us % 1000000);
		put_str(&r, pool_mode_name(p->mode));
		put_str(&r, NULL);
		put_i64(&r, p->cl_idle);
		put_i64(&r, p->cl_login);
		put_i64(&r, p->paused);
		row_send(conn, &r);
	}
	free(m.recs);
}

/* ---- SHOW STATS, STATS_TOTALS, STATS_AVERAGES, TOTALS ---- */

static const struct console_col stats_cols[] = {
    {"database", T},
    {"total_server_assignment_count", NUM},
    {"total_xact_count", NUM},
    {"total_query_count", NUM},
    {"total_received", NUM},
    {"total_sent", NUM},
    {"total_xact_time", NUM},
    {"total_query_time", NUM},
    {"total_wait_time", NUM},
    {"total_client_parse_count", NUM},
    {"total_server_parse_count", NUM},
    {"total_bind_count", NUM},
    {"total_client_login_count", NUM},
    {"avg_server_assignment_count", NUM},
    {"avg_xact_count", NUM},
    {"avg_query_count", NUM},
    {"avg_recv", NUM},
    {"avg_sent", NUM},
    {"avg_xact_time", NUM},
    {"avg_query_time", NUM},
    {"avg_wait_time", NUM},
    {"avg_client_parse_count", NUM},
    {"avg_server_parse_count", NUM},
    {"avg_bind_count", NUM},
    {"avg_client_login_count", NUM},
    /* sluice */
    {"total_error_count", NUM},
    {"avg_error_count", NUM},
    {"total_requests", NUM}, /* total_query_count by its old name, for old exporters */
};

static const struct console_col stats_totals_cols[] = {
    {"database", T},
    {"server_assignment_count", NUM},
    {"xact_count", NUM},
    {"query_count", NUM},
    {"bytes_received", NUM},
    {"bytes_sent", NUM},
    {"xact_time", NUM},
    {"query_time", NUM},
    {"wait_time", NUM},
    {"client_parse_count", NUM},
    {"server_parse_count", NUM},
    {"bind_count", NUM},
    {"client_login_count", NUM},
    /* sluice */
    {"error_count", NUM},
};

static const struct console_col stats_averages_cols[] = {
    {"database", T},
    {"server_assignment_count", NUM},
    {"xact_count", NUM},
    {"query_count", NUM},
    {"bytes_received", NUM},
    {"bytes_sent", NUM},
    {"xact_time", NUM},
    {"query_time", NUM},
    {"wait_time", NUM},
    {"avg_client_parse_count", NUM},
    {"avg_server_parse_count", NUM},
    {"avg_bind_count", NUM},
    {"avg_client_login_count", NUM},
    /* sluice */
    {"error_count", NUM},
};

static uint64_t per(uint64_t sum, uint64_t count)
{
	return count > 0 ? sum / count : 0;
}

/* Totals: counters since start; parse and bind are not counted (0). */
static void put_totals(struct row *r, const struct census_pool *p)
{
	const struct pool_stats *t = &p->total;

	put_u64(r, t->server_assignments);
	put_u64(r, t->xact_count);
	put_u64(r, t->query_count);
	put_u64(r, t->bytes_received);
	put_u64(r, t->bytes_sent);
	put_u64(r, t->xact_time_us);
	put_u64(r, t->query_time_us);
	put_u64(r, t->wait_time_us);
	put_u64(r, 0);
	put_u64(r, 0);
	put_u64(r, 0);
	put_u64(r, t->client_logins);
}

/* Averages over the last stats_period: counts per second, times per event. */
static void put_averages(struct row *r, const struct census_pool *p)
{
	const struct pool_stats *d = &p->delta, *s = &p->rate;

	put_u64(r, s->server_assignments);
	put_u64(r, s->xact_count);
	put_u64(r, s->query_count);
	put_u64(r, s->bytes_received);
	put_u64(r, s->bytes_sent);
	put_u64(r, per(d->xact_time_us, d->xact_count));
	put_u64(r, per(d->query_time_us, d->query_count));
	put_u64(r, per(d->wait_time_us, d->server_assignments));
	put_u64(r, 0);
	put_u64(r, 0);
	put_u64(r, 0);
	put_u64(r, s->client_logins);
}

static void stats_row(struct row *r, const struct census_pool *p, int kind)
{
	put_str(r, p->db);
	if (kind != 2)
		put_totals(r, p);
	if (kind != 1)
		put_averages(r, p);
	if (kind == 0) {
		put_u64(r, p->total.errors);
		put_u64(r, p->rate.errors);
		put_u64(r, p->total.query_count);
	} else {
		put_u64(r, kind == 1 ? p->total.errors : p->rate.errors);
	}
}
/* op->kind for the stats family: 0 STATS, 1 STATS_TOTALS, 2 STATS_AVERAGES. */
static void render_stats_kind(struct console_conn *conn, struct console_op *op, int kind)
{
	static const struct {
		const struct console_col *cols;
		size_t n;
	} shapes[] = {
	    {stats_cols, NCOLS(stats_cols)},
	    {stats_totals_cols, NCOLS(stats_totals_cols)},
	    {stats_averages_cols, NCOLS(stats_averages_cols)},
	};
	struct census_merged m;

	census_merge_pools(op, true, &m);
	census_add_configured_dbs(conn->w->cfg, &m);
	console_reply_header(conn, shapes[kind].cols, shapes[kind].n);
	for (size_t i = 0; i < m.n; i++) {
		struct row r = {0};

		stats_row(&r, &m.recs[i], kind);
		row_send(conn, &r);
	}
	free(m.recs);
}

static void render_stats(struct console_conn *conn, struct console_op *op)
{
	render_stats_kind(conn, op, 0);
}

static void render_stats_totals(struct console_conn *conn, struct console_op *op)
{
	render_stats_kind(conn, op, 1);
}

static void render_stats_averages(struct console_conn *conn, struct console_op *op)
{
	render_stats_kind(conn, op, 2);
}

static const struct console_col name_value_cols[] = {{"name", T}, {"value", NUM}};

static void render_totals(struct console_conn *conn, struct console_op *op)
{
	struct census_pool all = {.db = (char *)"*"};
	struct census_merged m;
	struct row r = {0};

	census_merge_pools(op, true, &m);
	for (size_t i = 0; i < m.n; i++)
		census_pool_sum(&all, &m.recs[i]);
	free(m.recs);
	stats_row(&r, &all, 0);
	console_reply_header(conn, name_value_cols, NCOLS(name_value_cols));
	/* One row per SHOW STATS column, database left out. */
	for (size_t i = 1; i < r.n && i < NCOLS(stats_cols); i++) {
		const char *pair[2] = {stats_cols[i].name, r.vals[i]};

		console_reply_row(conn, 2, pair);
	}
}

/* ---- SHOW CLIENTS, SERVERS ---- */

static const struct console_col conn_cols[] = {
    {"type", T},
    {"user", T},
    {"database", T},
    {"replication", T},
    {"state", T},
    {"addr", T},
    {"port", I4},
    {"local_addr", T},
    {"local_port", I4},
    {"connect_time", T},
    {"request_time", T},
    {"wait", I4},
    {"wait_us", I4},
    {"close_needed", I4},
    {"ptr", T},
    {"link", T},
    {"remote_pid", I4},
    {"tls", T},
    {"application_name", T},
    {"prepared_statements", I4},
    {"id", I8},
    /* sluice */
    {"worker", I4},
    {"pinned", I4}, /* the server stays with its client (docs/session-state.md) */
    {"pin_reason", T},
    {"role", T}, /* servers: the host's role at login or since (docs/topology.md) */
};

/* The pinned and pin_reason columns of a client's or server's row. */
static void put_pin(struct row *r, const struct server *s)
{
	char reasons[128];
	uint8_t pin = s != NULL ? s->pin : 0;

	put_i64(r, pin != 0);
	put_fmt(r, "%s", server_pin_reasons(pin, reasons, sizeof(reasons)));
}

/* "host:port" (IPv6 hosts contain colons: split at the last one). */
static void local_addr(int fd, char *host, size_t len, int *port)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl = sizeof(ss);

	/* Not connected yet (a server still resolving its host name): nothing to show. */
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		snprintf(host, len, "%s", "");
		*port = 0;
		return;
	}
	*port = sockaddr_host((const struct sockaddr *)&ss, host, len);
}

static int peer_pid(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return 0;
	return (int)cred.pid;
}

static const char *client_state_text(const struct client *c)
{
	switch (c->state) {
	case CLIENT_LOGIN:
		return "login";
	case CLIENT_IDLE:
		return c->session != NULL && ((struct console_conn *)c->session)->sql != NULL
		           ? "active"
		           : "idle";
	case CLIENT_ACTIVE:
		return "active";
	case CLIENT_WAITING:
		return "waiting";
	case CLIENT_CLOSING:
		break;
	}
	return "closing";
}

static void render_client(struct worker *w, const struct client *c, struct evbuffer *out,
                          int64_t now)
{
	const struct param *app = param_find(&c->params, "application_name");
	char host[64], lhost[64];
	int port, lport;
	int64_t request_us = c->connect_us, wait_us = 0;
	struct row r = {0};

	if (c->is_unix) {
		snprintf(host, sizeof(host), "unix");
		snprintf(lhost, sizeof(lhost), "unix");
		port = lport = w->cfg->listen_port;
	} else {
		port = sockaddr_host(&c->peer.sa, host, sizeof(host));
		local_addr(c->conn.fd, lhost, sizeof(lhost), &lport);
	}
	if (c->state == CLIENT_WAITING) {
		request_us = c->wait_start_us;
		wait_us = now - c->wait_start_us;
	} else if (c->state == CLIENT_ACTIVE && c->server != NULL && c->server->request_start_us) {
		request_us = c->server->request_start_us;
	}
	put_str(&r, "C");
	put_str(&r, c->user != NULL ? c->user : "");
	put_str(&r, c->dbname != NULL ? c->dbname : "");
	put_str(&r, "none");
	put_str(&r, client_state_text(c));
	put_str(&r, host);
	put_i64(&r, port);
	put_str(&r, lhost);
	put_i64(&r, lport);
	put_time(&r, c->connect_us);
	put_time(&r, request_us);
	put_i64(&r, wait_us / 1000000);
	put_i64(&r, wait_us % 1000000);
	put_i64(&r, c->close_at_idle);
	put_fmt(&r, "%" PRIx64, c->id);
	if (c->server != NULL)
		put_fmt(&r, "%" PRIx64, c->server->id);
	else
		put_str(&r, NULL);
	put_i64(&r, c->is_unix ? peer_pid(c->conn.fd) : 0);
	put_tls(&r, c->tls ? conn_tls_bev(&c->conn) : NULL);
	put_str(&r, app != NULL ? app->value : "");
	put_u64(&r, prepared_map_count(c->stmts));
	put_u64(&r, c->id);
	put_i64(&r, w->id);
	put_pin(&r, c->server);
	put_str(&r, NULL);
	row_to(out, &r);
}

static void clients_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	int64_t now = worker_now_us(w);
	struct list_node *pos, *tmp;

	if ((part->rows = evbuffer_new()) == NULL)
		return;
	list_for_each_safe(pos, tmp, &w->clients)
	{
		render_client(w, list_entry(pos, struct client, node), part->rows, now);
	}
}

static const char *server_state_text(enum server_state state)
{
	switch (state) {
	case SERVER_CONNECTING:
	case SERVER_LOGIN:
		return "new";
	case SERVER_IDLE:
		return "idle";
	case SERVER_ACTIVE:
		return "active";
	case SERVER_RESETTING:
		return "tested";
	case SERVER_CANCELING:
		return "being_canceled";
	case SERVER_LISTENING:
		return "listening";
	case SERVER_CLOSING:
		break;
	}
	return "closing";
}

static void render_server(struct worker *w, const struct server *s, struct evbuffer *out)
{
	const struct param *app = param_find(&s->params, "application_name");
	char host[64], lhost[64];
	int port, lport;
	struct row r = {0};

	port = sockaddr_host((const struct sockaddr *)&s->addr, host, sizeof(host));
	if (port == 0 && s->pool->db != NULL)
		port = s->pool->db->port; /* Unix socket, or not connected yet */
	local_addr(s->conn.fd, lhost, sizeof(lhost), &lport);
	put_str(&r, "S");
	put_str(&r, s->pool->user);
	put_str(&r, s->pool->dbname);
	put_str(&r, "none");
	put_str(&r, server_state_text(s->state));
	put_str(&r, host);
	put_i64(&r, port);
	put_str(&r, lhost);
	put_i64(&r, lport);
	put_time(&r, s->connect_us);
	put_time(&r, s->request_start_us > 0 ? s->request_start_us : s->connect_us);
	put_i64(&r, 0);
	put_i64(&r, 0);
	put_i64(&r, s->close_needed);
	put_fmt(&r, "%" PRIx64, s->id);
	if (s->client != NULL)
		put_fmt(&r, "%" PRIx64, s->client->id);
	else
		put_str(&r, NULL);
	put_i64(&r, s->backend_pid);
	put_tls(&r, s->tls == SERVER_TLS_ON ? conn_tls_bev(&s->conn) : NULL);
	put_str(&r, app != NULL ? app->value : "");
	put_u64(&r, s->stmts.count);
	put_u64(&r, s->id);
	put_i64(&r, w->id);
	put_pin(&r, s);
	put_str(&r, host_role_name(s->role));
	row_to(out, &r);
}

static void servers_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	struct list_node *pos, *tmp;

	if ((part->rows = evbuffer_new()) == NULL)
		return;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		const struct pool *p = list_entry(pos, struct pool, node);
		const struct list_node *heads[] = {&p->active, &p->idle, &p->pending};

		for (size_t i = 0; i < NCOLS(heads); i++)
			for (const struct list_node *n = heads[i]->next; n != heads[i]; n = n->next)
				render_server(w, list_entry(n, struct server, node), part->rows);
		/* Logging in it is on pending; listening, on no list of the pool. */
		if (p->listen != NULL && p->listen->listening)
			render_server(w, p->listen->server, part->rows);
	}
}

/* The rows each worker rendered, under one header. */
static void render_parts(struct console_conn *conn, struct console_op *op,
                         const struct console_col *cols, size_t ncols)
{
	console_reply_header(conn, cols, ncols);
	for (int i = 0; i < op->nparts; i++)
		if (op->parts[i].rows != NULL)
			evbuffer_add_buffer(console_out(conn), op->parts[i].rows);
}

static void render_rows(struct console_conn *conn, struct console_op *op)
{
	render_parts(conn, op, conn_cols, NCOLS(conn_cols));
}

/* ---- SHOW LISTENERS: each pool's shared listening connection (docs/session-state.md) ---- */

static const struct console_col listener_cols[] = {
    {"database", T}, {"user", T},           {"tenant", T},      {"worker", I4},
    {"state", T},    {"remote_pid", I4},    {"channels", I4},   {"subscriptions", I4},
    {"waiting", I4}, {"notifications", I8}, {"deliveries", I8}, {"dropped", I8},
    {"lost", I8},
};

static void render_listener(struct worker *w, const struct pool *p, struct evbuffer *out)
{
	const struct listener *l = p->listen;
	struct row r = {0};

	put_str(&r, p->dbname);
	put_str(&r, p->user);
	put_str(&r, pool_tenant(p));
	put_i64(&r, w->id);
	put_str(&r, l->listening ? "listening" : l->server != NULL ? "connecting" : "none");
	put_i64(&r, l->listening ? l->server->backend_pid : 0);
	put_i64(&r, l->nchannels);
	put_i64(&r, l->nsubs);
	put_i64(&r, (int64_t)list_count(&l->waiting));
	put_u64(&r, p->stats.listen_notifications);
	put_u64(&r, p->stats.listen_delivered);
	put_u64(&r, p->stats.listen_dropped);
	put_u64(&r, p->stats.listen_lost);
	row_to(out, &r);
}

static void listeners_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	struct list_node *pos;

	if ((part->rows = evbuffer_new()) == NULL)
		return;
	for (pos = w->pools.next; pos != &w->pools; pos = pos->next) {
		const struct pool *p = list_entry(pos, struct pool, node);

		if (p->listen != NULL)
			render_listener(w, p, part->rows);
	}
}

static void render_listeners(struct console_conn *conn, struct console_op *op)
{
	render_parts(conn, op, listener_cols, NCOLS(listener_cols));
}

/* ---- SHOW WORKERS: each worker's load and the servers moving between workers ---- */

static const struct console_col worker_cols[] = {
    {"worker", I4},
    {"clients", I4},
    {"servers", I4},
    {"asks", I8},
    {"debts", I8},
    {"servers_sent", I8},
    {"servers_received", I8},
    {"closed_for_others", I8},
    {"units_received", I8},
    {"recvs", I8},
    {"sends", I8},
    {"flushes", I8},
};

static void workers_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	const struct worker_moves *m = &w->moves;
	const struct loop_counts *io = &w->loop.counts;
	struct row r = {0};
	int64_t servers = 0;

	if ((part->rows = evbuffer_new()) == NULL)
		return;
	for (const struct list_node *pos = w->pools.next; pos != &w->pools; pos = pos->next)
		servers += list_entry(pos, struct pool, node)->nservers;
	put_i64(&r, w->id);
	put_i64(&r, w->nclients);
	put_i64(&r, servers);
	put_u64(&r, m->asks);
	put_u64(&r, m->debts);
	put_u64(&r, m->sent);
	put_u64(&r, m->received);
	put_u64(&r, m->closed_for);
	put_u64(&r, m->units_received);
	put_u64(&r, io->recvs);
	put_u64(&r, io->sends);
	put_u64(&r, io->flushes);
	row_to(part->rows, &r);
}

static void render_workers(struct console_conn *conn, struct console_op *op)
{
	render_parts(conn, op, worker_cols, NCOLS(worker_cols));
}

/* ---- SHOW DATABASES, USERS, LISTS, MEM ---- */

static const struct console_col databases_cols[] = {
    {"name", T},
    {"host", T},
    {"port", I4},
    {"database", T},
    {"force_user", T},
    {"pool_size", I4},
    {"min_pool_size", I4},
    {"reserve_pool_size", I4},
    {"server_lifetime", I4},
    {"pool_mode", T},
    {"load_balance_hosts", T},
    {"max_connections", I4},
    {"current_connections", I4},
    {"max_client_connections", I4},
    {"current_client_connections", I4},
    {"paused", I4},
    {"disabled", I4},
    /* sluice */
    {"reserve_pool", I4}, /* reserve_pool_size by its old name, for old exporters */
};
static void database_row(struct console_conn *conn, const struct census_pool *p)
{
	const struct config *cfg = conn->w->cfg;
	const struct db_def *db = config_find_db(cfg, p->db);
	int max_db = cfg->max_db_connections;
	struct row r = {0};

	if (db != NULL && db->max_db_connections != CONFIG_INHERIT)
		max_db = db->max_db_connections;
	put_str(&r, p->db);
	put_str(&r, db != NULL ? db->host : NULL);
	if (db != NULL)
		put_i64(&r, db->port);
	else
		put_str(&r, NULL);
	put_str(&r, db != NULL && db->dbname != NULL ? db->dbname : p->db);
	put_str(&r, db != NULL ? db->user : NULL);
	put_i64(&r, config_pool_size(cfg, db, NULL));
	put_i64(&r, db != NULL ? config_min_pool_size(cfg, db) : 0);
	put_i64(&r, 0);
	put_i64(&r, cfg->server_lifetime_us / 1000000);
	put_str(&r, db != NULL && db->pool_mode != CONFIG_INHERIT ? pool_mode_name(db->pool_mode)
	                                                          : NULL);
	put_str(&r, NULL);
	put_i64(&r, max_db);
	put_i64(&r, p->sv_total);
	put_i64(&r, 0);
	put_i64(&r, p->cl_idle + p->cl_active + p->cl_waiting + p->cl_login);
	put_i64(&r, pause_db_paused(conn->w, p->db));
	put_i64(&r, pause_db_disabled(conn->w, p->db));
	put_i64(&r, 0);
	row_send(conn, &r);
}

static void render_databases(struct console_conn *conn, struct console_op *op)
{
	struct census_merged m;

	census_list_databases(conn->w->cfg, op, &m);
	console_reply_header(conn, databases_cols, NCOLS(databases_cols));
	for (size_t i = 0; i < m.n; i++)
		database_row(conn, &m.recs[i]);
	free(m.recs);
}

static const struct console_col users_cols[] = {
    {"name", T},
    {"pool_size", I4},
    {"reserve_pool_size", I4},
    {"pool_mode", T},
    {"max_user_connections", I4},
    {"current_connections", I4},
    {"max_user_client_connections", I4},
    {"current_client_connections", I4},
};
static void user_row(struct console_conn *conn, const struct console_op *op, const char *name)
{
	const struct config *cfg = conn->w->cfg;
	const struct user_def *u = config_find_user(cfg, name);
	int64_t servers = 0, clients = 0;
	struct row r = {0};

	for (int i = 0; i < op->nparts; i++) {
		const struct census *cs = op->parts[i].census;

		for (size_t j = 0; cs != NULL && j < cs->npools; j++)
			if (strcmp(cs->pools[j].user, name) == 0)
				servers += cs->pools[j].sv_total;
		for (size_t j = 0; cs != NULL && j < cs->nusers; j++)
			if (strcmp(cs->users[j].key, name) == 0)
				clients += cs->users[j].n;
	}
	put_str(&r, name);
	if (u != NULL && u->pool_size != CONFIG_INHERIT)
		put_i64(&r, u->pool_size);
	else
		put_str(&r, NULL);
	put_i64(&r, 0);
	put_str(&r,
	        u != NULL && u->pool_mode != CONFIG_INHERIT ? pool_mode_name(u->pool_mode) : NULL);
	put_i64(&r, u != NULL && u->max_user_connections != CONFIG_INHERIT
	                ? u->max_user_connections
	                : cfg->max_user_connections);
	put_i64(&r, servers);
	put_i64(&r, 0);
	put_i64(&r, clients);
	row_send(conn, &r);
}

static void render_users(struct console_conn *conn, struct console_op *op)
{
	struct census_names l;

	census_list_users(conn->w->cfg, op, &l);
	console_reply_header(conn, users_cols, NCOLS(users_cols));
	for (size_t i = 0; i < l.n; i++)
		user_row(conn, op, l.names[i]);
	free(l.names);
}

static const struct console_col lists_cols[] = {{"list", T}, {"items", I4}};

static void render_lists(struct console_conn *conn, struct console_op *op)
{
	struct census_merged dbs, pools;
	struct census_names users;
	int64_t clients = 0, login = 0, servers = 0;

	census_list_databases(conn->w->cfg, op, &dbs);
	census_merge_pools(op, false, &pools);
	census_list_users(conn->w->cfg, op, &users);
	for (int i = 0; i < op->nparts; i++) {
		const struct census *cs = op->parts[i].census;

		if (cs != NULL) {
			clients += cs->clients;
			login += cs->login_clients;
			servers += cs->servers;
		}
	}
	const struct {
		const char *name;
		int64_t items;
	} rows[] = {
	    {"databases", (int64_t)dbs.n},
	    {"users", (int64_t)users.n},
	    {"peers", 0},
	    {"pools", (int64_t)pools.n},
	    {"peer_pools", 0},
	    {"free_clients", 0},
	    {"used_clients", clients},
	    {"login_clients", login},
	    {"free_servers", 0},
	    {"used_servers", servers},
	    {"dns_names", 0},
	    {"dns_zones", 0},
	    {"dns_queries", 0},
	    {"dns_pending", 0},
	    /* sluice */
	    {"workers", op->nparts},
	};

	console_reply_header(conn, lists_cols, NCOLS(lists_cols));
	for (size_t i = 0; i < NCOLS(rows); i++) {
		struct row r = {0};

		put_str(&r, rows[i].name);
		put_i64(&r, rows[i].items);
		row_send(conn, &r);
	}
	free(dbs.recs);
	free(pools.recs);
	free(users.names);
}

static const struct console_col mem_cols[] = {
    {"name", T}, {"size", I8}, {"used", I8}, {"free", I8}, {"memtotal", I8},
};

/* malloc's live and retained bytes (procstat_heap): a leak shows in "used"
 * while RSS also moves with the peaks of a reload or a burst of clients. */
static void send_heap_row(struct console_conn *conn)
{
	int64_t used, retained;
	struct row r = {0};

	procstat_heap(&used, &retained);
	put_str(&r, "heap");
	put_i64(&r, 1);
	put_i64(&r, used);
	put_i64(&r, retained);
	put_i64(&r, used + retained);
	row_send(conn, &r);
}

static void render_mem(struct console_conn *conn, struct console_op *op)
{
	int64_t clients = 0, servers = 0, pools = 0, io = 0;

	for (int i = 0; i < op->nparts; i++) {
		const struct census *cs = op->parts[i].census;

		if (cs != NULL) {
			clients += cs->clients;
			servers += cs->servers;
			pools += (int64_t)cs->npools;
			io += (int64_t)cs->io_bytes;
		}
	}
	const struct {
		const char *name;
		int64_t size, used;
	} rows[] = {
	    {"client", (int64_t)client_size(), clients},
	    {"server", (int64_t)server_size(), servers},
	    {"pool", sizeof(struct pool), pools},
	    {"io_buffers", 1, io},
	};

	console_reply_header(conn, mem_cols, NCOLS(mem_cols));
	for (size_t i = 0; i < NCOLS(rows); i++) {
		struct row r = {0};

		put_str(&r, rows[i].name);
		put_i64(&r, rows[i].size);
		put_i64(&r, rows[i].used);
		put_i64(&r, 0);
		put_i64(&r, rows[i].size * rows[i].used);
		row_send(conn, &r);
	}
	send_heap_row(conn);
}

/* ---- local SHOWs: CONFIG, STATE, VERSION, HELP and the empty ones ---- */

static const struct console_col config_cols[] = {
    {"key", T},
    {"value", T},
    {"default", T},
    {"changeable", T},
};

static void render_config(struct console_conn *conn, struct console_op *op)
{
	size_t n;
	const struct config_option *opts = config_options(&n);

	console_reply_header(conn, config_cols, NCOLS(config_cols));
	for (size_t i = 0; i < n; i++) {
		char value[4096];
		const char *vals[4] = {opts[i].name, value, opts[i].default_value,
		                       opts[i].reload == RELOAD_LIVE ? "yes" : "no"};

		config_format_value(conn->w->cfg, &opts[i], value, sizeof(value));
		console_reply_row(conn, 4, vals);
	}
}

static const struct console_col key_value_cols[] = {{"key", T}, {"value", T}};

static void render_state(struct console_conn *conn, struct console_op *op)
{
	bool paused = conn->w->pause.paused, suspended = conn->w->pause.suspended;
	const char *rows[][2] = {
	    {"active", !paused && !suspended ? "yes" : "no"},
	    {"paused", paused ? "yes" : "no"},
	    {"suspended", suspended ? "yes" : "no"},
	};

	console_reply_header(conn, key_value_cols, NCOLS(key_value_cols));
	for (size_t i = 0; i < NCOLS(rows); i++)
		console_reply_row(conn, 2, rows[i]);
}

static const struct console_col version_cols[] = {{"version", T}};

static void render_version(struct console_conn *conn, struct console_op *op)
{
	const char *v[1] = {"sluice " SLUICE_VERSION};

	console_reply_header(conn, version_cols, NCOLS(version_cols));
	console_reply_row(conn, 1, v);
}

/* ---- SHOW HOSTS: each database's hosts and their breakers (docs/topology.md) ---- */

static const struct console_col hosts_cols[] = {
    {"database", T},
    {"host", T},
    {"port", I4},
    {"role", T},
    {"read_only", I4},
    {"target_session_attrs", T},
    {"breaker", T},
    {"failures", I4},
    {"next_probe", T},
    {"last_check", T},
    {"last_check_latency_us", I8},
    {"servers", I4},
    {"transitions", I8},
    {"last_error", T},
};

static void host_row(struct console_conn *conn, const struct db_def *db, const struct db_host *h,
                     int64_t now)
{
	struct breaker_view v = {0};
	struct row r = {0};

	/* A host no pool has used yet has no breaker: closed, role unknown. */
	breaker_peek(&conn->w->shared->breakers, h->host, h->port, now, &v);
	put_str(&r, db->name);
	put_str(&r, h->host);
	put_i64(&r, h->port);
	put_str(&r, host_role_name(v.role));
	put_i64(&r, v.read_only);
	put_str(&r, target_session_attrs_name(config_target_session_attrs(conn->w->cfg, db)));
	put_str(&r, breaker_state_name(v.state));
	put_i64(&r, v.failures);
	if (v.next_try_us > 0)
		put_time(&r, v.next_try_us);
	else
		put_str(&r, NULL);
	if (v.last_check_us > 0)
		put_time(&r, v.last_check_us);
	else
		put_str(&r, NULL);
	put_i64(&r, v.last_latency_us);
	put_i64(&r, v.servers);
	put_u64(&r, v.transitions);
	put_str(&r, v.last_error);
	row_send(conn, &r);
}

static void render_hosts(struct console_conn *conn, struct console_op *op)
{
	const struct config *cfg = conn->w->cfg;
	int64_t now = worker_now_us(conn->w);

	console_reply_header(conn, hosts_cols, NCOLS(hosts_cols));
	for (size_t i = 0; i < cfg->ndbs; i++)
		for (int k = 0; k < cfg->dbs[i].nhosts; k++)
			host_row(conn, &cfg->dbs[i], &cfg->dbs[i].hosts[k], now);
}

static const char help_text[] =
    "Console commands (simple query protocol; names are case-insensitive):\n"
    "  SHOW HELP|POOLS|STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|CLIENTS|SERVERS\n"
    "  SHOW DATABASES|USERS|LISTS|CONFIG|MEM|STATE|VERSION|LISTENERS\n"
    "  SHOW LATENCY                percentiles of query, transaction, wait and connect time\n"
    "  SHOW TENANTS|RATELIMITS     tenants: limits, clients, servers; token buckets, rates\n"
    "  SHOW HOSTS                  each database's hosts: role, circuit breaker, servers\n"
    "  SHOW WORKERS                each worker thread: clients, servers, servers moved, I/O\n"
    "  SHOW QUERIES|QUERY_TYPES    statistics per statement fingerprint, per statement type\n"
    "  RESET QUERIES               start those statistics again from nothing\n"
    "  SHOW PEERS|PEER_POOLS|DNS_HOSTS|DNS_ZONES   (always empty in sluice)\n"
    "  SET name = value            change an option marked changeable in SHOW CONFIG\n"
    "  PAUSE [db]                  close servers as they are released; hold new queries\n"
    "  RESUME [db]                 end PAUSE, KILL or SUSPEND\n"
    "  SUSPEND                     flush buffers and stop reading from every socket\n"
    "  DISABLE db / ENABLE db      refuse / allow new client logins to db\n"
    "  RECONNECT [db]              close each server once it is released\n"
    "  WAIT_CLOSE [db]             wait until those servers are closed\n"
    "  KILL [db]                   drop clients and servers now; hold new queries\n"
    "  KILL_CLIENT id              drop one client (id from SHOW CLIENTS)\n"
    "  RELOAD                      re-read the configuration\n"
    "  SHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]\n"
    "See docs/console.md.";

static void render_help(struct console_conn *conn, struct console_op *op)
{
	console_reply_notice(conn, "%s", help_text);
}

static const struct console_col peers_cols[] = {
    {"peer_id", I4},
    {"host", T},
    {"port", I4},
    {"pool_size", I4},
};
static const struct console_col peer_pools_cols[] = {
    {"peer_id", I4},
    {"cl_active_cancel_req", I4},
    {"cl_waiting_cancel_req", I4},
    {"sv_active_cancel", I4},
    {"sv_login", I4},
};
static const struct console_col dns_hosts_cols[] = {{"hostname", T}, {"ttl", I8}, {"addrs", T}};
static const struct console_col dns_zones_cols[] = {{"zonename", T}, {"serial", I8}, {"count", I4}};

static void render_peers(struct console_conn *conn, struct console_op *op)
{
	console_reply_header(conn, peers_cols, NCOLS(peers_cols));
}

static void render_peer_pools(struct console_conn *conn, struct console_op *op)
{
	console_reply_header(conn, peer_pools_cols, NCOLS(peer_pools_cols));
}

static void render_dns_hosts(struct console_conn *conn, struct console_op *op)
{
	console_reply_header(conn, dns_hosts_cols, NCOLS(dns_hosts_cols));
}

static void render_dns_zones(struct console_conn *conn, struct console_op *op)
{
	console_reply_header(conn, dns_zones_cols, NCOLS(dns_zones_cols));
}

/* ---- the SHOW table ---- */

typedef void (*render_fn)(struct console_conn *conn, struct console_op *op);

struct show {
	const char *name;
	console_each_fn each; /* NULL: answered from the console's worker alone */
	render_fn render;
};

static const struct show shows[] = {
    {"HELP", NULL, render_help},
    {"POOLS", census_each, render_pools},
    {"STATS", census_each, render_stats},
    {"STATS_TOTALS", census_each, render_stats_totals},
    {"STATS_AVERAGES", census_each, render_stats_averages},
    {"TOTALS", census_each, render_totals},
    {"CLIENTS", clients_each, render_rows},
    {"SERVERS", servers_each, render_rows},
    {"LISTENERS", listeners_each, render_listeners},
    {"WORKERS", workers_each, render_workers},
    {"DATABASES", census_each, render_databases},
    {"USERS", census_each, render_users},
    {"LISTS", census_each, render_lists},
    {"CONFIG", NULL, render_config},
    {"MEM", census_each, render_mem},
    {"STATE", NULL, render_state},
    {"VERSION", NULL, render_version},
    {"TENANTS", NULL, tenants_render},
    {"RATELIMITS", NULL, tenants_render_ratelimits},
    {"PEERS", NULL, render_peers},
    {"PEER_POOLS", NULL, render_peer_pools},
    {"DNS_HOSTS", NULL, render_dns_hosts},
    {"HOSTS", NULL, render_hosts},
    {"DNS_ZONES", NULL, render_dns_zones},
};

/* SHOW <option>: one value of SHOW CONFIG (a sluice extra). */
static bool show_option(struct console_conn *conn, const char *name)
{
	const struct config_option *opt = config_option_find(name);
	const struct console_col col = {name, T};
	char value[4096];
	const char *v[1] = {value};

	if (opt == NULL)
		return false;
	config_format_value(conn->w->cfg, opt, value, sizeof(value));
	console_reply_header(conn, &col, 1);
	console_reply_row(conn, 1, v);
	console_reply_complete(conn, "SHOW");
	return true;
}

/* ---- SHOW LATENCY: its own gather (latency.c merges the histograms) ---- */

static void latency_row(void *arg, const char *const values[LATENCY_SHOW_COLUMNS])
{
	console_reply_row(arg, LATENCY_SHOW_COLUMNS, values);
}

static void latency_done(struct console_op *op)
{
	const char *const *names = latency_show_columns();
	struct console_col cols[LATENCY_SHOW_COLUMNS];

	for (int i = 0; i < LATENCY_SHOW_COLUMNS; i++) {
		cols[i].name = names[i];
		cols[i].type = i < 4 ? T : I8;
	}
	console_reply_header(op->conn, cols, LATENCY_SHOW_COLUMNS);
	if (op->latency != NULL)
		latency_show(op->latency, latency_row, op->conn);
	console_reply_complete(op->conn, "SHOW");
	console_statement_done(op, true);
}

static enum console_result show_latency(struct console_conn *conn)
{
	struct console_op *op = console_op_new(conn, "SHOW");

	if (op == NULL)
		return ADMIN_FAILED;
	op->done = latency_done;
	return console_run_latency(op);
}

/* ---- SHOW QUERIES, SHOW QUERY_TYPES: query insights (queries.c merges the workers') ---- */

static const struct console_col queries_cols[] = {
    {"database", T},   {"user", T},       {"tenant", T},    {"fingerprint", T},
    {"query_type", T}, {"calls", I8},     {"errors", I8},   {"rows", I8},
    {"total_us", I8},  {"mean_us", I8},   {"p50_us", I8},   {"p95_us", I8},
    {"p99_us", I8},    {"first_seen", T}, {"last_seen", T}, {"query", T},
};

/* A fingerprint's row; the "other" row (fp 0) has no fingerprint, type or text. */
static void query_row(struct console_conn *conn, const struct query_row *q)
{
	const struct qstats_figures *f = &q->fig;
	struct row r = {0};

	put_str(&r, q->database);
	put_str(&r, q->user);
	put_str(&r, q->tenant);
	if (q->fp != 0)
		put_fmt(&r, "%016" PRIx64, q->fp);
	else
		put_str(&r, "other");
	put_str(&r, q->fp != 0 ? query_type_name(q->type) : NULL);
	put_u64(&r, f->calls);
	put_u64(&r, f->errors);
	put_u64(&r, f->rows);
	put_u64(&r, f->total_us);
	put_u64(&r, f->calls ? f->total_us / f->calls : 0);
	put_u64(&r, qstats_percentile(f->hist, f->calls, 0.50));
	put_u64(&r, qstats_percentile(f->hist, f->calls, 0.95));
	put_u64(&r, qstats_percentile(f->hist, f->calls, 0.99));
	put_time(&r, f->first_us);
	put_time(&r, f->last_us);
	put_str(&r, q->fp != 0 ? q->text : NULL);
	row_send(conn, &r);
}

static const struct console_col query_types_cols[] = {
    {"query_type", T}, {"calls", I8},  {"errors", I8}, {"rows", I8},   {"total_us", I8},
    {"mean_us", I8},   {"p50_us", I8}, {"p95_us", I8}, {"p99_us", I8}, {"max_us", I8},
};

static void query_type_row(struct console_conn *conn, int t, const struct qstats_type *qt)
{
	const struct histogram *h = &qt->h;
	struct row r = {0};

	put_str(&r, query_type_name(t));
	put_u64(&r, h->count);
	put_u64(&r, qt->errors);
	put_u64(&r, qt->rows);
	put_u64(&r, h->sum);
	put_u64(&r, h->count ? h->sum / h->count : 0);
	put_u64(&r, histogram_percentile(h, 0.50));
	put_u64(&r, histogram_percentile(h, 0.95));
	put_u64(&r, histogram_percentile(h, 0.99));
	put_u64(&r, h->max);
	row_send(conn, &r);
}

static void queries_done(struct console_op *op)
{
	const struct query_report *rep = op->queries;

	if (op->kind == 0) {
		console_reply_header(op->conn, queries_cols, NCOLS(queries_cols));
		for (size_t i = 0; rep != NULL && i < rep->nrows; i++)
			query_row(op->conn, &rep->rows[i]);
	} else {
		console_reply_header(op->conn, query_types_cols, NCOLS(query_types_cols));
		for (int t = 0; rep != NULL && t < QUERY_TYPES; t++)
			query_type_row(op->conn, t, &rep->types[t]);
	}
	console_reply_complete(op->conn, "SHOW");
	console_statement_done(op, true);
}

static enum console_result show_queries(struct console_conn *conn, int kind)
{
	struct console_op *op = console_op_new(conn, "SHOW");

	if (op == NULL)
		return ADMIN_FAILED;
	op->kind = kind;
	op->done = queries_done;
	return console_run_queries(op);
}

/* ---- SHOW ---- */

static void show_done(struct console_op *op)
{
	shows[op->kind].render(op->conn, op);
	console_reply_complete(op->conn, "SHOW");
	console_statement_done(op, true);
}

enum console_result show_statement(struct console_conn *conn, struct console_lexer *lx)
{
	struct console_op *op;
	char name[64];

	if (console_lex_next(lx) != TOK_WORD) {
		console_reply_error(conn, SQLSTATE_SYNTAX_ERROR,
		                    "syntax error: SHOW needs a name; SHOW HELP lists them");
		return ADMIN_FAILED;
	}
	snprintf(name, sizeof(name), "%.63s", lx->text);
	if (console_lex_next(lx) != TOK_END) {
		console_reply_error(conn, SQLSTATE_SYNTAX_ERROR,
		                    "syntax error: SHOW takes one name");
		return ADMIN_FAILED;
	}
	if (strcasecmp(name, "LATENCY") == 0)
		return show_latency(conn);
	if (strcasecmp(name, "QUERIES") == 0 || strcasecmp(name, "QUERY_TYPES") == 0)
		return show_queries(conn, strcasecmp(name, "QUERIES") == 0 ? 0 : 1);
	for (size_t i = 0; i < NCOLS(shows); i++) {
		if (strcasecmp(shows[i].name, name) != 0)
			continue;
		if (shows[i].each == NULL) {
			shows[i].render(conn, NULL);
			console_reply_complete(conn, "SHOW");
			return ADMIN_DONE;
		}
		if ((op = console_op_new(conn, "SHOW")) == NULL)
			return ADMIN_FAILED;
		op->kind = (int)i;
		op->each = shows[i].each;
		op->done = show_done;
		return console_run_gather(op);
	}
	if (console_show_probe(conn, name) || show_option(conn, name))
		return ADMIN_DONE;
	console_reply_error(conn, SQLSTATE_UNDEFINED_OBJECT,
	                    "unknown SHOW name \"%s\"; SHOW HELP lists the console's", name);
	return ADMIN_FAILED;
}
