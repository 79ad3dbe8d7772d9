/*
 * limiter = redis (docs/tenants.md): three sluice processes in front of one
 * Postgres share one tenant budget through one real Redis (started by
 * tests/harness/redis.sh; its facts arrive in SLUICE_TEST_REDIS_*, and
 * without them every test here skips).  Each test uses its own key prefix,
 * so it never sees another's buckets.  The test that stops Redis runs a
 * private one (SLUICE_REDIS_NAME), never the shared one.
 *
 * Counts, not times, are asserted: a run lasts until the fleet admitted
 * its burst plus RUN_S seconds of its rate, however long that takes on a
 * slow machine, and must not have admitted more than the burst plus the
 * rate times the run's length (docs/tenants.md, lease math).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(redis, .fini = harness_teardown, .timeout = 300);

#define USERS    "\"tenant_a\" \"a-secret\"\n\"admin\" \"admin-secret\"\n"
#define FLEET    3
#define PER_NODE 2
#define WAIT_S   30.0
#define RATE     20
#define RUN_S    20.0
#define DATABASES                                                                                  \
	"[databases]\n"                                                                            \
	"app = host=@PGHOST@ port=@PGPORT@ dbname=app user=app password=app-secret\n"

struct redis_env {
	const char *url;     /* redis://127.0.0.1:PORT/0 */
	const char *port;    /* its port, for redis-cli */
	const char *cli;     /* redis-cli */
	const char *harness; /* tests/harness/redis.sh */
};

static struct redis_env redis_env(void)
{
	struct redis_env e = {getenv("SLUICE_TEST_REDIS_URL"), getenv("SLUICE_TEST_REDIS_PORT"),
	                      getenv("SLUICE_TEST_REDIS_CLI"), getenv("SLUICE_TEST_REDIS_HARNESS")};

	harness_pg(); /* skips without Postgres */
	if (e.url == NULL || e.port == NULL || e.cli == NULL || e.harness == NULL)
		cr_skip_test("no Redis: run tests/harness/redis.sh start and export its env file");
	return e;
}

/* A key prefix no other test (or earlier run) uses. */
static void unique_prefix(char *buf, size_t len, const char *test)
{
	snprintf(buf, len, "it-%d-%s:", (int)getpid(), test);
}

/* redis-cli against `port`; returns its output (to free), fails the test if it fails. */
static char *redis_cli(const struct redis_env *e, const char *port, const char *a1, const char *a2,
                       const char *a3, const char *a4)
{
	const char *argv[] = {e->cli, "-h", "127.0.0.1", "-p", port, a1, a2, a3, a4, NULL};
	char *out = NULL;
	int rc = harness_run(argv, NULL, 20, &out);

	cr_assert_eq(rc, 0, "redis-cli %s failed: %s", a1, out ? out : "");
	return out;
}

/* A node's ini: limiter = redis on `url` (NULL: limiter = local), tenant a at RATE/s. */
static void node_ini(char *ini, size_t len, const char *url, const char *prefix, const char *extra)
{
	char limiter[512] = "limiter = local\n";

	if (url != NULL)
		snprintf(limiter, sizeof(limiter),
		         "limiter = redis\nredis_url = %s\nredis_key_prefix = %s\n", url, prefix);
	snprintf(ini, len,
	         "admin_users = admin\nworkers = 2\nrate_limit_wait = 1s\n%s%s\n" DATABASES
	         "[tenant.a]\nusers = tenant_a\nquery_rate = %d/s\n",
	         limiter, extra, RATE);
}

static struct harness_sluice *start_node(const char *url, const char *prefix, const char *extra)
{
	char ini[2048];

	node_ini(ini, sizeof(ini), url, prefix, extra);
	return harness_start_sluice_users(ini, USERS);
}

/* One cell of the tenant's query_rate row of SHOW RATELIMITS ("" when there is none). */
static void ratelimit_cell(struct harness_sluice *h, const char *column, char *buf, size_t len)
{
	PGconn *a = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGresult *res = harness_exec_ok(a, "SHOW RATELIMITS");
	int col = PQfnumber(res, column);

	cr_assert_geq(col, 0, "SHOW RATELIMITS has no column %s", column);
	buf[0] = '\0';
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, 0), "a") == 0 &&
		    strcmp(PQgetvalue(res, i, 1), "query_rate") == 0)
			snprintf(buf, len, "%s", PQgetvalue(res, i, col));
	PQclear(res);
	PQfinish(a);
}

static bool cell_is(struct harness_sluice *h, const char *column, const char *want)
{
	char v[64];

	ratelimit_cell(h, column, v, sizeof(v));
	return strcmp(v, want) == 0;
}

/* Every node connected to Redis and seeing all FLEET instances. */
static bool fleet_is(struct harness_sluice **nodes, const char *state)
{
	char live[8];

	snprintf(live, sizeof(live), "%d", FLEET);
	for (int i = 0; i < FLEET; i++)
		if (!cell_is(nodes[i], "redis_state", state) ||
		    (strcmp(state, "up") == 0 && !cell_is(nodes[i], "instances", live)))
			return false;
	return true;
}

/* ---- closed loops of "select 1" on every node ---- */

struct client_loop {
	PGconn *conn;
	volatile int *stop; /* set by the test: end the loop */
	_Atomic long ok;    /* read by the test while the loop runs */
	long refused, other;
	char first_error[256];
};

static void *client_main(void *arg)
{
	struct client_loop *l = arg;

	while (!*l->stop) {
		PGresult *res = PQexec(l->conn, "select 1");

		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			l->ok++;
		else if (strcmp(harness_sqlstate(res), "53400") == 0)
			l->refused++;
		else if (l->other++ == 0)
			snprintf(l->first_error, sizeof(l->first_error), "%s",
			         PQresultErrorMessage(res));
		PQclear(res);
	}
	return NULL;
}

struct load {
	struct client_loop loops[FLEET * PER_NODE];
	pthread_t threads[FLEET * PER_NODE];
	volatile int stop;
	double started, stopped;
};

static void load_start(struct load *ld, struct harness_sluice **nodes)
{
	memset(ld, 0, sizeof(*ld));
	for (int i = 0; i < FLEET * PER_NODE; i++) {
		ld->loops[i].conn =
		    harness_connect_ok(nodes[i / PER_NODE], "tenant_a", "a-secret", "app");
		ld->loops[i].stop = &ld->stop;
	}
	ld->started = harness_now();
	for (int i = 0; i < FLEET * PER_NODE; i++)
		pthread_create(&ld->threads[i], NULL, client_main, &ld->loops[i]);
}

/* Stops the clients; returns the requests admitted, fails the test on any other error. */
static long load_stop(struct load *ld)
{
	long ok = 0;

	ld->stop = 1;
	for (int i = 0; i < FLEET * PER_NODE; i++) {
		pthread_join(ld->threads[i], NULL);
		PQfinish(ld->loops[i].conn);
		cr_expect_eq(ld->loops[i].other, 0, "client %d: %ld errors, first: %s", i,
		             ld->loops[i].other, ld->loops[i].first_error);
		ok += ld->loops[i].ok;
	}
	ld->stopped = harness_now();
	return ok;
}

static void start_fleet(struct harness_sluice **nodes, const char *url, const char *prefix,
                        const char *extra)
{
	for (int i = 0; i < FLEET; i++)
		nodes[i] = start_node(url, prefix, extra);
	cr_assert(harness_wait_for(fleet_is(nodes, "up"), WAIT_S),
	          "the fleet did not come up on Redis with %d instances", FLEET);
}

/* Requests the fleet admitted so far (the loops count as they go). */
static long load_admitted(struct load *ld)
{
	long ok = 0;

	for (int i = 0; i < FLEET * PER_NODE; i++)
		ok += ld->loops[i].ok;
	return ok;
}

Test(redis, three_instances_share_one_budget)
{
	struct redis_env e = redis_env();
	struct harness_sluice *nodes[FLEET];
	struct load ld;
	char prefix[64];
	double want, elapsed;
	long ok, per_node[FLEET] = {0};

	unique_prefix(prefix, sizeof(prefix), "share");
	start_fleet(nodes, e.url, prefix, "");
	load_start(&ld, nodes);
	/* The bucket starts full: one burst (one second's worth), then the rate. */
	cr_assert(harness_wait_for(load_admitted(&ld) >= RATE + RATE * (long)RUN_S, RUN_S * 4),
	          "the fleet admitted only %ld (burst %d + %d/s for %.0f s expected)",
	          load_admitted(&ld), RATE, RATE, RUN_S);
	ok = load_stop(&ld);
	elapsed = ld.stopped - ld.started;
	want = RATE + RATE * elapsed;
	cr_log_info("admitted %ld over %.2f s; burst + rate x time = %.0f", ok, elapsed, want);
	/*
	 * At most b + r t; 10 % over is what a refill slower than redis_timeout
	 * on a loaded machine may add (each instance then spends its share of
	 * the rate locally while Redis' bucket refills too).
	 */
	cr_assert_leq(ok, want * 1.1, "admitted %ld over %.1f s, more than burst %d + %d/s x time",
	              ok, elapsed, RATE, RATE);
	for (int i = 0; i < FLEET * PER_NODE; i++)
		per_node[i / PER_NODE] += ld.loops[i].ok;
	/* Shared, not split by a fixed quota: every node got some, none got all. */
	for (int i = 0; i < FLEET; i++)
		cr_assert(per_node[i] > 0 && per_node[i] < ok, "node %d admitted %ld of %ld", i,
		          per_node[i], ok);
}

static char *run_harness(const struct redis_env *e, const char *name, const char *verb)
{
	char var[96];
	const char *env[] = {var, NULL};
	const char *argv[] = {e->harness, verb, NULL};
	char *out = NULL;

	snprintf(var, sizeof(var), "SLUICE_REDIS_NAME=%s", name);
	cr_assert_eq(harness_run(argv, env, 60, &out), 0, "redis.sh %s: %s", verb, out ? out : "");
	return out;
}

/* The port in the env file redis.sh printed. */
static void env_port(const char *env, char *port, size_t len)
{
	const char *p = strstr(env, "SLUICE_TEST_REDIS_PORT='");

	cr_assert_not_null(p, "no port in %s", env);
	p += strlen("SLUICE_TEST_REDIS_PORT='");
	snprintf(port, len, "%.*s", (int)strcspn(p, "'"), p);
}

/* Starts a Redis of the test's own, SLUICE_REDIS_NAME `name`: its URL and port. */
static void private_redis(const struct redis_env *e, const char *name, char *url, size_t urllen,
                          char *port, size_t portlen)
{
	char *out = run_harness(e, name, "start");

	env_port(out, port, portlen);
	free(out);
	snprintf(url, urllen, "redis://127.0.0.1:%s/0", port);
}

Test(redis, redis_stopped_and_back_local_mode)
{
	struct redis_env e = redis_env();
	struct harness_sluice *nodes[FLEET];
	struct load ld;
	char name[64], url[96], port[16], prefix[64], *out;
	long ok;

	snprintf(name, sizeof(name), "redis-it-%d", (int)getpid());
	private_redis(&e, name, url, sizeof(url), port, sizeof(port));
	unique_prefix(prefix, sizeof(prefix), "down");
	start_fleet(nodes, url, prefix, "redis_failure_mode = local");
	load_start(&ld, nodes);

	free(run_harness(&e, name, "stop"));
	cr_assert(harness_wait_for(fleet_is(nodes, "down"), WAIT_S),
	          "the nodes did not notice that Redis stopped");
	cr_assert(harness_log_contains(nodes[0], "falls back to redis_failure_mode local"));
	/* Each node now limits alone to its share: requests go on, none fails. */
	ok = ld.loops[0].ok + ld.loops[2].ok + ld.loops[4].ok;
	cr_assert(
	    harness_wait_for(ld.loops[0].ok + ld.loops[2].ok + ld.loops[4].ok > ok + FLEET, WAIT_S),
	    "no request was admitted while Redis was down");

	out = run_harness(&e, name, "start");
	free(out);
	cr_assert(harness_wait_for(fleet_is(nodes, "up"), WAIT_S),
	          "the nodes did not share again once Redis was back");
	/* Shared again: the bucket is back in Redis, refilled by the fleet's leases. */
	{
		char key[128];

		snprintf(key, sizeof(key), "%sbucket:a:query", prefix);
		cr_assert(harness_wait_for(({
			                           char *v = redis_cli(&e, port, "EXISTS", key,
			                                               NULL, NULL);
			                           bool found = atoi(v) == 1;
			                           free(v);
			                           found;
		                           }),
		                           WAIT_S),
		          "no bucket in Redis after it came back");
	}
	cr_assert(load_stop(&ld) > 0);
	cr_assert(harness_log_contains(nodes[1], "limits are shared again"));
	free(run_harness(&e, name, "destroy"));
}

Test(redis, bad_redis_url_is_a_configuration_error)
{
	struct redis_env e = redis_env();
	const char *bin = getenv("SLUICE_BIN");
	const char *env[] = {"SLUICE_LIMITER=redis", "SLUICE_REDIS_URL=redis://:hunter2@host:99999",
	                     NULL};
	const char *argv[] = {bin, "--upstream", "postgres://app:app-secret@127.0.0.1:1/app", NULL};
	char *out = NULL;
	int rc;

	(void)e;
	cr_assert_not_null(bin);
	rc = harness_run(argv, env, 30, &out);
	cr_assert_neq(rc, 0, "sluice started with a bad redis_url: %s", out);
	cr_assert(out != NULL && strstr(out, "redis_url: bad port") != NULL, "output: %s", out);
	cr_assert(strstr(out, "hunter2") == NULL, "the password was printed: %s", out);
	free(out);
}

/* Every request of a tenant client is admitted (failure mode local), none errs. */
static void queries_go_through(struct harness_sluice *h, int n)
{
	PGconn *c = harness_connect_ok(h, "tenant_a", "a-secret", "app");

	for (int i = 0; i < n; i++)
		PQclear(harness_exec_ok(c, "select 1"));
	PQfinish(c);
}

Test(redis, redis_refusing_auth_falls_back_and_says_why)
{
	struct redis_env e = redis_env();
	struct harness_sluice *h;
	char url[128], prefix[64], state[32];

	/* The harness Redis has no password: AUTH with one is refused. */
	snprintf(url, sizeof(url), "redis://:wrong-password@127.0.0.1:%s/0", e.port);
	unique_prefix(prefix, sizeof(prefix), "auth");
	h = start_node(url, prefix, "");
	cr_assert(harness_wait_for(harness_log_contains(h, "AUTH refused"), WAIT_S),
	          "no log line about the refused AUTH");
	cr_assert_not(harness_log_contains(h, "wrong-password"), "the password was logged");
	queries_go_through(h, 5);
	ratelimit_cell(h, "redis_state", state, sizeof(state));
	cr_assert_str_eq(state, "down");
	cr_assert(harness_sluice_alive(h));
}

Test(redis, wrong_type_key_refused_in_closed_mode_then_recovers)
{
	struct redis_env e = redis_env();
	struct harness_sluice *h;
	char prefix[64], key[128];
	PGconn *c;
	PGresult *res;
	const char *msg;

	unique_prefix(prefix, sizeof(prefix), "type");
	snprintf(key, sizeof(key), "%sbucket:a:query", prefix);
	/* Someone else's string where the bucket hash goes. */
	free(redis_cli(&e, e.port, "SET", key, "not-a-bucket", NULL));
	h = start_node(e.url, prefix, "redis_failure_mode = closed");
	cr_assert(harness_wait_for(cell_is(h, "redis_state", "up"), WAIT_S));
	c = harness_connect_ok(h, "tenant_a", "a-secret", "app");
	/* The first request may find the script's error still out: poll for the refusal. */
	cr_assert(harness_wait_for(({
		                           res = PQexec(c, "select 1");
		                           bool refused =
		                               strcmp(harness_sqlstate(res), "53400") == 0;
		                           if (!refused)
			                           PQclear(res);
		                           refused;
	                           }),
	                           WAIT_S),
	          "closed mode did not refuse while the bucket key was unusable");
	msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	cr_assert(msg != NULL && strstr(msg, "Redis") != NULL, "message: %s", msg);
	PQclear(res);
	cr_assert(harness_log_contains(h, "WRONGTYPE"), "no log line naming the wrong type");
	cr_assert(harness_log_contains(h, key), "the log line does not name the key");

	free(redis_cli(&e, e.port, "DEL", key, NULL, NULL));
	cr_assert(harness_wait_for(({
		                           res = PQexec(c, "select 1");
		                           bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
		                           PQclear(res);
		                           ok;
	                           }),
	                           WAIT_S),
	          "requests were not admitted once the key was removed");
	PQfinish(c);
	cr_assert(harness_sluice_alive(h));
}

Test(redis, lua_error_in_the_script_falls_back)
{
	struct redis_env e = redis_env();
	struct harness_sluice *h;
	char user[64], url[160], prefix[64], rule[80];

	/*
	 * A Redis user that may run scripts but not HSET: the script fails at
	 * run time inside Lua, as with any other script error.
	 */
	snprintf(user, sizeof(user), "it-%d-nohset", (int)getpid());
	snprintf(rule, sizeof(rule), ">lua-secret");
	{
		const char *argv[] = {e.cli, "-h", "127.0.0.1", "-p", e.port,  "ACL",   "SETUSER",
		                      user,  "on", rule,        "~*", "+@all", "-hset", NULL};
		char *out = NULL;

		cr_assert_eq(harness_run(argv, NULL, 20, &out), 0, "%s", out ? out : "");
		free(out);
	}
	snprintf(url, sizeof(url), "redis://%s:lua-secret@127.0.0.1:%s/0", user, e.port);
	unique_prefix(prefix, sizeof(prefix), "lua");
	h = start_node(url, prefix, "");
	cr_assert(harness_wait_for(cell_is(h, "redis_state", "up"), WAIT_S));
	queries_go_through(h, 5);
	cr_assert(harness_wait_for(harness_log_contains(h, "bucket script failed"), WAIT_S),
	          "no log line about the failing script");
	cr_assert(harness_sluice_alive(h));
	free(redis_cli(&e, e.port, "ACL", "DELUSER", user, NULL));
}

Test(redis, metrics_say_whether_redis_is_up)
{
	struct redis_env e = redis_env();
	struct harness_sluice *h;
	char prefix[64], *body;

	unique_prefix(prefix, sizeof(prefix), "metrics");
	h = start_node(e.url, prefix, "metrics_listen = 127.0.0.1:0");
	cr_assert(harness_wait_for(cell_is(h, "redis_state", "up"), WAIT_S));
	queries_go_through(h, 3);
	body = harness_metrics(harness_metrics_port(h));
	cr_assert(strstr(body, "\nsluice_redis_up 1\n") != NULL, "%s", body);
	cr_assert(strstr(body, "\nsluice_redis_errors_total ") != NULL);
	cr_assert(strstr(body, "\nsluice_redis_roundtrip_seconds_bucket{le=\"0.001000\"} ") != NULL,
	          "%s", body);
	cr_assert(strstr(body, "\nsluice_redis_roundtrip_seconds_count 0\n") == NULL,
	          "no round trip was measured");
	harness_promtool_check(h, body);
	free(body);
}

/* ---- reload ---- */

/*
 * Where a failure mode would change what a test sees (closed refuses, local
 * splits a cap), Redis is given long to answer: a loaded machine must not
 * make Redis look down.
 */
#define SLOW_REDIS "redis_timeout = 5s\n"

/* Rewrites the node's ini for `url` and `prefix` (NULL url: limiter = local) and reloads it. */
static void reload_node(struct harness_sluice *h, const char *url, const char *prefix,
                        const char *extra)
{
	char ini[2048];
	PGconn *a;

	node_ini(ini, sizeof(ini), url, prefix, extra);
	harness_write_ini(h, ini);
	a = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PQclear(harness_exec_ok(a, "RELOAD"));
	PQfinish(a);
}

/* Does `key` exist in the Redis on `port`? */
static bool key_exists(const struct redis_env *e, const char *port, const char *key)
{
	char *v = redis_cli(e, port, "EXISTS", key, NULL, NULL);
	bool found = atoi(v) == 1;

	free(v);
	return found;
}

/* One query on `c` answered (waiting for a token is fine; an error is not). */
static bool query_ok(PGconn *c)
{
	PGresult *res = PQexec(c, "select 1");
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;

	cr_assert(ok, "query failed during the switch: %s", PQresultErrorMessage(res));
	PQclear(res);
	return ok;
}

/* Polls while `c` keeps querying: the switch must not cost the connected client anything. */
#define wait_querying(c, cond) harness_wait_for((query_ok(c) && (cond)), WAIT_S)

Test(redis, reload_switches_backends_and_urls_with_clients_connected)
{
	struct redis_env e = redis_env();
	struct harness_sluice *h;
	char name[64], url2[96], port2[16], prefix[64], key[128];
	PGconn *c;

	/* A second Redis, ours alone, to move to. */
	snprintf(name, sizeof(name), "redis-it-%d-reload", (int)getpid());
	private_redis(&e, name, url2, sizeof(url2), port2, sizeof(port2));
	unique_prefix(prefix, sizeof(prefix), "reload");
	snprintf(key, sizeof(key), "%sbucket:a:query", prefix);

	h = start_node(NULL, NULL, "redis_failure_mode = closed\n" SLOW_REDIS);
	c = harness_connect_ok(h, "tenant_a", "a-secret", "app");
	query_ok(c);
	cr_assert(cell_is(h, "backend", "local"));

	/* local -> redis: closed mode, so a request that reached Redis before it was up fails. */
	reload_node(h, e.url, prefix, "redis_failure_mode = closed\n" SLOW_REDIS);
	cr_assert(wait_querying(c, cell_is(h, "backend", "redis") &&
	                               cell_is(h, "redis_state", "up") &&
	                               key_exists(&e, e.port, key)),
	          "limiter = redis did not take over on reload");

	/* Another Redis: the bucket appears there, the old one's is left to expire. */
	reload_node(h, url2, prefix, "redis_failure_mode = closed\n" SLOW_REDIS);
	cr_assert(wait_querying(c, key_exists(&e, port2, key) && cell_is(h, "redis_state", "up")),
	          "the reload did not move the limiter to the second Redis");
	cr_assert(harness_log_contains(h, port2), "the move was not logged");

	/* The old Redis no longer hears from this instance: its bucket is not refilled. */
	free(redis_cli(&e, e.port, "DEL", key, NULL, NULL));
	for (int i = 0; i < 3 * RATE; i++)
		query_ok(c);
	cr_assert_not(key_exists(&e, e.port, key), "the old Redis is still used");

	/* Back to local: no Redis needed at all, even with the second one gone. */
	reload_node(h, NULL, NULL, "redis_failure_mode = closed\n" SLOW_REDIS);
	cr_assert(wait_querying(c, cell_is(h, "backend", "local")),
	          "limiter = local did not come back on reload");
	free(run_harness(&e, name, "destroy"));
	for (int i = 0; i < 3 * RATE; i++)
		query_ok(c);
	cr_assert_eq(PQstatus(c), CONNECTION_OK);
	PQfinish(c);
	cr_assert(harness_sluice_alive(h));
}

Test(redis, reload_of_the_key_prefix_uses_new_keys)
{
	struct redis_env e = redis_env();
	struct harness_sluice *h;
	char p1[64], p2[64], k1[128], k2[128], inst2[128];
	PGconn *c;

	unique_prefix(p1, sizeof(p1), "prefix1");
	unique_prefix(p2, sizeof(p2), "prefix2");
	snprintf(k1, sizeof(k1), "%sbucket:a:query", p1);
	snprintf(k2, sizeof(k2), "%sbucket:a:query", p2);
	snprintf(inst2, sizeof(inst2), "%sinstances", p2);
	h = start_node(e.url, p1, "");
	cr_assert(harness_wait_for(cell_is(h, "redis_state", "up"), WAIT_S));
	c = harness_connect_ok(h, "tenant_a", "a-secret", "app");
	cr_assert(wait_querying(c, key_exists(&e, e.port, k1)), "no bucket under the first prefix");
	cr_assert_not(key_exists(&e, e.port, k2));

	reload_node(h, e.url, p2, "");
	cr_assert(wait_querying(c, key_exists(&e, e.port, k2) && key_exists(&e, e.port, inst2)),
	          "no bucket under the new prefix after the reload");
	/* A timeout change alone keeps the connections: the state stays up throughout. */
	reload_node(h, e.url, p2, "redis_timeout = 2s");
	cr_assert(cell_is(h, "redis_state", "up"));
	free(redis_cli(&e, e.port, "DEL", k1, NULL, NULL));
	for (int i = 0; i < 3 * RATE; i++)
		query_ok(c);
	cr_assert_not(key_exists(&e, e.port, k1), "the old prefix is still written");
	PQfinish(c);
	cr_assert(harness_sluice_alive(h));
}

/* ---- fleet_max_client_conn ---- */

#define CAP_NODES 3

/* A login of tenant_a on `h`: the connection, or NULL with libpq's message. */
static PGconn *login(struct harness_sluice *h, char *msg, size_t len)
{
	PGconn *c = harness_connect(h, "tenant_a", "a-secret", "app");

	if (PQstatus(c) == CONNECTION_OK)
		return c;
	snprintf(msg, len, "%s", PQerrorMessage(c));
	PQfinish(c);
	return NULL;
}

/* A login on `h` is refused with 53300, and the message names the cap. */
static void assert_refused_by_cap(struct harness_sluice *h, int cap)
{
	char state[6] = "", msg[512] = "", want[64];

	cr_assert(harness_connect_fails(h, "tenant_a", "a-secret", "app", state),
	          "a login over the fleet's cap was admitted");
	cr_assert_str_eq(state, "53300");
	cr_assert_null(login(h, msg, sizeof(msg)), "a login over the fleet's cap was admitted");
	snprintf(want, sizeof(want), "fleet_max_client_conn %d", cap);
	cr_assert(strstr(msg, want) != NULL, "refused, but not by the cap: %s", msg);
}

/* Waits until every node is on Redis and sees all `n` instances. */
static void wait_fleet(struct harness_sluice **nodes, int n)
{
	char live[8];

	snprintf(live, sizeof(live), "%d", n);
	for (int i = 0; i < n; i++)
		cr_assert(harness_wait_for(cell_is(nodes[i], "redis_state", "up") &&
		                               cell_is(nodes[i], "instances", live),
		                           WAIT_S),
		          "node %d did not join the fleet", i);
}

Test(redis, fleet_max_client_conn_caps_the_fleet)
{
	struct redis_env e = redis_env();
	struct harness_sluice *nodes[CAP_NODES];
	PGconn *conns[CAP_NODES + 1] = {NULL};
	char prefix[64], msg[512];
	const int cap = CAP_NODES + 1;
	PGconn *c;

	unique_prefix(prefix, sizeof(prefix), "cap");
	for (int i = 0; i < CAP_NODES; i++)
		nodes[i] =
		    start_node(e.url, prefix, SLOW_REDIS "[tenant.a]\nfleet_max_client_conn = 4\n");
	wait_fleet(nodes, CAP_NODES);
	/* Four clients spread over three instances: each instance alone is under the cap. */
	for (int i = 0; i < cap; i++) {
		conns[i] = login(nodes[i % CAP_NODES], msg, sizeof(msg));
		cr_assert_not_null(conns[i], "client %d refused: %s", i, msg);
	}
	/* The fifth is refused on every instance, with 53300 naming the cap. */
	for (int i = 0; i < CAP_NODES; i++)
		assert_refused_by_cap(nodes[i], cap);
	/* One leaves on node 0: a client is admitted again, on another node. */
	PQfinish(conns[0]);
	cr_assert(harness_wait_for((c = login(nodes[2], msg, sizeof(msg))) != NULL, WAIT_S),
	          "no login admitted after a client left: %s", msg);
	assert_refused_by_cap(nodes[1], cap);
	PQfinish(c);
	for (int i = 1; i < cap; i++)
		PQfinish(conns[i]);
}

Test(redis, fleet_max_client_conn_forgets_a_dead_instance)
{
	struct redis_env e = redis_env();
	struct harness_sluice *nodes[2];
	PGconn *held[2], *c = NULL;
	char prefix[64], msg[512];

	unique_prefix(prefix, sizeof(prefix), "dead");
	for (int i = 0; i < 2; i++)
		nodes[i] =
		    start_node(e.url, prefix, SLOW_REDIS "[tenant.a]\nfleet_max_client_conn = 2\n");
	wait_fleet(nodes, 2);
	for (int i = 0; i < 2; i++)
		cr_assert_not_null(held[i] = login(nodes[0], msg, sizeof(msg)), "%s", msg);
	assert_refused_by_cap(nodes[1], 2);
	/* Node 0 dies without a word: its count goes once it has been silent for the TTL. */
	harness_stop_sluice(nodes[0], SIGKILL, 30);
	cr_assert(harness_wait_for((c = login(nodes[1], msg, sizeof(msg))) != NULL, WAIT_S),
	          "the dead instance's clients still count: %s", msg);
	PQfinish(c);
	for (int i = 0; i < 2; i++)
		PQfinish(held[i]);
}

Test(redis, fleet_max_client_conn_without_redis_caps_the_instance)
{
	struct harness_sluice *h;
	PGconn *held[2];
	char msg[512];

	(void)redis_env();
	/* limiter = local: a fleet of one, the cap is this instance's. */
	h = start_node(NULL, NULL, "[tenant.a]\nfleet_max_client_conn = 2\n");
	for (int i = 0; i < 2; i++)
		cr_assert_not_null(held[i] = login(h, msg, sizeof(msg)), "%s", msg);
	assert_refused_by_cap(h, 2);
	/* The seat goes back once sluice has seen the client leave. */
	PQfinish(held[0]);
	cr_assert(harness_wait_for((held[0] = login(h, msg, sizeof(msg))) != NULL, WAIT_S), "%s",
	          msg);
	for (int i = 0; i < 2; i++)
		PQfinish(held[i]);
}

/*
 * A console SET of any option keeps the Redis password.  The running
 * configuration was rebuilt from SHOW CONFIG's text of each option, where
 * the password is masked: after `SET default_pool_size = 30` sluice logged
 * in to Redis with "********" and the fleet's limits fell back.  A private
 * Redis with an ACL user (the default user stays open for redis-cli).
 */
Test(redis, a_console_set_keeps_the_redis_password)
{
	struct redis_env e = redis_env();
	struct harness_sluice *h;
	char name[64], plain[96], port[16], url[160], prefix[64], key[128], *out = NULL;
	const char *acl[] = {e.cli,   "-h", "127.0.0.1", "-p", port,    "ACL", "SETUSER",
	                     "fleet", "on", ">s3cret",   "~*", "+@all", NULL};
	PGconn *c, *a;

	snprintf(name, sizeof(name), "redis-it-%d-acl", (int)getpid());
	private_redis(&e, name, plain, sizeof(plain), port, sizeof(port));
	cr_assert_eq(harness_run(acl, NULL, 20, &out), 0, "ACL SETUSER: %s", out ? out : "");
	free(out);
	snprintf(url, sizeof(url), "redis://fleet:s3cret@127.0.0.1:%s/0", port);
	unique_prefix(prefix, sizeof(prefix), "acl");
	snprintf(key, sizeof(key), "%sbucket:a:query", prefix);
	h = start_node(url, prefix, SLOW_REDIS);
	c = harness_connect_ok(h, "tenant_a", "a-secret", "app");
	cr_assert(wait_querying(c, cell_is(h, "redis_state", "up") && key_exists(&e, port, key)),
	          "the fleet never used its Redis");

	a = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PQclear(harness_exec_ok(a, "SET default_pool_size = 30"));
	PQfinish(a);
	free(redis_cli(&e, port, "DEL", key, NULL, NULL));
	cr_assert(wait_querying(c, key_exists(&e, port, key) && cell_is(h, "redis_state", "up")),
	          "after a console SET the limits no longer reached Redis");
	cr_assert_not(harness_log_contains(h, "AUTH refused"), "a SET changed the Redis password");
	PQfinish(c);
	free(run_harness(&e, name, "destroy"));
}
