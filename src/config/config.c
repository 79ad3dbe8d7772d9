/*
 * Building a configuration snapshot: defaults from the option table, the ini
 * file (file.c), SLUICE_* environment overrides (env.c), database URLs
 * (url.c), then the auth_file and the checks that span options.  Also the
 * snapshot's release and the generated docs/config.md.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "config/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <sched.h>
#include <unistd.h>

#include "base/syslogger.h"

#include "config/databases.h"
#include "config/env.h"
#include "config/file.h"
#include "config/msg.h"
#include "config/redis_url.h"
#include "config/tenant.h"
#include "config/url.h"
#include "config/value.h"

/* -------------------------------------------------------------------------
 * Snapshot life cycle
 */

static struct config *config_new(const char *source, struct config_error *err)
{
	size_t n;
	const struct config_option *opts = config_options(&n);
	struct config *cfg = calloc(1, sizeof(*cfg));
	char msg[MSG_MAX];

	if (cfg == NULL || (cfg->source = strdup(source)) == NULL) {
		free(cfg);
		msg_set_error(err, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (value_parse(&opts[i], opts[i].default_value, value_field(cfg, &opts[i]), msg,
		                sizeof(msg)) < 0) {
			msg_set_error(err, "default of '%s': %s", opts[i].name, msg);
			config_free(cfg);
			return NULL;
		}
	}
	return cfg;
}

void config_free(struct config *cfg)
{
	size_t n;
	const struct config_option *opts = config_options(&n);

	if (cfg == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		if (opts[i].type == CONFIG_STRING)
			free(*(char **)value_field(cfg, &opts[i]));
	for (size_t i = 0; i < cfg->ndbs; i++)
		databases_db_fini(&cfg->dbs[i]);
	free(cfg->dbs);
	for (size_t i = 0; i < cfg->nusers; i++)
		free(cfg->users[i].name);
	free(cfg->users);
	config_tenants_free(cfg);
	for (size_t i = 0; i < cfg->nnotes; i++) {
		free(cfg->notes[i].key);
		free(cfg->notes[i].text);
	}
	free(cfg->notes);
	auth_file_fini(&cfg->auth);
	hba_fini(&cfg->hba);
	free(cfg->source);
	free(cfg);
}

void config_note(struct config *cfg, int level, const char *key, const char *fmt, ...)
{
	struct config_note *grown;
	char text[600];
	int n = 0;
	va_list ap;

	for (size_t i = 0; i < cfg->nnotes; i++)
		if (strcmp(cfg->notes[i].key, key) == 0)
			return;
	if (cfg->note_where[0] != '\0')
		n = snprintf(text, sizeof(text), "%s: ", cfg->note_where);
	va_start(ap, fmt);
	vsnprintf(text + n, sizeof(text) - (size_t)n, fmt, ap);
	va_end(ap);
	grown = realloc(cfg->notes, (cfg->nnotes + 1) * sizeof(*grown));
	if (grown == NULL)
		return; /* a warning lost to a full memory is the least of the troubles */
	cfg->notes = grown;
	grown[cfg->nnotes].level = level;
	grown[cfg->nnotes].key = strdup(key);
	grown[cfg->nnotes].text = strdup(text);
	if (grown[cfg->nnotes].key == NULL || grown[cfg->nnotes].text == NULL) {
		free(grown[cfg->nnotes].key);
		free(grown[cfg->nnotes].text);
		return;
	}
	cfg->nnotes++;
}

/* A relative path option (auth_file, auth_hba_file) made absolute against the ini's directory. */
static int resolve_relative(char **option, const char *ini_path, struct config_error *err)
{
	const char *slash = ini_path ? strrchr(ini_path, '/') : NULL;
	char *full;
	size_t need;
	int dir_len;

	if ((*option)[0] == '\0' || (*option)[0] == '/' || slash == NULL)
		return 0;
	dir_len = (int)(slash - ini_path);
	need = (size_t)dir_len + strlen(*option) + 2;
	if ((full = malloc(need)) == NULL) {
		msg_set_error(err, "out of memory");
		return -1;
	}
	snprintf(full, need, "%.*s/%s", dir_len, ini_path, *option);
	free(*option);
	*option = full;
	return 0;
}

/*
 * A relative auth_file or auth_hba_file is taken from the ini file's
 * directory, so a config directory can be moved or used from any working
 * directory as a whole.
 */
static int auth_load(struct config *cfg, const char *ini_path, struct config_error *err)
{
	char msg[sizeof(err->message)];
	int rc = 0;

	if (resolve_relative(&cfg->auth_file, ini_path, err) < 0 ||
	    resolve_relative(&cfg->auth_hba_file, ini_path, err) < 0)
		return -1;
	if (cfg->auth_file[0] != '\0' &&
	    auth_file_load(cfg->auth_file, &cfg->auth, msg, sizeof(msg)) < 0) {
		msg_set_error(err, "%s", msg);
		rc = -1;
	}
	if (cfg->auth_hba_file[0] != '\0' &&
	    hba_load(cfg->auth_hba_file, &cfg->hba, msg, sizeof(msg)) < 0) {
		msg_set_error(err, "%s", msg);
		rc = -1;
	}
	return rc;
}

/* Checks of the pools' sizes; each failure is counted in err. */
static void validate_pools(const struct config *cfg, struct config_error *err)
{
	const char *src = cfg->source;

	if (cfg->min_pool_size > cfg->default_pool_size)
		msg_set_error(err, "%s: min_pool_size (%d) is larger than default_pool_size (%d)",
		              src, cfg->min_pool_size, cfg->default_pool_size);
	if (cfg->server_breaker_backoff_max_us < cfg->server_breaker_backoff_us)
		msg_set_error(err,
		              "%s: server_breaker_backoff_max is shorter than "
		              "server_breaker_backoff",
		              src);
	for (size_t i = 0; i < cfg->ndbs; i++) {
		const struct db_def *db = &cfg->dbs[i];
		int min = config_min_pool_size(cfg, db), size = config_pool_size(cfg, db, NULL);

		if (min > size)
			msg_set_error(err,
			              "%s: database '%s': min_pool_size (%d) is larger than its "
			              "pool size (%d)",
			              src, db->name, min, size);
		if (db->host == NULL)
			msg_set_error(
			    err,
			    "%s: database '%s' has no host, which means the Unix socket in "
			    "unix_socket_dir, but unix_socket_dir is empty",
			    src, db->name);
	}
	if (cfg->ndbs == 0)
		msg_set_error(err,
		              "%s: no databases: add a [databases] section, --upstream URL or "
		              "SLUICE_DATABASE_URL",
		              src);
}

/* Checks of the options PgBouncer files bring (docs/migrating.md). */
static void validate_compat(const struct config *cfg, struct config_error *err)
{
	const char *src = cfg->source;

	if (cfg->auth_type == AUTH_HBA && cfg->auth_hba_file[0] == '\0')
		msg_set_error(err, "%s: auth_type = hba needs auth_hba_file", src);
	if (syslogger_facility(cfg->syslog_facility) < 0)
		msg_set_error(err,
		              "%s: syslog_facility '%.40s' is not one of daemon, user, auth, "
		              "authpriv, local0 .. local7",
		              src, cfg->syslog_facility);
	if (cfg->auth_dbname[0] != '\0' && config_find_db(cfg, cfg->auth_dbname) == NULL)
		msg_set_error(err, "%s: auth_dbname '%.60s' is not in [databases]", src,
		              cfg->auth_dbname);
}

/* limiter = redis needs a redis_url that parses; a bad one is refused even when unused. */
static void validate_redis(const struct config *cfg, struct config_error *err)
{
	struct redis_url url;
	char msg[MSG_MAX];

	if (cfg->limiter == LIMITER_REDIS && cfg->redis_url[0] == '\0')
		msg_set_error(err, "%s: limiter = redis needs redis_url", cfg->source);
	if (cfg->redis_url[0] == '\0')
		return;
	if (redis_url_parse(cfg->redis_url, &url, msg, sizeof(msg)) < 0) {
		msg_set_error(err, "%s: redis_url: %s", cfg->source, msg);
		return;
	}
	OPENSSL_cleanse(url.password, sizeof(url.password));
	/* Debian 12's hiredis is 0.14, without the TLS of hiredis 1.x. */
	if (url.tls)
		msg_set_error(
		    err,
		    "%s: redis_url: rediss:// (TLS) is not supported: sluice is built with "
		    "Debian 12's hiredis 0.14, which has no TLS; use redis:// over a trusted "
		    "network or a TLS tunnel (stunnel, spiped)",
		    cfg->source);
}

static int validate_all(const struct config *cfg, struct config_error *err)
{
	const char *src = cfg->source;
	int before = err->count;

	validate_pools(cfg, err);
	validate_compat(cfg, err);
	validate_redis(cfg, err);
	if (cfg->listen_addr[0] == '\0' && cfg->unix_socket_dir[0] == '\0')
		msg_set_error(err,
		              "%s: nothing to listen on: listen_addr and unix_socket_dir are empty",
		              src);
	if (cfg->auth_type != AUTH_TRUST && cfg->auth_type != AUTH_CERT &&
	    cfg->auth_hba_file[0] == '\0' && cfg->auth.count == 0)
		msg_set_error(err,
		              "%s: no users can log in: set auth_file, or give a URL with user "
		              "and password (or auth_type = trust for tests)",
		              src);
	return err->count > before ? -1 : 0;
}

int config_validate(const struct config *cfg, struct config_error *err)
{
	struct config_error scratch;

	if (err == NULL)
		err = &scratch;
	*err = (struct config_error){0};
	return validate_all(cfg, err);
}

/*
 * A database entry without a host reaches Postgres over the Unix socket in
 * unix_socket_dir, as in PgBouncer; known only once every source is read.
 */
static int default_hosts(struct config *cfg, struct config_error *err)
{
	char msg[MSG_MAX];

	for (size_t i = 0; i < cfg->ndbs; i++) {
		struct db_def *db = &cfg->dbs[i];

		if (db->host != NULL || cfg->unix_socket_dir[0] == '\0')
			continue;
		if ((db->host = strdup(cfg->unix_socket_dir)) == NULL) {
			msg_set_error(err, "out of memory");
			return -1;
		}
		/* Entries with a host had their host list split when they were read. */
		if (databases_split_hosts(db, msg, sizeof(msg)) < 0) {
			msg_set_error(err, "%s: database '%s': %s", cfg->source, db->name, msg);
			return -1;
		}
	}
	return 0;
}

/* Said once at load: values sluice accepts from PgBouncer files but reads its own way. */
static void note_values(struct config *cfg)
{
	char size[32];

	if (cfg->max_packet_size > INT64_C(1) << 30) {
		config_format_size(cfg->max_packet_size, size, sizeof(size));
		config_note(cfg, LOG_INFO, "max_packet_size",
		            "max_packet_size = %s is above the 1GB Postgres accepts; messages over "
		            "1GB are refused",
		            size);
	}
	config_tenants_check_guarantees(cfg);
}

/* File, then environment, then --upstream: each later source wins. */
static int config_build(struct config *cfg, const char *path, const char *upstream_url,
                        char *const *envp, struct config_error *err)
{
	bool keep_going = err->report != NULL;
	char msg[MSG_MAX];

	/* --check goes on after an error, to report the others too. */
	if (path != NULL && file_read(cfg, path, err) < 0 && !keep_going)
		return -1;
	if (env_apply_options(cfg, envp, err) < 0 && !keep_going)
		return -1;
	if (env_apply_urls(cfg, envp, err) < 0 && !keep_going)
		return -1;
	if (upstream_url != NULL && url_define_db(cfg, NULL, upstream_url, msg, sizeof(msg)) < 0) {
		msg_set_error(err, "--upstream: %s", msg);
		if (!keep_going)
			return -1;
	}
	if (path == NULL && cfg->ndbs == 0) {
		msg_set_error(err, "no databases: give a config file, --upstream URL or "
		                   "SLUICE_DATABASE_URL");
		return -1;
	}
	if (default_hosts(cfg, err) < 0 || (auth_load(cfg, path, err) < 0 && !keep_going))
		return -1;
	note_values(cfg);
	/* Checks across options after a bad entry would mostly repeat it ("no databases"). */
	if (err->count > 0)
		return -1;
	return validate_all(cfg, err);
}

struct config *config_load(const char *path, const char *upstream_url, char *const *envp,
                           struct config_error *err)
{
	const char *source = path ? path : upstream_url ? "--upstream" : "environment";
	struct config_error scratch;
	struct config *cfg;

	if (err == NULL)
		err = &scratch;
	*err = (struct config_error){0};
	cfg = config_new(source, err);

	if (cfg == NULL)
		return NULL;
	if (config_build(cfg, path, upstream_url, envp, err) < 0) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

struct config *config_check(const char *path, const char *upstream_url, char *const *envp,
                            void (*report)(void *arg, const char *message), void *arg, int *nerrors)
{
	const char *source = path ? path : upstream_url ? "--upstream" : "environment";
	struct config_error err = {.report = report, .report_arg = arg};
	struct config *cfg = config_new(source, &err);

	if (cfg != NULL &&
	    (config_build(cfg, path, upstream_url, envp, &err) < 0 || err.count > 0)) {
		config_free(cfg);
		cfg = NULL;
	}
	*nerrors = err.count;
	return cfg;
}

/* -------------------------------------------------------------------------
 * docs/config.md
 */

static const char *const md_intro[] = {
    "# Configuration",
    "",
    "<!-- Generated by config_write_markdown() from the option tables in",
    "     src/config/options.c and src/config/databases.c; `sluice --describe-config` prints it.",
    "     Do not edit by hand: a unit test fails when this file and the tables differ. -->",
    "",
    "sluice builds its configuration from these sources, each overriding the ones before:",
    "",
    "1. the defaults listed below;",
    "2. the INI file, if one is given (a complete example is `etc/sluice.ini`);",
    "3. `SLUICE_<OPTION>` environment variables: any [sluice] option, upper-cased, such as",
    "   `SLUICE_POOL_MODE=session` or `SLUICE_AUTH_FILE=/etc/sluice/userlist.txt`;",
    "4. `SLUICE_DATABASE_URL`, then `SLUICE_DATABASE_URL_<NAME>` (see Database URLs);",
    "5. `sluice --upstream URL`.",
    "",
    "Then the auth_file is read and the whole is checked. Any error stops the start (or, on",
    "RELOAD, keeps the running configuration) and names the file and line, or the variable.",
    "",
    "## Environment and secrets",
    "",
    "Each of these variables also has a `_FILE` form naming a file that holds the value:",
    "`SLUICE_DATABASE_URL_FILE`, `SLUICE_DATABASE_URL_<NAME>_FILE` and `SLUICE_<OPTION>_FILE`,",
    "such as `SLUICE_DATABASE_URL_FILE=/run/secrets/database-url`. Passwords can then stay in",
    "a mounted Kubernetes Secret, a Docker secret or a systemd credential instead of the",
    "environment, which `/proc`, `docker inspect` and crash reports show.",
    "",
    "- The file's content is the value, less trailing line breaks.",
    "- Setting both a variable and its `_FILE` form is an error, and so is a file that is",
    "  missing, unreadable, empty, larger than 64 kB or holding a NUL byte (an empty value",
    "  is given as an empty variable). Errors name the variable and the file.",
    "- A trailing `_FILE` always means this form, so `SLUICE_DATABASE_URL_X_FILE` reads the",
    "  URL of database `x` from a file and cannot define a database named `x_file`.",
    "- The files are read again on RELOAD and SIGHUP: a rotated secret takes effect without",
    "  a restart. The variables themselves are those sluice was started with.",
    "- `SLUICE_AUTH_FILE` is the `auth_file` option: a user list, one line per client user.",
    "",
    "Environment variables starting with `SLUICE_` that name no option are ignored.",
    "",
    "## File format",
    "",
    "- Sections: `[sluice]` (`[pgbouncer]` is accepted as an alias), `[databases]`,",
    "  `[users]`, `[tenant.NAME]` and `[tier.NAME]`. An unknown section, an unknown key or a",
    "  key set twice is an error.",
    "- A line starting with `;` or `#` is a comment; so is the rest of a line after a `;`",
    "  that follows a blank, which is why a value cannot contain ` ;`.",
    "- inih limits a line to about 200 characters in common builds. A long value continues on",
    "  the following lines when they are indented; the pieces are joined with one space.",
    "- Durations are a number and a unit: `us`, `ms`, `s`, `min`, `h`, `d`; decimals are",
    "  allowed (`1.5s`). A bare number is seconds, as in PgBouncer. 0 switches a timeout off.",
    "- Sizes are bytes, or a number with `kB`, `MB` or `GB` (multiples of 1024).",
    "- A relative `auth_file` is relative to the directory of the INI file.",
    "",
    "## Database URLs",
    "",
    "`SLUICE_DATABASE_URL=postgres://app:secret@db:5432/app` (or a `key=value` conninfo",
    "string; both are parsed by libpq) defines the database `app` on server `db`. A URL",
    "without a database name defines the `*` fallback entry instead, and one without a host",
    "connects to 127.0.0.1 (not to libpq's default Unix socket).",
    "`SLUICE_DATABASE_URL_<NAME>` defines the database `<name>` (lower-cased), and",
    "`--upstream URL` works like `SLUICE_DATABASE_URL`. A URL entry replaces a file entry",
    "of the same name.",
    "",
    "When the URL carries a user and password and no `auth_file` is set, clients log in",
    "with those same credentials: sluice checks the password itself (as `auth_type` says,",
    "SCRAM-SHA-256 by default) and reuses it for the server login, so the URL an",
    "application already has is all the setup needed. The password is not passed through",
    "to Postgres: a client giving another user or password is refused by sluice. With an",
    "`auth_file`, that file alone says who may log in.",
    "",
    "Besides host, port, dbname, user and password, a URL may carry `application_name`,",
    "`options` (becomes `connect_options`), `sslmode` (any of libpq's values, checked as",
    "libpq does: docs/security.md) and `sslrootcert`. Any other parameter fails rather",
    "than being silently dropped.",
    "",
    NULL,
};

static const char *const type_names[] = {
    [CONFIG_BOOL] = "bool",         [CONFIG_INT] = "integer",   [CONFIG_SIZE] = "size",
    [CONFIG_DURATION] = "duration", [CONFIG_STRING] = "string", [CONFIG_ENUM] = "enum",
    [CONFIG_OCTAL] = "octal",
};

/* Table-cell text: a '|' would end the cell and '<' could open an HTML tag. */
static void md_cell(FILE *out, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '|')
			fputs("\\|", out);
		else if (*s == '<')
			fputs("&lt;", out);
		else
			fputc(*s, out);
	}
}

/* Accepted values: "1 .. 256", "1 .. 256, `auto`", "0 .. 30d", or the enum names. */
static void md_range(FILE *out, const struct config_option *spec)
{
	char lo[32], hi[32];

	switch (spec->type) {
	case CONFIG_INT:
	case CONFIG_OCTAL:
	case CONFIG_DURATION:
	case CONFIG_SIZE:
		value_format_number(spec->type, spec->min, lo, sizeof(lo));
		value_format_number(spec->type, spec->max, hi, sizeof(hi));
		fprintf(out, "%s .. %s%s", lo, hi, spec->takes_auto ? ", `auto`" : "");
		return;
	case CONFIG_ENUM:
		for (const char *const *n = spec->enum_names; *n != NULL; n++)
			fprintf(out, "%s`%s`", n == spec->enum_names ? "" : ", ", *n);
		return;
	case CONFIG_BOOL:
		fputs("on, off", out);
		return;
	case CONFIG_STRING:
		return;
	}
}

static void md_options(FILE *out)
{
	size_t n;
	const struct config_option *opts = config_options(&n);

	fputs("## [sluice]\n\n", out);
	fputs("Reload `live`: RELOAD, SIGHUP or SET apply it. `restart`: a changed value is "
	      "logged and\nignored until sluice restarts.\n\n",
	      out);
	fputs("| option | type | default | accepted | reload | description |\n", out);
	fputs("|---|---|---|---|---|---|\n", out);
	for (size_t i = 0; i < n; i++) {
		const struct config_option *o = &opts[i];

		fprintf(out, "| `%s` | %s | ", o->name, type_names[o->type]);
		if (o->default_value[0] != '\0')
			fprintf(out, "`%s`", o->default_value);
		else
			fputs("(empty)", out);
		fputs(" | ", out);
		md_range(out, o);
		fprintf(out, " | %s | ", o->reload == RELOAD_LIVE ? "live" : "restart");
		md_cell(out, o->help);
		fputs(" |\n", out);
	}
}

static void md_entry_keys(FILE *out, const struct entry_key *keys, size_t n)
{
	fputs("| key | type | accepted | description |\n|---|---|---|---|\n", out);
	for (size_t i = 0; i < n; i++) {
		struct config_option spec = databases_entry_spec(&keys[i]);

		fprintf(out, "| `%s` | %s | ", keys[i].name, type_names[spec.type]);
		md_range(out, &spec);
		fputs(" | ", out);
		md_cell(out, keys[i].help);
		fputs(" |\n", out);
	}
}

void config_write_markdown(FILE *out)
{
	const struct entry_key *keys;
	size_t n;

	for (const char *const *line = md_intro; *line != NULL; line++)
		fprintf(out, "%s\n", *line);
	md_options(out);
	fputs("\n## [databases]\n\n"
	      "One line per database clients may ask for: `name = key=value ...`, keys as in a\n"
	      "libpq conninfo string. A value with blanks is written in single quotes, and a\n"
	      "backslash takes the next character literally (`password='it\\'s'`). The entry\n"
	      "named `*` serves every database name without an entry of its own.\n"
	      "Overrides left out inherit the [sluice] value.\n\n"
	      "A name served by `*` gets its pools (and its rows in SHOW DATABASES, SHOW POOLS\n"
	      "and /metrics) only while they are used: a pool whose server login Postgres\n"
	      "answers with 3D000 (the database does not exist) is freed as soon as its clients\n"
	      "are gone, and any other is freed once it has had no clients and no server\n"
	      "connections for `autodb_idle_timeout`; its counters go with it. At most\n"
	      "`max_auto_databases` names have pools at once, over all workers: a login to one\n"
	      "more is refused with 53400 until a name is freed.\n\n",
	      out);
	keys = databases_db_keys(&n);
	md_entry_keys(out, keys, n);
	fputs("\n## [users]\n\n"
	      "Per-user overrides: `name = key=value ...`. A user's setting beats the database's,\n"
	      "which beats the [sluice] value.\n\n",
	      out);
	keys = databases_user_keys(&n);
	md_entry_keys(out, keys, n);
	fputs("\n## [tenant.NAME] and [tier.NAME]\n\n"
	      "One section per tenant, `key = value` lines (docs/tenants.md explains the model).\n"
	      "A client belongs to the first tenant in file order whose `users` and `databases`\n"
	      "match it, else to `default`, which `[tenant.default]` may limit. A tier section\n"
	      "takes the limit keys only; a tenant with `tier = NAME` takes every limit it does\n"
	      "not set itself from that tier. Timeouts: [users] beats the tenant, which beats\n"
	      "[databases] and [sluice].\n\n"
	      "| key | description |\n|---|---|\n",
	      out);
	config_tenant_write_markdown(out);
}

int config_workers(const struct config *cfg)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	int n = online > 0 ? (int)online : 1;

	if (cfg->workers > 0)
		return cfg->workers;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) < n)
		n = CPU_COUNT(&set);
	return n < 1 ? 1 : n > 256 ? 256 : n;
}
