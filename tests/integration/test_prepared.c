/*
 * Named prepared statements in transaction mode: a statement prepared on one
 * server connection works on another (sluice re-prepares it there), SQL
 * DEALLOCATE is answered for the client (protocol Close is covered by the
 * driver tests: libpq 15 cannot send one), the per-server LRU bounds what
 * Postgres holds, a stale plan costs the client at most one error, and a
 * Parse that failed or was skipped in a pipeline leaves no statement behind.
 * SQL PREPARE / EXECUTE / DEALLOCATE sent through the extended protocol
 * (unnamed and named Parse, pipelines) are the client's own without pinning
 * it, with Postgres' replies and errors; one in a multi-statement Query pins.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(prepared, .fini = harness_teardown, .timeout = 120);

/* The integer a one-row result holds; the result is freed. */
static long long int_of(PGresult *res, const char *what)
{
	long long v;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", what,
	             PQresultErrorMessage(res));
	v = atoll(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

static long long exec_int(PGconn *c, const char *stmt, const char *arg)
{
	const char *params[1] = {arg};

	return int_of(PQexecPrepared(c, stmt, 1, params, NULL, NULL, 0), stmt);
}

static void prepare(PGconn *c, const char *name, const char *sql)
{
	PGresult *res = PQprepare(c, name, sql, 0, NULL);

	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
}

static const char *exec_error(PGconn *c, const char *stmt, const char *arg, char *state)
{
	const char *params[1] = {arg};
	PGresult *res = PQexecPrepared(c, stmt, 1, params, NULL, NULL, 0);

	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "%s succeeded", stmt);
	strcpy(state, harness_sqlstate(res));
	PQclear(res);
	return state;
}

/*
 * Two servers; a holder pins one in a transaction so the client's next
 * transaction must run on the other, which has never seen the statement.
 */
Test(prepared, statement_moves_between_servers)
{
	/*
	 * One worker: the holder must take the server a just used, which only a
	 * client of the same worker's pool does.
	 */
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 2");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *holder = harness_connect_ok(h, "app", "app-secret", "app");
	long long first, second, holder_pid;

	prepare(a, "double", "select $1::int * 2");
	cr_assert_eq(exec_int(a, "double", "21"), 42);
	first = harness_query_int(a, "select pg_backend_pid()");
	/* The holder takes the server a just used (most recently used first). */
	PQclear(harness_exec_ok(holder, "begin"));
	holder_pid = harness_query_int(holder, "select pg_backend_pid()");
	cr_assert_eq(holder_pid, first);
	cr_assert_eq(exec_int(a, "double", "5"), 10, "re-prepared on the other server");
	second = harness_query_int(a, "select pg_backend_pid()");
	cr_assert_neq(second, first, "the statement really moved");
	PQclear(harness_exec_ok(holder, "commit"));
	for (int i = 0; i < 20; i++)
		cr_assert_eq(exec_int(a, "double", "1"), 2);
	PQfinish(a);
	PQfinish(holder);
}

/*
 * A client's Parse that fails leaves no statement under its name, as in
 * Postgres, and only under that name: another name the client has for the
 * same text still works.  (The Parse runs on a server that lacks the text,
 * in a transaction already aborted, so Postgres refuses it with 25P02.)
 */
Test(prepared, a_failed_parse_leaves_the_other_names_of_its_text)
{
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 2");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *holder = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res;
	char state[6];

	prepare(a, "first_name", "select $1::int * 3");
	cr_assert_eq(exec_int(a, "first_name", "2"), 6);
	/* The holder takes the server a used, which has the text: a gets the other one. */
	PQclear(harness_exec_ok(holder, "begin"));
	PQclear(harness_exec_ok(a, "begin"));
	res = PQexec(a, "select 1/0");
	cr_assert_str_eq(harness_sqlstate(res), "22012");
	PQclear(res);
	res = PQprepare(a, "second_name", "select $1::int * 3", 0, NULL);
	cr_assert_str_eq(harness_sqlstate(res), "25P02", "%s", PQresultErrorMessage(res));
	PQclear(res);
	PQclear(harness_exec_ok(a, "rollback"));
	PQclear(harness_exec_ok(holder, "commit"));
	cr_assert_str_eq(exec_error(a, "second_name", "2", state), "26000");
	cr_assert_eq(exec_int(a, "first_name", "2"), 6, "the failed Parse took the other name too");
	PQfinish(a);
	PQfinish(holder);
}

Test(prepared, same_name_in_two_clients_means_their_own_statement)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");

	prepare(a, "s", "select $1::int + 1");
	prepare(b, "s", "select $1::int + 100");
	cr_assert_eq(exec_int(a, "s", "1"), 2);
	cr_assert_eq(exec_int(b, "s", "1"), 101);
	cr_assert_eq(exec_int(a, "s", "1"), 2);
	PQfinish(a);
	PQfinish(b);
}

Test(prepared, deallocate_forgets_the_name)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res;
	char state[6];

	prepare(a, "Two", "select $1::int");
	res = PQexec(a, "DEALLOCATE \"Two\"");
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	cr_assert_str_eq(PQcmdStatus(res), "DEALLOCATE");
	PQclear(res);
	cr_assert_str_eq(exec_error(a, "Two", "7", state), "26000");

	prepare(a, "three", "select $1::int");
	PQclear(harness_exec_ok(a, "DEALLOCATE ALL"));
	cr_assert_str_eq(exec_error(a, "three", "7", state), "26000");
	/* Unknown names still get Postgres' own error. */
	res = PQexec(a, "DEALLOCATE nosuch");
	cr_assert_str_eq(harness_sqlstate(res), "26000");
	PQclear(res);
	PQfinish(a);
}

/* psycopg 3 and PQexecParams send DEALLOCATE through the extended protocol. */
Test(prepared, extended_protocol_deallocate_forgets_the_name)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res;
	char state[6];

	prepare(a, "_pg3_0", "select $1::int");
	cr_assert_eq(exec_int(a, "_pg3_0", "5"), 5);
	res = PQexecParams(a, "DEALLOCATE _pg3_0", 0, NULL, NULL, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	cr_assert_str_eq(PQcmdStatus(res), "DEALLOCATE");
	PQclear(res);
	cr_assert_str_eq(exec_error(a, "_pg3_0", "7", state), "26000");
	/* The name is free again, and the unnamed statement works as before. */
	prepare(a, "_pg3_0", "select $1::int + 1");
	cr_assert_eq(exec_int(a, "_pg3_0", "5"), 6);
	res = PQexecParams(a, "select 40 + 2", 0, NULL, NULL, NULL, NULL, 0);
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "42");
	PQclear(res);
	PQfinish(a);
}

Test(prepared, failed_parse_leaves_no_statement)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res = PQprepare(a, "bad", "selec 1", 0, NULL);
	char state[6];

	cr_assert_str_eq(harness_sqlstate(res), "42601");
	PQclear(res);
	cr_assert_str_eq(exec_error(a, "bad", "1", state), "26000");
	PQfinish(a);
}

Test(prepared, lru_bounds_server_statements)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1\n"
	                                                "max_prepared_statements = 5");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	char name[32], sql[64];

	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "q%d", i);
		snprintf(sql, sizeof(sql), "select $1::int + %d", i);
		prepare(a, name, sql);
		cr_assert_eq(exec_int(a, name, "1"), 1 + i);
	}
	cr_assert_leq(harness_query_int(a, "select count(*) from pg_prepared_statements"), 5);
	/* Evicted statements come back transparently. */
	cr_assert_eq(exec_int(a, "q0", "1"), 1);
	cr_assert_eq(exec_int(a, "q49", "1"), 50);
	PQfinish(a);
}

Test(prepared, stale_plan_costs_at_most_one_error)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *ddl = harness_connect_ok(h, "app", "app-secret", "app");
	const char *params[1] = {"1"};
	PGresult *res;
	int errors = 0;

	PQclear(harness_exec_ok(ddl, "drop table if exists plan_t; create table plan_t(a int)"));
	PQclear(harness_exec_ok(ddl, "insert into plan_t values (1)"));
	prepare(a, "sel", "select * from plan_t where a = $1::int");
	cr_assert_eq(exec_int(a, "sel", "1"), 1);
	PQclear(harness_exec_ok(ddl, "alter table plan_t alter column a type bigint"));
	for (int i = 0; i < 3; i++) {
		res = PQexecPrepared(a, "sel", 1, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			cr_assert_str_eq(harness_sqlstate(res), "0A000", "%s",
			                 PQresultErrorMessage(res));
			errors++;
		}
		PQclear(res);
	}
	cr_assert_leq(errors, 1);
	cr_assert_eq(exec_int(a, "sel", "1"), 1);
	PQfinish(a);
	PQfinish(ddl);
}

/*
 * Drivers that cache a statement's result description (asyncpg, pgJDBC,
 * postgres.js) must hear about a changed result type even when sluice
 * re-prepares the statement for them: every client that knew the old type
 * gets Postgres' 0A000 once, with the routine drivers look for, and a
 * transaction it was in is aborted as Postgres would abort it.  One server
 * (a pool of 1): with `workers` > 1, a and b land on different workers and
 * the server moves between them, taking its statements along (their old
 * plans are what reports the change).
 */
static void changed_type_reaches_every_client_once(const char *workers)
{
	char ini[128];
	struct harness_sluice *h;
	PGconn *a, *b, *ddl;
	const char *params[1] = {"1"};
	PGresult *res;

	snprintf(ini, sizeof(ini), "workers = %s\ndefault_pool_size = 1\n%s", workers,
	         "server_tls_sslmode = disable\n");
	h = harness_start_sluice(ini);
	a = harness_connect_ok(h, "app", "app-secret", "app");
	b = harness_connect_ok(h, "app", "app-secret", "app");
	ddl = harness_connect_ok(h, "app", "app-secret", "app");
	PQclear(harness_exec_ok(ddl, "drop table if exists type_t; create table type_t(v int)"));
	PQclear(harness_exec_ok(ddl, "insert into type_t values (1)"));
	prepare(a, "get", "select v from type_t where v::text = $1");
	prepare(b, "get_b", "select v from type_t where v::text = $1");
	cr_assert_eq(exec_int(a, "get", "1"), 1);
	cr_assert_eq(exec_int(b, "get_b", "1"), 1);
	PQclear(harness_exec_ok(ddl, "alter table type_t alter column v type text"));

	/* a meets the real error on the server. */
	res = PQexecPrepared(a, "get", 1, params, NULL, NULL, 0);
	cr_assert_str_eq(harness_sqlstate(res), "0A000", "%s", PQresultErrorMessage(res));
	PQclear(res);
	/* b's statement is re-prepared for it, but b still expects int: it is told, once. */
	PQclear(harness_exec_ok(b, "begin"));
	res = PQexecPrepared(b, "get_b", 1, params, NULL, NULL, 0);
	cr_assert_str_eq(harness_sqlstate(res), "0A000", "%s", PQresultErrorMessage(res));
	cr_assert_str_eq(PQresultErrorField(res, PG_DIAG_SOURCE_FUNCTION), "RevalidateCachedQuery");
	PQclear(res);
	cr_assert_eq(PQtransactionStatus(b), PQTRANS_INERROR);
	PQclear(harness_exec_ok(b, "rollback"));
	for (int i = 0; i < 2; i++) {
		res = PQexecPrepared(b, "get_b", 1, params, NULL, NULL, 0);
		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
		cr_assert_eq(PQftype(res, 0), 25, "text now");
		PQclear(res);
		res = PQexecPrepared(a, "get", 1, params, NULL, NULL, 0);
		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
		PQclear(res);
	}
	PQfinish(a);
	PQfinish(b);
	PQfinish(ddl);
}

Test(prepared, changed_result_type_reaches_every_client_once)
{
	changed_type_reaches_every_client_once("1");
}

Test(prepared, changed_result_type_reaches_every_client_once_on_two_workers)
{
	changed_type_reaches_every_client_once("2");
}

/* The worker SHOW CLIENTS gives for the client whose application_name is `app`. */
static int worker_of(struct harness_sluice *h, const char *app)
{
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGresult *res = PQexec(admin, "SHOW CLIENTS");
	int ac = PQfnumber(res, "application_name"), wc = PQfnumber(res, "worker"), w = -1;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(admin));
	cr_assert(ac >= 0 && wc >= 0, "SHOW CLIENTS has no application_name or worker");
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, ac), app) == 0)
			w = atoi(PQgetvalue(res, i, wc));
	PQclear(res);
	PQfinish(admin);
	cr_assert_geq(w, 0, "no client %s in SHOW CLIENTS", app);
	return w;
}

#define STALE_CLIENTS 4
#define SPREAD_INI                                                                                 \
	"workers = 2\n"                                                                            \
	"default_pool_size = 2\n"                                                                  \
	"max_prepared_statements = 1\n"                                                            \
	"admin_users = admin\n"

/*
 * Four clients on two workers (0 and 2 on one, 1 and 3 on the other), each
 * worker with a server of its own.  All prepare the same statement; then
 * client 1 prepares another, which pushes the first out of its worker's
 * server (max_prepared_statements = 1), so after the ALTER only the other
 * worker's server still holds the old plan.  Client 0 meets the real error
 * there; the other three, 1 and 3 included (whose statement is prepared
 * afresh for them, already with the new type), are each told once.
 */
Test(prepared, changed_result_type_reaches_clients_of_every_worker)
{
	struct harness_sluice *h =
	    harness_start_sluice_users(SPREAD_INI, "\"admin\" \"admin-secret\"\n");
	PGconn *c[STALE_CLIENTS], *super = harness_pg_super("app");
	const char *params[1] = {"1"};
	char sql[64];
	PGresult *res;

	for (int i = 0; i < STALE_CLIENTS; i++) {
		c[i] = harness_connect_ok(h, "app", "app-secret", "app");
		snprintf(sql, sizeof(sql), "set application_name = 'stale%d'", i);
		PQclear(harness_exec_ok(c[i], sql));
	}
	cr_assert_eq(worker_of(h, "stale0"), worker_of(h, "stale2"));
	cr_assert_eq(worker_of(h, "stale1"), worker_of(h, "stale3"));
	cr_assert_neq(worker_of(h, "stale0"), worker_of(h, "stale1"), "one worker for all");
	PQclear(harness_exec_ok(c[0], "drop table if exists spread_t"));
	PQclear(harness_exec_ok(c[0], "create table spread_t(v int)"));
	PQclear(harness_exec_ok(c[0], "insert into spread_t values (1)"));
	for (int i = 0; i < STALE_CLIENTS; i++) {
		prepare(c[i], "get", "select v from spread_t where v::text = $1");
		cr_assert_eq(exec_int(c[i], "get", "1"), 1);
	}
	prepare(c[1], "other", "select 2");
	cr_assert_eq(int_of(PQexecPrepared(c[1], "other", 0, NULL, NULL, NULL, 0), "other"), 2);
	PQclear(harness_exec_ok(super, "alter table spread_t alter column v type text"));

	for (int i = 0; i < STALE_CLIENTS; i++) {
		res = PQexecPrepared(c[i], "get", 1, params, NULL, NULL, 0);
		cr_assert_str_eq(harness_sqlstate(res), "0A000", "client %d: %s", i,
		                 PQresultErrorMessage(res));
		PQclear(res);
	}
	for (int i = 0; i < STALE_CLIENTS; i++) {
		res = PQexecPrepared(c[i], "get", 1, params, NULL, NULL, 0);
		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "client %d: %s", i,
		             PQresultErrorMessage(res));
		cr_assert_eq(PQftype(res, 0), 25, "client %d: text now", i);
		PQclear(res);
	}
	for (int i = 0; i < STALE_CLIENTS; i++)
		PQfinish(c[i]);
	PQfinish(super);
}

Test(prepared, pipeline_of_binds_after_moving)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 2");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *holder = harness_connect_ok(h, "app", "app-secret", "app");
	const char *params[1] = {"3"};
	PGresult *res;
	int results = 0;

	prepare(a, "triple", "select $1::int * 3");
	PQclear(harness_exec_ok(holder, "begin"));
	PQclear(harness_exec_ok(holder, "select 1"));
	cr_assert(PQenterPipelineMode(a));
	for (int i = 0; i < 5; i++)
		cr_assert(PQsendQueryPrepared(a, "triple", 1, params, NULL, NULL, 0));
	cr_assert(PQpipelineSync(a));
	while (results < 5) {
		res = PQgetResult(a);
		if (res == NULL)
			continue;
		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
		cr_assert_str_eq(PQgetvalue(res, 0, 0), "9");
		PQclear(res);
		results++;
	}
	while ((res = PQgetResult(a)) == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC)
		PQclear(res);
	PQclear(res);
	cr_assert(PQexitPipelineMode(a));
	PQclear(harness_exec_ok(holder, "commit"));
	PQfinish(a);
	PQfinish(holder);
}

/* The next pipeline result: its status (and SQLSTATE for errors), then the NULL ending it. */
static void expect_result(PGconn *c, ExecStatusType want, const char *sqlstate, const char *what)
{
	PGresult *res = PQgetResult(c);

	cr_assert(res != NULL, "%s: no result", what);
	cr_assert_eq(PQresultStatus(res), want, "%s: got %s, want %s (%s)", what,
	             PQresStatus(PQresultStatus(res)), PQresStatus(want),
	             PQresultErrorMessage(res));
	if (sqlstate != NULL)
		cr_assert_str_eq(harness_sqlstate(res), sqlstate, "%s", what);
	PQclear(res);
	if (want != PGRES_PIPELINE_SYNC)
		cr_assert_null(PQgetResult(c), "%s: more than one result", what);
}

/*
 * The Bind sluice sends to tell a client its plan went stale (it fails on
 * purpose, and its error becomes the 0A000) can be skipped by the server
 * after an earlier error in the same batch.  The client was then never told:
 * its next execution ran with the new result type as if nothing changed.
 * It is told at that next execution instead.
 */
Test(prepared, a_stale_plan_notice_skipped_after_an_error_comes_at_the_next_bind)
{
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *ddl = harness_connect_ok(h, "app", "app-secret", "app");
	const char *params[1] = {"1"};
	PGresult *res;

	PQclear(harness_exec_ok(ddl, "drop table if exists skip_t; create table skip_t(v int)"));
	PQclear(harness_exec_ok(ddl, "insert into skip_t values (1)"));
	prepare(a, "get", "select v from skip_t where v::text = $1");
	prepare(b, "get_b", "select v from skip_t where v::text = $1");
	cr_assert_eq(exec_int(a, "get", "1"), 1);
	cr_assert_eq(exec_int(b, "get_b", "1"), 1);
	PQclear(harness_exec_ok(ddl, "alter table skip_t alter column v type text"));
	res = PQexecPrepared(a, "get", 1, params, NULL, NULL, 0);
	cr_assert_str_eq(harness_sqlstate(res), "0A000", "%s", PQresultErrorMessage(res));
	PQclear(res);

	cr_assert(PQenterPipelineMode(b));
	cr_assert(PQsendQueryParams(b, "select 1/0", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendQueryPrepared(b, "get_b", 1, params, NULL, NULL, 0));
	cr_assert(PQpipelineSync(b));
	expect_result(b, PGRES_FATAL_ERROR, "22012", "the error");
	expect_result(b, PGRES_PIPELINE_ABORTED, NULL, "the skipped Bind");
	expect_result(b, PGRES_PIPELINE_SYNC, NULL, "sync");
	cr_assert(PQexitPipelineMode(b), "%s", PQerrorMessage(b));

	res = PQexecPrepared(b, "get_b", 1, params, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR,
	             "b ran the statement with its new result type without being told");
	cr_assert_str_eq(harness_sqlstate(res), "0A000", "%s", PQresultErrorMessage(res));
	PQclear(res);
	res = PQexecPrepared(b, "get_b", 1, params, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	cr_assert_eq(PQftype(res, 0), 25, "text now");
	PQclear(res);
	PQfinish(a);
	PQfinish(b);
	PQfinish(ddl);
}

/*
 * After a Parse of `sql` under `failed` created nothing: a new name for the
 * same text is really prepared on the server (not answered from a cache entry
 * the server lacks) and runs, and the failed name gets Postgres' own error.
 */
static void expect_prepares_again(PGconn *c, const char *failed, const char *fresh, const char *sql)
{
	PGresult *res;

	prepare(c, fresh, sql);
	res = PQexecPrepared(c, fresh, 0, NULL, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	cr_assert_eq(PQntuples(res), 1);
	PQclear(res);
	res = PQexecPrepared(c, failed, 0, NULL, NULL, NULL, 0);
	cr_assert_str_eq(harness_sqlstate(res), "26000", "%s", PQresultErrorMessage(res));
	cr_assert(strstr(PQresultErrorMessage(res), failed) != NULL, "no statement under %s: %s",
	          failed, PQresultErrorMessage(res));
	PQclear(res);
}

/*
 * An unnamed Parse ahead of a named one in the same pipeline: its
 * ParseComplete must not settle the named statement, whose Parse then fails.
 * One server, so the same text later meets the same server's cache.
 */
Test(prepared, failed_parse_behind_unnamed_parse_leaves_no_statement)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");

	PQclear(harness_exec_ok(a, "drop table if exists t_later"));
	cr_assert(PQenterPipelineMode(a));
	cr_assert(PQsendQueryParams(a, "select 1", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendPrepare(a, "s1", "select * from t_later", 0, NULL));
	cr_assert(PQpipelineSync(a));
	expect_result(a, PGRES_TUPLES_OK, NULL, "the unnamed statement");
	expect_result(a, PGRES_FATAL_ERROR, "42P01", "the named Parse");
	expect_result(a, PGRES_PIPELINE_SYNC, NULL, "sync");
	cr_assert(PQexitPipelineMode(a), "%s", PQerrorMessage(a));

	PQclear(harness_exec_ok(a, "create table t_later(v int); insert into t_later values (1)"));
	expect_prepares_again(a, "s1", "s2", "select * from t_later");
	PQclear(harness_exec_ok(a, "drop table t_later"));
	PQfinish(a);
}

/*
 * A named Parse that reaches sluice after the server reported an error and
 * before the Sync: the server skips it, so it must leave no statement.
 */
Test(prepared, parse_skipped_after_error_leaves_no_statement)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");

	PQclear(harness_exec_ok(a, "drop table if exists t_skipped"));
	cr_assert(PQenterPipelineMode(a));
	cr_assert(PQsendQueryParams(a, "select 1/0", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendFlushRequest(a));
	cr_assert_eq(PQflush(a), 0);
	/* The error has passed sluice before the Parse below is even sent. */
	expect_result(a, PGRES_FATAL_ERROR, "22012", "the error");
	cr_assert(PQsendPrepare(a, "s3", "select * from t_skipped", 0, NULL));
	cr_assert(PQpipelineSync(a));
	expect_result(a, PGRES_PIPELINE_ABORTED, NULL, "the skipped Parse");
	expect_result(a, PGRES_PIPELINE_SYNC, NULL, "sync");
	cr_assert(PQexitPipelineMode(a), "%s", PQerrorMessage(a));

	PQclear(
	    harness_exec_ok(a, "create table t_skipped(v int); insert into t_skipped values (1)"));
	expect_prepares_again(a, "s3", "s4", "select * from t_skipped");
	PQclear(harness_exec_ok(a, "drop table t_skipped"));
	PQfinish(a);
}

/*
 * A statement evicted from a full server cache (max_prepared_statements)
 * while the server skips to a Sync after an error: the Close sluice sends
 * for it is skipped too, so the server keeps it.  Sluice must not go on as
 * if it were gone: preparing it there again failed with 42P05 on every use.
 */
Test(prepared, an_eviction_skipped_after_an_error_does_not_break_the_statement)
{
	struct harness_sluice *h =
	    harness_start_sluice("default_pool_size = 1\nmax_prepared_statements = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	const char *zero[1] = {"0"};

	prepare(a, "s0", "select 1/$1::int");
	cr_assert_eq(exec_int(a, "s0", "1"), 1);
	cr_assert(PQenterPipelineMode(a));
	/* One write: sluice evicts s0 for s1 before the server has answered the Execute. */
	cr_assert(PQsendQueryPrepared(a, "s0", 1, zero, NULL, NULL, 0));
	cr_assert(PQsendPrepare(a, "s1", "select 2", 0, NULL));
	cr_assert(PQpipelineSync(a));
	expect_result(a, PGRES_FATAL_ERROR, "22012", "the error");
	expect_result(a, PGRES_PIPELINE_ABORTED, NULL, "the skipped Parse");
	expect_result(a, PGRES_PIPELINE_SYNC, NULL, "sync");
	cr_assert(PQexitPipelineMode(a), "%s", PQerrorMessage(a));
	cr_assert_eq(exec_int(a, "s0", "1"), 1);
	cr_assert_eq(exec_int(a, "s0", "1"), 1, "the second use after the skipped eviction");
	PQfinish(a);
}

/*
 * DEALLOCATE ALL drops what was prepared before it, not what the same
 * pipeline prepares after it.  Sluice cleared the client's names, and the
 * server's, when its reply came back, after it had already passed the Parse
 * behind it: the Parse, answered from the server's cache, left a Bind of a
 * statement the DEALLOCATE ALL had just dropped (26000), and the name was
 * gone for every later use.  With `discard`, the same for DISCARD ALL.
 */
static void drop_all_then_prepare_in_one_pipeline(const char *drop)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	const char *one[1] = {"1"};

	prepare(a, "before", "select 40 + $1::int");
	cr_assert_eq(exec_int(a, "before", "1"), 41);
	cr_assert(PQenterPipelineMode(a));
	cr_assert(PQsendQueryParams(a, drop, 0, NULL, NULL, NULL, NULL, 0));
	/* The same text: the server's cache has it, until the DEALLOCATE ALL runs. */
	cr_assert(PQsendPrepare(a, "after", "select 40 + $1::int", 0, NULL));
	cr_assert(PQsendQueryPrepared(a, "after", 1, one, NULL, NULL, 0));
	cr_assert(PQpipelineSync(a));
	expect_result(a, PGRES_COMMAND_OK, NULL, drop);
	expect_result(a, PGRES_COMMAND_OK, NULL, "the Parse after it");
	int_of(PQgetResult(a), "the Execute after it");
	cr_assert_null(PQgetResult(a));
	expect_result(a, PGRES_PIPELINE_SYNC, NULL, "sync");
	cr_assert(PQexitPipelineMode(a), "%s", PQerrorMessage(a));
	cr_assert_eq(exec_int(a, "after", "2"), 42, "the name prepared after the %s", drop);
	PQfinish(a);
}

Test(prepared, deallocate_all_spares_what_the_same_pipeline_prepares_after_it)
{
	drop_all_then_prepare_in_one_pipeline("DEALLOCATE ALL");
}

/*
 * The same statement skipped by a server skipping to a Sync after an error
 * is no barrier: no answer will come for it.  Sluice held the client's input
 * behind it all the same, Sync included, and the client waited for good.
 */
Test(prepared, a_skipped_discard_all_does_not_hold_the_pipeline)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");

	cr_assert(PQenterPipelineMode(a));
	cr_assert(PQsendQueryParams(a, "select 1/0", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendFlushRequest(a));
	cr_assert_eq(PQflush(a), 0);
	/* The error has passed sluice: the server skips to the Sync from here. */
	expect_result(a, PGRES_FATAL_ERROR, "22012", "the error");
	cr_assert(PQsendQueryParams(a, "DISCARD ALL", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQpipelineSync(a));
	expect_result(a, PGRES_PIPELINE_ABORTED, NULL, "the skipped DISCARD ALL");
	expect_result(a, PGRES_PIPELINE_SYNC, NULL, "sync");
	cr_assert(PQexitPipelineMode(a), "%s", PQerrorMessage(a));
	cr_assert_eq(harness_query_int(a, "select 5"), 5);
	PQfinish(a);
}

Test(prepared, discard_all_spares_what_the_same_pipeline_prepares_after_it)
{
	drop_all_then_prepare_in_one_pipeline("DISCARD ALL");
}

/* A Parse of `name` as `sql` (no parameters), a Bind of it to the unnamed portal and an Execute. */
static void put_parse_bind_execute(unsigned char *buf, size_t *n, const char *name, const char *sql)
{
	unsigned char body[256];
	size_t len = 0;

	memcpy(body, name, strlen(name) + 1);
	len = strlen(name) + 1;
	memcpy(body + len, sql, strlen(sql) + 1);
	len += strlen(sql) + 1;
	body[len++] = 0; /* no parameter types */
	body[len++] = 0;
	harness_put_msg(buf, n, 'P', body, len);
	len = 0;
	body[len++] = 0; /* the unnamed portal */
	memcpy(body + len, name, strlen(name) + 1);
	len += strlen(name) + 1;
	memset(body + len, 0, 6); /* no formats, no parameters, no result formats */
	len += 6;
	harness_put_msg(buf, n, 'B', body, len);
	harness_put_msg(buf, n, 'E', "\0\0\0\0", 5);
}

/* The same with a simple Query: the Parse behind it in the same write waits for its answer. */
Test(prepared, a_deallocate_all_query_spares_what_is_pipelined_after_it)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	unsigned char buf[512];
	size_t n = 0;
	char state[6];

	prepare(a, "before", "select 42");
	cr_assert_eq(int_of(PQexecPrepared(a, "before", 0, NULL, NULL, NULL, 0), "before"), 42);
	harness_put_query(buf, &n, "DEALLOCATE ALL");
	put_parse_bind_execute(buf, &n, "after", "select 42");
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_expect_transcript(a, buf, n, 2,
	                          "C(DEALLOCATE ALL) Z(I) 1 2 D(42) C(SELECT 1) Z(I) ",
	                          "DEALLOCATE ALL, then a Parse, Bind and Execute");
	cr_assert_eq(int_of(PQexecPrepared(a, "after", 0, NULL, NULL, NULL, 0), "after"), 42);
	cr_assert_str_eq(exec_error(a, "before", "1", state), "26000");
	PQfinish(a);
}

/*
 * A DEALLOCATE of a name, which sluice answers itself, ends an extended
 * batch sent before it without a Sync, as the Query would in Postgres: the
 * batch's INSERT is committed.  Sluice sent nothing to the server, so the
 * batch stayed open, and when the client then left its INSERT was rolled
 * back (or its server was kept busy as idle in a transaction).
 */
Test(prepared, a_deallocate_answered_by_sluice_ends_an_unsynced_batch)
{
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	unsigned char buf[512];
	size_t n = 0;

	PQclear(
	    harness_exec_ok(b, "drop table if exists dealloc_t; create table dealloc_t(v int)"));
	prepare(a, "named", "select 1");
	put_parse_bind_execute(buf, &n, "", "insert into dealloc_t values (1)");
	harness_put_msg(buf, &n, 'H', "", 0);
	harness_send_all(PQsocket(a), buf, n);
	/* ParseComplete, BindComplete, CommandComplete "INSERT 0 1": 5 + 5 + 16 bytes. */
	for (size_t got = 0; got < 26;) {
		struct pollfd pfd = {.fd = PQsocket(a), .events = POLLIN};
		ssize_t r;

		cr_assert_eq(poll(&pfd, 1, 20000), 1, "the flushed INSERT was not answered");
		r = recv(PQsocket(a), buf, sizeof(buf), 0);
		cr_assert_gt(r, 0);
		got += (size_t)r;
	}
	n = 0;
	harness_put_query(buf, &n, "DEALLOCATE named");
	harness_expect_transcript(a, buf, n, 1, "C(DEALLOCATE) Z(I) ", "DEALLOCATE of a name");
	PQfinish(a);
	cr_assert_eq(harness_query_int(b, "select count(*) from dealloc_t"), 1,
	             "the INSERT before the DEALLOCATE was not committed");
	PQfinish(b);
}

/*
 * A DEALLOCATE ALL sluice does not hold the input behind (here after the
 * first statement of a Query): the statement a pipelined Parse prepared on
 * the server after it is not in the cache the tag cleared, so the server is
 * retired once the client is through.  Kept, it answered the next Parse
 * sluice sent for that text (b, on the same worker, still names it, so its
 * sluice name is the same) with 42P05, for every client of the pool.
 */
Test(prepared, a_server_whose_statements_are_unknown_after_a_deallocate_all_is_retired)
{
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 1\n"
	                                                "max_prepared_statements = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	unsigned char buf[512];
	size_t n = 0;

	prepare(b, "other", "select 43");
	cr_assert_eq(int_of(PQexecPrepared(b, "other", 0, NULL, NULL, NULL, 0), "other"), 43);
	/* Evicts it from the server, which b's name keeps in the registry. */
	prepare(b, "evicting", "select 44");
	harness_put_query(buf, &n, "select 1; deallocate all");
	put_parse_bind_execute(buf, &n, "fresh", "select 43");
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_expect_transcript(a, buf, n, 2,
	                          "T D(1) C(SELECT 1) C(DEALLOCATE ALL) Z(I) 1 2 D(43) C(SELECT 1) "
	                          "Z(I) ",
	                          "a Query ending in DEALLOCATE ALL, then a Parse of b's text");
	cr_assert_eq(int_of(PQexecPrepared(b, "other", 0, NULL, NULL, NULL, 0), "other"), 43);
	PQfinish(b);
	PQfinish(a);
}

/*
 * The statements sluice prepares on a server for its clients are named
 * sluice_*; SQL that sluice does not follow (a statement after the first of
 * a Query) can still DEALLOCATE or PREPARE such a name.  Another client of
 * the pool then ran what the first one prepared under it, with its own
 * parameters.  A server where that happened is closed when the Query ends.
 */
Test(prepared, a_client_cannot_replace_the_statement_sluice_prepared_for_another)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *victim = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *other = harness_connect_ok(h, "app", "app-secret", "app");
	char name[64], sql[256];
	PGresult *res;

	prepare(victim, "s0", "select $1::int + 1");
	cr_assert_eq(exec_int(victim, "s0", "1"), 2);
	/* One server: the other client sees the statement's name there. */
	res = harness_exec_ok(other, "select name from pg_prepared_statements "
	                             "where name like 'sluice%' limit 1");
	cr_assert_eq(PQntuples(res), 1, "no statement of sluice's on the server");
	snprintf(name, sizeof(name), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	snprintf(sql, sizeof(sql), "select 1; deallocate %s", name);
	PQclear(harness_exec_ok(other, sql));
	snprintf(sql, sizeof(sql), "select 1; prepare %s(int) as select $1 * 1000", name);
	PQclear(harness_exec_ok(other, sql));
	cr_assert_eq(exec_int(victim, "s0", "1"), 2, "the victim ran the other client's statement");
	/* The same through the extended protocol (an SQL DEALLOCATE in a Parse). */
	res = harness_exec_ok(other, "select name from pg_prepared_statements "
	                             "where name like 'sluice%' limit 1");
	cr_assert_eq(PQntuples(res), 1, "no statement of sluice's on the server");
	snprintf(sql, sizeof(sql), "deallocate %s", PQgetvalue(res, 0, 0));
	PQclear(res);
	PQclear(PQexecParams(other, sql, 0, NULL, NULL, NULL, NULL, 0));
	cr_assert_eq(exec_int(victim, "s0", "1"), 2, "the victim's statement was dropped");
	PQfinish(victim);
	PQfinish(other);
}

/* ---- SQL PREPARE / EXECUTE / DEALLOCATE through the extended protocol ---- */

/*
 * A pinned client keeps a server: with a pool of 2 the others would queue and
 * fail fast instead of hanging.
 */
#define SQL_EXT_INI                                                                                \
	"default_pool_size = 2\nadmin_users = admin\nworkers = 1\nquery_wait_timeout = 20\n"
#define SQL_EXT_USERS "\"admin\" \"admin-secret\"\n"

/* App clients SHOW CLIENTS says are pinned, with `reason` (NULL: any reason). */
static int pinned_clients(PGconn *admin, const char *reason)
{
	PGresult *res = PQexec(admin, "SHOW CLIENTS");
	int user = PQfnumber(res, "user"), pinned = PQfnumber(res, "pinned");
	int why = PQfnumber(res, "pin_reason"), n = 0;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(admin));
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, user), "app") == 0 &&
		    strcmp(PQgetvalue(res, i, pinned), "1") == 0 &&
		    (reason == NULL || strcmp(PQgetvalue(res, i, why), reason) == 0))
			n++;
	PQclear(res);
	return n;
}

/* A sluice of SQL_EXT_INI, and its console in *adm. */
static struct harness_sluice *start_ext(PGconn **adm)
{
	struct harness_sluice *h = harness_start_sluice_users(SQL_EXT_INI, SQL_EXT_USERS);

	*adm = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	return h;
}

/* No client is pinned at the end; then the connections (b may be NULL) are closed. */
static void finish_unpinned(PGconn *adm, PGconn *a, PGconn *b)
{
	cr_assert_eq(pinned_clients(adm, NULL), 0, "no client is pinned");
	PQfinish(a);
	PQfinish(b);
	PQfinish(adm);
}

/* SQL sent as PQexecParams does (unnamed Parse, Bind, Describe, Execute, Sync). */
static void ext_ok(PGconn *c, const char *sql, const char *tag)
{
	PGresult *res = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);

	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s: %s", sql,
	             PQresultErrorMessage(res));
	cr_assert_str_eq(PQcmdStatus(res), tag, "%s", sql);
	PQclear(res);
}

static long long ext_int(PGconn *c, const char *sql)
{
	return int_of(PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0), sql);
}

static void ext_error(PGconn *c, const char *sql, const char *sqlstate)
{
	PGresult *res = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);

	cr_assert_str_eq(harness_sqlstate(res), sqlstate, "%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}

/*
 * 8 clients PREPARE the same name for 8 different statements through the
 * extended protocol (unnamed and named Parse), then EXECUTE it concurrently
 * over 2 servers: every client gets its own statement, none is pinned, and no
 * server holds a statement under the client's name.
 */
Test(prepared, sql_prepare_extended_same_name_many_clients)
{
	PGconn *adm, *c[8];
	struct harness_sluice *h = start_ext(&adm);
	char sql[128];
	PGresult *res;

	for (int i = 0; i < 8; i++) {
		c[i] = harness_connect_ok(h, "app", "app-secret", "app");
		snprintf(sql, sizeof(sql), "PREPARE q(int) AS SELECT $1 * %d", i + 1);
		ext_ok(c[i], sql, "PREPARE");
		/* A named Parse of PREPARE (pgJDBC past prepareThreshold, psycopg prepare=True). */
		snprintf(sql, sizeof(sql), "PREPARE r AS SELECT %d", 100 + i);
		prepare(c[i], "make_r", sql);
		res = PQexecPrepared(c[i], "make_r", 0, NULL, NULL, NULL, 0);
		cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s",
		             PQresultErrorMessage(res));
		cr_assert_str_eq(PQcmdStatus(res), "PREPARE");
		PQclear(res);
	}
	for (int round = 0; round < 10; round++) {
		for (int i = 0; i < 8; i++) {
			snprintf(sql, sizeof(sql), "EXECUTE q(%d)", round);
			cr_assert(PQsendQueryParams(c[i], sql, 0, NULL, NULL, NULL, NULL, 0));
		}
		for (int i = 0; i < 8; i++) {
			res = PQgetResult(c[i]);
			cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s",
			             PQresultErrorMessage(res));
			cr_assert_eq(atoll(PQgetvalue(res, 0, 0)), (long long)round * (i + 1));
			PQclear(res);
			cr_assert_null(PQgetResult(c[i]));
		}
	}
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(ext_int(c[i], "EXECUTE r"), 100 + i);
		cr_assert_eq(harness_query_int(c[i], "select count(*) from pg_prepared_statements "
		                                     "where name in ('q', 'r', 'make_r')"),
		             0, "the server has sluice's names only");
	}
	cr_assert_eq(pinned_clients(adm, NULL), 0, "no client is pinned");
	for (int i = 1; i < 8; i++) {
		ext_ok(c[i], "DEALLOCATE q", "DEALLOCATE");
		ext_error(c[i], "EXECUTE q(1)", "26000");
		cr_assert_eq(ext_int(c[i], "EXECUTE r"), 100 + i);
		PQfinish(c[i]);
	}
	finish_unpinned(adm, c[0], NULL);
}

/* The errors and replies Postgres gives, named and unnamed Parse. */
Test(prepared, sql_prepare_extended_errors_as_postgres)
{
	PGconn *adm;
	struct harness_sluice *h = start_ext(&adm);
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res;

	ext_ok(a, "prepare q as select 1", "PREPARE");
	res = PQexecParams(a, "PREPARE q AS SELECT 2", 0, NULL, NULL, NULL, NULL, 0);
	cr_assert_str_eq(harness_sqlstate(res), "42P05");
	cr_assert_str_eq(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
	                 "prepared statement \"q\" already exists");
	PQclear(res);
	cr_assert_eq(ext_int(a, "execute q"), 1, "q keeps its meaning");
	ext_error(b, "execute q", "26000");
	ext_error(a, "DEALLOCATE nosuch", "26000");
	/* 42P05 aborts a transaction block; a PREPARE in an aborted one gets 25P02. */
	PQclear(harness_exec_ok(a, "begin"));
	ext_error(a, "PREPARE q AS SELECT 3", "42P05");
	ext_error(a, "select 1", "25P02");
	ext_error(a, "PREPARE z AS SELECT 3", "25P02");
	PQclear(harness_exec_ok(a, "rollback"));
	ext_error(a, "EXECUTE z", "26000");
	/* A syntax error in the statement: no name is made. */
	res = PQexecParams(a, "PREPARE bad AS SELEC 1", 0, NULL, NULL, NULL, NULL, 0);
	cr_assert_str_eq(harness_sqlstate(res), "42601", "%s", PQresultErrorMessage(res));
	PQclear(res);
	ext_error(a, "EXECUTE bad", "26000");

	/* Named Parses: each Execute acts again, as in Postgres. */
	prepare(a, "mk", "PREPARE r AS SELECT 5");
	prepare(a, "dr", "DEALLOCATE r");
	res = PQdescribePrepared(a, "mk");
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	cr_assert_eq(PQnparams(res), 0);
	cr_assert_eq(PQnfields(res), 0);
	PQclear(res);
	for (int i = 0; i < 2; i++) {
		res = PQexecPrepared(a, "mk", 0, NULL, NULL, NULL, 0);
		cr_assert_str_eq(PQcmdStatus(res), "PREPARE", "%s", PQresultErrorMessage(res));
		PQclear(res);
		cr_assert_eq(harness_query_int(a, "execute r"), 5);
		res = PQexecPrepared(a, "mk", 0, NULL, NULL, NULL, 0);
		cr_assert_str_eq(harness_sqlstate(res), "42P05");
		PQclear(res);
		res = PQexecPrepared(a, "dr", 0, NULL, NULL, NULL, 0);
		cr_assert_str_eq(PQcmdStatus(res), "DEALLOCATE", "%s", PQresultErrorMessage(res));
		PQclear(res);
		res = PQexecPrepared(a, "dr", 0, NULL, NULL, NULL, 0);
		cr_assert_str_eq(harness_sqlstate(res), "26000");
		PQclear(res);
	}
	/* DEALLOCATE in a Parse forgets a protocol-level name too (one namespace). */
	prepare(a, "proto", "select 7");
	ext_ok(a, "DEALLOCATE proto", "DEALLOCATE");
	res = PQexecPrepared(a, "proto", 0, NULL, NULL, NULL, 0);
	cr_assert_str_eq(harness_sqlstate(res), "26000");
	PQclear(res);
	finish_unpinned(adm, a, b);
}

/*
 * Several PREPARE / EXECUTE / DEALLOCATE before one Sync; and what an error
 * earlier in a pipeline makes Postgres skip changes no name.
 */
Test(prepared, sql_prepare_extended_in_pipelines)
{
	PGconn *adm;
	struct harness_sluice *h = start_ext(&adm);
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res;

	cr_assert(PQenterPipelineMode(a));
	cr_assert(PQsendQueryParams(a, "PREPARE p AS SELECT 7", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendQueryParams(a, "EXECUTE p", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendQueryParams(a, "DEALLOCATE p", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendQueryParams(a, "PREPARE p AS SELECT 8", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendQueryParams(a, "EXECUTE p", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendQueryParams(a, "PREPARE p AS SELECT 9", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendQueryParams(a, "EXECUTE p", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQpipelineSync(a));
	res = PQgetResult(a);
	cr_assert_str_eq(PQcmdStatus(res), "PREPARE", "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_null(PQgetResult(a));
	res = PQgetResult(a);
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "7", "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_null(PQgetResult(a));
	res = PQgetResult(a);
	cr_assert_str_eq(PQcmdStatus(res), "DEALLOCATE", "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_null(PQgetResult(a));
	expect_result(a, PGRES_COMMAND_OK, NULL, "PREPARE p again");
	res = PQgetResult(a);
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "8", "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_null(PQgetResult(a));
	expect_result(a, PGRES_FATAL_ERROR, "42P05", "PREPARE of an existing name");
	expect_result(a, PGRES_PIPELINE_ABORTED, NULL, "skipped EXECUTE");
	expect_result(a, PGRES_PIPELINE_SYNC, NULL, "sync");

	/* Skipped after an error: no PREPARE, no DEALLOCATE took place. */
	cr_assert(PQsendQueryParams(a, "select 1/0", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendQueryParams(a, "PREPARE s AS SELECT 1", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendQueryParams(a, "DEALLOCATE p", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendQueryParams(a, "PREPARE p AS SELECT 99", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQpipelineSync(a));
	expect_result(a, PGRES_FATAL_ERROR, "22012", "the error");
	expect_result(a, PGRES_PIPELINE_ABORTED, NULL, "skipped PREPARE");
	expect_result(a, PGRES_PIPELINE_ABORTED, NULL, "skipped DEALLOCATE");
	expect_result(a, PGRES_PIPELINE_ABORTED, NULL, "skipped PREPARE again");
	expect_result(a, PGRES_PIPELINE_SYNC, NULL, "sync");
	cr_assert(PQexitPipelineMode(a), "%s", PQerrorMessage(a));
	ext_error(a, "EXECUTE s", "26000");
	cr_assert_eq(ext_int(a, "EXECUTE p"), 8, "p was not deallocated");
	ext_ok(a, "PREPARE s AS SELECT 1", "PREPARE");
	finish_unpinned(adm, a, NULL);
}

/*
 * A PREPARE sluice cannot track (in a multi-statement Query) is Postgres'
 * own: the client is pinned to that server until it DEALLOCATEs it.
 */
Test(prepared, sql_prepare_in_multi_statement_query_pins)
{
	PGconn *adm;
	struct harness_sluice *h = start_ext(&adm);
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");

	PQclear(harness_exec_ok(a, "PREPARE m AS SELECT 11; SELECT 1"));
	cr_assert(harness_wait_for(pinned_clients(adm, "SQL prepared statement") == 1, 10));
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(harness_query_int(b, "select 1"), 1);
		cr_assert_eq(harness_query_int(a, "execute m"), 11);
		cr_assert_eq(ext_int(a, "execute m"), 11);
	}
	PQclear(harness_exec_ok(a, "DEALLOCATE m"));
	cr_assert(harness_wait_for(pinned_clients(adm, NULL) == 0, 10));
	finish_unpinned(adm, a, b);
}

/* Fills sql (len + 1 bytes) with a statement text of len bytes, distinct for each i. */
static void big_statement(char *sql, size_t len, int i)
{
	memset(sql, ' ', len);
	sql[len] = '\0';
	memcpy(sql, "select 1 --", 11);
	snprintf(sql + 11, 16, "%8d", i);
	sql[11 + 8] = ' ';
}

/*
 * A client that keeps naming new statements made sluice keep every one:
 * the registry holds each body for as long as a client's name refers to it,
 * and nothing bounded a client's names, so one client with a password grew
 * sluice's memory as far as it liked (1 MB of Parse text per name; 48 names
 * here, 48 MB of RSS).  max_prepared_size bounds what one client's
 * names may hold: the Parse past it gets 54000 and the client is closed; its
 * server goes back to the pool and serves the next client.
 */
Test(prepared, names_one_client_keeps_are_bounded)
{
	struct harness_sluice *h = harness_start_sluice("workers = 1\n"
	                                                "default_pool_size = 1\n"
	                                                "max_prepared_size = 8MB");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	size_t text_len = 1024 * 1024;
	char *sql = malloc(text_len + 1), name[32];
	long rss_before, rss_after;
	char *failed = NULL;
	int made = 0;
	PGresult *res;

	cr_assert_not_null(sql);
	PQsetErrorVerbosity(a, PQERRORS_VERBOSE); /* the SQLSTATE in the message */
	prepare(a, "warm", "select 1");
	rss_before = harness_rss_kb(h);
	for (int i = 0; i < 48 && failed == NULL; i++) {
		snprintf(name, sizeof(name), "big%d", i);
		big_statement(sql, text_len, i);
		res = PQprepare(a, name, sql, 0, NULL);
		if (PQresultStatus(res) == PGRES_COMMAND_OK)
			made++;
		else
			failed = strdup(PQerrorMessage(a));
		PQclear(res);
	}
	rss_after = harness_rss_kb(h);
	cr_log_info("%d statements of 1 MB named: RSS %ld kB -> %ld kB", made, rss_before,
	            rss_after);
	cr_assert_not_null(failed, "48 MB of statements were kept for one client");
	cr_assert(strstr(failed, "FATAL:  54000") != NULL && strstr(failed, "max_prepared_size"),
	          "%s", failed);
	cr_assert_leq(made, 8);
	if (harness_rss_is_meaningful())
		cr_assert_leq(rss_after - rss_before, 16 * 1024, "RSS grew from %ld kB to %ld kB",
		              rss_before, rss_after);
	PQfinish(a);
	free(failed);
	free(sql);
	/* The server went back to the pool: the next client is served. */
	a = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(a, "select 5"), 5);
	PQfinish(a);
}

/*
 * What a server's cache holds counts too.  A name the client drops
 * (DEALLOCATE, Close) leaves its statement prepared on the server for other
 * clients, and the cache keeps its text in the registry until the LRU closes
 * it: one client that prepares and drops 1 MB statements in turn, within
 * max_prepared_size at every step, had sluice keep up to
 * max_prepared_statements of them per server (40 here: +40 MB of RSS).
 * max_prepared_size bounds each server's cache as well: past it the
 * least recently used are closed, as past max_prepared_statements.
 */
Test(prepared, texts_a_server_keeps_are_bounded)
{
	struct harness_sluice *h = harness_start_sluice("workers = 1\n"
	                                                "default_pool_size = 1\n"
	                                                "max_prepared_size = 8MB");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	size_t text_len = 1024 * 1024;
	char *sql = malloc(text_len + 1);
	long rss_before, rss_after, on_server;

	cr_assert_not_null(sql);
	prepare(a, "warm", "select 1");
	PQclear(harness_exec_ok(a, "deallocate warm"));
	rss_before = harness_rss_kb(h);
	for (int i = 0; i < 40; i++) {
		big_statement(sql, text_len, i);
		prepare(a, "big", sql);
		PQclear(harness_exec_ok(a, "deallocate big"));
	}
	rss_after = harness_rss_kb(h);
	on_server = harness_query_int(a, "select count(*) from pg_prepared_statements");
	cr_log_info("40 statements of 1 MB prepared and dropped: RSS %ld kB -> %ld kB, %ld kept "
	            "on the server",
	            rss_before, rss_after, on_server);
	cr_assert_leq(on_server, 8, "the server's cache kept %ld statements of 1 MB", on_server);
	if (harness_rss_is_meaningful())
		cr_assert_leq(rss_after - rss_before, 24 * 1024, "RSS grew from %ld kB to %ld kB",
		              rss_before, rss_after);
	/* Still served: each is prepared again when it is used again. */
	prepare(a, "small", "select $1::int + 1");
	cr_assert_eq(exec_int(a, "small", "1"), 2);
	PQfinish(a);
	free(sql);
}
