/*
 * libpq pipeline mode through sluice: many requests in flight before any
 * reply, an error that makes the server skip to the next Sync (sluice must
 * track that to know when the server is free), and transactions that span
 * several Syncs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(pipeline, .fini = harness_teardown, .timeout = 120);

static void send_query(PGconn *c, const char *sql)
{
	cr_assert(PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0), "queue %s: %s", sql,
	          PQerrorMessage(c));
}

static void send_sync(PGconn *c)
{
	cr_assert(PQpipelineSync(c), "sync: %s", PQerrorMessage(c));
}

/*
 * Takes the next result and checks its status, its SQLSTATE for errors or its
 * first value for rows (either may be NULL to skip), then the NULL that ends
 * every result except a Sync's.  Returns the first value, if any, malloc'd.
 */
static char *expect(PGconn *c, ExecStatusType want, const char *value, const char *what)
{
	PGresult *res = PQgetResult(c);
	ExecStatusType got;
	char *first = NULL;

	cr_assert(res != NULL, "%s: no result", what);
	got = PQresultStatus(res);
	cr_assert_eq(got, want, "%s: got %s, want %s (%s)", what, PQresStatus(got),
	             PQresStatus(want), PQresultErrorMessage(res));
	if (value != NULL && want == PGRES_FATAL_ERROR)
		cr_assert_str_eq(harness_sqlstate(res), value, "%s", what);
	else if (value != NULL)
		cr_assert_str_eq(PQgetvalue(res, 0, 0), value, "%s", what);
	if (want == PGRES_TUPLES_OK && PQntuples(res) > 0)
		first = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (want != PGRES_PIPELINE_SYNC) {
		res = PQgetResult(c);
		cr_assert_null(res, "%s: more than one result", what);
	}
	return first;
}

Test(pipeline, error_in_the_middle)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	const char *params[1];
	char text[16];

	cr_assert(PQenterPipelineMode(c));
	send_query(c, "select 1");
	send_query(c, "select 1/0");
	send_query(c, "select 3");
	send_sync(c);
	send_query(c, "select 4");
	send_sync(c);

	free(expect(c, PGRES_TUPLES_OK, "1", "before the error"));
	free(expect(c, PGRES_FATAL_ERROR, "22012", "the error"));
	free(expect(c, PGRES_PIPELINE_ABORTED, NULL, "after the error"));
	free(expect(c, PGRES_PIPELINE_SYNC, NULL, "first sync"));
	free(expect(c, PGRES_TUPLES_OK, "4", "after the sync"));
	free(expect(c, PGRES_PIPELINE_SYNC, NULL, "second sync"));
	cr_assert(PQexitPipelineMode(c), "%s", PQerrorMessage(c));
	cr_assert_eq(harness_query_int(c, "select 5"), 5);

	/* A second pipeline on the same connection, a hundred requests deep. */
	cr_assert(PQenterPipelineMode(c));
	params[0] = text;
	for (int i = 0; i < 100; i++) {
		snprintf(text, sizeof(text), "%d", i);
		cr_assert(
		    PQsendQueryParams(c, "select $1::int * 2", 1, NULL, params, NULL, NULL, 0),
		    "%s", PQerrorMessage(c));
	}
	send_sync(c);
	for (int i = 0; i < 100; i++) {
		char want[16];

		snprintf(want, sizeof(want), "%d", i * 2);
		free(expect(c, PGRES_TUPLES_OK, want, "second pipeline"));
	}
	free(expect(c, PGRES_PIPELINE_SYNC, NULL, "second pipeline sync"));
	cr_assert(PQexitPipelineMode(c), "%s", PQerrorMessage(c));
	PQfinish(c);
}

Test(pipeline, transaction_across_syncs)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	char *pid1, *pid2;

	cr_assert(PQenterPipelineMode(c));
	send_query(c, "begin");
	send_query(c, "select pg_backend_pid()");
	send_sync(c);
	send_query(c, "select 1/0");
	send_sync(c);
	/* The transaction is now failed ('E'), not over: the server stays ours. */
	send_query(c, "select 1");
	send_sync(c);
	send_query(c, "rollback");
	send_sync(c);
	send_query(c, "begin");
	send_query(c, "select pg_backend_pid()");
	send_sync(c);
	send_query(c, "select pg_backend_pid()");
	send_query(c, "commit");
	send_sync(c);

	free(expect(c, PGRES_COMMAND_OK, NULL, "begin"));
	free(expect(c, PGRES_TUPLES_OK, NULL, "pid"));
	free(expect(c, PGRES_PIPELINE_SYNC, NULL, "sync 1"));
	free(expect(c, PGRES_FATAL_ERROR, "22012", "division by zero"));
	free(expect(c, PGRES_PIPELINE_SYNC, NULL, "sync 2"));
	free(expect(c, PGRES_FATAL_ERROR, "25P02", "in failed transaction"));
	free(expect(c, PGRES_PIPELINE_SYNC, NULL, "sync 3"));
	free(expect(c, PGRES_COMMAND_OK, NULL, "rollback"));
	free(expect(c, PGRES_PIPELINE_SYNC, NULL, "sync 4"));
	free(expect(c, PGRES_COMMAND_OK, NULL, "second begin"));
	pid1 = expect(c, PGRES_TUPLES_OK, NULL, "pid in second transaction");
	free(expect(c, PGRES_PIPELINE_SYNC, NULL, "sync 5"));
	pid2 = expect(c, PGRES_TUPLES_OK, NULL, "pid after sync in second transaction");
	free(expect(c, PGRES_COMMAND_OK, NULL, "commit"));
	free(expect(c, PGRES_PIPELINE_SYNC, NULL, "sync 6"));
	cr_assert_str_eq(pid1, pid2, "a transaction moved to another server at a Sync");
	free(pid1);
	free(pid2);
	cr_assert(PQexitPipelineMode(c), "%s", PQerrorMessage(c));
	cr_assert_eq(PQtransactionStatus(c), PQTRANS_IDLE);
	cr_assert_eq(harness_query_int(c, "select 6"), 6);
	PQfinish(c);
}

Test(pipeline, other_clients_share_the_server)
{
	/*
	 * One server, two pipelining clients: each pipeline ends at a Sync with
	 * the server idle, so the server must go back and forth between them.
	 */
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");

	for (int round = 0; round < 5; round++) {
		cr_assert(PQenterPipelineMode(a));
		cr_assert(PQenterPipelineMode(b));
		send_query(a, "select 'a'");
		send_query(b, "select 'b'");
		send_query(a, "select 'a2'");
		send_query(b, "select 'b2'");
		send_sync(a);
		send_sync(b);
		free(expect(a, PGRES_TUPLES_OK, "a", "a"));
		free(expect(a, PGRES_TUPLES_OK, "a2", "a2"));
		free(expect(a, PGRES_PIPELINE_SYNC, NULL, "a sync"));
		free(expect(b, PGRES_TUPLES_OK, "b", "b"));
		free(expect(b, PGRES_TUPLES_OK, "b2", "b2"));
		free(expect(b, PGRES_PIPELINE_SYNC, NULL, "b sync"));
		cr_assert(PQexitPipelineMode(a));
		cr_assert(PQexitPipelineMode(b));
	}
	PQfinish(a);
	PQfinish(b);
}

/*
 * After an error in an extended-protocol message, Postgres ignores every
 * message up to the next Sync: a Query or FunctionCall there too, which then
 * gets no reply at all.  Sluice expected a ReadyForQuery for such a Query, so
 * the server never looked done: the client kept it for good (no other
 * client got it), and when the client left, its reset waited for that reply
 * until server_reset_timeout closed the server.  A PREPARE skipped that way
 * was taken as prepared: the client's name stayed (a new PREPARE of it got
 * 42P05) and EXECUTE named sluice's statement in its error.  Found by
 * protofuzz.  Every transcript is what Postgres itself answers.
 */
Test(pipeline, a_query_behind_a_failed_extended_message_is_skipped)
{
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n"
	                                                "workers = 1\n"
	                                                "default_pool_size = 1\n"
	                                                "query_wait_timeout = 5s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	/* A Bind of a statement that does not exist: 26000, then skip to the Sync. */
	static const char bind_nope[] = "\0nope\0\0\0\0\0\0";
	static const char call[] = "\0\0\0\x01\0\0\0\0\0\0"; /* FunctionCall of oid 1 */
	long long pid = harness_query_int(c, "select pg_backend_pid()");
	unsigned char buf[512];
	PGconn *other;
	size_t n;

	n = 0;
	harness_put_msg(buf, &n, 'B', bind_nope, sizeof(bind_nope));
	harness_put_query(buf, &n, "select 1");
	harness_put_msg(buf, &n, 'F', call, sizeof(call));
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_put_query(buf, &n, "select 2");
	harness_expect_transcript(c, buf, n, 2, "E(26000) Z(I) T D(2) C(SELECT 1) Z(I) ",
	                          "Query skipped");

	n = 0;
	harness_put_msg(buf, &n, 'B', bind_nope, sizeof(bind_nope));
	harness_put_query(buf, &n, "prepare skipped as select 3");
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_expect_transcript(c, buf, n, 1, "E(26000) Z(I) ", "PREPARE skipped");
	/* Once that is known: the name was not made. */
	n = 0;
	harness_put_query(buf, &n, "prepare skipped as select 4");
	harness_put_query(buf, &n, "execute skipped");
	harness_expect_transcript(c, buf, n, 2, "C(PREPARE) Z(I) T D(4) C(SELECT 1) Z(I) ",
	                          "PREPARE after the skipped one");

	/* The one server is done with c's requests: another client gets it. */
	other = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(other, "select pg_backend_pid()"), pid);
	PQfinish(other);
	PQfinish(c);
}

/*
 * A client sends a Parse that fails and a Query behind it, then leaves
 * before the error comes back.  The reset saw a Query last, which ends in a
 * ReadyForQuery of its own, so it sent no Sync; the server, skipping to a
 * Sync after the error, then skipped the Query as well and waited, until
 * server_reset_timeout closed it.  Found by protofuzz.  One server: the next
 * client must get the same backend.
 */
Test(pipeline, client_leaves_before_an_extended_error_comes_back)
{
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n"
	                                                "workers = 1\n"
	                                                "default_pool_size = 1\n"
	                                                "server_reset_timeout = 2s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	static const char parse_bad[] = "\0selec 1\0\0"; /* a syntax error */
	long long pid = harness_query_int(c, "select pg_backend_pid()");

	for (int i = 0; i < 3; i++) {
		PGconn *leaving = harness_connect_ok(h, "app", "app-secret", "app");
		unsigned char buf[128];
		size_t n = 0;

		harness_put_msg(buf, &n, 'P', parse_bad, sizeof(parse_bad));
		harness_put_query(buf, &n, "select 1");
		harness_send_all(PQsocket(leaving), buf, n);
		PQfinish(leaving);
		cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), pid,
		             "round %d: the server was closed, not reset", i);
	}
	PQfinish(c);
}

/*
 * A Parse without a Sync, then a Query PREPARE of a text the server already
 * has, or a DEALLOCATE, which sluice answers itself: Postgres would run that
 * Query, which sends the Parse's reply and ends the batch.  Sluice sent the
 * server nothing, so the ParseComplete stayed in the backend and the client
 * waited for good; when it left, the reset ran into server_reset_timeout.
 * Found by protofuzz (seed 8000, workers = 1).
 */
Test(pipeline, a_prepare_sluice_answers_behind_an_unsynced_parse)
{
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n"
	                                                "workers = 1\n"
	                                                "default_pool_size = 1\n"
	                                                "server_reset_timeout = 2s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	static const char parse_s1[] = "s1\0select 5\0\0", parse_s2[] = "s2\0select 6\0\0",
	                  parse_bad[] = "s3\0selec 7\0\0";
	unsigned char buf[256];
	size_t n = 0;

	PQclear(harness_exec_ok(c, "prepare p1 as select 1"));
	harness_put_msg(buf, &n, 'P', parse_s1, sizeof(parse_s1));
	harness_put_query(buf, &n, "prepare p2 as select 1");
	harness_expect_transcript(c, buf, n, 1, "1 C(PREPARE) Z(I) ", "PREPARE behind a Parse");
	n = 0;
	harness_put_msg(buf, &n, 'P', parse_s2, sizeof(parse_s2));
	harness_put_query(buf, &n, "deallocate p2");
	harness_expect_transcript(c, buf, n, 1, "1 C(DEALLOCATE) Z(I) ",
	                          "DEALLOCATE behind a Parse");
	/* A Parse that fails: Postgres would skip the Query; the client gets the error first. */
	n = 0;
	harness_put_msg(buf, &n, 'P', parse_bad, sizeof(parse_bad));
	harness_put_query(buf, &n, "prepare p3 as select 1");
	harness_expect_transcript(c, buf, n, 1, "E(42601) C(PREPARE) Z(I) ",
	                          "PREPARE behind a failed Parse");
	/* The names work, and the one server is free for another client. */
	cr_assert_eq(harness_query_int(c, "execute p1"), 1);
	cr_assert_eq(harness_query_int(c, "execute p3"), 1);
	PQfinish(c);
	c = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(c, "select 7"), 7);
	PQfinish(c);
}

/*
 * A Close of a prepared statement behind a failed message of the same batch
 * is skipped by Postgres: the statement is still there after the Sync.
 * Sluice answers a Close of a tracked statement itself; it must not forget
 * the name either, or the client's next Bind of it got 26000.
 */
Test(pipeline, a_close_skipped_after_an_error_keeps_the_statement)
{
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n"
	                                                "workers = 1\n"
	                                                "default_pool_size = 1");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	/* Each body as sent: sizeof counts the literal's own NUL as the last byte. */
	static const char parse_bad[] = "\0select 1/0\0\0", bind_unnamed[] = "\0\0\0\0\0\0\0",
	                  execute[] = "\0\0\0\0", close_s1[] = "Ss1",
	                  bind_s1[] = "\0s1\0\0\0\0\0\0";
	unsigned char buf[256];
	size_t n = 0;
	PGresult *res = PQprepare(c, "s1", "select 41 + 1", 0, NULL);

	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	harness_put_msg(buf, &n, 'P', parse_bad, sizeof(parse_bad));
	harness_put_msg(buf, &n, 'B', bind_unnamed, sizeof(bind_unnamed));
	harness_put_msg(buf, &n, 'E', execute, sizeof(execute));
	harness_put_msg(buf, &n, 'C', close_s1, sizeof(close_s1));
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_expect_transcript(c, buf, n, 1, "1 E(22012) Z(I) ", "a Close behind an error");
	n = 0;
	harness_put_msg(buf, &n, 'B', bind_s1, sizeof(bind_s1));
	harness_put_msg(buf, &n, 'E', execute, sizeof(execute));
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_expect_transcript(c, buf, n, 1, "2 D(42) C(SELECT 1) Z(I) ",
	                          "the statement the skipped Close left");
	PQfinish(c);
}
