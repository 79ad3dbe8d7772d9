/*
 * Would io_uring cut the pooler's CPU per transaction?  (issue 19)
 *
 * A relay process moves bytes between pairs of loopback TCP sockets, the way
 * sluice moves a query to its server and the reply back: each round trip is
 * one small message each way, so the relay does two receives and two sends.
 * A load process (forked) plays both the clients and the servers, in lock
 * step: each client has one query in flight.  The relay runs either
 *
 *   epoll: level-triggered epoll_wait, then recv() and send() per message
 *          (sluice's system calls: bench/RESULTS.md counts 2 recvfrom and
 *          2 writev per transaction, and a fraction of an epoll_wait), or
 *   uring: multishot receives into a ring of provided buffers, the sends of
 *          one loop turn queued and submitted by the same io_uring_enter that
 *          waits for the next completions (SINGLE_ISSUER, DEFER_TASKRUN);
 *   batch: (with -b N) the same, but each enter waits for N completions or
 *          -w microseconds, whichever comes first, so that one enter carries
 *          many round trips' sends and collects many receives.  That wait is
 *          latency a lone client would pay: it bounds what batching buys.
 *
 * The modes alternate, `-r` times each, with the same count of round trips,
 * and the relay's own CPU (getrusage) per round trip is printed for each run
 * with each mode's median against epoll's.  Only the I/O model differs: no
 * parsing, no pooling, so the ratio bounds what io_uring could save sluice.
 *
 *   cc -O2 -o uring_relay bench/uring_relay.c -luring
 *   ./uring_relay [-n pairs] [-t round_trips] [-r repeats] [-b batch -w wait_us]
 */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define QUERY_LEN 40  /* about a Query of "SELECT abalance ... WHERE aid = $1" */
#define REPLY_LEN 110 /* RowDescription, DataRow, CommandComplete, ReadyForQuery */
#define MAX_FDS   4096
#define BUF_COUNT 1024 /* provided buffers (a power of two) */
#define BUF_SIZE  4096
#define EV_BATCH  512

enum { OP_RECV = 1, OP_SEND = 2 };
enum mode { MODE_EPOLL, MODE_URING, MODE_BATCH, MODES };

static const char *const mode_names[MODES] = {"epoll", "uring", "batch"};

struct run {
	double cpu_us_per_rt;
	double wall_s;
	double enters_per_rt; /* epoll_wait (then 2 recv, 2 send) or io_uring_enter (all) per round
	                         trip */
};

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int connected_pair(int listener, int *accepted)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int one = 1, s;

	if (getsockname(listener, (struct sockaddr *)&sa, &len) < 0)
		die("getsockname");
	s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, len) < 0)
		die("connect");
	*accepted = accept(listener, NULL, NULL);
	if (*accepted < 0)
		die("accept");
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*accepted, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return s;
}

static void send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, 0);

		if (n < 0)
			die("send");
		buf += n;
		len -= (size_t)n;
	}
}

/*
 * Clients on client[i], servers on server[i]: every client sends a query, the
 * server end answers each whole query with a reply, and a client sends its
 * next query when its reply is whole, until `total` round trips are done.
 */
static void load(const int *client, const int *server, int pairs, long total)
{
	static char query[QUERY_LEN], reply[REPLY_LEN], buf[65536];
	static long got[MAX_FDS];
	static char is_server[MAX_FDS];
	struct epoll_event evs[EV_BATCH];
	long sent = 0, done = 0;
	int ep = epoll_create1(0);

	for (int i = 0; i < pairs; i++) {
		struct epoll_event a = {.events = EPOLLIN, .data.fd = client[i]};
		struct epoll_event b = {.events = EPOLLIN, .data.fd = server[i]};

		is_server[server[i]] = 1;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, client[i], &a) < 0 ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, server[i], &b) < 0)
			die("epoll_ctl");
	}
	for (int i = 0; i < pairs && sent < total; i++, sent++)
		send_all(client[i], query, QUERY_LEN);
	while (done < total) {
		int n = epoll_wait(ep, evs, EV_BATCH, -1);

		for (int e = 0; e < n; e++) {
			int fd = evs[e].data.fd;
			ssize_t r = recv(fd, buf, sizeof(buf), 0);
			long unit = is_server[fd] ? QUERY_LEN : REPLY_LEN;

			if (r <= 0)
				die("load: recv");
			for (got[fd] += r; got[fd] >= unit; got[fd] -= unit) {
				if (is_server[fd]) {
					send_all(fd, reply, REPLY_LEN);
				} else {
					done++;
					if (sent < total) {
						send_all(fd, query, QUERY_LEN);
						sent++;
					}
				}
			}
		}
	}
}

/* Relays between peer pairs until every socket has reached EOF; returns its waits. */
static long relay_epoll(const int *peer, const int *fds, int nfds)
{
	static char buf[65536];
	struct epoll_event evs[EV_BATCH];
	int ep = epoll_create1(0), open = nfds;
	long waits = 0;

	for (int i = 0; i < nfds; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};

		if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0)
			die("epoll_ctl");
	}
	while (open > 0) {
		int n = epoll_wait(ep, evs, EV_BATCH, -1);

		waits++;
		for (int e = 0; e < n; e++) {
			int fd = evs[e].data.fd;
			ssize_t r = recv(fd, buf, sizeof(buf), 0);

			if (r > 0) {
				send_all(peer[fd], buf, (size_t)r);
				continue;
			}
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			shutdown(peer[fd], SHUT_WR);
			open--;
		}
	}
	close(ep);
	return waits;
}

static void arm_recv(struct io_uring *ring, int fd)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (sqe == NULL)
		die("io_uring_get_sqe");
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data64(sqe, (uint64_t)OP_RECV << 32 | (uint32_t)fd);
}

/*
 * The same with io_uring.  A received buffer is sent from where it lies and
 * given back to the buffer ring when its send completes.  Sends to one socket
 * never overlap here (one message in flight per direction), so their order
 * holds without linking them.
 */
static long relay_uring(const int *peer, const int *fds, int nfds, unsigned batch, long wait_us)
{
	struct __kernel_timespec wait = {.tv_sec = wait_us / 1000000,
	                                 .tv_nsec = wait_us % 1000000 * 1000};
	struct io_uring_params params = {.flags = IORING_SETUP_SINGLE_ISSUER |
	                                          IORING_SETUP_DEFER_TASKRUN,
	                                 .cq_entries = 4 * MAX_FDS};
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	struct io_uring_buf_reg reg = {.ring_entries = BUF_COUNT, .bgid = 0};
	char *bufs = malloc((size_t)BUF_COUNT * BUF_SIZE);
	int mask = io_uring_buf_ring_mask(BUF_COUNT), open = nfds;
	long enters = 0;

	params.flags |= IORING_SETUP_CQSIZE;
	if (io_uring_queue_init_params(2 * MAX_FDS, &ring, &params) < 0)
		die("io_uring_queue_init_params");
	if (posix_memalign((void **)&br, 4096, BUF_COUNT * sizeof(struct io_uring_buf)) != 0 ||
	    bufs == NULL)
		die("posix_memalign");
	reg.ring_addr = (uintptr_t)br;
	if (io_uring_register_buf_ring(&ring, &reg, 0) < 0)
		die("io_uring_register_buf_ring");
	io_uring_buf_ring_init(br);
	for (int b = 0; b < BUF_COUNT; b++)
		io_uring_buf_ring_add(br, bufs + (size_t)b * BUF_SIZE, BUF_SIZE, (unsigned short)b,
		                      mask, b);
	io_uring_buf_ring_advance(br, BUF_COUNT);
	for (int i = 0; i < nfds; i++)
		arm_recv(&ring, fds[i]);
	while (open > 0) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		if (batch <= 1) {
			if (io_uring_submit_and_wait(&ring, 1) < 0)
				die("io_uring_submit_and_wait");
		} else {
			struct io_uring_cqe *first;
			int rc =
			    io_uring_submit_and_wait_timeout(&ring, &first, batch, &wait, NULL);

			if (rc < 0 && rc != -ETIME)
				die("io_uring_submit_and_wait_timeout");
		}
		enters++;
		io_uring_for_each_cqe(&ring, head, cqe)
		{
			uint64_t data = io_uring_cqe_get_data64(cqe);
			int op = (int)(data >> 32), fd = (int)(uint32_t)data;
			unsigned short bid =
			    (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);

			seen++;
			if (op == OP_SEND) {
				if (cqe->res < 0)
					die("relay: send");
				io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE,
				                      bid, mask, 0);
				io_uring_buf_ring_advance(br, 1);
				continue;
			}
			if (cqe->res > 0) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

				if (sqe == NULL)
					die("io_uring_get_sqe");
				io_uring_prep_send(sqe, peer[fd], bufs + (size_t)bid * BUF_SIZE,
				                   (size_t)cqe->res, MSG_WAITALL);
				io_uring_sqe_set_data64(sqe, (uint64_t)OP_SEND << 32 | bid);
				if (!(cqe->flags & IORING_CQE_F_MORE))
					arm_recv(&ring, fd);
			} else if (cqe->res == -ENOBUFS) {
				arm_recv(&ring, fd);
			} else {
				shutdown(peer[fd], SHUT_WR);
				open--;
			}
		}
		io_uring_cq_advance(&ring, seen);
	}
	io_uring_queue_exit(&ring);
	free(bufs);
	free(br);
	return enters;
}

static double cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct run run_once(enum mode mode, int pairs, long total, unsigned batch, long wait_us)
{
	int listener = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int client[MAX_FDS / 4], front[MAX_FDS / 4], back[MAX_FDS / 4], server[MAX_FDS / 4];
	int fds[MAX_FDS / 2], peer[MAX_FDS], status;
	double cpu0, wall0;
	long enters;
	pid_t pid;
	struct run r;

	if (listener < 0 || bind(listener, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(listener, 1024) < 0)
		die("listen");
	for (int i = 0; i < pairs; i++) {
		client[i] = connected_pair(listener, &front[i]);
		back[i] = connected_pair(listener, &server[i]);
		if (server[i] >= MAX_FDS) /* the highest of the four */
			die("too many descriptors");
		peer[front[i]] = back[i];
		peer[back[i]] = front[i];
		fds[2 * i] = front[i];
		fds[2 * i + 1] = back[i];
	}
	close(listener);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		for (int i = 0; i < 2 * pairs; i++)
			close(fds[i]);
		load(client, server, pairs, total);
		_exit(0);
	}
	for (int i = 0; i < pairs; i++) {
		close(client[i]);
		close(server[i]);
	}
	cpu0 = cpu_us();
	wall0 = now_s();
	enters = mode == MODE_EPOLL   ? relay_epoll(peer, fds, 2 * pairs)
	         : mode == MODE_URING ? relay_uring(peer, fds, 2 * pairs, 1, 0)
	                              : relay_uring(peer, fds, 2 * pairs, batch, wait_us);
	r.cpu_us_per_rt = (cpu_us() - cpu0) / (double)total;
	r.wall_s = now_s() - wall0;
	r.enters_per_rt = (double)enters / (double)total;
	for (int i = 0; i < 2 * pairs; i++)
		close(fds[i]);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("load process failed");
	return r;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), by_value);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	int pairs = 64, repeats = 5, opt, modes;
	long total = 400000, wait_us = 50;
	unsigned batch = 0;
	double cpu[MODES][64];

	while ((opt = getopt(argc, argv, "n:t:r:b:w:")) != -1) {
		if (opt == 'n')
			pairs = atoi(optarg);
		else if (opt == 't')
			total = atol(optarg);
		else if (opt == 'r')
			repeats = atoi(optarg);
		else if (opt == 'b')
			batch = (unsigned)atoi(optarg);
		else if (opt == 'w')
			wait_us = atol(optarg);
		else
			return fprintf(stderr,
			               "usage: %s [-n pairs] [-t round_trips] [-r repeats] "
			               "[-b batch -w wait_us]\n",
			               argv[0]),
			       2;
	}
	if (pairs < 1 || pairs > MAX_FDS / 4 || total < pairs || repeats < 1 || repeats > 64 ||
	    wait_us < 1)
		return fprintf(stderr,
		               "pairs 1..%d, round trips >= pairs, repeats 1..64, wait_us >= 1\n",
		               MAX_FDS / 4),
		       2;
	modes = batch > 1 ? MODES : MODE_BATCH;
	printf("%d pairs, %ld round trips per run, %d runs of each, alternating", pairs, total,
	       repeats);
	if (batch > 1)
		printf("; batch: %u completions or %ld us per enter", batch, wait_us);
	printf("\n| run | mode | relay CPU us/round trip | round trips/s | waits/round trip |\n");
	printf("|---:|---|---:|---:|---:|\n");
	for (int i = 0; i < repeats; i++) {
		for (int m = 0; m < modes; m++) {
			enum mode mode =
			    (enum mode)((i + m) % modes); /* the first mode rotates too */
			struct run r = run_once(mode, pairs, total, batch, wait_us);

			cpu[mode][i] = r.cpu_us_per_rt;
			printf("| %d | %s | %.2f | %.0f | %.3f |\n", i + 1, mode_names[mode],
			       r.cpu_us_per_rt, (double)total / r.wall_s, r.enters_per_rt);
			fflush(stdout);
		}
	}
	{
		double e = median(cpu[MODE_EPOLL], repeats);

		printf("median relay CPU per round trip: epoll %.2f us", e);
		for (int m = MODE_URING; m < modes; m++) {
			double u = median(cpu[m], repeats);

			printf(", %s %.2f us (%.2fx epoll)", mode_names[m], u, u / e);
		}
		printf("\n");
	}
	return 0;
}
