/*
 * Observability: the latency histograms as /metrics shows them (200 queries
 * of pg_sleep(0.05): exact counts, consistent buckets, p50 >= 50 ms), the
 * output passing `promtool check metrics`, the slow-query log with redacted
 * literals, the stats log in text and JSON, /healthz, and /readyz failing at
 * the start of a SIGTERM drain (before the listeners close when
 * shutdown_delay is set).
 *
 * The HTTP endpoint listens on port 0 and the test reads the port sluice
 * logs, so no port can be taken between choosing and binding.  HTTP is spoken
 * over a plain socket (HTTP/1.0: the reply ends when the server closes).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(observability, .fini = harness_teardown, .timeout = 240);

#define METRICS_INI "metrics_listen = 127.0.0.1:0\n"
#define POOL_LABELS "database=\"app\",user=\"app\",tenant=\"default\""
#define QUERIES     200

static int http_status(int port, const char *path)
{
	struct harness_http_reply r = harness_http_get(port, path);

	free(r.text);
	return r.status;
}

static void run_sleeps(PGconn *c, int n)
{
	for (int i = 0; i < n; i++)
		PQclear(harness_exec_ok(c, "select pg_sleep(0.05)"));
}

/* The `le` bounds sluice exports, in order. */
static const char *const les[] = {
    "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1",     "0.25",   "0.5",     "1",      "2.5",   "5",      "10",    "30",   "60",    "+Inf"};
#define NLES (sizeof(les) / sizeof(les[0]))

static void check_histogram_consistent(const char *body, const char *name, double count)
{
	char series[512];
	double prev = 0;

	for (size_t k = 0; k < NLES; k++) {
		double v;

		snprintf(series, sizeof(series), "%s_bucket{%s,le=\"%s\"}", name, POOL_LABELS,
		         les[k]);
		v = harness_metric_sample(body, series);
		cr_assert_geq(v, 0, "missing %s", series);
		cr_assert_geq(v, prev, "%s is below the bucket before it", series);
		prev = v;
	}
	cr_assert_eq(prev, count, "%s: +Inf bucket %.0f, count %.0f", name, prev, count);
}

/* Where the buckets put the median: (lower le, upper le] in seconds. */
static void median_bounds(const char *body, double count, double *lo, double *hi)
{
	char series[512];

	*lo = 0;
	for (size_t k = 0; k + 1 < NLES; k++) {
		snprintf(series, sizeof(series),
		         "sluice_query_duration_seconds_bucket{%s,le=\"%s\"}", POOL_LABELS, les[k]);
		if (harness_metric_sample(body, series) >= count / 2) {
			*hi = strtod(les[k], NULL);
			return;
		}
		*lo = strtod(les[k], NULL);
	}
	*hi = 1e9;
}

/* The SHOW LATENCY row of the app pool for `kind`; asserts it exists. */
static void latency_row(PGconn *admin, const char *kind, long long *count, long long *p50_us)
{
	PGresult *res = harness_exec_ok(admin, "SHOW LATENCY");
	int db = PQfnumber(res, "database"), user = PQfnumber(res, "user");
	int k = PQfnumber(res, "kind"), n = PQfnumber(res, "count"), p50 = PQfnumber(res, "p50_us");

	cr_assert(db >= 0 && user >= 0 && k >= 0 && n >= 0 && p50 >= 0, "SHOW LATENCY columns");
	cr_assert_geq(PQfnumber(res, "p999_us"), 0);
	for (int i = 0; i < PQntuples(res); i++) {
		if (strcmp(PQgetvalue(res, i, db), "app") == 0 &&
		    strcmp(PQgetvalue(res, i, user), "app") == 0 &&
		    strcmp(PQgetvalue(res, i, k), kind) == 0) {
			*count = atoll(PQgetvalue(res, i, n));
			*p50_us = atoll(PQgetvalue(res, i, p50));
			PQclear(res);
			return;
		}
	}
	cr_assert_fail("SHOW LATENCY has no app/app %s row", kind);
}

Test(observability, histograms_in_metrics)
{
	struct harness_sluice *h = harness_start_sluice_users(
	    METRICS_INI "slow_query_threshold = 0\nadmin_users = admin\nmetrics_percentiles = on",
	    "\"admin\" \"admin-secret\"\n");
	int port = harness_metrics_port(h);
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	struct harness_http_reply r;
	double count, p50, lo, hi;
	char series[512];

	run_sleeps(c, QUERIES);
	r = harness_http_get(port, "/metrics");
	cr_assert_eq(r.status, 200, "/metrics answered %d:\n%s", r.status, r.text);
	cr_assert_not_null(strstr(r.text, "text/plain; version=0.0.4"));

	/* Only the test's queries ran through this pool: the count is exact. */
	count =
	    harness_metric_sample(r.body, "sluice_query_duration_seconds_count{" POOL_LABELS "}");
	cr_assert_eq(count, QUERIES, "query count %.0f, ran %d", count, QUERIES);
	cr_assert_eq(harness_metric_sample(
	                 r.body, "sluice_transaction_duration_seconds_count{" POOL_LABELS "}"),
	             QUERIES);
	cr_assert_eq(harness_metric_sample(r.body, "sluice_transactions_total{" POOL_LABELS "}"),
	             QUERIES);
	cr_assert_eq(harness_metric_sample(r.body, "sluice_queries_total{" POOL_LABELS "}"),
	             QUERIES);
	cr_assert_geq(
	    harness_metric_sample(r.body, "sluice_query_duration_seconds_sum{" POOL_LABELS "}"),
	    QUERIES * 0.05, "the sleeps alone take 10 s");
	check_histogram_consistent(r.body, "sluice_query_duration_seconds", count);
	check_histogram_consistent(r.body, "sluice_transaction_duration_seconds", count);
	check_histogram_consistent(
	    r.body, "sluice_wait_duration_seconds",
	    harness_metric_sample(r.body, "sluice_wait_duration_seconds_count{" POOL_LABELS "}"));
	/* Every sleep lasts at least 50 ms, so no bucket wholly at or below 50 ms holds one. */
	cr_assert_eq(harness_metric_sample(r.body,
	                                   "sluice_query_duration_seconds_bucket{" POOL_LABELS
	                                   ",le=\"0.05\"}"),
	             0);

	/* The histogram's own median: at least 50 ms, and where its buckets say it is. */
	snprintf(series, sizeof(series),
	         "sluice_latency_percentile_seconds{%s,kind=\"query\",percentile=\"50\"}",
	         POOL_LABELS);
	p50 = harness_metric_sample(r.body, series);
	cr_assert_geq(p50, 0.050, "p50 %.6f s is below the 50 ms every query slept", p50);
	median_bounds(r.body, count, &lo, &hi);
	cr_assert(p50 > lo * (1 - 1.0 / 32) && p50 <= hi,
	          "p50 %.6f s is outside its bucket range (%g, %g]", p50, lo, hi);

	/* The console reads the same histograms: 200 queries, each at least 50 ms. */
	{
		PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
		long long n, p50_us;

		latency_row(admin, "query", &n, &p50_us);
		cr_assert_eq(n, QUERIES);
		cr_assert_geq(p50_us, 50000, "SHOW LATENCY p50 %lld us", p50_us);
		cr_assert_leq(p50_us, 10 * 1000000LL, "SHOW LATENCY p50 %lld us", p50_us);
		PQfinish(admin);
	}

	cr_assert_eq(harness_metric_sample(r.body, "sluice_pool_clients_active{" POOL_LABELS "}"),
	             1);
	cr_assert_eq(harness_metric_sample(r.body, "sluice_pool_servers_idle{" POOL_LABELS "}"), 1);
	harness_promtool_check(h, r.body);
	free(r.text);

	r = harness_http_get(port, "/healthz");
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "ok\n");
	free(r.text);
	cr_assert_eq(http_status(port, "/readyz"), 200);
	cr_assert_eq(http_status(port, "/nope"), 404);
	PQfinish(c);
}

/*
 * Queries pipelined in one write are each a request and a transaction in
 * SHOW LATENCY: three, not one.  Since each queued request has its own clock
 * (query_timeout), the figures were kept only for the last of the burst.
 */
Test(observability, pipelined_queries_are_counted_one_by_one)
{
	struct harness_sluice *h =
	    harness_start_sluice_users("admin_users = admin", "\"admin\" \"admin-secret\"\n");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	unsigned char buf[256];
	size_t n = 0;
	long long queries, xacts, p50;

	harness_put_query(buf, &n, "select 1");
	harness_put_query(buf, &n, "select 2");
	harness_put_query(buf, &n, "select 3");
	harness_expect_transcript(
	    c, buf, n, 3,
	    "T D(1) C(SELECT 1) Z(I) T D(2) C(SELECT 1) Z(I) T D(3) C(SELECT 1) "
	    "Z(I) ",
	    "three Queries in one write");
	latency_row(admin, "query", &queries, &p50);
	latency_row(admin, "transaction", &xacts, &p50);
	cr_assert_eq(queries, 3, "%lld requests recorded for three", queries);
	cr_assert_eq(xacts, 3, "%lld transactions recorded for three", xacts);
	PQfinish(admin);
	PQfinish(c);
}

/* Whether `s` is valid UTF-8 (the text format's labels must be). */
static bool valid_utf8(const unsigned char *s)
{
	while (*s != '\0') {
		size_t need = *s < 0x80             ? 0
		              : (*s & 0xe0) == 0xc0 ? 1
		              : (*s & 0xf0) == 0xe0 ? 2
		              : (*s & 0xf8) == 0xf0 ? 3
		                                    : 9;

		if (need == 9)
			return false;
		for (s++; need > 0; need--, s++)
			if ((*s & 0xc0) != 0x80)
				return false;
	}
	return true;
}

/*
 * A client picks its database name through "*": one that is not UTF-8, or
 * long enough to fill the label buffer, broke the whole scrape (a raw 0xe9
 * byte; a label set cut after its comma, `database="...",,le=`).  Names are
 * made valid UTF-8 and cut by characters.
 */
Test(observability, a_clients_database_name_cannot_break_the_scrape)
{
	struct harness_sluice *h = harness_start_sluice(
	    METRICS_INI "[databases]\n* = host=@PGHOST@ port=@PGPORT@ dbname=app\n");
	int port = harness_metrics_port(h);
	char dbname[1200], portstr[16];
	const char *keys[] = {"host", "port", "user", "password", "dbname", NULL};
	const char *values[] = {"127.0.0.1", portstr, "app", "app-secret", dbname, NULL};
	struct harness_http_reply r;
	PGconn *c;

	snprintf(portstr, sizeof(portstr), "%d", h->port);
	memcpy(dbname, "caf\xe9", 4);
	memset(dbname + 4, 'x', sizeof(dbname) - 5);
	dbname[sizeof(dbname) - 1] = '\0';
	c = PQconnectdbParams(keys, values, 0);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	r = harness_http_get(port, "/metrics");
	cr_assert_eq(r.status, 200);
	cr_assert(strstr(r.body, "database=\"caf?xxx") != NULL, "the name was not cleaned");
	cr_assert_null(strstr(r.body, ",,"), "a label set cut after its comma");
	cr_assert(valid_utf8((const unsigned char *)r.body), "/metrics is not UTF-8");
	free(r.text);
	PQfinish(c);
}

Test(observability, errors_by_sqlstate_class)
{
	struct harness_sluice *h = harness_start_sluice(METRICS_INI);
	int port = harness_metrics_port(h);
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	struct harness_http_reply r;

	PQclear(PQexec(c, "select 1/0"));            /* 22012 */
	PQclear(PQexec(c, "selec"));                 /* 42601 */
	PQclear(PQexec(c, "select * from no_such")); /* 42P01 */
	r = harness_http_get(port, "/metrics");
	cr_assert_eq(r.status, 200);
	cr_assert_eq(
	    harness_metric_sample(r.body, "sluice_errors_total{" POOL_LABELS ",class=\"22\"}"), 1);
	cr_assert_eq(
	    harness_metric_sample(r.body, "sluice_errors_total{" POOL_LABELS ",class=\"42\"}"), 2);
	cr_assert_eq(
	    harness_metric_sample(r.body, "sluice_ratelimit_rejections_total{" POOL_LABELS "}"), 0);
	harness_promtool_check(h, r.body);
	free(r.text);
	PQfinish(c);
}

/* Sum of the counts in a compact "idx:count,..." text. */
static long bucket_total(const char *text)
{
	long total = 0;

	while (*text != '\0' && *text != ' ' && *text != '"') {
		const char *colon = strchr(text, ':');

		cr_assert_not_null(colon);
		total += strtol(colon + 1, (char **)&text, 10);
		if (*text == ',')
			text++;
	}
	return total;
}

Test(observability, slow_query_log_redacts_literals)
{
	struct harness_sluice *h = harness_start_sluice("slow_query_threshold = 20ms");
	PGconn *c;
	long offset;

	setenv("PGAPPNAME", "obs-test", 1);
	c = harness_connect_ok(h, "app", "app-secret", "app");
	unsetenv("PGAPPNAME");
	offset = harness_log_size(h);
	PQclear(harness_exec_ok(c, "select pg_sleep(0.05), 'top-secret-literal' as s, "
	                           "98765432123 as n"));
	cr_assert(harness_wait_for(harness_log_contains_after(h, offset, "slow query"), 20),
	          "no slow-query line");
	cr_assert(
	    harness_log_contains_after(h, offset, "query=\"select pg_sleep(?), ? as s, ? as n\""));
	cr_assert(harness_log_contains_after(h, offset, "application_name=obs-test"));
	cr_assert(harness_log_contains_after(h, offset, "tenant=default"));
	cr_assert(harness_log_contains_after(h, offset, "app@app"));
	cr_assert_not(harness_log_contains(h, "top-secret-literal"), "a literal reached the log");
	cr_assert_not(harness_log_contains(h, "98765432123"), "a literal reached the log");

	/* log_query_literals is live: after a reload the text is logged as sent. */
	harness_write_ini(h, "slow_query_threshold = 20ms\nlog_query_literals = on");
	offset = harness_log_size(h);
	harness_signal(h, SIGHUP);
	cr_assert(
	    harness_wait_for(harness_log_contains_after(h, offset, "configuration reloaded"), 20));
	PQclear(harness_exec_ok(c, "select pg_sleep(0.05), 'visible-literal' as s"));
	cr_assert(harness_wait_for(harness_log_contains_after(h, offset, "visible-literal"), 20),
	          "log_query_literals = on did not keep the literal");
	PQfinish(c);
}

#define QUERY_ONE "\"query\":{\"n\":1,\"mean_us\":"

Test(observability, stats_and_slow_log_in_json)
{
	struct harness_sluice *h =
	    harness_start_sluice("log_format = json\nstats_period = 1s\n"
	                         "slow_query_threshold = 20ms\nslow_query_max_length = 40");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	char *log, *line, *b;
	long offset = harness_log_size(h);

	PQclear(
	    harness_exec_ok(c, "select pg_sleep(0.05), 'abcdefghijklmnopqrstuvwxyz' as long_name"));
	cr_assert(
	    harness_wait_for(harness_log_contains_after(h, offset, "\"event\":\"stats\""), 20),
	    "no stats line in JSON");
	cr_assert(harness_wait_for(
	    harness_log_contains_after(h, offset, "\"event\":\"slow_query\""), 20));
	/* 40 bytes of text at most, redacted, and marked truncated. */
	cr_assert(harness_log_contains_after(
	    h, offset, "\"query\":\"select pg_sleep(?), ?\",\"truncated\":true"));
	/* A stats line with the query: its compact buckets add up to its count. */
	cr_assert(harness_wait_for(harness_log_contains_after(h, offset, QUERY_ONE), 20));
	log = harness_read_file(h->log_path);
	line = strstr(log + offset, QUERY_ONE);
	b = strstr(line, "\"b\":\"");
	cr_assert(b != NULL && b < strchr(line, '}'), "no buckets in the query object");
	cr_assert_eq(bucket_total(b + 5), 1);
	free(log);
	PQfinish(c);
}

Test(observability, stats_log_text)
{
	struct harness_sluice *h = harness_start_sluice("stats_period = 1s");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	long offset = harness_log_size(h);

	PQclear(harness_exec_ok(c, "select 1"));
	cr_assert(harness_wait_for(harness_log_contains_after(h, offset, " query_n=1 "), 20),
	          "no stats line with the query");
	cr_assert(harness_log_contains_after(h, offset, "stats tenant=default"));
	cr_assert(harness_log_contains_after(h, offset, " query_b="));
	cr_assert(harness_log_contains_after(h, offset, " xacts=1 "));
	PQfinish(c);
}

Test(observability, readyz_flips_during_sigterm_drain)
{
	struct harness_sluice *h = harness_start_sluice(METRICS_INI "shutdown_timeout = 60s");
	int port = harness_metrics_port(h);
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	int rc;

	PQclear(harness_exec_ok(c, "begin"));
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	cr_assert_eq(http_status(port, "/readyz"), 200, "not ready with a live server");
	harness_signal(h, SIGTERM);
	cr_assert(harness_wait_for(http_status(port, "/readyz") == 503, 20),
	          "/readyz still ready during the drain");
	cr_assert(harness_sluice_alive(h), "sluice exited with a transaction open");
	cr_assert_eq(http_status(port, "/healthz"), 200, "alive while draining");
	/* The open transaction finishes, then sluice exits cleanly. */
	cr_assert_eq(harness_query_int(c, "select 2"), 2);
	PQclear(harness_exec_ok(c, "commit"));
	PQfinish(c);
	rc = harness_stop_sluice(h, 0, 30);
	cr_assert_eq(rc, 0, "exit status %d after draining", rc);
}

static bool connects(struct harness_sluice *h)
{
	PGconn *c = harness_connect(h, "app", "app-secret", "app");
	bool ok = PQstatus(c) == CONNECTION_OK;

	PQfinish(c);
	return ok;
}

Test(observability, shutdown_delay_keeps_accepting_while_unready)
{
	struct harness_sluice *h = harness_start_sluice(METRICS_INI "shutdown_delay = 600s");
	int port = harness_metrics_port(h);
	PGconn *c;

	cr_assert_eq(http_status(port, "/readyz"), 200);
	harness_signal(h, SIGTERM);
	cr_assert(harness_wait_for(http_status(port, "/readyz") == 503, 20));
	/* Unready, but the delay has not run out: new clients are still served. */
	c = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(c, "select 3"), 3);
	PQfinish(c);
	cr_assert_eq(harness_stop_sluice(h, SIGINT, 20), 0);
}

Test(observability, shutdown_delay_then_listeners_close)
{
	struct harness_sluice *h =
	    harness_start_sluice(METRICS_INI "shutdown_delay = 1s\nshutdown_timeout = 60s");
	int port = harness_metrics_port(h);
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");

	PQclear(harness_exec_ok(c, "begin"));
	harness_signal(h, SIGTERM);
	cr_assert(harness_wait_for(http_status(port, "/readyz") == 503, 20));
	cr_assert(harness_wait_for(!connects(h), 30), "listeners never closed after the delay");
	cr_assert_eq(harness_query_int(c, "select 4"), 4);
	PQclear(harness_exec_ok(c, "commit"));
	PQfinish(c);
	cr_assert_eq(harness_stop_sluice(h, 0, 30), 0);
}

Test(observability, readyz_probes_the_upstream)
{
	/* No server connection yet: readiness asks Postgres directly. */
	struct harness_sluice *h = harness_start_sluice(METRICS_INI);
	int port = harness_metrics_port(h);
	struct harness_sluice *dead;
	struct harness_http_reply r;

	cr_assert_eq(http_status(port, "/readyz"), 200, "Postgres is up: ready");
	dead = harness_start_sluice(METRICS_INI "[databases]\n"
	                                        "app = host=127.0.0.1 port=1 dbname=app\n"
	                                        "other = host=127.0.0.1 port=1 dbname=other\n");
	r = harness_http_get(harness_metrics_port(dead), "/readyz");
	cr_assert_eq(r.status, 503, "ready with no reachable database:\n%s", r.text);
	cr_assert_str_eq(r.body, "no database reachable\n");
	free(r.text);
}

/* A SHOW POOLS column of the app/app pool, as a number. */
static double pools_column(PGconn *admin, const char *column)
{
	PGresult *res = harness_exec_ok(admin, "SHOW POOLS");
	int db = PQfnumber(res, "database"), user = PQfnumber(res, "user");
	int col = PQfnumber(res, column);

	cr_assert_geq(col, 0, "SHOW POOLS has no %s", column);
	for (int i = 0; i < PQntuples(res); i++) {
		if (strcmp(PQgetvalue(res, i, db), "app") == 0 &&
		    strcmp(PQgetvalue(res, i, user), "app") == 0) {
			double v = strtod(PQgetvalue(res, i, col), NULL);

			PQclear(res);
			return v;
		}
	}
	cr_assert_fail("SHOW POOLS has no app/app row");
	return -1;
}

static double metric(int port, const char *series)
{
	struct harness_http_reply r = harness_http_get(port, "/metrics");
	double v = harness_metric_sample(r.body, series);

	free(r.text);
	return v;
}

/*
 * What pgbouncer_exporter's dashboards read: caps, the longest wait, pause
 * and disable per database, the process_* series; the server columns agree
 * with SHOW POOLS (sv_used included); percentiles only when asked for.
 */
Test(observability, metrics_for_dashboards)
{
	struct harness_sluice *h = harness_start_sluice_users(
	    METRICS_INI "admin_users = admin\ndefault_pool_size = 1\nmax_client_conn = 77\n"
	                "max_db_connections = 5\nquery_wait_timeout = 0",
	    "\"admin\" \"admin-secret\"\n");
	int port = harness_metrics_port(h);
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	static const char *const pairs[][2] = {
	    {"sv_active", "sluice_pool_servers_active"},
	    {"sv_idle", "sluice_pool_servers_idle"},
	    {"sv_used", "sluice_pool_servers_used"},
	    {"sv_tested", "sluice_pool_servers_tested"},
	    {"sv_login", "sluice_pool_servers_login"},
	    {"cl_waiting", "sluice_pool_clients_waiting"},
	};
	struct harness_http_reply r;
	char series[256];
	double maxwait, now = (double)time(NULL);

	/* a holds the only server; b queues behind it. */
	PQclear(harness_exec_ok(a, "begin"));
	PQclear(harness_exec_ok(a, "select 1"));
	cr_assert(PQsendQuery(b, "select 2"));
	cr_assert(harness_wait_for(
	    metric(port, "sluice_pool_clients_waiting{" POOL_LABELS "}") == 1, 20));
	cr_assert(
	    harness_wait_for(metric(port, "sluice_pool_maxwait_seconds{" POOL_LABELS "}") > 0, 20));

	/* Nothing moves while a holds the server and b waits: both views must agree. */
	r = harness_http_get(port, "/metrics");
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		snprintf(series, sizeof(series), "%s{%s}", pairs[i][1], POOL_LABELS);
		cr_assert_eq(harness_metric_sample(r.body, series),
		             pools_column(admin, pairs[i][0]), "%s and SHOW POOLS' %s differ",
		             pairs[i][1], pairs[i][0]);
	}
	cr_assert_eq(harness_metric_sample(r.body, "sluice_pool_servers_active{" POOL_LABELS "}"),
	             1);
	/* SHOW POOLS, asked later, sees at least the wait /metrics saw. */
	maxwait = harness_metric_sample(r.body, "sluice_pool_maxwait_seconds{" POOL_LABELS "}");
	cr_assert_geq(pools_column(admin, "maxwait") + pools_column(admin, "maxwait_us") / 1e6,
	              maxwait);
	cr_assert_eq(harness_metric_sample(r.body, "sluice_pool_size{" POOL_LABELS "}"), 1);
	cr_assert_eq(harness_metric_sample(r.body, "sluice_pool_min_size{" POOL_LABELS "}"), 0);
	cr_assert_eq(harness_metric_sample(r.body, "sluice_max_client_conn"), 77);
	cr_assert_eq(
	    harness_metric_sample(r.body, "sluice_database_max_connections{database=\"app\"}"), 5);
	cr_assert_eq(harness_metric_sample(r.body, "sluice_database_paused{database=\"app\"}"), 0);
	cr_assert_eq(harness_metric_sample(r.body, "sluice_database_disabled{database=\"app\"}"),
	             0);
	cr_assert_gt(harness_metric_sample(r.body, "process_resident_memory_bytes"), 0);
	cr_assert_gt(harness_metric_sample(r.body, "process_open_fds"), 0);
	cr_assert_geq(harness_metric_sample(r.body, "process_max_fds"),
	              harness_metric_sample(r.body, "process_open_fds"));
	cr_assert_geq(harness_metric_sample(r.body, "process_cpu_seconds_total"), 0);
	cr_assert_leq(harness_metric_sample(r.body, "process_start_time_seconds"), now + 1);
	cr_assert_gt(harness_metric_sample(r.body, "process_start_time_seconds"), now - 600);
	cr_assert_null(strstr(r.body, "sluice_latency_percentile_seconds"),
	               "percentile gauges without metrics_percentiles");
	harness_promtool_check(h, r.body);
	free(r.text);

	PQclear(harness_exec_ok(a, "commit"));
	PQclear(PQgetResult(b));
	cr_assert_null(PQgetResult(b));
	cr_assert(harness_wait_for(
	    metric(port, "sluice_pool_maxwait_seconds{" POOL_LABELS "}") == 0, 20));

	PQclear(harness_exec_ok(admin, "DISABLE app"));
	cr_assert(
	    harness_wait_for(metric(port, "sluice_database_disabled{database=\"app\"}") == 1, 20));
	PQclear(harness_exec_ok(admin, "ENABLE app"));
	PQclear(harness_exec_ok(admin, "PAUSE app"));
	cr_assert(
	    harness_wait_for(metric(port, "sluice_database_paused{database=\"app\"}") == 1, 20));
	PQclear(harness_exec_ok(admin, "RESUME app"));
	cr_assert(
	    harness_wait_for(metric(port, "sluice_database_paused{database=\"app\"}") == 0, 20));
	PQfinish(admin);
	PQfinish(a);
	PQfinish(b);
}
