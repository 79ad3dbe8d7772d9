/*
 * A client's login as sluice serves it: a real worker (its event loop,
 * config snapshot, auth_file, failed-login table) and a real client made by
 * client_new on one end of a socket pair, with the login handler that every
 * new client gets.  The input is what the client sends on the other end, so
 * startup_input, handle_startup and the authentication that follows in
 * pool/login.c run as they do for a network client:
 *
 * - the input is written one message at a time, as its own length fields cut
 *   it (untyped startup-phase packets until a StartupMessage, typed messages
 *   after), and the loop runs until it has nothing left to do before the next
 *   is written, so the client waits for each answer as libpq would (bytes
 *   sent before the answer to an SSLRequest are refused, as they should be);
 * - then the client's side is shut and the loop runs until the worker has
 *   freed the client: a login that never ends after EOF is a finding.
 *
 * What sluice wrote back must be well formed: one 'N' per SSLRequest or
 * GSSENCRequest, then typed messages; an ErrorResponse carries a severity, a
 * five-character SQLSTATE and a message, and nothing follows it (every error
 * during login closes the connection).
 *
 * The auth_file has the RFC 7677 user ("user", SCRAM verifier) and a plain
 * one ("app"); auth_failure_delay is 0 so a failed login is answered in the
 * same turn instead of on a timer.  The server nonce is random, as it is in
 * sluice, so no input logs in: the pool side is out of reach here, and the
 * integration tests cover it.
 */
#define _GNU_SOURCE /* mkstemp, SOCK_NONBLOCK */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/list.h"
#include "base/log.h"
#include "config/config.h"
#include "fuzz.h"
#include "limit/limiter.h"
#include "limit/login_delay.h"
#include "limit/quota.h"
#include "net/snapshot.h"
#include "pool/client.h"
#include "pool/login.h"
#include "pool/prepared.h"
#include "pool/worker.h"

#define SSL_CODE    80877103u
#define GSSENC_CODE 80877104u
#define MAX_TURNS   10000 /* loop turns one input may take: far more than any login needs */
#define OUT_MAX     (1u << 20)

#define RFC_VERIFIER                                                                               \
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"                                             \
	"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"                                            \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

/* The worker every input's client lives on, made once per process. */
struct fuzz_env {
	struct logger log;
	struct worker_hooks hooks; /* no console: its login answers 3D000 */
	struct worker_shared shared;
	struct worker *w;
	struct worker *workers[1];
};

static struct fuzz_env env;

/* libFuzzer calls it once before the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/sluice-fuzz-startup-XXXXXX");
	int fd = path != NULL ? mkstemp(path) : -1;

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
	return path;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char ini[1024], err[256];
	char *users = write_temp("\"user\" \"" RFC_VERIFIER "\"\n\"app\" \"app-secret\"\n"), *path;
	struct config_error cerr;
	struct config *cfg;
	struct snapshot *snap;
	struct tls_ca_cache cas = {0};

	(void)argc, (void)argv;
	snprintf(ini, sizeof(ini),
	         "[sluice]\nauth_file = %s\nauth_failure_delay = 0\nlog_level = error\n"
	         "[databases]\napp = host=127.0.0.1 port=1\n",
	         users);
	path = write_temp(ini);
	cfg = config_load(path, NULL, NULL, &cerr);
	unlink(path);
	free(path);
	if (cfg == NULL) {
		fprintf(stderr, "fuzz_startup: %s\n", cerr.message);
		abort();
	}
	/* The auth_file is read at load; it need not outlive it. */
	unlink(users);
	free(users);
	if ((snap = snapshot_new(cfg, &cas, err, sizeof(err))) == NULL)
		abort();
	tls_ca_cache_fini(&cas); /* the snapshot's contexts hold their stores */
	log_init(&env.log, LOG_ERROR, LOG_FORMAT_TEXT, STDERR_FILENO);
	env.shared.log = &env.log;
	env.shared.hooks = &env.hooks;
	atomic_init(&env.shared.next_conn_id, 1);
	atomic_init(&env.shared.nclients, 0);
	quota_registry_init(&env.shared.quotas);
	if (prepared_shared_init(&env.shared.prepared) < 0)
		abort();
	env.shared.limiter.ops = &limiter_local_ops;
	if (login_delay_init(&env.shared.failures) < 0)
		abort();
	if ((env.w = worker_new(&env.shared, 0, snap)) == NULL)
		abort();
	snapshot_unref(snap);
	env.workers[0] = env.w;
	env.shared.workers = env.workers;
	env.shared.nworkers = 1;
	return 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Bytes of the next message as the input's own length fields cut it (the rest if they do not). */
static size_t next_message(const uint8_t *p, size_t left, bool *typed,
                           unsigned *encryption_requests)
{
	uint32_t len;

	if (!*typed) {
		if (left < 8 || (len = be32(p)) < 8 || len > left)
			return left;
		if (be32(p + 4) == SSL_CODE || be32(p + 4) == GSSENC_CODE)
			(*encryption_requests)++;
		else if (be32(p + 4) >> 16 == 3)
			*typed = true;
		return len;
	}
	if (left < 5 || (len = be32(p + 1)) < 4 || len > left - 1)
		return left;
	return len + 1;
}

static bool client_gone(const struct worker *w)
{
	return list_empty(&w->clients) && list_empty(&w->closing_clients) &&
	       list_empty(&w->dead_clients);
}

/*
 * Turns of the loop until a few in a row bring nothing to read (flushes and
 * the reaper run in the turn after the one that queued them); collects what
 * sluice sent.
 */
static void run_loop(int peer, uint8_t *out, size_t *out_len)
{
	for (int turn = 0, quiet = 0; turn < MAX_TURNS && quiet < 4; turn++) {
		ssize_t n;

		event_base_loop(env.w->loop.base, EVLOOP_NONBLOCK);
		n = recv(peer, out + *out_len, OUT_MAX - *out_len, MSG_DONTWAIT);
		if (n > 0) {
			*out_len += (size_t)n;
			FUZZ_CHECK(*out_len < OUT_MAX);
			quiet = 0;
		} else {
			quiet++;
		}
	}
}

/* An ErrorResponse body: severity, a five-character SQLSTATE and a message. */
static void check_error(const uint8_t *body, size_t len)
{
	bool severity = false, message = false, code = false;
	size_t i = 0;

	FUZZ_CHECK(len > 0 && body[len - 1] == '\0');
	while (i < len && body[i] != '\0') {
		const uint8_t *value = body + i + 1;
		size_t n = strnlen((const char *)value, len - i - 1);

		FUZZ_CHECK(i + 1 + n < len);
		if (body[i] == 'S')
			severity = n > 0;
		else if (body[i] == 'M')
			message = n > 0;
		else if (body[i] == 'C')
			code = n == 5;
		i += n + 2;
	}
	FUZZ_CHECK(severity && message && code);
}

static void check_output(const uint8_t *out, size_t len, unsigned encryption_requests)
{
	size_t i = 0;

	while (i < len) {
		uint32_t n;

		if (out[i] == 'N' && encryption_requests > 0) {
			encryption_requests--;
			i++;
			continue;
		}
		FUZZ_CHECK(len - i >= 5);
		n = be32(out + i + 1);
		FUZZ_CHECK(n >= 4 && n <= len - i - 1);
		if (out[i] == 'E') {
			check_error(out + i + 5, n - 4);
			FUZZ_CHECK(i + 1 + n == len); /* the login ends at its error */
		}
		i += 1 + (size_t)n;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(40000)};
	static uint8_t out[OUT_MAX];
	size_t out_len = 0, off = 0;
	unsigned encryption_requests = 0;
	bool typed = false;
	int fds[2];

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) < 0)
		abort();
	if (client_new(env.w, fds[0], (struct sockaddr *)&addr, sizeof(addr), false,
	               &login_client_handler) == NULL)
		abort();
	while (off < size && !client_gone(env.w)) {
		size_t n = next_message(data + off, size - off, &typed, &encryption_requests);

		for (size_t sent = 0; sent < n;) {
			ssize_t k = send(fds[1], data + off + sent, n - sent, MSG_NOSIGNAL);

			if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
				break; /* sluice closed its end */
			if (k > 0)
				sent += (size_t)k;
			run_loop(fds[1], out, &out_len);
		}
		off += n;
	}
	shutdown(fds[1], SHUT_WR);
	for (int i = 0; i < 100 && !client_gone(env.w); i++)
		run_loop(fds[1], out, &out_len);
	FUZZ_CHECK(client_gone(env.w));
	close(fds[1]);
	check_output(out, out_len, encryption_requests);
	return 0;
}
