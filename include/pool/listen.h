/*
 * LISTEN / NOTIFY in transaction and statement mode (docs/session-state.md):
 * each pool keeps one listening server connection, opened for its first
 * LISTEN, that LISTENs on the union of its clients' channels.  A client's
 * lone LISTEN / UNLISTEN / UNLISTEN * in a simple Query between transactions
 * is answered by sluice; NotificationResponses of the listening connection
 * are copied to every subscribed client, written when the client is between
 * requests and queued (at most listen_queue_size) otherwise.  A lost
 * listening connection is opened again, LISTENs again, and its subscribers
 * get a notice that notifications may have been missed.  Clients that never
 * LISTEN cost one pointer test where a notification could be written.
 */
#ifndef SLUICE_LISTEN_H
#define SLUICE_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/hash.h"
#include "base/list.h"
#include "base/types.h"
#include "proto/sqlscan.h"

struct event;
struct evbuffer;
struct frame;
struct msgview;

#define LISTEN_NAME_MAX 64 /* NAMEDATALEN: a channel name is at most 63 bytes */

/* One channel the listening connection LISTENs on, with its subscribers. */
struct listen_channel {
	struct list_node node;            /* listener->channels */
	struct listen_channel *hash_next; /* listener->buckets chain */
	struct list_node subs;            /* struct listen_sub, by chan_node */
	uint64_t listen_seq;        /* the Query that LISTENs it on this connection; 0 = not sent */
	bool active;                /* that LISTEN was answered without error */
	char name[LISTEN_NAME_MAX]; /* as Postgres names it (case folded, unquoted) */
};

/* A client subscribed to a channel. */
struct listen_sub {
	struct list_node chan_node;   /* channel->subs */
	struct list_node client_node; /* client_listen->subs */
	struct listen_channel *ch;    /* the channel */
	struct client *c;             /* the subscriber */
};

/*
 * A LISTEN or UNLISTEN the client runs on its server: what it will do at
 * COMMIT.  verb: LISTEN_OP_LISTEN (sent as UNLISTEN), LISTEN_OP_UNLISTEN,
 * LISTEN_OP_OTHER (one sluice does not follow: the server runs it as sent),
 * LISTEN_OP_END (closes the ops of one request in client_listen.ops).
 */
enum {
	LISTEN_OP_LISTEN = 'L',
	LISTEN_OP_UNLISTEN = 'U',
	LISTEN_OP_OTHER = 'R',
	LISTEN_OP_END = 'Z'
};

struct listen_op {
	char verb;                  /* LISTEN_OP_* */
	bool all;                   /* UNLISTEN * */
	char name[LISTEN_NAME_MAX]; /* the channel */
};

/* A statement or portal of the client whose text is a LISTEN or UNLISTEN. */
struct listen_stmt {
	struct list_node node;      /* client_listen->stmts or ->portals */
	struct listen_op op;        /* what executing it does */
	char name[LISTEN_NAME_MAX]; /* its name ("" unnamed) */
};

/* What a client that ever LISTENed keeps (client->listen; NULL for the others). */
struct client_listen {
	struct client *c;               /* owner */
	struct list_node subs;          /* its subscriptions, by client_node */
	int nsubs;                      /* in subs: at most LISTEN_CHANNELS_MAX, then it pins */
	struct evbuffer *queue;         /* notifications and notices not yet written to it */
	size_t queued;                  /* messages in the queue */
	struct listen_channel *wait_ch; /* its LISTEN waits for this channel to be active */
	struct list_node wait_node;     /* listener->waiting while it waits */
	bool wait_tag;                  /* then gets CommandComplete LISTEN (a lone LISTEN) */
	char wait_status;               /* and ReadyForQuery with this status */
	/* LISTEN / UNLISTEN run on its server (extended protocol, transaction blocks): */
	struct list_node stmts;     /* struct listen_stmt: its LISTEN / UNLISTEN statements */
	struct list_node portals;   /* struct listen_stmt: portals bound to them */
	int nstmts;                 /* statements and portals in those lists */
	struct evbuffer *ops;       /* struct listen_op of requests sent, not answered yet */
	struct evbuffer *pending;   /* struct listen_op run in the open transaction */
	bool failed;                /* an error since: the implicit transaction rolls back */
	bool rolled_back;           /* a ROLLBACK tag since */
	char hold[LISTEN_NAME_MAX]; /* a committed LISTEN's channel, not active yet */
};

/* A pool's listening connection and its channels (pool->listen). */
struct listener {
	struct pool *pool;         /* owner */
	struct server *server;     /* the listening connection; NULL while there is none */
	struct list_node channels; /* struct listen_channel, by node */
	/* The channels by name, so that a notification finds its channel at once however many
	 * there are (up to LISTEN_CHANNELS_MAX per client): chained, nbuckets a power of two. */
	struct listen_channel **buckets;
	uint32_t nbuckets;
	struct hash_key key;       /* keyed: clients choose the names */
	struct list_node waiting;  /* clients whose LISTEN waits for its answer */
	struct event *retry_timer; /* opens the connection again after a failure */
	uint64_t sent_seq;         /* Queries sent on this connection */
	uint64_t done_seq;         /* and answered (their ReadyForQuery came) */
	uint64_t relisten_seq;     /* the last LISTEN after a lost connection */
	bool listening;            /* the server logged in and got its LISTENs */
	bool failed;               /* the Query being answered got an ErrorResponse */
	bool lost;                 /* a connection with channels was lost: notice after relisten */
	bool retiring;             /* closed by listen_pool_retire: open again at once */
	char error[256];           /* that error's message */
	char error_state[6];       /* and SQLSTATE */
	int nchannels;             /* channels */
	int nsubs;                 /* subscriptions over all channels */
};

/* The relay's answer to a client Query (listen_client_query). */
enum listen_result {
	LISTEN_PASS, /* not a lone LISTEN / UNLISTEN: relay it as usual */
	LISTEN_DONE, /* answered: go on with the client's next message */
	LISTEN_WAIT, /* the LISTEN waits for the listening connection: stop reading */
};

/*
 * A simple Query `text` (n bytes with its NUL; `verb` its first keyword) of a
 * client between transactions.  A lone LISTEN name, UNLISTEN name or
 * UNLISTEN * is consumed from the client's input (`total` bytes) and
 * answered; anything else passes.
 */
enum listen_result listen_client_query(struct client *c, const char *text, size_t n,
                                       enum sql_verb verb, size_t total);
/*
 * LISTEN / UNLISTEN that reach the client's server (a Parse, or a Query that
 * is not a lone LISTEN between transactions; docs/session-state.md).  A
 * message of the client (whole when it is at most LISTEN_WHOLE_MAX bytes),
 * which goes to its server next: a LISTEN in it is rewritten to UNLISTEN,
 * which costs the server nothing and keeps Postgres' own checks and replies,
 * and the subscription is made on the listening connection at COMMIT.
 * `v`: the relay's view of a Query or Parse, read again after a rewrite.
 * Returns the kind of request to track it as (requests.h).
 */
#define LISTEN_WHOLE_MAX 4096
uint8_t listen_client_message(struct client *c, struct frame *f, struct msgview *v);
/* Whether a client with c->listen must see the CommandComplete tags of its server. */
bool listen_wants_tags(const struct client *c);
/*
 * A CommandComplete for the client; `head`: the request it answers.  Returns
 * true when the client must get the tag LISTEN instead (a LISTEN sent as
 * UNLISTEN).
 */
bool listen_server_tag(struct client *c, uint8_t head, const char *tag);
/* An ErrorResponse for the client. */
void listen_server_error(struct client *c);
/* A REQ_LISTEN_* request was answered or skipped. */
void listen_request_done(struct client *c);
/*
 * The client's server said ReadyForQuery `status`; `last`: nothing else is
 * outstanding.  A transaction ended: its LISTENs and UNLISTENs take effect
 * or are dropped.  Returns true when the ReadyForQuery is held (and sent by
 * listen.c) until the listening connection LISTENs on a new channel.
 */
bool listen_ready(struct client *c, char status, bool last);

/* Write what is queued for the client if it is between requests now. */
void listen_flush(struct client *c);
/* The client is being freed: its subscriptions end. */
void listen_client_gone(struct client *c);

/* The listening connection logged in. */
void listen_server_ready(struct server *s);
/* Input on the listening connection. */
void listen_server_input(struct server *s);
/* The listening connection (or an attempt at one) closed. */
void listen_server_gone(struct server *s);
/*
 * PAUSE / KILL closed the pool's servers: the listening connection closes
 * too; RESUME opens it again, and its subscribers are told what they missed.
 */
void listen_pool_paused(struct pool *p);
/*
 * RECONNECT, or a reload that changed where the pool connects: the listening
 * connection closes like the pool's other servers, and, with channels, a new
 * one LISTENs to them again on the current target (listen_server_gone).
 * Left open, it kept listening on the old target, and NOTIFYs sent on the
 * new one never reached the subscribers.
 */
void listen_pool_retire(struct pool *p);
/* The pool is being freed: let go of the listener. */
void listen_pool_free(struct pool *p);

#endif
