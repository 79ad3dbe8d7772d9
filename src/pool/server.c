/*
 * Server connections: connect, log in to Postgres, sit idle, get reset after
 * an unclean release.  Relaying while linked is relay.c's job.
 */
#include "pool/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "auth/scram.h"
#include "pool/cancel.h"
#include "pool/client.h"
#include "config/config.h"
#include "pool/qstats.h"
#include "pool/hosts.h"
#include "pool/listen.h"
#include "pool/record.h"
#include "pool/pool.h"
#include "proto/build.h"
#include "proto/frame.h"
#include "proto/sqlscan.h"
#include "proto/sqlstate.h"
#include "pool/relay.h"
#include "net/snapshot.h"
#include "net/tls.h"
#include "pool/worker.h"

static const char *const state_names[] = {"connecting", "login",     "idle",    "active",
                                          "resetting",  "canceling", "closing", "listening"};

const char *server_state_name(enum server_state state)
{
	return state_names[state];
}

void server_log_ctx(const struct server *s, struct log_ctx *ctx)
{
	ctx->worker = s->w->id;
	ctx->kind = 'S';
	ctx->id = s->id;
	ctx->tenant = pool_tenant(s->pool);
	ctx->db = s->pool->dbname;
	ctx->user = s->pool->user;
	ctx->addr = s->addr_text[0] ? s->addr_text : NULL;
}

static void arm_timer(struct server *s, int64_t us)
{
	struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};

	if (us > 0) {
		evtimer_add(s->timer, &tv);
		s->timer_pending = true;
		s->timer_deadline_us = worker_now_us(s->w) + us;
	} else if (s->timer_pending) {
		evtimer_del(s->timer);
		s->timer_pending = false;
	}
}

/*
 * Time left before an idle server must go: server_idle_timeout since it became
 * idle, or the end of server_lifetime, whichever is first; 0 = no limit.
 */
static int64_t idle_time_left(struct server *s)
{
	const struct config *cfg = s->w->cfg;
	int64_t now = worker_now_us(s->w), left = 0;

	if (cfg->server_idle_timeout_us > 0)
		left = cfg->server_idle_timeout_us - (now - s->idle_since_us);
	if (cfg->server_lifetime_us > 0) {
		int64_t life = cfg->server_lifetime_us - (now - s->connect_us);

		if (left == 0 || life < left)
			left = life;
	}
	return left;
}

/*
 * The idle timer is armed once and left running while the server goes back
 * and forth between idle and active: re-arming it on every transaction would
 * cost a timer-heap update (and often a timerfd syscall) per transaction.
 * When it fires, the callback checks how long the server has really been idle.
 */
static void arm_idle_timer(struct server *s)
{
	int64_t left;

	if (s->timer_pending)
		return;
	left = idle_time_left(s);
	if (left != 0)
		arm_timer(s, left > 0 ? left : 1);
}

void server_set_state(struct server *s, enum server_state state)
{
	struct pool *p = s->pool;

	if (s->state == SERVER_CLOSING)
		return;
	slog(s, LOG_DEBUG, "%s -> %s", server_state_name(s->state), server_state_name(state));
	list_del(&s->node);
	s->state = state;
	switch (state) {
	case SERVER_IDLE:
		list_add_head(&p->idle, &s->node);
		s->idle_since_us = worker_now_us(s->w);
		arm_idle_timer(s);
		break;
	case SERVER_ACTIVE:
		list_add_tail(&p->active, &s->node);
		break;
	case SERVER_RESETTING:
		list_add_tail(&p->pending, &s->node);
		arm_timer(s, s->w->cfg->server_reset_timeout_us);
		break;
	case SERVER_CONNECTING:
	case SERVER_LOGIN:
	case SERVER_CANCELING:
		list_add_tail(&p->pending, &s->node);
		break;
	case SERVER_CLOSING:
		list_add_tail(&s->w->dead_servers, &s->node);
		arm_timer(s, 0);
		break;
	case SERVER_LISTENING:
		arm_timer(s, 0);
		break;
	}
}

/* Its host's role recheck (breaker_claim_recheck), if it is one, is over. */
static void end_recheck(struct server *s)
{
	if (s->recheck) {
		breaker_recheck_done(s->breaker);
		s->recheck = false;
	}
}

void server_close(struct server *s, const char *reason)
{
	struct pool *p = s->pool;
	bool was_login = s->state == SERVER_CONNECTING || s->state == SERVER_LOGIN;

	if (s->state == SERVER_CLOSING)
		return;
	slog(s, was_login || s->state == SERVER_ACTIVE ? LOG_INFO : LOG_DEBUG, "closing: %s",
	     reason);
	if (s->client != NULL) {
		s->client->server = NULL;
		s->client = NULL;
	}
	conn_halt(&s->conn);
	cancel_detach_server(s);
	if (s->probe) {
		breaker_probe_abandoned(s->breaker);
		s->probe = false;
	}
	end_recheck(s);
	server_set_state(s, SERVER_CLOSING);
	pool_server_gone(p, s);
	if (s->listener != NULL)
		listen_server_gone(s);
	loop_schedule_reap(&s->w->loop);
	pool_maintain(p);
	pool_kick_all(s->w);
	if (s->w->shared->nworkers > 1)
		pool_kick_others(s->w);
}

void server_free(struct server *s)
{
	/* Its callback, deferred, sees EVUTIL_EAI_CANCEL and leaves the freed server alone. */
	if (s->dns != NULL)
		evdns_getaddrinfo_cancel(s->dns);
	conn_release(&s->conn);
	if (s->timer != NULL)
		event_free(s->timer);
	param_list_fini(&s->params);
	param_list_fini(&s->captured);
	param_list_fini(&s->watch);
	prepared_cache_fini(&s->stmts, &s->w->prepared);
	requests_fini(&s->requests);
	qstats_server_fini(&s->qs);
	if (s->breaker != NULL) {
		atomic_fetch_sub(&s->breaker->servers, 1);
		breaker_put(&s->w->shared->breakers, s->breaker);
	}
	free(s->scram);
	free(s);
}

static void server_timer_cb(evutil_socket_t fd, short what, void *arg);

/*
 * params_dirty and custom_unknown do not keep a server here: they are the
 * server's own, travel with it, and its next release acts on them there as
 * it would here.  In transaction mode an idle server has neither (the reset
 * read the settings back first); in session mode nothing reads them back
 * (server_reset_query cleans the session), so they stay set for good, and
 * a session-mode server that ever ran a SET could never have moved.
 */
bool server_can_move(const struct server *s)
{
	return s->state == SERVER_IDLE && server_is_clean(s) && conn_can_move(&s->conn) &&
	       s->client == NULL && s->cancels_inflight == 0 && list_empty(&s->cancels) &&
	       s->pin == 0 && !s->loaded && !s->close_needed && !s->capturing && s->dns == NULL &&
	       s->lend_to < 0 && s->listener == NULL;
}

void server_detach(struct server *s)
{
	slog(s, LOG_DEBUG, "handed to another worker");
	list_del(&s->node);
	if (s->timer != NULL)
		event_free(s->timer);
	s->timer = NULL;
	s->timer_pending = false;
	if (!prepared_cache_detach(&s->stmts, &s->w->prepared))
		s->stmts_foreign = true;
	s->ssl_in_transit = conn_detach(&s->conn);
	s->pool = NULL;
	s->w = NULL;
}

void server_discard(struct server *s, struct worker *w)
{
	conn_close_detached(&s->conn, s->ssl_in_transit);
	s->ssl_in_transit = NULL;
	s->w = w;
	server_free(s);
}

int server_attach(struct server *s, struct pool *p)
{
	SSL *ssl;

	s->w = p->w;
	s->pool = p;
	if (!prepared_cache_attach(&s->stmts, &p->w->prepared))
		s->stmts_foreign = true;
	s->timer = evtimer_new(p->w->loop.base, server_timer_cb, s);
	ssl = s->ssl_in_transit;
	s->ssl_in_transit = NULL;
	if (conn_attach(&s->conn, &p->w->loop, ssl) < 0 || s->timer == NULL)
		return -1;
	slog(s, LOG_DEBUG, "taken over from another worker: no new login");
	return 0;
}

void server_kick(struct server *s)
{
	conn_kick(&s->conn);
}

bool server_is_clean(const struct server *s)
{
	return s->tx_status == 'I' && requests_count(&s->requests) == 0 && !s->copy_in &&
	       !s->requests.batch_open && !s->requests.skip_to_sync && s->sync_pending == 0 &&
	       s->fwd_remaining == 0;
}

/* Make sure a ReadyForQuery will come: the last request must be one that ends in one. */
static void ensure_sync(struct server *s)
{
	struct evbuffer *out = conn_out(&s->conn);
	bool need_sync = requests_need_sync(&s->requests);

	if (s->copy_in) {
		build_copy_fail(out, "client disconnected during COPY");
		s->copy_in = false;
	}
	if (need_sync) {
		build_sync(out);
		requests_track(&s->requests, 'S'); /* and the server stops skipping at it */
	}
}

/*
 * One step of cleaning a server no client owns: wait for outstanding replies,
 * roll back an open transaction, run the session reset query, then release.
 */
void server_reset_step(struct server *s)
{
	struct evbuffer *out = conn_out(&s->conn);
	const char *reset = s->w->cfg->server_reset_query;

	/*
	 * Replies sluice owed the client that left, first in the queue: no reply
	 * of the server's retires them, so the next one would retire them in
	 * place of its own request, and every reply after it be counted one off.
	 */
	if (requests_is_fake(requests_head(&s->requests)))
		prepared_flush_fakes(s);
	if (requests_count(&s->requests) > 0 || s->copy_in || s->requests.skip_to_sync ||
	    s->sync_pending > 0) {
		ensure_sync(s);
		return;
	}
	/*
	 * A cancel on its way lands on whatever the backend runs when it comes:
	 * if the client's request ended first, that would be the ROLLBACK,
	 * DISCARD ALL, RESET ALL, reset query or read-back sent below, which
	 * would fail and leave the session as it was for the next client.  So
	 * nothing is sent before the cancel has landed (its connection closes
	 * once the postmaster has signalled the backend, which ignores a cancel
	 * while it waits for a command); cancel_done takes the reset on.
	 */
	if (s->cancels_inflight > 0)
		return;
	if (s->tx_status != 'I') {
		build_query(out, "ROLLBACK");
		requests_push(&s->requests, 'Q');
		return;
	}
	if (pool_mode(s->pool) == POOL_SESSION && !s->reset_query_sent && reset != NULL &&
	    reset[0] != '\0') {
		build_query(out, reset);
		requests_push(&s->requests, 'Q');
		s->reset_query_sent = true;
		return;
	}
	if (s->loaded) {
		server_close(s, "a library was LOADed into the session: it is not reused");
		return;
	}
	/*
	 * What pinned it cannot be moved or replayed: DISCARD ALL drops it all.
	 * A custom setting sluice could not name is dropped by RESET ALL.
	 */
	if ((s->pin != 0 || s->custom_unknown) && !s->reset_query_sent) {
		build_query(out, s->pin != 0 ? "DISCARD ALL" : "RESET ALL");
		if (s->pin != 0)
			s->named_stmt_stateful = false; /* DISCARD ALL drops every statement */
		s->custom_unknown = false;
		/*
		 * Its RESET tag names nothing unknown: read as an unread SET
		 * (check_settings_tag), it would mark the server again, and the
		 * reset would run RESET ALL until server_reset_timeout.
		 */
		s->names_read = true;
		requests_push(&s->requests, 'Q');
		s->reset_query_sent = true;
		s->pin = 0;
		s->params_dirty = true;
		return;
	}
	s->reset_query_sent = false;
	if (server_capture_params(s))
		return;
	if (s->cancels_inflight > 0) {
		server_set_state(s, SERVER_CANCELING);
		return;
	}
	pool_release(s->pool, s);
}

bool server_check_if_stale(struct server *s)
{
	const struct config *cfg = s->w->cfg;

	if (cfg->server_check_query[0] == '\0' ||
	    worker_now_us(s->w) - s->idle_since_us < cfg->server_check_delay_us)
		return false;
	slog(s, LOG_DEBUG, "idle past server_check_delay: running server_check_query");
	build_query(conn_out(&s->conn), cfg->server_check_query);
	requests_push(&s->requests, 'Q');
	/* Clean already: no server_reset_query after the check, in session mode either. */
	s->reset_query_sent = true;
	server_set_state(s, SERVER_RESETTING);
	return true;
}

void server_unlink(struct server *s)
{
	struct client *c = s->client;
	bool running;

	if (c != NULL) {
		c->server = NULL;
		s->client = NULL;
		/*
		 * A side paused for its peer (the other's output was full, or the
		 * client's next request waits for this server's answers) must not
		 * wait for a peer it lost.
		 */
		conn_resume(&c->conn, SUSPEND_WATERMARK | SUSPEND_PIPELINE);
		conn_resume(&s->conn, SUSPEND_WATERMARK);
		/* Half a message went to the server: there is no way to finish it cleanly. */
		if (c->fwd_remaining > 0) {
			server_close(s, "client left in the middle of a message");
			return;
		}
		/*
		 * Its batch was never synced: a Sync now would commit what it did,
		 * where Postgres rolls back a client that leaves.  Closing does that
		 * (unless an error already aborted it: the reset's Sync rolls back).
		 */
		if (s->requests.batch_open && !s->requests.skip_to_sync) {
			server_close(s, "client left inside an extended batch it never synced");
			return;
		}
	}
	if (server_is_clean(s) && s->cancels_inflight == 0 && pool_mode(s->pool) != POOL_SESSION &&
	    s->pin == 0 && !s->params_dirty && !s->custom_unknown) {
		pool_release(s->pool, s);
		return;
	}
	/*
	 * server_reset_timeout = 0: no time for a rollback (docs/config.md).  A
	 * clean server's reset (session mode's server_reset_query) still runs:
	 * closed too, session pooling would pool nothing.
	 */
	if (s->w->cfg->server_reset_timeout_us == 0 && !server_is_clean(s)) {
		server_close(s, "left unclean, and server_reset_timeout is 0");
		return;
	}
	running = requests_count(&s->requests) > 0 && requests_head(&s->requests) != 'S' &&
	          requests_head(&s->requests) != REQ_INJECTED_SYNC;
	server_set_state(s, SERVER_RESETTING);
	/*
	 * Behind sluice's own SET batch or settings read-back, the client's
	 * request has not begun: a cancel now would land on those instead (a
	 * failed read-back retires the server).  It goes when they are answered.
	 */
	s->cancel_deferred = running && s->sync_pending > 0;
	s->reset_cancels = 0;
	if (running && !s->cancel_deferred)
		cancel_server(s);
	server_reset_step(s);
}

/* The password (or keys) for logging in as the pool's user. */
static const char *server_password(const struct server *s, const struct user_secret **secret)
{
	const struct db_def *db = s->pool->db;

	*secret = auth_file_find(&s->w->cfg->auth, s->pool->user);
	if (db != NULL && db->password != NULL)
		return db->password;
	if (*secret != NULL && (*secret)->kind == SECRET_PLAIN)
		return (*secret)->plain;
	return NULL;
}

/*
 * Failures that say the host is unwell (no connection, a timeout, a server
 * starting up, shutting down or out of connections), which its breaker
 * counts; any other (a password, a missing database) is this login's.
 */
static bool is_host_failure(const char *sqlstate)
{
	return strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "57P0", 4) == 0 ||
	       strncmp(sqlstate, "53", 2) == 0;
}

static void login_failed(struct server *s, const char *sqlstate, const char *msg, bool host_down)
{
	struct pool *p = s->pool;
	const struct config *cfg = s->w->cfg;
	int64_t now = worker_now_us(s->w);

	slog(s, LOG_WARN, "server login failed: %s", msg);
	if (host_down) {
		const struct breaker_policy policy = {
		    .failures = cfg->server_breaker_failures,
		    .backoff_us = cfg->server_breaker_backoff_us,
		    .max_us = cfg->server_breaker_backoff_max_us,
		};

		breaker_failed(s->breaker, &policy, now, msg);
	} else {
		/* The host answered: it is up, the login is what failed. */
		breaker_succeeded(s->breaker, now, now - s->connect_us);
		/* Back off before closing, so the close does not immediately start another attempt.
		 */
		p->retry_after_us = now + cfg->server_login_retry_us;
	}
	s->probe = false;
	server_close(s, "login failed");
	pool_connect_failed(p, sqlstate, msg, host_down);
}

static void login_fail(struct server *s, const char *sqlstate, const char *msg)
{
	login_failed(s, sqlstate, msg, is_host_failure(sqlstate));
}

/*
 * A failure of this database's settings rather than of the host (TLS it
 * cannot have, a certificate its CA does not sign): other databases on the
 * same host must not find its breaker open for it.
 */
static void login_refused(struct server *s, const char *msg)
{
	login_failed(s, SQLSTATE_CONNECTION_FAILURE, msg, false);
}

static int auth_md5(struct server *s, struct msg_reader *r, struct evbuffer *out)
{
	const struct user_secret *secret;
	const char *password = server_password(s, &secret);
	const uint8_t *salt = msg_read_bytes(r, 4);
	char hash[MD5_PASSWD_LEN + 1], response[MD5_PASSWD_LEN + 1];

	if (salt == NULL)
		return -1;
	if (password != NULL)
		md5_password_hash(password, s->pool->user, hash);
	else if (secret != NULL && secret->kind == SECRET_MD5)
		memcpy(hash, secret->md5, sizeof(hash));
	else
		return -1;
	md5_salted_response(hash, salt, response);
	return build_password(out, response);
}

static int auth_sasl_start(struct server *s, struct msg_reader *r, struct evbuffer *out)
{
	const struct user_secret *secret;
	const char *password = server_password(s, &secret);
	const char *mech;
	bool offered = false;
	char first[SCRAM_MSG_MAX + 1];
	int len;

	while ((mech = msg_read_cstr(r)) != NULL && mech[0] != '\0')
		if (strcmp(mech, SCRAM_MECHANISM) == 0)
			offered = true;
	if (!offered)
		return -1;
	s->scram = calloc(1, sizeof(*s->scram));
	if (s->scram == NULL)
		return -1;
	if (password != NULL) {
		if (scram_client_init_password(s->scram, password, NULL, &s->w->scram_keys) < 0)
			return -1;
	} else if (s->pool->has_client_key) {
		/* Pass-through: the key a client proved it has, no plaintext stored anywhere. */
		scram_client_init_keys(s->scram, s->pool->client_key, s->pool->server_key, NULL);
	} else {
		return -1;
	}
	len = scram_client_first(s->scram, first, sizeof(first));
	if (len < 0)
		return -1;
	return build_sasl_initial(out, SCRAM_MECHANISM, first, (size_t)len);
}

static int auth_sasl_continue(struct server *s, struct msg_reader *r, struct evbuffer *out,
                              const char **err)
{
	size_t n = msg_remaining(r);
	char final[SCRAM_MSG_MAX + 1];
	int len;

	if (s->scram == NULL)
		return -1;
	len = scram_client_final(s->scram, (const char *)msg_read_bytes(r, n), n, final,
	                         sizeof(final), err);
	if (len < 0)
		return -1;
	return build_sasl_response(out, final, (size_t)len);
}

/* AuthenticationRequest from the server; returns -1 with *err set on failure. */
static int login_auth(struct server *s, struct msg_reader *r, const char **err)
{
	struct evbuffer *out = conn_out(&s->conn);
	const struct user_secret *secret;
	uint32_t code = msg_read_u32(r);

	*err = "no usable password for the server login (set password= in [databases] or a "
	       "plain password in auth_file)";
	switch (code) {
	case 0: /* AuthenticationOk */
		free(s->scram);
		s->scram = NULL;
		return 0;
	case 3: { /* cleartext */
		const char *password = server_password(s, &secret);

		return password != NULL ? build_password(out, password) : -1;
	}
	case 5:
		return auth_md5(s, r, out);
	case 10:
		return auth_sasl_start(s, r, out);
	case 11:
		return auth_sasl_continue(s, r, out, err);
	case 12: {
		size_t n = msg_remaining(r);

		*err = "server failed SCRAM verification";
		if (s->scram == NULL)
			return -1;
		return scram_client_verify_server(s->scram, (const char *)msg_read_bytes(r, n), n,
		                                  err);
	}
	default:
		*err = "server asked for an unsupported authentication method";
		return -1;
	}
}

/* What the reported parameters say of the server's role (Postgres 14 and later). */
static void learn_role(struct server *s)
{
	const struct param *hs = param_find(&s->params, "in_hot_standby");
	const struct param *ro = param_find(&s->params, "default_transaction_read_only");

	if (hs != NULL)
		s->role = strcmp(hs->value, "on") == 0 ? HOST_ROLE_STANDBY : HOST_ROLE_PRIMARY;
	if (ro != NULL)
		s->read_only = strcmp(ro->value, "on") == 0;
}

/* The row of the role query: pg_is_in_recovery(), default_transaction_read_only. */
static void learn_role_row(struct server *s, struct msg_reader *r)
{
	uint16_t ncols = msg_read_u16(r);

	for (uint16_t i = 0; i < ncols && i < 2; i++) {
		uint32_t n = msg_read_u32(r);
		const uint8_t *v = n != UINT32_MAX && n > 0 ? msg_read_bytes(r, n) : NULL;
		bool on = v != NULL && (v[0] == 't' || (n >= 2 && v[0] == 'o' && v[1] == 'n'));

		if (i == 0 && v != NULL)
			s->role = on ? HOST_ROLE_STANDBY : HOST_ROLE_PRIMARY;
		else if (i == 1 && v != NULL)
			s->read_only = on;
	}
}

static bool role_fits(const struct server *s)
{
	return hosts_role_fits(config_target_session_attrs(s->w->cfg, s->pool->db), s->role,
	                       s->read_only, s->any_role);
}

/*
 * The login's ReadyForQuery: the host answered, so its breaker closes; its
 * role, now known, goes to the breaker for every pool to see, and a server
 * of the wrong role (a standby for read-write...) is closed rather than
 * used.  Returns false when the server was closed.
 */
static bool login_done(struct server *s)
{
	int64_t now = worker_now_us(s->w);

	if (!s->role_query)
		learn_role(s);
	if (s->role == HOST_ROLE_UNKNOWN && !s->role_query &&
	    config_target_session_attrs(s->w->cfg, s->pool->db) != TARGET_ANY) {
		/* Postgres before 14 reports neither: ask, as libpq does. */
		build_query(conn_out(&s->conn),
		            "SELECT pg_catalog.pg_is_in_recovery(), "
		            "pg_catalog.current_setting('default_transaction_read_only')");
		s->role_query = true;
		return true;
	}
	breaker_succeeded(s->breaker, now, now - s->connect_us);
	s->probe = false;
	if (s->role != HOST_ROLE_UNKNOWN)
		breaker_set_role(s->breaker, s->role, s->read_only, now);
	end_recheck(s); /* the role it asked is known now */
	if (!role_fits(s)) {
		server_close(s, s->role == HOST_ROLE_STANDBY
		                    ? "the host is a standby, target_session_attrs wants another"
		                    : "the host is not of the role target_session_attrs wants");
		return false;
	}
	slog(s, LOG_DEBUG, "logged in, backend pid %u", s->backend_pid);
	arm_timer(s, 0);
	record_server_ready(s);
	if (s->listener != NULL)
		listen_server_ready(s);
	else
		pool_server_ready(s->pool, s);
	return true;
}

/* One login-phase message; returns false when the server was closed. */
static bool login_message(struct server *s, uint8_t type, const uint8_t *body, size_t len)
{
	struct msg_reader r;
	const char *err, *name, *value;

	msg_reader_init(&r, body, len);
	switch (type) {
	case 'R':
		if (login_auth(s, &r, &err) < 0) {
			login_fail(s, SQLSTATE_INVALID_PASSWORD, err);
			return false;
		}
		return true;
	case 'E': {
		const char *state = msg_error_field(body, len, 'C');
		const char *msg = msg_error_field(body, len, 'M');

		login_fail(s, state ? state : SQLSTATE_CONNECTION_FAILURE,
		           msg ? msg : "server refused the login");
		return false;
	}
	case 'S':
		name = msg_read_cstr(&r);
		value = msg_read_cstr(&r);
		if (name != NULL && value != NULL)
			param_set(&s->params, name, value);
		return true;
	case 'K':
		s->backend_pid = msg_read_u32(&r);
		s->backend_key = msg_read_u32(&r);
		return true;
	case 'Z':
		s->tx_status = (char)msg_read_u8(&r);
		return login_done(s);
	case 'D':
		if (!s->role_query)
			break;
		learn_role_row(s, &r);
		return true;
	case 'T':
	case 'C':
		if (!s->role_query)
			break;
		return true;
	case 'N': /* notices during login are not for any client */
	case 'v': /* NegotiateProtocolVersion: we asked for 3.0 only */
		return true;
	default:
		break;
	}
	login_fail(s, SQLSTATE_PROTOCOL_VIOLATION, "unexpected message during server login");
	return false;
}

/*
 * A ParameterStatus changed the server's role (a standby was promoted, or
 * default_transaction_read_only changed): every pool learns it through the
 * breaker, and a server that no longer suits its pool goes.  Returns false
 * when the server was closed.
 */
static bool role_changed(struct server *s, enum host_role was, bool was_ro)
{
	if (s->role == was && s->read_only == was_ro)
		return true;
	breaker_set_role(s->breaker, s->role, s->read_only, worker_now_us(s->w));
	slog(s, LOG_INFO, "the host is now a %s%s", host_role_name(s->role),
	     s->read_only ? " (read-only)" : "");
	if (role_fits(s))
		return true;
	server_close(s, "the host changed role");
	return false;
}

/* The ParameterStatus of an idle server (idle_input). */
static bool follow_role(struct server *s)
{
	enum host_role was = s->role;
	bool was_ro = s->read_only;

	learn_role(s);
	return role_changed(s, was, was_ro);
}

/*
 * Only in_hot_standby: a default_transaction_read_only in a reply may be the
 * client's own SET, which says nothing of the host.
 */
bool server_follow_reported_role(struct server *s)
{
	const struct param *hs = param_find(&s->params, "in_hot_standby");
	enum host_role was = s->role;

	s->role_reported = false;
	if (hs == NULL)
		return true;
	s->role = strcmp(hs->value, "on") == 0 ? HOST_ROLE_STANDBY : HOST_ROLE_PRIMARY;
	return role_changed(s, was, s->read_only);
}

static void login_input(struct server *s)
{
	struct evbuffer *in = s->conn.in;
	struct frame f;

	while (s->state == SERVER_LOGIN) {
		enum frame_status st = frame_peek(in, &f, FRAME_STARTUP_MAX * 2);
		const uint8_t *body;

		/* Checked before waiting for the body: a bogus length must not stall the login. */
		if (st == FRAME_INVALID) {
			login_fail(s, SQLSTATE_PROTOCOL_VIOLATION, "invalid message from server");
			return;
		}
		if (st == FRAME_INCOMPLETE || evbuffer_get_length(in) < frame_total(&f))
			return;
		body = evbuffer_pullup(in, (ev_ssize_t)frame_total(&f));
		if (!login_message(s, f.type, body + FRAME_HEADER_LEN, f.len - 4))
			return;
		evbuffer_drain(in, frame_total(&f));
	}
}

/* Asynchronous traffic on an idle server: notices, parameter changes, or a FATAL. */
static void idle_input(struct server *s)
{
	struct evbuffer *in = s->conn.in;
	struct frame f;

	for (;;) {
		enum frame_status st = frame_peek(in, &f, s->w->cfg->max_packet_size);
		const uint8_t *body;

		if (st == FRAME_INVALID) {
			server_close(s, "invalid message from idle server");
			return;
		}
		if (st == FRAME_INCOMPLETE || evbuffer_get_length(in) < frame_total(&f))
			return;
		if (f.type != 'N' && f.type != 'S' && f.type != 'A') {
			server_close(s, f.type == 'E' ? "server sent an error while idle"
			                              : "unexpected data from idle server");
			return;
		}
		if (f.type == 'S') {
			struct msg_reader r;
			const char *name, *value;

			body = evbuffer_pullup(in, (ev_ssize_t)frame_total(&f));
			msg_reader_init(&r, body + FRAME_HEADER_LEN, f.len - 4);
			name = msg_read_cstr(&r);
			value = msg_read_cstr(&r);
			if (name != NULL && value != NULL)
				param_set(&s->params, name, value);
			if (name != NULL && (strcmp(name, "in_hot_standby") == 0 ||
			                     strcmp(name, "default_transaction_read_only") == 0)) {
				evbuffer_drain(in, frame_total(&f));
				if (!follow_role(s))
					return;
				continue;
			}
		}
		evbuffer_drain(in, frame_total(&f));
	}
}

static void send_startup(struct server *s);

/* The one-byte answer to our SSLRequest. */
static void tls_answer(struct server *s)
{
	struct evbuffer *in = s->conn.in;
	const struct config *cfg = s->w->cfg;
	int mode = tls_server_sslmode(cfg, s->pool->db);
	char answer;
	SSL *ssl;

	if (evbuffer_remove(in, &answer, 1) != 1)
		return;
	/* Bytes after the answer would have been injected before the handshake. */
	if (answer == 'S' && evbuffer_get_length(in) > 0) {
		login_fail(s, SQLSTATE_PROTOCOL_VIOLATION,
		           "server sent unencrypted data after accepting TLS");
		return;
	}
	if (answer == 'N') {
		if (mode >= SSLMODE_REQUIRE) {
			login_refused(s, "server does not support TLS, but sslmode requires it");
			return;
		}
		s->tls = SERVER_TLS_NONE;
		send_startup(s);
		return;
	}
	if (answer != 'S') {
		login_fail(s, SQLSTATE_PROTOCOL_VIOLATION, "invalid answer to the TLS request");
		return;
	}
	ssl = tls_server_ssl(&s->w->snap->tls, cfg, s->pool->db, s->breaker->host);
	if (ssl == NULL || conn_start_tls(&s->conn, ssl, BUFFEREVENT_SSL_CONNECTING) < 0) {
		login_refused(s, "could not start TLS to the server");
		return;
	}
	s->tls = SERVER_TLS_HANDSHAKE;
}

static void server_read_cb(struct conn *conn)
{
	struct server *s = conn_owner(conn, struct server, conn);

	switch (s->state) {
	case SERVER_LOGIN:
		if (s->tls == SERVER_TLS_REQUESTED)
			tls_answer(s);
		else if (s->tls != SERVER_TLS_HANDSHAKE)
			login_input(s);
		break;
	case SERVER_ACTIVE:
	case SERVER_RESETTING:
		relay_server_input(s);
		break;
	case SERVER_IDLE:
	case SERVER_CANCELING:
		idle_input(s);
		break;
	case SERVER_LISTENING:
		listen_server_input(s);
		break;
	case SERVER_CONNECTING:
	case SERVER_CLOSING:
		break;
	}
}

static void server_drained_cb(struct conn *conn)
{
	struct server *s = conn_owner(conn, struct server, conn);

	/* Output drained below the low watermark: let the client send more. */
	if (s->client != NULL)
		conn_resume(&s->client->conn, SUSPEND_WATERMARK);
}

static void send_startup(struct server *s)
{
	const struct db_def *db = s->pool->db;
	const char *keys[4], *values[4];
	char options[512];
	size_t n = 0;

	keys[n] = "user";
	values[n++] = s->pool->user;
	keys[n] = "database";
	values[n++] = db->dbname != NULL ? db->dbname : s->pool->dbname;
	if (db->application_name != NULL) {
		keys[n] = "application_name";
		values[n++] = db->application_name;
	}
	/* A tenant's or user's statement_timeout rides on the options, after the database's. */
	if (s->pool->statement_timeout_us > 0) {
		snprintf(options, sizeof(options), "%s%s-c statement_timeout=%lldms",
		         db->connect_options != NULL ? db->connect_options : "",
		         db->connect_options != NULL ? " " : "",
		         (long long)((s->pool->statement_timeout_us + 999) / 1000));
		keys[n] = "options";
		values[n++] = options;
	} else if (db->connect_options != NULL) {
		keys[n] = "options";
		values[n++] = db->connect_options;
	}
	build_startup(conn_out(&s->conn), keys, values, n);
}

/*
 * TCP keepalive and TCP_USER_TIMEOUT: a host that vanished without a reset
 * (power loss, a partition) closes its idle and busy servers in bounded time
 * instead of never.  0 leaves the system's default.
 */
static void set_keepalive(const struct config *cfg, int fd)
{
	int on = cfg->tcp_keepalive;

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	if (on && cfg->tcp_keepidle > 0)
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &cfg->tcp_keepidle, sizeof(int));
	if (on && cfg->tcp_keepintvl > 0)
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &cfg->tcp_keepintvl, sizeof(int));
	if (on && cfg->tcp_keepcnt > 0)
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cfg->tcp_keepcnt, sizeof(int));
	if (cfg->tcp_user_timeout > 0)
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &cfg->tcp_user_timeout, sizeof(int));
}

static void remember_peer(struct server *s)
{
	int fd = s->conn.fd;
	int one = 1;

	s->addrlen = sizeof(s->addr);
	if (getpeername(fd, (struct sockaddr *)&s->addr, &s->addrlen) < 0)
		s->addrlen = 0;
	if (s->addr.ss_family == AF_INET || s->addr.ss_family == AF_INET6) {
		char host[INET6_ADDRSTRLEN];
		const void *a = s->addr.ss_family == AF_INET
		                    ? (const void *)&((struct sockaddr_in *)&s->addr)->sin_addr
		                    : (const void *)&((struct sockaddr_in6 *)&s->addr)->sin6_addr;

		inet_ntop(s->addr.ss_family, a, host, sizeof(host));
		snprintf(s->addr_text, sizeof(s->addr_text), "%s:%d", host, s->breaker->port);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		set_keepalive(s->w->cfg, fd);
	}
}

static void connect_failed(struct server *s, const char *why)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "could not connect to server %s:%d: %s", s->breaker->host,
	         s->breaker->port, why);
	login_fail(s, SQLSTATE_CONNECTION_FAILURE, msg);
}

static void server_event_cb(struct conn *conn, int what)
{
	struct server *s = conn_owner(conn, struct server, conn);
	char msg[256];

	if (what & CONN_CONNECTED) {
		if (s->pool->db == NULL) {
			server_close(s, "database removed while connecting");
			return;
		}
		if (s->tls == SERVER_TLS_HANDSHAKE) {
			s->tls = SERVER_TLS_ON;
			send_startup(s);
			return;
		}
		remember_peer(s);
		server_set_state(s, SERVER_LOGIN);
		/* libpq does not use TLS over a Unix socket either. */
		if (s->breaker->host[0] != '/' &&
		    tls_server_sslmode(s->w->cfg, s->pool->db) != SSLMODE_DISABLE) {
			s->tls = SERVER_TLS_REQUESTED;
			build_ssl_request(conn_out(&s->conn));
			return;
		}
		send_startup(s);
		return;
	}
	if (s->tls == SERVER_TLS_HANDSHAKE && (what & CONN_ERROR)) {
		char reason[200];

		tls_error_text(conn_tls_bev(&s->conn), reason, sizeof(reason));
		snprintf(msg, sizeof(msg), "TLS to server %s:%d failed: %s", s->breaker->host,
		         s->breaker->port, reason);
		login_refused(s, msg);
		return;
	}
	if (s->state == SERVER_CONNECTING || s->state == SERVER_LOGIN) {
		connect_failed(s,
		               (what & CONN_EOF) ? "connection closed" : strerror(s->conn.error));
		return;
	}
	if (s->client != NULL) {
		struct client *c = s->client;

		server_close(s, (what & CONN_EOF) ? "server closed the connection"
		                                  : "server connection error");
		client_fail(c, SQLSTATE_CONNECTION_FAILURE,
		            "server connection lost in the middle of a transaction");
		return;
	}
	server_close(s, (what & CONN_EOF) ? "server closed the connection"
	                                  : "server connection error");
}

void server_request_started(struct server *s)
{
	int64_t timeout = s->pool->set.query_timeout_us;

	if (timeout > 0 &&
	    (!s->timer_pending || s->timer_deadline_us > s->request_start_us + timeout))
		arm_timer(s, timeout);
}

/*
 * The timer fired on an active server: a request over its query_timeout is
 * cancelled (the client then gets 57014 naming the limit, and keeps the
 * server); a cancel Postgres has not answered within cancel_grace closes it.
 */
static void check_query_timeout(struct server *s)
{
	int64_t timeout = s->pool->set.query_timeout_us, elapsed;
	struct client *c = s->client;

	if (s->timed_out_after_us > 0) {
		server_close(
		    s, "query_timeout: Postgres did not answer the cancel within cancel_grace");
		if (c != NULL)
			client_fail(c, SQLSTATE_CONNECTION_FAILURE,
			            "sluice closed the server connection: the statement ran past "
			            "query_timeout and Postgres did not answer the cancel within "
			            "cancel_grace");
		return;
	}
	if (timeout <= 0 || requests_count(&s->requests) == 0 || c == NULL)
		return;
	elapsed = worker_now_us(s->w) - s->request_start_us;
	if (elapsed < timeout) {
		arm_timer(s, timeout - elapsed);
		return;
	}
	slog(s, LOG_WARN, "statement ran past query_timeout: cancelling it");
	s->timed_out_after_us = timeout;
	record_timeout(c);
	cancel_server(s);
	arm_timer(s, s->w->cfg->cancel_grace_us > 0 ? s->w->cfg->cancel_grace_us : 1);
}

static void server_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	s->timer_pending = false;
	switch (s->state) {
	case SERVER_CONNECTING:
	case SERVER_LOGIN:
		login_fail(s, SQLSTATE_CONNECTION_FAILURE, "server_connect_timeout expired");
		break;
	case SERVER_IDLE:
		if (idle_time_left(s) <= 0)
			server_close(s, "idle timeout or lifetime reached");
		else
			arm_idle_timer(s);
		break;
	case SERVER_RESETTING:
		/* Never expected (nothing in a reset takes long): say what it waited for. */
		slog(s, LOG_WARN,
		     "server_reset_timeout expired waiting for %zu replies (first 0x%02x, "
		     "last 0x%02x), transaction status %c, copy_in %d, skip_to_sync %d, "
		     "own batches %d, cancels in flight %d",
		     (size_t)requests_count(&s->requests), (unsigned)requests_head(&s->requests),
		     (unsigned)requests_last(&s->requests), s->tx_status, s->copy_in,
		     s->requests.skip_to_sync, s->sync_pending, s->cancels_inflight);
		server_close(s, "server_reset_timeout expired");
		break;
	case SERVER_ACTIVE:
		check_query_timeout(s);
		break;
	default:
		break;
	}
}

static const struct conn_ops server_conn_ops = {
    .read = server_read_cb,
    .drained = server_drained_cb,
    .event = server_event_cb,
};

static void resolved_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
	struct server *s = arg;

	if (err == EVUTIL_EAI_CANCEL)
		return; /* the server was freed */
	s->dns = NULL;
	if (s->state != SERVER_CONNECTING || s->pool->db == NULL) {
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		return;
	}
	if (err != 0)
		connect_failed(s, evutil_gai_strerror(err));
	else if (conn_connect(&s->conn, ai->ai_addr, (socklen_t)ai->ai_addrlen) < 0)
		connect_failed(s, strerror(s->conn.error));
	if (ai != NULL)
		evutil_freeaddrinfo(ai);
}

/* Returns -1 if the connection could not even start; failures after that come as events. */
static int start_connect(struct server *s)
{
	const char *host = s->breaker->host;
	int port_number = s->breaker->port;
	struct evutil_addrinfo hints = {
	    .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM,
	    .ai_protocol = IPPROTO_TCP,
	    .ai_flags = EVUTIL_AI_ADDRCONFIG,
	};
	struct evdns_getaddrinfo_request *req;
	char port[16];

	if (host[0] == '/') {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};

		if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", host,
		                     port_number) >= sizeof(sun.sun_path))
			return -1;
		snprintf(s->addr_text, sizeof(s->addr_text), "%s", sun.sun_path);
		if (conn_connect(&s->conn, (struct sockaddr *)&sun, sizeof(sun)) < 0)
			connect_failed(s, strerror(s->conn.error));
		return 0;
	}
	if (s->w->loop.dns == NULL)
		return -1;
	snprintf(port, sizeof(port), "%d", port_number);
	/* A numeric address is answered at once, through the callback, and NULL comes back. */
	req = evdns_getaddrinfo(s->w->loop.dns, host, port, &hints, resolved_cb, s);
	if (req != NULL && s->state == SERVER_CONNECTING)
		s->dns = req;
	return 0;
}

size_t server_size(void)
{
	return sizeof(struct server) + conn_event_size();
}

struct server *server_new(struct pool *p, const struct host_pick *pick, struct listener *l)
{
	struct worker *w = p->w;
	struct server *s = calloc(1, server_size());

	if (s == NULL)
		return NULL;
	s->id = atomic_fetch_add(&w->shared->next_conn_id, 1);
	s->w = w;
	s->pool = p;
	s->listener = l;
	s->tx_status = 'I';
	s->lend_to = -1;
	s->breaker = p->hosts.b[pick->idx];
	breaker_hold(&w->shared->breakers, s->breaker);
	atomic_fetch_add(&s->breaker->servers, 1);
	s->probe = pick->probe;
	s->any_role = pick->any_role;
	s->recheck = pick->recheck;
	param_list_init(&s->params);
	param_list_init(&s->captured);
	param_list_init(&s->watch);
	requests_init(&s->requests);
	qstats_server_init(&s->qs);
	prepared_cache_init(&s->stmts);
	list_init(&s->cancels);
	list_init(&s->node);
	s->connect_us = worker_now_us(w);
	s->timer = evtimer_new(w->loop.base, server_timer_cb, s);
	if (conn_init(&s->conn, &w->loop, &server_conn_ops, s->rev_space) < 0 || s->timer == NULL) {
		server_free(s);
		return NULL;
	}
	conn_set_read_high(&s->conn, RELAY_READ_HIGH);
	p->nservers++;
	s->state = SERVER_CONNECTING;
	list_add_tail(&p->pending, &s->node);
	arm_timer(s, w->cfg->server_connect_timeout_us);
	slog(s, LOG_DEBUG, "connecting to %s:%d%s", s->breaker->host, s->breaker->port,
	     s->probe ? " (the breaker's probe)" : "");
	/* On failure the server is closed but still returned: its quota is already given back. */
	if (start_connect(s) < 0)
		login_refused(s, "could not start a server connection");
	return s;
}

/* One Query of sluice's own whose replies are swallowed, if `sql` has any statement. */
static void send_sync_query(struct server *s, struct evbuffer *sql)
{
	if (evbuffer_get_length(sql) == 0)
		return;
	evbuffer_add(sql, "", 1);
	build_query(conn_out(&s->conn), (const char *)evbuffer_pullup(sql, -1));
	s->sync_pending++;
}

void server_sync_params(struct server *s, struct client *c)
{
	struct pool *p = s->pool;
	struct evbuffer *resets, *sets;
	uint64_t want = param_effective_fingerprint(&p->defaults, &c->params);
	bool differ = s->params.fingerprint != want;

	if (!differ && !s->stmts_foreign)
		return;
	resets = evbuffer_new();
	sets = evbuffer_new();
	if (resets == NULL || sets == NULL) {
		if (resets != NULL)
			evbuffer_free(resets);
		if (sets != NULL)
			evbuffer_free(sets);
		return;
	}
	/* Another worker's statements, not taken over here: dropped, in the same trip. */
	if (s->stmts_foreign)
		evbuffer_add(resets, "DEALLOCATE ALL;", 15);
	if ((differ && param_sync_sql(resets, sets, &p->defaults, &c->params, &s->params) > 0) ||
	    s->stmts_foreign) {
		s->stmts_foreign = false;
		/* The RESETs alone first: a bad value of this client's fails `sets` only. */
		send_sync_query(s, resets);
		send_sync_query(s, sets);
		/* Mirror what the SETs do; ParameterStatus replies fix the spelling later. */
		for (size_t i = 0; i < c->params.count; i++)
			if (!param_is_read_only(c->params.items[i].name))
				param_set(&s->params, c->params.items[i].name,
				          c->params.items[i].value);
		for (size_t i = 0; i < s->params.count;) {
			struct param *have = &s->params.items[i];
			const struct param *def = param_find(&p->defaults, have->name);

			if (param_find(&c->params, have->name) != NULL ||
			    param_is_read_only(have->name)) {
				i++;
			} else if (def == NULL) {
				param_remove(&s->params, have->name);
			} else {
				param_set(&s->params, have->name, def->value);
				i++;
			}
		}
	}
	evbuffer_free(resets);
	evbuffer_free(sets);
}

/*
 * Settings a session may carry from server to server.  The transaction_*
 * ones only ever describe the current transaction.
 */
static bool is_session_setting(const struct pool *p, const char *name)
{
	return param_find(&p->defaults, name) == NULL && !param_is_read_only(name) &&
	       !param_is_startup_only(name) && strncasecmp(name, "transaction_", 12) != 0;
}

/*
 * The read-back: every setting the session changed, and one row named " pin"
 * (no setting can have a space in its name) listing what ties the backend to
 * its client.  sluice's own renamed SQL statements (sluice_*) do not pin.
 * `role` (SET ROLE) is not in pg_settings (Postgres hides it from SHOW ALL):
 * asked for by name, or a role one client set went to the next with the server.
 */
static const char capture_sql[] =
    "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' "
    "UNION ALL SELECT 'role', pg_catalog.current_setting('role') "
    "WHERE pg_catalog.current_setting('role') <> 'none' "
    "UNION ALL SELECT ' pin', concat_ws(',', "
    "CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' "
    "AND pid = pg_catalog.pg_backend_pid()) THEN 'advisory lock' END, "
    "CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_class "
    "WHERE relnamespace = pg_catalog.pg_my_temp_schema()) THEN 'temporary table' END, "
    "CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_cursors WHERE is_holdable) "
    "THEN 'cursor WITH HOLD' END, "
    "CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE from_sql "
    "AND name NOT LIKE 'sluice\\_%') THEN 'SQL prepared statement' END, "
    "CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_listening_channels()) "
    "THEN 'LISTEN' END)";

static const char *const pin_names[] = {"advisory lock",    "temporary table",
                                        "cursor WITH HOLD", "SQL prepared statement",
                                        "LISTEN",           "LOAD"};

const char *server_pin_reasons(uint8_t pin, char *buf, size_t cap)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(pin_names) / sizeof(pin_names[0]); i++)
		if ((pin & (1u << i)) && used < cap)
			used += (size_t)snprintf(buf + used, cap - used, "%s%s", used ? "," : "",
			                         pin_names[i]);
	return buf;
}

uint8_t server_parse_pins(const char *text, size_t len)
{
	uint8_t pin = 0;

	for (size_t i = 0; i < sizeof(pin_names) / sizeof(pin_names[0]); i++) {
		size_t n = strlen(pin_names[i]);

		for (size_t at = 0; at + n <= len; at++)
			if (memcmp(text + at, pin_names[i], n) == 0) {
				pin |= (uint8_t)(1u << i);
				break;
			}
	}
	return pin;
}

static bool is_custom(const char *name)
{
	return strchr(name, '.') != NULL;
}

static void add_custom_rows(struct evbuffer *sql, const struct param_list *l,
                            struct param_list *seen)
{
	for (size_t i = 0; i < l->count; i++) {
		const char *name = l->items[i].name;

		if (!is_custom(name) || !param_set(seen, name, ""))
			continue;
		evbuffer_add_printf(sql, " UNION ALL SELECT ");
		param_sql_literal(sql, name);
		evbuffer_add_printf(sql, ", pg_catalog.current_setting(");
		param_sql_literal(sql, name);
		evbuffer_add_printf(sql, ", true)");
	}
}

/*
 * pg_settings leaves out custom settings (placeholders such as myapp.tenant):
 * each one the server, its client or this turn's SQL named is read by name.
 */
static void send_capture(struct server *s)
{
	struct evbuffer *sql = evbuffer_new();
	struct param_list seen;

	if (sql == NULL) {
		build_query(conn_out(&s->conn), capture_sql);
		return;
	}
	param_list_init(&seen);
	evbuffer_add(sql, capture_sql, sizeof(capture_sql) - 1);
	add_custom_rows(sql, &s->params, &seen);
	add_custom_rows(sql, &s->watch, &seen);
	if (s->client != NULL)
		add_custom_rows(sql, &s->client->params, &seen);
	param_list_fini(&seen);
	param_list_fini(&s->watch);
	evbuffer_add(sql, "", 1);
	build_query(conn_out(&s->conn), (const char *)evbuffer_pullup(sql, -1));
	evbuffer_free(sql);
}

static void watch_name(void *arg, const char *name)
{
	struct server *s = arg;

	param_set(&s->watch, name, "");
}

bool server_inspect_sql(struct server *s, enum sql_verb verb, const char *text, size_t n)
{
	unsigned mentions = 0;

	switch (verb) {
	case SQL_VERB_LOAD:
		s->loaded = true;
		break;
	case SQL_VERB_SET:
	case SQL_VERB_RESET:
	case SQL_VERB_DISCARD:
	case SQL_VERB_CREATE:
	case SQL_VERB_PREPARE:
	case SQL_VERB_DEALLOCATE:
	case SQL_VERB_LISTEN:
		break;
	case SQL_VERB_DECLARE:
		if (!sqlscan_contains(text, n, "hold"))
			return false;
		break;
	case SQL_VERB_CLOSE:
	case SQL_VERB_DROP:
	case SQL_VERB_UNLISTEN: /* a LISTEN sluice sent as UNLISTEN (listen.h) ends nothing */
		if (s->pin == 0)
			return false; /* nothing to end */
		break;
	default:
		mentions = sqlscan_mentions(text, n);
		if (mentions == 0)
			return false;
		break;
	}
	s->params_dirty = true;
	if (verb == SQL_VERB_SET || verb == SQL_VERB_RESET ||
	    (mentions & SQL_MENTIONS_SET_CONFIG)) {
		if (sqlscan_custom_names(text, n, watch_name, s) < 0)
			s->custom_unknown = true;
		s->names_read = true;
	}
	return true;
}

void server_inspect_bind(struct server *s)
{
	if (s->named_stmt_stateful) {
		s->params_dirty = true;
		s->custom_unknown = true;
	}
}

void server_inspect_function_call(struct server *s)
{
	/* Read back (settings, pins) and, for a custom setting it cannot name, RESET ALL. */
	s->params_dirty = true;
	s->custom_unknown = true;
}

bool server_capture_params(struct server *s)
{

	if (!s->params_dirty || s->tx_status != 'I' || pool_mode(s->pool) == POOL_SESSION)
		return false;
	s->params_dirty = false;
	param_list_fini(&s->captured);
	param_list_init(&s->captured);
	s->captured_pin = 0;
	send_capture(s);
	s->sync_pending++;
	s->capturing = true;
	return true;
}

/* Make `l`'s session settings (those no server reports) what the server has. */
static void apply_to(const struct pool *p, struct param_list *l, const struct param_list *rows)
{
	for (size_t i = 0; i < l->count;) {
		const char *name = l->items[i].name;

		if (is_session_setting(p, name) && param_find(rows, name) == NULL)
			param_remove(l, name); /* RESET, DISCARD ALL, or rolled back */
		else
			i++;
	}
	for (size_t i = 0; i < rows->count; i++)
		if (is_session_setting(p, rows->items[i].name))
			param_set(l, rows->items[i].name, rows->items[i].value);
}

/* The read-back said what ties the backend to its session now. */
static void apply_pins(struct server *s)
{
	uint8_t pin = s->captured_pin | (s->loaded ? PIN_LOAD : 0);
	char reasons[128];
	if (pin != 0 && s->pin == 0) {
		s->pinned_since_us = worker_now_us(s->w);
		s->pool->stats.pins++;
		slog(s, LOG_DEBUG, "pinned to its client: %s",
		     server_pin_reasons(pin, reasons, sizeof(reasons)));
	} else if (pin == 0 && s->pin != 0) {
		slog(s, LOG_DEBUG, "no longer pinned");
	}
	s->pin = pin;
}

void server_apply_captured(struct server *s)
{
	apply_pins(s);
	apply_to(s->pool, &s->params, &s->captured);
	if (s->client != NULL)
		apply_to(s->pool, &s->client->params, &s->captured);
	param_list_fini(&s->captured);
	param_list_init(&s->captured);
}
