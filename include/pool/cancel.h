/*
 * Cancel requests.  Clients see sluice's own BackendKeyData: the cancel pid's
 * top byte is the worker id, so a CancelRequest arriving on any worker is
 * routed to the owner, which forwards it to the linked server's real key on a
 * fresh connection.  A server stays out of the pool until its cancels finish,
 * so a late cancel can never hit the next client's query.
 *
 * Each worker keeps its clients in a cancel map, an open hash by cancel pid.
 */
#ifndef SLUICE_CANCEL_H
#define SLUICE_CANCEL_H

#include <stdint.h>

#include "base/list.h"
#include "base/types.h"

struct cancel_map {
	struct client **buckets;  /* chained through client->cancel_next */
	uint32_t size;            /* buckets, a power of two */
	uint32_t seq;             /* next candidate cancel pid (low 24 bits) */
	struct list_node orphans; /* forwarded cancels whose server is gone, still in flight */
};

int cancel_map_init(struct cancel_map *map);
/* Also frees the orphaned cancels: call it before the worker's loop is freed. */
void cancel_map_fini(struct cancel_map *map);
/* Give c a fresh cancel pid (top byte: the worker id) and key, and map it. */
int cancel_register(struct worker *w, struct client *c);
void cancel_unregister(struct worker *w, struct client *c);
struct client *cancel_lookup(struct worker *w, uint32_t pid);

/* A CancelRequest (pid, key) was received on worker w. */
void cancel_route(struct worker *w, uint32_t pid, uint32_t key);
/* Open a connection to s's host and send its real key. */
void cancel_server(struct server *s);
/* s is being freed: forget it in its in-flight cancels. */
void cancel_detach_server(struct server *s);

#endif
