/*
 * Log line formatting and the one escaper; see log.h.  A line is built in a
 * buffer and written with one write(2) per output, so lines from different
 * workers never interleave.
 */
#include "base/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "base/syslogger.h"

#define LOG_LINE_MAX 4096
/* Longest escaped context field (user, database, address...): a name is not a message. */
#define FIELD_MAX 256
/* Kept free while a field is escaped, for what closes the line: `..."}` and the newline. */
#define LINE_RESERVE 16

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(struct logger *log, int level, int format, int fd)
{
	atomic_init(&log->level, level);
	atomic_init(&log->format, format);
	atomic_init(&log->file_fd, -1);
	atomic_init(&log->syslog, false);
	log->fd = fd;
	log->syslog_open = false;
	log->syslog_ident[0] = '\0';
}

void log_configure(struct logger *log, int level, int format)
{
	atomic_store(&log->level, level);
	atomic_store(&log->format, format);
}

/*
 * A new file is dup2()ed onto the old descriptor's number: a worker that read
 * the number a moment ago writes to the new file, never to a closed or reused
 * descriptor.  Switching the file off points that number at /dev/null.
 */
static int reopen_file(struct logger *log, const char *logfile, char *err, size_t len)
{
	int old = atomic_load(&log->file_fd);
	const char *path = logfile[0] != '\0' ? logfile : "/dev/null";
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0) {
		snprintf(err, len, "cannot open logfile %s: %s", path, strerror(errno));
		return -1;
	}
	if (old < 0) {
		if (logfile[0] != '\0')
			atomic_store(&log->file_fd, fd);
		else
			close(fd);
		return 0;
	}
	if (dup2(fd, old) < 0) {
		snprintf(err, len, "cannot reopen logfile %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int log_set_outputs(struct logger *log, const char *logfile, bool syslog, const char *ident,
                    int facility, char *err, size_t len)
{
	if (syslog && !log->syslog_open) {
		snprintf(log->syslog_ident, sizeof(log->syslog_ident), "%s", ident);
		log->syslog_facility = facility;
		syslogger_open(log->syslog_ident, facility);
		log->syslog_open = true;
	}
	atomic_store(&log->syslog, syslog);
	if (logfile[0] == '\0' && atomic_load(&log->file_fd) < 0)
		return 0;
	return reopen_file(log, logfile, err, len);
}

void log_fini(struct logger *log)
{
	int fd = atomic_exchange(&log->file_fd, -1);

	if (fd >= 0)
		close(fd);
}

const char *log_level_name(int level)
{
	if (level < 0 || level > LOG_DEBUG)
		return "unknown";
	return level_names[level];
}

/* ---- the escaper ---- */

/* Length of the valid UTF-8 sequence at s (len bytes left), 0 if it is not one. */
static size_t utf8_length(const unsigned char *s, size_t len)
{
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	/* Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8. */
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (n > len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/*
 * The escape for the character of `n` bytes at s, written to out (room for
 * 12); 0 when it stands for itself.
 */
static size_t escape_one(const unsigned char *s, size_t n, enum log_escape_mode mode, char *out)
{
	bool json = mode == LOG_ESCAPE_JSON;
	unsigned cp;

	if (n == 0) /* a byte that is not UTF-8: its value, as text, in both forms */
		return (size_t)snprintf(out, 12, json ? "\\\\x%02x" : "\\x%02x", s[0]);
	if (n == 1) {
		switch (s[0]) {
		case '\\':
			return (size_t)snprintf(out, 12, "\\\\");
		case '"':
			return mode == LOG_ESCAPE_TEXT ? 0 : (size_t)snprintf(out, 12, "\\\"");
		case '\n':
			return (size_t)snprintf(out, 12, "\\n");
		case '\r':
			return (size_t)snprintf(out, 12, "\\r");
		case '\t':
			return (size_t)snprintf(out, 12, "\\t");
		default:
			if (s[0] >= 0x20 && s[0] != 0x7f)
				return 0;
			return (size_t)snprintf(out, 12, json ? "\\u%04x" : "\\x%02x", s[0]);
		}
	}
	/* C1 controls (U+0080..U+009F; NEL ends a line for some readers), U+2028, U+2029. */
	if (n == 2 && s[0] == 0xc2 && s[1] <= 0x9f)
		cp = s[1];
	else if (n == 3 && s[0] == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9))
		cp = 0x2000u | (s[2] - 0x80u);
	else
		return 0;
	return (size_t)snprintf(out, 12, "\\u%04x", cp);
}

size_t log_escape(char *dst, size_t cap, const char *src, size_t len, enum log_escape_mode mode,
                  size_t *used)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t in = 0, out = 0;

	if (cap == 0) {
		if (used != NULL)
			*used = 0;
		return 0;
	}
	while (in < len) {
		size_t n = utf8_length(s + in, len - in), take = n ? n : 1;
		char esc[12];
		size_t elen = escape_one(s + in, n, mode, esc);
		size_t need = elen ? elen : take;

		if (out + need + 1 > cap)
			break;
		memcpy(dst + out, elen ? esc : (const char *)s + in, need);
		out += need;
		in += take;
	}
	dst[out] = '\0';
	if (used != NULL)
		*used = in;
	return out;
}

void log_escape_append(struct evbuffer *out, const char *src, size_t len, enum log_escape_mode mode)
{
	char chunk[512];
	size_t used;

	while (len > 0) {
		size_t n = log_escape(chunk, sizeof(chunk), src, len, mode, &used);

		evbuffer_add(out, chunk, n);
		src += used;
		len -= used;
	}
}

/* ---- lines ---- */

/* A line being built: a stack buffer for ordinary lines, a heap one for records. */
struct line {
	char *buf;    /* always NUL-terminated */
	size_t pos;   /* bytes used */
	size_t cap;   /* bytes available, including the NUL */
	size_t start; /* where the text after the timestamp begins (syslog has its own) */
};

/* Append to a bounded buffer, silently truncating; only for text sluice itself chose. */
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

/*
 * Text from outside (a name, a message) escaped into the line, at most `max`
 * bytes of it; LINE_RESERVE bytes always stay free for closing the line.  A
 * cut field ends in "...", whole characters only.
 */
static void append_escaped(struct line *l, const char *s, size_t max, enum log_escape_mode mode)
{
	size_t room = l->cap - l->pos > LINE_RESERVE ? l->cap - l->pos - LINE_RESERVE : 0;
	size_t len = strlen(s), used;

	if (room > max + 1)
		room = max + 1;
	l->pos += log_escape(l->buf + l->pos, room, s, len, mode, &used);
	if (used < len)
		append(l, "...");
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
	append(l, "%s ", ts);
	l->start = l->pos;
	append(l, "%s ", log_level_name(level));
	if (ctx != NULL) {
		if (ctx->worker >= 0)
			append(l, "w%d ", ctx->worker);
		if (ctx->kind != 0)
			append(l, "%c-%llu ", ctx->kind, (unsigned long long)ctx->id);
		if (ctx->user != NULL || ctx->db != NULL) {
			append_escaped(l, ctx->user ? ctx->user : "-", FIELD_MAX, LOG_ESCAPE_TEXT);
			append(l, "@");
			append_escaped(l, ctx->db ? ctx->db : "-", FIELD_MAX, LOG_ESCAPE_TEXT);
			append(l, " ");
		}
		if (ctx->tenant != NULL) {
			append(l, "tenant=");
			append_escaped(l, ctx->tenant, FIELD_MAX, LOG_ESCAPE_TEXT);
			append(l, " ");
		}
		if (ctx->addr != NULL) {
			append(l, "(");
			append_escaped(l, ctx->addr, FIELD_MAX, LOG_ESCAPE_TEXT);
			append(l, ") ");
		}
	}
	append_escaped(l, msg, l->cap, LOG_ESCAPE_TEXT);
}

static void json_field(struct line *l, const char *key, const char *value, size_t max)
{
	append(l, ",\"%s\":\"", key);
	append_escaped(l, value, max, LOG_ESCAPE_JSON);
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
		if (ctx->tenant != NULL)
			json_field(l, "tenant", ctx->tenant, FIELD_MAX);
		if (ctx->db != NULL)
			json_field(l, "db", ctx->db, FIELD_MAX);
		if (ctx->user != NULL)
			json_field(l, "user", ctx->user, FIELD_MAX);
		if (ctx->addr != NULL)
			json_field(l, "addr", ctx->addr, FIELD_MAX);
	}
	json_field(l, "msg", msg, l->cap);
}

/* End the line and write it to every output, one write(2) each. */
static void write_line(const struct logger *log, int level, struct line *l)
{
	int file_fd = atomic_load_explicit(&log->file_fd, memory_order_relaxed);
	ssize_t rc;

	if (l->pos >= l->cap - 1)
		l->pos = l->cap - 2;
	l->buf[l->pos++] = '\n';
	/* A short or failed write of a log line has nowhere better to be reported. */
	rc = write(log->fd, l->buf, l->pos);
	if (file_fd >= 0)
		rc = write(file_fd, l->buf, l->pos);
	(void)rc;
	if (atomic_load_explicit(&log->syslog, memory_order_relaxed))
		syslogger_write(level, l->buf + l->start, l->pos - 1 - l->start);
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
	write_line(log, level, &l);
}

void log_emit_record(const struct logger *log, int level, const struct log_ctx *ctx,
                     const char *msg, const char *text, const char *json)
{
	bool is_json = atomic_load_explicit(&log->format, memory_order_relaxed) == LOG_FORMAT_JSON;
	const char *extra = is_json ? json : text;
	char ts[40];
	/* Context fields are bounded; the message may grow sixfold when escaped. */
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
	write_line(log, level, &l);
	free(l.buf);
}
