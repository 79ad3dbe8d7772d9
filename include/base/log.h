/*
 * Logging, one line per event, text or JSON, to stderr and optionally a log
 * file and syslog.  Every line carries the connection context it is about
 * (worker, connection id, tenant, db, user, address).  Callers check the level
 * before formatting (the *_log macros do), so a disabled debug line costs one
 * atomic load.  Never pass secrets or query literals to these functions.
 *
 * Names and messages come from clients, so every piece of text that goes into
 * a line passes through one escaper (log_escape): control characters and
 * invalid UTF-8 never start a new line, a JSON line is always valid JSON, and
 * a long field is cut at a character boundary, never inside an escape.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };
enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* How log_escape writes: a text line, a "quoted" text value, or a JSON string body. */
enum log_escape_mode { LOG_ESCAPE_TEXT, LOG_ESCAPE_QUOTED, LOG_ESCAPE_JSON };

struct logger {
	_Atomic int level;     /* enum log_level; changed on reload */
	_Atomic int format;    /* enum log_format */
	int fd;                /* stderr: every line goes there */
	_Atomic int file_fd;   /* logfile, -1 = none; reopened in place (dup2) on reload */
	_Atomic bool syslog;   /* also send lines to syslog */
	bool syslog_open;      /* openlog done (first time syslog was switched on) */
	char syslog_ident[64]; /* openlog keeps a pointer to it: lives as long as the logger */
	int syslog_facility;   /* syslog facility code (syslogger_facility) */
};

/* Who a line is about; any field may be empty. */
struct log_ctx {
	int worker;         /* worker id, -1 for the control thread */
	char kind;          /* 'C' client, 'S' server, 0 none */
	uint64_t id;        /* connection id */
	const char *tenant; /* tenant of the pool, once the client has one */
	const char *db;     /* database name */
	const char *user;   /* user name */
	const char *addr;   /* peer address */
};

void log_init(struct logger *log, int level, int format, int fd);
void log_configure(struct logger *log, int level, int format);
/*
 * Where lines go besides stderr: `logfile` ("" = no file; opened for
 * appending, and reopened on every call so a rotated file is let go of) and
 * syslog.  The syslog ident and facility are taken the first time syslog is
 * switched on.  Runs on the control thread; workers keep logging meanwhile.
 * Returns -1 with `err` when the file cannot be opened (the old one is kept).
 */
int log_set_outputs(struct logger *log, const char *logfile, bool syslog, const char *ident,
                    int facility, char *err, size_t len);
/* Closes the log file (at exit). */
void log_fini(struct logger *log);
const char *log_level_name(int level);

/*
 * Escapes src[0..len) into dst, which has room for `cap` bytes including the
 * terminating NUL, as `mode` says:
 *   - control characters (C0, DEL, C1) and backslash are escaped (\n, \t, \\,
 *     \x1b in text; \n, \u001b, \\ in JSON), so no line ever ends early;
 *   - bytes that are not valid UTF-8 are written as \xNN (in JSON as "\\xNN"),
 *     so the output is always valid UTF-8;
 *   - a double quote is escaped in QUOTED and JSON modes; U+2028 and U+2029
 *     are escaped in JSON, for JavaScript readers.
 * It stops before a character (or escape) that does not fit whole.  Returns
 * the bytes written; *used (may be NULL) gets the source bytes consumed, less
 * than len when dst was too small.
 */
size_t log_escape(char *dst, size_t cap, const char *src, size_t len, enum log_escape_mode mode,
                  size_t *used);
/* The same, appended to an evbuffer whole, for records of any length. */
void log_escape_append(struct evbuffer *out, const char *src, size_t len,
                       enum log_escape_mode mode);

static inline bool log_enabled(const struct logger *log, int level)
{
	return level <= atomic_load_explicit(&log->level, memory_order_relaxed);
}

void log_emit(const struct logger *log, int level, const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/*
 * A structured record of any length (stats and slow-query logs), checked
 * against the level here.  Text lines are `msg` followed by `text`; JSON lines
 * get "msg" plus `json`, comma-separated members that are already valid JSON
 * ("key":value,...), inside the one object.  Callers escape their values with
 * log_escape.
 */
void log_emit_record(const struct logger *log, int level, const struct log_ctx *ctx,
                     const char *msg, const char *text, const char *json);

#define LOG_AT(log, lvl, ctx, ...)                                                                 \
	do {                                                                                       \
		if (log_enabled((log), (lvl)))                                                     \
			log_emit((log), (lvl), (ctx), __VA_ARGS__);                                \
	} while (0)

#define log_error(log, ...) LOG_AT(log, LOG_ERROR, NULL, __VA_ARGS__)
#define log_warn(log, ...)  LOG_AT(log, LOG_WARN, NULL, __VA_ARGS__)
#define log_info(log, ...)  LOG_AT(log, LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(log, ...) LOG_AT(log, LOG_DEBUG, NULL, __VA_ARGS__)

#endif
