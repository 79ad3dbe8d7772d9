/*
 * Idle servers move between workers (docs/architecture.md, "Balance across
 * workers"): a worker whose pool has no server while the shared pool_size is
 * held by servers of other workers gets one of theirs, the same Postgres
 * backend, with no new login.  Clients are spread over the workers round-robin
 * in the order they are accepted, so consecutive connections land on
 * different workers.  Server connections are plain here unless a test says
 * otherwise; test_concurrency.c moves a TLS one.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(workers, .fini = harness_teardown, .timeout = 240);

#define CLIENTS 8
#define ROUNDS  200
#define WAIT_S  60.0

#define MOVE_INI                                                                                   \
	"workers = 4\n"                                                                            \
	"default_pool_size = 2\n"                                                                  \
	"query_wait_timeout = 120s\n"

/* Backend pids seen, as a small set. */
struct pids {
	long long seen[64];
	int n;
};

static void pids_add(struct pids *set, long long pid)
{
	for (int i = 0; i < set->n; i++)
		if (set->seen[i] == pid)
			return;
	cr_assert_lt(set->n, 64, "more than 64 backend pids");
	set->seen[set->n++] = pid;
}

/* Waits for the one result of `conn` (non-blocking mode) and checks it: pid, echoed value. */
static void collect(PGconn *conn, struct pids *set, int want, int client, int round)
{
	PGresult *res, *last = NULL;

	while ((res = PQgetResult(conn)) != NULL) {
		if (last != NULL)
			PQclear(last);
		last = res;
	}
	cr_assert(last != NULL, "client %d round %d: no result", client, round);
	cr_assert_eq(PQresultStatus(last), PGRES_TUPLES_OK, "client %d round %d: %s", client, round,
	             PQresultErrorMessage(last));
	pids_add(set, atoll(PQgetvalue(last, 0, 0)));
	cr_assert_eq(atoi(PQgetvalue(last, 0, 1)), want, "client %d round %d: wrong answer", client,
	             round);
	PQclear(last);
}

/* Column `name` of a console SHOW, summed over its rows; `nrows` gets their number. */
static long long show_sum(PGconn *admin, const char *show, const char *name, int *nrows)
{
	PGresult *res = PQexec(admin, show);
	int col = PQfnumber(res, name);
	long long sum = 0;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", show,
	             PQresultErrorMessage(res));
	cr_assert_geq(col, 0, "%s has no %s", show, name);
	for (int i = 0; i < PQntuples(res); i++)
		sum += atoll(PQgetvalue(res, i, col));
	if (nrows != NULL)
		*nrows = PQntuples(res);
	PQclear(res);
	return sum;
}

/*
 * 8 clients on 4 workers, a pool of 2: every round all 8 send at once, so the
 * workers without a server keep asking for one.  Each client runs its own
 * prepared statement (another text per client): a server that comes from
 * another worker brings that worker's statements under their names, and each
 * client must still run its own, never one prepared for another.  SHOW
 * WORKERS has a row per worker and counts the servers handed over; none was
 * closed for another worker.
 */
static void servers_move(const char *sslmode)
{
	char ini[256];
	struct harness_sluice *h;
	PGconn *c[CLIENTS], *admin;
	struct pids set = {.n = 0};
	long long received, in_metrics = 0;
	struct harness_http_reply metrics;
	int nworkers;
	char sql[128], param[16];
	const char *params[] = {param};

	snprintf(ini, sizeof(ini),
	         "%sserver_tls_sslmode = %s\nadmin_users = admin\nmetrics_listen = 127.0.0.1:0\n",
	         MOVE_INI, sslmode);
	h = harness_start_sluice_users(ini, "\"admin\" \"admin-secret\"\n");
	for (int i = 0; i < CLIENTS; i++) {
		PGresult *res;

		c[i] = harness_connect_ok(h, "app", "app-secret", "app");
		snprintf(sql, sizeof(sql), "select pg_backend_pid(), $1::int + %d", i);
		res = PQprepare(c[i], "s", sql, 1, NULL);
		cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "prepare %d: %s", i,
		             PQresultErrorMessage(res));
		PQclear(res);
	}
	for (int round = 0; round < ROUNDS; round++) {
		snprintf(param, sizeof(param), "%d", round);
		for (int i = 0; i < CLIENTS; i++)
			cr_assert(PQsendQueryPrepared(c[i], "s", 1, params, NULL, NULL, 0),
			          "send %d: %s", i, PQerrorMessage(c[i]));
		for (int i = 0; i < CLIENTS; i++)
			collect(c[i], &set, round + i, i, round);
	}
	cr_assert_eq(set.n, 2, "Postgres served the 8 clients with %d backends, pool size is 2",
	             set.n);
	cr_assert_leq(harness_count_backends("app", NULL), 2);
	admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	received = show_sum(admin, "SHOW WORKERS", "servers_received", &nworkers);
	cr_assert_eq(nworkers, 4, "SHOW WORKERS has %d rows for 4 workers", nworkers);
	cr_assert_gt(received, 0, "no worker received a server");
	cr_assert_leq(received, show_sum(admin, "SHOW WORKERS", "servers_sent", NULL));
	cr_assert_eq(show_sum(admin, "SHOW WORKERS", "closed_for_others", NULL), 0);
	cr_assert_gt(show_sum(admin, "SHOW WORKERS", "asks", NULL), 0);
	/* /metrics has the same counters per worker (a server may still be in transit). */
	metrics = harness_http_get(harness_metrics_port(h), "/metrics");
	cr_assert_eq(metrics.status, 200);
	for (int w = 0; w < 4; w++) {
		char series[64];

		snprintf(series, sizeof(series),
		         "sluice_worker_servers_received_total{worker=\"%d\"}", w);
		in_metrics += (long long)harness_metric_sample(metrics.body, series);
	}
	harness_promtool_check(h, metrics.body);
	free(metrics.text);
	cr_assert(received <= in_metrics &&
	              in_metrics <= show_sum(admin, "SHOW WORKERS", "servers_received", NULL),
	          "/metrics counts %lld servers received, SHOW WORKERS %lld", in_metrics, received);
	for (int i = 0; i < CLIENTS; i++)
		PQfinish(c[i]);
	PQfinish(admin);
}

Test(workers, idle_servers_move_between_workers_with_no_new_backend)
{
	servers_move("disable");
}

/* The same with TLS servers: each one's session moves with its socket. */
Test(workers, idle_tls_servers_move_between_workers_with_no_new_backend)
{
	servers_move("require");
}

/* Clients queued for a server, over every pool (SHOW POOLS adds up the workers). */
static long long waiting_clients(PGconn *admin)
{
	return show_sum(admin, "SHOW POOLS", "cl_waiting", NULL);
}

/*
 * One pool unit, two workers.  The server a holds in a transaction never
 * moves: b, on the other worker, waits (SHOW POOLS counts it) while a's
 * transaction goes on undisturbed on the same backend; once a commits, b is
 * served by that same backend, handed over, not reconnected.
 */
Test(workers, a_server_in_a_transaction_never_moves)
{
	struct harness_sluice *h =
	    harness_start_sluice_users("workers = 2\ndefault_pool_size = 1\n"
	                               "server_tls_sslmode = disable\nadmin_users = admin\n"
	                               "query_wait_timeout = 120s\n",
	                               "\"admin\" \"admin-secret\"\n");
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid, xid;
	PGresult *res;

	PQclear(harness_exec_ok(a, "begin"));
	pid = harness_query_int(a, "select pg_backend_pid()");
	xid = harness_query_int(a, "select txid_current()");
	cr_assert(PQsendQuery(b, "select pg_backend_pid()"), "%s", PQerrorMessage(b));
	cr_assert(harness_wait_for(waiting_clients(admin) == 1, WAIT_S),
	          "b never queued for a server");
	/* Still a's: the same backend, the same transaction. */
	cr_assert_eq(harness_query_int(a, "select pg_backend_pid()"), pid);
	cr_assert_eq(harness_query_int(a, "select txid_current()"), xid);
	cr_assert(PQconsumeInput(b), "%s", PQerrorMessage(b));
	cr_assert_eq(PQisBusy(b), 1, "b was answered while a's transaction was open");
	PQclear(harness_exec_ok(a, "commit"));
	res = PQgetResult(b);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	cr_assert_eq(atoll(PQgetvalue(res, 0, 0)), pid, "b got another backend than a's");
	PQclear(res);
	while ((res = PQgetResult(b)) != NULL)
		PQclear(res);
	/* A backend of an earlier test of this binary may still be exiting. */
	cr_assert(harness_wait_for(harness_count_backends("app", NULL) == 1, WAIT_S),
	          "%lld backends of app", harness_count_backends("app", NULL));
	PQfinish(a);
	PQfinish(b);
	PQfinish(admin);
}

/*
 * Session mode, one pool unit, two workers.  a's session SETs a parameter and
 * prepares a statement, then leaves: server_reset_query cleans its server,
 * which stays idle on a's worker.  b, on the other worker, gets that same
 * backend handed over, clean.  A SET in session mode marks the server's
 * settings as changed for good (nothing reads them back there); that mark
 * kept it from moving, and b waited for a server that never came.
 */
Test(workers, a_reset_session_server_moves_to_the_next_client)
{
	struct harness_sluice *h = harness_start_sluice("workers = 2\npool_mode = session\n"
	                                                "default_pool_size = 1\n"
	                                                "server_tls_sslmode = disable\n"
	                                                "query_wait_timeout = 120s\n");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b;
	long long pid = harness_query_int(a, "select pg_backend_pid()");
	PGresult *res;

	PQclear(harness_exec_ok(a, "set work_mem = '7MB'"));
	res = PQprepare(a, "plus_one", "select $1::int + 1", 1, NULL);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(a);

	b = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(b, "select pg_backend_pid()"), pid,
	             "b got another backend than a's");
	cr_assert(harness_log_contains(h, "taken over from another worker"),
	          "a and b shared a worker: nothing moved");
	res = harness_exec_ok(b, "show work_mem");
	cr_assert_str_neq(PQgetvalue(res, 0, 0), "7MB", "a's SET reached b");
	PQclear(res);
	res = PQdescribePrepared(b, "plus_one");
	cr_assert_str_eq(harness_sqlstate(res), "26000", "a's prepared statement reached b");
	PQclear(res);
	PQfinish(b);
}

/* The one-value result of a query sent with PQsendQuery. */
static long long result_int(PGconn *conn, const char *who)
{
	PGresult *res = PQgetResult(conn);
	long long v;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", who,
	             PQresultErrorMessage(res));
	v = atoll(PQgetvalue(res, 0, 0));
	PQclear(res);
	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
	return v;
}

/*
 * A debt comes before the owing worker's own queue, and a server that arrives
 * serves its new worker before going back.  Two workers, one pool unit, TLS
 * servers (their sessions move with them); a and c share a worker (clients go
 * round-robin), b is on the other.  a holds the server in a transaction, b
 * asks for it (a's worker owes b's one) and c queues behind a.  When a
 * commits, the server goes to b first, then comes back for c.  Before, a TLS
 * server was closed for b's worker and a's worker took the freed unit back at
 * once for c; with debts both ways each fresh server was closed again for the
 * other side, and neither queue moved (query_wait_timeout).
 */
Test(workers, a_server_owed_to_another_worker_serves_it_before_the_owers_queue)
{
	struct harness_sluice *h = harness_start_sluice_users("workers = 2\ndefault_pool_size = 1\n"
	                                                      "server_tls_sslmode = require\n"
	                                                      "admin_users = admin\n"
	                                                      "query_wait_timeout = 120s\n",
	                                                      "\"admin\" \"admin-secret\"\n");
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	long long b_turn, c_turn;

	PQclear(harness_exec_ok(a, "drop sequence if exists workers_turns"));
	PQclear(harness_exec_ok(a, "create sequence workers_turns"));
	cr_assert_eq(harness_query_int(a, "select ssl::int from pg_stat_ssl "
	                                  "where pid = pg_backend_pid()"),
	             1, "the server connection is not TLS");
	PQclear(harness_exec_ok(a, "begin"));
	cr_assert(PQsendQuery(b, "select nextval('workers_turns')"), "%s", PQerrorMessage(b));
	cr_assert(harness_wait_for(show_sum(admin, "SHOW WORKERS", "debts", NULL) >= 1, WAIT_S),
	          "a's worker never owed b's a server");
	cr_assert(PQsendQuery(c, "select nextval('workers_turns')"), "%s", PQerrorMessage(c));
	cr_assert(harness_wait_for(waiting_clients(admin) == 2, WAIT_S),
	          "b and c never both queued");
	PQclear(harness_exec_ok(a, "commit"));
	b_turn = result_int(b, "b");
	c_turn = result_int(c, "c");
	cr_assert_lt(b_turn, c_turn, "c (a's worker) was served before b, owed the server");
	cr_assert(harness_log_contains(h, "taken over from another worker"),
	          "the TLS server did not move to b's worker");
	cr_assert_geq(show_sum(admin, "SHOW WORKERS", "servers_received", NULL), 1);
	PQclear(harness_exec_ok(a, "drop sequence workers_turns"));
	PQfinish(a);
	PQfinish(b);
	PQfinish(c);
	PQfinish(admin);
}

/* pg_backend_pid() of `conn`'s server, which must run under `timeout` (statement_timeout). */
static long long backend_with_timeout(PGconn *conn, const char *timeout, const char *who, int round)
{
	PGresult *res =
	    harness_exec_ok(conn, "select pg_backend_pid(), current_setting('statement_timeout')");
	long long pid = atoll(PQgetvalue(res, 0, 0));

	cr_assert_str_eq(PQgetvalue(res, 0, 1), timeout, "%s round %d: another tenant's server",
	                 who, round);
	PQclear(res);
	return pid;
}

/*
 * A server that cannot move is closed for the worker that needs it, and its
 * pool unit goes to that worker, which connects with it.  Two tenants of one
 * pool, on two workers (consecutive clients), with different statement_timeouts
 * never share a server: the pool's one server is closed and reopened, on the
 * other worker, at each turn.  Before, the closing worker freed the unit and
 * could take it back for its own queue while the asker waited for it.
 */
Test(workers, a_server_that_cannot_move_is_reopened_on_the_worker_that_needs_it)
{
	struct harness_sluice *h = harness_start_sluice_users(
	    "workers = 2\ndefault_pool_size = 1\nserver_tls_sslmode = disable\n"
	    "query_wait_timeout = 120s\nadmin_users = admin\n"
	    "[databases]\n"
	    "app = host=@PGHOST@ port=@PGPORT@ dbname=app user=app password=app-secret\n"
	    "[tenant.a]\nusers = tenant_a\n"
	    "[tenant.c]\nusers = tenant_c\nstatement_timeout = 300ms\n",
	    "\"tenant_a\" \"a-secret\"\n\"tenant_c\" \"c-secret\"\n\"admin\" \"admin-secret\"\n");
	PGconn *a = harness_connect_ok(h, "tenant_a", "a-secret", "app");
	PGconn *c = harness_connect_ok(h, "tenant_c", "c-secret", "app");
	PGconn *admin;

	for (int round = 0; round < 10; round++) {
		long long pid_a = backend_with_timeout(a, "0", "tenant a", round);
		long long pid_c = backend_with_timeout(c, "300ms", "tenant c", round);

		cr_assert_neq(pid_a, pid_c, "round %d: the tenants shared a backend", round);
	}
	cr_assert(harness_log_contains(h, "closing: another worker's clients need the connection"),
	          "the tenants shared a worker: no server was closed for another one");
	/* Each close sent its unit to the asker, which connected with it. */
	admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	cr_assert_geq(show_sum(admin, "SHOW WORKERS", "closed_for_others", NULL), 1);
	cr_assert_geq(show_sum(admin, "SHOW WORKERS", "units_received", NULL), 1);
	PQfinish(admin);
	PQfinish(a);
	PQfinish(c);
}

#define STARVE_NOISY  16
#define STARVE_QUIET  2
#define STARVE_ROUNDS 400

/*
 * Closed loops of SELECT 1 on every connection until each has run `rounds`;
 * every answer must be a row (a stalled queue ends in query_wait_timeout).
 */
static void closed_loops(PGconn **conns, int n, int rounds)
{
	struct pollfd fds[STARVE_NOISY + STARVE_QUIET];
	int done[STARVE_NOISY + STARVE_QUIET] = {0};
	int live = n;

	for (int i = 0; i < n; i++) {
		cr_assert(PQsendQuery(conns[i], "select 1"), "send %d: %s", i,
		          PQerrorMessage(conns[i]));
		fds[i] = (struct pollfd){.fd = PQsocket(conns[i]), .events = POLLIN};
	}
	while (live > 0) {
		cr_assert_geq(poll(fds, (nfds_t)n, -1), 0, "poll failed");
		for (int i = 0; i < n; i++) {
			PGresult *res;

			if (fds[i].fd < 0 || !(fds[i].revents & POLLIN))
				continue;
			cr_assert(PQconsumeInput(conns[i]), "client %d: %s", i,
			          PQerrorMessage(conns[i]));
			if (PQisBusy(conns[i]))
				continue;
			while ((res = PQgetResult(conns[i])) != NULL) {
				cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK,
				             "client %d, transaction %d: %s", i, done[i],
				             PQresultErrorMessage(res));
				PQclear(res);
			}
			if (++done[i] == rounds) {
				fds[i].fd = -1;
				live--;
				continue;
			}
			cr_assert(PQsendQuery(conns[i], "select 1"), "send %d: %s", i,
			          PQerrorMessage(conns[i]));
		}
	}
}

/*
 * A tenant's queue never waits on one worker while its servers sit idle on
 * another.  Two workers share a pool of 4; the quiet tenant keeps 2 of them
 * (min_server_conn), the noisy one's 16 clients compete for the other 2, and
 * servers move and change tenants between the workers all the time.  Before,
 * a server handed to a worker went to one tenant's queue while another
 * tenant's pool there had asked for it, and that pool never asked again; and
 * a pool that gave its last server to another tenant on the same worker did
 * not ask the other workers for one: its clients waited for ever (the tenant
 * benchmark hung 2 runs in 3), here query_wait_timeout.
 */
Test(workers, a_tenant_starved_on_one_worker_gets_the_servers_of_another)
{
	struct harness_sluice *h = harness_start_sluice_users(
	    "workers = 2\ndefault_pool_size = 4\nserver_tls_sslmode = disable\n"
	    "query_wait_timeout = 30s\n"
	    "[databases]\n"
	    "app = host=@PGHOST@ port=@PGPORT@ dbname=app user=app password=app-secret\n"
	    "[tenant.quiet]\nusers = quiet\nmin_server_conn = 2\n"
	    "[tenant.noisy]\nusers = noisy\n",
	    "\"quiet\" \"q-secret\"\n\"noisy\" \"n-secret\"\n");
	PGconn *conns[STARVE_NOISY + STARVE_QUIET];
	int n = 0;

	for (int i = 0; i < STARVE_QUIET; i++)
		conns[n++] = harness_connect_ok(h, "quiet", "q-secret", "app");
	for (int i = 0; i < STARVE_NOISY; i++)
		conns[n++] = harness_connect_ok(h, "noisy", "n-secret", "app");
	for (int turn = 0; turn < 3; turn++)
		closed_loops(conns, n, STARVE_ROUNDS);
	cr_assert_leq(harness_count_backends("app", NULL), 4);
	for (int i = 0; i < n; i++)
		PQfinish(conns[i]);
}

/*
 * As above, but a's server is pinned (a session advisory lock), so c's queue
 * cannot move and c's worker asks the other for a server: it has none, and
 * the request ends there ("no worker has a server").  When a unlocks, the
 * server pays the debt to b's worker; c's worker, now without a server, must
 * ask again.  Before, the pool still had shed_asked set from the request
 * that ended, so it never asked: the server stayed idle on b's worker and c
 * waited until query_wait_timeout.  Found by protofuzz (statement mode, one
 * server, two workers).
 */
Test(workers, a_pool_that_lent_its_last_server_asks_again)
{
	struct harness_sluice *h = harness_start_sluice_users("workers = 2\ndefault_pool_size = 1\n"
	                                                      "admin_users = admin\n"
	                                                      "query_wait_timeout = 20s\n",
	                                                      "\"admin\" \"admin-secret\"\n");
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");

	PQclear(harness_exec_ok(a, "select pg_advisory_lock(4244)"));
	/* Pinned once the settings are read back, after a has its reply. */
	cr_assert(harness_wait_for(show_sum(admin, "SHOW SERVERS", "pinned", NULL) == 1, WAIT_S),
	          "a's server never pinned");
	cr_assert(PQsendQuery(b, "select 2"), "%s", PQerrorMessage(b));
	cr_assert(harness_wait_for(show_sum(admin, "SHOW WORKERS", "debts", NULL) >= 1, WAIT_S),
	          "a's worker never owed b's a server");
	cr_assert(PQsendQuery(c, "select 3"), "%s", PQerrorMessage(c));
	cr_assert(
	    harness_wait_for(harness_log_contains(h, "no worker has a server for worker"), WAIT_S),
	    "c's worker never asked for a server");
	PQclear(harness_exec_ok(a, "select pg_advisory_unlock(4244)"));
	cr_assert_eq(result_int(b, "b"), 2);
	cr_assert_eq(result_int(c, "c"), 3);
	PQfinish(a);
	PQfinish(b);
	PQfinish(c);
	PQfinish(admin);
}

/*
 * A pool whose clients wait, with no server of its own, asks the other
 * workers for one unless its queue moves by itself: a server of its own idle,
 * connecting, or busy but not pinned.  The pool's listening connection
 * (LISTEN) counted as one connecting, though it serves no waiter, so a
 * client that queued while it logged in never asked: the one server stayed
 * idle on the other worker once its client committed, and the client waited
 * until query_wait_timeout.  Found by protofuzz (statement mode).  Consecutive
 * connections go to alternate workers: a (and spare) on one, the listener and
 * b on the other.
 */
Test(workers, a_listening_connection_is_no_server_to_wait_for)
{
	struct harness_sluice *h = harness_start_sluice_users("workers = 2\ndefault_pool_size = 1\n"
	                                                      "admin_users = admin\n"
	                                                      "query_wait_timeout = 20s\n",
	                                                      "\"admin\" \"admin-secret\"\n");
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *listener = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *spare = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res;

	/* a's worker holds the pool's one unit. */
	PQclear(harness_exec_ok(a, "begin"));
	/* On the other worker, b queues while the listening connection logs in. */
	cr_assert(PQsendQuery(listener, "listen workers_channel"), "%s", PQerrorMessage(listener));
	cr_assert(PQsendQuery(b, "select 4"), "%s", PQerrorMessage(b));
	while ((res = PQgetResult(listener)) != NULL) {
		cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s",
		             PQresultErrorMessage(res));
		PQclear(res);
	}
	PQclear(harness_exec_ok(a, "commit"));
	cr_assert_eq(result_int(b, "b"), 4);
	PQfinish(a);
	PQfinish(listener);
	PQfinish(spare);
	PQfinish(b);
	PQfinish(admin);
}

/*
 * A pool's request for a server that ended with "no worker has a server"
 * leaves shed_asked set until a unit comes free elsewhere.  When the pool's
 * own server closed and another worker connected with the unit, the flag was
 * still set: a client that queued afterwards never made its pool ask, and the
 * server went idle on the other worker while it waited until
 * query_wait_timeout.  Found by protofuzz (statement mode).  Consecutive
 * connections go to alternate workers: a, b and d on one, c on the other.
 */
Test(workers, a_pool_whose_server_closed_asks_again)
{
	struct harness_sluice *h = harness_start_sluice_users("workers = 2\ndefault_pool_size = 1\n"
	                                                      "admin_users = admin\n"
	                                                      "query_wait_timeout = 20s\n",
	                                                      "\"admin\" \"admin-secret\"\n");
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *spare = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *d = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *super = harness_pg_super("app");
	long long pid = harness_query_int(a, "select pg_backend_pid()");
	char sql[64];

	/* a pins the pool's one server; b's worker asks for another, finds none, and b leaves. */
	PQclear(harness_exec_ok(a, "select pg_advisory_lock(4246)"));
	cr_assert(harness_wait_for(show_sum(admin, "SHOW SERVERS", "pinned", NULL) == 1, WAIT_S),
	          "a's server never pinned");
	cr_assert(PQsendQuery(b, "select 2"), "%s", PQerrorMessage(b));
	cr_assert(
	    harness_wait_for(harness_log_contains(h, "no worker has a server for worker"), WAIT_S));
	PQfinish(b);
	/* c's worker asks too: a's owes it one.  Then a's server goes. */
	cr_assert(PQsendQuery(c, "select 3"), "%s", PQerrorMessage(c));
	cr_assert(harness_wait_for(harness_log_contains(h, "owes worker"), WAIT_S));
	snprintf(sql, sizeof(sql), "select pg_terminate_backend(%lld)", pid);
	PQclear(harness_exec_ok(super, sql));
	cr_assert_eq(result_int(c, "c"), 3);
	/* The unit is on c's worker now; d, on a's, must get it. */
	cr_assert_eq(harness_query_int(d, "select 4"), 4);
	PQfinish(a);
	PQfinish(c);
	PQfinish(spare);
	PQfinish(d);
	PQfinish(super);
	PQfinish(admin);
}

/*
 * The same flag, a third way: b's worker asked while a pinned the server, and
 * its request ended ("no worker has a server").  Then c's worker asked and
 * took that server, idle once a unlocked, straight from the ask: the lending
 * pool's flag stayed set, so when d queued there its pool never asked, the
 * server stayed idle on c's worker and d waited until query_wait_timeout.
 * Found by protofuzz (statement mode).  Consecutive connections go to
 * alternate workers: a, b and d on one, c on the other.
 */
Test(workers, a_pool_whose_idle_server_was_taken_asks_again)
{
	struct harness_sluice *h = harness_start_sluice_users("workers = 2\ndefault_pool_size = 1\n"
	                                                      "admin_users = admin\n"
	                                                      "query_wait_timeout = 20s\n",
	                                                      "\"admin\" \"admin-secret\"\n");
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *spare = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *d = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid = harness_query_int(a, "select pg_backend_pid()");

	PQclear(harness_exec_ok(a, "select pg_advisory_lock(4247)"));
	cr_assert(harness_wait_for(show_sum(admin, "SHOW SERVERS", "pinned", NULL) == 1, WAIT_S),
	          "a's server never pinned");
	cr_assert(PQsendQuery(b, "select 2"), "%s", PQerrorMessage(b));
	cr_assert(
	    harness_wait_for(harness_log_contains(h, "no worker has a server for worker"), WAIT_S));
	PQfinish(b);
	PQclear(harness_exec_ok(a, "select pg_advisory_unlock(4247)"));
	cr_assert(harness_wait_for(show_sum(admin, "SHOW SERVERS", "pinned", NULL) == 0, WAIT_S),
	          "a's server stayed pinned");
	/* c's worker takes the server, idle on a's now: the same backend, moved. */
	cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), pid);
	cr_assert_eq(harness_query_int(d, "select 4"), 4);
	PQfinish(a);
	PQfinish(c);
	PQfinish(spare);
	PQfinish(d);
	PQfinish(admin);
}

/*
 * A worker whose only server is its pool's listening connection (LISTEN)
 * was taken for one holding servers: asked for one, it owed it, and the
 * request ended there, though that connection is never released.  The
 * asker's client waited until query_wait_timeout while the pool's one server
 * went idle on a third worker.  Found by protofuzz (statement mode, four
 * workers).  Three workers, connections spread in turn (the admin's on w1):
 * the listener on w2, a (holding the one server in a transaction) on w0, c
 * on w1, whose request meets the listener's worker first in each round.
 */
Test(workers, a_listening_connection_owes_no_server)
{
	struct harness_sluice *h = harness_start_sluice_users("workers = 3\ndefault_pool_size = 1\n"
	                                                      "admin_users = admin\n"
	                                                      "query_wait_timeout = 20s\n",
	                                                      "\"admin\" \"admin-secret\"\n");
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGconn *listener = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");

	PQclear(harness_exec_ok(a, "begin"));
	PQclear(harness_exec_ok(listener, "listen workers_owes"));
	cr_assert(PQsendQuery(c, "select 5"), "%s", PQerrorMessage(c));
	cr_assert(harness_wait_for(harness_log_contains(h, "owes worker 1 a server"), WAIT_S),
	          "c's worker never asked for a server");
	PQclear(harness_exec_ok(a, "commit"));
	cr_assert_eq(result_int(c, "c"), 5);
	PQfinish(a);
	PQfinish(c);
	PQfinish(listener);
	PQfinish(admin);
}
