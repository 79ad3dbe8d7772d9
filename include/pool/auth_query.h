/*
 * auth_query: credentials of users missing from the auth_file are looked up
 * in Postgres (docs/security.md).  Each worker keeps one dedicated libpq
 * connection per database, logged in as auth_user, driven by the worker's
 * event loop (non-blocking connect, host names resolved with evdns first);
 * lookups on it run one at a time with the user name as a bound parameter
 * ($1), so no user name or startup parameter is ever part of the SQL text.
 * Answers, found or not, are cached per worker for auth_query_cache_ttl.
 *
 * Bounded against clients that make up names (before any password is
 * checked): at most AUTH_QUERY_MAX_CONNS connections per worker, one per
 * client-facing database name; one idle for server_idle_timeout is closed,
 * the longest idle one is closed sooner when a new name needs its place,
 * and a broken one is freed once its waiters are failed.  When every one is
 * busy, a new name is answered as an unknown user (the login then fails
 * like a wrong password).  The cache holds at most AUTH_QUERY_CACHE_MAX
 * answers per worker, oldest evicted first (auth/secret_cache.h).
 */
#ifndef SLUICE_AUTH_QUERY_H
#define SLUICE_AUTH_QUERY_H

#include <stdbool.h>

struct client;
struct worker;

#define AUTH_QUERY_MAX_CONNS 64    /* auth_query connections of all workers: each has its share */
#define AUTH_QUERY_CACHE_MAX 10000 /* cached answers per worker */

/*
 * The credentials for c (user c->user, database c->dbname) are not in the
 * auth_file.  Returns true when an answer is cached: c->queried_secret is
 * then set (NULL when the user does not exist).  Otherwise queues c and
 * returns false; c->handler->wake(c) follows once the answer is in
 * (or the lookup failed: the client is then closed with an error).  A client
 * that closes meanwhile leaves the queue with its wait_node.
 */
bool auth_query_lookup(struct client *c);
/* Worker start: empty lists and cache.  0, or -1 when out of memory. */
int auth_query_init(struct worker *w);
/* The reaper: frees the connections closed during the loop turn. */
void auth_query_reap(struct worker *w);
/* Worker shutdown: close the connections, drop the cache. */
void auth_query_fini(struct worker *w);

#endif
