/*
 * CancelRequest through sluice: the client holds sluice's key, sluice must map
 * it to the server running the client's query, and that server must serve
 * again afterwards rather than being thrown away.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(cancel, .fini = harness_teardown, .timeout = 120);

static void cancel(PGconn *c)
{
	PGcancel *cancel = PQgetCancel(c);
	char err[256];

	cr_assert(cancel != NULL, "no cancel key");
	cr_assert(PQcancel(cancel, err, sizeof(err)), "PQcancel: %s", err);
	PQfreeCancel(cancel);
}

/* The next result must be the cancellation; 30 s later it would be the rows. */
static void expect_cancelled(PGconn *c)
{
	PGresult *res = PQgetResult(c);

	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "query was not cancelled: %s",
	             PQresStatus(PQresultStatus(res)));
	cr_assert_str_eq(harness_sqlstate(res), "57014", "%s", PQresultErrorMessage(res));
	PQclear(res);
	while ((res = PQgetResult(c)) != NULL)
		PQclear(res);
}

Test(cancel, running_query_and_server_reused)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	long long pid = harness_query_int(c, "select pg_backend_pid()");

	for (int round = 0; round < 3; round++) {
		cr_assert(PQsendQuery(c, "select pg_sleep(30)"), "%s", PQerrorMessage(c));
		cr_assert(
		    harness_wait_for(harness_count_active_queries("app", "pg_sleep(30)") == 1, 20),
		    "the query never started running on the server");
		cancel(c);
		expect_cancelled(c);
		cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), pid,
		             "a new server was used after the cancel");
	}
	PQfinish(c);
}

Test(cancel, reaches_the_right_server)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 2");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");

	cr_assert(PQsendQuery(a, "select pg_sleep(30)"), "%s", PQerrorMessage(a));
	cr_assert(PQsendQuery(b, "select pg_sleep(31)"), "%s", PQerrorMessage(b));
	cr_assert(harness_wait_for(harness_count_active_queries("app", "pg_sleep(30)") == 1 &&
	                               harness_count_active_queries("app", "pg_sleep(31)") == 1,
	                           20),
	          "the queries never started running on the server");
	cancel(a);
	expect_cancelled(a);
	/* b's query is untouched by a's cancel. */
	cr_assert_eq(harness_count_active_queries("app", "pg_sleep(31)"), 1);
	cancel(b);
	expect_cancelled(b);
	cr_assert_eq(harness_query_int(a, "select 1"), 1);
	cr_assert_eq(harness_query_int(b, "select 2"), 2);
	PQfinish(a);
	PQfinish(b);
}

Test(cancel, idle_client_is_harmless)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *other = harness_connect_ok(h, "app", "app-secret", "app");

	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	/* c has no server now; its cancel must not hit other's query. */
	cr_assert(PQsendQuery(other, "select 5 from pg_sleep(2)"), "%s", PQerrorMessage(other));
	cr_assert(harness_wait_for(harness_count_active_queries("app", "pg_sleep(2)") == 1, 20),
	          "the query never started running on the server");
	cancel(c);
	{
		PGresult *res = PQgetResult(other);

		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
		PQclear(res);
		while ((res = PQgetResult(other)) != NULL)
			PQclear(res);
	}
	cr_assert_eq(harness_query_int(c, "select 2"), 2);
	PQfinish(c);
	PQfinish(other);
}
