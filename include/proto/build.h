/*
 * Builders for every message sluice writes itself, appended to an evbuffer.
 * Each returns 0, or -1 if the message would not fit its bound (the caller
 * treats that as an internal error; nothing partial is appended).
 */
#ifndef SLUICE_PROTO_BUILD_H
#define SLUICE_PROTO_BUILD_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define BUILD_MSG_MAX 8192 /* bound for messages assembled on the stack */

/* Scratch message under construction; lives on the caller's stack. */
struct msg_builder {
	uint8_t data[BUILD_MSG_MAX]; /* type byte, length placeholder, body */
	size_t len;                  /* bytes used */
	size_t len_at;               /* offset of the length field: 1 if typed, 0 for startup */
	int overflow;                /* set when a field did not fit */
};

/* type 0 starts an untyped startup-phase packet (length first). */
void msg_begin(struct msg_builder *m, uint8_t type);
void msg_add_u8(struct msg_builder *m, uint8_t v);
void msg_add_u16(struct msg_builder *m, uint16_t v);
void msg_add_u32(struct msg_builder *m, uint32_t v);
void msg_add_bytes(struct msg_builder *m, const void *p, size_t n);
void msg_add_cstr(struct msg_builder *m, const char *s);
/* Patch the length and append to out. */
int msg_finish(struct msg_builder *m, struct evbuffer *out);

#define BUILD_ERROR_TEXT_MAX 1023 /* longest text field of an ErrorResponse; longer is cut */

/* The optional fields of an ErrorResponse; NULL = not sent. */
struct error_fields {
	const char *detail; /* D: more about what happened */
	const char *hint;   /* H: what the client can do about it */
	const char
	    *routine; /* R: the Postgres routine that raises it, which some drivers match on */
};

/* Backend messages (to clients). */
/*
 * The one ErrorResponse builder: S and V (severity, "ERROR" or "FATAL";
 * sluice does not localise, so both are the same), C (sqlstate, from
 * proto/sqlstate.h), M, then the fields of f that are set (f may be NULL), in
 * Postgres' order.  A text field past BUILD_ERROR_TEXT_MAX bytes is cut rather
 * than the error lost.
 */
int build_error_fields(struct evbuffer *out, const char *severity, const char *sqlstate,
                       const char *msg, const struct error_fields *f);
/* Shorthands: with a DETAIL, or a DETAIL and a HINT (each NULL = none). */
int build_error(struct evbuffer *out, const char *severity, const char *sqlstate, const char *msg,
                const char *detail);
int build_error_hint(struct evbuffer *out, const char *severity, const char *sqlstate,
                     const char *msg, const char *detail, const char *hint);
/* NoticeResponse, severity NOTICE: the same layout, msg sent whole. */
int build_notice(struct evbuffer *out, const char *sqlstate, const char *msg);
int build_auth(struct evbuffer *out, uint32_t code, const void *data, size_t len);
int build_auth_sasl(struct evbuffer *out, const char *mechanism);
int build_parameter_status(struct evbuffer *out, const char *name, const char *value);
int build_backend_key(struct evbuffer *out, uint32_t pid, uint32_t key);
int build_ready(struct evbuffer *out, char status);
/*
 * NegotiateProtocolVersion: `version` is the whole protocol version the
 * server speaks (major << 16 | minor), which is what Postgres sends and
 * libpq 18 checks, whatever the message's documentation calls the field.
 */
int build_negotiate_protocol(struct evbuffer *out, uint32_t version,
                             const char *const *unrecognized, size_t n);
int build_command_complete(struct evbuffer *out, const char *tag);
int build_empty_query(struct evbuffer *out);
/* RowDescription of n text-format columns; types[i] is a Postgres type OID. */
int build_row_description(struct evbuffer *out, size_t n, const char *const *names,
                          const uint32_t *types);
/*
 * DataRow of n text values (NULL = SQL NULL).  Written straight to out, since
 * a row may exceed BUILD_MSG_MAX; fails only on allocation failure.
 */
int build_data_row(struct evbuffer *out, size_t n, const char *const *values);

/* Frontend messages (to servers). */
int build_startup(struct evbuffer *out, const char *const *keys, const char *const *values,
                  size_t n);
int build_password(struct evbuffer *out, const char *password);
int build_sasl_initial(struct evbuffer *out, const char *mechanism, const void *data, size_t len);
int build_sasl_response(struct evbuffer *out, const void *data, size_t len);
/* Query is written straight to out: SQL may exceed BUILD_MSG_MAX. */
int build_query(struct evbuffer *out, const char *sql);
int build_terminate(struct evbuffer *out);
int build_cancel_request(struct evbuffer *out, uint32_t pid, uint32_t key);
/* SSLRequest: the server answers one byte, 'S' or 'N'. */
int build_ssl_request(struct evbuffer *out);
int build_copy_fail(struct evbuffer *out, const char *reason);
int build_sync(struct evbuffer *out);

#endif
