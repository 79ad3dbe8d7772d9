/*
 * Listening (issue 18): listen_addr = * serves IPv4 and IPv6, lists of
 * addresses, systemd socket activation (sockets passed as LISTEN_FDS, no
 * systemd needed), and a takeover restart under pgbench that fails no
 * transaction.
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

TestSuite(listen, .fini = harness_teardown, .timeout = 240);

/* select 1 through sluice at `host` (an address or the Unix socket directory). */
static bool query_at(const char *host, int port)
{
	char portstr[16];
	const char *keys[] = {"host", "port", "user", "password", "dbname", "connect_timeout",
	                      NULL};
	const char *values[] = {host, portstr, "app", "app-secret", "app", "10", NULL};
	PGconn *c;
	PGresult *res;
	bool ok;

	snprintf(portstr, sizeof(portstr), "%d", port);
	c = PQconnectdbParams(keys, values, 0);
	if (PQstatus(c) != CONNECTION_OK) {
		cr_log_info("connect to %s:%d: %s", host, port, PQerrorMessage(c));
		PQfinish(c);
		return false;
	}
	res = PQexec(c, "select 1");
	ok = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "1") == 0;
	PQclear(res);
	PQfinish(c);
	return ok;
}

static bool ipv6_loopback_available(void)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

Test(listen, star_serves_ipv4_and_ipv6)
{
	struct harness_sluice *h;

	if (!ipv6_loopback_available())
		cr_skip_test("no IPv6 loopback on this machine");
	h = harness_start_sluice("listen_addr = *");
	cr_assert(query_at("127.0.0.1", h->port), "IPv4 not served with listen_addr = *");
	cr_assert(query_at("::1", h->port), "::1 not served with listen_addr = *");
	cr_assert(query_at(h->dir, h->port), "the Unix socket is not served");
	cr_assert(!harness_log_contains(h, "cannot listen"));
}

Test(listen, address_list_with_both_families)
{
	struct harness_sluice *h;

	if (!ipv6_loopback_available())
		cr_skip_test("no IPv6 loopback on this machine");
	h = harness_start_sluice("listen_addr = 127.0.0.1, ::1\nso_reuseport = on\n"
	                         "listen_backlog = 16");
	cr_assert(query_at("127.0.0.1", h->port));
	cr_assert(query_at("::1", h->port));
	cr_assert(!harness_log_contains(h, "cannot listen"));
}

/* A listening socket on 127.0.0.1:port, as a .socket unit would make it. */
static int listening_socket(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind port %d", port);
	cr_assert(listen(fd, 64) == 0);
	return fd;
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	getsockname(fd, (struct sockaddr *)&a, &len);
	close(fd);
	return ntohs(a.sin_port);
}

/* An HTTP GET on 127.0.0.1:port; returns whether the reply starts with 200. */
static bool http_ok(int port, const char *path)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char req[128], reply[64] = "";
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return false;
	}
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	harness_send_all(fd, req, strlen(req));
	ok = read(fd, reply, sizeof(reply) - 1) > 0 && strncmp(reply, "HTTP/1.", 7) == 0 &&
	     strncmp(reply + 9, "200", 3) == 0;
	close(fd);
	return ok;
}

/*
 * The sockets are ours, sluice gets them as descriptors 3 and 4: it must
 * serve them, bind nothing from listen_addr (here an address that would
 * fail) and run the HTTP endpoint on the one named "metrics".
 */
Test(listen, socket_activation)
{
	struct harness_sluice *h = harness_prepare_sluice("listen_addr = 192.0.2.1\n"
	                                                  "unix_socket_dir = @DIR@\n"
	                                                  "metrics_listen = 127.0.0.1:1");
	int metrics_port = free_port();
	int fds[2] = {listening_socket(h->port), listening_socket(metrics_port)};

	harness_spawn_activated(h, fds, 2, "postgres:metrics");
	close(fds[0]);
	close(fds[1]);
	cr_assert(harness_wait_for(query_at("127.0.0.1", h->port) || !harness_sluice_alive(h), 20),
	          "sluice did not serve the socket passed to it");
	cr_assert(harness_sluice_alive(h));
	cr_assert(harness_log_contains(h, "from systemd"));
	cr_assert(http_ok(metrics_port, "/healthz"), "the metrics socket is not served");
	/* listen_addr and unix_socket_dir were not used. */
	cr_assert(!query_at(h->dir, h->port), "a Unix socket was bound besides the passed ones");
	cr_assert_eq(harness_stop_sluice(h, SIGTERM, 30), 0);
}

/* LISTEN_PID names another process: the variables are not for us, so we bind as usual. */
Test(listen, socket_activation_for_another_pid_is_ignored)
{
	struct harness_sluice *h = harness_start_sluice(NULL);

	cr_assert(!harness_log_contains(h, "from systemd"));
	cr_assert(query_at("127.0.0.1", h->port));
}

static struct harness_job start_pgbench(struct harness_sluice *h, const char *const extra[])
{
	static char pgbench[512], url[256];
	const char *argv[16];
	const char *env[] = {"PGCONNECT_TIMEOUT=20", NULL};
	int n = 0;

	harness_url(h, "app", "app-secret", "app", url, sizeof(url));
	argv[n++] = harness_pg_tool("pgbench", pgbench, sizeof(pgbench));
	argv[n++] = "-n";
	argv[n++] = "-S";
	for (int i = 0; extra[i] != NULL; i++)
		argv[n++] = extra[i];
	argv[n++] = url;
	argv[n] = NULL;
	return harness_run_start(argv, env);
}

static void expect_clean_run(struct harness_job *job, const char *what)
{
	char *out = NULL;
	int rc = harness_run_finish(job, 120, &out);

	cr_log_info("%s:\n%s", what, out);
	cr_assert_eq(rc, 0, "%s exited with %d:\n%s", what, rc, out);
	cr_assert(strstr(out, "number of failed transactions: 0 (0.000%)") != NULL,
	          "%s reports failed transactions:\n%s", what, out);
	cr_assert(strstr(out, "aborted") == NULL, "%s: a client aborted:\n%s", what, out);
	free(out);
}

/*
 * The restart of docs/deploy.md: a new process takes the listening sockets
 * while pgbench runs -c 32 -T 20 on long-lived connections and a second
 * pgbench opens a new connection for every transaction (-C), so logins keep
 * arriving across the handover.  No transaction may fail and no client may
 * be refused; the old process exits 0 once its last client has left, and
 * the new one serves afterwards.
 */
Test(listen, takeover_under_pgbench)
{
	struct harness_sluice *old, *new;
	struct harness_job steady, churn;
	const char *const steady_args[] = {"-c", "32", "-j", "2", "-T", "20", NULL};
	const char *const churn_args[] = {"-C", "-c", "4", "-T", "20", NULL};

	harness_pgbench_init();
	old = harness_start_sluice(
	    "takeover_socket = @DIR@/takeover.sock\n"
	    "default_pool_size = 8\nmax_client_conn = 500\n"
	    "query_wait_timeout = 120s\nshutdown_timeout = 0\n"
	    "log_level = info\nconnect_rate_per_ip = 0\nslow_query_threshold = 0");
	steady = start_pgbench(old, steady_args);
	churn = start_pgbench(old, churn_args);
	/* Both are running transactions through the old process before it is replaced. */
	cr_assert(harness_wait_for(harness_count_backends("app", NULL) >= 2, 60));
	new = harness_spawn_sibling(old, "--takeover");
	cr_assert(harness_wait_for(harness_log_contains(old, "accepts on our sockets now") ||
	                               !harness_sluice_alive(new),
	                           60),
	          "the takeover did not happen");
	cr_assert(harness_sluice_alive(new), "the new process exited");
	cr_assert(harness_log_contains(new, "received"), "the new process bound its own sockets");
	/* So the logins of the -C run after this point all went to the new process. */
	cr_assert_eq(waitpid(churn.pid, NULL, WNOHANG), 0, "pgbench -C ended before the takeover");

	expect_clean_run(&steady, "pgbench -c 32 -T 20");
	expect_clean_run(&churn, "pgbench -C -c 4 -T 20");
	/* Its clients gone, the old process leaves by itself. */
	cr_assert_eq(harness_stop_sluice(old, 0, 60), 0);
	cr_assert(query_at("127.0.0.1", new->port), "the new process does not serve TCP");
	cr_assert(query_at(new->dir, new->port), "the new process does not serve the Unix socket");
	cr_assert_eq(harness_stop_sluice(new, SIGTERM, 30), 0);
}

/*
 * A takeover whose new process fails to start (here one of its listen_addr
 * cannot be bound) leaves the old process serving, its socket files
 * included.  The new process removed the Unix socket file it had been
 * handed, as if it had made it, and local clients of the old process got
 * "No such file or directory".
 */
Test(listen, a_failed_takeover_leaves_the_old_process_its_socket_files)
{
	struct harness_sluice *old =
	    harness_start_sluice("takeover_socket = @DIR@/takeover.sock\nlog_level = info");
	struct harness_sluice *failed;

	cr_assert(query_at(old->dir, old->port), "the old process does not serve the Unix socket");
	/* 192.0.2.1 (TEST-NET-1) is no address of this machine: binding it fails. */
	harness_write_ini(old, "takeover_socket = @DIR@/takeover.sock\nlog_level = info\n"
	                       "listen_addr = 127.0.0.1, 192.0.2.1");
	failed = harness_spawn_sibling(old, "--takeover");
	cr_assert_neq(harness_stop_sluice(failed, 0, 60), 0, "the new process started");
	cr_assert(harness_log_contains(failed, "could not open all listeners"));
	cr_assert(query_at("127.0.0.1", old->port), "the old process does not serve TCP");
	cr_assert(query_at(old->dir, old->port),
	          "the old process's Unix socket file went with the failed takeover");
	cr_assert_eq(harness_stop_sluice(old, SIGTERM, 30), 0);
}

/* Without a process at takeover_socket, --takeover starts as usual. */
Test(listen, takeover_with_nobody_there_starts_afresh)
{
	struct harness_sluice *h = harness_prepare_sluice("takeover_socket = @DIR@/takeover.sock");
	struct harness_sluice *s = harness_spawn_sibling(h, "--takeover");

	cr_assert(harness_wait_for(query_at("127.0.0.1", s->port) || !harness_sluice_alive(s), 20));
	cr_assert(harness_sluice_alive(s));
	cr_assert(harness_log_contains(s, "starting afresh"));
	cr_assert_eq(harness_stop_sluice(s, SIGTERM, 30), 0);
}
