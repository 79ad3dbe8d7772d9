/*
 * The everyday client path through sluice in transaction mode: psql, simple and
 * extended queries, NOTICE, a large result, logins that must fail with the
 * right SQLSTATE, md5 logins to Postgres and the client auth methods.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(basic, .fini = harness_teardown, .timeout = 120);

Test(basic, psql_select_1)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	char psql[512], url[256], *out = NULL;
	const char *argv[] = {psql, "-XAt", "--set=ON_ERROR_STOP=1", "-c", "select 1", url, NULL};
	const char *env[] = {"PGCONNECT_TIMEOUT=10", NULL};
	int rc;

	harness_pg_tool("psql", psql, sizeof(psql));
	harness_url(h, "app", "app-secret", "app", url, sizeof(url));
	rc = harness_run(argv, env, 60, &out);
	cr_assert_eq(rc, 0, "psql exited with %d:\n%s", rc, out);
	cr_assert_str_eq(out, "1\n");
	free(out);
}

Test(basic, simple_queries)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res;

	res = harness_exec_ok(c, "select 1 + 1, 'sluice'::text");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "2");
	cr_assert_str_eq(PQgetvalue(res, 0, 1), "sluice");
	PQclear(res);

	/* Several statements in one Query: libpq returns the last result. */
	cr_assert_eq(harness_query_int(c, "select 1; select 2"), 2);

	/* A transaction over several round trips keeps its server. */
	PQclear(harness_exec_ok(c, "begin"));
	PQclear(harness_exec_ok(c, "create table basic_t (x int)"));
	PQclear(harness_exec_ok(c, "insert into basic_t values (1), (2), (3)"));
	cr_assert_eq(harness_query_int(c, "select count(*) from basic_t"), 3);
	PQclear(harness_exec_ok(c, "rollback"));

	/* An error outside a transaction leaves the connection usable. */
	res = PQexec(c, "select 1/0");
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	cr_assert_str_eq(harness_sqlstate(res), "22012");
	PQclear(res);
	cr_assert_eq(harness_query_int(c, "select 3"), 3);

	/* Inside a transaction the error aborts it until ROLLBACK, as in Postgres. */
	PQclear(harness_exec_ok(c, "begin"));
	res = PQexec(c, "select 1/0");
	cr_assert_str_eq(harness_sqlstate(res), "22012");
	PQclear(res);
	cr_assert_eq(PQtransactionStatus(c), PQTRANS_INERROR);
	res = PQexec(c, "select 1");
	cr_assert_str_eq(harness_sqlstate(res), "25P02");
	PQclear(res);
	PQclear(harness_exec_ok(c, "rollback"));
	cr_assert_eq(PQtransactionStatus(c), PQTRANS_IDLE);
	cr_assert_eq(harness_query_int(c, "select 4"), 4);
	PQfinish(c);
}

Test(basic, extended_queries)
{
	/* One server, so the unnamed statement is still there for the Bind. */
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	const char *two[] = {"2", "3"};
	const char *one[] = {"258"};
	const char *word[] = {"a"};
	const char *zero[] = {"0"};
	uint32_t be;
	PGresult *res;

	res = PQexecParams(c, "select $1::int + $2::int", 2, NULL, two, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "5");
	PQclear(res);

	/* Binary result format: int4 258 is 00 00 01 02 on the wire. */
	res = PQexecParams(c, "select $1::int4", 1, NULL, one, NULL, NULL, 1);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
	cr_assert_eq(PQgetlength(res, 0, 0), 4);
	memcpy(&be, PQgetvalue(res, 0, 0), 4);
	cr_assert_eq(ntohl(be), 258u);
	PQclear(res);

	res = PQprepare(c, "", "select $1::text || '-x'", 1, NULL);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
	PQclear(res);
	res = PQdescribePrepared(c, "");
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
	cr_assert_eq(PQnparams(res), 1);
	PQclear(res);
	for (int i = 0; i < 3; i++) {
		res = PQexecPrepared(c, "", 1, word, NULL, NULL, 0);
		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
		cr_assert_str_eq(PQgetvalue(res, 0, 0), "a-x");
		PQclear(res);
	}

	/* An error in Execute: the server skips to Sync, and so must sluice. */
	res = PQexecParams(c, "select 1 / $1::int", 1, NULL, zero, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	cr_assert_str_eq(harness_sqlstate(res), "22012");
	PQclear(res);
	res = PQexecParams(c, "select 7", 0, NULL, NULL, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "7");
	PQclear(res);
	PQfinish(c);
}

struct notices {
	int count;      /* notices received */
	char last[256]; /* primary message of the last one */
};

static void on_notice(void *arg, const PGresult *res)
{
	struct notices *n = arg;
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	n->count++;
	snprintf(n->last, sizeof(n->last), "%s", msg != NULL ? msg : "");
}

Test(basic, notice_is_delivered)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	struct notices n = {0};
	PGresult *res;

	PQsetNoticeReceiver(c, on_notice, &n);
	PQclear(harness_exec_ok(c, "do $$ begin raise notice 'hello'; end $$"));
	cr_assert_eq(n.count, 1);
	cr_assert_str_eq(n.last, "hello");

	/* And through the extended protocol. */
	res = PQexecParams(c, "do $$ begin raise notice 'again'; end $$", 0, NULL, NULL, NULL, NULL,
	                   0);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
	PQclear(res);
	cr_assert_eq(n.count, 2);
	cr_assert_str_eq(n.last, "again");
	PQfinish(c);
}

Test(basic, million_rows)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	const char *limit[] = {"1000000"};
	long long rows = 0, sum = 0;
	PGresult *res;

	/* Simple protocol, the whole result at once. */
	res = harness_exec_ok(c, "select g from generate_series(1, 1000000) g");
	cr_assert_eq(PQntuples(res), 1000000);
	for (int i = 0; i < PQntuples(res); i++)
		sum += strtoll(PQgetvalue(res, i, 0), NULL, 10);
	cr_assert_eq(sum, 500000500000LL);
	PQclear(res);

	/* Extended protocol, row by row. */
	cr_assert(PQsendQueryParams(c, "select g from generate_series(1, $1::int) g", 1, NULL,
	                            limit, NULL, NULL, 0),
	          "%s", PQerrorMessage(c));
	cr_assert(PQsetSingleRowMode(c));
	sum = 0;
	while ((res = PQgetResult(c)) != NULL) {
		ExecStatusType st = PQresultStatus(res);

		cr_assert(st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK, "%s: %s",
		          PQresStatus(st), PQresultErrorMessage(res));
		if (st == PGRES_SINGLE_TUPLE) {
			rows++;
			sum += strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		}
		PQclear(res);
	}
	cr_assert_eq(rows, 1000000);
	cr_assert_eq(sum, 500000500000LL);
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	PQfinish(c);
}

Test(basic, wrong_password)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	char state[6];

	cr_assert(harness_connect_fails(h, "app", "not-the-password", "app", state));
	cr_assert_str_eq(state, "28P01");
	cr_assert(harness_connect_fails(h, "md5user", "not-the-password", "app", state));
	cr_assert_str_eq(state, "28P01");
	/* The right password still works afterwards. */
	PQfinish(harness_connect_ok(h, "app", "app-secret", "app"));
}

Test(basic, unknown_database)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	char state[6];

	cr_assert(harness_connect_fails(h, "app", "app-secret", "no_such_db", state));
	cr_assert_str_eq(state, "3D000");
	PQfinish(harness_connect_ok(h, "app", "app-secret", "app"));
}

Test(basic, md5_server_login)
{
	/* Postgres stores md5user's password as md5, so sluice logs in with md5. */
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *c = harness_connect_ok(h, "md5user", "md5-secret", "other");
	PGresult *res = harness_exec_ok(c, "select current_user, current_database()");

	cr_assert_str_eq(PQgetvalue(res, 0, 0), "md5user");
	cr_assert_str_eq(PQgetvalue(res, 0, 1), "other");
	PQclear(res);
	PQfinish(c);
}

Test(basic, client_md5_auth)
{
	struct harness_sluice *h = harness_start_sluice("auth_type = md5");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	char state[6];

	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	PQfinish(c);
	cr_assert(harness_connect_fails(h, "app", "not-the-password", "app", state));
	cr_assert_str_eq(state, "28P01");
}

Test(basic, client_trust_auth)
{
	/* trust skips the client password; sluice still logs in to Postgres
	 * with the userlist's password. */
	struct harness_sluice *h = harness_start_sluice("auth_type = trust");
	PGconn *c = harness_connect_ok(h, "app", NULL, "app");

	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	PQfinish(c);
}

Test(basic, unix_socket)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	char port[16];
	const char *keys[] = {"host", "port", "user", "password", "dbname", "connect_timeout",
	                      NULL};
	const char *values[] = {h->dir, port, "app", "app-secret", "app", "10", NULL};
	PGconn *c;

	snprintf(port, sizeof(port), "%d", h->port);
	c = PQconnectdbParams(keys, values, 0);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	PQfinish(c);
}
