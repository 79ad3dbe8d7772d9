/*
 * A client that dies inside a transaction: sluice must end the transaction on
 * its server (cancelling a running query first), so the locks go away, and the
 * pool must be back to its full size, never handing the open transaction to
 * another client.  Everything is checked from Postgres' side.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

#define LOCK_KEY "4242"

TestSuite(killed_client, .fini = harness_teardown, .timeout = 120);

/*
 * Forks a client that, through sluice, opens a transaction holding an access
 * exclusive lock on killed_t and advisory lock LOCK_KEY, optionally sends
 * `then` without waiting for it, tells us over a pipe and waits to be killed.
 */
static pid_t spawn_lock_holder(struct harness_sluice *h, const char *then)
{
	int fds[2];
	pid_t pid;
	char byte;

	cr_assert(pipe(fds) == 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		PGconn *c;
		PGresult *res;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(fds[0]);
		c = harness_connect(h, "app", "app-secret", "app");
		if (PQstatus(c) != CONNECTION_OK)
			_exit(2);
		res = PQexec(c, "begin; lock table killed_t in access exclusive mode; "
		                "select pg_advisory_xact_lock(" LOCK_KEY ")");
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			_exit(3);
		if (then != NULL && !PQsendQuery(c, then))
			_exit(4);
		if (write(fds[1], "k", 1) != 1)
			_exit(5);
		for (;;)
			pause();
	}
	close(fds[1]);
	cr_assert_eq(read(fds[0], &byte, 1), 1, "the lock holder failed before taking its locks");
	close(fds[0]);
	return pid;
}

static long long advisory_holders(void)
{
	PGconn *super = harness_pg_super(NULL);
	long long n = harness_query_int(super, "select count(*) from pg_locks where locktype = "
	                                       "'advisory' and objid = " LOCK_KEY " and granted");

	PQfinish(super);
	return n;
}

/* Nothing of the killed client's transaction is left on Postgres. */
static bool holder_gone(void)
{
	return harness_count_active_queries("app", "pg_sleep(300)") == 0 &&
	       harness_count_backends("app", "idle in transaction") == 0 && advisory_holders() == 0;
}

static void kill_holder(pid_t pid)
{
	cr_assert_eq(kill(pid, SIGKILL), 0);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
}

/* With a pool of 2, two clients can both hold a transaction open again. */
static void expect_full_pool(struct harness_sluice *h)
{
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");

	PQclear(harness_exec_ok(a, "begin"));
	/* Would block on the table lock if the killed transaction were alive. */
	cr_assert_eq(harness_query_int(a, "select count(*) from killed_t"), 0);
	PQclear(harness_exec_ok(b, "begin"));
	cr_assert_eq(harness_query_int(b, "select pg_try_advisory_xact_lock(" LOCK_KEY ")::int"), 1,
	             "the killed client's advisory lock is still held");
	cr_assert_neq(harness_query_int(a, "select pg_backend_pid()"),
	              harness_query_int(b, "select pg_backend_pid()"));
	PQclear(harness_exec_ok(a, "commit"));
	PQclear(harness_exec_ok(b, "commit"));
	cr_assert_leq(harness_count_backends("app", NULL), 2);
	PQfinish(a);
	PQfinish(b);
}

static struct harness_sluice *start(void)
{
	/* query_wait_timeout: a leaked server makes the test fail, not hang. */
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 2\n"
	                                                "query_wait_timeout = 20s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");

	PQclear(harness_exec_ok(c, "drop table if exists killed_t; create table killed_t (x int)"));
	PQfinish(c);
	return h;
}

Test(killed_client, idle_in_transaction)
{
	struct harness_sluice *h = start();
	pid_t pid = spawn_lock_holder(h, NULL);

	cr_assert(harness_wait_for(harness_count_backends("app", "idle in transaction") == 1, 20));
	cr_assert_eq(advisory_holders(), 1);
	kill_holder(pid);
	cr_assert(harness_wait_for(holder_gone(), 20),
	          "the killed client's transaction is still open");
	expect_full_pool(h);
}

Test(killed_client, running_query)
{
	struct harness_sluice *h = start();
	pid_t pid = spawn_lock_holder(h, "select pg_sleep(300)");

	cr_assert(harness_wait_for(harness_count_active_queries("app", "pg_sleep(300)") == 1, 20),
	          "the holder's query never started");
	cr_assert_eq(advisory_holders(), 1);
	kill_holder(pid);
	/* Only a cancel ends pg_sleep(300) within the deadline. */
	cr_assert(harness_wait_for(holder_gone(), 20),
	          "the killed client's query or transaction is still running");
	expect_full_pool(h);
}

/* cl_waiting of pool app/app in SHOW POOLS, asked on console connection `admin`. */
static long long clients_waiting(PGconn *admin)
{
	PGresult *res = harness_exec_ok(admin, "SHOW POOLS");
	int col = PQfnumber(res, "cl_waiting");
	long long n = -1;

	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, 0), "app") == 0)
			n = atoll(PQgetvalue(res, i, col));
	PQclear(res);
	return n;
}

/*
 * A client queued for a server that hangs up (an application's own timeout,
 * a killed process) is let go at once, not when a server comes: its place in
 * the queue goes, and the request it left behind is never run, so a retry
 * elsewhere cannot run it twice.  Both the orderly close (Terminate, then
 * FIN) and a kill (FIN alone) are seen while it is not being read.
 */
static void queued_client_that_hangs_up(bool terminate, bool tls)
{
	char ini[1024], tls_ini[512] = "client_tls_sslmode = disable\n", dir[64];
	struct harness_sluice *h;
	PGconn *a, *b, *queued, *admin;

	/* Over TLS the close is only seen through the record layer (docs/architecture.md). */
	if (tls) {
		harness_make_certs(dir, sizeof(dir));
		harness_client_tls_ini(tls_ini, sizeof(tls_ini), "require", dir);
	}
	snprintf(ini, sizeof(ini),
	         "default_pool_size = 2\nquery_wait_timeout = 60s\nadmin_users = admin\n%s",
	         tls_ini);
	h = harness_start_sluice_users(ini, "\"admin\" \"admin-secret\"\n");
	a = harness_connect_ok(h, "app", "app-secret", "app");
	b = harness_connect_ok(h, "app", "app-secret", "app");
	queued = harness_connect_ok(h, "app", "app-secret", "app");
	admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	cr_assert_eq(PQsslInUse(queued), tls);

	PQclear(harness_exec_ok(a, "drop table if exists killed_t; create table killed_t (x int)"));
	PQclear(harness_exec_ok(a, "begin"));
	PQclear(harness_exec_ok(b, "begin"));
	cr_assert_eq(PQsendQuery(queued, "insert into killed_t values (1)"), 1);
	cr_assert(harness_wait_for(clients_waiting(admin) == 1, 20), "the insert never queued");
	if (terminate)
		PQfinish(queued);
	else
		shutdown(PQsocket(queued), SHUT_RDWR);
	cr_assert(harness_wait_for(clients_waiting(admin) == 0, 20),
	          "the client that hung up is still queued");
	/* The server a's COMMIT frees has no one waiting: a's next statement gets it. */
	PQclear(harness_exec_ok(a, "commit"));
	cr_assert_eq(harness_query_int(a, "select count(*) from killed_t"), 0,
	             "the request of the client that hung up was run");
	PQclear(harness_exec_ok(b, "commit"));
	if (!terminate)
		PQfinish(queued);
	PQfinish(a);
	PQfinish(b);
	PQfinish(admin);
}

Test(killed_client, queued_client_that_terminates_is_let_go_unrun)
{
	queued_client_that_hangs_up(true, false);
}

Test(killed_client, queued_client_that_is_killed_is_let_go_unrun)
{
	queued_client_that_hangs_up(false, false);
}

Test(killed_client, queued_tls_client_that_terminates_is_let_go_unrun)
{
	queued_client_that_hangs_up(true, true);
}

Test(killed_client, queued_tls_client_that_is_killed_is_let_go_unrun)
{
	queued_client_that_hangs_up(false, true);
}
