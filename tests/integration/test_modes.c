/*
 * Pool modes: session mode keeps one server per client and resets it before
 * the next client; transaction mode shares servers between transactions;
 * statement mode refuses transaction blocks but keeps the client; modes set per
 * database and per user override the global one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(modes, .fini = harness_teardown, .timeout = 120);

static char *show(PGconn *c, const char *setting)
{
	char sql[128];
	PGresult *res;
	char *value;

	snprintf(sql, sizeof(sql), "show %s", setting);
	res = harness_exec_ok(c, sql);
	value = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return value;
}

Test(modes, session_keeps_server_and_resets_it)
{
	/*
	 * One worker: the next client must reuse this backend; test_workers.c
	 * covers servers handed between workers.
	 */
	struct harness_sluice *h = harness_start_sluice("workers = 1\n"
	                                                "pool_mode = session\n"
	                                                "default_pool_size = 1");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid = harness_query_int(c, "select pg_backend_pid()");
	const char *params[] = {"41"};
	PGresult *res;
	char *value;

	for (int i = 0; i < 3; i++) {
		PQclear(harness_exec_ok(c, "begin"));
		cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), pid);
		PQclear(harness_exec_ok(c, "commit"));
	}
	PQclear(harness_exec_ok(c, "set work_mem = '7MB'"));
	PQclear(harness_exec_ok(c, "select 1"));
	value = show(c, "work_mem");
	cr_assert_str_eq(value, "7MB");
	free(value);
	/* Named prepared statements live as long as the session. */
	res = PQprepare(c, "plus_one", "select $1::int + 1", 1, NULL);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
	PQclear(res);
	PQclear(harness_exec_ok(c, "select 1"));
	res = PQexecPrepared(c, "plus_one", 1, params, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "42");
	PQclear(res);
	PQfinish(c);

	/* The same server (pool of one), reset by server_reset_query. */
	c = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), pid,
	             "the next client got a new server, not the reset one");
	value = show(c, "work_mem");
	cr_assert_str_neq(value, "7MB", "the previous session's SET leaked to the next client");
	free(value);
	res = PQexecPrepared(c, "plus_one", 1, params, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR,
	             "the previous session's prepared statement leaked");
	cr_assert_str_eq(harness_sqlstate(res), "26000");
	PQclear(res);
	PQfinish(c);
}

Test(modes, transaction_shares_server)
{
	/*
	 * One worker: both clients must share one backend; test_workers.c covers
	 * servers handed between workers.
	 */
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid = harness_query_int(a, "select pg_backend_pid()");

	cr_assert_eq(harness_query_int(b, "select pg_backend_pid()"), pid);
	for (int i = 0; i < 5; i++) {
		PGconn *first = i % 2 ? a : b, *second = i % 2 ? b : a;

		PQclear(harness_exec_ok(first, "begin"));
		PQclear(harness_exec_ok(first, "select 1"));
		PQclear(harness_exec_ok(first, "commit"));
		PQclear(harness_exec_ok(second, "begin"));
		cr_assert_eq(harness_query_int(second, "select pg_backend_pid()"), pid);
		PQclear(harness_exec_ok(second, "commit"));
	}
	cr_assert_eq(harness_count_backends("app", NULL), 1);
	PQfinish(a);
	PQfinish(b);
}

/* BEGIN must fail and leave the client idle and usable. */
static void expect_begin_refused(PGconn *c)
{
	PGresult *res = PQexec(c, "begin");

	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR,
	             "BEGIN was accepted in statement mode (%s)", PQresStatus(PQresultStatus(res)));
	cr_log_info("statement mode refused BEGIN with %s: %s", harness_sqlstate(res),
	            PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "the client was disconnected");
	cr_assert_eq(PQtransactionStatus(c), PQTRANS_IDLE);
	cr_assert_eq(harness_query_int(c, "select 2"), 2);
}

Test(modes, statement_refuses_transactions)
{
	struct harness_sluice *h = harness_start_sluice("pool_mode = statement");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	const char *params[] = {"3"};
	PGresult *res;

	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	expect_begin_refused(c);
	res = PQexecParams(c, "select $1::int", 1, NULL, params, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "3");
	PQclear(res);
	expect_begin_refused(c);
	PQfinish(c);
}

/*
 * Statement mode closes a client that opened a transaction block with more
 * requests pipelined behind it (FATAL 0A000), and resets its server.  When
 * the first of those was a reply sluice owed the client itself (here the
 * ParseComplete of an unnamed Parse of DEALLOCATE, which sluice answers), it
 * stayed at the head of the server's queue: the server's next ReadyForQuery
 * retired it in place of the Sync it answered, the replies after it were
 * counted one off, and the reset waited for one more until
 * server_reset_timeout closed the server.  Found by protofuzz.  One server:
 * the next client must get the same backend.
 */
Test(modes, statement_mode_resets_a_server_with_replies_owed)
{
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n"
	                                                "pool_mode = statement\n"
	                                                "workers = 1\n"
	                                                "default_pool_size = 1\n"
	                                                "server_reset_timeout = 2s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *bad = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid = harness_query_int(c, "select pg_backend_pid()");
	static const char parse[] = "\0deallocate nope\0\0"; /* unnamed, no parameter types */
	unsigned char buf[128];
	size_t n = 0;
	char got[256];

	harness_put_query(buf, &n, "begin");
	harness_put_msg(buf, &n, 'P', parse, sizeof(parse));
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_put_query(buf, &n, "select 1");
	harness_send_all(PQsocket(bad), buf, n);
	harness_transcript(PQsocket(bad), 1, got, sizeof(got));
	cr_assert_str_eq(got, "C(BEGIN) E(0A000) CLOSED");
	PQfinish(bad);
	cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), pid,
	             "the server was closed, not reset");
	PQfinish(c);
}

Test(modes, per_database_and_per_user_overrides)
{
	struct harness_sluice *h = harness_start_sluice(
	    "[databases]\n"
	    "other = host=@PGHOST@ port=@PGPORT@ dbname=other pool_mode=statement\n"
	    "[users]\n"
	    "md5user = pool_mode=statement\n");
	PGconn *app = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *app_other = harness_connect_ok(h, "app", "app-secret", "other");
	PGconn *md5 = harness_connect_ok(h, "md5user", "md5-secret", "app");

	/* The global transaction mode still applies to app on app. */
	PQclear(harness_exec_ok(app, "begin"));
	PQclear(harness_exec_ok(app, "commit"));
	expect_begin_refused(app_other);
	expect_begin_refused(md5);
	PQfinish(app);
	PQfinish(app_other);
	PQfinish(md5);
}
