/*
 * pgbench through sluice in transaction mode, 64 clients on a pool of 20:
 * select-only and TPC-B-like, simple and extended protocol.  A fixed number of
 * transactions per client (-t), never a duration, so the result does not
 * depend on the machine's speed: every transaction must be processed and none
 * may fail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

#define CLIENTS       "64"
#define TX_PER_CLIENT "50"
#define POOL_SIZE     20

TestSuite(pgbench, .fini = harness_teardown, .timeout = 280);

static void run_pgbench(const char *const mode_args[])
{
	struct harness_sluice *h;
	char pgbench[512], url[256], *out = NULL;
	const char *argv[16];
	const char *env[] = {"PGCONNECT_TIMEOUT=20", NULL};
	int n = 0, rc;
	char want[64];

	harness_pgbench_init();
	h = harness_start_sluice("default_pool_size = 20\nmax_client_conn = 500\n"
	                         "query_wait_timeout = 120s");
	harness_url(h, "app", "app-secret", "app", url, sizeof(url));
	argv[n++] = harness_pg_tool("pgbench", pgbench, sizeof(pgbench));
	/* -n: no VACUUM before the run, it is not what is measured. */
	argv[n++] = "-n";
	argv[n++] = "-c";
	argv[n++] = CLIENTS;
	argv[n++] = "-j";
	argv[n++] = "2";
	argv[n++] = "-t";
	argv[n++] = TX_PER_CLIENT;
	for (int i = 0; mode_args[i] != NULL; i++)
		argv[n++] = mode_args[i];
	argv[n++] = url;
	argv[n] = NULL;

	rc = harness_run(argv, env, 240, &out);
	cr_log_info("%s", out);
	cr_assert_eq(rc, 0, "pgbench exited with %d:\n%s", rc, out);
	snprintf(want, sizeof(want), "number of transactions actually processed: %d/%d",
	         atoi(CLIENTS) * atoi(TX_PER_CLIENT), atoi(CLIENTS) * atoi(TX_PER_CLIENT));
	cr_assert(strstr(out, want) != NULL, "pgbench did not report \"%s\":\n%s", want, out);
	cr_assert(strstr(out, "number of failed transactions: 0 (0.000%)") != NULL,
	          "pgbench reports failed transactions:\n%s", out);
	cr_assert_leq(harness_count_backends("app", NULL), POOL_SIZE);
	free(out);
}

Test(pgbench, select_only_simple)
{
	const char *const args[] = {"-S", "-M", "simple", NULL};

	run_pgbench(args);
}

Test(pgbench, select_only_extended)
{
	const char *const args[] = {"-S", "-M", "extended", NULL};

	run_pgbench(args);
}

Test(pgbench, tpcb_simple)
{
	const char *const args[] = {"-M", "simple", NULL};

	run_pgbench(args);
}

Test(pgbench, tpcb_extended)
{
	const char *const args[] = {"-M", "extended", NULL};

	run_pgbench(args);
}
