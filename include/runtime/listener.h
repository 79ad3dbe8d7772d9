/*
 * Listening sockets (TCP addresses and the Unix socket) on the control loop.
 * Accepted sockets are handed to workers round-robin through their inboxes.
 */
#ifndef SLUICE_LISTENER_H
#define SLUICE_LISTENER_H

#include "base/types.h"

/* Open every configured listener; returns -1 (after logging) if none could be opened. */
int listener_open_all(struct runtime *rt);
/* Stop accepting and remove the Unix socket file. */
void listener_close_all(struct runtime *rt);

#endif
