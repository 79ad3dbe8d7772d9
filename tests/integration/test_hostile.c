/*
 * What an authenticated but hostile client may not do: hold a server by
 * sending half a message, or get a message to Postgres that it would drop
 * the connection for.  The clients log in with libpq and then write raw
 * bytes on its socket.
 */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(hostile, .fini = harness_teardown, .timeout = 120);

/* Raw bytes on libpq's socket: plain even when SLUICE_TEST_CLIENT_TLS runs the suite over TLS. */
#define PLAIN "client_tls_sslmode = disable\n"

/* A logged-in client that then sends `len` bytes of a 'Q' whose length field says `claimed`. */
static PGconn *send_partial_query(struct harness_sluice *h, uint32_t claimed, size_t len)
{
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	unsigned char *msg = calloc(1, len);

	cr_assert(len >= 5 && msg != NULL);
	msg[0] = 'Q';
	harness_put_u32(msg + 1, claimed);
	memset(msg + 5, 'x', len - 5);
	harness_send_all(PQsocket(c), msg, len);
	free(msg);
	return c;
}

/*
 * Two clients send 9 bytes of a 100-byte Query and stop.  With a pool of 2,
 * had they been given servers, a third client would wait and get 53300 after
 * query_wait_timeout; it is served, because a small message gets a server
 * only once it is whole.
 */
Test(hostile, half_a_small_message_holds_no_server)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 2\n"
	                                                "query_wait_timeout = 2s\n"
	                                                "client_read_timeout = 0");
	PGconn *stalled[2];
	PGconn *c;
	PGresult *res;

	for (int i = 0; i < 2; i++)
		stalled[i] = send_partial_query(h, 100, 5 + 9);
	for (int i = 0; i < 3; i++) {
		c = harness_connect_ok(h, "app", "app-secret", "app");
		res = PQexec(c, "select 1");
		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "client %d: %s", i,
		             PQresultErrorMessage(res));
		PQclear(res);
		PQfinish(c);
	}
	/* The stalled clients are still there, only without servers. */
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(PQstatus(stalled[i]), CONNECTION_OK);
		PQfinish(stalled[i]);
	}
}

/*
 * A message too large to wait for whole streams to a server; the client then
 * goes silent.  client_read_timeout closes it with 08P01, and the pool of one
 * serves the client queued behind it (query_wait_timeout is far longer).
 */
Test(hostile, stalled_large_message_gives_the_server_back)
{
	struct harness_sluice *h = harness_start_sluice(PLAIN "default_pool_size = 1\n"
	                                                      "query_wait_timeout = 60s\n"
	                                                      "client_read_timeout = 1s");
	PGconn *stalled = send_partial_query(h, 200000, 5 + 70000);
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	char state[6];

	cr_assert_eq(harness_query_int(c, "select 7"), 7);
	harness_expect_error_and_close(dup(PQsocket(stalled)), state);
	cr_assert_str_eq(state, "08P01");
	cr_assert(harness_log_contains(h, "client_read_timeout expired"));
	PQfinish(stalled);
	PQfinish(c);
}

/*
 * The other direction: a client that asks for 64 MB of results and reads
 * none of them.  Sluice stops reading the server once the client's output is
 * full; client_write_timeout then closes the client and gives the server
 * back, so the client queued behind it on a pool of one is served by the
 * same backend (the statement cancelled or drained, the server reset, not
 * closed).
 */
Test(hostile, client_that_reads_no_results_gives_the_server_back)
{
	/* libpq alone: over TLS too where SLUICE_TEST_CLIENT_TLS asks for it. */
	struct harness_sluice *h = harness_start_sluice("workers = 1\n"
	                                                "default_pool_size = 1\n"
	                                                "query_wait_timeout = 60s\n"
	                                                "client_write_timeout = 1s");
	PGconn *stalled = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid = harness_query_int(stalled, "select pg_backend_pid()");
	PGresult *res, *last = NULL;

	cr_assert(PQsendQuery(stalled, "select repeat('x', 1000) as unread_rows "
	                               "from generate_series(1, 65536)"),
	          "%s", PQerrorMessage(stalled));
	/* It holds the server (active until all is sent) before the other one asks. */
	cr_assert(harness_wait_for(harness_count_active_queries("app", "unread_rows") == 1, 30));
	cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), pid,
	             "the server was closed, not given back");
	cr_assert(harness_log_contains(h, "client_write_timeout (1s): read none of its results"));
	/* What it had been sent, then the end of the connection. */
	while ((res = PQgetResult(stalled)) != NULL) {
		PQclear(last);
		last = res;
	}
	cr_assert(last != NULL && PQresultStatus(last) == PGRES_FATAL_ERROR,
	          "the unread results ended with %s",
	          last != NULL ? PQresStatus(PQresultStatus(last)) : "nothing");
	cr_assert_eq(PQstatus(stalled), CONNECTION_BAD);
	PQclear(last);
	PQfinish(stalled);
	PQfinish(c);
}

/*
 * A Query header claiming 1 GB, Postgres' own limit passed (it drops the
 * connection past 1 GB - 2 bytes) though max_packet_size allows it: the
 * client gets 54000 at once and is closed, and its server stays in the pool.
 */
Test(hostile, gigabyte_message_is_refused_and_no_server_is_lost)
{
	/*
	 * One worker: the next client must get this backend back, and with one
	 * worker nothing but the pool decides which (test_workers.c covers servers
	 * handed between workers).
	 */
	struct harness_sluice *h = harness_start_sluice(PLAIN "workers = 1\n"
	                                                      "default_pool_size = 1\n"
	                                                      "max_packet_size = 1GB");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid;
	PGconn *big;
	PGresult *res;
	char state[6];

	/* Inside a transaction, so the client holds the server when the header comes. */
	big = harness_connect_ok(h, "app", "app-secret", "app");
	PQclear(harness_exec_ok(big, "begin"));
	pid = harness_query_int(big, "select pg_backend_pid()");
	{
		unsigned char hdr[5] = {'Q'};

		harness_put_u32(hdr + 1, 1u << 30);
		harness_send_all(PQsocket(big), hdr, sizeof(hdr));
	}
	harness_expect_error_and_close(dup(PQsocket(big)), state);
	cr_assert_str_eq(state, "54000");
	PQfinish(big);
	/* The same backend serves the next client: rolled back, not closed. */
	res = PQexec(c, "select pg_backend_pid()");
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	cr_assert_eq(atoll(PQgetvalue(res, 0, 0)), pid, "the server was lost");
	PQclear(res);
	PQfinish(c);
}

/*
 * Inside a transaction (idle_transaction_timeout off), a client pipelines a
 * query and then 3 bytes of the next header.  The query's ReadyForQuery
 * comes while that header is incomplete: the client is not idle, so it must
 * not trade its read watch for the (switched off) idle timer; silent, it is
 * closed with 08P01 and the pool of one serves the next client.
 */
Test(hostile, stall_after_a_pipelined_query_is_still_watched)
{
	struct harness_sluice *h = harness_start_sluice(PLAIN "default_pool_size = 1\n"
	                                                      "query_wait_timeout = 60s\n"
	                                                      "idle_transaction_timeout = 0\n"
	                                                      "client_read_timeout = 1s");
	PGconn *stalled = harness_connect_ok(h, "app", "app-secret", "app");
	const char sql[] = "select pg_sleep(0.2)";
	unsigned char msg[5 + sizeof(sql) + 3] = {'Q'};
	unsigned char reply[65536];
	PGconn *c;
	size_t len;
	int fd;

	PQclear(harness_exec_ok(stalled, "begin"));
	harness_put_u32(msg + 1, 4 + sizeof(sql));
	memcpy(msg + 5, sql, sizeof(sql));
	msg[5 + sizeof(sql)] = 'Q'; /* then two bytes of the next length */
	harness_send_all(PQsocket(stalled), msg, sizeof(msg));
	c = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(c, "select 9"), 9);
	fd = dup(PQsocket(stalled));
	len = harness_read_to_close(fd, reply, sizeof(reply));
	close(fd);
	cr_assert(memmem(reply, len, "C08P01", 6) != NULL,
	          "no 08P01 in the %zu bytes before the close", len);
	PQfinish(stalled);
	PQfinish(c);
}

/*
 * A Flush with a body.  Postgres answers it with an ERROR and then skips to
 * the next Sync, but a Flush has no reply and nothing is queued for it, so
 * sluice took the error for the next request's and counted every reply after
 * it one off: the server never looked done, its client kept it, and when the
 * client left its reset waited for a reply that never came, until
 * server_reset_timeout closed it.  Found by protofuzz.  Refused now like a
 * malformed Bind: 08P01, and the one server serves the next client.
 */
Test(hostile, flush_with_a_body_is_refused)
{
	struct harness_sluice *h = harness_start_sluice(PLAIN "workers = 1\n"
	                                                      "default_pool_size = 1\n"
	                                                      "server_reset_timeout = 2s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *bad = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid = harness_query_int(c, "select pg_backend_pid()");
	unsigned char buf[128];
	size_t n = 0;
	char state[6];

	/* In a transaction, so that bad holds the server when the Flush comes. */
	PQclear(harness_exec_ok(bad, "begin"));
	harness_put_msg(buf, &n, 'H', "abc", 3);
	harness_put_query(buf, &n, "select 1");
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_send_all(PQsocket(bad), buf, n);
	harness_expect_error_and_close(dup(PQsocket(bad)), state);
	cr_assert_str_eq(state, "08P01");
	PQfinish(bad);
	cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), pid,
	             "the server was closed, not reset");
	PQfinish(c);
}

/*
 * A Parse whose statement name does not end within the message.  prepared.c
 * reported it handled without consuming it, so the relay read it again and
 * again: the worker's loop spun at 100 % CPU, every client on that worker
 * hung and sluice no longer exited on SIGINT.  Found by protofuzz (random
 * bytes in a Parse).  Refused now as another malformed Parse is: 08P01, and
 * the worker serves the next client.
 */
Test(hostile, parse_with_an_unterminated_name_is_refused)
{
	struct harness_sluice *h = harness_start_sluice(PLAIN "workers = 1");
	PGconn *bad = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *c;
	unsigned char buf[128];
	size_t n = 0;
	char state[6];

	harness_put_msg(buf, &n, 'P', "s1_without_its_nul", 18);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_send_all(PQsocket(bad), buf, n);
	harness_expect_error_and_close(dup(PQsocket(bad)), state);
	cr_assert_str_eq(state, "08P01");
	PQfinish(bad);
	c = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(c, "select 5"), 5);
	PQfinish(c);
}

/*
 * A message of a type no frontend sends (here 'A') then Terminate.  Sluice
 * passed the message on and queued nothing for it (it has no reply), so when
 * the client left at once the server looked clean and went straight to the
 * next client in the queue; Postgres then read the message, answered FATAL
 * ("invalid frontend message type 65") and closed, and that other client
 * got the error and lost its connection.  Found by protofuzz.  Refused now
 * by sluice, as Postgres refuses it: 08P01, with no server involved.  One
 * server, held in a transaction while the other two queue for it.
 */
Test(hostile, unknown_message_type_is_refused_before_any_server)
{
	struct harness_sluice *h = harness_start_sluice(PLAIN "workers = 1\n"
	                                                      "default_pool_size = 1");
	PGconn *holder = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *bad = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *victim = harness_connect_ok(h, "app", "app-secret", "app");
	unsigned char buf[64];
	size_t n = 0;
	PGresult *res;
	char state[6];

	PQclear(harness_exec_ok(holder, "begin"));
	harness_put_msg(buf, &n, 'A', "\0\0\0\1", 4);
	harness_put_msg(buf, &n, 'X', "", 0);
	harness_send_all(PQsocket(bad), buf, n);
	cr_assert(PQsendQuery(victim, "select 11"), "%s", PQerrorMessage(victim));
	PQclear(harness_exec_ok(holder, "commit"));
	res = PQgetResult(victim);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "the victim got: %s",
	             PQresultErrorMessage(res));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "11");
	PQclear(res);
	while ((res = PQgetResult(victim)) != NULL)
		PQclear(res);
	harness_expect_error_and_close(dup(PQsocket(bad)), state);
	cr_assert_str_eq(state, "08P01");
	PQfinish(bad);
	PQfinish(victim);
	PQfinish(holder);
}

/* An Execute of the unnamed portal, max_rows 0. */
static void put_execute_unnamed(unsigned char *buf, size_t *n, uint32_t max_rows)
{
	unsigned char body[5] = {0};

	harness_put_u32(body + 1, max_rows);
	harness_put_msg(buf, n, 'E', body, sizeof(body));
}

/* A Bind of the unnamed statement to the unnamed portal, no parameters, text results. */
static void put_bind_unnamed(unsigned char *buf, size_t *n)
{
	harness_put_msg(buf, n, 'B', "\0\0\0\0\0\0\0\0", 8);
}

/*
 * A simple Query that fails in a transaction block leaves its portal behind
 * (the unnamed one) with its query text freed, and Postgres 15.18 crashes on
 * an Execute of it: the whole cluster restarts, every tenant's connections
 * with it.  Found by protofuzz.  Sluice sends an Execute of the unnamed
 * portal with no Bind of it since the last Sync or Query under a portal name
 * that does not exist, so Postgres answers 34000 (without the guard it says
 * 25P02, or crashes), and the same backend goes on serving.  A Bind that
 * fails in the aborted block leaves the portal too; the Sync after it ends
 * what that Bind covers.
 */
Test(hostile, execute_of_the_portal_a_failed_query_left_is_refused)
{
	struct harness_sluice *h = harness_start_sluice(PLAIN "workers = 1\n"
	                                                      "default_pool_size = 1");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid = harness_query_int(c, "select pg_backend_pid()");
	unsigned char buf[256];
	size_t n = 0;

	harness_put_query(buf, &n, "begin");
	harness_put_query(buf, &n, "execute sluice_no_such_statement");
	harness_put_query(buf, &n, "select pg_notify('sluice_guard', 'x')");
	put_execute_unnamed(buf, &n, 0);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_expect_transcript(c, buf, n, 4,
	                          "C(BEGIN) Z(T) E(26000) Z(E) E(25P02) Z(E) E(34000) Z(E) ",
	                          "an Execute behind the failed Queries");
	n = 0;
	harness_put_msg(buf, &n, 'P', "\0select 1\0\0\0", 12);
	put_bind_unnamed(buf, &n);
	harness_put_msg(buf, &n, 'S', "", 0);
	put_execute_unnamed(buf, &n, 0);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_expect_transcript(c, buf, n, 2, "E(25P02) Z(E) E(34000) Z(E) ",
	                          "an Execute after a Bind that failed and its Sync");
	n = 0;
	harness_put_query(buf, &n, "rollback");
	harness_expect_transcript(c, buf, n, 1, "C(ROLLBACK) Z(I) ", "the rollback");
	cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), pid,
	             "the server connection was lost");
	PQfinish(c);
}

/*
 * What the guard above lets through: an unnamed portal bound earlier in the
 * batch, run in parts (max_rows) with a Flush between, as the protocol
 * allows.  What it refuses, pinned here: going on with that portal after the
 * Sync, in the same transaction block; drivers use named portals for that.
 */
Test(hostile, an_unnamed_portal_runs_in_parts_within_its_batch)
{
	struct harness_sluice *h = harness_start_sluice(PLAIN "workers = 1");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	static const char parse[] = "\0select generate_series(1, 3)\0\0";
	unsigned char buf[256];
	size_t n = 0;

	harness_put_query(buf, &n, "begin");
	harness_put_msg(buf, &n, 'P', parse, sizeof(parse));
	put_bind_unnamed(buf, &n);
	put_execute_unnamed(buf, &n, 2);
	harness_put_msg(buf, &n, 'H', "", 0);
	put_execute_unnamed(buf, &n, 0);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_expect_transcript(c, buf, n, 2,
	                          "C(BEGIN) Z(T) 1 2 D(1) D(2) s D(3) C(SELECT 1) Z(T) ",
	                          "a portal run in two parts");
	n = 0;
	harness_put_msg(buf, &n, 'P', parse, sizeof(parse));
	put_bind_unnamed(buf, &n);
	put_execute_unnamed(buf, &n, 1);
	harness_put_msg(buf, &n, 'S', "", 0);
	put_execute_unnamed(buf, &n, 0);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_expect_transcript(c, buf, n, 2, "1 2 D(1) s Z(T) E(34000) Z(E) ",
	                          "the same portal after its Sync");
	n = 0;
	harness_put_query(buf, &n, "rollback");
	harness_expect_transcript(c, buf, n, 1, "C(ROLLBACK) Z(I) ", "the rollback");
	PQfinish(c);
}
