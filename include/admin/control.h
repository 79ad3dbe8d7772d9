/*
 * The admin console: the virtual database `admin_db` (default "sluice", and
 * always "pgbouncer" as an alias) where admin_users run SHOW and control
 * commands and stats_users run SHOW.  A console client lives on a worker like
 * any client but has no pool and no server; its commands gather from every
 * worker through inboxes (gather_start) and reach the control loop through
 * the runtime's inbox, so no thread ever waits for another.
 *
 * Also owns the console's per-worker state: which databases are paused or
 * disabled, SUSPEND, and the stats_period timer whose snapshots give SHOW
 * STATS its averages.  docs/console.md documents every command and column.
 */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include <stdbool.h>

#include "base/types.h"

struct admin_conn;
struct admin_worker;

/* Is `dbname` the console (cfg->admin_db or "pgbouncer")? */
bool admin_is_console_db(const struct config *cfg, const char *dbname);

/*
 * An authenticated client asked for the console database: welcome it
 * (ParameterStatus, BackendKeyData, ReadyForQuery, no server involved) if
 * its user is in admin_users or stats_users, else refuse it with 28000.
 */
void admin_login(struct client *c);

/* Input from a logged-in console client (client.c's read callback). */
void admin_input(struct client *c);

/* A CancelRequest for a console client: abort a command that is waiting. */
void admin_cancel(struct client *c);

/* The console client is being freed: forget it (a pending reply is dropped). */
void admin_client_free(struct client *c);

/* Per-worker console state; created with the worker, freed with it. */
struct admin_worker *admin_worker_new(struct worker *w);
void admin_worker_free(struct admin_worker *aw);

/* DISABLE db: new logins to `dbname` are refused. */
bool admin_db_disabled(const struct worker *w, const char *dbname);
/* A pool was created: it starts paused if PAUSE, KILL or SUSPEND is in effect. */
void admin_pool_created(struct pool *p);

#endif
