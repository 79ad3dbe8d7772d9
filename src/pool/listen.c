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
#include "proto/msgview.h"
#include "proto/sqlscan.h"
#include "proto/sqlstate.h"

static void open_connection(struct listener *l);

/*
 * Channels one client may have sluice LISTEN on for it (its subscriptions
 * and the LISTENs of its open transaction together): each costs sluice
 * memory.  Past it a LISTEN goes to the client's server as written and
 * pins it, as Postgres' own.
 */
#define LISTEN_CHANNELS_MAX 1024

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
	if ((cl->queue = evbuffer_new()) == NULL || (cl->ops = evbuffer_new()) == NULL ||
	    (cl->pending = evbuffer_new()) == NULL) {
		if (cl->ops != NULL)
			evbuffer_free(cl->ops);
		if (cl->queue != NULL)
			evbuffer_free(cl->queue);
		free(cl);
		return NULL;
	}
	list_init(&cl->subs);
	list_init(&cl->wait_node);
	list_init(&cl->stmts);
	list_init(&cl->portals);
	cl->c = c;
	c->listen = cl;
	return cl;
}

static uint32_t channel_bucket(const struct listener *l, const char *name)
{
	return (uint32_t)hash_keyed(&l->key, name, strlen(name)) & (l->nbuckets - 1);
}

static struct listen_channel *channel_find(const struct listener *l, const char *name)
{
	if (l->nbuckets == 0)
		return NULL;
	for (struct listen_channel *ch = l->buckets[channel_bucket(l, name)]; ch != NULL;
	     ch = ch->hash_next)
		if (strcmp(ch->name, name) == 0)
			return ch;
	return NULL;
}

/* Room for one more channel: the table doubles past one channel per bucket. */
static int channels_reserve(struct listener *l)
{
	uint32_t size = l->nbuckets == 0 ? 16 : l->nbuckets * 2;
	struct listen_channel **old = l->buckets;
	uint32_t old_size = l->nbuckets;

	if ((uint32_t)l->nchannels < l->nbuckets)
		return 0;
	if (!l->key.drawn)
		hash_key_draw(&l->key);
	if ((l->buckets = calloc(size, sizeof(*l->buckets))) == NULL) {
		l->buckets = old;
		return -1;
	}
	l->nbuckets = size;
	for (uint32_t i = 0; i < old_size; i++) {
		struct listen_channel *ch = old[i], *next;

		for (; ch != NULL; ch = next) {
			uint32_t b = channel_bucket(l, ch->name);

			next = ch->hash_next;
			ch->hash_next = l->buckets[b];
			l->buckets[b] = ch;
		}
	}
	free(old);
	return 0;
}

static void channel_unhash(struct listener *l, struct listen_channel *ch)
{
	struct listen_channel **slot = &l->buckets[channel_bucket(l, ch->name)];

	while (*slot != ch)
		slot = &(*slot)->hash_next;
	*slot = ch->hash_next;
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
	struct listen_channel *ch;
	uint32_t b;

	if (channels_reserve(l) < 0 || (ch = calloc(1, sizeof(*ch))) == NULL)
		return NULL;
	snprintf(ch->name, sizeof(ch->name), "%s", name);
	list_init(&ch->subs);
	list_add_tail(&l->channels, &ch->node);
	b = channel_bucket(l, ch->name);
	ch->hash_next = l->buckets[b];
	l->buckets[b] = ch;
	l->nchannels++;
	if (ready(l))
		ch->listen_seq = send_op(l, "LISTEN", name);
	return ch;
}

/* The last subscriber left: UNLISTEN it, or close the connection when no channel is left. */
static void channel_drop(struct listener *l, struct listen_channel *ch)
{
	list_del(&ch->node);
	channel_unhash(l, ch);
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
	sub->c->listen->nsubs--;
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
		/* An error in the middle of a row being streamed to it would be read as the row. */
		if (c->server != NULL && c->server->fwd_remaining > 0)
			client_close(c, "too many notifications waiting (listen_queue_size)");
		else
			client_fail(
			    c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
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

/* What a waiting client gets once its channel is active. */
static void answer_waiter(struct client *c)
{
	struct evbuffer *out = conn_out(&c->conn);

	if (c->listen->wait_tag)
		build_command_complete(out, "LISTEN");
	build_ready(out, c->listen->wait_status);
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
	build_ready(out, c->listen->wait_status);
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
			answer_waiter(cl->c);
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
	bool retired = l->server == s && l->retiring;
	struct list_node *pos;

	if (l->server == s) {
		l->server = NULL;
		l->listening = false;
		l->retiring = false;
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
	/* Retired while still logging in: not a failed login, its waiters wait on. */
	if (was_ready || retired) {
		open_connection(l);
		return;
	}
	attempt_failed(l,
	               l->pool->last_error_state[0] ? l->pool->last_error_state
	                                            : SQLSTATE_CONNECTION_FAILURE,
	               l->pool->last_error[0] ? l->pool->last_error : "the login failed");
}

/*
 * "LISTEN name", "UNLISTEN name" or "UNLISTEN *" at the start of `text` (n
 * bytes): fills `op` and `*kw` (the keyword's offset) and returns the offset
 * past it and the spaces after it, or 0 when sluice cannot follow it (a name
 * longer than 63 bytes is left to the server, which truncates it).
 */
static size_t parse_op(const char *text, size_t n, enum sql_verb verb, struct listen_op *op,
                       size_t *kw)
{
	size_t len = verb == SQL_VERB_LISTEN ? 6 : 8;
	size_t i = sqlscan_skip_space(text, n, 0), end;

	if (i + len > n || !((text[i] | 0x20) == 'l' || (text[i] | 0x20) == 'u'))
		return 0;
	*kw = i;
	i = sqlscan_skip_space(text, n, i + len);
	op->verb = verb == SQL_VERB_LISTEN ? LISTEN_OP_LISTEN : LISTEN_OP_UNLISTEN;
	op->all = verb == SQL_VERB_UNLISTEN && i < n && text[i] == '*';
	op->name[0] = '\0';
	if (op->all)
		end = i + 1;
	else if ((end = sqlscan_name(text, n, NULL, op->name, LISTEN_NAME_MAX)) == 0)
		return 0;
	return sqlscan_skip_space(text, n, end);
}

/* One statement alone: a trailing ';' and the Query's NUL allowed. */
static bool parse_lone(const char *text, size_t n, enum sql_verb verb, struct listen_op *op,
                       size_t *kw)
{
	size_t end = parse_op(text, n, verb, op, kw);

	if (end == 0)
		return false;
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

/* Subscribes the client to channel `name`: the channel, or NULL when out of memory. */
static struct listen_channel *subscribe(struct client *c, const char *name)
{
	struct listener *l = listener_get(c->pool);
	struct client_listen *cl = l != NULL ? client_listen_get(c) : NULL;
	struct listen_channel *ch;
	struct listen_sub *sub;

	if (cl == NULL)
		return NULL;
	if ((ch = channel_find(l, name)) != NULL && find_sub(cl, ch) != NULL)
		return ch;
	if ((sub = calloc(1, sizeof(*sub))) == NULL)
		return NULL;
	if (ch == NULL && (ch = channel_new(l, name)) == NULL) {
		free(sub);
		return NULL;
	}
	sub->ch = ch;
	sub->c = c;
	list_add_tail(&ch->subs, &sub->chan_node);
	list_add_tail(&cl->subs, &sub->client_node);
	cl->nsubs++;
	l->nsubs++;
	return ch;
}

/* A channel needs the listening connection: open it unless that is under way or paused. */
static void ensure_open(struct listener *l)
{
	if (l->server == NULL && !l->pool->pause_closes &&
	    (l->retry_timer == NULL || !evtimer_pending(l->retry_timer, NULL)))
		open_connection(l);
}

/*
 * The client's answer (`tag`: CommandComplete LISTEN first; ReadyForQuery
 * `status`) waits until `ch` is active.  Returns false when it was refused
 * at once, no connection being possible: the error is written.
 */
static bool wait_for(struct client *c, struct listen_channel *ch, bool tag, char status)
{
	struct client_listen *cl = c->listen;

	cl->wait_ch = ch;
	cl->wait_tag = tag;
	cl->wait_status = status;
	list_add_tail(&c->pool->listen->waiting, &cl->wait_node);
	conn_suspend(&c->conn, SUSPEND_LISTEN);
	ensure_open(c->pool->listen);
	return cl->wait_ch != NULL;
}

/* Whether `more` LISTENs would take the client past LISTEN_CHANNELS_MAX. */
static bool channels_full(const struct client_listen *cl, int more)
{
	size_t ops = (evbuffer_get_length(cl->ops) + evbuffer_get_length(cl->pending)) /
	             sizeof(struct listen_op);

	return (size_t)cl->nsubs + ops + (size_t)more > LISTEN_CHANNELS_MAX;
}

static enum listen_result listen_on(struct client *c, const char *name, size_t total)
{
	struct listen_channel *ch;

	if (listener_get(c->pool) == NULL || client_listen_get(c) == NULL)
		return LISTEN_PASS; /* out of memory: the server LISTENs, and pins */
	if (channels_full(c->listen, 1) &&
	    ((ch = channel_find(c->pool->listen, name)) == NULL || find_sub(c->listen, ch) == NULL))
		return LISTEN_PASS; /* and query_message leaves it as it is */
	evbuffer_drain(c->conn.in, total);
	if ((ch = subscribe(c, name)) == NULL) {
		build_error(conn_out(&c->conn), "ERROR", SQLSTATE_INTERNAL_ERROR, "out of memory",
		            NULL);
		build_ready(conn_out(&c->conn), 'I');
		return LISTEN_DONE;
	}
	if (ch->active) {
		answer(c, "LISTEN");
		return LISTEN_DONE;
	}
	return wait_for(c, ch, true, 'I') ? LISTEN_WAIT : LISTEN_DONE;
}

enum listen_result listen_client_query(struct client *c, const char *text, size_t n,
                                       enum sql_verb verb, size_t total)
{
	struct listen_op op;
	size_t kw;

	if ((verb != SQL_VERB_LISTEN && verb != SQL_VERB_UNLISTEN) ||
	    !parse_lone(text, n, verb, &op, &kw))
		return LISTEN_PASS;
	if (verb == SQL_VERB_LISTEN)
		return listen_on(c, op.name, total);
	evbuffer_drain(c->conn.in, total);
	unlisten(c, op.all ? NULL : op.name);
	answer(c, "UNLISTEN");
	return LISTEN_DONE;
}

/* LISTEN / UNLISTEN on the client's server --------------------------------- */

/* Statements and portals a client may have sluice follow: past this, LISTEN pins. */
#define LISTEN_STMTS_MAX 64
/* LISTEN / UNLISTEN statements in one Query sluice follows: past this, they pin. */
#define LISTEN_QUERY_OPS_MAX 16

bool listen_wants_tags(const struct client *c)
{
	const struct client_listen *cl = c->listen;

	return evbuffer_get_length(cl->ops) > 0 || evbuffer_get_length(cl->pending) > 0;
}

static struct listen_stmt *stmt_find(struct list_node *list, const char *name)
{
	for (struct list_node *pos = list->next; pos != list; pos = pos->next) {
		struct listen_stmt *st = list_entry(pos, struct listen_stmt, node);

		if (strcmp(st->name, name) == 0)
			return st;
	}
	return NULL;
}

static void stmt_free(struct client_listen *cl, struct listen_stmt *st)
{
	list_del(&st->node);
	free(st);
	cl->nstmts--;
}

static void stmt_forget(struct client_listen *cl, struct list_node *list, const char *name)
{
	struct listen_stmt *st = stmt_find(list, name);

	if (st != NULL)
		stmt_free(cl, st);
}

/* Names longer than 63 bytes are cut there, as Postgres keys its statements and portals. */
static void short_name(char out[LISTEN_NAME_MAX], const char *name)
{
	snprintf(out, LISTEN_NAME_MAX, "%s", name);
}

/* Returns false when there is no room: the statement is not followed. */
static bool stmt_set(struct client_listen *cl, struct list_node *list, const char *name,
                     const struct listen_op *op)
{
	char key[LISTEN_NAME_MAX];
	struct listen_stmt *st;

	short_name(key, name);
	if ((st = stmt_find(list, key)) == NULL) {
		/* Portals end with their transaction: the oldest makes room. */
		if (cl->nstmts >= LISTEN_STMTS_MAX && list == &cl->portals && !list_empty(list))
			stmt_free(cl, list_entry(list->next, struct listen_stmt, node));
		if (cl->nstmts >= LISTEN_STMTS_MAX || (st = calloc(1, sizeof(*st))) == NULL)
			return false;
		memcpy(st->name, key, sizeof(key));
		list_add_tail(list, &st->node);
		cl->nstmts++;
	}
	st->op = *op;
	return true;
}

static void stmts_clear(struct list_node *list, struct client_listen *cl)
{
	while (!list_empty(list))
		stmt_free(cl, list_entry(list->next, struct listen_stmt, node));
}

/*
 * The whole message, contiguous, or NULL when it is longer than
 * LISTEN_WHOLE_MAX: the relay's view made it contiguous when it was all here.
 */
static const char *whole_message(const struct msgview *v, const struct frame *f)
{
	return v->whole && frame_total(f) <= LISTEN_WHOLE_MAX ? v->msg : NULL;
}

/*
 * Rewrites the message at the head of the client's input: "UN" goes in
 * front of each LISTEN keyword (at[i], offsets in the message), so the
 * server runs UNLISTEN, a no-op on a backend that never LISTENed.  The
 * relay's view of it points into the old bytes: it is read again.
 */
static bool insert_un(struct client *c, struct frame *f, struct msgview *v, const size_t *at, int n)
{
	struct evbuffer *in = c->conn.in, *b = evbuffer_new();
	const char *msg = (const char *)evbuffer_pullup(in, (ev_ssize_t)frame_total(f));
	uint32_t len = f->len + 2 * (uint32_t)n;
	uint8_t head[FRAME_HEADER_LEN] = {f->type, (uint8_t)(len >> 24), (uint8_t)(len >> 16),
	                                  (uint8_t)(len >> 8), (uint8_t)len};
	size_t from = FRAME_HEADER_LEN;

	if (b == NULL)
		return false;
	evbuffer_add(b, head, sizeof(head));
	for (int i = 0; i < n; i++) {
		evbuffer_add(b, msg + from, at[i] - from);
		evbuffer_add(b, "UN", 2);
		from = at[i];
	}
	evbuffer_add(b, msg + from, frame_total(f) - from);
	evbuffer_drain(in, frame_total(f));
	evbuffer_prepend_buffer(in, b);
	evbuffer_free(b);
	f->len = len;
	msgview_read(v, in, f, RELAY_WHOLE_MAX);
	return true;
}

/* Queues the ops of one request, closed by an END. */
static void push_ops(struct client_listen *cl, const struct listen_op *ops, int n)
{
	struct listen_op end = {.verb = LISTEN_OP_END};

	evbuffer_add(cl->ops, ops, (size_t)n * sizeof(*ops));
	evbuffer_add(cl->ops, &end, sizeof(end));
}

static bool may_follow(const struct client *c)
{
	return !c->server->requests.skip_to_sync && client_listen_get((struct client *)c) != NULL;
}

/* A Parse: remember what its statement is; a LISTEN is sent as UNLISTEN. */
static uint8_t parse_message(struct client *c, struct frame *f, struct msgview *v)
{
	const char *msg = whole_message(v, f), *name, *text;
	size_t name_len, text_len, kw, at;
	struct client_listen *cl = c->listen;
	struct listen_op op;
	enum sql_verb verb;

	if (msg == NULL) {
		char head[FRAME_HEADER_LEN + LISTEN_NAME_MAX];
		size_t got;

		/* A long text is no LISTEN sluice follows, but it may replace one. */
		if (cl == NULL || cl->nstmts == 0)
			return 'P';
		got = (size_t)evbuffer_copyout(c->conn.in, head, sizeof(head));
		if (got > FRAME_HEADER_LEN &&
		    memchr(head + FRAME_HEADER_LEN, '\0', got - FRAME_HEADER_LEN) != NULL)
			stmt_forget(cl, &cl->stmts, head + FRAME_HEADER_LEN);
		return 'P';
	}
	name = msg + FRAME_HEADER_LEN;
	name_len = strnlen(name, f->len - 4);
	if (name_len + 1 >= f->len - 4)
		return 'P'; /* malformed: the server says so */
	text = name + name_len + 1;
	/* The first word (the view's) before the text's length: most Parses go no further. */
	verb = v->verb;
	if (verb != SQL_VERB_LISTEN && verb != SQL_VERB_UNLISTEN) {
		if (cl != NULL && cl->nstmts > 0) {
			char key[LISTEN_NAME_MAX];

			short_name(key, name);
			stmt_forget(cl, &cl->stmts, key);
		}
		return 'P';
	}
	if (!may_follow(c))
		return 'P';
	cl = c->listen;
	if (verb == SQL_VERB_LISTEN && channels_full(cl, 1)) {
		char key[LISTEN_NAME_MAX];

		short_name(key, name);
		stmt_forget(cl, &cl->stmts, key);
		return 'P'; /* run as sent: the server LISTENs, and pins */
	}
	text_len = strnlen(text, f->len - 4 - name_len - 1);
	if (!parse_lone(text, text_len, verb, &op, &kw))
		op.verb = LISTEN_OP_OTHER; /* the server runs it as sent */
	if (!stmt_set(cl, &cl->stmts, name, &op))
		return 'P'; /* no room to follow it: it runs as sent, and pins */
	at = FRAME_HEADER_LEN + name_len + 1 + kw;
	if (op.verb == LISTEN_OP_LISTEN && !insert_un(c, f, v, &at, 1))
		stmt_set(cl, &cl->stmts, name, &(struct listen_op){.verb = LISTEN_OP_OTHER});
	return 'P';
}

struct query_ops {
	const char *text;                           /* the Query's text */
	struct listen_op ops[LISTEN_QUERY_OPS_MAX]; /* its LISTEN / UNLISTEN statements */
	size_t at[LISTEN_QUERY_OPS_MAX];            /* where each LISTEN keyword is */
	int n, nlisten;                             /* ops, and LISTENs among them */
	bool over;                                  /* more than LISTEN_QUERY_OPS_MAX */
};

static void query_statement(void *arg, const char *stmt, size_t len)
{
	struct query_ops *q = arg;
	enum sql_verb verb = sqlscan_verb(stmt, len);
	struct listen_op *op = &q->ops[q->n];
	size_t kw;

	if (verb != SQL_VERB_LISTEN && verb != SQL_VERB_UNLISTEN)
		return;
	if (q->n == LISTEN_QUERY_OPS_MAX) {
		q->over = true;
		return;
	}
	if (parse_op(stmt, len, verb, op, &kw) != len)
		op->verb = LISTEN_OP_OTHER;
	if (op->verb == LISTEN_OP_LISTEN)
		q->at[q->nlisten++] = (size_t)(stmt - q->text) + kw;
	q->n++;
}

/*
 * A Query: only one whose first statement is a LISTEN / UNLISTEN, or that
 * has a ';' before its end and the word "listen", is read further.  One
 * that prepared.c rewrites (SQL PREPARE, EXECUTE, ...) is left as it is.
 */
static uint8_t query_message(struct client *c, struct frame *f, struct msgview *v)
{
	const char *msg = whole_message(v, f), *text, *semi;
	struct server *s = c->server;
	struct query_ops q;
	enum sql_verb verb;
	size_t n;

	if (msg == NULL)
		return 'Q';
	text = msg + FRAME_HEADER_LEN;
	/* Its NUL ends it; without one Postgres refuses the message anyway. */
	n = f->len - 4 - (f->len > 4 && text[f->len - 5] == '\0');
	/*
	 * The view read the keyword up to the NUL: a text that is the keyword
	 * alone ("LISTEN") is one there and not here, where the NUL is left out.
	 */
	verb = v->verb;
	if ((verb == SQL_VERB_LISTEN || verb == SQL_VERB_UNLISTEN) && n < v->n)
		verb = sqlscan_verb(text, n);
	if (verb != SQL_VERB_LISTEN && verb != SQL_VERB_UNLISTEN &&
	    ((semi = memchr(text, ';', n)) == NULL ||
	     sqlscan_skip_space(text, n, (size_t)(semi + 1 - text)) >= n ||
	     !sqlscan_contains(text, n, "listen")))
		return 'Q';
	q.text = text;
	q.n = q.nlisten = 0;
	q.over = false;
	/* A LISTEN left as it is makes the server LISTEN: the read-back pins it. */
	if (verb == SQL_VERB_PREPARE || verb == SQL_VERB_EXECUTE || verb == SQL_VERB_DEALLOCATE ||
	    verb == SQL_VERB_EXPLAIN || verb == SQL_VERB_CREATE ||
	    sqlscan_statements(text, n, query_statement, &q) < 0 || q.over || !may_follow(c) ||
	    channels_full(c->listen, q.nlisten)) {
		s->params_dirty = true;
		return 'Q';
	}
	if (q.n == 0)
		return 'Q';
	for (int i = 0; i < q.nlisten; i++)
		q.at[i] += FRAME_HEADER_LEN;
	if (q.nlisten > 0 && !insert_un(c, f, v, q.at, q.nlisten)) {
		s->params_dirty = true;
		return 'Q';
	}
	for (int i = 0; i < q.n; i++)
		if (q.ops[i].verb == LISTEN_OP_OTHER)
			s->params_dirty = true;
	push_ops(c->listen, q.ops, q.n);
	return REQ_LISTEN_QUERY;
}

/*
 * The two names at the start of a Bind (portal, statement) or the one of an
 * Execute, or after the first byte (`skip`) of a Close.
 */
static bool read_names(struct client *c, const struct frame *f, size_t skip, char *a, char *b)
{
	char buf[FRAME_HEADER_LEN + 1 + 2 * 1024];
	size_t got = (size_t)evbuffer_copyout(c->conn.in, buf, sizeof(buf) - 1), len;
	const char *p = buf + FRAME_HEADER_LEN + skip;

	if (got > frame_total(f))
		got = frame_total(f);
	buf[got] = '\0';
	if ((len = strnlen(p, (size_t)(buf + got - p))) == (size_t)(buf + got - p))
		return false;
	short_name(a, p);
	if (b == NULL)
		return true;
	p += len + 1;
	if (p >= buf + got || strnlen(p, (size_t)(buf + got - p)) == (size_t)(buf + got - p))
		return false;
	short_name(b, p);
	return true;
}

uint8_t listen_client_message(struct client *c, struct frame *f, struct msgview *v)
{
	struct client_listen *cl = c->listen;
	char a[LISTEN_NAME_MAX], b[LISTEN_NAME_MAX];
	struct listen_stmt *st;

	switch (f->type) {
	case 'P':
		return parse_message(c, f, v);
	case 'Q':
		return query_message(c, f, v);
	case 'B':
		if (cl == NULL || cl->nstmts == 0 || !read_names(c, f, 0, a, b))
			return 'B';
		if ((st = stmt_find(&cl->stmts, b)) == NULL)
			stmt_forget(cl, &cl->portals, a);
		else if (!c->server->requests.skip_to_sync)
			stmt_set(cl, &cl->portals, a, &st->op);
		return 'B';
	case 'C':
		if (cl != NULL && cl->nstmts > 0 && read_names(c, f, 1, a, NULL)) {
			char what[FRAME_HEADER_LEN + 1];

			evbuffer_copyout(c->conn.in, what, sizeof(what));
			stmt_forget(cl, what[FRAME_HEADER_LEN] == 'S' ? &cl->stmts : &cl->portals,
			            a);
		}
		return 'C';
	case 'E':
		if (cl == NULL || cl->nstmts == 0 || c->server->requests.skip_to_sync ||
		    !read_names(c, f, 0, a, NULL) || (st = stmt_find(&cl->portals, a)) == NULL)
			return 'E';
		push_ops(cl, &st->op, 1);
		return REQ_LISTEN_EXECUTE;
	default:
		return f->type;
	}
}

/* The transaction committed: its LISTENs and UNLISTENs take effect, in order. */
static void commit(struct client *c)
{
	struct client_listen *cl = c->listen;
	struct listen_op op;

	while (evbuffer_remove(cl->pending, &op, sizeof(op)) == (int)sizeof(op)) {
		struct listen_channel *ch;

		if (op.verb == LISTEN_OP_UNLISTEN) {
			unlisten(c, op.all ? NULL : op.name);
			continue;
		}
		if ((ch = subscribe(c, op.name)) == NULL) {
			char msg[128];

			snprintf(msg, sizeof(msg),
			         "sluice could not LISTEN on channel \"%s\": out of memory",
			         op.name);
			tell(c, msg);
			continue;
		}
		if (!ch->active) {
			memcpy(cl->hold, ch->name, sizeof(cl->hold));
			ensure_open(c->pool->listen);
		}
	}
}

/*
 * Queue a LISTEN or UNLISTEN of the open transaction for its commit.  Only
 * the last op on a channel decides what the commit does to it, and UNLISTEN *
 * undoes everything before it, so those earlier ops go: a transaction that
 * runs the same LISTEN statement again and again holds one op, and the queue
 * stays within the channels channels_full let through.
 */
static void pend(struct client_listen *cl, const struct listen_op *op)
{
	size_t len = evbuffer_get_length(cl->pending), n = len / sizeof(*op), kept = 0;
	struct listen_op *ops;

	if (op->all || len == 0) {
		if (op->all)
			evbuffer_drain(cl->pending, len);
		evbuffer_add(cl->pending, op, sizeof(*op));
		return;
	}
	/* Packed toward the end, in order, so that what goes is at the front. */
	ops = (struct listen_op *)evbuffer_pullup(cl->pending, -1);
	for (size_t i = n; i-- > 0;)
		if (ops[i].all || strcmp(ops[i].name, op->name) != 0)
			ops[n - 1 - kept++] = ops[i];
	evbuffer_drain(cl->pending, (n - kept) * sizeof(*op));
	evbuffer_add(cl->pending, op, sizeof(*op));
}

bool listen_server_tag(struct client *c, uint8_t head, const char *tag)
{
	struct client_listen *cl = c->listen;
	struct listen_op op;

	if ((head == REQ_LISTEN_EXECUTE || head == REQ_LISTEN_QUERY) &&
	    (strcmp(tag, "UNLISTEN") == 0 || strcmp(tag, "LISTEN") == 0) &&
	    evbuffer_copyout(cl->ops, &op, sizeof(op)) == (ev_ssize_t)sizeof(op) &&
	    op.verb != LISTEN_OP_END) {
		evbuffer_drain(cl->ops, sizeof(op));
		if (op.verb == LISTEN_OP_OTHER)
			return false;
		pend(cl, &op);
		return op.verb == LISTEN_OP_LISTEN;
	}
	/* DISCARD ALL does UNLISTEN *; it cannot run in a transaction block. */
	if (strcmp(tag, "DISCARD ALL") == 0)
		unlisten(c, NULL);
	if (evbuffer_get_length(cl->pending) == 0)
		return false;
	if (strcmp(tag, "COMMIT") == 0) {
		commit(c);
		cl->failed = cl->rolled_back = false;
	} else if (strcmp(tag, "ROLLBACK") == 0) {
		cl->rolled_back = true; /* or ROLLBACK TO SAVEPOINT: the ReadyForQuery tells */
	} else if (strcmp(tag, "PREPARE TRANSACTION") == 0) {
		evbuffer_drain(cl->pending, evbuffer_get_length(cl->pending));
	}
	return false;
}

void listen_server_error(struct client *c)
{
	struct client_listen *cl = c->listen;

	if (evbuffer_get_length(cl->pending) > 0)
		cl->failed = true;
}

void listen_request_done(struct client *c)
{
	struct client_listen *cl = c->listen;
	struct listen_op op;

	while (evbuffer_remove(cl->ops, &op, sizeof(op)) == (int)sizeof(op) &&
	       op.verb != LISTEN_OP_END)
		;
}

bool listen_ready(struct client *c, char status, bool last)
{
	struct client_listen *cl = c->listen;
	struct listen_channel *ch;
	bool refused = status != 'I' && pool_mode(c->pool) == POOL_STATEMENT;

	if (status == 'I') {
		stmts_clear(&cl->portals, cl);
		if (!cl->failed && !cl->rolled_back)
			commit(c);
	}
	/* 'T' after an error: ROLLBACK TO SAVEPOINT undid it. */
	if (status != 'E')
		cl->failed = cl->rolled_back = false;
	if (status == 'I' || refused)
		evbuffer_drain(cl->pending, evbuffer_get_length(cl->pending));
	if (cl->hold[0] == '\0')
		return false;
	/* The commit may have made the pool's listener. */
	ch = c->pool->listen != NULL ? channel_find(c->pool->listen, cl->hold) : NULL;
	cl->hold[0] = '\0';
	/* Pipelined requests answered after this one would overtake a held ReadyForQuery. */
	if (ch == NULL || ch->active || !last || refused || cl->wait_ch != NULL ||
	    find_sub(cl, ch) == NULL)
		return false;
	wait_for(c, ch, false, status);
	return true;
}
void listen_client_gone(struct client *c)
{
	struct client_listen *cl = c->listen;

	if (list_linked(&cl->wait_node))
		list_del(&cl->wait_node);
	cl->wait_ch = NULL;
	if (!list_empty(&cl->subs))
		unlisten(c, NULL);
	stmts_clear(&cl->stmts, cl);
	stmts_clear(&cl->portals, cl);
	evbuffer_free(cl->ops);
	evbuffer_free(cl->pending);
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

void listen_pool_retire(struct pool *p)
{
	struct listener *l = p->listen;

	if (l != NULL && l->server != NULL) {
		l->retiring = true;
		server_close(l->server, "RECONNECT or a new target: listening again on a new "
		                        "connection");
	}
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
	free(l->buckets);
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
