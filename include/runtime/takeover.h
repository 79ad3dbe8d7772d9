/*
 * Restart without refusing a connection: a new `sluice --takeover` asks the
 * running process, over the Unix socket takeover_socket, for its listening
 * sockets (SCM_RIGHTS), serves them, and confirms; the old process then stops
 * accepting (the sockets, and the connections queued on them, stay open in
 * the new one) and exits once its own clients have left (docs/deploy.md).
 *
 * The exchange, one line each way and then the descriptors:
 *   new -> old  "TAKEOVER\n"
 *   old -> new  "SLUICE-TAKEOVER <pid> <n> <name>:<name>...\n" carrying n descriptors
 *   new -> old  "OK\n" once it accepts on them; closing instead cancels the takeover.
 * Only a peer with our own uid (or root) is answered.
 */
#ifndef SLUICE_TAKEOVER_H
#define SLUICE_TAKEOVER_H

#include <stdbool.h>

#include "base/types.h"

struct takeover;

/* Old side: listen on takeover_socket (adopting an inherited one); no-op when it is empty. */
int takeover_listen(struct runtime *rt);
/* Close the socket; with `unlink_file`, remove its file if it is still the one we made. */
void takeover_free(struct takeover *t, bool unlink_file);

/*
 * New side, at startup: fetch the running process's listening sockets into
 * rt->inherited.  Returns the connection to confirm on (takeover_confirm),
 * -2 when nobody answers at takeover_socket (start as usual), or -1 (logged).
 */
int takeover_fetch(struct runtime *rt);
/* Our listeners are up: the old process may let go of them. */
void takeover_confirm(struct runtime *rt, int conn);

#endif
