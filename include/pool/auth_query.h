/*
 * auth_query: credentials of users missing from the auth_file are looked up
 * in Postgres (docs/security.md).  Each worker keeps one dedicated libpq
 * connection per database, logged in as auth_user, driven by the worker's
 * event loop (non-blocking connect, host names resolved with evdns first);
 * lookups on it run one at a time with the user name as a bound parameter
 * ($1), so no user name or startup parameter is ever part of the SQL text.
 * Answers, found or not, are cached per worker for auth_query_cache_ttl.
 */
#ifndef SLUICE_AUTH_QUERY_H
#define SLUICE_AUTH_QUERY_H

#include <stdbool.h>

struct client;
struct worker;

/*
 * The credentials for c (user c->user, database c->dbname) are not in the
 * auth_file.  Returns true when an answer is cached: c->queried_secret is
 * then set (NULL when the user does not exist).  Otherwise queues c and
 * returns false; c->handler->wake(c) follows once the answer is in
 * (or the lookup failed: the client is then closed with an error).  A client
 * that closes meanwhile leaves the queue with its wait_node.
 */
bool auth_query_lookup(struct client *c);
/* Worker shutdown: close the connections, drop the cache. */
void auth_query_fini(struct worker *w);

#endif
