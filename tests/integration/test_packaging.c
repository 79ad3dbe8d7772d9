/*
 * Packaging, run for real: packaging/install.sh (what the Dockerfile's
 * build stage runs) installs into a temporary DESTDIR, and the installed
 * binary, configured by SLUICE_DATABASE_URL alone as in the container, serves
 * psql and pgbench, reports to systemd over $NOTIFY_SOCKET, reloads and
 * drains.  Also secrets from *_FILE variables, read again on SIGHUP.  The
 * checks that need no Postgres are in packaging_lint.sh; the drain itself is
 * tested in more detail in test_signals.c (sigterm_drains).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

/* The sluice a test started itself, killed by the suite's fini if a test fails first. */
static pid_t started_pid;

static void kill_started(void)
{
	if (started_pid > 0) {
		kill(started_pid, SIGKILL);
		waitpid(started_pid, NULL, 0);
		started_pid = 0;
	}
	harness_teardown();
}

/* Generous: the install is a full release build, on a machine that may be busy. */
TestSuite(packaging, .fini = kill_started, .timeout = 560);

static int pick_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	cr_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* A fresh private directory, removed by the caller once the test passed. */
static void make_dir(char *dir, size_t len)
{
	snprintf(dir, len, "/tmp/sluice-pkg-XXXXXX");
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

static void remove_dir(const char *dir)
{
	char *out = NULL;
	const char *argv[] = {"rm", "-rf", dir, NULL};

	harness_run(argv, NULL, 30, &out);
	free(out);
}

/*
 * Runs `binary` with only `env` (plus PATH) as its environment and its output
 * in `log`: the container case, where nothing else is set.
 */
static pid_t start_with_env(const char *binary, const char *const env[], const char *log)
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		execle(binary, binary, (char *)NULL, (char *const *)env);
		dprintf(2, "exec %s: %s\n", binary, strerror(errno));
		_exit(127);
	}
	started_pid = pid;
	return pid;
}

/* Waits for sluice's exit; returns its exit code, or -1 if it did not exit in time. */
static int wait_exit(pid_t pid, double timeout_s)
{
	int status = 0;

	if (!harness_wait_for(waitpid(pid, &status, WNOHANG) == pid, timeout_s))
		return -1;
	started_pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A datagram socket at `path`, as systemd's $NOTIFY_SOCKET. */
static int notify_socket(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	cr_assert(bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0, "bind %s: %s", path,
	          strerror(errno));
	return fd;
}

/* The next notification, waiting up to `timeout_s`; fails the test without one. */
static void expect_notify(int fd, const char *want, double timeout_s)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	char buf[256];
	ssize_t n;

	cr_assert_eq(poll(&pfd, 1, (int)(timeout_s * 1000)), 1, "no %s from sluice", want);
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	cr_assert(strncmp(buf, want, strlen(want)) == 0, "expected %s, got %s", want, buf);
}

static PGconn *connect_port(int port, const char *db)
{
	char conninfo[256];

	snprintf(conninfo, sizeof(conninfo),
	         "host=127.0.0.1 port=%d user=app password=app-secret dbname=%s connect_timeout=10",
	         port, db);
	return PQconnectdb(conninfo);
}

/* psql through sluice; returns its output with blanks trimmed. */
static char *psql(int port, const char *sql)
{
	char tool[512], url[256], *out = NULL;
	const char *argv[] = {tool, "-X", "-A", "-t", "-c", sql, url, NULL};
	int rc;

	harness_pg_tool("psql", tool, sizeof(tool));
	snprintf(url, sizeof(url), "postgres://app:app-secret@127.0.0.1:%d/app", port);
	rc = harness_run(argv, NULL, 60, &out);
	cr_assert_eq(rc, 0, "psql exited with %d:\n%s", rc, out);
	out[strcspn(out, "\n")] = '\0';
	return out;
}

/* pgbench -S -t 50 -c 8 through sluice: every transaction done, none failed. */
static void pgbench_select_only(int port)
{
	char tool[512], url[256], *out = NULL;
	const char *argv[] = {tool, "-n", "-S", "-c", "8", "-j", "2", "-t", "50", url, NULL};
	int rc;

	harness_pg_tool("pgbench", tool, sizeof(tool));
	snprintf(url, sizeof(url), "postgres://app:app-secret@127.0.0.1:%d/app", port);
	rc = harness_run(argv, (const char *const[]){"PGCONNECT_TIMEOUT=20", NULL}, 120, &out);
	cr_assert_eq(rc, 0, "pgbench exited with %d:\n%s", rc, out);
	cr_assert(strstr(out, "number of transactions actually processed: 400/400") != NULL,
	          "pgbench did not process 400 transactions:\n%s", out);
	cr_assert(strstr(out, "number of failed transactions: 0 (0.000%)") != NULL,
	          "pgbench reports failed transactions:\n%s", out);
	free(out);
}

/* Runs packaging/install.sh into `destdir`; the build directory persists between runs. */
static void run_install_script(const char *destdir, const char *builddir)
{
	const char *root = getenv("SLUICE_SOURCE_ROOT");
	char script[512], dest_env[300], build_env[600], *out = NULL;
	const char *argv[] = {script, NULL};
	const char *env[] = {dest_env, build_env, NULL};
	int rc;

	snprintf(script, sizeof(script), "%s/packaging/install.sh", root);
	snprintf(dest_env, sizeof(dest_env), "DESTDIR=%s", destdir);
	snprintf(build_env, sizeof(build_env), "BUILDDIR=%s", builddir);
	rc = harness_run(argv, env, 480, &out);
	cr_assert_eq(rc, 0, "packaging/install.sh exited with %d:\n%s", rc, out);
	cr_assert(strstr(out, "sluice " SLUICE_VERSION "\n") != NULL, "%s", out);
	free(out);
}

/* What the installed tree holds besides the binary: the man page, as generated. */
static void check_installed_tree(const char *destdir, const char *builddir)
{
	const char *root = getenv("SLUICE_SOURCE_ROOT");
	char path[512], lint[512], binary[512], *out = NULL;
	const char *cmp[] = {"cmp", path, lint, NULL};
	const char *libs[] = {lint, "image-libs", binary, NULL};
	const char *version[] = {binary, "--version", NULL};
	int rc;

	snprintf(binary, sizeof(binary), "%s/usr/local/bin/sluice", destdir);
	rc = harness_run(version, NULL, 10, &out);
	cr_assert(rc == 0 && strcmp(out, "sluice " SLUICE_VERSION "\n") == 0, "%d: %s", rc, out);
	free(out);

	snprintf(path, sizeof(path), "%s/usr/local/share/man/man1/sluice.1", destdir);
	snprintf(lint, sizeof(lint), "%s/packaging/sluice.1", root);
	rc = harness_run(cmp, NULL, 10, &out);
	cr_assert_eq(rc, 0, "the installed man page is not packaging/sluice.1: %s", out);
	free(out);

	/* The rest of the layout (meson.build): units pointing at what was installed. */
	{
		static const char *const files[] = {
		    "lib/systemd/system/sluice.socket", "lib/sysusers.d/sluice.conf",
		    "etc/sluice/sluice.ini", "share/doc/sluice/LICENSE"};
		char unit[512], *text;
		FILE *f;
		size_t n;

		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			snprintf(path, sizeof(path), "%s/usr/local/%s", destdir, files[i]);
			cr_assert_eq(access(path, R_OK), 0, "meson install did not install %s",
			             files[i]);
		}
		snprintf(unit, sizeof(unit), "%s/usr/local/lib/systemd/system/sluice.service",
		         destdir);
		f = fopen(unit, "r");
		cr_assert_not_null(f, "meson install did not install sluice.service");
		text = calloc(1, 65536);
		n = fread(text, 1, 65535, f);
		fclose(f);
		text[n] = '\0';
		cr_assert(strstr(text, "\nExecStart=/usr/local/bin/sluice "
		                       "/usr/local/etc/sluice/sluice.ini\n") != NULL,
		          "the installed unit does not start the installed binary:\n%s", text);
		free(text);
	}

	/* Every library the installed binary links is in the image's package list. */
	snprintf(lint, sizeof(lint), "%s/tests/integration/packaging_lint.sh", root);
	rc = harness_run(libs, NULL, 60, &out);
	cr_assert_eq(rc, 0, "%s", out);
	free(out);

	/* Tests are off in the image build, so criterion is not even looked for. */
	snprintf(path, sizeof(path), "grep -qi criterion '%s/meson-logs/meson-log.txt'", builddir);
	cr_assert_neq(system(path), 0, "the install build looked for criterion");
}

/* The image's HEALTHCHECK script against `path`; its exit code. */
static int healthcheck(const char *metrics_env, const char *path)
{
	char script[512], *out = NULL;
	const char *argv[] = {script, path, NULL};
	const char *env[] = {metrics_env, NULL};
	int rc;

	snprintf(script, sizeof(script), "%s/packaging/healthcheck.sh",
	         getenv("SLUICE_SOURCE_ROOT"));
	rc = harness_run(argv, env, 20, &out);
	free(out);
	return rc;
}

static void quiet_notice(void *arg, const char *message)
{
}

/*
 * The container's life: start from SLUICE_DATABASE_URL, READY=1 once it
 * accepts, healthy and ready, psql and pgbench through it, a reload.  Then
 * SIGTERM with a transaction open, as an orchestrator sees it: STOPPING=1,
 * /readyz fails at once while /healthz holds, new connections are still
 * served during shutdown_delay and refused after it, the transaction
 * commits, exit code 0.
 */
static void run_installed(const char *dir, const char *binary)
{
	const struct harness_pg *pg = harness_pg();
	int port = pick_port(), nfd;
	char url[256], port_env[64], sock_env[300], notify_env[300], notify[100], log[280];
	char metrics_env[64];
	const char *env[] = {url,
	                     port_env,
	                     sock_env,
	                     notify_env,
	                     metrics_env,
	                     "SLUICE_SHUTDOWN_DELAY=5s",
	                     "PATH=/usr/bin:/bin",
	                     NULL};
	char *answer;
	PGconn *inflight, *during, *late;
	pid_t pid;

	snprintf(url, sizeof(url), "SLUICE_DATABASE_URL=postgres://app:app-secret@%s:%d/app",
	         pg->host, pg->port);
	snprintf(port_env, sizeof(port_env), "SLUICE_LISTEN_PORT=%d", port);
	/* "0.0.0.0:", as in the image: the script asks on loopback. */
	snprintf(metrics_env, sizeof(metrics_env), "SLUICE_METRICS_LISTEN=0.0.0.0:%d", pick_port());
	/* The Unix socket in our directory, so parallel runs never share /tmp's. */
	snprintf(sock_env, sizeof(sock_env), "SLUICE_UNIX_SOCKET_DIR=%s", dir);
	snprintf(notify, sizeof(notify), "%s/notify", dir);
	snprintf(notify_env, sizeof(notify_env), "NOTIFY_SOCKET=%s", notify);
	snprintf(log, sizeof(log), "%s/sluice.log", dir);
	nfd = notify_socket(notify);

	pid = start_with_env(binary, env, log);
	expect_notify(nfd, "READY=1", 30);
	/* READY=1 means listening: the first connection needs no retry. */
	answer = psql(port, "select 6 * 7");
	cr_assert_str_eq(answer, "42");
	free(answer);
	cr_assert_eq(healthcheck(metrics_env, "/healthz"), 0, "/healthz failed");
	cr_assert(harness_wait_for(healthcheck(metrics_env, "/readyz") == 0, 20), "never ready");
	pgbench_select_only(port);

	kill(pid, SIGHUP);
	expect_notify(nfd, "RELOADING=1", 20);
	expect_notify(nfd, "READY=1", 20);

	inflight = connect_port(port, "app");
	cr_assert_eq(PQstatus(inflight), CONNECTION_OK, "%s", PQerrorMessage(inflight));
	/* Closed with 57P01 once its transaction ends; libpq would print that. */
	PQsetNoticeProcessor(inflight, quiet_notice, NULL);
	PQclear(harness_exec_ok(inflight, "begin"));
	cr_assert_eq(harness_query_int(inflight, "select count(*) from pgbench_branches"), 1);
	kill(pid, SIGTERM);
	expect_notify(nfd, "STOPPING=1", 20);
	/* Within shutdown_delay (5s) a new client is still served... */
	during = connect_port(port, "app");
	cr_assert_eq(PQstatus(during), CONNECTION_OK, "refused during shutdown_delay: %s",
	             PQerrorMessage(during));
	PQsetNoticeProcessor(during, quiet_notice, NULL);
	cr_assert_eq(harness_query_int(during, "select 2"), 2);
	PQfinish(during);
	/* ...while readiness already fails and liveness holds... */
	cr_assert_neq(healthcheck(metrics_env, "/readyz"), 0, "still ready while draining");
	cr_assert_eq(healthcheck(metrics_env, "/healthz"), 0, "not healthy while draining");
	/* ...and after it refused. */
	late = NULL;
	cr_assert(harness_wait_for(({
		                           if (late != NULL)
			                           PQfinish(late);
		                           late = connect_port(port, "app");
		                           PQstatus(late) != CONNECTION_OK;
	                           }),
	                           20),
	          "a new connection was accepted while draining");
	PQfinish(late);
	cr_assert_eq(harness_query_int(inflight, "select 1"), 1);
	PQclear(harness_exec_ok(inflight, "commit"));
	PQfinish(inflight);
	cr_assert_eq(wait_exit(pid, 30), 0, "sluice did not exit 0 after the drain");
	close(nfd);
}

Test(packaging, install_script_then_container_start_from_the_environment)
{
	const char *build_root = getenv("SLUICE_PACKAGING_BUILDDIR");
	char dir[64], destdir[128], builddir[512], binary[256];

	cr_assert_not_null(harness_pg(), "no Postgres");
	make_dir(dir, sizeof(dir));
	snprintf(destdir, sizeof(destdir), "%s/root", dir);
	/* meson.build points this into the build tree, so later runs build incrementally. */
	snprintf(builddir, sizeof(builddir), "%s", build_root ? build_root : dir);
	if (build_root == NULL)
		strcat(builddir, "/build");
	run_install_script(destdir, builddir);
	check_installed_tree(destdir, builddir);

	harness_pgbench_init();
	snprintf(binary, sizeof(binary), "%s/usr/local/bin/sluice", destdir);
	run_installed(dir, binary);
	remove_dir(dir);
}

/* Writes `text` to `dir`/`name` and returns "VAR=path" in `out`. */
static void file_var(const char *dir, const char *var, const char *name, const char *text,
                     char *out, size_t len)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	harness_write_file(path, text);
	snprintf(out, len, "%s=%s", var, path);
}

static bool current_database_is(int port, const char *db, const char *want)
{
	PGconn *c = connect_port(port, db);
	PGresult *res =
	    PQstatus(c) == CONNECTION_OK ? PQexec(c, "select current_database()") : NULL;
	bool same = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK &&
	            strcmp(PQgetvalue(res, 0, 0), want) == 0;

	PQclear(res);
	PQfinish(c);
	return same;
}

Test(packaging, secrets_from_files_are_read_again_on_reload)
{
	const struct harness_pg *pg = harness_pg();
	int port = pick_port();
	char dir[64], text[256], url_var[300], other_var[300], port_var[300], sock_var[128];
	char log[128], other_path[256];
	const char *env[] = {url_var, other_var, port_var, sock_var, NULL};
	pid_t pid;

	cr_assert_not_null(pg, "no Postgres");
	make_dir(dir, sizeof(dir));
	snprintf(text, sizeof(text), "postgres://app:app-secret@%s:%d/app\n", pg->host, pg->port);
	file_var(dir, "SLUICE_DATABASE_URL_FILE", "url", text, url_var, sizeof(url_var));
	/* Database "other" starts out pointing at the server's database app. */
	snprintf(text, sizeof(text), "host=%s port=%d dbname=app", pg->host, pg->port);
	file_var(dir, "SLUICE_DATABASE_URL_OTHER_FILE", "other", text, other_var,
	         sizeof(other_var));
	snprintf(text, sizeof(text), "%d\n", port);
	file_var(dir, "SLUICE_LISTEN_PORT_FILE", "port", text, port_var, sizeof(port_var));
	snprintf(sock_var, sizeof(sock_var), "SLUICE_UNIX_SOCKET_DIR=%s", dir);
	snprintf(log, sizeof(log), "%s/sluice.log", dir);

	pid = start_with_env(getenv("SLUICE_BIN"), env, log);
	cr_assert(harness_wait_for(current_database_is(port, "other", "app"), 20),
	          "no login through the URL read from SLUICE_DATABASE_URL_FILE");

	/* A rotated file takes effect on SIGHUP: "other" now reaches database other. */
	snprintf(other_path, sizeof(other_path), "%s/other", dir);
	snprintf(text, sizeof(text), "host=%s port=%d dbname=other\n", pg->host, pg->port);
	harness_write_file(other_path, text);
	kill(pid, SIGHUP);
	cr_assert(harness_wait_for(current_database_is(port, "other", "other"), 20),
	          "the rewritten SLUICE_DATABASE_URL_OTHER_FILE was not read on SIGHUP");
	kill(pid, SIGTERM);
	cr_assert_eq(wait_exit(pid, 30), 0);
	remove_dir(dir);
}

Test(packaging, unreadable_secret_file_stops_the_start_with_its_name)
{
	char *out = NULL;
	const char *argv[] = {getenv("SLUICE_BIN"), NULL};
	const char *env[] = {"SLUICE_DATABASE_URL_FILE=/nonexistent/sluice/url", NULL};
	int rc = harness_run(argv, env, 20, &out);

	cr_assert_eq(rc, 1, "%s", out);
	cr_assert(strstr(out, "SLUICE_DATABASE_URL_FILE: cannot read /nonexistent/sluice/url: No "
	                      "such file or directory") != NULL,
	          "%s", out);
	free(out);
}
