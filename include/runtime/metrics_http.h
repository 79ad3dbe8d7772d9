/*
 * The HTTP endpoint on metrics_listen: evhttp on the control loop serving
 * /metrics (Prometheus text format 0.0.4), /healthz and /readyz.
 *
 * A scrape starts a gather (latency_gather) and is answered when every worker
 * has copied its pools, so serving one never blocks a worker; the control
 * loop only formats.  /readyz is 503 from the moment a drain starts; before
 * that it is 200 while listeners are up and some pool has a logged-in server
 * or a probe of a configured database (TCP connect plus an SSLRequest that
 * Postgres answers 'S' or 'N') succeeded in the last 10 seconds.
 */
#ifndef SLUICE_METRICS_HTTP_H
#define SLUICE_METRICS_HTTP_H

#include "base/types.h"

struct metrics_http;

/*
 * Listen on metrics_listen ("host:port", "[v6]:port", ":port" or "*:port"
 * for every IPv4 address; port 0 picks a free one, which is logged).  Sets
 * rt->metrics, left NULL when metrics_listen is empty.  Returns -1 (logged)
 * when the endpoint cannot be opened.
 */
int metrics_http_start(struct runtime *rt);
/* The listening socket, for a takeover; -1 when there is none. */
int metrics_http_fd(const struct metrics_http *m);
/* Stop accepting (a takeover's new process serves the socket now); requests in flight finish. */
void metrics_http_release(struct metrics_http *m);
/* After the workers have stopped: answer what is pending with 503, close. */
void metrics_http_free(struct metrics_http *m);

#endif
