/*
 * idle_clients: opens many client connections, has each run SELECT 1 once,
 * then holds them all open.  The benchmark uses it to measure what an idle
 * client costs a pooler (RSS per client) and how many server connections the
 * pooler needs to serve them.
 *
 *   idle_clients [-n COUNT] [-p PARALLEL] [-t TIMEOUT_S] [-S] [-H HOST,...] CONNINFO
 *
 * The password comes from CONNINFO or PGPASSWORD, as for any libpq program,
 * so the login is whatever the target asks for (SCRAM in the benchmark).
 * With -H, connection i goes to the (i mod N)th of the N hosts listed (a
 * host= added after CONNINFO, which libpq lets override it): one source and
 * destination address pair has only about 28,000 ephemeral ports, so
 * 100,000 clients over loopback need several destination addresses.
 *
 * Connections are opened with PQconnectStart/PQconnectPoll and driven by one
 * poll() loop, at most PARALLEL at a time: an unbounded burst would overflow
 * the target's listen backlog and measure SYN retries instead of the pooler.
 * When every connection has either run its SELECT 1 or failed, one line goes
 * to stdout:
 *
 *   ready ok=N failed=M seconds=S rate=R
 *
 * Then the connections are held until SIGTERM or SIGINT, or until stdin
 * reaches end of file (unless -S: then only a signal stops it, so that it can
 * run in the background with stdin at /dev/null).  On stopping it checks which
 * held connections the target closed meanwhile and prints
 *
 *   done ok=N held=H failed=M
 *
 * The exit status is 0 only when all COUNT connections were opened and held.
 */
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Distinct error texts kept for the report; the rest are only counted. */
#define MAX_ERRORS 8

enum idle_state {
	IDLE_UNSTARTED,  /* PQconnectStart not called yet */
	IDLE_CONNECTING, /* inside PQconnectPoll: TCP, startup, SCRAM */
	IDLE_QUERYING,   /* SELECT 1 sent, waiting for its result */
	IDLE_HOLDING,    /* logged in and answered: the state being measured */
	IDLE_FAILED,     /* gave up; the PGconn is already finished */
};

struct idle_conn {
	PGconn *conn;                   /* NULL once failed */
	enum idle_state state;          /* where this connection is */
	PostgresPollingStatusType want; /* connecting: what PQconnectPoll waits for */
	bool flushing;                  /* querying: the query is not fully sent yet */
	bool answered;                  /* querying: SELECT 1 returned its row */
};

struct error_count {
	char *text; /* first line of the libpq message */
	int count;  /* connections that failed with it */
};

struct idle_run {
	struct idle_conn *conns;               /* COUNT connections */
	int count;                             /* connections to open */
	int parallel;                          /* at most this many connecting at once */
	int next;                              /* next connection to start */
	int oldest;                            /* no connection before this one is in flight */
	int inflight;                          /* connecting or querying now */
	int ok;                                /* reached IDLE_HOLDING */
	int failed;                            /* reached IDLE_FAILED */
	struct error_count errors[MAX_ERRORS]; /* distinct failure texts */
	int other_errors;                      /* failures beyond MAX_ERRORS distinct texts */
	char **conninfos;                      /* connection i uses conninfos[i % nconninfo] */
	int nconninfo;
};

/*
 * Written by the signal handler, read by the loop: a self-pipe rather than a
 * flag alone, because the hold phase sleeps in poll() and must wake up.
 */
static int signal_pipe[2] = {-1, -1};

static void stop_signal_cb(int sig)
{
	int saved = errno;
	char c = (char)sig;

	(void)!write(signal_pipe[1], &c, 1);
	errno = saved;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: idle_clients [-n COUNT] [-p PARALLEL] [-t TIMEOUT_S] [-S] "
	                "[-H HOST,...] CONNINFO\n");
	exit(2);
}

/*
 * Failures are grouped by their first line, so that 10,000 identical refusals
 * print once with a count instead of flooding the log.
 */
static void record_error(struct idle_run *run, const char *msg)
{
	size_t len = strcspn(msg, "\n");
	int i;

	for (i = 0; i < MAX_ERRORS && run->errors[i].text != NULL; i++) {
		if (strlen(run->errors[i].text) == len &&
		    strncmp(run->errors[i].text, msg, len) == 0) {
			run->errors[i].count++;
			return;
		}
	}
	if (i == MAX_ERRORS) {
		run->other_errors++;
		return;
	}
	run->errors[i].text = strndup(msg, len);
	run->errors[i].count = 1;
}

static void conn_fail(struct idle_run *run, struct idle_conn *c, const char *msg)
{
	record_error(run, msg != NULL && *msg != '\0' ? msg : "unknown error");
	if (c->conn != NULL)
		PQfinish(c->conn);
	c->conn = NULL;
	if (c->state == IDLE_CONNECTING || c->state == IDLE_QUERYING)
		run->inflight--;
	c->state = IDLE_FAILED;
	run->failed++;
}

static void conn_start(struct idle_run *run, struct idle_conn *c, const char *conninfo)
{
	c->conn = PQconnectStart(conninfo);
	c->state = IDLE_CONNECTING;
	run->inflight++;
	if (c->conn == NULL) {
		conn_fail(run, c, "PQconnectStart: out of memory");
		return;
	}
	if (PQstatus(c->conn) == CONNECTION_BAD) {
		conn_fail(run, c, PQerrorMessage(c->conn));
		return;
	}
	/* libpq's documented starting point: act as if the last poll said "writing". */
	c->want = PGRES_POLLING_WRITING;
}

/* Logged in: switch to the query, sent without blocking. */
static void conn_send_query(struct idle_run *run, struct idle_conn *c)
{
	int rc;

	if (PQsetnonblocking(c->conn, 1) != 0 || !PQsendQuery(c->conn, "SELECT 1")) {
		conn_fail(run, c, PQerrorMessage(c->conn));
		return;
	}
	c->state = IDLE_QUERYING;
	rc = PQflush(c->conn);
	if (rc < 0) {
		conn_fail(run, c, PQerrorMessage(c->conn));
		return;
	}
	c->flushing = rc == 1;
}

static void conn_advance_connect(struct idle_run *run, struct idle_conn *c)
{
	c->want = PQconnectPoll(c->conn);
	switch (c->want) {
	case PGRES_POLLING_READING:
	case PGRES_POLLING_WRITING:
		break;
	case PGRES_POLLING_OK:
		conn_send_query(run, c);
		break;
	default:
		conn_fail(run, c, PQerrorMessage(c->conn));
		break;
	}
}

/* Reads what arrived; the connection is done once PQgetResult returns NULL. */
static void conn_advance_query(struct idle_run *run, struct idle_conn *c, short revents)
{
	PGresult *res;

	if (c->flushing && (revents & POLLOUT)) {
		int rc = PQflush(c->conn);

		if (rc < 0) {
			conn_fail(run, c, PQerrorMessage(c->conn));
			return;
		}
		c->flushing = rc == 1;
	}
	if (!(revents & (POLLIN | POLLERR | POLLHUP)))
		return;
	if (!PQconsumeInput(c->conn)) {
		conn_fail(run, c, PQerrorMessage(c->conn));
		return;
	}
	while (!PQisBusy(c->conn)) {
		res = PQgetResult(c->conn);
		if (res == NULL) {
			if (!c->answered) {
				conn_fail(run, c, "SELECT 1 returned no row");
				return;
			}
			c->state = IDLE_HOLDING;
			run->inflight--;
			run->ok++;
			return;
		}
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		    strcmp(PQgetvalue(res, 0, 0), "1") == 0) {
			c->answered = true;
		} else {
			/* The result outlives PQfinish, so its text is read before PQclear. */
			conn_fail(run, c, PQresultErrorMessage(res));
			PQclear(res);
			return;
		}
		PQclear(res);
	}
}

static bool is_in_flight(const struct idle_conn *c)
{
	return c->state == IDLE_CONNECTING || c->state == IDLE_QUERYING;
}

static short conn_events(const struct idle_conn *c)
{
	if (c->state == IDLE_CONNECTING)
		return c->want == PGRES_POLLING_READING ? POLLIN : POLLOUT;
	return c->flushing ? POLLIN | POLLOUT : POLLIN;
}

/* True when a stop was asked for (signal, or stdin EOF when watched). */
static bool stop_requested(struct pollfd *pfd, bool watch_stdin)
{
	char buf[256];

	if (pfd[0].revents & POLLIN)
		return true;
	if (watch_stdin && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

		if (n <= 0)
			return true;
	}
	return false;
}

/*
 * The connect phase.  Returns false when a stop was asked for before all
 * connections finished.
 */
static bool open_all(struct idle_run *run, double deadline, bool watch_stdin)
{
	struct pollfd *pfd = calloc((size_t)run->parallel + 2, sizeof(*pfd));
	int *who = calloc((size_t)run->parallel + 2, sizeof(*who));
	bool stopped = false;

	if (pfd == NULL || who == NULL) {
		fprintf(stderr, "idle_clients: out of memory\n");
		exit(2);
	}
	while (run->ok + run->failed < run->count) {
		int n = 2, i;

		while (run->inflight < run->parallel && run->next < run->count) {
			const char *conninfo = run->conninfos[run->next % run->nconninfo];

			conn_start(run, &run->conns[run->next++], conninfo);
		}
		pfd[0] = (struct pollfd){.fd = signal_pipe[0], .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = watch_stdin ? STDIN_FILENO : -1, .events = POLLIN};
		/*
		 * Scanning all COUNT slots per turn would be quadratic; the
		 * in-flight ones all lie after the oldest unfinished one, and
		 * that window stays short because connections finish roughly in
		 * the order they started.
		 */
		while (run->oldest < run->next && !is_in_flight(&run->conns[run->oldest]))
			run->oldest++;
		for (i = run->oldest; i < run->next && n < run->parallel + 2; i++) {
			struct idle_conn *c = &run->conns[i];

			if (!is_in_flight(c))
				continue;
			pfd[n] = (struct pollfd){.fd = PQsocket(c->conn), .events = conn_events(c)};
			who[n++] = i;
		}
		if (n == 2 && run->next >= run->count)
			break;
		if (poll(pfd, (nfds_t)n, 1000) < 0 && errno != EINTR) {
			perror("idle_clients: poll");
			exit(2);
		}
		if (stop_requested(pfd, watch_stdin)) {
			stopped = true;
			break;
		}
		for (i = 2; i < n; i++) {
			struct idle_conn *c = &run->conns[who[i]];

			if (pfd[i].revents == 0)
				continue;
			if (c->state == IDLE_CONNECTING)
				conn_advance_connect(run, c);
			else if (c->state == IDLE_QUERYING)
				conn_advance_query(run, c, pfd[i].revents);
		}
		if (now_seconds() > deadline) {
			for (i = 0; i < run->count; i++) {
				struct idle_conn *c = &run->conns[i];

				if (is_in_flight(c))
					conn_fail(run, c, "timed out before SELECT 1 returned");
				else if (c->state == IDLE_UNSTARTED) {
					c->state = IDLE_FAILED;
					run->failed++;
					record_error(run, "not started before the timeout");
				}
			}
			break;
		}
	}
	free(pfd);
	free(who);
	return !stopped;
}

static void hold_until_stopped(bool watch_stdin)
{
	struct pollfd pfd[2];

	for (;;) {
		pfd[0] = (struct pollfd){.fd = signal_pipe[0], .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = watch_stdin ? STDIN_FILENO : -1, .events = POLLIN};
		if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
			perror("idle_clients: poll");
			return;
		}
		if (stop_requested(pfd, watch_stdin))
			return;
	}
}

/*
 * A held connection the target closed shows up as readable with EOF behind
 * it; anything else readable (a NOTICE, a ParameterStatus) is harmless.
 */
static int count_held(struct idle_run *run)
{
	int held = 0;

	for (int i = 0; i < run->count; i++) {
		struct idle_conn *c = &run->conns[i];
		struct pollfd pfd;

		if (c->state != IDLE_HOLDING)
			continue;
		pfd = (struct pollfd){.fd = PQsocket(c->conn), .events = POLLIN};
		if (poll(&pfd, 1, 0) > 0 &&
		    (!PQconsumeInput(c->conn) || PQstatus(c->conn) != CONNECTION_OK)) {
			record_error(run, PQerrorMessage(c->conn));
			continue;
		}
		held++;
	}
	return held;
}

static void raise_fd_limit(int count)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)count + 16)
		fprintf(stderr, "idle_clients: open file limit %llu is below %d connections\n",
		        (unsigned long long)rl.rlim_cur, count);
}

/* One conninfo per host of the comma-separated list, or CONNINFO alone without one. */
static int split_hosts(struct idle_run *run, const char *conninfo, const char *hosts)
{
	char *list, *save = NULL;

	run->conninfos = calloc(hosts != NULL ? strlen(hosts) + 1 : 1, sizeof(char *));
	if (run->conninfos == NULL)
		return -1;
	if (hosts == NULL) {
		run->conninfos[run->nconninfo++] = (char *)conninfo;
		return 0;
	}
	if ((list = strdup(hosts)) == NULL)
		return -1;
	for (char *h = strtok_r(list, ",", &save); h != NULL; h = strtok_r(NULL, ",", &save)) {
		size_t len = strlen(conninfo) + strlen(h) + 8;
		char *one = malloc(len);

		if (one == NULL)
			return -1;
		snprintf(one, len, "%s host=%s", conninfo, h);
		run->conninfos[run->nconninfo++] = one;
	}
	free(list);
	if (run->nconninfo == 0)
		run->conninfos[run->nconninfo++] = (char *)conninfo;
	return 0;
}

static void print_errors(const struct idle_run *run)
{
	for (int i = 0; i < MAX_ERRORS && run->errors[i].text != NULL; i++)
		fprintf(stderr, "idle_clients: %d x %s\n", run->errors[i].count,
		        run->errors[i].text);
	if (run->other_errors > 0)
		fprintf(stderr, "idle_clients: %d x other errors\n", run->other_errors);
}

int main(int argc, char **argv)
{
	struct idle_run run = {.count = 10000, .parallel = 64};
	double timeout = 300, start;
	bool watch_stdin = true;
	struct sigaction sa = {.sa_handler = stop_signal_cb};
	int opt, held;
	const char *hosts = NULL;

	while ((opt = getopt(argc, argv, "n:p:t:SH:")) != -1) {
		switch (opt) {
		case 'H':
			hosts = optarg;
			break;
		case 'n':
			run.count = atoi(optarg);
			break;
		case 'p':
			run.parallel = atoi(optarg);
			break;
		case 't':
			timeout = atof(optarg);
			break;
		case 'S':
			watch_stdin = false;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || run.count < 1 || run.parallel < 1)
		usage();
	raise_fd_limit(run.count);
	if (split_hosts(&run, argv[optind], hosts) < 0) {
		fprintf(stderr, "idle_clients: out of memory\n");
		return 2;
	}
	if (pipe(signal_pipe) != 0) {
		perror("idle_clients: pipe");
		return 2;
	}
	fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* A target that resets a connection must not kill us through a write. */
	signal(SIGPIPE, SIG_IGN);
	run.conns = calloc((size_t)run.count, sizeof(*run.conns));
	if (run.conns == NULL) {
		fprintf(stderr, "idle_clients: out of memory\n");
		return 2;
	}

	start = now_seconds();
	if (open_all(&run, start + timeout, watch_stdin)) {
		double took = now_seconds() - start;

		printf("ready ok=%d failed=%d seconds=%.3f rate=%.1f\n", run.ok, run.failed, took,
		       took > 0 ? run.ok / took : 0.0);
		fflush(stdout);
		hold_until_stopped(watch_stdin);
	}
	held = count_held(&run);
	printf("done ok=%d held=%d failed=%d\n", run.ok, held, run.failed);
	fflush(stdout);
	print_errors(&run);
	for (int i = 0; i < run.count; i++) {
		if (run.conns[i].conn != NULL)
			PQfinish(run.conns[i].conn);
	}
	return held == run.count ? 0 : 1;
}
