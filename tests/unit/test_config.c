/*
 * Configuration: value syntax, the option table, the ini file, [databases]
 * and [users], environment overrides, database URLs, validation, and that
 * docs/config.md and etc/sluice.ini cover every option.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "config/config.h"

#include <criterion/criterion.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEC INT64_C(1000000)

/* One loaded test configuration and where its file was. */
struct loaded {
	struct config *cfg;      /* NULL when loading failed */
	char path[128];          /* the ini file, for expected error texts */
	char dir[64];            /* its directory */
	struct config_error err; /* filled when cfg is NULL */
};

static const char userlist[] = "\"app\" \"app-secret\"\n\"admin\" \"admin-secret\"\n";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "cannot write %s", path);
	fputs(text, f);
	fclose(f);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;
	FILE *mem;
	int c;

	cr_assert_not_null(f, "cannot read %s (set SLUICE_SOURCE_ROOT)", path);
	mem = open_memstream(&buf, &len);
	while ((c = getc(f)) != EOF)
		putc(c, mem);
	fclose(mem);
	fclose(f);
	return buf;
}

static void source_path(char *out, size_t len, const char *rel)
{
	const char *root = getenv("SLUICE_SOURCE_ROOT");

	snprintf(out, len, "%s/%s", root ? root : ".", rel);
}

/*
 * Writes `ini` as sluice.ini next to a userlist.txt in a fresh directory and
 * loads it.  The files are removed again: the snapshot must not need them.
 */
static void load_ini(struct loaded *l, const char *ini, char *const *envp, const char *upstream)
{
	char users[128];

	memset(l, 0, sizeof(*l));
	snprintf(l->dir, sizeof(l->dir), "/tmp/sluice-config-XXXXXX");
	cr_assert_not_null(mkdtemp(l->dir));
	snprintf(l->path, sizeof(l->path), "%s/sluice.ini", l->dir);
	snprintf(users, sizeof(users), "%s/userlist.txt", l->dir);
	write_file(l->path, ini);
	write_file(users, userlist);
	l->cfg = config_load(l->path, upstream, envp, &l->err);
	unlink(l->path);
	unlink(users);
	rmdir(l->dir);
}

/* The path-prefixed error expected for `line` of the test file. */
static void expect_error(const struct loaded *l, int line, const char *msg)
{
	char want[600];

	cr_assert_null(l->cfg, "loading should have failed with: %s", msg);
	snprintf(want, sizeof(want), "%s:%d: %s", l->path, line, msg);
	cr_assert_str_eq(l->err.message, want);
}

#define MINIMAL                                                                                    \
	"[sluice]\nauth_file = userlist.txt\n[databases]\napp = host=db.internal dbname=app\n"

/* ---- durations and sizes ---- */

Test(config, duration_units)
{
	static const struct {
		const char *text;
		int64_t us;
	} cases[] = {
	    {"250ms", 250000},     {"30s", 30 * SEC},    {"5min", 300 * SEC},
	    {"1h", 3600 * SEC},    {"2d", 172800 * SEC}, {"100us", 100},
	    {"1.5s", 1500000},     {"30", 30 * SEC},     {"0", 0},
	    {" 10 s ", 10 * SEC},  {"1.5min", 90 * SEC}, {".5s", 500000},
	    {"0.0000001s", 0},     {"10MS", 10000},      {"2.25", 2250000},
	    {"7200s", 7200 * SEC},
	};
	int64_t us;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(config_parse_duration(cases[i].text, &us), 0, "'%s'", cases[i].text);
		cr_assert_eq(us, cases[i].us, "'%s' gave %lld", cases[i].text, (long long)us);
	}
}

Test(config, duration_rejects_garbage)
{
	static const char *const bad[] = {
	    "",           "abc",
	    "-1",         "-1s",
	    "10x",        "1.2.3",
	    "s",          "1e3",
	    "1 2",        "+5s",
	    ".",          "1s2",
	    "5 m",        "99999999999999999999",
	    "106751992d", "9223372036854775807s",
	};
	int64_t us = 42;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(config_parse_duration(bad[i], &us), -1, "'%s' was accepted", bad[i]);
	cr_assert_eq(us, 42, "a rejected value must not be stored");
}

Test(config, sizes)
{
	int64_t n;

	cr_assert_eq(config_parse_size("1024", &n), 0);
	cr_assert_eq(n, 1024);
	cr_assert_eq(config_parse_size("64kB", &n), 0);
	cr_assert_eq(n, 65536);
	cr_assert_eq(config_parse_size("16MB", &n), 0);
	cr_assert_eq(n, 16 << 20);
	cr_assert_eq(config_parse_size("1GB", &n), 0);
	cr_assert_eq(n, INT64_C(1) << 30);
	cr_assert_eq(config_parse_size("1 kB", &n), 0);
	cr_assert_eq(n, 1024);
	cr_assert_eq(config_parse_size("8B", &n), 0);
	cr_assert_eq(n, 8);
	for (const char *const *bad = (const char *const[]){"", "kB", "1.5GB", "-1", "10XB", "1 0",
	                                                    "99999999999GB", NULL};
	     *bad != NULL; bad++)
		cr_assert_eq(config_parse_size(*bad, &n), -1, "'%s' was accepted", *bad);
}

Test(config, format_picks_readable_units)
{
	char buf[32];

	config_format_duration(60 * SEC, buf, sizeof(buf));
	cr_assert_str_eq(buf, "60s");
	config_format_duration(250000, buf, sizeof(buf));
	cr_assert_str_eq(buf, "250ms");
	config_format_duration(0, buf, sizeof(buf));
	cr_assert_str_eq(buf, "0");
	config_format_duration(3600 * SEC, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1h");
	config_format_duration(86400 * SEC, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1d");
	config_format_duration(1500000, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1500ms");
	config_format_duration(7, buf, sizeof(buf));
	cr_assert_str_eq(buf, "7us");
	config_format_size(INT64_C(1) << 30, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1GB");
	config_format_size(65536, buf, sizeof(buf));
	cr_assert_str_eq(buf, "64kB");
	config_format_size(1536, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1536");
}

/* ---- the option table ---- */

/* A zeroed snapshot for exercising config_set; config_free copes with it. */
static struct config *blank_config(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	cr_assert_not_null(cfg);
	return cfg;
}

static int64_t field_value(const struct config *cfg, const struct config_option *o)
{
	const char *base = (const char *)cfg + o->offset;

	if (o->type == CONFIG_DURATION || o->type == CONFIG_SIZE)
		return *(const int64_t *)base;
	return *(const int *)base;
}

Test(config, every_default_parses_within_bounds_and_prints_back)
{
	struct config *cfg = blank_config();
	struct config_error err;
	size_t n;
	const struct config_option *opts = config_options(&n);
	char buf[256];

	cr_assert_gt(n, 25);
	for (size_t i = 0; i < n; i++) {
		const struct config_option *o = &opts[i];

		cr_assert_not_null(o->help, "%s has no help", o->name);
		cr_assert_eq(config_option_find(o->name), o, "%s is not found by name", o->name);
		cr_assert_eq(config_set(cfg, o->name, o->default_value, &err), 0, "%s: %s", o->name,
		             err.message);
		if (o->type != CONFIG_STRING && o->type != CONFIG_ENUM && o->type != CONFIG_BOOL &&
		    !(o->takes_auto && field_value(cfg, o) == 0)) {
			cr_assert_geq(field_value(cfg, o), o->min, "%s below min", o->name);
			cr_assert_leq(field_value(cfg, o), o->max, "%s above max", o->name);
		}
		/* Defaults are written canonically, so SHOW CONFIG's default column matches. */
		config_format_value(cfg, o, buf, sizeof(buf));
		cr_assert_str_eq(buf, o->default_value, "%s", o->name);
	}
	cr_assert_null(config_option_find("no_such_option"));
	config_free(cfg);
}

Test(config, table_matches_the_brief)
{
	const struct config_option *o;

	o = config_option_find("idle_transaction_timeout");
	cr_assert_not_null(o);
	cr_assert_eq(o->offset, offsetof(struct config, idle_transaction_timeout_us));
	cr_assert_eq(o->type, CONFIG_DURATION);
	cr_assert_eq(o->max, INT64_C(30) * 86400 * SEC);
	o = config_option_find("workers");
	cr_assert_eq(o->reload, RELOAD_RESTART);
	cr_assert_eq(o->min, 1);
	cr_assert_eq(o->max, 256);
	cr_assert_eq(config_option_find("pool_mode")->reload, RELOAD_LIVE);
	cr_assert_eq(config_option_find("unix_socket_mode")->type, CONFIG_OCTAL);
	cr_assert_null(config_option_find("idle_transaction_timeout_us"));
	cr_assert_str_eq(pool_mode_name(POOL_SESSION), "session");
	cr_assert_str_eq(pool_mode_name(POOL_STATEMENT), "statement");
	cr_assert_str_eq(pool_mode_name(7), "unknown");
}

/* Sample values per option: bounds and every enum name, plus a plain string. */
static int sample_values(const struct config_option *o, char out[][64])
{
	int n = 0;

	if (o->type == CONFIG_ENUM) {
		for (const char *const *e = o->enum_names; *e != NULL; e++)
			snprintf(out[n++], 64, "%s", *e);
	} else if (o->type == CONFIG_STRING) {
		snprintf(out[n++], 64, "some text, with blanks");
		snprintf(out[n++], 64, "%s", "");
	} else if (o->type == CONFIG_OCTAL) {
		snprintf(out[n++], 64, "%llo", (unsigned long long)o->max);
		snprintf(out[n++], 64, "0600");
	} else {
		snprintf(out[n++], 64, "%lld", (long long)o->min);
		if (o->type == CONFIG_INT)
			snprintf(out[n++], 64, "%lld", (long long)o->max);
		else if (o->type == CONFIG_DURATION)
			snprintf(out[n++], 64, "%lldus", (long long)o->max);
		else
			snprintf(out[n++], 64, "%lld", (long long)o->max);
	}
	if (o->type == CONFIG_DURATION)
		snprintf(out[n++], 64, "1.25s");
	return n;
}

Test(config, format_value_round_trips_through_set)
{
	struct config *cfg = blank_config();
	struct config_error err;
	char samples[8][64], first[256], second[256];
	size_t n;
	const struct config_option *opts = config_options(&n);

	for (size_t i = 0; i < n; i++) {
		const struct config_option *o = &opts[i];
		int ns = sample_values(o, samples);

		for (int s = 0; s < ns; s++) {
			int64_t before;

			cr_assert_eq(config_set(cfg, o->name, samples[s], &err), 0, "%s=%s: %s",
			             o->name, samples[s], err.message);
			before = o->type == CONFIG_STRING ? 0 : field_value(cfg, o);
			config_format_value(cfg, o, first, sizeof(first));
			cr_assert_eq(config_set(cfg, o->name, first, &err), 0, "%s=%s: %s", o->name,
			             first, err.message);
			config_format_value(cfg, o, second, sizeof(second));
			cr_assert_str_eq(first, second, "%s", o->name);
			if (o->type != CONFIG_STRING)
				cr_assert_eq(field_value(cfg, o), before, "%s=%s", o->name, first);
		}
	}
	config_free(cfg);
}

/* workers defaults to auto: one worker per core the process may run on, one on one core. */
Test(config, workers_default_to_one_per_allowed_core)
{
	struct loaded l;
	struct config *cfg;
	cpu_set_t set;
	int cpu;

	load_ini(&l, MINIMAL, NULL, NULL);
	cfg = l.cfg;
	cr_assert_not_null(cfg, "%s", l.err.message);
	cr_assert_eq(cfg->workers, 0, "the default is not auto");
	cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	cr_assert_eq(config_workers(cfg), CPU_COUNT(&set) < 256 ? CPU_COUNT(&set) : 256);
	/* As under taskset -c N: this test's process alone, on the first core it may use. */
	for (cpu = 0; !CPU_ISSET(cpu, &set); cpu++)
		;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	cr_assert_eq(sched_setaffinity(0, sizeof(set), &set), 0);
	cr_assert_eq(config_workers(cfg), 1);
	config_free(cfg);
}

Test(config, config_set_validates)
{
	struct config *cfg = blank_config();
	struct config_error err;

	cr_assert_eq(config_set(cfg, "workers", "4", &err), 0);
	cr_assert_eq(cfg->workers, 4);
	cr_assert_eq(config_set(cfg, "workers", "0", &err), -1);
	cr_assert_str_eq(err.message,
	                 "key 'workers': invalid value '0' (expected an integer from 1 to 256, "
	                 "or auto)");
	cr_assert_eq(cfg->workers, 4, "a rejected value must not be stored");
	cr_assert_eq(config_set(cfg, "workers", "2x", &err), -1);
	/* auto: one per core this process may run on (sched_getaffinity), at least one. */
	cr_assert_eq(config_set(cfg, "workers", "auto", &err), 0);
	cr_assert_eq(cfg->workers, 0);
	cr_assert_geq(config_workers(cfg), 1);
	cr_assert_leq(config_workers(cfg), sysconf(_SC_NPROCESSORS_ONLN));
	cr_assert_eq(config_set(cfg, "workers", "3", &err), 0);
	cr_assert_eq(config_workers(cfg), 3);
	cr_assert_eq(config_set(cfg, "idle_transaction_timeout", "31d", &err), -1);
	cr_assert_str_eq(err.message,
	                 "key 'idle_transaction_timeout': invalid value '31d' (expected a "
	                 "duration from 0 to 30d with unit us, ms, s, min, h or d)");
	cr_assert_eq(config_set(cfg, "idle_transaction_timeout", "250ms", &err), 0);
	cr_assert_eq(cfg->idle_transaction_timeout_us, 250000);
	cr_assert_eq(config_set(cfg, "max_packet_size", "512", &err), -1);
	cr_assert_eq(config_set(cfg, "max_packet_size", "2GB", &err), -1);
	cr_assert_eq(config_set(cfg, "max_packet_size", "64kB", &err), 0);
	cr_assert_eq(cfg->max_packet_size, 65536);
	cr_assert_eq(config_set(cfg, "pool_mode", "Session", &err), 0);
	cr_assert_eq(cfg->pool_mode, POOL_SESSION);
	cr_assert_eq(config_set(cfg, "unix_socket_mode", "0700", &err), 0);
	cr_assert_eq(cfg->unix_socket_mode, 0700);
	cr_assert_eq(config_set(cfg, "unix_socket_mode", "777", &err), 0);
	cr_assert_eq(cfg->unix_socket_mode, 0777);
	cr_assert_eq(config_set(cfg, "unix_socket_mode", "0800", &err), -1);
	cr_assert_eq(config_set(cfg, "unix_socket_mode", "1777", &err), -1);
	cr_assert_eq(config_set(cfg, "no_such", "1", &err), -1);
	cr_assert_str_eq(err.message, "unknown option 'no_such'");
	config_free(cfg);
}

/* ---- docs and example stay complete ---- */

Test(config, docs_are_generated_from_the_table)
{
	char path[512], *docs, *generated = NULL;
	size_t len = 0, n;
	const struct config_option *opts = config_options(&n);
	FILE *mem = open_memstream(&generated, &len);

	config_write_markdown(mem);
	fclose(mem);
	source_path(path, sizeof(path), "docs/config.md");
	docs = read_file(path);
	for (size_t i = 0; i < n; i++) {
		char name[80];

		snprintf(name, sizeof(name), "`%s`", opts[i].name);
		cr_assert_not_null(strstr(docs, name), "docs/config.md misses %s", opts[i].name);
	}
	cr_assert_str_eq(docs, generated,
	                 "docs/config.md is stale: regenerate it with `sluice --describe-config`");
	free(docs);
	free(generated);
}

/* The value on an ";name = value" or "name = value" line of the example, or NULL. */
static const char *ini_line_value(const char *ini, const char *name, bool *commented)
{
	size_t len = strlen(name);

	for (const char *line = ini; line != NULL && *line != '\0';) {
		const char *p = line;

		*commented = *p == ';';
		p += *commented;
		if (strncmp(p, name, len) == 0 && strncmp(p + len, " =", 2) == 0)
			return p + len + 2 + (p[len + 2] == ' ');
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	return NULL;
}

Test(config, example_ini_lists_every_option_with_its_default)
{
	char path[512], *ini;
	size_t n;
	const struct config_option *opts = config_options(&n);

	source_path(path, sizeof(path), "etc/sluice.ini");
	ini = read_file(path);
	for (size_t i = 0; i < n; i++) {
		bool commented;
		const char *v = ini_line_value(ini, opts[i].name, &commented);

		cr_assert_not_null(v, "etc/sluice.ini misses %s", opts[i].name);
		if (commented)
			cr_assert(
			    strncmp(v, opts[i].default_value, strlen(opts[i].default_value)) == 0 &&
			        v[strlen(opts[i].default_value)] == '\n',
			    "etc/sluice.ini shows a wrong default for %s", opts[i].name);
	}
	free(ini);
}

Test(config, example_ini_loads)
{
	char path[512];
	struct config_error err;
	struct config *cfg;
	const struct db_def *db;

	source_path(path, sizeof(path), "etc/sluice.ini");
	cfg = config_load(path, NULL, NULL, &err);
	cr_assert_not_null(cfg, "%s", err.message);
	cr_assert_eq(cfg->auth.count, 4, "etc/userlist.txt should hold 4 users");
	db = config_find_db(cfg, "reports");
	cr_assert_not_null(db);
	cr_assert_str_eq(db->password, "reporter password");
	cr_assert_str_eq(db->connect_options, "-c statement_timeout=30s");
	cr_assert_eq(db->pool_mode, POOL_SESSION);
	cr_assert_str_eq(config_find_db(cfg, "anything")->name, "*");
	cr_assert_not_null(config_find_user(cfg, "batch"));
	config_free(cfg);
}

/* ---- loading files ---- */

Test(config, good_file)
{
	struct loaded l;
	const struct db_def *db;

	load_ini(&l,
	         "; comment\n"
	         "[sluice]\n"
	         "listen_addr = *\n"
	         "listen_port = 7432\n"
	         "unix_socket_mode = 0700\n"
	         "workers = 4\n"
	         "auth_type = md5\n"
	         "auth_file = userlist.txt\n"
	         "pool_mode = session ; inline comment\n"
	         "default_pool_size = 30\n"
	         "min_pool_size = 2\n"
	         "query_wait_timeout = 1.5s\n"
	         "server_lifetime = 2h\n"
	         "client_login_timeout = 45\n"
	         "max_packet_size = 16MB\n"
	         "log_format = json\n"
	         "log_level = warn\n"
	         "server_reset_query =\n"
	         "# another comment\n"
	         "[databases]\n"
	         "app = host=db.internal port=5433 dbname=appdb\n",
	         NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_str_eq(l.cfg->source, l.path);
	cr_assert_str_eq(l.cfg->listen_addr, "*");
	cr_assert_eq(l.cfg->listen_port, 7432);
	cr_assert_eq(l.cfg->unix_socket_mode, 0700);
	cr_assert_eq(l.cfg->workers, 4);
	cr_assert_eq(l.cfg->auth_type, AUTH_MD5);
	cr_assert_eq(l.cfg->pool_mode, POOL_SESSION);
	cr_assert_eq(l.cfg->default_pool_size, 30);
	cr_assert_eq(l.cfg->min_pool_size, 2);
	cr_assert_eq(l.cfg->query_wait_timeout_us, 1500000);
	cr_assert_eq(l.cfg->server_lifetime_us, 7200 * SEC);
	cr_assert_eq(l.cfg->client_login_timeout_us, 45 * SEC, "a bare number is seconds");
	cr_assert_eq(l.cfg->max_packet_size, 16 << 20);
	cr_assert_eq(l.cfg->log_format, LOG_FORMAT_JSON);
	cr_assert_eq(l.cfg->log_level, LOG_WARN);
	cr_assert_str_eq(l.cfg->server_reset_query, "");
	cr_assert_eq(l.cfg->idle_transaction_timeout_us, 0, "untouched options keep their default");
	cr_assert_eq(l.cfg->max_client_conn, 10000);
	cr_assert_eq(l.cfg->auth.count, 2);
	cr_assert_eq(l.cfg->ndbs, 1);
	db = config_find_db(l.cfg, "app");
	cr_assert_str_eq(db->host, "db.internal");
	cr_assert_eq(db->port, 5433);
	cr_assert_str_eq(db->dbname, "appdb");
	cr_assert_null(db->user);
	cr_assert_null(db->password);
	cr_assert_eq(db->pool_size, CONFIG_INHERIT);
	config_free(l.cfg);
}

Test(config, pgbouncer_section_is_an_alias)
{
	struct loaded l;

	load_ini(&l,
	         "[pgbouncer]\nauth_file = userlist.txt\nworkers = 2\n"
	         "[databases]\napp = dbname=app\n",
	         NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_eq(l.cfg->workers, 2);
	cr_assert_str_eq(l.cfg->dbs[0].host, "/tmp",
	                 "no host: the Unix socket in unix_socket_dir, as in PgBouncer");
	cr_assert_eq(l.cfg->dbs[0].port, 5432);
	config_free(l.cfg);
}

Test(config, bad_value_names_file_line_and_key)
{
	struct loaded l;

	load_ini(&l, MINIMAL "[sluice]\n\npool_mode = foo\n", NULL, NULL);
	/* [sluice] appears twice: entries merge, the error is on line 7. */
	expect_error(&l, 7,
	             "key 'pool_mode': invalid value 'foo' (expected session, transaction, "
	             "statement)");
}

Test(config, unknown_key)
{
	struct loaded l;

	load_ini(&l, "[sluice]\nauth_file = userlist.txt\npool_mod = session\n", NULL, NULL);
	expect_error(&l, 3, "unknown key 'pool_mod' in [sluice]");
}

Test(config, unknown_section)
{
	struct loaded l;

	load_ini(&l, MINIMAL "[tenants]\nusers = a\n", NULL, NULL);
	expect_error(&l, 6,
	             "unknown section [tenants] (expected [sluice], [databases], [users], "
	             "[tenant.NAME], [tier.NAME])");
}

Test(config, key_before_any_section)
{
	struct loaded l;

	load_ini(&l, "workers = 2\n" MINIMAL, NULL, NULL);
	expect_error(&l, 1, "key 'workers' before any section (start with [sluice])");
}

Test(config, key_set_twice)
{
	struct loaded l;

	load_ini(&l, MINIMAL "[sluice]\nauth_file = other.txt\n", NULL, NULL);
	expect_error(&l, 6, "'auth_file' is set twice (first on line 2)");
	load_ini(&l, MINIMAL "app = host=x\n", NULL, NULL);
	expect_error(&l, 5, "'app' is set twice (first on line 4)");
}

Test(config, syntax_error)
{
	struct loaded l;

	load_ini(&l, MINIMAL "this line has no equals sign\n", NULL, NULL);
	expect_error(&l, 5, "syntax error (expected [section] or key = value)");
}

Test(config, line_longer_than_inih_buffer_is_read_whole)
{
	struct loaded l;
	char ini[1024];

	snprintf(ini, sizeof(ini), MINIMAL "other = host=h dbname=%0300d ; a comment\n", 0);
	load_ini(&l, ini, NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_eq(strlen(config_find_db(l.cfg, "other")->dbname), 300);
	config_free(l.cfg);
}

Test(config, missing_file)
{
	struct config_error err;

	cr_assert_null(config_load("/nonexistent/sluice.ini", NULL, NULL, &err));
	cr_assert_str_eq(err.message, "/nonexistent/sluice.ini: cannot open: No such file or "
	                              "directory");
}

/* ---- [databases] and [users] ---- */

Test(config, databases_quoting_and_escapes)
{
	struct loaded l;
	const struct db_def *db;

	load_ini(&l,
	         "[sluice]\nauth_file = userlist.txt\n"
	         "[databases]\n"
	         "app = host = /var/run/postgresql  dbname=my\\ db user=u\n"
	         "  password='it\\'s a \\\\ secret' connect_options='-c search_path=app'\n"
	         "  application_name='' pool_size=7 min_pool_size=1 pool_mode=statement\n"
	         "  max_db_connections=50\n",
	         NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	db = config_find_db(l.cfg, "app");
	cr_assert_str_eq(db->host, "/var/run/postgresql");
	cr_assert_str_eq(db->dbname, "my db");
	cr_assert_str_eq(db->user, "u");
	cr_assert_str_eq(db->password, "it's a \\ secret");
	cr_assert_str_eq(db->connect_options, "-c search_path=app");
	cr_assert_null(db->application_name, "an empty value means not set");
	cr_assert_eq(db->pool_size, 7);
	cr_assert_eq(db->min_pool_size, 1);
	cr_assert_eq(db->pool_mode, POOL_STATEMENT);
	cr_assert_eq(db->max_db_connections, 50);
	config_free(l.cfg);
}

Test(config, databases_continuation_lines)
{
	struct loaded l;
	const struct db_def *db;

	load_ini(&l,
	         "[sluice]\nauth_file = userlist.txt\n"
	         "[databases]\n"
	         "app = host=h dbname=app\n"
	         "    pool_size=3 ; inline comments work here too\n"
	         "\tpassword='a b'\n"
	         "other = host=o\n",
	         NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	db = config_find_db(l.cfg, "app");
	cr_assert_eq(db->pool_size, 3);
	cr_assert_str_eq(db->password, "a b");
	cr_assert_str_eq(config_find_db(l.cfg, "other")->host, "o");
	config_free(l.cfg);
}

Test(config, databases_errors_name_the_database)
{
	struct loaded l;

	load_ini(&l, MINIMAL "bad = hots=x\n", NULL, NULL);
	expect_error(&l, 5,
	             "database 'bad': unknown key 'hots' (expected host, port, dbname, user, "
	             "password, pool_size, min_pool_size, pool_mode, max_db_connections, "
	             "connect_options, application_name, query_timeout, query_wait_timeout, "
	             "idle_transaction_timeout, client_idle_timeout, sslmode, sslrootcert, "
	             "reserve_pool_size, client_encoding, datestyle, timezone, reserve_pool, "
	             "target_session_attrs, load_balance_hosts)");
	load_ini(&l, MINIMAL "bad = password='open\n", NULL, NULL);
	expect_error(&l, 5, "database 'bad': key 'password': unterminated quoted value");
	load_ini(&l, MINIMAL "bad = port=99999\n", NULL, NULL);
	expect_error(&l, 5,
	             "database 'bad': port: invalid value '99999' (expected an integer from 1 to "
	             "65535)");
	load_ini(&l, MINIMAL "bad = pool_size=0\n", NULL, NULL);
	expect_error(&l, 5,
	             "database 'bad': invalid value '0' (expected an integer from 1 to 10000)");
	load_ini(&l, MINIMAL "bad = dbname\n", NULL, NULL);
	expect_error(&l, 5, "database 'bad': expected key=value at 'dbname'");
	load_ini(&l, MINIMAL "bad = pool_mode=sometimes\n", NULL, NULL);
	cr_assert_null(l.cfg);
}

Test(config, fallback_database)
{
	struct loaded l;

	load_ini(&l,
	         "[sluice]\nauth_file = userlist.txt\n"
	         "[databases]\n* = host=fallback\napp = host=apphost\n",
	         NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_str_eq(config_find_db(l.cfg, "app")->host, "apphost");
	cr_assert_str_eq(config_find_db(l.cfg, "other")->name, "*");
	cr_assert_null(config_find_db(l.cfg, "*")->dbname, "dbname follows the client");
	config_free(l.cfg);

	load_ini(&l, MINIMAL, NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_null(config_find_db(l.cfg, "other"));
	cr_assert_null(config_find_user(l.cfg, "nobody"));
	config_free(l.cfg);
}

Test(config, user_and_database_overrides)
{
	struct loaded l;
	const struct db_def *app, *big;
	const struct user_def *batch, *plain;

	load_ini(&l,
	         "[sluice]\nauth_file = userlist.txt\npool_mode = transaction\n"
	         "default_pool_size = 20\nmin_pool_size = 1\n"
	         "[databases]\napp = host=h\n"
	         "big = host=h pool_size=50 pool_mode=statement min_pool_size=5\n"
	         "[users]\nbatch = pool_mode=session pool_size=5 max_user_connections=10\n"
	         "plain = max_user_connections=0\n",
	         NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	app = config_find_db(l.cfg, "app");
	big = config_find_db(l.cfg, "big");
	batch = config_find_user(l.cfg, "batch");
	plain = config_find_user(l.cfg, "plain");
	cr_assert_eq(batch->max_user_connections, 10);
	cr_assert_eq(plain->pool_size, CONFIG_INHERIT);
	cr_assert_eq(plain->max_user_connections, 0);
	/* user > database > global */
	cr_assert_eq(config_pool_size(l.cfg, app, NULL), 20);
	cr_assert_eq(config_pool_size(l.cfg, big, NULL), 50);
	cr_assert_eq(config_pool_size(l.cfg, big, plain), 50);
	cr_assert_eq(config_pool_size(l.cfg, big, batch), 5);
	cr_assert_eq(config_pool_size(l.cfg, NULL, NULL), 20);
	cr_assert_eq(config_pool_mode(l.cfg, app, NULL), POOL_TRANSACTION);
	cr_assert_eq(config_pool_mode(l.cfg, big, plain), POOL_STATEMENT);
	cr_assert_eq(config_pool_mode(l.cfg, big, batch), POOL_SESSION);
	cr_assert_eq(config_min_pool_size(l.cfg, app), 1);
	cr_assert_eq(config_min_pool_size(l.cfg, big), 5);
	config_free(l.cfg);

	load_ini(&l, MINIMAL "[users]\nbatch = pool_size=x\n", NULL, NULL);
	expect_error(&l, 6,
	             "user 'batch': invalid value 'x' (expected an integer from 1 to 10000)");
	load_ini(&l, MINIMAL "[users]\nbatch = host=x\n", NULL, NULL);
	expect_error(&l, 6,
	             "user 'batch': unknown key 'host' (expected pool_mode, pool_size, "
	             "max_user_connections, query_timeout, query_wait_timeout, "
	             "idle_transaction_timeout, client_idle_timeout, statement_timeout)");
}

/* ---- validation ---- */

Test(config, validation_across_options)
{
	struct loaded l;
	char want[256];

	load_ini(&l, MINIMAL "[sluice]\nmin_pool_size = 30\n", NULL, NULL);
	cr_assert_null(l.cfg);
	snprintf(want, sizeof(want), "%s: min_pool_size (30) is larger than default_pool_size (20)",
	         l.path);
	cr_assert_str_eq(l.err.message, want);

	load_ini(&l, MINIMAL "x = host=h pool_size=3 min_pool_size=4\n", NULL, NULL);
	cr_assert_null(l.cfg);
	snprintf(want, sizeof(want),
	         "%s: database 'x': min_pool_size (4) is larger than its pool size (3)", l.path);
	cr_assert_str_eq(l.err.message, want);

	load_ini(&l, MINIMAL "[sluice]\nlisten_addr =\nunix_socket_dir =\n", NULL, NULL);
	cr_assert_null(l.cfg);
	cr_assert(strstr(l.err.message, "nothing to listen on") != NULL, "%s", l.err.message);

	load_ini(&l, "[sluice]\nworkers = 2\n[databases]\napp = host=h\n", NULL, NULL);
	cr_assert_null(l.cfg);
	cr_assert(strstr(l.err.message, "no users can log in") != NULL, "%s", l.err.message);

	load_ini(&l, "[sluice]\nauth_type = trust\n[databases]\napp = host=h\n", NULL, NULL);
	cr_assert_not_null(l.cfg, "trust needs no users: %s", l.err.message);
	config_free(l.cfg);

	load_ini(&l, "[sluice]\nauth_file = userlist.txt\n", NULL, NULL);
	cr_assert_null(l.cfg);
	cr_assert(strstr(l.err.message, "no databases") != NULL, "%s", l.err.message);
}

Test(config, validate_after_set)
{
	struct loaded l;
	struct config_error err;

	load_ini(&l, MINIMAL, NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_eq(config_validate(l.cfg, &err), 0);
	cr_assert_eq(config_set(l.cfg, "min_pool_size", "25", &err), 0);
	cr_assert_eq(config_validate(l.cfg, &err), -1);
	config_free(l.cfg);
}

/* ---- auth_file ---- */

Test(config, auth_file_is_relative_to_the_ini_file)
{
	struct loaded l;
	char want[200];

	/* From another working directory, the ini file's directory still counts. */
	cr_assert_eq(chdir("/"), 0);
	load_ini(&l, MINIMAL, NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	snprintf(want, sizeof(want), "%s/userlist.txt", l.dir);
	cr_assert_str_eq(l.cfg->auth_file, want);
	cr_assert_not_null(auth_file_find(&l.cfg->auth, "app"));
	config_free(l.cfg);

	load_ini(&l, "[sluice]\nauth_file = missing.txt\n[databases]\napp = host=h\n", NULL, NULL);
	cr_assert_null(l.cfg);
	cr_assert(strstr(l.err.message, "missing.txt") != NULL, "%s", l.err.message);

	load_ini(&l, "[sluice]\nauth_file = /nonexistent/users.txt\n[databases]\napp = host=h\n",
	         NULL, NULL);
	cr_assert_null(l.cfg);
	cr_assert(strstr(l.err.message, "/nonexistent/users.txt") != NULL, "%s", l.err.message);
}

/* ---- environment ---- */

Test(config, environment_overrides_the_file)
{
	struct loaded l;
	char *env[] = {"PATH=/bin",
	               "SLUICE_POOL_MODE=session",
	               "SLUICE_IDLE_TRANSACTION_TIMEOUT=250ms",
	               "SLUICE_WORKERS=8",
	               "SLUICE_SOURCE_ROOT=/somewhere",
	               "SLUICE_NO_SUCH_OPTION=1",
	               "sluice_workers=3",
	               NULL};

	load_ini(&l, MINIMAL "[sluice]\npool_mode = transaction\nworkers = 2\n", env, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_eq(l.cfg->pool_mode, POOL_SESSION);
	cr_assert_eq(l.cfg->idle_transaction_timeout_us, 250000);
	cr_assert_eq(l.cfg->workers, 8);
	config_free(l.cfg);
}

Test(config, environment_errors_name_the_variable)
{
	struct loaded l;
	char *env[] = {"SLUICE_POOL_MODE=x", NULL};

	load_ini(&l, MINIMAL, env, NULL);
	cr_assert_null(l.cfg);
	cr_assert_str_eq(l.err.message, "SLUICE_POOL_MODE: invalid value 'x' (expected session, "
	                                "transaction, statement)");
}

Test(config, environment_auth_file)
{
	struct loaded l;
	char *env[] = {"SLUICE_AUTH_FILE=userlist.txt", NULL};

	load_ini(&l, "[sluice]\n[databases]\napp = host=h\n", env, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_eq(l.cfg->auth.count, 2);
	config_free(l.cfg);
}

/* ---- database URLs ---- */

Test(config, database_url_without_a_file)
{
	struct config_error err;
	char *env[] = {"SLUICE_DATABASE_URL=postgres://u:p%40ss@h:5433/db?application_name=x"
	               "&options=-c%20geqo%3Doff&sslmode=prefer",
	               "SLUICE_DEFAULT_POOL_SIZE=7", NULL};
	struct config *cfg = config_load(NULL, NULL, env, &err);
	const struct db_def *db;
	const struct user_secret *login;

	cr_assert_not_null(cfg, "%s", err.message);
	cr_assert_str_eq(cfg->source, "environment");
	cr_assert_eq(cfg->ndbs, 1);
	db = config_find_db(cfg, "db");
	cr_assert_not_null(db);
	cr_assert_str_eq(db->host, "h");
	cr_assert_eq(db->port, 5433);
	cr_assert_str_eq(db->dbname, "db");
	cr_assert_str_eq(db->user, "u");
	cr_assert_str_eq(db->password, "p@ss");
	cr_assert_str_eq(db->application_name, "x");
	cr_assert_str_eq(db->connect_options, "-c geqo=off");
	cr_assert_eq(cfg->default_pool_size, 7);
	/* Clients log in with the URL's own credentials. */
	login = auth_file_find(&cfg->auth, "u");
	cr_assert_not_null(login);
	cr_assert_eq(login->kind, SECRET_PLAIN);
	cr_assert_str_eq(login->plain, "p@ss");
	config_free(cfg);
}

Test(config, upstream_url)
{
	struct config_error err;
	struct config *cfg =
	    config_load(NULL, "postgresql://app:pw@db.example:6543/appdb", NULL, &err);
	const struct db_def *db;

	cr_assert_not_null(cfg, "%s", err.message);
	cr_assert_str_eq(cfg->source, "--upstream");
	db = config_find_db(cfg, "appdb");
	cr_assert_not_null(db);
	cr_assert_str_eq(db->host, "db.example");
	cr_assert_eq(db->port, 6543);
	cr_assert_eq(cfg->auth.count, 1);
	config_free(cfg);

	/* key=value conninfo works too; no dbname makes it the "*" fallback. */
	cfg = config_load(NULL, "host=10.1.2.3 user=app password=pw", NULL, &err);
	cr_assert_not_null(cfg, "%s", err.message);
	cr_assert_str_eq(cfg->dbs[0].name, "*");
	cr_assert_eq(cfg->dbs[0].port, 5432);
	cr_assert_str_eq(config_find_db(cfg, "whatever")->host, "10.1.2.3");
	config_free(cfg);
}

Test(config, named_database_urls)
{
	struct config_error err;
	char *env[] = {"SLUICE_DATABASE_URL_REPORTS=postgres://r:pw@rhost/analytics",
	               "SLUICE_DATABASE_URL=postgres://app:pw@apphost/app", NULL};
	struct config *cfg = config_load(NULL, NULL, env, &err);
	const struct db_def *db;

	cr_assert_not_null(cfg, "%s", err.message);
	cr_assert_eq(cfg->ndbs, 2);
	db = config_find_db(cfg, "reports");
	cr_assert_not_null(db);
	cr_assert_str_eq(db->dbname, "analytics");
	cr_assert_str_eq(db->host, "rhost");
	cr_assert_str_eq(config_find_db(cfg, "app")->host, "apphost");
	cr_assert_eq(cfg->auth.count, 2);
	config_free(cfg);
}

Test(config, url_replaces_file_entry_and_upstream_wins)
{
	struct loaded l;
	char *env[] = {"SLUICE_DATABASE_URL=postgres://envhost/app", NULL};

	load_ini(&l, MINIMAL, env, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_eq(l.cfg->ndbs, 1);
	cr_assert_str_eq(l.cfg->dbs[0].host, "envhost");
	config_free(l.cfg);

	load_ini(&l, MINIMAL, env, "postgres://flaghost/app");
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_str_eq(l.cfg->dbs[0].host, "flaghost");
	config_free(l.cfg);
}

Test(config, url_credentials_not_added_with_an_auth_file)
{
	struct loaded l;

	load_ini(&l, MINIMAL, NULL, "postgres://other:pw@h/other");
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_null(auth_file_find(&l.cfg->auth, "other"), "the auth_file is the only source");
	cr_assert_eq(l.cfg->auth.count, 2);
	config_free(l.cfg);
}

Test(config, url_errors)
{
	struct config_error err;
	char *env[] = {"SLUICE_DATABASE_URL=postgres://h/db?sslmode=sometimes", NULL};

	cr_assert_null(config_load(NULL, NULL, env, &err));
	cr_assert_str_eq(err.message, "SLUICE_DATABASE_URL: sslmode: invalid value 'sometimes' "
	                              "(expected disable, allow, prefer, require, verify-ca, "
	                              "verify-full)");
	cr_assert_null(config_load(NULL, "postgres://h/db?foo=1", NULL, &err));
	cr_assert(strstr(err.message, "--upstream: ") == err.message, "%s", err.message);
	cr_assert_null(config_load(NULL, "postgres://h/db?connect_timeout=5", NULL, &err));
	cr_assert(strstr(err.message, "'connect_timeout' is not supported") != NULL, "%s",
	          err.message);
	cr_assert_null(config_load(NULL, "postgres://u:p@h1:1,h2:2,h3:3/db?port=1,2", NULL, &err));
	cr_assert(strstr(err.message, "3 hosts but 2 ports") != NULL, "%s", err.message);
	cr_assert_null(
	    config_load(NULL, "postgres://u:p@h/db?load_balance_hosts=sometimes", NULL, &err));
	cr_assert(strstr(err.message, "load_balance_hosts: invalid value 'sometimes'") != NULL,
	          "%s", err.message);
	cr_assert_null(config_load(NULL, "postgres://h:0/db", NULL, &err));
	cr_assert(strstr(err.message, "port: invalid value '0'") != NULL, "%s", err.message);
	cr_assert_null(config_load(NULL, "postgres://u:p1@h/a",
	                           (char *[]){"SLUICE_DATABASE_URL=postgres://u:p2@h/b", NULL},
	                           &err));
	cr_assert(strstr(err.message, "two different passwords") != NULL, "%s", err.message);
}

Test(config, url_errors_hide_the_password)
{
	struct config_error err;

	cr_assert_null(config_load(NULL, "postgres://u:se%zzcret@h/db", NULL, &err));
	cr_assert(strstr(err.message, "se%zzcret") == NULL, "password leaked: %s", err.message);
	cr_assert(strstr(err.message, "--upstream: ") == err.message, "%s", err.message);
	cr_assert_null(config_load(NULL, "postgres://u:hunter2@[::1/db", NULL, &err));
	cr_assert(strstr(err.message, "hunter2") == NULL, "password leaked: %s", err.message);
}

Test(config, no_databases_without_a_file)
{
	struct config_error err;
	char *env[] = {"SLUICE_POOL_MODE=session", NULL};

	cr_assert_null(config_load(NULL, NULL, env, &err));
	cr_assert_str_eq(err.message,
	                 "no databases: give a config file, --upstream URL or SLUICE_DATABASE_URL");
	cr_assert_null(config_load(NULL, NULL, NULL, &err));
}

/* ---- environment: every variable, and the _FILE forms ---- */

#define URL_ENV "SLUICE_DATABASE_URL=postgres://u:pw@h/db"

/* SLUICE_ and the upper-cased option name. */
static void option_var(const struct config_option *o, char *out, size_t len)
{
	size_t pos = (size_t)snprintf(out, len, "SLUICE_");

	for (const char *c = o->name; *c != '\0' && pos < len - 1; c++)
		out[pos++] = (char)(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c);
	out[pos] = '\0';
}

/* A fresh directory for files the environment names; removed by rm_dir. */
static void make_dir(char *dir, size_t len)
{
	snprintf(dir, len, "/tmp/sluice-env-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void rm_dir(const char *dir)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

Test(config, every_option_variable_parses)
{
	size_t n;
	const struct config_option *opts = config_options(&n);
	char **env = calloc(n + 2, sizeof(*env));
	char var[96], *bad[3] = {var, URL_ENV, NULL};
	struct config_error err;
	struct config *cfg;

	/* Each SLUICE_<OPTION> at its default, all at once, over a URL: it loads. */
	for (size_t i = 0; i < n; i++) {
		option_var(&opts[i], var, sizeof(var));
		env[i] = malloc(strlen(var) + strlen(opts[i].default_value) + 2);
		sprintf(env[i], "%s=%s", var, opts[i].default_value);
	}
	env[n] = URL_ENV;
	cfg = config_load(NULL, NULL, env, &err);
	cr_assert_not_null(cfg, "%s", err.message);
	config_free(cfg);
	for (size_t i = 0; i < n; i++)
		free(env[i]);
	free(env);

	/* And each name is read: a bad value fails naming exactly that variable. */
	for (size_t i = 0; i < n; i++) {
		size_t len;

		if (opts[i].type == CONFIG_STRING)
			continue;
		option_var(&opts[i], var, sizeof(var));
		len = strlen(var);
		snprintf(var + len, sizeof(var) - len, "=not-a-value");
		cr_assert_null(config_load(NULL, NULL, bad, &err), "%s was ignored", var);
		var[len] = '\0';
		cr_assert(strncmp(err.message, var, len) == 0 && err.message[len] == ':', "%s: %s",
		          var, err.message);
	}
}

Test(config, option_variable_names_do_not_collide)
{
	size_t n;
	const struct config_option *opts = config_options(&n);
	char a[96], b[96];

	/* SLUICE_X_FILE must never also be the plain variable of an option x_file. */
	for (size_t i = 0; i < n; i++) {
		option_var(&opts[i], a, sizeof(a));
		strcat(a, "_FILE");
		for (size_t k = 0; k < n; k++) {
			option_var(&opts[k], b, sizeof(b));
			cr_assert_str_neq(a, b, "%s is both a _FILE form and an option", a);
		}
		cr_assert(strncmp(a, "SLUICE_DATABASE_URL", 19) != 0, "%s", a);
	}
}

Test(config, every_option_file_variable_parses)
{
	size_t n;
	const struct config_option *opts = config_options(&n);
	char dir[64], path[128], var[200], *env[] = {var, URL_ENV, NULL};
	struct config_error err;
	struct config *cfg;

	make_dir(dir, sizeof(dir));
	for (size_t i = 0; i < n; i++) {
		char text[300];

		/* An empty file is refused on purpose; an empty value is SLUICE_X=. */
		if (opts[i].default_value[0] == '\0')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, opts[i].name);
		snprintf(text, sizeof(text), "%s\n", opts[i].default_value);
		write_file(path, text);
		option_var(&opts[i], var, sizeof(var));
		snprintf(var + strlen(var), sizeof(var) - strlen(var), "_FILE=%s", path);
		cfg = config_load(NULL, NULL, env, &err);
		cr_assert_not_null(cfg, "%s: %s", var, err.message);
		config_format_value(cfg, &opts[i], text, sizeof(text));
		cr_assert_str_eq(text, opts[i].default_value, "%s", var);
		config_free(cfg);
	}
	rm_dir(dir);
}

Test(config, option_values_from_files)
{
	char dir[64], mode[128], port[128], users[128], pv[200], mv[200], uv[200];
	char *env[] = {pv, mv, uv, URL_ENV, NULL};
	struct config_error err;
	struct config *cfg;

	make_dir(dir, sizeof(dir));
	snprintf(mode, sizeof(mode), "%s/pool_mode", dir);
	snprintf(port, sizeof(port), "%s/port", dir);
	snprintf(users, sizeof(users), "%s/userlist.txt", dir);
	write_file(mode, "session"); /* no line break, as a Kubernetes Secret has none */
	write_file(port, "7000\r\n\n");
	write_file(users, userlist);
	snprintf(mv, sizeof(mv), "SLUICE_POOL_MODE_FILE=%s", mode);
	snprintf(pv, sizeof(pv), "SLUICE_LISTEN_PORT_FILE=%s", port);
	snprintf(uv, sizeof(uv), "SLUICE_AUTH_FILE=%s", users);
	cfg = config_load(NULL, NULL, env, &err);
	cr_assert_not_null(cfg, "%s", err.message);
	cr_assert_eq(cfg->pool_mode, POOL_SESSION);
	cr_assert_eq(cfg->listen_port, 7000);
	cr_assert_eq(cfg->auth.count, 2);
	config_free(cfg);
	rm_dir(dir);
}

Test(config, database_urls_from_files)
{
	char dir[64], main_url[128], named[128], v1[200], v2[200];
	char *env[] = {v1, v2, NULL};
	struct config_error err;
	struct config *cfg;
	const struct user_secret *login;

	make_dir(dir, sizeof(dir));
	snprintf(main_url, sizeof(main_url), "%s/url", dir);
	snprintf(named, sizeof(named), "%s/reports", dir);
	write_file(main_url, "postgres://app:s3cret%20pw@apphost:5433/app\n");
	write_file(named, "host=rhost dbname=analytics user=r password='it\\'s'\n");
	snprintf(v1, sizeof(v1), "SLUICE_DATABASE_URL_FILE=%s", main_url);
	snprintf(v2, sizeof(v2), "SLUICE_DATABASE_URL_REPORTS_FILE=%s", named);
	cfg = config_load(NULL, NULL, env, &err);
	cr_assert_not_null(cfg, "%s", err.message);
	cr_assert_eq(cfg->ndbs, 2, "SLUICE_DATABASE_URL_FILE must not define a database 'file'");
	cr_assert_null(config_find_db(cfg, "file"));
	cr_assert_str_eq(config_find_db(cfg, "app")->host, "apphost");
	cr_assert_str_eq(config_find_db(cfg, "app")->password, "s3cret pw");
	cr_assert_str_eq(config_find_db(cfg, "reports")->dbname, "analytics");
	cr_assert_null(config_find_db(cfg, "reports_file"));
	/* Clients log in with the credentials of the URL read from the file. */
	login = auth_file_find(&cfg->auth, "app");
	cr_assert_not_null(login);
	cr_assert_str_eq(login->plain, "s3cret pw");
	config_free(cfg);
	rm_dir(dir);
}

/* Loads `env` expecting failure with exactly `want`, in which @ stands for `dir`. */
static void expect_env_error(char *const *env, const char *dir, const char *want)
{
	struct config_error err;
	char expected[512];
	size_t pos = 0;

	for (const char *p = want; *p != '\0' && pos < sizeof(expected) - 64; p++)
		pos += (size_t)(*p == '@' ? snprintf(expected + pos, 64, "%s", dir)
		                          : snprintf(expected + pos, 2, "%c", *p));
	expected[pos] = '\0';
	cr_assert_null(config_load(NULL, NULL, env, &err), "should fail: %s", expected);
	cr_assert_str_eq(err.message, expected);
}

Test(config, file_variable_errors_name_the_variable_and_the_file)
{
	char dir[64], path[128], v[200], big[70 * 1024];
	char *env[] = {v, URL_ENV, NULL}, *both[] = {v, "SLUICE_POOL_MODE=session", URL_ENV, NULL};
	FILE *f;

	make_dir(dir, sizeof(dir));
	snprintf(v, sizeof(v), "SLUICE_DATABASE_URL_FILE=%s/none", dir);
	expect_env_error((char *[]){v, NULL}, dir,
	                 "SLUICE_DATABASE_URL_FILE: cannot read @/none: No such file or directory");
	/* A directory stands for an unreadable file: as root, permissions do not stop reads. */
	snprintf(v, sizeof(v), "SLUICE_DATABASE_URL_REPORTS_FILE=%s", dir);
	expect_env_error(env, dir,
	                 "SLUICE_DATABASE_URL_REPORTS_FILE: cannot read @: Is a directory");

	snprintf(path, sizeof(path), "%s/empty", dir);
	write_file(path, "\n");
	snprintf(v, sizeof(v), "SLUICE_DATABASE_URL_FILE=%s", path);
	expect_env_error((char *[]){v, NULL}, dir, "SLUICE_DATABASE_URL_FILE: @/empty is empty");

	snprintf(path, sizeof(path), "%s/mode", dir);
	write_file(path, "sometimes\n");
	snprintf(v, sizeof(v), "SLUICE_POOL_MODE_FILE=%s", path);
	expect_env_error(env, dir,
	                 "SLUICE_POOL_MODE_FILE (@/mode): invalid value 'sometimes' (expected "
	                 "session, transaction, statement)");
	expect_env_error(both, dir,
	                 "SLUICE_POOL_MODE and SLUICE_POOL_MODE_FILE are both set: use one");

	snprintf(path, sizeof(path), "%s/url", dir);
	write_file(path, "postgres://u:hunter2@h/db?sslmode=sometimes\n");
	snprintf(v, sizeof(v), "SLUICE_DATABASE_URL_X_FILE=%s", path);
	expect_env_error((char *[]){v, "SLUICE_DATABASE_URL_X=postgres://h/x", NULL}, dir,
	                 "SLUICE_DATABASE_URL_X and SLUICE_DATABASE_URL_X_FILE are both set: use "
	                 "one");
	expect_env_error((char *[]){v, NULL}, dir,
	                 "SLUICE_DATABASE_URL_X_FILE (@/url): sslmode: invalid value 'sometimes' "
	                 "(expected disable, allow, prefer, require, verify-ca, verify-full)");

	snprintf(path, sizeof(path), "%s/nul", dir);
	cr_assert_not_null(f = fopen(path, "w"));
	fwrite("6432\0\n", 1, 6, f);
	fclose(f);
	snprintf(v, sizeof(v), "SLUICE_LISTEN_PORT_FILE=%s", path);
	expect_env_error(env, dir, "SLUICE_LISTEN_PORT_FILE: @/nul contains a NUL byte");

	snprintf(path, sizeof(path), "%s/big", dir);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	write_file(path, big);
	snprintf(v, sizeof(v), "SLUICE_ADMIN_USERS_FILE=%s", path);
	expect_env_error(env, dir, "SLUICE_ADMIN_USERS_FILE: @/big is larger than 64 kB");
	rm_dir(dir);
}

Test(config, url_file_errors_hide_the_password)
{
	char dir[64], path[128], v[200];
	struct config_error err;

	make_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/url", dir);
	write_file(path, "postgres://u:hunter2@[::1/db\n");
	snprintf(v, sizeof(v), "SLUICE_DATABASE_URL_FILE=%s", path);
	cr_assert_null(config_load(NULL, NULL, (char *[]){v, NULL}, &err));
	cr_assert(strstr(err.message, "hunter2") == NULL, "password leaked: %s", err.message);
	cr_assert(strstr(err.message, "SLUICE_DATABASE_URL_FILE (") == err.message, "%s",
	          err.message);
	rm_dir(dir);
}

/* A variable the environment can set: an option, its _FILE form, or a database URL. */
static bool variable_is_known(const char *var)
{
	size_t n, len = strlen(var);
	const struct config_option *opts = config_options(&n);
	char name[96];

	if (strncmp(var, "SLUICE_DATABASE_URL", 19) == 0 && (len == 19 || var[19] == '_'))
		return true;
	for (size_t i = 0; i < n; i++) {
		option_var(&opts[i], name, sizeof(name));
		if (strcmp(name, var) == 0 ||
		    (len == strlen(name) + 5 && strncmp(name, var, strlen(name)) == 0 &&
		     strcmp(var + strlen(name), "_FILE") == 0))
			return true;
	}
	return false;
}

/*
 * Every SLUICE_* variable the docs and the packaging set or mention names
 * something sluice reads; placeholders such as SLUICE_<OPTION> and the bare
 * prefix are skipped.
 */
Test(config, documented_variables_exist)
{
	static const char *const files[] = {
	    "docs/config.md",
	    "docs/deploy.md",
	    "packaging/Dockerfile",
	    "packaging/k8s/deployment.yaml",
	    "packaging/sluice.1",
	    "packaging/k8s/deployment-configmap.yaml",
	    "packaging/systemd/sluice.service.in",
	};
	int seen = 0;

	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		char path[512], *text;

		source_path(path, sizeof(path), files[f]);
		text = read_file(path);
		for (const char *p = strstr(text, "SLUICE_"); p != NULL;
		     p = strstr(p + 1, "SLUICE_")) {
			size_t len = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
			char var[128];

			if (p[len] == '<' || len <= 7 || len >= sizeof(var))
				continue;
			snprintf(var, sizeof(var), "%.*s", (int)len, p);
			cr_assert(variable_is_known(var),
			          "%s mentions %s, which sluice does not read", files[f], var);
			seen++;
		}
		free(text);
	}
	cr_assert_gt(seen, 20);
}

Test(config, quoted_values_mean_the_text_inside)
{
	struct loaded l;

	load_ini(&l,
	         "[sluice]\nauth_file = userlist.txt\nunix_socket_dir = \"\"\n"
	         "listen_addr = '127.0.0.1'\n[databases]\napp = host=db.internal dbname=app\n",
	         NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_str_eq(l.cfg->unix_socket_dir, "");
	cr_assert_str_eq(l.cfg->listen_addr, "127.0.0.1");
	config_free(l.cfg);
}

/* ---- tenants and tiers ---- */

#define TENANTS                                                                                    \
	MINIMAL "[tier.free]\nquery_rate = 100/min\nrate_limit_wait = 2s\n"                        \
	        "[tier.pro]\nquery_rate = 500/min\nquery_burst = 50\n"                             \
	        "[tenant.acme]\nusers = acme_*, ops\ntier = pro\nmax_server_conn = 3\n"            \
	        "[tenant.reports]\ndatabases = reporting\ntier = free\nquery_rate = 5/s\n"         \
	        "statement_timeout = 30s\n"                                                        \
	        "[tenant.default]\ntransaction_rate = 1000\n"

Test(config, tenants_match_users_and_databases_in_file_order)
{
	struct loaded l;
	const struct tenant_def *t;

	load_ini(&l, TENANTS, NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	t = config_find_tenant(l.cfg, "acme_web", "reporting");
	cr_assert_str_eq(t->name, "acme", "the first matching section wins");
	cr_assert_str_eq(config_find_tenant(l.cfg, "ops", "app")->name, "acme");
	cr_assert_str_eq(config_find_tenant(l.cfg, "bob", "reporting")->name, "reports");
	t = config_find_tenant(l.cfg, "bob", "app");
	cr_assert_str_eq(t->name, "default", "unmatched clients go to [tenant.default]");
	cr_assert_eq(t->limits.rate[LIMIT_TRANSACTION].count, 1000);
	config_free(l.cfg);
}

Test(config, tenant_limits_come_from_the_tier_unless_set)
{
	struct loaded l;
	const struct tenant_def *acme, *reports;

	load_ini(&l, TENANTS, NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	acme = config_tenant_named(l.cfg, "acme");
	reports = config_tenant_named(l.cfg, "reports");
	cr_assert_eq(acme->limits.rate[LIMIT_QUERY].count, 500);
	cr_assert_eq(acme->limits.rate[LIMIT_QUERY].period_us, 60000000);
	cr_assert_eq(tenant_burst(&acme->limits, LIMIT_QUERY), 50);
	cr_assert_eq(acme->limits.max_server_conn, 3);
	cr_assert_eq(acme->limits.rate_limit_wait_us, -1, "pro sets no wait: inherit [sluice]");
	cr_assert_eq(reports->limits.rate[LIMIT_QUERY].count, 5, "own value beats the tier's");
	cr_assert_eq(reports->limits.rate[LIMIT_QUERY].period_us, 1000000);
	cr_assert_eq(reports->limits.rate_limit_wait_us, 2000000, "the rest from tier free");
	cr_assert_eq(reports->limits.statement_timeout_us, 30000000);
	cr_assert_eq(tenant_burst(&reports->limits, LIMIT_QUERY), 5, "default: 1 s worth");
	config_free(l.cfg);
}

Test(config, tenant_errors_name_the_section)
{
	struct loaded l;

	load_ini(&l, MINIMAL "[tenant.a]\nquery_rate = fast\n", NULL, NULL);
	expect_error(&l, 6,
	             "key 'query_rate': expected a rate such as 50/s or 100/min, got 'fast'");
	load_ini(&l, MINIMAL "[tenant.a]\ntier = gold\n", NULL, NULL);
	expect_error(&l, 6, "[tenant.a] names tier 'gold', which has no [tier.gold] section");
	load_ini(&l, MINIMAL "[tier.gold]\nusers = x\n", NULL, NULL);
	cr_assert_null(l.cfg);
	cr_assert(strstr(l.err.message, "unknown key 'users' in [tier.gold]") != NULL, "%s",
	          l.err.message);
	load_ini(&l, MINIMAL "[tenant.a]\nquery_rate = 1/s\nquery_rate = 2/s\n", NULL, NULL);
	expect_error(&l, 7, "'query_rate' is set twice (first on line 6)");
}

/* The note whose text holds `fragment`, or NULL. */
static const char *note_with(const struct config *cfg, const char *fragment)
{
	for (size_t i = 0; i < cfg->nnotes; i++)
		if (strstr(cfg->notes[i].text, fragment) != NULL)
			return cfg->notes[i].text;
	return NULL;
}

Test(config, min_server_conn_and_weight_come_from_the_tier_and_are_checked)
{
	struct loaded l;
	const struct tenant_def *a, *b;

	load_ini(&l,
	         MINIMAL "[tier.gold]\nmin_server_conn = 2\nweight = 4\n"
	                 "[tenant.a]\nusers = a\ntier = gold\nweight = 7\n[tenant.b]\nusers = b\n",
	         NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	a = config_tenant_named(l.cfg, "a");
	b = config_tenant_named(l.cfg, "b");
	cr_assert_eq(a->limits.min_server_conn, 2);
	cr_assert_eq(a->limits.weight, 7, "own value beats the tier's");
	cr_assert_eq(b->limits.min_server_conn, -1);
	cr_assert_eq(b->limits.weight, -1, "unset: the pool reads TENANT_WEIGHT_DEFAULT");
	cr_assert_null(note_with(l.cfg, "min_server_conn"), "2 of a pool of 20 is no warning");
	config_free(l.cfg);
	load_ini(&l, MINIMAL "[tenant.a]\nweight = 0\n", NULL, NULL);
	expect_error(&l, 6, "key 'weight': expected a whole number 1..1000, got '0'");
	load_ini(&l, MINIMAL "[tenant.a]\nweight = 1001\n", NULL, NULL);
	expect_error(&l, 6, "key 'weight': expected a whole number 1..1000, got '1001'");
	/* Guarantees that cannot all hold: a warning, not an error (tenants match by glob). */
	load_ini(&l,
	         "[sluice]\nauth_file = userlist.txt\ndefault_pool_size = 4\n[databases]\n"
	         "app = host=db.internal dbname=app\nother = host=db.internal dbname=other\n"
	         "[tenant.a]\nusers = a\nmin_server_conn = 3\n"
	         "[tenant.b]\nusers = b\ndatabases = app\nmin_server_conn = 2\n",
	         NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	cr_assert_not_null(note_with(l.cfg, "database 'app': the tenants that may use it have "
	                                    "min_server_conn 5 in all, more than its pool size 4"));
	cr_assert_null(note_with(l.cfg, "database 'other'"), "tenant b cannot use 'other'");
	config_free(l.cfg);
}

Test(config, rates_parse_and_format)
{
	struct rate r;
	char buf[32];

	cr_assert_eq(tenant_parse_rate("50/s", &r), 0);
	cr_assert_eq(r.count, 50);
	cr_assert_eq(r.period_us, 1000000);
	cr_assert_eq(tenant_parse_rate("100/min", &r), 0);
	cr_assert_eq(r.period_us, 60000000);
	tenant_format_rate(&r, buf, sizeof(buf));
	cr_assert_str_eq(buf, "100/min");
	cr_assert_eq(tenant_parse_rate("20", &r), 0);
	cr_assert_eq(r.period_us, 1000000);
	cr_assert_eq(tenant_parse_rate("-1/s", &r), -1);
	cr_assert_eq(tenant_parse_rate("5/h", &r), -1);
	cr_assert_eq(tenant_parse_rate("", &r), -1);
}

Test(config, url_sslmode_and_sslrootcert_reach_the_database)
{
	struct config_error err;
	struct config *cfg = config_load(
	    NULL, "postgres://u:p@db.example/app?sslmode=verify-full&sslrootcert=/etc/ca.pem", NULL,
	    &err);
	const struct db_def *db;

	cr_assert_not_null(cfg, "%s", err.message);
	db = config_find_db(cfg, "app");
	cr_assert_eq(db->sslmode, SSLMODE_VERIFY_FULL);
	cr_assert_str_eq(db->sslrootcert, "/etc/ca.pem");
	config_free(cfg);
}

/* ---- host lists (docs/topology.md) ---- */

Test(config, host_lists_in_databases)
{
	struct loaded l;
	const struct db_def *db;

	load_ini(&l,
	         MINIMAL "rw = host=a,b,c port=5432,5433,6000 target_session_attrs=read-write\n"
	                 "ro = host=a,/run/pg port=7000 load_balance_hosts=round-robin "
	                 "target_session_attrs=prefer-standby\n",
	         NULL, NULL);
	cr_assert_not_null(l.cfg, "%s", l.err.message);
	db = config_find_db(l.cfg, "rw");
	cr_assert_eq(db->nhosts, 3);
	cr_assert_str_eq(db->hosts[1].host, "b");
	cr_assert_eq(db->hosts[1].port, 5433);
	cr_assert_eq(db->hosts[2].port, 6000);
	cr_assert_eq(db->port, 5432, "the first host's port for SHOW DATABASES");
	cr_assert_eq(config_target_session_attrs(l.cfg, db), TARGET_READ_WRITE);
	cr_assert_eq(config_load_balance_hosts(l.cfg, db), BALANCE_DISABLE, "the global default");
	db = config_find_db(l.cfg, "ro");
	cr_assert_eq(db->nhosts, 2);
	cr_assert_str_eq(db->hosts[1].host, "/run/pg");
	cr_assert_eq(db->hosts[0].port, 7000, "one port serves every host");
	cr_assert_eq(db->hosts[1].port, 7000);
	cr_assert_eq(config_target_session_attrs(l.cfg, db), TARGET_PREFER_STANDBY);
	cr_assert_eq(config_load_balance_hosts(l.cfg, db), BALANCE_ROUND_ROBIN);
	db = config_find_db(l.cfg, "app");
	cr_assert_eq(db->nhosts, 1);
	cr_assert_eq(db->hosts[0].port, 5432);
	cr_assert_eq(config_target_session_attrs(l.cfg, db), TARGET_ANY);
	config_free(l.cfg);
}

Test(config, host_list_errors_name_the_database)
{
	struct loaded l;

	load_ini(&l, MINIMAL "bad = host=a,b,c port=1,2\n", NULL, NULL);
	expect_error(&l, 5,
	             "database 'bad': 3 hosts but 2 ports: give one port for all hosts, or one "
	             "per host");
	load_ini(&l, MINIMAL "bad = host=a,,b\n", NULL, NULL);
	expect_error(&l, 5, "database 'bad': host: empty item in the list 'a,,b'");
	load_ini(&l, MINIMAL "bad = host=a,b port=5432,x\n", NULL, NULL);
	expect_error(&l, 5,
	             "database 'bad': port: invalid value 'x' (expected an integer from 1 to "
	             "65535)");
	load_ini(&l, MINIMAL "bad = host=a, port=1\n", NULL, NULL);
	expect_error(&l, 5, "database 'bad': host: empty item in the list 'a,'");
	load_ini(&l, MINIMAL "bad = target_session_attrs=writable\n", NULL, NULL);
	expect_error(&l, 5,
	             "database 'bad': invalid value 'writable' (expected any, read-write, primary, "
	             "standby, prefer-standby, read-only)");
	load_ini(&l,
	         "[sluice]\nauth_file = userlist.txt\nserver_breaker_backoff = 10s\n"
	         "server_breaker_backoff_max = 1s\n[databases]\napp = dbname=app\n",
	         NULL, NULL);
	cr_assert_null(l.cfg);
	cr_assert(strstr(l.err.message, "server_breaker_backoff_max is shorter") != NULL, "%s",
	          l.err.message);
}

Test(config, host_lists_in_urls)
{
	struct config_error err;
	struct config *cfg =
	    config_load(NULL,
	                "postgres://u:p@a:5432,b:5433/app?target_session_attrs=standby&"
	                "load_balance_hosts=round-robin&application_name=x",
	                NULL, &err);
	const struct db_def *db;

	cr_assert_not_null(cfg, "%s", err.message);
	db = config_find_db(cfg, "app");
	cr_assert_eq(db->nhosts, 2);
	cr_assert_str_eq(db->hosts[0].host, "a");
	cr_assert_eq(db->hosts[0].port, 5432);
	cr_assert_str_eq(db->hosts[1].host, "b");
	cr_assert_eq(db->hosts[1].port, 5433);
	cr_assert_eq(db->target_session_attrs, TARGET_STANDBY);
	cr_assert_eq(db->load_balance_hosts, BALANCE_ROUND_ROBIN);
	cr_assert_str_eq(db->application_name, "x", "the parameters after it are kept");
	config_free(cfg);
	/* An empty port in libpq's list means the default, as libpq reads it. */
	cfg = config_load(NULL, "postgres://u:p@a,b:6000/app", NULL, &err);
	cr_assert_not_null(cfg, "%s", err.message);
	cr_assert_eq(cfg->dbs[0].hosts[0].port, 5432);
	cr_assert_eq(cfg->dbs[0].hosts[1].port, 6000);
	config_free(cfg);
}
