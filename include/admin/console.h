/*
 * The admin console: the virtual database `admin_db` (default "sluice", and
 * always "pgbouncer" as an alias) where admin_users run SHOW and control
 * commands and stats_users run SHOW.  console.c owns the session (login,
 * the simple query protocol, splitting a Query into statements, the command
 * table), the replies, the command lexer and the ops that the commands of
 * show.c, control.c and tenants.c run on.
 *
 * A command runs on the console client's worker.  One that needs other
 * threads becomes a `struct console_op`: a gather over every worker (each
 * worker writes only its own `parts[worker id]`) or a message to the control
 * loop, whose completion comes back through the console worker's inbox.
 * While an op is in flight the console reads no further input, and if the
 * client disconnects meanwhile the op still completes and then only frees.
 * docs/console.md documents every command and column.
 */
#ifndef SLUICE_ADMIN_CONSOLE_H
#define SLUICE_ADMIN_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/types.h"

struct client_handler;
struct evbuffer;
struct event;

#define ADMIN_QUERY_MAX  65536  /* longest Query the console reads; longer ones are refused */
#define ADMIN_TOKEN_MAX  4096   /* longest word or quoted string in a command */
#define ADMIN_POLL_US    20000  /* re-check interval of PAUSE, WAIT_CLOSE and SUSPEND */
#define ADMIN_PG_VERSION "16.0" /* server_version reported to drivers, before "(sluice X)" */

enum console_role {
	ADMIN_ROLE_NONE,  /* not allowed on the console */
	ADMIN_ROLE_STATS, /* stats_users: SHOW only */
	ADMIN_ROLE_ADMIN, /* admin_users: everything */
};

/* What a command handler did. */
enum console_result {
	ADMIN_DONE,    /* reply (CommandComplete or rows) written */
	ADMIN_PENDING, /* an op is in flight; console_statement_done follows */
	ADMIN_FAILED,  /* ErrorResponse written; the rest of the Query is skipped */
};

/* One console session, hanging off its client (client->admin). */
struct console_conn {
	struct client *c;         /* NULL once the client is freed */
	struct worker *w;         /* the client's worker, where every reply is written */
	enum console_role role;   /* fixed at login */
	char *sql;                /* Query being run, split into statements in place */
	size_t sql_len;           /* its length */
	size_t pos;               /* where the next statement starts */
	bool ran_any;             /* a statement of this Query ran (else EmptyQueryResponse) */
	bool inflight;            /* a gather or control-loop message is outstanding */
	bool skip_to_sync;        /* an extended-protocol message was refused: drop up to Sync */
	bool cancel_requested;    /* CancelRequest while a look was in flight */
	bool held_for_output;     /* the client has not read its replies: nothing runs meanwhile */
	uint64_t drop_remaining;  /* bytes of an over-long message still to discard */
	struct console_op *op;    /* command in progress (in flight or polling), or NULL */
	struct event *poll_timer; /* next look for PAUSE, WAIT_CLOSE, SUSPEND */
};

struct census;

/* What one worker contributes to an op. */
struct console_part {
	struct evbuffer *rows; /* rendered DataRows (SHOW CLIENTS, SERVERS) */
	struct census *census; /* pools, clients and servers counted (other SHOWs) */
	int64_t remaining;     /* polls: servers or bytes still to wait for */
	bool found;            /* KILL_CLIENT: the client was on this worker */
};

struct console_op;
typedef void (*console_each_fn)(struct worker *w, struct console_op *op, struct console_part *part);
typedef void (*console_done_fn)(struct console_op *op);
typedef void (*console_control_fn)(struct runtime *rt, struct console_op *op);

struct latency_report;
struct query_report;

struct console_op {
	struct console_conn *conn;      /* who asked */
	console_each_fn each;           /* per worker, on its thread */
	console_control_fn control;     /* on the control loop */
	console_done_fn done;           /* back on the console's worker */
	const char *tag;                /* CommandComplete tag */
	int kind;                       /* which SHOW / which variant of the command */
	char *target;                   /* database argument; NULL = every database */
	uint64_t client_id;             /* KILL_CLIENT */
	char *key, *value;              /* SET */
	int nparts;                     /* workers */
	struct console_part *parts;     /* one per worker, indexed by worker id */
	struct latency_report *latency; /* SHOW LATENCY's gathered histograms */
	struct query_report *queries;   /* SHOW QUERIES / QUERY_TYPES: the merged fingerprints */
	int rc;                         /* control-loop result: 0 or -1 */
	char error[512];                /* its message when rc is -1 */
};

/* NULL (with the error written) when out of memory. */
struct console_op *console_op_new(struct console_conn *conn, const char *tag);
void console_op_free(struct console_op *op);
/*
 * Run op->each on every worker, then op->done here: ADMIN_PENDING, or
 * ADMIN_FAILED with the error written and op freed.
 */
enum console_result console_run_gather(struct console_op *op);
/* Gather every worker's histograms into op->latency, then op->done here; as above. */
enum console_result console_run_latency(struct console_op *op);
/* Gather every worker's query insights into op->queries, then op->done here; as above. */
enum console_result console_run_queries(struct console_op *op);
/* Run op->control on the control loop, then op->done here; results as above. */
enum console_result console_run_control(struct console_op *op);
/* Look again in ADMIN_POLL_US with the same op (op->done decides when to stop). */
void console_poll_later(struct console_op *op);
/* An async statement finished (reply written or not): free op, go on with the Query. */
void console_statement_done(struct console_op *op, bool ok);

void console_reply_error(struct console_conn *conn, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void console_reply_notice(struct console_conn *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void console_reply_complete(struct console_conn *conn, const char *tag);
/* The console client's output buffer (conn->c must be alive). */
struct evbuffer *console_out(struct console_conn *conn);

/* Column of a result set: name and type (Postgres OID). */
struct console_col {
	const char *name;
	uint32_t type;
};
#define ADMIN_TEXT    25u
#define ADMIN_INT4    23u
#define ADMIN_INT8    20u
#define ADMIN_NUMERIC 1700u

void console_reply_header(struct console_conn *conn, const struct console_col *cols, size_t n);
void console_reply_row(struct console_conn *conn, size_t n, const char *const *values);

/* Tokens of a console command. */
enum console_tok {
	TOK_END,    /* end of the statement */
	TOK_WORD,   /* name, keyword or number; "quoted" names too */
	TOK_STRING, /* 'single-quoted' literal, unquoted */
	TOK_EQUALS, /* = */
	TOK_OTHER,  /* any other character */
	TOK_ERROR,  /* unterminated quote or over-long token; lx->error says which */
};

struct console_lexer {
	const char *p;              /* next unread character */
	const char *start;          /* where the last token began */
	enum console_tok kind;      /* last token */
	char text[ADMIN_TOKEN_MAX]; /* its text */
	const char *error;          /* for TOK_ERROR */
};

void console_lex_init(struct console_lexer *lx, const char *s);
enum console_tok console_lex_next(struct console_lexer *lx);
/* The last token is a word equal to `kw`, case-insensitively. */
bool console_lex_is(const struct console_lexer *lx, const char *kw);
/* After the command word: expect nothing more, or one optional database name. */
int console_parse_optional_db(struct console_conn *conn, struct console_lexer *lx, const char *cmd,
                              char **out);

/*
 * Driver probe parameters (client_encoding, DateStyle, server_version...):
 * SHOW answers the console's fixed value, SET accepts it (a NOTICE says when
 * a different value is ignored).  Both return false if `name` is not one.
 */
bool console_show_probe(struct console_conn *conn, const char *name);
bool console_set_probe(struct console_conn *conn, const char *name, const char *value);

/* Serves clients of the console database; main.c hands it to the runtime. */
extern const struct client_handler admin_console_handler;

#endif
