/*
 * Wire framing: peeking at message headers inside an evbuffer without copying
 * the body, Postgres' size limits, and a bounds-checked reader for the few
 * message bodies sluice must understand.
 */
#ifndef SLUICE_PROTO_FRAME_H
#define SLUICE_PROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define FRAME_HEADER_LEN  5     /* type byte + int32 length */
#define FRAME_STARTUP_MAX 10000 /* Postgres' limit for startup and control messages */
#define FRAME_CONTROL_MAX 10000
#define FRAME_POSTGRES_MAX                                                                         \
	0x3ffffffe /* largest length Postgres takes (1 GB - 2): MaxAllocSize - 1 */
#define FRAME_CODE_CANCEL    80877102
#define FRAME_CODE_SSL       80877103
#define FRAME_CODE_GSSENC    80877104
#define FRAME_PROTO_MAJOR(v) ((v) >> 16)
#define FRAME_PROTO_MINOR(v) ((v)&0xffff)
#define FRAME_PROTO_3_0      196608

enum frame_status {
	FRAME_INCOMPLETE, /* not enough bytes buffered for the header yet */
	FRAME_READY,      /* header parsed */
	FRAME_INVALID,    /* length below 4 or above the limit for its type */
};

struct frame {
	uint8_t type; /* message type byte */
	uint32_t len; /* the length field: body + 4, excludes the type byte */
};

/* Whole size of a framed message, header included. */
static inline size_t frame_total(const struct frame *f)
{
	return (size_t)f->len + 1;
}

/* Largest length a client may send for `type`: control messages are small. */
uint32_t frame_client_limit(uint8_t type, uint32_t max_packet_size);
/*
 * A type a frontend may send once logged in (Postgres answers any other with
 * FATAL "invalid frontend message type").
 */
bool frame_is_frontend_type(uint8_t type);

/* Peek at the next typed message header; `limit` bounds the length field. */
enum frame_status frame_peek(struct evbuffer *buf, struct frame *f, uint32_t limit);

/* The same, from FRAME_HEADER_LEN bytes already in memory. */
static inline enum frame_status frame_parse(const uint8_t *hdr, struct frame *f, uint32_t limit)
{
	f->type = hdr[0];
	f->len = (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 8 | hdr[4];
	if (f->len < 4 || f->len > limit)
		return FRAME_INVALID;
	return FRAME_READY;
}

/* Peek at an untyped startup-phase packet: int32 length, int32 code. */
enum frame_status frame_peek_startup(struct evbuffer *buf, uint32_t *len, uint32_t *code);

/* Bounds-checked cursor over a linear message body. */
struct msg_reader {
	const uint8_t *data; /* body (after the header) */
	size_t len;          /* body length */
	size_t pos;          /* next unread byte */
	bool failed;         /* a read ran past the end; later reads return zero/NULL */
};

void msg_reader_init(struct msg_reader *r, const void *data, size_t len);
uint8_t msg_read_u8(struct msg_reader *r);
uint16_t msg_read_u16(struct msg_reader *r);
uint32_t msg_read_u32(struct msg_reader *r);
/* A NUL-terminated string inside the body, or NULL if unterminated. */
const char *msg_read_cstr(struct msg_reader *r);
/* `n` raw bytes, or NULL if fewer remain. */
const uint8_t *msg_read_bytes(struct msg_reader *r, size_t n);
size_t msg_remaining(const struct msg_reader *r);

/* Find a field (e.g. 'C' for SQLSTATE, 'M' message) in an ErrorResponse/NoticeResponse body. */
const char *msg_error_field(const void *body, size_t len, char field);

#endif
