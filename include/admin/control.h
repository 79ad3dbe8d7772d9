/*
 * The admin console: the virtual database `admin_db` (default "sluice", and
 * always "pgbouncer" as an alias) where admin_users run SHOW and control
 * commands and stats_users run SHOW.  A console client lives on a worker like
 * any client but has no pool and no server; its commands gather from every
 * worker through inboxes (gather_start) and reach the control loop through
 * the runtime's inbox, so no thread ever waits for another.
 * docs/console.md documents every command and column.
 */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include <stdbool.h>

#include "base/types.h"

struct client_handler;

/* Serves clients of the console database; main.c hands it to the runtime. */
extern const struct client_handler admin_console_handler;

#endif
