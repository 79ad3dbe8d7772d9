/*
 * tenant_load: a closed loop of one statement per transaction on COUNT
 * connections for SECONDS, counting what was accepted, what was refused by a
 * rate limit (SQLSTATE 53400) and anything else, with the latency of the
 * accepted ones.  bench/tenants.sh uses it for the limiter's accuracy and
 * the quiet tenant's latency next to a noisy one; pgbench cannot, since it
 * stops a client at its first error.
 *
 *   tenant_load [-c COUNT] [-T SECONDS] [-s SQL] CONNINFO
 *
 * One line goes to stdout at the end:
 *
 *   ok=N refused=M other=K seconds=S p50_ms=X p99_ms=Y
 *
 * where seconds runs from the first request sent to the last answer.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct conn {
	PGconn *pg;
	double sent; /* when the current request went out */
};

struct samples {
	float *ms;
	size_t n, cap;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add_sample(struct samples *s, double ms)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 65536;
		float *grown = realloc(s->ms, cap * sizeof(*grown));

		if (grown == NULL) {
			fprintf(stderr, "tenant_load: out of memory\n");
			exit(2);
		}
		s->ms = grown;
		s->cap = cap;
	}
	s->ms[s->n++] = (float)ms;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return (x > y) - (x < y);
}

static double percentile(struct samples *s, double p)
{
	size_t i;

	if (s->n == 0)
		return 0.0;
	i = (size_t)(p * (double)(s->n - 1));
	return s->ms[i];
}

int main(int argc, char **argv)
{
	int count = 1, opt;
	double seconds = 10.0, start, end, last = 0.0;
	const char *sql = "select 1";
	long ok = 0, refused = 0, other = 0;
	struct samples lat = {0};
	struct conn *conns;
	struct pollfd *fds;
	int live;

	while ((opt = getopt(argc, argv, "c:T:s:")) != -1) {
		switch (opt) {
		case 'c':
			count = atoi(optarg);
			break;
		case 'T':
			seconds = atof(optarg);
			break;
		case 's':
			sql = optarg;
			break;
		default:
			fprintf(stderr,
			        "usage: tenant_load [-c COUNT] [-T SECONDS] [-s SQL] CONNINFO\n");
			return 2;
		}
	}
	if (optind != argc - 1 || count < 1) {
		fprintf(stderr, "usage: tenant_load [-c COUNT] [-T SECONDS] [-s SQL] CONNINFO\n");
		return 2;
	}
	conns = calloc((size_t)count, sizeof(*conns));
	fds = calloc((size_t)count, sizeof(*fds));
	if (conns == NULL || fds == NULL)
		return 2;
	for (int i = 0; i < count; i++) {
		conns[i].pg = PQconnectdb(argv[optind]);
		if (PQstatus(conns[i].pg) != CONNECTION_OK) {
			fprintf(stderr, "tenant_load: %s", PQerrorMessage(conns[i].pg));
			return 1;
		}
	}
	start = now_s();
	end = start + seconds;
	for (int i = 0; i < count; i++) {
		conns[i].sent = now_s();
		if (!PQsendQuery(conns[i].pg, sql))
			return 1;
		fds[i] = (struct pollfd){.fd = PQsocket(conns[i].pg), .events = POLLIN};
	}
	live = count;
	while (live > 0) {
		if (poll(fds, (nfds_t)count, 1000) < 0 && errno != EINTR)
			return 1;
		for (int i = 0; i < count; i++) {
			struct conn *c = &conns[i];
			PGresult *res;
			double t;

			if (fds[i].fd < 0 || !(fds[i].revents & POLLIN))
				continue;
			if (!PQconsumeInput(c->pg)) {
				fprintf(stderr, "tenant_load: %s", PQerrorMessage(c->pg));
				return 1;
			}
			if (PQisBusy(c->pg))
				continue;
			t = now_s();
			while ((res = PQgetResult(c->pg)) != NULL) {
				const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

				if (PQresultStatus(res) == PGRES_TUPLES_OK) {
					ok++;
					add_sample(&lat, (t - c->sent) * 1000.0);
				} else if (state != NULL && strcmp(state, "53400") == 0) {
					refused++;
				} else {
					if (other++ == 0)
						fprintf(stderr, "tenant_load: %s",
						        PQresultErrorMessage(res));
				}
				PQclear(res);
			}
			last = t;
			if (t >= end) {
				fds[i].fd = -1;
				live--;
				continue;
			}
			c->sent = t;
			if (!PQsendQuery(c->pg, sql))
				return 1;
		}
	}
	qsort(lat.ms, lat.n, sizeof(lat.ms[0]), cmp_float);
	printf("ok=%ld refused=%ld other=%ld seconds=%.3f p50_ms=%.3f p99_ms=%.3f\n", ok, refused,
	       other, last - start, percentile(&lat, 0.50), percentile(&lat, 0.99));
	for (int i = 0; i < count; i++)
		PQfinish(conns[i].pg);
	free(lat.ms);
	free(conns);
	free(fds);
	return 0;
}
