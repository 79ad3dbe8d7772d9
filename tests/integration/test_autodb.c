/*
 * The "*" catch-all database: a made-up name a client asks for costs sluice
 * nothing once the client is gone (its pool is freed at once when Postgres
 * answers 3D000, so SHOW DATABASES, SHOW POOLS, /metrics and the process
 * size return to where they were), unused pools of real databases reached
 * through "*" are freed after autodb_idle_timeout, max_auto_databases
 * refuses one name too many with 53400, and a real database reached through
 * "*" keeps its pool, and its server connection, across many logins.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(autodb, .fini = harness_teardown, .timeout = 280);

#define USERS "\"admin\" \"admin-secret\"\n"
/*
 * Thousands of logins from 127.0.0.1 in a row: no per-address rate in the
 * way, and md5 rather than SCRAM (whose key derivation, on both sides of
 * both logins, would take most of the test's time).
 */
#define BASE_INI                                                                                   \
	"admin_users = admin\n"                                                                    \
	"connect_rate_per_ip = 0\n"                                                                \
	"auth_type = md5\n"
#define MADE_UP 2000
#define WAIT_S  30.0
/*
 * Growth allowed while 2,000 made-up names come and go.  Without the fix
 * each name kept a pool of some 30 kB (four latency histograms), its quotas
 * and a SHOW DATABASES row: 2,000 names grew the process by about 20 MB.
 * Freed at once, only one pool at a time exists, so what remains is noise
 * from the allocator (arenas, buffers reused at other sizes): 2 MB is a
 * tenth of the leak and ample for that noise.
 */
#define RSS_SLACK_KB 2048

static struct harness_sluice *start(const char *extra)
{
	char ini[2048];

	snprintf(ini, sizeof(ini), "%s%s", BASE_INI, extra);
	return harness_start_sluice_users(ini, USERS);
}

static PGconn *admin(struct harness_sluice *h)
{
	return harness_connect_ok(h, "admin", "admin-secret", "sluice");
}

static PGresult *show(PGconn *a, const char *what)
{
	char sql[64];
	PGresult *res;

	snprintf(sql, sizeof(sql), "SHOW %s", what);
	res = PQexec(a, sql);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", sql,
	             PQresultErrorMessage(res));
	return res;
}

/* SHOW DATABASES' names, comma-separated in its order; malloc'd. */
static char *database_names(PGconn *a)
{
	PGresult *res = show(a, "DATABASES");
	int col = PQfnumber(res, "name");
	size_t cap = 256, len = 0;
	char *out = calloc(1, cap);

	for (int i = 0; i < PQntuples(res); i++) {
		const char *name = PQgetvalue(res, i, col);

		while (len + strlen(name) + 2 > cap)
			out = realloc(out, cap *= 2);
		len += (size_t)sprintf(out + len, "%s%s", i > 0 ? "," : "", name);
	}
	PQclear(res);
	return out;
}

static int show_rows(PGconn *a, const char *what)
{
	PGresult *res = show(a, what);
	int n = PQntuples(res);

	PQclear(res);
	return n;
}

/* Is `name` a row of SHOW DATABASES? */
static bool database_listed(PGconn *a, const char *name)
{
	char *names = database_names(a), *save = NULL;
	bool found = false;

	for (char *n = strtok_r(names, ",", &save); n != NULL && !found;
	     n = strtok_r(NULL, ",", &save))
		found = strcmp(n, name) == 0;
	free(names);
	return found;
}

static bool databases_are(PGconn *a, const char *expected)
{
	char *names = database_names(a);
	bool same = strcmp(names, expected) == 0;

	free(names);
	return same;
}

/* Lines of a GET /metrics body. */
static int metrics_lines(int port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
	                           .sin_port = htons((uint16_t)port),
	                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 20};
	const char *request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
	bool in_body = false;
	int lines = 0, fd = socket(AF_INET, SOCK_STREAM, 0);
	char buf[65536], prev[4] = "";
	ssize_t n;

	cr_assert(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0, "connect to /metrics");
	harness_send_all(fd, request, strlen(request));
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			/* The body starts after the blank line that ends the headers. */
			memmove(prev, prev + 1, 2);
			prev[2] = buf[i];
			if (!in_body && buf[i] == '\n' && strcmp(prev, "\n\r\n") == 0)
				in_body = true;
			else if (in_body && buf[i] == '\n')
				lines++;
		}
	}
	close(fd);
	cr_assert(in_body, "no /metrics reply");
	return lines;
}

/*
 * Logins to `count` database names that exist nowhere: each must get
 * Postgres' 3D000.  As md5user, whom Postgres also checks with md5.
 */
static void log_in_to_made_up_names(struct harness_sluice *h, const char *prefix, int count)
{
	for (int i = 0; i < count; i++) {
		char name[64], state[6];

		snprintf(name, sizeof(name), "%s_%d", prefix, i);
		cr_assert(harness_connect_fails(h, "md5user", "md5-secret", name, state),
		          "a login to %s succeeded", name);
		cr_assert_str_eq(state, "3D000", "login to %s", name);
	}
}

Test(autodb, made_up_names_leave_nothing_behind)
{
	struct harness_sluice *h = start("workers = 2\n"
	                                 "metrics_listen = 127.0.0.1:0\n"
	                                 "[databases]\n"
	                                 "* = host=@PGHOST@ port=@PGPORT@\n");
	PGconn *a = admin(h);
	int port = harness_metrics_port(h);
	char *dbs = database_names(a);
	int rows = show_rows(a, "DATABASES"), pools = show_rows(a, "POOLS");
	int lines = metrics_lines(port);
	long rss_before, rss_after;

	/* A few first, so one-time allocations (thread arenas, buffers) are in the baseline. */
	log_in_to_made_up_names(h, "warmup", 20);
	cr_assert(harness_wait_for(databases_are(a, dbs) && show_rows(a, "POOLS") == pools, WAIT_S),
	          "made-up names stayed in SHOW DATABASES or SHOW POOLS after the warm-up");
	rss_before = harness_rss_kb(h);

	log_in_to_made_up_names(h, "madeup", MADE_UP);
	cr_assert(harness_wait_for(databases_are(a, dbs), WAIT_S),
	          "SHOW DATABASES kept made-up names: %d rows, %d before",
	          show_rows(a, "DATABASES"), rows);
	cr_assert(harness_wait_for(show_rows(a, "POOLS") == pools, WAIT_S),
	          "SHOW POOLS has %d rows, %d before", show_rows(a, "POOLS"), pools);
	cr_assert_eq(metrics_lines(port), lines, "/metrics grew from %d lines", lines);
	rss_after = harness_rss_kb(h);
	cr_log_info("%d made-up names: RSS %ld kB -> %ld kB, /metrics %d lines", MADE_UP,
	            rss_before, rss_after, lines);
	if (harness_rss_is_meaningful())
		cr_assert_leq(rss_after - rss_before, RSS_SLACK_KB,
		              "RSS grew from %ld kB to %ld kB over %d made-up names", rss_before,
		              rss_after, MADE_UP);
	cr_assert(harness_log_contains(h, "pool freed: the database does not exist"));
	free(dbs);
	PQfinish(a);
}

/*
 * The soak (bench/soak.sh) found this: while Postgres cannot be reached (or
 * is too slow for server_connect_timeout), every made-up name got 08006 and
 * kept its pool for autodb_idle_timeout, 651 of them and 60 MB of RSS after
 * 2,000 logins.  A name no server ever logged in to is freed with its last
 * client, whatever the error.
 */
Test(autodb, made_up_names_while_postgres_is_unreachable_leave_nothing_behind)
{
	/* Nothing listens on port 1: every server connect is refused at once. */
	struct harness_sluice *h = start("[databases]\n"
	                                 "real = host=@PGHOST@ port=@PGPORT@ dbname=app\n"
	                                 "* = host=127.0.0.1 port=1\n");
	PGconn *a = admin(h);
	char *dbs = database_names(a);
	int pools = show_rows(a, "POOLS");

	for (int i = 0; i < 50; i++) {
		char name[64], state[6];

		snprintf(name, sizeof(name), "unreachable_%d", i);
		cr_assert(harness_connect_fails(h, "md5user", "md5-secret", name, state));
		cr_assert_str_eq(state, "08006", "login to %s", name);
	}
	cr_assert(harness_wait_for(databases_are(a, dbs) && show_rows(a, "POOLS") == pools, WAIT_S),
	          "SHOW DATABASES kept unreachable made-up names: %d rows",
	          show_rows(a, "DATABASES"));
	free(dbs);
	PQfinish(a);
}

/*
 * The soak's case (bench/soak.sh, 12 of 2,000 names after a SIGSTOP of
 * Postgres): once the host's breaker is open, made-up names are refused
 * before any connect (08006 with the next try in a HINT); their pools must go
 * with their clients too, not wait for autodb_idle_timeout.  A breaker lives
 * while some pool uses its host, so "down", warmed by min_pool_size (which
 * needs its user=), keeps it and the refusals alive, as the soak's configured
 * databases do.
 */
Test(autodb, made_up_names_refused_by_an_open_breaker_leave_nothing_behind)
{
	struct harness_sluice *h =
	    start("server_breaker_backoff = 60s\n"
	          "server_breaker_backoff_max = 60s\n"
	          "[databases]\n"
	          "real = host=@PGHOST@ port=@PGPORT@ dbname=app\n"
	          "down = host=127.0.0.1 port=1 user=md5user min_pool_size=1\n"
	          "* = host=127.0.0.1 port=1\n");
	PGconn *a = admin(h), *c;
	char *dbs = database_names(a);
	int pools = show_rows(a, "POOLS");

	for (int i = 0; i < 20; i++) {
		char name[64];

		snprintf(name, sizeof(name), "behind_breaker_%d", i);
		c = harness_connect(h, "md5user", "md5-secret", name);
		cr_assert_neq(PQstatus(c), CONNECTION_OK, "login to %s", name);
		/* The first opens the breaker; the rest are refused by it. */
		if (i > 0)
			cr_assert(strstr(PQerrorMessage(c), "next try") != NULL,
			          "login to %s not refused by the breaker: %s", name,
			          PQerrorMessage(c));
		PQfinish(c);
	}
	/* Refused before any connect, not after one more failed login. */
	cr_assert(!harness_log_contains(h, "@behind_breaker_19 tenant=default server login failed"),
	          "behind_breaker_19 still tried the host");
	cr_assert(harness_wait_for(databases_are(a, dbs) && show_rows(a, "POOLS") == pools, WAIT_S),
	          "SHOW DATABASES kept names refused by the breaker: %d rows",
	          show_rows(a, "DATABASES"));
	free(dbs);
	PQfinish(a);
}

/* A login that must be refused by max_auto_databases. */
static void refused_over_cap(struct harness_sluice *h, const char *db)
{
	PGconn *c = harness_connect(h, "app", "app-secret", db);
	char state[6];

	cr_assert_neq(PQstatus(c), CONNECTION_OK, "%s was accepted past max_auto_databases", db);
	cr_assert(strstr(PQerrorMessage(c), "max_auto_databases (3)") != NULL,
	          "refusal of %s does not name the cap: %s", db, PQerrorMessage(c));
	PQfinish(c);
	cr_assert(harness_connect_fails(h, "app", "app-secret", db, state));
	cr_assert_str_eq(state, "53400");
}

static bool connects(struct harness_sluice *h, const char *db)
{
	PGconn *c = harness_connect(h, "app", "app-secret", db);
	bool ok = PQstatus(c) == CONNECTION_OK;

	PQfinish(c);
	return ok;
}

Test(autodb, max_auto_databases_refuses_one_name_too_many)
{
	/* Every name reaches the real database app, so its clients can stay logged in. */
	struct harness_sluice *h = start("workers = 2\n"
	                                 "max_auto_databases = 3\n"
	                                 "autodb_idle_timeout = 1s\n"
	                                 "server_idle_timeout = 1s\n"
	                                 "[databases]\n"
	                                 "* = host=@PGHOST@ port=@PGPORT@ dbname=app\n");
	PGconn *a = admin(h), *held[3];

	for (int i = 0; i < 3; i++) {
		char name[32];

		snprintf(name, sizeof(name), "auto_%d", i);
		held[i] = harness_connect_ok(h, "app", "app-secret", name);
		cr_assert_eq(harness_query_int(held[i], "select 1"), 1);
	}
	refused_over_cap(h, "auto_3");
	/* A name that already has a pool is not a new one. */
	PQfinish(harness_connect_ok(h, "app", "app-secret", "auto_0"));
	cr_assert_not(database_listed(a, "auto_3"));

	for (int i = 0; i < 3; i++)
		PQfinish(held[i]);
	/* Their servers go after server_idle_timeout, their pools autodb_idle_timeout later. */
	cr_assert(harness_wait_for(connects(h, "auto_3"), WAIT_S),
	          "a new name was still refused after the others' clients left");
	cr_assert(harness_wait_for(!database_listed(a, "auto_0") && !database_listed(a, "auto_1") &&
	                               !database_listed(a, "auto_2"),
	                           WAIT_S),
	          "names unused for autodb_idle_timeout stayed in SHOW DATABASES");
	PQfinish(a);
}

Test(autodb, real_database_keeps_its_pool_across_logins)
{
	/* One worker, so every login finds the same pool and its one idle server. */
	struct harness_sluice *h = start("workers = 1\n"
	                                 "[databases]\n"
	                                 "* = host=@PGHOST@ port=@PGPORT@\n");
	PGconn *a = admin(h);
	long long first_pid = -1;

	for (int i = 0; i < 200; i++) {
		PGconn *c = harness_connect_ok(h, "app", "app-secret", "postgres");
		long long pid = harness_query_int(c, "select pg_backend_pid()");
		char prefix[32];

		PQfinish(c);
		if (first_pid < 0)
			first_pid = pid;
		cr_assert_eq(pid, first_pid, "login %d got a new server connection", i);
		/* A made-up name in between must not disturb it. */
		snprintf(prefix, sizeof(prefix), "between%d", i);
		log_in_to_made_up_names(h, prefix, 1);
	}
	cr_assert(harness_wait_for(databases_are(a, "app,other,postgres"), WAIT_S),
	          "SHOW DATABASES is not app, other and postgres");
	PQfinish(a);
}
