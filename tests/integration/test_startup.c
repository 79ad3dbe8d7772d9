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

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		cr_assert(n > 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

static void put_u32(unsigned char *p, uint32_t v)
{
	uint32_t be = htonl(v);

	memcpy(p, &be, 4);
}

/*
 * Reads until the peer closes (a reset counts as closed) and returns how many
 * bytes came; fails the test if the connection is still open at the deadline.
 */
static size_t read_to_close(int fd, unsigned char *buf, size_t cap)
{
	double deadline = harness_now() + REPLY_TIMEOUT_S;
	size_t len = 0;

	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int left_ms = (int)((deadline - harness_now()) * 1000);
		ssize_t n;

		cr_assert(left_ms > 0, "sluice neither answered nor closed the connection");
		if (poll(&pfd, 1, left_ms) <= 0)
			continue;
		n = recv(fd, buf + len, cap - len, 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return len;
		cr_assert(n > 0, "recv: %s", strerror(errno));
		len += (size_t)n;
		cr_assert(len < cap, "endless reply");
	}
}

/* The reply must be one ErrorResponse, then the close; returns its SQLSTATE. */
static void expect_error_and_close(int fd, char sqlstate[6])
{
	unsigned char buf[8192];
	size_t len = read_to_close(fd, buf, sizeof(buf)), pos = 5;
	uint32_t msglen;

	close(fd);
	sqlstate[0] = '\0';
	cr_assert_geq(len, 5, "connection closed without an ErrorResponse");
	cr_assert_eq(buf[0], 'E', "first reply byte is '%c', not 'E'", buf[0]);
	memcpy(&msglen, buf + 1, 4);
	msglen = ntohl(msglen);
	cr_assert(msglen >= 4 && 1 + msglen <= len, "truncated ErrorResponse");
	while (pos < 1 + msglen && buf[pos] != '\0') {
		unsigned char field = buf[pos++];
		const char *value = (const char *)buf + pos;
		size_t vlen = strnlen(value, 1 + msglen - pos);

		if (field == 'C' && vlen == 5)
			memcpy(sqlstate, value, 6);
		pos += vlen + 1;
	}
	cr_assert_neq(sqlstate[0], '\0', "ErrorResponse without a SQLSTATE");
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

	send_all(fd, packet, len);
	expect_error_and_close(fd, state);
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
	put_u32(packet, 100000);
	put_u32(packet + 4, PROTOCOL_3_0);
	expect_rejected(h, packet, sizeof(packet), NULL);
	expect_still_serving(h, before);
	PQfinish(before);
}

Test(startup, length_too_short)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	unsigned char packet[8];

	put_u32(packet, 3);
	put_u32(packet + 4, PROTOCOL_3_0);
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
	put_u32(packet, 8);
	put_u32(packet + 4, 0x12345678u);
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
	put_u32(packet, 8);
	put_u32(packet + 4, CANCEL_REQUEST);
	send_all(fd, packet, sizeof(packet));
	len = read_to_close(fd, buf, sizeof(buf));
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

		put_u32(packet, (uint32_t)len);
		put_u32(packet + 4, PROTOCOL_3_0);
		memcpy(packet + 8, cases[i].body, cases[i].len);
		expect_rejected(h, packet, len, NULL);
	}
	expect_still_serving(h, NULL);
}

Test(startup, ssl_and_gssenc_requests_answered_n)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	const uint32_t codes[] = {SSL_REQUEST, GSSENC_REQUEST};

	for (size_t i = 0; i < 2; i++) {
		unsigned char packet[8], reply;
		struct pollfd pfd;
		int fd = raw_connect(h);

		put_u32(packet, 8);
		put_u32(packet + 4, codes[i]);
		send_all(fd, packet, sizeof(packet));
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

	put_u32(packet, 100000);
	put_u32(packet + 4, PROTOCOL_3_0);
	for (int i = 0; i < 50; i++)
		expect_rejected(h, packet, sizeof(packet), NULL);
	expect_still_serving(h, before);
	PQfinish(before);
}
