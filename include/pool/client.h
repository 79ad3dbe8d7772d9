/*
 * A client: one application connection.  States:
 *   LOGIN    startup packet, authentication, waiting for pool parameters
 *   IDLE     logged in, no server (between transactions)
 *   WAITING  has a request buffered and is queued for a server
 *   ACTIVE   linked to a server; bytes flow through the relay
 *   CLOSING  closed, freed by the worker's reaper at the end of the loop turn
 */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "auth/auth_file.h"
#include "auth/scram.h"
#include "net/conn.h"
#include "base/list.h"
#include "base/log.h"
#include "proto/params.h"
#include "pool/prepared.h"
#include "pool/qstats.h"
#include "base/types.h"
#include "pool/worker.h"

struct client_listen;
struct event;
struct fleet_seat;
struct query_capture;

enum client_state { CLIENT_LOGIN, CLIENT_IDLE, CLIENT_WAITING, CLIENT_ACTIVE, CLIENT_CLOSING };

/* Why a new client is refused once its startup packet is read. */
enum client_refusal { REFUSE_NONE, REFUSE_TOO_MANY, REFUSE_SHUTDOWN, REFUSE_IP_RATE };

enum login_step {
	LOGIN_STARTUP,      /* waiting for StartupMessage / SSLRequest / CancelRequest */
	LOGIN_PASSWORD,     /* sent AuthenticationCleartext or MD5, waiting for 'p' */
	LOGIN_SASL_INITIAL, /* sent AuthenticationSASL, waiting for SASLInitialResponse */
	LOGIN_SASL_FINAL,   /* sent SASLContinue, waiting for SASLResponse */
	LOGIN_WAIT_POOL,    /* authenticated, waiting for the pool's first server login */
	LOGIN_THROTTLED,    /* authenticated, waiting for a token of the tenant's connect_rate */
	LOGIN_AUTH_QUERY,   /* waiting for auth_query to find the user's credentials */
	LOGIN_AUTH_DELAY,   /* failed: the answer waits out auth_failure_delay (login_delay.h) */
};

/* Read-suspend reasons (conn_suspend): reading resumes only when all are clear. */
#define SUSPEND_WAIT_SERVER 0x1   /* queued for a server */
#define SUSPEND_WATERMARK   0x2   /* peer's output buffer is full */
#define SUSPEND_LOGIN_WAIT  0x4   /* waiting for pool parameters */
#define SUSPEND_ADMIN       0x8   /* console SUSPEND (servers use the same bit) */
#define SUSPEND_THROTTLE    0x10  /* waiting for a tenant rate token (admission.h) */
#define SUSPEND_PIPELINE    0x20  /* rate-limited: next request waits for the server's answers */
#define SUSPEND_CLOSING     0x40  /* closed: only the final message is still being sent */
#define SUSPEND_AUTH_DELAY  0x80  /* failed login: nothing more is read until it is answered */
#define SUSPEND_LISTEN      0x100 /* its LISTEN waits for the pool's listening connection */

/*
 * What serves a client: the login (login.c) until it is authenticated, then
 * the relay for a pooled client, or the console (worker_hooks.console) for
 * one that asked for the console database, which the console's login sets.
 */
struct client_handler {
	/* Authenticated for this handler's database: welcome the client, or refuse it. */
	void (*login)(struct client *c);
	/* Input is buffered and the client is LOGIN, IDLE or ACTIVE. */
	void (*input)(struct client *c);
	/* A CancelRequest for this client arrived (NULL: ignored). */
	void (*cancel)(struct client *c);
	/* Something the handler waits for outside the client's input is ready (NULL: none). */
	void (*wake)(struct client *c);
	/* The client is being freed: let go of c->session (NULL: nothing to do). */
	void (*free)(struct client *c);
};

struct client {
	/* Pointers and 8-byte fields first, then smaller ones: no padding in 10,000 copies. */
	uint64_t id;                /* process-wide connection id */
	struct worker *w;           /* owner */
	struct conn conn;           /* the socket and its buffers */
	struct list_node node;      /* worker->clients, or worker->dead_clients */
	struct list_node wait_node; /* pool->waiting or pool->login_waiting */
	char *user;   /* from the startup packet; the pool's copy once logged in (names_shared) */
	char *dbname; /* from it too (defaults to user), in user's allocation or the pool's */
	struct param_list params; /* the client's own GUC values */
	struct stmt_map *stmts;   /* its statement names (transaction mode); NULL: none yet */
	struct pool *pool;        /* assigned after authentication */
	struct server *server;    /* linked server while ACTIVE */
	const struct client_handler
	    *handler;               /* serves it once logged in: the relay or the console */
	void *session;              /* the console's state of this client; NULL when pooled */
	struct scram_server *scram; /* SCRAM exchange state, freed when the login ends */
	struct user_secret *queried_secret; /* auth_query's answer, owned */
	struct client *cancel_next;         /* hash chain in the cancel map */
	struct fleet_seat *fleet_seat;      /* fleet_max_client_conn's seat (redis_limiter.h) */
	int64_t throttle_deadline_us;  /* waiting for a rate token until then; 0 = not waiting */
	struct event *timer;           /* login, wait and idle timeouts (made when armed) */
	struct event *xact_timer;      /* transaction_timeout (made when first armed) */
	struct event *stall_timer;     /* client_write_timeout (made when first armed) */
	int64_t connect_us;            /* when accepted */
	union {                        /* WAITING, and ACTIVE with awaiting_rest: never both */
		int64_t wait_start_us; /* when queued for a server */
		int64_t rest_moved_us; /* awaiting_rest: when the message last progressed */
	};
	struct query_capture *capture;   /* start of the latest Query/Parse text (slowlog.c) */
	struct qstats_ref qs_next;       /* query_stats: the statement the next Execute runs */
	struct qstats_ref qs_unnamed;    /* query_stats: the unnamed statement's */
	struct client_listen *listen;    /* LISTEN state (listen.h); NULL: it never LISTENed */
	uint32_t cancel_pid, cancel_key; /* synthetic BackendKeyData */
	/* Parts of one message, whose length frame_client_limit keeps within 32 bits: */
	uint32_t fwd_remaining;  /* bytes of a message still to stream to the server */
	uint32_t skip_remaining; /* bytes of a message still to drop (late COPY data) */
	uint32_t stall_mark;     /* client_write_timeout: its unsent output when last looked */
	union {                  /* one is used while logging in, the other only once logged in */
		uint8_t md5_salt[4]; /* LOGIN: salt of the md5 challenge */
		uint32_t rest_mark;  /* awaiting_rest: what was left of the message last time */
	};
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} peer;                      /* TCP peer (HBA, login delays, logs); formatted when shown */
	enum client_state state : 8; /* see above; changed only by client_set_state */
	enum login_step login : 8;   /* LOGIN sub-state */
	uint8_t refuse;              /* enum client_refusal: over max_client_conn, or draining */
	uint8_t auth_method;         /* enum auth_type chosen for this login */
	uint8_t reserved_kinds;      /* rate tokens reserved for the request it waits to send */
	bool is_unix : 1;            /* connected over the Unix socket */
	bool tls : 1;                /* the socket speaks TLS (after SSLRequest) */
	bool password_md5 : 1;       /* LOGIN_PASSWORD expects an md5 response, not cleartext */
	bool auth_queried : 1;       /* auth_query answered (queried_secret NULL = no such user) */
	bool has_client_key : 1;     /* SCRAM succeeded: scram->client_key is valid */
	bool scram_dummy : 1;        /* SCRAM runs against the dummy verifier: it cannot succeed */
	bool cancel_registered : 1;  /* in the worker's cancel map */
	bool discarding : 1;         /* after a local error: drop messages up to Sync/Query */
	bool close_at_idle : 1;      /* draining: close once the transaction ends */
	bool in_request : 1;         /* rate-limited: inside an admitted request (admission.h) */
	bool tenant_counted : 1;     /* holds a slot of its tenant's max_client_conn */
	bool timer_armed : 1;        /* timer pending (saves a locked libevent call per message) */
	bool names_shared : 1;       /* user and dbname are the pool's strings */
	bool awaiting_rest : 1;      /* the timer is client_read_timeout (client_watch_rest) */
	bool portal_bound : 1;       /* a Bind of the unnamed portal since the last Sync or Query */
	/* DEALLOCATE ALL / DISCARD ALL in the extended protocol (relay.c, hold_behind_drop_all): */
	bool unnamed_drops_all : 1;  /* the unnamed statement is one */
	bool portal_drops_all : 1;   /* the unnamed portal runs it */
	bool hold_after_message : 1; /* the input waits once the message streaming now is sent */
	union conn_event_space rev_space[]; /* conn's read event, in the client's allocation */
};

/* Bytes of one client's allocation: the struct and its read event (conn_event_size). */
size_t client_size(void);

/* Takes ownership of fd; `login` serves it first (login_client_handler). */
struct client *client_new(struct worker *w, int fd, const struct sockaddr *addr, int addrlen,
                          bool is_unix, const struct client_handler *login);
void client_free(struct client *c);
void client_set_state(struct client *c, enum client_state state);
const char *client_state_name(enum client_state state);

/* Send FATAL ErrorResponse, log, and close.  The single error exit for clients. */
void client_fail(struct client *c, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Close without a message (peer went away). */
void client_close(struct client *c, const char *reason);
/*
 * Answer the request the client is waiting on with an ErrorResponse (not
 * FATAL) and ReadyForQuery, dropping its buffered messages up to Sync/Query;
 * the client stays connected.
 */
void client_reject_request(struct client *c, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* SSLRequest accepted: answer 'S' and continue over TLS.  Returns -1 (client closed) on failure. */
int client_start_tls(struct client *c);

/* Pool callbacks. */
void client_link(struct client *c, struct server *s); /* got a server: start relaying */
void client_login_ready(struct client *c);            /* pool defaults are known */
void client_pool_failed(struct client *c, const char *sqlstate, const char *msg, const char *hint);

/* (Re)arm the client's one timer; its meaning depends on the state. 0 disarms. */
void client_arm_timer(struct client *c, int64_t us);
/*
 * The client stopped in the middle of a message its server waits for: it has
 * client_read_timeout to send the rest (docs/timeouts.md).  Armed once per
 * stall, not per read: when the timer fires, progress since it was armed
 * earns another period, so a client is closed after one to two periods of
 * silence.  Any other use of the timer ends the watch.
 */
void client_watch_rest(struct client *c);
/*
 * transaction_timeout (PgBouncer's): armed when the client's transaction
 * begins on its server, disarmed (us = 0) when a ReadyForQuery says it ended
 * or the client lets go of the server.  A transaction open longer closes the
 * client (25P04); its server is reset or closed as after any client loss.
 */
void client_watch_transaction(struct client *c, int64_t us);
/*
 * client_write_timeout: its server was paused because the client's output
 * is full (relay.c).  A client that reads none of it for the timeout is
 * closed, and its server cancelled and reset for others; the watch ends
 * when the output drains.
 */
void client_watch_stall(struct client *c);
/* Has the client sent only part of its next message (streamed or buffered)? */
bool client_mid_message(const struct client *c);

/* Re-run the read handler on buffered input (after resume or release). */
void client_kick(struct client *c);

/* Cancel request for this client from the cancel map. */
void client_cancel(struct client *c);
/* SIGTERM drain: close now if idle, else at transaction end. */
void client_drain(struct client *c);

/*
 * The peer as "host:port" ("unix" over the Unix socket), written into buf.
 * Inline: the slow log calls it, and a call into client.c from there would
 * join slowlog.c to pool/'s circle of calls.
 */
#define CLIENT_PEER_TEXT_LEN 64
static inline const char *client_peer_text(const struct client *c, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port;

	if (c->is_unix) {
		snprintf(buf, len, "unix");
		return buf;
	}
	port = sockaddr_host(&c->peer.sa, host, sizeof(host));
	snprintf(buf, len, "%s:%d", host, port);
	return buf;
}

/*
 * Who a client's log lines are about: its worker, id, tenant (once it has a
 * pool), db, user, and its address, written into addr (CLIENT_PEER_TEXT_LEN).
 */
void client_log_ctx(const struct client *c, struct log_ctx *ctx, char *addr);

#define clog(c, lvl, ...)                                                                          \
	do {                                                                                       \
		if (log_enabled((c)->w->log, (lvl))) {                                             \
			struct log_ctx ctx_;                                                       \
			char addr_[CLIENT_PEER_TEXT_LEN];                                          \
			client_log_ctx((c), &ctx_, addr_);                                         \
			log_emit((c)->w->log, (lvl), &ctx_, __VA_ARGS__);                          \
		}                                                                                  \
	} while (0)

#endif
