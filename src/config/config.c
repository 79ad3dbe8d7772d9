/*
 * Building a configuration snapshot: defaults from the option table, the ini
 * file (inih), SLUICE_* environment overrides, database URLs, then the
 * auth_file and the checks that span options.  Also the lookups the pools
 * use (effective pool size and mode) and the generated docs/config.md.
 *
 * The file is read in two passes: inih only splits it into raw entries (with
 * line numbers and continuation lines joined), and the entries are applied
 * afterwards, so every error can name the file, line and key, and a value
 * may span several lines before it is interpreted.
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>

#define MSG_MAX 400 /* room for a message before the "FILE:LINE: " prefix */

/*
 * Keys inside a [databases] or [users] value.  An override of a [sluice]
 * option names it in `global`, which supplies type, bounds and enum names, so
 * an override can never accept what the global option would refuse.
 */
struct entry_key {
	const char *name;      /* key inside the value: `pool_size=5` */
	enum config_type type; /* CONFIG_STRING or CONFIG_INT when global is NULL */
	size_t offset;         /* in struct db_def or struct user_def */
	const char *global;    /* [sluice] option this overrides; NULL = none */
	int64_t min, max;      /* bounds of a CONFIG_INT key without a global */
	const char *help;      /* one line for docs/config.md */
};

#define DB_KEY(key, key_type, option, lo, hi, text)                                                \
	{                                                                                          \
		.name = #key, .type = key_type, .offset = offsetof(struct db_def, key),            \
		.global = option, .min = lo, .max = hi, .help = text                               \
	}
#define USER_KEY(key, option, text)                                                                \
	{                                                                                          \
		.name = #key, .type = CONFIG_INT, .offset = offsetof(struct user_def, key),        \
		.global = option, .help = text                                                     \
	}

static const struct entry_key db_keys[] = {
    DB_KEY(host, CONFIG_STRING, NULL, 0, 0,
           "Server host name or IP address, or a Unix socket directory (starts with /); "
           "default 127.0.0.1."),
    DB_KEY(port, CONFIG_INT, NULL, 1, 65535, "Server port; default 5432."),
    DB_KEY(dbname, CONFIG_STRING, NULL, 0, 0,
           "Database name on the server; default: the name the client asked for."),
    DB_KEY(user, CONFIG_STRING, NULL, 0, 0,
           "Log in to the server as this user, whoever the client is (all clients then "
           "share one pool); default: the client's user."),
    DB_KEY(password, CONFIG_STRING, NULL, 0, 0,
           "Password for the server login; default: the user's entry in auth_file."),
    DB_KEY(pool_size, CONFIG_INT, "default_pool_size", 0, 0,
           "Overrides default_pool_size for this database's pools."),
    DB_KEY(min_pool_size, CONFIG_INT, "min_pool_size", 0, 0,
           "Overrides min_pool_size for this database's pools."),
    DB_KEY(pool_mode, CONFIG_ENUM, "pool_mode", 0, 0, "Overrides pool_mode for this database."),
    DB_KEY(max_db_connections, CONFIG_INT, "max_db_connections", 0, 0,
           "Overrides max_db_connections for this database; 0 = no cap."),
    DB_KEY(connect_options, CONFIG_STRING, NULL, 0, 0,
           "Sent as the startup `options` parameter, e.g. '-c statement_timeout=30s'."),
    DB_KEY(application_name, CONFIG_STRING, NULL, 0, 0,
           "application_name for server logins when the client sends none."),
    DB_KEY(query_timeout, CONFIG_DURATION, "query_timeout", 0, 0,
           "Overrides query_timeout for this database."),
    DB_KEY(query_wait_timeout, CONFIG_DURATION, "query_wait_timeout", 0, 0,
           "Overrides query_wait_timeout for this database."),
    DB_KEY(idle_transaction_timeout, CONFIG_DURATION, "idle_transaction_timeout", 0, 0,
           "Overrides idle_transaction_timeout for this database."),
    DB_KEY(client_idle_timeout, CONFIG_DURATION, "client_idle_timeout", 0, 0,
           "Overrides client_idle_timeout for this database."),
    DB_KEY(sslmode, CONFIG_ENUM, "server_tls_sslmode", 0, 0,
           "Overrides server_tls_sslmode for this database, as libpq's sslmode."),
    DB_KEY(sslrootcert, CONFIG_STRING, NULL, 0, 0,
           "CA file for this server's certificate, as libpq's sslrootcert; default "
           "server_tls_ca_file."),
};

static const struct entry_key user_keys[] = {
    USER_KEY(pool_mode, "pool_mode", "Overrides pool_mode for this user's pools."),
    USER_KEY(pool_size, "default_pool_size",
             "Overrides default_pool_size (and a database's pool_size) for this user."),
    USER_KEY(max_user_connections, "max_user_connections",
             "Overrides max_user_connections for this user; 0 = no cap."),
    USER_KEY(query_timeout, "query_timeout",
             "Overrides query_timeout (and a database's and a tenant's) for this user."),
    USER_KEY(query_wait_timeout, "query_wait_timeout",
             "Overrides query_wait_timeout for this user."),
    USER_KEY(idle_transaction_timeout, "idle_transaction_timeout",
             "Overrides idle_transaction_timeout for this user."),
    USER_KEY(client_idle_timeout, "client_idle_timeout",
             "Overrides client_idle_timeout for this user."),
    {.name = "statement_timeout",
     .type = CONFIG_DURATION,
     .offset = offsetof(struct user_def, statement_timeout),
     .max = 30 * INT64_C(86400000000),
     .help = "Sent to Postgres as a startup option for this user's server connections "
             "(a tenant's value applies otherwise); 0 = Postgres' default."},
};

#define NKEYS(table) (sizeof(table) / sizeof((table)[0]))

enum section { SECTION_SLUICE, SECTION_DATABASES, SECTION_USERS, SECTION_TENANT, SECTION_TIER };

/* One `key = value` of the file, continuation lines already joined. */
struct raw_entry {
	enum section section; /* [pgbouncer] is folded into SECTION_SLUICE */
	char *name;           /* NAME of [tenant.NAME] / [tier.NAME]; "" for the others */
	char *key;            /* option, database or user name */
	char *value;          /* text after '=', may hold a password */
	int line;             /* line of the key, for errors */
};

/* State of the inih pass over one file. */
struct file_parse {
	const char *path;          /* for error messages */
	FILE *file;                /* read by ini_read_line_cb */
	int lineno;                /* physical line last handed to inih */
	bool indented;             /* that line starts with a blank: inih's continuation */
	int too_long;              /* inih's line limit, once a longer line stopped the pass */
	struct raw_entry *entries; /* in file order */
	size_t nentries;           /* used entries */
	size_t cap;                /* allocated entries */
	int error_line;            /* line of the first error found by the handler; 0 = none */
	struct config_error *err;  /* receives that first error */
};

static void set_error(struct config_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct config_error *err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}

/*
 * Messages are built in the caller's buffer: the innermost failure writes
 * it, and each level out puts its context in front (msg_prefix) or adds
 * detail at the end (msg_append), so no level needs a buffer of its own.
 */
static void msg_append(char *msg, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void msg_append(char *msg, size_t len, const char *fmt, ...)
{
	size_t used = strnlen(msg, len);
	va_list ap;

	if (used + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(msg + used, len - used, fmt, ap);
	va_end(ap);
}

static void msg_prefix(char *msg, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void msg_prefix(char *msg, size_t len, const char *fmt, ...)
{
	char prefix[160];
	size_t plen, mlen;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	plen = strlen(prefix) < len ? strlen(prefix) : len - 1;
	mlen = strnlen(msg, len - 1);
	if (plen + mlen >= len)
		mlen = len - 1 - plen; /* the end of the message gives way */
	memmove(msg + plen, msg, mlen);
	memcpy(msg, prefix, plen);
	msg[plen + mlen] = '\0';
}

/* Frees a string that may hold a secret, wiping it first. */
static void free_secret(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

static const char *skip_space(const char *p)
{
	while (isspace((unsigned char)*p))
		p++;
	return p;
}

/* -------------------------------------------------------------------------
 * Typed values: one parser and one printer for every option type
 */

/* Whole integer in `base`, optional blanks around it; no sign, no junk. */
static int parse_int(const char *text, int base, int64_t *out)
{
	const char *p = skip_space(text);
	char *end;
	long long v;

	if (!isdigit((unsigned char)*p))
		return -1;
	errno = 0;
	v = strtoll(p, &end, base);
	if (errno != 0 || *skip_space(end) != '\0')
		return -1;
	*out = v;
	return 0;
}

static void *option_field(const struct config *cfg, const struct config_option *opt)
{
	return (char *)cfg + opt->offset;
}

/* A number of an INT, OCTAL, DURATION or SIZE option as it would be written. */
static void format_number(enum config_type type, int64_t v, char *buf, size_t len)
{
	if (type == CONFIG_DURATION)
		config_format_duration(v, buf, len);
	else if (type == CONFIG_SIZE)
		config_format_size(v, buf, len);
	else if (type == CONFIG_OCTAL)
		snprintf(buf, len, "%#llo", (unsigned long long)v);
	else
		snprintf(buf, len, "%lld", (long long)v);
}

/* Appends "an integer from 1 to 256", "session, transaction, statement", ... */
static void describe_expected(const struct config_option *spec, char *msg, size_t len)
{
	const char *noun = "an integer", *units = "";
	char lo[32], hi[32];

	if (spec->type == CONFIG_DURATION) {
		noun = "a duration";
		units = " with unit us, ms, s, min, h or d";
	} else if (spec->type == CONFIG_SIZE) {
		noun = "a size";
		units = " with unit kB, MB or GB";
	} else if (spec->type == CONFIG_OCTAL) {
		noun = "an octal mode";
	}
	if (spec->type == CONFIG_BOOL) {
		msg_append(msg, len, "on/off, true/false, yes/no or 1/0");
	} else if (spec->type == CONFIG_ENUM) {
		for (const char *const *n = spec->enum_names; *n != NULL; n++)
			msg_append(msg, len, "%s%s", n == spec->enum_names ? "" : ", ", *n);
	} else if (spec->type == CONFIG_STRING) {
		msg_append(msg, len, "text");
	} else {
		format_number(spec->type, spec->min, lo, sizeof(lo));
		format_number(spec->type, spec->max, hi, sizeof(hi));
		msg_append(msg, len, "%s from %s to %s%s", noun, lo, hi, units);
	}
}

static int parse_bool(const char *text, int *out)
{
	static const char *const yes[] = {"on", "true", "yes", "1"};
	static const char *const no[] = {"off", "false", "no", "0"};

	for (size_t i = 0; i < NKEYS(yes); i++) {
		if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
			*out = strcasecmp(text, yes[i]) == 0;
			return 0;
		}
	}
	return -1;
}

/* Number-like types; 0 on success, -1 when `text` is not a valid value. */
static int parse_number(const struct config_option *spec, const char *text, void *field)
{
	int64_t v;
	int rc;

	if (spec->type == CONFIG_BOOL)
		return parse_bool(text, field);
	if (spec->type == CONFIG_DURATION)
		rc = config_parse_duration(text, &v);
	else if (spec->type == CONFIG_SIZE)
		rc = config_parse_size(text, &v);
	else
		rc = parse_int(text, spec->type == CONFIG_OCTAL ? 8 : 10, &v);
	if (rc < 0 || v < spec->min || v > spec->max)
		return -1;
	if (spec->type == CONFIG_DURATION || spec->type == CONFIG_SIZE)
		*(int64_t *)field = v;
	else
		*(int *)field = (int)v;
	return 0;
}

/*
 * Stores `text` into `field` as `spec` describes.  On error writes a message
 * without any location prefix (callers add file:line or the variable name).
 */
static int parse_value(const struct config_option *spec, const char *text, void *field, char *msg,
                       size_t len)
{
	char *copy;

	if (spec->type == CONFIG_STRING) {
		if ((copy = strdup(text)) == NULL) {
			snprintf(msg, len, "out of memory");
			return -1;
		}
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	}
	if (spec->type == CONFIG_ENUM) {
		for (int i = 0; spec->enum_names[i] != NULL; i++) {
			if (strcasecmp(text, spec->enum_names[i]) == 0) {
				*(int *)field = i;
				return 0;
			}
		}
	} else if (parse_number(spec, text, field) == 0) {
		return 0;
	}
	snprintf(msg, len, "invalid value '%.100s' (expected ", text);
	describe_expected(spec, msg, len);
	msg_append(msg, len, ")");
	return -1;
}

void config_format_value(const struct config *cfg, const struct config_option *opt, char *buf,
                         size_t len)
{
	const void *field = option_field(cfg, opt);

	switch (opt->type) {
	case CONFIG_BOOL:
		snprintf(buf, len, "%s", *(const int *)field ? "on" : "off");
		return;
	case CONFIG_INT:
	case CONFIG_OCTAL:
		format_number(opt->type, *(const int *)field, buf, len);
		return;
	case CONFIG_DURATION:
	case CONFIG_SIZE:
		format_number(opt->type, *(const int64_t *)field, buf, len);
		return;
	case CONFIG_STRING:
		snprintf(buf, len, "%s", *(char *const *)field);
		return;
	case CONFIG_ENUM:
		snprintf(buf, len, "%s", opt->enum_names[*(const int *)field]);
		return;
	}
	snprintf(buf, len, "?");
}

int config_set(struct config *cfg, const char *key, const char *value, struct config_error *err)
{
	const struct config_option *opt = config_option_find(key);
	char msg[MSG_MAX];

	if (opt == NULL) {
		set_error(err, "unknown option '%.100s'", key);
		return -1;
	}
	if (parse_value(opt, value, option_field(cfg, opt), msg, sizeof(msg)) < 0) {
		set_error(err, "key '%s': %s", key, msg);
		return -1;
	}
	return 0;
}

/* -------------------------------------------------------------------------
 * [databases] and [users] entries
 */

static void db_init(struct db_def *db)
{
	memset(db, 0, sizeof(*db));
	db->port = 5432;
	db->pool_size = CONFIG_INHERIT;
	db->min_pool_size = CONFIG_INHERIT;
	db->pool_mode = CONFIG_INHERIT;
	db->max_db_connections = CONFIG_INHERIT;
	db->query_timeout = CONFIG_INHERIT;
	db->query_wait_timeout = CONFIG_INHERIT;
	db->idle_transaction_timeout = CONFIG_INHERIT;
	db->client_idle_timeout = CONFIG_INHERIT;
	db->sslmode = CONFIG_INHERIT;
}

static void db_fini(struct db_def *db)
{
	free(db->name);
	free(db->host);
	free(db->dbname);
	free(db->user);
	free_secret(db->password);
	free(db->connect_options);
	free(db->application_name);
	free(db->sslrootcert);
	memset(db, 0, sizeof(*db));
}

static void user_init(struct user_def *u)
{
	memset(u, 0, sizeof(*u));
	u->pool_mode = CONFIG_INHERIT;
	u->pool_size = CONFIG_INHERIT;
	u->max_user_connections = CONFIG_INHERIT;
	u->query_timeout = CONFIG_INHERIT;
	u->query_wait_timeout = CONFIG_INHERIT;
	u->idle_transaction_timeout = CONFIG_INHERIT;
	u->client_idle_timeout = CONFIG_INHERIT;
	u->statement_timeout = CONFIG_INHERIT;
}

/* Type and bounds of an entry key, borrowed from the [sluice] option it overrides. */
static struct config_option entry_spec(const struct entry_key *k)
{
	const struct config_option *global = k->global ? config_option_find(k->global) : NULL;
	struct config_option spec = {
	    .name = k->name, .type = k->type, .min = k->min, .max = k->max};

	if (global != NULL) {
		spec = *global;
		spec.name = k->name;
	}
	return spec;
}

/* Stores one key of an entry; an empty string means "not set" (NULL). */
static int entry_set(const struct entry_key *k, void *entry, const char *value, char *msg,
                     size_t len)
{
	struct config_option spec = entry_spec(k);
	void *field = (char *)entry + k->offset;
	char *copy = NULL;

	if (spec.type != CONFIG_STRING)
		return parse_value(&spec, value, field, msg, len);
	if (*value != '\0' && (copy = strdup(value)) == NULL) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	free_secret(*(char **)field);
	*(char **)field = copy;
	return 0;
}

/*
 * Splits the next libpq-style `key=value` off *cursor, in place: a value is
 * bare (up to a blank) or 'single-quoted', and a backslash takes the next
 * character literally in both.  Returns 1 with key/value set, 0 at the end,
 * -1 with `msg` on a syntax error.
 */
static int kv_next(char **cursor, char **key, char **value, char *msg, size_t len)
{
	char *p = (char *)skip_space(*cursor), *out, *next;
	bool quoted;

	if (*p == '\0')
		return 0;
	*key = p;
	while (*p != '\0' && *p != '=' && !isspace((unsigned char)*p))
		p++;
	out = p;
	p = (char *)skip_space(p);
	if (*p != '=' || out == *key) {
		snprintf(msg, len, "expected key=value at '%.40s'", *key);
		return -1;
	}
	*out = '\0';
	*value = out = (char *)skip_space(p + 1);
	p = out;
	quoted = *p == '\'';
	for (p += quoted; *p != '\0' && (quoted ? *p != '\'' : !isspace((unsigned char)*p)); p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		*out++ = *p;
	}
	if (quoted && *p++ != '\'') {
		snprintf(msg, len, "key '%s': unterminated quoted value", *key);
		return -1;
	}
	if (*p != '\0' && !isspace((unsigned char)*p)) {
		snprintf(msg, len, "key '%s': expected a blank after the quoted value", *key);
		return -1;
	}
	next = *p != '\0' ? p + 1 : p; /* saved first: *out may overwrite *p */
	*out = '\0';
	*cursor = next;
	return 1;
}

static const struct entry_key *entry_key_find(const struct entry_key *keys, size_t n,
                                              const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static void entry_key_list(const struct entry_key *keys, size_t n, char *msg, size_t len)
{
	for (size_t i = 0; i < n; i++)
		msg_append(msg, len, "%s%s", i ? ", " : "", keys[i].name);
}

/*
 * Applies a `key=value ...` list to an entry (a db_def or user_def).  `what`
 * names the entry in errors: "database 'app'".  The scratch copy is wiped,
 * as it may hold a password.
 */
static int entry_parse(const struct entry_key *keys, size_t nkeys, void *entry, const char *what,
                       const char *text, char *msg, size_t len)
{
	char *buf = strdup(text), *cursor = buf, *key, *value;
	const struct entry_key *k;
	int rc;

	if (buf == NULL) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	while ((rc = kv_next(&cursor, &key, &value, msg, len)) > 0) {
		if ((k = entry_key_find(keys, nkeys, key)) == NULL) {
			snprintf(msg, len, "unknown key '%.60s' (expected ", key);
			entry_key_list(keys, nkeys, msg, len);
			msg_append(msg, len, ")");
			rc = -1;
			break;
		}
		if (entry_set(k, entry, value, msg, len) < 0) {
			rc = -1;
			break;
		}
	}
	if (rc < 0)
		msg_prefix(msg, len, "%s: ", what);
	free_secret(buf);
	return rc;
}

/* Adds `db` (taking its strings) or replaces the entry of the same name. */
static int db_upsert(struct config *cfg, struct db_def *db)
{
	struct db_def *grown;

	for (size_t i = 0; i < cfg->ndbs; i++) {
		if (strcmp(cfg->dbs[i].name, db->name) == 0) {
			db_fini(&cfg->dbs[i]);
			cfg->dbs[i] = *db;
			return 0;
		}
	}
	grown = realloc(cfg->dbs, (cfg->ndbs + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	cfg->dbs = grown;
	cfg->dbs[cfg->ndbs++] = *db;
	return 0;
}

static int db_from_entry(struct config *cfg, const char *name, const char *text, char *msg,
                         size_t len)
{
	char what[128];
	struct db_def db;
	int rc = -1;

	db_init(&db);
	snprintf(what, sizeof(what), "database '%.100s'", name);
	db.name = strdup(name);
	db.host = strdup("127.0.0.1");
	if (db.name == NULL || db.host == NULL)
		snprintf(msg, len, "out of memory");
	else
		rc = entry_parse(db_keys, NKEYS(db_keys), &db, what, text, msg, len);
	if (rc == 0 && db.host == NULL) {
		snprintf(msg, len, "%s: host must not be empty", what);
		rc = -1;
	}
	if (rc == 0 && (rc = db_upsert(cfg, &db)) < 0)
		snprintf(msg, len, "out of memory");
	if (rc < 0)
		db_fini(&db);
	return rc;
}

static int user_from_entry(struct config *cfg, const char *name, const char *text, char *msg,
                           size_t len)
{
	char what[128];
	struct user_def u, *grown;

	user_init(&u);
	snprintf(what, sizeof(what), "user '%.100s'", name);
	if (entry_parse(user_keys, NKEYS(user_keys), &u, what, text, msg, len) < 0)
		return -1;
	if ((u.name = strdup(name)) == NULL ||
	    (grown = realloc(cfg->users, (cfg->nusers + 1) * sizeof(*grown))) == NULL) {
		free(u.name);
		snprintf(msg, len, "out of memory");
		return -1;
	}
	cfg->users = grown;
	cfg->users[cfg->nusers++] = u;
	return 0;
}

bool config_is_console_db(const struct config *cfg, const char *dbname)
{
	return strcmp(dbname, "pgbouncer") == 0 ||
	       (cfg->admin_db[0] != '\0' && strcmp(dbname, cfg->admin_db) == 0);
}

const struct db_def *config_find_db(const struct config *cfg, const char *name)
{
	const struct db_def *fallback = NULL;

	for (size_t i = 0; i < cfg->ndbs; i++) {
		if (strcmp(cfg->dbs[i].name, name) == 0)
			return &cfg->dbs[i];
		if (strcmp(cfg->dbs[i].name, "*") == 0)
			fallback = &cfg->dbs[i];
	}
	return fallback;
}

const struct user_def *config_find_user(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nusers; i++)
		if (strcmp(cfg->users[i].name, name) == 0)
			return &cfg->users[i];
	return NULL;
}

int config_pool_size(const struct config *cfg, const struct db_def *db, const struct user_def *u)
{
	if (u != NULL && u->pool_size != CONFIG_INHERIT)
		return u->pool_size;
	if (db != NULL && db->pool_size != CONFIG_INHERIT)
		return db->pool_size;
	return cfg->default_pool_size;
}

int config_pool_mode(const struct config *cfg, const struct db_def *db, const struct user_def *u)
{
	if (u != NULL && u->pool_mode != CONFIG_INHERIT)
		return u->pool_mode;
	if (db != NULL && db->pool_mode != CONFIG_INHERIT)
		return db->pool_mode;
	return cfg->pool_mode;
}

int config_min_pool_size(const struct config *cfg, const struct db_def *db)
{
	if (db != NULL && db->min_pool_size != CONFIG_INHERIT)
		return db->min_pool_size;
	return cfg->min_pool_size;
}

/* -------------------------------------------------------------------------
 * Database URLs (SLUICE_DATABASE_URL*, --upstream)
 */

/*
 * libpq quotes parts of a malformed URL in its messages, the password
 * included; our errors end up in logs, so the password is masked.
 */
static void redact_url_password(const char *url, char *msg)
{
	const char *auth = strstr(url, "://"), *end, *at = NULL, *colon;
	size_t len;
	char *pw, *hit;

	if (auth == NULL)
		return;
	auth += 3;
	end = auth + strcspn(auth, "/?");
	for (const char *p = auth; p < end; p++)
		if (*p == '@')
			at = p;
	colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (colon == NULL || (len = (size_t)(at - colon - 1)) == 0)
		return;
	if ((pw = strndup(colon + 1, len)) == NULL)
		return;
	/* Same length, so the message can't grow and the search moves on past each hit. */
	for (hit = strstr(msg, pw); hit != NULL; hit = strstr(hit + len, pw))
		memset(hit, '*', len);
	free_secret(pw);
}

/* The [databases] key a URL parameter maps onto; NULL if none. */
static const struct entry_key *url_key(const char *param)
{
	static const char *const same[] = {"host",    "port",       "dbname",
	                                   "user",    "password",   "application_name",
	                                   "sslmode", "sslrootcert"};

	if (strcmp(param, "options") == 0)
		return entry_key_find(db_keys, NKEYS(db_keys), "connect_options");
	for (size_t i = 0; i < NKEYS(same); i++)
		if (strcmp(param, same[i]) == 0)
			return entry_key_find(db_keys, NKEYS(db_keys), param);
	return NULL;
}

/* Takes one parsed URL parameter into `db`. */
static int url_take(struct db_def *db, const char *key, const char *val, char *msg, size_t len)
{
	const struct entry_key *k = url_key(key);

	if (k != NULL) {
		/* libpq allows host lists for failover; sluice has one server per database. */
		if (k->offset == offsetof(struct db_def, host) && strchr(val, ',') != NULL) {
			snprintf(msg, len, "several hosts are not supported");
			return -1;
		}
		if (entry_set(k, db, val, msg, len) == 0)
			return 0;
		msg_prefix(msg, len, "%s: ", key);
		return -1;
	}
	snprintf(msg, len,
	         "parameter '%.60s' is not supported (sluice takes host, port, dbname, user, "
	         "password, application_name, options, sslmode and sslrootcert)",
	         key);
	return -1;
}

/*
 * Clients log in with the URL's credentials: sluice checks the password
 * itself and then reuses it for the server login, so the one URL an
 * application already has is all the setup needed.  An auth_file, when
 * configured, is the only source of client credentials instead.
 */
static int url_add_login(struct config *cfg, const struct db_def *db, char *msg, size_t len)
{
	const struct user_secret *known;

	if (cfg->auth_file[0] != '\0' || db->user == NULL || db->password == NULL)
		return 0;
	known = auth_file_find(&cfg->auth, db->user);
	if (known != NULL) {
		if (known->kind == SECRET_PLAIN && strcmp(known->plain, db->password) == 0)
			return 0;
		snprintf(msg, len, "user '%.60s' is given two different passwords", db->user);
		return -1;
	}
	if (auth_file_add_plain(&cfg->auth, db->user, db->password) < 0) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	return 0;
}

/* Moves the parsed URL into `db`; the database is `name`, else the URL's dbname, else "*". */
static int url_fill(struct db_def *db, const PQconninfoOption *opts, const char *name, char *msg,
                    size_t len)
{
	const char *client_name;

	for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && url_take(db, o->keyword, o->val, msg, len) < 0)
			return -1;
	/* Without a dbname the URL serves every database name: the "*" entry. */
	client_name = name ? name : db->dbname ? db->dbname : "*";
	if ((db->host == NULL && (db->host = strdup("127.0.0.1")) == NULL) ||
	    (db->name = strdup(client_name)) == NULL) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	return 0;
}

/* Defines (or replaces) a database from a libpq URI or conninfo string. */
static int url_define_db(struct config *cfg, const char *name, const char *url, char *msg,
                         size_t len)
{
	char *pqerr = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, &pqerr);
	struct db_def db;
	int rc = -1;

	if (opts == NULL) {
		snprintf(msg, len, "%s", pqerr ? pqerr : "out of memory");
		msg[strcspn(msg, "\n")] = '\0';
		redact_url_password(url, msg);
		PQfreemem(pqerr);
		return -1;
	}
	db_init(&db);
	if (url_fill(&db, opts, name, msg, len) == 0 && url_add_login(cfg, &db, msg, len) == 0) {
		rc = db_upsert(cfg, &db);
		if (rc < 0)
			snprintf(msg, len, "out of memory");
	}
	if (rc < 0)
		db_fini(&db);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && strcmp(o->keyword, "password") == 0)
			OPENSSL_cleanse(o->val, strlen(o->val));
	PQconninfoFree(opts);
	return rc;
}

/* -------------------------------------------------------------------------
 * Environment
 */

#define ENV_URL        "SLUICE_DATABASE_URL"
#define ENV_FILE       "_FILE"
#define ENV_FILE_MAX   (64 * 1024) /* a URL or a password; a bigger file is surely the wrong one */
#define ENV_ORIGIN_MAX 360         /* "SLUICE_X_FILE (path)" */

static const char *env_get(char *const *envp, const char *name)
{
	size_t len = strlen(name);

	for (; envp != NULL && *envp != NULL; envp++)
		if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=')
			return *envp + len + 1;
	return NULL;
}

/*
 * The content of the file a *_FILE variable names, less its trailing line
 * breaks (`echo` and editors add one, a Kubernetes Secret has none).  An
 * empty file is refused: it is a secret that did not arrive, and an empty
 * value can still be given as `SLUICE_X=`.
 */
static char *env_read_file(const char *path, char *msg, size_t len)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n = 0;
	bool ok = false;

	if (f == NULL) {
		snprintf(msg, len, "cannot read %.200s: %s", path, strerror(errno));
		return NULL;
	}
	if ((buf = malloc(ENV_FILE_MAX + 1)) != NULL)
		n = fread(buf, 1, ENV_FILE_MAX + 1, f);
	if (buf == NULL) {
		snprintf(msg, len, "out of memory");
	} else if (ferror(f)) {
		snprintf(msg, len, "cannot read %.200s: %s", path, strerror(errno));
	} else if (n > ENV_FILE_MAX) {
		snprintf(msg, len, "%.200s is larger than %d kB", path, ENV_FILE_MAX / 1024);
	} else if (memchr(buf, '\0', n) != NULL) {
		snprintf(msg, len, "%.200s contains a NUL byte", path);
	} else {
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
		buf[n] = '\0';
		if (!(ok = n > 0))
			snprintf(msg, len, "%.200s is empty", path);
	}
	fclose(f);
	if (ok)
		return buf;
	if (buf != NULL)
		OPENSSL_cleanse(buf, ENV_FILE_MAX + 1);
	free(buf);
	return NULL;
}

/*
 * The value of `var`, or the content of the file that `var`_FILE names, so
 * secrets can come from a mounted file instead of the environment.  Returns
 * 1 with *value (malloc'd, for free_secret) and `origin` naming the source
 * for error messages, 0 when neither is set, -1 with `err` set.
 */
static int env_value(char *const *envp, const char *var, char **value, char *origin,
                     struct config_error *err)
{
	char file_var[128], msg[MSG_MAX];
	const char *plain = env_get(envp, var), *path;

	snprintf(file_var, sizeof(file_var), "%s" ENV_FILE, var);
	path = env_get(envp, file_var);
	snprintf(origin, ENV_ORIGIN_MAX, "%s", var);
	if (plain != NULL && path != NULL) {
		set_error(err, "%s and %s are both set: use one", var, file_var);
		return -1;
	}
	if (plain == NULL && path == NULL)
		return 0;
	if (plain != NULL) {
		*value = strdup(plain);
	} else if ((*value = env_read_file(path, msg, sizeof(msg))) == NULL) {
		set_error(err, "%s: %s", file_var, msg);
		return -1;
	} else {
		snprintf(origin, ENV_ORIGIN_MAX, "%s (%.200s)", file_var, path);
	}
	if (*value == NULL) {
		set_error(err, "out of memory");
		return -1;
	}
	return 1;
}

/* SLUICE_<OPTION> (or SLUICE_<OPTION>_FILE) for every option, in table order. */
static int env_apply_options(struct config *cfg, char *const *envp, struct config_error *err)
{
	size_t n;
	const struct config_option *opts = config_options(&n);
	char var[96], origin[ENV_ORIGIN_MAX], msg[MSG_MAX], *val;
	int rc;

	for (size_t i = 0; i < n; i++) {
		size_t pos = (size_t)snprintf(var, sizeof(var), "SLUICE_");

		for (const char *c = opts[i].name; *c != '\0' && pos < sizeof(var) - 1; c++)
			var[pos++] = (char)toupper((unsigned char)*c);
		var[pos] = '\0';
		if ((rc = env_value(envp, var, &val, origin, err)) <= 0) {
			if (rc < 0)
				return -1;
			continue;
		}
		rc = parse_value(&opts[i], val, option_field(cfg, &opts[i]), msg, sizeof(msg));
		free_secret(val);
		if (rc < 0) {
			set_error(err, "%s: %s", origin, msg);
			return -1;
		}
	}
	return 0;
}

/* Defines database `name` (NULL: from the URL) from `var` or `var`_FILE, if set. */
static int env_apply_url(struct config *cfg, char *const *envp, const char *var, const char *name,
                         struct config_error *err)
{
	char origin[ENV_ORIGIN_MAX], msg[MSG_MAX], *url;
	int rc = env_value(envp, var, &url, origin, err);

	if (rc <= 0)
		return rc;
	rc = url_define_db(cfg, name, url, msg, sizeof(msg));
	free_secret(url);
	if (rc < 0)
		set_error(err, "%s: %s", origin, msg);
	return rc;
}

/*
 * SLUICE_DATABASE_URL, then SLUICE_DATABASE_URL_<NAME> for database <name>,
 * each possibly as a _FILE variable.  A trailing _FILE always means the file
 * variant, so a database named "x_file" cannot be defined this way.
 */
static int env_apply_urls(struct config *cfg, char *const *envp, struct config_error *err)
{
	const size_t plen = strlen(ENV_URL "_"), flen = strlen(ENV_FILE);
	char name[128], var[160];
	const char *rest;
	size_t len;
	bool is_file;

	if (env_apply_url(cfg, envp, ENV_URL, NULL, err) < 0)
		return -1;
	for (char *const *e = envp; e != NULL && *e != NULL; e++) {
		if (strncmp(*e, ENV_URL "_", plen) != 0)
			continue;
		rest = *e + plen;
		len = strcspn(rest, "=");
		/* Not K=V, no name, or SLUICE_DATABASE_URL_FILE (done above). */
		if (rest[len] != '=' || len == 0 ||
		    (len == flen - 1 && strncmp(rest, ENV_FILE + 1, len) == 0))
			continue;
		is_file = len > flen && strncmp(rest + len - flen, ENV_FILE, flen) == 0;
		len -= is_file ? flen : 0;
		if (len >= sizeof(name))
			continue;
		snprintf(var, sizeof(var), ENV_URL "_%.*s", (int)len, rest);
		/* With both set, the plain variable's turn reports the conflict. */
		if (is_file && env_get(envp, var) != NULL)
			continue;
		for (size_t i = 0; i < len; i++)
			name[i] = (char)tolower((unsigned char)rest[i]);
		name[len] = '\0';
		if (env_apply_url(cfg, envp, var, name, err) < 0)
			return -1;
	}
	return 0;
}

/* -------------------------------------------------------------------------
 * Reading the ini file
 */

/* True when the stream is at the end of a line (consuming the line break). */
static bool at_line_end(FILE *f)
{
	int c = getc(f);

	if (c == '\r')
		c = getc(f);
	if (c == EOF || c == '\n')
		return true;
	ungetc(c, f);
	return false;
}

/*
 * fgets for inih that counts lines for our messages (the distribution's
 * inih is built without INI_HANDLER_LINENO) and notes indented lines, which
 * inih joins to the previous value.  A line longer than inih's buffer would
 * be split and misread, so it stops the pass instead.
 */
static char *ini_read_line_cb(char *str, int num, void *stream)
{
	struct file_parse *fp = stream;
	size_t n;

	if (fp->too_long || fgets(str, num, fp->file) == NULL)
		return NULL;
	fp->lineno++;
	n = strlen(str);
	if (n == (size_t)num - 1 && str[n - 1] != '\n' && !at_line_end(fp->file)) {
		fp->too_long = num - 2;
		return NULL;
	}
	fp->indented = str[0] == ' ' || str[0] == '\t';
	return str;
}

static void parse_fail(struct file_parse *fp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void parse_fail(struct file_parse *fp, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;

	if (fp->error_line != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fp->error_line = fp->lineno;
	set_error(fp->err, "%s:%d: %s", fp->path, fp->lineno, msg);
}

static int section_find(const char *name, enum section *out, const char **suffix)
{
	*suffix = "";
	if (strncasecmp(name, "tenant.", 7) == 0) {
		*out = SECTION_TENANT;
		*suffix = name + 7;
	} else if (strncasecmp(name, "tier.", 5) == 0) {
		*out = SECTION_TIER;
		*suffix = name + 5;
	} else if (strcasecmp(name, "sluice") == 0 || strcasecmp(name, "pgbouncer") == 0)
		*out = SECTION_SLUICE;
	else if (strcasecmp(name, "databases") == 0)
		*out = SECTION_DATABASES;
	else if (strcasecmp(name, "users") == 0)
		*out = SECTION_USERS;
	else
		return -1;
	return 0;
}

/*
 * Appends " value" to the last entry: inih hands us a continuation line.
 * Some inih versions leave inline comments on continuation lines, so the
 * "; after a blank" rule is applied here too, the same for every line.
 */
static int entry_continue(struct raw_entry *last, const char *value)
{
	size_t old = strlen(last->value), add = strlen(value);
	char *joined;

	for (size_t i = 1; i < add; i++) {
		if (value[i] == ';' && isspace((unsigned char)value[i - 1])) {
			add = i;
			break;
		}
	}
	while (add > 0 && isspace((unsigned char)value[add - 1]))
		add--;
	if ((joined = malloc(old + add + 2)) == NULL)
		return -1;

	if (joined == NULL)
		return -1;
	memcpy(joined, last->value, old);
	joined[old] = ' ';
	memcpy(joined + old + 1, value, add);
	joined[old + 1 + add] = '\0';
	free_secret(last->value);
	last->value = joined;
	return 0;
}

static int entry_push(struct file_parse *fp, enum section section, const char *name,
                      const char *key, const char *value)
{
	struct raw_entry *e;

	if (fp->nentries == fp->cap) {
		size_t cap = fp->cap ? fp->cap * 2 : 32;

		if ((e = realloc(fp->entries, cap * sizeof(*e))) == NULL)
			return -1;
		fp->entries = e;
		fp->cap = cap;
	}
	e = &fp->entries[fp->nentries];
	e->section = section;
	e->line = fp->lineno;
	e->name = strdup(name);
	e->key = strdup(key);
	e->value = strdup(value);
	if (e->name == NULL || e->key == NULL || e->value == NULL) {
		free(e->name);
		free(e->key);
		free_secret(e->value);
		return -1;
	}
	fp->nentries++;
	return 0;
}

static int ini_entry_cb(void *user, const char *section, const char *name, const char *value)
{
	struct file_parse *fp = user;
	struct raw_entry *last = fp->nentries ? &fp->entries[fp->nentries - 1] : NULL;
	enum section sec;
	const char *suffix;
	int rc;

	if (fp->error_line != 0)
		return 1; /* the first error is the one reported */
	if (*section == '\0') {
		parse_fail(fp, "key '%.60s' before any section (start with [sluice])", name);
		return 0;
	}
	if (section_find(section, &sec, &suffix) < 0) {
		parse_fail(fp,
		           "unknown section [%.60s] (expected [sluice], [databases], [users], "
		           "[tenant.NAME], [tier.NAME])",
		           section);
		return 0;
	}
	if (fp->indented && last != NULL && last->section == sec &&
	    strcmp(last->name, suffix) == 0 && strcmp(last->key, name) == 0)
		rc = entry_continue(last, value);
	else
		rc = entry_push(fp, sec, suffix, name, value);
	if (rc < 0)
		parse_fail(fp, "out of memory");
	return rc == 0;
}

static void file_parse_fini(struct file_parse *fp)
{
	for (size_t i = 0; i < fp->nentries; i++) {
		free(fp->entries[i].name);
		free(fp->entries[i].key);
		free_secret(fp->entries[i].value);
	}
	free(fp->entries);
}

/* Line of an earlier entry with the same section and key; 0 if none. */
static int entry_first_line(const struct file_parse *fp, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (fp->entries[j].section == fp->entries[i].section &&
		    strcmp(fp->entries[j].name, fp->entries[i].name) == 0 &&
		    strcmp(fp->entries[j].key, fp->entries[i].key) == 0)
			return fp->entries[j].line;
	return 0;
}

/*
 * A [sluice] value wholly in double or single quotes means the text inside:
 * `unix_socket_dir = ""` is the empty string, as in PgBouncer's examples.
 */
static const char *unquote(const char *value, char *buf, size_t cap)
{
	size_t n = strlen(value);

	if (n < 2 || n - 2 >= cap || (value[0] != '"' && value[0] != '\'') ||
	    value[n - 1] != value[0])
		return value;
	memcpy(buf, value + 1, n - 2);
	buf[n - 2] = '\0';
	return buf;
}

static int entry_apply(struct config *cfg, const struct raw_entry *e, char *msg, size_t len)
{
	const struct config_option *opt;
	char quoted[1024];

	switch (e->section) {
	case SECTION_SLUICE:
		if ((opt = config_option_find(e->key)) == NULL) {
			snprintf(msg, len, "unknown key '%.60s' in [sluice]", e->key);
			return -1;
		}
		if (parse_value(opt, unquote(e->value, quoted, sizeof(quoted)),
		                option_field(cfg, opt), msg, len) < 0) {
			msg_prefix(msg, len, "key '%.60s': ", e->key);
			return -1;
		}
		return 0;
	case SECTION_DATABASES:
		return db_from_entry(cfg, e->key, e->value, msg, len);
	case SECTION_USERS:
		return user_from_entry(cfg, e->key, e->value, msg, len);
	case SECTION_TENANT:
	case SECTION_TIER:
		return config_tenant_entry(cfg, e->section == SECTION_TIER, e->name, e->key,
		                           e->value, e->line, msg, len);
	}
	return -1;
}

static int file_apply(struct config *cfg, const struct file_parse *fp, struct config_error *err)
{
	char msg[MSG_MAX];
	int first;

	for (size_t i = 0; i < fp->nentries; i++) {
		const struct raw_entry *e = &fp->entries[i];

		/* A repeat is nearly always a forgotten edit; "last one wins" would hide it. */
		if ((first = entry_first_line(fp, i)) != 0) {
			set_error(err, "%s:%d: '%.60s' is set twice (first on line %d)", fp->path,
			          e->line, e->key, first);
			return -1;
		}
		if (entry_apply(cfg, e, msg, sizeof(msg)) < 0) {
			set_error(err, "%s:%d: %s", fp->path, e->line, msg);
			return -1;
		}
	}
	return 0;
}

/* Picks the first problem by line: inih's own syntax errors or ours. */
static int file_parse_result(struct file_parse *fp, int rc, struct config_error *err)
{
	if (rc > 0 && (fp->error_line == 0 || rc < fp->error_line)) {
		set_error(err, "%s:%d: syntax error (expected [section] or key = value)", fp->path,
		          rc);
		return -1;
	}
	if (fp->error_line != 0)
		return -1;
	if (rc < 0) {
		set_error(err, "%s: out of memory", fp->path);
		return -1;
	}
	if (fp->too_long) {
		set_error(err,
		          "%s:%d: line longer than %d characters; continue a long value on "
		          "the next line, indented",
		          fp->path, fp->lineno, fp->too_long);
		return -1;
	}
	return 0;
}

static int config_read_file(struct config *cfg, const char *path, struct config_error *err)
{
	struct file_parse fp = {.path = path, .err = err};
	char msg[MSG_MAX];
	int rc, line;

	if ((fp.file = fopen(path, "r")) == NULL) {
		set_error(err, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	rc = ini_parse_stream(ini_read_line_cb, &fp, ini_entry_cb, &fp);
	fclose(fp.file);
	rc = file_parse_result(&fp, rc, err);
	if (rc == 0)
		rc = file_apply(cfg, &fp, err);
	if (rc == 0 && (line = config_tenants_resolve(cfg, msg, sizeof(msg))) != 0) {
		set_error(err, "%s:%d: %s", path, line, msg);
		rc = -1;
	}
	file_parse_fini(&fp);
	return rc;
}

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
		set_error(err, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (parse_value(&opts[i], opts[i].default_value, option_field(cfg, &opts[i]), msg,
		                sizeof(msg)) < 0) {
			set_error(err, "default of '%s': %s", opts[i].name, msg);
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
			free(*(char **)option_field(cfg, &opts[i]));
	for (size_t i = 0; i < cfg->ndbs; i++)
		db_fini(&cfg->dbs[i]);
	free(cfg->dbs);
	for (size_t i = 0; i < cfg->nusers; i++)
		free(cfg->users[i].name);
	free(cfg->users);
	config_tenants_free(cfg);
	auth_file_fini(&cfg->auth);
	hba_fini(&cfg->hba);
	free(cfg->source);
	free(cfg);
}

/*
 * A relative auth_file is taken from the ini file's directory, so a config
 * directory can be moved or used from any working directory as a whole.
 */
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
		set_error(err, "out of memory");
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
	if (resolve_relative(&cfg->auth_file, ini_path, err) < 0 ||
	    resolve_relative(&cfg->auth_hba_file, ini_path, err) < 0)
		return -1;
	if (cfg->auth_file[0] != '\0' &&
	    auth_file_load(cfg->auth_file, &cfg->auth, err->message, sizeof(err->message)) < 0)
		return -1;
	if (cfg->auth_hba_file[0] != '\0' &&
	    hba_load(cfg->auth_hba_file, &cfg->hba, err->message, sizeof(err->message)) < 0)
		return -1;
	return 0;
}

int config_validate(const struct config *cfg, struct config_error *err)
{
	const char *src = cfg->source;

	if (cfg->min_pool_size > cfg->default_pool_size) {
		set_error(err, "%s: min_pool_size (%d) is larger than default_pool_size (%d)", src,
		          cfg->min_pool_size, cfg->default_pool_size);
		return -1;
	}
	for (size_t i = 0; i < cfg->ndbs; i++) {
		const struct db_def *db = &cfg->dbs[i];
		int min = config_min_pool_size(cfg, db), size = config_pool_size(cfg, db, NULL);

		if (min > size) {
			set_error(err,
			          "%s: database '%s': min_pool_size (%d) is larger than its "
			          "pool size (%d)",
			          src, db->name, min, size);
			return -1;
		}
	}
	if (cfg->ndbs == 0) {
		set_error(err,
		          "%s: no databases: add a [databases] section, --upstream URL or "
		          "SLUICE_DATABASE_URL",
		          src);
		return -1;
	}
	if (cfg->listen_addr[0] == '\0' && cfg->unix_socket_dir[0] == '\0') {
		set_error(err,
		          "%s: nothing to listen on: listen_addr and unix_socket_dir are empty",
		          src);
		return -1;
	}
	if (cfg->auth_type != AUTH_TRUST && cfg->auth_type != AUTH_CERT &&
	    cfg->auth_hba_file[0] == '\0' && cfg->auth.count == 0) {
		set_error(err,
		          "%s: no users can log in: set auth_file, or give a URL with user "
		          "and password (or auth_type = trust for tests)",
		          src);
		return -1;
	}
	return 0;
}

/* File, then environment, then --upstream: each later source wins. */
static int config_build(struct config *cfg, const char *path, const char *upstream_url,
                        char *const *envp, struct config_error *err)
{
	char msg[MSG_MAX];

	if (path != NULL && config_read_file(cfg, path, err) < 0)
		return -1;
	if (env_apply_options(cfg, envp, err) < 0 || env_apply_urls(cfg, envp, err) < 0)
		return -1;
	if (upstream_url != NULL && url_define_db(cfg, NULL, upstream_url, msg, sizeof(msg)) < 0) {
		set_error(err, "--upstream: %s", msg);
		return -1;
	}
	if (path == NULL && cfg->ndbs == 0) {
		set_error(err, "no databases: give a config file, --upstream URL or "
		               "SLUICE_DATABASE_URL");
		return -1;
	}
	if (auth_load(cfg, path, err) < 0)
		return -1;
	return config_validate(cfg, err);
}

struct config *config_load(const char *path, const char *upstream_url, char *const *envp,
                           struct config_error *err)
{
	const char *source = path ? path : upstream_url ? "--upstream" : "environment";
	struct config_error scratch;
	struct config *cfg;

	if (err == NULL)
		err = &scratch;
	cfg = config_new(source, err);

	if (cfg == NULL)
		return NULL;
	if (config_build(cfg, path, upstream_url, envp, err) < 0) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

/* -------------------------------------------------------------------------
 * docs/config.md
 */

static const char *const md_intro[] = {
    "# Configuration",
    "",
    "<!-- Generated by config_write_markdown() from the option tables in",
    "     src/config/options.c and src/config/config.c; `sluice --describe-config` prints it.",
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

/* Accepted values: "1 .. 256", "0 .. 30d", or the enum names. */
static void md_range(FILE *out, const struct config_option *spec)
{
	char lo[32], hi[32];

	switch (spec->type) {
	case CONFIG_INT:
	case CONFIG_OCTAL:
	case CONFIG_DURATION:
	case CONFIG_SIZE:
		format_number(spec->type, spec->min, lo, sizeof(lo));
		format_number(spec->type, spec->max, hi, sizeof(hi));
		fprintf(out, "%s .. %s", lo, hi);
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
		struct config_option spec = entry_spec(&keys[i]);

		fprintf(out, "| `%s` | %s | ", keys[i].name, type_names[spec.type]);
		md_range(out, &spec);
		fputs(" | ", out);
		md_cell(out, keys[i].help);
		fputs(" |\n", out);
	}
}

void config_write_markdown(FILE *out)
{
	for (const char *const *line = md_intro; *line != NULL; line++)
		fprintf(out, "%s\n", *line);
	md_options(out);
	fputs("\n## [databases]\n\n"
	      "One line per database clients may ask for: `name = key=value ...`, keys as in a\n"
	      "libpq conninfo string. A value with blanks is written in single quotes, and a\n"
	      "backslash takes the next character literally (`password='it\\'s'`). The entry\n"
	      "named `*` serves every database name without an entry of its own.\n"
	      "Overrides left out inherit the [sluice] value.\n\n",
	      out);
	md_entry_keys(out, db_keys, NKEYS(db_keys));
	fputs("\n## [users]\n\n"
	      "Per-user overrides: `name = key=value ...`. A user's setting beats the database's,\n"
	      "which beats the [sluice] value.\n\n",
	      out);
	md_entry_keys(out, user_keys, NKEYS(user_keys));
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
