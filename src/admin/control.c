/*
 * Console control commands and the per-worker console state.
 *
 * Every worker keeps its own copy of which databases are paused or disabled
 * and whether everything is paused or suspended; a command changes all
 * copies with one gather and answers when every worker has applied it, so a
 * client connecting after the answer sees the new state on any worker.
 * Commands that wait (PAUSE, SUSPEND, WAIT_CLOSE) look again every
 * ADMIN_POLL_US with another gather; the console worker's loop never blocks.
 * RELOAD, SET and SHUTDOWN run on the control loop.
 */
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/control.h"
#include "admin/console.h"
#include "pool/client.h"
#include "pool/pause.h"
#include "pool/qstats.h"
#include "config/config.h"
#include "runtime/listener.h"
#include "pool/pool.h"
#include "proto/sqlstate.h"
#include "runtime/runtime.h"
#include "runtime/sdnotify.h"
#include "pool/server.h"
#include "pool/worker.h"

#define WAIT_CLIENTS_POLL_US 100000 /* SHUTDOWN WAIT_FOR_CLIENTS: look at the client count */

/* Does a database argument (NULL = all) cover `dbname`? */
static bool target_matches(const char *target, const char *dbname)
{
	return target == NULL || (dbname != NULL && strcmp(target, dbname) == 0);
}

/* ---- helpers ---- */

/* A database argument must name a database sluice could serve. */
static bool db_known(struct console_conn *conn, const char *name)
{
	const struct config *cfg = conn->w->cfg;

	if (config_is_console_db(cfg, name)) {
		console_reply_error(conn, SQLSTATE_INVALID_PARAMETER_VALUE,
		                    "\"%s\" is the admin console, not a pooled database", name);
		return false;
	}
	if (config_find_db(cfg, name) == NULL) {
		console_reply_error(conn, SQLSTATE_INVALID_CATALOG_NAME, "no such database: %s",
		                    name);
		return false;
	}
	return true;
}

/* Parse "[db]" after a command; the database must exist. */
static int parse_target(struct console_conn *conn, struct console_lexer *lx, const char *cmd,
                        char **target)
{
	if (console_parse_optional_db(conn, lx, cmd, target) < 0)
		return -1;
	if (*target != NULL && !db_known(conn, *target)) {
		free(*target);
		*target = NULL;
		return -1;
	}
	return 0;
}

static int expect_end(struct console_conn *conn, struct console_lexer *lx, const char *cmd)
{
	if (console_lex_next(lx) == TOK_END)
		return 0;
	console_reply_error(conn, SQLSTATE_SYNTAX_ERROR, "syntax error: %s takes no arguments",
	                    cmd);
	return -1;
}

static int64_t sum_remaining(const struct console_op *op)
{
	int64_t n = 0;

	for (int i = 0; i < op->nparts; i++)
		n += op->parts[i].remaining;
	return n;
}

static bool any_found(const struct console_op *op)
{
	for (int i = 0; i < op->nparts; i++)
		if (op->parts[i].found)
			return true;
	return false;
}

/* Done for commands that answer as soon as every worker has applied them. */
static void complete_done(struct console_op *op)
{
	console_reply_complete(op->conn, op->tag);
	console_statement_done(op, true);
}

static enum console_result start(struct console_conn *conn, const char *tag, char *target,
                                 console_each_fn each, console_done_fn done)
{
	struct console_op *op = console_op_new(conn, tag);

	if (op == NULL) {
		free(target);
		return ADMIN_FAILED;
	}
	op->target = target;
	op->each = each;
	op->done = done;
	return console_run_gather(op);
}

/* Collect pointers first: closing one connection may close or move others. */
struct victims {
	void **items;
	size_t n, cap;
};

static void victims_add(struct victims *v, void *item)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		void **items = realloc(v->items, cap * sizeof(*items));

		if (items == NULL)
			return;
		v->items = items;
		v->cap = cap;
	}
	v->items[v->n++] = item;
}

static void add_servers(struct victims *v, struct list_node *head)
{
	for (struct list_node *pos = head->next; pos != head; pos = pos->next)
		victims_add(v, list_entry(pos, struct server, node));
}

/* ---- PAUSE, RESUME, SUSPEND ---- */

/* Servers still open in the target's pools; `found` if the pause was lifted meanwhile. */
static void count_paused_servers_each(struct worker *w, struct console_op *op,
                                      struct console_part *part)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);

		if (!target_matches(op->target, p->dbname))
			continue;
		if (!p->pause_closes)
			part->found = true;
		part->remaining += p->nservers;
	}
}

static void pause_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	pause_hold(w, op->target);
	count_paused_servers_each(w, op, part);
}

static void pause_done(struct console_op *op)
{
	if (any_found(op)) {
		console_reply_error(op->conn, SQLSTATE_QUERY_CANCELED,
		                    "PAUSE interrupted: RESUME was run while it waited");
		console_statement_done(op, false);
		return;
	}
	if (sum_remaining(op) == 0) {
		complete_done(op);
		return;
	}
	/* PAUSE answers once every server of the target is closed. */
	op->each = count_paused_servers_each;
	console_poll_later(op);
}

enum console_result control_pause(struct console_conn *conn, struct console_lexer *lx)
{
	char *target;

	if (parse_target(conn, lx, "PAUSE", &target) < 0)
		return ADMIN_FAILED;
	return start(conn, "PAUSE", target, pause_each, pause_done);
}

static void resume_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	pause_resume(w, op->target);
}

enum console_result control_resume(struct console_conn *conn, struct console_lexer *lx)
{
	const struct pause_state *ps = &conn->w->pause;
	char *target;

	if (parse_target(conn, lx, "RESUME", &target) < 0)
		return ADMIN_FAILED;
	if (target != NULL && !pause_db_paused_alone(conn->w, target)) {
		console_reply_error(conn, SQLSTATE_OBJECT_NOT_IN_PREREQUISITE_STATE,
		                    "database %s is not paused%s", target,
		                    ps->paused || ps->suspended
		                        ? " on its own (RESUME without a name lifts the global "
		                          "PAUSE or SUSPEND)"
		                        : "");
		free(target);
		return ADMIN_FAILED;
	}
	if (!pause_any_paused(conn->w)) {
		console_reply_error(conn, SQLSTATE_OBJECT_NOT_IN_PREREQUISITE_STATE,
		                    "sluice is not paused or suspended");
		return ADMIN_FAILED;
	}
	return start(conn, "RESUME", target, resume_each, complete_done);
}

static void add_output(struct console_part *part, const struct conn *conn)
{
	part->remaining += (int64_t)evbuffer_get_length(conn->out);
}

/* Bytes still queued towards clients and servers. */
static void count_unflushed_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->clients)
	{
		struct client *c = list_entry(pos, struct client, node);

		if (c->session == NULL)
			add_output(part, &c->conn);
	}
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		struct list_node *heads[] = {&p->idle, &p->active, &p->pending};

		for (size_t i = 0; i < 3; i++)
			for (struct list_node *n = heads[i]->next; n != heads[i]; n = n->next)
				add_output(part, &list_entry(n, struct server, node)->conn);
	}
}

static void suspend_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	pause_suspend(w);
	count_unflushed_each(w, op, part);
}

static void flush_done(struct console_op *op)
{
	if (sum_remaining(op) == 0) {
		complete_done(op);
		return;
	}
	op->each = count_unflushed_each;
	console_poll_later(op);
}

enum console_result control_suspend(struct console_conn *conn, struct console_lexer *lx)
{
	if (expect_end(conn, lx, "SUSPEND") < 0)
		return ADMIN_FAILED;
	if (conn->w->pause.suspended) {
		console_reply_error(conn, SQLSTATE_OBJECT_NOT_IN_PREREQUISITE_STATE,
		                    "sluice is already suspended");
		return ADMIN_FAILED;
	}
	return start(conn, "SUSPEND", NULL, suspend_each, flush_done);
}

/* ---- DISABLE, ENABLE ---- */

static void disable_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	pause_set_disabled(w, op->target, op->kind);
}

static enum console_result set_disabled(struct console_conn *conn, struct console_lexer *lx,
                                        const char *cmd, bool disabled)
{
	struct console_op *op;
	char *target;

	if (parse_target(conn, lx, cmd, &target) < 0)
		return ADMIN_FAILED;
	if (target == NULL) {
		console_reply_error(conn, SQLSTATE_SYNTAX_ERROR,
		                    "syntax error: %s needs a database name", cmd);
		return ADMIN_FAILED;
	}
	if ((op = console_op_new(conn, cmd)) == NULL) {
		free(target);
		return ADMIN_FAILED;
	}
	op->target = target;
	op->kind = disabled;
	op->each = disable_each;
	op->done = complete_done;
	return console_run_gather(op);
}

enum console_result control_disable(struct console_conn *conn, struct console_lexer *lx)
{
	return set_disabled(conn, lx, "DISABLE", true);
}

enum console_result control_enable(struct console_conn *conn, struct console_lexer *lx)
{
	return set_disabled(conn, lx, "ENABLE", false);
}

/* ---- RECONNECT, WAIT_CLOSE ---- */

static void reconnect_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);

		if (target_matches(op->target, p->dbname))
			pool_reconnect(p);
	}
}

enum console_result control_reconnect(struct console_conn *conn, struct console_lexer *lx)
{
	char *target;

	if (parse_target(conn, lx, "RECONNECT", &target) < 0)
		return ADMIN_FAILED;
	return start(conn, "RECONNECT", target, reconnect_each, complete_done);
}

static void count_close_needed_each(struct worker *w, struct console_op *op,
                                    struct console_part *part)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		struct list_node *heads[] = {&p->idle, &p->active, &p->pending};

		if (!target_matches(op->target, p->dbname))
			continue;
		for (size_t i = 0; i < 3; i++)
			for (struct list_node *n = heads[i]->next; n != heads[i]; n = n->next)
				part->remaining += list_entry(n, struct server, node)->close_needed;
	}
}

static void wait_close_done(struct console_op *op)
{
	if (sum_remaining(op) == 0) {
		complete_done(op);
		return;
	}
	console_poll_later(op);
}

enum console_result control_wait_close(struct console_conn *conn, struct console_lexer *lx)
{
	char *target;

	if (parse_target(conn, lx, "WAIT_CLOSE", &target) < 0)
		return ADMIN_FAILED;
	return start(conn, "WAIT_CLOSE", target, count_close_needed_each, wait_close_done);
}

/* ---- KILL, KILL_CLIENT ---- */

static bool client_in_target(const struct client *c, const char *target)
{
	if (c->session != NULL || c->state == CLIENT_CLOSING)
		return false;
	if (c->pool != NULL)
		return target_matches(target, c->pool->dbname);
	return c->dbname != NULL && target_matches(target, c->dbname);
}

static void kill_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	struct victims clients = {0}, servers = {0};
	struct list_node *pos, *tmp;

	/* New requests to a killed database wait for RESUME, as after PAUSE. */
	pause_hold(w, op->target);
	list_for_each_safe(pos, tmp, &w->clients)
	{
		struct client *c = list_entry(pos, struct client, node);

		if (client_in_target(c, op->target))
			victims_add(&clients, c);
	}
	for (size_t i = 0; i < clients.n; i++)
		client_fail(clients.items[i], SQLSTATE_ADMIN_SHUTDOWN,
		            "terminating connection due to administrator command (KILL)");
	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);

		if (!target_matches(op->target, p->dbname))
			continue;
		add_servers(&servers, &p->idle);
		add_servers(&servers, &p->active);
		add_servers(&servers, &p->pending);
	}
	for (size_t i = 0; i < servers.n; i++)
		server_close(servers.items[i], "KILL from the admin console");
	free(clients.items);
	free(servers.items);
}

enum console_result control_kill(struct console_conn *conn, struct console_lexer *lx)
{
	char *target;

	if (parse_target(conn, lx, "KILL", &target) < 0)
		return ADMIN_FAILED;
	return start(conn, "KILL", target, kill_each, complete_done);
}

static void kill_client_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->clients)
	{
		struct client *c = list_entry(pos, struct client, node);

		if (c->id != op->client_id || c->state == CLIENT_CLOSING)
			continue;
		part->found = true;
		/* Its server may be in the middle of anything: do not reuse it. */
		if (c->server != NULL)
			server_close(c->server, "KILL_CLIENT from the admin console");
		client_fail(c, SQLSTATE_ADMIN_SHUTDOWN,
		            "terminating connection due to administrator command (KILL_CLIENT)");
		return;
	}
}

static void kill_client_done(struct console_op *op)
{
	if (!any_found(op)) {
		console_reply_error(op->conn, SQLSTATE_UNDEFINED_OBJECT,
		                    "no client with id %" PRIu64 " (SHOW CLIENTS lists the ids)",
		                    op->client_id);
		console_statement_done(op, false);
		return;
	}
	complete_done(op);
}

enum console_result control_kill_client(struct console_conn *conn, struct console_lexer *lx)
{
	struct console_op *op;
	unsigned long long id;
	char *end;

	if (console_lex_next(lx) != TOK_WORD) {
		console_reply_error(
		    conn, SQLSTATE_SYNTAX_ERROR,
		    "syntax error: KILL_CLIENT needs a client id from SHOW CLIENTS");
		return ADMIN_FAILED;
	}
	errno = 0;
	id = strtoull(lx->text, &end, 10);
	if (errno != 0 || *end != '\0' || lx->text[0] < '0' || lx->text[0] > '9') {
		console_reply_error(conn, SQLSTATE_INVALID_PARAMETER_VALUE,
		                    "invalid client id \"%.64s\": expected a number from the id "
		                    "column of SHOW CLIENTS",
		                    lx->text);
		return ADMIN_FAILED;
	}
	if (expect_end(conn, lx, "KILL_CLIENT id") < 0)
		return ADMIN_FAILED;
	if ((op = console_op_new(conn, "KILL_CLIENT")) == NULL)
		return ADMIN_FAILED;
	op->client_id = id;
	op->each = kill_client_each;
	op->done = kill_client_done;
	return console_run_gather(op);
}

/* ---- SHUTDOWN ---- */

enum shutdown_mode { SHUTDOWN_NOW, SHUTDOWN_WAIT_FOR_SERVERS, SHUTDOWN_WAIT_FOR_CLIENTS };

/* SHUTDOWN WAIT_FOR_CLIENTS: exit once the last client has left on its own. */
struct client_wait {
	struct runtime *rt;  /* owner */
	struct event *timer; /* next look at rt->shared.nclients */
};

static void wait_clients_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client_wait *cw = arg;
	struct runtime *rt = cw->rt;
	struct timeval tv = {.tv_sec = 0, .tv_usec = WAIT_CLIENTS_POLL_US};

	if (atomic_load(&rt->shared.nclients) > 0) {
		evtimer_add(cw->timer, &tv);
		return;
	}
	log_info(&rt->log, "SHUTDOWN WAIT_FOR_CLIENTS: the last client left, exiting");
	event_free(cw->timer);
	free(cw);
	runtime_stop_now(rt);
}

static void shutdown_fn(void *owner, void *arg)
{
	struct runtime *rt = owner;
	enum shutdown_mode mode = (enum shutdown_mode)(intptr_t)arg;
	struct client_wait *cw;

	switch (mode) {
	case SHUTDOWN_NOW:
		log_info(&rt->log, "SHUTDOWN from the admin console: exiting now");
		runtime_stop_now(rt);
		return;
	case SHUTDOWN_WAIT_FOR_SERVERS:
		log_info(&rt->log, "SHUTDOWN WAIT_FOR_SERVERS from the admin console");
		runtime_begin_drain(rt);
		return;
	case SHUTDOWN_WAIT_FOR_CLIENTS:
		log_info(&rt->log, "SHUTDOWN WAIT_FOR_CLIENTS from the admin console: no new "
		                   "connections; exiting when the last client leaves");
		sdnotify_send(rt->envp, "STOPPING=1");
		listener_close_all(rt);
		cw = calloc(1, sizeof(*cw));
		if (cw == NULL ||
		    (cw->timer = evtimer_new(rt->base, wait_clients_cb, cw)) == NULL) {
			free(cw);
			runtime_begin_drain(rt);
			return;
		}
		cw->rt = rt;
		wait_clients_cb(-1, 0, cw);
		return;
	}
}

enum console_result control_shutdown(struct console_conn *conn, struct console_lexer *lx)
{
	enum shutdown_mode mode = SHUTDOWN_NOW;
	enum console_tok t = console_lex_next(lx);

	if (t == TOK_WORD && console_lex_is(lx, "WAIT_FOR_SERVERS"))
		mode = SHUTDOWN_WAIT_FOR_SERVERS;
	else if (t == TOK_WORD && console_lex_is(lx, "WAIT_FOR_CLIENTS"))
		mode = SHUTDOWN_WAIT_FOR_CLIENTS;
	if ((t != TOK_END && mode == SHUTDOWN_NOW) ||
	    (t != TOK_END && console_lex_next(lx) != TOK_END)) {
		console_reply_error(conn, SQLSTATE_SYNTAX_ERROR,
		                    "syntax error: SHUTDOWN takes nothing, WAIT_FOR_SERVERS or "
		                    "WAIT_FOR_CLIENTS");
		return ADMIN_FAILED;
	}
	/* Answer first: the connection may be gone before the control loop acts. */
	console_reply_complete(conn, "SHUTDOWN");
	if (inbox_post(&runtime_of(conn->w)->inbox, shutdown_fn, (void *)(intptr_t)mode) < 0) {
		console_reply_error(conn, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return ADMIN_FAILED;
	}
	return ADMIN_DONE;
}

/* ---- RELOAD, SET ---- */

static void control_done(struct console_op *op)
{
	if (op->rc < 0) {
		console_reply_error(op->conn,
		                    op->kind ? SQLSTATE_INVALID_PARAMETER_VALUE
		                             : SQLSTATE_CONFIG_FILE_ERROR,
		                    "%s", op->error);
		console_statement_done(op, false);
		return;
	}
	complete_done(op);
}

static void reload_control(struct runtime *rt, struct console_op *op)
{
	struct config_error err;
	struct config *cfg;
	int rc;

	/* As for SIGHUP, so systemd knows a reload is under way. */
	sdnotify_reloading(rt->envp);
	rc = runtime_reload(rt);
	sdnotify_send(rt->envp, "READY=1");
	if (rc == 0)
		return;
	op->rc = -1;
	/* runtime_reload only logs why; load once more to tell the admin. */
	cfg = config_load(rt->config_path, rt->upstream_url, rt->envp, &err);
	if (cfg != NULL) {
		config_free(cfg);
		snprintf(op->error, sizeof(op->error), "reload failed; see the log");
	} else {
		snprintf(op->error, sizeof(op->error),
		         "reload failed, the old configuration stays: %.400s", err.message);
	}
}

enum console_result control_reload(struct console_conn *conn, struct console_lexer *lx)
{
	struct console_op *op;

	if (expect_end(conn, lx, "RELOAD") < 0)
		return ADMIN_FAILED;
	if ((op = console_op_new(conn, "RELOAD")) == NULL)
		return ADMIN_FAILED;
	op->control = reload_control;
	op->done = control_done;
	return console_run_control(op);
}

/* Read cfg->auth_file into cfg->auth (a relative path is next to the ini file). */
static int reload_auth(struct runtime *rt, struct config *cfg, struct config_error *err)
{
	const char *slash = rt->config_path ? strrchr(rt->config_path, '/') : NULL;
	char path[4096];

	auth_file_fini(&cfg->auth);
	memset(&cfg->auth, 0, sizeof(cfg->auth));
	if (cfg->auth_file[0] == '\0')
		return 0;
	if (cfg->auth_file[0] != '/' && slash != NULL)
		snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - rt->config_path),
		         rt->config_path, cfg->auth_file);
	else
		snprintf(path, sizeof(path), "%s", cfg->auth_file);
	return auth_file_load(path, &cfg->auth, err->message, sizeof(err->message));
}

/*
 * The running configuration with one option changed.  There is no copy of a
 * snapshot, so the sources are read again and every [sluice] option is set
 * back to its running value; then the new value goes on top.
 */
static struct config *config_with(struct runtime *rt, const char *key, const char *value,
                                  struct config_error *err)
{
	const struct config *cur = rt->snap->cfg;
	size_t n;
	const struct config_option *opts = config_options(&n);
	struct config *cfg = config_load(rt->config_path, rt->upstream_url, rt->envp, err);
	char *auth_path;

	if (cfg == NULL)
		return NULL;
	auth_path = strdup(cfg->auth_file);
	for (size_t i = 0; i < n && auth_path != NULL; i++) {
		char text[4096];
		const char *running = text;

		/*
		 * A string as it is: SHOW CONFIG's text of redis_password and
		 * redis_url masks the password (a SET of any option put
		 * "********" in its place), and would cut a long one.
		 */
		if (opts[i].type == CONFIG_STRING)
			running = *(char *const *)((const char *)cur + opts[i].offset);
		else
			config_format_value(cur, &opts[i], text, sizeof(text));
		if (config_set(cfg, opts[i].name, running, err) < 0)
			goto fail;
	}
	if (auth_path == NULL || config_set(cfg, key, value, err) < 0)
		goto fail;
	if (strcmp(auth_path, cfg->auth_file) != 0 && reload_auth(rt, cfg, err) < 0)
		goto fail;
	if (config_validate(cfg, err) < 0)
		goto fail;
	free(auth_path);
	return cfg;
fail:
	if (auth_path == NULL)
		snprintf(err->message, sizeof(err->message), "out of memory");
	free(auth_path);
	config_free(cfg);
	return NULL;
}

static void set_control(struct runtime *rt, struct console_op *op)
{
	struct config_error err;
	struct config *cfg = config_with(rt, op->key, op->value, &err);

	if (cfg == NULL) {
		op->rc = -1;
		snprintf(op->error, sizeof(op->error), "%s", err.message);
		return;
	}
	if (runtime_publish(rt, cfg) < 0) {
		op->rc = -1;
		snprintf(op->error, sizeof(op->error),
		         "the new configuration's TLS files did not load (see the log)");
		return;
	}
	log_info(&rt->log, "admin console: SET %s = %s", op->key, op->value);
}

/* `SET name = value` or `SET name TO value`: the value is a 'string' or the rest, trimmed. */
static int parse_set(struct console_conn *conn, struct console_lexer *lx, char **name, char **value)
{
	const char *rest, *end;
	size_t len;

	*name = *value = NULL;
	if (console_lex_next(lx) != TOK_WORD || (*name = strdup(lx->text)) == NULL)
		goto syntax;
	if (console_lex_next(lx) != TOK_EQUALS && !console_lex_is(lx, "TO"))
		goto syntax;
	rest = lx->p + strspn(lx->p, " \t\r\n");
	if (console_lex_next(lx) == TOK_STRING) {
		*value = strdup(lx->text);
		if (console_lex_next(lx) != TOK_END)
			goto syntax;
	} else {
		end = rest + strlen(rest);
		while (end > rest &&
		       (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
			end--;
		len = (size_t)(end - rest);
		if (len == 0)
			goto syntax;
		*value = strndup(rest, len);
	}
	if (*value != NULL)
		return 0;
syntax:
	console_reply_error(conn, SQLSTATE_SYNTAX_ERROR,
	                    "syntax error: expected SET name = value (quote text values: SET "
	                    "server_reset_query = 'DISCARD ALL')");
	free(*name);
	free(*value);
	*name = *value = NULL;
	return -1;
}

static bool set_allowed(struct console_conn *conn, const char *name)
{
	const struct config_option *opt = config_option_find(name);

	if (opt == NULL) {
		console_reply_error(conn, SQLSTATE_UNDEFINED_OBJECT,
		                    "unrecognized configuration parameter \"%.100s\" (SHOW CONFIG "
		                    "lists them)",
		                    name);
		return false;
	}
	if (conn->role != ADMIN_ROLE_ADMIN) {
		console_reply_error(conn, SQLSTATE_INSUFFICIENT_PRIVILEGE,
		                    "SET %s needs a user in admin_users; \"%s\" is a stats_users "
		                    "member",
		                    name, conn->c->user);
		return false;
	}
	if (opt->reload == RELOAD_RESTART) {
		console_reply_error(conn, SQLSTATE_CANT_CHANGE_RUNTIME_PARAM,
		                    "%s cannot be changed while sluice runs: change it in the "
		                    "configuration and restart",
		                    name);
		return false;
	}
	return true;
}

enum console_result control_set(struct console_conn *conn, struct console_lexer *lx)
{
	struct console_op *op;
	char *name, *value;

	if (parse_set(conn, lx, &name, &value) < 0)
		return ADMIN_FAILED;
	/* Option names are lower case, but SET Default_Pool_Size is the same thing. */
	for (char *p = name; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	if (console_set_probe(conn, name, value)) {
		free(name);
		free(value);
		return ADMIN_DONE;
	}
	if (!set_allowed(conn, name)) {
		free(name);
		free(value);
		return ADMIN_FAILED;
	}
	if ((op = console_op_new(conn, "SET")) == NULL) {
		free(name);
		free(value);
		return ADMIN_FAILED;
	}
	op->key = name;
	op->value = value;
	op->kind = 1; /* errors are bad values, not file errors */
	op->control = set_control;
	op->done = control_done;
	return console_run_control(op);
}

/* ---- RESET QUERIES ---- */

static void reset_queries_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	qstats_reset(w);
}

enum console_result control_reset(struct console_conn *conn, struct console_lexer *lx)
{
	if (console_lex_next(lx) != TOK_WORD || !console_lex_is(lx, "QUERIES") ||
	    console_lex_next(lx) != TOK_END) {
		console_reply_error(conn, SQLSTATE_SYNTAX_ERROR,
		                    "syntax error: the console's RESET is RESET QUERIES");
		return ADMIN_FAILED;
	}
	return start(conn, "RESET", NULL, reset_queries_each, complete_done);
}
