/*
 * The shared listening connection of a pool; see listen.h.  Each operation
 * on it (LISTEN or UNLISTEN of one channel) is one Query, so every one gets
 * its own ReadyForQuery and an error belongs to exactly one channel: the
 * connection counts the Queries it sent and those answered, and a channel
 * is active once the Query that LISTENs it is answered without error.  A
 * client's LISTEN of a channel that is not active yet is answered only
 * then, so a NOTIFY sent after the client saw "LISTEN" always reaches it.
 */
#include "pool/listen.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "pool/client.h"
#include "pool/pool.h"
#include "pool/relay.h"
#include "pool/server.h"
#include "pool/worker.h"
#include "proto/build.h"
#include "proto/frame.h"
#include "proto/sqlscan.h"
#include "proto/sqlstate.h"

static void open_connection(struct listener *l);

static struct listener *listener_get(struct pool *p)
{
	struct listener *l = p->listen;

	if (l != NULL)
		return l;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->pool = p;
	list_init(&l->channels);
	list_init(&l->waiting);
	p->listen = l;
	return l;
}

static struct client_listen *client_listen_get(struct client *c)
{
	struct client_listen *cl = c->listen;

	if (cl != NULL)
		return cl;
	if ((cl = calloc(1, sizeof(*cl))) == NULL)
		return NULL;
	if ((cl->queue = evbuffer_new()) == NULL) {
		free(cl);
		return NULL;
	}
	list_init(&cl->subs);
	list_init(&cl->wait_node);
	cl->c = c;
	c->listen = cl;
	return cl;
}

static struct listen_channel *channel_find(const struct listener *l, const char *name)
{
	for (struct list_node *pos = l->channels.next; pos != &l->channels; pos = pos->next) {
		struct listen_channel *ch = list_entry(pos, struct listen_channel, node);

		if (strcmp(ch->name, name) == 0)
			return ch;
	}
	return NULL;
}

static bool ready(const struct listener *l)
{
	return l->server != NULL && l->server->state == SERVER_LISTENING;
}

/* One LISTEN or UNLISTEN as its own Query; returns its number on this connection. */
static uint64_t send_op(struct listener *l, const char *verb, const char *name)
{
	char sql[16 + 2 * LISTEN_NAME_MAX];
	size_t n = (size_t)snprintf(sql, sizeof(sql), "%s \"", verb);

	for (const char *p = name; *p != '\0'; p++) {
		if (*p == '"')
			sql[n++] = '"';
		sql[n++] = *p;
	}
	sql[n++] = '"';
	sql[n] = '\0';
	build_query(conn_out(&l->server->conn), sql);
	return ++l->sent_seq;
}

static struct listen_channel *channel_new(struct listener *l, const char *name)
{
	struct listen_channel *ch = calloc(1, sizeof(*ch));

	if (ch == NULL)
		return NULL;
	snprintf(ch->name, sizeof(ch->name), "%s", name);
	list_init(&ch->subs);
	list_add_tail(&l->channels, &ch->node);
	l->nchannels++;
	if (ready(l))
		ch->listen_seq = send_op(l, "LISTEN", name);
	return ch;
}

/* The last subscriber left: UNLISTEN it, or close the connection when no channel is left. */
static void channel_drop(struct listener *l, struct listen_channel *ch)
{
	list_del(&ch->node);
	l->nchannels--;
	if (l->nchannels > 0 && ready(l) && ch->listen_seq != 0)
		send_op(l, "UNLISTEN", ch->name);
	free(ch);
	if (l->nchannels > 0)
		return;
	if (l->retry_timer != NULL)
		evtimer_del(l->retry_timer);
	l->lost = false;
	if (l->server != NULL)
		server_close(l->server, "no client listens on any channel any more");
}

static void unsubscribe(struct listener *l, struct listen_sub *sub)
{
	struct listen_channel *ch = sub->ch;

	list_del(&sub->chan_node);
	list_del(&sub->client_node);
	free(sub);
	l->nsubs--;
	if (list_empty(&ch->subs))
		channel_drop(l, ch);
}

static struct listen_sub *find_sub(const struct client_listen *cl, const struct listen_channel *ch)
{
	for (struct list_node *pos = cl->subs.next; pos != &cl->subs; pos = pos->next) {
		struct listen_sub *sub = list_entry(pos, struct listen_sub, client_node);

		if (sub->ch == ch)
			return sub;
	}
	return NULL;
}

/* Between two requests of the client: an asynchronous message may be written now. */
static bool between_requests(const struct client *c)
{
	const struct server *s = c->server;

	if (c->state == CLIENT_IDLE || c->state == CLIENT_WAITING)
		return true;
	return c->state == CLIENT_ACTIVE && s != NULL && requests_count(&s->requests) == 0 &&
	       s->fwd_remaining == 0 && s->sync_pending == 0;
}

/* Its output is over the watermark: hear when it drains (client.c calls listen_flush). */
static bool output_full(struct client *c)
{
	if (evbuffer_get_length(c->conn.out) <= RELAY_HIGH_WATERMARK)
		return false;
	conn_notify_drained(&c->conn, RELAY_LOW_WATERMARK);
	return true;
}

void listen_flush(struct client *c)
{
	struct client_listen *cl = c->listen;

	if (cl->queued == 0 || !between_requests(c) || output_full(c))
		return;
	c->pool->stats.listen_delivered += cl->queued;
	evbuffer_add_buffer(conn_out(&c->conn), cl->queue);
	cl->queued = 0;
}

/*
 * A subscriber that takes no more: over listen_queue_size it is closed, since
 * holding more would cost unbounded memory and dropping some silently would
 * break what LISTEN promises.
 */
static void deliver(struct client *c, const void *msg, size_t len)
{
	struct client_listen *cl = c->listen;
	int cap = c->w->cfg->listen_queue_size;

	if (c->state == CLIENT_CLOSING)
		return;
	if (cl->queued == 0 && between_requests(c) && !output_full(c)) {
		evbuffer_add(conn_out(&c->conn), msg, len);
		c->pool->stats.listen_delivered++;
		return;
	}
	if (cl->queued >= (size_t)cap) {
		c->pool->stats.listen_dropped++;
		client_fail(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
		            "too many notifications waiting for this client: it did not read "
		            "them, and sluice holds at most listen_queue_size (%d)",
		            cap);
		return;
	}
	evbuffer_add(cl->queue, msg, len);
	cl->queued++;
}

/* A NoticeResponse, delivered like a notification (after those queued before it). */
static void tell(struct client *c, const char *text)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL)
		return;
	build_notice(b, SQLSTATE_WARNING, text);
	deliver(c, evbuffer_pullup(b, -1), evbuffer_get_length(b));
	evbuffer_free(b);
}

/* A notice for every subscriber of the listener, once per client. */
static void notice_all(struct listener *l, const char *text)
{
	struct list_node *cpos, *spos;

	for (cpos = l->channels.next; cpos != &l->channels; cpos = cpos->next) {
		struct listen_channel *ch = list_entry(cpos, struct listen_channel, node);

		for (spos = ch->subs.next; spos != &ch->subs; spos = spos->next) {
			struct listen_sub *sub = list_entry(spos, struct listen_sub, chan_node);

			/* Its first subscription in channel order is the one that tells it. */
			if (list_entry(sub->c->listen->subs.next, struct listen_sub, client_node)
			        ->ch == ch)
				tell(sub->c, text);
		}
	}
}

static void answer(struct client *c, const char *tag)
{
	struct evbuffer *out = conn_out(&c->conn);

	build_command_complete(out, tag);
	build_ready(out, 'I');
}

static void stop_waiting(struct client *c)
{
	struct client_listen *cl = c->listen;

	list_del(&cl->wait_node);
	cl->wait_ch = NULL;
	conn_resume(&c->conn, SUSPEND_LISTEN);
	client_kick(c);
}

/* A waiting LISTEN that cannot be done: the client gets the error, its request is over. */
static void refuse_waiter(struct listener *l, struct client *c, const char *sqlstate,
                          const char *msg)
{
	struct listen_sub *sub = find_sub(c->listen, c->listen->wait_ch);
	struct evbuffer *out = conn_out(&c->conn);

	build_error(out, "ERROR", sqlstate, msg, NULL);
	build_ready(out, 'I');
	stop_waiting(c);
	if (sub != NULL)
		unsubscribe(l, sub);
}

static void confirm_waiters(struct listener *l)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &l->waiting)
	{
		struct client_listen *cl = list_entry(pos, struct client_listen, wait_node);

		if (cl->wait_ch->active) {
			answer(cl->c, "LISTEN");
			stop_waiting(cl->c);
		}
	}
}

/* Postgres refused to LISTEN on the channel: every subscriber learns it, the channel goes. */
static void fail_channel(struct listener *l, struct listen_channel *ch)
{
	char msg[512];
	struct list_node *pos, *tmp;

	slog(l->server, LOG_WARN, "LISTEN \"%s\" failed: %s", ch->name, l->error);
	snprintf(msg, sizeof(msg), "sluice could not LISTEN on channel \"%s\": %s", ch->name,
	         l->error);
	ch->listen_seq = 0; /* no UNLISTEN for it */
	list_for_each_safe(pos, tmp, &ch->subs)
	{
		struct listen_sub *sub = list_entry(pos, struct listen_sub, chan_node);
		struct client *c = sub->c;

		if (c->listen->wait_ch == ch) {
			refuse_waiter(l, c, l->error_state, msg);
			continue;
		}
		tell(c, msg);
		unsubscribe(l, sub);
	}
}

/* A ReadyForQuery on the listening connection: one more Query answered. */
static void op_done(struct listener *l)
{
	uint64_t seq = ++l->done_seq;
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &l->channels)
	{
		struct listen_channel *ch = list_entry(pos, struct listen_channel, node);

		if (ch->listen_seq != seq)
			continue;
		if (l->failed)
			fail_channel(l, ch);
		else
			ch->active = true;
	}
	l->failed = false;
	confirm_waiters(l);
	if (l->lost && seq == l->relisten_seq) {
		l->lost = false;
		notice_all(l, "sluice's listening connection to the server was lost and has been "
		              "opened again: notifications sent meanwhile may have been missed");
	}
}

static void record_error(struct listener *l, const uint8_t *body, size_t len)
{
	const char *state = msg_error_field(body, len, 'C');
	const char *msg = msg_error_field(body, len, 'M');

	l->failed = true;
	snprintf(l->error_state, sizeof(l->error_state), "%s",
	         state != NULL ? state : SQLSTATE_INTERNAL_ERROR);
	snprintf(l->error, sizeof(l->error), "%s", msg != NULL ? msg : "unknown error");
}

/* NotificationResponse: pid, channel, payload.  Copied whole to each subscriber. */
static void fan_out(struct listener *l, const uint8_t *frame, size_t total)
{
	struct listen_channel *ch;
	struct msg_reader r;
	const char *name;
	struct list_node *pos, *tmp;

	msg_reader_init(&r, frame + FRAME_HEADER_LEN, total - FRAME_HEADER_LEN);
	msg_read_u32(&r);
	name = msg_read_cstr(&r);
	if (name == NULL || (ch = channel_find(l, name)) == NULL)
		return;
	l->pool->stats.listen_notifications++;
	list_for_each_safe(pos, tmp, &ch->subs)
	    deliver(list_entry(pos, struct listen_sub, chan_node)->c, frame, total);
}

void listen_server_input(struct server *s)
{
	struct listener *l = s->listener;
	struct evbuffer *in = s->conn.in;
	struct frame f;

	while (l->server == s && s->state == SERVER_LISTENING) {
		enum frame_status st = frame_peek(in, &f, (uint32_t)s->w->cfg->max_packet_size);
		const uint8_t *frame;

		if (st == FRAME_INVALID) {
			server_close(s, "invalid message on the listening connection");
			return;
		}
		if (st == FRAME_INCOMPLETE || evbuffer_get_length(in) < frame_total(&f))
			return;
		frame = evbuffer_pullup(in, (ev_ssize_t)frame_total(&f));
		if (f.type == 'A')
			fan_out(l, frame, frame_total(&f));
		else if (f.type == 'E')
			record_error(l, frame + FRAME_HEADER_LEN, f.len - 4);
		else if (f.type == 'Z')
			op_done(l);
		evbuffer_drain(in, frame_total(&f));
	}
}

void listen_server_ready(struct server *s)
{
	struct listener *l = s->listener;
	struct list_node *pos;

	if (l->server != s || l->nchannels == 0) {
		server_close(s, "no client listens any more");
		return;
	}
	server_set_state(s, SERVER_LISTENING);
	l->listening = true;
	l->sent_seq = l->done_seq = 0;
	for (pos = l->channels.next; pos != &l->channels; pos = pos->next) {
		struct listen_channel *ch = list_entry(pos, struct listen_channel, node);

		ch->listen_seq = send_op(l, "LISTEN", ch->name);
	}
	l->relisten_seq = l->sent_seq;
	slog(s, LOG_INFO, "listening on %d channel%s for %d subscription%s", l->nchannels,
	     l->nchannels == 1 ? "" : "s", l->nsubs, l->nsubs == 1 ? "" : "s");
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	if (l->server == NULL && l->nchannels > 0 && !l->pool->pause_closes)
		open_connection(l);
}

/* No listening connection could be had: the LISTENs waiting for one fail, the rest retry. */
static void attempt_failed(struct listener *l, const char *sqlstate, const char *why)
{
	int64_t us = l->pool->w->cfg->server_login_retry_us;
	struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
	char msg[512];
	struct list_node *pos, *tmp;

	snprintf(msg, sizeof(msg), "sluice could not open its listening connection: %s", why);
	list_for_each_safe(pos, tmp, &l->waiting)
	{
		struct client_listen *cl = list_entry(pos, struct client_listen, wait_node);

		refuse_waiter(l, cl->c, sqlstate, msg);
	}
	if (l->nchannels == 0)
		return;
	if (us < 1000000)
		tv = (struct timeval){.tv_sec = 1};
	if (l->retry_timer == NULL &&
	    (l->retry_timer = evtimer_new(l->pool->w->loop.base, retry_cb, l)) == NULL)
		return;
	evtimer_add(l->retry_timer, &tv);
}

static void open_connection(struct listener *l)
{
	struct pool *p = l->pool;
	struct server *s = pool_open_listener(p, l);

	if (s == NULL) {
		attempt_failed(l, SQLSTATE_TOO_MANY_CONNECTIONS,
		               "no server connection may be opened now (a connection limit, or no "
		               "usable host)");
		return;
	}
	if (s->state != SERVER_CLOSING)
		l->server = s;
}

void listen_server_gone(struct server *s)
{
	struct listener *l = s->listener;
	bool was_ready = l->server == s && l->listening;
	struct list_node *pos;

	if (l->server == s) {
		l->server = NULL;
		l->listening = false;
	}
	for (pos = l->channels.next; pos != &l->channels; pos = pos->next) {
		struct listen_channel *ch = list_entry(pos, struct listen_channel, node);

		ch->listen_seq = 0;
		ch->active = false;
	}
	l->failed = false;
	if (l->nchannels == 0)
		return;
	if (was_ready) {
		l->lost = true;
		l->pool->stats.listen_lost++;
	}
	/* PAUSE: opened again (and subscribers told) at RESUME; LISTENs wait until then. */
	if (l->pool->pause_closes)
		return;
	if (was_ready) {
		open_connection(l);
		return;
	}
	attempt_failed(l,
	               l->pool->last_error_state[0] ? l->pool->last_error_state
	                                            : SQLSTATE_CONNECTION_FAILURE,
	               l->pool->last_error[0] ? l->pool->last_error : "the login failed");
}

/* A lone "LISTEN name", "UNLISTEN name" or "UNLISTEN *" (a trailing ';' allowed). */
static bool parse_lone(const char *text, size_t n, enum sql_verb verb, char *name, bool *all)
{
	size_t kw = verb == SQL_VERB_LISTEN ? 6 : 8;
	size_t i = sqlscan_skip_space(text, n, 0), end;

	if (i + kw > n || !((text[i] | 0x20) == 'l' || (text[i] | 0x20) == 'u'))
		return false;
	i = sqlscan_skip_space(text, n, i + kw);
	*all = verb == SQL_VERB_UNLISTEN && i < n && text[i] == '*';
	if (*all)
		end = i + 1;
	else if ((end = sqlscan_name(text, n, NULL, name, LISTEN_NAME_MAX)) == 0)
		return false;
	end = sqlscan_skip_space(text, n, end);
	if (end < n && text[end] == ';')
		end = sqlscan_skip_space(text, n, end + 1);
	return end == n || (end + 1 == n && text[end] == '\0');
}

static void unlisten(struct client *c, const char *name)
{
	struct client_listen *cl = c->listen;
	struct list_node *pos, *tmp;

	if (cl == NULL)
		return;
	list_for_each_safe(pos, tmp, &cl->subs)
	{
		struct listen_sub *sub = list_entry(pos, struct listen_sub, client_node);

		if (name == NULL || strcmp(sub->ch->name, name) == 0)
			unsubscribe(c->pool->listen, sub);
	}
}

static enum listen_result listen_on(struct client *c, const char *name, size_t total)
{
	struct listener *l = listener_get(c->pool);
	struct client_listen *cl = l != NULL ? client_listen_get(c) : NULL;
	struct listen_channel *ch;
	struct listen_sub *sub;

	if (cl == NULL || (sub = calloc(1, sizeof(*sub))) == NULL)
		return LISTEN_PASS; /* out of memory: the server LISTENs, and pins */
	evbuffer_drain(c->conn.in, total);
	if ((ch = channel_find(l, name)) != NULL && find_sub(cl, ch) != NULL) {
		free(sub);
	} else if (ch == NULL && (ch = channel_new(l, name)) == NULL) {
		free(sub);
		build_error(conn_out(&c->conn), "ERROR", SQLSTATE_INTERNAL_ERROR, "out of memory",
		            NULL);
		build_ready(conn_out(&c->conn), 'I');
		return LISTEN_DONE;
	} else {
		sub->ch = ch;
		sub->c = c;
		list_add_tail(&ch->subs, &sub->chan_node);
		list_add_tail(&cl->subs, &sub->client_node);
		l->nsubs++;
	}
	if (ch->active) {
		answer(c, "LISTEN");
		return LISTEN_DONE;
	}
	cl->wait_ch = ch;
	list_add_tail(&l->waiting, &cl->wait_node);
	conn_suspend(&c->conn, SUSPEND_LISTEN);
	if (l->server == NULL && !c->pool->pause_closes &&
	    (l->retry_timer == NULL || !evtimer_pending(l->retry_timer, NULL)))
		open_connection(l);
	/* Refused at once when no connection could even be started. */
	return cl->wait_ch != NULL ? LISTEN_WAIT : LISTEN_DONE;
}

enum listen_result listen_client_query(struct client *c, const char *text, size_t n, size_t total)
{
	enum sql_verb verb = sqlscan_verb(text, n);
	char name[LISTEN_NAME_MAX];
	bool all;

	if ((verb != SQL_VERB_LISTEN && verb != SQL_VERB_UNLISTEN) ||
	    !parse_lone(text, n, verb, name, &all))
		return LISTEN_PASS;
	if (verb == SQL_VERB_LISTEN)
		return listen_on(c, name, total);
	evbuffer_drain(c->conn.in, total);
	unlisten(c, all ? NULL : name);
	answer(c, "UNLISTEN");
	return LISTEN_DONE;
}

void listen_client_gone(struct client *c)
{
	struct client_listen *cl = c->listen;

	if (list_linked(&cl->wait_node))
		list_del(&cl->wait_node);
	cl->wait_ch = NULL;
	if (!list_empty(&cl->subs))
		unlisten(c, NULL);
	evbuffer_free(cl->queue);
	free(cl);
	c->listen = NULL;
}

void listen_pool_paused(struct pool *p)
{
	struct listener *l = p->listen;

	if (p->pause_closes && l->server != NULL)
		server_close(l->server, "pool paused");
	else if (!p->paused && l->server == NULL && l->nchannels > 0)
		open_connection(l);
}

void listen_pool_free(struct pool *p)
{
	struct listener *l = p->listen;
	struct list_node *pos, *tmp, *spos, *stmp;

	if (l == NULL)
		return;
	list_for_each_safe(pos, tmp, &l->waiting) list_del(pos);
	list_for_each_safe(pos, tmp, &l->channels)
	{
		struct listen_channel *ch = list_entry(pos, struct listen_channel, node);

		list_for_each_safe(spos, stmp, &ch->subs)
		{
			struct listen_sub *sub = list_entry(spos, struct listen_sub, chan_node);

			list_del(&sub->client_node);
			free(sub);
		}
		free(ch);
	}
	list_init(&l->channels);
	l->nchannels = 0;
	if (l->server != NULL) {
		struct server *s = l->server;

		server_close(s, "its pool is freed");
		s->listener = NULL;
	}
	if (l->retry_timer != NULL)
		event_free(l->retry_timer);
	free(l);
	p->listen = NULL;
}
