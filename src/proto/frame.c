/*
 * Header peeking and size limits.  Nothing here copies a message body: the
 * relay moves bodies between evbuffers, and only the few messages sluice must
 * understand are made linear (evbuffer_pullup) and read with msg_reader.
 */
#include "proto/frame.h"

#include <event2/buffer.h>
#include <string.h>

static uint32_t read_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint32_t frame_client_limit(uint8_t type, uint32_t max_packet_size)
{
	/* Postgres refuses these above 10000 bytes; a larger one is an attack or a bug. */
	switch (type) {
	case 'S': /* Sync */
	case 'H': /* Flush */
	case 'C': /* Close */
	case 'D': /* Describe */
	case 'E': /* Execute */
	case 'X': /* Terminate */
	case 'c': /* CopyDone */
	case 'f': /* CopyFail */
		return FRAME_CONTROL_MAX;
	default:
		/* A larger one would be refused by Postgres, which then drops the connection. */
		return max_packet_size < FRAME_POSTGRES_MAX ? max_packet_size : FRAME_POSTGRES_MAX;
	}
}

bool frame_is_frontend_type(uint8_t type)
{
	switch (type) {
	case 'Q': /* Query */
	case 'P': /* Parse */
	case 'B': /* Bind */
	case 'D': /* Describe */
	case 'E': /* Execute */
	case 'C': /* Close */
	case 'S': /* Sync */
	case 'H': /* Flush */
	case 'F': /* FunctionCall */
	case 'd': /* CopyData */
	case 'c': /* CopyDone */
	case 'f': /* CopyFail */
	case 'X': /* Terminate */
		return true;
	default:
		return false;
	}
}

enum frame_status frame_peek(struct evbuffer *buf, struct frame *f, uint32_t limit)
{
	uint8_t hdr[FRAME_HEADER_LEN];

	if (evbuffer_copyout(buf, hdr, sizeof(hdr)) < (ev_ssize_t)sizeof(hdr))
		return FRAME_INCOMPLETE;
	return frame_parse(hdr, f, limit);
}

enum frame_status frame_peek_startup(struct evbuffer *buf, uint32_t *len, uint32_t *code)
{
	uint8_t hdr[8];
	ev_ssize_t have = evbuffer_copyout(buf, hdr, sizeof(hdr));

	/* The length alone can be wrong: say so at once rather than wait for 8 bytes. */
	if (have < 4)
		return FRAME_INCOMPLETE;
	*len = read_be32(hdr);
	if (*len < 8 || *len > FRAME_STARTUP_MAX)
		return FRAME_INVALID;
	if (have < (ev_ssize_t)sizeof(hdr))
		return FRAME_INCOMPLETE;
	*code = read_be32(hdr + 4);
	return FRAME_READY;
}

void msg_reader_init(struct msg_reader *r, const void *data, size_t len)
{
	r->data = data;
	r->len = len;
	r->pos = 0;
	r->failed = false;
}

static bool reader_take(struct msg_reader *r, size_t n)
{
	if (r->failed || r->len - r->pos < n) {
		r->failed = true;
		return false;
	}
	return true;
}

uint8_t msg_read_u8(struct msg_reader *r)
{
	if (!reader_take(r, 1))
		return 0;
	return r->data[r->pos++];
}

uint16_t msg_read_u16(struct msg_reader *r)
{
	uint16_t v;

	if (!reader_take(r, 2))
		return 0;
	v = (uint16_t)(r->data[r->pos] << 8 | r->data[r->pos + 1]);
	r->pos += 2;
	return v;
}

uint32_t msg_read_u32(struct msg_reader *r)
{
	uint32_t v;

	if (!reader_take(r, 4))
		return 0;
	v = read_be32(r->data + r->pos);
	r->pos += 4;
	return v;
}

const char *msg_read_cstr(struct msg_reader *r)
{
	const uint8_t *start, *nul;

	if (r->failed)
		return NULL;
	start = r->data + r->pos;
	nul = memchr(start, '\0', r->len - r->pos);
	if (nul == NULL) {
		r->failed = true;
		return NULL;
	}
	r->pos += (size_t)(nul - start) + 1;
	return (const char *)start;
}

const uint8_t *msg_read_bytes(struct msg_reader *r, size_t n)
{
	const uint8_t *p;

	if (!reader_take(r, n))
		return NULL;
	p = r->data + r->pos;
	r->pos += n;
	return p;
}

size_t msg_remaining(const struct msg_reader *r)
{
	return r->failed ? 0 : r->len - r->pos;
}

const char *msg_error_field(const void *body, size_t len, char field)
{
	struct msg_reader r;

	msg_reader_init(&r, body, len);
	for (;;) {
		uint8_t code = msg_read_u8(&r);
		const char *value;

		if (code == 0 || r.failed)
			return NULL;
		value = msg_read_cstr(&r);
		if (value == NULL)
			return NULL;
		if (code == (uint8_t)field)
			return value;
	}
}
