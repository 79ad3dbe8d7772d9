/*
 * syslog(3) for the logger; see syslogger.h.
 */
#include "base/syslogger.h"

#include <string.h>
#include <syslog.h>

struct facility {
	const char *name; /* as written in syslog_facility */
	int code;         /* LOG_* facility */
};

static const struct facility facilities[] = {
    {"auth", LOG_AUTH},     {"authpriv", LOG_AUTHPRIV}, {"daemon", LOG_DAEMON},
    {"user", LOG_USER},     {"local0", LOG_LOCAL0},     {"local1", LOG_LOCAL1},
    {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},     {"local4", LOG_LOCAL4},
    {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6},     {"local7", LOG_LOCAL7},
};

/* Indexed by the logger's levels: error, warn, info, debug. */
static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

int syslogger_facility(const char *name)
{
	for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++)
		if (strcmp(facilities[i].name, name) == 0)
			return facilities[i].code;
	return -1;
}

void syslogger_open(const char *ident, int facility)
{
	openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

void syslogger_write(int level, const char *line, size_t len)
{
	int prio = level >= 0 && level <= 3 ? priorities[level] : LOG_INFO;

	syslog(prio, "%.*s", (int)len, line);
}
