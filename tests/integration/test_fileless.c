/*
 * Starting without a config file: `sluice --upstream URL`, and
 * SLUICE_DATABASE_URL with SLUICE_<OPTION> overrides.  Clients log in with
 * the URL's credentials.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(fileless, .timeout = 120);

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

/* Runs sluice with argv/env (added to ours); returns its pid. */
static pid_t start(const char *const argv[], const char *const env[])
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0) {
		for (const char *const *e = env; *e != NULL; e++)
			putenv((char *)*e);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static PGconn *wait_connect(int port, const char *user, const char *password, const char *db)
{
	char conninfo[256];
	PGconn *c = NULL;

	snprintf(conninfo, sizeof(conninfo),
	         "host=127.0.0.1 port=%d user=%s password=%s dbname=%s connect_timeout=5", port,
	         user, password, db);
	harness_wait_for(({
		                 if (c != NULL)
			                 PQfinish(c);
		                 c = PQconnectdb(conninfo);
		                 PQstatus(c) == CONNECTION_OK;
	                 }),
	                 20);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	return c;
}

static void stop(pid_t pid)
{
	int status;

	kill(pid, SIGINT);
	waitpid(pid, &status, 0);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
}

Test(fileless, upstream_flag)
{
	const struct harness_pg *pg = harness_pg();
	char url[256], port_env[64];
	int port = pick_port();
	const char *argv[] = {getenv("SLUICE_BIN"), "--upstream", url, NULL};
	const char *env[] = {port_env, "SLUICE_UNIX_SOCKET_DIR=", NULL};
	pid_t pid;
	PGconn *c;

	cr_assert_not_null(pg, "no Postgres");
	snprintf(url, sizeof(url), "postgres://app:app-secret@%s:%d/app", pg->host, pg->port);
	snprintf(port_env, sizeof(port_env), "SLUICE_LISTEN_PORT=%d", port);
	pid = start(argv, env);
	c = wait_connect(port, "app", "app-secret", "app");
	cr_assert_eq(harness_query_int(c, "select 6 * 7"), 42);
	PQfinish(c);
	stop(pid);
}

Test(fileless, database_url_and_option_overrides)
{
	const struct harness_pg *pg = harness_pg();
	char url[256], port_env[64];
	int port = pick_port();
	const char *argv[] = {getenv("SLUICE_BIN"), NULL};
	const char *env[] = {url, port_env, "SLUICE_UNIX_SOCKET_DIR=", "SLUICE_POOL_MODE=session",
	                     NULL};
	pid_t pid;
	PGconn *c;
	long long first;

	cr_assert_not_null(pg, "no Postgres");
	snprintf(url, sizeof(url), "SLUICE_DATABASE_URL=postgresql://app:app-secret@%s:%d/app",
	         pg->host, pg->port);
	snprintf(port_env, sizeof(port_env), "SLUICE_LISTEN_PORT=%d", port);
	pid = start(argv, env);
	c = wait_connect(port, "app", "app-secret", "app");
	/* Session mode from the environment: a temp table survives across transactions. */
	PQclear(harness_exec_ok(c, "create temp table t_session(x int)"));
	first = harness_query_int(c, "select pg_backend_pid()");
	cr_assert_eq(harness_query_int(c, "select count(*) from t_session"), 0);
	cr_assert_eq(harness_query_int(c, "select pg_backend_pid()"), first);
	PQfinish(c);
	stop(pid);
}

Test(fileless, bad_variable_is_named)
{
	char *out = NULL;
	const char *argv[] = {getenv("SLUICE_BIN"), NULL};
	const char *env[] = {"SLUICE_DATABASE_URL=postgres://a:b@127.0.0.1:1/x",
	                     "SLUICE_POOL_MODE=sometimes", NULL};
	int code = harness_run(argv, env, 20, &out);

	cr_assert_neq(code, 0);
	cr_assert(strstr(out, "SLUICE_POOL_MODE") != NULL, "%s", out);
	free(out);
}
