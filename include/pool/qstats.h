/*
 * Query insights: statistics per statement, kept by each worker for its own
 * clients with plain stores (no locks, nothing shared), and read by observe/
 * through a gather.
 *
 * A statement is known by its fingerprint: its text with every literal
 * replaced by '?' (slowlog_redact), comments dropped and whitespace collapsed,
 * hashed once (FNV-1a).  A Query is fingerprinted when it is forwarded; a
 * Parse likewise, and a named statement that prepared.c tracks keeps its
 * fingerprint with the statement (struct pstmt), so each Bind and Execute of
 * it costs a hash-table lookup, never a rehash.  Prepared and simple forms of
 * one statement therefore share a fingerprint.
 *
 * Per (fingerprint, database, user, tenant) an entry counts calls, errors,
 * rows, total time and a small log-linear histogram (4 buckets per power of
 * two, for p50/p95/p99 within 12%), with first and last seen.  At most
 * query_stats_max entries per worker: a space-saving top-k, where each entry
 * has a weight (its calls plus what its slot inherited), a full table
 * evicts the lightest entry, the newcomer inherits that weight, and the
 * evicted figures are added to its scope's "other" row.  Heavy hitters stay.
 *
 * Timing: a statement (a Query, or an Execute) runs from when it was sent, or
 * when the statement before it on that server finished if later, until it
 * finished: ReadyForQuery for a Query; CommandComplete, EmptyQueryResponse,
 * PortalSuspended or ErrorResponse for an Execute.  Rows come from the
 * CommandComplete tags.  Each server keeps its statements in flight in
 * order (struct qstats_server), which the relay retires with its requests.
 */
#ifndef SLUICE_QSTATS_H
#define SLUICE_QSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/hash.h"
#include "base/histogram.h"
#include "base/ring.h"
#include "base/types.h"
#include "pool/slowlog.h"

struct evbuffer;
struct frame;
struct msgview;
struct pstmt;

enum query_type {
	QUERY_SELECT,  /* SELECT, VALUES, TABLE, WITH ... SELECT */
	QUERY_INSERT,  /* INSERT, and WITH ... INSERT */
	QUERY_UPDATE,  /* UPDATE, and WITH ... UPDATE */
	QUERY_DELETE,  /* DELETE, and WITH ... DELETE */
	QUERY_DDL,     /* CREATE, ALTER, DROP, TRUNCATE, COMMENT, GRANT, REVOKE... */
	QUERY_UTILITY, /* BEGIN, COMMIT, SET, SHOW, COPY, VACUUM, EXPLAIN, LISTEN... */
	QUERY_OTHER,   /* anything else (MERGE, CALL, DO, unknown words) */
	QUERY_TYPES,
};

/* "select", "insert", "update", "delete", "ddl", "utility", "other". */
const char *query_type_name(enum query_type t);

#define QSTATS_TEXT_MAX     200  /* bytes of normalised text kept per entry, for display */
#define QSTATS_SCAN_MAX     4096 /* bytes of a statement's text that make its fingerprint */
#define QSTATS_RECENT       64   /* struct qstats.recent; a power of two */
#define QSTATS_HIST_SHIFT   3    /* entry buckets: 8 of struct histogram's merged into one */
#define QSTATS_HIST_BUCKETS ((HISTOGRAM_BUCKETS + 7) >> QSTATS_HIST_SHIFT)
#define QSTATS_SCOPES_MAX   4096 /* (database, user, tenant) triples; then one "*" scope */
#define QSTATS_SHAPE_BITS   5    /* struct qstats.shapes: 32 sets of 2 */
#define QSTATS_SHAPE_TEXT   512  /* longest text whose shape is kept */

/* A client's handle on an entry: valid while entries[slot].gen == gen. */
struct qstats_ref {
	uint64_t fp;   /* fingerprint; 0 = none */
	uint32_t slot; /* index in qstats.entries */
	uint32_t gen;  /* of that slot when the ref was made; 0 = no entry */
};

/* What is added up per entry and per "other" row. */
struct qstats_figures {
	uint64_t calls;                     /* statements finished */
	uint64_t errors;                    /* of those, the ones that failed */
	uint64_t rows;                      /* rows from their CommandComplete tags */
	uint64_t total_us;                  /* their summed time */
	int64_t first_us;                   /* wall clock of the first; 0 = never */
	int64_t last_us;                    /* of the latest */
	uint32_t hist[QSTATS_HIST_BUCKETS]; /* durations: 8 histogram.h buckets per counter */
};

struct qstats_entry {
	uint64_t fp;                /* fingerprint */
	uint64_t weight;            /* space-saving count: statements sent plus the inherited */
	uint64_t tick_calls;        /* calls since the last stats log tick */
	uint64_t tick_us;           /* their time */
	struct qstats_figures fig;  /* since the entry was made (or the last RESET QUERIES) */
	uint32_t gen;               /* bumped each time the slot is reused or reset */
	int32_t next;               /* hash chain: next slot, -1 = end */
	uint32_t heap;              /* position in qstats.heap */
	uint16_t scope;             /* index in qstats.scopes */
	uint8_t type;               /* enum query_type */
	uint8_t text_len;           /* bytes in text */
	char text[QSTATS_TEXT_MAX]; /* normalised text, truncated on a UTF-8 boundary */
};

/* Who ran statements: one per (database, user, tenant) this worker served. */
struct qstats_scope {
	char *database;              /* client-facing database name */
	char *user;                  /* server login user */
	char *tenant;                /* tenant name */
	struct qstats_figures other; /* figures of evicted entries of this scope */
};

/* Per statement type, on every worker: what SHOW QUERY_TYPES and /metrics report. */
struct qstats_type {
	uint64_t errors;    /* statements that failed */
	uint64_t rows;      /* rows from CommandComplete tags */
	struct histogram h; /* durations; h.count is the calls */
};

/*
 * A text recently fingerprinted, with where its literals were: a text of the
 * same shape (slowlog_same_shape: the literals differ, nothing else) has the
 * same fingerprint and needs no normalising.  pgbench and most applications
 * send a few statements again and again with other values.
 */
struct qstats_shape {
	uint64_t fp; /* its fingerprint; 0 = none */
	uint32_t len;
	struct literal_spans sp;
	char text[QSTATS_SHAPE_TEXT];
};

/* One worker's tables; allocated on first use. */
struct qstats {
	struct qstats_entry *entries; /* count in use, room for cap; at most max */
	uint32_t count, cap, max;
	int32_t *buckets;    /* hash of (fingerprint, scope): first slot, -1 = empty */
	uint32_t nbuckets;   /* a power of two, at least max */
	struct hash_key key; /* for bucket_of: chosen texts cannot pile into one bucket */
	uint32_t *heap;      /* slots, a min-heap by weight: heap[0] is evicted next */
	struct qstats_scope *scopes;
	uint32_t nscopes, scopes_cap;
	struct qstats_type types[QUERY_TYPES];
	uint64_t evictions; /* entries evicted since start or reset */
	char *scratch;      /* 2 x QSTATS_SCAN_MAX: a statement's text, then its normalised form */
	/* Slots of recently found fingerprints, by their low bits: a repeated statement skips
	 * the keyed bucket hash.  Only a hint: find checks the slot still holds that entry. */
	uint32_t recent[QSTATS_RECENT];
	/* 1 << QSTATS_SHAPE_BITS sets of two, chosen by the text's first bytes; shape_mru
	 * says which of a set's two was used last, the other is replaced on a miss. */
	struct qstats_shape (*shapes)[2];
	uint8_t shape_mru[1u << QSTATS_SHAPE_BITS];
};

/* A statement sent to a server and not finished. */
struct qstats_pending {
	struct qstats_ref ref; /* its entry, if it still has one */
	int64_t start_us;      /* when it was sent */
	uint64_t rows;         /* from CommandComplete tags so far */
	uint16_t scope;        /* whose */
	uint8_t type;          /* enum query_type */
	bool failed;           /* an ErrorResponse answered it */
};

/* Embedded in struct server. */
struct qstats_server {
	struct ring pending;  /* struct qstats_pending, oldest first */
	int64_t last_done_us; /* when the previous statement on this server finished */
};

void qstats_server_init(struct qstats_server *qs);
void qstats_server_fini(struct qstats_server *qs);
void qstats_free(struct qstats *qs);

/*
 * Normalise `len` bytes of SQL into `out` (room for len bytes): literals to
 * '?', comments out, whitespace runs to one space, no leading or trailing
 * space or ';' (slowlog_normalise: the slow log's redaction, in one pass).
 * Returns the length.
 */
size_t qstats_normalise(const char *sql, size_t len, char *out);
/* The statement type of normalised text. */
enum query_type qstats_classify(const char *text, size_t len);
/* The fingerprint of normalised text; never 0. */
uint64_t qstats_hash(const char *text, size_t len);
/* The q-quantile (0..1) of an entry histogram with `count` values, in us; 0 when empty. */
uint64_t qstats_percentile(const uint32_t *hist, uint64_t count, double q);
/* Adds SRC's figures to DST (sums, the earlier first, the later last). */
void qstats_figures_add(struct qstats_figures *dst, const struct qstats_figures *src);

/* Hooks, on the client's worker; each is called only while query_stats is on. */
/*
 * relay.c: a Query, Parse or Bind about to be handled, at the front of `in`
 * unless `v`, the relay's view of it, holds it whole.
 */
void qstats_client_message(struct client *c, struct evbuffer *in, const struct frame *f,
                           const struct msgview *v);
/* prepared.c: a Bind of a tracked statement (its fingerprint is kept in ps). */
void qstats_bind(struct client *c, struct pstmt *ps);
/* relay.c: a Query or Execute was queued to the server. */
void qstats_sent(struct server *s, struct client *c, uint8_t type);
/* Called whatever query_stats says, so statements in flight always finish: */
/* relay.c: an ErrorResponse from the server (it fails the oldest statement). */
void qstats_error(struct server *s);
/* relay.c: CommandComplete's tag. */
void qstats_tag(struct server *s, const char *tag);
/* relay.c: a Query or Execute left the request queue; `failed` when an error retired it. */
void qstats_done(struct server *s, bool failed);

/* RESET QUERIES on this worker: no entries, every figure zero. */
void qstats_reset(struct worker *w);

#endif
