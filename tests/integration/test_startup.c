/*
 * Hostile or odd first packets, sent over raw sockets: each bad one must get
 * an ErrorResponse with SQLSTATE 08P01 and a closed connection, and sluice
 * must go on serving normal clients, including one connected before.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

#define PROTOCOL_3_0    196608u   /* 3 << 16 */
#define CANCEL_REQUEST  80877102u /* 1234 << 16 | 5678 */
#define SSL_REQUEST     80877103u /* 1234 << 16 | 5679 */
#define GSSENC_REQUEST  80877104u /* 1234 << 16 | 5680 */
#define REPLY_TIMEOUT_S 20.0

TestSuite(startup, .fini = harness_teardown, .timeout = 120);

static int raw_connect(struct harness_sluice *h)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
	                           .sin_port = htons((uint16_t)h->port),
	                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0, "connect: %s",
	             strerror(errno));
	return fd;
}

static void expect_still_serving(struct harness_sluice *h, PGconn *before)
{
	PGconn *c = harness_connect_ok(h, "app", "app-secret", "app");

	cr_assert_eq(harness_query_int(c, "select 1"), 1);
	PQfinish(c);
	if (before != NULL)
		cr_assert_eq(harness_query_int(before, "select 2"), 2);
}

/* Sends `len` bytes of packet and expects 08P01 (or one of `alt`) then a close. */
static void expect_rejected(struct harness_sluice *h, const unsigned char *packet, size_t len,
                            const char *alt)
{
	int fd = raw_connect(h);
	char state[6];

	harness_send_all(fd, packet, len);
	harness_expect_error_and_close(fd, state);
	cr_assert(strcmp(state, "08P01") == 0 || (alt != NULL && strcmp(state, alt) == 0),
	          "SQLSTATE %s, want 08P01%s%s", state, alt != NULL ? " or " : "",
	          alt != NULL ? alt : "");
}

Test(startup, oversized)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *before = harness_connect_ok(h, "app", "app-secret", "app");
	unsigned char packet[8];

	/* Only the header: the length alone must be enough to refuse it. */
	harness_put_u32(packet, 100000);
	harness_put_u32(packet + 4, PROTOCOL_3_0);
	expect_rejected(h, packet, sizeof(packet), NULL);
	expect_still_serving(h, before);
	PQfinish(before);
}

Test(startup, length_too_short)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	unsigned char packet[8];

	harness_put_u32(packet, 3);
	harness_put_u32(packet + 4, PROTOCOL_3_0);
	expect_rejected(h, packet, sizeof(packet), NULL);
	expect_still_serving(h, NULL);
}

/* Just a length of 4, nothing more: refused on those 4 bytes, not at client_login_timeout. */
Test(startup, four_byte_packet_is_refused_at_once)
{
	struct harness_sluice *h = harness_start_sluice("client_login_timeout = 300s");
	unsigned char packet[4];

	harness_put_u32(packet, 4);
	expect_rejected(h, packet, sizeof(packet), NULL);
	expect_still_serving(h, NULL);
}

Test(startup, unknown_protocol)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	unsigned char packet[8];

	/*
	 * Garbage where the version goes: 0x1234.0x5678, no special request
	 * code.  Postgres answers an unsupported major version with 0A000, so
	 * that is accepted too.
	 */
	harness_put_u32(packet, 8);
	harness_put_u32(packet + 4, 0x12345678u);
	expect_rejected(h, packet, sizeof(packet), "0A000");
	expect_still_serving(h, NULL);
}

Test(startup, short_cancel_request)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	unsigned char packet[8], buf[8192];
	size_t len;
	int fd = raw_connect(h);

	/*
	 * 1234.5678 is the CancelRequest code, which needs 16 bytes.  Postgres
	 * never answers a cancel request, not even a malformed one: it closes
	 * the connection.  An 08P01 ErrorResponse first is fine too.
	 */
	harness_put_u32(packet, 8);
	harness_put_u32(packet + 4, CANCEL_REQUEST);
	harness_send_all(fd, packet, sizeof(packet));
	len = harness_read_to_close(fd, buf, sizeof(buf));
	close(fd);
	if (len > 0) {
		cr_assert_eq(buf[0], 'E', "a malformed cancel request got '%c'", buf[0]);
		cr_assert(memmem(buf, len, "C08P01", 7) != NULL,
		          "a malformed cancel request got an error other than 08P01");
	}
	expect_still_serving(h, NULL);
}

Test(startup, missing_terminators)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	/* "user\0app\0" without the final NUL that ends the list. */
	static const char no_list_end[] = "user\0app";
	/* A value running to the end of the packet without its NUL. */
	static const char no_value_end[] = "user\0app\0database\0app";
	const struct {
		const char *body;
		size_t len;
	} cases[] = {
	    {no_list_end, sizeof(no_list_end)},
	    {no_value_end, sizeof(no_value_end) - 1},
	};

	for (size_t i = 0; i < 2; i++) {
		unsigned char packet[64];
		size_t len = 8 + cases[i].len;

		harness_put_u32(packet, (uint32_t)len);
		harness_put_u32(packet + 4, PROTOCOL_3_0);
		memcpy(packet + 8, cases[i].body, cases[i].len);
		expect_rejected(h, packet, len, NULL);
	}
	expect_still_serving(h, NULL);
}

Test(startup, ssl_and_gssenc_requests_answered_n)
{
	/* Explicit: SLUICE_TEST_CLIENT_TLS would otherwise turn TLS on. */
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n");
	const uint32_t codes[] = {SSL_REQUEST, GSSENC_REQUEST};

	for (size_t i = 0; i < 2; i++) {
		unsigned char packet[8], reply;
		struct pollfd pfd;
		int fd = raw_connect(h);

		harness_put_u32(packet, 8);
		harness_put_u32(packet + 4, codes[i]);
		harness_send_all(fd, packet, sizeof(packet));
		pfd = (struct pollfd){.fd = fd, .events = POLLIN};
		cr_assert_eq(poll(&pfd, 1, (int)(REPLY_TIMEOUT_S * 1000)), 1, "no answer");
		cr_assert_eq(recv(fd, &reply, 1, 0), 1);
		cr_assert_eq(reply, 'N', "answer '%c' to request %u", reply, codes[i]);
		close(fd);
	}
	expect_still_serving(h, NULL);
}

Test(startup, many_bad_clients_then_good_ones)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *before = harness_connect_ok(h, "app", "app-secret", "app");
	unsigned char packet[8];

	harness_put_u32(packet, 100000);
	harness_put_u32(packet + 4, PROTOCOL_3_0);
	for (int i = 0; i < 50; i++)
		expect_rejected(h, packet, sizeof(packet), NULL);
	expect_still_serving(h, before);
	PQfinish(before);
}

/*
 * A startup packet of thousands of settings (two-byte names, empty values)
 * cost the worker millions of name compares before any password; more than
 * 100 settings, in the packet and its options together, are refused with
 * 54000.  A packet at the limit goes on to authentication.
 */
Test(startup, too_many_settings_are_refused)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	unsigned char packet[10000];

	for (int count = 100; count <= 101; count++) {
		size_t len = 8;
		int fd;

		len += (size_t)snprintf((char *)packet + len, sizeof(packet) - len, "user") + 1;
		len += (size_t)snprintf((char *)packet + len, sizeof(packet) - len, "app") + 1;
		for (int i = 0; i < count; i++) {
			len +=
			    (size_t)snprintf((char *)packet + len, sizeof(packet) - len, "s%d", i) +
			    1;
			packet[len++] = '\0';
		}
		packet[len++] = '\0';
		harness_put_u32(packet, (uint32_t)len);
		harness_put_u32(packet + 4, PROTOCOL_3_0);
		fd = raw_connect(h);
		harness_send_all(fd, packet, len);
		if (count == 101) {
			char state[6];

			harness_expect_error_and_close(fd, state);
			cr_assert_str_eq(state, "54000");
		} else {
			struct pollfd pfd = {.fd = fd, .events = POLLIN};
			unsigned char reply[64];

			cr_assert_eq(poll(&pfd, 1, (int)(REPLY_TIMEOUT_S * 1000)), 1);
			cr_assert_gt(recv(fd, reply, sizeof(reply), 0), 0);
			cr_assert_eq(reply[0], 'R',
			             "100 settings: '%c', not an authentication request", reply[0]);
			close(fd);
		}
	}
	expect_still_serving(h, NULL);
}
