/*
 * A randomized, bounded fuzz of the protocol after login.  Several clients
 * log in with libpq and then write random sequences of frontend messages on
 * the raw socket: Queries that touch everything sluice tracks for pooling
 * (transactions, savepoints, SET, PREPARE, LISTEN, cursors WITH HOLD, temp
 * tables, advisory locks, COPY both ways), extended-protocol messages whose
 * statement and portal names come from a tiny set, COPY pipelined behind the
 * COPY, COPY messages out of place, FunctionCalls, malformed frames, and
 * Terminates, half-closes and resets in the middle of it all.  One thread
 * drives them all with poll, and every client reads and checks each reply as
 * it comes.  It runs in transaction mode (with and without prepared
 * statement tracking), session mode and statement mode, two workers, a small
 * pool so that servers pass between clients and between workers.
 *
 * Every client's sequence comes from a PRNG seeded by (seed, client, session)
 * and never from what it is sent back, so a failure names what reproduces
 * it: SLUICE_PROTOFUZZ_SEED=<seed> reruns the same sequences,
 * SLUICE_PROTOFUZZ_CLIENT=<n> runs that client alone (its sessions are the
 * same, only the interleaving with the others is gone), and
 * SLUICE_PROTOFUZZ_ROUNDS=<k> gives each client k times as many sessions.
 * For a closer look: SLUICE_PROTOFUZZ_VERBOSE=1 prints every message sent
 * and sluice's log, SLUICE_PROTOFUZZ_DUMP=<dir> writes each session's bytes
 * to <dir>/c<client>s<session>.bin, SLUICE_PROTOFUZZ_DIRECT=1 sends the
 * same sessions to Postgres itself, to tell sluice's doing from Postgres',
 * and SLUICE_PROTOFUZZ_INI adds lines to sluice's configuration (keys the
 * mode does not set, such as "workers = 4").
 * A failure prints the client's last messages and its port in sluice's log.
 *
 * A client's messages go in bursts.  Each burst ends with a probe that
 * brings any session back to a known point, whatever the burst did: a
 * CopyFail (ends a COPY FROM STDIN), a Sync (ends an extended-protocol
 * error), then three Queries: SAVEPOINT, a syntax error that names the probe
 * (it fails at parse time, so even in an aborted transaction its error says
 * which probe it is), and ROLLBACK TO SAVEPOINT (which keeps a transaction
 * the burst left open usable).  The burst is answered when that error and
 * the two ReadyForQuery after it have arrived.
 *
 * The oracles, each of which failed on a bug this test found:
 * - every reply is a well-formed message of a type a backend sends, every
 *   ErrorResponse has a severity, a SQLSTATE and a message, every
 *   ReadyForQuery says I, T or E, and no SQL sent gets a syntax error but the
 *   probe's (a rewrite of sluice's gone wrong);
 * - no hang: each probe is answered, and each connection ended with a
 *   Terminate or a half-close is closed by sluice, within FZ_HANG_S (a bound
 *   that only catches a hang: a passing run never waits for it);
 * - a connection sluice closes got an ErrorResponse first, FATAL only where
 *   the client sent something malformed, a COPY FROM STDIN with other
 *   messages behind it (Postgres closes on it with input unread, and the
 *   reset may cut a reply sluice was passing on: let pass), or (statement
 *   mode) a transaction block with more requests behind it;
 * - no crosstalk: a client only ever sees its own probes' errors, its own
 *   values (`select 'fzv:<client>'`) and its own named statements', in order;
 * - sluice stays alive and Postgres stays up; after the fuzz no server is
 *   busy or in a transaction or holds an advisory lock or a temp table,
 *   every pooled server a fresh client gets looks like a new session
 *   (check_servers), and no reset ran into server_reset_timeout, nor did a
 *   settings read-back fail;
 * - the teardown: sluice exits 0 on SIGINT (under ASan: no leak).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(protofuzz, .fini = harness_teardown, .timeout = 600);

#define FZ_CLIENTS       6
#define FZ_SESSIONS      30 /* per client and round */
#define FZ_BURSTS_MAX    12 /* per session */
#define FZ_MSGS_MAX      9  /* per burst, before the probe */
#define FZ_HANG_S        60.0
#define FZ_LOG           48 /* messages remembered per client for a failure's report */
#define FZ_MAX_PACKET    (256 * 1024)
#define FZ_BIG_TEXT      (80 * 1024) /* past RELAY_WHOLE_MAX: streamed */
#define FZ_MAX_REPLY_LEN (64u * 1024 * 1024)

/* ---- a PRNG of our own: splitmix64, the same sequence everywhere ---- */

struct rng {
	uint64_t s; /* state */
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t rng_below(struct rng *r, uint32_t n)
{
	return (uint32_t)(rng_next(r) % n);
}

static bool rng_chance(struct rng *r, uint32_t percent)
{
	return rng_below(r, 100) < percent;
}

static const char *rng_pick(struct rng *r, const char *const *list, size_t n)
{
	return list[rng_below(r, (uint32_t)n)];
}

#define PICK(r, list) rng_pick((r), (list), sizeof(list) / sizeof((list)[0]))

/* ---- byte buffers and message building ---- */

struct buf {
	unsigned char *p; /* malloc'd */
	size_t len;       /* bytes in use */
	size_t cap;       /* bytes allocated */
};

static void buf_put(struct buf *b, const void *data, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap == 0 ? 4096 : b->cap;

		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		cr_assert(b->p != NULL, "out of memory");
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void buf_u8(struct buf *b, uint8_t v)
{
	buf_put(b, &v, 1);
}

static void buf_u16(struct buf *b, uint16_t v)
{
	uint8_t be[2] = {(uint8_t)(v >> 8), (uint8_t)v};

	buf_put(b, be, 2);
}

static void buf_u32(struct buf *b, uint32_t v)
{
	unsigned char be[4];

	harness_put_u32(be, v);
	buf_put(b, be, 4);
}

static void buf_str(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s) + 1);
}

/* Drops the first n bytes. */
static void buf_consume(struct buf *b, size_t n)
{
	if (n == 0)
		return; /* b->p may be NULL yet */
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

/* Starts a message of `type`; returns where its length goes, for msg_end. */
static size_t msg_begin(struct buf *b, uint8_t type)
{
	size_t at;

	buf_u8(b, type);
	at = b->len;
	buf_u32(b, 0);
	return at;
}

static void msg_end(struct buf *b, size_t at)
{
	harness_put_u32(b->p + at, (uint32_t)(b->len - at));
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get_u16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* ---- what the clients say ---- */

/*
 * SQL for Queries: each line is something sluice tracks or must pass
 * through untouched.  %d is the client's number (its own advisory lock key,
 * its own values); everything else is shared, so clients meet on channels,
 * statement names and try-locks.
 */
static const char *const fz_sql[] = {
    "begin",
    "commit",
    "rollback",
    "begin isolation level serializable",
    "start transaction read only",
    "savepoint a",
    "rollback to savepoint a",
    "release savepoint a",
    "set statement_timeout = 4321",
    "set local work_mem = '3MB'",
    "set search_path = fz, public",
    "set datestyle = 'German'",
    "set timezone = 'Asia/Tokyo'",
    "set application_name = 'fz%d'",
    "set fz.tenant = 'c%d'",
    "reset all",
    "reset statement_timeout",
    "select set_config('fz.tenant', 'x%d', false)",
    "select set_config('work_mem', '5MB', true)",
    "show work_mem",
    "prepare fzq as select 1",
    "prepare fzq(int) as select $1",
    "prepare fzr as select 'fzv:%d'",
    "execute fzq",
    "execute fzq(3)",
    "execute fzr",
    "deallocate fzq",
    "deallocate prepare fzr",
    "deallocate all",
    "discard all",
    "discard temp",
    "listen fzch",
    "listen fz_a_channel_name_that_is_longer_than_sixty_three_bytes_so_it_pins_x",
    "unlisten fzch",
    "unlisten *",
    "notify fzch, 'n%d'",
    "select pg_notify('fzch', 'p%d')",
    "declare fzc cursor with hold for select generate_series(1, 3)",
    "declare fzd cursor for select 1",
    "fetch 1 from fzc",
    "close fzc",
    "close all",
    "create temp table fzt(a int)",
    "create temp table fzt2(a int) on commit drop",
    "insert into fzt values (%d)",
    "drop table if exists fzt",
    "select 1/0",
    "select 1; select 2",
    "select 1; begin; select 'fzv:%d'",
    "begin; select 1/0; commit",
    "begin; set local statement_timeout = 99; commit",
    "prepare fzm as select 1; select 2",
    "",
    ";",
    "copy fz_copy from stdin",
    "copy (select generate_series(1, 20)) to stdout",
    "copy fz_copy to stdout",
    "copy fzt from stdin",
    "select pg_advisory_lock(%d)",
    "select pg_advisory_unlock(%d)",
    "select pg_try_advisory_lock(4242)",
    "select pg_advisory_unlock_all()",
    "select pg_advisory_xact_lock(%d)",
    "select 'fzv:%d'",
    "select 'fzv:%d', generate_series(1, 300)",
    "select repeat('x', 200000)",
    "prepare transaction 'fz'",
    "commit prepared 'fz'",
    "select pg_sleep(0.001)",
};

/*
 * Statement texts for Parse: one parameter at most.  No COPY FROM STDIN (the
 * COPY unit has it): a statement another client's Bind may run (the unnamed
 * one, or any without prepared statement tracking) must not start a COPY
 * that client does not know of.
 */
static const char *const fz_parse_sql[] = {
    "select 1",
    "select $1::int",
    "select 'fzv:%d'",
    "select generate_series(1, 10)",
    "begin",
    "commit",
    "rollback",
    "select 1/0",
    "set work_mem = '2MB'",
    "set fz.tenant = 'e%d'",
    "listen fzch",
    "unlisten fzch",
    "prepare fzq as select 2",
    "execute fzq",
    "deallocate fzq",
    "deallocate all",
    "discard all",
    "declare fze cursor with hold for select 1",
    "create temp table fzt(a int)",
    "copy (select 1) to stdout",
    "select pg_advisory_lock(%d)",
    "select pg_try_advisory_lock(4243)",
    "",
    "select 1; select 2",
};

static const char *const fz_stmt_names[] = {"", "s1", "s2"};
static const char *const fz_portal_names[] = {"", "p1"};

/* Message types no frontend may send after login. */
static const uint8_t fz_bad_types[] = {'z', 'A', 0, 0xff, 'p', 'K', 'V'};

/* Function OIDs for FunctionCall, looked up once. */
struct fz_funcs {
	uint32_t int4pl;        /* harmless */
	uint32_t advisory_lock; /* pg_advisory_lock(bigint): a session lock, no SQL to see */
	uint32_t set_config;    /* set_config(text, text, boolean): a setting, no SQL to see */
};

/* ---- the clients ---- */

enum fz_phase {
	FZ_START,      /* no connection: the next session starts */
	FZ_CONNECTING, /* libpq's login in progress */
	FZ_BURST,      /* a burst and its probe sent (or being sent): waiting for the probe */
	FZ_CLOSING,    /* sent its last bytes: waiting for sluice to close the connection */
	FZ_DONE,       /* all sessions run */
};

/* How a session ends. */
enum fz_end {
	END_NONE,      /* not yet */
	END_TERMINATE, /* Terminate, then wait for the close */
	END_HALFCLOSE, /* shutdown(SHUT_WR), then wait for the close */
	END_RESET,     /* close with SO_LINGER 0: a reset, maybe before all was sent */
	END_FATAL,     /* sent what sluice must refuse with an error and a close */
};

struct fz_test; /* below */

struct fz_client {
	struct fz_test *t;    /* the run it belongs to */
	int id;               /* its number, in markers and lock keys */
	int session;          /* sessions started so far */
	int sessions;         /* sessions it runs */
	struct rng rng;       /* the current session's sequence */
	enum fz_phase phase;  /* what it waits for */
	PGconn *conn;         /* libpq's connection (login, then only its socket) */
	int fd;               /* the socket, -1 while none */
	bool want_write;      /* libpq's login waits to write */
	struct buf out;       /* bytes not sent yet */
	struct buf in;        /* bytes received, not parsed yet */
	int bursts_left;      /* in this session */
	int burst;            /* bursts sent in this session */
	char probe[48];       /* the awaited probe's marker */
	bool probe_seen;      /* its error arrived */
	int ready_after;      /* ReadyForQuery seen since */
	enum fz_end end;      /* how this session ends, once chosen */
	bool malformed;       /* sent something a server may refuse with FATAL */
	bool copy_raw;        /* sent a COPY FROM STDIN with anything behind it (see copy_unit) */
	bool fatal_seen;      /* got a FATAL ErrorResponse */
	bool error_last;      /* the last message received was an ErrorResponse */
	char fatal_state[6];  /* its SQLSTATE */
	char last_error[160]; /* the last ErrorResponse's message, for a failure's report */
	double deadline;      /* the current wait fails past this */
	double sent_at;       /* when the current burst was made, for SLUICE_PROTOFUZZ_VERBOSE */
	uint64_t msgs;        /* messages sent over all sessions */
	char log[FZ_LOG][96]; /* the last messages sent, a ring */
	FILE *dump;           /* SLUICE_PROTOFUZZ_DUMP's file for this session, or NULL */
};

/* One run's setting. */
struct fz_mode {
	const char *name;   /* for reports: "transaction mode", ... */
	const char *mode;   /* pool_mode */
	const char *extra;  /* more ini lines */
	uint64_t seed;      /* its default seed */
	int pool_size;      /* default_pool_size: check_servers sees every server */
	bool from_sql_only; /* protocol-level statements stay on servers (no tracking) */
	bool statement;     /* statement mode: no transaction blocks */
};

struct fz_test {
	struct harness_sluice *h;       /* sluice under test */
	const struct fz_mode *m;        /* its setting */
	uint64_t seed;                  /* base seed */
	struct fz_funcs funcs;          /* FunctionCall targets */
	struct fz_client c[FZ_CLIENTS]; /* the clients */
	int only;                       /* SLUICE_PROTOFUZZ_CLIENT, or -1 */
	bool verbose;                   /* print every message sent */
	bool direct;       /* SLUICE_PROTOFUZZ_DIRECT: to Postgres itself, for comparison */
	const char *dump;  /* SLUICE_PROTOFUZZ_DUMP: a directory for each session's bytes */
	uint64_t bursts;   /* probes answered, for the summary */
	uint64_t fatals;   /* sessions that ended in a FATAL */
	uint64_t sessions; /* sessions run */
};

/* Adds a line to the client's ring of sent messages (and prints it when verbose). */
static void note(struct fz_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct fz_client *c, const char *fmt, ...)
{
	char *line = c->log[c->msgs % FZ_LOG];
	int n = snprintf(line, sizeof(c->log[0]), "#%" PRIu64 " s%d b%d: ", c->msgs, c->session,
	                 c->burst);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(c->log[0]) - (size_t)n, fmt, ap);
	va_end(ap);
	if (c->t->verbose)
		fprintf(stderr, "protofuzz: client %d %s\n", c->id, line);
	c->msgs++;
}

/* Fails the test with everything needed to reproduce it. */
static void fz_fail(struct fz_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)))
__attribute__((noreturn));

static void fz_fail(struct fz_client *c, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	uint64_t first = c->msgs > FZ_LOG ? c->msgs - FZ_LOG : 0;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (c->fd >= 0) {
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);

		/* The client's port, to find it in sluice's log. */
		if (getsockname(c->fd, (struct sockaddr *)&sin, &len) == 0)
			fprintf(stderr, "protofuzz: client %d is 127.0.0.1:%d in sluice's log\n",
			        c->id, ntohs(sin.sin_port));
	}
	fprintf(stderr,
	        "protofuzz: FAILED (%s, SLUICE_PROTOFUZZ_SEED=%" PRIu64
	        ", client %d, session %d, burst %d, message #%" PRIu64 "): %s\n"
	        "protofuzz: the client's last messages:\n",
	        c->t->m->name, c->t->seed, c->id, c->session, c->burst,
	        c->msgs > 0 ? c->msgs - 1 : 0, why);
	for (uint64_t i = first; i < c->msgs; i++)
		fprintf(stderr, "protofuzz:   %s\n", c->log[i % FZ_LOG]);
	cr_assert_fail("%s, SLUICE_PROTOFUZZ_SEED=%" PRIu64
	               " SLUICE_PROTOFUZZ_CLIENT=%d, session %d, burst %d, message #%" PRIu64
	               ": %s",
	               c->t->m->name, c->t->seed, c->id, c->session, c->burst,
	               c->msgs > 0 ? c->msgs - 1 : 0, why);
	abort(); /* not reached */
}

/* `fmt` with %d replaced by the client's number. */
static void client_text(const struct fz_client *c, const char *fmt, char *out, size_t len)
{
	const char *p = strstr(fmt, "%d");

	if (p == NULL)
		snprintf(out, len, "%s", fmt);
	else
		snprintf(out, len, "%.*s%d%s", (int)(p - fmt), fmt, c->id, p + 2);
}

/* ---- frontend messages, one generator each ---- */

static void send_query_text(struct fz_client *c, const char *sql)
{
	size_t at = msg_begin(&c->out, 'Q');

	buf_str(&c->out, sql);
	msg_end(&c->out, at);
}

static void gen_query(struct fz_client *c)
{
	char sql[256];

	client_text(c, PICK(&c->rng, fz_sql), sql, sizeof(sql));
	send_query_text(c, sql);
	c->copy_raw |= strstr(sql, "from stdin") != NULL;
	note(c, "Query \"%s\"", sql);
}

/* A Query past RELAY_WHOLE_MAX, which sluice streams to the server. */
static void gen_big_query(struct fz_client *c)
{
	size_t at = msg_begin(&c->out, 'Q');
	static const char head[] = "select length('";
	char *filler = malloc(FZ_BIG_TEXT);

	memset(filler, 'y', FZ_BIG_TEXT);
	buf_put(&c->out, head, sizeof(head) - 1);
	buf_put(&c->out, filler, FZ_BIG_TEXT);
	buf_str(&c->out, "')");
	msg_end(&c->out, at);
	free(filler);
	note(c, "Query select length('<%d bytes>')", FZ_BIG_TEXT);
}

static void gen_parse(struct fz_client *c)
{
	const char *name = PICK(&c->rng, fz_stmt_names);
	uint16_t ntypes = (uint16_t)rng_below(&c->rng, 2);
	size_t at = msg_begin(&c->out, 'P');
	char sql[256];

	client_text(c, PICK(&c->rng, fz_parse_sql), sql, sizeof(sql));
	/*
	 * A named statement's value says so (fzs:): sluice keeps it the client's
	 * where it tracks names.  The unnamed statement is passed through in
	 * every mode, so a later Bind of it, with no Parse before it in the same
	 * transaction, may find another client's (fzu:, not checked).
	 */
	if (strstr(sql, "fzv:") != NULL)
		memcpy(strstr(sql, "fzv:"), name[0] != '\0' ? "fzs:" : "fzu:", 4);
	buf_str(&c->out, name);
	buf_str(&c->out, sql);
	buf_u16(&c->out, ntypes);
	for (uint16_t i = 0; i < ntypes; i++)
		buf_u32(&c->out, rng_chance(&c->rng, 50) ? 23 : 0); /* int4 or unspecified */
	msg_end(&c->out, at);
	note(c, "Parse \"%s\" \"%s\" types %u", name, sql, ntypes);
}

static void gen_execute(struct fz_client *c, const char *portal);

static void gen_bind(struct fz_client *c)
{
	const char *portal = PICK(&c->rng, fz_portal_names);
	const char *stmt = PICK(&c->rng, fz_stmt_names);
	uint16_t nformats = (uint16_t)rng_below(&c->rng, 2);
	uint16_t nparams = (uint16_t)rng_below(&c->rng, 3);
	size_t at = msg_begin(&c->out, 'B');

	buf_str(&c->out, portal);
	buf_str(&c->out, stmt);
	buf_u16(&c->out, nformats);
	for (uint16_t i = 0; i < nformats; i++)
		buf_u16(&c->out, 0);
	buf_u16(&c->out, nparams);
	for (uint16_t i = 0; i < nparams; i++) {
		if (rng_chance(&c->rng, 20)) {
			buf_u32(&c->out, UINT32_MAX); /* NULL */
		} else {
			buf_u32(&c->out, 1);
			buf_u8(&c->out, (uint8_t)('0' + rng_below(&c->rng, 10)));
		}
	}
	buf_u16(&c->out, 0); /* result formats: all text */
	msg_end(&c->out, at);
	note(c, "Bind portal \"%s\" stmt \"%s\" formats %u params %u", portal, stmt, nformats,
	     nparams);
	if (portal[0] == '\0' && rng_chance(&c->rng, 70))
		gen_execute(c, "");
}

/* Describe or Close of a statement or a portal. */
static void gen_describe_close(struct fz_client *c, uint8_t type)
{
	bool portal = rng_chance(&c->rng, 50);
	const char *name = portal ? PICK(&c->rng, fz_portal_names) : PICK(&c->rng, fz_stmt_names);
	size_t at = msg_begin(&c->out, type);

	buf_u8(&c->out, portal ? 'P' : 'S');
	buf_str(&c->out, name);
	msg_end(&c->out, at);
	note(c, "%s %c \"%s\"", type == 'D' ? "Describe" : "Close", portal ? 'P' : 'S', name);
}

/*
 * Execute of `portal`.  A failed simple Query inside a transaction block
 * leaves its unnamed portal failed, with pointers into freed memory, and an
 * Execute of that portal crashes the backend (Postgres 15.18, segfault:
 * "begin; execute nope; select pg_notify('c', 'p')" then Execute "").
 * Sluice guards against it (hostile::execute_of_the_portal_a_failed_query_
 * left_is_refused); Postgres alone does not, so SLUICE_PROTOFUZZ_DIRECT
 * executes the unnamed portal only right behind a Bind of it (gen_bind).
 */
static void gen_execute(struct fz_client *c, const char *portal)
{
	uint32_t rows = rng_chance(&c->rng, 60) ? 0 : 1 + rng_below(&c->rng, 3);
	size_t at = msg_begin(&c->out, 'E');

	buf_str(&c->out, portal);
	buf_u32(&c->out, rows);
	msg_end(&c->out, at);
	note(c, "Execute \"%s\" rows %u", portal, rows);
}

/* Execute of any portal, anywhere in a burst: the unnamed one too, but not to Postgres itself. */
static void gen_execute_anywhere(struct fz_client *c)
{
	const char *portal = PICK(&c->rng, fz_portal_names);

	gen_execute(c, c->t->direct && portal[0] == '\0' ? "p1" : portal);
}

/* A message with no body: Sync, Flush, CopyDone. */
static void gen_empty(struct fz_client *c, uint8_t type, const char *what)
{
	msg_end(&c->out, msg_begin(&c->out, type));
	note(c, "%s", what);
}

static void gen_copy_data(struct fz_client *c)
{
	size_t at = msg_begin(&c->out, 'd');
	static const char *const rows[] = {"1\n", "2\n3\n", "x\ty\n", "\\.\n", "", "4"};
	const char *row = PICK(&c->rng, rows);

	buf_put(&c->out, row, strlen(row));
	msg_end(&c->out, at);
	note(c, "CopyData %zu bytes", strlen(row));
}

static void gen_copy_fail(struct fz_client *c)
{
	size_t at = msg_begin(&c->out, 'f');

	buf_str(&c->out, "fz copy fail");
	msg_end(&c->out, at);
	note(c, "CopyFail");
}

/*
 * A COPY FROM STDIN with its data pipelined behind it, as a client may send
 * it without waiting for CopyInResponse: a Query, or Parse, Bind, Execute
 * and a Sync after the data.  Nothing but COPY messages follows the COPY
 * until its end, so Postgres never sees another message in COPY mode
 * (which it answers with FATAL: "protocol synchronization was lost").
 */
static void gen_copy_unit(struct fz_client *c)
{
	const char *sql =
	    rng_chance(&c->rng, 70) ? "copy fz_copy from stdin" : "copy fzt from stdin";
	bool extended = rng_chance(&c->rng, 40);
	uint32_t rows = rng_below(&c->rng, 4);
	bool done = rng_chance(&c->rng, 80);

	if (extended) {
		size_t at = msg_begin(&c->out, 'P');

		buf_str(&c->out, "");
		buf_str(&c->out, sql);
		buf_u16(&c->out, 0);
		msg_end(&c->out, at);
		at = msg_begin(&c->out, 'B');
		buf_str(&c->out, "");
		buf_str(&c->out, "");
		buf_u32(&c->out, 0); /* no formats, no parameters */
		buf_u16(&c->out, 0);
		msg_end(&c->out, at);
		at = msg_begin(&c->out, 'E');
		buf_str(&c->out, "");
		buf_u32(&c->out, 0);
		msg_end(&c->out, at);
	} else {
		send_query_text(c, sql);
	}
	for (uint32_t i = 0; i < rows; i++) {
		size_t at = msg_begin(&c->out, 'd');

		buf_put(&c->out, "7\n", 2);
		msg_end(&c->out, at);
	}
	if (done) {
		msg_end(&c->out, msg_begin(&c->out, 'c'));
	} else {
		size_t at = msg_begin(&c->out, 'f');

		buf_str(&c->out, "fz unit fail");
		msg_end(&c->out, at);
	}
	if (extended) {
		size_t at;

		msg_end(&c->out, msg_begin(&c->out, 'S'));
		/*
		 * And the unnamed statement is no COPY any more: a later Bind of it
		 * would start one with other messages behind (copy_raw).
		 */
		at = msg_begin(&c->out, 'P');
		buf_str(&c->out, "");
		buf_str(&c->out, "select 1");
		buf_u16(&c->out, 0);
		msg_end(&c->out, at);
	}
	note(c, "COPY unit: %s \"%s\", %u rows, %s", extended ? "Parse/Bind/Execute" : "Query", sql,
	     rows, done ? "CopyDone" : "CopyFail");
}

/* FunctionCall: a harmless one, or one that changes the session with no SQL to look at. */
static void gen_function_call(struct fz_client *c)
{
	const struct fz_funcs *f = &c->t->funcs;
	uint32_t pick = rng_below(&c->rng, 4);
	size_t at = msg_begin(&c->out, 'F');
	char key[16];

	snprintf(key, sizeof(key), "%d", 1000 + c->id);
	buf_u32(&c->out, pick == 0   ? f->int4pl
	                 : pick == 1 ? f->advisory_lock
	                 : pick == 2 ? f->set_config
	                             : 1); /* no such function */
	buf_u16(&c->out, 0);               /* argument formats: all text */
	if (pick == 1) {
		buf_u16(&c->out, 1);
		buf_u32(&c->out, (uint32_t)strlen(key));
		buf_put(&c->out, key, strlen(key));
	} else if (pick == 2) {
		static const char *const args[] = {"fz.tenant", "f", "false"};

		buf_u16(&c->out, 3);
		for (int i = 0; i < 3; i++) {
			buf_u32(&c->out, (uint32_t)strlen(args[i]));
			buf_put(&c->out, args[i], strlen(args[i]));
		}
	} else {
		buf_u16(&c->out, 2);
		for (int i = 0; i < 2; i++) {
			buf_u32(&c->out, 1);
			buf_u8(&c->out, '3');
		}
	}
	buf_u16(&c->out, 0); /* result format: text */
	msg_end(&c->out, at);
	note(c, "FunctionCall %s",
	     pick == 0   ? "int4pl(3, 3)"
	     : pick == 1 ? "pg_advisory_lock(key)"
	     : pick == 2 ? "set_config('fz.tenant', 'f', false)"
	                 : "oid 1 (none)");
}

/*
 * A message a server may refuse with FATAL but whose frame is whole: a type
 * no frontend sends after login, a Bind whose counts lie, random bytes in
 * the body of a real type.  The stream stays in step.
 */
static void gen_malformed(struct fz_client *c)
{
	uint32_t kind = rng_below(&c->rng, 3);
	static const uint8_t real[] = {'P', 'B', 'D', 'E', 'C', 'F', 'S', 'H'};
	uint8_t type = kind == 0   ? fz_bad_types[rng_below(&c->rng, sizeof(fz_bad_types))]
	               : kind == 1 ? 'B'
	                           : real[rng_below(&c->rng, sizeof(real))];
	size_t at = msg_begin(&c->out, type);
	uint32_t n = rng_below(&c->rng, 24);

	if (kind == 1) {
		buf_str(&c->out, PICK(&c->rng, fz_portal_names));
		buf_str(&c->out, PICK(&c->rng, fz_stmt_names));
		buf_u16(&c->out, (uint16_t)rng_next(&c->rng)); /* formats, with none following */
		buf_u16(&c->out, (uint16_t)rng_next(&c->rng)); /* (or read as) the parameters */
		buf_u32(&c->out, (uint32_t)rng_next(&c->rng)); /* a length that lies */
	}
	for (uint32_t i = 0; i < n; i++)
		buf_u8(&c->out, (uint8_t)rng_next(&c->rng));
	/* Not the unnamed portal's Execute (gen_execute says why). */
	if (type == 'E' && c->out.len > at + 4 && c->out.p[at + 4] == 0)
		c->out.p[at + 4] = 'g';
	msg_end(&c->out, at);
	c->malformed = true;
	note(c, "malformed %s type 0x%02x, %zu bytes",
	     kind == 0   ? "bad type"
	     : kind == 1 ? "lying Bind"
	                 : "garbage body",
	     type, c->out.len - at - 4);
}

/*
 * The last message of a session that sluice must refuse: a length below 4,
 * or one past the limit of its type (max_packet_size, or 10000 bytes for a
 * control message).  Nothing follows it.
 */
static void gen_bad_length(struct fz_client *c)
{
	static const uint8_t types[] = {'Q', 'P', 'B', 'S', 'E', 'd', 'X', 'z'};
	uint8_t type = types[rng_below(&c->rng, sizeof(types))];
	uint32_t len;

	switch (rng_below(&c->rng, 3)) {
	case 0:
		len = rng_below(&c->rng, 4);
		break;
	case 1:
		len = FZ_MAX_PACKET + 1 + rng_below(&c->rng, 1000000);
		break;
	default:
		len = 0x80000000u + rng_below(&c->rng, 0x7fffffff);
		break;
	}
	buf_u8(&c->out, type);
	buf_u32(&c->out, len);
	/* Postgres itself waits for a body up to 1 GB: straight to it, this is a reset. */
	c->end = c->t->direct ? END_RESET : END_FATAL;
	c->malformed = true;
	note(c, "bad length: type 0x%02x, length %u", type, len);
}

/* Part of a message, then a reset: a client that dies in the middle of sending. */
static void gen_truncated(struct fz_client *c)
{
	uint8_t type = rng_chance(&c->rng, 50) ? 'Q' : 'B';
	uint32_t len = rng_chance(&c->rng, 50) ? 100 + rng_below(&c->rng, 1000)
	                                       : FZ_BIG_TEXT + rng_below(&c->rng, 100000);
	uint32_t part = rng_below(&c->rng, len < FZ_BIG_TEXT ? len - 4 : FZ_BIG_TEXT);
	char *filler = malloc(part + 1);

	memset(filler, 'z', part);
	buf_u8(&c->out, type);
	buf_u32(&c->out, len);
	buf_put(&c->out, filler, part);
	free(filler);
	c->end = END_RESET;
	note(c, "truncated: type %c, length %u, %u bytes of the body, then a reset", type, len,
	     part);
}

/* One random message of the burst. */
static void gen_message(struct fz_client *c)
{
	uint32_t w = rng_below(&c->rng, 1000);

	if (w < 300)
		gen_query(c);
	else if (w < 380)
		gen_parse(c);
	else if (w < 460)
		gen_bind(c);
	else if (w < 500)
		gen_describe_close(c, 'D');
	else if (w < 570)
		gen_execute_anywhere(c);
	else if (w < 610)
		gen_describe_close(c, 'C');
	else if (w < 690)
		gen_empty(c, 'S', "Sync");
	else if (w < 720)
		gen_empty(c, 'H', "Flush");
	else if (w < 780)
		gen_copy_data(c);
	else if (w < 810)
		gen_empty(c, 'c', "CopyDone");
	else if (w < 830)
		gen_copy_fail(c);
	else if (w < 880)
		gen_function_call(c);
	else if (w < 895)
		gen_big_query(c);
	else if (w < 910)
		gen_malformed(c);
	else if (w < 920)
		gen_bad_length(c);
	else if (w < 930)
		gen_truncated(c);
	else if (w < 940) {
		c->end = rng_chance(&c->rng, 50) ? END_RESET : END_HALFCLOSE;
		note(c, "%s in the middle", c->end == END_RESET ? "reset" : "half-close");
	} else if (w < 950) {
		gen_empty(c, 'X', "Terminate in the middle");
		c->end = END_TERMINATE;
	} else if (w < 980) {
		gen_copy_unit(c);
	} else {
		gen_query(c);
	}
}

/* CopyFail, Sync, then SAVEPOINT, the probe's syntax error, ROLLBACK TO (see the top). */
static void gen_probe(struct fz_client *c)
{
	char sql[64];

	gen_copy_fail(c);
	gen_empty(c, 'S', "Sync");
	send_query_text(c, "savepoint fzs");
	snprintf(c->probe, sizeof(c->probe), "fzp_%d_%d_%d", c->id, c->session, c->burst);
	snprintf(sql, sizeof(sql), "%s", c->probe);
	send_query_text(c, sql);
	send_query_text(c, "rollback to savepoint fzs");
	note(c, "probe %s", c->probe);
	c->probe_seen = false;
	c->ready_after = 0;
}

/* The next burst, or the end of the session. */
static void next_burst(struct fz_client *c)
{
	uint32_t n = 1 + rng_below(&c->rng, FZ_MSGS_MAX);

	c->burst++;
	for (uint32_t i = 0; i < n && c->end == END_NONE; i++)
		gen_message(c);
	if (c->end == END_NONE && --c->bursts_left <= 0) {
		uint32_t e = rng_below(&c->rng, 3);

		c->end = e == 0 ? END_TERMINATE : e == 1 ? END_HALFCLOSE : END_RESET;
		if (c->end == END_TERMINATE)
			gen_empty(c, 'X', "Terminate");
		else
			note(c, "%s", c->end == END_RESET ? "reset" : "half-close");
	}
	if (c->end == END_NONE) {
		gen_probe(c);
		c->phase = FZ_BURST;
	} else {
		c->phase = FZ_CLOSING;
	}
	c->deadline = harness_now() + FZ_HANG_S;
	c->sent_at = harness_now();
}

/* ---- connections ---- */

static void start_session(struct fz_client *c)
{
	char port[16];
	const char *keys[] = {"host", "port", "user", "password", "dbname", "sslmode", NULL};
	const char *values[] = {c->t->direct ? harness_pg()->host : "127.0.0.1",
	                        port,
	                        "app",
	                        "app-secret",
	                        "app",
	                        "disable",
	                        NULL};

	c->rng.s =
	    c->t->seed ^ (0x1000193ULL * (uint64_t)(c->id + 1)) ^ ((uint64_t)c->session << 32);
	rng_next(&c->rng);
	c->bursts_left = 1 + (int)rng_below(&c->rng, FZ_BURSTS_MAX);
	c->burst = 0;
	c->end = END_NONE;
	c->malformed = false;
	c->copy_raw = false;
	c->fatal_seen = false;
	c->error_last = false;
	c->out.len = 0;
	c->in.len = 0;
	snprintf(port, sizeof(port), "%d", c->t->direct ? harness_pg()->port : c->t->h->port);
	if (c->t->dump != NULL) {
		char path[512];

		snprintf(path, sizeof(path), "%s/c%ds%d.bin", c->t->dump, c->id, c->session);
		c->dump = fopen(path, "w");
	}
	c->conn = PQconnectStartParams(keys, values, 0);
	cr_assert(c->conn != NULL && PQstatus(c->conn) != CONNECTION_BAD, "connect: %s",
	          c->conn != NULL ? PQerrorMessage(c->conn) : "out of memory");
	c->fd = PQsocket(c->conn);
	c->want_write = true;
	c->phase = FZ_CONNECTING;
	c->deadline = harness_now() + FZ_HANG_S;
	c->t->sessions++;
}

static void end_session(struct fz_client *c)
{
	if (c->end == END_RESET && c->fd >= 0) {
		struct linger l = {.l_onoff = 1, .l_linger = 0};
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		/* Swap /dev/null in: the socket closes with a reset, libpq's Terminate goes
		 * nowhere. */
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		cr_assert(null >= 0 && dup2(null, c->fd) == c->fd, "dup2: %s", strerror(errno));
		close(null);
	}
	PQfinish(c->conn);
	c->conn = NULL;
	c->fd = -1;
	if (c->dump != NULL)
		fclose(c->dump);
	c->dump = NULL;
	c->session++;
	c->phase = c->session < c->sessions ? FZ_START : FZ_DONE;
}

static void connect_step(struct fz_client *c)
{
	PostgresPollingStatusType st = PQconnectPoll(c->conn);

	c->fd = PQsocket(c->conn);
	if (st == PGRES_POLLING_FAILED)
		fz_fail(c, "login failed: %s", PQerrorMessage(c->conn));
	if (st != PGRES_POLLING_OK) {
		c->want_write = st == PGRES_POLLING_WRITING;
		return;
	}
	cr_assert(fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) == 0);
	next_burst(c);
}

/* ---- reading what sluice sends ---- */

/* An ErrorResponse: its fields must be there; returns the severity (FATAL, ERROR...). */
static void check_error(struct fz_client *c, const unsigned char *body, uint32_t len)
{
	const char *sev = NULL, *code = NULL, *msg = NULL;
	size_t pos = 0;

	while (pos < len && body[pos] != 0) {
		char field = (char)body[pos++];
		const char *value = (const char *)body + pos;
		size_t vlen = strnlen(value, len - pos);

		if (pos + vlen >= len)
			fz_fail(c, "ErrorResponse field '%c' is not terminated", field);
		if (field == 'S')
			sev = value;
		else if (field == 'C')
			code = value;
		else if (field == 'M')
			msg = value;
		pos += vlen + 1;
	}
	if (sev == NULL || code == NULL || msg == NULL || strlen(code) != 5)
		fz_fail(c, "ErrorResponse without severity, SQLSTATE or message: S=%s C=%s M=%s",
		        sev ? sev : "-", code ? code : "-", msg ? msg : "-");
	snprintf(c->last_error, sizeof(c->last_error), "%s %s: %s", sev, code, msg);
	/* Nothing here may take Postgres down; a crashed backend restarts the whole cluster. */
	if (strstr(msg, "the database system is") != NULL ||
	    strstr(msg, "terminating connection because of crash") != NULL)
		fz_fail(c, "Postgres is unavailable (a backend crashed? see its log): %s", msg);
	if (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0) {
		if (!c->fatal_seen)
			snprintf(c->fatal_state, sizeof(c->fatal_state), "%s", code);
		c->fatal_seen = true;
	}
	/*
	 * Every SQL text sent is valid but the probe's: a syntax error is
	 * sluice's rewrite of it gone wrong (or random bytes in a malformed body).
	 */
	if (strcmp(code, "42601") == 0 && strncmp(msg, "syntax error", 12) == 0 &&
	    strstr(msg, "fzp_") == NULL && !c->malformed)
		fz_fail(c, "a syntax error in SQL that has none: %s", msg);
	if (strstr(msg, "fzp_") != NULL) {
		const char *m = strstr(msg, "fzp_");
		size_t n = strlen(c->probe);

		if (c->phase != FZ_BURST || c->probe_seen || strncmp(m, c->probe, n) != 0 ||
		    (m[n] >= '0' && m[n] <= '9'))
			fz_fail(c, "an error names a probe not awaited (%s, awaiting %s): %s", m,
			        c->phase == FZ_BURST && !c->probe_seen ? c->probe : "none", msg);
		c->probe_seen = true;
	}
}

/* A DataRow: well formed, and any fzv: value is this client's. */
static void check_data_row(struct fz_client *c, const unsigned char *body, uint32_t len)
{
	uint16_t cols;
	size_t pos = 2;
	char mine[32], named[32];

	if (len < 2)
		fz_fail(c, "DataRow of %u bytes", len);
	cols = get_u16(body);
	snprintf(mine, sizeof(mine), "fzv:%d", c->id);
	snprintf(named, sizeof(named), "fzs:%d", c->id);
	for (uint16_t i = 0; i < cols; i++) {
		uint32_t vlen;

		if (pos + 4 > len)
			fz_fail(c, "DataRow shorter than its %u columns", cols);
		vlen = get_u32(body + pos);
		pos += 4;
		if (vlen == UINT32_MAX)
			continue;
		if (pos + vlen > len)
			fz_fail(c, "DataRow column of %u bytes past its end", vlen);
		if (vlen >= 4 && memcmp(body + pos, "fzv:", 4) == 0 &&
		    (vlen != strlen(mine) || memcmp(body + pos, mine, vlen) != 0))
			fz_fail(c, "another client's value: %.*s", (int)vlen, body + pos);
		/* Without tracking, named statements are Postgres' own, shared on a server. */
		if (vlen >= 4 && memcmp(body + pos, "fzs:", 4) == 0 && !c->t->m->from_sql_only &&
		    (vlen != strlen(named) || memcmp(body + pos, named, vlen) != 0))
			fz_fail(c, "another client's named statement: %.*s", (int)vlen, body + pos);
		pos += vlen;
	}
	if (pos != len)
		fz_fail(c, "DataRow has %zu bytes after its columns", len - pos);
}

static bool is_backend_type(uint8_t t)
{
	return strchr("RKSZCDETtn123sIGHWdcAVvN", t) != NULL && t != 0;
}

/* One message from sluice. */
static void handle_reply(struct fz_client *c, uint8_t type, const unsigned char *body, uint32_t len)
{
	c->error_last = type == 'E';
	switch (type) {
	case 'E':
		check_error(c, body, len);
		break;
	case 'Z':
		if (len != 1 || strchr("ITE", body[0]) == NULL || body[0] == 0)
			fz_fail(c, "ReadyForQuery of %u bytes, status 0x%02x", len,
			        len > 0 ? body[0] : 0);
		if (c->probe_seen && c->phase == FZ_BURST && ++c->ready_after == 2) {
			c->t->bursts++;
			if (c->t->verbose)
				fprintf(stderr,
				        "protofuzz: client %d probe %s answered after %.3f s\n",
				        c->id, c->probe, harness_now() - c->sent_at);
			next_burst(c);
		}
		break;
	case 'D':
		check_data_row(c, body, len);
		break;
	case 'W':
		fz_fail(c, "CopyBothResponse");
		break;
	case 'R':
	case 'K':
		fz_fail(c, "a login message after the login ('%c')", type);
		break;
	default:
		break;
	}
}

static void parse_replies(struct fz_client *c)
{
	size_t pos = 0;

	while (c->in.len - pos >= 5) {
		uint8_t type = c->in.p[pos];
		uint32_t len = get_u32(c->in.p + pos + 1);

		if (!is_backend_type(type) || len < 4 || len > FZ_MAX_REPLY_LEN)
			fz_fail(c, "invalid message from sluice: type 0x%02x, length %u", type,
			        len);
		if (c->in.len - pos < 1 + (size_t)len)
			break;
		handle_reply(c, type, c->in.p + pos + 5, len - 4);
		pos += 1 + len;
		if (c->phase != FZ_BURST && c->phase != FZ_CLOSING)
			break; /* the session ended */
	}
	if (c->phase == FZ_BURST || c->phase == FZ_CLOSING)
		buf_consume(&c->in, pos);
}

/* ---- driving one client ---- */

/* The connection ended: by the client's choice, or after an error. */
static void closed_by_sluice(struct fz_client *c)
{
	/*
	 * FATAL answers malformed input; a COPY FROM STDIN with other messages
	 * pipelined behind it (Postgres: "protocol synchronization was lost",
	 * which a reset may swallow when Postgres closes with input unread: then
	 * sluice's own 08006 says the server is gone); and in statement mode a
	 * transaction block with requests behind it.
	 */
	bool allowed_fatal = c->malformed ||
	                     (c->copy_raw && (strcmp(c->fatal_state, "08P01") == 0 ||
	                                      strcmp(c->fatal_state, "08006") == 0)) ||
	                     (c->t->m->statement && strcmp(c->fatal_state, "0A000") == 0);

	/*
	 * After a Terminate or a half-close the client is gone as far as sluice
	 * is concerned (it drops what it still has for it, by design: a FIN is
	 * a hang-up), even in the middle of a message.
	 */
	if (c->end == END_TERMINATE || c->end == END_HALFCLOSE) {
		end_session(c);
		return;
	}
	/*
	 * Postgres closing with input unread (the COPY above) resets the
	 * connection, and the reset discards what sluice's kernel had not handed
	 * it yet: a reply sluice was passing on is then cut, as it would be for a
	 * client of Postgres itself, and whatever sluice says after is part of
	 * the cut message.  Only the close is checked then.
	 */
	if (c->in.len > 0 && c->copy_raw) {
		c->t->fatals++;
		end_session(c);
		return;
	}
	if (c->in.len > 0)
		fz_fail(c, "closed in the middle of a message (%zu bytes of it)", c->in.len);
	if (!c->error_last || !c->fatal_seen)
		fz_fail(c, "connection closed without a FATAL ErrorResponse first (last error: %s)",
		        c->fatal_seen ? c->fatal_state : "none");
	if (!allowed_fatal)
		fz_fail(c, "FATAL %s, though nothing malformed was sent (last error: %s)",
		        c->fatal_state, c->last_error);
	c->t->fatals++;
	end_session(c);
}

static void client_read(struct fz_client *c)
{
	unsigned char chunk[65536];
	ssize_t n = recv(c->fd, chunk, sizeof(chunk), 0);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		/* A reset after a FATAL is a close too: the client wrote into a closed socket. */
		parse_replies(c);
		closed_by_sluice(c);
		return;
	}
	buf_put(&c->in, chunk, (size_t)n);
	parse_replies(c);
}

static void client_write(struct fz_client *c)
{
	/* A reset does not wait for what the kernel will not take now. */
	bool reset = c->phase == FZ_CLOSING && c->end == END_RESET;

	while (c->out.len > 0) {
		ssize_t n = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) && !reset)
			return;
		if (n < 0) {
			/* Sluice closed it: what it said before comes with the read. */
			c->out.len = 0;
			return;
		}
		if (c->dump != NULL)
			fwrite(c->out.p, 1, (size_t)n, c->dump);
		buf_consume(&c->out, (size_t)n);
	}
	if (c->phase == FZ_CLOSING && c->end == END_RESET) {
		end_session(c);
	} else if (c->phase == FZ_CLOSING && c->end == END_HALFCLOSE) {
		shutdown(c->fd, SHUT_WR);
		c->end = END_TERMINATE; /* now only the close is awaited; shut down once */
	}
}

static short client_events(const struct fz_client *c)
{
	if (c->phase == FZ_CONNECTING)
		return c->want_write ? POLLOUT : POLLIN;
	return (short)(POLLIN | (c->out.len > 0 || (c->phase == FZ_CLOSING &&
	                                            c->end != END_TERMINATE && c->end != END_FATAL)
	                             ? POLLOUT
	                             : 0));
}

static void client_ready(struct fz_client *c, short revents)
{
	if (c->phase == FZ_CONNECTING) {
		connect_step(c);
		return;
	}
	if (revents & POLLOUT)
		client_write(c);
	if (c->phase != FZ_BURST && c->phase != FZ_CLOSING)
		return;
	if (revents & (POLLIN | POLLHUP | POLLERR))
		client_read(c);
}

static void check_deadline(struct fz_client *c, double now)
{
	if (c->phase == FZ_START || c->phase == FZ_DONE || now < c->deadline)
		return;
	if (c->phase == FZ_CONNECTING)
		fz_fail(c, "login not done after %.0f s", FZ_HANG_S);
	if (c->phase == FZ_BURST)
		fz_fail(c, "hang: probe %s %s after %.0f s (%zu bytes unsent)", c->probe,
		        c->probe_seen ? "answered, its ReadyForQuery missing" : "not answered",
		        FZ_HANG_S, c->out.len);
	fz_fail(c, "hang: the connection is still open %.0f s after the client's last bytes",
	        FZ_HANG_S);
}

/* Runs every client through all its sessions. */
static void run_clients(struct fz_test *t)
{
	struct pollfd pfd[FZ_CLIENTS];
	struct fz_client *who[FZ_CLIENTS];

	for (;;) {
		int n = 0;
		double now = harness_now();

		for (int i = 0; i < FZ_CLIENTS; i++) {
			struct fz_client *c = &t->c[i];

			if (c->phase == FZ_START)
				start_session(c);
			if (c->phase == FZ_DONE)
				continue;
			check_deadline(c, now);
			pfd[n] = (struct pollfd){.fd = c->fd, .events = client_events(c)};
			who[n++] = c;
		}
		if (n == 0)
			return;
		cr_assert(harness_sluice_alive(t->h), "sluice died (seed %" PRIu64 ")", t->seed);
		if (poll(pfd, (nfds_t)n, 100) < 0 && errno != EINTR)
			cr_assert_fail("poll: %s", strerror(errno));
		for (int i = 0; i < n; i++)
			if (pfd[i].revents != 0)
				client_ready(who[i], pfd[i].revents);
	}
}

/* ---- the checks after the fuzz ---- */

static long long super_count(PGconn *super, const char *sql)
{
	PGresult *res = PQexec(super, sql);
	long long n;

	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
	n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return n;
}

/* What is left on Postgres of app's sessions, seen from outside: nothing busy or held. */
static const char *const leftovers_sql =
    "select count(*) from pg_stat_activity a where a.usename = 'app' "
    "and a.backend_type = 'client backend' and (a.state <> 'idle' "
    "or exists (select 1 from pg_locks l where l.pid = a.pid and l.locktype = 'advisory') "
    "or exists (select 1 from pg_locks l where l.pid = a.pid and l.locktype = 'relation' "
    "and l.relation in (select oid from pg_class where relpersistence = 't')))";

/*
 * One check of a server, as one statement that starts its transaction, then
 * (but in statement mode) BEGIN so that the client keeps the server and the
 * next check client gets another one.  Columns: the backend, whether it was
 * in a transaction, its prepared statements that are not sluice's own,
 * cursors, channels, temp tables, advisory locks, and its settings that are
 * not at their defaults (a library loaded since, such as plpgsql for a DO
 * block, adds settings of its own at their defaults).
 */
static const char check_sql[] =
    "select pg_backend_pid(), now() = statement_timestamp(), "
    "(select count(*) from pg_prepared_statements where name not like 'sluice\\_%%'%s), "
    "(select count(*) from pg_cursors), "
    "(select count(*) from pg_listening_channels()), "
    "(select count(*) from pg_class where relnamespace = pg_my_temp_schema()), "
    "(select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()), "
    "coalesce(current_setting('fz.tenant', true), ''), "
    "(select string_agg(name || '=' || coalesce(setting, ''), ',' order by name) "
    "from pg_settings where source <> 'default')%s";

struct server_view {
	int pid;          /* backend */
	char *settings;   /* its pg_settings, name=setting (malloc'd) */
	char detail[256]; /* what is wrong, "" if nothing */
};

static void view_server(PGconn *conn, const struct fz_mode *m, struct server_view *v)
{
	char sql[sizeof(check_sql) + 64];
	PGresult *res;

	snprintf(sql, sizeof(sql), check_sql, m->from_sql_only ? " and from_sql" : "",
	         m->statement ? "" : "; begin");
	cr_assert(PQsendQuery(conn, sql), "%s", PQerrorMessage(conn));
	res = PQgetResult(conn);
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "server check: %s",
	          PQresultErrorMessage(res));
	v->pid = atoi(PQgetvalue(res, 0, 0));
	v->settings = strdup(PQgetvalue(res, 0, 8));
	snprintf(v->detail, sizeof(v->detail), "%s%s%s%s%s%s%s",
	         strcmp(PQgetvalue(res, 0, 1), "t") != 0 ? "in a transaction; " : "",
	         strcmp(PQgetvalue(res, 0, 2), "0") != 0 ? "prepared statements; " : "",
	         strcmp(PQgetvalue(res, 0, 3), "0") != 0 ? "cursors; " : "",
	         strcmp(PQgetvalue(res, 0, 4), "0") != 0 ? "listening; " : "",
	         strcmp(PQgetvalue(res, 0, 5), "0") != 0 ? "temp tables; " : "",
	         strcmp(PQgetvalue(res, 0, 6), "0") != 0 ? "advisory locks; " : "",
	         PQgetvalue(res, 0, 7)[0] != '\0' ? "fz.tenant set; " : "");
	PQclear(res);
	while ((res = PQgetResult(conn)) != NULL) {
		cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK, "begin: %s",
		          PQresultErrorMessage(res));
		PQclear(res);
	}
}

/* The first name=value of `a` that `b` lacks, into buf. */
static const char *first_difference(const char *a, const char *b, char *buf, size_t len)
{
	char *copy = strdup(a), *save = NULL;

	snprintf(buf, len, "(none)");
	for (char *item = strtok_r(copy, ",", &save); item != NULL;
	     item = strtok_r(NULL, ",", &save)) {
		char needle[512];
		size_t n = strlen(b), m;

		snprintf(needle, sizeof(needle), "%s", item);
		m = strlen(needle);
		for (const char *p = strstr(b, needle); p != NULL; p = strstr(p + 1, needle))
			if ((p == b || p[-1] == ',') && (p + m == b + n || p[m] == ','))
				goto next;
		snprintf(buf, len, "%s", item);
		break;
	next:;
	}
	free(copy);
	return buf;
}

/*
 * As many fresh clients as the pool has servers, each holding its server in a
 * transaction (in statement mode the pool has one), so that together they
 * see every server of the pool; each must look like the server a fresh
 * client got before the fuzz (`baseline`'s settings).
 */
static void check_servers(struct fz_test *t, const char *baseline)
{
	PGconn *conns[4];

	cr_assert(t->m->pool_size <= 4);
	for (int i = 0; i < t->m->pool_size; i++) {
		struct server_view v;
		char diff[512];

		conns[i] = harness_connect_ok(t->h, "app", "app-secret", "app");
		view_server(conns[i], t->m, &v);
		cr_assert(v.detail[0] == '\0', "%s (seed %" PRIu64 "): backend %d: %s", t->m->name,
		          t->seed, v.pid, v.detail);
		cr_assert(strcmp(v.settings, baseline) == 0,
		          "%s (seed %" PRIu64 "): backend %d has settings a new session "
		          "lacks: %s; lacks %s",
		          t->m->name, t->seed, v.pid,
		          first_difference(v.settings, baseline, diff, sizeof(diff)),
		          first_difference(baseline, v.settings, diff + 256, 256));
		free(v.settings);
	}
	for (int i = 0; i < t->m->pool_size; i++)
		PQfinish(conns[i]);
}

/* A fresh server's settings, read the way check_servers reads them. */
static char *baseline_settings(struct fz_test *t)
{
	PGconn *conn = harness_connect_ok(t->h, "app", "app-secret", "app");
	struct server_view v;

	view_server(conn, t->m, &v);
	cr_assert(v.detail[0] == '\0', "before the fuzz: backend %d: %s", v.pid, v.detail);
	PQfinish(conn);
	return v.settings;
}

/* ---- setting up and running ---- */

static uint64_t env_u64(const char *name, uint64_t fallback)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? strtoull(v, NULL, 0) : fallback;
}

/* The FunctionCall targets, and a table for COPY FROM STDIN that every client may write. */
static void prepare_cluster(struct fz_funcs *f)
{
	PGconn *super = harness_pg_super("app");
	PGresult *res = PQexec(super, "select 'int4pl(int4, int4)'::regprocedure::oid, "
	                              "'pg_advisory_lock(bigint)'::regprocedure::oid, "
	                              "'set_config(text, text, boolean)'::regprocedure::oid");

	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	f->int4pl = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
	f->advisory_lock = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
	f->set_config = (uint32_t)strtoul(PQgetvalue(res, 0, 2), NULL, 10);
	PQclear(res);
	res = PQexec(super, "set client_min_messages = warning; "
	                    "create table if not exists fz_copy (a text); "
	                    "truncate fz_copy; grant all on fz_copy to app");
	cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(super);
}

/* A sluice set up as `m`, and the run's state with the clients ready to start. */
static struct fz_test *fz_start(const struct fz_mode *m)
{
	char ini[1024];
	struct fz_test *t = calloc(1, sizeof(*t));
	uint64_t rounds = env_u64("SLUICE_PROTOFUZZ_ROUNDS", 1);

	cr_assert(t != NULL, "out of memory");
	snprintf(ini, sizeof(ini),
	         "client_tls_sslmode = disable\n" /* raw bytes on libpq's socket */
	         "pool_mode = %s\n"
	         "default_pool_size = %d\n"
	         "max_packet_size = %d\n"
	         "connect_rate_per_ip = 0\n" /* every client logs in from 127.0.0.1 */
	         "%s%s",
	         m->mode, m->pool_size, FZ_MAX_PACKET, m->extra,
	         getenv("SLUICE_PROTOFUZZ_INI") != NULL ? getenv("SLUICE_PROTOFUZZ_INI") : "");
	t->m = m;
	t->seed = env_u64("SLUICE_PROTOFUZZ_SEED", m->seed);
	t->only = (int)env_u64("SLUICE_PROTOFUZZ_CLIENT", (uint64_t)-1);
	t->verbose = env_u64("SLUICE_PROTOFUZZ_VERBOSE", 0) != 0;
	t->direct = env_u64("SLUICE_PROTOFUZZ_DIRECT", 0) != 0;
	t->dump = getenv("SLUICE_PROTOFUZZ_DUMP");
	prepare_cluster(&t->funcs);
	t->h = harness_start_sluice(ini);
	for (int i = 0; i < FZ_CLIENTS; i++) {
		struct fz_client *c = &t->c[i];

		c->t = t;
		c->id = i;
		c->fd = -1;
		c->sessions = (int)(FZ_SESSIONS * rounds);
		c->phase = t->only < 0 || t->only == i ? FZ_START : FZ_DONE;
	}
	return t;
}

/* After the run: what the clients left on Postgres and in sluice's log. */
static void check_after(struct fz_test *t, const char *baseline)
{
	PGconn *super = harness_pg_super("app");

	cr_assert(harness_sluice_alive(t->h), "sluice died (seed %" PRIu64 ")", t->seed);
	cr_assert(harness_wait_for(super_count(super, leftovers_sql) == 0, FZ_HANG_S),
	          "%s (seed %" PRIu64 "): %lld backends of app still busy, in a transaction "
	          "or holding an advisory lock or temp table after every client left",
	          t->m->name, t->seed, super_count(super, leftovers_sql));
	check_servers(t, baseline);
	PQclear(harness_exec_ok(super, "drop table fz_copy"));
	PQfinish(super);
	/*
	 * Nothing the clients run takes long, and the fuzz sends no cancels: a
	 * reset that ran out of time was stuck, and a read-back that failed
	 * (cancelled, say) hit something sluice sent itself.
	 */
	cr_assert(!harness_log_contains(t->h, "server_reset_timeout expired"),
	          "%s (seed %" PRIu64 "): a server's reset ran into server_reset_timeout",
	          t->m->name, t->seed);
	cr_assert(!harness_log_contains(t->h, "reading back session settings failed"),
	          "%s (seed %" PRIu64 "): a settings read-back failed", t->m->name, t->seed);
}

/* Fuzzes a sluice set up as `m` with FZ_CLIENTS clients, then checks what they left behind. */
static void fuzz(const struct fz_mode *m)
{
	double start = harness_now();
	struct fz_test *t = fz_start(m);
	char *baseline = baseline_settings(t);

	run_clients(t);
	check_after(t, baseline);
	fprintf(stderr,
	        "protofuzz: %s, seed %" PRIu64 ": %" PRIu64 " sessions, %" PRIu64
	        " probes answered, %" PRIu64 " sessions ended in FATAL, %.1f s\n",
	        m->name, t->seed, t->sessions, t->bursts, t->fatals, harness_now() - start);
	if (t->verbose) {
		char *log = harness_read_file(t->h->log_path);

		fprintf(stderr, "protofuzz: sluice's log:\n%s", log);
		free(log);
	}
	for (int i = 0; i < FZ_CLIENTS; i++) {
		free(t->c[i].out.p);
		free(t->c[i].in.p);
	}
	free(baseline);
	free(t);
}

Test(protofuzz, transaction_mode)
{
	static const struct fz_mode m = {.name = "transaction mode",
	                                 .mode = "transaction",
	                                 .extra = "",
	                                 .seed = 1,
	                                 .pool_size = 2};

	fuzz(&m);
}

/* Without prepared statement tracking: named statements stay Postgres' own, on each server. */
Test(protofuzz, transaction_mode_without_prepared_statements)
{
	static const struct fz_mode m = {.name = "transaction mode without prepared statements",
	                                 .mode = "transaction",
	                                 .extra = "max_prepared_statements = 0\n",
	                                 .seed = 2,
	                                 .pool_size = 2,
	                                 .from_sql_only = true};

	fuzz(&m);
}

Test(protofuzz, session_mode)
{
	static const struct fz_mode m = {
	    .name = "session mode", .mode = "session", .extra = "", .seed = 3, .pool_size = 2};

	fuzz(&m);
}

/* One server: a check client cannot hold one (no transaction blocks) to see the next. */
Test(protofuzz, statement_mode)
{
	static const struct fz_mode m = {.name = "statement mode",
	                                 .mode = "statement",
	                                 .extra = "",
	                                 .seed = 4,
	                                 .pool_size = 1,
	                                 .statement = true};

	fuzz(&m);
}
