/*
 * Listening sockets (TCP addresses and the Unix socket) on the control loop.
 * Accepted sockets are handed to workers round-robin through their inboxes.
 * A listener is bound here, or adopted from rt->inherited (socket activation,
 * or the process a takeover replaces) when one there has its address.
 */
#ifndef SLUICE_LISTENER_H
#define SLUICE_LISTENER_H

#include <sys/un.h>

#include "base/types.h"

/* Open every configured listener; returns -1 (after logging) if any failed. */
int listener_open_all(struct runtime *rt);
/* Stop accepting and remove the Unix socket file (if it is still the one we made). */
void listener_close_all(struct runtime *rt);
/*
 * The takeover is confirmed: the socket files it handed over are this
 * process's now, removed when it closes them.  Until then they are the old
 * process's, which goes on serving if this one fails to start.
 */
void listener_adopt_paths(struct runtime *rt);
/* Stop accepting but leave the socket files: a takeover's new process serves them now. */
void listener_release_all(struct runtime *rt);
/* The listening descriptors, up to `max`; returns how many. */
int listener_fds(const struct runtime *rt, int *fds, int max);
/* A non-blocking Unix listening socket at sun (a stale file there is removed); -1 with errno. */
int listener_bind_unix(const struct sockaddr_un *sun, int backlog);

#endif
