/*
 * A server's outstanding requests: what it will answer, in order.  Each
 * entry is a message type the server was sent (Query, Parse, Bind,
 * Describe, Execute, Close, Sync, FunctionCall) or a marker for work sluice
 * adds itself: a request whose reply is swallowed, or a reply sluice emits
 * when the marker reaches the head, so faked and swallowed replies keep
 * their order with real ones (prepared.h).  After an ErrorResponse to an
 * extended message the server skips everything up to the next Sync; the
 * queue mirrors that (skip_to_sync).  Knows nothing of servers or clients:
 * the relay, the server and prepared statements act on what it returns.
 */
#ifndef SLUICE_REQUESTS_H
#define SLUICE_REQUESTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/ring.h"

/* Markers for work sluice adds (the prepared statements of prepared.h). */
#define REQ_INJECTED_PARSE 'p' /* swallow its ParseComplete; its id is in stmt_cache.pending */
#define REQ_TRACKED_PARSE  't' /* client Parse of a tracked statement; id in stmt_cache.pending */
#define REQ_INJECTED_CLOSE 'x' /* swallow its CloseComplete */
#define REQ_FAKE_PARSE     '1' /* emit a ParseComplete when it reaches the head */
#define REQ_FAKE_CLOSE     '3' /* emit a CloseComplete when it reaches the head */
#define REQ_FAKE_DEALLOC   'd' /* emit CommandComplete DEALLOCATE + ReadyForQuery */
#define REQ_TRACKED_BIND   'b' /* Bind of a tracked statement; its id is in stmt_cache.bound */
#define REQ_STALE_BIND     'r' /* Bind that fails on purpose: its error becomes 0A000 */
/* Replies sluice gives for an SQL PREPARE / DEALLOCATE in a Parse (below): */
#define REQ_FAKE_BIND    '2' /* emit BindComplete */
#define REQ_FAKE_NODATA  'n' /* emit NoData */
#define REQ_FAKE_EXECUTE 'e' /* emit CommandComplete DEALLOCATE; changes a name (below) */
#define REQ_FAKE_UNNAME  '4' /* emit a CloseComplete for a Close of a name; changes it */
/* SQL PREPARE / EXECUTE (docs/session-state.md), Query-like: answered by ReadyForQuery. */
#define REQ_SQL_PREPARE  'q' /* client's PREPARE, renamed; id in stmt_cache.pending */
#define REQ_INJECTED_SQL 'i' /* PREPARE sluice sends before an EXECUTE: replies swallowed */
#define REQ_FAKE_PREPARE 'k' /* emit CommandComplete PREPARE + ReadyForQuery */
/*
 * A Sync sluice sends ahead of a reply it makes itself for a Query (an SQL
 * PREPARE or DEALLOCATE it answers) behind extended messages not yet
 * Synced: Postgres would run that Query, which sends their replies and ends
 * their batch.  Its ReadyForQuery is swallowed; like a Sync, it ends skipping.
 */
#define REQ_INJECTED_SYNC 'z'
/*
 * An SQL PREPARE sent in extended messages (before an extended message that
 * EXECUTEs it): Parse (REQ_INJECTED_PARSE), Bind, Execute, two Closes.
 */
#define REQ_INJECTED_BIND    'j' /* swallow its BindComplete */
#define REQ_INJECTED_EXECUTE 'g' /* swallow its CommandComplete; id in stmt_cache.pending */
/*
 * An SQL PREPARE / DEALLOCATE in a Parse (struct sql_action), carried out at
 * its Execute.  A name it changes is in stmt_cache.changes for each of
 * REQ_SQL_EXECUTE, REQ_FAKE_SQL_PREPARE, REQ_FAKE_EXECUTE and REQ_FAKE_UNNAME.
 */
#define REQ_SQL_EXECUTE      'h' /* Execute of a PREPARE: reply to the client; id in pending */
#define REQ_CARRIER_PARSE    'w' /* swallow its ParseComplete (no statement id) */
#define REQ_CARRIER_EXECUTE  'y' /* Execute whose reply goes to the client: 42P05, 26000... */
#define REQ_FAKE_SQL_PREPARE 'K' /* emit CommandComplete PREPARE */
#define REQ_FAKE_PARAMS      'a' /* emit a ParameterDescription of no parameters */
/*
 * LISTEN / UNLISTEN the client runs on its server (listen.h): an Execute of
 * such a statement, and a Query with such statements.  Their LISTENs were
 * sent as UNLISTEN, whose CommandComplete the client gets back as LISTEN.
 */
#define REQ_LISTEN_EXECUTE 'l'
#define REQ_LISTEN_QUERY   'u'
/*
 * A CopyDone or CopyFail the client sent behind requests not answered yet,
 * before a CopyInResponse said the server is in COPY mode: COPY data may be
 * pipelined behind the COPY.  If a COPY starts before it, it ends that COPY
 * (requests_copy_started); otherwise the server ignores it, and so does the
 * queue: it is dropped when it reaches the head (requests_pop).  No reply.
 */
#define REQ_COPY_END '$'
/*
 * CopyData sent the same way, one marker for consecutive ones: no reply,
 * but where it lies says whether a Sync came after COPY data
 * (requests_copy_started).  Dropped at the head like REQ_COPY_END.
 */
#define REQ_COPY_DATA '%'

struct requests {
	struct ring kinds; /* uint8_t per request: message type or REQ_* marker, oldest first */
	bool skip_to_sync; /* the server errored mid-extended-batch: it ignores all until Sync */
	/*
	 * Postgres ignores a Sync in COPY mode, so a Sync the client sends inside
	 * a COPY is not queued.  A COPY that fails on its data leaves COPY mode
	 * there, though, and answers a Sync behind that data: which of those
	 * Syncs the server answers is then not known.  copy_data: COPY data went
	 * to the server in this COPY; syncs_unsure: a Sync not queued came after
	 * it (set until the COPY ends; the relay acts if it ends in an error).
	 */
	bool copy_data;
	bool syncs_unsure;
	/*
	 * The last request sent was an extended message (Parse, Bind, Describe,
	 * Execute, Close, or one sluice injects) with no Sync or Query after it:
	 * Postgres keeps the batch's implicit transaction open until the Sync,
	 * whatever the last ReadyForQuery said, answered or not.
	 */
	bool batch_open;
};

void requests_init(struct requests *q);
void requests_fini(struct requests *q);

/* Requests the server skips after an error until the next Sync. */
bool requests_is_extended(uint8_t kind);
/* A marker for a reply sluice emits itself. */
bool requests_is_fake(uint8_t kind);

/*
 * Request `kind` was queued (requests_push): batch_open follows it.  One the
 * server skips after an error changes nothing: that batch is aborted, and
 * its Sync ends it.
 */
static inline void requests_sent(struct requests *q, uint8_t kind)
{
	switch (kind) {
	case 'P':
	case 'B':
	case 'D':
	case 'E':
	case 'C':
		q->batch_open = true;
		break;
	case 'S':
	case 'Q':
	case 'F':
		q->batch_open = false;
		break;
	default:
		/* A faked reply sends nothing; COPY markers are not requests. */
		if (!requests_is_fake(kind) && kind != REQ_COPY_END && kind != REQ_COPY_DATA)
			q->batch_open = requests_is_extended(kind);
		break;
	}
}

/*
 * Queues a request sluice sends itself (Sync, ROLLBACK, a faked reply),
 * whatever comes before.  Inline, as requests_track and requests_pop: the
 * relay queues and retires every request the client sends.
 */
static inline void requests_push(struct requests *q, uint8_t kind)
{
	uint8_t *k = ring_push_slot(&q->kinds);

	/* Out of memory: the pipeline is unbounded by design, so fail loudly. */
	if (k == NULL)
		abort();
	*k = kind;
	requests_sent(q, kind);
}

/*
 * Queues a request the server will process: a Sync always (it ends
 * skipping), anything else only when the server is not skipping to a Sync.
 * Returns true when it was queued on an empty queue: a new request began.
 */
static inline bool requests_track(struct requests *q, uint8_t kind)
{
	bool first = ring_count(&q->kinds) == 0;

	if (kind == 'S')
		q->skip_to_sync = false;
	else if (q->skip_to_sync)
		return false;
	requests_push(q, kind);
	return first;
}

/* The oldest entry, or 0 when none (inline: the relay asks several times per message). */
static inline uint8_t requests_head(const struct requests *q)
{
	const uint8_t *k = ring_peek(&q->kinds);

	return k != NULL ? *k : 0;
}

/* The newest entry, or 0 when none. */
uint8_t requests_last(const struct requests *q);

static inline uint32_t requests_count(const struct requests *q)
{
	return ring_count(&q->kinds);
}
/* Removes and returns the oldest entry, or 0 when none. */
static inline uint8_t requests_pop(struct requests *q)
{
	const uint8_t *k = ring_peek(&q->kinds);
	uint8_t kind;

	if (k == NULL)
		return 0;
	kind = *k;
	ring_drop_head(&q->kinds);
	/* COPY messages that no COPY took (none started before them): the server ignored them. */
	while ((k = ring_peek(&q->kinds)) != NULL && (*k == REQ_COPY_END || *k == REQ_COPY_DATA))
		ring_drop_head(&q->kinds);
	return kind;
}

/*
 * A CopyDone or CopyFail sent while the server is not known to be in COPY
 * mode: queued as REQ_COPY_END behind requests that may start a COPY; with
 * none (or while the server skips to a Sync) the server ignores it.
 */
static inline void requests_track_copy_end(struct requests *q)
{
	if (ring_count(&q->kinds) > 0 && !q->skip_to_sync)
		requests_push(q, REQ_COPY_END);
}

/* CopyData: in COPY mode it is noted, otherwise queued as REQ_COPY_END is (one per run). */
static inline void requests_track_copy_data(struct requests *q, bool copy_in)
{
	if (copy_in)
		q->copy_data = true;
	else if (ring_count(&q->kinds) > 0 && !q->skip_to_sync && requests_last(q) != REQ_COPY_DATA)
		requests_push(q, REQ_COPY_DATA);
}

/* A Sync in COPY mode, not queued: unsure after COPY data. */
static inline void requests_sync_in_copy(struct requests *q)
{
	q->syncs_unsure |= q->copy_data;
}

/* The COPY ended (CommandComplete or ErrorResponse): whether its Syncs were unsure. */
static inline bool requests_copy_ended(struct requests *q)
{
	bool unsure = q->syncs_unsure;

	q->copy_data = false;
	q->syncs_unsure = false;
	return unsure;
}

/*
 * After an ErrorResponse to an extended message (requests_is_extended of the
 * head): removes and returns the oldest entry, the erring one and then each
 * one the server skips until the next Sync, or 0 at that Sync.  Postgres
 * skips every message there, Query and FunctionCall included, and answers
 * none of them.  Popping the last entry means the Sync is not sent yet: the
 * queue skips what arrives until it is.
 */
uint8_t requests_pop_skipped(struct requests *q);
/*
 * CopyInResponse to the head request: the Syncs queued behind it, up to the
 * first copy end sent ahead of the CopyInResponse, reached the server in COPY
 * mode, which ignores them; that copy end is the COPY's and goes too, and so
 * do the REQ_COPY_DATA markers up to it (those behind it are a later COPY's).  A Sync behind one
 * inside the COPY is unsure (struct requests).  Returns whether there was a
 * copy end: then what the client sends next comes after the COPY's end.
 */
bool requests_copy_started(struct requests *q);
/* Whether a Sync must be sent for a ReadyForQuery to come (releasing a server mid-batch). */
bool requests_need_sync(const struct requests *q);

#endif
