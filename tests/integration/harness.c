/*
 * Integration test harness: see harness.h for what it offers.  Besides the
 * helpers, it holds criterion report hooks that run in criterion's runner
 * process: a test process writes down the directories of the sluice processes
 * it started, and after the test the runner prints the tail of their logs if
 * the test failed (then keeps the directories) or deletes them if it passed.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>

#define MAX_SLUICES 8
/*
 * Start and connect bounds only stop a hung test: a passing one never waits them out; a
 * loaded two-core machine has taken 9 s for one Postgres login through sluice.
 */
#define START_TIMEOUT_S 60.0
#define QUIET_TIMEOUT_S 10.0
/* SIGINT exits within about 200 ms; the rest is for a loaded machine under ASan. */
#define TEARDOWN_EXIT_S  30.0
#define CONNECT_TIMEOUT  "60"
#define LOG_TAIL_LINES   200
#define LOG_TAIL_BYTES   (256 * 1024)
#define INI_MAX_SECTIONS 8
#define INI_MAX_KEYS     32

extern char **environ;

/*
 * State of one test process.  A failed assertion leaves the test body through
 * a longjmp, so the suite's .fini can only find what the test started here.
 */
static struct harness_sluice *started[MAX_SLUICES];
static size_t nstarted;
static PGconn *cached_super; /* for the pg_stat_activity helpers */
static struct harness_pg pg;
static bool pg_loaded;

double harness_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void harness_pause(void)
{
	const struct timespec ten_ms = {0, 10 * 1000 * 1000};

	nanosleep(&ten_ms, NULL);
}

static const char *env_or(const char *name, const char *fallback)
{
	const char *value = getenv(name);

	return value != NULL && *value != '\0' ? value : fallback;
}

const struct harness_pg *harness_pg(void)
{
	const char *port = getenv("SLUICE_TEST_PGPORT");

	if (pg_loaded)
		return &pg;
	if (port == NULL || *port == '\0')
		cr_skip_test("SLUICE_TEST_PGPORT is not set: no Postgres to test against "
		             "(tests/run.sh starts one; or run tests/harness/pg.sh start and "
		             "export the variables in .run/pg.env)");
	pg.host = env_or("SLUICE_TEST_PGHOST", "127.0.0.1");
	pg.port = atoi(port);
	pg.socket_dir = env_or("SLUICE_TEST_PGSOCKET", "/tmp");
	pg.super = env_or("SLUICE_TEST_PGSUPER", "sluicepg");
	pg.bindir = env_or("SLUICE_TEST_PGBIN", "/usr/lib/postgresql/15/bin");
	pg_loaded = true;
	return &pg;
}

/* ---- files ---- */

void harness_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert(f != NULL, "open %s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert(fclose(f) == 0, "write %s: %s", path, strerror(errno));
}

static char *read_file(const char *path, long from, long *size)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long len;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	if (from > len)
		from = len;
	fseek(f, from, SEEK_SET);
	buf = malloc((size_t)(len - from) + 1);
	len = (long)fread(buf, 1, (size_t)(len - from), f);
	buf[len] = '\0';
	fclose(f);
	if (size != NULL)
		*size = len;
	return buf;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void remove_tree(const char *dir)
{
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- ini text ---- */

struct ini_key {
	char key[64];     /* option or database name */
	char value[1024]; /* everything after '=' */
};

struct ini_section {
	char name[64];                     /* without brackets */
	struct ini_key keys[INI_MAX_KEYS]; /* in the order first set */
	size_t nkeys;
};

struct ini {
	struct ini_section sections[INI_MAX_SECTIONS]; /* in the order first named */
	size_t nsections;
};

static struct ini_section *ini_section(struct ini *ini, const char *name)
{
	struct ini_section *s;

	for (size_t i = 0; i < ini->nsections; i++)
		if (strcmp(ini->sections[i].name, name) == 0)
			return &ini->sections[i];
	cr_assert(ini->nsections < INI_MAX_SECTIONS, "too many ini sections");
	s = &ini->sections[ini->nsections++];
	snprintf(s->name, sizeof(s->name), "%s", name);
	return s;
}

/* Replaces the key's value, or appends the key: test extras override defaults. */
static void ini_set(struct ini *ini, const char *section, const char *key, const char *value)
{
	struct ini_section *s = ini_section(ini, section);
	struct ini_key *k = NULL;

	for (size_t i = 0; i < s->nkeys && k == NULL; i++)
		if (strcmp(s->keys[i].key, key) == 0)
			k = &s->keys[i];
	if (k == NULL) {
		cr_assert(s->nkeys < INI_MAX_KEYS, "too many keys in [%s]", section);
		k = &s->keys[s->nkeys++];
		snprintf(k->key, sizeof(k->key), "%s", key);
	}
	snprintf(k->value, sizeof(k->value), "%s", value);
}

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

static void ini_merge(struct ini *ini, const char *text)
{
	char *copy = strdup(text), *save = NULL;
	char section[64] = "sluice";

	for (char *line = strtok_r(copy, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *l = trim(line), *eq;

		if (*l == '\0' || *l == ';' || *l == '#')
			continue;
		if (*l == '[') {
			char *close = strchr(l, ']');

			cr_assert(close != NULL, "bad section line in test ini: %s", l);
			*close = '\0';
			snprintf(section, sizeof(section), "%s", l + 1);
			ini_section(ini, section);
			continue;
		}
		eq = strchr(l, '=');
		cr_assert(eq != NULL, "test ini line without '=': %s", l);
		*eq = '\0';
		ini_set(ini, section, trim(l), trim(eq + 1));
	}
	free(copy);
}

static void ini_write(const struct ini *ini, const char *path)
{
	FILE *f = fopen(path, "w");

	cr_assert(f != NULL, "open %s: %s", path, strerror(errno));
	for (size_t i = 0; i < ini->nsections; i++) {
		const struct ini_section *s = &ini->sections[i];

		fprintf(f, "%s[%s]\n", i > 0 ? "\n" : "", s->name);
		for (size_t k = 0; k < s->nkeys; k++)
			fprintf(f, "%s = %s\n", s->keys[k].key, s->keys[k].value);
	}
	cr_assert(fclose(f) == 0, "write %s: %s", path, strerror(errno));
}

/* Replaces the @NAME@ placeholders documented in harness.h. */
static char *substitute(const struct harness_sluice *h, const char *text)
{
	const struct harness_pg *p = harness_pg();
	char port[16];
	const char *names[] = {"@PGHOST@", "@PGPORT@", "@DIR@"};
	const char *values[] = {p->host, port, h->dir};
	size_t cap = strlen(text) * 4 + 1024, len = 0;
	char *out = malloc(cap);

	snprintf(port, sizeof(port), "%d", p->port);
	while (*text != '\0') {
		size_t i;

		for (i = 0; i < 3; i++)
			if (strncmp(text, names[i], strlen(names[i])) == 0)
				break;
		if (i < 3) {
			size_t vlen = strlen(values[i]);

			if (len + vlen + 1 > cap)
				out = realloc(out, cap = (len + vlen + 1) * 2);
			memcpy(out + len, values[i], vlen);
			len += vlen;
			text += strlen(names[i]);
		} else {
			if (len + 2 > cap)
				out = realloc(out, cap *= 2);
			out[len++] = *text++;
		}
	}
	out[len] = '\0';
	return out;
}

void harness_write_ini(struct harness_sluice *h, const char *extra_ini)
{
	const struct harness_pg *p = harness_pg();
	struct ini *ini = calloc(1, sizeof(*ini));
	char buf[1024];

	ini_set(ini, "sluice", "listen_addr", "127.0.0.1");
	snprintf(buf, sizeof(buf), "%d", h->port);
	ini_set(ini, "sluice", "listen_port", buf);
	ini_set(ini, "sluice", "unix_socket_dir", h->dir);
	ini_set(ini, "sluice", "auth_file", h->userlist_path);
	ini_set(ini, "sluice", "log_level", "debug");
	snprintf(buf, sizeof(buf), "host=%s port=%d dbname=app", p->host, p->port);
	ini_set(ini, "databases", "app", buf);
	snprintf(buf, sizeof(buf), "host=%s port=%d dbname=other", p->host, p->port);
	ini_set(ini, "databases", "other", buf);
	/*
	 * SLUICE_TEST_CLIENT_TLS=1 runs the suites over client TLS: every sluice
	 * whose test does not set client_tls_sslmode itself takes TLS, and
	 * harness_connect asks for it (sslmode=require: with prefer, libpq
	 * retries a refused login in the clear, and tests count refusals).
	 */
	h->client_tls = strcmp(env_or("SLUICE_TEST_CLIENT_TLS", "0"), "1") == 0 &&
	                (extra_ini == NULL || strstr(extra_ini, "client_tls_sslmode") == NULL);
	if (h->client_tls) {
		static char certs[64];

		if (certs[0] == '\0')
			harness_make_certs(certs, sizeof(certs));
		ini_set(ini, "sluice", "client_tls_sslmode", "prefer");
		snprintf(buf, sizeof(buf), "%s/server.crt", certs);
		ini_set(ini, "sluice", "client_tls_cert_file", buf);
		snprintf(buf, sizeof(buf), "%s/server.key", certs);
		ini_set(ini, "sluice", "client_tls_key_file", buf);
	}
	/*
	 * SLUICE_TEST_WORKERS=N runs every sluice whose test does not set
	 * workers itself with N workers (the default, auto, is the machine's
	 * cores): multi-worker paths on a machine with few cores.
	 */
	if (env_or("SLUICE_TEST_WORKERS", "")[0] != '\0' &&
	    (extra_ini == NULL || strstr(extra_ini, "workers") == NULL))
		ini_set(ini, "sluice", "workers", env_or("SLUICE_TEST_WORKERS", ""));
	if (extra_ini != NULL) {
		char *text = substitute(h, extra_ini);

		ini_merge(ini, text);
		free(text);
	}
	ini_write(ini, h->ini_path);
	free(ini);
}

static void write_userlist(const struct harness_sluice *h)
{
	char text[4096];

	snprintf(text, sizeof(text), "\"app\" \"app-secret\"\n\"md5user\" \"md5-secret\"\n%s\n",
	         h->extra_users != NULL ? h->extra_users : "");
	harness_write_file(h->userlist_path, text);
}

/* ---- run records, read by the report hooks ---- */

/* Tests that passed but whose teardown failed; counted in the runner process. */
static size_t teardown_failed_tests;

/* This test's record file, with `suffix`; false outside a run or a test. */
static bool record_path(char *path, size_t len, const struct criterion_test *test,
                        const char *suffix)
{
	const char *rundir = getenv("SLUICE_IT_RUNDIR");

	if (rundir == NULL || test == NULL)
		return false;
	snprintf(path, len, "%s/%s.%s%s", rundir, test->category, test->name, suffix);
	return true;
}

/* Appends a started sluice's directory to this test's record file. */
static void record_dir(const char *dir)
{
	char path[512];
	FILE *f;

	if (!record_path(path, sizeof(path), criterion_current_test, ""))
		return;
	f = fopen(path, "a");
	if (f != NULL) {
		fprintf(f, "%s\n", dir);
		fclose(f);
	}
}

static void print_log_tail(const char *dir)
{
	char path[600];
	long size = 0, from;
	struct stat st;
	char *text, *start;
	int lines = 0;

	snprintf(path, sizeof(path), "%s/sluice.log", dir);
	if (stat(path, &st) != 0) {
		fprintf(stderr, "---- no sluice log at %s\n", path);
		return;
	}
	from = st.st_size > LOG_TAIL_BYTES ? (long)st.st_size - LOG_TAIL_BYTES : 0;
	text = read_file(path, from, &size);
	if (text == NULL)
		return;
	start = text + size;
	while (start > text && lines <= LOG_TAIL_LINES)
		if (*--start == '\n')
			lines++;
	if (lines > LOG_TAIL_LINES)
		start++;
	fprintf(stderr, "---- last %d lines of %s (directory kept) ----\n%s---- end of log ----\n",
	        LOG_TAIL_LINES, path, start);
	free(text);
}

static void report_dirs(const struct criterion_test_stats *stats, bool failed)
{
	char path[512], line[512];
	FILE *f;

	if (!record_path(path, sizeof(path), stats->test, ""))
		return;
	f = fopen(path, "r");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (failed)
			print_log_tail(line);
		else
			remove_tree(line);
	}
	fclose(f);
	unlink(path);
}

/* Runs in criterion's runner before any test: test processes inherit the variable. */
ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	char dir[256];

	snprintf(dir, sizeof(dir), "%s/sluice-it-run.XXXXXX", env_or("TMPDIR", "/tmp"));
	if (mkdtemp(dir) != NULL)
		setenv("SLUICE_IT_RUNDIR", dir, 1);
}

/*
 * Whether harness_teardown failed in this test's process (it left a note):
 * Criterion ignores assertions in a .fini, so the note is how a sluice that
 * crashed or hung on its way out fails the test.
 */
static bool teardown_failed(const struct criterion_test_stats *stats)
{
	char path[512];
	char *note;

	if (!record_path(path, sizeof(path), stats->test, ".teardown"))
		return false;
	note = read_file(path, 0, NULL);
	if (note == NULL)
		return false;
	fprintf(stderr, "[FAIL] %s::%s: teardown: %s\n", stats->test->category, stats->test->name,
	        note);
	free(note);
	unlink(path);
	return true;
}

/* After fini: a failing test's sluice logs are printed here, once it has stopped. */
ReportHook(POST_FINI)(struct criterion_test_stats *stats)
{
	bool failed = stats->test_status == CR_STATUS_FAILED;

	if (teardown_failed(stats) && !failed) {
		teardown_failed_tests++;
		failed = true;
	}
	report_dirs(stats, failed);
}

/* A crashed test gets no POST_FINI. */
ReportHook(TEST_CRASH)(struct criterion_test_stats *stats)
{
	teardown_failed(stats);
	report_dirs(stats, true);
}

/* Criterion's summary and exit status come from these counts, read after this hook. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	const char *rundir = getenv("SLUICE_IT_RUNDIR");

	stats->tests_failed += teardown_failed_tests;
	stats->tests_passed -= teardown_failed_tests;
	if (rundir != NULL)
		rmdir(rundir);
}

/* ---- sluice processes ---- */

static int free_port(void)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
	                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0, "socket: %s", strerror(errno));
	cr_assert(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0, "bind: %s",
	          strerror(errno));
	getsockname(fd, (struct sockaddr *)&addr, &len);
	close(fd);
	return ntohs(addr.sin_port);
}

/*
 * The environment minus SLUICE_*: sluice reads SLUICE_<OPTION> overrides, and
 * the test runner's own SLUICE_BIN, SLUICE_TEST_* or a developer's
 * SLUICE_DATABASE_URL must not change the configuration under test.
 */
static char **sluice_environment(void)
{
	size_t n = 0, out = 0;
	char **envp;

	while (environ[n] != NULL)
		n++;
	envp = calloc(n + 1, sizeof(*envp));
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "SLUICE_", 7) != 0)
			envp[out++] = environ[i];
	return envp;
}

/*
 * Starts `bin` on h's ini, with `arg` (NULL = none) before the path.  With
 * `nfds` sockets, they become descriptors 3... and LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES say so, as systemd's socket activation does.
 */
static void spawn_with(struct harness_sluice *h, const char *bin, const char *arg, const int *fds,
                       int nfds, const char *names)
{
	char **envp = sluice_environment();
	char *argv[] = {(char *)bin, arg != NULL ? (char *)arg : h->ini_path,
	                arg != NULL ? h->ini_path : NULL, NULL};
	int logfd = open(h->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	pid_t parent = getpid(), pid;
	char listen_pid[32], listen_fds[32], listen_names[256];

	cr_assert(logfd >= 0, "open %s: %s", h->log_path, strerror(errno));
	pid = fork();
	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY), high[8];
		size_t n = 0;

		/* A test killed by criterion's timeout must not leave sluice behind. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(devnull, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		/* Out of the way first, so moving one to 3+i never overwrites another. */
		for (int i = 0; i < nfds && i < 8; i++)
			high[i] = fcntl(fds[i], F_DUPFD, 100);
		for (int i = 0; i < nfds && i < 8; i++)
			dup2(high[i], 3 + i);
		/* Our client sockets must close when the test closes them. */
		close_range(3 + (unsigned)nfds, ~0U, 0);
		if (nfds > 0) {
			while (envp[n] != NULL)
				n++;
			envp = realloc(envp, (n + 4) * sizeof(*envp));
			snprintf(listen_pid, sizeof(listen_pid), "LISTEN_PID=%d", (int)getpid());
			snprintf(listen_fds, sizeof(listen_fds), "LISTEN_FDS=%d", nfds);
			snprintf(listen_names, sizeof(listen_names), "LISTEN_FDNAMES=%s",
			         names != NULL ? names : "");
			envp[n++] = listen_pid;
			envp[n++] = listen_fds;
			envp[n++] = listen_names;
			envp[n] = NULL;
		}
		execve(bin, argv, envp);
		dprintf(2, "harness: exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	close(logfd);
	free(envp);
	h->pid = pid;
}

static void spawn(struct harness_sluice *h, const char *bin)
{
	spawn_with(h, bin, NULL, NULL, 0, NULL);
}

bool harness_sluice_alive(struct harness_sluice *h)
{
	int status;

	if (h->pid == 0)
		return false;
	if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
		h->wait_status = status;
		h->pid = 0;
		return false;
	}
	return true;
}

static bool answers(const struct harness_sluice *h)
{
	char conninfo[256];

	/* Plain: a sluice that requires TLS (or client certificates) still answers it. */
	snprintf(conninfo, sizeof(conninfo),
	         "host=127.0.0.1 port=%d dbname=app user=app connect_timeout=2 sslmode=disable",
	         h->port);
	return PQping(conninfo) == PQPING_OK;
}

/* Waits for the backends of the test users that an earlier test's sluice left. */
static void wait_for_quiet_cluster(void)
{
	bool quiet = harness_wait_for(
	    harness_count_backends("app", NULL) + harness_count_backends("md5user", NULL) == 0,
	    QUIET_TIMEOUT_S);

	if (!quiet)
		fprintf(stderr, "harness: warning: backends of app/md5user still connected to "
		                "Postgres; counts of backends in this test include them\n");
}

struct harness_sluice *harness_start_sluice_users(const char *extra_ini, const char *extra_users)
{
	const char *bin = getenv("SLUICE_BIN");
	struct harness_sluice *h;

	harness_pg();
	cr_assert(bin != NULL && access(bin, X_OK) == 0,
	          "SLUICE_BIN (%s) is not an executable: build sluice first",
	          bin != NULL ? bin : "unset");
	cr_assert(nstarted < MAX_SLUICES, "too many sluice processes in one test");
	wait_for_quiet_cluster();

	h = calloc(1, sizeof(*h));
	snprintf(h->dir, sizeof(h->dir), "%s/sluice-it.XXXXXX", env_or("TMPDIR", "/tmp"));
	cr_assert(mkdtemp(h->dir) != NULL, "mkdtemp: %s", strerror(errno));
	snprintf(h->ini_path, sizeof(h->ini_path), "%s/sluice.ini", h->dir);
	snprintf(h->userlist_path, sizeof(h->userlist_path), "%s/userlist.txt", h->dir);
	snprintf(h->log_path, sizeof(h->log_path), "%s/sluice.log", h->dir);
	h->extra_users = extra_users != NULL ? strdup(extra_users) : NULL;
	started[nstarted++] = h;
	record_dir(h->dir);
	write_userlist(h);

	/*
	 * The port is free when chosen but another process may take it before
	 * sluice binds; sluice then exits, and a new port is tried.
	 */
	for (int attempt = 0; attempt < 3; attempt++) {
		h->port = free_port();
		harness_write_ini(h, extra_ini);
		spawn(h, bin);
		if (harness_wait_for(!harness_sluice_alive(h) || answers(h), START_TIMEOUT_S) &&
		    h->pid != 0)
			return h;
		if (h->pid != 0)
			break;
	}
	cr_assert_fail("sluice did not come up (port %d, still running: %s); see %s", h->port,
	               h->pid != 0 ? "yes" : "no", h->log_path);
	return NULL; /* not reached: a failed assertion leaves the test */
}

struct harness_sluice *harness_prepare_sluice(const char *extra_ini)
{
	struct harness_sluice *h;

	harness_pg();
	cr_assert(nstarted < MAX_SLUICES, "too many sluice processes in one test");
	wait_for_quiet_cluster();
	h = calloc(1, sizeof(*h));
	snprintf(h->dir, sizeof(h->dir), "%s/sluice-it.XXXXXX", env_or("TMPDIR", "/tmp"));
	cr_assert(mkdtemp(h->dir) != NULL, "mkdtemp: %s", strerror(errno));
	snprintf(h->ini_path, sizeof(h->ini_path), "%s/sluice.ini", h->dir);
	snprintf(h->userlist_path, sizeof(h->userlist_path), "%s/userlist.txt", h->dir);
	snprintf(h->log_path, sizeof(h->log_path), "%s/sluice.log", h->dir);
	started[nstarted++] = h;
	record_dir(h->dir);
	write_userlist(h);
	h->port = free_port();
	harness_write_ini(h, extra_ini);
	return h;
}

static const char *sluice_bin(void)
{
	const char *bin = getenv("SLUICE_BIN");

	cr_assert(bin != NULL && access(bin, X_OK) == 0,
	          "SLUICE_BIN (%s) is not an executable: build sluice first",
	          bin != NULL ? bin : "unset");
	return bin;
}

void harness_spawn_activated(struct harness_sluice *h, const int *fds, int nfds, const char *names)
{
	cr_assert(nfds <= 8, "at most 8 sockets");
	spawn_with(h, sluice_bin(), NULL, fds, nfds, names);
}

struct harness_sluice *harness_spawn_sibling(struct harness_sluice *like, const char *arg)
{
	struct harness_sluice *h;

	cr_assert(nstarted < MAX_SLUICES, "too many sluice processes in one test");
	h = calloc(1, sizeof(*h));
	*h = *like;
	h->pid = 0;
	h->extra_users = NULL;
	snprintf(h->log_path, sizeof(h->log_path), "%s/sluice-%zu.log", like->dir, nstarted);
	/* The directory is the first one's: recorded, and removed, once. */
	started[nstarted++] = h;
	spawn_with(h, sluice_bin(), arg, NULL, 0, NULL);
	return h;
}

struct harness_sluice *harness_start_sluice(const char *extra_ini)
{
	return harness_start_sluice_users(extra_ini, NULL);
}

void harness_signal(struct harness_sluice *h, int sig)
{
	cr_assert(h->pid != 0, "sluice is not running");
	kill(h->pid, sig);
}

static int decode_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

int harness_stop_sluice(struct harness_sluice *h, int sig, double timeout_s)
{
	if (sig != 0 && harness_sluice_alive(h))
		kill(h->pid, sig);
	if (!harness_wait_for(!harness_sluice_alive(h), timeout_s)) {
		kill(h->pid, SIGKILL);
		waitpid(h->pid, &h->wait_status, 0);
		h->pid = 0;
		return -1;
	}
	return decode_status(h->wait_status);
}

/* Where a failed teardown says why: this test's note, read by POST_FINI, or stderr. */
static FILE *teardown_note(void)
{
	char path[512];
	FILE *f = NULL;

	if (record_path(path, sizeof(path), criterion_current_test, ".teardown"))
		f = fopen(path, "w");
	return f != NULL ? f : stderr;
}

/*
 * Every sluice a test left running gets SIGINT, the fast exit, and must exit 0
 * within TEARDOWN_EXIT_S: a crash, a hang or (under ASan and UBSan, which
 * abort on a report) a leak or undefined behaviour on the way out fails the
 * test that left it there.
 */
void harness_teardown(void)
{
	FILE *note = NULL;

	for (size_t i = 0; i < nstarted; i++)
		if (harness_sluice_alive(started[i]))
			kill(started[i]->pid, SIGINT);
	for (size_t i = 0; i < nstarted; i++) {
		struct harness_sluice *h = started[i];
		int status = h->pid != 0 ? harness_stop_sluice(h, 0, TEARDOWN_EXIT_S) : 0;

		if (status != 0 && note == NULL)
			note = teardown_note();
		if (status < 0)
			fprintf(note, "sluice on port %d (%s) still ran %.0f s after SIGINT; ",
			        h->port, h->dir, TEARDOWN_EXIT_S);
		else if (status != 0)
			fprintf(note, "sluice on port %d (%s) exited with status %d after SIGINT; ",
			        h->port, h->dir, status);
		free(h->extra_users);
		free(h);
	}
	nstarted = 0;
	if (cached_super != NULL)
		PQfinish(cached_super);
	cached_super = NULL;
	if (note != NULL && note != stderr)
		fclose(note);
}

/* ---- connections ---- */

/* A login to h: sslmode=require only where SLUICE_TEST_CLIENT_TLS gave it TLS. */
struct login_params {
	char port[16];
	const char *keys[8];
	const char *values[8];
};

static void login_params(struct login_params *lp, struct harness_sluice *h, const char *user,
                         const char *password, const char *db)
{
	const char *keys[] = {"host",    "port", "user", "password", "dbname", "connect_timeout",
	                      "sslmode", NULL};
	const char *values[] = {"127.0.0.1", lp->port,        user,      password,
	                        db,          CONNECT_TIMEOUT, "require", NULL};

	snprintf(lp->port, sizeof(lp->port), "%d", h->port);
	memcpy(lp->keys, keys, sizeof(keys));
	memcpy(lp->values, values, sizeof(values));
	if (!h->client_tls)
		lp->keys[6] = NULL;
}

PGconn *harness_connect(struct harness_sluice *h, const char *user, const char *password,
                        const char *db)
{
	struct login_params lp;

	login_params(&lp, h, user, password, db);
	return PQconnectdbParams(lp.keys, lp.values, 0);
}

PGconn *harness_connect_ok(struct harness_sluice *h, const char *user, const char *password,
                           const char *db)
{
	PGconn *conn = harness_connect(h, user, password, db);

	cr_assert(PQstatus(conn) == CONNECTION_OK, "connect as %s to %s through sluice: %s", user,
	          db, PQerrorMessage(conn));
	return conn;
}

/* Finds "SEVERITY:  XXXXX:" in a verbose libpq message. */
static void sqlstate_from_message(const char *msg, char sqlstate[6])
{
	sqlstate[0] = '\0';
	for (const char *p = strstr(msg, ":  "); p != NULL; p = strstr(p + 1, ":  ")) {
		const char *code = p + 3;
		bool ok = true;

		for (int i = 0; i < 5 && ok; i++)
			ok = (code[i] >= '0' && code[i] <= '9') ||
			     (code[i] >= 'A' && code[i] <= 'Z');
		if (ok && code[5] == ':') {
			memcpy(sqlstate, code, 5);
			sqlstate[5] = '\0';
			return;
		}
	}
}

bool harness_connect_fails(struct harness_sluice *h, const char *user, const char *password,
                           const char *db, char sqlstate[6])
{
	struct login_params lp;
	PostgresPollingStatusType state = PGRES_POLLING_WRITING;
	double deadline = harness_now() + 30;
	PGconn *conn;
	bool failed;

	login_params(&lp, h, user, password, db);
	conn = PQconnectStartParams(lp.keys, lp.values, 0);
	cr_assert(conn != NULL, "out of memory");
	/*
	 * libpq formats connection errors with the connection's verbosity, and
	 * only the verbose form carries the SQLSTATE; it must be set before the
	 * handshake, hence the asynchronous connect.
	 */
	PQsetErrorVerbosity(conn, PQERRORS_VERBOSE);
	while (PQstatus(conn) != CONNECTION_BAD && state != PGRES_POLLING_OK &&
	       state != PGRES_POLLING_FAILED && harness_now() < deadline) {
		struct pollfd pfd = {.fd = PQsocket(conn),
		                     .events = state == PGRES_POLLING_READING ? POLLIN : POLLOUT};

		if (poll(&pfd, 1, 100) != 0)
			state = PQconnectPoll(conn);
	}
	cr_assert(state == PGRES_POLLING_OK || state == PGRES_POLLING_FAILED ||
	              PQstatus(conn) == CONNECTION_BAD,
	          "connecting as %s to %s did not finish", user, db);
	failed = PQstatus(conn) != CONNECTION_OK;
	sqlstate_from_message(PQerrorMessage(conn), sqlstate);
	if (failed)
		fprintf(stderr, "harness: connect as %s to %s failed as expected: %s", user, db,
		        PQerrorMessage(conn));
	PQfinish(conn);
	return failed;
}

void harness_url(struct harness_sluice *h, const char *user, const char *password, const char *db,
                 char *buf, size_t len)
{
	snprintf(buf, len, "postgres://%s:%s@127.0.0.1:%d/%s", user, password, h->port, db);
}

PGconn *harness_pg_super(const char *db)
{
	const struct harness_pg *p = harness_pg();
	char port[16];
	const char *keys[] = {"host", "port", "user", "dbname", "connect_timeout", NULL};
	const char *values[] = {p->socket_dir,   port, p->super, db != NULL ? db : "postgres",
	                        CONNECT_TIMEOUT, NULL};
	PGconn *conn;

	snprintf(port, sizeof(port), "%d", p->port);
	conn = PQconnectdbParams(keys, values, 0);
	cr_assert(PQstatus(conn) == CONNECTION_OK, "superuser connection to Postgres: %s",
	          PQerrorMessage(conn));
	return conn;
}

static PGconn *super(void)
{
	if (cached_super == NULL)
		cached_super = harness_pg_super(NULL);
	else if (PQstatus(cached_super) != CONNECTION_OK)
		PQreset(cached_super);
	return cached_super;
}

/* ---- queries ---- */

const char *harness_sqlstate(const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return state != NULL ? state : "";
}

PGresult *harness_exec_ok(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType status = PQresultStatus(res);

	cr_assert(status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK, "%s: %s %s", sql,
	          PQresStatus(status),
	          res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	return res;
}

long long harness_query_int(PGconn *conn, const char *sql)
{
	PGresult *res = harness_exec_ok(conn, sql);
	long long value;

	cr_assert(PQntuples(res) >= 1 && !PQgetisnull(res, 0, 0), "%s: no value", sql);
	value = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return value;
}

static long long count_query(const char *sql, const char *a, const char *b)
{
	const char *params[] = {a, b};
	PGresult *res = PQexecParams(super(), sql, 2, NULL, params, NULL, NULL, 0);
	long long n;

	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
	n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return n;
}

long long harness_count_backends(const char *user, const char *state)
{
	return count_query(
	    "select count(*) from pg_stat_activity where usename = $1 "
	    "and backend_type = 'client backend' and ($2::text is null or state = $2)",
	    user, state);
}

long long harness_count_active_queries(const char *user, const char *fragment)
{
	return count_query("select count(*) from pg_stat_activity where usename = $1 "
	                   "and state = 'active' and position($2 in query) > 0",
	                   user, fragment);
}

/* ---- logs ---- */

long harness_log_size(struct harness_sluice *h)
{
	struct stat st;

	return stat(h->log_path, &st) == 0 ? (long)st.st_size : 0;
}

bool harness_log_contains_after(struct harness_sluice *h, long offset, const char *needle)
{
	char *text = read_file(h->log_path, offset, NULL);
	bool found = text != NULL && strstr(text, needle) != NULL;

	free(text);
	return found;
}

bool harness_log_contains(struct harness_sluice *h, const char *needle)
{
	return harness_log_contains_after(h, 0, needle);
}

/* ---- programs ---- */

const char *harness_pg_tool(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", harness_pg()->bindir, name);
	if (access(buf, X_OK) != 0)
		snprintf(buf, len, "%s", name);
	return buf;
}

/* environ plus `extra`, where an extra "K=V" replaces the inherited K. */
static char **merged_environment(const char *const extra[])
{
	size_t n = 0, nextra = 0, out = 0;
	char **envp;

	while (environ[n] != NULL)
		n++;
	while (extra != NULL && extra[nextra] != NULL)
		nextra++;
	envp = calloc(n + nextra + 1, sizeof(*envp));
	for (size_t i = 0; i < n; i++) {
		bool replaced = false;

		for (size_t k = 0; k < nextra && !replaced; k++) {
			size_t keylen = strcspn(extra[k], "=");

			replaced = strncmp(environ[i], extra[k], keylen + 1) == 0;
		}
		if (!replaced)
			envp[out++] = environ[i];
	}
	for (size_t k = 0; k < nextra; k++)
		envp[out++] = (char *)extra[k];
	return envp;
}

int harness_run(const char *const argv[], const char *const env[], double timeout_s, char **output)
{
	char **envp = merged_environment(env);
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	double deadline = harness_now() + timeout_s;
	bool timed_out = false;
	int pipefd[2], status;
	pid_t pid;

	cr_assert(pipe2(pipefd, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
	pid = fork();
	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(devnull, 0);
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		close_range(3, ~0U, 0);
		execvpe(argv[0], (char *const *)argv, envp);
		dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	free(envp);
	for (;;) {
		struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
		double left = deadline - harness_now();
		ssize_t n;

		if (left <= 0) {
			timed_out = true;
			kill(pid, SIGKILL);
			break;
		}
		if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		if (cap - len < 4096)
			buf = realloc(buf, cap *= 2);
		n = read(pipefd[0], buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(pipefd[0]);
	buf[len] = '\0';
	waitpid(pid, &status, 0);
	if (output != NULL)
		*output = buf;
	else
		free(buf);
	return timed_out ? -1 : decode_status(status);
}

struct harness_job harness_run_start(const char *const argv[], const char *const env[])
{
	char **envp = merged_environment(env);
	char path[] = "/tmp/sluice-job.XXXXXX";
	struct harness_job job;

	job.outfd = mkstemp(path);
	cr_assert(job.outfd >= 0, "mkstemp: %s", strerror(errno));
	unlink(path);
	job.pid = fork();
	cr_assert(job.pid >= 0, "fork: %s", strerror(errno));
	if (job.pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(devnull, 0);
		dup2(job.outfd, 1);
		dup2(job.outfd, 2);
		close_range(3, ~0U, 0);
		execvpe(argv[0], (char *const *)argv, envp);
		dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	free(envp);
	return job;
}

int harness_run_finish(struct harness_job *job, double timeout_s, char **output)
{
	double deadline = harness_now() + timeout_s;
	int status = 0;
	bool done;
	off_t size;

	while (!(done = waitpid(job->pid, &status, WNOHANG) == job->pid) &&
	       harness_now() < deadline)
		harness_pause();
	if (!done) {
		kill(job->pid, SIGKILL);
		waitpid(job->pid, &status, 0);
	}
	size = lseek(job->outfd, 0, SEEK_END);
	if (output != NULL) {
		*output = calloc(1, (size_t)size + 1);
		if (pread(job->outfd, *output, (size_t)size, 0) < 0)
			(*output)[0] = '\0';
	}
	close(job->outfd);
	return done ? decode_status(status) : -1;
}

void harness_raise_nofile(long want)
{
	struct rlimit rl;

	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur >= (rlim_t)want)
		return;
	if (rl.rlim_max < (rlim_t)want) {
		struct rlimit raised = {(rlim_t)want, (rlim_t)want};

		/* Only root may raise the hard limit; otherwise take what there is. */
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			return;
		rl.rlim_cur = rl.rlim_max;
	} else {
		rl.rlim_cur = (rlim_t)want;
	}
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* ---- raw protocol bytes ---- */

#define HARNESS_REPLY_TIMEOUT_S 20.0

void harness_send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		cr_assert(n > 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

void harness_put_u32(unsigned char *p, uint32_t v)
{
	uint32_t be = htonl(v);

	memcpy(p, &be, 4);
}

size_t harness_read_to_close(int fd, unsigned char *buf, size_t cap)
{
	double deadline = harness_now() + HARNESS_REPLY_TIMEOUT_S;
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

void harness_expect_error_and_close(int fd, char sqlstate[6])
{
	unsigned char buf[8192];
	size_t len = harness_read_to_close(fd, buf, sizeof(buf)), pos = 5;
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

void harness_put_msg(unsigned char *buf, size_t *len, char type, const void *body, size_t n)
{
	buf[*len] = (unsigned char)type;
	harness_put_u32(buf + *len + 1, (uint32_t)(4 + n));
	memcpy(buf + *len + 5, body, n);
	*len += 5 + n;
}

void harness_put_query(unsigned char *buf, size_t *len, const char *sql)
{
	harness_put_msg(buf, len, 'Q', sql, strlen(sql) + 1);
}

/* One reply as harness_transcript writes it. */
static void transcript_item(const unsigned char *msg, char *item, size_t cap)
{
	const unsigned char *body = msg + 5;
	uint32_t vlen;

	switch (msg[0]) {
	case 'C':
		snprintf(item, cap, "C(%s) ", (const char *)body);
		break;
	case 'Z':
		snprintf(item, cap, "Z(%c) ", body[0]);
		break;
	case 'E': {
		const char *code = "";

		for (const char *f = (const char *)body; *f != '\0'; f += strlen(f) + 1)
			if (*f == 'C')
				code = f + 1;
		snprintf(item, cap, "E(%s) ", code);
		break;
	}
	case 'D':
		memcpy(&vlen, body + 2, 4);
		snprintf(item, cap, "D(%.*s) ", (int)ntohl(vlen), body + 6);
		break;
	default:
		snprintf(item, cap, "%c ", msg[0]);
		break;
	}
}

void harness_transcript(int fd, int ready, char *out, size_t cap)
{
	static unsigned char in[65536];
	size_t got = 0, pos = 0;
	double deadline = harness_now() + HARNESS_REPLY_TIMEOUT_S;

	out[0] = '\0';
	while (ready > 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&pfd, 1, 100) == 0) {
			if (harness_now() < deadline)
				continue;
			strncat(out, "TIMEOUT", cap - strlen(out) - 1);
			return;
		}
		n = recv(fd, in + got, sizeof(in) - got, 0);
		if (n <= 0) {
			strncat(out, "CLOSED", cap - strlen(out) - 1);
			return;
		}
		got += (size_t)n;
		while (ready > 0 && got - pos >= 5) {
			uint32_t len;
			char item[128];

			memcpy(&len, in + pos + 1, 4);
			len = ntohl(len);
			if (got - pos < 1 + (size_t)len)
				break;
			transcript_item(in + pos, item, sizeof(item));
			strncat(out, item, cap - strlen(out) - 1);
			ready -= in[pos] == 'Z';
			pos += 1 + len;
		}
		cr_assert(got < sizeof(in), "endless reply");
	}
}

void harness_expect_transcript(PGconn *c, const unsigned char *buf, size_t len, int ready,
                               const char *want, const char *what)
{
	char got[1024];

	harness_send_all(PQsocket(c), buf, len);
	harness_transcript(PQsocket(c), ready, got, sizeof(got));
	cr_assert(strcmp(got, want) == 0, "%s: got \"%s\", want \"%s\"", what, got, want);
}

long harness_rss_kb(struct harness_sluice *h)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)h->pid);
	f = fopen(path, "r");
	cr_assert_not_null(f, "open %s", path);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	cr_assert_gt(kb, 0, "no VmRSS in %s", path);
	return kb;
}

bool harness_rss_is_meaningful(void)
{
	return getenv("ASAN_OPTIONS") == NULL;
}

char *harness_read_file(const char *path)
{
	char *text = read_file(path, 0, NULL);

	cr_assert_not_null(text, "open %s: %s", path, strerror(errno));
	return text;
}

#define LISTEN_PREFIX "HTTP endpoint listening on 127.0.0.1:"

int harness_metrics_port(struct harness_sluice *h)
{
	char *log;
	int port;

	cr_assert(harness_wait_for(harness_log_contains(h, LISTEN_PREFIX), 30),
	          "sluice never said where the HTTP endpoint listens");
	log = harness_read_file(h->log_path);
	port = atoi(strstr(log, LISTEN_PREFIX) + strlen(LISTEN_PREFIX));
	free(log);
	cr_assert_gt(port, 0);
	return port;
}

struct harness_http_reply harness_http_get(int port, const char *path)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
	                           .sin_port = htons((uint16_t)port),
	                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	/* A whole /metrics can take a while on a loaded machine; the bound only ends a hang. */
	struct timeval tv = {.tv_sec = 30};
	struct harness_http_reply r = {0};
	size_t cap = 1 << 20, len = 0;
	char request[256];
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	r.text = calloc(1, cap);
	r.body = r.text;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		return r;
	}
	snprintf(request, sizeof(request), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
	if (send(fd, request, strlen(request), MSG_NOSIGNAL) != (ssize_t)strlen(request)) {
		close(fd);
		return r;
	}
	while ((n = read(fd, r.text + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (len + 1 == cap)
			r.text = realloc(r.text, cap *= 2);
	}
	close(fd);
	r.text[len] = '\0';
	if (sscanf(r.text, "HTTP/1.%*d %d", &r.status) != 1)
		r.status = 0;
	r.body = strstr(r.text, "\r\n\r\n");
	r.body = r.body != NULL ? r.body + 4 : r.text + len;
	return r;
}

char *harness_metrics(int port)
{
	struct harness_http_reply r = harness_http_get(port, "/metrics");

	cr_assert_eq(r.status, 200, "/metrics: %.200s", r.text);
	memmove(r.text, r.body, strlen(r.body) + 1);
	return r.text;
}

double harness_metric_sample(const char *body, const char *series)
{
	size_t len = strlen(series);

	for (const char *line = body; line != NULL && *line != '\0';) {
		if (strncmp(line, series, len) == 0 && line[len] == ' ')
			return strtod(line + len + 1, NULL);
		line = strchr(line, '\n');
		if (line != NULL)
			line++;
	}
	return -1;
}

void harness_promtool_check(struct harness_sluice *h, const char *body)
{
	char path[400], cmd[600], *out = NULL;
	const char *argv[] = {"sh", "-c", cmd, NULL};
	const char *which[] = {"sh", "-c", "command -v promtool", NULL};
	int rc;

	cr_assert_eq(harness_run(which, NULL, 20, NULL), 0,
	             "promtool is not installed (Debian package prometheus; "
	             "tests/harness/deps.sh installs it)");
	snprintf(path, sizeof(path), "%s/metrics.txt", h->dir);
	harness_write_file(path, body);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s'", path);
	rc = harness_run(argv, NULL, 60, &out);
	cr_assert_eq(rc, 0, "promtool check metrics failed (%d):\n%s", rc, out);
	free(out);
}

void harness_pgbench_init(void)
{
	const struct harness_pg *cluster = harness_pg();
	char pgbench[512], port[16], *out = NULL;
	const char *argv[] = {pgbench, "-i", "-s1", "-q",  "-h",  cluster->socket_dir,
	                      "-p",    port, "-U",  "app", "app", NULL};
	int rc;

	harness_pg_tool("pgbench", pgbench, sizeof(pgbench));
	snprintf(port, sizeof(port), "%d", cluster->port);
	rc = harness_run(argv, NULL, 120, &out);
	cr_assert_eq(rc, 0, "pgbench -i exited with %d:\n%s", rc, out);
	free(out);
}

/* Runs a shell command; the test fails unless it exits 0. */
static void run_shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void run_shell(const char *fmt, ...)
{
	char cmd[4096], *output = NULL;
	const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = harness_run(argv, NULL, 60, &output);
	cr_assert_eq(rc, 0, "%s failed (%d): %s", cmd, rc, output ? output : "");
	free(output);
}

void harness_make_certs(char *dir, size_t len)
{
	snprintf(dir, len, "/tmp/sluice-tls-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	record_dir(dir); /* removed with the test's other directories when it passes */
	run_shell(
	    "cd %s && "
	    "for ca in ca other-ca; do openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -days 30 -subj \"/CN=$ca\" -keyout $ca.key "
	    "-out $ca.crt; done && "
	    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "
	    "/CN=localhost -keyout server.key -out server.csr && "
	    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && "
	    "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 "
	    "-extfile san.ext -out server.crt && "
	    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=app "
	    "-keyout client.key -out client.csr && "
	    "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 "
	    "-out client.crt && chmod 0600 client.key",
	    dir);
}

const char *harness_client_tls_ini(char *buf, size_t len, const char *mode, const char *certs)
{
	snprintf(buf, len,
	         "client_tls_sslmode = %s\nclient_tls_cert_file = %s/server.crt\n"
	         "client_tls_key_file = %s/server.key\n",
	         mode, certs, certs);
	return buf;
}
