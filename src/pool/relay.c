/*
 * The relay; see relay.h.  Per message it peeks the 5-byte header, updates
 * the outstanding-request queue, and moves the bytes with
 * evbuffer_remove_buffer.  A message larger than what is buffered is streamed:
 * the available part moves now and fwd_remaining counts the rest.
 */
#include "pool/relay.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "base/ring.h"
#include "pool/admission.h"
#include "pool/cancel.h"
#include "pool/client.h"
#include "pool/listen.h"
#include "config/config.h"
#include "pool/record.h"
#include "pool/pool.h"
#include "pool/prepared.h"
#include "pool/qstats.h"
#include "pool/requests.h"
#include "proto/build.h"
#include "proto/frame.h"
#include "proto/msgview.h"
#include "proto/sqlscan.h"
#include "proto/sqlstate.h"
#include "pool/server.h"
#include "pool/slowlog.h"
#include "pool/worker.h"

static void relay_try_release(struct server *s);

/* Move up to `want` bytes; returns how many moved (dropped when out is NULL). */
static size_t move_bytes(struct evbuffer *in, struct evbuffer *out, size_t want)
{
	size_t avail = evbuffer_get_length(in);
	size_t n = want < avail ? want : avail;

	if (out != NULL)
		evbuffer_remove_buffer(in, out, n);
	else
		evbuffer_drain(in, n);
	return n;
}

/*
 * Start the clocks for query and transaction time: work began on an empty
 * queue, or the request queued behind a ReadyForQuery began (handle_ready).
 */
static void start_request_clock(struct server *s)
{
	s->request_start_us = worker_now_us(s->w);
	s->requests_started++;
	if (s->tx_status == 'I') {
		s->xact_start_us = s->request_start_us;
		if (s->client != NULL)
			client_watch_transaction(s->client, s->w->cfg->transaction_timeout_us);
	}
	server_request_started(s);
}

void relay_track_request(struct server *s, uint8_t type)
{
	if (requests_track(&s->requests, type))
		start_request_clock(s);
}

/*
 * The text of a Query or Parse that may change session state: the server
 * reads it back at the end of the transaction (server_capture_params), which
 * also tells whether the server is pinned now.  Only the first keyword and
 * the underscores are looked at (docs/session-state.md lists what is
 * noticed).  The view made a text split over buffer chains contiguous when
 * whole and under RELAY_WHOLE_MAX; a longer one still arriving is read as far
 * as it is there.
 */
static void inspect_sql(struct client *c, const struct msgview *v, bool tracking)
{
	struct server *s = c->server;
	bool stateful = false;

	if (pool_mode(c->pool) == POOL_SESSION || v->msg == NULL)
		return;
	/* A long text still arriving: its start is read, and the state read back anyway. */
	if (!v->whole)
		s->params_dirty = stateful = true;
	if (v->text != NULL)
		stateful |= server_inspect_sql(s, v->verb, v->text, v->n);
	/*
	 * Untracked, a named statement is the server's: it may run in a later
	 * request, another client's too, with no text to look at
	 * (server_inspect_bind).  The unnamed one cannot: sluice's read-back, a
	 * Query, drops it before the server serves another request.
	 */
	if (stateful && !tracking && v->msg[0] == 'P' && v->have > FRAME_HEADER_LEN &&
	    v->msg[FRAME_HEADER_LEN] != '\0')
		s->named_stmt_stateful = true;
}

/*
 * Record a client message in the server's queue of expected replies; `kind`:
 * what to queue for a Query or Execute (a REQ_LISTEN_* marker, listen.h).
 */
static void track_client_message(struct server *s, uint8_t type, uint8_t kind)
{
	if (type == 'Q' || type == 'E')
		s->pool->stats.query_count++;
	switch (type) {
	case 'S':
		/* A Sync during COPY FROM STDIN is ignored by the server. */
		if (!s->copy_in)
			relay_track_request(s, 'S');
		else
			requests_sync_in_copy(&s->requests);
		break;
	case 'Q':
	case 'P':
	case 'B':
	case 'D':
	case 'E':
	case 'C':
	case 'F':
		/* After an extended-protocol error the server ignores everything until Sync. */
		relay_track_request(s, kind);
		break;
	case 'd':
		requests_track_copy_data(&s->requests, s->copy_in);
		break;
	case 'c':
	case 'f':
		if (s->copy_in)
			s->copy_in = false;
		else
			requests_track_copy_end(&s->requests); /* ahead of its CopyInResponse */
		break;
	default:
		break;
	}
	if ((type == 'Q' || type == 'E') && s->w->cfg->query_stats)
		qstats_sent(s, s->client, type);
}

/*
 * Messages a client may send that need no server: returns true if consumed.
 * COPY messages with no server are late data after a failed COPY, never sent
 * to a server that may be someone else's.  A linked server gets them even
 * before its CopyInResponse: a client may pipeline the data behind the COPY,
 * and Postgres ignores COPY messages that arrive outside a COPY.
 */
static bool drop_without_server(struct client *c, uint8_t type, size_t total)
{
	struct evbuffer *in = c->conn.in;
	struct server *s = c->server;
	bool late_copy = (type == 'd' || type == 'c' || type == 'f') && s == NULL;
	bool idle_flush = type == 'H' && s == NULL;

	if (!late_copy && !idle_flush && !c->discarding)
		return false;
	c->skip_remaining = (uint32_t)(total - move_bytes(in, NULL, total));
	/* A local error answered this request; its end is where ReadyForQuery belongs. */
	if (c->discarding && (type == 'S' || type == 'Q')) {
		c->discarding = false;
		c->in_request = false; /* the next request is charged afresh */
		build_ready(conn_out(&c->conn), 'I');
	}
	return true;
}

/*
 * A Query between transactions that may be a lone LISTEN / UNLISTEN: sluice
 * answers it (listen.c) instead of tying a server to the client.  For any
 * other Query one byte is looked at: a statement that starts with another
 * letter is not one.  A client holding a server (pinned) is between
 * transactions only when the server is clean.
 */
static enum listen_result listen_query(struct client *c, const struct msgview *v,
                                       const struct frame *f)
{
	char first;

	if (pool_mode(c->pool) == POOL_SESSION || !v->whole || f->len < 5)
		return LISTEN_PASS;
	first = (char)(v->text[0] | 0x20);
	if (first >= 'a' && first <= 'z' && first != 'l' && first != 'u')
		return LISTEN_PASS;
	if (c->server != NULL && !server_is_clean(c->server))
		return LISTEN_PASS;
	/* Its backend LISTENs itself (a LISTEN sluice left to it): an UNLISTEN goes there too. */
	if (v->verb == SQL_VERB_UNLISTEN && c->server != NULL && (c->server->pin & PIN_LISTEN))
		return LISTEN_PASS;
	return listen_client_query(c, v->text, v->n, v->verb, frame_total(f));
}

/* Messages that may name a prepared statement (Query: SQL DEALLOCATE; Execute: its portal). */
static bool is_statement_message(uint8_t type)
{
	return type == 'P' || type == 'B' || type == 'D' || type == 'C' || type == 'Q' ||
	       type == 'E';
}

static void check_server_watermark(struct client *c)
{
	struct server *s = c->server;

	if (s != NULL && evbuffer_get_length(s->conn.out) > RELAY_HIGH_WATERMARK) {
		conn_notify_drained(&s->conn, RELAY_LOW_WATERMARK);
		conn_suspend(&c->conn, SUSPEND_WATERMARK);
	}
}

/*
 * A length no server may see: too large for the type (sluice's max_packet_size,
 * or Postgres' own 1 GB, past which it drops the connection), or below 4.
 * Refused before any of it moves, so no server is involved.
 */
static void reject_length(struct client *c, const struct frame *f, uint32_t limit)
{
	char type = f->type >= 0x20 && f->type < 0x7f ? (char)f->type : '?';

	if (f->len < 4)
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "invalid message length %u for message type '%c'", f->len, type);
	else
		client_fail(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
		            "message too large: %u bytes for message type '%c', the limit is %u",
		            f->len, type, limit);
}

/*
 * Messages forwarded unread and not moved yet: whole messages at the head of
 * an input, moved to the peer in one evbuffer_remove_buffer when something
 * else is about to touch either buffer, or at the end of the input.  One call
 * instead of one per message, and when the run is all the input (the usual
 * reply to a request) libevent hands its chains over instead of copying.
 * Headers are read straight from the input's first chain (`view`).
 */
struct run {
	struct evbuffer *in; /* the input */
	struct conn *to;     /* where the bytes go; NULL: dropped */
	uint64_t *bytes;     /* the pool's counter of bytes moved this way */
	size_t len;          /* bytes at the head of in that belong to the run */
	const uint8_t *view; /* in's first chain; valid while only the run grows */
	size_t view_len;     /* 0: look again */
	size_t buffered;     /* in's length, while view_len > 0 */
};

static void run_flush(struct run *r)
{
	r->view_len = 0;
	if (r->len == 0)
		return;
	if (r->to != NULL)
		evbuffer_remove_buffer(r->in, conn_out(r->to), r->len);
	else
		evbuffer_drain(r->in, r->len);
	*r->bytes += r->len;
	r->len = 0;
}

/* The input's length, known while the view is. */
static inline size_t run_buffered(const struct run *r)
{
	return r->view_len > 0 ? r->buffered : evbuffer_get_length(r->in);
}

/* Whether the message after the run has its n bytes buffered. */
static inline bool run_has(const struct run *r, size_t n)
{
	return run_buffered(r) >= r->len + n;
}

/* Something other than the run drained, rewrote or pulled up the input: look again. */
static inline void run_forget(struct run *r)
{
	r->view_len = 0;
}

/* The header of the message after the run (inline: it runs for every message). */
static inline enum frame_status run_peek(struct run *r, struct frame *f, uint32_t limit)
{
	if (r->len + FRAME_HEADER_LEN > r->view_len) {
		struct evbuffer_iovec v;

		if (r->view_len > 0 && r->len == r->buffered)
			return FRAME_INCOMPLETE; /* the run is all the input */
		run_flush(r);
		r->buffered = evbuffer_get_length(r->in);
		if (r->buffered < FRAME_HEADER_LEN)
			return FRAME_INCOMPLETE;
		if (evbuffer_peek(r->in, -1, NULL, &v, 1) < 1 || v.iov_len < FRAME_HEADER_LEN)
			return frame_peek(r->in, f, limit);
		r->view = v.iov_base;
		r->view_len = v.iov_len;
	}
	return frame_parse(r->view + r->len, f, limit);
}

/* The body of the (whole) message after the run: the run stays unless the message spans chains. */
static const uint8_t *run_body(struct run *r, const struct frame *f)
{
	if (r->len + frame_total(f) <= r->view_len)
		return r->view + r->len + FRAME_HEADER_LEN;
	run_flush(r);
	return evbuffer_pullup(r->in, (ev_ssize_t)frame_total(f)) + FRAME_HEADER_LEN;
}

/* The first byte of the body of the message after the run, which is buffered. */
static uint8_t run_body_byte(struct run *r)
{
	size_t at = r->len + FRAME_HEADER_LEN;
	struct evbuffer_ptr p;
	uint8_t b = 0;

	if (at < r->view_len)
		return r->view[at];
	evbuffer_ptr_set(r->in, &p, at, EVBUFFER_PTR_SET);
	evbuffer_copyout_from(r->in, &p, &b, 1);
	return b;
}

/* What an Execute of the unnamed portal with no Bind of it before is sent as. */
#define UNBOUND_PORTAL "sluice: no Bind of the unnamed portal since the last Sync"

enum portal_guard { GUARD_PASS, GUARD_WAIT, GUARD_RENAMED };

/*
 * Postgres 15 crashes, and with it every connection of the cluster, when an
 * Execute of the unnamed portal finds the one a failed simple Query left in an
 * aborted transaction block: that portal's query text was freed with the
 * Query's message.  Any authenticated client could do that to every tenant.
 * A Bind of the unnamed portal earlier in the same batch (since the last Sync
 * or Query) replaces that portal, or fails and makes the server skip to the
 * Sync, Execute included; so an Execute of the unnamed portal with no such
 * Bind before it is renamed to UNBOUND_PORTAL, which no portal has, and
 * Postgres answers it with 34000 in its place in the replies, skipping to the
 * Sync as for any error.  The one use this refuses, going on with a suspended
 * unnamed portal after a Sync, drivers do with named portals.  Costs a byte
 * read per batch's first Bind; the usual Execute then joins the run unread.
 */
static enum portal_guard guard_unnamed_portal(struct client *c, struct run *r,
                                              const struct frame *f)
{
	uint8_t old[FRAME_HEADER_LEN + 5];
	uint8_t msg[FRAME_HEADER_LEN + sizeof(UNBOUND_PORTAL) + 4];
	uint32_t len = (uint32_t)(sizeof(msg) - 1);

	if (f->type == 'S' || f->type == 'Q') {
		c->portal_bound = false;
		return GUARD_PASS;
	}
	if (c->portal_bound || (f->type != 'B' && f->type != 'E') || f->len == 4)
		return GUARD_PASS;
	/* A malformed Execute fails before Postgres looks its portal up. */
	if (f->type == 'E' && f->len != sizeof(old) - 1)
		return GUARD_PASS;
	if (!run_has(r, f->type == 'B' ? FRAME_HEADER_LEN + 1 : sizeof(old)))
		return GUARD_WAIT;
	if (run_body_byte(r) != 0)
		return GUARD_PASS;
	if (f->type == 'B') {
		c->portal_bound = true;
		return GUARD_PASS;
	}
	run_flush(r);
	evbuffer_remove(r->in, old, sizeof(old));
	msg[0] = 'E';
	msg[1] = (uint8_t)(len >> 24);
	msg[2] = (uint8_t)(len >> 16);
	msg[3] = (uint8_t)(len >> 8);
	msg[4] = (uint8_t)len;
	memcpy(msg + FRAME_HEADER_LEN, UNBOUND_PORTAL, sizeof(UNBOUND_PORTAL));
	memcpy(msg + FRAME_HEADER_LEN + sizeof(UNBOUND_PORTAL), old + FRAME_HEADER_LEN + 1, 4);
	evbuffer_prepend(r->in, msg, sizeof(msg));
	/* Debug: a client may send it in a loop; Postgres logs each 34000 with the name. */
	clog(c, LOG_DEBUG,
	     "Execute of the unnamed portal with no Bind of it since the last Sync "
	     "or Query: sent as portal \"" UNBOUND_PORTAL "\"");
	return GUARD_RENAMED;
}

/*
 * DEALLOCATE ALL and DISCARD ALL drop every prepared statement of the server
 * and every name of the client; sluice forgets both when the CommandComplete
 * comes back (prepared_server_tag).  What the client pipelined behind one
 * was read against what was there before: a Parse answered from the
 * server's cache then met a Bind of a statement the server had just dropped
 * (26000 with sluice's name), and a name it registered was cleared.  So a
 * Query that begins with one, or an Execute of the unnamed portal bound to
 * an unnamed statement that is one (how drivers send SQL with parameters or
 * in pipelines), is a barrier: the client's input waits until the server
 * has answered it.  A named statement that is one, or one after the first
 * statement of a Query, is not caught here: prepared_server_tag retires such
 * a server if anything was pipelined behind it.
 */
static bool drops_all_statements(const struct msgview *v)
{
	char word[4];

	if (v->text == NULL || (v->verb != SQL_VERB_DEALLOCATE && v->verb != SQL_VERB_DISCARD))
		return false;
	return sqlscan_name(v->text, v->n, v->verb == SQL_VERB_DEALLOCATE ? "prepare" : NULL, word,
	                    sizeof(word)) > 0 &&
	       strcmp(word, "all") == 0;
}

/*
 * Follows the unnamed statement and portal of a tracking client through
 * message `f` (read from `v`, or at the head of the input when `v` has no
 * view of it); true when the input must wait behind it.
 */
static bool is_drop_all_barrier(struct client *c, const struct frame *f, const struct msgview *v)
{
	uint8_t names[FRAME_HEADER_LEN + 2];

	switch (f->type) {
	case 'Q':
		c->portal_drops_all = false;
		return drops_all_statements(v);
	case 'P':
		if (v->msg != NULL && v->have > FRAME_HEADER_LEN &&
		    v->msg[FRAME_HEADER_LEN] == '\0')
			c->unnamed_drops_all = drops_all_statements(v);
		return false;
	case 'B':
		if (!c->unnamed_drops_all && !c->portal_drops_all)
			return false;
		if (v->msg != NULL && v->have >= sizeof(names))
			memcpy(names, v->msg, sizeof(names));
		else if (evbuffer_copyout(c->conn.in, names, sizeof(names)) <
		         (ev_ssize_t)sizeof(names))
			names[FRAME_HEADER_LEN] = names[FRAME_HEADER_LEN + 1] =
			    '\0'; /* assume it */
		if (names[FRAME_HEADER_LEN] == '\0')
			c->portal_drops_all =
			    c->unnamed_drops_all && names[FRAME_HEADER_LEN + 1] == '\0';
		return false;
	case 'E':
		/* Whole: an Execute of the unnamed portal is 10 bytes, and statement messages wait.
		 */
		return c->portal_drops_all && f->len == 9 &&
		       evbuffer_copyout(c->conn.in, names, FRAME_HEADER_LEN + 1) ==
		           FRAME_HEADER_LEN + 1 &&
		       names[FRAME_HEADER_LEN] == '\0';
	case 'S':
		c->portal_drops_all = false;
		return false;
	default:
		return false;
	}
}

/*
 * The barrier's message has gone to the server: input waits for its answer
 * (resume_pipelined).  A Flush after an Execute makes Postgres send that
 * answer before the Sync, which is still in the client's input.
 */
static void hold_behind_drop_all(struct client *c, struct run *r, uint8_t type)
{
	static const uint8_t flush[FRAME_HEADER_LEN] = {'H', 0, 0, 0, 4};

	run_flush(r);
	if (type == 'E')
		evbuffer_add(conn_out(&c->server->conn), flush, sizeof(flush));
	conn_suspend(&c->conn, SUSPEND_PIPELINE);
}

/*
 * A message that joins the run of client messages: forwarded with no look at
 * its bytes and nothing else said to the server first (Sync, Flush, a plain
 * Execute, COPY data), on an active client that is not listening (listen.c
 * reads the names of its Executes).  Any other message flushes the run
 * first, so what reads or drains the input finds the message at its head,
 * unless it is read in place (below).
 */
static bool joins_run(const struct client *c, uint8_t type, bool tracking)
{
	const struct server *s = c->server;

	if (c->state != CLIENT_ACTIVE || c->discarding || c->pool->set.rate_limited ||
	    c->listen != NULL)
		return false;
	switch (type) {
	case 'S':
	case 'H':
		return true;
	case 'E':
		return !tracking || (!prepared_reads_execute(c) && !c->portal_drops_all);
	case 'd':
	case 'c':
	case 'f':
		return s->copy_in;
	default:
		return false;
	}
}

/*
 * A message read where it is, behind the run, which then does not move
 * first: an extended-protocol message the run's view holds whole, that every
 * reader reads from the view `v` and passes as it is.  That rules out what
 * reads or drains the input at its head: a listening client (listen.c reads
 * names), a LISTEN in a Parse (rewritten), admission (rate limits) and
 * anything prepared.c acts on (prepared_passes).  A driver's Parse, Bind,
 * Describe, Execute and Sync then move in one evbuffer_remove_buffer that
 * hands the chains over, instead of a copy per message.
 */
static bool reads_in_place(const struct client *c, const struct frame *f, const struct msgview *v,
                           bool tracking)
{
	if (c->state != CLIENT_ACTIVE || c->discarding || c->pool->set.rate_limited ||
	    c->listen != NULL || !v->whole)
		return false;
	switch (f->type) {
	case 'P':
		if (v->text == NULL || v->verb == SQL_VERB_LISTEN || v->verb == SQL_VERB_UNLISTEN)
			return false;
		break;
	case 'B':
	case 'D':
	case 'C':
		break;
	default:
		return false;
	}
	return !tracking || prepared_passes(c, f, v);
}

static void relay_client_input(struct client *c)
{
	struct evbuffer *in = c->conn.in;
	uint32_t max_packet = (uint32_t)c->w->cfg->max_packet_size;
	bool partial = false; /* stopped in the middle of a message */
	bool tracking = prepared_tracking(c);
	struct run r = {.in = in, .bytes = &c->pool->stats.bytes_received};
	struct frame f;

	while (c->state == CLIENT_IDLE || c->state == CLIENT_ACTIVE) {
		struct msgview mv = {.msg = NULL};
		bool in_place; /* read behind the run: every reader passes it (reads_in_place) */
		bool joins;    /* joins the run unread (joins_run) */
		enum frame_status st;
		enum portal_guard guard;
		uint8_t kind;
		size_t moved;
		bool barrier;

		/* Its ReadyForQuery waits for the listening connection: nothing may overtake it. */
		if (c->conn.suspend & SUSPEND_LISTEN)
			return;

		if (c->skip_remaining > 0) {
			run_flush(&r);
			c->skip_remaining -= (uint32_t)move_bytes(in, NULL, c->skip_remaining);
			if (c->skip_remaining > 0)
				break;
			continue;
		}
		if (c->fwd_remaining > 0) {
			run_flush(&r);
			moved = move_bytes(in, conn_out(&c->server->conn), c->fwd_remaining);
			c->fwd_remaining -= (uint32_t)moved;
			c->pool->stats.bytes_received += moved;
			if (c->fwd_remaining > 0) {
				partial = true;
				break;
			}
			if (c->hold_after_message) {
				c->hold_after_message = false;
				hold_behind_drop_all(c, &r, 'Q');
				break;
			}
			/* The server may have finished while this message was still arriving. */
			relay_try_release(c->server);
			continue;
		}
		st = run_peek(&r, &f, max_packet);
		if (st == FRAME_INCOMPLETE) {
			partial = run_buffered(&r) > r.len;
			break;
		}
		in_place = false;
		joins = joins_run(c, f.type, tracking);
		if (!joins) {
			/* The whole message in the run's view: its view costs no peek. */
			if (st == FRAME_READY && r.len + frame_total(&f) <= r.view_len)
				msgview_at(&mv, &f, r.view + r.len);
			if (r.len > 0 && !(in_place = reads_in_place(c, &f, &mv, tracking))) {
				run_flush(&r);
				mv = (struct msgview){.msg = NULL}; /* it pointed behind the run */
			}
		}
		if (st == FRAME_INVALID || f.len > frame_client_limit(f.type, max_packet)) {
			run_flush(&r);
			reject_length(c, &f, frame_client_limit(f.type, max_packet));
			return;
		}
		/*
		 * A type no frontend sends: Postgres would close the connection, but
		 * a message with no reply is queued for nothing, so the server could
		 * be handed to the next client before Postgres reads it, and that
		 * client would lose its connection instead.
		 */
		if (!frame_is_frontend_type(f.type)) {
			run_flush(&r);
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
			            "invalid frontend message type %u", f.type);
			return;
		}
		if (f.type == 'X') {
			client_close(c, "client sent Terminate");
			return;
		}
		/*
		 * Postgres answers a Flush with a body with an ERROR and skips to the
		 * next Sync; a Flush has no reply, so nothing is queued for that
		 * error and every reply after it would be counted one off.
		 */
		if (f.type == 'H' && f.len != 4) {
			run_flush(&r);
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
			            "invalid Flush message: %u bytes of body", f.len - 4);
			return;
		}
		if (drop_without_server(c, f.type, frame_total(&f))) {
			run_forget(&r);
			continue;
		}
		guard = guard_unnamed_portal(c, &r, &f);
		if (guard == GUARD_WAIT) {
			partial = true;
			break;
		}
		if (guard == GUARD_RENAMED)
			continue;
		/* No server until the message is whole; listen.c reads small ones whole. */
		if ((c->state == CLIENT_IDLE ||
		     (frame_total(&f) <= LISTEN_WHOLE_MAX && is_statement_message(f.type))) &&
		    frame_total(&f) <= RELAY_WHOLE_MAX && run_buffered(&r) < frame_total(&f))
			break;
		/*
		 * A Query's or Parse's text is looked at once, for every reader below:
		 * one peek (none when the run's view holds it) and one keyword scan,
		 * not one of each per reader.  Until listen.c nothing touches the
		 * input; it reads the view again if it rewrites the message.
		 */
		if ((f.type == 'Q' || f.type == 'P') && mv.msg == NULL) {
			msgview_read(&mv, in, &f,
			             pool_mode(c->pool) == POOL_SESSION ? 0 : RELAY_WHOLE_MAX);
			run_forget(&r); /* it may have pulled the message up */
		}
		if (f.type == 'Q' &&
		    (c->state == CLIENT_IDLE || (c->server != NULL && c->server->pin != 0))) {
			enum listen_result l = listen_query(c, &mv, &f);

			if (l == LISTEN_WAIT)
				return;
			if (l == LISTEN_DONE) {
				run_forget(&r);
				continue;
			}
		}
		if (c->pool->set.rate_limited) {
			enum admit a = admission_request(c, f.type);

			if (a == ADMIT_WAIT)
				return;
			if (a == ADMIT_REFUSED) {
				run_forget(&r);
				continue; /* discarding now: the loop drops the request */
			}
		}
		if (c->state == CLIENT_IDLE) {
			pool_acquire(c->pool, c);
			if (c->state != CLIENT_ACTIVE)
				return; /* queued, rejected or closed */
		}
		if (c->timer_armed)
			client_arm_timer(c, 0); /* no longer idle in a transaction */
		slowlog_capture(c, in, &f, &mv);
		if (c->w->cfg->query_stats && (f.type == 'Q' || f.type == 'P' || f.type == 'B'))
			qstats_client_message(c, in, &f, &mv);
		kind = f.type;
		if (pool_mode(c->pool) != POOL_SESSION &&
		    (f.type == 'Q' || f.type == 'P' || c->listen != NULL)) {
			uint32_t len = f.len;

			kind = listen_client_message(c, &f, &mv);
			if (f.len != len)
				run_forget(&r); /* a LISTEN rewritten to UNLISTEN */
		}
		if (f.type == 'Q' || f.type == 'P')
			inspect_sql(c, &mv, tracking);
		else if (f.type == 'B' && !tracking)
			server_inspect_bind(c->server);
		else if (f.type == 'F' && pool_mode(c->pool) != POOL_SESSION)
			server_inspect_function_call(c->server);
		barrier = tracking && is_drop_all_barrier(c, &f, &mv);
		/*
		 * prepared.c passes these unasked: in place it was asked already, and
		 * an Execute joins the run only when no portal of an sql_action is
		 * bound, the one Execute it reads (prepared_reads_execute).
		 */
		if (is_statement_message(f.type) && tracking && !in_place && !joins) {
			enum prep_result pr = prepared_client_message(c, &f, &mv);

			if (pr == PREP_WAIT || pr == PREP_CLOSED)
				return;
			if (pr == PREP_READY)
				relay_try_release(c->server);
			if (pr != PREP_PASS) {
				if (c->in_request)
					admission_request_sent(c, f.type);
				run_forget(&r);
				continue;
			}
		}
		track_client_message(c->server, f.type, kind);
		/* Skipped by a server skipping to Sync after an error: nothing will answer it. */
		barrier = barrier && !c->server->requests.skip_to_sync;
		if (c->in_request)
			admission_request_sent(c, f.type);
		if (r.len > 0 && r.to != &c->server->conn)
			run_flush(&r);
		r.to = &c->server->conn;
		if (run_has(&r, frame_total(&f))) {
			r.len += frame_total(&f);
			if (barrier) {
				hold_behind_drop_all(c, &r, f.type);
				break;
			}
			continue;
		}
		/* Not all here yet: what is moves now, the rest as it comes. */
		run_flush(&r);
		moved = move_bytes(in, conn_out(&c->server->conn), frame_total(&f));
		c->fwd_remaining = (uint32_t)(frame_total(&f) - moved);
		c->pool->stats.bytes_received += moved;
		c->hold_after_message = barrier;
	}
	run_flush(&r);
	check_server_watermark(c);
	if (partial)
		client_watch_rest(c);
}

/*
 * A request left the queue: a Parse of a tracked statement settles the
 * statement cache, a tracked Bind its id.  A plain 'P' (the unnamed
 * statement, or a Parse passed through) has no id to settle.
 */
static uint8_t retire_request(struct server *s, uint8_t t, bool failed)
{
	if (t == REQ_SQL_EXECUTE || t == REQ_FAKE_SQL_PREPARE || t == REQ_FAKE_EXECUTE ||
	    t == REQ_FAKE_UNNAME)
		prepared_change_done(s, failed);
	if (t == REQ_TRACKED_PARSE || t == REQ_INJECTED_PARSE || t == REQ_INJECTED_EXECUTE ||
	    t == REQ_SQL_EXECUTE)
		prepared_parse_done(s, failed, t == REQ_TRACKED_PARSE);
	else if (t == REQ_TRACKED_BIND || t == REQ_STALE_BIND)
		prepared_bind_done(s);
	else if (t == REQ_SQL_PREPARE || t == REQ_INJECTED_SQL)
		prepared_sql_done(s, t == REQ_SQL_PREPARE, failed);
	else if (t == REQ_INJECTED_CLOSE && failed && !s->close_needed) {
		/*
		 * Skipped after an error: the server keeps a statement its cache
		 * let go, and preparing it there again would fail (42P05).
		 */
		slog(s, LOG_INFO,
		     "a statement's Close was skipped after an error: retired at release");
		s->close_needed = true;
	} else if ((t == 'Q' || t == 'E' || t == REQ_LISTEN_QUERY || t == REQ_LISTEN_EXECUTE) &&
	           ring_count(&s->qs.pending) > 0)
		qstats_done(s, failed);
	if ((t == REQ_LISTEN_QUERY || t == REQ_LISTEN_EXECUTE) && s->client != NULL &&
	    s->client->listen != NULL)
		listen_request_done(s->client);
	return t;
}

static uint8_t pop_request(struct server *s)
{
	return retire_request(s, requests_pop(&s->requests), false);
}

/*
 * Retire requests answered by a reply of this type (headers only).  Returns
 * false when the reply answers something sluice sent itself and must not
 * reach the client.
 */
static bool track_server_reply(struct server *s, uint8_t type)
{
	struct requests *q = &s->requests;
	uint8_t head = requests_head(q), skipped;

	switch (type) {
	case '1': /* ParseComplete */
		head = pop_request(s);
		return head != REQ_INJECTED_PARSE && head != REQ_CARRIER_PARSE;
	case '3': /* CloseComplete */
		return pop_request(s) != REQ_INJECTED_CLOSE;
	case '2': /* BindComplete */
		return pop_request(s) != REQ_INJECTED_BIND;
	case 'n': /* NoData */
		pop_request(s);
		break;
	case 'T': /* RowDescription: ends a Describe, but is part of a Query's reply */
		if (head == 'D')
			requests_pop(q);
		break;
	case 'C': /* CommandComplete */
		/* A COPY's end, whose CopyDone may have gone ahead of the CopyInResponse. */
		s->copy_in = false;
		requests_copy_ended(q);
		/* fall through */
	case 'I': /* EmptyQueryResponse */
	case 's': /* PortalSuspended */
		if (head == 'E' || head == REQ_SQL_EXECUTE || head == REQ_CARRIER_EXECUTE ||
		    head == REQ_LISTEN_EXECUTE)
			pop_request(s);
		break;
	case 'E':
		s->pool->stats.errors++;
		s->copy_in = false;
		requests_copy_ended(q);
		if (head == REQ_SQL_PREPARE)
			s->stmts.sql_failed = true;
		qstats_error(s);
		/*
		 * An error in an extended message: the server skips to the next
		 * Sync.  The head is the message that failed; a stale Bind among
		 * the others was skipped, not refused (prepared_stale_skipped).
		 */
		if (requests_is_extended(head))
			for (bool failed_itself = true; (skipped = requests_pop_skipped(q)) != 0;
			     failed_itself = false) {
				if (skipped == REQ_STALE_BIND && !failed_itself)
					prepared_stale_skipped(s);
				retire_request(s, skipped, true);
			}
		/*
		 * Its client left before this error came back, and the reset saw no
		 * need for a Sync (a Query last, which the server now skips too):
		 * without one the server waits until server_reset_timeout.
		 */
		if (q->skip_to_sync && s->client == NULL && s->state == SERVER_RESETTING)
			server_reset_step(s);
		prepared_undo_changes(s);
		if (head == REQ_STALE_BIND) {
			prepared_stale_error(s);
			return false;
		}
		break;
	case 'G': /* CopyInResponse */
		/*
		 * In COPY mode, unless its CopyDone or CopyFail went ahead: then a
		 * Sync the client sends now comes after the COPY and is answered.
		 */
		s->copy_in = !requests_copy_started(q);
		/*
		 * Its client left before the COPY began: the reset must end it with
		 * a CopyFail (a cancel does not end a COPY waiting for data), or the
		 * server waits for data until server_reset_timeout closes it.
		 */
		if (s->client == NULL && s->state == SERVER_RESETTING)
			server_reset_step(s);
		break;
	case 'W': /* CopyBothResponse */
		s->copy_in = true;
		break;
	default:
		break;
	}
	return true;
}

/*
 * CommandComplete lengths of "SET", "RESET", "DISCARD ALL" and the commands
 * that may pin ("DECLARE CURSOR", "CREATE TABLE", "PREPARE", "LOAD"); "DEALLOCATE
 * ALL", which drops prepared statements, has DECLARE CURSOR's, and "DEALLOCATE"
 * (prepared_server_tag) that of "INSERT 0 1".  A tag of another length is none
 * of them, and costs no compare.
 */
static bool is_watched_tag_length(uint32_t len)
{
	_Static_assert(sizeof("DEALLOCATE ALL") == sizeof("DECLARE CURSOR"), "one length");
	switch (len) {
	case 4 + sizeof("SET"):
	case 4 + sizeof("RESET"):
	case 4 + sizeof("DISCARD ALL"):
	case 4 + sizeof("DECLARE CURSOR"):
	case 4 + sizeof("CREATE TABLE"):
	case 4 + sizeof("PREPARE"):
	case 4 + sizeof("DEALLOCATE"):
	case 4 + sizeof("LOAD"):
		return true;
	default:
		return false;
	}
}

/*
 * Tags that change settings are read even when nothing else needs the body,
 * so most commands cost no pull-up.  They catch what a multi-statement Query
 * does after its first statement.  Session mode keeps the server, and its
 * settings, with the client.
 */
static bool is_settings_tag_length(const struct server *s, uint32_t len)
{
	return is_watched_tag_length(len) && pool_mode(s->pool) != POOL_SESSION;
}

/* Messages whose body the relay reads; they are small and must be whole. */
static bool needs_body(const struct server *s, const struct frame *f)
{
	if (f->type == 'C') /* DEALLOCATE ALL / DISCARD ALL drop prepared statements */
		return s->stmts.count > 0 ||
		       (s->client != NULL && prepared_map_count(s->client->stmts) > 0) ||
		       is_settings_tag_length(s, f->len) || ring_count(&s->qs.pending) > 0 ||
		       (s->client != NULL && s->client->listen != NULL &&
		        listen_wants_tags(s->client));
	return f->type == 'Z' || f->type == 'S' || f->type == 'E';
}

/*
 * A command that changed session settings: they are read back at the
 * transaction's end.  A SET whose text sluice did not read (a later statement
 * of a multi-statement Query) may have set a custom setting it cannot name.
 */
static void check_settings_tag(struct server *s, const char *tag)
{
	bool set = strcmp(tag, "SET") == 0 || strcmp(tag, "RESET") == 0;

	if (set || strcmp(tag, "DISCARD ALL") == 0 || strcmp(tag, "DECLARE CURSOR") == 0 ||
	    strcmp(tag, "CREATE TABLE") == 0 || strcmp(tag, "PREPARE") == 0)
		s->params_dirty = true;
	if (strcmp(tag, "LOAD") == 0) {
		s->loaded = true;
		s->params_dirty = true;
	}
	if (set && !s->names_read)
		s->custom_unknown = true;
}

static void handle_parameter_status(struct server *s, const uint8_t *body, size_t len)
{
	struct msg_reader r;
	const char *name, *value;

	msg_reader_init(&r, body, len);
	name = msg_read_cstr(&r);
	value = msg_read_cstr(&r);
	if (name == NULL || value == NULL)
		return;
	param_set(&s->params, name, value);
	if (strcmp(name, "in_hot_standby") == 0)
		s->role_reported = true;
	/* The client changed it (SET) or the server canonicalised it: the client follows. */
	if (s->client != NULL && !param_is_read_only(name)) {
		struct param *d = param_find(&s->pool->defaults, name);

		if (param_find(&s->client->params, name) != NULL || d == NULL ||
		    strcmp(d->value, value) != 0)
			param_set(&s->client->params, name, value);
	}
}

/* A DataRow of the settings read-back: (name, setting). */
static void capture_row(struct server *s, const uint8_t *body, size_t len)
{
	struct msg_reader r;
	uint32_t name_len, value_len;
	const uint8_t *name, *value;
	char *name_z, *value_z;

	msg_reader_init(&r, body, len);
	if (msg_read_u16(&r) != 2)
		return;
	name_len = msg_read_u32(&r);
	name = msg_read_bytes(&r, name_len);
	value_len = msg_read_u32(&r);
	value = msg_read_bytes(&r, value_len);
	if (r.failed || name == NULL || value == NULL)
		return;
	/* A custom setting read by name: empty once RESET, NULL if never set. */
	if (value_len == 0 && memchr(name, '.', name_len) != NULL)
		return;
	if (name_len > 0 && name[0] == ' ') {
		s->captured_pin = server_parse_pins((const char *)value, value_len);
		return;
	}
	name_z = strndup((const char *)name, name_len);
	value_z = strndup((const char *)value, value_len);
	if (name_z != NULL && value_z != NULL)
		param_set(&s->captured, name_z, value_z);
	free(name_z);
	free(value_z);
}

/* A pinned client between transactions: client_idle_timeout, or what is left of pin_timeout. */
static int64_t pinned_idle_limit(const struct server *s)
{
	int64_t idle = s->pool->set.client_idle_timeout_us, pin = s->w->cfg->pin_timeout_us;

	if (pin > 0) {
		pin -= worker_now_us(s->w) - s->pinned_since_us;
		if (pin <= 0)
			pin = 1;
		if (idle == 0 || pin < idle)
			return pin;
	}
	return idle;
}

/*
 * A rate-limited client's next request waited until the server owed it
 * nothing, its answers or a settings read-back (admission.h): it may go.
 */
static void resume_pipelined(struct server *s)
{
	struct client *c = s->client;

	if (c != NULL && (c->conn.suspend & SUSPEND_PIPELINE) &&
	    requests_count(&s->requests) == 0 && s->sync_pending == 0)
		conn_resume(&c->conn, SUSPEND_PIPELINE);
}

/* A reply to the parameter SET batch: swallowed, except ParameterStatus and notices. */
static void handle_sync_reply(struct server *s, uint8_t type, const uint8_t *body, size_t len)
{
	struct client *c = s->client;

	if (type == 'E' && s->capturing) {
		const char *msg = msg_error_field(body, len, 'M');

		/* What the session has set is unknown now: retire the server after this turn. */
		slog(s, LOG_WARN, "reading back session settings failed: %s", msg ? msg : "?");
		s->close_needed = true;
		s->capture_failed = true;
	} else if (type == 'E') {
		const char *msg = msg_error_field(body, len, 'M');

		/*
		 * What the server has is not what server_sync_params recorded (the
		 * failed SELECT set nothing): read it back at the turn's end.
		 */
		s->params_dirty = true;
		slog(s, LOG_WARN, "applying client parameters failed: %s", msg ? msg : "?");
		if (c != NULL) {
			char text[512];

			snprintf(text, sizeof(text),
			         "sluice could not apply a session parameter (%s); using the "
			         "database defaults",
			         msg ? msg : "unknown error");
			build_notice(conn_out(&c->conn), SQLSTATE_WARNING, text);
			param_list_fini(&c->params);
		}
	} else if (type == 'D' && s->capturing) {
		capture_row(s, body, len);
	} else if (type == 'Z') {
		s->sync_pending--;
		s->tx_status = (char)body[0];
		resume_pipelined(s);
		/* Sluice's own queries are answered: the request of the client that left runs now.
		 */
		if (c == NULL && s->sync_pending == 0 && s->cancel_deferred) {
			s->cancel_deferred = false;
			if (requests_count(&s->requests) > 0 && requests_head(&s->requests) != 'S')
				cancel_server(s);
		}
		if (s->capturing) {
			if (!s->capture_failed)
				server_apply_captured(s);
			s->capturing = false;
			s->capture_failed = false;
			/* The read-back ran after the client's last reply: the turn may be over. */
			if (c != NULL && s->pin != 0 && requests_count(&s->requests) == 0 &&
			    !client_mid_message(c))
				client_arm_timer(c, pinned_idle_limit(s));
			if (c != NULL)
				relay_try_release(s);
			else if (s->state == SERVER_RESETTING)
				server_reset_step(s);
			/* Kept (pinned): the turn's end, where notifications held meanwhile go. */
			if (c != NULL && c->listen != NULL && c->server == s)
				listen_flush(c);
		} else if (c == NULL && s->state == SERVER_RESETTING) {
			/* The SET batch of a client that left before it was answered. */
			server_reset_step(s);
		}
	}
}

/*
 * End of the client's turn on this server?  Not while the client is still in
 * the middle of sending a message (late COPY data after a failed COPY): the
 * rest of it must reach the same server first.
 */
static void relay_try_release(struct server *s)
{
	struct client *c = s->client;

	if (c == NULL || c->fwd_remaining > 0 || !server_is_clean(s))
		return;
	if ((pool_mode(s->pool) == POOL_SESSION || s->pin != 0) && !c->close_at_idle)
		return;
	client_set_state(c, CLIENT_IDLE);
	slowlog_release(c);
	server_unlink(s);
	if (c->close_at_idle)
		client_drain(c);
	else
		client_kick(c);
}

/* Replies sluice owes the client that are now next in line. */
static void flush_fakes(struct server *s)
{
	uint8_t head = requests_head(&s->requests);

	/* Never inside a message still streaming to the client. */
	if (s->fwd_remaining > 0)
		return;
	if (requests_is_fake(head) && prepared_flush_fakes(s))
		relay_try_release(s);
}

/* Statement mode: a transaction block was opened; refuse it and roll it back. */
static void refuse_transaction(struct server *s)
{
	struct client *c = s->client;
	struct evbuffer *out = conn_out(&c->conn);

	if (requests_count(&s->requests) > 0) {
		client_fail(c, SQLSTATE_FEATURE_NOT_SUPPORTED,
		            "transaction blocks are not allowed in statement pooling mode");
		return;
	}
	build_error(out, "ERROR", SQLSTATE_FEATURE_NOT_SUPPORTED,
	            "transaction blocks are not allowed in statement pooling mode",
	            "sluice rolled the transaction back; run each statement on its own");
	build_ready(out, 'I');
	client_set_state(c, CLIENT_IDLE);
	server_unlink(s);
}

/*
 * Postgres' "canceling statement due to user request" after sluice cancelled
 * for query_timeout: the client is told which limit it hit instead.
 */
static bool query_timeout_error(struct server *s, struct evbuffer *out, const uint8_t *body,
                                size_t len)
{
	const char *state = msg_error_field(body, len, 'C');
	long long ms = (long long)(s->timed_out_after_us / 1000);
	char msg[160];

	if (state == NULL || strcmp(state, SQLSTATE_QUERY_CANCELED) != 0)
		return false;
	if (ms % 1000 == 0)
		snprintf(msg, sizeof(msg),
		         "canceling statement due to sluice query_timeout (%llds)", ms / 1000);
	else
		snprintf(msg, sizeof(msg),
		         "canceling statement due to sluice query_timeout (%lldms)", ms);
	build_error(out, "ERROR", SQLSTATE_QUERY_CANCELED, msg, NULL);
	s->pool->stats.bytes_sent += len + FRAME_HEADER_LEN;
	return true;
}

/* ReadyForQuery: the end of a request; maybe the end of the server's turn. */
static void handle_ready(struct server *s, struct run *r, size_t total, char status)
{
	struct client *c = s->client;
	struct pool_stats *st = &s->pool->stats;
	int64_t now = worker_now_us(s->w);
	bool held;

	s->tx_status = status;
	pop_request(s);
	if (requests_count(&s->requests) == 0) {
		s->timed_out_after_us = 0;
		s->names_read = false;
		resume_pipelined(s);
	}
	/* Each request its own figures, also one queued behind another (its clock, below). */
	if (c != NULL) {
		record_request_done(s, now, status);
		st->query_time_us += (uint64_t)(now - s->request_start_us);
		if (status == 'I') {
			st->xact_count++;
			st->xact_time_us += (uint64_t)(now - s->xact_start_us);
		}
	}
	if (c == NULL) {
		run_flush(r);
		evbuffer_drain(r->in, total);
		flush_fakes(s);
		server_reset_step(s);
		return;
	}
	if (status == 'I')
		client_watch_transaction(c, 0);
	/*
	 * A request queued behind this one starts now (Postgres runs them in
	 * turn): it gets its own query_timeout, the cancel of the last one is
	 * over, and a transaction it opens is timed from here.
	 */
	if (requests_count(&s->requests) > 0) {
		s->timed_out_after_us = 0;
		start_request_clock(s);
	}
	held = c->listen != NULL && listen_ready(c, status, requests_count(&s->requests) == 0);
	if (status != 'I' && pool_mode(s->pool) == POOL_STATEMENT) {
		run_flush(r);
		evbuffer_drain(r->in, total);
		refuse_transaction(s);
		return;
	}
	if (held) {
		run_flush(r);
		evbuffer_drain(r->in, total); /* listen.c sends it once its channel is active */
	} else {
		r->len += total;
		run_flush(r);
	}
	flush_fakes(s);
	if (s->client != c)
		return;
	if (requests_count(&s->requests) == 0 && server_capture_params(s))
		return;
	/* A client already sending its next message is not idle: its read watch stays. */
	if (requests_count(&s->requests) == 0 && !client_mid_message(c)) {
		if (status != 'I')
			client_arm_timer(c, s->pool->set.idle_transaction_timeout_us);
		else if (pool_mode(s->pool) == POOL_SESSION)
			client_arm_timer(c, s->pool->set.client_idle_timeout_us);
		else if (s->pin != 0)
			client_arm_timer(c, pinned_idle_limit(s));
	}
	relay_try_release(s);
	/* Still holding the server (pinned, in a transaction): between requests all the same. */
	if (c->listen != NULL && c->server == s)
		listen_flush(c);
}

static void check_client_watermark(struct server *s)
{
	struct client *c = s->client;

	if (c != NULL && evbuffer_get_length(c->conn.out) > RELAY_HIGH_WATERMARK) {
		conn_notify_drained(&c->conn, RELAY_LOW_WATERMARK);
		conn_suspend(&s->conn, SUSPEND_WATERMARK);
		client_watch_stall(c);
	}
}

/*
 * The replies to a PREPARE sluice sent ahead of a client's EXECUTE
 * (REQ_INJECTED_SQL): swallowed up to its ReadyForQuery.  If it failed, the
 * EXECUTE that follows fails too, and the client sees that error.
 */
static void swallow_injected_sql(struct server *s, struct evbuffer *in, const struct frame *f)
{
	if (f->type == 'E')
		s->stmts.sql_failed = true;
	if (f->type == 'Z') {
		s->tx_status =
		    (char)evbuffer_pullup(in, (ev_ssize_t)frame_total(f))[FRAME_HEADER_LEN];
		pop_request(s);
	}
	evbuffer_drain(in, frame_total(f));
}

/*
 * The ReadyForQuery of a Sync sluice sent in place of a Query it answers
 * itself (REQ_INJECTED_SYNC): swallowed; the replies sluice owes the client
 * behind it go now.  A server whose client left goes on with its reset.
 */
static void swallow_injected_sync(struct server *s, struct evbuffer *in, const struct frame *f)
{
	s->tx_status = (char)evbuffer_pullup(in, (ev_ssize_t)frame_total(f))[FRAME_HEADER_LEN];
	requests_pop(&s->requests);
	evbuffer_drain(in, frame_total(f));
	flush_fakes(s);
	if (s->client == NULL && s->state == SERVER_RESETTING)
		server_reset_step(s);
}

/*
 * A COPY failed while a Sync the client sent inside its data was taken as
 * ignored (struct requests, syncs_unsure): Postgres answers that Sync if the
 * failure came before it, so the replies still to come can no longer be
 * matched to requests, and one counted wrong would reach this server's next
 * client.  The client has the COPY's error; then both connections go.
 */
static void copy_failed_out_of_step(struct server *s)
{
	struct client *c = s->client;

	server_close(s, "COPY failed with a Sync sent inside its data: replies out of step");
	if (c != NULL)
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "a Sync sent inside COPY data whose COPY failed: sluice cannot tell "
		            "which replies the server still owes");
}

static void server_protocol_error(struct server *s)
{
	struct client *c = s->client;

	server_close(s, "invalid message from server");
	if (c != NULL)
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "server sent an invalid message");
}

void relay_server_input(struct server *s)
{
	struct evbuffer *in = s->conn.in;
	uint32_t max_packet = (uint32_t)s->w->cfg->max_packet_size;
	struct client *c = s->client;
	struct run r = {
	    .in = in, .to = c != NULL ? &c->conn : NULL, .bytes = &s->pool->stats.bytes_sent};
	struct frame f;

	while (s->state == SERVER_ACTIVE || s->state == SERVER_RESETTING) {
		const uint8_t *body;
		enum frame_status st;
		bool out_of_step;
		size_t moved;

		if (s->client != c)
			break; /* released or relinked by the previous message */
		if (s->fwd_remaining > 0) {
			run_flush(&r);
			moved =
			    move_bytes(in, c != NULL ? conn_out(&c->conn) : NULL, s->fwd_remaining);
			s->fwd_remaining -= moved;
			s->pool->stats.bytes_sent += moved;
			if (s->fwd_remaining > 0)
				break;
			flush_fakes(s);
			continue;
		}
		st = run_peek(&r, &f, max_packet);
		if (st == FRAME_INCOMPLETE)
			break;
		if (st == FRAME_INVALID || (f.type == 'Z' && f.len != 5)) {
			run_flush(&r);
			server_protocol_error(s);
			return;
		}
		out_of_step = f.type == 'E' && s->requests.syncs_unsure;
		if (requests_head(&s->requests) == REQ_INJECTED_SYNC && s->sync_pending == 0 &&
		    f.type == 'Z') {
			run_flush(&r);
			swallow_injected_sync(s, in, &f);
			continue;
		}
		if (requests_head(&s->requests) == REQ_INJECTED_SQL && s->sync_pending == 0 &&
		    f.type != 'N' && f.type != 'S' && f.type != 'A') {
			run_flush(&r);
			if (evbuffer_get_length(in) < frame_total(&f))
				break;
			swallow_injected_sql(s, in, &f);
			continue;
		}
		if (requests_head(&s->requests) == REQ_INJECTED_EXECUTE && s->sync_pending == 0 &&
		    f.type == 'C') {
			run_flush(&r);
			if (evbuffer_get_length(in) < frame_total(&f))
				break;
			evbuffer_drain(in, frame_total(&f));
			pop_request(s);
			continue;
		}
		if (needs_body(s, &f) || s->sync_pending > 0) {
			if (!run_has(&r, frame_total(&f)))
				break;
			/* Only CommandComplete and ReadyForQuery are read behind the run. */
			if ((f.type != 'C' && f.type != 'Z') || s->sync_pending > 0)
				run_flush(&r);
			body = run_body(&r, &f);
			if (f.type == 'S')
				handle_parameter_status(s, body, f.len - 4);
			if (s->sync_pending > 0) {
				handle_sync_reply(s, f.type, body, f.len - 4);
				/*
				 * A notification is the client's even in the middle of
				 * sluice's own query: Postgres delivers one that came
				 * while that query ran just before its ReadyForQuery.
				 */
				if ((f.type == 'S' || f.type == 'A') && c != NULL)
					evbuffer_remove_buffer(in, conn_out(&c->conn),
					                       frame_total(&f));
				else
					evbuffer_drain(in, frame_total(&f));
				continue;
			}
			if (f.type == 'Z') {
				handle_ready(s, &r, frame_total(&f), (char)body[0]);
				continue;
			}
			record_server_reply(s->pool, f.type, body, f.len - 4);
			/* Even one sluice rewords (query_timeout): pending LISTENs fail. */
			if (f.type == 'E' && c != NULL && c->listen != NULL)
				listen_server_error(c);
			if (f.type == 'E' && s->timed_out_after_us > 0 && c != NULL &&
			    query_timeout_error(s, conn_out(&c->conn), body, f.len - 4)) {
				track_server_reply(s, 'E');
				evbuffer_drain(in, frame_total(&f));
				if (out_of_step) {
					copy_failed_out_of_step(s);
					return;
				}
				continue;
			}
			if (f.type == 'C' && c != NULL && c->listen != NULL &&
			    listen_server_tag(c, requests_head(&s->requests), (const char *)body)) {
				/* A LISTEN sent as UNLISTEN: the client gets its own tag. */
				qstats_tag(s, (const char *)body);
				track_server_reply(s, 'C');
				run_flush(&r);
				evbuffer_drain(in, frame_total(&f));
				build_command_complete(conn_out(&c->conn), "LISTEN");
				s->pool->stats.bytes_sent += frame_total(&f);
				flush_fakes(s);
				continue;
			}
			if (f.type == 'C') {
				qstats_tag(s, (const char *)body);
				if (is_watched_tag_length(f.len)) {
					check_settings_tag(s, (const char *)body);
					prepared_server_tag(s, (const char *)body);
				}
			} else if (f.type == 'E' && s->stmts.count > 0) {
				prepared_server_error(s,
				                      msg_error_field(body, f.len - 4, 'C') ?: "",
				                      msg_error_field(body, f.len - 4, 'M'));
			}
		}
		if (!track_server_reply(s, f.type)) {
			run_flush(&r);
			evbuffer_drain(in, frame_total(&f));
			flush_fakes(s);
			continue;
		}
		if (run_has(&r, frame_total(&f))) {
			r.len += frame_total(&f);
		} else {
			/* Not all here yet: what is moves now, the rest as it comes. */
			run_flush(&r);
			moved =
			    move_bytes(in, c != NULL ? conn_out(&c->conn) : NULL, frame_total(&f));
			s->fwd_remaining = frame_total(&f) - moved;
			s->pool->stats.bytes_sent += moved;
		}
		if (out_of_step) {
			run_flush(&r);
			copy_failed_out_of_step(s);
			return;
		}
		/* Replies sluice owes the client go after what the server sent before them. */
		if (requests_is_fake(requests_head(&s->requests))) {
			run_flush(&r);
			flush_fakes(s);
		}
	}
	run_flush(&r);
	if (s->state == SERVER_ACTIVE && s->client == c) {
		/* Answered without a ReadyForQuery (a barrier's Flush, hold_behind_drop_all). */
		resume_pipelined(s);
		/*
		 * Answered up to a client's Flush inside a batch it has not synced:
		 * idle in the batch's implicit transaction, holding the server.
		 */
		if (c != NULL && s->requests.batch_open && requests_count(&s->requests) == 0 &&
		    !client_mid_message(c))
			client_arm_timer(c, s->pool->set.idle_transaction_timeout_us);
		check_client_watermark(s);
	} else if (evbuffer_get_length(in) > 0 && s->state != SERVER_CLOSING)
		server_kick(s);
}

/* A cancel takes a waiting client out of the queue, or goes to its server. */
static void relay_client_cancel(struct client *c)
{
	if (c->state == CLIENT_WAITING)
		client_reject_request(c, SQLSTATE_QUERY_CANCELED,
		                      "canceling statement due to user request");
	else if (c->state == CLIENT_ACTIVE && c->server != NULL)
		cancel_server(c->server);
}

static void relay_client_free(struct client *c)
{
	if (c->listen != NULL)
		listen_client_gone(c);
}

const struct client_handler relay_client_handler = {
    .input = relay_client_input,
    .cancel = relay_client_cancel,
    .free = relay_client_free,
};
