/*
 * Drop-in for PgBouncer users (issue 18, docs/migrating.md): Debian's stock
 * pgbouncer.ini and a production-style file with PgBouncer's keys pass
 * `sluice --check` and serve queries; --check reports every error; the
 * reserve pool opens a server for a client that waited; ignored startup
 * parameters are dropped; and a user name holding a newline, an invalid
 * UTF-8 byte and quotes leaves one valid JSON object per log line.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(pgbcompat, .fini = harness_teardown, .timeout = 180);

#define STOCK_INI "/etc/pgbouncer/pgbouncer.ini"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t len = 0;
	FILE *mem;
	int ch;

	if (f == NULL)
		return NULL;
	mem = open_memstream(&text, &len);
	while ((ch = getc(f)) != EOF)
		putc(ch, mem);
	fclose(mem);
	fclose(f);
	return text;
}

/* Runs `sluice --check ini`; returns its exit code and output (to free). */
static int check(const char *ini, char **output)
{
	const char *argv[] = {getenv("SLUICE_BIN"), "--check", ini, NULL};

	return harness_run(argv, NULL, 30, output);
}

/* Starts a prepared sluice on the ini already written and waits until it serves. */
static void start_and_wait(struct harness_sluice *h)
{
	harness_spawn_activated(h, NULL, 0, NULL);
	cr_assert(harness_wait_for(({
		                           PGconn *c_ =
		                               harness_connect(h, "app", "app-secret", "app");
		                           bool ok_ = PQstatus(c_) == CONNECTION_OK;
		                           PQfinish(c_);
		                           ok_ || !harness_sluice_alive(h);
	                           }),
	                           30),
	          "sluice did not start");
	cr_assert(harness_sluice_alive(h), "sluice exited; see its log");
}

static void select_one(struct harness_sluice *h)
{
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");

	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	PQfinish(c);
}

/*
 * Debian's stock file with only what a test must change: the paths (to the
 * test's directory), the port, and one [databases] entry (the stock file
 * has none, so PgBouncer would serve nothing either).
 */
static void write_stock_ini(struct harness_sluice *h, const char *stock)
{
	const struct harness_pg *pg = harness_pg();
	FILE *out = fopen(h->ini_path, "w");
	char *copy = strdup(stock), *save = NULL;

	h->client_tls = false; /* a file of its own, without SLUICE_TEST_CLIENT_TLS's TLS */
	cr_assert_not_null(out);
	for (char *line = strtok_r(copy, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "logfile =", 9) == 0)
			fprintf(out, "logfile = %s/pgbouncer.log\n", h->dir);
		else if (strncmp(line, "pidfile =", 9) == 0)
			fprintf(out, "pidfile = %s/pgbouncer.pid\n", h->dir);
		else if (strncmp(line, "listen_port =", 13) == 0)
			fprintf(out, "listen_port = %d\n", h->port);
		else if (strncmp(line, "unix_socket_dir =", 17) == 0)
			fprintf(out, "unix_socket_dir = %s\n", h->dir);
		else if (strncmp(line, "auth_file =", 11) == 0)
			fprintf(out, "auth_file = %s\n", h->userlist_path);
		else if (strcmp(line, "[databases]") == 0)
			fprintf(out, "[databases]\napp = host=%s port=%d dbname=app\n", pg->host,
			        pg->port);
		else
			fprintf(out, "%s\n", line);
	}
	fclose(out);
	free(copy);
}

Test(pgbcompat, debian_stock_ini_checks_and_serves)
{
	char *stock = slurp(STOCK_INI), *out = NULL, path[400], *pid_text;
	struct harness_sluice *h;

	if (stock == NULL)
		cr_skip_test("%s is not here (pgbouncer is not installed)", STOCK_INI);
	h = harness_prepare_sluice(NULL);
	write_stock_ini(h, stock);
	cr_assert_eq(check(h->ini_path, &out), 0, "--check failed:\n%s", out);
	cr_assert_not_null(strstr(out, "configuration OK"), "%s", out);
	free(out);

	start_and_wait(h);
	select_one(h);
	/* pidfile and logfile, as the stock file asks. */
	snprintf(path, sizeof(path), "%s/pgbouncer.pid", h->dir);
	pid_text = slurp(path);
	cr_assert_not_null(pid_text, "no pidfile");
	cr_assert_eq(atoi(pid_text), h->pid);
	free(pid_text);
	snprintf(path, sizeof(path), "%s/pgbouncer.log", h->dir);
	pid_text = slurp(path);
	cr_assert_not_null(pid_text, "no logfile");
	cr_assert_not_null(strstr(pid_text, "sluice started"), "%s", pid_text);
	free(pid_text);
	cr_assert_eq(harness_stop_sluice(h, SIGINT, 30), 0);
	snprintf(path, sizeof(path), "%s/pgbouncer.pid", h->dir);
	cr_assert(access(path, F_OK) != 0, "the pidfile outlived sluice");
	free(stock);
}

/* A production-style file: PgBouncer's keys of every kind, an include, a long line. */
static void write_production_ini(struct harness_sluice *h)
{
	const struct harness_pg *pg = harness_pg();
	char path[400], text[4096], pad[600];

	h->client_tls = false; /* as in write_stock_ini */
	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	snprintf(path, sizeof(path), "%s/hba.conf", h->dir);
	harness_write_file(path, "host all all 127.0.0.1/32 scram-sha-256\n"
	                         "local all all scram-sha-256\n");
	/* An included file with a [databases] line of over 700 characters. */
	snprintf(path, sizeof(path), "%s/databases.ini", h->dir);
	snprintf(text, sizeof(text),
	         "[databases]\n"
	         "app = host=%s port=%d dbname=app pool_size=1 reserve_pool=1 "
	         "connect_query='SELECT 1' datestyle='SQL, DMY' application_name=%s\n"
	         "other = host=%s port=%d dbname=other\n",
	         pg->host, pg->port, pad, pg->host, pg->port);
	harness_write_file(path, text);
	snprintf(text, sizeof(text),
	         ";; a production-style pgbouncer.ini\n"
	         "[pgbouncer]\n"
	         "listen_addr = 127.0.0.1\n"
	         "listen_port = %d\n"
	         "unix_socket_dir = %s\n"
	         "unix_socket_mode = 0777\n"
	         "logfile = %s/pgbouncer.log\n"
	         "pidfile = %s/pgbouncer.pid\n"
	         "syslog = 0\n"
	         "syslog_ident = pgbouncer\n"
	         "syslog_facility = local0\n"
	         "auth_type = hba\n"
	         "auth_hba_file = hba.conf\n"
	         "auth_file = %s\n"
	         "auth_dbname = app\n"
	         "admin_users = app\n"
	         "stats_users = app\n"
	         "pool_mode = transaction\n"
	         "max_client_conn = 500\n"
	         "default_pool_size = 20\n"
	         "min_pool_size = 0\n"
	         "reserve_pool_size = 2\n"
	         "reserve_pool_timeout = 0.1\n"
	         "max_db_connections = 50\n"
	         "max_user_connections = 50\n"
	         "server_round_robin = 0\n"
	         "ignore_startup_parameters = extra_float_digits, options\n"
	         "track_extra_parameters = IntervalStyle, search_path\n"
	         "server_reset_query = DISCARD ALL\n"
	         "server_check_query = select 1\n"
	         "server_check_delay = 30\n"
	         "server_lifetime = 3600\n"
	         "server_idle_timeout = 600\n"
	         "server_connect_timeout = 15\n"
	         "server_login_retry = 15\n"
	         "client_login_timeout = 60\n"
	         "autodb_idle_timeout = 3600\n"
	         "query_timeout = 0\n"
	         "query_wait_timeout = 120\n"
	         "client_idle_timeout = 0\n"
	         "idle_transaction_timeout = 0\n"
	         "log_connections = 1\n"
	         "log_disconnections = 1\n"
	         "log_pooler_errors = 1\n"
	         "log_stats = 1\n"
	         "stats_period = 60\n"
	         "verbose = 0\n"
	         "max_packet_size = 2147483647\n"
	         "listen_backlog = 4096\n"
	         "so_reuseport = 0\n"
	         "pkt_buf = 4096\n"
	         "sbuf_loopcnt = 5\n"
	         "tcp_keepalive = 1\n"
	         "tcp_keepidle = 60\n"
	         "tcp_defer_accept = 0\n"
	         "dns_max_ttl = 15\n"
	         "client_tls_sslmode = disable\n"
	         "client_tls_protocols = secure\n"
	         "server_tls_sslmode = disable\n"
	         "server_tls_ciphers = fast\n"
	         "application_name_add_host = 1\n"
	         "%%include databases.ini\n"
	         "[users]\n"
	         "app = pool_mode=transaction max_user_client_connections=100\n"
	         "[peers]\n"
	         "1 = host=/tmp/pgbouncer-1\n",
	         h->port, h->dir, h->dir, h->dir, h->userlist_path);
	harness_write_file(h->ini_path, text);
}

Test(pgbcompat, production_ini_checks_warns_and_serves)
{
	struct harness_sluice *h = harness_prepare_sluice(NULL);
	char *out = NULL, path[400], *log;
	PGconn *c;

	write_production_ini(h);
	cr_assert_eq(check(h->ini_path, &out), 0, "--check failed:\n%s", out);
	cr_assert_not_null(strstr(out, "warning: "), "%s", out);
	cr_assert_null(strstr(out, "'tcp_keepalive'"), "tcp_keepalive is honoured, no warning:\n%s",
	               out);
	cr_assert_not_null(strstr(out, "'connect_query' is a PgBouncer setting"), "%s", out);
	cr_assert_not_null(strstr(out, "[peers]"), "%s", out);
	cr_assert_null(strstr(out, "server_round_robin"), "0 needs no warning:\n%s", out);
	cr_assert_not_null(strstr(out, "configuration OK"), "%s", out);
	free(out);

	start_and_wait(h);
	/* extra_float_digits is dropped: the server's default stays. */
	c = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	/* datestyle in the [databases] entry is asked of the server. */
	cr_assert_str_eq(PQparameterStatus(c, "DateStyle"), "SQL, DMY");
	PQfinish(c);
	setenv("PGOPTIONS", "-c extra_float_digits=2", 1);
	c = harness_connect_ok(h, "app", "app-secret", "app");
	unsetenv("PGOPTIONS");
	cr_assert_eq(harness_query_int(c, "select current_setting('extra_float_digits')::int"), 1,
	             "ignore_startup_parameters: extra_float_digits reached the server");
	PQfinish(c);
	/* log_connections / log_disconnections: at info, into the logfile too. */
	snprintf(path, sizeof(path), "%s/pgbouncer.log", h->dir);
	cr_assert(harness_wait_for(({
		                           log = slurp(path);
		                           bool found_ = log != NULL &&
		                                         strstr(log, " info ") != NULL &&
		                                         strstr(log, "logged in") != NULL &&
		                                         strstr(log, "closing: ") != NULL;
		                           free(log);
		                           found_;
	                           }),
	                           20),
	          "no login and disconnection lines at info in the logfile");
	cr_assert_eq(harness_stop_sluice(h, SIGINT, 30), 0);
}

Test(pgbcompat, check_reports_every_error_and_fails)
{
	struct harness_sluice *h = harness_prepare_sluice(NULL);
	char *out = NULL;

	harness_write_file(h->ini_path,
	                   "[pgbouncer]\nauth_file = userlist.txt\n"
	                   "pool_mode = sometimes\nmax_client_conn = many\n"
	                   "no_such_key = 1\n[databases]\napp = host=h pool_size=-1\n");
	cr_assert_eq(check(h->ini_path, &out), 1, "%s", out);
	cr_assert_not_null(strstr(out, ":3: key 'pool_mode'"), "%s", out);
	cr_assert_not_null(strstr(out, ":4: key 'max_client_conn'"), "%s", out);
	cr_assert_not_null(strstr(out, ":5: unknown key 'no_such_key'"), "%s", out);
	cr_assert_not_null(strstr(out, ":7: database 'app'"), "%s", out);
	cr_assert_not_null(strstr(out, "4 errors"), "%s", out);
	free(out);
}

/* The reserve: with the one server held in a transaction, a waiting client gets another. */
Test(pgbcompat, reserve_pool_serves_a_client_that_waited)
{
	struct harness_sluice *h =
	    harness_start_sluice("default_pool_size = 1\nreserve_pool_size = 1\n"
	                         "reserve_pool_timeout = 100ms\nquery_wait_timeout = 60s");
	PGconn *holder = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *waiter = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res;

	PQclear(harness_exec_ok(holder, "begin"));
	PQclear(harness_exec_ok(holder, "select 1"));
	cr_assert_eq(harness_count_backends("app", NULL), 1);
	/* Served by a reserve server while the holder's transaction is still open. */
	res = harness_exec_ok(waiter, "select 42");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "42");
	PQclear(res);
	cr_assert(harness_log_contains(h, "reserve_pool: a client waited"));
	/* Released with nobody waiting, the reserve server goes: back to pool_size. */
	cr_assert(harness_wait_for(harness_count_backends("app", NULL) == 1, 20),
	          "the reserve server stayed open");
	PQclear(harness_exec_ok(holder, "commit"));
	PQfinish(holder);
	PQfinish(waiter);
}

/* Without a reserve, the same waiter would wait for the holder (pool_size is a hard cap). */
Test(pgbcompat, no_reserve_means_pool_size_holds)
{
	struct harness_sluice *h =
	    harness_start_sluice("default_pool_size = 1\nquery_wait_timeout = 1s");
	PGconn *holder = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *waiter = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res;

	PQclear(harness_exec_ok(holder, "begin"));
	PQclear(harness_exec_ok(holder, "select 1"));
	res = PQexec(waiter, "select 42");
	cr_assert_str_eq(harness_sqlstate(res), "53300", "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_eq(harness_count_backends("app", NULL), 1);
	PQclear(harness_exec_ok(holder, "commit"));
	PQfinish(holder);
	PQfinish(waiter);
}

/*
 * A user name with a newline, a byte that is not UTF-8 and quotes: every
 * line of the JSON log is one object (parsed by Python's json module), and
 * the name comes back as sent, escaped.
 */
Test(pgbcompat, forged_user_name_leaves_one_json_object_per_line)
{
	struct harness_sluice *h = harness_start_sluice("log_format = json\nlog_connections = on\n"
	                                                "log_disconnections = on");
	static const char evil[] = "ev\nil\xff\"q'x\\{\"level\":\"error\"}";
	char port[16], *out = NULL;
	const char *keys[] = {"host", "port", "user", "password", "dbname", NULL};
	const char *values[] = {"127.0.0.1", port, evil, "nope", "app", NULL};
	const char *script = "import json, sys\n"
	                     "data = open(sys.argv[1], 'rb').read()\n"
	                     "lines = data.split(b'\\n')\n"
	                     "assert lines[-1] == b'', 'log does not end in a newline'\n"
	                     "users = []\n"
	                     "for n, raw in enumerate(lines[:-1], 1):\n"
	                     "    obj = json.loads(raw.decode('utf-8'))\n"
	                     "    assert isinstance(obj, dict), n\n"
	                     "    users.append(obj.get('user'))\n"
	                     "want = 'ev\\nil\\\\xff\"q\\'x\\\\{\"level\":\"error\"}'\n"
	                     "assert want in users, (want, users)\n"
	                     "print('lines', len(lines) - 1)\n";
	const char *argv[] = {"python3", "-c", script, h->log_path, NULL};
	PGconn *c;

	snprintf(port, sizeof(port), "%d", h->port);
	c = PQconnectdbParams(keys, values, 0);
	cr_assert_neq(PQstatus(c), CONNECTION_OK, "a made-up user logged in");
	PQfinish(c);
	cr_assert(harness_wait_for(harness_log_contains(h, "password authentication failed") ||
	                               harness_log_contains(h, "\"user\":\"ev\\nil"),
	                           20),
	          "the failed login was not logged");
	cr_assert_eq(harness_run(argv, NULL, 30, &out), 0, "%s", out);
	free(out);
}

/* transaction_timeout: a transaction left open is ended by closing its client, not its server. */
Test(pgbcompat, transaction_timeout_closes_the_client)
{
	struct harness_sluice *h = harness_start_sluice("transaction_timeout = 300ms");
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");
	PGresult *res;

	PQclear(harness_exec_ok(c, "begin"));
	PQclear(harness_exec_ok(c, "select 1"));
	cr_assert(harness_wait_for(harness_log_contains(h, "longer than transaction_timeout"), 20),
	          "the open transaction was not ended");
	res = PQexec(c, "commit");
	cr_assert(PQresultStatus(res) != PGRES_COMMAND_OK || PQstatus(c) != CONNECTION_OK,
	          "the commit went through after transaction_timeout");
	if (harness_sqlstate(res)[0] != '\0')
		cr_assert_str_eq(harness_sqlstate(res), "25P04");
	PQclear(res);
	PQfinish(c);
	/* The server was rolled back and kept, not left idle in a transaction. */
	cr_assert(harness_wait_for(harness_count_backends("app", "idle in transaction") == 0, 20));
	c = harness_connect_ok(h, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(c, "select 2"), 2);
	PQfinish(c);
}

/* The text format too: every line of the log starts with a timestamp, whatever the user name. */
Test(pgbcompat, forged_user_name_cannot_start_a_text_line)
{
	struct harness_sluice *h = harness_start_sluice("log_connections = on");
	static const char evil[] = "x\n2026-01-01T00:00:00.000Z error forged\r\xff";
	char port[16], *log, *save = NULL;
	const char *keys[] = {"host", "port", "user", "password", "dbname", NULL};
	const char *values[] = {"127.0.0.1", port, evil, "nope", "app", NULL};
	PGconn *c;
	int lines = 0;

	snprintf(port, sizeof(port), "%d", h->port);
	c = PQconnectdbParams(keys, values, 0);
	cr_assert_neq(PQstatus(c), CONNECTION_OK);
	PQfinish(c);
	cr_assert(harness_wait_for(harness_log_contains(h, "x\\n2026-01-01T00:00:00.000Z error "
	                                                   "forged\\r\\xff"),
	                           20),
	          "the name was not logged escaped");
	log = slurp(h->log_path);
	for (char *line = strtok_r(log, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save), lines++) {
		cr_assert(strncmp(line, "20", 2) == 0 && line[10] == 'T',
		          "a line without its time: %s", line);
		cr_assert_null(strstr(line, "\r"), "a raw carriage return: %s", line);
	}
	cr_assert_gt(lines, 1);
	free(log);
}

/* logrotate's way, as with PgBouncer: move the file, SIGHUP, and sluice writes a new one. */
Test(pgbcompat, logfile_is_reopened_on_sighup)
{
	struct harness_sluice *h = harness_start_sluice("logfile = @DIR@/out.log");
	char path[400], moved[400];

	snprintf(path, sizeof(path), "%s/out.log", h->dir);
	snprintf(moved, sizeof(moved), "%s/out.log.1", h->dir);
	select_one(h);
	cr_assert_eq(rename(path, moved), 0, "%s", strerror(errno));
	harness_signal(h, SIGHUP);
	cr_assert(harness_wait_for(access(path, F_OK) == 0, 20), "no new logfile after SIGHUP");
	cr_assert(harness_wait_for(({
		                           char *text_ = slurp(path);
		                           bool ok_ =
		                               text_ != NULL &&
		                               strstr(text_, "configuration reloaded") != NULL;
		                           free(text_);
		                           ok_;
	                           }),
	                           20),
	          "the reload was not logged to the new file");
}

/* user: started as root, sluice serves as the given user once its sockets are open. */
Test(pgbcompat, user_drops_root_after_binding)
{
	struct harness_sluice *h;
	char path[64], *status, *uid;

	if (geteuid() != 0)
		cr_skip_test("needs root to switch users");
	h = harness_start_sluice("user = nobody");
	select_one(h);
	snprintf(path, sizeof(path), "/proc/%d/status", (int)h->pid);
	status = slurp(path);
	cr_assert_not_null(status);
	uid = strstr(status, "\nUid:");
	cr_assert_not_null(uid);
	uid[strcspn(uid + 1, "\n") + 1] = '\0';
	/* Real, effective, saved and file-system uids: none is root any more. */
	cr_assert_null(strstr(uid, "\t0"), "still root: %s", uid + 1);
	cr_assert(harness_log_contains(h, "sluice started"));
	free(status);
}

/*
 * auth_dbname: auth_query runs on that entry's database for every client, so
 * the lookup function need exist only there (here: in app, not in other).
 */
Test(pgbcompat, auth_dbname_runs_auth_query_on_one_database)
{
	struct harness_sluice *h;
	PGconn *super = harness_pg_super("app"), *c;
	const char *keys[] = {"host", "port", "dbname", "user", "password", NULL};
	char port[16];
	const char *values[] = {"127.0.0.1", port, "other", "aqdb_user", "aqdb-secret", NULL};

	PQclear(harness_exec_ok(super, "set password_encryption = 'scram-sha-256'"));
	PQclear(harness_exec_ok(super, "drop role if exists aqdb_user"));
	PQclear(harness_exec_ok(super, "create role aqdb_user login password 'aqdb-secret'"));
	PQclear(harness_exec_ok(
	    super, "create or replace function public.pgbcompat_lookup(text) "
	           "returns table (usename name, passwd text) language sql security definer "
	           "as $$ select usename, passwd from pg_catalog.pg_shadow where usename = $1 $$"));
	PQclear(harness_exec_ok(super,
	                        "grant execute on function public.pgbcompat_lookup(text) to app"));
	PQfinish(super);
	super = harness_pg_super("other");
	PQclear(harness_exec_ok(super, "drop function if exists public.pgbcompat_lookup(text)"));
	PQfinish(super);

	h = harness_start_sluice("auth_user = app\n"
	                         "auth_query = SELECT usename, passwd FROM "
	                         "public.pgbcompat_lookup($1)\n"
	                         "auth_dbname = app\n");
	snprintf(port, sizeof(port), "%d", h->port);
	c = PQconnectdbParams(keys, values, 0);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	cr_assert_eq(harness_query_int(c, "select count(*) from pg_database "
	                                  "where datname = current_database() and "
	                                  "datname = 'other'"),
	             1);
	PQfinish(c);
}
