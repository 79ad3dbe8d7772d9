/*
 * Cross-thread queue; see inbox.h.  event_active is thread-safe because
 * evthread_use_pthreads() runs before any event_base is created.
 */
#include "base/inbox.h"

#include <event2/event.h>
#include <stdlib.h>

static void inbox_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct inbox *ib = arg;
	struct inbox_msg *msg;

	pthread_mutex_lock(&ib->lock);
	msg = ib->head;
	ib->head = ib->tail = NULL;
	pthread_mutex_unlock(&ib->lock);
	while (msg != NULL) {
		struct inbox_msg *next = msg->next;

		msg->fn(ib->owner, msg->arg);
		free(msg);
		msg = next;
	}
}

int inbox_init(struct inbox *ib, struct event_base *base, void *owner)
{
	pthread_mutex_init(&ib->lock, NULL);
	ib->head = ib->tail = NULL;
	ib->owner = owner;
	ib->wake = event_new(base, -1, 0, inbox_drain_cb, ib);
	return ib->wake ? 0 : -1;
}

void inbox_fini(struct inbox *ib)
{
	struct inbox_msg *msg = ib->head;

	while (msg != NULL) {
		struct inbox_msg *next = msg->next;

		free(msg);
		msg = next;
	}
	if (ib->wake != NULL)
		event_free(ib->wake);
	pthread_mutex_destroy(&ib->lock);
}

int inbox_post(struct inbox *ib, inbox_fn fn, void *arg)
{
	struct inbox_msg *msg = malloc(sizeof(*msg));

	if (msg == NULL)
		return -1;
	msg->fn = fn;
	msg->arg = arg;
	msg->next = NULL;
	pthread_mutex_lock(&ib->lock);
	if (ib->tail != NULL)
		ib->tail->next = msg;
	else
		ib->head = msg;
	ib->tail = msg;
	pthread_mutex_unlock(&ib->lock);
	event_active(ib->wake, 0, 0);
	return 0;
}
