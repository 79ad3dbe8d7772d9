/*
 * How clients of the admin console authenticate, read from a configuration:
 * the runtime warns at every start and reload when the console can be
 * reached without a password (docs/security.md).
 */
#ifndef SLUICE_CONSOLE_AUTH_H
#define SLUICE_CONSOLE_AUTH_H

#include "config/config.h"

/*
 * Whether a client can log in to the console (admin_db, or "pgbouncer") as
 * one of admin_users or stats_users without a password: 0 when auth_type =
 * trust applies to everyone (no auth_hba_file); the line of the first
 * auth_hba_file trust rule naming the console database (or all) and such a
 * user (or all); -1 when none does.  An earlier rule may shadow that line for
 * some or all connections: naming it anyway errs on the side of a warning.
 */
int console_auth_trust_line(const struct config *cfg);

#endif
