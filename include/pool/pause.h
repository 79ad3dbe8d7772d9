/*
 * Console PAUSE, RESUME, SUSPEND, KILL and DISABLE as pool policy, per
 * worker.  Every worker keeps its own copy of which databases are paused or
 * disabled and whether everything is paused or suspended (the console
 * applies a command to every worker with one gather), and brings its pools
 * in line: a paused pool hands out and opens no servers (PAUSE and KILL also
 * close them as they come free), a suspended worker reads from no pooled
 * client and no server, and a disabled database takes no new logins.
 */
#ifndef SLUICE_PAUSE_H
#define SLUICE_PAUSE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/types.h"

/* Console state of one database on one worker. */
struct pause_db {
	char *name;    /* client-facing database name */
	bool paused;   /* PAUSE db or KILL db */
	bool disabled; /* DISABLE db */
};

struct pause_state {
	bool paused;          /* PAUSE or KILL without a database */
	bool suspended;       /* SUSPEND */
	struct pause_db *dbs; /* databases with some state set */
	size_t ndbs, cap;     /* entries used, allocated */
};

void pause_state_fini(struct pause_state *ps);

/* PAUSE or KILL `dbname` (NULL: everything): its pools hold requests and close servers. */
void pause_hold(struct worker *w, const char *dbname);
/* RESUME `dbname`'s own PAUSE, or with NULL lift every PAUSE and SUSPEND. */
void pause_resume(struct worker *w, const char *dbname);
/* SUSPEND: hold every pool and stop reading from pooled clients and all servers. */
void pause_suspend(struct worker *w);
/* DISABLE (true) or ENABLE (false) new logins to `dbname`. */
void pause_set_disabled(struct worker *w, const char *dbname, bool disabled);
/* Bring one pool in line with the state (login does, so a new pool starts paused). */
void pause_apply(struct pool *p);

bool pause_db_paused(const struct worker *w, const char *dbname); /* its own or the global one */
bool pause_db_paused_alone(const struct worker *w, const char *dbname); /* by PAUSE dbname */
bool pause_any_paused(const struct worker *w);                          /* anything to RESUME */
bool pause_db_disabled(const struct worker *w, const char *dbname);

#endif
