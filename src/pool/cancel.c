/*
 * Cancel forwarding; see cancel.h.  Each forwarded cancel is a short-lived
 * connection to the server's address carrying its real (pid, key); the
 * postmaster closes it once the signal is sent, which is when the server may
 * be reused.
 */
#include "config/config.h"
#include "pool/cancel.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <stdlib.h>

#include "pool/client.h"
#include "base/list.h"
#include "pool/pool.h"
#include "proto/build.h"
#include "pool/server.h"
#include "pool/worker.h"

/* Cancels sent again for a request still running when the last one landed (reset_cancel_done). */
#define RESET_CANCELS_MAX 5

struct cancel_req {
	struct list_node node;   /* server->cancels, or the worker's orphans once it is gone */
	struct server *server;   /* NULL once the server is gone */
	struct bufferevent *bev; /* connection to the postmaster */
};

struct routed_cancel {
	uint32_t pid, key; /* as received from the client */
};

/* ---- the cancel map ---- */

int cancel_map_init(struct cancel_map *map)
{
	list_init(&map->orphans);
	map->size = 1024;
	map->buckets = calloc(map->size, sizeof(*map->buckets));
	if (map->buckets == NULL)
		return -1;
	RAND_bytes((unsigned char *)&map->seq, sizeof(map->seq));
	return 0;
}

void cancel_map_fini(struct cancel_map *map)
{
	struct list_node *pos, *tmp;

	if (map->orphans.next != NULL) /* NULL: cancel_map_init never ran */
		list_for_each_safe(pos, tmp, &map->orphans)
		{
			struct cancel_req *req = list_entry(pos, struct cancel_req, node);

			bufferevent_free(req->bev);
			free(req);
		}
	free(map->buckets);
	map->buckets = NULL;
}

static uint32_t cancel_bucket(const struct worker *w, uint32_t pid)
{
	return (pid * 2654435761u) & (w->cancels.size - 1);
}

/* Double the table when it holds more entries than buckets. */
static void cancel_map_grow(struct worker *w)
{
	uint32_t size = w->cancels.size * 2;
	struct client **map = calloc(size, sizeof(*map));

	if (map == NULL)
		return;
	for (uint32_t i = 0; i < w->cancels.size; i++) {
		struct client *c = w->cancels.buckets[i];

		while (c != NULL) {
			struct client *next = c->cancel_next;
			uint32_t b = (c->cancel_pid * 2654435761u) & (size - 1);

			c->cancel_next = map[b];
			map[b] = c;
			c = next;
		}
	}
	free(w->cancels.buckets);
	w->cancels.buckets = map;
	w->cancels.size = size;
}

int cancel_register(struct worker *w, struct client *c)
{
	uint32_t pid;

	if ((uint32_t)w->nclients > w->cancels.size)
		cancel_map_grow(w);
	/* The top byte routes a CancelRequest to this worker; 0 in the low bits is avoided. */
	do {
		w->cancels.seq++;
		pid = (uint32_t)w->id << 24 | (w->cancels.seq & 0xffffff);
	} while ((pid & 0xffffff) == 0 || cancel_lookup(w, pid) != NULL);
	c->cancel_pid = pid;
	if (RAND_bytes((unsigned char *)&c->cancel_key, sizeof(c->cancel_key)) != 1)
		return -1;
	c->cancel_next = w->cancels.buckets[cancel_bucket(w, pid)];
	w->cancels.buckets[cancel_bucket(w, pid)] = c;
	c->cancel_registered = true;
	return 0;
}

void cancel_unregister(struct worker *w, struct client *c)
{
	struct client **slot;

	if (!c->cancel_registered)
		return;
	for (slot = &w->cancels.buckets[cancel_bucket(w, c->cancel_pid)]; *slot != NULL;
	     slot = &(*slot)->cancel_next) {
		if (*slot == c) {
			*slot = c->cancel_next;
			break;
		}
	}
	c->cancel_registered = false;
}

struct client *cancel_lookup(struct worker *w, uint32_t pid)
{
	for (struct client *c = w->cancels.buckets[cancel_bucket(w, pid)]; c != NULL;
	     c = c->cancel_next)
		if (c->cancel_pid == pid)
			return c;
	return NULL;
}

/* ---- routing and forwarding ---- */

static void cancel_local(struct worker *w, uint32_t pid, uint32_t key)
{
	struct client *c = cancel_lookup(w, pid);

	if (c == NULL || !secret_equal(&c->cancel_key, &key, sizeof(key))) {
		log_debug(w->log, "cancel request with an unknown key ignored");
		return;
	}
	clog(c, LOG_DEBUG, "cancel requested");
	client_cancel(c);
}

static void routed_fn(void *owner, void *arg)
{
	struct routed_cancel *rc = arg;

	cancel_local(owner, rc->pid, rc->key);
	free(rc);
}

void cancel_route(struct worker *w, uint32_t pid, uint32_t key)
{
	int owner = (int)(pid >> 24);
	struct routed_cancel *rc;

	if (owner == w->id) {
		cancel_local(w, pid, key);
		return;
	}
	if (owner >= w->shared->nworkers)
		return;
	rc = malloc(sizeof(*rc));
	if (rc == NULL)
		return;
	rc->pid = pid;
	rc->key = key;
	if (inbox_post_owned(&w->shared->workers[owner]->inbox, routed_fn, free, rc) < 0)
		free(rc);
}

/*
 * A cancel for the request of a client that left has landed.  If that
 * request still runs, the cancel may have come before the backend had read
 * it (a backend waiting for a command ignores a cancel): another goes, a few
 * at most.  Safe, since the reset sends nothing while one is in flight.  Else
 * the reset, which waited for the cancel (server_reset_step), goes on.
 */
static void reset_cancel_done(struct server *s)
{
	if (requests_count(&s->requests) > 0 && requests_head(&s->requests) != 'S' &&
	    requests_head(&s->requests) != REQ_INJECTED_SYNC && !s->cancel_deferred &&
	    s->reset_cancels < RESET_CANCELS_MAX) {
		s->reset_cancels++;
		cancel_server(s);
		return;
	}
	server_reset_step(s);
}

static void cancel_done(struct cancel_req *req)
{
	struct server *s = req->server;

	bufferevent_free(req->bev);
	list_del(&req->node);
	free(req);
	if (s == NULL)
		return;
	s->cancels_inflight--;
	/*
	 * Asked for again while this one was on its way: the backend may have
	 * taken the signal before the request that asked again began, so if
	 * that request still runs, it gets a cancel of its own.  Not another:
	 * the client's next statement, or sluice's reset after it left.
	 */
	if (s->cancel_again_for != 0) {
		bool same = s->client != NULL && s->client->id == s->cancel_again_for &&
		            s->requests_started == s->cancel_again_at &&
		            requests_count(&s->requests) > 0;

		s->cancel_again_for = 0;
		if (same)
			cancel_server(s);
	}
	/* The server finished its work while the cancel was in flight: now it may go back. */
	if (s->cancels_inflight == 0 && s->state == SERVER_CANCELING)
		pool_release(s->pool, s);
	else if (s->cancels_inflight == 0 && s->state == SERVER_RESETTING && s->client == NULL)
		reset_cancel_done(s);
}

static void cancel_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct cancel_req *req = arg;

	if (what & BEV_EVENT_CONNECTED)
		return;
	cancel_done(req);
}

static void cancel_read_cb(struct bufferevent *bev, void *arg)
{
	/* The postmaster sends nothing; drop anything unexpected. */
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

void cancel_server(struct server *s)
{
	struct worker *w = s->w;
	struct cancel_req *req;
	int64_t wait = w->cfg->cancel_wait_timeout_us;
	struct timeval tv = {.tv_sec = wait / 1000000, .tv_usec = wait % 1000000};

	if (s->addrlen == 0 || s->backend_pid == 0)
		return;
	/*
	 * One at a time per server: each is a connection to the postmaster (a
	 * process forked there), and a client that sends CancelRequest after
	 * CancelRequest must not make sluice open them without bound.
	 */
	if (s->cancels_inflight > 0) {
		s->cancel_again_for = s->client != NULL ? s->client->id : 0;
		s->cancel_again_at = s->requests_started;
		return;
	}
	req = calloc(1, sizeof(*req));
	if (req == NULL)
		return;
	req->server = s;
	req->bev = bufferevent_socket_new(w->loop.base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (req->bev == NULL) {
		free(req);
		return;
	}
	bufferevent_setcb(req->bev, cancel_read_cb, NULL, cancel_event_cb, req);
	if (wait > 0)
		bufferevent_set_timeouts(req->bev, &tv, &tv);
	bufferevent_enable(req->bev, EV_READ);
	build_cancel_request(bufferevent_get_output(req->bev), s->backend_pid, s->backend_key);
	list_add_tail(&s->cancels, &req->node);
	s->cancels_inflight++;
	slog(s, LOG_DEBUG, "forwarding cancel to backend %u", s->backend_pid);
	if (bufferevent_socket_connect(req->bev, (struct sockaddr *)&s->addr, (int)s->addrlen) < 0)
		cancel_done(req);
}

void cancel_detach_server(struct server *s)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &s->cancels)
	{
		struct cancel_req *req = list_entry(pos, struct cancel_req, node);

		/* It completes on its own; the worker frees it if the loop stops first. */
		list_del(&req->node);
		list_add_tail(&s->w->cancels.orphans, &req->node);
		req->server = NULL;
	}
	s->cancels_inflight = 0;
	s->cancel_again_for = 0;
}
