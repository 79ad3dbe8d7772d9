/*
 * The driver matrix (issue 3, docs/drivers.md): the drivers people use, each
 * through sluice in transaction mode with 40 clients on a pool of 4, so their
 * named prepared statements and session state really move between server
 * connections.  Each test starts sluice, runs one program of tests/drivers
 * (tests/drivers/run.sh VARIANT SCENARIO) with a bounded timeout, and wants
 * exit 0 and the program's summary line "RESULT VARIANT SCENARIO: ok".
 *
 * A driver that is not installed fails its test with a message naming the
 * package (tests/harness/deps.sh installs them all); it is never skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

#define POOL_SIZE 4
/*
 * Two workers whatever the machine: with as many workers as servers each
 * has one of its own and statements never move between backends.
 */
#define BASE_INI       "workers = 2\ndefault_pool_size = 4\nmax_client_conn = 1000\n"
#define OUTPUT_TAIL    12000
#define EXIT_NO_DRIVER 3

TestSuite(drivers, .fini = harness_teardown, .timeout = 480);

/* The last `max` bytes of a program's output, for assertion messages. */
static const char *tail(const char *out, size_t max)
{
	size_t len = out != NULL ? strlen(out) : 0;

	if (out == NULL)
		return "";
	return len > max ? out + len - max : out;
}

struct driver_run {
	const char *variant;
	const char *scenario;
	const char *extra_ini; /* after BASE_INI; NULL = none */
	int pool_size;         /* what the clients may see as distinct backends */
	bool expect_moves;     /* some client's statements must change backend */
	const char *const *env;
	int timeout_s;
};

static void run_driver(const struct driver_run *r)
{
	const char *root = getenv("SLUICE_SOURCE_ROOT");
	struct harness_sluice *h;
	char ini[1024], script[1024], limit[16], port[32], backends[48], *out = NULL;
	const char *env[24];
	char want[128];
	int n = 0, rc;

	cr_assert(root != NULL, "SLUICE_SOURCE_ROOT is not set (meson sets it)");
	snprintf(ini, sizeof(ini), "%s%s", BASE_INI, r->extra_ini != NULL ? r->extra_ini : "");
	h = harness_start_sluice(ini);

	snprintf(port, sizeof(port), "PGPORT=%d", h->port);
	snprintf(backends, sizeof(backends), "DRIVER_MAX_BACKENDS=%d", r->pool_size);
	env[n++] = "PGHOST=127.0.0.1";
	env[n++] = port;
	env[n++] = "PGUSER=app";
	env[n++] = "PGPASSWORD=app-secret";
	env[n++] = "PGDATABASE=app";
	env[n++] = "PGCONNECT_TIMEOUT=30";
	env[n++] = backends;
	env[n++] = r->expect_moves ? "DRIVER_EXPECT_MOVES=1" : "DRIVER_EXPECT_MOVES=0";
	env[n++] = "DRIVER_STRICT=1";
	for (int i = 0; r->env != NULL && r->env[i] != NULL; i++)
		env[n++] = r->env[i];
	env[n] = NULL;

	/* timeout(1) kills the whole process group (a JVM, both programs of the
	 * mixed run), harness_run only its direct child. */
	snprintf(script, sizeof(script), "%s/tests/drivers/run.sh", root);
	snprintf(limit, sizeof(limit), "%d", r->timeout_s);
	{
		const char *argv[] = {"timeout", "-k",       "5",         limit,
		                      script,    r->variant, r->scenario, NULL};

		rc = harness_run(argv, env, r->timeout_s + 20, &out);
	}
	cr_log_info("%s %s:\n%s", r->variant, r->scenario, tail(out, OUTPUT_TAIL));
	cr_assert_neq(rc, EXIT_NO_DRIVER,
	              "driver for %s is not installed (run tests/harness/deps.sh):\n%s", r->variant,
	              tail(out, OUTPUT_TAIL));
	cr_assert_neq(rc, 124, "%s %s ran past %d s:\n%s", r->variant, r->scenario, r->timeout_s,
	              tail(out, OUTPUT_TAIL));
	cr_assert_eq(rc, 0, "%s %s exited with %d:\n%s", r->variant, r->scenario, rc,
	             tail(out, OUTPUT_TAIL));
	snprintf(want, sizeof(want), "RESULT %s %s: ok", r->variant, r->scenario);
	cr_assert(strstr(out, want) != NULL, "no \"%s\" in the output:\n%s", want,
	          tail(out, OUTPUT_TAIL));
	cr_assert(harness_sluice_alive(h), "sluice died during %s %s", r->variant, r->scenario);
	cr_assert_leq(harness_count_backends("app", NULL), r->pool_size,
	              "more server connections than the pool allows");
	free(out);
}

/* 40 clients, 50 iterations of a few parameterized statements in and out of
 * transactions, on a pool of 4. */
static void matrix(const char *variant)
{
	struct driver_run r = {.variant = variant,
	                       .scenario = "matrix",
	                       .pool_size = POOL_SIZE,
	                       .expect_moves = true,
	                       .timeout_s = 180};

	run_driver(&r);
}

/* ALTER TABLE changes the result type under 40 clients' prepared statement:
 * each sees at most one 0A000 error, and its next execution succeeds with
 * the new type. */
static void alter(const char *variant)
{
	struct driver_run r = {.variant = variant,
	                       .scenario = "alter",
	                       .pool_size = POOL_SIZE,
	                       .expect_moves = true,
	                       .timeout_s = 180};

	run_driver(&r);
}

/* SET search_path / TimeZone / application_name and startup parameters: each
 * client's transactions see its own values while 40 clients share 4 servers. */
static void session(const char *variant)
{
	struct driver_run r = {.variant = variant,
	                       .scenario = "session",
	                       .pool_size = POOL_SIZE,
	                       .expect_moves = true,
	                       .timeout_s = 180};

	run_driver(&r);
}

/* One client, 10,000 distinct statements, one server: pg_prepared_statements
 * on that server never exceeds max_prepared_statements. */
static void memory(const char *variant, const char *scenario)
{
	const char *const env[] = {"DRIVER_MAX_PREPARED=100", "DRIVER_STATEMENTS=10000", NULL};
	struct driver_run r = {.variant = variant,
	                       .scenario = scenario,
	                       .extra_ini =
	                           "default_pool_size = 1\nmax_prepared_statements = 100\n",
	                       .pool_size = 1,
	                       .env = env,
	                       .timeout_s = 420};

	run_driver(&r);
}

Test(drivers, psycopg3_prepare0_matrix)
{
	matrix("psycopg3-prepare0");
}
Test(drivers, psycopg3_default_matrix)
{
	matrix("psycopg3-default");
}
/*
 * Session state (issue 17, docs/session-state.md): LISTEN/NOTIFY, SET and
 * set_config of a custom setting and TimeZone over 40 transactions, SQL
 * PREPARE/EXECUTE of one name in 8 clients, an advisory lock held across
 * transactions, with 4 more clients churning the pool.
 */
static void txnstate(const char *variant)
{
	struct driver_run r = {
	    .variant = variant, .scenario = "txnstate", .pool_size = POOL_SIZE, .timeout_s = 180};

	run_driver(&r);
}

Test(drivers, psycopg2_txnstate)
{
	txnstate("psycopg2");
}
Test(drivers, psycopg3_prepare0_txnstate)
{
	txnstate("psycopg3-prepare0");
}
Test(drivers, asyncpg_cache_txnstate)
{
	txnstate("asyncpg-cache");
}
Test(drivers, jdbc_threshold1_txnstate)
{
	txnstate("jdbc-threshold1");
}
Test(drivers, node_pg_named_txnstate)
{
	txnstate("node-pg-named");
}
Test(drivers, postgresjs_txnstate)
{
	txnstate("postgresjs");
}
Test(drivers, psql_txnstate)
{
	txnstate("psql");
}

Test(drivers, psycopg2_matrix)
{
	matrix("psycopg2");
}
Test(drivers, asyncpg_cache_matrix)
{
	matrix("asyncpg-cache");
}
Test(drivers, asyncpg_prepare_matrix)
{
	matrix("asyncpg-prepare");
}
Test(drivers, jdbc_threshold1_matrix)
{
	matrix("jdbc-threshold1");
}
Test(drivers, jdbc_default_matrix)
{
	matrix("jdbc-default");
}
Test(drivers, node_pg_named_matrix)
{
	matrix("node-pg-named");
}
Test(drivers, postgresjs_matrix)
{
	matrix("postgresjs");
}

Test(drivers, psycopg3_prepare0_alter)
{
	alter("psycopg3-prepare0");
}
Test(drivers, psycopg3_default_alter)
{
	alter("psycopg3-default");
}
Test(drivers, asyncpg_cache_alter)
{
	alter("asyncpg-cache");
}
Test(drivers, asyncpg_prepare_alter)
{
	alter("asyncpg-prepare");
}
Test(drivers, jdbc_threshold1_alter)
{
	alter("jdbc-threshold1");
}
Test(drivers, jdbc_default_alter)
{
	alter("jdbc-default");
}
Test(drivers, node_pg_named_alter)
{
	alter("node-pg-named");
}
Test(drivers, postgresjs_alter)
{
	alter("postgresjs");
}

Test(drivers, psycopg3_prepare0_session)
{
	session("psycopg3-prepare0");
}
Test(drivers, asyncpg_cache_session)
{
	session("asyncpg-cache");
}
Test(drivers, jdbc_threshold1_session)
{
	session("jdbc-threshold1");
}
Test(drivers, node_pg_named_session)
{
	session("node-pg-named");
}
Test(drivers, postgresjs_session)
{
	session("postgresjs");
}
/* pgJDBC (startup extra_float_digits=3, TimeZone=America/Sao_Paulo) and
 * psycopg 3 (neither) at the same time on the same pool of 4. */
Test(drivers, mixed_jdbc_psycopg3_session)
{
	session("mixed");
}

Test(drivers, psycopg3_memory)
{
	memory("psycopg3-prepare0", "memory");
}
/* psycopg 3's own LRU (prepared_max = 100) DEALLOCATEs what it evicts. */
Test(drivers, psycopg3_memory_client_deallocate)
{
	memory("psycopg3-prepare0", "memory-dealloc");
}
Test(drivers, asyncpg_prepare_memory)
{
	memory("asyncpg-prepare", "memory");
}

/*
 * pgbench -M prepared, 64 clients on the pool of 4, 50 transactions each, one
 * thread per client: pgbench 15 prepares a client's statements with a
 * synchronous PQprepare, so with fewer threads than clients a thread waits for
 * a server while another client of the same thread holds one in an open
 * transaction whose next command that thread never gets to send (the same
 * against any pooler with fewer servers than clients; docs/prepared.md).
 */
static void pgbench_prepared(bool select_only)
{
	struct harness_sluice *h;
	char pgbench[512], url[256], *out = NULL;
	const char *env[] = {"PGCONNECT_TIMEOUT=30", NULL};
	const char *argv[16];
	int n = 0, rc;

	harness_pgbench_init();
	h = harness_start_sluice(BASE_INI);
	harness_url(h, "app", "app-secret", "app", url, sizeof(url));
	argv[n++] = harness_pg_tool("pgbench", pgbench, sizeof(pgbench));
	argv[n++] = "-n";
	argv[n++] = "-c";
	argv[n++] = "64";
	argv[n++] = "-j";
	argv[n++] = "64";
	argv[n++] = "-t";
	argv[n++] = "50";
	argv[n++] = "-M";
	argv[n++] = "prepared";
	if (select_only)
		argv[n++] = "-S";
	argv[n++] = url;
	argv[n] = NULL;

	rc = harness_run(argv, env, 180, &out);
	cr_log_info("%s", tail(out, OUTPUT_TAIL));
	cr_assert_eq(rc, 0, "pgbench -M prepared exited with %d:\n%s", rc, tail(out, OUTPUT_TAIL));
	cr_assert(strstr(out, "number of transactions actually processed: 3200/3200") != NULL,
	          "pgbench did not process 3200/3200 transactions:\n%s", tail(out, OUTPUT_TAIL));
	cr_assert(strstr(out, "number of failed transactions: 0 (0.000%)") != NULL,
	          "pgbench reports failed transactions:\n%s", tail(out, OUTPUT_TAIL));
	cr_assert_leq(harness_count_backends("app", NULL), POOL_SIZE);
	free(out);
}

Test(drivers, pgbench_prepared_select_only)
{
	pgbench_prepared(true);
}
Test(drivers, pgbench_prepared_tpcb)
{
	pgbench_prepared(false);
}
