/*
 * SCRAM-SHA-256 messages in both roles (auth_scram.h).  The first byte picks
 * a mode and the output capacity; the rest is up to three pieces separated
 * by NUL bytes (a SCRAM message never holds a NUL, which the parsers refuse
 * anyway; the last piece may contain them):
 *
 * 0  server: client-first, then client-final, against the RFC 7677 verifier
 *    and server nonce, so the RFC's own messages log in;
 * 1  client: server-first, then server-final, with the RFC's ClientKey and
 *    ServerKey (pass-through mode, as server.c logs in with a client's key)
 *    and the RFC's client nonce;
 * 2  a stored verifier (scram_secret_parse), then client-first and
 *    client-final against it;
 * 3  a client nonce (as init validates it), then server-first and
 *    server-final.
 *
 * The client runs with keys, not a password: a password would make every
 * input with a large i= spend seconds in PBKDF2, which is the point of
 * SCRAM_MAX_ITERATIONS and not a finding.  Output buffers are exactly as
 * large as the capacity passed, so ASan sees any write past it.
 */
#include <stdlib.h>
#include <string.h>

#include "auth/scram.h"
#include "fuzz.h"

#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_VERIFIER                                                                               \
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"                                             \
	"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"                                            \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
#define B64_KEY_LEN 44 /* base64 of 32 bytes */

/* ClientKey and ServerKey for "pencil" with the RFC's salt and 4096 iterations. */
static const uint8_t rfc_client_key[SCRAM_KEY_LEN] = {
    0xa6, 0x0f, 0xc9, 0x23, 0xd6, 0x7e, 0x86, 0x44, 0xa9, 0x2d, 0x16, 0xb9, 0x6e, 0xda, 0x5e, 0xf4,
    0x65, 0x6b, 0x0c, 0x72, 0x5c, 0x48, 0x43, 0x74, 0xbe, 0x25, 0x53, 0x55, 0x76, 0x99, 0x6e, 0x8b};
static const uint8_t rfc_server_key[SCRAM_KEY_LEN] = {
    0xc1, 0xf3, 0xcb, 0xc1, 0xc1, 0x3a, 0x9d, 0x35, 0xa1, 0x4c, 0x09, 0x90, 0xee, 0xd9, 0x76, 0x29,
    0xea, 0x22, 0x58, 0x63, 0xe5, 0x66, 0xa4, 0x31, 0x4a, 0xb9, 0x9f, 0x3f, 0x00, 0xe5, 0xd9, 0xd5};

/* One NUL-separated piece: text for the string APIs, exactly len bytes for the others. */
struct piece {
	char *text; /* NUL-terminated copy (for scram_secret_parse and nonces) */
	char *msg;  /* the same bytes in a block of exactly len bytes */
	size_t len;
};

static void piece_next(struct fuzz_input *in, struct piece *pc)
{
	pc->text = fuzz_next_cstr(in, &pc->len);
	pc->msg = (char *)fuzz_copy(pc->text, pc->len);
}

static void piece_free(struct piece *pc)
{
	free(pc->text);
	free(pc->msg);
}

/* Server role: first, then final; a verified proof yields a signature of fixed shape. */
static void run_server(const struct scram_secret *secret, const struct piece *first,
                       const struct piece *final, size_t outcap)
{
	char *out = malloc(outcap);
	struct scram_server s;
	const char *err = NULL;
	int rc;

	if (out == NULL)
		abort();
	scram_server_init(&s, secret, RFC_SERVER_NONCE);
	rc = scram_server_handle_first(&s, first->msg, first->len, out, outcap, &err);
	FUZZ_CHECK(rc == 0 || err != NULL);
	if (rc == 0) {
		/* server-first starts with the client's nonce, which it extends. */
		FUZZ_CHECK(strlen(out) < outcap && strncmp(out, "r=", 2) == 0);
		FUZZ_CHECK(strlen(s.nonce) > strlen(RFC_SERVER_NONCE));
		err = NULL;
		rc = scram_server_handle_final(&s, final->msg, final->len, out, outcap, &err);
		FUZZ_CHECK(rc == 0 ? strlen(out) == 2 + B64_KEY_LEN : err != NULL);
	}
	/* One exchange per handshake: whatever happened, a second message is refused. */
	FUZZ_CHECK(scram_server_handle_final(&s, final->msg, final->len, out, outcap, &err) < 0);
	free(out);
}

/* Client role: first, final from server-first, then the server's signature. */
static void run_client(const char *nonce, const struct piece *server_first,
                       const struct piece *server_final, size_t outcap)
{
	char *out = malloc(outcap);
	struct scram_client c;
	const char *err = NULL;
	int n;

	if (out == NULL)
		abort();
	scram_client_init_keys(&c, rfc_client_key, rfc_server_key, nonce);
	n = scram_client_first(&c, out, outcap);
	FUZZ_CHECK(n < 0 || ((size_t)n == strlen(out) && strncmp(out, "n,,n=,r=", 8) == 0));
	if (n >= 0) {
		n = scram_client_final(&c, server_first->msg, server_first->len, out, outcap, &err);
		FUZZ_CHECK(n < 0 ? err != NULL : (size_t)n == strlen(out) && (size_t)n < outcap);
	}
	if (n >= 0) {
		FUZZ_CHECK(strncmp(out, "c=biws,r=", 9) == 0);
		err = NULL;
		if (scram_client_verify_server(&c, server_final->msg, server_final->len, &err) < 0)
			FUZZ_CHECK(err != NULL);
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in;
	struct scram_secret secret;
	struct piece pc[3];
	size_t outcap = SCRAM_MSG_MAX + 1;

	if (size < 1)
		return 0;
	in.p = data + 1;
	in.left = size - 1;
	/* Sometimes a short output buffer, to try the capacity checks. */
	if (data[0] & 0x80)
		outcap = 1 + (size_t)((data[0] >> 2) & 0x1f) * 4;
	for (int i = 0; i < 3; i++)
		piece_next(&in, &pc[i]);
	switch (data[0] & 3) {
	case 0:
		FUZZ_CHECK(scram_secret_parse(RFC_VERIFIER, &secret) == 0);
		run_server(&secret, &pc[0], &pc[1], outcap);
		break;
	case 1:
		run_client(RFC_CLIENT_NONCE, &pc[0], &pc[1], outcap);
		break;
	case 2:
		if (scram_secret_parse(pc[0].text, &secret) == 0) {
			FUZZ_CHECK(secret.iterations >= 1 && secret.salt_len >= 1 &&
			           secret.salt_len <= SCRAM_MAX_SALT_LEN);
			run_server(&secret, &pc[1], &pc[2], outcap);
		}
		break;
	case 3:
		run_client(pc[0].text, &pc[1], &pc[2], outcap);
		break;
	}
	for (int i = 0; i < 3; i++)
		piece_free(&pc[i]);
	return 0;
}
