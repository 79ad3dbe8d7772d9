/*
 * Listening sockets this process did not open itself: from systemd's socket
 * activation (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, read by hand as
 * sd_listen_fds_with_names(3) does, without libsystemd) or from the process a
 * `sluice --takeover` replaces (takeover.c).  Listeners and the HTTP endpoint
 * take the ones they match; whatever is left is closed.
 */
#ifndef SLUICE_INHERIT_H
#define SLUICE_INHERIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "base/types.h"

/* systemd passes its sockets from this descriptor on (SD_LISTEN_FDS_START). */
#define INHERIT_SYSTEMD_FIRST_FD 3
/* More than any configuration opens; a takeover refuses a longer list. */
#define INHERIT_MAX 64

struct inherited_socket {
	int fd;        /* listening socket; -1 once taken */
	char name[32]; /* "metrics", "takeover", "pg", or systemd's FileDescriptorName= */
};

struct inherited {
	struct inherited_socket socks[INHERIT_MAX]; /* in the order they were passed */
	int n;                                      /* entries in socks */
	bool from_systemd; /* the sockets are the service's: serve them, bind nothing more */
};

/*
 * Fill `in` from LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES in `envp` when they are
 * meant for this process (LISTEN_PID is our pid).  Returns the number of
 * sockets (0 without socket activation) or -1 with `err` filled.
 */
int inherit_from_systemd(struct inherited *in, char *const *envp, char *err, size_t errlen);
/* Add one received socket (a takeover); the socket is made non-blocking and close-on-exec. */
int inherit_add(struct inherited *in, int fd, const char *name);
/* Take the first socket called `name`; returns its fd or -1. */
int inherit_take_name(struct inherited *in, const char *name);
/* Take the socket bound to exactly this address (family, address, port; or Unix path). */
int inherit_take_addr(struct inherited *in, const struct sockaddr *sa, socklen_t len);
/* Close the sockets nobody took, logging each, since no configured address wants them. */
void inherit_close_rest(struct inherited *in, struct logger *log);

#endif
