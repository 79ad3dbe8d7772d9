/*
 * The pieces of listening that need no Postgres: reading LISTEN_* as
 * sd_listen_fds(3) does (only for our own pid; names by position, "unknown"
 * when missing), matching inherited sockets by address, and the /proc/self
 * figures behind the process_* metrics.
 */
#include "runtime/inherit.h"
#include "runtime/procstat.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/*
 * systemd's descriptors start at 3, where criterion keeps its pipe to the
 * runner: each test moves that aside, works on 3 and 4 without asserting,
 * puts it back, and only then asserts what it saw.
 */
struct saved_fds {
	int fd[2];
};

static struct saved_fds save_fds(void)
{
	struct saved_fds s;

	for (int i = 0; i < 2; i++)
		s.fd[i] = fcntl(INHERIT_SYSTEMD_FIRST_FD + i, F_DUPFD_CLOEXEC, 100);
	return s;
}

static void restore_fds(struct saved_fds s)
{
	for (int i = 0; i < 2; i++) {
		close(INHERIT_SYSTEMD_FIRST_FD + i);
		if (s.fd[i] >= 0) {
			dup2(s.fd[i], INHERIT_SYSTEMD_FIRST_FD + i);
			close(s.fd[i]);
		}
	}
}

/* A listening socket on 127.0.0.1 at an ephemeral port, moved to descriptor `at`. */
static void listening_at(int at, struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)addr, sizeof(*addr));
	listen(fd, 4);
	getsockname(fd, (struct sockaddr *)addr, &len);
	dup2(fd, at);
	close(fd);
}

Test(inherit, systemd_sockets_with_names)
{
	struct inherited in = {0};
	struct sockaddr_in a, b, other;
	char pid[32], err[128] = "", names[2][32];
	char *envp[] = {pid, "LISTEN_FDS=2", "LISTEN_FDNAMES=pg:metrics", NULL};
	struct saved_fds saved = save_fds();
	int n, wrong, first, again, metrics;

	listening_at(INHERIT_SYSTEMD_FIRST_FD, &a);
	listening_at(INHERIT_SYSTEMD_FIRST_FD + 1, &b);
	snprintf(pid, sizeof(pid), "LISTEN_PID=%d", (int)getpid());
	n = inherit_from_systemd(&in, envp, err, sizeof(err));
	memcpy(names[0], in.socks[0].name, sizeof(names[0]));
	memcpy(names[1], in.socks[1].name, sizeof(names[1]));
	other = a;
	other.sin_port = htons(1);
	wrong = inherit_take_addr(&in, (struct sockaddr *)&other, sizeof(other));
	first = inherit_take_addr(&in, (struct sockaddr *)&a, sizeof(a));
	again = inherit_take_addr(&in, (struct sockaddr *)&a, sizeof(a));
	metrics = inherit_take_name(&in, "metrics");
	restore_fds(saved);

	cr_assert_eq(n, 2, "%s", err);
	cr_assert(in.from_systemd);
	cr_assert_str_eq(names[0], "pg");
	cr_assert_str_eq(names[1], "metrics");
	/* By address: a port nobody passed matches nothing; each is taken once only. */
	cr_assert_eq(wrong, -1);
	cr_assert_eq(first, INHERIT_SYSTEMD_FIRST_FD);
	cr_assert_eq(again, -1);
	cr_assert_eq(metrics, INHERIT_SYSTEMD_FIRST_FD + 1);
}

Test(inherit, missing_names_are_unknown)
{
	struct inherited in = {0};
	struct sockaddr_in a;
	char pid[32], err[128] = "";
	char *envp[] = {pid, "LISTEN_FDS=1", NULL};
	struct saved_fds saved = save_fds();
	int n;

	listening_at(INHERIT_SYSTEMD_FIRST_FD, &a);
	snprintf(pid, sizeof(pid), "LISTEN_PID=%d", (int)getpid());
	n = inherit_from_systemd(&in, envp, err, sizeof(err));
	restore_fds(saved);
	cr_assert_eq(n, 1, "%s", err);
	cr_assert_str_eq(in.socks[0].name, "unknown");
}

Test(inherit, another_pids_variables_are_ignored)
{
	struct inherited in = {0};
	char pid[32], err[128];
	char *envp[] = {pid, "LISTEN_FDS=1", NULL};

	snprintf(pid, sizeof(pid), "LISTEN_PID=%d", (int)getpid() + 1);
	cr_assert_eq(inherit_from_systemd(&in, envp, err, sizeof(err)), 0);
	cr_assert_eq(in.n, 0);
	cr_assert_eq(inherit_from_systemd(&in, NULL, err, sizeof(err)), 0);
}

Test(inherit, a_descriptor_that_is_no_socket_is_refused)
{
	struct inherited in = {0};
	char pid[32], err[128] = "";
	char *envp[] = {pid, "LISTEN_FDS=1", NULL};
	struct saved_fds saved = save_fds();
	int fds[2], n;

	if (pipe(fds) == 0) {
		dup2(fds[0], INHERIT_SYSTEMD_FIRST_FD);
		close(fds[0]);
		close(fds[1]);
	}
	snprintf(pid, sizeof(pid), "LISTEN_PID=%d", (int)getpid());
	n = inherit_from_systemd(&in, envp, err, sizeof(err));
	restore_fds(saved);
	cr_assert_eq(n, -1);
	cr_assert(strstr(err, "not a stream socket") != NULL, "%s", err);
}

Test(procstat, reads_this_process)
{
	struct procstat ps;
	struct rlimit rl;
	time_t now = time(NULL);
	volatile unsigned long spin = 0;

	/* Some CPU time to see. */
	for (unsigned long i = 0; i < 50000000UL; i++)
		spin += i;
	cr_assert_eq(procstat_read(&ps), 0);
	cr_assert_gt(ps.resident_bytes, 0);
	cr_assert_geq(ps.virtual_bytes, ps.resident_bytes);
	/* stdin, stdout, stderr at least, and the directory read is not counted. */
	cr_assert_geq(ps.open_fds, 3);
	getrlimit(RLIMIT_NOFILE, &rl);
	cr_assert_eq(ps.max_fds, (int64_t)rl.rlim_cur);
	cr_assert_gt(ps.cpu_seconds, 0.0);
	/* Started before now, and not before the test binary was built this day. */
	cr_assert_leq(ps.start_time_seconds, (double)now + 1);
	cr_assert_gt(ps.start_time_seconds, (double)now - 86400);
}
