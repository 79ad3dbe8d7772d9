/*
 * Faults and limits: Postgres unreachable, slow or silent clients, too many
 * clients, idle timeouts, a server lost inside a transaction, a queued client
 * cancelled, protocol negotiation.
 * Every wait is on an observable condition (an error, a closed socket).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(failures, .fini = harness_teardown, .timeout = 120);

/* A TCP port nothing listens on: bind, never listen, keep it reserved. */
static int dead_port(int *holder)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);

	*holder = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(bind(*holder, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(getsockname(*holder, (struct sockaddr *)&sin, &len) == 0);
	return ntohs(sin.sin_port);
}

Test(failures, postgres_down_gives_fast_clear_error)
{
	int holder, port = dead_port(&holder);
	char ini[256], state[6];
	struct harness_sluice *h;

	snprintf(ini, sizeof(ini), "[databases]\ndown = host=127.0.0.1 port=%d dbname=app\n", port);
	h = harness_start_sluice(ini);
	for (int i = 0; i < 3; i++) {
		cr_assert(harness_connect_fails(h, "app", "app-secret", "down", state));
		cr_assert_str_eq(state, "08006");
	}
	cr_assert(harness_log_contains(h, "could not connect to server"));
	/* The other databases are unaffected. */
	PQfinish(harness_connect_ok(h, "app", "app-secret", "app"));
	close(holder);
}

static int raw_connect(struct harness_sluice *h)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons((uint16_t)h->port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0, "%s", strerror(errno));
	return fd;
}

/* Reads until EOF; returns the bytes seen. */
static size_t read_until_closed(int fd, char *buf, size_t cap)
{
	size_t len = 0;

	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t n;

		cr_assert(poll(&pfd, 1, 60000) == 1, "connection neither answered nor closed");
		n = recv(fd, buf + len, cap - len, 0);
		if (n <= 0)
			return len;
		len += (size_t)n;
		cr_assert(len < cap);
	}
}

static bool contains(const char *buf, size_t len, const char *needle)
{
	return memmem(buf, len, needle, strlen(needle)) != NULL;
}

Test(failures, silent_client_closed_after_login_timeout)
{
	struct harness_sluice *h = harness_start_sluice("client_login_timeout = 1s");
	int fd = raw_connect(h);
	char buf[4096];
	size_t len = read_until_closed(fd, buf, sizeof(buf));

	cr_assert(len > 0 && buf[0] == 'E', "expected an ErrorResponse before the close");
	cr_assert(contains(buf, len, "client_login_timeout"));
	close(fd);
	PQfinish(harness_connect_ok(h, "app", "app-secret", "app"));
}

Test(failures, max_client_conn)
{
	struct harness_sluice *h = harness_start_sluice("max_client_conn = 2");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	char state[6];

	cr_assert(harness_connect_fails(h, "app", "app-secret", "app", state));
	cr_assert_str_eq(state, "53300");
	PQfinish(a);
	/* A freed slot is usable again. */
	cr_assert(harness_wait_for(({
		                           PGconn *c =
		                               harness_connect(h, "app", "app-secret", "app");
		                           bool ok = PQstatus(c) == CONNECTION_OK;
		                           PQfinish(c);
		                           ok;
	                           }),
	                           20));
	PQfinish(b);
}

Test(failures, idle_transaction_timeout_rolls_back)
{
	struct harness_sluice *h = harness_start_sluice("idle_transaction_timeout = 1s\n"
	                                                "default_pool_size = 1");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b;
	PGresult *res;

	PQclear(harness_exec_ok(a, "begin"));
	PQclear(harness_exec_ok(a, "select pg_advisory_xact_lock(4242)"));
	/* The next statement fails: sluice closed the connection meanwhile. */
	cr_assert(harness_wait_for(PQstatus(a) == CONNECTION_BAD ||
	                               (PQconsumeInput(a), PQstatus(a) == CONNECTION_BAD),
	                           30),
	          "client was not closed");
	res = PQexec(a, "select 1");
	cr_assert_neq(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	cr_assert(harness_log_contains(h, "idle_transaction_timeout"));
	/* The lock went with the rollback; the one server serves the next client. */
	b = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(b, "select pg_try_advisory_xact_lock(4242)::int"), 1);
	PQfinish(a);
	PQfinish(b);
}

/* The SQLSTATE of each FATAL that libpq passed on as a notice, in order. */
struct fatal_notices {
	char states[4][6];
	int n;
};

static void keep_fatal_state(void *arg, const PGresult *res)
{
	struct fatal_notices *seen = arg;
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (severity != NULL && strcmp(severity, "FATAL") == 0 && seen->n < 4)
		snprintf(seen->states[seen->n++], sizeof(seen->states[0]), "%s",
		         state != NULL ? state : "");
}

/*
 * The server of a client inside a transaction is terminated while the client
 * sends nothing (between two statements): before the close the client must
 * be told why, with an SQLSTATE, Postgres' own 57P01 (forwarded) and sluice's
 * 08006.  No query runs, so libpq hands both to the notice receiver and fails
 * the next query on the close alone: the "perhaps the backend died while
 * processing" pgbench printed at the soak's kill -9 and failover
 * (bench/RESULTS.md, soak).
 */
Test(failures, server_lost_between_statements_is_announced_with_sqlstate)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app"), *super;
	struct fatal_notices seen = {0};
	long long pid;
	char sql[80];
	PGresult *res;

	PQsetNoticeReceiver(a, keep_fatal_state, &seen);
	PQclear(harness_exec_ok(a, "begin"));
	pid = harness_query_int(a, "select pg_backend_pid()");
	super = harness_pg_super(NULL);
	snprintf(sql, sizeof(sql), "select pg_terminate_backend(%lld)::int", pid);
	cr_assert_eq(harness_query_int(super, sql), 1);
	PQfinish(super);
	/* Reads, and parses what came (PQisBusy), until the close. */
	cr_assert(
	    harness_wait_for((PQconsumeInput(a), PQisBusy(a), PQstatus(a) == CONNECTION_BAD), 30),
	    "client was not closed");
	PQisBusy(a);
	cr_assert_eq(seen.n, 2, "%d FATAL notices", seen.n);
	cr_assert_str_eq(seen.states[0], "57P01");
	cr_assert_str_eq(seen.states[1], "08006");
	res = PQexec(a, "select 1");
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	PQclear(res);
	cr_assert(harness_log_contains(h, "FATAL 08006"));
	PQfinish(a);
}

Test(failures, client_idle_timeout)
{
	struct harness_sluice *h = harness_start_sluice("client_idle_timeout = 1s");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");

	cr_assert(harness_wait_for((PQconsumeInput(a), PQstatus(a) == CONNECTION_BAD), 30),
	          "idle client was not closed");
	cr_assert(harness_log_contains(h, "client_idle_timeout"));
	PQfinish(a);
}

Test(failures, cancel_of_queued_client)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *holder = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *queued = harness_connect_ok(h, "app", "app-secret", "app");
	PGcancel *cancel;
	PGresult *res;
	char err[256];

	PQclear(harness_exec_ok(holder, "begin"));
	PQclear(harness_exec_ok(holder, "select 1"));
	cr_assert(PQsendQuery(queued, "select 'never ran'"));
	cr_assert(harness_wait_for(harness_log_contains(h, "queued for a server"), 20));
	cancel = PQgetCancel(queued);
	cr_assert(PQcancel(cancel, err, sizeof(err)), "%s", err);
	PQfreeCancel(cancel);
	res = PQgetResult(queued);
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	cr_assert_str_eq(harness_sqlstate(res), "57014");
	PQclear(res);
	while ((res = PQgetResult(queued)) != NULL)
		PQclear(res);
	/* Still connected, and served once the server frees up. */
	PQclear(harness_exec_ok(holder, "commit"));
	cr_assert_eq(harness_query_int(queued, "select 7"), 7);
	PQfinish(holder);
	PQfinish(queued);
}

/*
 * StartupMessage 3.1 with an unknown _pq_ option: NegotiateProtocolVersion,
 * then auth.  Its version field is the whole version sluice speaks, 3.0
 * (0x00030000), as Postgres sends it: libpq 18 refuses anything below 3.0 as
 * a downgrade to the old protocol, and sluice sent 0.
 */
Test(failures, negotiate_protocol_version)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	static const char params[] = "user\0app\0database\0app\0_pq_.future\0x\0";
	unsigned char packet[64];
	uint32_t len = 8 + sizeof(params), v;
	char buf[512];
	int fd = raw_connect(h);
	ssize_t n;
	size_t got = 0;

	v = htonl(len);
	memcpy(packet, &v, 4);
	v = htonl((3u << 16) | 1u);
	memcpy(packet + 4, &v, 4);
	memcpy(packet + 8, params, sizeof(params));
	cr_assert_eq(send(fd, packet, len, 0), (ssize_t)len);
	/* 'v' (NegotiateProtocolVersion) then 'R' (the SCRAM request). */
	while (got < 2 || !contains(buf, got, "SCRAM-SHA-256")) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		cr_assert(poll(&pfd, 1, 20000) == 1);
		n = recv(fd, buf + got, sizeof(buf) - got, 0);
		cr_assert(n > 0);
		got += (size_t)n;
	}
	cr_assert_eq(buf[0], 'v');
	memcpy(&v, buf + 5, 4);
	cr_assert_eq(ntohl(v), 3u << 16, "NegotiateProtocolVersion offers %#x", ntohl(v));
	cr_assert(contains(buf, got, "_pq_.future"));
	close(fd);
}

/*
 * A Query sent in the same write as the StartupMessage (trust: nothing to
 * wait for between them) is answered after the login, as Postgres answers
 * it.  The pool knew its defaults, so the client became idle inside the
 * login's own read, and nothing read the Query that was already buffered:
 * it waited for the client's next bytes or client_idle_timeout.
 */
Test(failures, a_query_pipelined_behind_the_login_is_answered)
{
	struct harness_sluice *h = harness_start_sluice("auth_type = trust");
	static const char params[] = "user\0app\0database\0app\0";
	unsigned char packet[128];
	uint32_t len = 8 + sizeof(params), v;
	size_t n;
	char transcript[512];
	int fd;

	/* The pool learns its defaults first: the login below is answered at once. */
	PQfinish(harness_connect_ok(h, "app", NULL, "app"));
	v = htonl(len);
	memcpy(packet, &v, 4);
	v = htonl(3u << 16);
	memcpy(packet + 4, &v, 4);
	memcpy(packet + 8, params, sizeof(params));
	n = len;
	harness_put_query(packet, &n, "select 1");
	fd = raw_connect(h);
	harness_send_all(fd, packet, n);
	harness_transcript(fd, 2, transcript, sizeof(transcript));
	cr_assert(strstr(transcript, "Z(I) T D(1) C(SELECT 1) Z(I) ") != NULL, "replies: %s",
	          transcript);
	close(fd);
}

/* ---- a hostile server ---- */

/* Answers one connection: 'N' to an SSLRequest, then a header claiming a 2 GB message. */
static void *lying_server(void *arg)
{
	int listener = *(int *)arg, fd = accept(listener, NULL, NULL);
	uint8_t buf[1024];
	const uint8_t huge[] = {'R', 0x7f, 0xff, 0xff, 0xff};
	ssize_t n;

	if (fd < 0)
		return NULL;
	n = recv(fd, buf, sizeof(buf), 0);
	/* SSLRequest: 8 bytes, code 80877103. */
	if (n == 8 && buf[4] == 0x04 && buf[5] == 0xd2 && buf[6] == 0x16 && buf[7] == 0x2f) {
		(void)!write(fd, "N", 1);
		n = recv(fd, buf, sizeof(buf), 0);
	}
	if (n > 0)
		(void)!write(fd, huge, sizeof(huge));
	/* Hold the connection until sluice drops it. */
	while (recv(fd, buf, sizeof(buf), 0) > 0)
		;
	close(fd);
	return NULL;
}

Test(failures, server_claiming_a_huge_message_fails_the_login_at_once)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int listener = socket(AF_INET, SOCK_STREAM, 0);
	struct harness_sluice *h;
	char ini[256];
	pthread_t tid;
	PGconn *c;

	cr_assert(bind(listener, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(listen(listener, 4) == 0);
	cr_assert(getsockname(listener, (struct sockaddr *)&sin, &len) == 0);
	cr_assert_eq(pthread_create(&tid, NULL, lying_server, &listener), 0);
	/* A long connect timeout: the error must come from the length check, not from it. */
	snprintf(ini, sizeof(ini),
	         "server_connect_timeout = 120s\n[databases]\napp = host=127.0.0.1 port=%d "
	         "dbname=app\n",
	         ntohs(sin.sin_port));
	h = harness_start_sluice(ini);
	c = harness_connect(h, "app", "app-secret", "app");
	cr_assert_eq(PQstatus(c), CONNECTION_BAD);
	cr_assert(strstr(PQerrorMessage(c), "invalid message from server") != NULL, "%s",
	          PQerrorMessage(c));
	PQfinish(c);
	pthread_join(tid, NULL);
	close(listener);
	cr_assert(harness_sluice_alive(h));
}
