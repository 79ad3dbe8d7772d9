/*
 * One thread's event loop and what every connection on it shares: the
 * event_base, the DNS resolver, the reaper (frees closed objects once the
 * callbacks active when they closed have run), the flush and kick lists
 * that net/conn.c drives, the spare evbuffers idle conns give back, and the
 * clock.
 *
 * A loop knows nothing of clients or servers: its owner (a worker) passes
 * the function the reaper runs.
 */
#ifndef SLUICE_NET_LOOP_H
#define SLUICE_NET_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "base/list.h"

struct event;
struct event_base;
struct evbuffer;
struct evdns_base;

typedef void (*loop_reap_fn)(void *owner);

/*
 * What the loop's sockets did, counted where it happens (conn.c): tests
 * check the batching with them (one send per conn per turn), and benches
 * read them as per-transaction figures without strace.
 */
struct loop_counts {
	uint64_t recvs;   /* recv() calls on plain conns, EAGAIN included */
	uint64_t sends;   /* writev() calls on plain conns (evbuffer_write) */
	uint64_t flushes; /* runs of the flush event: loop turns that sent something */
};

struct loop {
	struct event_base *base;     /* the loop itself */
	struct evdns_base *dns;      /* non-blocking resolver for server host names */
	struct event *reaper;        /* runs reap after the callbacks already active */
	loop_reap_fn reap;           /* frees the owner's closed objects */
	void *owner;                 /* argument of reap */
	struct list_node flush_list; /* conns with output to send this turn (conn.c) */
	struct event *flusher;       /* sends it, after this turn's callbacks */
	bool reading;                /* in a read callback, which flushes at its end */
	short read_flags;            /* of plain read events: EV_CLOSED where the backend has it */
	int64_t read_now_us;         /* the clock in this read callback; 0 = not read yet */
	struct list_node kick_list;  /* conns whose buffered input is to be read again */
	struct event *kicker;        /* does that, after this turn's callbacks */
	struct evbuffer *no_data;    /* what idle conns point at instead of a buffer */
	struct evbuffer **spare_buffers; /* empty buffers given back by idle conns, for reuse */
	int nspare;                      /* entries of spare_buffers in use */
	struct evbuffer *sink;           /* output of a conn that could not get a buffer: dropped */
	struct loop_counts counts;       /* only this loop's thread writes them */
};

/* A new event_base with its resolver, reaper, flush and kick events; -1 on failure. */
int loop_init(struct loop *l, loop_reap_fn reap, void *owner);
/* Run the reaper now (shutdown), then free everything; safe after a failed init. */
void loop_fini(struct loop *l);
/* Run the loop until loop_break. */
void loop_run(struct loop *l);
/* Make loop_run return after the current callbacks (from the loop's own thread). */
void loop_break(struct loop *l);
/* Ends loop_run after `us` microseconds, unless something ends it sooner. */
void loop_exit_after(struct loop *l, int64_t us);
/* Have the reaper run after the current callbacks. */
void loop_schedule_reap(struct loop *l);
/*
 * Monotonic microseconds, precise (latency samples are stamped with it):
 * every duration and deadline sluice keeps is on this clock, which a step
 * of the wall clock (NTP, an admin's date) does not move.
 */
int64_t loop_now_us(void);
/* A time of loop_now_us's as wall-clock microseconds, to show; 0 stays 0 (none). */
int64_t loop_wall_us(int64_t now_us);

/*
 * The same, read once per read callback: what one callback does happens at
 * one instant as far as its timestamps go (it takes microseconds), and every
 * read of the clock costs about 40 instructions, five per transaction.
 * Outside a read callback each call reads the clock.
 */
static inline int64_t loop_read_now_us(struct loop *l)
{
	if (!l->reading)
		return loop_now_us();
	if (l->read_now_us == 0)
		l->read_now_us = loop_now_us();
	return l->read_now_us;
}

#endif
