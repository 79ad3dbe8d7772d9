/*
 * Transaction pooling without exceptions (issue 17, docs/session-state.md):
 * session settings made with set_config() or SET of custom parameters stay
 * with their client; SQL PREPARE/EXECUTE/DEALLOCATE names are per client;
 * LISTEN/NOTIFY through the shared listening connection; what cannot move
 * (advisory locks, temporary tables, WITH HOLD cursors) pins the server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(txn_state, .fini = harness_teardown, .timeout = 180);

static PGconn *client(struct harness_sluice *h)
{
	return harness_connect_ok(h, "app", "app-secret", "app");
}

/* current_setting(name, missing_ok): "" for NULL, so it compares as a string. */
static void expect_setting(PGconn *c, const char *name, const char *want)
{
	char sql[256];
	PGresult *res;

	snprintf(sql, sizeof(sql), "select coalesce(current_setting('%s', true), '')", name);
	res = harness_exec_ok(c, sql);
	cr_assert_str_eq(PQgetvalue(res, 0, 0), want, "%s is \"%s\", not \"%s\"", name,
	                 PQgetvalue(res, 0, 0), want);
	PQclear(res);
}

static long long backend(PGconn *c)
{
	return harness_query_int(c, "select pg_backend_pid()");
}

Test(txn_state, set_config_follows_its_client_only)
{
	/*
	 * One worker: a and b must take turns on one backend, with no handing
	 * between workers in the way (test_workers.c covers that).
	 */
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 1");
	PGconn *a = client(h), *b = client(h);

	cr_assert_eq(backend(a), backend(b), "one shared server");
	PQclear(harness_exec_ok(a, "select set_config('myapp.tenant', 'acme', false)"));
	PQclear(
	    harness_exec_ok(a, "SELECT pg_catalog.SET_CONFIG('TimeZone', 'Asia/Tokyo', false)"));
	expect_setting(b, "myapp.tenant", "");
	cr_assert_str_neq(PQparameterStatus(b, "TimeZone"), "Asia/Tokyo");
	expect_setting(a, "myapp.tenant", "acme");
	expect_setting(a, "TimeZone", "Asia/Tokyo");
	expect_setting(b, "myapp.tenant", "");

	/* is_local = true, and a rolled-back set_config, leave nothing behind. */
	PQclear(harness_exec_ok(a, "begin; select set_config('myapp.local', 'x', true); commit"));
	PQclear(harness_exec_ok(a, "begin; select set_config('myapp.tenant', 'gone', false); "
	                           "rollback"));
	expect_setting(a, "myapp.local", "");
	expect_setting(a, "myapp.tenant", "acme");
	expect_setting(b, "myapp.tenant", "");
	PQfinish(a);
	PQfinish(b);
}

Test(txn_state, custom_set_and_reset_all)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = client(h), *b = client(h);

	PQclear(harness_exec_ok(a, "SET SESSION myapp.who = 'alice'"));
	PQclear(harness_exec_ok(a, "begin; savepoint s; set myapp.who = 'bob'; "
	                           "rollback to savepoint s; commit"));
	expect_setting(b, "myapp.who", "");
	expect_setting(a, "myapp.who", "alice");
	PQclear(harness_exec_ok(b, "set myapp.who = 'carol'"));
	expect_setting(a, "myapp.who", "alice");
	PQclear(harness_exec_ok(a, "reset all"));
	expect_setting(a, "myapp.who", "");
	expect_setting(b, "myapp.who", "carol");
	PQfinish(a);
	PQfinish(b);
}

/* A statement prepared with set_config in its text sets the GUC at each execution. */
Test(txn_state, set_config_in_extended_protocol)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = client(h), *b = client(h);
	const char *v[1] = {"one"};
	PGresult *res;

	res = PQprepare(a, "setter", "select set_config('myapp.ext', $1, false)", 1, NULL);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(a));
	PQclear(res);
	expect_setting(b, "myapp.ext", "");
	res = PQexecPrepared(a, "setter", 1, v, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(a));
	PQclear(res);
	expect_setting(b, "myapp.ext", "");
	expect_setting(a, "myapp.ext", "one");
	v[0] = "two";
	res =
	    PQexecParams(a, "select set_config('myapp.ext', $1, false)", 1, NULL, v, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(a));
	PQclear(res);
	expect_setting(b, "myapp.ext", "");
	expect_setting(a, "myapp.ext", "two");
	PQfinish(a);
	PQfinish(b);
}

/* ---- pinning ---- */

#define PIN_INI   "default_pool_size = 2\nadmin_users = admin\nworkers = 1\n"
#define PIN_USERS "\"admin\" \"admin-secret\"\n"

/*
 * SHOW CLIENTS: some app client is pinned for exactly `want`; for "" no app
 * client is pinned at all.
 */
static bool pin_reason_is(PGconn *admin, long long unused, const char *want)
{
	PGresult *res = PQexec(admin, "SHOW CLIENTS");
	int user = PQfnumber(res, "user"), reason = PQfnumber(res, "pin_reason");
	int pinned = PQfnumber(res, "pinned");
	bool found = false, any_pinned = false;

	(void)unused;
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(admin));
	cr_assert(reason >= 0 && pinned >= 0, "SHOW CLIENTS has pinned and pin_reason");
	for (int i = 0; i < PQntuples(res); i++) {
		if (strcmp(PQgetvalue(res, i, user), "app") != 0)
			continue;
		if (strcmp(PQgetvalue(res, i, pinned), "1") == 0) {
			any_pinned = true;
			found = found || strcmp(PQgetvalue(res, i, reason), want) == 0;
		}
	}
	PQclear(res);
	return want[0] == '\0' ? !any_pinned : found;
}

Test(txn_state, advisory_lock_pins_until_unlocked)
{
	struct harness_sluice *h = harness_start_sluice_users(PIN_INI, PIN_USERS);
	PGconn *adm = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGconn *a = client(h), *b = client(h);
	long long pid;

	PQclear(harness_exec_ok(a, "select pg_advisory_lock(4242)"));
	pid = backend(a);
	cr_assert(harness_wait_for(pin_reason_is(adm, pid, "advisory lock"), 10));
	/* b runs many transactions meanwhile: never on a's backend, never blocked. */
	for (int i = 0; i < 20; i++) {
		cr_assert_neq(backend(b), pid);
		cr_assert_eq(backend(a), pid, "a keeps its server while it holds the lock");
	}
	cr_assert_eq(harness_query_int(b, "select pg_try_advisory_lock(4242)::int"), 0);
	PQclear(harness_exec_ok(a, "select pg_advisory_unlock(4242)"));
	cr_assert(harness_wait_for(pin_reason_is(adm, pid, ""), 10));
	cr_assert_eq(harness_query_int(b, "select pg_try_advisory_lock(4242)::int"), 1);
	PQclear(harness_exec_ok(b, "select pg_advisory_unlock_all()"));
	PQfinish(a);
	PQfinish(b);
	PQfinish(adm);
}

Test(txn_state, temp_table_and_hold_cursor_pin)
{
	struct harness_sluice *h = harness_start_sluice_users(PIN_INI, PIN_USERS);
	PGconn *adm = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGconn *a = client(h), *b = client(h);
	long long pid;

	PQclear(harness_exec_ok(a, "create temp table scratch (x int)"));
	pid = backend(a);
	cr_assert(harness_wait_for(pin_reason_is(adm, pid, "temporary table"), 10));
	for (int i = 0; i < 10; i++) {
		char sql[64];

		snprintf(sql, sizeof(sql), "insert into scratch values (%d)", i);
		PQclear(harness_exec_ok(a, sql));
		cr_assert_eq(harness_query_int(b, "select count(*) from pg_class where relname = "
		                                  "'scratch' and relpersistence = 't' and "
		                                  "pg_table_is_visible(oid)"),
		             0);
	}
	cr_assert_eq(harness_query_int(a, "select count(*) from scratch"), 10);
	PQclear(harness_exec_ok(a, "begin; declare cur cursor with hold for select x from "
	                           "scratch order by x; commit"));
	cr_assert(
	    harness_wait_for(pin_reason_is(adm, pid, "temporary table,cursor WITH HOLD"), 10));
	PQclear(harness_exec_ok(a, "drop table scratch"));
	cr_assert(harness_wait_for(pin_reason_is(adm, pid, "cursor WITH HOLD"), 10));
	cr_assert_eq(harness_query_int(a, "fetch next from cur"), 0);
	cr_assert_eq(harness_query_int(a, "fetch next from cur"), 1);
	PQclear(harness_exec_ok(a, "close cur"));
	cr_assert(harness_wait_for(pin_reason_is(adm, pid, ""), 10));
	PQfinish(a);
	PQfinish(b);
	PQfinish(adm);
}

/* A pinned client that leaves: its server is cleaned (DISCARD ALL), not leaked or lost. */
Test(txn_state, pinned_client_leaves_clean_server)
{
	/* One worker: b must get a's backend back, which a TLS server on another worker never is.
	 */
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 1");
	PGconn *a = client(h), *b;
	long long pid;

	PQclear(harness_exec_ok(a, "select pg_advisory_lock(77); create temp table t (x int)"));
	pid = backend(a);
	PQfinish(a);
	b = client(h);
	cr_assert_eq(backend(b), pid, "the only server is reused");
	cr_assert_eq(harness_query_int(b, "select pg_try_advisory_lock(77)::int"), 1);
	cr_assert_eq(harness_query_int(b, "select count(*) from pg_class where relnamespace = "
	                                  "pg_my_temp_schema()"),
	             0);
	PQfinish(b);
}

Test(txn_state, pin_timeout_closes_a_pinned_client)
{
	struct harness_sluice *h =
	    harness_start_sluice("default_pool_size = 1\npin_timeout = 300ms");
	PGconn *a = client(h), *b;
	PGresult *res;

	PQclear(harness_exec_ok(a, "select pg_advisory_lock(5)"));
	/* The pinned client is closed once pin_timeout passes; its lock goes with DISCARD ALL. */
	cr_assert(harness_wait_for(harness_log_contains(h, "longer than pin_timeout"), 20));
	res = PQexec(a, "select 1");
	cr_assert_neq(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	b = client(h);
	cr_assert_eq(harness_query_int(b, "select pg_try_advisory_lock(5)::int"), 1);
	PQfinish(a);
	PQfinish(b);
}

/*
 * An INSERT in an extended batch the client flushed but never synced, and
 * the client's row count read back through a pipeline.  Postgres keeps the
 * batch's implicit transaction open until the Sync, whatever the last
 * ReadyForQuery said.
 */
static PGconn *insert_without_sync(struct harness_sluice *h, const char *table)
{
	PGconn *a = client(h);
	char sql[128];
	PGresult *res;

	snprintf(sql, sizeof(sql), "insert into %s values (1)", table);
	cr_assert(PQenterPipelineMode(a));
	cr_assert(PQsendQueryParams(a, sql, 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendFlushRequest(a));
	cr_assert_eq(PQflush(a), 0);
	res = PQgetResult(a);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_null(PQgetResult(a));
	return a;
}

/*
 * A client that leaves inside such a batch: its INSERT is rolled back, as
 * Postgres rolls back a client that disconnects.  Sluice counted the server
 * clean (tx_status 'I', nothing outstanding) and gave it to the next client,
 * whose transaction then committed the INSERT.
 */
Test(txn_state, an_unsynced_batch_of_a_client_that_leaves_is_rolled_back)
{
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 1");
	PGconn *b = client(h), *a;

	PQclear(
	    harness_exec_ok(b, "drop table if exists unsynced_t; create table unsynced_t(v int)"));
	a = insert_without_sync(h, "unsynced_t");
	PQfinish(a);
	cr_assert_eq(harness_query_int(b, "select count(*) from unsynced_t"), 0,
	             "the INSERT of a client that left before its Sync was committed");
	PQfinish(b);
}

/* One that stays idle inside it is idle in a transaction: idle_transaction_timeout. */
Test(txn_state, an_unsynced_batch_is_idle_in_a_transaction)
{
	struct harness_sluice *h = harness_start_sluice(
	    "workers = 1\ndefault_pool_size = 1\nidle_transaction_timeout = 1s");
	PGconn *b = client(h), *a;

	PQclear(
	    harness_exec_ok(b, "drop table if exists unsynced_t; create table unsynced_t(v int)"));
	a = insert_without_sync(h, "unsynced_t");
	cr_assert(harness_wait_for(harness_log_contains(h, "idle_transaction_timeout expired"), 30),
	          "the client idle inside its batch was never closed");
	cr_assert_eq(harness_query_int(b, "select count(*) from unsynced_t"), 0);
	PQfinish(a);
	PQfinish(b);
}

/* ---- SQL PREPARE / EXECUTE / DEALLOCATE ---- */

/* 8 clients, one statement name, 8 different statements, on 2 servers. */
Test(txn_state, sql_prepare_same_name_many_clients)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 2");
	PGconn *c[8];
	char sql[128];

	for (int i = 0; i < 8; i++) {
		c[i] = client(h);
		snprintf(sql, sizeof(sql), "PREPARE q(int) AS SELECT $1 * %d", i + 1);
		PQclear(harness_exec_ok(c[i], sql));
	}
	for (int round = 0; round < 10; round++)
		for (int i = 0; i < 8; i++) {
			snprintf(sql, sizeof(sql), "execute q(%d)", round);
			cr_assert_eq(harness_query_int(c[i], sql), (long long)round * (i + 1));
		}
	/* Inside a transaction, and the same text prepared by another name. */
	PQclear(harness_exec_ok(c[0], "begin"));
	PQclear(harness_exec_ok(c[0], "prepare \"Other\" as select 41 + 1"));
	cr_assert_eq(harness_query_int(c[0], "EXECUTE \"Other\""), 42);
	PQclear(harness_exec_ok(c[0], "commit"));
	cr_assert_eq(harness_query_int(c[1], "execute q (5)"), 10);
	cr_assert_eq(harness_query_int(c[0], "EXECUTE \"Other\";"), 42);
	for (int i = 0; i < 8; i++)
		PQfinish(c[i]);
}

Test(txn_state, sql_deallocate_and_errors)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = client(h), *b = client(h);
	PGresult *res;

	PQclear(harness_exec_ok(a, "prepare s as select 7"));
	/* b does not see a's name. */
	res = PQexec(b, "execute s");
	cr_assert_str_eq(harness_sqlstate(res), "26000");
	PQclear(res);
	cr_assert_eq(harness_query_int(a, "execute s"), 7);
	PQclear(harness_exec_ok(a, "deallocate s"));
	res = PQexec(a, "execute s");
	cr_assert_str_eq(harness_sqlstate(res), "26000");
	PQclear(res);
	/* A PREPARE Postgres refuses leaves no name behind. */
	res = PQexec(a, "prepare bad as select no_such_column");
	cr_assert_str_eq(harness_sqlstate(res), "42703");
	PQclear(res);
	res = PQexec(a, "execute bad");
	cr_assert_str_eq(harness_sqlstate(res), "26000");
	PQclear(res);
	/* DEALLOCATE ALL forgets every name. */
	PQclear(harness_exec_ok(a, "prepare s2 as select 8"));
	PQclear(harness_exec_ok(a, "deallocate all"));
	res = PQexec(a, "execute s2");
	cr_assert_str_eq(harness_sqlstate(res), "26000");
	PQclear(res);
	/* Renamed statements do not pin: b still gets the only server. */
	PQclear(harness_exec_ok(a, "prepare s3 as select 9"));
	cr_assert_eq(harness_query_int(b, "select 1"), 1);
	cr_assert_eq(harness_query_int(a, "execute s3"), 9);
	/* EXECUTE through the extended protocol (an unnamed Parse), on a server without it. */
	PQclear(harness_exec_ok(b, "deallocate all")); /* on the one server: s3 is gone there */
	res = PQexecParams(a, "EXECUTE s3", 0, NULL, NULL, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(a));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "9");
	PQclear(res);
	PQfinish(a);
	PQfinish(b);
}

/*
 * Another client empties both servers of a pool of 2 (DEALLOCATE ALL drops
 * every statement there, sluice's too), so the next use must prepare again.
 */
static void empty_both_servers(PGconn *w1, PGconn *w2)
{
	PQclear(harness_exec_ok(w1, "begin"));
	PQclear(harness_exec_ok(w2, "deallocate all"));
	PQclear(harness_exec_ok(w1, "deallocate all"));
	PQclear(harness_exec_ok(w1, "commit"));
}

static void prepare_ok(PGconn *c, const char *name, const char *sql)
{
	PGresult *res = PQprepare(c, name, sql, 0, NULL);

	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
	PQclear(res);
}

static long long exec_prepared_int(PGconn *c, const char *name)
{
	PGresult *res = PQexecPrepared(c, name, 0, NULL, NULL, NULL, 0);
	long long v;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", name, PQerrorMessage(c));
	v = atoll(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

static void expect_prepared_error(PGconn *c, const char *name, const char *sqlstate)
{
	PGresult *res = PQexecPrepared(c, name, 0, NULL, NULL, NULL, 0);

	cr_assert_str_eq(harness_sqlstate(res), sqlstate, "%s: %s", name, PQerrorMessage(c));
	PQclear(res);
}

/*
 * EXECUTE in a named Parse (asyncpg's statement cache, node-postgres `name:`,
 * pgJDBC, psycopg 3 prepare=True): 8 clients, one SQL name q, 4 different
 * statements (clients i and i + 4 share one text), the same protocol text
 * "EXECUTE q(3)" in every client, on servers that lack q when it is Parsed
 * and again when it is executed.
 */
Test(txn_state, sql_execute_in_named_parse_many_clients)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 2");
	PGconn *c[8], *w1 = client(h), *w2 = client(h);
	PGresult *res;
	char sql[128];

	for (int i = 0; i < 8; i++) {
		c[i] = client(h);
		snprintf(sql, sizeof(sql), "PREPARE q(int) AS SELECT $1 * %d", i % 4 + 1);
		PQclear(harness_exec_ok(c[i], sql));
	}
	empty_both_servers(w1, w2);
	for (int i = 0; i < 8; i++) {
		prepare_ok(c[i], "p", "EXECUTE q(3)");
		/* The result type is known: q was there when the server parsed it. */
		res = PQdescribePrepared(c[i], "p");
		cr_assert_eq(PQnfields(res), 1, "%s", PQerrorMessage(c[i]));
		cr_assert_eq(PQftype(res, 0), 23);
		PQclear(res);
	}
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 8; i++)
			cr_assert_eq(exec_prepared_int(c[i], "p"), 3 * (i % 4 + 1));
		empty_both_servers(w1, w2);
	}
	/* In a transaction, after the statement was prepared again. */
	for (int i = 0; i < 8; i++) {
		PQclear(harness_exec_ok(c[i], "begin"));
		cr_assert_eq(exec_prepared_int(c[i], "p"), 3 * (i % 4 + 1));
		cr_assert_eq(harness_query_int(c[i], "execute q(2)"), 2 * (i % 4 + 1));
		PQclear(harness_exec_ok(c[i], "commit"));
		PQfinish(c[i]);
	}
	PQfinish(w1);
	PQfinish(w2);
}

/* As in Postgres, "EXECUTE q" runs whatever q is when it is executed. */
Test(txn_state, sql_execute_in_named_parse_follows_the_name)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = client(h), *b = client(h);

	PQclear(harness_exec_ok(a, "prepare q as select 1"));
	PQclear(harness_exec_ok(b, "prepare q as select 10"));
	prepare_ok(a, "p", "EXECUTE q");
	prepare_ok(b, "p", "EXECUTE q");
	cr_assert_eq(exec_prepared_int(a, "p"), 1);
	cr_assert_eq(exec_prepared_int(b, "p"), 10);
	PQclear(harness_exec_ok(a, "deallocate q"));
	expect_prepared_error(a, "p", "26000");
	cr_assert_eq(exec_prepared_int(b, "p"), 10);
	PQclear(harness_exec_ok(a, "prepare q as select 2"));
	cr_assert_eq(exec_prepared_int(a, "p"), 2);
	/* A name PREPAREd after the Parse. */
	prepare_ok(a, "later", "EXECUTE r");
	expect_prepared_error(a, "later", "26000");
	PQclear(harness_exec_ok(a, "prepare r as select 3"));
	cr_assert_eq(exec_prepared_int(a, "later"), 3);
	PQfinish(a);
	PQfinish(b);
}

/* EXECUTE in a pipeline, on a server that lacks the statement: it is prepared mid-pipeline. */
Test(txn_state, sql_execute_prepared_inside_a_pipeline)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = client(h), *b = client(h);
	const char *want[] = {"1", "5", "5", "5"};
	PGresult *res;
	int got = 0;

	PQclear(harness_exec_ok(a, "prepare q(int) as select $1"));
	PQclear(harness_exec_ok(b, "deallocate all")); /* the one server: q is gone there */
	cr_assert_eq(PQenterPipelineMode(a), 1);
	cr_assert_eq(PQsendQueryParams(a, "select 1", 0, NULL, NULL, NULL, NULL, 0), 1);
	cr_assert_eq(PQsendPrepare(a, "p", "EXECUTE q(5)", 0, NULL), 1);
	cr_assert_eq(PQsendQueryPrepared(a, "p", 0, NULL, NULL, NULL, 0), 1);
	cr_assert_eq(PQsendQueryParams(a, "EXECUTE q(5)", 0, NULL, NULL, NULL, NULL, 0), 1);
	cr_assert_eq(PQsendQueryPrepared(a, "p", 0, NULL, NULL, NULL, 0), 1);
	cr_assert_eq(PQpipelineSync(a), 1);
	for (int i = 0; i < 5; i++) {
		while ((res = PQgetResult(a)) != NULL) {
			cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK ||
			              PQresultStatus(res) == PGRES_COMMAND_OK,
			          "request %d: %s", i, PQresultErrorMessage(res));
			if (PQresultStatus(res) == PGRES_TUPLES_OK)
				cr_assert_str_eq(PQgetvalue(res, 0, 0), want[got++]);
			PQclear(res);
		}
	}
	res = PQgetResult(a);
	cr_assert_eq(PQresultStatus(res), PGRES_PIPELINE_SYNC);
	PQclear(res);
	cr_assert_eq(got, 4);
	cr_assert_eq(PQexitPipelineMode(a), 1);
	PQfinish(a);
	PQfinish(b);
}

/* EXPLAIN [ANALYZE] EXECUTE and CREATE TABLE AS EXECUTE, in a Query and an unnamed Parse. */
Test(txn_state, sql_execute_in_explain_and_create_table_as)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = client(h), *b = client(h);
	PGresult *res;

	PQclear(harness_exec_ok(a, "prepare q(int) as select $1 as v"));
	PQclear(harness_exec_ok(b, "prepare q(int) as select $1 * 10 as v"));
	PQclear(harness_exec_ok(a, "drop table if exists sqlexec_a, sqlexec_b"));
	PQclear(harness_exec_ok(a, "explain execute q(1)"));
	PQclear(harness_exec_ok(b, "EXPLAIN (ANALYZE, COSTS OFF) /* c */ EXECUTE q(1)"));
	res = PQexecParams(a, "explain analyze verbose execute q(1)", 0, NULL, NULL, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(a));
	PQclear(res);
	PQclear(harness_exec_ok(a, "create table sqlexec_a as execute q(7)"));
	res = PQexecParams(b, "CREATE TABLE sqlexec_b (w) AS EXECUTE q (7) WITH DATA", 0, NULL,
	                   NULL, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(b));
	PQclear(res);
	cr_assert_eq(harness_query_int(a, "select v from sqlexec_a"), 7);
	cr_assert_eq(harness_query_int(a, "select w from sqlexec_b"), 70);
	PQclear(harness_exec_ok(a, "drop table sqlexec_a, sqlexec_b"));
	PQfinish(a);
	PQfinish(b);
}

static void expect_error(PGconn *c, const char *sql, const char *sqlstate)
{
	PGresult *res = PQexec(c, sql);

	cr_assert_str_eq(harness_sqlstate(res), sqlstate, "%s: %s", sql, PQerrorMessage(c));
	PQclear(res);
}

/* A second PREPARE of a name fails (42P05); a PREPARE in an aborted transaction too (25P02). */
Test(txn_state, sql_prepare_errors_as_postgres)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = client(h), *b = client(h);
	PGresult *res;

	PQclear(harness_exec_ok(a, "prepare q as select 1"));
	res = PQexec(a, "prepare q as select 2");
	cr_assert_str_eq(harness_sqlstate(res), "42P05");
	cr_assert_str_eq(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
	                 "prepared statement \"q\" already exists");
	PQclear(res);
	cr_assert_eq(harness_query_int(a, "execute q"), 1);
	/* One namespace with protocol-level names, and the transaction is aborted on the server. */
	prepare_ok(a, "Proto", "select 5");
	PQclear(harness_exec_ok(a, "begin"));
	expect_error(a, "PREPARE \"Proto\" AS SELECT 3", "42P05");
	expect_error(a, "select 1", "25P02");
	PQclear(harness_exec_ok(a, "rollback"));
	cr_assert_eq(exec_prepared_int(a, "Proto"), 5);
	/* b has the text on the server; a's PREPARE of it after an error is refused. */
	PQclear(harness_exec_ok(b, "prepare r as select 1"));
	PQclear(harness_exec_ok(a, "begin"));
	expect_error(a, "select 1/0", "22012");
	expect_error(a, "prepare r as select 1", "25P02");
	expect_error(a, "prepare q as select 1", "25P02");
	PQclear(harness_exec_ok(a, "rollback"));
	expect_error(a, "execute r", "26000");
	cr_assert_eq(harness_query_int(a, "execute q"), 1);
	PQfinish(a);
	PQfinish(b);
}

/* ---- LISTEN (served by the pool's shared listening connection, no pin: docs/session-state.md)
 * ---- */

static int drain_notifies(PGconn *c, int *last)
{
	PGnotify *n;
	int count = 0;

	PQconsumeInput(c);
	while ((n = PQnotifies(c)) != NULL) {
		*last = atoi(n->extra);
		count++;
		PQfreemem(n);
	}
	return count;
}

Test(txn_state, listen_receives_while_idle_and_unlisten_unpins)
{
	struct harness_sluice *h = harness_start_sluice_users(PIN_INI, PIN_USERS);
	PGconn *adm = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGconn *l = client(h), *n = client(h), *churn = client(h);
	int got = 0, last = -1;
	char sql[64];

	PQclear(harness_exec_ok(l, "LISTEN chan"));
	cr_assert(pin_reason_is(adm, 0, ""), "a lone LISTEN pinned its client");
	for (int i = 0; i < 30; i++) {
		snprintf(sql, sizeof(sql),
		         i % 2 ? "NOTIFY chan, '%d'" : "select pg_notify('chan', '%d')", i);
		PQclear(harness_exec_ok(n, sql));
		cr_assert_eq(harness_query_int(churn, "select 1"), 1);
	}
	/* The listener sent nothing meanwhile: they arrive while it is idle. */
	cr_assert(harness_wait_for((got += drain_notifies(l, &last)) >= 30, 10), "got %d", got);
	cr_assert_eq(got, 30);
	cr_assert_eq(last, 29);
	PQclear(harness_exec_ok(l, "UNLISTEN *"));
	PQclear(harness_exec_ok(l, "LISTEN marker"));
	PQclear(harness_exec_ok(n, "NOTIFY chan, '100'"));
	PQclear(harness_exec_ok(n, "NOTIFY marker, '200'"));
	/* One listening connection delivers in commit order: chan's would come before the marker.
	 */
	got = 0;
	cr_assert(harness_wait_for((got += drain_notifies(l, &last)) >= 1, 10));
	cr_assert_eq(got, 1, "a notification on chan arrived after UNLISTEN *");
	cr_assert_eq(last, 200);
	PQfinish(l);
	PQfinish(n);
	PQfinish(churn);
	PQfinish(adm);
}

/* Calls function `oid` with text (or binary) arguments through a FunctionCall (PQfn). */
static void call_function(PGconn *c, long long oid, const char *const *args, const int *lens,
                          int nargs)
{
	PQArgBlock blocks[4];
	char result[256];
	int result_len = 0;
	PGresult *res;

	for (int i = 0; i < nargs; i++)
		blocks[i] = (PQArgBlock){.len = lens[i], .isint = 0, .u.ptr = (int *)args[i]};
	res = PQfn(c, (int)oid, (int *)result, &result_len, 0, blocks, nargs);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "FunctionCall of %lld: %s", oid,
	             PQerrorMessage(c));
	PQclear(res);
}

/*
 * A FunctionCall (libpq's PQfn, the large-object functions) runs a function
 * sluice cannot name from any SQL text: set_config of a custom setting, a
 * session advisory lock.  Neither was noticed, so the server went back to
 * the pool with them, and the next client on it saw the setting, its backend
 * holding the lock.  Found by protofuzz.  Now a FunctionCall marks the server
 * as a statement that may change anything does: read back (pins) and its
 * custom settings reset.
 */
Test(txn_state, function_call_state_stays_with_its_client)
{
	struct harness_sluice *h = harness_start_sluice_users(PIN_INI, PIN_USERS);
	PGconn *adm = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGconn *a = client(h), *b = client(h);
	long long set_config =
	    harness_query_int(a, "select 'set_config(text, text, boolean)'::regprocedure::oid");
	long long lock =
	    harness_query_int(a, "select 'pg_advisory_lock(bigint)'::regprocedure::oid");
	const char *const set_args[] = {"myapp.fn", "from_a", "\0"}; /* is_local false */
	const int set_lens[] = {8, 6, 1};
	const char key[8] = {0, 0, 0, 0, 0, 0, 0x10, 0x93}; /* 4243, binary int8 */
	const char *const lock_args[] = {key};
	const int lock_lens[] = {8};
	long long pid;

	call_function(a, set_config, set_args, set_lens, 3);
	expect_setting(b, "myapp.fn", "");
	call_function(a, lock, lock_args, lock_lens, 1);
	pid = backend(a);
	cr_assert(harness_wait_for(pin_reason_is(adm, pid, "advisory lock"), 10));
	cr_assert_neq(backend(b), pid, "b runs on the backend that holds a's lock");
	cr_assert_eq(harness_query_int(b, "select count(*) from pg_locks where locktype = "
	                                  "'advisory' and pid = pg_backend_pid()"),
	             0);
	PQclear(harness_exec_ok(a, "select pg_advisory_unlock(4243)"));
	cr_assert(harness_wait_for(pin_reason_is(adm, pid, ""), 10));
	PQfinish(a);
	PQfinish(b);
	PQfinish(adm);
}

/*
 * A custom setting sluice cannot name (set_config in a DO block) marks the
 * server: its reset runs RESET ALL and reads the settings back.  The RESET
 * tag of that RESET ALL, a statement sluice had not read, marked it again, so
 * the reset ran RESET ALL and the read-back over and over until
 * server_reset_timeout closed the server.  Found by protofuzz (through a
 * FunctionCall, which marks the server the same way).  One server: the next
 * client must get the same backend, without the setting.
 */
Test(txn_state, setting_sluice_cannot_name_is_reset_once)
{
	struct harness_sluice *h = harness_start_sluice("workers = 1\n"
	                                                "default_pool_size = 1\n"
	                                                "server_reset_timeout = 2s");
	PGconn *a = client(h), *b = client(h);
	long long pid = backend(a);

	PQclear(harness_exec_ok(a, "do $$ begin perform set_config('myapp.hidden', 'a', false); "
	                           "end $$"));
	expect_setting(b, "myapp.hidden", "");
	cr_assert_eq(backend(b), pid, "the server was closed, not reset");
	PQfinish(a);
	PQfinish(b);
}

/*
 * PREPARE TRANSACTION 'id' is two-phase commit, not a PREPARE of a statement
 * named "transaction": sluice sent it to the server as PREPARE
 * sluice_<id>_<gen> 'id', a syntax error (42601) in place of Postgres' own
 * answer, and gave the client a statement name it never made.  Found by
 * protofuzz.  (The test cluster runs with max_prepared_transactions = 0,
 * where Postgres refuses it with 55000; with it on, it must succeed.)
 */
Test(txn_state, prepare_transaction_is_two_phase_commit)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *c = client(h);
	bool enabled = harness_query_int(c, "select current_setting('max_prepared_transactions')"
	                                    "::int") > 0;
	PGresult *res;

	PQclear(harness_exec_ok(c, "begin"));
	res = PQexec(c, "prepare transaction 'sluice_txn_state'");
	if (enabled) {
		cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s",
		             PQresultErrorMessage(res));
		PQclear(harness_exec_ok(c, "rollback prepared 'sluice_txn_state'"));
	} else {
		cr_assert_str_eq(harness_sqlstate(res), "55000", "%s", PQresultErrorMessage(res));
	}
	PQclear(res);
	/* A statement that is named "transaction" still is one. */
	PQclear(harness_exec_ok(c, "prepare transaction as select 7"));
	cr_assert_eq(harness_query_int(c, "execute transaction"), 7);
	PQfinish(c);
}
