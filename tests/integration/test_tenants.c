/*
 * Tenants (docs/tenants.md): token-bucket rate limits with 53400 refusals
 * that keep the client connected, rate_limit_wait delays, clean refusals of
 * pipelined extended-protocol requests, round-robin fairness between the
 * tenants of one pool, per-tenant statement_timeout on separate server
 * connections, login limits, the console views and reloads.  Tenant users
 * log in to sluice with their own passwords and share the server user app
 * through a forced user, as a multi-tenant application would.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(tenants, .fini = harness_teardown, .timeout = 240);

#define USERS                                                                                      \
	"\"tenant_a\" \"a-secret\"\n\"tenant_b\" \"b-secret\"\n\"tenant_c\" \"c-secret\"\n"        \
	"\"admin\" \"admin-secret\"\n"
#define FORCED_USER                                                                                \
	"[databases]\n"                                                                            \
	"app = host=@PGHOST@ port=@PGPORT@ dbname=app user=app password=app-secret\n"
#define TENANT(name, keys) "[tenant." name "]\nusers = tenant_" name "\n" keys
#define WAIT_S             30.0

/* `sluice_keys` go to [sluice], `sections` after the database. */
static struct harness_sluice *start_with(const char *sluice_keys, const char *sections)
{
	char ini[4096];

	snprintf(ini, sizeof(ini), "admin_users = admin\n%s" FORCED_USER "%s", sluice_keys,
	         sections);
	return harness_start_sluice_users(ini, USERS);
}

static struct harness_sluice *start(const char *sections)
{
	return start_with("", sections);
}

static PGconn *tenant(struct harness_sluice *h, const char *name)
{
	char user[32], password[32];

	snprintf(user, sizeof(user), "tenant_%s", name);
	snprintf(password, sizeof(password), "%s-secret", name);
	return harness_connect_ok(h, user, password, "app");
}

/* A column of the console row whose first columns match, asked on console connection `a`; -1 if
 * there is none. */
static long long console_value_on(PGconn *a, const char *show, const char *tenant_name,
                                  const char *limit, const char *column)
{
	char sql[64];
	PGresult *res;
	long long v = -1;
	int col;

	snprintf(sql, sizeof(sql), "SHOW %s", show);
	res = harness_exec_ok(a, sql);
	col = PQfnumber(res, column);
	cr_assert_geq(col, 0, "SHOW %s has no column %s", show, column);
	for (int i = 0; i < PQntuples(res); i++) {
		if (strcmp(PQgetvalue(res, i, 0), tenant_name) != 0 ||
		    (limit != NULL && strcmp(PQgetvalue(res, i, 1), limit) != 0))
			continue;
		v = atoll(PQgetvalue(res, i, col));
	}
	PQclear(res);
	return v;
}

/* The same on a console connection of its own. */
static long long console_value(struct harness_sluice *h, const char *show, const char *tenant_name,
                               const char *limit, const char *column)
{
	PGconn *a = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	long long v = console_value_on(a, show, tenant_name, limit, column);

	PQfinish(a);
	return v;
}

static void expect_rate_refusal(PGresult *res, const char *tenant_name, const char *limit)
{
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	char want[128];

	cr_assert_str_eq(harness_sqlstate(res), "53400", "%s", PQresultErrorMessage(res));
	snprintf(want, sizeof(want), "tenant \"%s\": %s", tenant_name, limit);
	cr_assert(msg != NULL && strstr(msg, want) != NULL, "message %s lacks '%s'", msg, want);
	cr_assert(hint != NULL && strncmp(hint, "retry after ", 12) == 0, "hint: %s", hint);
}

/* ---- a closed loop of single-statement transactions ---- */

struct loop {
	PGconn *conn;
	long until_ok;      /* stop once this many were admitted (0: only by *stop) */
	volatile int *stop; /* set by another loop: stop */
	long ok, refused, other;
	char first_error[256];
	double elapsed; /* from before the first request to after the last answer */
};

static void run_loop(struct loop *l)
{
	double start = harness_now(), last = start;

	/* WAIT_S * 2 bounds a loop whose count never comes: its assertion then fails. */
	while ((l->until_ok == 0 || l->ok < l->until_ok) && (l->stop == NULL || !*l->stop) &&
	       harness_now() - start < WAIT_S * 2) {
		PGresult *res = PQexec(l->conn, "select 1");

		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			l->ok++;
		else if (strcmp(harness_sqlstate(res), "53400") == 0)
			l->refused++;
		else if (l->other++ == 0)
			snprintf(l->first_error, sizeof(l->first_error), "%s",
			         PQresultErrorMessage(res));
		PQclear(res);
		last = harness_now();
	}
	l->elapsed = last - start;
}

static void *loop_thread(void *arg)
{
	run_loop(arg);
	return NULL;
}

/*
 * Counts, not times: however slow the machine, a tenant at 50/s with burst
 * 10 is never admitted more than 10 + 50 x the time its loop ran, each
 * admitted request is charged once, and the refill goes on past the burst.
 * The refill's accuracy is limiter::accepted_count_over_time_is_rate_times_time_plus_burst.
 */
Test(tenants, query_rate_admits_rate_times_time_plus_burst_and_spares_other_tenants)
{
	struct harness_sluice *h =
	    start(TENANT("a", "query_rate = 50/s\nquery_burst = 10\n") TENANT("b", ""));
	volatile int a_done = 0;
	struct loop a = {.conn = tenant(h, "a"), .until_ok = 10 + 50 * 2};
	struct loop b = {.conn = tenant(h, "b"), .stop = &a_done};
	PGresult *res;
	long admitted;
	pthread_t tb;

	cr_assert_eq(pthread_create(&tb, NULL, loop_thread, &b), 0);
	run_loop(&a);
	a_done = 1;
	pthread_join(tb, NULL);
	cr_assert_geq(a.ok, a.until_ok, "tenant a: only %ld admitted in %.1f s (%ld refused)", a.ok,
	              a.elapsed, a.refused);
	cr_assert_leq(a.ok, 10 + (long)(50 * a.elapsed) + 1,
	              "tenant a: %ld admitted in %.2f s, more than burst 10 + 50/s x time", a.ok,
	              a.elapsed);
	cr_assert_gt(a.refused, 0, "a closed loop over the rate was never refused");
	cr_assert_eq(a.other, 0, "tenant a: %s", a.first_error);
	cr_assert_eq(b.refused, 0, "tenant b was limited by tenant a's rate");
	cr_assert_eq(b.other, 0, "tenant b: %s", b.first_error);
	cr_assert_gt(b.ok, 0);
	/* The refusal names the tenant and the limit, the client stays connected. */
	admitted = a.ok;
	res = PQexec(a.conn, "select 1");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		expect_rate_refusal(res, "a", "query_rate 50/s");
		a.refused++; /* counted by sluice like the loop's refusals */
	} else {
		admitted++;
	}
	PQclear(res);
	cr_assert_eq(PQstatus(a.conn), CONNECTION_OK);
	cr_assert_eq(console_value(h, "RATELIMITS", "a", "query_rate", "rejected"), a.refused);
	cr_assert_eq(console_value(h, "RATELIMITS", "a", "query_rate", "admitted") +
	                 console_value(h, "RATELIMITS", "a", "query_rate", "delayed"),
	             admitted, "every admitted request is charged once");
	cr_assert_eq(console_value(h, "RATELIMITS", "a", "query_rate", "burst"), 10);
	PQfinish(a.conn);
	PQfinish(b.conn);
}

Test(tenants, rate_limit_wait_delays_instead_of_refusing)
{
	struct harness_sluice *h =
	    start(TENANT("a", "query_rate = 5/s\nquery_burst = 1\nrate_limit_wait = 2s\n"));
	PGconn *c = tenant(h, "a");

	for (int i = 0; i < 6; i++)
		cr_assert_eq(harness_query_int(c, "select 1"), 1);
	cr_assert_eq(console_value(h, "RATELIMITS", "a", "query_rate", "rejected"), 0);
	cr_assert_geq(console_value(h, "RATELIMITS", "a", "query_rate", "delayed"), 1);
	cr_assert_eq(console_value(h, "RATELIMITS", "a", "query_rate", "admitted") +
	                 console_value(h, "RATELIMITS", "a", "query_rate", "delayed"),
	             6);
	PQfinish(c);
}

Test(tenants, a_wait_longer_than_rate_limit_wait_is_refused_at_once_and_the_client_stays)
{
	struct harness_sluice *h = start(
	    TENANT("a", "transaction_rate = 1/min\ntransaction_burst = 1\nrate_limit_wait = 1s\n"));
	PGconn *c = tenant(h, "a");
	PGresult *res;

	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	res = PQexec(c, "select 1");
	expect_rate_refusal(res, "a", "transaction_rate 1/min");
	cr_assert_str_eq(PQresultErrorField(res, PG_DIAG_SEVERITY), "ERROR");
	PQclear(res);
	cr_assert_eq(PQstatus(c), CONNECTION_OK);
	cr_assert_eq(PQtransactionStatus(c), PQTRANS_IDLE);
	PQfinish(c);
}

/* SHOW RATELIMITS' tokens of a tenant's query_rate, asked on console connection `a`. */
static double query_tokens(PGconn *a, const char *tenant_name)
{
	PGresult *res = harness_exec_ok(a, "SHOW RATELIMITS");
	int col = PQfnumber(res, "tokens");
	double v = 1e9;

	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, 0), tenant_name) == 0 &&
		    strcmp(PQgetvalue(res, i, 1), "query_rate") == 0)
			v = atof(PQgetvalue(res, i, col));
	PQclear(res);
	return v;
}

/*
 * A waiting request reserves its token, so the next one queues behind it:
 * at 1/min with the bucket empty, the first waiter's token is due in a
 * minute and the second's in two, beyond its rate_limit_wait of 90 s, so
 * the second is refused at once instead of racing the first for the next
 * token.  A waiter that hangs up meanwhile gives its token back at once,
 * not when its token would have been due.
 */
Test(tenants, waiting_requests_queue_for_tokens_in_order)
{
	struct harness_sluice *h =
	    start(TENANT("a", "query_rate = 1/min\nquery_burst = 1\nrate_limit_wait = 90s\n"));
	PGconn *first = tenant(h, "a"), *second = tenant(h, "a");
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	const char *hint;
	PGresult *res;

	cr_assert_eq(harness_query_int(first, "select 1"), 1); /* the burst */
	cr_assert_eq(PQsendQuery(first, "select 2"), 1);
	cr_assert(harness_wait_for(query_tokens(admin, "a") < -0.5, WAIT_S),
	          "the waiting request reserved no token: %.2f", query_tokens(admin, "a"));
	res = PQexec(second, "select 3");
	expect_rate_refusal(res, "a", "query_rate 1/min");
	hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	cr_assert_gt(atoll(hint + strlen("retry after ")), 60000,
	             "the second waiter's token is due after the first's: %s", hint);
	PQclear(res);
	cr_assert_eq(PQstatus(second), CONNECTION_OK);
	/* The first hangs up before its token is due: the bucket gets it back. */
	PQfinish(first);
	cr_assert(harness_wait_for(query_tokens(admin, "a") > -0.5, WAIT_S),
	          "the token of the waiter that left was not given back: %.2f",
	          query_tokens(admin, "a"));
	cr_assert_eq(console_value_on(admin, "RATELIMITS", "a", "query_rate", "rejected"), 1);
	PQfinish(second);
	PQfinish(admin);
}

Test(tenants, statements_inside_a_transaction_are_never_refused)
{
	struct harness_sluice *h = start(TENANT("a", "query_rate = 2/min\nquery_burst = 1\n"));
	PGconn *c = tenant(h, "a");
	PGresult *res;

	PQclear(harness_exec_ok(c, "begin"));
	for (int i = 0; i < 5; i++)
		cr_assert_eq(harness_query_int(c, "select 2"), 2);
	PQclear(harness_exec_ok(c, "commit"));
	/* They were counted: the bucket is in debt, so the next transaction is refused. */
	res = PQexec(c, "select 1");
	expect_rate_refusal(res, "a", "query_rate 2/min");
	PQclear(res);
	PQfinish(c);
}

/*
 * A request admitted and then queued for a server is charged once: when the
 * server comes it runs, instead of being charged again (at a saturated pool
 * a tenant got half its rate) or refused while holding that server.  Simple
 * Query and the extended protocol alike.
 */
static void queued_request_is_charged_once(bool extended)
{
	struct harness_sluice *h =
	    start_with("default_pool_size = 1\n",
	               TENANT("a", "query_rate = 1/min\nquery_burst = 2\nrate_limit_wait = 0\n"));
	PGconn *holder = tenant(h, "a"), *queued = tenant(h, "a");
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	const char *params[1] = {"7"};
	PGresult *res;
	int sent;

	/* The one server is held: BEGIN takes the first token. */
	PQclear(harness_exec_ok(holder, "begin"));
	/* The second token, then a wait for the server. */
	sent = extended
	           ? PQsendQueryParams(queued, "select $1::int", 1, NULL, params, NULL, NULL, 0)
	           : PQsendQuery(queued, "select 7");
	cr_assert_eq(sent, 1);
	cr_assert(harness_wait_for(console_value_on(admin, "POOLS", "app", NULL, "cl_waiting") == 1,
	                           WAIT_S),
	          "the request never queued for the server");
	/* Inside the transaction: counted, never refused; the bucket is now in debt. */
	PQclear(harness_exec_ok(holder, "commit"));
	res = PQgetResult(queued);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "the queued request: %s",
	             PQresultErrorMessage(res));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "7");
	PQclear(res);
	cr_assert_null(PQgetResult(queued));
	/* BEGIN, the queued request and COMMIT: three tokens, none refused. */
	cr_assert_eq(console_value(h, "RATELIMITS", "a", "query_rate", "admitted") +
	                 console_value(h, "RATELIMITS", "a", "query_rate", "delayed"),
	             3);
	cr_assert_eq(console_value(h, "RATELIMITS", "a", "query_rate", "rejected"), 0);
	/* The next request is charged afresh: the bucket is empty, so it is refused. */
	res = PQexec(queued, "select 1");
	expect_rate_refusal(res, "a", "query_rate 1/min");
	PQclear(res);
	PQfinish(holder);
	PQfinish(queued);
	PQfinish(admin);
}

Test(tenants, a_query_queued_for_a_server_is_charged_once)
{
	queued_request_is_charged_once(false);
}

Test(tenants, an_extended_request_queued_for_a_server_is_charged_once)
{
	queued_request_is_charged_once(true);
}

/* The next result of `c`, read without blocking: the test fails if none comes within WAIT_S. */
static PGresult *result_within(PGconn *c, const char *what)
{
	cr_assert(harness_wait_for(PQconsumeInput(c) && !PQisBusy(c), WAIT_S),
	          "%s: no answer within %.0f s", what, WAIT_S);
	return PQgetResult(c);
}

/*
 * A transaction that ran SET LOCAL ends; sluice reads the settings back
 * while the client still holds the server, and the client's next request,
 * pipelined behind COMMIT, is over the rate.  It waits for the read-back,
 * then for its token, then for the server another client got meanwhile;
 * it used to be throttled during the read-back, lose its timer when the
 * server was released, and stay unread for good (a hung soak ledger).
 */
Test(tenants, a_request_over_the_rate_during_the_settings_read_back_is_answered)
{
	struct harness_sluice *h =
	    start_with("default_pool_size = 1\n",
	               TENANT("a", "query_rate = 2/s\nquery_burst = 3\nrate_limit_wait = 20s\n"));
	PGconn *holder = tenant(h, "a"), *other = tenant(h, "a");
	PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGresult *res;

	PQclear(harness_exec_ok(holder, "begin"));
	PQclear(harness_exec_ok(holder, "set local synchronous_commit = on"));
	cr_assert_eq(PQsendQuery(other, "select pg_sleep(0.5)"), 1);
	cr_assert(harness_wait_for(console_value_on(admin, "POOLS", "app", NULL, "cl_waiting") == 1,
	                           WAIT_S),
	          "the other client never queued for the server");
	/* COMMIT is inside the transaction (forced: the bucket goes into debt); the SELECT is not.
	 */
	cr_assert_eq(PQenterPipelineMode(holder), 1);
	cr_assert_eq(PQsendQueryParams(holder, "commit", 0, NULL, NULL, NULL, NULL, 0), 1);
	cr_assert_eq(PQpipelineSync(holder), 1);
	cr_assert_eq(PQsendQueryParams(holder, "select 41 + 1", 0, NULL, NULL, NULL, NULL, 0), 1);
	cr_assert_eq(PQpipelineSync(holder), 1);
	cr_assert_eq(PQflush(holder), 0);
	res = result_within(holder, "COMMIT");
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_null(result_within(holder, "COMMIT's end"));
	res = result_within(holder, "COMMIT's Sync");
	cr_assert_eq(PQresultStatus(res), PGRES_PIPELINE_SYNC);
	PQclear(res);
	res = result_within(holder, "the SELECT behind COMMIT");
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "42");
	PQclear(res);
	cr_assert_null(result_within(holder, "the SELECT's end"));
	res = result_within(holder, "the SELECT's Sync");
	cr_assert_eq(PQresultStatus(res), PGRES_PIPELINE_SYNC);
	PQclear(res);
	cr_assert_eq(PQexitPipelineMode(holder), 1);
	res = result_within(other, "the other client's request");
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_null(result_within(other, "the other client's end"));
	/* It waited for its token, and the client is read again afterwards. */
	cr_assert_geq(console_value_on(admin, "RATELIMITS", "a", "query_rate", "delayed"), 1);
	cr_assert_eq(PQsendQuery(holder, "select 7"), 1);
	res = result_within(holder, "the next request");
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_null(result_within(holder, "the next request's end"));
	cr_assert_eq(console_value_on(admin, "RATELIMITS", "a", "query_rate", "rejected"), 0);
	PQfinish(holder);
	PQfinish(other);
	PQfinish(admin);
}

/* Four pipelined Parse/Bind/Execute/Sync requests: the first runs, three get one error each. */
Test(tenants, pipelined_extended_requests_over_the_limit_get_one_error_each)
{
	struct harness_sluice *h = start(TENANT("a", "query_rate = 1/min\nquery_burst = 1\n"));
	PGconn *c = tenant(h, "a");
	const char *params[1] = {"42"};
	PGresult *res;

	cr_assert_eq(PQenterPipelineMode(c), 1);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(PQsendQueryParams(c, "select $1::int", 1, NULL, params, NULL, NULL, 0),
		             1);
		cr_assert_eq(PQpipelineSync(c), 1);
	}
	for (int i = 0; i < 4; i++) {
		res = PQgetResult(c);
		cr_assert_not_null(res, "request %d: no result", i);
		if (i == 0) {
			cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s",
			             PQresultErrorMessage(res));
			cr_assert_str_eq(PQgetvalue(res, 0, 0), "42");
		} else {
			cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "request %d: %s", i,
			             PQresStatus(PQresultStatus(res)));
			expect_rate_refusal(res, "a", "query_rate 1/min");
		}
		PQclear(res);
		cr_assert_null(PQgetResult(c), "request %d: more than one result", i);
		res = PQgetResult(c);
		cr_assert_eq(PQresultStatus(res), PGRES_PIPELINE_SYNC, "request %d: %s", i,
		             PQresStatus(PQresultStatus(res)));
		PQclear(res);
	}
	cr_assert_eq(PQexitPipelineMode(c), 1);
	/* Still in step: a simple query gets its own single answer. */
	res = PQexec(c, "select 1");
	expect_rate_refusal(res, "a", "query_rate 1/min");
	PQclear(res);
	cr_assert_eq(PQstatus(c), CONNECTION_OK);
	cr_assert_eq(console_value(h, "RATELIMITS", "a", "query_rate", "rejected"), 4);
	PQfinish(c);
}

/* ---- noisy neighbour ---- */

#define NOISY_CLIENTS 50
#define QUIET_TXNS    20
#define CROWD_MAX     64

/* Clients of one tenant, each a closed loop of `sql`, all on one thread. */
struct crowd {
	struct harness_sluice *h;
	const char *tenant; /* "a": user tenant_a */
	const char *sql;
	int clients;
	bool warm; /* each client runs `select 1` alone at login, so every worker has a server */
	atomic_bool stop;
	atomic_long done;
	atomic_long errors;
	atomic_int connected;
};

static void *crowd_thread(void *arg)
{
	struct crowd *n = arg;
	PGconn *conns[CROWD_MAX];
	struct pollfd fds[CROWD_MAX];
	char user[32], password[32], url[256];

	snprintf(user, sizeof(user), "tenant_%s", n->tenant);
	snprintf(password, sizeof(password), "%s-secret", n->tenant);
	harness_url(n->h, user, password, "app", url, sizeof(url));
	for (int i = 0; i < n->clients; i++) {
		conns[i] = PQconnectdb(url);
		if (PQstatus(conns[i]) != CONNECTION_OK ||
		    (n->warm && harness_query_int(conns[i], "select 1") != 1))
			atomic_fetch_add(&n->errors, 1);
	}
	for (int i = 0; i < n->clients; i++) {
		if (!PQsendQuery(conns[i], n->sql))
			atomic_fetch_add(&n->errors, 1);
		atomic_fetch_add(&n->connected, 1);
		fds[i] = (struct pollfd){.fd = PQsocket(conns[i]), .events = POLLIN};
	}
	while (!atomic_load(&n->stop)) {
		if (poll(fds, (nfds_t)n->clients, 100) <= 0)
			continue;
		for (int i = 0; i < n->clients; i++) {
			PGresult *res;

			if (!(fds[i].revents & POLLIN))
				continue;
			PQconsumeInput(conns[i]);
			if (PQisBusy(conns[i]))
				continue;
			while ((res = PQgetResult(conns[i])) != NULL) {
				if (PQresultStatus(res) == PGRES_TUPLES_OK)
					atomic_fetch_add(&n->done, 1);
				else
					atomic_fetch_add(&n->errors, 1);
				PQclear(res);
			}
			if (!atomic_load(&n->stop) && !PQsendQuery(conns[i], n->sql))
				atomic_fetch_add(&n->errors, 1);
		}
	}
	for (int i = 0; i < n->clients; i++)
		PQfinish(conns[i]);
	return NULL;
}

/* Starts the crowd and waits until every client is in its loop and `warm_done` ran. */
static void crowd_start(struct crowd *n, pthread_t *tid, long warm_done)
{
	cr_assert_eq(pthread_create(tid, NULL, crowd_thread, n), 0);
	cr_assert(harness_wait_for(atomic_load(&n->connected) == n->clients &&
	                               atomic_load(&n->done) >= warm_done,
	                           WAIT_S),
	          "tenant %s did not get going (%ld done, %ld errors)", n->tenant,
	          atomic_load(&n->done), atomic_load(&n->errors));
}

static void crowd_stop(struct crowd *n, pthread_t tid)
{
	atomic_store(&n->stop, true);
	pthread_join(tid, NULL);
}

static int cmp_long(const void *x, const void *y)
{
	long a = *(const long *)x, b = *(const long *)y;

	return (a > b) - (a < b);
}

/*
 * Tenant a floods a pool of 4 with 50 clients; tenant b's two clients run
 * 20 transactions each.  The sequence numbers tell how many transactions of
 * a ran between two of b's: round-robin hands b the next server released
 * after it asks, so that is a handful; FIFO would put b behind some 46
 * queued clients of a every time.
 */
Test(tenants, a_noisy_tenant_cannot_starve_a_quiet_one)
{
	struct harness_sluice *h = start_with("default_pool_size = 4\nquery_wait_timeout = 0\n",
	                                      TENANT("a", "") TENANT("b", ""));
	PGconn *super = harness_pg_super("app");
	struct crowd n = {.h = h,
	                  .tenant = "a",
	                  .sql = "select nextval('tenants_seq'), pg_sleep(0.02)",
	                  .clients = NOISY_CLIENTS};
	PGconn *quiet[2];
	long values[2][QUIET_TXNS], gaps[2 * (QUIET_TXNS - 1)];
	int count[2] = {0, 0}, ngaps = 0;
	pthread_t tid;

	PQclear(harness_exec_ok(super, "drop sequence if exists tenants_seq"));
	PQclear(harness_exec_ok(super, "create sequence tenants_seq"));
	PQclear(harness_exec_ok(super, "grant usage on sequence tenants_seq to app"));
	crowd_start(&n, &tid, 2 * NOISY_CLIENTS);
	for (int q = 0; q < 2; q++) {
		quiet[q] = tenant(h, "b");
		cr_assert(PQsendQuery(quiet[q], "select nextval('tenants_seq')"));
	}
	while (count[0] < QUIET_TXNS || count[1] < QUIET_TXNS) {
		struct pollfd fds[2] = {{.fd = PQsocket(quiet[0]), .events = POLLIN},
		                        {.fd = PQsocket(quiet[1]), .events = POLLIN}};

		cr_assert_geq(poll(fds, 2, 60000), 1, "tenant b got no answer in 60 s");
		for (int q = 0; q < 2; q++) {
			PGresult *res;

			if (!(fds[q].revents & POLLIN) || !PQconsumeInput(quiet[q]) ||
			    PQisBusy(quiet[q]))
				continue;
			while ((res = PQgetResult(quiet[q])) != NULL) {
				cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "tenant b: %s",
				             PQresultErrorMessage(res));
				values[q][count[q]++] = atol(PQgetvalue(res, 0, 0));
				PQclear(res);
			}
			if (count[q] < QUIET_TXNS)
				cr_assert(PQsendQuery(quiet[q], "select nextval('tenants_seq')"));
		}
	}
	crowd_stop(&n, tid);
	cr_assert_eq(atomic_load(&n.errors), 0, "the noisy tenant saw errors");
	for (int q = 0; q < 2; q++)
		for (int i = 1; i < QUIET_TXNS; i++)
			gaps[ngaps++] = values[q][i] - values[q][i - 1] - 1;
	qsort(gaps, (size_t)ngaps, sizeof(gaps[0]), cmp_long);
	cr_assert_leq(gaps[ngaps / 2], 10,
	              "median of %ld transactions of the noisy tenant between two of the quiet "
	              "one's: not round-robin",
	              gaps[ngaps / 2]);
	PQfinish(quiet[0]);
	PQfinish(quiet[1]);
	PQfinish(super);
}

/*
 * Tenants whose servers cannot pass from one to the other (here another
 * statement_timeout, a startup option): a server released for the quiet
 * tenant's turn is closed so that the quiet one opens its own, and the
 * noisy tenant, whose clients wait too, must not take that unit back first.
 * It always did: the quiet tenant waited for query_wait_timeout while the
 * noisy one reconnected again and again.
 */
Test(tenants, a_quiet_tenant_that_cannot_share_servers_is_served_next_to_a_noisy_one)
{
	struct harness_sluice *h = start_with("default_pool_size = 2\nquery_wait_timeout = 20s\n",
	                                      TENANT("a", "statement_timeout = 5s\n")
	                                          TENANT("b", "statement_timeout = 30s\n"));
	struct crowd n = {.h = h, .tenant = "a", .sql = "select pg_sleep(0.01)", .clients = 8};
	PGconn *quiet;
	pthread_t tid;

	crowd_start(&n, &tid, 2 * 8);
	quiet = tenant(h, "b");
	for (int i = 0; i < 5; i++) {
		PGresult *res = PQexec(quiet, "select 1");

		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK,
		             "transaction %d of the quiet tenant: %s", i,
		             PQresultErrorMessage(res));
		PQclear(res);
	}
	crowd_stop(&n, tid);
	cr_assert_eq(atomic_load(&n.errors), 0, "the noisy tenant saw errors");
	PQfinish(quiet);
}

/*
 * min_server_conn: tenant a floods a pool of 4 with 16 clients of 0.5 s
 * transactions; tenant b, guaranteed one server, runs 30 short ones.  Its
 * first may wait for a to give a server up; after that it never waits for
 * one of a's transactions, so a finishes only the few that end meanwhile.
 * Without the guarantee every one of b's waits for one of a's to end
 * (round-robin gives b the next server released, never one of its own).
 */
#define GUARDED_TXNS 30

#define GUARANTEED TENANT("a", "") TENANT("b", "min_server_conn = 1\n")

/* With `by_reload`, b's guarantee comes by RELOAD once a holds every server. */
static void quiet_tenant_keeps_its_guaranteed_server(const char *sluice_keys, bool by_reload)
{
	struct harness_sluice *h =
	    start_with(sluice_keys, by_reload ? TENANT("a", "") TENANT("b", "") : GUARANTEED);
	struct crowd n = {
	    .h = h, .tenant = "a", .sql = "select pg_sleep(0.5)", .clients = 16, .warm = true};
	PGconn *quiet;
	long before, during;
	pthread_t tid;
	char ini[1024];

	crowd_start(&n, &tid, 8);
	quiet = tenant(h, "b");
	cr_assert_eq(harness_query_int(quiet, "select 1"), 1);
	if (by_reload) {
		PGconn *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");

		snprintf(ini, sizeof(ini), "admin_users = admin\n%s" FORCED_USER GUARANTEED,
		         sluice_keys);
		harness_write_ini(h, ini);
		PQclear(harness_exec_ok(admin, "RELOAD"));
		PQfinish(admin);
		/* Its first request may wait for a to give a server up, as at login. */
		cr_assert_eq(harness_query_int(quiet, "select 1"), 1);
	}
	before = atomic_load(&n.done);
	for (int i = 0; i < GUARDED_TXNS; i++)
		cr_assert_eq(harness_query_int(quiet, "select 1"), 1);
	during = atomic_load(&n.done) - before;
	cr_log_info("the noisy tenant finished %ld transactions meanwhile", during);
	cr_assert_eq(console_value(h, "TENANTS", "b", NULL, "min_server_conn"), 1);
	cr_assert_eq(console_value(h, "TENANTS", "b", NULL, "servers"), 1);
	cr_assert_leq(console_value(h, "TENANTS", "a", NULL, "servers"), 3);
	crowd_stop(&n, tid);
	cr_assert_lt(during, GUARDED_TXNS / 2,
	             "the noisy tenant finished %ld transactions while the guaranteed one ran %d: "
	             "it waited for the noisy tenant's servers",
	             during, GUARDED_TXNS);
	PQfinish(quiet);
}

Test(tenants, min_server_conn_keeps_a_server_for_the_quiet_tenant)
{
	quiet_tenant_keeps_its_guaranteed_server("default_pool_size = 4\nquery_wait_timeout = 0\n",
	                                         false);
}

/* A guarantee raised by RELOAD: the noisy tenant gives up the unit as its servers come free. */
Test(tenants, min_server_conn_reloads_while_the_noisy_tenant_holds_every_server)
{
	quiet_tenant_keeps_its_guaranteed_server("default_pool_size = 4\nquery_wait_timeout = 0\n",
	                                         true);
}

/*
 * A reserve pool (none of it open: the noisy tenant's waits never reach
 * reserve_pool_timeout) does not make room past pool_size for a server of
 * the guaranteed tenant to go to the noisy one.
 */
Test(tenants, min_server_conn_holds_with_a_reserve_pool)
{
	quiet_tenant_keeps_its_guaranteed_server(
	    "default_pool_size = 4\nreserve_pool_size = 2\n"
	    "reserve_pool_timeout = 1h\nquery_wait_timeout = 0\n",
	    false);
}

/* The same over 4 workers: the guarantee counts the tenants' servers on every worker. */
Test(tenants, min_server_conn_holds_over_the_process_with_4_workers)
{
	quiet_tenant_keeps_its_guaranteed_server(
	    "workers = 4\ndefault_pool_size = 4\nquery_wait_timeout = 0\n", false);
}

/*
 * The guaranteed server is the tenant's even when the pool has room: a
 * neighbour with no idle server of its own opens one rather than borrow the
 * guaranteed tenant's idle one.  It used to borrow it (SHOW TENANTS showed
 * the guaranteed tenant with no server), so the guaranteed tenant's next
 * request waited for a login of its own, or, under max_db_connections, for
 * the neighbour's transaction: the latency the guarantee is there to keep.
 * One worker, so that both tenants' pools are on it.
 */
Test(tenants, min_server_conn_keeps_its_idle_server_from_an_uncontended_neighbour)
{
	struct harness_sluice *h = start_with(
	    "workers = 1\ndefault_pool_size = 4\nquery_wait_timeout = 20s\n", GUARANTEED);
	PGconn *quiet = tenant(h, "b"), *neighbour = tenant(h, "a");
	int quiet_pid = harness_query_int(quiet, "select pg_backend_pid()");

	PQclear(harness_exec_ok(neighbour, "begin"));
	cr_assert_neq(harness_query_int(neighbour, "select pg_backend_pid()"), quiet_pid,
	              "the neighbour borrowed the guaranteed tenant's idle server");
	cr_assert_eq(console_value(h, "TENANTS", "b", NULL, "servers"), 1);
	cr_assert_eq(harness_query_int(quiet, "select pg_backend_pid()"), quiet_pid);
	PQclear(harness_exec_ok(neighbour, "commit"));
	PQfinish(neighbour);
	PQfinish(quiet);
}

/*
 * Nor is the room a neighbour needs under max_db_connections made by closing
 * the guaranteed tenant's idle server: the neighbour waits (here until
 * query_wait_timeout) and the guaranteed tenant keeps its backend.  Both on
 * one worker, where borrowing and closing idle servers of the group happen.
 */
Test(tenants, max_db_connections_does_not_close_a_guaranteed_idle_server)
{
	struct harness_sluice *h =
	    start_with("workers = 1\ndefault_pool_size = 4\nmax_db_connections = 1\n"
	               "query_wait_timeout = 1s\n",
	               GUARANTEED);
	/* The neighbour first: its pool's login takes the one server max_db_connections allows. */
	PGconn *neighbour = tenant(h, "a"), *quiet = tenant(h, "b");
	int quiet_pid = harness_query_int(quiet, "select pg_backend_pid()");
	PGresult *res = PQexec(neighbour, "select pg_backend_pid()");

	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR,
	             "the neighbour was served: the guaranteed server was closed for it");
	cr_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "53300");
	PQclear(res);
	cr_assert_eq(harness_query_int(quiet, "select pg_backend_pid()"), quiet_pid);
	cr_assert_eq(console_value(h, "TENANTS", "b", NULL, "servers"), 1);
	PQfinish(neighbour);
	PQfinish(quiet);
}

/*
 * weight: tenants a (weight 3) and b (weight 1) both keep more clients
 * waiting than the pool has servers; of the transactions served in a window,
 * a gets about 3 for each of b's.  Round-robin would give 1:1.
 */
static void weights_share_a_saturated_pool(const char *sluice_keys, int clients)
{
	struct harness_sluice *h =
	    start_with(sluice_keys, TENANT("a", "weight = 3\n") TENANT("b", "weight = 1\n"));
	struct crowd a = {.h = h,
	                  .tenant = "a",
	                  .sql = "select pg_sleep(0.005)",
	                  .clients = clients,
	                  .warm = true};
	struct crowd b = a;
	long a0, b0, da, db;
	pthread_t ta, tb;

	b.tenant = "b";
	crowd_start(&a, &ta, clients);
	crowd_start(&b, &tb, clients);
	a0 = atomic_load(&a.done);
	b0 = atomic_load(&b.done);
	cr_assert(
	    harness_wait_for(atomic_load(&a.done) - a0 + atomic_load(&b.done) - b0 >= 800, 120.0),
	    "the tenants ran only %ld + %ld transactions", atomic_load(&a.done) - a0,
	    atomic_load(&b.done) - b0);
	da = atomic_load(&a.done) - a0;
	db = atomic_load(&b.done) - b0;
	cr_log_info("weights 3:1 served %ld : %ld transactions", da, db);
	cr_assert_eq(console_value(h, "TENANTS", "a", NULL, "weight"), 3);
	cr_assert_eq(console_value(h, "TENANTS", "b", NULL, "weight"), 1);
	crowd_stop(&a, ta);
	crowd_stop(&b, tb);
	cr_assert_eq(atomic_load(&a.errors) + atomic_load(&b.errors), 0);
	cr_assert(db > 0 && da >= 2 * db && da <= 9 * db / 2,
	          "weights 3:1 served %ld : %ld transactions (%.2f)", da, db,
	          db > 0 ? (double)da / (double)db : 0.0);
}

Test(tenants, weights_share_a_saturated_pool)
{
	weights_share_a_saturated_pool("default_pool_size = 4\nquery_wait_timeout = 0\n", 8);
}

Test(tenants, weights_hold_over_the_process_with_4_workers)
{
	weights_share_a_saturated_pool(
	    "workers = 4\ndefault_pool_size = 8\nquery_wait_timeout = 0\n", 16);
}

Test(tenants, idle_in_transaction_client_is_closed_and_its_locks_released)
{
	struct harness_sluice *h =
	    start(TENANT("a", "idle_transaction_timeout = 1s\n") TENANT("b", ""));
	PGconn *super = harness_pg_super("app");
	PGconn *holder, *waiter;
	PGresult *res;

	PQclear(harness_exec_ok(super, "create table if not exists tenants_lock (x int)"));
	PQclear(harness_exec_ok(super, "grant all on tenants_lock to app"));
	holder = tenant(h, "a");
	waiter = tenant(h, "b");
	PQclear(harness_exec_ok(holder, "begin"));
	PQclear(harness_exec_ok(holder, "lock table tenants_lock in access exclusive mode"));
	/* Blocks until the holder's server rolls back; lock_timeout only guards the test. */
	PQclear(harness_exec_ok(waiter,
	                        "begin; set local lock_timeout = '60s'; "
	                        "lock table tenants_lock in access exclusive mode; commit"));
	res = PQexec(holder, "select 1");
	cr_assert_neq(PQresultStatus(res), PGRES_TUPLES_OK, "the idle transaction survived");
	cr_assert(strstr(PQerrorMessage(holder), "idle_transaction_timeout") != NULL, "%s",
	          PQerrorMessage(holder));
	PQclear(res);
	cr_assert_eq(PQstatus(waiter), CONNECTION_OK);
	PQfinish(holder);
	PQfinish(waiter);
	PQfinish(super);
}

/* Tenants with different statement_timeouts never share a server connection. */
Test(tenants, statement_timeout_is_a_startup_option_on_the_tenants_own_servers)
{
	struct harness_sluice *h = start_with(
	    "default_pool_size = 1\n",
	    TENANT("a", "") TENANT(
	        "c", "statement_timeout = 300ms\n") "[tenant.b]\nusers = "
	                                            "tenant_b\nstatement_timeout = 300ms\n"
	                                            "[users]\ntenant_b = statement_timeout=2s\n");
	PGconn *a = tenant(h, "a"), *c;
	long long pid_a, pid_c;
	PGresult *res;

	res = harness_exec_ok(a, "show statement_timeout");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "0");
	PQclear(res);
	pid_a = harness_query_int(a, "select pg_backend_pid()");
	c = tenant(h, "c");
	res = harness_exec_ok(c, "show statement_timeout");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "300ms");
	PQclear(res);
	pid_c = harness_query_int(c, "select pg_backend_pid()");
	cr_assert_neq(pid_a, pid_c, "tenant c ran on tenant a's server");
	res = PQexec(c, "select pg_sleep(5)");
	cr_assert_str_eq(harness_sqlstate(res), "57014", "%s", PQresultErrorMessage(res));
	cr_assert(strstr(PQresultErrorMessage(res), "statement timeout") != NULL);
	PQclear(res);
	/* RESET goes back to the tenant's value, not to Postgres' default. */
	PQclear(harness_exec_ok(c, "set statement_timeout = '10s'"));
	PQclear(harness_exec_ok(c, "reset statement_timeout"));
	res = harness_exec_ok(c, "show statement_timeout");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "300ms");
	PQclear(res);
	res = harness_exec_ok(a, "show statement_timeout");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "0", "tenant a got tenant c's server");
	PQclear(res);
	PQfinish(a);
	PQfinish(c);
	/* A [users] value beats the tenant's. */
	c = tenant(h, "b");
	res = harness_exec_ok(c, "show statement_timeout");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "2s");
	PQclear(res);
	PQfinish(c);
}

Test(tenants, session_mode_refuses_at_transaction_start_and_keeps_the_session)
{
	struct harness_sluice *h =
	    start_with("pool_mode = session\n", TENANT("a", "transaction_rate = 1/min\n"));
	PGconn *c = tenant(h, "a");
	PGresult *res;

	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	for (int i = 0; i < 2; i++) {
		res = PQexec(c, "select 1");
		expect_rate_refusal(res, "a", "transaction_rate 1/min");
		PQclear(res);
	}
	cr_assert_eq(PQstatus(c), CONNECTION_OK);
	cr_assert_eq(PQtransactionStatus(c), PQTRANS_IDLE);
	cr_assert_eq(console_value(h, "RATELIMITS", "a", "transaction_rate", "rejected"), 2);
	PQfinish(c);
}

Test(tenants, max_client_conn_and_connect_rate_refuse_logins)
{
	struct harness_sluice *h = start(TENANT("a", "max_client_conn = 2\n") TENANT(
	    "b", "connect_rate = 2/min\nconnect_burst = 2\n"));
	PGconn *a1 = tenant(h, "a"), *a2 = tenant(h, "a"), *a3, *b1, *b2;
	char sqlstate[6];

	cr_assert(harness_connect_fails(h, "tenant_a", "a-secret", "app", sqlstate));
	cr_assert_str_eq(sqlstate, "53300");
	cr_assert_eq(console_value(h, "TENANTS", "a", NULL, "clients"), 2);
	/* A slot comes free when a client leaves. */
	PQfinish(a1);
	cr_assert(harness_wait_for(console_value(h, "TENANTS", "a", NULL, "clients") == 1, WAIT_S));
	a3 = tenant(h, "a");
	b1 = tenant(h, "b");
	b2 = tenant(h, "b");
	cr_assert(harness_connect_fails(h, "tenant_b", "b-secret", "app", sqlstate));
	cr_assert_str_eq(sqlstate, "53400");
	cr_assert_eq(console_value(h, "TENANTS", "b", NULL, "refused_logins"), 1);
	cr_assert_eq(console_value(h, "TENANTS", "a", NULL, "refused_logins"), 1);
	PQfinish(a2);
	PQfinish(a3);
	PQfinish(b1);
	PQfinish(b2);
}

static void *connect_tenant_c(void *h)
{
	return harness_connect_ok(h, "tenant_c", "c-secret", "app");
}

/*
 * A login waiting for a connect_rate token while a RELOAD moves its user to
 * another tenant is admitted to the new tenant and counted there, not in the
 * old one.  It stayed counted in the old tenant (for good: max_client_conn
 * then refused a client too early there) and was taken off the new one's
 * count when it left.  The token comes 10 s after the first login; the
 * RELOAD is sent as soon as the second waits (were it later, the login
 * would simply finish in the old tenant, which this test also accepts).
 */
Test(tenants, a_login_throttled_across_a_reload_is_counted_in_its_new_tenant)
{
	const char *before = "[tenant.a]\nusers = tenant_a, tenant_c\nconnect_rate = 6/min\n"
	                     "rate_limit_wait = 1min\n" TENANT("b", "");
	const char *after = "[tenant.a]\nusers = tenant_a\nconnect_rate = 6/min\n"
	                    "rate_limit_wait = 1min\n[tenant.b]\nusers = tenant_b, tenant_c\n";
	struct harness_sluice *h = start(before);
	PGconn *first = tenant(h, "a"),
	       *admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGconn *moved;
	pthread_t tid;
	char ini[1024];
	void *ret;

	cr_assert_eq(pthread_create(&tid, NULL, connect_tenant_c, h), 0);
	cr_assert(
	    harness_wait_for(console_value_on(admin, "TENANTS", "a", NULL, "clients") == 2, WAIT_S),
	    "the second login of tenant a never waited for its token");
	snprintf(ini, sizeof(ini), "admin_users = admin\n" FORCED_USER "%s", after);
	harness_write_ini(h, ini);
	PQclear(harness_exec_ok(admin, "RELOAD"));
	cr_assert_eq(pthread_join(tid, &ret), 0);
	moved = ret;
	cr_assert_eq(harness_query_int(moved, "select 1"), 1);
	cr_assert_eq(console_value_on(admin, "TENANTS", "a", NULL, "clients") +
	                 console_value_on(admin, "TENANTS", "b", NULL, "clients"),
	             2);
	PQfinish(moved);
	PQfinish(first);
	cr_assert(
	    harness_wait_for(console_value_on(admin, "TENANTS", "a", NULL, "clients") == 0 &&
	                         console_value_on(admin, "TENANTS", "b", NULL, "clients") == 0,
	                     WAIT_S),
	    "counts after both left: tenant a %lld, tenant b %lld",
	    console_value_on(admin, "TENANTS", "a", NULL, "clients"),
	    console_value_on(admin, "TENANTS", "b", NULL, "clients"));
	PQfinish(admin);
}

Test(tenants, limits_reload_without_dropping_connections)
{
	const char *before = TENANT("a", "tier = free\n") "[tier.free]\nquery_rate = 1/min\n";
	const char *after = TENANT("a", "tier = free\n") "[tier.free]\nquery_rate = 1000/s\n"
	                                                 "min_server_conn = 2\nweight = 5\n";
	struct harness_sluice *h = start(before);
	PGconn *c = tenant(h, "a"), *admin;
	PGresult *res;
	char ini[1024];

	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	res = PQexec(c, "select 1");
	expect_rate_refusal(res, "a", "query_rate 1/min");
	PQclear(res);
	snprintf(ini, sizeof(ini), "admin_users = admin\n" FORCED_USER "%s", after);
	harness_write_ini(h, ini);
	admin = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PQclear(harness_exec_ok(admin, "RELOAD"));
	res = harness_exec_ok(admin, "SHOW TENANTS");
	cr_assert_str_eq(PQgetvalue(res, 0, PQfnumber(res, "tenant")), "a");
	cr_assert_str_eq(PQgetvalue(res, 0, PQfnumber(res, "tier")), "free");
	cr_assert_str_eq(PQgetvalue(res, 0, PQfnumber(res, "query_rate")), "1000/s");
	cr_assert_str_eq(PQgetvalue(res, 0, PQfnumber(res, "clients")), "1");
	cr_assert_str_eq(PQgetvalue(res, 0, PQfnumber(res, "min_server_conn")), "2");
	cr_assert_str_eq(PQgetvalue(res, 0, PQfnumber(res, "weight")), "5");
	PQclear(res);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(harness_query_int(c, "select 3"), 3);
	PQfinish(admin);
	PQfinish(c);
}
