/*
 * Named prepared statements in transaction mode.  A client's statement name
 * maps to a worker-wide statement (deduplicated by query text and parameter
 * types) that has a sluice-owned name on the servers, "sluice_<id>_<gen>",
 * whose id is unique in the process: a server handed to another worker keeps
 * its statements, which that worker takes over under the same names.
 * Each server keeps an LRU of the statements it has prepared, bounded by
 * max_prepared_statements.  When a client binds or describes a statement the
 * linked server lacks, a Parse is injected first and its ParseComplete is
 * swallowed; a client Close is answered locally.  Replies sluice fakes or
 * swallows travel through the server's request queue (requests.h, whose
 * REQ_* markers say which) so order is kept.
 */
#ifndef SLUICE_PREPARED_H
#define SLUICE_PREPARED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/hash.h"
#include "base/list.h"
#include "base/ring.h"
#include "base/types.h"
#include "pool/stale_plans.h"

struct frame;
struct msgview;

/* One distinct statement on a worker. */
struct pstmt {
	uint64_t id;         /* part of the server-side name; unique in the process */
	uint32_t generation; /* newer when a plan went stale (stale_plans.h); part of the name */
	uint64_t hash;       /* of body, the same on every worker */
	uint64_t qfp;        /* query_stats fingerprint of its text; 0 = not computed yet */
	uint8_t *body;       /* Parse body after the name: query, parameter count and types */
	size_t len;          /* bytes in body */
	int refs;            /* client names, server entries and queued sends using it */
	bool session_state;  /* its text may change session state (server_inspect_sql) */
	bool sql;            /* an SQL PREPARE: body is the text after the name, no NUL */
	struct pstmt *dep;   /* the SQL statement its text EXECUTEs (prepared first), or NULL */
	uint32_t ref_at;     /* where body names what it EXECUTEs (a client name has a `ref`) */
	uint32_t ref_len;    /* bytes of that name in body */
	struct pstmt_registry *reg; /* owner, for releasing from a libevent cleanup */
	struct pstmt *next;         /* registry chain */
};

/* What the registries of all workers share (in struct worker_shared). */
struct pstmt_shared {
	struct hash_key key;      /* of bodies and client names, chosen by clients; one for all
	                             workers, so a body hashes alike on each (stale, moved) */
	struct stale_plans stale; /* statements whose plans went stale, by body hash */
	/*
	 * Statement ids, so no two workers' names clash on a server.  A cache line
	 * of its own: written at each new statement, while every worker reads
	 * stale.epoch at each message.
	 */
	_Alignas(64) _Atomic uint64_t next_id;
};

struct pstmt_registry {
	struct pstmt **buckets;      /* by hash */
	uint32_t size;               /* power of two */
	uint32_t count;              /* statements */
	struct pstmt_shared *shared; /* ids, hash key and stale plans of every worker */
	uint32_t stale_seen;         /* the stale plans' epoch this registry caught up with */
};

/*
 * An SQL PREPARE or DEALLOCATE sent in a Parse (drivers' extended protocol):
 * sluice answers the Parse, Bind and Describe itself and carries the
 * statement out on the client's own names at each Execute of a portal bound
 * to it (docs/session-state.md).
 */
struct sql_action {
	int refs;         /* the statement that is it, the portal bound to it */
	struct pstmt *ps; /* PREPARE: the statement it prepares (ps->sql); DEALLOCATE: NULL */
	char name[];      /* the SQL statement name it prepares or deallocates */
};

/* A client's name for a statement. */
struct client_stmt {
	char *name;                /* as the client wrote it */
	struct pstmt *ps;          /* what it means */
	uint32_t generation;       /* ps->generation when the client last learnt its result type */
	uint32_t cost;             /* bytes it holds: counted in stmt_map.bytes */
	char *ref;                 /* the SQL statement name its text EXECUTEs, or NULL */
	struct sql_action *action; /* its text is an SQL PREPARE/DEALLOCATE sluice runs, or NULL */
	struct client_stmt *next;  /* map chain */
};

/*
 * A client's names, allocated at its first (client->stmts is NULL until
 * then): most clients never name a statement, and an idle client is
 * smaller by the 40 bytes this would take inside struct client.
 */
struct stmt_map {
	struct client_stmt **buckets; /* by name hash */
	uint32_t size;                /* power of two, 0 until the first name */
	uint32_t count;
	size_t bytes;               /* what its names hold: at most max_prepared_size */
	const struct hash_key *key; /* the registries' (pstmt_shared) */
	struct sql_action *unnamed; /* the unnamed statement, when it is an sql_action */
	struct sql_action *portal;  /* the portal bound to an sql_action, or NULL */
	char *portal_name;          /* its name ("" for the unnamed portal) */
};

/*
 * A client name an Execute of an sql_action changed, in flight: undone if
 * the server skips or refuses that Execute, as Postgres would not have
 * changed it.
 */
struct name_change {
	struct client_stmt *removed; /* DEALLOCATE: the name as it was (out of the map) */
	struct pstmt *added;         /* PREPARE: what the name means now */
	char name[];
};

/* A statement prepared on one server. */
struct server_stmt {
	struct pstmt *ps;         /* the statement */
	uint64_t name_id;         /* the id in its name there: ps->id, or another worker's
	                             statement's when the server came from there */
	uint32_t generation;      /* the generation in that name */
	struct list_node lru;     /* most recently used first */
	struct server_stmt *next; /* cache chain */
};

/*
 * A statement on a server that is between workers: its body (a copy: the
 * giving worker's registry is not the receiver's to read) and its name.
 */
struct carried_stmt {
	uint8_t *body;       /* Parse body, as pstmt.body */
	size_t len;          /* bytes in body */
	uint64_t name_id;    /* the id in its name on the server */
	uint32_t generation; /* the generation in that name */
};

struct stmt_cache {
	struct server_stmt **buckets; /* by statement id */
	uint32_t size;                /* power of two, 0 until first use */
	uint32_t count;
	size_t bytes;         /* the texts of its statements: at most max_prepared_size */
	struct list_node lru; /* eviction order */
	struct ring pending;  /* uint64_t ids of tracked and injected Parses in flight, in order */
	struct ring names;    /* uint64_t keyed hashes of the client names those of the client
	                         (REQ_TRACKED_PARSE, REQ_SQL_PREPARE) create, in order */
	struct ring bound;    /* uint64_t ids of REQ_TRACKED_BIND Binds in flight, likewise */
	struct ring changes;  /* struct name_change * in flight (requests.h), in order */
	uint32_t failed_changes;      /* the oldest of them whose Execute failed, to undo */
	bool sql_failed;              /* the SQL PREPARE at the head of the queue got an error */
	struct carried_stmt *carried; /* between workers: what the server holds, in LRU order */
	uint32_t ncarried;            /* entries in carried */
};

int prepared_shared_init(struct pstmt_shared *shared);
void prepared_shared_fini(struct pstmt_shared *shared);
void prepared_registry_init(struct pstmt_registry *reg, struct pstmt_shared *shared);
void prepared_registry_fini(struct pstmt_registry *reg);
/* Frees a client's map (NULL: it had none) and drops its references. */
void prepared_map_free(struct stmt_map *map, struct pstmt_registry *reg);
/* Names in a client's map (NULL: none). */
static inline uint32_t prepared_map_count(const struct stmt_map *map)
{
	return map != NULL ? map->count : 0;
}
void prepared_cache_init(struct stmt_cache *cache);
void prepared_cache_fini(struct stmt_cache *cache, struct pstmt_registry *reg);
/*
 * A server leaves its worker (on that worker's thread): its statements are
 * packed for the next one.  False when they cannot all be (memory ran out,
 * or some came from SQL PREPARE or EXECUTE one: this worker writes their
 * server-side names into SQL text); the next worker then drops them all with
 * DEALLOCATE ALL before its first client.
 */
bool prepared_cache_detach(struct stmt_cache *cache, struct pstmt_registry *reg);
/*
 * The server joins the worker that owns `reg` (on its thread): it takes the
 * packed statements over under the names the server knows them by, so a
 * plan there stays as it was, old result type included, and can still
 * report that the type changed (docs/prepared.md).  False: out of memory,
 * and the caller has them all dropped with DEALLOCATE ALL.
 */
bool prepared_cache_attach(struct stmt_cache *cache, struct pstmt_registry *reg);

/* Tracking applies in transaction and statement mode when max_prepared_statements > 0. */
bool prepared_tracking(const struct client *c);

enum prep_result {
	PREP_PASS,   /* not ours: forward the message unchanged */
	PREP_DONE,   /* consumed (rewritten, answered or queued) */
	PREP_READY,  /* answered with a ReadyForQuery now: the client's turn may be over */
	PREP_WAIT,   /* the whole message is not buffered yet */
	PREP_CLOSED, /* the client was failed */
};

/*
 * A client message of type P, B, D, C or Q on a linked, tracking client; `v`:
 * the relay's view of a Query or Parse (nothing for the others).
 */
enum prep_result prepared_client_message(struct client *c, const struct frame *f,
                                         const struct msgview *v);
/*
 * Whether prepared_client_message would pass `f` (a P, B, D, C or Q whose
 * whole view `v` the relay has) as it is, having looked at nothing but the
 * view and changed nothing: the relay may then leave the message in place
 * behind messages not moved yet.  Conservative: false when unsure.
 */
bool prepared_passes(const struct client *c, const struct frame *f, const struct msgview *v);
/* Whether prepared_client_message reads an Execute now (a portal of an SQL PREPARE is bound). */
bool prepared_reads_execute(const struct client *c);

/* The server answered or skipped a REQ_TRACKED_PARSE or REQ_INJECTED_PARSE. */
void prepared_parse_done(struct server *s, bool failed, bool client_parse);
/*
 * The ReadyForQuery of a REQ_SQL_PREPARE or REQ_INJECTED_SQL, or `skipped`:
 * the server ignored it, behind an extended message that failed.
 */
void prepared_sql_done(struct server *s, bool client_prepare, bool skipped);
/* A REQ_SQL_EXECUTE, REQ_FAKE_SQL_PREPARE, REQ_FAKE_EXECUTE or REQ_FAKE_UNNAME left the queue. */
void prepared_change_done(struct server *s, bool failed);
/* After an error: undo the changes of the Executes it failed or made the server skip. */
void prepared_undo_changes(struct server *s);
/* The server answered (or skipped) a REQ_TRACKED_BIND or REQ_STALE_BIND. */
void prepared_bind_done(struct server *s);
/*
 * The REQ_STALE_BIND about to leave the queue was skipped after an earlier
 * error, so the client was not told its plan went stale: its names for the
 * statement stay stale, and its next Bind of one is refused instead.
 */
void prepared_stale_skipped(struct server *s);
/* The REQ_STALE_BIND at the head failed as planned: tell the client its plan went stale. */
void prepared_stale_error(struct server *s);
/* CommandComplete tag or ErrorResponse from a server with tracking on. */
void prepared_server_tag(struct server *s, const char *tag);
void prepared_server_error(struct server *s, const char *sqlstate, const char *msg);
/* Emit fake replies now at the head of the queue; returns true if any was emitted. */
bool prepared_flush_fakes(struct server *s);

#endif
