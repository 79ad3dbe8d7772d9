/*
 * The admin console: every SHOW answers with PgBouncer's columns (sluice's
 * own appended) and values that match what the test set up; the control
 * commands do what PgBouncer documents (PAUSE holds queries, KILL drops
 * clients, RELOAD and SET change the running configuration); stats_users
 * may only look, other users may not connect; bad input gets errors and
 * sluice keeps serving; psql and Debian's prometheus-pgbouncer-exporter
 * work against it unchanged.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(console, .fini = harness_teardown, .timeout = 180);

#define CONSOLE_USERS                                                                              \
	"\"admin\" \"admin-secret\"\n\"stats\" \"stats-secret\"\n\"pgbouncer\" "                   \
	"\"exporter-secret\"\n"
#define CONSOLE_INI                                                                                \
	"admin_users = admin\n"                                                                    \
	"stats_users = stats, pgbouncer\n"                                                         \
	"workers = 2\n"
#define WAIT_S 20.0
/*
 * Tests that close every server and then open them again use one worker, so
 * the counts they assert do not depend on which worker reopens them (with two,
 * a worker may first have to shed an idle server for the other: docs/architecture.md).
 */
#define ONE_WORKER "workers = 1\n"

static struct harness_sluice *start(const char *extra)
{
	char ini[2048];

	snprintf(ini, sizeof(ini), "%s%s", CONSOLE_INI, extra != NULL ? extra : "");
	return harness_start_sluice_users(ini, CONSOLE_USERS);
}

static PGconn *admin(struct harness_sluice *h)
{
	return harness_connect_ok(h, "admin", "admin-secret", "sluice");
}

static PGconn *app(struct harness_sluice *h)
{
	return harness_connect_ok(h, "app", "app-secret", "app");
}

/* A console command that must succeed (rows or not). */
static PGresult *run_ok(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(res);

	cr_assert(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s failed: %s", sql,
	          PQresultErrorMessage(res));
	return res;
}

/* A console command that must fail with `sqlstate`, leaving the connection usable. */
static void run_fails(PGconn *c, const char *sql, const char *sqlstate)
{
	PGresult *res = PQexec(c, sql);

	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "%.80s was accepted (%s)", sql,
	             PQresStatus(PQresultStatus(res)));
	cr_assert_str_eq(harness_sqlstate(res), sqlstate, "%.80s: %s", sql,
	                 PQresultErrorMessage(res));
	cr_log_info("%.60s -> %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "the console dropped the connection after %.80s",
	             sql);
}

/* Column `col` of the row whose column `keycol` is `key`, as a number; -1 if no such row. */
static long long show_value(PGconn *c, const char *show, const char *keycol, const char *key,
                            const char *col)
{
	char sql[128];
	PGresult *res;
	long long v = -1;
	int kc, vc;

	snprintf(sql, sizeof(sql), "SHOW %s", show);
	res = run_ok(c, sql);
	kc = PQfnumber(res, keycol);
	vc = PQfnumber(res, col);
	cr_assert(kc >= 0 && vc >= 0, "SHOW %s has no column %s or %s", show, keycol, col);
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, kc), key) == 0)
			v = atoll(PQgetvalue(res, i, vc));
	PQclear(res);
	return v;
}

static long long pools(PGconn *c, const char *col)
{
	return show_value(c, "POOLS", "database", "app", col);
}

/* Text of column `col` where `keycol` is `key` ("" if none; static buffer). */
static const char *show_text(PGconn *c, const char *show, const char *keycol, const char *key,
                             const char *col)
{
	static char out[512];
	char sql[128];
	PGresult *res;
	int kc, vc;

	out[0] = '\0';
	snprintf(sql, sizeof(sql), "SHOW %s", show);
	res = run_ok(c, sql);
	kc = PQfnumber(res, keycol);
	vc = PQfnumber(res, col);
	cr_assert(kc >= 0 && vc >= 0, "SHOW %s has no column %s or %s", show, keycol, col);
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, kc), key) == 0)
			snprintf(out, sizeof(out), "%s", PQgetvalue(res, i, vc));
	PQclear(res);
	return out;
}

/* Rows of SHOW CLIENTS with this user (and this state, unless NULL). */
static int count_clients(PGconn *c, const char *user, const char *state)
{
	PGresult *res = run_ok(c, "SHOW CLIENTS");
	int uc = PQfnumber(res, "user"), sc = PQfnumber(res, "state"), n = 0;

	for (int i = 0; i < PQntuples(res); i++)
		n += strcmp(PQgetvalue(res, i, uc), user) == 0 &&
		     (state == NULL || strcmp(PQgetvalue(res, i, sc), state) == 0);
	PQclear(res);
	return n;
}

static int clients_of(PGconn *c, const char *user)
{
	return count_clients(c, user, NULL);
}

/* The statement is still running: nothing has come back for it yet. */
static bool still_busy(PGconn *c)
{
	cr_assert(PQconsumeInput(c), "%s", PQerrorMessage(c));
	return PQisBusy(c);
}

/* Collect the results of a PQsendQuery; the test fails on any error. */
static void finish_ok(PGconn *c, const char *what)
{
	PGresult *res;

	while ((res = PQgetResult(c)) != NULL) {
		ExecStatusType st = PQresultStatus(res);

		cr_assert(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s failed: %s", what,
		          PQresultErrorMessage(res));
		PQclear(res);
	}
}

/* ---- every SHOW has the documented columns ---- */

struct shape {
	const char *show;
	const char *pgbouncer; /* PgBouncer's columns in order */
	const char *sluice;    /* sluice's own, appended */
};

static const struct shape shapes[] = {
    {"POOLS",
     "database,user,cl_active,cl_waiting,cl_active_cancel_req,cl_waiting_cancel_req,sv_active,"
     "sv_active_cancel,sv_being_canceled,sv_idle,sv_used,sv_tested,sv_login,maxwait,maxwait_us,"
     "pool_mode,load_balance_hosts",
     "cl_idle,cl_login,paused"},
    {"STATS",
     "database,total_server_assignment_count,total_xact_count,total_query_count,total_received,"
     "total_sent,total_xact_time,total_query_time,total_wait_time,total_client_parse_count,"
     "total_server_parse_count,total_bind_count,total_client_login_count,"
     "avg_server_assignment_count,avg_xact_count,avg_query_count,avg_recv,avg_sent,"
     "avg_xact_time,avg_query_time,avg_wait_time,avg_client_parse_count,"
     "avg_server_parse_count,avg_bind_count,avg_client_login_count",
     "total_error_count,avg_error_count,total_requests"},
    {"STATS_TOTALS",
     "database,server_assignment_count,xact_count,query_count,bytes_received,bytes_sent,"
     "xact_time,query_time,wait_time,client_parse_count,server_parse_count,bind_count,"
     "client_login_count",
     "error_count"},
    {"STATS_AVERAGES",
     "database,server_assignment_count,xact_count,query_count,bytes_received,bytes_sent,"
     "xact_time,query_time,wait_time,avg_client_parse_count,avg_server_parse_count,"
     "avg_bind_count,avg_client_login_count",
     "error_count"},
    {"TOTALS", "name,value", ""},
    {"CLIENTS",
     "type,user,database,replication,state,addr,port,local_addr,local_port,connect_time,"
     "request_time,wait,wait_us,close_needed,ptr,link,remote_pid,tls,application_name,"
     "prepared_statements,id",
     "worker,pinned,pin_reason,role"},
    {"SERVERS",
     "type,user,database,replication,state,addr,port,local_addr,local_port,connect_time,"
     "request_time,wait,wait_us,close_needed,ptr,link,remote_pid,tls,application_name,"
     "prepared_statements,id",
     "worker,pinned,pin_reason,role"},
    {"DATABASES",
     "name,host,port,database,force_user,pool_size,min_pool_size,reserve_pool_size,"
     "server_lifetime,pool_mode,load_balance_hosts,max_connections,current_connections,"
     "max_client_connections,current_client_connections,paused,disabled",
     "reserve_pool"},
    {"USERS",
     "name,pool_size,reserve_pool_size,pool_mode,max_user_connections,current_connections,"
     "max_user_client_connections,current_client_connections",
     ""},
    {"LISTS", "list,items", ""},
    {"CONFIG", "key,value,default,changeable", ""},
    {"MEM", "name,size,used,free,memtotal", ""},
    {"STATE", "key,value", ""},
    {"VERSION", "version", ""},
    {"PEERS", "peer_id,host,port,pool_size", ""},
    {"PEER_POOLS", "peer_id,cl_active_cancel_req,cl_waiting_cancel_req,sv_active_cancel,sv_login",
     ""},
    {"DNS_HOSTS", "hostname,ttl,addrs", ""},
    {"DNS_ZONES", "zonename,serial,count", ""},
    {"WORKERS", "",
     "worker,clients,servers,asks,debts,servers_sent,servers_received,closed_for_others,"
     "units_received,recvs,sends,flushes"},
};

static void expect_columns(PGconn *c, const struct shape *s)
{
	char sql[64], want[2048], got[2048] = "";
	PGresult *res;

	snprintf(sql, sizeof(sql), "SHOW %s", s->show);
	snprintf(want, sizeof(want), "%s%s%s", s->pgbouncer,
	         s->pgbouncer[0] && s->sluice[0] ? "," : "", s->sluice);
	res = run_ok(c, sql);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "SHOW %s returned no rows shape",
	             s->show);
	for (int i = 0; i < PQnfields(res); i++) {
		strcat(got, i ? "," : "");
		strcat(got, PQfname(res, i));
	}
	cr_assert_str_eq(got, want, "SHOW %s columns differ", s->show);
	PQclear(res);
}

/* The value of a (name/list/key, value) row. */
static long long row_value(PGconn *c, const char *show, const char *name)
{
	char sql[64];
	PGresult *res;
	long long v = -1;

	snprintf(sql, sizeof(sql), "SHOW %s", show);
	res = run_ok(c, sql);
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, 0), name) == 0)
			v = atoll(PQgetvalue(res, i, 1));
	PQclear(res);
	return v;
}

Test(console, every_show_has_the_documented_columns_and_real_values)
{
	struct harness_sluice *h = start("default_pool_size = 3\n");
	PGconn *a = admin(h), *alias, *c1 = app(h), *c2 = app(h);
	PGresult *res;

	for (int i = 0; i < 3; i++)
		cr_assert_eq(harness_query_int(c1, "select 1"), 1);
	PQclear(harness_exec_ok(c2, "begin"));
	PQclear(harness_exec_ok(c2, "select 1"));
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		expect_columns(a, &shapes[i]);
	/* The "pgbouncer" alias that exporters hard-code reaches the same console. */
	alias = harness_connect_ok(h, "admin", "admin-secret", "pgbouncer");
	expect_columns(alias, &shapes[0]);

	/* c2 holds a server in its transaction, c1 is idle, the console is a client too. */
	cr_assert_eq(pools(a, "cl_active"), 2);
	cr_assert_eq(pools(a, "cl_waiting"), 0);
	cr_assert_eq(pools(a, "sv_active"), 1);
	cr_assert_eq(pools(a, "sv_active") + pools(a, "sv_idle") + pools(a, "sv_login"),
	             harness_count_backends("app", NULL));
	cr_assert_str_eq(show_text(a, "POOLS", "database", "app", "pool_mode"), "transaction");
	/* Three queries on c1, BEGIN and one query on c2; c2's transaction is still open. */
	cr_assert_eq(show_value(a, "STATS", "database", "app", "total_query_count"), 5);
	cr_assert_eq(show_value(a, "STATS_TOTALS", "database", "app", "xact_count"), 3);
	cr_assert_eq(show_value(a, "STATS", "database", "app", "total_client_login_count"), 2);
	cr_assert_eq(show_value(a, "STATS", "database", "app", "total_requests"), 5);
	cr_assert_eq(row_value(a, "TOTALS", "total_query_count"), 5);
	cr_assert_eq(show_value(a, "DATABASES", "name", "app", "pool_size"), 3);
	cr_assert_eq(show_value(a, "DATABASES", "name", "app", "current_client_connections"), 2);
	cr_assert_eq(show_value(a, "DATABASES", "name", "app", "current_connections"),
	             harness_count_backends("app", NULL));
	cr_assert_str_eq(show_text(a, "DATABASES", "name", "other", "database"), "other");
	cr_assert_eq(show_value(a, "USERS", "name", "app", "current_client_connections"), 2);
	cr_assert_eq(row_value(a, "LISTS", "databases"), 2);
	cr_assert_eq(row_value(a, "LISTS", "pools"), 1);
	cr_assert_eq(row_value(a, "LISTS", "used_clients"), 4); /* two app, two consoles */
	cr_assert_eq(row_value(a, "LISTS", "used_servers"), harness_count_backends("app", NULL));
	cr_assert_eq(clients_of(a, "app"), 2);
	cr_assert_eq(clients_of(a, "admin"), 2);
	/* c1 and c2 were accepted one after the other: they live on different workers. */
	res = run_ok(a, "SHOW CLIENTS");
	{
		int uc = PQfnumber(res, "user"), wc = PQfnumber(res, "worker"), seen = 0;

		for (int i = 0; i < PQntuples(res); i++)
			if (strcmp(PQgetvalue(res, i, uc), "app") == 0)
				seen |= 1 << atoi(PQgetvalue(res, i, wc));
		cr_assert_eq(seen, 3, "the app clients are not on both workers");
	}
	PQclear(res);
	cr_assert_str_eq(show_text(a, "SERVERS", "state", "active", "database"), "app");
	cr_assert_eq(count_clients(a, "admin", "active"), 1); /* the one asking */
	cr_assert_eq(count_clients(a, "app", "active"), 1);
	cr_assert_eq(count_clients(a, "app", "idle"), 1);
	cr_assert_str_eq(show_text(a, "CONFIG", "key", "default_pool_size", "value"), "3");
	cr_assert_str_eq(show_text(a, "CONFIG", "key", "default_pool_size", "default"), "20");
	cr_assert_str_eq(show_text(a, "CONFIG", "key", "default_pool_size", "changeable"), "yes");
	cr_assert_str_eq(show_text(a, "CONFIG", "key", "listen_port", "changeable"), "no");
	cr_assert_str_eq(show_text(a, "STATE", "key", "active", "value"), "yes");
	res = run_ok(a, "SHOW VERSION");
	cr_assert(strstr(PQgetvalue(res, 0, 0), "sluice") != NULL);
	PQclear(res);
	cr_assert_eq(show_value(a, "MEM", "name", "client", "used"), 4);
	/* One row per worker; each has an app client and a console, and has relayed queries. */
	for (int w = 0; w < 2; w++) {
		char id[2] = {(char)('0' + w), '\0'};

		cr_assert_eq(show_value(a, "WORKERS", "worker", id, "clients"), 2, "worker %d", w);
		cr_assert_gt(show_value(a, "WORKERS", "worker", id, "recvs"), 0, "worker %d", w);
		cr_assert_gt(show_value(a, "WORKERS", "worker", id, "sends"), 0, "worker %d", w);
		cr_assert_gt(show_value(a, "WORKERS", "worker", id, "flushes"), 0, "worker %d", w);
	}
	cr_assert_eq(show_value(a, "WORKERS", "worker", "2", "clients"), -1, "a third worker row");
	cr_assert_eq(show_value(a, "WORKERS", "worker", "0", "servers") +
	                 show_value(a, "WORKERS", "worker", "1", "servers"),
	             harness_count_backends("app", NULL));
	PQclear(harness_exec_ok(c2, "commit"));
	PQfinish(alias);
	PQfinish(c1);
	PQfinish(c2);
	PQfinish(a);
}

/* "YYYY-MM-DD HH:MM:SS UTC" as seconds since the epoch; -1 if it is not that. */
static time_t utc_seconds(const char *text)
{
	struct tm tm = {0};
	const char *end = strptime(text, "%Y-%m-%d %H:%M:%S UTC", &tm);

	return end != NULL && *end == '\0' ? timegm(&tm) : (time_t)-1;
}

/*
 * Times in SHOW are wall-clock times although sluice keeps them on the
 * monotonic clock (a step of the wall clock must not stall rate limits or
 * deadlines): a client's and its server's connect_time are when they
 * connected, within the seconds the test took around that.
 */
Test(console, show_times_are_wall_clock_times)
{
	struct harness_sluice *h = start(NULL);
	time_t before = time(NULL), after;
	PGconn *a, *c;
	time_t client_at, server_at;

	c = app(h);
	PQclear(harness_exec_ok(c, "begin"));
	PQclear(harness_exec_ok(c, "select 1"));
	after = time(NULL);
	a = admin(h);
	client_at = utc_seconds(show_text(a, "CLIENTS", "user", "app", "connect_time"));
	server_at = utc_seconds(show_text(a, "SERVERS", "user", "app", "connect_time"));
	cr_assert(client_at >= before - 1 && client_at <= after + 1,
	          "the client connected at %lld, between %lld and %lld", (long long)client_at,
	          (long long)before, (long long)after);
	cr_assert(server_at >= before - 1 && server_at <= after + 1,
	          "its server connected at %lld, between %lld and %lld", (long long)server_at,
	          (long long)before, (long long)after);
	PQfinish(c);
	PQfinish(a);
}

Test(console, driver_probes_and_psql)
{
	struct harness_sluice *h = start(NULL);
	PGconn *a = admin(h);
	PGresult *res;
	char psql[512], port[16], *out = NULL;
	const char *env[] = {"PGPASSWORD=admin-secret", "PGCONNECT_TIMEOUT=10", NULL};
	int rc;

	cr_assert_str_eq(PQparameterStatus(a, "client_encoding"), "UTF8");
	cr_assert(strncmp(PQparameterStatus(a, "DateStyle"), "ISO", 3) == 0);
	cr_assert_str_eq(PQparameterStatus(a, "integer_datetimes"), "on");
	cr_assert_str_eq(PQparameterStatus(a, "standard_conforming_strings"), "on");
	cr_assert(PQserverVersion(a) >= 100000, "server_version %s",
	          PQparameterStatus(a, "server_version"));
	cr_assert_neq(PQbackendPID(a), 0);
	res = run_ok(a, "SHOW client_encoding");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "UTF8");
	PQclear(res);
	res = run_ok(a, "show transaction_isolation");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "read committed");
	PQclear(res);
	PQclear(run_ok(a, "SET DateStyle TO 'ISO'"));
	PQclear(run_ok(a, "set client_encoding = 'UTF8'"));
	PQclear(run_ok(a, "SET application_name = 'probe'"));

	snprintf(port, sizeof(port), "%d", h->port);
	harness_pg_tool("psql", psql, sizeof(psql));
	const char *argv[] = {psql, "-X",
	                      "-h", "127.0.0.1",
	                      "-p", port,
	                      "-U", "admin",
	                      "-d", "sluice",
	                      "-c", "SHOW POOLS",
	                      "-c", "SHOW client_encoding",
	                      "-c", "SHOW STATS",
	                      NULL};
	rc = harness_run(argv, env, 30, &out);
	cr_assert_eq(rc, 0, "psql failed:\n%s", out);
	cr_assert(strstr(out, "cl_active") != NULL && strstr(out, "UTF8") != NULL &&
	              strstr(out, "total_xact_count") != NULL,
	          "unexpected psql output:\n%s", out);
	cr_assert(strstr(out, "WARNING") == NULL && strstr(out, "ERROR") == NULL,
	          "psql complained:\n%s", out);
	free(out);
	PQfinish(a);
}

/* ---- pools under load ---- */

Test(console, pools_add_up_with_thirty_clients_on_five_servers)
{
	struct harness_sluice *h = start("default_pool_size = 5\nquery_wait_timeout = 0\n");
	PGconn *a = admin(h), *super = harness_pg_super("app"), *clients[30];
	const int n = 30;

	long long heap_before = show_value(a, "MEM", "name", "heap", "used");

	harness_raise_nofile(256);
	/* Each client's transaction blocks on a lock the test holds. */
	PQclear(harness_exec_ok(super, "select pg_advisory_lock(4242)"));
	for (int i = 0; i < n; i++) {
		clients[i] = app(h);
		cr_assert(PQsendQuery(clients[i],
		                      "begin; select pg_advisory_xact_lock_shared(4242); "
		                      "commit"));
	}
	cr_assert(
	    harness_wait_for(pools(a, "cl_waiting") == n - 5 && pools(a, "sv_active") == 5, WAIT_S),
	    "expected 25 waiting and 5 servers active, got %lld and %lld", pools(a, "cl_waiting"),
	    pools(a, "sv_active"));
	cr_assert_eq(pools(a, "cl_active"), 5);
	cr_assert_eq(pools(a, "cl_active") + pools(a, "cl_waiting"), n);
	cr_assert_eq(pools(a, "sv_idle"), 0);
	/* A linked server's query may still be on its way to Postgres. */
	cr_assert(harness_wait_for(
	    harness_count_active_queries("app", "pg_advisory_xact_lock_shared") == 5, WAIT_S));
	cr_assert(pools(a, "maxwait") * 1000000 + pools(a, "maxwait_us") > 0);
	cr_assert_eq(show_value(a, "DATABASES", "name", "app", "current_connections"), 5);
	cr_assert_eq(clients_of(a, "app"), n);

	PQclear(harness_exec_ok(super, "select pg_advisory_unlock(4242)"));
	for (int i = 0; i < n; i++)
		finish_ok(clients[i], "blocked transaction");
	cr_assert(harness_wait_for(pools(a, "cl_active") == n && pools(a, "sv_idle") == 5, WAIT_S));
	cr_assert_eq(pools(a, "cl_waiting"), 0);
	cr_assert_eq(pools(a, "sv_active"), 0);
	cr_assert_eq(pools(a, "cl_idle"), n);
	cr_assert_eq(show_value(a, "STATS", "database", "app", "total_xact_count"), n);
	cr_assert(show_value(a, "STATS", "database", "app", "total_wait_time") > 0);

	/* SHOW MEM's heap row is malloc's live count: up by at least the
	 * clients' own structs while they are here, down when they leave. */
	long long heap_with = show_value(a, "MEM", "name", "heap", "used");

	cr_assert_geq(heap_with - heap_before, n * show_value(a, "MEM", "name", "client", "size"),
	              "heap in use %lld -> %lld bytes", heap_before, heap_with);
	for (int i = 0; i < n; i++)
		PQfinish(clients[i]);
	cr_assert(harness_wait_for(clients_of(a, "app") == 0, WAIT_S));
	cr_assert_lt(show_value(a, "MEM", "name", "heap", "used"), heap_with);
	PQfinish(super);
	PQfinish(a);
}

Test(console, averages_follow_stats_period)
{
	struct harness_sluice *h = start("stats_period = 1s\n");
	PGconn *a = admin(h), *c = app(h);

	for (int i = 0; i < 20; i++)
		cr_assert_eq(harness_query_int(c, "select 1"), 1);
	/* The next stats_period tick makes the queries show up as a rate. */
	cr_assert(
	    harness_wait_for(show_value(a, "STATS_AVERAGES", "database", "app", "query_count") > 0,
	                     WAIT_S),
	    "no average after several stats_period ticks");
	cr_assert(show_value(a, "STATS", "database", "app", "avg_query_count") > 0);
	cr_assert(show_value(a, "STATS", "database", "app", "avg_recv") > 0);
	/* Nothing happens in the following periods: the averages fall back to zero. */
	cr_assert(harness_wait_for(
	    show_value(a, "STATS_AVERAGES", "database", "app", "query_count") == 0, WAIT_S));
	cr_assert_eq(show_value(a, "STATS", "database", "app", "total_query_count"), 20);
	PQfinish(c);
	PQfinish(a);
}

/* ---- control commands ---- */

Test(console, pause_holds_queries_until_resume)
{
	struct harness_sluice *h = start(ONE_WORKER "default_pool_size = 2\n");
	PGconn *a = admin(h), *watch = admin(h), *holder = app(h), *clients[10];
	const int n = 10;

	for (int i = 0; i < n; i++)
		clients[i] = app(h);
	/* PAUSE waits for the server that an open transaction holds. */
	PQclear(harness_exec_ok(holder, "begin"));
	PQclear(harness_exec_ok(holder, "select 1"));
	cr_assert(PQsendQuery(a, "PAUSE app"));
	cr_assert(
	    harness_wait_for(show_value(watch, "DATABASES", "name", "app", "paused") == 1, WAIT_S));
	cr_assert(still_busy(a), "PAUSE returned while a server was still in use");
	cr_assert_eq(pools(watch, "sv_active"), 1);
	PQclear(harness_exec_ok(holder, "commit"));
	finish_ok(a, "PAUSE");
	cr_assert_eq(harness_count_backends("app", NULL), 0, "PAUSE left servers connected");
	cr_assert_str_eq(show_text(watch, "STATE", "key", "paused", "value"), "no");

	/* A burst while paused: every query waits, none fails. */
	for (int i = 0; i < n; i++)
		cr_assert(PQsendQuery(clients[i], "select 7"));
	cr_assert(harness_wait_for(pools(watch, "cl_waiting") == n, WAIT_S),
	          "queries did not queue while paused (cl_waiting %lld)",
	          pools(watch, "cl_waiting"));
	for (int i = 0; i < n; i++)
		cr_assert(still_busy(clients[i]), "a query ran while paused");
	cr_assert_eq(harness_count_backends("app", NULL), 0);
	PQclear(run_ok(a, "RESUME app"));
	for (int i = 0; i < n; i++) {
		PGresult *res = PQgetResult(clients[i]);

		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
		cr_assert_str_eq(PQgetvalue(res, 0, 0), "7");
		PQclear(res);
		finish_ok(clients[i], "query after RESUME");
	}
	cr_assert_eq(show_value(watch, "DATABASES", "name", "app", "paused"), 0);
	cr_assert_eq(pools(watch, "cl_waiting"), 0);
	run_fails(a, "RESUME app", "55000");
	run_fails(a, "RESUME", "55000");

	/* A global PAUSE can be cancelled while it waits; what it started stays. */
	PQclear(harness_exec_ok(holder, "begin"));
	PQclear(harness_exec_ok(holder, "select 1"));
	cr_assert(PQsendQuery(a, "PAUSE"));
	cr_assert(harness_wait_for(
	    strcmp(show_text(watch, "STATE", "key", "paused", "value"), "yes") == 0, WAIT_S));
	{
		PGcancel *cancel = PQgetCancel(a);
		char err[256];
		PGresult *res;

		cr_assert(PQcancel(cancel, err, sizeof(err)), "%s", err);
		PQfreeCancel(cancel);
		res = PQgetResult(a);
		cr_assert_str_eq(harness_sqlstate(res), "57014", "%s", PQresultErrorMessage(res));
		PQclear(res);
		while ((res = PQgetResult(a)) != NULL)
			PQclear(res);
	}
	PQclear(harness_exec_ok(holder, "commit"));
	PQclear(run_ok(a, "RESUME"));
	cr_assert_eq(harness_query_int(holder, "select 3"), 3);
	for (int i = 0; i < n; i++)
		PQfinish(clients[i]);
	PQfinish(holder);
	PQfinish(watch);
	PQfinish(a);
}

Test(console, kill_drops_the_clients_of_that_database)
{
	struct harness_sluice *h = start(ONE_WORKER);
	PGconn *a = admin(h), *c1 = app(h), *c2 = app(h), *busy = app(h);
	PGconn *other = harness_connect_ok(h, "app", "app-secret", "other"), *late;
	PGresult *res;

	cr_assert_eq(harness_query_int(c1, "select 1"), 1);
	cr_assert_eq(harness_query_int(other, "select 1"), 1);
	PQclear(harness_exec_ok(busy, "begin"));
	cr_assert_eq(harness_query_int(busy, "select 1"), 1);
	PQclear(run_ok(a, "KILL app"));
	cr_assert_eq(clients_of(a, "app"), 1, "KILL app left app clients (other must stay)");
	cr_assert_eq(show_value(a, "DATABASES", "name", "app", "current_connections"), 0);
	cr_assert(
	    harness_wait_for(harness_count_backends("app", NULL) ==
	                         show_value(a, "DATABASES", "name", "other", "current_connections"),
	                     WAIT_S));
	for (PGconn **c = (PGconn *[]){c1, c2, busy, NULL}; *c != NULL; c++) {
		res = PQexec(*c, "select 1");
		cr_assert_neq(PQresultStatus(res), PGRES_TUPLES_OK, "a killed client still works");
		PQclear(res);
		cr_assert_eq(PQstatus(*c), CONNECTION_BAD);
	}
	cr_assert_eq(harness_query_int(other, "select 2"), 2, "KILL app touched database other");

	/* A killed database holds new queries until RESUME. */
	late = app(h);
	cr_assert(PQsendQuery(late, "select 5"));
	cr_assert(harness_wait_for(pools(a, "cl_waiting") == 1, WAIT_S));
	PQclear(run_ok(a, "RESUME app"));
	res = PQgetResult(late);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	finish_ok(late, "query after RESUME");
	run_fails(a, "KILL nosuchdb", "3D000");
	PQfinish(late);
	PQfinish(c1);
	PQfinish(c2);
	PQfinish(busy);
	PQfinish(other);
	PQfinish(a);
}

Test(console, kill_client_by_id)
{
	struct harness_sluice *h = start(NULL);
	PGconn *a = admin(h), *victim = app(h), *bystander = app(h);
	PGresult *res;
	char sql[64];

	PQclear(harness_exec_ok(victim, "set application_name = 'victim'"));
	snprintf(sql, sizeof(sql), "KILL_CLIENT %s",
	         show_text(a, "CLIENTS", "application_name", "victim", "id"));
	PQclear(run_ok(a, sql));
	res = PQexec(victim, "select 1");
	cr_assert_neq(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	cr_assert_eq(harness_query_int(bystander, "select 1"), 1);
	run_fails(a, sql, "42704"); /* gone now */
	run_fails(a, "KILL_CLIENT abc", "22023");
	run_fails(a, "KILL_CLIENT", "42601");
	PQfinish(victim);
	PQfinish(bystander);
	PQfinish(a);
}

Test(console, reload_picks_up_a_new_pool_size)
{
	struct harness_sluice *h = start("default_pool_size = 2\nquery_wait_timeout = 0\n");
	PGconn *a = admin(h), *super = harness_pg_super("app"), *clients[4];

	cr_assert_eq(show_value(a, "DATABASES", "name", "app", "pool_size"), 2);
	harness_write_ini(h, CONSOLE_INI "default_pool_size = 4\nquery_wait_timeout = 0\n");
	PQclear(run_ok(a, "RELOAD"));
	cr_assert_eq(show_value(a, "DATABASES", "name", "app", "pool_size"), 4);
	cr_assert_str_eq(show_text(a, "CONFIG", "key", "default_pool_size", "value"), "4");
	/* And it is the size the pool really grows to. */
	PQclear(harness_exec_ok(super, "select pg_advisory_lock(4343)"));
	for (int i = 0; i < 4; i++) {
		clients[i] = app(h);
		cr_assert(PQsendQuery(clients[i], "select pg_advisory_xact_lock_shared(4343)"));
	}
	cr_assert(harness_wait_for(pools(a, "sv_active") == 4, WAIT_S),
	          "the pool did not grow to the reloaded size (sv_active %lld)",
	          pools(a, "sv_active"));
	cr_assert_eq(pools(a, "cl_waiting"), 0);
	PQclear(harness_exec_ok(super, "select pg_advisory_unlock(4343)"));
	for (int i = 0; i < 4; i++) {
		finish_ok(clients[i], "blocked query");
		PQfinish(clients[i]);
	}
	/* A broken file: RELOAD says why and the running configuration stays. */
	harness_write_file(h->ini_path, "[sluice]\ndefault_pool_size = banana\n");
	run_fails(a, "RELOAD", "F0000");
	cr_assert_eq(show_value(a, "DATABASES", "name", "app", "pool_size"), 4);
	PQfinish(super);
	PQfinish(a);
}

Test(console, set_changes_an_option_visible_in_show_config)
{
	struct harness_sluice *h = start(NULL);
	PGconn *a = admin(h), *other, *c;

	PQclear(run_ok(a, "SET Default_Pool_Size = 9"));
	cr_assert_str_eq(show_text(a, "CONFIG", "key", "default_pool_size", "value"), "9");
	{
		PGresult *res = run_ok(a, "SHOW default_pool_size");

		cr_assert_str_eq(PQgetvalue(res, 0, 0), "9");
		PQclear(res);
	}
	cr_assert_eq(show_value(a, "DATABASES", "name", "app", "pool_size"), 9);
	PQclear(run_ok(a, "set query_wait_timeout to '45s'"));
	cr_assert_str_eq(show_text(a, "CONFIG", "key", "query_wait_timeout", "value"), "45s");
	PQclear(run_ok(a, "SET server_reset_query = 'DISCARD ALL; SELECT 1'"));
	cr_assert_str_eq(show_text(a, "CONFIG", "key", "server_reset_query", "value"),
	                 "DISCARD ALL; SELECT 1");
	/* Every worker has it: a new console may land on another one. */
	other = admin(h);
	cr_assert_str_eq(show_text(other, "CONFIG", "key", "default_pool_size", "value"), "9");
	run_fails(a, "SET default_pool_size = -3", "22023");
	run_fails(a, "SET min_pool_size = 50", "22023"); /* above default_pool_size */
	run_fails(a, "SET listen_port = 7000", "55P02");
	run_fails(a, "SET no_such_option = 1", "42704");
	run_fails(a, "SET default_pool_size", "42601");
	cr_assert_str_eq(show_text(a, "CONFIG", "key", "default_pool_size", "value"), "9");
	c = app(h);
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	PQfinish(c);
	PQfinish(other);
	PQfinish(a);
}

Test(console, disable_enable_reconnect_wait_close)
{
	struct harness_sluice *h = start(NULL);
	PGconn *a = admin(h), *watch = admin(h), *c = app(h);
	char state[6];
	long long pid;

	PQclear(run_ok(a, "DISABLE app"));
	cr_assert(harness_connect_fails(h, "app", "app-secret", "app", state));
	cr_assert_str_eq(state, "57P03");
	cr_assert_eq(show_value(a, "DATABASES", "name", "app", "disabled"), 1);
	cr_assert_eq(harness_query_int(c, "select 1"), 1, "DISABLE dropped an existing client");
	PQclear(run_ok(a, "ENABLE app"));
	PQfinish(app(h));
	run_fails(a, "DISABLE", "42601");

	/* RECONNECT retires a busy server when it is released; WAIT_CLOSE waits for that. */
	PQclear(harness_exec_ok(c, "begin"));
	pid = harness_query_int(c, "select pg_backend_pid()");
	PQclear(run_ok(a, "RECONNECT app"));
	cr_assert_eq(show_value(a, "SERVERS", "state", "active", "close_needed"), 1);
	cr_assert(PQsendQuery(a, "WAIT_CLOSE app"));
	/* Both consoles active: watch asking, a waiting in WAIT_CLOSE. */
	cr_assert(harness_wait_for(count_clients(watch, "admin", "active") == 2, WAIT_S));
	cr_assert(still_busy(a), "WAIT_CLOSE returned while the server was in use");
	PQclear(harness_exec_ok(c, "commit"));
	finish_ok(a, "WAIT_CLOSE");
	cr_assert_neq(harness_query_int(c, "select pg_backend_pid()"), pid,
	              "the retired server was reused");
	PQfinish(c);
	PQfinish(watch);
	PQfinish(a);
}

/*
 * A pool that a RELOAD warms (min_pool_size) while PAUSE holds is paused
 * too: PAUSE promises that sluice opens no server until RESUME.  The warmed
 * pool was created unpaused and connected at once; only a client's login
 * applied the pause to a new pool.
 */
Test(console, a_pool_warmed_by_a_reload_during_pause_stays_paused)
{
	struct harness_sluice *h = start(ONE_WORKER);
	PGconn *a = admin(h), *c;

	PQclear(run_ok(a, "PAUSE"));
	harness_write_ini(h, CONSOLE_INI ONE_WORKER
	                  "[databases]\nwarm = host=@PGHOST@ port=@PGPORT@ dbname=app user=app "
	                  "min_pool_size=2\n");
	PQclear(run_ok(a, "RELOAD"));
	cr_assert(
	    harness_wait_for(show_value(a, "POOLS", "database", "warm", "paused") != -1, WAIT_S),
	    "RELOAD made no pool for min_pool_size");
	cr_assert_eq(show_value(a, "POOLS", "database", "warm", "paused"), 1,
	             "the pool min_pool_size warmed during PAUSE is not paused");
	cr_assert_eq(show_value(a, "POOLS", "database", "warm", "sv_idle") +
	                 show_value(a, "POOLS", "database", "warm", "sv_login"),
	             0, "servers opened during PAUSE");
	PQclear(run_ok(a, "RESUME"));
	c = harness_connect_ok(h, "app", "app-secret", "warm");
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	PQfinish(c);
	PQfinish(a);
}

/*
 * A console client that reads none of its replies: past a megabyte of
 * output its Query stops running and its input stops being read, and
 * client_write_timeout closes it.  Sluice queued every reply instead (one
 * 48 kB Query of SHOW CONFIG repeated is some 28 MB), so any stats user
 * could grow its memory without bound and keep the worker busy rendering.
 */
Test(console, a_console_client_that_reads_nothing_is_held_then_closed)
{
	struct harness_sluice *h = start(ONE_WORKER "client_write_timeout = 1s\n");
	PGconn *stats = harness_connect_ok(h, "stats", "stats-secret", "sluice");
	static char sql[4000 * 12 + 1];
	unsigned char *msg;
	size_t n = 0;

	for (int i = 0; i < 4000; i++)
		memcpy(sql + 12 * i, "SHOW CONFIG;", 12);
	msg = malloc(sizeof(sql) + 16);
	cr_assert(msg != NULL);
	harness_put_query(msg, &n, sql);
	harness_send_all(PQsocket(stats), msg, n);
	free(msg);
	cr_assert(harness_wait_for(harness_log_contains(h, "client_write_timeout"), WAIT_S),
	          "a console client that read nothing was never closed");
	cr_assert(harness_sluice_alive(h));
	PQfinish(stats);
	PQfinish(harness_connect_ok(h, "stats", "stats-secret", "sluice"));
}

Test(console, suspend_and_resume)
{
	struct harness_sluice *h = start(ONE_WORKER);
	PGconn *a = admin(h), *c = app(h);
	PGresult *res;

	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	PQclear(run_ok(a, "SUSPEND"));
	cr_assert_str_eq(show_text(a, "STATE", "key", "suspended", "value"), "yes");
	cr_assert_str_eq(show_text(a, "STATE", "key", "active", "value"), "no");
	run_fails(a, "SUSPEND", "55000");
	cr_assert(PQsendQuery(c, "select 8"));
	PQclear(run_ok(a, "RESUME"));
	res = PQgetResult(c);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "8");
	PQclear(res);
	finish_ok(c, "query after RESUME");
	cr_assert_str_eq(show_text(a, "STATE", "key", "active", "value"), "yes");
	PQfinish(c);
	PQfinish(a);
}

/* ---- who may do what ---- */

Test(console, stats_users_may_only_look)
{
	struct harness_sluice *h = start(NULL);
	PGconn *s = harness_connect_ok(h, "stats", "stats-secret", "sluice"), *c;
	const char *refused[] = {"PAUSE",
	                         "PAUSE app",
	                         "RESUME",
	                         "SUSPEND",
	                         "KILL app",
	                         "KILL_CLIENT 1",
	                         "RELOAD",
	                         "DISABLE app",
	                         "ENABLE app",
	                         "RECONNECT",
	                         "WAIT_CLOSE",
	                         "SHUTDOWN",
	                         "SET default_pool_size = 3",
	                         NULL};

	PQclear(run_ok(s, "SHOW POOLS"));
	PQclear(run_ok(s, "SHOW CONFIG"));
	PQclear(run_ok(s, "SET client_encoding = 'UTF8'"));
	for (const char **q = refused; *q != NULL; q++)
		run_fails(s, *q, "42501");
	cr_assert_str_eq(show_text(s, "STATE", "key", "paused", "value"), "no");
	cr_assert(harness_sluice_alive(h));
	c = app(h);
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	PQfinish(c);
	PQfinish(s);
}

Test(console, users_not_listed_are_refused)
{
	struct harness_sluice *h = start(NULL);
	char state[6];

	cr_assert(harness_connect_fails(h, "app", "app-secret", "sluice", state));
	cr_assert_str_eq(state, "28000");
	cr_assert(harness_connect_fails(h, "md5user", "md5-secret", "pgbouncer", state));
	cr_assert_str_eq(state, "28000");
	/* Authentication still comes first. */
	cr_assert(harness_connect_fails(h, "admin", "wrong", "sluice", state));
	cr_assert_str_eq(state, "28P01");
	PQfinish(admin(h));
}

/* ---- bad input ---- */

static void send_raw(PGconn *c, const void *bytes, size_t len)
{
	cr_assert_eq(send(PQsocket(c), bytes, len, MSG_NOSIGNAL), (ssize_t)len, "send: %s",
	             strerror(errno));
}

Test(console, bad_input_gets_errors_and_sluice_keeps_serving)
{
	struct harness_sluice *h = start(NULL);
	PGconn *a = admin(h), *c = app(h), *raw;
	const char *garbage[][2] = {
	    {"garbage", "42601"},
	    {"SHOW", "42601"},
	    {"SHOW POOLS please", "42601"},
	    {"SHOW NOTHING", "42704"},
	    {"PAUSE app extra", "42601"},
	    {"PAUSE 'app'", "42601"},
	    {"PAUSE nosuchdb", "3D000"},
	    {"PAUSE sluice", "22023"},
	    {"SET = 3", "42601"},
	    {"SET x y z", "42601"},
	    {"SHUTDOWN NOW", "42601"},
	    {"RELOAD now", "42601"},
	    {"SHOW 'unterminated", "42601"},
	    {"\"unterminated", "42601"},
	    {"select 1", "42601"},
	    {"= = =", "42601"},
	    {"\x01\x02\x7f", "42601"},
	    {"SHOW POOLS; bogus; SHOW STATS", "42601"},
	};
	char *huge;
	PGresult *res;

	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
		run_fails(a, garbage[i][0], garbage[i][1]);
	/* A name longer than any token. */
	huge = malloc(10001);
	memset(huge, 'x', 10000);
	huge[10000] = '\0';
	memcpy(huge, "KILL ", 5);
	run_fails(a, huge, "42601");
	free(huge);
	/* A command far over the limit is refused without buffering it. */
	huge = malloc(4 * 1024 * 1024 + 1);
	memset(huge, ' ', 4 * 1024 * 1024);
	memcpy(huge, "SHOW POOLS", 10);
	huge[4 * 1024 * 1024] = '\0';
	run_fails(a, huge, "54000");
	free(huge);
	/* Several statements: each answers; empty ones are skipped. */
	res = run_ok(a, ";SHOW VERSION;; SHOW STATE;");
	cr_assert_eq(PQnfields(res), 2, "the last statement's result should be SHOW STATE's");
	PQclear(res);
	res = PQexec(a, "");
	cr_assert_eq(PQresultStatus(res), PGRES_EMPTY_QUERY);
	PQclear(res);

	/* Extended protocol: refused up to Sync, then the console works again. */
	res = PQexecParams(a, "SHOW POOLS", 0, NULL, NULL, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	cr_assert_str_eq(harness_sqlstate(res), "0A000");
	PQclear(res);
	res = PQprepare(a, "s1", "SHOW POOLS", 0, NULL);
	cr_assert_str_eq(harness_sqlstate(res), "0A000");
	PQclear(res);
	PQclear(run_ok(a, "SHOW VERSION"));

	/* An unknown message type ends that console connection, only that one. */
	raw = admin(h);
	send_raw(raw, "\x01\x00\x00\x00\x04", 5);
	res = PQexec(raw, "SHOW VERSION");
	cr_assert_neq(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	PQfinish(raw);
	/* So does a length no message may have. */
	raw = admin(h);
	send_raw(raw, "Q\x7f\xff\xff\xff", 5);
	res = PQexec(raw, "SHOW VERSION");
	cr_assert_neq(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	PQfinish(raw);

	cr_assert(harness_sluice_alive(h));
	PQclear(run_ok(a, "SHOW POOLS"));
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	PQfinish(c);
	PQfinish(a);
}

/* ---- SHUTDOWN ---- */

Test(console, shutdown_now)
{
	struct harness_sluice *h = start(NULL);
	PGconn *a = admin(h);

	PQclear(PQexec(a, "SHUTDOWN"));
	cr_assert_eq(harness_stop_sluice(h, 0, WAIT_S), 0);
	PQfinish(a);
}

Test(console, shutdown_wait_for_clients)
{
	struct harness_sluice *h = start(NULL);
	PGconn *a = admin(h), *c = app(h);
	char state[6];

	PQclear(run_ok(a, "SHUTDOWN WAIT_FOR_CLIENTS"));
	PQfinish(a);
	/* No new connections, but the connected client is still served. */
	cr_assert(
	    harness_wait_for(harness_connect_fails(h, "app", "app-secret", "app", state), WAIT_S));
	cr_assert_eq(harness_query_int(c, "select 4"), 4);
	cr_assert(harness_sluice_alive(h));
	PQfinish(c);
	cr_assert_eq(harness_stop_sluice(h, 0, WAIT_S), 0,
	             "sluice did not exit after the last "
	             "client left");
}

Test(console, shutdown_wait_for_servers)
{
	struct harness_sluice *h = start(NULL);
	PGconn *a = admin(h), *c = app(h);
	char state[6];

	PQclear(harness_exec_ok(c, "begin"));
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	PQclear(run_ok(a, "SHUTDOWN WAIT_FOR_SERVERS"));
	cr_assert(
	    harness_wait_for(harness_connect_fails(h, "app", "app-secret", "app", state), WAIT_S));
	/* The open transaction finishes; then its server is released and sluice exits. */
	cr_assert_eq(harness_query_int(c, "select 6"), 6);
	cr_assert(harness_sluice_alive(h));
	PQclear(harness_exec_ok(c, "commit"));
	cr_assert_eq(harness_stop_sluice(h, 0, WAIT_S), 0);
	PQfinish(c);
	PQfinish(a);
}

/* ---- Debian's prometheus-pgbouncer-exporter ---- */

static int free_tcp_port(void)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
	                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	getsockname(fd, (struct sockaddr *)&addr, &len);
	close(fd);
	return ntohs(addr.sin_port);
}

static bool has_metric(const char *text, const char *metric)
{
	return text != NULL && strstr(text, metric) != NULL;
}

Test(console, prometheus_pgbouncer_exporter_reads_sluice)
{
	const char *exporter = "/usr/bin/prometheus-pgbouncer-exporter";
	struct harness_sluice *h;
	struct harness_http_reply reply = {0};
	char log_path[512], port[16], listen_port[16], *metrics, *log;
	int http_port, status;
	bool scraped;
	pid_t pid;

	if (access(exporter, X_OK) != 0)
		cr_skip_test("%s is not installed (tests/harness/deps.sh installs it)", exporter);
	h = start("default_pool_size = 5\n");
	{
		PGconn *c = app(h);

		for (int i = 0; i < 3; i++)
			cr_assert_eq(harness_query_int(c, "select 1"), 1);
		PQfinish(c);
	}
	http_port = free_tcp_port();
	snprintf(port, sizeof(port), "%d", h->port);
	snprintf(listen_port, sizeof(listen_port), "%d", http_port);
	snprintf(log_path, sizeof(log_path), "%s/exporter.log", h->dir);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		setenv("PGPASSWORD", "exporter-secret", 1);
		setenv("PGCONNECT_TIMEOUT", "10", 1);
		execl(exporter, exporter, "--pgbouncer-host", "127.0.0.1", "--pgbouncer-port", port,
		      "--pgbouncer-user", "pgbouncer", "--host", "127.0.0.1", "--port", listen_port,
		      (char *)NULL);
		_exit(127);
	}
	/* Until the exporter listens, nothing answers (status 0) and the poll goes on. */
	scraped =
	    harness_wait_for((free(reply.text), reply = harness_http_get(http_port, "/metrics"),
	                      has_metric(reply.text, "pgbouncer_requests_total{database=\"app\"}")),
	                     WAIT_S);
	metrics = reply.text;
	if (!scraped) {
		log = harness_read_file(log_path);
		cr_assert_fail("no stats metrics from the exporter; its log:\n%s", log);
	}
	cr_assert(has_metric(metrics, "pgbouncer_active_clients{database=\"app\",user=\"app\"}"),
	          "%s", metrics);
	cr_assert(
	    has_metric(metrics, "pgbouncer_waiting_clients{database=\"app\",user=\"app\"} 0.0"),
	    "%s", metrics);
	cr_assert(has_metric(metrics, "pgbouncer_pool_size{database=\"app\"} 5.0"), "%s", metrics);
	cr_assert(has_metric(metrics, "pgbouncer_requests_total{database=\"app\"} 3.0"), "%s",
	          metrics);
	cr_assert(has_metric(metrics, "pgbouncer_pools 1.0"), "%s", metrics);
	cr_assert(has_metric(metrics, "pgbouncer_databases 2.0"), "%s", metrics);
	free(metrics);
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	log = harness_read_file(log_path);
	cr_assert(strstr(log, "Listing on port") != NULL, "exporter log:\n%s", log);
	cr_assert(strstr(log, "Traceback") == NULL && strstr(log, "Error") == NULL &&
	              strstr(log, "ERROR") == NULL && strstr(log, "Exception") == NULL,
	          "the exporter logged errors:\n%s", log);
	free(log);
	cr_assert(harness_sluice_alive(h));
}
