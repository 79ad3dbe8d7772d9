/*
 * Client connections: startup packet, authentication against the auth_file,
 * the welcome (ParameterStatus replay, BackendKeyData), and the state changes
 * around waiting for and holding a server.  Relaying is relay.c's job.
 */
#include "pool/client.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool/admission.h"
#include "pool/cancel.h"
#include "pool/listen.h"
#include "config/config.h"
#include "pool/record.h"
#include "pool/pool.h"
#include "proto/build.h"
#include "proto/frame.h"
#include "proto/sqlstate.h"
#include "pool/relay.h"
#include "net/snapshot.h"
#include "pool/server.h"
#include "net/tls.h"
#include "pool/worker.h"

static const char *const state_names[] = {"login", "idle", "waiting", "active", "closing"};

const char *client_state_name(enum client_state state)
{
	return state_names[state];
}

static void client_timer_cb(evutil_socket_t fd, short what, void *arg);

void client_arm_timer(struct client *c, int64_t us)
{
	struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};

	c->awaiting_rest = false; /* the timer gets another meaning */
	/* Created on first need and freed after login: idle clients mostly have no timeout. */
	if (us > 0 && c->timer == NULL &&
	    (c->timer = evtimer_new(c->w->loop.base, client_timer_cb, c)) == NULL) {
		clog(c, LOG_ERROR, "out of memory for a timer: closing the connection");
		client_close(c, "out of memory");
		return;
	}
	if (us > 0) {
		evtimer_add(c->timer, &tv);
		c->timer_armed = true;
	} else if (c->timer_armed) {
		evtimer_del(c->timer);
		c->timer_armed = false;
	}
}

static void bury(struct client *c)
{
	conn_halt(&c->conn);
	if (c->timer_armed) {
		evtimer_del(c->timer);
		c->timer_armed = false;
	}
	list_del(&c->node);
	list_add_tail(&c->w->dead_clients, &c->node);
	loop_schedule_reap(&c->w->loop); /* which checks whether a drain has ended */
}

/*
 * A closing client may still have a final ErrorResponse to deliver: keep the
 * socket until it is written (or the peer is gone, or 5 s pass), then free it.
 */
static void client_bury_after_flush(struct client *c)
{
	list_del(&c->node);
	list_add_tail(&c->w->closing_clients, &c->node);
	if (c->conn.halted || evbuffer_get_length(c->conn.out) == 0) {
		bury(c);
		return;
	}
	conn_notify_drained(&c->conn, 0);
	client_arm_timer(c, 5000000);
}

/* The SCRAM exchange (and the ClientKey it learned) outlives the login by nothing. */
static void forget_scram(struct client *c)
{
	if (c->scram == NULL)
		return;
	OPENSSL_cleanse(c->scram, sizeof(*c->scram));
	free(c->scram);
	c->scram = NULL;
	c->has_client_key = false;
}

void client_set_state(struct client *c, enum client_state state)
{
	/*
	 * A request waiting for its tokens keeps its timer (admission_retry):
	 * its server may be released meanwhile (the settings read-back after a
	 * transaction), and without the timer nothing would read it again.
	 */
	bool throttled = (c->conn.suspend & SUSPEND_THROTTLE) && state != CLIENT_CLOSING;

	if (c->state == CLIENT_CLOSING)
		return;
	if (c->state == CLIENT_WAITING && state != CLIENT_WAITING)
		conn_resume(&c->conn, SUSPEND_WAIT_SERVER);
	if (c->state == CLIENT_LOGIN && state != CLIENT_LOGIN)
		forget_scram(c);
	if (c->timer_armed && !throttled) {
		evtimer_del(c->timer);
		c->timer_armed = false;
	}
	c->state = state;
	switch (state) {
	case CLIENT_IDLE:
		if (!throttled)
			client_arm_timer(c, c->pool != NULL ? c->pool->set.client_idle_timeout_us
			                                    : c->w->cfg->client_idle_timeout_us);
		/* Between transactions: notifications held while it had a server go now. */
		if (c->listen != NULL)
			listen_flush(c);
		break;
	case CLIENT_WAITING:
		c->wait_start_us = worker_now_us(c->w);
		conn_suspend(&c->conn, SUSPEND_WAIT_SERVER);
		client_arm_timer(c, c->pool->set.query_wait_timeout_us);
		break;
	case CLIENT_CLOSING:
		client_bury_after_flush(c);
		break;
	default:
		break;
	}
}

static void xact_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	char limit[32];

	if (c->state != CLIENT_ACTIVE || c->server == NULL)
		return;
	config_format_duration(c->w->cfg->transaction_timeout_us, limit, sizeof(limit));
	/* An error in the middle of a message being streamed to it would garble what it reads. */
	if (c->server->fwd_remaining > 0)
		client_close(c, "transaction_timeout expired");
	else
		client_fail(c, SQLSTATE_TRANSACTION_TIMEOUT,
		            "closing a connection whose transaction was open longer than "
		            "transaction_timeout (%s)",
		            limit);
}

void client_watch_transaction(struct client *c, int64_t us)
{
	struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};

	if (us <= 0) {
		if (c->xact_timer != NULL)
			evtimer_del(c->xact_timer);
		return;
	}
	if (c->xact_timer == NULL &&
	    (c->xact_timer = evtimer_new(c->w->loop.base, xact_timer_cb, c)) == NULL)
		return; /* out of memory: the transaction goes unwatched, nothing worse */
	evtimer_add(c->xact_timer, &tv);
}

static void arm_stall_timer(struct client *c, int64_t us)
{
	struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
	size_t left = evbuffer_get_length(c->conn.out);

	c->stall_mark = left < UINT32_MAX ? (uint32_t)left : UINT32_MAX;
	evtimer_add(c->stall_timer, &tv);
}

/*
 * client_write_timeout: a period after its server was paused for its full
 * output.  Any of it read meanwhile earns another period, so a slow reader
 * is never cut off, only one that reads nothing; the drained callback
 * disarms it once the output is down to the low watermark.
 */
static void stall_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	int64_t limit = c->w->cfg->client_write_timeout_us;
	char text[32];

	/* Something waits for this output to drain: its server, or the console's next reply. */
	if (c->state == CLIENT_CLOSING || limit <= 0 ||
	    (c->server != NULL ? !(c->server->conn.suspend & SUSPEND_WATERMARK)
	                       : c->session == NULL))
		return;
	if (evbuffer_get_length(c->conn.out) < c->stall_mark) {
		arm_stall_timer(c, limit);
		return;
	}
	record_timeout(c);
	config_format_duration(limit, text, sizeof(text));
	/* No error can reach it: its output is what it does not read. */
	clog(c, LOG_WARN,
	     "client_write_timeout (%s): read none of its results meanwhile; closing it and "
	     "giving its server back",
	     text);
	client_close(c, "client_write_timeout expired");
}

void client_watch_stall(struct client *c)
{
	int64_t limit = c->w->cfg->client_write_timeout_us;

	/*
	 * In session mode the server is the client's own: nobody else waits for
	 * it.  A console client (no pool) holds sluice's memory instead.
	 */
	if (limit <= 0 || (c->pool != NULL && pool_mode(c->pool) == POOL_SESSION))
		return;
	if (c->stall_timer == NULL &&
	    (c->stall_timer = evtimer_new(c->w->loop.base, stall_timer_cb, c)) == NULL)
		return; /* out of memory: the stall goes unwatched, as with the timeout off */
	if (!evtimer_pending(c->stall_timer, NULL))
		arm_stall_timer(c, limit);
}

void client_log_ctx(const struct client *c, struct log_ctx *ctx, char *addr)
{
	ctx->worker = c->w->id;
	ctx->kind = 'C';
	ctx->id = c->id;
	ctx->tenant = c->pool != NULL ? pool_tenant(c->pool) : NULL;
	ctx->db = c->dbname;
	ctx->user = c->user;
	ctx->addr = client_peer_text(c, addr, CLIENT_PEER_TEXT_LEN);
}

void client_kick(struct client *c)
{
	if (c->state != CLIENT_CLOSING)
		conn_kick(&c->conn);
}

void client_close(struct client *c, const char *reason)
{
	struct worker *w = c->w;

	if (c->state == CLIENT_CLOSING)
		return;
	clog(c, w->cfg->log_disconnections ? LOG_INFO : LOG_DEBUG, "closing: %s", reason);
	client_watch_transaction(c, 0);
	if (list_linked(&c->wait_node))
		list_del(&c->wait_node);
	if (c->server != NULL)
		server_unlink(c->server);
	admission_client_gone(c);
	cancel_unregister(w, c);
	conn_suspend(&c->conn, SUSPEND_CLOSING); /* never resumed */
	client_set_state(c, CLIENT_CLOSING);
	w->nclients--;
	atomic_fetch_sub(&w->shared->nclients, 1);
}

static void send_error(struct client *c, const char *severity, const char *sqlstate,
                       const char *hint, const char *fmt, va_list ap)
{
	char msg[512];
	bool quiet =
	    !c->w->cfg->log_pooler_errors || strcmp(sqlstate, SQLSTATE_ADMIN_SHUTDOWN) == 0;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	clog(c, quiet ? LOG_DEBUG : LOG_INFO, "%s %s: %s", severity, sqlstate, msg);
	build_error_hint(conn_out(&c->conn), severity, sqlstate, msg, NULL, hint);
}

void client_fail(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	va_list ap;

	if (c->state == CLIENT_CLOSING)
		return;
	va_start(ap, fmt);
	send_error(c, "FATAL", sqlstate, NULL, fmt, ap);
	va_end(ap);
	client_close(c, "error sent");
}

/* After a request's error: drop its messages up to its Sync/Query, which then gets ReadyForQuery.
 */
static void finish_reject(struct client *c)
{
	pool_dequeue(c->pool, c);
	c->discarding = true;
	client_set_state(c, CLIENT_IDLE);
	client_kick(c);
}

void client_reject_request(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	va_list ap;

	if (c->state == CLIENT_CLOSING)
		return;
	va_start(ap, fmt);
	send_error(c, "ERROR", sqlstate, NULL, fmt, ap);
	va_end(ap);
	finish_reject(c);
}

void client_free(struct client *c)
{
	if (c->handler->free != NULL)
		c->handler->free(c);
	if (c->pool != NULL)
		pool_client_gone(c->pool);
	conn_release(&c->conn);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->xact_timer != NULL)
		event_free(c->xact_timer);
	if (c->stall_timer != NULL)
		event_free(c->stall_timer);
	param_list_fini(&c->params);
	prepared_map_free(c->stmts, &c->w->prepared);
	forget_scram(c);
	if (c->queried_secret != NULL) {
		user_secret_free(c->queried_secret);
		free(c->queried_secret);
	}
	free(c->capture);
	if (!c->names_shared)
		free(c->user); /* and dbname, in the same allocation */
	free(c);
}

void client_link(struct client *c, struct server *s)
{
	struct pool_stats *st = &s->pool->stats;

	if (c->state == CLIENT_WAITING)
		st->wait_time_us += (uint64_t)(worker_now_us(c->w) - c->wait_start_us);
	record_link(c, s);
	st->server_assignments++;
	c->server = s;
	s->client = c;
	client_set_state(c, CLIENT_ACTIVE);
	server_sync_params(s, c);
}

/*
 * Logged in for good: when its pool has the same names (no forced server
 * user), the client points at the pool's copies, which outlive it, and
 * gives back its own.
 */
static void share_names(struct client *c)
{
	if (c->names_shared || strcmp(c->user, c->pool->user) != 0 ||
	    strcmp(c->dbname, c->pool->dbname) != 0)
		return;
	free(c->user);
	c->user = c->pool->user;
	c->dbname = c->pool->dbname;
	c->names_shared = true;
}

void client_login_ready(struct client *c)
{
	struct evbuffer *out = conn_out(&c->conn);
	const struct param_list *defaults = &c->pool->defaults;

	for (size_t i = 0; i < defaults->count; i++) {
		const struct param *d = &defaults->items[i];
		const struct param *own = param_find(&c->params, d->name);

		build_parameter_status(out, d->name, own ? own->value : d->value);
	}
	build_backend_key(out, c->cancel_pid, c->cancel_key);
	c->pool->stats.client_logins++;
	build_ready(out, 'I');
	client_set_state(c, CLIENT_IDLE);
	share_names(c);
	/* The login timer is done with; a client given an idle timeout later makes a new one. */
	if (c->timer != NULL && !c->timer_armed) {
		event_free(c->timer);
		c->timer = NULL;
	}
	clog(c, c->w->cfg->log_connections ? LOG_INFO : LOG_DEBUG, "logged in");
	/*
	 * What the client sent behind its login is the relay's now.  A login
	 * that waited for the pool resumes reading; one answered inside its own
	 * read (the pool knew its defaults) must be kicked, or a Query pipelined
	 * behind it would wait for the client's next bytes.
	 */
	if (c->conn.suspend & SUSPEND_LOGIN_WAIT)
		conn_resume(&c->conn, SUSPEND_LOGIN_WAIT);
	else
		conn_kick(&c->conn);
}

static void send_error_hint(struct client *c, const char *severity, const char *sqlstate,
                            const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void send_error_hint(struct client *c, const char *severity, const char *sqlstate,
                            const char *hint, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_error(c, severity, sqlstate, hint, fmt, ap);
	va_end(ap);
}

void client_pool_failed(struct client *c, const char *sqlstate, const char *msg, const char *hint)
{
	if (c->state == CLIENT_CLOSING)
		return;
	if (c->state == CLIENT_LOGIN) {
		send_error_hint(c, "FATAL", sqlstate, hint, "%s", msg);
		client_close(c, "error sent");
		return;
	}
	send_error_hint(c, "ERROR", sqlstate, hint, "%s", msg);
	finish_reject(c);
}

void client_cancel(struct client *c)
{
	record_cancel(c);
	if (c->handler->cancel != NULL)
		c->handler->cancel(c);
}

void client_drain(struct client *c)
{
	if (c->state == CLIENT_ACTIVE) {
		c->close_at_idle = true;
		return;
	}
	client_fail(c, SQLSTATE_ADMIN_SHUTDOWN, "sluice is shutting down");
}

/* What is left of the message in progress: changes whenever some of it arrives. */
static uint32_t rest_mark(const struct client *c)
{
	return (uint32_t)(c->fwd_remaining - evbuffer_get_length(c->conn.in));
}

bool client_mid_message(const struct client *c)
{
	size_t have = evbuffer_get_length(c->conn.in);
	struct frame f;

	if (c->fwd_remaining > 0)
		return true;
	return have > 0 &&
	       (frame_peek(c->conn.in, &f, UINT32_MAX) != FRAME_READY || have < frame_total(&f));
}

/* The read timeout, `us` from now: the silence it ends began at rest_moved_us. */
static void arm_read_timeout(struct client *c, int64_t us)
{
	client_arm_timer(c, us);
	c->awaiting_rest = true;
	c->rest_mark = rest_mark(c);
}

/*
 * After a read that left a message unfinished.  The timer is armed once;
 * later pieces only move rest_moved_us (a message over TLS comes a record
 * at a time), and the expiry waits out what is left of the silence since.
 */
void client_watch_rest(struct client *c)
{
	int64_t limit = c->w->cfg->client_read_timeout_us;

	if (limit <= 0 || c->server == NULL || c->state != CLIENT_ACTIVE)
		return; /* off, or nothing held */
	if (c->awaiting_rest && rest_mark(c) == c->rest_mark)
		return; /* no progress since the last look */
	c->rest_moved_us = worker_now_us(c->w);
	if (c->awaiting_rest)
		c->rest_mark = rest_mark(c);
	else
		arm_read_timeout(c, limit);
}

static void read_timeout(struct client *c)
{
	int64_t limit = c->w->cfg->client_read_timeout_us, now = worker_now_us(c->w);

	/* The message came whole meanwhile (and nothing else needed the timer). */
	if (!client_mid_message(c) || c->server == NULL || limit <= 0)
		return;
	/* Some came unseen, or it was not read (its server's output was full): silent from now. */
	if (rest_mark(c) != c->rest_mark || c->conn.suspend != 0)
		c->rest_moved_us = now;
	if (c->rest_moved_us + limit > now) {
		arm_read_timeout(c, c->rest_moved_us + limit - now);
		return;
	}
	record_timeout(c);
	client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
	            "client_read_timeout expired in the middle of a message: the rest never came");
}

static void client_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	c->timer_armed = false;
	if (c->state == CLIENT_CLOSING) {
		bury(c); /* its last message could not be delivered in time */
		return;
	}
	if (c->conn.suspend & SUSPEND_THROTTLE) {
		admission_retry(c);
		return;
	}
	if (c->conn.suspend & SUSPEND_AUTH_DELAY) {
		c->handler->wake(c); /* the login's: the failed login's answer is due */
		return;
	}
	if (c->awaiting_rest) {
		c->awaiting_rest = false;
		read_timeout(c);
		return;
	}
	record_timeout(c);
	if (c->state == CLIENT_ACTIVE && c->server != NULL && c->server->pin != 0 &&
	    c->server->tx_status == 'I' && c->w->cfg->pin_timeout_us > 0 &&
	    worker_now_us(c->w) - c->server->pinned_since_us >= c->w->cfg->pin_timeout_us) {
		char reasons[128];

		client_fail(c, SQLSTATE_IDLE_SESSION_TIMEOUT,
		            "closing a connection pinned to its server connection (%s) longer than "
		            "pin_timeout",
		            server_pin_reasons(c->server->pin, reasons, sizeof(reasons)));
		return;
	}
	if (c->state == CLIENT_LOGIN)
		client_fail(c, SQLSTATE_CONNECTION_FAILURE,
		            "client_login_timeout expired before the login completed");
	else if (c->state == CLIENT_IDLE ||
	         (c->state == CLIENT_ACTIVE && c->server != NULL && c->server->tx_status == 'I' &&
	          !c->server->requests.batch_open))
		client_fail(c, SQLSTATE_IDLE_SESSION_TIMEOUT,
		            "closing an idle connection: client_idle_timeout expired");
	else if (c->state == CLIENT_ACTIVE)
		client_fail(c, SQLSTATE_IDLE_IN_TRANSACTION_TIMEOUT,
		            "closing a connection idle in a transaction: "
		            "idle_transaction_timeout expired");
	else if (c->state == CLIENT_WAITING)
		client_reject_request(c, SQLSTATE_TOO_MANY_CONNECTIONS,
		                      "query_wait_timeout expired while waiting for a server "
		                      "connection (pool %s/%s is busy)",
		                      c->pool->dbname, c->pool->user);
}

static void client_read_cb(struct conn *conn)
{
	struct client *c = conn_owner(conn, struct client, conn);

	switch (c->state) {
	case CLIENT_LOGIN:
	case CLIENT_IDLE:
	case CLIENT_ACTIVE:
		c->handler->input(c);
		break;
	case CLIENT_WAITING:
	case CLIENT_CLOSING:
		break;
	}
}

static void client_drained_cb(struct conn *conn)
{
	struct client *c = conn_owner(conn, struct client, conn);

	if (c->state == CLIENT_CLOSING) {
		bury(c); /* the final message is out */
		return;
	}
	if (c->stall_timer != NULL)
		evtimer_del(c->stall_timer);
	/* The console held its next replies for this (admin/console.c). */
	if (c->session != NULL && c->handler->wake != NULL)
		c->handler->wake(c);
	if (c->server != NULL)
		conn_resume(&c->server->conn,
		            SUSPEND_WATERMARK); /* room again: the server may send */
	if (c->listen != NULL)
		listen_flush(c); /* and the notifications held meanwhile may go */
}

static void client_event_cb(struct conn *conn, int what)
{
	struct client *c = conn_owner(conn, struct client, conn);
	char reason[256];

	if (what & CONN_CONNECTED)
		return; /* TLS handshake done: the startup packet follows */
	if (c->state == CLIENT_CLOSING) {
		bury(c); /* the peer is gone before its final message was out */
		return;
	}
	if (c->tls && (what & CONN_ERROR)) {
		tls_error_text(conn_tls_bev(&c->conn), reason, sizeof(reason));
		clog(c, LOG_INFO, "TLS: %s", reason);
		client_close(c, "TLS error");
		return;
	}
	client_close(c, (what & CONN_EOF) ? "client disconnected" : "client socket error");
}

static const struct conn_ops client_conn_ops = {
    .read = client_read_cb,
    .drained = client_drained_cb,
    .event = client_event_cb,
};

int client_start_tls(struct client *c)
{
	SSL *ssl = SSL_new(c->w->snap->tls.accept);

	/* The answer goes out in the clear, before the handshake; nothing else is queued. */
	if (ssl == NULL || send(c->conn.fd, "S", 1, MSG_NOSIGNAL) != 1) {
		SSL_free(ssl);
		client_close(c, "could not start TLS");
		return -1;
	}
	if (conn_start_tls(&c->conn, ssl, BUFFEREVENT_SSL_ACCEPTING) < 0) {
		client_close(c, "could not start TLS");
		return -1;
	}
	c->tls = true;
	return 0;
}

size_t client_size(void)
{
	return sizeof(struct client) + conn_event_size();
}

struct client *client_new(struct worker *w, int fd, const struct sockaddr *addr, int addrlen,
                          bool is_unix, const struct client_handler *login)
{
	struct client *c = calloc(1, client_size());
	int one = 1;

	if (c == NULL) {
		close(fd);
		return NULL;
	}
	c->id = atomic_fetch_add(&w->shared->next_conn_id, 1);
	c->w = w;
	c->handler = login;
	c->is_unix = is_unix;
	c->state = CLIENT_LOGIN;
	c->connect_us = worker_now_us(w);
	list_init(&c->wait_node);
	param_list_init(&c->params);
	if (!is_unix && addrlen > 0)
		memcpy(&c->peer, addr,
		       (size_t)addrlen < sizeof(c->peer) ? (size_t)addrlen : sizeof(c->peer));
	if (!is_unix)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (conn_init_fd(&c->conn, &w->loop, fd, &client_conn_ops, c->rev_space) < 0) {
		client_free(c);
		return NULL;
	}
	conn_set_read_high(&c->conn, RELAY_READ_HIGH);
	/*
	 * A client that hangs up while it waits (for a server, its tokens, the
	 * answers ahead of its next request, a LISTEN, its login's parameters or
	 * delay) is let go at once: its place in the queue, its reserved tokens
	 * and its tenant slot, and its unsent request is dropped, not run.
	 */
	c->conn.watch_close = SUSPEND_WAIT_SERVER | SUSPEND_THROTTLE | SUSPEND_PIPELINE |
	                      SUSPEND_LISTEN | SUSPEND_LOGIN_WAIT | SUSPEND_AUTH_DELAY;
	list_add_tail(&w->clients, &c->node);
	w->nclients++;
	/* Refused after the startup packet, as Postgres does, so libpq reads the error. */
	if (atomic_fetch_add(&w->shared->nclients, 1) >= w->cfg->max_client_conn)
		c->refuse = REFUSE_TOO_MANY;
	else if (w->draining)
		c->refuse = REFUSE_SHUTDOWN;
	client_arm_timer(c, w->cfg->client_login_timeout_us);
	return c;
}
