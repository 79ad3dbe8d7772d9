/*
 * The pool's hot-path records; see record.h.  Each hook only adds to the
 * pool's own memory.
 */
#include "pool/record.h"

#include <stdlib.h>

#include "config/config.h"
#include "pool/client.h"
#include "pool/pool.h"
#include "pool/server.h"
#include "pool/slowlog.h"
#include "pool/worker.h"
#include "proto/frame.h"

static const char *const kind_names[LATENCY_KINDS] = {"query", "transaction", "wait", "connect"};

const char *latency_kind_name(enum latency_kind kind)
{
	return kind_names[kind];
}

void record_request_done(struct server *s, int64_t now_us, char status)
{
	struct pool_latency *lat = &s->pool->lat;
	int64_t took = now_us - s->request_start_us;
	int64_t slow = s->w->cfg->slow_query_threshold_us;

	histogram_record_us(&lat->h[LATENCY_QUERY], took);
	if (status == 'I')
		histogram_record_us(&lat->h[LATENCY_XACT], now_us - s->xact_start_us);
	if (slow > 0 && took > slow && s->client != NULL)
		slowlog_check(s->client, took, s->client_wait_us);
}

void record_link(struct client *c, struct server *s)
{
	int64_t waited = 0;

	if (c->state == CLIENT_WAITING)
		waited = worker_now_us(c->w) - c->wait_start_us;
	s->client_wait_us = waited;
	histogram_record_us(&s->pool->lat.h[LATENCY_WAIT], waited);
}

void record_server_ready(struct server *s)
{
	histogram_record_us(&s->pool->lat.h[LATENCY_CONNECT], worker_now_us(s->w) - s->connect_us);
}

void record_server_reply(struct pool *p, uint8_t type, const uint8_t *body, size_t len)
{
	struct pool_latency *lat = &p->lat;
	const char *code;

	if (type != 'E')
		return;
	code = msg_error_field(body, len, 'C');
	if (code == NULL || code[0] == '\0' || code[1] == '\0')
		return;
	for (size_t i = 0; i < LATENCY_POOL_CLASSES; i++) {
		struct error_class *e = &lat->errors[i];

		if (e->cls[0] == '\0') {
			e->cls[0] = code[0];
			e->cls[1] = code[1];
		}
		if (e->cls[0] == code[0] && e->cls[1] == code[1]) {
			e->count++;
			return;
		}
	}
	lat->errors_other++;
}

void record_timeout(struct client *c)
{
	/* Login timeouts happen before a pool is known; they are the login's business. */
	if (c->pool != NULL && c->state != CLIENT_LOGIN)
		c->pool->lat.timeouts++;
}

void record_cancel(struct client *c)
{
	if (c->pool != NULL)
		c->pool->lat.cancels++;
}

void record_fini(struct pool_latency *lat)
{
	free(lat->period);
	lat->period = NULL;
}
