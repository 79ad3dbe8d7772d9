/*
 * Query insights (issue 21): one row per statement fingerprint whatever its
 * literals; the prepared (named and unnamed) and simple forms of a statement
 * sharing it; eviction keeping the heaviest fingerprint when query_stats_max
 * is full, the rest folded into the "other" row with no call lost; RESET
 * QUERIES emptying SHOW QUERIES and SHOW QUERY_TYPES; the off switch; the
 * stats log naming the top fingerprints; and /metrics staying bounded and
 * promtool-clean after 10,000 distinct statements.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(queries, .fini = harness_teardown, .timeout = 280);

#define ADMIN_INI   "admin_users = admin\n"
#define ADMIN_USERS "\"admin\" \"admin-secret\"\n"

static struct harness_sluice *start(const char *extra)
{
	char ini[1024];

	snprintf(ini, sizeof(ini), ADMIN_INI "%s", extra);
	return harness_start_sluice_users(ini, ADMIN_USERS);
}

static PGconn *admin(struct harness_sluice *h)
{
	return harness_connect_ok(h, "admin", "admin-secret", "sluice");
}

/* The SHOW QUERIES row whose query is `text` (-1 if none); fails if there are two. */
static int find_row(PGresult *res, const char *text)
{
	int q = PQfnumber(res, "query"), found = -1;

	cr_assert_geq(q, 0, "SHOW QUERIES has a query column");
	for (int i = 0; i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, q) || strcmp(PQgetvalue(res, i, q), text) != 0)
			continue;
		cr_assert_eq(found, -1, "two rows for [%s]", text);
		found = i;
	}
	return found;
}

static long long col(PGresult *res, int row, const char *name)
{
	int c = PQfnumber(res, name);

	cr_assert_geq(c, 0, "no column %s", name);
	return atoll(PQgetvalue(res, row, c));
}

static const char *col_text(PGresult *res, int row, const char *name)
{
	int c = PQfnumber(res, name);

	cr_assert_geq(c, 0, "no column %s", name);
	return PQgetvalue(res, row, c);
}

/* Calls of the row for `text` in a fresh SHOW QUERIES; 0 when absent. */
static long long calls_of(PGconn *a, const char *text)
{
	PGresult *res = harness_exec_ok(a, "SHOW QUERIES");
	int row = find_row(res, text);
	long long n = row >= 0 ? col(res, row, "calls") : 0;

	PQclear(res);
	return n;
}

static long long show_rows(PGconn *a, const char *what)
{
	PGresult *res = harness_exec_ok(a, what);
	long long n = PQntuples(res);

	PQclear(res);
	return n;
}

Test(queries, literals_share_one_row)
{
	struct harness_sluice *h = start("");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app"), *a = admin(h);
	PGresult *res;
	char sql[128];
	int row;

	for (int i = 0; i < 30; i++) {
		snprintf(sql, sizeof(sql), "select %d as  x,\n 'v%d' as y -- comment %d", i * 7, i,
		         i);
		PQclear(harness_exec_ok(c, sql));
	}
	/* Statements finish on the server's reply, before the client reads it: poll. */
	cr_assert(harness_wait_for(calls_of(a, "select ? as x, ? as y") == 30, 20),
	          "30 calls of one fingerprint, got %lld", calls_of(a, "select ? as x, ? as y"));
	res = harness_exec_ok(a, "SHOW QUERIES");
	row = find_row(res, "select ? as x, ? as y");
	cr_assert_eq(col(res, row, "errors"), 0);
	cr_assert_eq(col(res, row, "rows"), 30);
	cr_assert_str_eq(col_text(res, row, "database"), "app");
	cr_assert_str_eq(col_text(res, row, "user"), "app");
	cr_assert_str_eq(col_text(res, row, "tenant"), "default");
	cr_assert_str_eq(col_text(res, row, "query_type"), "select");
	cr_assert_eq(strlen(col_text(res, row, "fingerprint")), 16);
	cr_assert_geq(col(res, row, "total_us"), col(res, row, "p50_us"));
	cr_assert_leq(col(res, row, "p50_us"), col(res, row, "p99_us"));
	cr_assert_gt(col(res, row, "p99_us"), 0);
	PQclear(res);

	/* Errors count against their statement; the type follows the first keyword. */
	PQclear(PQexec(c, "select 1/0"));
	PQclear(PQexec(c, "select 2/0"));
	/* A transaction keeps its server: the temporary table is there for the insert. */
	PQclear(harness_exec_ok(c, "begin"));
	PQclear(harness_exec_ok(c, "create temp table qt(a int) on commit drop"));
	PQclear(harness_exec_ok(c, "insert into qt values (1), (2), (3)"));
	PQclear(harness_exec_ok(c, "commit"));
	res = harness_exec_ok(a, "SHOW QUERIES");
	row = find_row(res, "select ?/?");
	cr_assert_eq(col(res, row, "calls"), 2);
	cr_assert_eq(col(res, row, "errors"), 2);
	cr_assert_str_eq(col_text(res, find_row(res, "create temp table qt(a int) on commit drop"),
	                          "query_type"),
	                 "ddl");
	cr_assert_str_eq(col_text(res, find_row(res, "begin"), "query_type"), "utility");
	row = find_row(res, "insert into qt values (?), (?), (?)");
	cr_assert_str_eq(col_text(res, row, "query_type"), "insert");
	cr_assert_eq(col(res, row, "rows"), 3);
	PQclear(res);

	res = harness_exec_ok(a, "SHOW QUERY_TYPES");
	cr_assert_eq(PQntuples(res), 7);
	cr_assert_str_eq(col_text(res, 0, "query_type"), "select");
	cr_assert_eq(col(res, 0, "calls"), 32);
	cr_assert_eq(col(res, 0, "errors"), 2);
	cr_assert_str_eq(col_text(res, 1, "query_type"), "insert");
	cr_assert_eq(col(res, 1, "calls"), 1);
	cr_assert_str_eq(col_text(res, 4, "query_type"), "ddl");
	cr_assert_eq(col(res, 4, "calls"), 1);
	cr_assert_str_eq(col_text(res, 5, "query_type"), "utility");
	cr_assert_eq(col(res, 5, "calls"), 2);
	PQclear(res);
	PQfinish(a);
	PQfinish(c);
}

/*
 * A negative number is one literal where Postgres folds the sign into the
 * constant (pg_stat_statements shows `x + -5` as `x + $1`): pgbench's
 * `abalance + :delta`, with deltas of both signs, is one statement, not two.
 * Two statements that differ only in their 16th byte alternate, as
 * pgbench's UPDATEs do.
 */
Test(queries, a_negative_number_is_one_literal)
{
	struct harness_sluice *h = start("");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app"), *a = admin(h);
	char sql[128];

	for (int i = 0; i < 40; i++) {
		snprintf(sql, sizeof(sql), "select 1000 + %d as delta_%c where %d > -5",
		         i % 3 == 0 ? -i : i, i % 2 == 0 ? 'a' : 'b', i);
		PQclear(harness_exec_ok(c, sql));
	}
	cr_assert(harness_wait_for(calls_of(a, "select ? + ? as delta_a where ? > ?") == 20 &&
	                               calls_of(a, "select ? + ? as delta_b where ? > ?") == 20,
	                           20),
	          "20 calls each, got %lld and %lld",
	          calls_of(a, "select ? + ? as delta_a where ? > ?"),
	          calls_of(a, "select ? + ? as delta_b where ? > ?"));
	cr_assert_eq(calls_of(a, "select ? + -? as delta_a where ? > ?"), 0);
	cr_assert_eq(calls_of(a, "select ? + ? as delta_a where ? > -?"), 0);
	PQfinish(a);
	PQfinish(c);
}

Test(queries, prepared_and_simple_forms_share_a_fingerprint)
{
	struct harness_sluice *h = start("");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app"), *a = admin(h);
	const char *params[1] = {"5"};
	PGresult *res;
	char fp[17];
	int row;

	PQclear(harness_exec_ok(c, "select 40 + 2 as answer"));
	res = PQprepare(c, "named", "select 41 + 1 as answer", 0, NULL);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
	PQclear(res);
	for (int i = 0; i < 4; i++) {
		res = PQexecPrepared(c, "named", 0, NULL, NULL, NULL, 0);
		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
		PQclear(res);
	}
	/* The unnamed statement (PQexecParams: Parse "", Bind, Execute). */
	for (int i = 0; i < 3; i++) {
		res = PQexecParams(c, "select 39 + 3 as answer", 0, NULL, NULL, NULL, NULL, 0);
		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
		PQclear(res);
	}
	/* A different statement in between: binding "named" must still be counted as it. */
	res = PQexecParams(c, "select $1::int as other", 1, NULL, params, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
	PQclear(res);
	res = PQexecPrepared(c, "named", 0, NULL, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
	PQclear(res);

	cr_assert(harness_wait_for(calls_of(a, "select ? + ? as answer") == 9, 20),
	          "1 simple + 5 named + 3 unnamed calls, got %lld",
	          calls_of(a, "select ? + ? as answer"));
	res = harness_exec_ok(a, "SHOW QUERIES");
	row = find_row(res, "select ? + ? as answer");
	cr_assert_eq(col(res, row, "rows"), 9);
	snprintf(fp, sizeof(fp), "%s", col_text(res, row, "fingerprint"));
	row = find_row(res, "select $1::int as other");
	cr_assert_geq(row, 0);
	cr_assert_eq(col(res, row, "calls"), 1);
	cr_assert_str_neq(col_text(res, row, "fingerprint"), fp);
	PQclear(res);
	PQfinish(a);
	PQfinish(c);
}

/* Sum of calls over every SHOW QUERIES row, the "other" rows included. */
static long long total_calls(PGconn *a, long long *fingerprints, long long *other)
{
	PGresult *res = harness_exec_ok(a, "SHOW QUERIES");
	long long sum = 0;

	*fingerprints = 0;
	*other = 0;
	for (int i = 0; i < PQntuples(res); i++) {
		sum += col(res, i, "calls");
		if (strcmp(col_text(res, i, "fingerprint"), "other") == 0)
			*other += col(res, i, "calls");
		else
			(*fingerprints)++;
	}
	PQclear(res);
	return sum;
}

Test(queries, eviction_keeps_the_heaviest)
{
	struct harness_sluice *h = start("query_stats_max = 10\n");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app"), *a = admin(h);
	long long fingerprints, other;
	char sql[64];

	for (int i = 0; i < 50; i++)
		PQclear(harness_exec_ok(c, "select 1 as heavy"));
	for (int i = 0; i < 100; i++) {
		snprintf(sql, sizeof(sql), "select 1 as rare_%d", i);
		PQclear(harness_exec_ok(c, sql));
	}
	cr_assert(harness_wait_for(total_calls(a, &fingerprints, &other) == 150, 20),
	          "every call is counted, in a fingerprint's row or in other");
	cr_assert_leq(fingerprints, 10, "query_stats_max = 10, got %lld rows", fingerprints);
	cr_assert_geq(other, 90, "the rare ones were folded into other (%lld)", other);
	cr_assert_eq(calls_of(a, "select ? as heavy"), 50, "the heaviest stays");
	PQfinish(a);
	PQfinish(c);
}

Test(queries, reset_empties)
{
	struct harness_sluice *h = start("");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app"), *a = admin(h);
	PGresult *res;

	for (int i = 0; i < 5; i++)
		PQclear(harness_exec_ok(c, "select 1"));
	cr_assert(harness_wait_for(calls_of(a, "select ?") == 5, 20));
	PQclear(harness_exec_ok(a, "RESET QUERIES"));
	cr_assert_eq(show_rows(a, "SHOW QUERIES"), 0);
	res = harness_exec_ok(a, "SHOW QUERY_TYPES");
	for (int i = 0; i < PQntuples(res); i++)
		cr_assert_eq(col(res, i, "calls"), 0, "%s after RESET",
		             col_text(res, i, "query_type"));
	PQclear(res);
	res = PQexec(a, "RESET ALL");
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "only RESET QUERIES exists");
	PQclear(res);

	PQclear(harness_exec_ok(c, "select 2"));
	cr_assert(harness_wait_for(calls_of(a, "select ?") == 1, 20), "counting starts again");
	PQfinish(a);
	PQfinish(c);
}

Test(queries, off_switch)
{
	struct harness_sluice *h = start("query_stats = off\n");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app"), *a = admin(h);

	for (int i = 0; i < 5; i++)
		PQclear(harness_exec_ok(c, "select 1"));
	/* The console answers after the five replies came: nothing was recorded for them. */
	cr_assert_eq(show_rows(a, "SHOW QUERIES"), 0);
	PQfinish(a);
	PQfinish(c);
}

Test(queries, stats_log_names_the_top)
{
	struct harness_sluice *h = start("stats_period = 1s\n");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	long at = harness_log_size(h);

	PQclear(harness_exec_ok(c, "select 5 as logged"));
	cr_assert(harness_wait_for(harness_log_contains_after(h, at, "top_queries="), 30),
	          "a stats line names the period's top fingerprints");
	PQfinish(c);
}

static int count_lines(const char *body, const char *prefix)
{
	int n = 0;

	for (const char *line = body; line != NULL && *line != '\0';) {
		if (strncmp(line, prefix, strlen(prefix)) == 0)
			n++;
		line = strchr(line, '\n');
		if (line != NULL)
			line++;
	}
	return n;
}

Test(queries, metrics_stay_bounded_and_clean)
{
	struct harness_sluice *h = start("metrics_listen = 127.0.0.1:0\n");
	int port = harness_metrics_port(h);
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	char sql[96], *body;

	/* Ten thousand distinct statements: one query_stats_max table's worth twice over. */
	for (int i = 0; i < 10000; i++) {
		snprintf(sql, sizeof(sql), "select 1 as c%d", i);
		PQclear(harness_exec_ok(c, sql));
	}
	/* Heavy ones whose text needs escaping or is not UTF-8, to reach the top 20. */
	for (int i = 0; i < 300; i++) {
		PQclear(harness_exec_ok(c, "select 1 as \"quo\"\"te\\back\""));
		PQclear(PQexec(c, "select 1 as \"\xff\xfe\""));
	}
	body = harness_metrics(port);
	cr_assert_eq(count_lines(body, "sluice_top_query_calls_total{"), 20);
	cr_assert_eq(count_lines(body, "sluice_top_query_info{"), 20);
	/* A statement is counted when its reply passes through, before the client reads it. */
	cr_assert_eq(harness_metric_sample(
	                 body, "sluice_statement_duration_seconds_count{query_type=\"select\"}"),
	             10600);
	cr_assert_eq(
	    harness_metric_sample(body, "sluice_statement_errors_total{query_type=\"select\"}"),
	    300);
	harness_promtool_check(h, body);
	free(body);
	PQfinish(c);
}
