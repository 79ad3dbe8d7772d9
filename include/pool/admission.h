/*
 * Tenant admission (docs/tenants.md): max_client_conn and connect_rate at
 * login, query_rate and transaction_rate when a client starts a request.
 * Decisions are made only where the transaction is known to be idle, so a
 * statement inside an open transaction is never refused (it is counted, and
 * may drive the bucket into debt).  Over a rate the client waits up to
 * rate_limit_wait for a token, suspended with a timer; after that it gets
 * 53400 naming the tenant, the limit and when to retry, and stays connected.
 */
#ifndef SLUICE_ADMISSION_H
#define SLUICE_ADMISSION_H

#include <stdint.h>

struct client;

enum admit {
	ADMIT_GO,      /* proceed */
	ADMIT_WAIT,    /* suspended until a token is due (or the server answered) */
	ADMIT_REFUSED, /* refused: at login the client is closed; a request is discarded to Sync */
};

/* After authentication, once c->pool is known. */
enum admit admission_login(struct client *c);
/*
 * A client of a rate-limited pool sends a message of `type`.  A request is
 * charged once: from its admission to its end (its Sync; for a Query or
 * FunctionCall admission_request_sent) the client is in_request, so the same
 * message read again after waiting for a server is not charged (or throttled,
 * holding that server) a second time.
 */
enum admit admission_request(struct client *c, uint8_t type);
/* A message of `type` of an admitted request went to the server (or was answered locally). */
void admission_request_sent(struct client *c, uint8_t type);
/* The client's throttle timer fired: try again. */
void admission_retry(struct client *c);
/* The client is going away: give back its tenant client slot. */
void admission_client_gone(struct client *c);

#endif
