/*
 * The admin console session: login and welcome, the simple query protocol
 * (extended messages are refused up to their Sync), splitting a Query into
 * statements, the command table, and the plumbing that runs a command on
 * every worker or on the control loop and comes back to this client's worker
 * (see admin/console.h).  The commands themselves are in show.c and
 * control.c.
 */
#include "admin/console.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin/census.h"
#include "admin/control.h"
#include "admin/show.h"
#include "pool/client.h"
#include "pool/relay.h"
#include "config/config.h"
#include "base/inbox.h"
#include "observe/latency.h"
#include "observe/queries.h"
#include "proto/build.h"
#include "proto/frame.h"
#include "proto/sqlstate.h"
#include "runtime/runtime.h"
#include "observe/gather.h"
#include "pool/worker.h"

/* ---- login ---- */

/* Is `user` one of the comma- or blank-separated names in `list`? */
static bool user_listed(const char *list, const char *user)
{
	size_t ulen = strlen(user);
	const char *p = list;

	while (*p != '\0') {
		size_t n;

		p += strspn(p, ", \t");
		n = strcspn(p, ", \t");
		if (n > 0 && n == ulen && strncmp(p, user, n) == 0)
			return true;
		p += n;
	}
	return false;
}

static enum console_role role_of(const struct config *cfg, const char *user)
{
	if (user_listed(cfg->admin_users, user))
		return ADMIN_ROLE_ADMIN;
	if (user_listed(cfg->stats_users, user))
		return ADMIN_ROLE_STATS;
	return ADMIN_ROLE_NONE;
}

static void poll_cb(evutil_socket_t fd, short what, void *arg);
static void reply_canceled(struct console_conn *conn);

static void conn_free(struct console_conn *conn)
{
	if (conn->poll_timer != NULL)
		event_free(conn->poll_timer);
	free(conn->sql);
	free(conn);
}

/* ---- driver probe parameters ---- */

/*
 * What drivers ask a server about.  The console has no server, so it answers
 * fixed values, the ones psql and the common drivers want to see.
 */
struct probe {
	const char *name;  /* canonical spelling, also the column name */
	const char *value; /* what the console reports; NULL = computed */
	bool welcome;      /* sent as ParameterStatus at login */
	bool any;          /* SET accepts any value silently */
};

static const struct probe probes[] = {
    {"server_version", NULL, true, false},
    {"server_encoding", "UTF8", true, false},
    {"client_encoding", "UTF8", true, false},
    {"DateStyle", "ISO, MDY", true, false},
    {"IntervalStyle", "postgres", true, false},
    {"TimeZone", "UTC", true, false},
    {"integer_datetimes", "on", true, false},
    {"standard_conforming_strings", "on", true, false},
    {"is_superuser", "off", true, false},
    {"application_name", NULL, true, true},
    {"default_transaction_isolation", "read committed", false, false},
    {"transaction_isolation", "read committed", false, false},
    {"default_transaction_read_only", "off", false, false},
    {"transaction_read_only", "off", false, false},
    {"server_version_num", "160000", false, false},
    {"max_identifier_length", "63", false, false},
    {"extra_float_digits", "1", false, true},
    {"search_path", "\"$user\", public", false, true},
    {"statement_timeout", "0", false, true},
    {"lock_timeout", "0", false, true},
    {"idle_in_transaction_session_timeout", "0", false, true},
};

static const struct probe *probe_find(const char *name)
{
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
		if (strcasecmp(probes[i].name, name) == 0)
			return &probes[i];
	return NULL;
}

static const char *probe_value(const struct client *c, const struct probe *pr, char *buf,
                               size_t len)
{
	const struct param *app;

	if (pr->value != NULL)
		return pr->value;
	if (strcmp(pr->name, "server_version") == 0) {
		snprintf(buf, len, "%s (sluice %s)", ADMIN_PG_VERSION, SLUICE_VERSION);
		return buf;
	}
	app = param_find(&c->params, "application_name");
	return app != NULL ? app->value : "";
}

/* Letters and digits only, lower-cased: "UTF-8" and "utf8" are the same encoding. */
static bool same_setting(const char *a, const char *b)
{
	for (;;) {
		while (*a != '\0' && !isalnum((unsigned char)*a))
			a++;
		while (*b != '\0' && !isalnum((unsigned char)*b))
			b++;
		if (*a == '\0' || *b == '\0')
			return *a == *b;
		if (tolower((unsigned char)*a++) != tolower((unsigned char)*b++))
			return false;
	}
}

bool console_set_probe(struct console_conn *conn, const char *name, const char *value)
{
	const struct probe *pr = probe_find(name);
	char buf[128];
	const char *have;

	if (pr == NULL)
		return false;
	have = probe_value(conn->c, pr, buf, sizeof(buf));
	/* DateStyle "ISO" is enough for drivers: the order part does not matter to them. */
	if (!pr->any && !same_setting(have, value) &&
	    !(strcasecmp(pr->name, "DateStyle") == 0 && strncasecmp(value, "ISO", 3) == 0) &&
	    !(strcasecmp(pr->name, "client_encoding") == 0 && strcasecmp(value, "unicode") == 0))
		console_reply_notice(conn, "SET %s ignored: the admin console always uses %s",
		                     pr->name, have);
	console_reply_complete(conn, "SET");
	return true;
}

bool console_show_probe(struct console_conn *conn, const char *name)
{
	const struct probe *pr = probe_find(name);
	const struct console_col col = {pr != NULL ? pr->name : "", ADMIN_TEXT};
	char buf[128];
	const char *v[1];

	if (pr == NULL)
		return false;
	v[0] = probe_value(conn->c, pr, buf, sizeof(buf));
	console_reply_header(conn, &col, 1);
	console_reply_row(conn, 1, v);
	console_reply_complete(conn, "SHOW");
	return true;
}

/* What drivers look at before their first query; no server is involved. */
static void send_welcome(struct client *c)
{
	struct evbuffer *out = conn_out(&c->conn);

	build_auth(out, 0, NULL, 0);
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		char buf[128];

		if (probes[i].welcome)
			build_parameter_status(out, probes[i].name,
			                       probe_value(c, &probes[i], buf, sizeof(buf)));
	}
	build_backend_key(out, c->cancel_pid, c->cancel_key);
	build_ready(out, 'I');
}

static void console_login(struct client *c)
{
	enum console_role role = role_of(c->w->cfg, c->user);
	struct console_conn *conn;

	if (role == ADMIN_ROLE_NONE) {
		client_fail(c, SQLSTATE_INVALID_AUTHORIZATION,
		            "user \"%s\" may not use the admin console: it is in neither "
		            "admin_users nor stats_users",
		            c->user);
		return;
	}
	conn = calloc(1, sizeof(*conn));
	if (conn == NULL ||
	    (conn->poll_timer = evtimer_new(c->w->loop.base, poll_cb, conn)) == NULL ||
	    cancel_register(c->w, c) < 0) {
		if (conn != NULL)
			conn_free(conn);
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return;
	}
	conn->c = c;
	conn->w = c->w;
	conn->role = role;
	c->handler = &admin_console_handler;
	c->session = conn;
	send_welcome(c);
	client_set_state(c, CLIENT_IDLE);
	clog(c, LOG_INFO, "admin console login (%s)",
	     role == ADMIN_ROLE_ADMIN ? "admin_users" : "stats_users");
}

static void console_free(struct client *c)
{
	struct console_conn *conn = c->session;

	if (conn == NULL)
		return;
	c->session = NULL;
	conn->c = NULL;
	/* The op's completion will find the client gone and free everything then. */
	if (conn->inflight)
		return;
	if (conn->op != NULL)
		console_op_free(conn->op);
	conn_free(conn);
}

/* ---- replies ---- */

struct evbuffer *console_out(struct console_conn *conn)
{
	return conn_out(&conn->c->conn);
}

void console_reply_error(struct console_conn *conn, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clog(conn->c, LOG_DEBUG, "console error %s: %s", sqlstate, msg);
	build_error(console_out(conn), "ERROR", sqlstate, msg, NULL);
}

void console_reply_notice(struct console_conn *conn, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	build_notice(console_out(conn), SQLSTATE_SUCCESSFUL_COMPLETION, msg);
}

void console_reply_complete(struct console_conn *conn, const char *tag)
{
	build_command_complete(console_out(conn), tag);
}

void console_reply_header(struct console_conn *conn, const struct console_col *cols, size_t n)
{
	const char *names[64];
	uint32_t types[64];

	if (n > 64)
		n = 64;
	for (size_t i = 0; i < n; i++) {
		names[i] = cols[i].name;
		types[i] = cols[i].type;
	}
	build_row_description(console_out(conn), n, names, types);
}

void console_reply_row(struct console_conn *conn, size_t n, const char *const *values)
{
	build_data_row(console_out(conn), n, values);
}

/* ---- ops: gathers and control-loop messages ---- */

struct console_op *console_op_new(struct console_conn *conn, const char *tag)
{
	struct console_op *op = calloc(1, sizeof(*op));

	if (op != NULL) {
		op->conn = conn;
		op->tag = tag;
		op->nparts = conn->w->shared->nworkers;
		op->parts = calloc((size_t)op->nparts, sizeof(*op->parts));
	}
	if (op == NULL || op->parts == NULL) {
		free(op);
		console_reply_error(conn, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return NULL;
	}
	return op;
}

static void parts_clear(struct console_op *op)
{
	for (int i = 0; i < op->nparts; i++) {
		struct console_part *part = &op->parts[i];

		if (part->rows != NULL)
			evbuffer_free(part->rows);
		census_free(part->census);
		memset(part, 0, sizeof(*part));
	}
}

void console_op_free(struct console_op *op)
{
	if (op == NULL)
		return;
	parts_clear(op);
	free(op->parts);
	latency_report_free(op->latency);
	query_report_free(op->queries);
	free(op->target);
	free(op->key);
	free(op->value);
	free(op);
}

/* An op came back to the console's worker. */
static void op_returned(struct console_op *op)
{
	struct console_conn *conn = op->conn;

	conn->inflight = false;
	if (conn->c == NULL || conn->c->state == CLIENT_CLOSING) {
		conn->op = NULL;
		console_op_free(op);
		if (conn->c == NULL)
			conn_free(conn);
		return;
	}
	op->done(op);
}

/*
 * Sluice stopped with the op's answer undelivered: its worker closed the
 * client already (console_free left conn to the op), so both go now.
 */
static void op_dropped(void *arg)
{
	struct console_op *op = arg;
	struct console_conn *conn = op->conn;

	conn->inflight = false;
	conn->op = NULL;
	console_op_free(op);
	if (conn->c == NULL)
		conn_free(conn);
}

static void gather_each_cb(struct worker *w, void *ctx)
{
	struct console_op *op = ctx;

	if (w->id >= 0 && w->id < op->nparts)
		op->each(w, op, &op->parts[w->id]);
}

static void gather_done_cb(void *ctx)
{
	op_returned(ctx);
}

/* Start (or restart, for polls) a gather; on failure the error is written, op kept. */
static int start_gather(struct console_op *op)
{
	struct console_conn *conn = op->conn;

	parts_clear(op);
	conn->op = op;
	conn->inflight = true;
	if (gather_start(conn->w->shared, &conn->w->inbox, gather_each_cb, gather_done_cb,
	                 op_dropped, op) < 0) {
		conn->inflight = false;
		console_reply_error(conn, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return -1;
	}
	return 0;
}

static void latency_done_cb(struct latency_report *rep, void *arg)
{
	struct console_op *op = arg;

	op->latency = rep;
	op_returned(op);
}

/*
 * Marks the console busy with OP, whose answer comes back through
 * op_returned, before its request is posted.
 */
static struct console_conn *op_begin(struct console_op *op)
{
	struct console_conn *conn = op->conn;

	conn->op = op;
	conn->inflight = true;
	return conn;
}

/* Undoes op_begin and says why when the request could not be posted. */
static enum console_result op_posted(struct console_op *op, int posted)
{
	struct console_conn *conn = op->conn;

	if (posted < 0) {
		conn->inflight = false;
		conn->op = NULL;
		console_op_free(op);
		console_reply_error(conn, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return ADMIN_FAILED;
	}
	return ADMIN_PENDING;
}

enum console_result console_run_latency(struct console_op *op)
{
	struct console_conn *conn = op_begin(op);

	return op_posted(
	    op, latency_gather(conn->w->shared, &conn->w->inbox, latency_done_cb, op_dropped, op));
}

static void queries_done_cb(struct query_report *rep, void *arg)
{
	struct console_op *op = arg;

	op->queries = rep;
	op_returned(op);
}

enum console_result console_run_queries(struct console_op *op)
{
	struct console_conn *conn = op_begin(op);

	return op_posted(
	    op, queries_gather(conn->w->shared, &conn->w->inbox, queries_done_cb, op_dropped, op));
}

enum console_result console_run_gather(struct console_op *op)
{
	if (start_gather(op) < 0) {
		op->conn->op = NULL;
		console_op_free(op);
		return ADMIN_FAILED;
	}
	return ADMIN_PENDING;
}

static void control_reply_cb(void *owner, void *arg)
{
	op_returned(arg);
}

static void control_cb(void *owner, void *arg)
{
	struct runtime *rt = owner;
	struct console_op *op = arg;

	op->control(rt, op);
	if (inbox_post(&op->conn->w->inbox, control_reply_cb, op) < 0)
		log_error(&rt->log, "admin console: cannot answer a command (out of memory)");
}

enum console_result console_run_control(struct console_op *op)
{
	struct console_conn *conn = op_begin(op);

	return op_posted(op, inbox_post(&runtime_of(conn->w)->inbox, control_cb, op));
}

void console_poll_later(struct console_op *op)
{
	struct timeval tv = {.tv_sec = 0, .tv_usec = ADMIN_POLL_US};
	struct console_conn *conn = op->conn;

	conn->op = op;
	/* A cancel that came while the last look was in flight takes effect now. */
	if (conn->cancel_requested) {
		reply_canceled(conn);
		console_statement_done(op, false);
		return;
	}
	evtimer_add(conn->poll_timer, &tv);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct console_conn *conn = arg;

	if (conn->op != NULL && !conn->inflight && start_gather(conn->op) < 0)
		console_statement_done(conn->op, false);
}

static void reply_canceled(struct console_conn *conn)
{
	conn->cancel_requested = false;
	console_reply_error(conn, SQLSTATE_QUERY_CANCELED,
	                    "canceling statement due to user request (what it started stays in "
	                    "effect)");
}

/* Only a command that waits (PAUSE, SUSPEND, WAIT_CLOSE) can be cancelled, between looks. */
static void console_cancel(struct client *c)
{
	struct console_conn *conn = c->session;

	if (conn == NULL || conn->op == NULL)
		return;
	if (conn->inflight || !evtimer_pending(conn->poll_timer, NULL)) {
		conn->cancel_requested = true;
		return;
	}
	evtimer_del(conn->poll_timer);
	reply_canceled(conn);
	console_statement_done(conn->op, false);
}

/* ---- statements ---- */

/* Past a quoted string or comment starting at p; p itself if none starts there. */
static const char *skip_quoted(const char *p)
{
	if (*p == '\'' || *p == '"') {
		char q = *p++;

		while (*p != '\0') {
			if (*p == q && p[1] == q)
				p += 2;
			else if (*p == q)
				return p + 1;
			else
				p++;
		}
		return p;
	}
	if (p[0] == '-' && p[1] == '-') {
		const char *nl = strchr(p, '\n');

		return nl != NULL ? nl + 1 : p + strlen(p);
	}
	if (p[0] == '/' && p[1] == '*') {
		const char *end = strstr(p + 2, "*/");

		return end != NULL ? end + 2 : p + strlen(p);
	}
	return p;
}

/* Cut the next non-blank statement out of the Query in place; NULL when none is left. */
static char *next_statement(struct console_conn *conn)
{
	while (conn->pos < conn->sql_len) {
		char *start = conn->sql + conn->pos, *p = start;
		struct console_lexer lx;

		while (*p != '\0' && *p != ';') {
			const char *q = skip_quoted(p);

			p = q != p ? (char *)q : p + 1;
		}
		conn->pos = (size_t)(p - conn->sql) + 1;
		*p = '\0';
		console_lex_init(&lx, start);
		if (console_lex_next(&lx) != TOK_END)
			return start;
	}
	return NULL;
}

typedef enum console_result (*command_fn)(struct console_conn *conn, struct console_lexer *lx);

struct command {
	const char *name; /* first word */
	bool control;     /* admin_users only */
	command_fn run;
};

static const struct command commands[] = {
    {"SHOW", false, show_statement},
    {"SET", false, control_set}, /* probe parameters for anyone, options for admins */
    {"PAUSE", true, control_pause},
    {"RESUME", true, control_resume},
    {"SUSPEND", true, control_suspend},
    {"DISABLE", true, control_disable},
    {"ENABLE", true, control_enable},
    {"RECONNECT", true, control_reconnect},
    {"KILL", true, control_kill},
    {"KILL_CLIENT", true, control_kill_client},
    {"WAIT_CLOSE", true, control_wait_close},
    {"SHUTDOWN", true, control_shutdown},
    {"RELOAD", true, control_reload},
    {"RESET", true, control_reset},
};

static enum console_result execute(struct console_conn *conn, char *stmt)
{
	struct console_lexer lx;

	console_lex_init(&lx, stmt);
	if (console_lex_next(&lx) != TOK_WORD) {
		console_reply_error(
		    conn, SQLSTATE_SYNTAX_ERROR,
		    "syntax error: a console command starts with a keyword; SHOW HELP "
		    "lists them");
		return ADMIN_FAILED;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *cmd = &commands[i];

		if (!console_lex_is(&lx, cmd->name))
			continue;
		if (cmd->control && conn->role != ADMIN_ROLE_ADMIN) {
			console_reply_error(
			    conn, SQLSTATE_INSUFFICIENT_PRIVILEGE,
			    "%s needs a user in admin_users; \"%s\" is a stats_users "
			    "member and may only run SHOW",
			    cmd->name, conn->c->user);
			return ADMIN_FAILED;
		}
		if (cmd->control)
			clog(conn->c, LOG_INFO, "console: %.200s", stmt);
		return cmd->run(conn, &lx);
	}
	console_reply_error(conn, SQLSTATE_SYNTAX_ERROR,
	                    "unknown console command \"%.64s\"; SHOW HELP lists the commands",
	                    lx.text);
	return ADMIN_FAILED;
}

/* The Query is over (all ran, or one failed): ReadyForQuery. */
static void finish_query(struct console_conn *conn)
{
	struct evbuffer *out = console_out(conn);

	if (!conn->ran_any)
		build_empty_query(out);
	build_ready(out, 'I');
	free(conn->sql);
	conn->sql = NULL;
	/* client_idle_timeout counts from the end of the last command. */
	client_arm_timer(conn->c, conn->w->cfg->client_idle_timeout_us);
}

/*
 * Replies the client has not read hold what comes next, as the relay holds
 * a server for a client that does not read: past RELAY_HIGH_WATERMARK,
 * neither its input nor the rest of its Query runs until the output drains
 * to RELAY_LOW_WATERMARK (console_wake), and client_write_timeout closes a
 * client that reads none of it.  Without this, a console user that never
 * read made sluice's memory grow without bound (a 64 kB Query of SHOW
 * CONFIG repeated queues about 40 MB), a stats user included.
 */
static bool hold_for_output(struct console_conn *conn)
{
	struct client *c = conn->c;

	if (evbuffer_get_length(c->conn.out) <= RELAY_HIGH_WATERMARK)
		return false;
	conn->held_for_output = true;
	conn_notify_drained(&c->conn, RELAY_LOW_WATERMARK);
	conn_suspend(&c->conn, SUSPEND_WATERMARK);
	client_watch_stall(c);
	return true;
}

static void run_statements(struct console_conn *conn)
{
	while (conn->sql != NULL) {
		char *stmt;
		enum console_result r;

		if (hold_for_output(conn))
			return;
		stmt = next_statement(conn);

		if (stmt == NULL) {
			finish_query(conn);
			return;
		}
		conn->ran_any = true;
		conn->cancel_requested = false;
		r = execute(conn, stmt);
		if (r == ADMIN_PENDING)
			return;
		if (r == ADMIN_FAILED) {
			finish_query(conn);
			return;
		}
	}
}

void console_statement_done(struct console_op *op, bool ok)
{
	struct console_conn *conn = op->conn;

	conn->op = NULL;
	console_op_free(op);
	if (conn->sql == NULL)
		return;
	if (ok)
		run_statements(conn);
	else
		finish_query(conn);
	/* Messages that arrived while the command ran. */
	if (conn->sql == NULL)
		client_kick(conn->c);
}

/* ---- protocol ---- */

static void start_query(struct console_conn *conn, struct evbuffer *in, const struct frame *f)
{
	size_t len = f->len - 4;
	const char *body =
	    (const char *)evbuffer_pullup(in, (ev_ssize_t)frame_total(f)) + FRAME_HEADER_LEN;

	if (len == 0 || memchr(body, '\0', len) != body + len - 1) {
		client_fail(conn->c, SQLSTATE_PROTOCOL_VIOLATION,
		            "invalid Query message: the string is not terminated where it ends");
		return;
	}
	conn->sql = malloc(len);
	if (conn->sql == NULL) {
		client_fail(conn->c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return;
	}
	memcpy(conn->sql, body, len);
	client_arm_timer(conn->c, 0); /* a waiting PAUSE is not idleness */
	conn->sql_len = len - 1;
	conn->pos = 0;
	conn->ran_any = false;
	evbuffer_drain(in, frame_total(f));
	run_statements(conn);
}

static bool is_extended(uint8_t type)
{
	return type == 'P' || type == 'B' || type == 'D' || type == 'E' || type == 'C' ||
	       type == 'F';
}

/* One message; returns false when the client was closed or input must wait. */
static bool console_message(struct console_conn *conn, struct evbuffer *in, const struct frame *f)
{
	struct evbuffer *out = console_out(conn);

	switch (f->type) {
	case 'Q':
		if (conn->skip_to_sync) {
			conn->drop_remaining = frame_total(f);
			return true;
		}
		if (f->len - 4 > ADMIN_QUERY_MAX) {
			build_error(out, "ERROR", SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
			            "console command too long: the limit is 65536 bytes", NULL);
			build_ready(out, 'I');
			conn->drop_remaining = frame_total(f);
			return true;
		}
		if (evbuffer_get_length(in) < frame_total(f))
			return false;
		start_query(conn, in, f);
		return conn->c != NULL && conn->c->state != CLIENT_CLOSING;
	case 'X':
		client_close(conn->c, "client sent Terminate");
		return false;
	case 'S':
		conn->skip_to_sync = false;
		build_ready(out, 'I');
		break;
	case 'H': /* Flush: nothing is held back */
	case 'd': /* CopyData, CopyDone, CopyFail outside COPY: ignored, as Postgres does */
	case 'c':
	case 'f':
		break;
	default:
		if (!is_extended(f->type)) {
			client_fail(conn->c, SQLSTATE_PROTOCOL_VIOLATION,
			            "invalid frontend message type %d", f->type);
			return false;
		}
		if (!conn->skip_to_sync)
			build_error(out, "ERROR", SQLSTATE_FEATURE_NOT_SUPPORTED,
			            "the admin console supports only the simple query protocol",
			            "Extended-protocol messages are ignored up to the next Sync; "
			            "send commands as simple Query messages.");
		conn->skip_to_sync = true;
		break;
	}
	conn->drop_remaining = frame_total(f);
	return true;
}

static void console_input(struct client *c);

/* The client read its replies down to the low watermark: what was held goes on. */
static void console_wake(struct client *c)
{
	struct console_conn *conn = c->session;

	if (conn == NULL || !conn->held_for_output)
		return;
	conn->held_for_output = false;
	if (conn->sql != NULL)
		run_statements(conn);
	if (conn->c != NULL && !conn->held_for_output)
		conn_resume(&c->conn, SUSPEND_WATERMARK);
}

static void console_input(struct client *c)
{
	struct console_conn *conn = c->session;
	struct evbuffer *in = c->conn.in;
	uint32_t max_packet = (uint32_t)c->w->cfg->max_packet_size;

	while (c->state == CLIENT_IDLE && c->session == conn && conn->sql == NULL) {
		struct frame f;
		enum frame_status st;

		if (hold_for_output(conn))
			return;

		if (conn->drop_remaining > 0) {
			size_t n = evbuffer_get_length(in);

			if (n > conn->drop_remaining)
				n = (size_t)conn->drop_remaining;
			evbuffer_drain(in, n);
			conn->drop_remaining -= n;
			if (conn->drop_remaining > 0)
				return;
			continue;
		}
		st = frame_peek(in, &f, max_packet);
		if (st == FRAME_INCOMPLETE)
			return;
		if (st == FRAME_INVALID || f.len > frame_client_limit(f.type, max_packet)) {
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
			            "invalid message length %u for message type '%c'", f.len,
			            f.type >= 0x20 && f.type < 0x7f ? f.type : '?');
			return;
		}
		if (!console_message(conn, in, &f))
			return;
	}
}

/* ---- lexer ---- */

void console_lex_init(struct console_lexer *lx, const char *s)
{
	lx->p = s;
	lx->start = s;
	lx->kind = TOK_END;
	lx->text[0] = '\0';
	lx->error = NULL;
}

static bool is_word_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_' || ch == '$' || ch == '.' || ch == '-';
}

static enum console_tok lex_fail(struct console_lexer *lx, const char *why)
{
	lx->error = why;
	lx->text[0] = '\0';
	return lx->kind = TOK_ERROR;
}

static enum console_tok lex_quoted(struct console_lexer *lx)
{
	char q = *lx->p++;
	size_t n = 0;

	for (;;) {
		if (*lx->p == '\0')
			return lex_fail(lx, "unterminated quoted string");
		if (*lx->p == q && lx->p[1] != q)
			break;
		if (*lx->p == q)
			lx->p++; /* doubled quote */
		if (n + 1 >= sizeof(lx->text))
			return lex_fail(lx, "quoted string too long");
		lx->text[n++] = *lx->p++;
	}
	lx->p++;
	lx->text[n] = '\0';
	return lx->kind = q == '\'' ? TOK_STRING : TOK_WORD;
}

enum console_tok console_lex_next(struct console_lexer *lx)
{
	size_t n = 0;

	if (lx->kind == TOK_ERROR)
		return TOK_ERROR;
	for (;;) {
		const char *q;

		while (isspace((unsigned char)*lx->p))
			lx->p++;
		q = *lx->p == '\'' || *lx->p == '"' ? lx->p : skip_quoted(lx->p);
		if (q == lx->p)
			break;
		lx->p = q;
	}
	lx->start = lx->p;
	lx->text[0] = '\0';
	if (*lx->p == '\0')
		return lx->kind = TOK_END;
	if (*lx->p == '\'' || *lx->p == '"')
		return lex_quoted(lx);
	if (!is_word_char(*lx->p)) {
		lx->text[0] = *lx->p++;
		lx->text[1] = '\0';
		return lx->kind = lx->text[0] == '=' ? TOK_EQUALS : TOK_OTHER;
	}
	while (is_word_char(*lx->p)) {
		if (n + 1 >= sizeof(lx->text))
			return lex_fail(lx, "name too long");
		lx->text[n++] = *lx->p++;
	}
	lx->text[n] = '\0';
	return lx->kind = TOK_WORD;
}

bool console_lex_is(const struct console_lexer *lx, const char *kw)
{
	return lx->kind == TOK_WORD && strcasecmp(lx->text, kw) == 0;
}

int console_parse_optional_db(struct console_conn *conn, struct console_lexer *lx, const char *cmd,
                              char **out)
{
	enum console_tok t = console_lex_next(lx);

	*out = NULL;
	if (t == TOK_END)
		return 0;
	if (t != TOK_WORD) {
		console_reply_error(conn, SQLSTATE_SYNTAX_ERROR, "syntax error: %s takes %s", cmd,
		                    t == TOK_ERROR ? lx->error : "an optional database name");
		return -1;
	}
	*out = strdup(lx->text);
	if (*out == NULL) {
		console_reply_error(conn, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return -1;
	}
	if (console_lex_next(lx) != TOK_END) {
		console_reply_error(conn, SQLSTATE_SYNTAX_ERROR,
		                    "syntax error: %s takes at most one database name", cmd);
		free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

const struct client_handler admin_console_handler = {
    .login = console_login,
    .input = console_input,
    .wake = console_wake,
    .cancel = console_cancel,
    .free = console_free,
};
