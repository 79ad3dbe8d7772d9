/*
 * Log line formatting.  A line is built in a stack buffer and written with
 * one write(2) so lines from different workers never interleave.
 */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

/* A line being built: a stack buffer for ordinary lines, a heap one for records. */
struct line {
	char *buf;  /* always NUL-terminated */
	size_t pos; /* bytes used */
	size_t cap; /* bytes available, including the NUL */
};

/* Append to a bounded buffer, silently truncating. */
static void append(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append(struct line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (l->pos >= l->cap - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(l->buf + l->pos, l->cap - l->pos, fmt, ap);
	va_end(ap);
	if (n > 0)
		l->pos += (size_t)n < l->cap - l->pos ? (size_t)n : l->cap - 1 - l->pos;
}

/* JSON string body with escapes; control characters become \u00XX. */
static void append_json_string(struct line *l, const char *s)
{
	for (; *s != '\0' && l->pos < l->cap - 8; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			append(l, "\\%c", ch);
		else if (ch < 0x20)
			append(l, "\\u%04x", ch);
		else
			l->buf[l->pos++] = (char)ch;
	}
	l->buf[l->pos] = '\0';
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

static void format_text(struct line *l, int level, const struct log_ctx *ctx, const char *ts,
                        const char *msg)
{
	append(l, "%s %s ", ts, log_level_name(level));
	if (ctx != NULL) {
		if (ctx->worker >= 0)
			append(l, "w%d ", ctx->worker);
		if (ctx->kind != 0)
			append(l, "%c-%llu ", ctx->kind, (unsigned long long)ctx->id);
		if (ctx->user != NULL || ctx->db != NULL)
			append(l, "%s@%s ", ctx->user ? ctx->user : "-", ctx->db ? ctx->db : "-");
		if (ctx->addr != NULL)
			append(l, "(%s) ", ctx->addr);
	}
	append(l, "%s", msg);
}

static void json_field(struct line *l, const char *key, const char *value)
{
	append(l, ",\"%s\":\"", key);
	append_json_string(l, value);
	append(l, "\"");
}

/* Everything but the closing brace, so a record can add its own members. */
static void format_json(struct line *l, int level, const struct log_ctx *ctx, const char *ts,
                        const char *msg)
{
	append(l, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, log_level_name(level));
	if (ctx != NULL) {
		if (ctx->worker >= 0)
			append(l, ",\"worker\":%d", ctx->worker);
		if (ctx->kind != 0)
			append(l, ",\"conn\":\"%c-%llu\"", ctx->kind, (unsigned long long)ctx->id);
		if (ctx->db != NULL)
			json_field(l, "db", ctx->db);
		if (ctx->user != NULL)
			json_field(l, "user", ctx->user);
		if (ctx->addr != NULL)
			json_field(l, "addr", ctx->addr);
	}
	json_field(l, "msg", msg);
}

/* End the line and write it with one write(2), so lines never interleave. */
static void write_line(const struct logger *log, struct line *l)
{
	if (l->pos >= l->cap - 1)
		l->pos = l->cap - 2;
	l->buf[l->pos++] = '\n';
	/* A short or failed write of a log line has nowhere better to be reported. */
	if (write(log->fd, l->buf, l->pos) < 0)
		return;
}

void log_emit(const struct logger *log, int level, const struct log_ctx *ctx, const char *fmt, ...)
{
	char msg[LOG_LINE_MAX / 2], buf[LOG_LINE_MAX], ts[40];
	struct line l = {.buf = buf, .pos = 0, .cap = sizeof(buf)};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	format_time(ts, sizeof(ts));
	if (atomic_load_explicit(&log->format, memory_order_relaxed) == LOG_FORMAT_JSON) {
		format_json(&l, level, ctx, ts, msg);
		append(&l, "}");
	} else {
		format_text(&l, level, ctx, ts, msg);
	}
	write_line(log, &l);
}

void log_emit_record(const struct logger *log, int level, const struct log_ctx *ctx,
                     const char *msg, const char *text, const char *json)
{
	bool is_json = atomic_load_explicit(&log->format, memory_order_relaxed) == LOG_FORMAT_JSON;
	const char *extra = is_json ? json : text;
	char ts[40];
	/* Context fields are short, but may grow sixfold when escaped. */
	struct line l = {.cap = LOG_LINE_MAX + 6 * strlen(msg) + strlen(extra) + 8};

	if (!log_enabled(log, level))
		return;
	l.buf = malloc(l.cap);
	if (l.buf == NULL)
		return;
	l.buf[0] = '\0';
	format_time(ts, sizeof(ts));
	if (is_json) {
		format_json(&l, level, ctx, ts, msg);
		append(&l, "%s%s}", extra[0] != '\0' ? "," : "", extra);
	} else {
		format_text(&l, level, ctx, ts, msg);
		append(&l, "%s%s", extra[0] != '\0' ? " " : "", extra);
	}
	write_line(log, &l);
	free(l.buf);
}
