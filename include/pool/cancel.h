/*
 * Cancel requests.  Clients see sluice's own BackendKeyData: the cancel pid's
 * top byte is the worker id, so a CancelRequest arriving on any worker is
 * routed to the owner, which forwards it to the linked server's real key on a
 * fresh connection.  A server stays out of the pool until its cancels finish,
 * so a late cancel can never hit the next client's query.
 */
#ifndef SLUICE_CANCEL_H
#define SLUICE_CANCEL_H

#include <stdint.h>

#include "base/types.h"

/* A CancelRequest (pid, key) was received on worker w. */
void cancel_route(struct worker *w, uint32_t pid, uint32_t key);
/* Open a connection to s's host and send its real key. */
void cancel_server(struct server *s);
/* s is being freed: forget it in its in-flight cancels. */
void cancel_detach_server(struct server *s);

#endif
