/*
 * Upstream topology (docs/topology.md): host lists, target_session_attrs,
 * load_balance_hosts, the circuit breaker per host, failover.  The standby
 * is the test cluster's own (tests/harness/pg.sh standby, made once and
 * reused); the failover test kills a pair of its own.  A host that accepts
 * TCP and never answers is a socket of the test's, which can later start
 * relaying to Postgres ("recover") and counts the connections it took.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(topology, .fini = harness_teardown, .timeout = 240);

/* ---- the harness's standby ---- */

/* Runs tests/harness/pg.sh CMD for the cluster `name`; returns its output (malloc'd). */
static char *pg_sh(const char *name, const char *cmd)
{
	char script[512], env_name[128], *out = NULL;
	const char *root = getenv("SLUICE_SOURCE_ROOT");
	const char *argv[] = {script, cmd, NULL};
	const char *env[] = {env_name, NULL};
	int rc;

	snprintf(script, sizeof(script), "%s/tests/harness/pg.sh", root ? root : ".");
	snprintf(env_name, sizeof(env_name), "SLUICE_PG_NAME=%s", name);
	rc = harness_run(argv, env, 180, &out);
	cr_assert_eq(rc, 0, "pg.sh %s for %s failed: %s", cmd, name, out ? out : "");
	return out;
}

/* The value of KEY='...' in pg.sh's env output. */
static int env_port(const char *out, const char *key)
{
	const char *p = strstr(out, key);

	cr_assert_not_null(p, "no %s in: %s", key, out);
	return atoi(p + strlen(key) + 2);
}

/* The port of the test cluster's standby, made on first use. */
static int standby_port(void)
{
	const char *name = getenv("SLUICE_PG_NAME");
	char *out;
	int port;

	harness_pg();
	if (name == NULL)
		cr_skip_test("SLUICE_PG_NAME is not set: cannot make the cluster's standby");
	out = pg_sh(name, "standby");
	port = env_port(out, "SLUICE_TEST_STANDBY_PORT");
	free(out);
	return port;
}

static int query_port(PGconn *c)
{
	return (int)harness_query_int(c, "SELECT current_setting('port')::int");
}

/* Column `col` of SHOW HOSTS' row for database `db`, host port `port` (malloc'd; NULL if none). */
static char *show_hosts(struct harness_sluice *h, const char *db, int port, const char *col)
{
	PGconn *adm = harness_connect_ok(h, "app", "app-secret", "sluice");
	PGresult *res = harness_exec_ok(adm, "SHOW HOSTS");
	int c = PQfnumber(res, col);
	char *value = NULL;

	cr_assert_geq(c, 0, "SHOW HOSTS has no column %s", col);
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, 0), db) == 0 && atoi(PQgetvalue(res, i, 2)) == port)
			value = strdup(PQgetvalue(res, i, c));
	PQclear(res);
	PQfinish(adm);
	return value;
}

static bool show_hosts_is(struct harness_sluice *h, const char *db, int port, const char *col,
                          const char *want)
{
	char *v = show_hosts(h, db, port, col);
	bool same = v != NULL && strcmp(v, want) == 0;

	free(v);
	return same;
}

/* A TCP port free now, for metrics_listen. */
static int free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	close(fd);
	return ntohs(sin.sin_port);
}

Test(topology, standby_never_lands_on_the_primary)
{
	int sport = standby_port(), pport = harness_pg()->port;
	char ini[512];
	struct harness_sluice *h;

	snprintf(ini, sizeof(ini),
	         "workers = 2\nadmin_users = app\n[databases]\n"
	         "ro = host=127.0.0.1,127.0.0.1 port=%d,%d dbname=app "
	         "target_session_attrs=standby load_balance_hosts=round-robin pool_mode=session\n",
	         pport, sport);
	h = harness_start_sluice(ini);
	for (int i = 0; i < 8; i++) {
		PGconn *c = harness_connect_ok(h, "app", "app-secret", "ro");

		cr_assert_eq(harness_query_int(c, "SELECT pg_is_in_recovery()::int"), 1);
		cr_assert_eq(query_port(c), sport);
		PQfinish(c);
	}
	cr_assert(show_hosts_is(h, "ro", sport, "role", "standby"));
	cr_assert(show_hosts_is(h, "ro", pport, "role", "primary"), "learnt by the first try");
	cr_assert(show_hosts_is(h, "ro", sport, "breaker", "closed"));
}

/* A statement on a new connection to `db` is refused with 08006 (no host of the role asked). */
static bool refused_for_its_role(struct harness_sluice *h, const char *db)
{
	PGconn *c = harness_connect(h, "app", "app-secret", db);
	PGresult *res = PQexec(c, "SELECT 1");
	bool refused = strcmp(harness_sqlstate(res), "08006") == 0;

	PQclear(res);
	PQfinish(c);
	return refused;
}

/*
 * A reload that changes [sluice]'s target_session_attrs retires the servers
 * of the databases that follow it: a server on a standby must not go on
 * serving a database that now asks for read-write.
 */
Test(topology, a_reloaded_global_target_retires_servers_of_the_wrong_role)
{
	int sport = standby_port();
	char dbs[256], ini[320];
	struct harness_sluice *h;
	PGconn *c;

	snprintf(dbs, sizeof(dbs), "[databases]\nsb = host=127.0.0.1 port=%d dbname=app\n", sport);
	h = harness_start_sluice(dbs);
	c = harness_connect_ok(h, "app", "app-secret", "sb");
	cr_assert_eq(harness_query_int(c, "SELECT pg_is_in_recovery()::int"), 1);
	PQfinish(c); /* its server stays idle in the pool */
	snprintf(ini, sizeof(ini), "target_session_attrs = read-write\n%s", dbs);
	harness_write_ini(h, ini);
	harness_signal(h, SIGHUP);
	cr_assert(harness_wait_for(refused_for_its_role(h, "sb"), 30),
	          "the standby's server still serves a read-write database");
	cr_assert_eq(harness_stop_sluice(h, SIGINT, 20), 0);
}

Test(topology, round_robin_spreads_new_connections_over_the_hosts)
{
	int sport = standby_port(), pport = harness_pg()->port;
	char ini[512];
	struct harness_sluice *h;
	PGconn *c[4];
	int seen_primary = 0, seen_standby = 0;

	/* One worker: each worker's pool keeps its own turn (docs/topology.md). */
	snprintf(ini, sizeof(ini),
	         "workers = 1\n[databases]\nany = host=127.0.0.1,127.0.0.1 port=%d,%d dbname=app "
	         "load_balance_hosts=round-robin pool_mode=session\n",
	         pport, sport);
	h = harness_start_sluice(ini);
	/* Held at once, so each has a server of its own, opened in turn. */
	for (int i = 0; i < 4; i++) {
		c[i] = harness_connect_ok(h, "app", "app-secret", "any");
		int port = query_port(c[i]);

		cr_assert(port == pport || port == sport, "port %d", port);
		seen_primary += port == pport;
		seen_standby += port == sport;
	}
	cr_assert_eq(seen_primary, 2);
	cr_assert_eq(seen_standby, 2);
	for (int i = 0; i < 4; i++)
		PQfinish(c[i]);
}

/*
 * Each worker's turn starts at its own host: with two workers, two clients
 * accepted one after the other (the listener deals them out in turn) get one
 * server on each host, not both on the first.
 */
Test(topology, round_robin_turns_of_two_workers_start_at_different_hosts)
{
	int sport = standby_port(), pport = harness_pg()->port;
	char ini[512];
	struct harness_sluice *h;
	PGconn *a, *b;
	int port_a, port_b;

	snprintf(ini, sizeof(ini),
	         "workers = 2\n[databases]\nany = host=127.0.0.1,127.0.0.1 port=%d,%d dbname=app "
	         "load_balance_hosts=round-robin pool_mode=session\n",
	         pport, sport);
	h = harness_start_sluice(ini);
	a = harness_connect_ok(h, "app", "app-secret", "any");
	b = harness_connect_ok(h, "app", "app-secret", "any");
	port_a = query_port(a);
	port_b = query_port(b);
	cr_assert(port_a == pport || port_a == sport, "port %d", port_a);
	cr_assert(port_b == pport || port_b == sport, "port %d", port_b);
	cr_assert_neq(port_a, port_b, "both clients' servers are on port %d", port_a);
	PQfinish(a);
	PQfinish(b);
}

Test(topology, standby_only_database_without_a_standby_fails_clearly)
{
	char ini[256], state[6];
	struct harness_sluice *h;
	PGconn *c;

	snprintf(ini, sizeof(ini),
	         "[databases]\nnostandby = host=127.0.0.1 port=@PGPORT@ dbname=app "
	         "target_session_attrs=standby\n");
	h = harness_start_sluice(ini);
	c = harness_connect(h, "app", "app-secret", "nostandby");
	cr_assert_neq(PQstatus(c), CONNECTION_OK);
	cr_assert(strstr(PQerrorMessage(c), "is a primary") != NULL, "%s", PQerrorMessage(c));
	cr_assert(strstr(PQerrorMessage(c), "target_session_attrs=standby") != NULL, "%s",
	          PQerrorMessage(c));
	PQfinish(c);
	/* The next one learns it from the breaker's record, without a server login. */
	cr_assert(harness_connect_fails(h, "app", "app-secret", "nostandby", state));
	cr_assert_str_eq(state, "08006");
	cr_assert(harness_sluice_alive(h));
}

Test(topology, bad_hosts_give_clear_errors)
{
	char ini[512], state[6];
	struct harness_sluice *h;

	snprintf(ini, sizeof(ini),
	         "[databases]\nnowhere = host=no-such-host.invalid port=5432 dbname=app\n"
	         "half = host=no-such-host.invalid,127.0.0.1 port=5432,@PGPORT@ dbname=app\n");
	h = harness_start_sluice(ini);
	cr_assert(harness_connect_fails(h, "app", "app-secret", "nowhere", state));
	cr_assert_str_eq(state, "08006");
	/* One bad host of two: the other serves. */
	PQfinish(harness_connect_ok(h, "app", "app-secret", "half"));
	cr_assert(harness_sluice_alive(h));
}

/* ---- a host that accepts TCP and never answers ---- */

struct fake_host {
	int listen_fd, port;
	int target_port;      /* Postgres, once relaying */
	_Atomic int accepted; /* connections taken */
	_Atomic bool relay;   /* false: hold connections silently; true: relay to Postgres */
	_Atomic bool stop;
	pthread_t thread;
};

/* Moves bytes both ways between a client and Postgres until either closes. */
static void *relay_pair(void *arg)
{
	int *fds = arg;
	char buf[16384];
	struct pollfd p[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};

	while (poll(p, 2, 60000) > 0) {
		for (int i = 0; i < 2; i++) {
			ssize_t n;

			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0 || write(p[1 - i].fd, buf, (size_t)n) != n)
				goto done;
		}
	}
done:
	close(fds[0]);
	close(fds[1]);
	free(fds);
	return NULL;
}

static void *fake_main(void *arg)
{
	struct fake_host *f = arg;
	struct pollfd p = {.fd = f->listen_fd, .events = POLLIN};

	while (!atomic_load(&f->stop)) {
		int fd;

		if (poll(&p, 1, 50) <= 0)
			continue;
		if ((fd = accept(f->listen_fd, NULL, NULL)) < 0)
			continue;
		atomic_fetch_add(&f->accepted, 1);
		if (!atomic_load(&f->relay))
			continue; /* held open and never answered; closed with the process */
		struct sockaddr_in pg = {.sin_family = AF_INET,
		                         .sin_port = htons((uint16_t)f->target_port),
		                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int *fds = malloc(2 * sizeof(int));
		pthread_t t;

		fds[0] = fd;
		fds[1] = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fds[1], (struct sockaddr *)&pg, sizeof(pg)) < 0 ||
		    pthread_create(&t, NULL, relay_pair, fds) != 0) {
			close(fds[0]);
			close(fds[1]);
			free(fds);
			continue;
		}
		pthread_detach(t);
	}
	return NULL;
}

static void fake_start(struct fake_host *f, int target_port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);

	memset(f, 0, sizeof(*f));
	f->target_port = target_port;
	f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(bind(f->listen_fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(listen(f->listen_fd, 64) == 0);
	cr_assert(getsockname(f->listen_fd, (struct sockaddr *)&sin, &len) == 0);
	f->port = ntohs(sin.sin_port);
	cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake_host *f)
{
	atomic_store(&f->stop, true);
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
}

/* Connects to `db` and, when that fails, returns the error text (malloc'd); NULL if it worked. */
static char *connect_error(struct harness_sluice *h, const char *user, const char *password,
                           const char *db)
{
	PGconn *c = harness_connect(h, user, password, db);
	char *err = PQstatus(c) == CONNECTION_OK ? NULL : strdup(PQerrorMessage(c));

	PQfinish(c);
	return err;
}

static bool connects(struct harness_sluice *h, const char *db)
{
	char *err = connect_error(h, "app", "app-secret", db);

	free(err);
	return err == NULL;
}

#define RECHECK_CLIENTS 4

static void *connect_rw(void *arg)
{
	free(connect_error(arg, "app", "app-secret", "rw"));
	return NULL;
}

/* Clients of "rw" one after the other until `stop`: one of them sets the recheck off. */
struct prober {
	struct harness_sluice *h;
	_Atomic bool stop;
};

static void *probe_rw(void *arg)
{
	struct prober *p = arg;

	while (!atomic_load(&p->stop))
		connect_rw(p->h);
	return NULL;
}

/*
 * A host of the wrong role is asked again (once server_breaker_backoff has
 * passed) by one connection at a time: clients that come while that one is
 * out wait for its answer, rather than each opening a connection of its
 * own to the host (during a failover, a login on the standby per client).
 */
Test(topology, a_role_is_asked_again_by_one_connection_at_a_time)
{
	int sport = standby_port(), before;
	struct fake_host f;
	struct harness_sluice *h;
	struct prober p;
	pthread_t t[RECHECK_CLIENTS], prober;
	char ini[512], *err;

	fake_start(&f, sport);
	atomic_store(&f.relay, true);
	snprintf(ini, sizeof(ini),
	         "workers = 1\nserver_connect_timeout = 5s\nserver_breaker_backoff = 100ms\n"
	         "[databases]\nrw = host=127.0.0.1 port=%d dbname=app "
	         "target_session_attrs=read-write\n",
	         f.port);
	h = harness_start_sluice(ini);
	err = connect_error(h, "app", "app-secret", "rw");
	cr_assert(err != NULL && strstr(err, "is a standby") != NULL, "%s",
	          err ? err : "connected");
	free(err);
	/* From now on the host takes connections and never answers: a recheck stays out. */
	atomic_store(&f.relay, false);
	before = atomic_load(&f.accepted);
	p = (struct prober){.h = h};
	cr_assert_eq(pthread_create(&prober, NULL, probe_rw, &p), 0);
	cr_assert(harness_wait_for(atomic_load(&f.accepted) > before, 30), "no recheck came");
	atomic_store(&p.stop, true);
	/* These come while it is out (server_connect_timeout ends it). */
	for (int i = 0; i < RECHECK_CLIENTS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, connect_rw, h), 0);
	for (int i = 0; i < RECHECK_CLIENTS; i++)
		pthread_join(t[i], NULL);
	pthread_join(prober, NULL);
	cr_assert_eq(atomic_load(&f.accepted) - before, 1,
	             "%d connections asked the host its role again for %d clients",
	             atomic_load(&f.accepted) - before, RECHECK_CLIENTS + 1);
	fake_stop(&f);
}

Test(topology, silent_host_costs_one_timeout_then_fails_fast_with_a_hint)
{
	struct fake_host f;
	char ini[512], *err;
	struct harness_sluice *h;

	fake_start(&f, harness_pg()->port);
	int mport = free_port();
	char series[256], *metrics;

	snprintf(ini, sizeof(ini),
	         "server_connect_timeout = 1s\nserver_breaker_backoff = 30s\n"
	         "server_breaker_backoff_max = 60s\nadmin_users = app\n"
	         "metrics_listen = 127.0.0.1:%d\n"
	         "[databases]\nsilent = host=127.0.0.1 port=%d dbname=app\n",
	         mport, f.port);
	h = harness_start_sluice(ini);
	err = connect_error(h, "app", "app-secret", "silent");
	cr_assert_not_null(err);
	cr_assert(strstr(err, "08006") != NULL || strstr(err, "server_connect_timeout") != NULL,
	          "%s", err);
	free(err);
	cr_assert_eq(atomic_load(&f.accepted), 1);
	for (int i = 0; i < 5; i++) {
		err = connect_error(h, "app", "app-secret", "silent");
		cr_assert_not_null(err);
		cr_assert(strstr(err, "HINT:") != NULL && strstr(err, "next try") != NULL, "%s",
		          err);
		cr_assert(strstr(err, "no usable host") != NULL, "%s", err);
		free(err);
	}
	cr_assert_eq(atomic_load(&f.accepted), 1, "the open breaker sent no connection");
	cr_assert(show_hosts_is(h, "silent", f.port, "breaker", "open"));
	cr_assert(show_hosts_is(h, "silent", f.port, "failures", "1"));
	cr_assert(show_hosts_is(h, "silent", f.port, "servers", "0"));
	metrics = harness_metrics(mport);
	snprintf(series, sizeof(series),
	         "sluice_host_breaker_state{database=\"silent\",host=\"127.0.0.1\",port=\"%d\","
	         "role=\"unknown\"} 1\n",
	         f.port);
	cr_assert(strstr(metrics, series) != NULL, "%s", metrics);
	snprintf(series, sizeof(series),
	         "sluice_host_up{database=\"silent\",host=\"127.0.0.1\",port=\"%d\","
	         "role=\"unknown\"} 0\n",
	         f.port);
	cr_assert(strstr(metrics, series) != NULL, "%s", metrics);
	free(metrics);
	cr_assert_eq(harness_stop_sluice(h, SIGINT, 20), 0);
	fake_stop(&f);
}

Test(topology, service_resumes_once_the_silent_host_recovers)
{
	struct fake_host f;
	char ini[512];
	struct harness_sluice *h;

	fake_start(&f, harness_pg()->port);
	snprintf(ini, sizeof(ini),
	         "server_connect_timeout = 1s\nserver_breaker_backoff = 200ms\n"
	         "server_breaker_backoff_max = 1s\n"
	         "[databases]\nsilent = host=127.0.0.1 port=%d dbname=app\n",
	         f.port);
	h = harness_start_sluice(ini);
	cr_assert_not(connects(h, "silent"));
	atomic_store(&f.relay, true);
	cr_assert(harness_wait_for(connects(h, "silent"), 60),
	          "the breaker's probe never let service resume");
	cr_assert_eq(harness_stop_sluice(h, SIGINT, 20), 0);
	fake_stop(&f);
}

/*
 * 4 workers, 3 tenants: 12 pools share the host's breaker.  Clients of every
 * tenant keep coming until the backoff has passed and a probe went out; the
 * probe is held for server_connect_timeout, during which all of them fail
 * fast, so the host sees one probe, not one per pool.
 */
struct storm {
	struct harness_sluice *h;
	struct fake_host *f;
	const char *user;
	int attempts, connected;
};

static void *storm_client(void *arg)
{
	struct storm *s = arg;

	while (atomic_load(&s->f->accepted) < 2 && s->attempts < 2000) {
		char *err = connect_error(s->h, s->user, "t-secret", "silent");

		s->attempts++;
		s->connected += err == NULL;
		free(err);
	}
	return NULL;
}

Test(topology, the_breaker_is_shared_by_workers_and_tenants)
{
	struct fake_host f;
	char ini[1024];
	struct harness_sluice *h;
	static const char *const users[] = {"t1", "t2", "t3"};
	struct storm s[12];
	pthread_t t[12];
	char *err;

	fake_start(&f, harness_pg()->port);
	snprintf(ini, sizeof(ini),
	         "workers = 4\nserver_connect_timeout = 3s\nserver_breaker_backoff = 300ms\n"
	         "server_breaker_backoff_max = 300ms\n"
	         "[databases]\nsilent = host=127.0.0.1 port=%d dbname=app user=app "
	         "password=app-secret\n"
	         "[tenant.t1]\nusers = t1\n[tenant.t2]\nusers = t2\n[tenant.t3]\nusers = t3\n",
	         f.port);
	h = harness_start_sluice_users(ini, "\"t1\" \"t-secret\"\n\"t2\" \"t-secret\"\n"
	                                    "\"t3\" \"t-secret\"\n");
	/* Opens the breaker: one connection, one timeout. */
	err = connect_error(h, "t1", "t-secret", "silent");
	cr_assert_not_null(err);
	free(err);
	cr_assert_eq(atomic_load(&f.accepted), 1);
	for (int i = 0; i < 12; i++) {
		s[i] = (struct storm){.h = h, .f = &f, .user = users[i % 3]};
		cr_assert_eq(pthread_create(&t[i], NULL, storm_client, &s[i]), 0);
	}
	for (int i = 0; i < 12; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(s[i].connected, 0);
	}
	cr_assert_eq(atomic_load(&f.accepted), 2, "%d connections reached the host",
	             atomic_load(&f.accepted));
	cr_assert_eq(harness_stop_sluice(h, SIGINT, 20), 0);
	fake_stop(&f);
}

/* ---- failover: a pair of its own, killed and promoted ---- */

/* Whether a statement on `c` still succeeds; the failure is logged. */
static bool statement_works(PGconn *c)
{
	PGresult *res = PQexec(c, "SELECT 1");
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		cr_log_info("linked client: %s %s", harness_sqlstate(res), PQerrorMessage(c));
	PQclear(res);
	return ok;
}

/* Whether the standby on `port` has replayed the test's table yet. */
static bool standby_has_table(int port)
{
	char conninfo[256];
	PGconn *c;
	PGresult *res;
	bool ok;

	snprintf(conninfo, sizeof(conninfo),
	         "host=127.0.0.1 port=%d dbname=app user=app password=app-secret", port);
	c = PQconnectdb(conninfo);
	res = PQexec(c, "SELECT to_regclass('failover_t') IS NOT NULL");
	ok = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	PQfinish(c);
	return ok;
}

static bool write_works(struct harness_sluice *h)
{
	PGconn *c = harness_connect(h, "app", "app-secret", "rw");
	PGresult *res;
	bool ok;

	if (PQstatus(c) != CONNECTION_OK) {
		PQfinish(c);
		return false;
	}
	res = PQexec(c, "INSERT INTO failover_t VALUES (1)");
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		cr_log_info("write: %s %s", harness_sqlstate(res), PQerrorMessage(c));
	PQclear(res);
	PQfinish(c);
	return ok;
}

/*
 * Also: a server of a standby pool whose host is promoted learns it from
 * the in_hot_standby that Postgres reports just before the ReadyForQuery of
 * the next request there, and leaves the pool when that request ends, so a
 * standby pool is not served by a primary until server_lifetime.
 */
Test(topology, writes_reach_the_promoted_standby_and_its_standby_pool_leaves_it)
{
	const char *base = getenv("SLUICE_PG_NAME");
	char name[128], ini[640], *out;
	int pport, sport;
	struct harness_sluice *h;
	PGconn *held, *reader;
	PGresult *res;

	harness_pg();
	if (base == NULL)
		cr_skip_test("SLUICE_PG_NAME is not set: cannot make a pair of clusters");
	snprintf(name, sizeof(name), "%s-fo", base);
	out = pg_sh(name, "start");
	pport = env_port(out, "SLUICE_TEST_PGPORT");
	free(out);
	out = pg_sh(name, "standby");
	sport = env_port(out, "SLUICE_TEST_STANDBY_PORT");
	free(out);
	snprintf(ini, sizeof(ini),
	         "server_connect_timeout = 2s\nserver_breaker_backoff = 200ms\n"
	         "server_breaker_backoff_max = 1s\n"
	         "[databases]\nrw = host=127.0.0.1,127.0.0.1 port=%d,%d dbname=app "
	         "target_session_attrs=read-write\n"
	         "ro = host=127.0.0.1 port=%d dbname=app target_session_attrs=standby\n",
	         pport, sport, sport);
	h = harness_start_sluice(ini);
	reader = harness_connect_ok(h, "app", "app-secret", "ro");
	cr_assert_eq(query_port(reader), sport, "its idle server is on the standby");
	held = harness_connect_ok(h, "app", "app-secret", "rw");
	PQclear(harness_exec_ok(held, "CREATE TABLE IF NOT EXISTS failover_t (x int)"));
	cr_assert_eq(query_port(held), pport);
	PQclear(harness_exec_ok(held, "BEGIN"));
	PQclear(harness_exec_ok(held, "INSERT INTO failover_t VALUES (0)"));
	/* Replayed on the standby before the crash, so the promoted one has the table. */
	cr_assert(harness_wait_for(standby_has_table(sport), 30));
	free(pg_sh(name, "kill"));
	/*
	 * The client linked to the dead server gets an SQLSTATE, not a hang: a
	 * backend may still answer until it notices its postmaster is gone.
	 */
	cr_assert(harness_wait_for(!statement_works(held), 30));
	res = PQexec(held, "SELECT 1");
	cr_assert(PQstatus(held) == CONNECTION_BAD || harness_sqlstate(res)[0] != '\0', "%s",
	          PQerrorMessage(held));
	PQclear(res);
	PQfinish(held);
	free(pg_sh(name, "promote"));
	cr_assert(harness_wait_for(write_works(h), 60), "no write reached the promoted standby");
	held = harness_connect_ok(h, "app", "app-secret", "rw");
	cr_assert_eq(query_port(held), sport);
	PQfinish(held);
	/* The standby pool's idle server runs one more request, which reports the promotion. */
	res = harness_exec_ok(reader, "SELECT pg_is_in_recovery()");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "f");
	PQclear(res);
	res = PQexec(reader, "SELECT 1");
	cr_assert_str_eq(harness_sqlstate(res), "08006",
	                 "a standby pool is served by the promoted host: %s",
	                 PQerrorMessage(reader));
	PQclear(res);
	PQfinish(reader);
	cr_assert_eq(harness_stop_sluice(h, SIGINT, 20), 0);
	snprintf(ini, sizeof(ini), "%s-standby", name);
	free(pg_sh(ini, "destroy"));
	free(pg_sh(name, "destroy"));
}

/* ---- health checks ---- */

static long long super_int(const char *sql)
{
	PGconn *super = harness_pg_super("app");
	long long v = harness_query_int(super, sql);

	PQfinish(super);
	return v;
}

Test(topology, idle_servers_answer_server_check_query_before_reuse)
{
	PGconn *super = harness_pg_super("app"), *c;
	struct harness_sluice *h;

	PQclear(harness_exec_ok(super, "DROP SEQUENCE IF EXISTS sluice_check_seq"));
	PQclear(harness_exec_ok(super, "CREATE SEQUENCE sluice_check_seq"));
	PQclear(harness_exec_ok(super, "GRANT USAGE ON SEQUENCE sluice_check_seq TO app"));
	PQfinish(super);
	h = harness_start_sluice("server_check_delay = 0\n"
	                         "server_check_query = select nextval('sluice_check_seq')\n");
	c = harness_connect_ok(h, "app", "app-secret", "app");
	/* Each statement takes the idle server anew (transaction mode): each is checked first. */
	for (int i = 0; i < 5; i++)
		cr_assert_eq(harness_query_int(c, "SELECT 1"), 1);
	PQfinish(c);
	cr_assert_geq(super_int("SELECT last_value FROM sluice_check_seq"), 4);
}

static long long warm_servers(void)
{
	return super_int("SELECT count(*) FROM pg_stat_activity "
	                 "WHERE application_name = 'sluice-warm'");
}

/*
 * Four workers warm the pool together: min_pool_size counts the servers of
 * every worker, so the process keeps 2, then 3, not that many per worker.
 */
Test(topology, min_pool_size_is_warmed_without_a_client_and_after_reload)
{
	struct harness_sluice *h;

	h = harness_start_sluice("workers = 4\n"
	                         "[databases]\nwarm = host=@PGHOST@ port=@PGPORT@ dbname=app "
	                         "user=app password=app-secret min_pool_size=2 "
	                         "application_name=sluice-warm\n");
	cr_assert(harness_wait_for(warm_servers() == 2, 30), "%lld warm servers", warm_servers());
	harness_write_ini(h, "workers = 4\n"
	                     "[databases]\nwarm = host=@PGHOST@ port=@PGPORT@ dbname=app "
	                     "user=app password=app-secret min_pool_size=3 "
	                     "application_name=sluice-warm\n");
	harness_signal(h, SIGHUP);
	cr_assert(harness_wait_for(warm_servers() == 3, 30), "%lld warm servers", warm_servers());
	cr_assert_eq(harness_stop_sluice(h, SIGINT, 20), 0, "sluice did not exit 0 on SIGINT");
	cr_assert(harness_wait_for(warm_servers() == 0, 30));
}

/*
 * At exit a warm pool is closed, not refilled.  Closing a server gave its
 * unit back and the pool opened another to stay at min_pool_size, which
 * joined the list being closed: one worker opened and closed thousands of
 * servers after SIGINT and never exited (and one left over was freed with
 * its connect pending: a use after free).
 */
Test(topology, sigint_with_a_warm_pool_exits_without_refilling_it)
{
	struct harness_sluice *h;
	long at_exit;

	h = harness_start_sluice("workers = 1\n"
	                         "[databases]\nwarm = host=@PGHOST@ port=@PGPORT@ dbname=app "
	                         "user=app password=app-secret min_pool_size=2 "
	                         "application_name=sluice-warm\n");
	cr_assert(harness_wait_for(warm_servers() == 2, 30), "%lld warm servers", warm_servers());
	at_exit = harness_log_size(h);
	cr_assert_eq(harness_stop_sluice(h, SIGINT, 20), 0,
	             "sluice did not exit cleanly on SIGINT");
	cr_assert(!harness_log_contains_after(h, at_exit, "connecting to"),
	          "a server was opened after SIGINT");
	cr_assert(harness_wait_for(warm_servers() == 0, 30));
}
