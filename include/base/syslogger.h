/*
 * The syslog output of the logger.  Kept apart from log.c because <syslog.h>
 * defines LOG_INFO and LOG_DEBUG as macros, which would clash with the
 * logger's own level names; only this file includes it.
 */
#ifndef SLUICE_SYSLOGGER_H
#define SLUICE_SYSLOGGER_H

#include <stddef.h>

/* Facility code of "daemon", "user", "auth", "authpriv", "local0".."local7"; -1 if unknown. */
int syslogger_facility(const char *name);
/* openlog: `ident` must outlive every later syslogger_write. */
void syslogger_open(const char *ident, int facility);
/* One line at a logger level (enum log_level: error, warn, info, debug). */
void syslogger_write(int level, const char *line, size_t len);

#endif
