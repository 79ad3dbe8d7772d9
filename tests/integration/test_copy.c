/*
 * COPY through sluice: 10 MB in and the same bytes out, CopyData messages of
 * very different sizes (sluice must stream them, not buffer them whole), and a
 * COPY that fails while the client is still sending (the late CopyData must
 * not confuse the pool).
 */
#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <criterion/criterion.h>

#include "harness.h"

#define COPY_BYTES (10 * 1024 * 1024)

TestSuite(copy, .fini = harness_teardown, .timeout = 180);

static uint64_t fnv1a(uint64_t hash, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		hash ^= (unsigned char)data[i];
		hash *= 0x100000001b3ULL;
	}
	return hash;
}

/* Lines "id\tpayload\n" with a deterministic payload, at least COPY_BYTES in all. */
static char *make_rows(size_t *len, int *rows)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	char *buf = malloc(COPY_BYTES + 4096);
	uint32_t seed = 12345;
	size_t n = 0;
	int id = 0;

	while (n < COPY_BYTES) {
		n += (size_t)sprintf(buf + n, "%d\t", ++id);
		for (int i = 0; i < 100; i++) {
			seed = seed * 1103515245u + 12345u;
			buf[n++] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		buf[n++] = '\n';
	}
	*len = n;
	*rows = id;
	return buf;
}

Test(copy, ten_megabytes_in_and_out)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	/* From tiny to larger than any socket buffer, cycled. */
	const size_t chunks[] = {100, 65536, 4 * 1024 * 1024, 8192, 1};
	size_t len, sent = 0, got = 0;
	int rows, k = 0, n;
	char *data = make_rows(&len, &rows), *buf, count[32];
	uint64_t want = fnv1a(0xcbf29ce484222325ULL, data, len), hash = 0xcbf29ce484222325ULL;
	PGresult *res;

	PQclear(harness_exec_ok(c, "drop table if exists copy_t; "
	                           "create table copy_t (id int primary key, payload text)"));
	res = PQexec(c, "copy copy_t from stdin");
	cr_assert_eq(PQresultStatus(res), PGRES_COPY_IN, "%s", PQerrorMessage(c));
	PQclear(res);
	while (sent < len) {
		size_t chunk = chunks[k++ % 5];

		if (chunk > len - sent)
			chunk = len - sent;
		cr_assert_eq(PQputCopyData(c, data + sent, (int)chunk), 1, "%s", PQerrorMessage(c));
		sent += chunk;
	}
	cr_assert_eq(PQputCopyEnd(c, NULL), 1, "%s", PQerrorMessage(c));
	res = PQgetResult(c);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	snprintf(count, sizeof(count), "%d", rows);
	cr_assert_str_eq(PQcmdTuples(res), count);
	PQclear(res);
	cr_assert_null(PQgetResult(c));
	cr_assert_eq(harness_query_int(c, "select count(*) from copy_t"), rows);

	res = PQexec(c, "copy (select id, payload from copy_t order by id) to stdout");
	cr_assert_eq(PQresultStatus(res), PGRES_COPY_OUT, "%s", PQerrorMessage(c));
	PQclear(res);
	while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
		hash = fnv1a(hash, buf, (size_t)n);
		got += (size_t)n;
		PQfreemem(buf);
	}
	cr_assert_eq(n, -1, "COPY OUT failed: %s", PQerrorMessage(c));
	res = PQgetResult(c);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_null(PQgetResult(c));
	cr_assert_eq(got, len, "COPY OUT gave %zu bytes, COPY IN sent %zu", got, len);
	cr_assert_eq(hash, want, "COPY OUT bytes differ from what COPY IN sent");

	PQclear(harness_exec_ok(c, "drop table copy_t"));
	PQfinish(c);
	free(data);
}

Test(copy, failure_while_client_still_sends)
{
	/* One server: if the failed COPY left it unusable, the next query shows it. */
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *other = harness_connect_ok(h, "app", "app-secret", "app");
	char line[64];
	PGresult *res;
	int i;

	PQclear(harness_exec_ok(c, "drop table if exists copy_bad; create table copy_bad (x int)"));
	res = PQexec(c, "copy copy_bad from stdin");
	cr_assert_eq(PQresultStatus(res), PGRES_COPY_IN, "%s", PQerrorMessage(c));
	PQclear(res);
	/*
	 * Line 10 is not an int: the server fails the COPY and ignores the rest,
	 * while libpq keeps sending until it notices the error.
	 */
	for (i = 1; i <= 500000; i++) {
		size_t n = (size_t)snprintf(line, sizeof(line), i == 10 ? "oops\n" : "%d\n", i);

		if (PQputCopyData(c, line, (int)n) != 1)
			break;
	}
	PQputCopyEnd(c, NULL);
	res = PQgetResult(c);
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "%s",
	             PQresStatus(PQresultStatus(res)));
	cr_assert_str_eq(harness_sqlstate(res), "22P02");
	PQclear(res);
	while ((res = PQgetResult(c)) != NULL)
		PQclear(res);

	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	cr_assert_eq(harness_query_int(other, "select count(*) from copy_bad"), 0);

	/* A COPY the client itself aborts with CopyFail. */
	res = PQexec(c, "copy copy_bad from stdin");
	cr_assert_eq(PQresultStatus(res), PGRES_COPY_IN, "%s", PQerrorMessage(c));
	PQclear(res);
	cr_assert_eq(PQputCopyData(c, "1\n2\n", 4), 1);
	cr_assert_eq(PQputCopyEnd(c, "client gave up"), 1);
	res = PQgetResult(c);
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	cr_assert_str_eq(harness_sqlstate(res), "57014");
	PQclear(res);
	while ((res = PQgetResult(c)) != NULL)
		PQclear(res);
	cr_assert_eq(harness_query_int(other, "select count(*) from copy_bad"), 0);
	cr_assert_eq(harness_query_int(c, "select 2"), 2);

	PQclear(harness_exec_ok(c, "drop table copy_bad"));
	PQfinish(c);
	PQfinish(other);
}

/* ---- COPY data pipelined behind the COPY, as the protocol allows ---- */

/*
 * A client may send its COPY data right behind the COPY, without waiting
 * for CopyInResponse: Postgres reads it in order, and ignores COPY messages
 * that arrive outside a COPY (a COPY that failed).  Every transcript here is
 * what Postgres itself answers.  Sluice dropped the data that arrived before
 * the server's CopyInResponse, as if it were late data after a failed COPY,
 * so Postgres waited in COPY mode and took the next Query as a protocol
 * violation: FATAL, and the connection gone.  Found by protofuzz.  One
 * server, so a server left waiting in COPY mode would show in the next
 * client's query.
 */
Test(copy, data_pipelined_behind_the_copy)
{
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n"
	                                                "workers = 1\n"
	                                                "default_pool_size = 1");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *other;
	unsigned char buf[1024];
	size_t n;

	PQclear(harness_exec_ok(c, "drop table if exists copy_pipe; "
	                           "create table copy_pipe (a int)"));
	n = 0;
	harness_put_query(buf, &n, "copy copy_pipe from stdin");
	harness_put_msg(buf, &n, 'd', "1\n", 2);
	harness_put_msg(buf, &n, 'd', "2\n", 2);
	harness_put_msg(buf, &n, 'c', "", 0);
	harness_put_query(buf, &n, "select count(*) from copy_pipe");
	harness_expect_transcript(c, buf, n, 2, "G C(COPY 2) Z(I) T D(2) C(SELECT 1) Z(I) ",
	                          "Query");

	/* The same in extended messages: the Sync after CopyDone counts. */
	n = 0;
	harness_put_msg(buf, &n, 'P', "\0copy copy_pipe from stdin\0\0", 29);
	harness_put_msg(buf, &n, 'B', "\0\0\0\0\0\0\0", 8);
	harness_put_msg(buf, &n, 'E', "\0\0\0\0", 5);
	harness_put_msg(buf, &n, 'd', "3\n", 2);
	harness_put_msg(buf, &n, 'c', "", 0);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_put_query(buf, &n, "select count(*) from copy_pipe");
	harness_expect_transcript(c, buf, n, 2, "1 2 G C(COPY 1) Z(I) T D(3) C(SELECT 1) Z(I) ",
	                          "Parse, Bind, Execute");

	/* A Sync in the middle of a COPY is ignored; the one after it is not. */
	n = 0;
	harness_put_query(buf, &n, "copy copy_pipe from stdin");
	harness_put_msg(buf, &n, 'd', "4\n", 2);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_put_msg(buf, &n, 'c', "", 0);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_put_query(buf, &n, "select count(*) from copy_pipe");
	harness_expect_transcript(c, buf, n, 3, "G C(COPY 1) Z(I) Z(I) T D(4) C(SELECT 1) Z(I) ",
	                          "a Sync inside the COPY");

	/* A COPY that fails: Postgres ignores the data behind it. */
	n = 0;
	harness_put_query(buf, &n, "copy no_such_table from stdin");
	harness_put_msg(buf, &n, 'd', "5\n", 2);
	harness_put_msg(buf, &n, 'c', "", 0);
	harness_put_query(buf, &n, "select 5");
	harness_expect_transcript(c, buf, n, 2, "E(42P01) Z(I) T D(5) C(SELECT 1) Z(I) ",
	                          "a failed COPY");

	/* Inside a transaction. */
	n = 0;
	harness_put_query(buf, &n, "begin");
	harness_put_query(buf, &n, "copy copy_pipe from stdin");
	harness_put_msg(buf, &n, 'd', "6\n", 2);
	harness_put_msg(buf, &n, 'c', "", 0);
	harness_put_query(buf, &n, "commit");
	harness_expect_transcript(c, buf, n, 3, "C(BEGIN) Z(T) G C(COPY 1) Z(T) C(COMMIT) Z(I) ",
	                          "in a transaction");

	/* The one server is free and clean for the next client. */
	other = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(other, "select count(*) from copy_pipe"), 5);
	cr_assert_eq(harness_query_int(other, "select (now() = statement_timestamp())::int"), 1,
	             "the server was left in a transaction");
	PQclear(harness_exec_ok(other, "drop table copy_pipe"));
	PQfinish(other);
	PQfinish(c);
}

/* Reads one message, which must be a CopyInResponse, and nothing after it. */
static void read_copy_in_response(int fd)
{
	unsigned char in[64];
	size_t got = 0;
	uint32_t len;

	while (got < 5) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t k;

		cr_assert(poll(&pfd, 1, 20000) == 1, "no CopyInResponse");
		k = recv(fd, in + got, 5 - got, 0);
		cr_assert(k > 0, "closed");
		got += (size_t)k;
	}
	cr_assert_eq(in[0], 'G');
	memcpy(&len, in + 1, sizeof(len)); /* in + 1 is not aligned for a uint32_t */
	got = ntohl(len) - 4;
	cr_assert(got < sizeof(in) && recv(fd, in, got, MSG_WAITALL) == (ssize_t)got);
}

/*
 * A client sends COPY FROM STDIN and leaves before the CopyInResponse comes
 * back.  The reset began before the server was known to be in COPY mode, so
 * it sent no CopyFail; the server then waited for COPY data that never came
 * and the reset ran into server_reset_timeout, which closed it (a cancel
 * does not end a COPY that waits for data).  Found by protofuzz.  One
 * server: the next client must get the same backend, reset, not a new one.
 */
Test(copy, client_leaves_before_the_copy_starts)
{
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n"
	                                                "workers = 1\n"
	                                                "default_pool_size = 1\n"
	                                                "server_reset_timeout = 2s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid = harness_query_int(c, "select pg_backend_pid()");

	PQclear(
	    harness_exec_ok(c, "drop table if exists copy_left; create table copy_left (a int)"));
	for (int i = 0; i < 3; i++) {
		PGconn *leaving = harness_connect_ok(h, "app", "app-secret", "app");
		unsigned char buf[64];
		size_t n = 0;

		harness_put_query(buf, &n, "copy copy_left from stdin");
		harness_send_all(PQsocket(leaving), buf, n);
		PQfinish(leaving);
		cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), pid,
		             "round %d: the server was closed, not reset", i);
	}
	PQclear(harness_exec_ok(c, "drop table copy_left"));
	PQfinish(c);
}

/*
 * The client's CopyDone went ahead of the CopyInResponse, and the client
 * sends a Sync once it sees the CopyInResponse, while the COPY still runs
 * (a trigger makes its row take 0.3 s).  The Sync comes after the COPY's end,
 * so Postgres answers it; sluice took it for a Sync inside the COPY, which
 * Postgres ignores, and queued nothing for it, so the replies after it were
 * counted one off and the Query behind it lost its answer.  Now a COPY whose
 * end went ahead is not taken for one still open.  One server, one worker.
 */
Test(copy, a_sync_after_a_copy_end_sent_ahead_is_answered)
{
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n"
	                                                "workers = 1\n"
	                                                "default_pool_size = 1");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	unsigned char buf[256];
	size_t n = 0;
	char replies[256];

	PQclear(harness_exec_ok(c, "drop table if exists copy_slow; "
	                           "create table copy_slow (a int); "
	                           "create or replace function copy_slow_row() returns trigger "
	                           "language plpgsql as $$ begin perform pg_sleep(0.3); "
	                           "return new; end $$; "
	                           "create trigger copy_slow before insert on copy_slow "
	                           "for each row execute function copy_slow_row()"));
	harness_put_query(buf, &n, "copy copy_slow from stdin");
	harness_put_msg(buf, &n, 'd', "1\n", 2);
	harness_put_msg(buf, &n, 'c', "", 0);
	harness_send_all(PQsocket(c), buf, n);
	/* The CopyInResponse, alone: the row's trigger holds the rest back. */
	read_copy_in_response(PQsocket(c));
	n = 0;
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_put_query(buf, &n, "select count(*) from copy_slow");
	harness_send_all(PQsocket(c), buf, n);
	harness_transcript(PQsocket(c), 3, replies, sizeof(replies));
	cr_assert_str_eq(replies, "C(COPY 1) Z(I) Z(I) T D(1) C(SELECT 1) Z(I) ");
	PQclear(harness_exec_ok(c, "drop table copy_slow; drop function copy_slow_row()"));
	PQfinish(c);
}

/*
 * c sends `buf` (a COPY burst, to which a query of its own is added) while
 * the holder keeps the pool's one server in a transaction, so the burst and
 * then the victim's query queue; the holder commits.  c's replies up to its
 * `ready`th ReadyForQuery must be `want`, and the victim gets its own row.
 */
static void burst_beside_a_victim(PGconn *c, PGconn *holder, PGconn *victim, unsigned char *buf,
                                  size_t n, int ready, const char *want)
{
	char replies[256];
	PGresult *res;

	harness_put_query(buf, &n, "select pg_sleep(0.2)::text || 'not yours'");
	harness_send_all(PQsocket(c), buf, n);
	cr_assert(PQsendQuery(victim, "select 'mine'"), "%s", PQerrorMessage(victim));
	PQclear(harness_exec_ok(holder, "commit"));
	harness_transcript(PQsocket(c), ready, replies, sizeof(replies));
	cr_assert_str_eq(replies, want);
	res = PQgetResult(victim);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "mine", "the victim got another client's row");
	PQclear(res);
	cr_assert_null(PQgetResult(victim));
}

/*
 * A Sync inside COPY data, and the COPY fails on that data.  Postgres
 * ignores a Sync in COPY mode, but leaves COPY mode at the failing row and
 * answers a Sync behind it; sluice took the Sync as ignored, counted one
 * reply too few, and gave the server up while replies were still coming:
 * the next client of the server got them.  Here the victim, queued behind,
 * got the attacker's row as the result of its own query.  Found by
 * protofuzz (statement mode: sluice's own read-back of the settings got the
 * client's last reply).  Which Syncs the server answers cannot be known, so
 * sluice passes the COPY's error and closes both connections (08P01); a Sync
 * inside data whose COPY succeeds is still ignored
 * (copy::data_pipelined_behind_the_copy).  Sent in one burst, ahead of the
 * CopyInResponse, and again after it.
 */
Test(copy, a_sync_inside_copy_data_that_fails_closes_the_connection)
{
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n"
	                                                "workers = 1\n"
	                                                "default_pool_size = 1");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *holder = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *victim = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *next;
	unsigned char buf[256];
	size_t n = 0;
	char replies[256];

	PQclear(harness_exec_ok(c, "drop table if exists copy_sync; "
	                           "create table copy_sync (a int)"));
	/* The holder keeps the one server while c's burst and then the victim queue. */
	PQclear(harness_exec_ok(holder, "begin"));
	harness_put_query(buf, &n, "copy copy_sync from stdin");
	harness_put_msg(buf, &n, 'd', "x\n", 2);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_put_msg(buf, &n, 'c', "", 0);
	burst_beside_a_victim(c, holder, victim, buf, n, 1, "G E(22P02) E(08P01) CLOSED");
	PQfinish(c);

	c = harness_connect_ok(h, "app", "app-secret", "app");
	next = harness_connect_ok(h, "app", "app-secret", "app");
	n = 0;
	harness_put_query(buf, &n, "copy copy_sync from stdin");
	harness_send_all(PQsocket(c), buf, n);
	/* Sluice knows the server is in COPY mode once it has passed this on. */
	read_copy_in_response(PQsocket(c));
	n = 0;
	harness_put_msg(buf, &n, 'd', "1\n", 2);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_put_msg(buf, &n, 'd', "y\n", 2);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_put_msg(buf, &n, 'c', "", 0);
	harness_put_query(buf, &n, "select 'not yours'");
	harness_send_all(PQsocket(c), buf, n);
	harness_transcript(PQsocket(c), 1, replies, sizeof(replies));
	cr_assert_str_eq(replies, "E(22P02) E(08P01) CLOSED", "after the CopyInResponse");
	cr_assert_eq(harness_query_int(next, "select 42"), 42);
	PQclear(harness_exec_ok(next, "drop table copy_sync"));
	PQfinish(c);
	PQfinish(next);
	PQfinish(holder);
	PQfinish(victim);
}

/*
 * The same with a first COPY in the same burst ahead of the failing one:
 * the first COPY's CopyInResponse dropped the markers of COPY data queued
 * behind its own end, the second COPY's included, so the Sync inside the
 * second COPY's data was not known to be unsure, and the victim got the
 * attacker's row again.
 */
Test(copy, a_sync_inside_the_data_of_a_second_copy_that_fails_closes_the_connection)
{
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n"
	                                                "workers = 1\n"
	                                                "default_pool_size = 1");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *holder = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *victim = harness_connect_ok(h, "app", "app-secret", "app");
	unsigned char buf[256];
	size_t n = 0;

	PQclear(harness_exec_ok(c, "drop table if exists copy_sync2; "
	                           "create table copy_sync2 (a int)"));
	PQclear(harness_exec_ok(holder, "begin"));
	harness_put_query(buf, &n, "copy copy_sync2 from stdin");
	harness_put_msg(buf, &n, 'c', "", 0);
	harness_put_query(buf, &n, "copy copy_sync2 from stdin");
	harness_put_msg(buf, &n, 'd', "x\n", 2);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_put_msg(buf, &n, 'c', "", 0);
	burst_beside_a_victim(c, holder, victim, buf, n, 2,
	                      "G C(COPY 0) Z(I) G E(22P02) E(08P01) CLOSED");
	PQfinish(c);
	c = harness_connect_ok(h, "app", "app-secret", "app");
	PQclear(harness_exec_ok(c, "drop table copy_sync2"));
	PQfinish(c);
	PQfinish(holder);
	PQfinish(victim);
}
