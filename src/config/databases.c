/*
 * [databases] and [users] entries and the lookups over them; see
 * databases.h.
 */
#include "config/databases.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/compat.h"
#include "config/msg.h"
#include "config/value.h"

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
           "default: the Unix socket in unix_socket_dir, as in PgBouncer. A comma-separated "
           "list names several hosts, as in libpq: see target_session_attrs and "
           "load_balance_hosts."),
    {.name = "port",
     .type = CONFIG_STRING,
     .offset = offsetof(struct db_def, ports),
     .help = "Server port; default 5432. With several hosts: one port for all, or a "
             "comma-separated list with one per host."},
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
    DB_KEY(reserve_pool_size, CONFIG_INT, "reserve_pool_size", 0, 0,
           "Overrides reserve_pool_size for this database's pools."),
    DB_KEY(client_encoding, CONFIG_STRING, NULL, 0, 0,
           "client_encoding asked of the server (added to connect_options as -c)."),
    DB_KEY(datestyle, CONFIG_STRING, NULL, 0, 0,
           "DateStyle asked of the server (added to connect_options as -c)."),
    DB_KEY(timezone, CONFIG_STRING, NULL, 0, 0,
           "TimeZone asked of the server (added to connect_options as -c)."),
    /* PgBouncer's older name of the same key. */
    {.name = "reserve_pool",
     .type = CONFIG_INT,
     .offset = offsetof(struct db_def, reserve_pool_size),
     .global = "reserve_pool_size",
     .help = "Same as reserve_pool_size (PgBouncer's older name)."},
    DB_KEY(target_session_attrs, CONFIG_ENUM, "target_session_attrs", 0, 0,
           "Overrides target_session_attrs for this database: which of its hosts to use."),
    DB_KEY(load_balance_hosts, CONFIG_ENUM, "load_balance_hosts", 0, 0,
           "Overrides load_balance_hosts for this database."),
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

const struct entry_key *databases_db_keys(size_t *count)
{
	*count = NKEYS(db_keys);
	return db_keys;
}

const struct entry_key *databases_user_keys(size_t *count)
{
	*count = NKEYS(user_keys);
	return user_keys;
}

void databases_db_init(struct db_def *db)
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
	db->reserve_pool_size = CONFIG_INHERIT;
	db->target_session_attrs = CONFIG_INHERIT;
	db->load_balance_hosts = CONFIG_INHERIT;
}

static void free_hosts(struct db_def *db)
{
	for (int i = 0; i < db->nhosts; i++)
		free(db->hosts[i].host);
	free(db->hosts);
	db->hosts = NULL;
	db->nhosts = 0;
}

void databases_db_fini(struct db_def *db)
{
	free(db->name);
	free(db->host);
	free(db->ports);
	free_hosts(db);
	free(db->dbname);
	free(db->user);
	value_free_secret(db->password);
	free(db->connect_options);
	free(db->application_name);
	free(db->sslrootcert);
	free(db->client_encoding);
	free(db->datestyle);
	free(db->timezone);
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
struct config_option databases_entry_spec(const struct entry_key *k)
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
int databases_entry_set(const struct entry_key *k, void *entry, const char *value, char *msg,
                        size_t len)
{
	struct config_option spec = databases_entry_spec(k);
	void *field = (char *)entry + k->offset;
	char *copy = NULL;

	if (spec.type != CONFIG_STRING)
		return value_parse(&spec, value, field, msg, len);
	if (*value != '\0' && (copy = strdup(value)) == NULL) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	value_free_secret(*(char **)field);
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
	char *p = (char *)value_skip_space(*cursor), *out, *next;
	bool quoted;

	if (*p == '\0')
		return 0;
	*key = p;
	while (*p != '\0' && *p != '=' && !isspace((unsigned char)*p))
		p++;
	out = p;
	p = (char *)value_skip_space(p);
	if (*p != '=' || out == *key) {
		snprintf(msg, len, "expected key=value at '%.40s'", *key);
		return -1;
	}
	*out = '\0';
	*value = out = (char *)value_skip_space(p + 1);
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
static int entry_parse(struct config *cfg, enum compat_section section,
                       const struct entry_key *keys, size_t nkeys, void *entry, const char *what,
                       const char *text, char *msg, size_t len)
{
	const struct compat_key *compat;
	char *buf = strdup(text), *cursor = buf, *key, *value;
	const struct entry_key *k;
	int rc;

	if (buf == NULL) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	while ((rc = kv_next(&cursor, &key, &value, msg, len)) > 0) {
		k = entry_key_find(keys, nkeys, key);
		if (k == NULL && (compat = compat_find(section, key)) != NULL) {
			char note_key[96];

			snprintf(note_key, sizeof(note_key), "%s.%s",
			         section == COMPAT_DATABASE ? "databases" : "users", key);
			if (!compat_is_harmless(compat, value))
				config_note(cfg, LOG_WARN, note_key,
				            "%s: '%s' is a PgBouncer setting that sluice does not "
				            "support (%s); ignored",
				            what, key, compat->why);
			continue;
		}
		if (k == NULL) {
			snprintf(msg, len, "unknown key '%.60s' (expected ", key);
			entry_key_list(keys, nkeys, msg, len);
			msg_append(msg, len, ")");
			rc = -1;
			break;
		}
		if (databases_entry_set(k, entry, value, msg, len) < 0) {
			rc = -1;
			break;
		}
	}
	if (rc < 0)
		msg_prefix(msg, len, "%s: ", what);
	value_free_secret(buf);
	return rc;
}

/* Counts the comma-separated items of `list`; 0 when one is empty and that is not allowed. */
static int count_items(const char *list, bool allow_empty)
{
	int n = 1;
	bool empty = *list == '\0' || *list == ',';

	for (const char *p = list; *p != '\0'; p++) {
		if (*p != ',')
			continue;
		empty |= p[1] == '\0' || p[1] == ',';
		n++;
	}
	return empty && !allow_empty ? 0 : n;
}

/* The `i`th port of `ports` (NULL or an empty item = 5432, as in libpq). */
static int port_at(const char *ports, int i, int *port, char *msg, size_t len)
{
	static const struct config_option spec = {
	    .name = "port", .type = CONFIG_INT, .min = 1, .max = 65535};
	char item[32];
	const char *p = ports;
	size_t n;

	if (ports == NULL) {
		*port = 5432;
		return 0;
	}
	for (int k = 0; k < i && strchr(p, ',') != NULL; k++)
		p = strchr(p, ',') + 1;
	if ((n = strcspn(p, ",")) == 0) {
		*port = 5432;
		return 0;
	}
	snprintf(item, sizeof(item), "%.*s", (int)(n < sizeof(item) - 1 ? n : sizeof(item) - 1), p);
	if (value_parse(&spec, item, port, msg, len) < 0) {
		msg_prefix(msg, len, "port: ");
		return -1;
	}
	return 0;
}

/* Each port of a list without its hosts yet (they come from unix_socket_dir later). */
static int check_ports(const char *ports, char *msg, size_t len)
{
	int port;

	for (int i = 0, n = count_items(ports, true); i < n; i++)
		if (port_at(ports, i, &port, msg, len) < 0)
			return -1;
	return 0;
}

int databases_split_hosts(struct db_def *db, char *msg, size_t len)
{
	int nhosts = count_items(db->host, false),
	    nports = db->ports ? count_items(db->ports, true) : 1;
	const char *h = db->host;

	free_hosts(db);
	if (nhosts == 0) {
		snprintf(msg, len, "host: empty item in the list '%.100s'", db->host);
		return -1;
	}
	if (nhosts > DB_MAX_HOSTS) {
		snprintf(msg, len, "host: %d hosts, at most %d may be listed", nhosts,
		         DB_MAX_HOSTS);
		return -1;
	}
	if (nports != 1 && nports != nhosts) {
		snprintf(msg, len,
		         "%d hosts but %d ports: give one port for all hosts, or one per host",
		         nhosts, nports);
		return -1;
	}
	if ((db->hosts = calloc((size_t)nhosts, sizeof(*db->hosts))) == NULL) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	for (int i = 0; i < nhosts; i++, h += strcspn(h, ",") + 1) {
		struct db_host *dh = &db->hosts[db->nhosts];

		if (port_at(db->ports, nports == 1 ? 0 : i, &dh->port, msg, len) < 0)
			return -1;
		if ((dh->host = strndup(h, strcspn(h, ","))) == NULL) {
			snprintf(msg, len, "out of memory");
			return -1;
		}
		db->nhosts++;
	}
	db->port = db->hosts[0].port;
	return 0;
}

/* Adds `db` (taking its strings) or replaces the entry of the same name. */
int databases_db_upsert(struct config *cfg, struct db_def *db)
{
	struct db_def *grown;

	for (size_t i = 0; i < cfg->ndbs; i++) {
		if (strcmp(cfg->dbs[i].name, db->name) == 0) {
			databases_db_fini(&cfg->dbs[i]);
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

/* Appends " -c NAME=VALUE" to *options, a blank in VALUE escaped as the server reads options. */
static int add_setting(char **options, const char *name, const char *value)
{
	size_t old = *options != NULL ? strlen(*options) : 0, n = old;
	char *out = malloc(old + strlen(name) + 2 * strlen(value) + 8);

	if (out == NULL)
		return -1;
	if (old > 0) {
		memcpy(out, *options, old);
		out[n++] = ' ';
	}
	n += (size_t)sprintf(out + n, "-c %s=", name);
	for (const char *v = value; *v != '\0'; v++) {
		if (isspace((unsigned char)*v) || *v == '\\')
			out[n++] = '\\';
		out[n++] = *v;
	}
	out[n] = '\0';
	free(*options);
	*options = out;
	return 0;
}

/* PgBouncer's client_encoding, datestyle and timezone keys become -c settings of the login. */
static int merge_settings(struct db_def *db)
{
	if ((db->client_encoding != NULL &&
	     add_setting(&db->connect_options, "client_encoding", db->client_encoding) < 0) ||
	    (db->datestyle != NULL &&
	     add_setting(&db->connect_options, "datestyle", db->datestyle) < 0) ||
	    (db->timezone != NULL &&
	     add_setting(&db->connect_options, "timezone", db->timezone) < 0))
		return -1;
	return 0;
}

int databases_define_db(struct config *cfg, const char *name, const char *text, char *msg,
                        size_t len)
{
	char what[128];
	struct db_def db;
	int rc = -1;

	databases_db_init(&db);
	snprintf(what, sizeof(what), "database '%.100s'", name);
	/* No host: the Unix socket in unix_socket_dir, filled in once every source is read. */
	db.name = strdup(name);
	if (db.name == NULL)
		snprintf(msg, len, "out of memory");
	else
		rc = entry_parse(cfg, COMPAT_DATABASE, db_keys, NKEYS(db_keys), &db, what, text,
		                 msg, len);
	/* Without a host, config.c splits the lists once unix_socket_dir is known. */
	if (rc == 0 && (rc = db.host != NULL    ? databases_split_hosts(&db, msg, len)
	                     : db.ports != NULL ? check_ports(db.ports, msg, len)
	                                        : 0) < 0)
		msg_prefix(msg, len, "%s: ", what);
	if (rc == 0 && (rc = merge_settings(&db)) < 0)
		snprintf(msg, len, "out of memory");
	if (rc == 0 && (rc = databases_db_upsert(cfg, &db)) < 0)
		snprintf(msg, len, "out of memory");
	if (rc < 0)
		databases_db_fini(&db);
	return rc;
}

int databases_define_user(struct config *cfg, const char *name, const char *text, char *msg,
                          size_t len)
{
	char what[128];
	struct user_def u, *grown;

	user_init(&u);
	snprintf(what, sizeof(what), "user '%.100s'", name);
	if (entry_parse(cfg, COMPAT_USER, user_keys, NKEYS(user_keys), &u, what, text, msg, len) <
	    0)
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

int config_target_session_attrs(const struct config *cfg, const struct db_def *db)
{
	if (db != NULL && db->target_session_attrs != CONFIG_INHERIT)
		return db->target_session_attrs;
	return cfg->target_session_attrs;
}

int config_load_balance_hosts(const struct config *cfg, const struct db_def *db)
{
	if (db != NULL && db->load_balance_hosts != CONFIG_INHERIT)
		return db->load_balance_hosts;
	return cfg->load_balance_hosts;
}

/* The [databases] key a URL parameter maps onto; NULL if none. */
const struct entry_key *databases_url_key(const char *param)
{
	static const char *const same[] = {"host",
	                                   "port",
	                                   "dbname",
	                                   "user",
	                                   "password",
	                                   "application_name",
	                                   "sslmode",
	                                   "sslrootcert",
	                                   "target_session_attrs",
	                                   "load_balance_hosts"};

	if (strcmp(param, "options") == 0)
		return entry_key_find(db_keys, NKEYS(db_keys), "connect_options");
	for (size_t i = 0; i < NKEYS(same); i++)
		if (strcmp(param, same[i]) == 0)
			return entry_key_find(db_keys, NKEYS(db_keys), param);
	return NULL;
}
