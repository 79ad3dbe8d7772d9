/*
 * Typed message framing in both directions and the message bodies sluice
 * reads.  The first byte picks the direction and the length bound; the rest
 * is a stream of messages, framed by frame_peek as the relay, the server
 * login and the admin console frame them:
 *
 * - client to sluice: the bound is max_packet_size, and frame_client_limit's
 *   lower bound for control messages; bodies read as sluice reads Parse
 *   (prepared.c), Bind, Describe/Close, Execute, Query, PasswordMessage and
 *   CopyFail;
 * - server to sluice: the bound is max_packet_size or the login bound;
 *   bodies read as server.c and relay.c read AuthenticationRequest,
 *   ErrorResponse/NoticeResponse (msg_error_field), ParameterStatus,
 *   BackendKeyData, ReadyForQuery, NegotiateProtocolVersion, CommandComplete
 *   and the DataRow of the settings read-back.
 *
 * Beyond crashes it checks frame_peek against the header bytes, msg_reader's
 * invariants after every read, and that an ErrorResponse or ParameterStatus
 * rebuilt from what was read (proto/build.c) reads back the same.
 */
#include <event2/buffer.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proto/params.h"
#include "proto/build.h"
#include "proto/frame.h"

#define GB (1u << 30)

/* The limits sluice passes to frame_peek: max_packet_size's default and minimum, and login. */
static const uint32_t limits[] = {GB, 1024, FRAME_STARTUP_MAX * 2, FRAME_STARTUP_MAX};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* frame_peek's answer must follow from the header bytes alone, and never consume them. */
static enum frame_status peek_checked(struct evbuffer *in, struct frame *f, uint32_t limit)
{
	size_t avail = evbuffer_get_length(in);
	enum frame_status st = frame_peek(in, f, limit);
	uint8_t hdr[FRAME_HEADER_LEN];

	FUZZ_CHECK(evbuffer_get_length(in) == avail);
	if (avail < FRAME_HEADER_LEN) {
		FUZZ_CHECK(st == FRAME_INCOMPLETE);
		return st;
	}
	evbuffer_copyout(in, hdr, sizeof(hdr));
	FUZZ_CHECK(f->type == hdr[0] && f->len == be32(hdr + 1));
	FUZZ_CHECK(st == (f->len < 4 || f->len > limit ? FRAME_INVALID : FRAME_READY));
	return st;
}

/* Every field of an ErrorResponse/NoticeResponse, as msg_error_field finds them. */
static void error_fields(const uint8_t *body, size_t len)
{
	static const char codes[] = "SVCMDHPpqWsctdnFLR";
	const char *state = msg_error_field(body, len, 'C');
	const char *msg = msg_error_field(body, len, 'M');
	struct evbuffer *out;
	struct frame f;
	uint8_t *copy;

	for (const char *c = codes; *c != '\0'; c++) {
		const char *v = msg_error_field(body, len, *c);

		/* A field is a terminated string inside the body. */
		FUZZ_CHECK(v == NULL || ((const uint8_t *)v > body &&
		                         (const uint8_t *)v + strlen(v) < body + len));
	}
	FUZZ_CHECK(msg_error_field(body, len, '\0') == NULL);
	if (state == NULL || msg == NULL)
		return;
	/* Rebuilt as sluice would forward it, it must say the same (M is cut at 1023 bytes). */
	if ((out = evbuffer_new()) == NULL)
		abort();
	if (build_error(out, "ERROR", state, msg, NULL) == 0) {
		FUZZ_CHECK(peek_checked(out, &f, GB) == FRAME_READY && f.type == 'E');
		FUZZ_CHECK(frame_total(&f) == evbuffer_get_length(out));
		copy = fuzz_copy(evbuffer_pullup(out, -1) + FRAME_HEADER_LEN, f.len - 4);
		FUZZ_CHECK(strcmp(msg_error_field(copy, f.len - 4, 'C'), state) == 0);
		FUZZ_CHECK(strncmp(msg_error_field(copy, f.len - 4, 'M'), msg, 1023) == 0);
		free(copy);
	} else {
		FUZZ_CHECK(evbuffer_get_length(out) == 0);
	}
	evbuffer_free(out);
}

/* ParameterStatus into a param_list, and rebuilt: the same name and value come back. */
static void parameter_status(struct msg_reader *r, struct param_list *params)
{
	const char *name = fuzz_read_cstr(r), *value = fuzz_read_cstr(r);
	struct evbuffer *out;
	struct frame f;

	if (name == NULL || value == NULL)
		return;
	param_set(params, name, value);
	FUZZ_CHECK(strcmp(param_find(params, name)->value, value) == 0);
	if ((out = evbuffer_new()) == NULL)
		abort();
	if (build_parameter_status(out, name, value) == 0) {
		FUZZ_CHECK(peek_checked(out, &f, GB) == FRAME_READY && f.type == 'S');
		FUZZ_CHECK(f.len - 4 == strlen(name) + strlen(value) + 2);
	}
	evbuffer_free(out);
}

/* The settings read-back's DataRow (name, setting), as relay.c's capture_row reads it. */
static void capture_row(struct msg_reader *r, struct param_list *params)
{
	uint32_t name_len, value_len;
	const uint8_t *name, *value;
	char *name_z, *value_z;

	if (msg_read_u16(r) != 2)
		return;
	name_len = msg_read_u32(r);
	name = fuzz_read_bytes(r, name_len);
	value_len = msg_read_u32(r);
	value = fuzz_read_bytes(r, value_len);
	if (r->failed || name == NULL || value == NULL)
		return;
	name_z = strndup((const char *)name, name_len);
	value_z = strndup((const char *)value, value_len);
	if (name_z != NULL && value_z != NULL)
		param_set(params, name_z, value_z);
	free(name_z);
	free(value_z);
}

/* AuthenticationRequest, as server.c's login_auth reads it. */
static void authentication(struct msg_reader *r)
{
	const char *mech;

	switch (msg_read_u32(r)) {
	case 5: /* MD5Password: the salt */
		fuzz_read_bytes(r, 4);
		break;
	case 10: /* SASL: the mechanisms, up to an empty one */
		while ((mech = fuzz_read_cstr(r)) != NULL && mech[0] != '\0')
			;
		break;
	case 11: /* SASLContinue and SASLFinal: the rest is the SCRAM message */
	case 12:
		fuzz_read_bytes(r, msg_remaining(r));
		FUZZ_CHECK(msg_remaining(r) == 0);
		break;
	}
}

static void server_message(uint8_t type, struct msg_reader *r, struct param_list *params)
{
	switch (type) {
	case 'R':
		authentication(r);
		break;
	case 'E':
	case 'N':
		error_fields(r->data, r->len);
		break;
	case 'S':
		parameter_status(r, params);
		break;
	case 'K': /* BackendKeyData */
		msg_read_u32(r);
		msg_read_u32(r);
		break;
	case 'Z': /* ReadyForQuery */
		msg_read_u8(r);
		break;
	case 'v': { /* NegotiateProtocolVersion */
		uint32_t n;

		msg_read_u32(r);
		n = msg_read_u32(r);
		for (uint32_t i = 0; i < n && fuzz_read_cstr(r) != NULL; i++)
			;
		break;
	}
	case 'C': /* CommandComplete */
		fuzz_read_cstr(r);
		break;
	case 'D':
		capture_row(r, params);
		break;
	}
}

/* Parse: name, query, parameter types; prepared.c refuses a count that disagrees. */
static void parse_message(struct msg_reader *r)
{
	uint16_t n;

	fuzz_read_cstr(r);
	fuzz_read_cstr(r);
	n = msg_read_u16(r);
	if (!r->failed && msg_remaining(r) == (size_t)n * 4)
		for (uint16_t i = 0; i < n; i++)
			msg_read_u32(r);
	fuzz_check_reader(r);
}

/* Bind: portal, statement, formats, values (length -1 = NULL), result formats. */
static void bind_message(struct msg_reader *r)
{
	uint32_t len;
	uint16_t n;

	fuzz_read_cstr(r);
	fuzz_read_cstr(r);
	for (int list = 0; list < 3 && !r->failed; list++) {
		n = msg_read_u16(r);
		for (uint16_t i = 0; i < n && !r->failed; i++) {
			if (list != 1) {
				msg_read_u16(r);
			} else if ((len = msg_read_u32(r)) != UINT32_MAX) {
				fuzz_read_bytes(r, len);
			}
		}
	}
	fuzz_check_reader(r);
}

static void client_message(uint8_t type, struct msg_reader *r)
{
	switch (type) {
	case 'P':
		parse_message(r);
		break;
	case 'B':
		bind_message(r);
		break;
	case 'D': /* Describe and Close: 'S' or 'P', then the name */
	case 'C':
		msg_read_u8(r);
		fuzz_read_cstr(r);
		break;
	case 'E': /* Execute: portal, row limit */
		fuzz_read_cstr(r);
		msg_read_u32(r);
		break;
	case 'Q':
	case 'p':
	case 'f': /* CopyFail */
		fuzz_read_cstr(r);
		break;
	}
}

/* One message; returns false when the connection would be closed or must wait. */
static bool next_message(struct evbuffer *in, bool from_client, uint32_t limit,
                         struct param_list *params)
{
	struct frame f;
	enum frame_status st = peek_checked(in, &f, limit);
	struct msg_reader r;
	uint8_t *body;

	if (st != FRAME_READY)
		return false;
	if (from_client) {
		/* As the relay does: frame_peek's bound first, then the one for the type. */
		if (f.len > frame_client_limit(f.type, limit))
			return false;
	}
	if (evbuffer_get_length(in) < frame_total(&f))
		return false;
	body = fuzz_copy(evbuffer_pullup(in, (ev_ssize_t)frame_total(&f)) + FRAME_HEADER_LEN,
	                 f.len - 4);
	msg_reader_init(&r, body, f.len - 4);
	if (from_client)
		client_message(f.type, &r);
	else
		server_message(f.type, &r, params);
	fuzz_check_reader(&r);
	free(body);
	FUZZ_CHECK(evbuffer_drain(in, frame_total(&f)) == 0);
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct param_list params;
	struct evbuffer *in;
	bool from_client;
	uint32_t limit;

	if (size < 1)
		return 0;
	from_client = data[0] & 1;
	limit = limits[(data[0] >> 1) % (sizeof(limits) / sizeof(limits[0]))];
	if ((in = evbuffer_new()) == NULL || evbuffer_add(in, data + 1, size - 1) < 0)
		abort();
	param_list_init(&params);
	while (next_message(in, from_client, limit, &params))
		;
	param_list_fini(&params);
	evbuffer_free(in);
	return 0;
}
