/*
 * systemd's readiness protocol without libsystemd: one datagram per state
 * change to the Unix socket named by $NOTIFY_SOCKET (Type=notify units).
 * READY=1 once the listeners are open, RELOADING=1 then READY=1 around a
 * SIGHUP reload, STOPPING=1 when the drain begins.  Without $NOTIFY_SOCKET
 * every call does nothing, so sluice behaves the same outside systemd.
 */
#ifndef SLUICE_SDNOTIFY_H
#define SLUICE_SDNOTIFY_H

/*
 * Sends `state` ("READY=1", "STOPPING=1", ...) to the socket that
 * NOTIFY_SOCKET names in `envp` (a NULL-terminated "K=V" list).  Returns 0
 * when sent or when there is no socket to send to, -1 on failure (the
 * caller may ignore it: a lost notification must not stop the pooler).
 */
int sdnotify_send(char *const *envp, const char *state);
/* "RELOADING=1" with the MONOTONIC_USEC= that systemd 253+ expects beside it. */
int sdnotify_reloading(char *const *envp);

#endif
