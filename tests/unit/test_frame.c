/* Framing: header peeking, Postgres' size limits, the bounded body reader. */
#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <string.h>

#include "proto/frame.h"

static struct evbuffer *buf_of(const void *data, size_t len)
{
	struct evbuffer *b = evbuffer_new();

	evbuffer_add(b, data, len);
	return b;
}

Test(frame, peek_needs_whole_header)
{
	const uint8_t partial[] = {'Q', 0, 0, 0};
	struct evbuffer *b = buf_of(partial, sizeof(partial));
	struct frame f;

	cr_assert_eq(frame_peek(b, &f, 1000), FRAME_INCOMPLETE);
	evbuffer_add(b, "\x09", 1);
	cr_assert_eq(frame_peek(b, &f, 1000), FRAME_READY);
	cr_assert_eq(f.type, 'Q');
	cr_assert_eq(f.len, 9);
	cr_assert_eq(frame_total(&f), 10);
	cr_assert_eq(evbuffer_get_length(b), 5, "peek must not consume");
	evbuffer_free(b);
}

Test(frame, length_below_four_is_invalid)
{
	const uint8_t msg[] = {'S', 0, 0, 0, 3};
	struct evbuffer *b = buf_of(msg, sizeof(msg));
	struct frame f;

	cr_assert_eq(frame_peek(b, &f, 1000), FRAME_INVALID);
	evbuffer_free(b);
}

Test(frame, length_above_limit_is_invalid)
{
	const uint8_t msg[] = {'Q', 0x7f, 0xff, 0xff, 0xff};
	struct evbuffer *b = buf_of(msg, sizeof(msg));
	struct frame f;

	cr_assert_eq(frame_peek(b, &f, 1u << 30), FRAME_INVALID);
	evbuffer_free(b);
}

Test(frame, control_messages_are_small)
{
	const char *control = "SHCDEXcf";

	for (const char *t = control; *t; t++)
		cr_assert_eq(frame_client_limit((uint8_t)*t, 1u << 30), FRAME_CONTROL_MAX, "%c",
		             *t);
	cr_assert_eq(frame_client_limit('Q', 1u << 29), 1u << 29);
	cr_assert_eq(frame_client_limit('d', 12345), 12345);
}

/* Postgres drops the connection past 1 GB - 2: a larger max_packet_size does not apply. */
Test(frame, frontend_types)
{
	for (const char *t = "QPBDECSHFdcfX"; *t != '\0'; t++)
		cr_assert(frame_is_frontend_type((uint8_t)*t), "%c", *t);
	for (const char *t = "ApKVzRZTN1"; *t != '\0'; t++)
		cr_assert(!frame_is_frontend_type((uint8_t)*t), "%c", *t);
	cr_assert(!frame_is_frontend_type(0));
	cr_assert(!frame_is_frontend_type(0xff));
}

Test(frame, no_limit_above_what_postgres_takes)
{
	cr_assert_eq(frame_client_limit('Q', 1u << 30), FRAME_POSTGRES_MAX);
	cr_assert_eq(frame_client_limit('P', UINT32_MAX), 0x3ffffffe);
}

Test(frame, startup_limits)
{
	const uint8_t ok[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
	const uint8_t too_big[] = {0, 0, 0x27, 0x11, 0, 3, 0, 0};
	const uint8_t too_small[] = {0, 0, 0, 7, 0, 3, 0, 0};
	struct evbuffer *b = buf_of(ok, sizeof(ok));
	uint32_t len, code;

	cr_assert_eq(frame_peek_startup(b, &len, &code), FRAME_READY);
	cr_assert_eq(len, 8);
	cr_assert_eq(code, FRAME_CODE_SSL);
	evbuffer_free(b);
	b = buf_of(too_big, sizeof(too_big));
	cr_assert_eq(frame_peek_startup(b, &len, &code), FRAME_INVALID, "10001 bytes > limit");
	evbuffer_free(b);
	b = buf_of(too_small, sizeof(too_small));
	cr_assert_eq(frame_peek_startup(b, &len, &code), FRAME_INVALID);
	evbuffer_free(b);
	b = buf_of(ok, 6);
	cr_assert_eq(frame_peek_startup(b, &len, &code), FRAME_INCOMPLETE);
	evbuffer_free(b);
}

/* A startup packet whose length is below the minimum is refused on its 4 length bytes alone. */
Test(frame, short_startup_length_is_invalid_at_once)
{
	const uint8_t four[] = {0, 0, 0, 4};
	const uint8_t longer[] = {0, 0, 0, 100};
	struct evbuffer *b = buf_of(four, sizeof(four));
	uint32_t len, code;

	cr_assert_eq(frame_peek_startup(b, &len, &code), FRAME_INVALID);
	evbuffer_free(b);
	b = buf_of(longer, sizeof(longer));
	cr_assert_eq(frame_peek_startup(b, &len, &code), FRAME_INCOMPLETE, "a valid length waits");
	evbuffer_free(b);
}

Test(frame, reader_stops_at_end)
{
	const uint8_t body[] = {0, 0, 0, 7, 'a', 'b', 0, 'c'};
	struct msg_reader r;

	msg_reader_init(&r, body, sizeof(body));
	cr_assert_eq(msg_read_u32(&r), 7);
	cr_assert_str_eq(msg_read_cstr(&r), "ab");
	cr_assert_null(msg_read_cstr(&r), "unterminated string");
	cr_assert(r.failed);
	cr_assert_eq(msg_read_u8(&r), 0, "reads after failure return zero");
	cr_assert_eq(msg_remaining(&r), 0);
}

Test(frame, reader_bytes_bounds)
{
	const uint8_t body[] = {1, 2, 3};
	struct msg_reader r;

	msg_reader_init(&r, body, sizeof(body));
	cr_assert_null(msg_read_bytes(&r, 4));
	msg_reader_init(&r, body, sizeof(body));
	cr_assert_eq(msg_read_u16(&r), 0x0102);
	cr_assert_not_null(msg_read_bytes(&r, 1));
	cr_assert_eq(msg_remaining(&r), 0);
	cr_assert_null(msg_read_bytes(&r, SIZE_MAX));
}

Test(frame, error_fields)
{
	const char body[] = "SERROR\0C42P01\0Mrelation does not exist\0";
	const char truncated[] = {'S', 'E', 'R'};

	cr_assert_str_eq(msg_error_field(body, sizeof(body), 'C'), "42P01");
	cr_assert_str_eq(msg_error_field(body, sizeof(body), 'M'), "relation does not exist");
	cr_assert_null(msg_error_field(body, sizeof(body), 'D'));
	cr_assert_null(msg_error_field(truncated, sizeof(truncated), 'C'));
	cr_assert_null(msg_error_field("", 0, 'C'));
}
