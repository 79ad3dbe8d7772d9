/*
 * What a daemon does for its process as a whole, from PgBouncer's options:
 * the pidfile and running as an unprivileged user once the listening
 * sockets (which may need root, for a port below 1024 or a socket in /run)
 * are open.
 */
#ifndef SLUICE_PROCESS_H
#define SLUICE_PROCESS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Writes our process id to `path`.  Fails, with `err`, while another live
 * process's id is in it (another sluice, or PgBouncer, on the same files),
 * unless `takeover`: the process in it hands its listeners over to us and
 * leaves (it then leaves the file alone).  A stale file is overwritten.
 * `user` ("" = none) gets to own it, so that the process can remove it after
 * process_drop_privileges.
 */
int process_pidfile_write(const char *path, const char *user, bool takeover, char *err, size_t len);
/* Removes the pidfile if it still holds our process id (a later instance may own it now). */
void process_pidfile_remove(const char *path);
/*
 * Becomes `user` (its uid, gid and supplementary groups) for good.  Nothing
 * to do when already running as that user; an error when not started as
 * root.
 */
int process_drop_privileges(const char *user, char *err, size_t len);

#endif
