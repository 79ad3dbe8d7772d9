/*
 * The configuration as config_load builds it: an INI file, the environment
 * (SLUICE_<OPTION>, SLUICE_DATABASE_URL and its _<NAME> and _FILE forms)
 * and an --upstream URL (libpq's URL and conninfo parsers behind
 * url_define_db), then the auth_file and the cross-option checks.  Also
 * tenant_parse_rate, which [tenant.*] and [tier.*] sections use.
 *
 * Input: the INI text, NUL, the upstream URL, NUL, then environment entries
 * ("SLUICE_X=value") separated by NULs.  An empty INI piece loads without a
 * file, an empty URL piece without --upstream.  The INI text goes to
 * /tmp/sluice-fuzz-config-PID, so a relative auth_file names a file in /tmp.
 *
 * On success the configuration must pass config_validate again, every
 * database and user must be found by name, every tenant's token buckets must
 * hold at least one token, and every [sluice] option must survive
 * config_format_value -> config_set -> config_format_value unchanged (the
 * path SHOW CONFIG and SET take).  Every piece is also read as a rate, and a
 * rate must survive tenant_format_rate -> tenant_parse_rate.
 */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "fuzz.h"
#include "config/tenant.h"

#define MAX_ENV   16
#define VALUE_MAX 8192 /* longer option values are not round-tripped: the buffer cuts them */

/* The rate round trip: what tenant_format_rate writes, tenant_parse_rate reads back. */
static void check_rate(const char *text)
{
	struct rate r, back;
	char buf[64];

	if (tenant_parse_rate(text, &r) < 0)
		return;
	FUZZ_CHECK(r.count >= 0 && (r.period_us == 1000000 || r.period_us == 60000000));
	tenant_format_rate(&r, buf, sizeof(buf));
	FUZZ_CHECK(tenant_parse_rate(buf, &back) == 0 && back.count == r.count);
	/* "0" is off whatever the period; any other count keeps it. */
	FUZZ_CHECK(r.count == 0 || back.period_us == r.period_us);
}

static void check_options(struct config *cfg)
{
	size_t n;
	const struct config_option *opts = config_options(&n);
	char *before = malloc(VALUE_MAX), *after = malloc(VALUE_MAX);
	struct config_error err;

	if (before == NULL || after == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		config_format_value(cfg, &opts[i], before, VALUE_MAX);
		if (strlen(before) + 1 >= VALUE_MAX)
			continue;
		FUZZ_CHECK(config_set(cfg, opts[i].name, before, &err) == 0);
		config_format_value(cfg, &opts[i], after, VALUE_MAX);
		FUZZ_CHECK(strcmp(before, after) == 0);
	}
	free(before);
	free(after);
}

static void check_config(struct config *cfg)
{
	struct config_error err;

	FUZZ_CHECK(config_validate(cfg, &err) == 0);
	for (size_t i = 0; i < cfg->ndbs; i++)
		FUZZ_CHECK(config_find_db(cfg, cfg->dbs[i].name) != NULL);
	for (size_t i = 0; i < cfg->nusers; i++)
		FUZZ_CHECK(config_find_user(cfg, cfg->users[i].name) != NULL);
	/* Every bucket holds at least one token, whatever the rates and bursts say. */
	for (size_t i = 0; i < cfg->ntenants; i++)
		for (int k = 0; k < LIMIT_KINDS; k++)
			FUZZ_CHECK(tenant_burst(&cfg->tenants[i].limits, (enum limit_kind)k) >= 1);
	/* A client's tenant: each users/databases glob is matched against a name. */
	config_find_tenant(cfg, "app", "app");
	check_options(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	char *env[MAX_ENV + 1];
	size_t ini_len, url_len, nenv = 0;
	char *ini, *url;
	const char *path = NULL;
	struct config_error err;
	struct config *cfg;

	/*
	 * auth_file and the *_FILE variables open whatever path they name: a
	 * device or /proc file could block or never end, which says nothing
	 * about the parser.
	 */
	if (fuzz_contains(data, size, "/dev/") || fuzz_contains(data, size, "/proc/") ||
	    fuzz_contains(data, size, "/sys/"))
		return -1;
	ini = fuzz_next_cstr(&in, &ini_len);
	url = fuzz_next_cstr(&in, &url_len);
	while (in.left > 0 && nenv < MAX_ENV)
		env[nenv++] = fuzz_next_cstr(&in, NULL);
	env[nenv] = NULL;
	if (ini_len > 0 &&
	    (path = fuzz_write_file("config", (const uint8_t *)ini, ini_len)) == NULL)
		abort();
	memset(&err, 0, sizeof(err));
	cfg = config_load(path, url_len > 0 ? url : NULL, env, &err);
	if (cfg != NULL)
		check_config(cfg);
	else
		FUZZ_CHECK(err.message[0] != '\0' &&
		           memchr(err.message, '\0', sizeof(err.message)));
	config_free(cfg);
	check_rate(url);
	for (size_t i = 0; i < nenv; i++) {
		const char *eq = strchr(env[i], '=');

		check_rate(eq != NULL ? eq + 1 : env[i]);
		free(env[i]);
	}
	free(ini);
	free(url);
	return 0;
}
