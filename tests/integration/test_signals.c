/*
 * Signals: SIGHUP reloads the ini (and a broken one changes nothing), SIGTERM
 * drains (no new clients, open transactions may finish, exit 0), SIGINT exits
 * at once.  Reloads are observed through behaviour only: a database that
 * exists only in the new file becomes reachable, pool sizes change what can
 * run at once.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(signals, .fini = harness_teardown, .timeout = 120);

static bool connects(struct harness_sluice *h, const char *db)
{
	PGconn *c = harness_connect(h, "app", "app-secret", db);
	bool ok = PQstatus(c) == CONNECTION_OK;

	PQfinish(c);
	return ok;
}

/* With `size` transactions open at once, all on distinct servers. */
static void expect_concurrent_transactions(struct harness_sluice *h, int size)
{
	PGconn *conns[8];
	long long pids[8];

	for (int i = 0; i < size; i++) {
		conns[i] = harness_connect_ok(h, "app", "app-secret", "app");
		PQclear(harness_exec_ok(conns[i], "begin"));
		pids[i] = harness_query_int(conns[i], "select pg_backend_pid()");
		for (int k = 0; k < i; k++)
			cr_assert_neq(pids[i], pids[k]);
	}
	cr_assert_eq(harness_count_backends("app", "idle in transaction"), size);
	for (int i = 0; i < size; i++) {
		PQclear(harness_exec_ok(conns[i], "commit"));
		PQfinish(conns[i]);
	}
}

/* A second transaction waits past query_wait_timeout: the pool holds one. */
static void expect_pool_of_one(struct harness_sluice *h)
{
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res;

	PQclear(harness_exec_ok(a, "begin"));
	PQclear(harness_exec_ok(a, "select 1"));
	res = PQexec(b, "select 1");
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR,
	             "a second server was available with default_pool_size = 1");
	PQclear(res);
	PQclear(harness_exec_ok(a, "commit"));
	PQfinish(a);
	PQfinish(b);
}

Test(signals, sighup_reloads)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1\n"
	                                                "query_wait_timeout = 2s");

	expect_pool_of_one(h);
	cr_assert_not(connects(h, "reloaded"));
	harness_write_ini(h, "default_pool_size = 3\n"
	                     "query_wait_timeout = 20s\n"
	                     "[databases]\n"
	                     "reloaded = host=@PGHOST@ port=@PGPORT@ dbname=other\n");
	harness_signal(h, SIGHUP);
	/* The new database answering shows the new file is in force. */
	cr_assert(harness_wait_for(connects(h, "reloaded"), 20),
	          "the database added to the file never became reachable");
	expect_concurrent_transactions(h, 3);
	cr_assert(harness_sluice_alive(h));
}

Test(signals, sighup_with_broken_file_keeps_config)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 2");
	long offset = harness_log_size(h);
	char broken[512];

	/* No [databases] at all: had this been applied, "app" would be gone. */
	snprintf(broken, sizeof(broken),
	         "[sluice]\nlisten_addr = 127.0.0.1\nlisten_port = %d\n"
	         "default_pool_size = not-a-number\n",
	         h->port);
	harness_write_file(h->ini_path, broken);
	harness_signal(h, SIGHUP);
	cr_assert(harness_wait_for(harness_log_contains_after(h, offset, "default_pool_size") ||
	                               harness_log_contains_after(h, offset, "not-a-number"),
	                           20),
	          "no error about the broken file in the log");
	cr_assert(harness_sluice_alive(h), "sluice exited on a broken reload");
	cr_assert(connects(h, "app"));
	cr_assert(connects(h, "other"));
	expect_concurrent_transactions(h, 2);

	/* A good file after a bad one is taken. */
	harness_write_ini(h, "default_pool_size = 2\n[databases]\n"
	                     "reloaded = host=@PGHOST@ port=@PGPORT@ dbname=other\n");
	harness_signal(h, SIGHUP);
	cr_assert(harness_wait_for(connects(h, "reloaded"), 20),
	          "a good file after a broken one was not loaded");
}

Test(signals, sigterm_drains)
{
	struct harness_sluice *h = harness_start_sluice("shutdown_timeout = 60s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	int rc;

	PQclear(harness_exec_ok(c, "begin"));
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	harness_signal(h, SIGTERM);
	cr_assert(harness_wait_for(!connects(h, "app"), 20),
	          "sluice still accepts new clients after SIGTERM");
	cr_assert(harness_sluice_alive(h), "sluice exited with a transaction open");
	/* The open transaction may finish. */
	cr_assert_eq(harness_query_int(c, "select 2"), 2);
	PQclear(harness_exec_ok(c, "commit"));
	PQfinish(c);
	rc = harness_stop_sluice(h, 0, 30);
	cr_assert_eq(rc, 0, "sluice exit status %d after draining", rc);
}

/* The SQLSTATE of the last FATAL libpq passed on as a notice (it came while no query ran). */
static void keep_fatal_state(void *arg, const PGresult *res)
{
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (severity != NULL && strcmp(severity, "FATAL") == 0)
		snprintf(arg, 6, "%s", state != NULL ? state : "");
}

/* A client still there when sluice exits is told why before the close: 57P01. */
static void expect_told_of_shutdown(PGconn *c, const char *fatal_state)
{
	cr_assert(
	    harness_wait_for((PQconsumeInput(c), PQisBusy(c), PQstatus(c) == CONNECTION_BAD), 20),
	    "the client outlived sluice");
	cr_assert_str_eq(fatal_state, "57P01", "the client was closed without an error");
}

Test(signals, sigterm_gives_up_after_shutdown_timeout)
{
	struct harness_sluice *h = harness_start_sluice("shutdown_timeout = 1s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	char fatal_state[6] = "";
	PGresult *res;
	int rc;

	PQsetNoticeReceiver(c, keep_fatal_state, fatal_state);
	PQclear(harness_exec_ok(c, "begin"));
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	rc = harness_stop_sluice(h, SIGTERM, 30);
	cr_assert_eq(rc, 0, "sluice exit status %d after shutdown_timeout", rc);
	expect_told_of_shutdown(c, fatal_state);
	res = PQexec(c, "select 2");
	cr_assert_neq(PQresultStatus(res), PGRES_TUPLES_OK, "the client outlived sluice");
	PQclear(res);
	PQfinish(c);
	cr_assert(harness_wait_for(harness_count_backends("app", "idle in transaction") == 0, 20),
	          "the unfinished transaction is still open on Postgres");
}

Test(signals, sigint_exits_at_once)
{
	struct harness_sluice *h = harness_start_sluice("shutdown_timeout = 600s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	char fatal_state[6] = "";
	int rc;

	PQsetNoticeReceiver(c, keep_fatal_state, fatal_state);
	/* An open transaction would hold up a drain; SIGINT must not wait for it. */
	PQclear(harness_exec_ok(c, "begin"));
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	rc = harness_stop_sluice(h, SIGINT, 20);
	cr_assert_eq(rc, 0, "sluice's exit after SIGINT: %d (-1: none)", rc);
	expect_told_of_shutdown(c, fatal_state);
	cr_assert(harness_wait_for(harness_count_backends("app", NULL) == 0, 20),
	          "sluice's server connections outlived it");
	PQfinish(c);
}

/* Over TLS the error is written by a later turn of the loop, which must still run. */
Test(signals, sigint_tells_a_tls_client_too)
{
	char dir[64], ini[512];
	struct harness_sluice *h;
	PGconn *c;
	char fatal_state[6] = "";

	harness_make_certs(dir, sizeof(dir));
	h = harness_start_sluice(harness_client_tls_ini(ini, sizeof(ini), "require", dir));
	c = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert(PQsslInUse(c));
	PQsetNoticeReceiver(c, keep_fatal_state, fatal_state);
	PQclear(harness_exec_ok(c, "begin"));
	cr_assert_eq(harness_stop_sluice(h, SIGINT, 20), 0, "sluice did not exit 0 on SIGINT");
	expect_told_of_shutdown(c, fatal_state);
	PQfinish(c);
}
