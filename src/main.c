/*
 * Entry point: arguments, configuration, runtime.  No logic lives here.
 */
#include <event2/thread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "admin/console.h"
#include "config/config.h"
#include "config/manpage.h"
#include "runtime/runtime.h"

extern char **environ;

static void usage(FILE *out)
{
	fprintf(out, "usage: sluice [--upstream postgres://user:pass@host:port/db] [CONFIG.ini]\n"
	             "       sluice --takeover CONFIG.ini   take the listeners of the sluice "
	             "running at takeover_socket\n"
	             "       sluice --check [CONFIG.ini]   (or -t) check the configuration: "
	             "print every error, bind nothing; exit 0 if it would start\n"
	             "       sluice --describe-config   print docs/config.md\n"
	             "       sluice --describe-config=man   print the man page, sluice(1)\n"
	             "       sluice --version\n"
	             "Without a file, configuration comes from SLUICE_DATABASE_URL and "
	             "SLUICE_<OPTION> variables.\n");
}

static void report_error(void *arg, const char *message)
{
	fprintf(stderr, "sluice: error: %s\n", message);
}

/*
 * --check: every error and warning on stderr, and a verdict; nothing is
 * bound, connected or written, so it is safe in CI and as systemd's
 * ExecStartPre against the running instance's file.
 */
static int check_config(const char *path, const char *upstream)
{
	int errors = 0;
	struct config *cfg = config_check(path, upstream, environ, report_error, NULL, &errors);

	if (cfg != NULL) {
		for (size_t i = 0; i < cfg->nnotes; i++)
			fprintf(stderr, "sluice: %s: %s\n",
			        cfg->notes[i].level == LOG_WARN ? "warning" : "note",
			        cfg->notes[i].text);
		config_free(cfg);
	}
	if (errors > 0) {
		fprintf(stderr, "sluice: %s: %d error%s\n", path ? path : "configuration", errors,
		        errors == 1 ? "" : "s");
		return 1;
	}
	fprintf(stderr, "sluice: %s: configuration OK\n", path ? path : "configuration");
	return 0;
}

/*
 * Every client and server is a descriptor, and the soft limit a service
 * starts with is often 1024 (PAM's default) under a far higher hard limit:
 * take the hard limit, which needs no privilege.  Without it sluice refuses
 * clients with EMFILE at about a thousand, whatever max_client_conn says.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	const char *path = NULL, *upstream = NULL;
	bool check = false;
	struct config_error err;
	struct config *cfg;
	struct runtime rt;
	bool takeover = false;
	int code;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--upstream") == 0 && i + 1 < argc) {
			upstream = argv[++i];
		} else if (strncmp(argv[i], "--upstream=", 11) == 0) {
			upstream = argv[i] + 11;
		} else if (strcmp(argv[i], "--takeover") == 0) {
			takeover = true;
		} else if (strcmp(argv[i], "--describe-config") == 0) {
			config_write_markdown(stdout);
			return 0;
		} else if (strcmp(argv[i], "--describe-config=man") == 0) {
			manpage_write(stdout);
			return 0;
		} else if (strcmp(argv[i], "--check") == 0 || strcmp(argv[i], "-t") == 0) {
			check = true;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("sluice %s\n", SLUICE_VERSION);
			return 0;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] != '-' && path == NULL) {
			path = argv[i];
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (check)
		return check_config(path, upstream);
	cfg = config_load(path, upstream, environ, &err);
	if (cfg == NULL) {
		fprintf(stderr, "sluice: %s\n", err.message);
		return 1;
	}
	/*
	 * Must precede every event_base: libevent's own globals (the random
	 * numbers every worker's resolver draws, signal handling) are shared
	 * by all threads.  Worker loops themselves run without a lock (loop.c).
	 */
	evthread_use_pthreads();
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	if (runtime_init(&rt, path, upstream, environ, cfg, &admin_console_handler, takeover) < 0) {
		fprintf(stderr, "sluice: startup failed\n");
		runtime_fini(&rt);
		return 1;
	}
	code = runtime_run(&rt);
	runtime_fini(&rt);
	return code;
}
