/*
 * Cross-thread messages: a mutex-protected queue drained by an event in the
 * owning loop, woken through an eventfd (so the loop's event_base needs no
 * lock of its own).  The only way threads talk to each other; never used on the
 * per-message hot path.
 */
#ifndef SLUICE_INBOX_H
#define SLUICE_INBOX_H

#include <pthread.h>
#include <stdbool.h>

struct event_base;
struct event;

typedef void (*inbox_fn)(void *owner, void *arg);

struct inbox_msg {
	inbox_fn fn;             /* runs on the owner's loop */
	void (*drop)(void *arg); /* frees arg when fn never runs (inbox_fini); NULL: none */
	void *arg;               /* owned by fn */
	struct inbox_msg *next;  /* queue link */
};

struct inbox {
	pthread_mutex_t lock;   /* guards head/tail */
	struct inbox_msg *head; /* oldest */
	struct inbox_msg *tail; /* newest */
	struct event *wake;     /* reads fd, then runs the queue */
	int fd;                 /* eventfd written by the post that finds the queue empty */
	void *owner;            /* passed to every fn (struct worker * or struct runtime *) */
};

int inbox_init(struct inbox *ib, struct event_base *base, void *owner);
void inbox_fini(struct inbox *ib);
/* Thread-safe; returns -1 only on allocation failure. */
int inbox_post(struct inbox *ib, inbox_fn fn, void *arg);
/*
 * The same for an arg that fn frees: `drop` frees it instead should the
 * owner stop with the message unread (a worker exiting while another still
 * posts to it), so that nothing leaks at exit.  A drop may post again, to
 * this inbox too: inbox_fini drops that as well.
 */
int inbox_post_owned(struct inbox *ib, inbox_fn fn, void (*drop)(void *arg), void *arg);

#endif
