/*
 * Logging to stderr, one line per event, text or JSON.  Every line carries the
 * connection context it is about (worker, connection id, db, user, address).
 * Callers check the level before formatting (the *_log macros do), so a
 * disabled debug line costs one atomic load.  Never pass secrets or query
 * literals to these functions.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };
enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

struct logger {
	_Atomic int level;  /* enum log_level; changed on reload */
	_Atomic int format; /* enum log_format */
	int fd;             /* where lines go (stderr) */
};

/* Who a line is about; any field may be empty. */
struct log_ctx {
	int worker;       /* worker id, -1 for the control thread */
	char kind;        /* 'C' client, 'S' server, 0 none */
	uint64_t id;      /* connection id */
	const char *db;   /* database name */
	const char *user; /* user name */
	const char *addr; /* peer address */
};

void log_init(struct logger *log, int level, int format, int fd);
void log_configure(struct logger *log, int level, int format);
const char *log_level_name(int level);

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
 * ("key":value,...), inside the one object.  Callers escape their values.
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
