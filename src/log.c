/*
 * Log line formatting.  A line is built in a stack buffer and written with
 * one write(2) so lines from different workers never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(struct logger *log, int level, int format, int fd)
{
	atomic_init(&log->level, level);
	atomic_init(&log->format, format);
	log->fd = fd;
}

void log_configure(struct logger *log, int level, int format)
{
	atomic_store(&log->level, level);
	atomic_store(&log->format, format);
}

const char *log_level_name(int level)
{
	if (level < 0 || level > LOG_DEBUG)
		return "unknown";
	return level_names[level];
}

/* Append to a bounded buffer, silently truncating. */
static void append(char *buf, size_t *pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*pos >= LOG_LINE_MAX - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *pos, LOG_LINE_MAX - *pos, fmt, ap);
	va_end(ap);
	if (n > 0)
		*pos += (size_t)n < LOG_LINE_MAX - *pos ? (size_t)n : LOG_LINE_MAX - 1 - *pos;
}

/* JSON string body with escapes; control characters become \u00XX. */
static void append_json_string(char *buf, size_t *pos, const char *s)
{
	for (; *s != '\0' && *pos < LOG_LINE_MAX - 8; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			append(buf, pos, "\\%c", ch);
		else if (ch < 0x20)
			append(buf, pos, "\\u%04x", ch);
		else
			buf[(*pos)++] = (char)ch;
	}
	buf[*pos] = '\0';
}

static void format_time(char *out, size_t len)
{
	struct timeval tv;
	struct tm tm;
	char base[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%.20s.%03dZ", base, (int)(tv.tv_usec / 1000));
}

static void format_text(char *buf, size_t *pos, int level, const struct log_ctx *ctx,
			const char *ts, const char *msg)
{
	append(buf, pos, "%s %s ", ts, log_level_name(level));
	if (ctx != NULL) {
		if (ctx->worker >= 0)
			append(buf, pos, "w%d ", ctx->worker);
		if (ctx->kind != 0)
			append(buf, pos, "%c-%llu ", ctx->kind, (unsigned long long)ctx->id);
		if (ctx->user != NULL || ctx->db != NULL)
			append(buf, pos, "%s@%s ", ctx->user ? ctx->user : "-",
			       ctx->db ? ctx->db : "-");
		if (ctx->addr != NULL)
			append(buf, pos, "(%s) ", ctx->addr);
	}
	append(buf, pos, "%s", msg);
}

static void json_field(char *buf, size_t *pos, const char *key, const char *value)
{
	append(buf, pos, ",\"%s\":\"", key);
	append_json_string(buf, pos, value);
	append(buf, pos, "\"");
}

static void format_json(char *buf, size_t *pos, int level, const struct log_ctx *ctx,
			const char *ts, const char *msg)
{
	append(buf, pos, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, log_level_name(level));
	if (ctx != NULL) {
		if (ctx->worker >= 0)
			append(buf, pos, ",\"worker\":%d", ctx->worker);
		if (ctx->kind != 0)
			append(buf, pos, ",\"conn\":\"%c-%llu\"", ctx->kind,
			       (unsigned long long)ctx->id);
		if (ctx->db != NULL)
			json_field(buf, pos, "db", ctx->db);
		if (ctx->user != NULL)
			json_field(buf, pos, "user", ctx->user);
		if (ctx->addr != NULL)
			json_field(buf, pos, "addr", ctx->addr);
	}
	json_field(buf, pos, "msg", msg);
	append(buf, pos, "}");
}

void log_emit(const struct logger *log, int level, const struct log_ctx *ctx, const char *fmt, ...)
{
	char msg[LOG_LINE_MAX / 2], line[LOG_LINE_MAX], ts[40];
	size_t pos = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	format_time(ts, sizeof(ts));
	if (atomic_load_explicit(&log->format, memory_order_relaxed) == LOG_FORMAT_JSON)
		format_json(line, &pos, level, ctx, ts, msg);
	else
		format_text(line, &pos, level, ctx, ts, msg);
	if (pos >= LOG_LINE_MAX - 1)
		pos = LOG_LINE_MAX - 2;
	line[pos++] = '\n';
	/* A short or failed write of a log line has nowhere better to be reported. */
	if (write(log->fd, line, pos) < 0)
		return;
}
