/*
 * A server: one connection to Postgres.  States:
 *   CONNECTING  TCP/Unix connect in progress
 *   LOGIN       startup and authentication, collecting ParameterStatus
 *   IDLE        in pool->idle, ReadyForQuery 'I', nothing outstanding
 *   ACTIVE      linked to a client
 *   RESETTING   unlinked but not clean: draining replies, ROLLBACK, reset query
 *   CANCELING   clean but a CancelRequest for it is still in flight
 *   LISTENING   its pool's listening connection (listen.h), on no pool list
 *   CLOSING     closed, freed by the reaper at the end of the loop turn
 */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auth/scram.h"
#include "net/conn.h"
#include "base/list.h"
#include "base/log.h"
#include "limit/breaker.h"
#include "proto/params.h"
#include "proto/sqlscan.h"
#include "pool/prepared.h"
#include "pool/qstats.h"
#include "pool/requests.h"
#include "base/types.h"

struct evdns_getaddrinfo_request;
struct event;

enum server_state {
	SERVER_CONNECTING,
	SERVER_LOGIN,
	SERVER_IDLE,
	SERVER_ACTIVE,
	SERVER_RESETTING,
	SERVER_CANCELING,
	SERVER_CLOSING,
	SERVER_LISTENING,
};

/*
 * Why a server stays with its client between transactions (docs/session-state.md):
 * session state that lives in the backend and cannot be replayed elsewhere.
 */
#define PIN_ADVISORY 0x01 /* a session-level advisory lock is held */
#define PIN_TEMP     0x02 /* a temporary table exists */
#define PIN_CURSOR   0x04 /* a cursor WITH HOLD is open */
#define PIN_PREPARED 0x08 /* an SQL PREPARE sluice did not rename */
#define PIN_LISTEN   0x10 /* LISTEN on the backend itself */
#define PIN_LOAD     0x20 /* a library was LOADed: the session is never reused */

/* TLS to the server: asked with an SSLRequest right after connecting. */
enum server_tls {
	SERVER_TLS_NONE,      /* plain: not wanted, or the server said 'N' */
	SERVER_TLS_REQUESTED, /* SSLRequest sent, waiting for 'S' or 'N' */
	SERVER_TLS_HANDSHAKE, /* 'S': handshake running; the startup packet follows it */
	SERVER_TLS_ON,        /* encrypted */
};

struct server {
	uint64_t id;                           /* process-wide connection id */
	struct worker *w;                      /* owner */
	struct pool *pool;                     /* owner pool */
	struct conn conn;                      /* the socket and its buffers */
	struct evdns_getaddrinfo_request *dns; /* host name lookup in flight */
	enum server_state state;               /* changed only by server_set_state */
	struct list_node node;        /* pool list for the state, or worker->dead_servers */
	struct client *client;        /* linked client while ACTIVE */
	struct listener *listener;    /* the pool's listener it serves; NULL for a pooled server */
	struct sockaddr_storage addr; /* resolved peer address, for cancel connections */
	socklen_t addrlen;
	char addr_text[128];               /* for logs */
	uint32_t backend_pid, backend_key; /* real BackendKeyData */
	struct param_list params;          /* GUC values as the server has them */
	struct requests requests;          /* requests forwarded and not yet answered */
	struct stmt_cache stmts;           /* prepared statements it holds (transaction mode) */
	struct qstats_server qs;           /* query_stats: statements in flight */
	char tx_status;                    /* last ReadyForQuery status: I, T or E */
	bool copy_in;                      /* server is in COPY FROM STDIN */
	int sync_pending;           /* ReadyForQuery replies to swallow (parameter SET batches) */
	bool params_dirty;          /* session state may have changed: read it back (SET, pins) */
	bool capturing;             /* that read-back is in flight (counted in sync_pending) */
	bool capture_failed;        /* and it failed: the server is retired after the turn */
	bool reset_query_sent;      /* session mode: server_reset_query already queued */
	struct param_list captured; /* its rows so far: settings with source 'session' */
	uint8_t captured_pin;       /* and the PIN_* bits it found */
	bool custom_unknown;        /* a custom setting sluice cannot name may have changed */
	bool names_read;            /* this request's SET names were read (vs. the SET tag) */
	bool named_stmt_stateful;   /* untracked: a named statement here may change state */
	struct param_list watch;    /* custom settings named since the last read-back */
	uint8_t pin;                /* PIN_* reasons: the server stays with its client */
	bool loaded;                /* a LOAD ran on it: PIN_LOAD until it closes */
	int64_t pinned_since_us;    /* when pin last became non-zero, for pin_timeout */
	uint64_t fwd_remaining;     /* bytes of a message still to stream to the client */
	int cancels_inflight;       /* CancelRequests not yet acknowledged: 0 or 1 (cancel.c) */
	bool cancel_deferred;       /* its client left with a request behind sluice's own SET
	                               batch or read-back: cancelled once those are answered */
	uint8_t reset_cancels;      /* cancels sent again for the request of a client that left */
	uint64_t cancel_again_for;  /* id of the client that asked again meanwhile; 0: none */
	uint32_t cancel_again_at;   /* its request then (requests_started) */
	struct list_node cancels;   /* those requests, detached if the server dies */
	struct scram_client *scram; /* SCRAM state during login only */
	struct event *timer;        /* connect, idle, lifetime, reset timeouts */
	int64_t connect_us;         /* when the connection was started */
	int64_t idle_since_us;      /* when it became idle */
	int64_t request_start_us;   /* first request forwarded into an empty queue */
	uint32_t requests_started;  /* such starts so far: which request is running */
	int64_t xact_start_us;      /* first request after ReadyForQuery 'I' */
	int64_t client_wait_us;     /* how long its client queued for it (the slow log's wait_ms):
	                               here, not in each of thousands of clients */
	int64_t timer_deadline_us;  /* when the armed timer fires */
	int64_t timed_out_after_us; /* query_timeout that cancelled the running request; 0 = none */
	bool close_needed;          /* retire at the next release (reload, lifetime) */
	int lend_to;                /* a worker owed it: handed there after this loop turn (pool.c,
	                               pool_lend_deferred), or, closed, its units go there
	                               (pool_server_gone); -1 = none */
	bool stmts_foreign;         /* came from another worker with statements this one could
	                               not take over: DEALLOCATE ALL before its first client */
	bool timer_pending;         /* timer armed (saves libevent calls per transaction) */
	enum server_tls tls;        /* TLS negotiation during login */
	SSL *ssl_in_transit;        /* TLS, between workers: the session conn_detach kept */
	struct breaker *breaker;    /* its host's breaker (a reference of its own): host, port */
	bool probe;                 /* it is that breaker's half-open probe, not yet judged */
	bool any_role;              /* prefer-standby found no standby: a primary will do */
	bool recheck;               /* it asks its host's role again: the claim ends with it */
	bool role_query;            /* login: pg_is_in_recovery() asked (Postgres before 14) */
	bool read_only;             /* default_transaction_read_only is on */
	enum host_role role;        /* learnt at login, followed by ParameterStatus */
	bool role_reported;         /* in_hot_standby came in a reply: followed at release */
	union conn_event_space rev_space[]; /* conn's read event, in the server's allocation */
};

/* Bytes of one server's allocation: the struct and its read event (conn_event_size). */
size_t server_size(void);

struct host_pick;

/* A new server of `p` to the host `pick` chose (pool/hosts.h); `l`: for that listener. */
struct server *server_new(struct pool *p, const struct host_pick *pick, struct listener *l);
void server_free(struct server *s);
void server_set_state(struct server *s, enum server_state state);
const char *server_state_name(enum server_state state);
/* Log, close the socket, tell the pool; freed later by the reaper. */
void server_close(struct server *s, const char *reason);

/*
 * Handing an idle server to another worker (pool.c decides when and to
 * whom): the same Postgres backend, no new login.  server_can_move says
 * whether it may go: idle and clean, nothing buffered (for TLS, nothing
 * undecrypted either: its session moves with it, conn.h), nothing pinned, no
 * cancel in flight.  server_detach, on the owner's thread, takes it off its
 * pool's list, frees its timer and events, and packs its prepared
 * statements for the next worker, which takes them over under the same
 * names (statement ids are unique in the process, prepared.h); when it
 * cannot (SQL PREPAREd ones) it drops them all with DEALLOCATE ALL in front
 * of the first client's bytes (stmts_foreign) and prepares afresh.
 * The server keeps its parameters, BackendKeyData, breaker reference and its
 * quota units (the pool code moves those).  server_attach, on the new
 * worker's thread, makes the timer and read event on its loop; the caller
 * then releases it into pool `p` (its nservers counted already).  -1: out of
 * memory, and the server is on no list yet.
 */
bool server_can_move(const struct server *s);
/*
 * At release, after an in_hot_standby came in a reply (a promotion is
 * reported just before a ReadyForQuery, so mostly inside a request): its
 * host's role goes to the breaker, and a server that no longer suits its
 * pool is closed.  Returns false when it was closed.
 */
bool server_follow_reported_role(struct server *s);
void server_detach(struct server *s);
int server_attach(struct server *s, struct pool *p);
/* A detached server no pool of `w` can take: close its socket and free it (units aside). */
void server_discard(struct server *s, struct worker *w);

/* The client let go of the server: release it if clean, else reset it first. */
void server_unlink(struct server *s);

/* Re-run the read handler on buffered input. */
void server_kick(struct server *s);

/*
 * An idle server about to be handed out that has been idle longer than
 * server_check_delay: send server_check_query and return true.  It is then
 * RESETTING, like a server cleaned after its client: the answer returns it
 * to the pool (to the first waiter), a dead or silent one is closed
 * (server_reset_timeout) and the pool opens another.
 */
bool server_check_if_stale(struct server *s);

/* Next step of cleaning an unlinked server (called again after each ReadyForQuery). */
void server_reset_step(struct server *s);

/* Queue the parameter SET batch for the linked client, if anything differs. */
void server_sync_params(struct server *s, struct client *c);

/*
 * After a SET or RESET, once the transaction is over: read back every setting
 * the session changed (pg_settings, source 'session'), so parameters that are
 * not reported (search_path, extra_float_digits, ...) follow the client to
 * its next server.  Returns true if the query was sent.
 */
bool server_capture_params(struct server *s);
/*
 * A Query or Parse text (or the statement a Bind runs) that may change session
 * state: read it back at the end of the transaction, noting the custom
 * settings it names.  `verb`: sqlscan_verb(text, n), which the caller has
 * already read.  The relay calls it for every Query and Parse.  Returns
 * whether the text may change session state.
 */
bool server_inspect_sql(struct server *s, enum sql_verb verb, const char *text, size_t n);
/*
 * A Bind without prepared statement tracking: it may run a named statement
 * parsed in an earlier request, even by another client (they share the
 * server's), whose text sluice does not keep.  If one that may change
 * session state was parsed on this server (named_stmt_stateful), the state
 * is read back and reset as for a custom setting sluice cannot name.
 */
void server_inspect_bind(struct server *s);
/*
 * A FunctionCall: a function sluice cannot see (libpq's PQfn, the large-object
 * functions) may take an advisory lock or set any setting, a custom one too.
 */
void server_inspect_function_call(struct server *s);

/* Apply the read-back rows to the server's and the linked client's lists. */
void server_apply_captured(struct server *s);
/* The PIN_* bits as words ("advisory lock,temporary table"); "" for none. */
const char *server_pin_reasons(uint8_t pin, char *buf, size_t cap);
/* A read-back row's pin reasons (the names server_pin_reasons writes) as PIN_* bits. */
uint8_t server_parse_pins(const char *text, size_t len);

/*
 * A request started on an empty queue: make sure the timer fires by its
 * query_timeout deadline (lazily: a pending earlier deadline is re-checked).
 */
void server_request_started(struct server *s);

/* True when the server may be returned to the pool. */
bool server_is_clean(const struct server *s);

void server_log_ctx(const struct server *s, struct log_ctx *ctx);
#define slog(s, lvl, ...)                                                                          \
	do {                                                                                       \
		if (log_enabled((s)->w->log, (lvl))) {                                             \
			struct log_ctx ctx_;                                                       \
			server_log_ctx((s), &ctx_);                                                \
			log_emit((s)->w->log, (lvl), &ctx_, __VA_ARGS__);                          \
		}                                                                                  \
	} while (0)

#endif
