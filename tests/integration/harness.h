/*
 * Integration test harness.  Tests run sluice, as built, in front of the
 * throwaway Postgres cluster that tests/harness/pg.sh starts (its facts arrive
 * in SLUICE_TEST_PG* variables; without them every test skips).  Each started
 * sluice gets a private directory with its ini, userlist, Unix socket and log;
 * the directory is removed after a passing test and kept, with the log's tail
 * printed, after a failing one.  All waiting is polling for an observable
 * condition under a bounded deadline, so a broken sluice fails a test instead
 * of hanging it.
 */
#ifndef SLUICE_TEST_HARNESS_H
#define SLUICE_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

/* The Postgres cluster under test, from the environment pg.sh writes. */
struct harness_pg {
	const char *host;       /* TCP address sluice reaches Postgres on */
	int port;               /* Postgres TCP port (also names its Unix socket) */
	const char *socket_dir; /* Unix socket directory, for superuser connections */
	const char *super;      /* superuser, trusted over the Unix socket */
	const char *bindir;     /* where psql and pgbench live */
};

/* One running sluice process. */
struct harness_sluice {
	int port;                /* TCP port it listens on, 127.0.0.1 only */
	pid_t pid;               /* process id; 0 once reaped */
	int wait_status;         /* waitpid() status, valid once pid is 0 */
	char dir[256];           /* private directory; also its unix_socket_dir */
	char ini_path[300];      /* sluice.ini in dir */
	char userlist_path[300]; /* userlist.txt in dir */
	char log_path[300];      /* stdout and stderr of sluice */
	char *extra_users;       /* userlist lines added to the default users */
	bool client_tls;         /* SLUICE_TEST_CLIENT_TLS gave it TLS: harness_connect uses it */
};

/* Skips the current test when no cluster was started for it. */
const struct harness_pg *harness_pg(void);

/*
 * Starts sluice and returns once it answers connections.  `extra_ini` is ini
 * text merged into the default file: keys before any section header go to
 * [sluice], a key that already exists replaces the default, new sections are
 * appended.  @PGHOST@, @PGPORT@ and @DIR@ are replaced by the Postgres address,
 * port and the private directory.  Default users: app/app-secret and
 * md5user/md5-secret; `extra_users` adds userlist lines.
 */
struct harness_sluice *harness_start_sluice(const char *extra_ini);
struct harness_sluice *harness_start_sluice_users(const char *extra_ini, const char *extra_users);

/* A directory, port and ini as for harness_start_sluice, but nothing started. */
struct harness_sluice *harness_prepare_sluice(const char *extra_ini);
/*
 * Starts a prepared sluice with `fds` as systemd's socket activation passes
 * them: descriptors 3.., LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES (`names`,
 * colon-separated).  Returns at once; wait for what it should do.
 */
void harness_spawn_activated(struct harness_sluice *h, const int *fds, int nfds, const char *names);
/*
 * Starts another sluice on the directory, port and ini of `like`, with `arg`
 * (e.g. "--takeover") before the ini path; it logs to its own file there.
 * Returns at once.
 */
struct harness_sluice *harness_spawn_sibling(struct harness_sluice *like, const char *arg);

/* Rewrites the ini with new extras (same port and directory), as for a reload. */
void harness_write_ini(struct harness_sluice *h, const char *extra_ini);
void harness_write_file(const char *path, const char *text);

/* Sends `sig` (unless 0) and waits up to `timeout_s` for the exit.  Returns the
 * exit code, 128 + signal if it was killed, or -1 if it did not exit in time. */
int harness_stop_sluice(struct harness_sluice *h, int sig, double timeout_s);
bool harness_sluice_alive(struct harness_sluice *h);
void harness_signal(struct harness_sluice *h, int sig);

/* Stops whatever sluice processes the test left running (SIGINT; the test fails
 * unless each exits 0) and closes the cached superuser connection; use as the
 * suite's .fini. */
void harness_teardown(void);

/* libpq connection through sluice; check PQstatus yourself. */
PGconn *harness_connect(struct harness_sluice *h, const char *user, const char *password,
                        const char *db);
/* Same, but the test fails (with libpq's message) unless it connects. */
PGconn *harness_connect_ok(struct harness_sluice *h, const char *user, const char *password,
                           const char *db);
/*
 * Tries to connect and returns true if that failed, copying the SQLSTATE of
 * the server's error into `sqlstate` ("" if the failure carried none).
 */
bool harness_connect_fails(struct harness_sluice *h, const char *user, const char *password,
                           const char *db, char sqlstate[6]);
/* "postgres://user:password@127.0.0.1:port/db" for psql and pgbench. */
void harness_url(struct harness_sluice *h, const char *user, const char *password, const char *db,
                 char *buf, size_t len);

/* Direct superuser connection to Postgres over its Unix socket (db NULL = postgres). */
PGconn *harness_pg_super(const char *db);

/* Runs `sql`; the test fails unless it succeeds.  Returns the result to PQclear. */
PGresult *harness_exec_ok(PGconn *conn, const char *sql);
/* First column of the first row as a number; the test fails on error or no row. */
long long harness_query_int(PGconn *conn, const char *sql);
/* The SQLSTATE of a failed result ("" if none). */
const char *harness_sqlstate(const PGresult *res);

/* Backends of `user` on the cluster in `state` (NULL = any state). */
long long harness_count_backends(const char *user, const char *state);
/* Backends of `user` whose query text contains `fragment` and that are active. */
long long harness_count_active_queries(const char *user, const char *fragment);

bool harness_log_contains(struct harness_sluice *h, const char *needle);
/* Size of the log now, to look only at what a later step writes. */
long harness_log_size(struct harness_sluice *h);
bool harness_log_contains_after(struct harness_sluice *h, long offset, const char *needle);

/* Path of a Postgres client program (psql, pgbench). */
const char *harness_pg_tool(const char *name, char *buf, size_t len);
/* pgbench -i -s1 directly against Postgres, as app so that app owns the tables. */
void harness_pgbench_init(void);
/*
 * Runs argv[0] with stdout and stderr captured into *output (malloc'd, NUL
 * terminated; may be NULL).  `env` adds "K=V" entries (NULL-terminated list or
 * NULL).  Returns the exit code, 128 + signal, or -1 if it ran past timeout_s
 * (it is then killed).
 */
int harness_run(const char *const argv[], const char *const env[], double timeout_s, char **output);

/* A program started by harness_run_start, its output going to a file. */
struct harness_job {
	pid_t pid; /* the child */
	int outfd; /* its stdout and stderr (an unlinked temporary file) */
};
/* Like harness_run, but returns at once. */
struct harness_job harness_run_start(const char *const argv[], const char *const env[]);
/* Waits up to timeout_s (then kills it); returns as harness_run does. */
int harness_run_finish(struct harness_job *job, double timeout_s, char **output);

/*
 * In a fresh directory (its path into dir): ca.crt signing server.crt
 * (localhost, 127.0.0.1) and client.crt (CN app), and other-ca.crt, which
 * signed nothing of these.
 */
void harness_make_certs(char *dir, size_t len);
/* Into buf, ini lines serving clients TLS in `mode` with the server pair harness_make_certs made.
 */
const char *harness_client_tls_ini(char *buf, size_t len, const char *mode, const char *certs);

/* Raises RLIMIT_NOFILE to at least `want` (up to the hard limit). */
void harness_raise_nofile(long want);

/* Raw protocol bytes on a socket (a libpq connection's PQsocket, or a raw connect). */
void harness_send_all(int fd, const void *buf, size_t len);
void harness_put_u32(unsigned char *p, uint32_t v); /* big-endian */
/*
 * Reads until the peer closes (a reset counts as closed) and returns how many
 * bytes came; fails the test if the connection is still open after 20 s.
 */
size_t harness_read_to_close(int fd, unsigned char *buf, size_t cap);
/* The reply must be one ErrorResponse, then the close: its SQLSTATE goes to `sqlstate`; closes fd.
 */
void harness_expect_error_and_close(int fd, char sqlstate[6]);

/* Appends one message of `type` with body `body` (n bytes) at buf + *len; *len grows. */
void harness_put_msg(unsigned char *buf, size_t *len, char type, const void *body, size_t n);
/* Appends a Query of `sql`. */
void harness_put_query(unsigned char *buf, size_t *len, const char *sql);
/*
 * Reads replies up to the `ready`th ReadyForQuery and writes them down as
 * text: each type letter and a space, with the tag of a CommandComplete, the
 * SQLSTATE of an ErrorResponse, the first value of a DataRow and the status
 * of a ReadyForQuery in parentheses, e.g. "G C(COPY 2) Z(I) ".  CLOSED or
 * TIMEOUT (after 20 s) ends it early.  What follows the last ReadyForQuery in
 * the same read is not looked at.
 */
void harness_transcript(int fd, int ready, char *out, size_t cap);
/* Sends `len` bytes of `buf` on c's socket; the transcript of `ready` replies must be `want`. */
void harness_expect_transcript(PGconn *c, const unsigned char *buf, size_t len, int ready,
                               const char *want, const char *what);

/* Resident size of the sluice process (VmRSS), in kB. */
long harness_rss_kb(struct harness_sluice *h);
/*
 * False under AddressSanitizer (tests/run.sh's second pass sets ASAN_OPTIONS):
 * freed memory waits in its quarantine there, so RSS bounds say nothing, and
 * LeakSanitizer checks at exit that everything was freed instead.
 */
bool harness_rss_is_meaningful(void);

/* The whole file, NUL-terminated (malloc'd); the test fails if it cannot be read. */
char *harness_read_file(const char *path);

/*
 * The HTTP endpoint (metrics_listen = 127.0.0.1:0): its port, from the line
 * sluice logs once it is bound, so no port can be taken between choosing and
 * binding.  Waits for that line; the test fails without it.
 */
int harness_metrics_port(struct harness_sluice *h);

/* A reply over HTTP/1.0 (it ends when the server closes). */
struct harness_http_reply {
	int status; /* 0 when nothing answered */
	char *text; /* whole reply, malloc'd even when nothing answered */
	char *body; /* inside text ("" without a reply) */
};
struct harness_http_reply harness_http_get(int port, const char *path);
/* GET /metrics: the body (malloc'd); the test fails unless the status is 200. */
char *harness_metrics(int port);
/* The value of the sample whose name and labels are exactly `series`; -1 if absent. */
double harness_metric_sample(const char *body, const char *series);
/* `promtool check metrics` must accept `body` (kept in h's directory as metrics.txt). */
void harness_promtool_check(struct harness_sluice *h, const char *body);

double harness_now(void);
/* The interval between two looks at a polled condition. */
void harness_pause(void);

/*
 * Re-evaluates `cond` until it holds or `timeout_s` passes; yields whether it
 * held.  The deadline only bounds a failure, it never decides a pass.
 */
#define harness_wait_for(cond, timeout_s)                                                          \
	({                                                                                         \
		double harness_end_ = harness_now() + (timeout_s);                                 \
		bool harness_ok_;                                                                  \
		while (!(harness_ok_ = (cond)) && harness_now() < harness_end_)                    \
			harness_pause();                                                           \
		harness_ok_;                                                                       \
	})

#endif
