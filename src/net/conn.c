/*
 * Connections; see conn.h.  A plain conn has a persistent read event and a
 * one-shot write event.  conn_out() puts the conn on its loop's flush list,
 * which is sent after the callbacks already active in this turn: the replies
 * to every client served in one turn go out with one writev each, and the
 * write event is armed only when a writev comes up short.  A read callback
 * that is the turn's last sends the list itself; anything else activates the
 * loop's flush event, which libevent runs after the turn's callbacks.
 */
#include "net/conn.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/loop.h"

/*
 * First read of a turn; a read that fills it is followed by a bigger one.
 * Most reads are one small message, so a conn whose last read was small
 * starts with READ_SMALL: with libevent's chain header its buffer is a
 * 1024-byte allocation, which glibc serves from its per-thread cache
 * (tcache, up to 1032 bytes) instead of the bins a 4 kB one goes through,
 * about 500 instructions less for every message relayed.
 */
#define READ_SMALL 960
#define READ_FIRST 4000
#define READ_MAX   65536
/* Spare buffers a loop keeps: about the most conns busy in one turn. */
#define SPARES_MAX 256

static struct evbuffer *take_buffer(struct loop *l)
{
	return l->nspare > 0 ? l->spare_buffers[--l->nspare] : evbuffer_new();
}

/* An empty buffer goes back to the spares; the conn points at the shared empty one. */
static void park_buffer(struct loop *l, struct evbuffer **slot)
{
	if (*slot == l->no_data || *slot == NULL || evbuffer_get_length(*slot) > 0)
		return;
	if (l->nspare < SPARES_MAX)
		l->spare_buffers[l->nspare++] = *slot;
	else
		evbuffer_free(*slot);
	*slot = l->no_data;
}

static void drop_buffer(struct loop *l, struct evbuffer **slot)
{
	if (*slot != l->no_data && *slot != NULL)
		evbuffer_free(*slot);
	*slot = NULL;
}

size_t conn_event_size(void)
{
	return event_get_struct_event_size();
}

/*
 * The read event's space is the owner's: removed and forgotten by libevent
 * (event debug mode tracks assigned events), never freed here.
 */
static void unset_read_event(struct conn *c)
{
	if (!c->rev_set)
		return;
	event_del(c->rev);
	event_debug_unassign(c->rev);
	c->rev_set = false;
}

/* A plain conn's events go, and its places on the loop's lists: TLS takes over, or it moves. */
static void drop_plain_events(struct conn *c)
{
	unset_read_event(c);
	if (c->wev != NULL)
		event_free(c->wev);
	c->wev = NULL;
	if (list_linked(&c->flush))
		list_del(&c->flush);
	if (list_linked(&c->kick))
		list_del(&c->kick);
}

static void conn_fail(struct conn *c, int what, int err)
{
	c->error = err;
	conn_halt(c);
	c->ops->event(c, what);
}

static bool wants_input(const struct conn *c)
{
	return c->suspend == 0 && !c->read_full && !c->halted && !c->connecting;
}

/* Not read now, but a hang-up is still to be seen: held only for watch_close reasons. */
static bool watches_close(const struct conn *c)
{
	return c->suspend != 0 && (c->suspend & ~c->watch_close) == 0 && !c->read_full &&
	       !c->halted && !c->connecting;
}

/*
 * Stopping is lazy for plain sockets: the read event stays registered, and
 * is removed only if it fires while input is not wanted.  A client queued
 * for a server, or paused for a moment, usually sends nothing meanwhile, so
 * a pause and its resume cost no epoll_ctl at all.
 */
static void read_cb(evutil_socket_t fd, short what, void *arg);

/* The read event again, for `flags`: a full read, or only the peer's close (EV_CLOSED). */
static void watch_read(struct conn *c, short flags)
{
	event_del(c->rev);
	event_debug_unassign(c->rev);
	c->close_only = !(flags & EV_READ);
	if (event_assign(c->rev, c->loop->base, c->fd, flags, read_cb, c) == 0)
		event_add(c->rev, NULL);
}

static void update_read_event(struct conn *c)
{
	bool want = wants_input(c);

	if (c->is_tls) {
		/*
		 * A TLS peer's close is only seen by reading through the record
		 * layer: one that waits keeps reading, its bytes held in c->in
		 * (up to read_high, the bufferevent's watermark) and not handed
		 * over until it resumes, so its hang-up reaches tls_event_cb.
		 */
		if (want || watches_close(c))
			bufferevent_enable(c->tls, EV_READ);
		else
			bufferevent_disable(c->tls, EV_READ);
		return;
	}
	if (!c->rev_set)
		return;
	if (want && c->close_only)
		watch_read(c, c->loop->read_flags);
	else if (want && !event_pending(c->rev, EV_READ, NULL))
		event_add(c->rev, NULL);
}

/* Read what the socket has, up to read_high.  Returns 0, or CONN_EOF / CONN_ERROR. */
static int fill_input(struct conn *c)
{
	size_t want = c->read_big ? READ_FIRST : READ_SMALL;
	size_t got = 0;

	if (c->in == c->loop->no_data && (c->in = take_buffer(c->loop)) == NULL) {
		c->in = c->loop->no_data;
		c->error = ENOMEM;
		return CONN_ERROR;
	}

	while (evbuffer_get_length(c->in) < c->read_high) {
		struct evbuffer_iovec v;
		ssize_t n;

		if (evbuffer_reserve_space(c->in, (ev_ssize_t)want, &v, 1) < 1)
			return CONN_ERROR;
		c->loop->counts.recvs++;
		n = recv(c->fd, v.iov_base, v.iov_len, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			c->error = errno;
			return CONN_ERROR;
		}
		if (n == 0)
			return CONN_EOF;
		got += (size_t)n;
		/* The kernel had less than asked: the socket is empty, no need to hear EAGAIN. */
		if ((size_t)n < v.iov_len) {
			v.iov_len = (size_t)n;
			evbuffer_commit_space(c->in, &v, 1);
			break;
		}
		evbuffer_commit_space(c->in, &v, 1);
		if (want < READ_MAX)
			want *= 2;
	}
	c->read_big = got >= READ_SMALL;
	return 0;
}

/* After the owner consumed input: resume reading if it was paused at read_high. */
static void check_read_full(struct conn *c)
{
	if (c->read_full && evbuffer_get_length(c->in) < c->read_high) {
		c->read_full = false;
		update_read_event(c);
	}
}

static void end_read(struct loop *l);

/*
 * CONN_EOF when the peer hung up (its FIN came: EV_CLOSED, even behind bytes
 * not read yet, a Terminate usually), CONN_ERROR when the socket failed; else 0.
 */
static int peer_gone(struct conn *c, short what)
{
	char byte;
	ssize_t n = recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n == 0 || (n > 0 && (what & EV_CLOSED)))
		return CONN_EOF;
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		c->error = errno;
		return CONN_ERROR;
	}
	return 0;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct loop *l = c->loop;
	int end;

	if (!wants_input(c)) {
		/*
		 * Not read now; but a peer that hung up while it waits (queued,
		 * throttled) is gone for good, and its owner is told now rather
		 * than when it would be read again, with what it held meanwhile.
		 * One held back by its own peer's full output (not in watch_close)
		 * is left to the resume: what it sent is still relayed first.
		 */
		if (watches_close(c)) {
			if ((end = peer_gone(c, what)) != 0) {
				conn_fail(c, end, c->error);
				return;
			}
			/* Bytes first (a Terminate, its FIN on the way): wait for the FIN alone. */
			if ((l->read_flags & EV_CLOSED) && !c->close_only) {
				watch_read(c, EV_CLOSED | EV_PERSIST);
				return;
			}
		}
		event_del(c->rev); /* the lazy stop (update_read_event) */
		return;
	}
	l->reading = true;
	l->read_now_us = 0;
	end = fill_input(c);
	if (evbuffer_get_length(c->in) >= c->read_high)
		c->read_full = true;
	if (list_linked(&c->kick))
		list_del(&c->kick); /* this hand-over does it */
	if (evbuffer_get_length(c->in) > 0)
		c->ops->read(c);
	/* An end behind data is reported once the owner has taken the data, if it still reads. */
	if (end != 0 && !c->halted && c->suspend == 0)
		conn_fail(c, end, c->error);
	else if (!c->halted)
		check_read_full(c);
	if (!c->is_tls) /* the owner may have switched to TLS (SSLRequest) */
		park_buffer(c->loop, &c->in);
	end_read(l);
}

static void write_cb(evutil_socket_t fd, short what, void *arg);

/* Arm the write event, created on first need: most connections never have a short send. */
static int want_write(struct conn *c)
{
	if (c->wev == NULL &&
	    (c->wev = event_new(c->loop->base, c->fd, EV_WRITE, write_cb, c)) == NULL)
		return -1;
	return event_pending(c->wev, EV_WRITE, NULL) ? 0 : event_add(c->wev, NULL);
}

/* Send what the output holds; arm the write event if the kernel took less. */
static void send_output(struct conn *c)
{
	size_t left = evbuffer_get_length(c->out);

	if (left > 0) {
		int n;

		c->loop->counts.sends++;
		n = evbuffer_write(c->out, c->fd);

		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			conn_fail(c, CONN_ERROR, errno);
			return;
		}
		left = evbuffer_get_length(c->out);
		if (left > 0 && want_write(c) < 0) {
			conn_fail(c, CONN_ERROR, ENOMEM);
			return;
		}
	}
	if (c->notify_drained && left <= c->drained_at) {
		c->notify_drained = false;
		c->ops->drained(c);
	}
	park_buffer(c->loop, &c->out);
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	socklen_t len = sizeof(int);
	int err = 0;

	if (c->halted)
		return;
	if (!c->connecting) {
		send_output(c);
		return;
	}
	c->connecting = false;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		conn_fail(c, CONN_ERROR, err);
		return;
	}
	update_read_event(c);
	c->ops->event(c, CONN_CONNECTED);
	if (!c->halted && !c->is_tls)
		send_output(c);
}

static void send_flush_list(struct loop *l)
{
	l->counts.flushes++;
	evbuffer_drain(l->sink, evbuffer_get_length(l->sink));
	/* Sending may queue more (an error closes a peer): take one at a time. */
	while (!list_empty(&l->flush_list)) {
		struct conn *c = list_entry(list_first(&l->flush_list), struct conn, flush);

		list_del(&c->flush);
		if (!c->halted && !c->connecting)
			send_output(c);
	}
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	send_flush_list(arg);
}

void conn_flush_now(struct loop *l)
{
	send_flush_list(l);
}

/*
 * The end of a read callback: with no other callback left in this turn, send
 * now what it queued, sparing the flush event's activation and its run.
 */
static void end_read(struct loop *l)
{
	l->reading = false;
	if (list_empty(&l->flush_list))
		return;
	if (event_base_get_num_events(l->base, EVENT_BASE_COUNT_ACTIVE) == 0)
		send_flush_list(l);
	else
		event_active(l->flusher, EV_WRITE, 0);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;

	while (!list_empty(&l->kick_list)) {
		struct conn *c = list_entry(list_first(&l->kick_list), struct conn, kick);

		list_del(&c->kick);
		/* Suspended again since the kick: its resume kicks it anew. */
		if (c->halted || c->suspend != 0 || evbuffer_get_length(c->in) == 0)
			continue;
		c->ops->read(c);
		if (!c->halted)
			check_read_full(c);
		if (!c->is_tls)
			park_buffer(l, &c->in);
	}
}

int conn_flusher_init(struct loop *l)
{
	list_init(&l->flush_list);
	list_init(&l->kick_list);
	l->flusher = event_new(l->base, -1, 0, flush_cb, l);
	l->kicker = event_new(l->base, -1, 0, kick_cb, l);
	l->no_data = evbuffer_new();
	l->sink = evbuffer_new();
	l->spare_buffers = calloc(SPARES_MAX, sizeof(*l->spare_buffers));
	if (l->flusher == NULL || l->kicker == NULL || l->no_data == NULL || l->sink == NULL ||
	    l->spare_buffers == NULL)
		return -1;
	return 0;
}

void conn_flusher_fini(struct loop *l)
{
	if (l->flusher != NULL)
		event_free(l->flusher);
	if (l->kicker != NULL)
		event_free(l->kicker);
	l->flusher = l->kicker = NULL;
	while (l->nspare > 0)
		evbuffer_free(l->spare_buffers[--l->nspare]);
	free(l->spare_buffers);
	l->spare_buffers = NULL;
	if (l->no_data != NULL)
		evbuffer_free(l->no_data);
	if (l->sink != NULL)
		evbuffer_free(l->sink);
	l->no_data = l->sink = NULL;
}

struct evbuffer *conn_out(struct conn *c)
{
	if (c->out == c->loop->no_data) {
		struct evbuffer *b = take_buffer(c->loop);

		/* Out of memory: the conn fails, and what its owner writes now is dropped. */
		if (b == NULL) {
			conn_fail(c, CONN_ERROR, ENOMEM);
			event_active(c->loop->flusher, EV_WRITE, 0);
			return c->loop->sink;
		}
		c->out = b;
	}
	if (!c->is_tls && !list_linked(&c->flush)) {
		if (list_empty(&c->loop->flush_list) && !c->loop->reading)
			event_active(c->loop->flusher, EV_WRITE, 0);
		list_add_tail(&c->loop->flush_list, &c->flush);
	}
	return c->out;
}

int conn_init(struct conn *c, struct loop *l, const struct conn_ops *ops,
              union conn_event_space *rev_space)
{
	c->loop = l;
	c->rev = (struct event *)rev_space;
	c->ops = ops;
	c->fd = -1;
	c->read_high = UINT32_MAX;
	list_init(&c->flush);
	list_init(&c->kick);
	c->in = c->out = l->no_data;
	return 0;
}

/* The read event is neither pending nor active here: a new conn, or one just detached. */
static int attach_fd(struct conn *c, int fd)
{
	c->fd = fd;
	c->close_only = false;
	/* With EV_CLOSED (epoll's RDHUP), a FIN behind unread bytes is seen (watch_close). */
	if (event_assign(c->rev, c->loop->base, fd, c->loop->read_flags, read_cb, c) < 0)
		return -1;
	c->rev_set = true;
	return 0;
}

int conn_init_fd(struct conn *c, struct loop *l, int fd, const struct conn_ops *ops,
                 union conn_event_space *rev_space)
{
	if (conn_init(c, l, ops, rev_space) < 0 || attach_fd(c, fd) < 0) {
		if (c->fd < 0)
			close(fd);
		return -1;
	}
	update_read_event(c);
	return 0;
}

bool conn_can_move(const struct conn *c)
{
	if (c->fd < 0 || c->halted || c->connecting || evbuffer_get_length(c->in) > 0 ||
	    evbuffer_get_length(c->out) > 0 || c->notify_drained)
		return false;
	/* Nothing read from the socket and not yet decrypted, a partial record included. */
	if (c->is_tls)
		return SSL_has_pending(bufferevent_openssl_get_ssl(c->tls)) == 0;
	return c->rev_set;
}

SSL *conn_detach(struct conn *c)
{
	SSL *ssl = NULL;

	if (c->is_tls) {
		/*
		 * Not BEV_OPT_CLOSE_ON_FREE (conn_start_tls): freeing the
		 * bufferevent leaves the socket and the SSL alone, so its
		 * deferred finalisation on this loop never touches them again
		 * while another loop uses them.
		 */
		ssl = bufferevent_openssl_get_ssl(c->tls);
		bufferevent_free(c->tls);
		c->tls = NULL;
		c->is_tls = false;
		if (list_linked(&c->kick))
			list_del(&c->kick);
	} else {
		drop_plain_events(c);
		park_buffer(c->loop, &c->in);
		park_buffer(c->loop, &c->out);
	}
	c->in = c->out = NULL;
	c->read_full = false;
	c->loop = NULL;
	return ssl;
}

void conn_close_detached(struct conn *c, SSL *ssl)
{
	SSL_free(ssl);
	close(c->fd);
	c->fd = -1;
}

int conn_attach(struct conn *c, struct loop *l, SSL *ssl)
{
	c->loop = l;
	c->in = c->out = l->no_data;
	if (ssl != NULL)
		return conn_start_tls(c, ssl, BUFFEREVENT_SSL_OPEN);
	if (attach_fd(c, c->fd) < 0)
		return -1;
	update_read_event(c);
	return 0;
}

int conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		c->error = errno;
		return -1;
	}
	if (attach_fd(c, fd) < 0)
		return -1;
	if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
		c->error = errno;
		return -1;
	}
	/* Done or not, writability says so: the owner hears CONN_CONNECTED from the loop. */
	c->connecting = true;
	return want_write(c);
}

static void tls_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	/* A kick (bufferevent_trigger) comes whether reading is enabled or not. */
	if (c->suspend == 0)
		c->ops->read(c);
}

static void tls_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->notify_drained && evbuffer_get_length(c->out) <= c->drained_at) {
		c->notify_drained = false;
		c->ops->drained(c);
	}
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		c->ops->event(c, CONN_CONNECTED);
		return;
	}
	conn_fail(c, (what & BEV_EVENT_EOF) ? CONN_EOF : CONN_ERROR, errno);
}

int conn_start_tls(struct conn *c, SSL *ssl, int state)
{
	/* Without BEV_OPT_CLOSE_ON_FREE: conn_release frees the SSL and closes the socket. */
	struct bufferevent *bev = bufferevent_openssl_socket_new(
	    c->loop->base, c->fd, ssl, (enum bufferevent_ssl_state)state, 0);

	if (bev == NULL) {
		SSL_free(ssl);
		return -1;
	}
	/* The socket is the bufferevent's now; the plain events and buffers go. */
	drop_plain_events(c);
	drop_buffer(c->loop, &c->in);
	drop_buffer(c->loop, &c->out);
	c->tls = bev;
	c->is_tls = true;
	c->in = bufferevent_get_input(bev);
	c->out = bufferevent_get_output(bev);
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	bufferevent_setcb(bev, tls_read_cb, tls_write_cb, tls_event_cb, c);
	conn_set_read_high(c, c->read_high);
	bufferevent_enable(bev, EV_WRITE);
	update_read_event(c);
	return 0;
}

void conn_suspend(struct conn *c, uint32_t reason)
{
	uint32_t before = c->suspend;

	c->suspend |= reason;
	/* Plain sockets stop lazily (read_cb); TLS ones may go from watching a close to not. */
	if (before == 0 || (c->is_tls && c->suspend != before))
		update_read_event(c);
}

void conn_resume(struct conn *c, uint32_t reason)
{
	if ((c->suspend & reason) == 0)
		return;
	c->suspend &= ~reason;
	if (c->suspend != 0) {
		if (c->is_tls)
			update_read_event(c);
		return;
	}
	update_read_event(c);
	conn_kick(c);
}

void conn_set_read_high(struct conn *c, size_t high)
{
	c->read_high = high < UINT32_MAX ? (uint32_t)high : UINT32_MAX;
	if (c->is_tls) {
		bufferevent_setwatermark(c->tls, EV_READ, 0,
		                         c->read_high == UINT32_MAX ? 0 : c->read_high);
		return;
	}
	if (evbuffer_get_length(c->in) >= high && !c->read_full) {
		c->read_full = true;
		update_read_event(c);
	} else {
		check_read_full(c);
	}
}

void conn_kick(struct conn *c)
{
	if (c->halted || evbuffer_get_length(c->in) == 0)
		return;
	if (c->is_tls) {
		bufferevent_trigger(c->tls, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
		return;
	}
	/*
	 * Not event_active() on the read event: an event that is active but not
	 * added ignores event_add, and a resume in between would lose it.
	 */
	if (!list_linked(&c->kick)) {
		if (list_empty(&c->loop->kick_list))
			event_active(c->loop->kicker, EV_READ, 0);
		list_add_tail(&c->loop->kick_list, &c->kick);
	}
}

void conn_notify_drained(struct conn *c, size_t level)
{
	c->notify_drained = true;
	c->drained_at = level < UINT32_MAX ? (uint32_t)level : UINT32_MAX;
	if (c->is_tls)
		bufferevent_setwatermark(c->tls, EV_WRITE, level, 0);
}

void conn_halt(struct conn *c)
{
	if (c->halted)
		return;
	c->halted = true;
	c->notify_drained = false;
	if (list_linked(&c->flush))
		list_del(&c->flush);
	if (list_linked(&c->kick))
		list_del(&c->kick);
	if (c->is_tls) {
		bufferevent_disable(c->tls, EV_READ | EV_WRITE);
		return;
	}
	if (c->rev_set)
		event_del(c->rev);
	if (c->wev != NULL)
		event_del(c->wev);
}

void conn_release(struct conn *c)
{
	if (c->loop == NULL)
		return; /* never initialised */
	if (list_linked(&c->flush))
		list_del(&c->flush);
	if (list_linked(&c->kick))
		list_del(&c->kick);
	if (c->is_tls) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->tls);

		bufferevent_free(c->tls);
		SSL_free(ssl);
		if (c->fd >= 0)
			close(c->fd);
		return;
	}
	unset_read_event(c);
	if (c->wev != NULL)
		event_free(c->wev);
	drop_buffer(c->loop, &c->in);
	drop_buffer(c->loop, &c->out);
	if (c->fd >= 0)
		close(c->fd);
}

int sockaddr_host(const struct sockaddr *sa, char *host, size_t len)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)len);
		return ntohs(in->sin_port);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)len);
		return ntohs(in6->sin6_port);
	}
	snprintf(host, len, "unix");
	return 0;
}
