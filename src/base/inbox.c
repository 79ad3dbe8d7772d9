/*
 * Cross-thread queue; see inbox.h.  The wake-up is an eventfd that the
 * owning loop reads, not event_active() from the posting thread: that
 * would need the event_base's lock, which every libevent call on the loop
 * would then take, on the hot path too (worker loops run without it).
 */
#include "base/inbox.h"

#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void inbox_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct inbox *ib = arg;
	struct inbox_msg *msg;
	uint64_t count;

	/*
	 * Reset the counter before taking the queue: a post after this point
	 * either lands in what is taken below or writes the eventfd again.
	 */
	while (read(ib->fd, &count, sizeof(count)) < 0 && errno == EINTR)
		;
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
	ib->wake = NULL;
	ib->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ib->fd < 0)
		return -1;
	ib->wake = event_new(base, ib->fd, EV_READ | EV_PERSIST, inbox_drain_cb, ib);
	if (ib->wake != NULL && event_add(ib->wake, NULL) == 0)
		return 0;
	if (ib->wake != NULL)
		event_free(ib->wake);
	ib->wake = NULL;
	close(ib->fd);
	ib->fd = -1;
	return -1;
}

void inbox_fini(struct inbox *ib)
{
	struct inbox_msg *msg;

	/* A drop may post to this inbox again (a gather's last part): until none is left. */
	while ((msg = ib->head) != NULL) {
		ib->head = ib->tail = NULL;
		while (msg != NULL) {
			struct inbox_msg *next = msg->next;

			if (msg->drop != NULL)
				msg->drop(msg->arg);
			free(msg);
			msg = next;
		}
	}
	if (ib->wake != NULL)
		event_free(ib->wake);
	if (ib->fd >= 0)
		close(ib->fd);
	ib->wake = NULL;
	ib->fd = -1;
	pthread_mutex_destroy(&ib->lock);
}

int inbox_post(struct inbox *ib, inbox_fn fn, void *arg)
{
	return inbox_post_owned(ib, fn, NULL, arg);
}

int inbox_post_owned(struct inbox *ib, inbox_fn fn, void (*drop)(void *arg), void *arg)
{
	struct inbox_msg *msg = malloc(sizeof(*msg));
	const uint64_t one = 1;
	bool was_empty;

	if (msg == NULL)
		return -1;
	msg->fn = fn;
	msg->drop = drop;
	msg->arg = arg;
	msg->next = NULL;
	pthread_mutex_lock(&ib->lock);
	was_empty = ib->head == NULL;
	if (ib->tail != NULL)
		ib->tail->next = msg;
	else
		ib->head = msg;
	ib->tail = msg;
	pthread_mutex_unlock(&ib->lock);
	/* Only the post that made the queue non-empty wakes the loop: one write per batch. */
	if (was_empty)
		while (write(ib->fd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
	return 0;
}
