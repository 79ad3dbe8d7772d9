/*
 * query_timeout: a statement running past it is cancelled, not killed.  The
 * client gets 57014 naming the limit and keeps its server connection (same
 * backend pid afterwards); the limit is per statement, and a database or
 * user may override it.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(timeouts, .fini = harness_teardown, .timeout = 120);

static void expect_timeout(PGconn *c, const char *sql, const char *limit_text)
{
	double start = harness_now();
	PGresult *res = PQexec(c, sql);

	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "%s was not cancelled", sql);
	cr_assert_str_eq(harness_sqlstate(res), "57014", "%s", PQresultErrorMessage(res));
	cr_assert(strstr(PQresultErrorMessage(res), limit_text) != NULL,
	          "the error does not name the limit: %s", PQresultErrorMessage(res));
	/* pg_sleep(10) would take 10 s; the cancel came long before. */
	cr_assert_lt(harness_now() - start, 9.0);
	PQclear(res);
}

Test(timeouts, query_timeout_cancels_and_keeps_the_server)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1\n"
	                                                "query_timeout = 1s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid = harness_query_int(c, "select pg_backend_pid()");

	expect_timeout(c, "select pg_sleep(10)", "sluice query_timeout (1s)");
	cr_assert_eq(PQstatus(c), CONNECTION_OK);
	cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), pid,
	             "the server was replaced");
	/* Per statement, not per transaction: three 0.4 s statements in one transaction pass. */
	PQclear(harness_exec_ok(c, "begin"));
	for (int i = 0; i < 3; i++)
		PQclear(harness_exec_ok(c, "select pg_sleep(0.4)"));
	PQclear(harness_exec_ok(c, "commit"));
	/* Inside a transaction the cancel aborts it, as a statement_timeout would. */
	PQclear(harness_exec_ok(c, "begin"));
	expect_timeout(c, "select pg_sleep(10)", "query_timeout");
	cr_assert_eq(PQtransactionStatus(c), PQTRANS_INERROR);
	PQclear(harness_exec_ok(c, "rollback"));
	cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), pid);
	cr_assert(harness_log_contains(h, "statement ran past query_timeout"));
	PQfinish(c);
}

Test(timeouts, extended_protocol_statement_is_cancelled_too)
{
	struct harness_sluice *h = harness_start_sluice("query_timeout = 500ms");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	const char *params[1] = {"10"};
	PGresult *res =
	    PQexecParams(c, "select pg_sleep($1::float8)", 1, NULL, params, NULL, NULL, 0);

	cr_assert_str_eq(harness_sqlstate(res), "57014", "%s", PQresultErrorMessage(res));
	cr_assert(strstr(PQresultErrorMessage(res), "sluice query_timeout (500ms)") != NULL, "%s",
	          PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_eq(harness_query_int(c, "select 7"), 7);
	PQfinish(c);
}

/* The database allows 2 s where the global limit says 100 ms. */
Test(timeouts, database_overrides_the_global_limit)
{
	struct harness_sluice *h =
	    harness_start_sluice("query_timeout = 100ms\n[databases]\n"
	                         "app = host=@PGHOST@ port=@PGPORT@ dbname=app query_timeout=2s\n");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");

	PQclear(harness_exec_ok(c, "select pg_sleep(0.5)"));
	expect_timeout(c, "select pg_sleep(10)", "sluice query_timeout (2s)");
	PQfinish(c);
}

/* A user's limit beats the database's and the global one. */
Test(timeouts, user_overrides_database_and_global_limits)
{
	struct harness_sluice *h =
	    harness_start_sluice("query_timeout = 100ms\n[databases]\n"
	                         "app = host=@PGHOST@ port=@PGPORT@ dbname=app query_timeout=2s\n"
	                         "[users]\napp = query_timeout=1s\n");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");

	PQclear(harness_exec_ok(c, "select pg_sleep(0.3)"));
	expect_timeout(c, "select pg_sleep(10)", "sluice query_timeout (1s)");
	PQfinish(c);
}

/* A tenant's limit beats the database's; the user's (none here) would beat both. */
Test(timeouts, tenant_overrides_the_database_limit)
{
	struct harness_sluice *h =
	    harness_start_sluice("query_timeout = 5s\n[databases]\n"
	                         "app = host=@PGHOST@ port=@PGPORT@ dbname=app query_timeout=3s\n"
	                         "[tenant.apps]\nusers = app\nquery_timeout = 400ms\n");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");

	expect_timeout(c, "select pg_sleep(10)", "sluice query_timeout (400ms)");
	PQfinish(c);
}

/*
 * A server that does not answer the cancel: its backend is stopped
 * (SIGSTOP, so the test needs to be allowed to signal Postgres' processes).
 * After cancel_grace the server is closed and the client gets 08006; the
 * next query runs on a new server.
 */
Test(timeouts, unanswered_cancel_closes_the_server_after_cancel_grace)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1\n"
	                                                "query_timeout = 500ms\n"
	                                                "cancel_grace = 500ms\n");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid = harness_query_int(c, "select pg_backend_pid()");
	PGresult *res;

	if (kill((pid_t)pid, SIGSTOP) != 0)
		cr_skip_test("cannot stop backend %lld: %s", pid, strerror(errno));
	/* The FATAL arrives just before the connection closes: libpq keeps both messages. */
	PQsetErrorVerbosity(c, PQERRORS_VERBOSE);
	res = PQexec(c, "select 1");
	kill((pid_t)pid, SIGCONT);
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "the stopped server answered?");
	PQclear(res);
	cr_assert(strstr(PQerrorMessage(c), "FATAL:  08006: ") != NULL, "%s", PQerrorMessage(c));
	cr_assert(strstr(PQerrorMessage(c), "cancel_grace") != NULL, "%s", PQerrorMessage(c));
	cr_assert(harness_log_contains(h, "did not answer the cancel within cancel_grace"));
	/* The server was closed, not handed on: a new connection gets a new backend. */
	PQfinish(c);
	c = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_neq(harness_query_int(c, "select pg_backend_pid()"), pid);
	PQfinish(c);
}

/*
 * server_reset_timeout = 0 means no time for a reset: a server whose client
 * left inside a transaction is closed, not rolled back and reused.  It was
 * armed as "no timer", so the reset ran with no limit at all (a backend that
 * never answered held its pool slot for good).
 */
Test(timeouts, server_reset_timeout_zero_closes_a_server_left_unclean)
{
	struct harness_sluice *h =
	    harness_start_sluice("workers = 1\ndefault_pool_size = 1\nserver_reset_timeout = 0");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app"), *b;
	int pid;

	PQclear(harness_exec_ok(a, "begin"));
	pid = harness_query_int(a, "select pg_backend_pid()");
	PQfinish(a);
	b = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_neq(harness_query_int(b, "select pg_backend_pid()"), pid,
	              "the server its client left in a transaction was reset and reused");
	cr_assert(harness_log_contains(h, "server_reset_timeout is 0"));
	PQfinish(b);
}

/*
 * query_timeout is each statement's: eight Queries of 0.3 s sent in one
 * write are not cancelled for the 2.4 s they take together (each stays 1.7 s
 * under the limit).  The clock started once for the whole burst, so the one
 * running at 2 s was cancelled, and, still marked as timed out, the server
 * was closed with 08006 when cancel_grace passed.
 */
Test(timeouts, pipelined_queries_each_get_the_whole_query_timeout)
{
	struct harness_sluice *h =
	    harness_start_sluice("default_pool_size = 1\nquery_timeout = 2s\ncancel_grace = 1s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	unsigned char buf[1024];
	char want[512] = "";
	size_t n = 0;

	for (int i = 0; i < 8; i++) {
		char sql[64];

		snprintf(sql, sizeof(sql), "select pg_sleep(0.3)::text || '%d'", i);
		harness_put_query(buf, &n, sql);
		snprintf(want + strlen(want), sizeof(want) - strlen(want),
		         "T D(%d) C(SELECT 1) Z(I) ", i);
	}
	harness_expect_transcript(c, buf, n, 8, want, "eight Queries in one write");
	cr_assert_eq(harness_query_int(c, "select 7"), 7, "the server was kept");
	PQfinish(c);
}

/*
 * transaction_timeout times a transaction that a request queued behind
 * another opens: SELECT 1 and BEGIN in one write, then a statement longer
 * than the limit.  The timer was armed only for work begun on an empty queue
 * and disarmed by SELECT 1's ReadyForQuery, so the transaction was never
 * timed.
 */
Test(timeouts, a_transaction_opened_by_a_pipelined_begin_is_timed)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1\n"
	                                                "transaction_timeout = 1s\n"
	                                                "idle_transaction_timeout = 0");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	unsigned char buf[256];
	size_t n = 0;
	PGresult *res;

	harness_put_query(buf, &n, "select 1");
	harness_put_query(buf, &n, "begin");
	harness_expect_transcript(c, buf, n, 2, "T D(1) C(SELECT 1) Z(I) C(BEGIN) Z(T) ",
	                          "SELECT 1 and BEGIN in one write");
	res = PQexec(c, "select pg_sleep(3)");
	cr_assert_neq(PQresultStatus(res), PGRES_TUPLES_OK,
	              "a 3 s statement in a transaction under transaction_timeout = 1s ran");
	PQclear(res);
	cr_assert(harness_log_contains(h, "transaction_timeout"));
	PQfinish(c);
}

/* ... but a clean server's reset still runs: session mode with 0 still pools. */
Test(timeouts, server_reset_timeout_zero_still_resets_a_clean_session_server)
{
	struct harness_sluice *h = harness_start_sluice(
	    "workers = 1\ndefault_pool_size = 1\npool_mode = session\nserver_reset_timeout = 0");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app"), *b;
	int pid = harness_query_int(a, "select pg_backend_pid()");

	PQfinish(a);
	b = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(b, "select pg_backend_pid()"), pid,
	             "a clean session-mode server was closed, not reset and reused");
	PQfinish(b);
}
