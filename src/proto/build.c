/*
 * Message builders.  Messages are assembled in a bounded stack buffer and
 * appended to the output evbuffer in one call, so a builder never leaves a
 * half-written message behind.
 */
#include "proto/build.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <string.h>

#include "proto/frame.h"

void msg_begin(struct msg_builder *m, uint8_t type)
{
	m->overflow = 0;
	m->len = 0;
	if (type != 0)
		m->data[m->len++] = type;
	m->len_at = m->len;
	m->len += 4; /* length, patched by msg_finish */
}

void msg_add_bytes(struct msg_builder *m, const void *p, size_t n)
{
	if (m->overflow || n > sizeof(m->data) - m->len) {
		m->overflow = 1;
		return;
	}
	memcpy(m->data + m->len, p, n);
	m->len += n;
}

void msg_add_u8(struct msg_builder *m, uint8_t v)
{
	msg_add_bytes(m, &v, 1);
}

void msg_add_u16(struct msg_builder *m, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

	msg_add_bytes(m, b, sizeof(b));
}

void msg_add_u32(struct msg_builder *m, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

	msg_add_bytes(m, b, sizeof(b));
}

void msg_add_cstr(struct msg_builder *m, const char *s)
{
	msg_add_bytes(m, s, strlen(s) + 1);
}

int msg_finish(struct msg_builder *m, struct evbuffer *out)
{
	size_t at = m->len_at;
	uint32_t len;

	if (m->overflow)
		return -1;
	len = (uint32_t)(m->len - at);
	m->data[at] = (uint8_t)(len >> 24);
	m->data[at + 1] = (uint8_t)(len >> 16);
	m->data[at + 2] = (uint8_t)(len >> 8);
	m->data[at + 3] = (uint8_t)len;
	return evbuffer_add(out, m->data, m->len);
}

/* A text field: its code, then s cut to max bytes and terminated. */
static void add_text_field(struct msg_builder *m, uint8_t code, const char *s, size_t max)
{
	size_t n = strlen(s);

	msg_add_u8(m, code);
	msg_add_bytes(m, s, n < max ? n : max);
	msg_add_u8(m, 0);
}

/*
 * ErrorResponse ('E') and NoticeResponse ('N') share one layout; the fields
 * go in the order Postgres sends them, so a driver sees what it would see
 * from a server.
 */
static int build_report(struct evbuffer *out, uint8_t type, const char *severity,
                        const char *sqlstate, const char *msg, const struct error_fields *f,
                        size_t text_max)
{
	struct msg_builder m;

	msg_begin(&m, type);
	msg_add_u8(&m, 'S');
	msg_add_cstr(&m, severity);
	msg_add_u8(&m, 'V');
	msg_add_cstr(&m, severity);
	msg_add_u8(&m, 'C');
	msg_add_cstr(&m, sqlstate);
	add_text_field(&m, 'M', msg, text_max);
	if (f != NULL && f->detail != NULL)
		add_text_field(&m, 'D', f->detail, text_max);
	if (f != NULL && f->hint != NULL)
		add_text_field(&m, 'H', f->hint, text_max);
	if (f != NULL && f->routine != NULL)
		add_text_field(&m, 'R', f->routine, text_max);
	msg_add_u8(&m, 0);
	return msg_finish(&m, out);
}

int build_error_fields(struct evbuffer *out, const char *severity, const char *sqlstate,
                       const char *msg, const struct error_fields *f)
{
	/* Cut over-long text instead of failing to report the error at all. */
	return build_report(out, 'E', severity, sqlstate, msg, f, BUILD_ERROR_TEXT_MAX);
}

int build_error_hint(struct evbuffer *out, const char *severity, const char *sqlstate,
                     const char *msg, const char *detail, const char *hint)
{
	const struct error_fields f = {.detail = detail, .hint = hint};

	return build_error_fields(out, severity, sqlstate, msg, &f);
}

int build_error(struct evbuffer *out, const char *severity, const char *sqlstate, const char *msg,
                const char *detail)
{
	return build_error_hint(out, severity, sqlstate, msg, detail, NULL);
}

int build_notice(struct evbuffer *out, const char *sqlstate, const char *msg)
{
	/* Not cut: the console's notices (SHOW HELP) are longer than an error's text. */
	return build_report(out, 'N', "NOTICE", sqlstate, msg, NULL, SIZE_MAX);
}

int build_auth(struct evbuffer *out, uint32_t code, const void *data, size_t len)
{
	struct msg_builder m;

	msg_begin(&m, 'R');
	msg_add_u32(&m, code);
	if (len > 0)
		msg_add_bytes(&m, data, len);
	return msg_finish(&m, out);
}

int build_auth_sasl(struct evbuffer *out, const char *mechanism)
{
	struct msg_builder m;

	msg_begin(&m, 'R');
	msg_add_u32(&m, 10); /* AuthenticationSASL */
	msg_add_cstr(&m, mechanism);
	msg_add_u8(&m, 0);
	return msg_finish(&m, out);
}

int build_parameter_status(struct evbuffer *out, const char *name, const char *value)
{
	struct msg_builder m;

	msg_begin(&m, 'S');
	msg_add_cstr(&m, name);
	msg_add_cstr(&m, value);
	return msg_finish(&m, out);
}

int build_backend_key(struct evbuffer *out, uint32_t pid, uint32_t key)
{
	struct msg_builder m;

	msg_begin(&m, 'K');
	msg_add_u32(&m, pid);
	msg_add_u32(&m, key);
	return msg_finish(&m, out);
}

int build_ready(struct evbuffer *out, char status)
{
	const uint8_t msg[6] = {'Z', 0, 0, 0, 5, (uint8_t)status};

	return evbuffer_add(out, msg, sizeof(msg));
}

int build_negotiate_protocol(struct evbuffer *out, uint32_t version,
                             const char *const *unrecognized, size_t n)
{
	struct msg_builder m;

	msg_begin(&m, 'v');
	msg_add_u32(&m, version);
	msg_add_u32(&m, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		msg_add_cstr(&m, unrecognized[i]);
	return msg_finish(&m, out);
}

int build_command_complete(struct evbuffer *out, const char *tag)
{
	struct msg_builder m;

	msg_begin(&m, 'C');
	msg_add_cstr(&m, tag);
	return msg_finish(&m, out);
}

int build_empty_query(struct evbuffer *out)
{
	const uint8_t msg[5] = {'I', 0, 0, 0, 4};

	return evbuffer_add(out, msg, sizeof(msg));
}

int build_row_description(struct evbuffer *out, size_t n, const char *const *names,
                          const uint32_t *types)
{
	struct msg_builder m;

	if (n > UINT16_MAX)
		return -1;
	msg_begin(&m, 'T');
	msg_add_u16(&m, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		msg_add_cstr(&m, names[i]);
		msg_add_u32(&m, 0);          /* table OID: none */
		msg_add_u16(&m, 0);          /* column number: none */
		msg_add_u32(&m, types[i]);   /* type OID */
		msg_add_u16(&m, 0xffff);     /* type size -1: the length is in each value */
		msg_add_u32(&m, 0xffffffff); /* type modifier -1 */
		msg_add_u16(&m, 0);          /* text format */
	}
	return msg_finish(&m, out);
}

int build_data_row(struct evbuffer *out, size_t n, const char *const *values)
{
	uint64_t len = 4 + 2;
	uint8_t hdr[7];

	if (n > UINT16_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		len += 4 + (values[i] != NULL ? strlen(values[i]) : 0);
	if (len > UINT32_MAX / 2 || evbuffer_expand(out, (size_t)len + 1) < 0)
		return -1;
	hdr[0] = 'D';
	hdr[1] = (uint8_t)(len >> 24);
	hdr[2] = (uint8_t)(len >> 16);
	hdr[3] = (uint8_t)(len >> 8);
	hdr[4] = (uint8_t)len;
	hdr[5] = (uint8_t)(n >> 8);
	hdr[6] = (uint8_t)n;
	evbuffer_add(out, hdr, sizeof(hdr));
	for (size_t i = 0; i < n; i++) {
		uint32_t vlen = values[i] != NULL ? (uint32_t)strlen(values[i]) : 0xffffffff;
		const uint8_t b[4] = {(uint8_t)(vlen >> 24), (uint8_t)(vlen >> 16),
		                      (uint8_t)(vlen >> 8), (uint8_t)vlen};

		evbuffer_add(out, b, sizeof(b));
		if (values[i] != NULL)
			evbuffer_add(out, values[i], strlen(values[i]));
	}
	return 0;
}

int build_startup(struct evbuffer *out, const char *const *keys, const char *const *values,
                  size_t n)
{
	struct msg_builder m;

	msg_begin(&m, 0);
	msg_add_u32(&m, FRAME_PROTO_3_0);
	for (size_t i = 0; i < n; i++) {
		msg_add_cstr(&m, keys[i]);
		msg_add_cstr(&m, values[i]);
	}
	msg_add_u8(&m, 0);
	return msg_finish(&m, out);
}

int build_password(struct evbuffer *out, const char *password)
{
	struct msg_builder m;

	msg_begin(&m, 'p');
	msg_add_cstr(&m, password);
	return msg_finish(&m, out);
}

int build_sasl_initial(struct evbuffer *out, const char *mechanism, const void *data, size_t len)
{
	struct msg_builder m;

	msg_begin(&m, 'p');
	msg_add_cstr(&m, mechanism);
	msg_add_u32(&m, (uint32_t)len);
	msg_add_bytes(&m, data, len);
	return msg_finish(&m, out);
}

int build_sasl_response(struct evbuffer *out, const void *data, size_t len)
{
	struct msg_builder m;

	msg_begin(&m, 'p');
	msg_add_bytes(&m, data, len);
	return msg_finish(&m, out);
}

int build_query(struct evbuffer *out, const char *sql)
{
	size_t n = strlen(sql) + 1;
	uint32_t len = (uint32_t)(n + 4);
	const uint8_t hdr[5] = {'Q', (uint8_t)(len >> 24), (uint8_t)(len >> 16),
	                        (uint8_t)(len >> 8), (uint8_t)len};

	if (evbuffer_expand(out, sizeof(hdr) + n) < 0)
		return -1;
	evbuffer_add(out, hdr, sizeof(hdr));
	return evbuffer_add(out, sql, n);
}

int build_terminate(struct evbuffer *out)
{
	const uint8_t msg[5] = {'X', 0, 0, 0, 4};

	return evbuffer_add(out, msg, sizeof(msg));
}

int build_cancel_request(struct evbuffer *out, uint32_t pid, uint32_t key)
{
	struct msg_builder m;

	msg_begin(&m, 0);
	msg_add_u32(&m, FRAME_CODE_CANCEL);
	msg_add_u32(&m, pid);
	msg_add_u32(&m, key);
	return msg_finish(&m, out);
}

int build_ssl_request(struct evbuffer *out)
{
	struct msg_builder m;

	msg_begin(&m, 0);
	msg_add_u32(&m, FRAME_CODE_SSL);
	return msg_finish(&m, out);
}

int build_copy_fail(struct evbuffer *out, const char *reason)
{
	struct msg_builder m;

	msg_begin(&m, 'f');
	msg_add_cstr(&m, reason);
	return msg_finish(&m, out);
}

int build_sync(struct evbuffer *out)
{
	const uint8_t msg[5] = {'S', 0, 0, 0, 4};

	return evbuffer_add(out, msg, sizeof(msg));
}
