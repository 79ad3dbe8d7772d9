/*
 * A client's login as client_login.c reads it, fed from one byte stream:
 *
 * 1. untyped startup-phase packets framed by frame_peek_startup: SSLRequest
 *    and GSSENCRequest (answered, then more packets), CancelRequest (pid and
 *    key), and the StartupMessage, whose key/value list is read with
 *    msg_reader, its `options` with param_parse_options and the rest with
 *    param_set; a newer minor version or _pq_ options get a
 *    NegotiateProtocolVersion from build_negotiate_protocol, which is read
 *    back and compared;
 * 2. then typed 'p' messages framed by frame_peek with the login bound: a
 *    SASLInitialResponse whose data goes to scram_server_handle_first (with
 *    the RFC 7677 verifier and server nonce, so the RFC's messages log in), or
 *    a PasswordMessage checked as md5 and cleartext are; then a SASLResponse
 *    for scram_server_handle_final.
 *
 * handle_startup and its helpers are static in client_login.c, so this walks
 * the same public pieces in the same order instead of calling it.
 */
#include <event2/buffer.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_file.h"
#include "auth/scram.h"
#include "fuzz.h"
#include "proto/params.h"
#include "proto/build.h"
#include "proto/frame.h"

#define MAX_UNRECOGNIZED 16 /* as client_login.c lists at most */

/* RFC 7677 section 3: the verifier for "pencil" and the server's nonce. */
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_VERIFIER                                                                               \
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"                                             \
	"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"                                            \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

/* What a StartupMessage told us; owns its strings. */
struct startup {
	struct param_list params;                   /* settings to sync, options included */
	char *user;                                 /* "user", NULL until given */
	char *database;                             /* "database", NULL until given */
	const char *unrecognized[MAX_UNRECOGNIZED]; /* _pq_.* keys, pointing into the body */
	size_t nunrecognized;
	bool bad_options; /* options other than -c/--, or a replication request */
};

static void replace(char **dst, const char *value)
{
	free(*dst);
	*dst = strdup(value);
	if (*dst == NULL)
		abort();
}

static void add_option(void *arg, const char *name, const char *value)
{
	struct param_list *params = arg;
	const struct param *p;

	/* param_parse_options promises a non-empty name with '-' already turned into '_'. */
	FUZZ_CHECK(name[0] != '\0' && strchr(name, '-') == NULL && strchr(name, '=') == NULL);
	param_set(params, name, value);
	p = param_find(params, name);
	FUZZ_CHECK(p != NULL && strcmp(p->value, value) == 0);
}

static void startup_param(struct startup *st, const char *key, const char *value)
{
	if (strcmp(key, "user") == 0) {
		replace(&st->user, value);
	} else if (strcmp(key, "database") == 0) {
		replace(&st->database, value);
	} else if (strcmp(key, "options") == 0) {
		if (param_parse_options(value, add_option, &st->params) < 0)
			st->bad_options = true;
	} else if (strncmp(key, "_pq_.", 5) == 0) {
		FUZZ_CHECK(param_is_startup_only(key));
		if (st->nunrecognized < MAX_UNRECOGNIZED)
			st->unrecognized[st->nunrecognized++] = key;
	} else if (!param_is_startup_only(key)) {
		param_set(&st->params, key, value);
	} else if (strcmp(key, "replication") == 0 && strcmp(value, "false") != 0 &&
	           strcmp(value, "0") != 0 && strcmp(value, "off") != 0 &&
	           strcmp(value, "no") != 0) {
		st->bad_options = true;
	}
}

/* The NegotiateProtocolVersion we would send, parsed back: it must say what we put in. */
static void check_negotiate(const struct startup *st)
{
	struct evbuffer *out = evbuffer_new();
	struct msg_reader r;
	struct frame f;
	uint8_t *body;

	if (out == NULL)
		abort();
	if (build_negotiate_protocol(out, 0, st->unrecognized, st->nunrecognized) < 0) {
		/* Too long for the builder: nothing may have been appended. */
		FUZZ_CHECK(evbuffer_get_length(out) == 0);
		evbuffer_free(out);
		return;
	}
	FUZZ_CHECK(frame_peek(out, &f, UINT32_MAX) == FRAME_READY && f.type == 'v');
	FUZZ_CHECK(frame_total(&f) == evbuffer_get_length(out));
	body = fuzz_copy(evbuffer_pullup(out, -1) + FRAME_HEADER_LEN, f.len - 4);
	msg_reader_init(&r, body, f.len - 4);
	FUZZ_CHECK(msg_read_u32(&r) == 0 && msg_read_u32(&r) == st->nunrecognized);
	for (size_t i = 0; i < st->nunrecognized; i++) {
		const char *key = fuzz_read_cstr(&r);

		FUZZ_CHECK(key != NULL && strcmp(key, st->unrecognized[i]) == 0);
	}
	FUZZ_CHECK(msg_remaining(&r) == 0);
	free(body);
	evbuffer_free(out);
}

/* A StartupMessage body; returns true when the login goes on to authentication. */
static bool startup_message(struct startup *st, const uint8_t *body, size_t len, uint32_t version)
{
	struct msg_reader r;

	msg_reader_init(&r, body, len);
	for (;;) {
		const char *key = fuzz_read_cstr(&r), *value;

		if (key == NULL)
			return false; /* no terminator */
		if (key[0] == '\0')
			break;
		if ((value = fuzz_read_cstr(&r)) == NULL)
			return false;
		startup_param(st, key, value);
	}
	if (st->bad_options || st->user == NULL || st->user[0] == '\0')
		return false;
	if (st->database == NULL || st->database[0] == '\0')
		replace(&st->database, st->user);
	if (FRAME_PROTO_MINOR(version) > 0 || st->nunrecognized > 0)
		check_negotiate(st);
	return true;
}

/* PasswordMessage: what check_cleartext and the md5 check compute from it. */
static void password_message(const struct startup *st, struct msg_reader *r)
{
	static const uint8_t salt[4] = {1, 2, 3, 4};
	const char *password = fuzz_read_cstr(r);
	char hash[MD5_PASSWD_LEN + 1], response[MD5_PASSWD_LEN + 1];

	if (password == NULL)
		return;
	md5_password_hash(password, st->user, hash);
	FUZZ_CHECK(hash[0] == '\0' || strlen(hash) == MD5_PASSWD_LEN);
	/* The client's answer is compared with a stored hash, which may be anything. */
	md5_salted_response(password, salt, response);
	FUZZ_CHECK(response[0] == '\0' || strlen(response) == MD5_PASSWD_LEN);
}

/* SASLInitialResponse; returns true when the server-first-message went out. */
static bool sasl_initial(struct scram_server *scram, struct msg_reader *r)
{
	const char *mech = fuzz_read_cstr(r), *err = NULL;
	uint32_t n = msg_read_u32(r);
	const uint8_t *data = fuzz_read_bytes(r, n);
	char reply[SCRAM_MSG_MAX + 1];
	uint8_t *copy;
	int rc;

	if (mech == NULL || strcmp(mech, SCRAM_MECHANISM) != 0 || data == NULL || n > SCRAM_MSG_MAX)
		return false;
	copy = fuzz_copy(data, n);
	rc = scram_server_handle_first(scram, (const char *)copy, n, reply, sizeof(reply), &err);
	FUZZ_CHECK(rc == 0 ? strlen(reply) < sizeof(reply) && strncmp(reply, "r=", 2) == 0
	                   : err != NULL);
	free(copy);
	return rc == 0;
}

static void sasl_final(struct scram_server *scram, const uint8_t *body, size_t len)
{
	char reply[SCRAM_MSG_MAX + 1];
	const char *err = NULL;

	if (len > SCRAM_MSG_MAX)
		return;
	if (scram_server_handle_final(scram, (const char *)body, len, reply, sizeof(reply), &err) ==
	    0)
		FUZZ_CHECK(strncmp(reply, "v=", 2) == 0 && strlen(reply) == 2 + 44);
	else
		FUZZ_CHECK(err != NULL);
}

/* One typed login message; returns false when the login would end here. */
static bool login_message(const struct startup *st, struct scram_server *scram, int *step,
                          struct evbuffer *in)
{
	struct frame f;
	enum frame_status fs = frame_peek(in, &f, FRAME_STARTUP_MAX);
	struct msg_reader r;
	uint8_t *body;
	bool more = true;

	if (fs != FRAME_READY || f.type != 'p' || evbuffer_get_length(in) < frame_total(&f))
		return false;
	FUZZ_CHECK(f.len >= 4 && f.len <= FRAME_STARTUP_MAX);
	body = fuzz_copy(evbuffer_pullup(in, (ev_ssize_t)frame_total(&f)) + FRAME_HEADER_LEN,
	                 f.len - 4);
	msg_reader_init(&r, body, f.len - 4);
	if (*step == 0 && sasl_initial(scram, &r)) {
		*step = 1;
	} else if (*step == 0) {
		msg_reader_init(&r, body, f.len - 4);
		password_message(st, &r);
		more = false;
	} else {
		sasl_final(scram, body, f.len - 4);
		more = false;
	}
	free(body);
	evbuffer_drain(in, frame_total(&f));
	return more;
}

static void authenticate(const struct startup *st, struct evbuffer *in)
{
	struct scram_secret secret;
	struct scram_server scram;
	int step = 0;

	FUZZ_CHECK(scram_secret_parse(RFC_VERIFIER, &secret) == 0);
	scram_server_init(&scram, &secret, RFC_SERVER_NONCE);
	while (login_message(st, &scram, &step, in))
		;
}

/* One untyped packet; returns 1 to read another, 0 when the login goes on, -1 when it ends. */
static int startup_packet(struct startup *st, struct evbuffer *in)
{
	uint32_t len, code;
	enum frame_status fs = frame_peek_startup(in, &len, &code);
	struct msg_reader r;
	uint8_t *packet;
	bool go_on;

	if (fs == FRAME_INCOMPLETE) {
		FUZZ_CHECK(evbuffer_get_length(in) < 8);
		return -1;
	}
	if (fs == FRAME_INVALID) {
		FUZZ_CHECK(len < 8 || len > FRAME_STARTUP_MAX);
		return -1;
	}
	FUZZ_CHECK(len >= 8 && len <= FRAME_STARTUP_MAX);
	if (evbuffer_get_length(in) < len)
		return -1;
	if (code == FRAME_CODE_SSL || code == FRAME_CODE_GSSENC) {
		evbuffer_drain(in, len);
		return len == 8 ? 1 : -1;
	}
	packet = fuzz_copy(evbuffer_pullup(in, len), len);
	evbuffer_drain(in, len);
	msg_reader_init(&r, packet + 8, len - 8);
	if (code == FRAME_CODE_CANCEL) {
		msg_read_u32(&r);
		msg_read_u32(&r);
		/* Only an exact 16-byte request is routed; its pid and key must then be there. */
		FUZZ_CHECK(len != 16 || (!r.failed && msg_remaining(&r) == 0));
		go_on = false;
	} else {
		go_on =
		    FRAME_PROTO_MAJOR(code) == 3 && startup_message(st, packet + 8, len - 8, code);
	}
	free(packet);
	return go_on ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evbuffer *in = evbuffer_new();
	struct startup st = {0};
	int rc;

	if (in == NULL || evbuffer_add(in, data, size) < 0)
		abort();
	param_list_init(&st.params);
	while ((rc = startup_packet(&st, in)) == 1)
		;
	if (rc == 0)
		authenticate(&st, in);
	param_list_fini(&st.params);
	free(st.user);
	free(st.database);
	evbuffer_free(in);
	return 0;
}
