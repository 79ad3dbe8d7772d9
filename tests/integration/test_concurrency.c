/*
 * Many clients, few servers: 500 concurrent clients on a pool of 5 all get
 * their answers while Postgres never sees more than 5 backends of the user;
 * and a client that waits longer than query_wait_timeout gets an error but
 * keeps its connection.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

#define CLIENTS   500
#define POOL_SIZE 5

TestSuite(concurrency, .fini = harness_teardown, .timeout = 240);

enum slot_state { SLOT_CONNECTING, SLOT_QUERYING, SLOT_DONE };

struct slot {
	PGconn *conn; /* non-blocking libpq connection */
	enum slot_state state;
	PostgresPollingStatusType poll; /* SLOT_CONNECTING: what PQconnectPoll asked for */
	bool ok;                        /* got the right answer */
	char error[256];                /* why not, when !ok */
};

static void slot_fail(struct slot *s, const char *what, const char *msg)
{
	snprintf(s->error, sizeof(s->error), "%s: %s", what, msg);
	s->state = SLOT_DONE;
}

static void slot_start(struct slot *s, struct harness_sluice *h)
{
	char port[16];
	const char *keys[] = {"host", "port", "user", "password", "dbname", NULL};
	const char *values[] = {"127.0.0.1", port, "app", "app-secret", "app", NULL};

	snprintf(port, sizeof(port), "%d", h->port);
	s->conn = PQconnectStartParams(keys, values, 0);
	cr_assert(s->conn != NULL, "out of memory");
	s->state = SLOT_CONNECTING;
	s->poll = PGRES_POLLING_WRITING;
	if (PQstatus(s->conn) == CONNECTION_BAD)
		slot_fail(s, "connect", PQerrorMessage(s->conn));
}

/* Each client asks for its own number back, after a short sleep so they overlap. */
static void slot_step(struct slot *s, int index)
{
	PGresult *res;
	char param[16];
	const char *params[] = {param};

	if (s->state == SLOT_CONNECTING) {
		s->poll = PQconnectPoll(s->conn);
		if (s->poll == PGRES_POLLING_FAILED) {
			slot_fail(s, "connect", PQerrorMessage(s->conn));
		} else if (s->poll == PGRES_POLLING_OK) {
			snprintf(param, sizeof(param), "%d", index);
			PQsetnonblocking(s->conn, 1);
			if (!PQsendQueryParams(s->conn, "select $1::int from pg_sleep(0.02)", 1,
			                       NULL, params, NULL, NULL, 0))
				slot_fail(s, "send", PQerrorMessage(s->conn));
			else
				s->state = SLOT_QUERYING;
		}
		return;
	}
	if (PQflush(s->conn) < 0 || !PQconsumeInput(s->conn)) {
		slot_fail(s, "read", PQerrorMessage(s->conn));
		return;
	}
	while (!PQisBusy(s->conn)) {
		res = PQgetResult(s->conn);
		if (res == NULL) {
			s->state = SLOT_DONE;
			return;
		}
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			slot_fail(s, "query", PQresultErrorMessage(res));
		} else {
			snprintf(param, sizeof(param), "%d", index);
			s->ok = strcmp(PQgetvalue(res, 0, 0), param) == 0;
			if (!s->ok)
				slot_fail(s, "query", "wrong answer");
		}
		PQclear(res);
	}
}

static short slot_events(const struct slot *s)
{
	if (s->state == SLOT_CONNECTING)
		return s->poll == PGRES_POLLING_READING ? POLLIN : POLLOUT;
	return POLLIN;
}

Test(concurrency, clients_500_on_pool_of_5)
{
	struct harness_sluice *h;
	struct slot *slots = calloc(CLIENTS, sizeof(*slots));
	struct pollfd *fds = calloc(CLIENTS, sizeof(*fds));
	int *owner = calloc(CLIENTS, sizeof(*owner));
	double deadline, next_look = 0;
	long long most = 0, n;
	int done = 0, ok = 0;

	/* 500 client sockets here and 500 more in sluice, which inherits the limit. */
	harness_raise_nofile(4096);
	/*
	 * All 500 log in at once from 127.0.0.1, past the default connect_rate_per_ip
	 * burst (100): this tests pooling, not login floods, so the limit is off.
	 */
	h = harness_start_sluice("default_pool_size = 5\nmax_client_conn = 1000\n"
	                         "query_wait_timeout = 120s\nconnect_rate_per_ip = 0\n");
	for (int i = 0; i < CLIENTS; i++)
		slot_start(&slots[i], h);

	deadline = harness_now() + 180;
	while (done < CLIENTS && harness_now() < deadline) {
		int nfds = 0;

		for (int i = 0; i < CLIENTS; i++) {
			if (slots[i].state == SLOT_DONE)
				continue;
			fds[nfds] = (struct pollfd){.fd = PQsocket(slots[i].conn),
			                            .events = slot_events(&slots[i])};
			owner[nfds++] = i;
		}
		if (poll(fds, (nfds_t)nfds, 50) < 0)
			continue;
		for (int k = 0; k < nfds; k++)
			if (fds[k].revents != 0)
				slot_step(&slots[owner[k]], owner[k]);
		done = 0;
		for (int i = 0; i < CLIENTS; i++)
			done += slots[i].state == SLOT_DONE;
		/* Look at Postgres often while the clients run, not on every wakeup. */
		if (harness_now() >= next_look) {
			n = harness_count_backends("app", NULL);
			most = n > most ? n : most;
			next_look = harness_now() + 0.02;
		}
	}

	n = harness_count_backends("app", NULL);
	most = n > most ? n : most;
	for (int i = 0; i < CLIENTS; i++) {
		if (slots[i].ok)
			ok++;
		else if (ok == i)
			fprintf(stderr, "first failure, client %d: %s\n", i,
			        slots[i].error[0] != '\0' ? slots[i].error : "unfinished");
	}
	cr_assert_eq(done, CLIENTS, "%d of %d clients finished before the deadline", done, CLIENTS);
	cr_assert_eq(ok, CLIENTS, "%d of %d clients got their answer", ok, CLIENTS);
	cr_assert_leq(most, POOL_SIZE, "Postgres saw %lld backends of app, pool size is %d", most,
	              POOL_SIZE);
	cr_assert_gt(most, 0, "no backend of app was ever seen");
	for (int i = 0; i < CLIENTS; i++)
		PQfinish(slots[i].conn);
	free(slots);
	free(fds);
	free(owner);
}

Test(concurrency, query_wait_timeout)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1\n"
	                                                "query_wait_timeout = 1s");
	PGconn *holder = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *waiter = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res;

	PQclear(harness_exec_ok(holder, "begin"));
	cr_assert_eq(harness_query_int(holder, "select 1"), 1);
	/* The only server is in holder's transaction until holder commits. */
	res = PQexec(waiter, "select 2");
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "waiter got %s",
	             PQresStatus(PQresultStatus(res)));
	cr_assert(strncmp(harness_sqlstate(res), "53", 2) == 0,
	          "SQLSTATE %s is not in class 53 (insufficient resources): %s",
	          harness_sqlstate(res), PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_eq(PQstatus(waiter), CONNECTION_OK, "the waiting client was disconnected");
	PQclear(harness_exec_ok(holder, "commit"));
	cr_assert_eq(harness_query_int(waiter, "select 3"), 3);
	PQfinish(holder);
	PQfinish(waiter);
}

/* A client through sluice whose backends Postgres shows under application_name `name`. */
static PGconn *connect_named(struct harness_sluice *h, const char *name)
{
	char url[512], conninfo[600];
	PGconn *c;

	harness_url(h, "app", "app-secret", "app", url, sizeof(url));
	snprintf(conninfo, sizeof(conninfo), "%s%sapplication_name=%s", url,
	         strchr(url, '?') != NULL ? "&" : "?", name);
	c = PQconnectdb(conninfo);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	return c;
}

/*
 * Backends that served this test's clients: a server takes the
 * application_name of each client it serves, and no other test uses these
 * names, so tests running beside this one (meson test -j2) are not counted.
 */
static long long own_backends(PGconn *super)
{
	PGresult *res = PQexec(super, "select count(*) from pg_stat_activity "
	                              "where application_name like 'idle_unit_%'");
	long long n;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	n = atoll(PQgetvalue(res, 0, 0));
	PQclear(res);
	return n;
}

/*
 * Two workers, one pool unit between them, TLS server connections.  a
 * (worker 0) leaves the only server idle on its worker; b (worker 1, the next
 * accept) must still get a server, and gets that one: its TLS session moves
 * with the socket to b's worker (conn_detach, conn_attach), so one backend,
 * still encrypted, serves both all along with no new login.  Before TLS
 * servers moved, worker 0 closed its idle one and worker 1 reconnected, every
 * round.
 */
Test(concurrency, idle_tls_server_moves_to_another_worker)
{
	struct harness_sluice *h = harness_start_sluice("workers = 2\n"
	                                                "default_pool_size = 1\n"
	                                                "server_tls_sslmode = require\n"
	                                                "query_wait_timeout = 60s");
	PGconn *a = connect_named(h, "idle_unit_a");
	PGconn *b = connect_named(h, "idle_unit_b");
	PGconn *super = harness_pg_super(NULL);
	const char *sql = "select pg_backend_pid() * 2 + ssl::int from pg_stat_ssl "
	                  "where pid = pg_backend_pid()";
	long long first = harness_query_int(a, sql);

	cr_assert_eq(first % 2, 1, "the server connection is not TLS");
	for (int round = 0; round < 5; round++) {
		cr_assert_eq(harness_query_int(b, sql), first, "round %d: b got another backend",
		             round);
		cr_assert_eq(harness_query_int(a, sql), first, "round %d: a got another backend",
		             round);
	}
	cr_assert_eq(own_backends(super), 1, "%lld backends for one pool unit",
	             own_backends(super));
	cr_assert(harness_log_contains(h, "taken over from another worker"),
	          "a and b shared a worker: nothing moved");
	cr_assert(!harness_log_contains(h, "another worker's clients need the connection"),
	          "a TLS server was closed for the other worker rather than moved");
	PQfinish(a);
	PQfinish(b);
	PQfinish(super);
}
