/* Every message builder, checked byte for byte against the protocol layout. */
#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <string.h>

#include "proto/build.h"
#include "proto/frame.h"

static struct evbuffer *out;

static void setup(void)
{
	out = evbuffer_new();
}

static void teardown(void)
{
	evbuffer_free(out);
}

static void expect(const void *bytes, size_t len)
{
	size_t have = evbuffer_get_length(out);
	const uint8_t *p = evbuffer_pullup(out, -1);

	cr_assert_eq(have, len, "length %zu, expected %zu", have, len);
	cr_assert(memcmp(p, bytes, len) == 0, "bytes differ");
}

/* The header's length must match the bytes that follow. */
static void expect_framed(uint8_t type)
{
	struct frame f;

	cr_assert_eq(frame_peek(out, &f, 1u << 30), FRAME_READY);
	cr_assert_eq(f.type, type);
	cr_assert_eq(frame_total(&f), evbuffer_get_length(out));
}

TestSuite(build, .init = setup, .fini = teardown);

Test(build, ready)
{
	build_ready(out, 'T');
	expect("Z\0\0\0\5T", 6);
}

Test(build, error_response)
{
	const char want[] = "E\0\0\0\x2b"
	                    "SFATAL\0VFATAL\0C08P01\0Mbad thing\0Dmore\0";

	cr_assert_eq(build_error(out, "FATAL", "08P01", "bad thing", "more"), 0);
	expect(want, sizeof(want));
	expect_framed('E');
}

Test(build, error_response_hint)
{
	const char want[] = "E\0\0\0\x32"
	                    "SERROR\0VERROR\0C53400\0Mslow down\0Hretry later\0";

	cr_assert_eq(build_error_hint(out, "ERROR", "53400", "slow down", NULL, "retry later"), 0);
	expect(want, sizeof(want));
	expect_framed('E');
}

/* prepared.c's stale-plan error: the same bytes Postgres sends, R included. */
Test(build, error_response_routine)
{
	const char want[] = "E\0\0\0\x5a"
	                    "SERROR\0VERROR\0C0A000\0Mcached plan must not change result type\0"
	                    "RRevalidateCachedQuery\0";
	const struct error_fields f = {.routine = "RevalidateCachedQuery"};

	cr_assert_eq(build_error_fields(out, "ERROR", "0A000",
	                                "cached plan must not change result type", &f),
	             0);
	expect(want, sizeof(want));
	expect_framed('E');
}

/* All optional fields, in Postgres' order: D, H, R. */
Test(build, error_response_all_fields)
{
	const char want[] = "E\0\0\0\x26"
	                    "SFATAL\0VFATAL\0C08P01\0Mm\0Dd\0Hh\0Rr\0";
	const struct error_fields f = {.detail = "d", .hint = "h", .routine = "r"};

	cr_assert_eq(build_error_fields(out, "FATAL", "08P01", "m", &f), 0);
	expect(want, sizeof(want));
}

Test(build, error_message_truncated_not_dropped)
{
	char big[5000];
	const uint8_t *p;
	size_t len;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	cr_assert_eq(build_error(out, "ERROR", "XX000", big, big), 0);
	expect_framed('E');
	/* Header, S, V, C, then M and D each cut to BUILD_ERROR_TEXT_MAX bytes. */
	len = evbuffer_get_length(out);
	cr_assert_eq(len, 5 + 7 + 7 + 7 + 2 * (1 + BUILD_ERROR_TEXT_MAX + 1) + 1);
	p = evbuffer_pullup(out, -1);
	cr_assert_eq(p[5 + 7 + 7 + 7], 'M');
	cr_assert_eq(p[5 + 7 + 7 + 7 + 1 + BUILD_ERROR_TEXT_MAX], 0);
}

Test(build, notice)
{
	const char want[] = "N\0\0\0\x20"
	                    "SNOTICE\0VNOTICE\0C01000\0Mhi\0";

	build_notice(out, "01000", "hi");
	expect(want, sizeof(want));
	expect_framed('N');
}

/* A notice is not cut: SHOW HELP is longer than an error's text limit. */
Test(build, notice_long_sent_whole)
{
	char big[4096];
	struct frame f;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	cr_assert_eq(build_notice(out, "00000", big), 0);
	cr_assert_eq(frame_peek(out, &f, 1u << 30), FRAME_READY);
	cr_assert_eq(evbuffer_get_length(out), 5 + 8 + 8 + 7 + 1 + sizeof(big) + 1);
}

Test(build, auth_variants)
{
	const uint8_t salt[4] = {1, 2, 3, 4};

	build_auth(out, 0, NULL, 0);
	expect("R\0\0\0\10\0\0\0\0", 9);
	evbuffer_drain(out, 9);
	build_auth(out, 5, salt, 4);
	expect("R\0\0\0\14\0\0\0\5\1\2\3\4", 13);
	evbuffer_drain(out, 13);
	build_auth_sasl(out, "SCRAM-SHA-256");
	expect("R\0\0\0\027\0\0\0\12SCRAM-SHA-256\0\0", 24);
}

Test(build, parameter_status_and_key)
{
	build_parameter_status(out, "a", "b");
	expect("S\0\0\0\10a\0b\0", 9);
	evbuffer_drain(out, 9);
	build_backend_key(out, 0x01020304, 0x0a0b0c0d);
	expect("K\0\0\0\14\1\2\3\4\12\13\14\15", 13);
}

Test(build, negotiate_protocol)
{
	const char *opts[] = {"_pq_.x"};

	build_negotiate_protocol(out, 3u << 16, opts, 1);
	expect("v\0\0\0\23\0\3\0\0\0\0\0\1_pq_.x\0", 20);
}

Test(build, command_complete)
{
	build_command_complete(out, "SELECT 1");
	expect("C\0\0\0\15SELECT 1\0", 14);
}

Test(build, startup_packet)
{
	const char *keys[] = {"user", "database"};
	const char *values[] = {"u", "d"};

	build_startup(out, keys, values, 2);
	expect("\0\0\0\33\0\3\0\0user\0u\0database\0d\0\0", 27);
}

Test(build, frontend_messages)
{
	build_password(out, "pw");
	expect("p\0\0\0\7pw\0", 8);
	evbuffer_drain(out, 8);
	build_sasl_initial(out, "M", "ab", 2);
	expect("p\0\0\0\14M\0\0\0\0\2ab", 13);
	evbuffer_drain(out, 13);
	build_sasl_response(out, "xyz", 3);
	expect("p\0\0\0\7xyz", 8);
	evbuffer_drain(out, 8);
	build_query(out, "SELECT 1");
	expect("Q\0\0\0\15SELECT 1\0", 14);
	evbuffer_drain(out, 14);
	build_terminate(out);
	expect("X\0\0\0\4", 5);
	evbuffer_drain(out, 5);
	build_sync(out);
	expect("S\0\0\0\4", 5);
	evbuffer_drain(out, 5);
	build_copy_fail(out, "no");
	expect("f\0\0\0\7no\0", 8);
	evbuffer_drain(out, 8);
	build_cancel_request(out, 7, 9);
	expect("\0\0\0\20\x04\xd2\x16\x2e\0\0\0\7\0\0\0\11", 16);
}

Test(build, long_query_not_bounded_by_stack_buffer)
{
	size_t n = 100000;
	char *sql = malloc(n + 1);

	memset(sql, 'x', n);
	sql[n] = 0;
	cr_assert_eq(build_query(out, sql), 0);
	expect_framed('Q');
	free(sql);
}

Test(build, overflow_appends_nothing)
{
	struct msg_builder m;
	static char big[BUILD_MSG_MAX + 10];

	memset(big, 'a', sizeof(big));
	msg_begin(&m, 'X');
	msg_add_bytes(&m, big, sizeof(big));
	cr_assert_eq(msg_finish(&m, out), -1);
	cr_assert_eq(evbuffer_get_length(out), 0);
}

Test(build, console_result_messages)
{
	const char *names[] = {"a", "bc"};
	const uint32_t types[] = {25, 23};
	const char *values[] = {"x", NULL, ""};

	build_row_description(out, 2, names, types);
	expect_framed('T');
	expect("T\0\0\0\x2f\0\2"
	       "a\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0"
	       "bc\0\0\0\0\0\0\0\0\0\0\x17\xff\xff\xff\xff\xff\xff\0\0",
	       48);
	evbuffer_drain(out, 48);
	build_data_row(out, 3, values);
	expect_framed('D');
	expect("D\0\0\0\x13\0\3\0\0\0\1x\xff\xff\xff\xff\0\0\0\0", 20);
	evbuffer_drain(out, 20);
	build_empty_query(out);
	expect("I\0\0\0\4", 5);
}

Test(build, data_row_larger_than_the_stack_buffer)
{
	size_t n = 3 * BUILD_MSG_MAX;
	char *big = malloc(n + 1);
	const char *values[] = {big};

	memset(big, 'v', n);
	big[n] = 0;
	cr_assert_eq(build_data_row(out, 1, values), 0);
	expect_framed('D');
	free(big);
}
