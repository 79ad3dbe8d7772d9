/*
 * LISTEN / NOTIFY in transaction mode (issue 17, docs/session-state.md):
 * one shared listening connection per pool fans notifications out to its
 * subscribers, who hold no server; a killed listening connection is opened
 * again with a notice to subscribers; a subscriber that does not read is
 * closed at listen_queue_size without slowing the others; UNLISTEN and a
 * rolled-back LISTEN deliver nothing more.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(notify, .fini = harness_teardown, .timeout = 240);

#define WAIT_S 60.0

#define CONSOLE_USERS "\"admin\" \"admin-secret\"\n"
#define CONSOLE_INI   "admin_users = admin\nworkers = 1\n"

static struct harness_sluice *start(const char *extra)
{
	char ini[1024];

	snprintf(ini, sizeof(ini), "%s%s", CONSOLE_INI, extra != NULL ? extra : "");
	return harness_start_sluice_users(ini, CONSOLE_USERS);
}

static PGconn *app(struct harness_sluice *h)
{
	return harness_connect_ok(h, "app", "app-secret", "app");
}

static void exec_ok(PGconn *c, const char *sql)
{
	PQclear(harness_exec_ok(c, sql));
}

/* What one connection has received so far. */
struct inbox {
	int notes;         /* NotificationResponses on the channel counted */
	int other;         /* on any other channel */
	int missed_notice; /* notices saying notifications may have been missed */
	char last[64];     /* payload of the last one counted */
	char notice[256];  /* the last notice (or error libpq got while idle) */
};

static void notice_cb(void *arg, const PGresult *res)
{
	struct inbox *in = arg;
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (msg == NULL)
		return;
	if (strstr(msg, "may have been missed") != NULL)
		in->missed_notice++;
	snprintf(in->notice, sizeof(in->notice), "%s", msg);
}

/* Reads what has arrived; notifications on `chan` count in `notes`. */
static void drain(PGconn *c, struct inbox *in, const char *chan)
{
	PGnotify *n;

	cr_assert(PQconsumeInput(c), "connection lost: %s", PQerrorMessage(c));
	while ((n = PQnotifies(c)) != NULL) {
		if (strcmp(n->relname, chan) == 0) {
			in->notes++;
			snprintf(in->last, sizeof(in->last), "%.63s", n->extra);
		} else {
			in->other++;
		}
		PQfreemem(n);
	}
}

static bool got(PGconn *c, struct inbox *in, const char *chan, int want)
{
	drain(c, in, chan);
	return in->notes >= want;
}

/* Backends of user app that match `condition` (SQL on pg_stat_activity). */
static long long app_backends(const char *condition)
{
	PGconn *s = harness_pg_super(NULL);
	char sql[256];
	long long n;

	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND %s", condition);
	n = harness_query_int(s, sql);
	PQfinish(s);
	return n;
}

/* Backends whose last statement was a LISTEN: the listening connections. */
static long long listening_backends(void)
{
	return app_backends("query LIKE 'LISTEN %'");
}

/*
 * A console SHOW's column `col`, summed over the rows where `keycol` is `key`
 * (one per worker for SHOW LISTENERS); -1 when there is none.
 */
static long long show_value(struct harness_sluice *h, const char *show, const char *keycol,
                            const char *key, const char *col)
{
	PGconn *a = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	char sql[64];
	PGresult *res;
	long long v = -1;
	int kc, vc;

	snprintf(sql, sizeof(sql), "SHOW %s", show);
	res = PQexec(a, sql);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(a));
	kc = PQfnumber(res, keycol);
	vc = PQfnumber(res, col);
	cr_assert(kc >= 0 && vc >= 0, "SHOW %s has no column %s or %s", show, keycol, col);
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, kc), key) == 0)
			v = (v < 0 ? 0 : v) + atoll(PQgetvalue(res, i, vc));
	PQclear(res);
	PQfinish(a);
	return v;
}

/* Reads and drops what came; true once the connection is closed. */
static bool read_until_closed(PGconn *c)
{
	PGnotify *n;

	if (!PQconsumeInput(c))
		return true;
	while ((n = PQnotifies(c)) != NULL)
		PQfreemem(n);
	return false;
}

/* Clients of user app in SHOW CLIENTS. */
static int count_clients(struct harness_sluice *h)
{
	PGconn *a = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGresult *res = PQexec(a, "SHOW CLIENTS");
	int uc = PQfnumber(res, "user"), n = 0;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(a));
	for (int i = 0; i < PQntuples(res); i++)
		n += strcmp(PQgetvalue(res, i, uc), "app") == 0;
	PQclear(res);
	PQfinish(a);
	return n;
}

/*
 * NOTIFYs each channel of `chans` (NULL-ended), then channel marker, which
 * `c` LISTENs on: the marker was sent last, so had any other one come it
 * would be there first.  Asserts that none did.
 */
static void assert_not_delivered(PGconn *c, PGconn *notifier, const char *const *chans,
                                 const char *why)
{
	struct inbox marker = {0};
	char sql[128];

	for (; *chans != NULL; chans++) {
		snprintf(sql, sizeof(sql), "NOTIFY %s, 'no'", *chans);
		exec_ok(notifier, sql);
	}
	exec_ok(notifier, "NOTIFY marker, 'end'");
	cr_assert(harness_wait_for(got(c, &marker, "marker", 1), WAIT_S));
	cr_assert_eq(marker.other, 0, "%s", why);
}

#define FANOUT 100

/*
 * A hundred clients LISTEN through a pool of two servers and each gets every
 * notification; Postgres sees one listening backend per worker (two), not a
 * hundred, and the pool never needed more than its two servers plus those.
 */
Test(notify, fan_out_to_100_clients)
{
	struct harness_sluice *h;
	PGconn *subs[FANOUT], *notifier;
	struct inbox in[FANOUT] = {0};

	harness_raise_nofile(1024);
	h = start("workers = 2\ndefault_pool_size = 2\nmax_client_conn = 200\n");
	for (int i = 0; i < FANOUT; i++) {
		subs[i] = app(h);
		exec_ok(subs[i], "LISTEN fanout");
	}
	notifier = app(h);
	for (int k = 1; k <= 5; k++) {
		char sql[64];

		snprintf(sql, sizeof(sql), "NOTIFY fanout, 'n%d'", k);
		exec_ok(notifier, sql);
	}
	for (int i = 0; i < FANOUT; i++) {
		cr_assert(harness_wait_for(got(subs[i], &in[i], "fanout", 5), WAIT_S),
		          "client %d got %d of 5 notifications", i, in[i].notes);
		cr_assert_str_eq(in[i].last, "n5", "client %d: out of order", i);
	}
	/* An earlier test's listening backend may still be exiting. */
	cr_assert(harness_wait_for(listening_backends() <= 2, WAIT_S),
	          "more than one listening backend per worker");
	cr_assert_leq(harness_count_backends("app", NULL), 2 + listening_backends(),
	              "more servers than the pool's two");
	cr_assert_eq(show_value(h, "LISTENERS", "database", "app", "subscriptions"), FANOUT);
	/* Each worker's listening connection is on the one channel. */
	cr_assert_eq(show_value(h, "LISTENERS", "database", "app", "channels"),
	             listening_backends());
	cr_assert_eq(show_value(h, "LISTENERS", "database", "app", "deliveries"), 5 * FANOUT);
	for (int i = 0; i < FANOUT; i++) {
		drain(subs[i], &in[i], "fanout");
		cr_assert_eq(in[i].notes, 5, "client %d got a notification twice", i);
		PQfinish(subs[i]);
	}
	/* The last subscriber gone, the listening connection goes too. */
	cr_assert(harness_wait_for(listening_backends() == 0, WAIT_S));
	PQfinish(notifier);
}

/*
 * pg_terminate_backend on the listening connection: sluice opens another,
 * LISTENs again, tells each subscriber that notifications may have been
 * missed, and later notifications arrive as before.
 */
Test(notify, listening_connection_killed)
{
	struct harness_sluice *h = start(NULL);
	PGconn *subs[3], *notifier, *super;
	struct inbox in[3] = {0};

	for (int i = 0; i < 3; i++) {
		subs[i] = app(h);
		PQsetNoticeReceiver(subs[i], notice_cb, &in[i]);
		exec_ok(subs[i], "LISTEN \"Kill Me\"");
		exec_ok(subs[i], "LISTEN other");
	}
	/* Backends of earlier tests may still be going away. */
	cr_assert(harness_wait_for(listening_backends() == 1, WAIT_S));
	super = harness_pg_super(NULL);
	exec_ok(super, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	               "WHERE usename = 'app' AND query LIKE 'LISTEN %'");
	PQfinish(super);
	for (int i = 0; i < 3; i++) {
		cr_assert(harness_wait_for(
		              (drain(subs[i], &in[i], "Kill Me"), in[i].missed_notice > 0), WAIT_S),
		          "client %d was not told", i);
		cr_assert_eq(in[i].missed_notice, 1, "client %d was told %d times", i,
		             in[i].missed_notice);
	}
	notifier = app(h);
	exec_ok(notifier, "NOTIFY \"Kill Me\", 'after'");
	for (int i = 0; i < 3; i++) {
		cr_assert(harness_wait_for(got(subs[i], &in[i], "Kill Me", 1), WAIT_S),
		          "client %d got nothing after the reconnect", i);
		cr_assert_str_eq(in[i].last, "after");
		/* Its connection works as before. */
		cr_assert_eq(harness_query_int(subs[i], "SELECT 7"), 7);
	}
	cr_assert_eq(listening_backends(), 1);
	cr_assert_eq(show_value(h, "LISTENERS", "database", "app", "lost"), 1);
	for (int i = 0; i < 3; i++)
		PQfinish(subs[i]);
	PQfinish(notifier);
}

/*
 * RECONNECT closes the listening connection with the pool's other servers:
 * a new one LISTENs again (after a switchover, on the new primary), and the
 * subscriber still gets what is sent.  The listening connection was in none
 * of the pool's lists, so RECONNECT (and a reload that moved the database)
 * left it on the old backend for good.
 */
/* The listening connection's backend in SHOW LISTENERS, asked on console connection `a`. */
static long long listener_pid(PGconn *a)
{
	PGresult *res = harness_exec_ok(a, "SHOW LISTENERS");
	int dc = PQfnumber(res, "database"), pc = PQfnumber(res, "remote_pid");
	long long pid = 0;

	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, dc), "app") == 0)
			pid = atoll(PQgetvalue(res, i, pc));
	PQclear(res);
	return pid;
}

Test(notify, reconnect_moves_the_listening_connection)
{
	struct harness_sluice *h = start(NULL);
	PGconn *sub = app(h), *notifier = app(h);
	PGconn *a = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	struct inbox in = {0};
	long long before;

	PQsetNoticeReceiver(sub, notice_cb, &in);
	exec_ok(sub, "LISTEN moved");
	cr_assert(harness_wait_for(listener_pid(a) > 0, WAIT_S));
	before = listener_pid(a);
	PQclear(harness_exec_ok(a, "RECONNECT app"));
	cr_assert(harness_wait_for(listener_pid(a) != before && listener_pid(a) > 0, WAIT_S),
	          "the listening connection stayed on backend %lld", before);
	exec_ok(notifier, "NOTIFY moved, 'after'");
	cr_assert(harness_wait_for(got(sub, &in, "moved", 1), WAIT_S),
	          "nothing reached the subscriber after RECONNECT");
	cr_assert_str_eq(in.last, "after");
	PQfinish(a);
	PQfinish(sub);
	PQfinish(notifier);
}

/*
 * A subscriber that never reads: once its socket, its output buffer and
 * listen_queue_size notifications are full it is closed with 54000, while
 * another subscriber on the same channel gets every notification.
 */
Test(notify, slow_subscriber_is_dropped)
{
	struct harness_sluice *h = start("listen_queue_size = 10\n");
	PGconn *slow = app(h), *fast = app(h), *notifier = app(h);
	struct inbox fin = {0}, sin = {0};
	int bursts = 0, sent = 0;
	bool dropped = false;

	PQsetNoticeReceiver(slow, notice_cb, &sin);
	exec_ok(slow, "LISTEN flood");
	exec_ok(fast, "LISTEN flood");
	/* 100 notifications of 7 kB a burst; the fast one takes each burst before the next. */
	while (!dropped && bursts < 100) {
		exec_ok(notifier, "SELECT pg_notify('flood', repeat('x', 7000) || i) "
		                  "FROM generate_series(1, 100) i");
		sent += 100;
		bursts++;
		cr_assert(harness_wait_for(got(fast, &fin, "flood", sent), WAIT_S),
		          "the fast subscriber got %d of %d", fin.notes, sent);
		dropped = count_clients(h) == 2;
	}
	cr_assert(dropped, "the subscriber that does not read was never dropped");
	cr_assert_eq(show_value(h, "LISTENERS", "database", "app", "dropped"), 1);
	cr_assert_gt(bursts, 1, "dropped before its buffers could be full");
	/* It was told why: the FATAL error is the last thing on its socket. */
	cr_assert(harness_wait_for(read_until_closed(slow), WAIT_S));
	cr_assert(strstr(sin.notice, "listen_queue_size") != NULL, "it was told: %s", sin.notice);
	exec_ok(notifier, "NOTIFY flood, 'still'");
	cr_assert(harness_wait_for(got(fast, &fin, "flood", sent + 1), WAIT_S));
	cr_assert_str_eq(fin.last, "still");
	PQfinish(slow);
	PQfinish(fast);
	PQfinish(notifier);
}

#define BIG_ROW_BYTES 16000000

/*
 * A subscriber dropped for listen_queue_size while it is in the middle of a
 * large row (sluice stopped reading the server at the output watermark):
 * the FATAL cannot go inside the row, so the connection is closed without
 * it.  Every byte of the row it got is the row's: nothing else was written
 * into it.
 */
Test(notify, a_subscriber_dropped_in_the_middle_of_a_row_gets_no_bytes_inside_it)
{
	struct harness_sluice *h = start("listen_queue_size = 4\n");
	PGconn *c = app(h), *notifier = app(h);
	static unsigned char got[BIG_ROW_BYTES + 1024 * 1024];
	size_t n, at = 0, stray = 0;
	char sql[96];

	exec_ok(c, "LISTEN piled");
	snprintf(sql, sizeof(sql), "SELECT repeat('x', %d)", BIG_ROW_BYTES);
	cr_assert(PQsendQuery(c, sql));
	/* Its backend waits for sluice to take the row: sluice holds it at the watermark. */
	cr_assert(harness_wait_for(app_backends("wait_event = 'ClientWrite'") == 1, WAIT_S),
	          "the row never stalled");
	for (int i = 0; i < 5; i++)
		exec_ok(notifier, "NOTIFY piled, 'x'");
	cr_assert(harness_wait_for(count_clients(h) == 1, WAIT_S), "the subscriber stayed");
	/* Read by hand what it was sent: RowDescription, then a DataRow cut short. */
	n = harness_read_to_close(PQsocket(c), got, sizeof(got));
	cr_assert_gt(n, 0);
	cr_assert_eq(got[0], 'T', "the reply starts with %c", got[0]);
	at = 1 + ((size_t)got[1] << 24 | (size_t)got[2] << 16 | (size_t)got[3] << 8 | got[4]);
	cr_assert_lt(at + 11, n, "no DataRow begun");
	cr_assert_eq(got[at], 'D');
	for (size_t i = at + 11; i < n; i++)
		stray += got[i] != 'x';
	cr_assert_eq(stray, 0, "%zu bytes inside the row are not the row's", stray);
	PQfinish(c);
	PQfinish(notifier);
}

/* UNLISTEN of one channel stops it, UNLISTEN * stops all and frees the listening connection. */
Test(notify, unlisten_stops_delivery)
{
	struct harness_sluice *h = start(NULL);
	PGconn *c = app(h), *notifier = app(h);
	struct inbox a = {0}, b = {0};

	exec_ok(c, "LISTEN a");
	exec_ok(c, "listen B;");
	exec_ok(notifier, "NOTIFY a, '1'");
	cr_assert(harness_wait_for(got(c, &a, "a", 1), WAIT_S));
	exec_ok(c, "UNLISTEN a");
	exec_ok(notifier, "NOTIFY a, '2'");
	exec_ok(notifier, "NOTIFY b, 'marker'");
	/* b's notification was sent after a's: a's would have arrived first. */
	cr_assert(harness_wait_for((drain(c, &b, "b"), b.notes == 1), WAIT_S));
	cr_assert_eq(b.other, 0, "a notification on the channel UNLISTENed arrived");
	exec_ok(c, "UNLISTEN *");
	cr_assert(harness_wait_for(listening_backends() == 0, WAIT_S),
	          "the listening connection stayed without channels");
	exec_ok(c, "LISTEN b");
	exec_ok(notifier, "NOTIFY b, 'again'");
	cr_assert(harness_wait_for(got(c, &b, "b", 2), WAIT_S));
	PQfinish(c);
	PQfinish(notifier);
}

/*
 * LISTEN inside a transaction takes effect at COMMIT and not at all after a
 * ROLLBACK, as in Postgres.
 */
Test(notify, listen_in_rolled_back_transaction)
{
	struct harness_sluice *h = start(NULL);
	PGconn *c = app(h), *notifier = app(h);
	struct inbox marker = {0}, kept = {0};

	exec_ok(c, "LISTEN marker");
	exec_ok(c, "BEGIN");
	exec_ok(c, "LISTEN rolled");
	exec_ok(c, "ROLLBACK");
	exec_ok(c, "BEGIN");
	exec_ok(c, "LISTEN kept");
	exec_ok(c, "COMMIT");
	exec_ok(notifier, "NOTIFY kept, 'yes'");
	cr_assert(harness_wait_for(got(c, &kept, "kept", 1), WAIT_S),
	          "LISTEN committed in a transaction delivers nothing");
	exec_ok(notifier, "NOTIFY rolled, 'no'");
	exec_ok(notifier, "NOTIFY marker, 'end'");
	/* The marker was sent after the other: had that one come, it would be counted. */
	cr_assert(harness_wait_for(got(c, &marker, "marker", 1), WAIT_S));
	cr_assert_eq(marker.other, 0, "a LISTEN rolled back delivered");
	PQfinish(c);
	PQfinish(notifier);
}

/*
 * A LISTEN in a multi-statement Query whose later statement sluice cancels
 * for query_timeout: Postgres rolls the implicit transaction back, LISTEN
 * included, so the channel delivers nothing (the error the client sees is
 * sluice's own wording of the cancel, not Postgres').
 */
Test(notify, listen_rolled_back_by_query_timeout)
{
	struct harness_sluice *h = start("query_timeout = 1s\n");
	PGconn *c = app(h), *notifier = app(h);
	const char *const rolled[] = {"timed", NULL};
	PGresult *res;

	exec_ok(c, "LISTEN marker");
	res = PQexec(c, "LISTEN timed; SELECT pg_sleep(60)");
	cr_assert_str_eq(harness_sqlstate(res), "57014", "%s", PQerrorMessage(c));
	cr_assert(strstr(PQerrorMessage(c), "query_timeout") != NULL, "%s", PQerrorMessage(c));
	PQclear(res);
	assert_not_delivered(c, notifier, rolled, "a LISTEN rolled back by the timeout delivered");
	PQfinish(c);
	PQfinish(notifier);
}

/*
 * A listening client holds no server: with a pool of one, another client
 * runs queries while it listens, and SHOW POOLS shows the server idle.
 */
Test(notify, listener_holds_no_server)
{
	struct harness_sluice *h = start("default_pool_size = 1\nquery_wait_timeout = 5s\n");
	PGconn *listener = app(h), *other = app(h);
	struct inbox in = {0};

	exec_ok(listener, "LISTEN held");
	cr_assert_eq(harness_query_int(listener, "SELECT 1"), 1);
	cr_assert_eq(harness_query_int(other, "SELECT 2"), 2);
	cr_assert_eq(show_value(h, "POOLS", "database", "app", "sv_active"), 0);
	cr_assert_eq(show_value(h, "POOLS", "database", "app", "sv_idle"), 1);
	exec_ok(other, "NOTIFY held, 'x'");
	cr_assert(harness_wait_for(got(listener, &in, "held", 1), WAIT_S));
	PQfinish(listener);
	PQfinish(other);
}

/* SHOW CLIENTS: the number of app clients pinned to a server. */
static int pinned_clients(struct harness_sluice *h)
{
	PGconn *a = harness_connect_ok(h, "admin", "admin-secret", "sluice");
	PGresult *res = PQexec(a, "SHOW CLIENTS");
	int uc = PQfnumber(res, "user"), pc = PQfnumber(res, "pinned"), n = 0;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(a));
	cr_assert(pc >= 0, "SHOW CLIENTS has a pinned column");
	for (int i = 0; i < PQntuples(res); i++)
		n += strcmp(PQgetvalue(res, i, uc), "app") == 0 &&
		     strcmp(PQgetvalue(res, i, pc), "1") == 0;
	PQclear(res);
	PQfinish(a);
	return n;
}

/* The listener holds no server: the pool's one server is idle and serves another client. */
static void assert_not_pinned(struct harness_sluice *h, PGconn *other)
{
	cr_assert_eq(pinned_clients(h), 0, "a client is pinned");
	cr_assert_eq(harness_query_int(other, "SELECT 7"), 7);
	cr_assert_eq(show_value(h, "POOLS", "database", "app", "sv_active"), 0);
	cr_assert_eq(show_value(h, "POOLS", "database", "app", "sv_idle"), 1);
}

/* A command that must succeed with CommandComplete `tag`. */
/*
 * A LISTEN that sluice leaves to the server (a name past 63 bytes, which
 * Postgres truncates) pins the client to its server.  A lone UNLISTEN *
 * must reach that backend too (and end sluice's channels of the client):
 * answered by sluice alone, the backend went on listening and the client
 * stayed pinned for good.
 */
Test(notify, unlisten_reaches_a_backend_that_listens_itself)
{
	struct harness_sluice *h = start(NULL);
	PGconn *c = app(h), *notifier = app(h);
	const char *const gone[] = {
	    "a_channel_name_of_more_than_sixty_three_bytes_that_postgres_cuts_x", "early", NULL};
	char sql[128];

	exec_ok(c, "SET client_min_messages = warning"); /* the truncation NOTICE */
	exec_ok(c, "LISTEN early");                      /* sluice's */
	snprintf(sql, sizeof(sql), "LISTEN %s", gone[0]);
	exec_ok(c, sql);
	/* The pin is read back after the ReadyForQuery has gone to the client: wait for it. */
	cr_assert(harness_wait_for(pinned_clients(h) == 1, WAIT_S),
	          "a LISTEN run by the server did not pin");
	exec_ok(c, "UNLISTEN *");
	cr_assert(harness_wait_for(pinned_clients(h) == 0, WAIT_S),
	          "still pinned after UNLISTEN *");
	exec_ok(c, "LISTEN marker");
	assert_not_delivered(c, notifier, gone, "a channel still delivers after UNLISTEN *");
	PQfinish(c);
	PQfinish(notifier);
}

static void expect_tag(PGresult *res, const char *tag)
{
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	cr_assert_str_eq(PQcmdStatus(res), tag);
	PQclear(res);
}

#define ONE_SERVER "default_pool_size = 1\nquery_wait_timeout = 5s\n"

/*
 * LISTEN through the extended protocol (Parse/Bind/Execute, as pgJDBC,
 * psycopg 3 with parameters and postgres.js send it), unnamed and named,
 * Described too: Postgres' replies, notifications arrive, and the client is
 * not pinned.
 */
Test(notify, extended_protocol_listen_does_not_pin)
{
	struct harness_sluice *h = start(ONE_SERVER);
	PGconn *c = app(h), *other = app(h);
	struct inbox unnamed = {0}, named = {0};
	PGresult *res;

	expect_tag(PQexecParams(c, "LISTEN ext_unnamed", 0, NULL, NULL, NULL, NULL, 0), "LISTEN");
	cr_assert_eq(PQtransactionStatus(c), PQTRANS_IDLE);
	expect_tag(PQprepare(c, "lst", "listen \"Ext_Named\"", 0, NULL), "");
	res = PQdescribePrepared(c, "lst");
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
	cr_assert_eq(PQnparams(res), 0);
	cr_assert_eq(PQnfields(res), 0);
	PQclear(res);
	expect_tag(PQexecPrepared(c, "lst", 0, NULL, NULL, NULL, 0), "LISTEN");
	expect_tag(PQexecPrepared(c, "lst", 0, NULL, NULL, NULL, 0), "LISTEN");
	assert_not_pinned(h, other);
	exec_ok(other, "NOTIFY ext_unnamed, 'u'");
	cr_assert(harness_wait_for(got(c, &unnamed, "ext_unnamed", 1), WAIT_S));
	exec_ok(other, "NOTIFY \"Ext_Named\", 'n'");
	cr_assert(harness_wait_for(got(c, &named, "Ext_Named", 1), WAIT_S));
	/* Backends of earlier tests may still be going away. */
	cr_assert(harness_wait_for(listening_backends() == 1, WAIT_S),
	          "Postgres sees more than the listening connection LISTEN");
	/* UNLISTEN through the extended protocol ends it, as in Postgres. */
	expect_tag(PQexecParams(c, "UNLISTEN ext_unnamed", 0, NULL, NULL, NULL, NULL, 0),
	           "UNLISTEN");
	exec_ok(c, "LISTEN marker");
	assert_not_delivered(c, other, (const char *const[]){"ext_unnamed", NULL},
	                     "a notification after UNLISTEN arrived");
	assert_not_pinned(h, other);
	PQfinish(c);
	PQfinish(other);
}

/* The next result of a pipeline: `status`, and `want` as its first value or its tag. */
static void expect_piped(PGconn *c, ExecStatusType status, const char *want)
{
	PGresult *res = PQgetResult(c);

	cr_assert_not_null(res, "no result for %s", want);
	cr_assert_eq(PQresultStatus(res), status, "%s: %s", want, PQresultErrorMessage(res));
	if (status == PGRES_TUPLES_OK)
		cr_assert_str_eq(PQgetvalue(res, 0, 0), want);
	else if (status == PGRES_COMMAND_OK)
		cr_assert_str_eq(PQcmdStatus(res), want);
	PQclear(res);
	if (status != PGRES_PIPELINE_SYNC)
		cr_assert_null(PQgetResult(c), "more than one result for %s", want);
}

/*
 * One write of pipelined extended-protocol queries, as drivers send them:
 * sluice reads each Bind and Describe where it lies, behind the messages it
 * has not moved yet, but the LISTEN's Parse (rewritten) and the named
 * statement's (tracked) each need the message at the head of the input.
 * Every reply comes in order, the LISTEN takes effect, nobody is pinned.
 */
Test(notify, extended_listen_in_a_pipeline)
{
	struct harness_sluice *h = start(ONE_SERVER);
	PGconn *c = app(h), *other = app(h);
	struct inbox in = {0};

	cr_assert(PQenterPipelineMode(c));
	cr_assert(PQsendQueryParams(c, "select 'before'", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendQueryParams(c, "LISTEN piped", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQsendPrepare(c, "named", "select 'named'", 0, NULL));
	cr_assert(PQsendQueryPrepared(c, "named", 0, NULL, NULL, NULL, 0));
	cr_assert(PQsendQueryParams(c, "select 'after'", 0, NULL, NULL, NULL, NULL, 0));
	cr_assert(PQpipelineSync(c));
	expect_piped(c, PGRES_TUPLES_OK, "before");
	expect_piped(c, PGRES_COMMAND_OK, "LISTEN");
	expect_piped(c, PGRES_COMMAND_OK, "");
	expect_piped(c, PGRES_TUPLES_OK, "named");
	expect_piped(c, PGRES_TUPLES_OK, "after");
	expect_piped(c, PGRES_PIPELINE_SYNC, "sync");
	cr_assert(PQexitPipelineMode(c));
	cr_assert_eq(PQtransactionStatus(c), PQTRANS_IDLE);
	assert_not_pinned(h, other);
	exec_ok(other, "NOTIFY piped, 'p'");
	cr_assert(harness_wait_for(got(c, &in, "piped", 1), WAIT_S));
	cr_assert_str_eq(in.last, "p");
	PQfinish(c);
	PQfinish(other);
}

/*
 * LISTEN in a transaction block (simple and extended protocol) takes effect
 * at COMMIT: a notification committed before it is not delivered, one after
 * is; after ROLLBACK nothing is.  The client is never pinned.
 */
Test(notify, listen_in_transaction_takes_effect_at_commit)
{
	struct harness_sluice *h = start("default_pool_size = 2\nquery_wait_timeout = 5s\n");
	PGconn *c = app(h), *other = app(h);
	struct inbox simple = {0}, ext = {0};
	PGresult *res;

	exec_ok(c, "LISTEN marker");
	exec_ok(c, "BEGIN");
	res = PQexec(c, "LISTEN in_tx");
	expect_tag(res, "LISTEN");
	expect_tag(PQexecParams(c, "LISTEN in_tx_ext", 0, NULL, NULL, NULL, NULL, 0), "LISTEN");
	cr_assert_eq(PQtransactionStatus(c), PQTRANS_INTRANS);
	exec_ok(other, "NOTIFY in_tx, 'before commit'");
	exec_ok(other, "NOTIFY in_tx_ext, 'before commit'");
	exec_ok(c, "COMMIT");
	exec_ok(other, "NOTIFY in_tx_ext, 'after'");
	cr_assert(harness_wait_for(got(c, &ext, "in_tx_ext", 1), WAIT_S));
	cr_assert_str_eq(ext.last, "after");
	cr_assert_eq(ext.other, 0, "a notification sent before COMMIT arrived");
	exec_ok(other, "NOTIFY in_tx, 'after'");
	cr_assert(harness_wait_for(got(c, &simple, "in_tx", 1), WAIT_S));
	cr_assert_str_eq(simple.last, "after");
	cr_assert_eq(simple.notes, 1);
	cr_assert_eq(pinned_clients(h), 0);

	exec_ok(c, "BEGIN");
	expect_tag(PQexecParams(c, "LISTEN rolled_ext", 0, NULL, NULL, NULL, NULL, 0), "LISTEN");
	exec_ok(c, "LISTEN rolled_simple");
	exec_ok(c, "ROLLBACK");
	assert_not_delivered(c, other, (const char *const[]){"rolled_ext", "rolled_simple", NULL},
	                     "a LISTEN rolled back delivered");
	cr_assert_eq(pinned_clients(h), 0);
	cr_assert_eq(show_value(h, "POOLS", "database", "app", "sv_active"), 0);
	PQfinish(c);
	PQfinish(other);
}

/*
 * Postgres' errors: LISTEN in an aborted transaction fails with 25P02 (and
 * is not made); an error after a LISTEN in the same implicit transaction
 * (a multi-statement Query, or Executes before one Sync) undoes it.
 */
Test(notify, listen_errors_as_postgres)
{
	struct harness_sluice *h = start(ONE_SERVER);
	PGconn *c = app(h), *other = app(h);
	PGresult *res;

	exec_ok(c, "LISTEN marker");
	exec_ok(c, "BEGIN");
	PQclear(PQexec(c, "SELECT 1/0"));
	res = PQexec(c, "LISTEN aborted");
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	cr_assert_str_eq(harness_sqlstate(res), "25P02");
	PQclear(res);
	res = PQexecParams(c, "LISTEN aborted_ext", 0, NULL, NULL, NULL, NULL, 0);
	cr_assert_str_eq(harness_sqlstate(res), "25P02");
	PQclear(res);
	exec_ok(c, "ROLLBACK");
	res = PQexec(c, "LISTEN undone; SELECT 1/0");
	cr_assert_str_eq(harness_sqlstate(res), "22012");
	PQclear(res);
	cr_assert_eq(PQtransactionStatus(c), PQTRANS_IDLE);
	assert_not_delivered(c, other,
	                     (const char *const[]){"aborted", "aborted_ext", "undone", NULL},
	                     "a LISTEN that failed or was undone delivered");
	assert_not_pinned(h, other);
	PQfinish(c);
	PQfinish(other);
}

/*
 * LISTEN and UNLISTEN among other statements of one Query: each gets its
 * CommandComplete, they take effect when the Query's transaction commits,
 * and a semicolon in a string is no statement end.
 */
Test(notify, listen_in_multi_statement_query)
{
	struct harness_sluice *h = start(ONE_SERVER);
	PGconn *c = app(h), *other = app(h);
	struct inbox m1 = {0}, m2 = {0}, m3 = {0};
	const char *want[] = {"SELECT 1", "LISTEN", "LISTEN", "UNLISTEN", "LISTEN"};
	PGresult *res;
	int i = 0;

	cr_assert(PQsendQuery(c, "SELECT ';listen x'; LISTEN m1; listen \"M2\"; UNLISTEN m1; "
	                         "LISTEN m1; LISTEN m3 /* ; */"));
	while ((res = PQgetResult(c)) != NULL) {
		cr_assert_eq(PQresultStatus(res), i == 0 ? PGRES_TUPLES_OK : PGRES_COMMAND_OK, "%s",
		             PQresultErrorMessage(res));
		cr_assert(i < 6);
		if (i < 5)
			cr_assert_str_eq(PQcmdStatus(res), want[i]);
		PQclear(res);
		i++;
	}
	cr_assert_eq(i, 6);
	assert_not_pinned(h, other);
	exec_ok(other, "NOTIFY x, 'never'");
	exec_ok(other, "NOTIFY m1, '1'");
	cr_assert(harness_wait_for(got(c, &m1, "m1", 1), WAIT_S));
	cr_assert_eq(m1.other, 0, "the string's LISTEN x ran");
	exec_ok(other, "NOTIFY \"M2\", '2'");
	cr_assert(harness_wait_for(got(c, &m2, "M2", 1), WAIT_S));
	exec_ok(other, "NOTIFY m3, '3'");
	cr_assert(harness_wait_for(got(c, &m3, "m3", 1), WAIT_S));
	exec_ok(c, "BEGIN; UNLISTEN *; COMMIT");
	exec_ok(c, "LISTEN marker");
	assert_not_delivered(c, other, (const char *const[]){"m1", "\"M2\"", "m3", NULL},
	                     "a notification after UNLISTEN * arrived");
	/* DISCARD ALL does UNLISTEN * too. */
	exec_ok(c, "LISTEN m1");
	exec_ok(c, "DISCARD ALL");
	exec_ok(c, "LISTEN marker");
	assert_not_delivered(c, other, (const char *const[]){"m1", NULL},
	                     "a notification after DISCARD ALL arrived");
	assert_not_pinned(h, other);
	PQfinish(c);
	PQfinish(other);
}

/*
 * Channels one client has sluice LISTEN on for it are bounded: each cost
 * sluice a channel and a subscription, and a turn in every lookup of the
 * pool's channels (a list), so one client LISTENing on channel after channel
 * grew both without end.  Past LISTEN_CHANNELS_MAX (1024) its LISTEN goes to
 * its server as written and pins it, as Postgres' own LISTEN: notifications
 * on the channels of both kinds still arrive.
 */
Test(notify, channels_of_one_client_are_bounded)
{
	struct harness_sluice *h = start("default_pool_size = 2\nquery_wait_timeout = 5s\n");
	PGconn *many = app(h), *notifier = app(h);
	struct inbox in = {0};
	char sql[64];

	for (int i = 0; i < 1100; i++) {
		snprintf(sql, sizeof(sql), "LISTEN c%d", i);
		exec_ok(many, sql);
	}
	cr_assert_eq(show_value(h, "LISTENERS", "database", "app", "channels"), 1024,
	             "sluice LISTENs on %lld channels for one client",
	             show_value(h, "LISTENERS", "database", "app", "channels"));
	cr_assert(harness_wait_for(pinned_clients(h) == 1, WAIT_S),
	          "the LISTENs past the bound did not pin");
	exec_ok(notifier, "NOTIFY c0, 'shared'");
	exec_ok(notifier, "NOTIFY c1099, 'own'");
	cr_assert(harness_wait_for(got(many, &in, "c0", 1) && in.other >= 1, WAIT_S),
	          "got %d on c0 and %d on c1099", in.notes, in.other);
	PQfinish(many);
	PQfinish(notifier);
}

/* Backends waiting for a lock. */
static long long lock_waiters(void)
{
	return app_backends("wait_event_type = 'Lock'");
}

/*
 * A notification held for a pinned client while its request ran is written
 * when the request ends, also when a SET in that request made sluice read
 * the session's settings back before calling the turn over: the client keeps
 * its server, so no release writes what was held.  The request is made to
 * wait on a lock so that the notification surely comes in the middle of it.
 */
Test(notify, a_notification_held_during_a_request_reaches_a_pinned_client)
{
	struct harness_sluice *h = start("default_pool_size = 5\n");
	PGconn *pinned = app(h), *locker = app(h), *notifier = app(h);
	struct inbox in = {0};
	PGresult *res;

	exec_ok(locker, "CREATE TABLE IF NOT EXISTS held_notes (a int)");
	exec_ok(pinned, "CREATE TEMP TABLE pin_me (a int)");
	exec_ok(pinned, "LISTEN held");
	cr_assert(harness_wait_for(pinned_clients(h) == 1, WAIT_S),
	          "the temporary table did not pin");
	exec_ok(locker, "BEGIN");
	exec_ok(locker, "LOCK TABLE held_notes IN ACCESS EXCLUSIVE MODE");
	cr_assert(
	    PQsendQuery(pinned, "SET application_name = 'held'; SELECT count(*) FROM held_notes"),
	    "%s", PQerrorMessage(pinned));
	cr_assert(harness_wait_for(lock_waiters() == 1, WAIT_S), "the request never waited");
	exec_ok(notifier, "NOTIFY held, 'in the middle'");
	cr_assert(harness_wait_for(
	    show_value(h, "LISTENERS", "database", "app", "notifications") == 1, WAIT_S));
	cr_assert_eq(show_value(h, "LISTENERS", "database", "app", "deliveries"), 0,
	             "written in the middle of a request");
	exec_ok(locker, "COMMIT");
	while ((res = PQgetResult(pinned)) != NULL) {
		cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK ||
		              PQresultStatus(res) == PGRES_TUPLES_OK,
		          "%s", PQresultErrorMessage(res));
		PQclear(res);
	}
	cr_assert(harness_wait_for(got(pinned, &in, "held", 1), WAIT_S),
	          "the notification held during the request never came");
	cr_assert_str_eq(in.last, "in the middle");
	exec_ok(locker, "DROP TABLE held_notes");
	PQfinish(pinned);
	PQfinish(locker);
	PQfinish(notifier);
}

/*
 * A LISTEN statement executed again and again inside one transaction is one
 * channel when the transaction commits, not one queued LISTEN per execution:
 * those would grow sluice's memory with every Execute, and count against the
 * client's channels, so that a LISTEN on a second channel in the same
 * transaction pinned.
 */
Test(notify, a_listen_repeated_in_a_transaction_is_one_channel)
{
	struct harness_sluice *h = start("default_pool_size = 2\n");
	PGconn *c = app(h), *notifier = app(h);
	struct inbox in = {0};
	PGresult *res;

	exec_ok(c, "BEGIN");
	res = PQprepare(c, "again", "LISTEN again", 0, NULL);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
	PQclear(res);
	for (int i = 0; i < 1100; i++) {
		res = PQexecPrepared(c, "again", 0, NULL, NULL, NULL, 0);
		cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
		PQclear(res);
	}
	exec_ok(c, "LISTEN second");
	exec_ok(c, "COMMIT");
	cr_assert_eq(pinned_clients(h), 0, "the LISTEN on a second channel pinned");
	cr_assert_eq(show_value(h, "LISTENERS", "database", "app", "channels"), 2);
	exec_ok(notifier, "NOTIFY again, 'a'");
	exec_ok(notifier, "NOTIFY second, 'b'");
	cr_assert(harness_wait_for(got(c, &in, "again", 1) && in.other >= 1, WAIT_S),
	          "got %d on again and %d on second", in.notes, in.other);
	PQfinish(c);
	PQfinish(notifier);
}
