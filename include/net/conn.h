/*
 * A connection's socket and its two buffers, for clients and servers.
 *
 * Plain sockets are driven directly, which is what keeps a query's trip
 * through sluice at one recv and one send per side:
 *   - one persistent read event, registered once; input is recv()ed into
 *     space reserved in the input evbuffer, without asking the kernel first
 *     how much is there (libevent's bufferevents add an ioctl(FIONREAD));
 *   - output is sent by the loop's flush event, which runs after the
 *     callbacks of the current loop turn, so everything one turn produced
 *     for a socket leaves in one writev;
 *   - a write event is armed only when the kernel took less than everything
 *     (a bufferevent adds and removes its write event around every reply:
 *     two epoll_ctl calls per message).
 * An idle plain conn holds no buffers: when its input or output is empty
 * after a read or a send, the evbuffer goes back to the loop's spares and
 * the pointer is set to the loop's shared empty buffer, which nobody
 * writes (input is filled only by conn.c, output only through conn_out).
 * Ten thousand idle clients so keep 290 bytes each less, and a busy loop
 * reuses the same few buffers without allocating.  The read event lives in
 * the owner's own allocation (conn_event_size), not in one of libevent's.
 *
 * TLS connections go through a bufferevent_openssl instead; the interface is
 * the same, so the relay does not know which it has.
 */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "base/list.h"

struct bufferevent;
struct conn;
struct event;
struct evbuffer;
struct loop;
typedef struct ssl_st SSL;

/* What conn_ops.event reports. */
#define CONN_CONNECTED 0x1 /* conn_connect finished, or a TLS handshake did */
#define CONN_EOF       0x2 /* the peer closed its side */
#define CONN_ERROR     0x4 /* socket or TLS error (conn.error has errno, if any) */

/*
 * The owner's callbacks.  They get the conn, which the owner embeds: it
 * finds itself with conn_owner (no pointer back in every conn).
 */
struct conn_ops {
	void (*read)(struct conn *c);            /* new input, or a conn_kick */
	void (*drained)(struct conn *c);         /* output fell to conn_notify_drained's level */
	void (*event)(struct conn *c, int what); /* CONN_* */
};

/* The struct of `type` that embeds conn `c` as its `member`. */
#define conn_owner(c, type, member) ((type *)((char *)(c)-offsetof(type, member)))

/*
 * Room for a conn's read event at the end of its owner's allocation: the
 * owner ends its struct with `union conn_event_space rev_space[]`, allocates
 * conn_event_size() bytes more and hands rev_space to conn_init or
 * conn_init_fd, which event_assign() there.  With event_new() each conn had
 * a separate allocation for it (128 bytes in a 144-byte malloc chunk).  The
 * size is libevent's at run time (event_get_struct_event_size), so it is
 * right for the library the process runs with, whatever headers it was
 * built with; the union aligns the space for what a struct event holds
 * (pointers, integers, a struct timeval).
 */
union conn_event_space {
	void *ptr;
	long l;
	int64_t i64;
	struct timeval tv;
};

/* Bytes of a read event: what an owner allocates after its rev_space. */
size_t conn_event_size(void);

struct conn {
	struct loop *loop; /* the loop it runs on: flush and kick lists, spare buffers */
	const struct conn_ops *ops;
	struct evbuffer *in;  /* read it freely (never write); write output only through conn_out */
	struct evbuffer *out; /* (both are the bufferevent's own with TLS) */
	struct event *rev;    /* plain: persistent read event, in the owner's rev_space */
	union {               /* plain or TLS, never both (is_tls): 8 bytes less in every conn */
		struct event *wev;       /* plain: one-shot write event, after a short send or to
		                            connect (created then: most connections never need it) */
		struct bufferevent *tls; /* TLS: the bufferevent_openssl doing all I/O */
	};
	struct list_node flush;  /* on the loop's flush list: output waits for the flush event */
	struct list_node kick;   /* on the loop's kick list: buffered input to hand over again */
	uint32_t read_high;      /* stop reading while the input holds this much */
	uint32_t drained_at;     /* conn_notify_drained level */
	int fd;                  /* -1 before conn_connect */
	int error;               /* errno of the failure reported as CONN_ERROR */
	uint32_t suspend;        /* the owner's reasons not to read (bits it defines); 0 = read */
	uint16_t watch_close;    /* suspend reasons that still see a peer's close */
	bool read_full : 1;      /* reading paused: input reached read_high */
	bool connecting : 1;     /* conn_connect in progress */
	bool notify_drained : 1; /* call ops->drained when output reaches drained_at */
	bool halted : 1;         /* conn_halt: no more I/O, waiting to be freed */
	bool read_big : 1;       /* the last read got READ_SMALL or more: start the next bigger */
	bool rev_set : 1;        /* rev is assigned to fd on loop (a plain, attached socket) */
	bool is_tls : 1;         /* tls, not wev, is set: conn_start_tls succeeded */
	bool close_only : 1;     /* rev waits only for the peer's close (watch_close) */
};

/*
 * The host part of an IPv4 or IPv6 socket address as text, and its port;
 * any other family is "unix", port 0.
 */
int sockaddr_host(const struct sockaddr *sa, char *host, size_t len);

/*
 * Set up on an accepted, non-blocking socket (taken over) and start reading.
 * rev_space: conn_event_size() bytes in the owner's allocation, for as long
 * as the conn lives (union conn_event_space).
 */
int conn_init_fd(struct conn *c, struct loop *l, int fd, const struct conn_ops *ops,
                 union conn_event_space *rev_space);
/* Set up with no socket yet, for conn_connect. */
int conn_init(struct conn *c, struct loop *l, const struct conn_ops *ops,
              union conn_event_space *rev_space);
/* Start a non-blocking connect; CONN_CONNECTED or CONN_ERROR follows. */
int conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len);
/*
 * Continue over TLS on the same socket (state: BUFFEREVENT_SSL_ACCEPTING or
 * _CONNECTING).  Plain bytes still buffered are dropped: nothing may come
 * before the handshake.  Takes ownership of ssl, also on failure.
 */
int conn_start_tls(struct conn *c, SSL *ssl, int state);
/*
 * Moving a conn to another thread's loop (an idle server handed between
 * workers).  Only a conn with nothing buffered either way can move (for TLS,
 * nothing read and not yet decrypted either): conn_detach, on the owning
 * loop's thread, frees its events, or its bufferevent_openssl, and gives its
 * buffers back to that loop; the socket, its kernel buffers and the TLS
 * session (returned, to travel with the conn) stay as they are.  conn_attach,
 * on the new loop's thread, makes the read event there, or a new
 * bufferevent_openssl on the same SSL, already open.  The bufferevent is made
 * without BEV_OPT_CLOSE_ON_FREE so that freeing it, whose last steps libevent
 * defers to the old loop, never touches the SSL or the socket afterwards.
 */
bool conn_can_move(const struct conn *c);
SSL *conn_detach(struct conn *c);
/* On failure with `ssl`, the SSL is freed; the socket is still the conn's to release. */
int conn_attach(struct conn *c, struct loop *l, SSL *ssl);
/* Close a detached conn's socket (and free `ssl`) on any thread; conn_release has nothing left. */
void conn_close_detached(struct conn *c, SSL *ssl);
/* Close the socket and free everything (the struct itself is the owner's). */
void conn_release(struct conn *c);

/* The output buffer, to append to: it is sent at the end of this loop turn. */
struct evbuffer *conn_out(struct conn *c);

/*
 * Reading is suspended by independent reasons (bits the owner defines:
 * queued for a server, the peer's output is full, a rate limit...), so
 * backpressure and queueing never undo each other.  Buffered input stays.
 */
void conn_suspend(struct conn *c, uint32_t reason);
/* Clear `reason`; once none is left, read again, starting with buffered input (conn_kick). */
void conn_resume(struct conn *c, uint32_t reason);
/* Input level at which reading pauses until the owner consumes some. */
void conn_set_read_high(struct conn *c, size_t high);
/* Run ops->read soon for input that is already buffered, unless suspended by then. */
void conn_kick(struct conn *c);
/* Call ops->drained once, when the output has been sent down to `level` bytes. */
void conn_notify_drained(struct conn *c, size_t level);
/* No more reading, writing or callbacks; pending output is dropped. */
void conn_halt(struct conn *c);

/* The TLS bufferevent, or NULL for a plain socket. */
static inline struct bufferevent *conn_tls_bev(const struct conn *c)
{
	return c->is_tls ? c->tls : NULL;
}

/* A loop's flush and kick events and spare buffers (loop_init, loop_fini). */
int conn_flusher_init(struct loop *l);
void conn_flusher_fini(struct loop *l);
/* Send what the loop's connections queued now, not at the turn's end (a loop about to stop). */
void conn_flush_now(struct loop *l);

#endif
