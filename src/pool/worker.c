/*
 * Worker threads.  Each runs its own event_base; other threads reach it only
 * through its inbox.  Closed clients and servers are freed by the reaper, an
 * event at a lower priority than all I/O, so no object is freed while one of
 * its own callbacks is still on the stack.
 */
#include "pool/worker.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "admin/control.h"
#include "pool/auth_query.h"
#include "auth/scram.h"
#include "pool/client.h"
#include "net/conn.h"
#include "pool/pool.h"
#include "runtime/runtime.h"
#include "pool/server.h"
#include "observe/statslog.h"

#define PRIORITY_IO   0
#define PRIORITY_REAP 1

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->dead_servers)
	{
		struct server *s = list_entry(pos, struct server, node);

		list_del(&s->node);
		server_free(s);
	}
	list_for_each_safe(pos, tmp, &w->dead_clients)
	{
		struct client *c = list_entry(pos, struct client, node);

		list_del(&c->node);
		client_free(c);
	}
}

void worker_schedule_reap(struct worker *w)
{
	event_active(w->reaper, 0, 0);
}

/*
 * Every latency sample is stamped with this, so it must be precise, and it is
 * shown as wall time.  libevent's cached loop time is either coarse (often
 * 4 ms steps) or, with EVENT_BASE_FLAG_PRECISE_TIMER, costs a timerfd_settime
 * system call before every epoll_wait, two per transaction at one client.  A
 * vDSO clock_gettime per call is cheaper than both (no syscall, no lock).
 */
int64_t worker_now_us(struct worker *w)
{
	struct timespec ts;

	(void)w;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct worker *worker_new(struct runtime *rt, int id, struct snapshot *snap)
{
	struct worker *w = calloc(1, sizeof(*w));
	uint8_t salt[16];

	if (w == NULL)
		return NULL;
	w->id = id;
	w->rt = rt;
	w->snap = snapshot_ref(snap);
	w->cfg = snap->cfg;
	w->log = &rt->log;
	list_init(&w->clients);
	list_init(&w->pools);
	list_init(&w->auth_queries);
	list_init(&w->auth_cache);
	list_init(&w->closing_clients);
	list_init(&w->dead_clients);
	list_init(&w->dead_servers);
	w->base = event_base_new();
	if (w->base == NULL || event_base_priority_init(w->base, 2) < 0)
		goto fail;
	w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	                                     EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (w->dns == NULL)
		w->dns = evdns_base_new(w->base, 0);
	if (w->dns != NULL)
		evdns_base_load_hosts(w->dns, NULL);
	w->reaper = event_new(w->base, -1, 0, reaper_cb, w);
	if (w->reaper == NULL || event_priority_set(w->reaper, PRIORITY_REAP) < 0)
		goto fail;
	if (conn_flusher_init(w) < 0)
		goto fail;
	if (inbox_init(&w->inbox, w->base, w) < 0)
		goto fail;
	if ((w->admin = admin_worker_new(w)) == NULL)
		goto fail;
	if (statslog_init(w) < 0)
		goto fail;
	w->cancel_map_size = 1024;
	w->cancel_map = calloc(w->cancel_map_size, sizeof(*w->cancel_map));
	if (w->cancel_map == NULL)
		goto fail;
	RAND_bytes((unsigned char *)&w->cancel_seq, sizeof(w->cancel_seq));
	/* Unknown users go through a full SCRAM exchange against this, then fail. */
	RAND_bytes(salt, sizeof(salt));
	if (scram_secret_from_password("", salt, sizeof(salt), SCRAM_ITERATIONS, &w->dummy_secret) <
	    0)
		goto fail;
	return w;
fail:
	worker_free(w);
	return NULL;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

int worker_start(struct worker *w)
{
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
		return -1;
	w->started = true;
	return 0;
}

static void stop_fn(void *owner, void *arg)
{
	struct worker *w = owner;

	event_base_loopbreak(w->base);
}

void worker_stop(struct worker *w)
{
	inbox_post(&w->inbox, stop_fn, NULL);
	pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
	struct list_node *pos, *tmp;

	if (w == NULL)
		return;
	list_for_each_safe(pos, tmp, &w->clients)
	{
		struct client *c = list_entry(pos, struct client, node);

		client_close(c, "shutdown");
	}
	list_for_each_safe(pos, tmp, &w->pools)
	{
		pool_free(list_entry(pos, struct pool, node));
	}
	list_for_each_safe(pos, tmp, &w->closing_clients)
	{
		struct client *c = list_entry(pos, struct client, node);

		list_del(&c->node);
		list_add_tail(&w->dead_clients, &c->node);
	}
	if (w->reaper != NULL) {
		reaper_cb(-1, 0, w);
		event_free(w->reaper);
	}
	auth_query_fini(w);
	admin_worker_free(w->admin);
	statslog_fini(w);
	if (w->inbox.wake != NULL)
		inbox_fini(&w->inbox);
	/*
	 * A bufferevent freed while a deferred callback of its was pending keeps
	 * a reference until that callback has run (its own callbacks are cleared
	 * by then): one more non-blocking turn lets libevent drop it, so TLS
	 * connections, and the SSL_CTX they hold, are really freed at exit.
	 */
	if (w->base != NULL)
		event_base_loop(w->base, EVLOOP_NONBLOCK);
	conn_flusher_fini(w);
	if (w->dns != NULL)
		evdns_base_free(w->dns, 0);
	if (w->base != NULL)
		event_base_free(w->base);
	free(w->cancel_map);
	prepared_registry_fini(&w->prepared);
	if (w->snap != NULL)
		snapshot_unref(w->snap);
	free(w);
}

static void accept_fn(void *owner, void *arg)
{
	struct worker *w = owner;
	struct accepted_socket *sock = arg;

	struct client *c = client_new(w, sock->fd, (struct sockaddr *)&sock->addr,
	                              (int)sock->addrlen, sock->is_unix);

	if (c != NULL && sock->over_ip_rate && c->refuse == REFUSE_NONE)
		c->refuse = REFUSE_IP_RATE;
	free(sock);
}

void worker_post_accept(struct worker *w, struct accepted_socket *sock)
{
	if (inbox_post(&w->inbox, accept_fn, sock) < 0) {
		close(sock->fd);
		free(sock);
	}
}

static void config_fn(void *owner, void *arg)
{
	struct worker *w = owner;
	struct snapshot *old = w->snap;
	struct list_node *pos, *tmp;

	w->snap = arg;
	w->cfg = w->snap->cfg;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		pool_reconfigure(list_entry(pos, struct pool, node));
	}
	statslog_reconfigure(w);
	snapshot_unref(old);
}

void worker_post_config(struct worker *w, struct snapshot *snap)
{
	if (inbox_post(&w->inbox, config_fn, snapshot_ref(snap)) < 0)
		snapshot_unref(snap);
}

static void drain_fn(void *owner, void *arg)
{
	struct worker *w = owner;
	struct list_node *pos, *tmp;

	w->draining = true;
	list_for_each_safe(pos, tmp, &w->clients)
	{
		client_drain(list_entry(pos, struct client, node));
	}
	worker_check_drained(w);
}

void worker_post_drain(struct worker *w)
{
	inbox_post(&w->inbox, drain_fn, NULL);
}

void worker_check_drained(struct worker *w)
{
	/* Closing clients still flushing a reply (a drained COMMIT's) hold the exit. */
	if (w->draining && w->nclients == 0 && list_empty(&w->closing_clients) &&
	    !w->drain_reported) {
		w->drain_reported = true;
		runtime_worker_drained(w->rt, w);
	}
}

static uint32_t cancel_bucket(const struct worker *w, uint32_t pid)
{
	return (pid * 2654435761u) & (w->cancel_map_size - 1);
}

/* Double the table when it holds more entries than buckets. */
static void cancel_map_grow(struct worker *w)
{
	uint32_t size = w->cancel_map_size * 2;
	struct client **map = calloc(size, sizeof(*map));

	if (map == NULL)
		return;
	for (uint32_t i = 0; i < w->cancel_map_size; i++) {
		struct client *c = w->cancel_map[i];

		while (c != NULL) {
			struct client *next = c->cancel_next;
			uint32_t b = (c->cancel_pid * 2654435761u) & (size - 1);

			c->cancel_next = map[b];
			map[b] = c;
			c = next;
		}
	}
	free(w->cancel_map);
	w->cancel_map = map;
	w->cancel_map_size = size;
}

int worker_cancel_register(struct worker *w, struct client *c)
{
	uint32_t pid;

	if ((uint32_t)w->nclients > w->cancel_map_size)
		cancel_map_grow(w);
	/* The top byte routes a CancelRequest to this worker; 0 in the low bits is avoided. */
	do {
		w->cancel_seq++;
		pid = (uint32_t)w->id << 24 | (w->cancel_seq & 0xffffff);
	} while ((pid & 0xffffff) == 0 || worker_cancel_lookup(w, pid) != NULL);
	c->cancel_pid = pid;
	if (RAND_bytes((unsigned char *)&c->cancel_key, sizeof(c->cancel_key)) != 1)
		return -1;
	c->cancel_next = w->cancel_map[cancel_bucket(w, pid)];
	w->cancel_map[cancel_bucket(w, pid)] = c;
	c->cancel_registered = true;
	return 0;
}

void worker_cancel_unregister(struct worker *w, struct client *c)
{
	struct client **slot;

	if (!c->cancel_registered)
		return;
	for (slot = &w->cancel_map[cancel_bucket(w, c->cancel_pid)]; *slot != NULL;
	     slot = &(*slot)->cancel_next) {
		if (*slot == c) {
			*slot = c->cancel_next;
			break;
		}
	}
	c->cancel_registered = false;
}

struct client *worker_cancel_lookup(struct worker *w, uint32_t pid)
{
	for (struct client *c = w->cancel_map[cancel_bucket(w, pid)]; c != NULL; c = c->cancel_next)
		if (c->cancel_pid == pid)
			return c;
	return NULL;
}
