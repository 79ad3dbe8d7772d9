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

#include "base/list.h"
#include "base/types.h"

struct event;
struct evbuffer;

#define LISTEN_NAME_MAX 64 /* NAMEDATALEN: a channel name is at most 63 bytes */

/* One channel the listening connection LISTENs on, with its subscribers. */
struct listen_channel {
	struct list_node node;      /* listener->channels */
	struct list_node subs;      /* struct listen_sub, by chan_node */
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

/* What a client that ever LISTENed keeps (client->listen; NULL for the others). */
struct client_listen {
	struct client *c;               /* owner */
	struct list_node subs;          /* its subscriptions, by client_node */
	struct evbuffer *queue;         /* notifications and notices not yet written to it */
	size_t queued;                  /* messages in the queue */
	struct listen_channel *wait_ch; /* its LISTEN waits for this channel to be active */
	struct list_node wait_node;     /* listener->waiting while it waits */
};

/* A pool's listening connection and its channels (pool->listen). */
struct listener {
	struct pool *pool;         /* owner */
	struct server *server;     /* the listening connection; NULL while there is none */
	struct list_node channels; /* struct listen_channel, by node */
	struct list_node waiting;  /* clients whose LISTEN waits for its answer */
	struct event *retry_timer; /* opens the connection again after a failure */
	uint64_t sent_seq;         /* Queries sent on this connection */
	uint64_t done_seq;         /* and answered (their ReadyForQuery came) */
	uint64_t relisten_seq;     /* the last LISTEN after a lost connection */
	bool listening;            /* the server logged in and got its LISTENs */
	bool failed;               /* the Query being answered got an ErrorResponse */
	bool lost;                 /* a connection with channels was lost: notice after relisten */
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
 * A simple Query `text` (n bytes with its NUL) of a client between
 * transactions.  A lone LISTEN name, UNLISTEN name or UNLISTEN * is consumed
 * from the client's input (`total` bytes) and answered; anything else passes.
 */
enum listen_result listen_client_query(struct client *c, const char *text, size_t n, size_t total);
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
/* The pool is being freed: let go of the listener. */
void listen_pool_free(struct pool *p);

#endif
