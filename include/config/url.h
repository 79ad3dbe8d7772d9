/*
 * Database URLs: a libpq URI or conninfo string (SLUICE_DATABASE_URL*,
 * --upstream) parsed by libpq and turned into a [databases] entry.  When the
 * URL carries a user and password and no auth_file is set, they also become
 * the client login, so the one URL an application already has is all the
 * setup needed.  Passwords never reach an error message.
 */
#ifndef SLUICE_CONFIG_URL_H
#define SLUICE_CONFIG_URL_H

#include <stddef.h>

struct config;

/*
 * Defines (or replaces) a database from a libpq URI or conninfo string: the
 * database is `name`, else the URL's dbname, else "*".  On error writes
 * `msg`, with any password masked.
 */
int url_define_db(struct config *cfg, const char *name, const char *url, char *msg, size_t len);

#endif
