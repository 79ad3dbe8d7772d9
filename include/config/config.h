/*
 * Configuration snapshot.  A `struct config` is built once (from an ini file,
 * the environment, or `--upstream URL`), validated, and then never modified:
 * reload builds a new snapshot and the runtime swaps pointers.  Every [sluice]
 * option is declared in the option table (options.c), which drives
 * parsing, defaults, bounds, reload class, SHOW CONFIG and docs/config.md.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/log.h"
#include "auth/auth_file.h"
#include "auth/hba.h"
#include "config/options.h"
#include "config/tenant.h"

enum pool_mode { POOL_SESSION, POOL_TRANSACTION, POOL_STATEMENT };
/* AUTH_HBA: the method comes from auth_hba_file alone (PgBouncer's auth_type = hba). */
enum auth_type { AUTH_SCRAM, AUTH_MD5, AUTH_PLAIN, AUTH_TRUST, AUTH_CERT, AUTH_HBA };
enum sslmode {
	SSLMODE_DISABLE,
	SSLMODE_ALLOW,
	SSLMODE_PREFER,
	SSLMODE_REQUIRE,
	SSLMODE_VERIFY_CA,
	SSLMODE_VERIFY_FULL
};

enum limiter_backend { LIMITER_LOCAL, LIMITER_REDIS };
enum redis_failure_mode { REDIS_FAIL_LOCAL, REDIS_FAIL_OPEN, REDIS_FAIL_CLOSED };
/* Which hosts of a [databases] entry a pool may use: libpq's target_session_attrs. */
enum target_session_attrs {
	TARGET_ANY,
	TARGET_READ_WRITE,
	TARGET_PRIMARY,
	TARGET_STANDBY,
	TARGET_PREFER_STANDBY,
	TARGET_READ_ONLY
};
/* The order new connections try a database's hosts in: libpq's load_balance_hosts. */
enum load_balance { BALANCE_DISABLE, BALANCE_RANDOM, BALANCE_ROUND_ROBIN };

/* Integer overrides in [databases]/[users] use -1 for "inherit the global". */
#define CONFIG_INHERIT (-1)

/* Hosts in one [databases] entry at most. */
#define DB_MAX_HOSTS 32

/* One host of a [databases] entry. */
struct db_host {
	char *host; /* host name, IP, or Unix socket directory (starts with '/') */
	int port;   /* its port */
};

/* One [databases] entry: `name = host=... port=... dbname=...`. */
struct db_def {
	char *name;               /* key clients connect to; "*" is the fallback entry */
	char *host;               /* host key as written: one host or a comma-separated list */
	char *ports;              /* port key as written: one port or one per host; NULL = 5432 */
	struct db_host *hosts;    /* the two split (databases_split_hosts): at least one */
	int nhosts;               /* entries in hosts */
	int port;                 /* hosts[0].port, for the reports that show one */
	int target_session_attrs; /* CONFIG_INHERIT or enum target_session_attrs */
	int load_balance_hosts;   /* CONFIG_INHERIT or enum load_balance */
	char *dbname;             /* database on the server; NULL = same as client's */
	char *user;        /* forced server user (all clients share one pool); NULL = client's */
	char *password;    /* password for the server login; NULL = from auth_file */
	int pool_size;     /* CONFIG_INHERIT or override of default_pool_size */
	int min_pool_size; /* CONFIG_INHERIT or override */
	int pool_mode;     /* CONFIG_INHERIT or enum pool_mode */
	int max_db_connections;     /* CONFIG_INHERIT or cap over all pools of this db */
	char *connect_options;      /* extra startup `options` sent to the server; NULL = none */
	char *application_name;     /* default application_name for server logins; NULL = none */
	int64_t query_timeout;      /* CONFIG_INHERIT or override of query_timeout (microseconds) */
	int64_t query_wait_timeout; /* CONFIG_INHERIT or override (microseconds) */
	int64_t idle_transaction_timeout; /* CONFIG_INHERIT or override (microseconds) */
	int64_t client_idle_timeout;      /* CONFIG_INHERIT or override (microseconds) */
	int sslmode;                      /* CONFIG_INHERIT or enum sslmode (server_tls_sslmode) */
	char *sslrootcert;                /* CAs for this server; NULL = server_tls_ca_file */
	int reserve_pool_size;            /* CONFIG_INHERIT or override of reserve_pool_size */
	/* PgBouncer's: asked of the server, merged into connect_options as -c settings */
	char *client_encoding, *datestyle, *timezone;
};

/* One [users] entry: `name = pool_mode=... pool_size=...`. */
struct user_def {
	char *name;                 /* client user name */
	int pool_mode;              /* CONFIG_INHERIT or enum pool_mode */
	int pool_size;              /* CONFIG_INHERIT or override */
	int max_user_connections;   /* CONFIG_INHERIT or cap on server connections for this user */
	int64_t query_timeout;      /* CONFIG_INHERIT or override of query_timeout (microseconds) */
	int64_t query_wait_timeout; /* CONFIG_INHERIT or override (microseconds) */
	int64_t idle_transaction_timeout; /* CONFIG_INHERIT or override (microseconds) */
	int64_t client_idle_timeout;      /* CONFIG_INHERIT or override (microseconds) */
	int64_t statement_timeout;        /* CONFIG_INHERIT, or sent to Postgres at login */
};

struct config {
	char *source; /* file path, or "environment" / "--upstream" for file-less starts */

	/* [sluice]: field names are the ini keys; durations are microseconds */
	char *listen_addr;          /* comma-separated addresses, "*" = all; "" = no TCP */
	int listen_port;            /* TCP port (also names the Unix socket .s.PGSQL.<port>) */
	char *unix_socket_dir;      /* directory for the Unix socket; "" = none */
	int unix_socket_mode;       /* permissions of the socket file */
	int workers;                /* worker threads, each with its own event loop; 0 = auto */
	int client_tls_sslmode;     /* enum sslmode */
	char *client_tls_cert_file; /* PEM chain shown to clients */
	char *client_tls_key_file;
	char *client_tls_ca_file; /* CAs for client certificates */
	char *client_tls_ciphers;
	int server_tls_sslmode; /* enum sslmode */
	char *server_tls_ca_file;
	char *server_tls_cert_file;
	char *server_tls_key_file;
	char *server_tls_ciphers;
	int auth_type;                   /* enum auth_type */
	char *auth_file;                 /* PgBouncer userlist format; "" = none */
	char *auth_hba_file;             /* pg_hba.conf-style rules; "" = auth_type for everyone */
	char *auth_user;                 /* auth_query runs as this user; "" = no auth_query */
	char *auth_query;                /* SQL with $1 = the user name */
	int64_t auth_query_cache_ttl_us; /* answers reused this long */
	int pool_mode;                   /* enum pool_mode */
	int default_pool_size;           /* server connections per (db, user) pool */
	int min_pool_size;               /* idle servers kept open per pool */
	int max_client_conn;             /* total client connections */
	int max_db_connections;          /* server connections per db over all pools; 0 = no cap */
	int max_user_connections; /* server connections per user over all pools; 0 = no cap */
	int max_auto_databases;   /* database names reached through "*" at once; 0 = no cap */
	char *server_reset_query; /* run on release in session mode */
	int connect_rate_per_ip;  /* logins per second from one address; 0 = no limit */
	int connect_burst_per_ip; /* bucket size for it */
	int64_t client_login_timeout_us;     /* startup + auth must finish within this; 0 = off */
	int64_t auth_failure_delay_us;       /* first wait of a failed login's answer; 0 = off */
	int64_t auth_failure_delay_max_us;   /* that wait doubles up to this */
	int64_t query_wait_timeout_us;       /* longest wait in the queue for a server; 0 = off */
	int64_t idle_transaction_timeout_us; /* close a client idle inside a transaction; 0 = off */
	int64_t client_idle_timeout_us;    /* close a client idle outside a transaction; 0 = off */
	int64_t client_read_timeout_us;    /* silence allowed mid-message while a server waits */
	int64_t client_write_timeout_us;   /* results left unread while a server waits */
	int64_t server_connect_timeout_us; /* connect + login to the server; 0 = off */
	int64_t server_idle_timeout_us;    /* close servers idle in the pool longer; 0 = off */
	int64_t server_lifetime_us;      /* close servers older than this once released; 0 = off */
	int64_t server_reset_timeout_us; /* reset / rollback must finish within this */
	int64_t pin_timeout_us;          /* close a client pinned longer, between transactions */
	int listen_queue_size;           /* notifications held for one listening client */
	int64_t server_login_retry_us;   /* pause before reconnecting after a failed login */
	int64_t autodb_idle_timeout_us;  /* free a "*" database's pool unused this long */
	int64_t query_timeout_us;        /* cancel statements running longer; 0 = off */
	int64_t cancel_grace_us;         /* after that cancel: close the server if no answer */
	int64_t rate_limit_wait_us;      /* a request over a tenant rate waits this long */
	int64_t cancel_wait_timeout_us;  /* a cancelled server must answer within this */
	int64_t shutdown_delay_us;   /* SIGTERM: keep accepting this long after readiness fails */
	int64_t shutdown_timeout_us; /* graceful drain limit on SIGTERM; 0 = no limit */
	int64_t max_packet_size;     /* bytes; Postgres' own limit is 1 GB */
	int log_level;               /* enum log_level */
	int log_format;              /* enum log_format */

	char *admin_db;                  /* virtual console database name */
	char *admin_users;               /* comma-separated: every console command */
	char *stats_users;               /* comma-separated: SHOW only */
	int64_t stats_period_us;         /* averaging period and stats log interval; 0 = off */
	char *metrics_listen;            /* host:port for the HTTP endpoint; "" = off */
	int64_t slow_query_threshold_us; /* slow-query log threshold; 0 = off */
	int slow_query_max_length;       /* query text bytes in the slow-query log */
	int log_query_literals;          /* bool: keep literals in the slow-query log */
	int query_stats;                 /* bool: per-statement statistics (qstats.h) */
	int query_stats_max;             /* fingerprints kept per worker */
	int max_prepared_statements;     /* per server in transaction mode; 0 = no tracking */
	int64_t max_prepared_size;       /* text kept per client's names and per server's cache */
	int so_reuseport;                /* bool: SO_REUSEPORT on TCP listeners */
	int listen_backlog;              /* listen() queue per listener */
	char *takeover_socket;           /* Unix socket handing listeners to --takeover; "" = off */
	int metrics_percentiles;         /* bool: export the since-start percentile gauges */
	int limiter;                     /* enum limiter_backend */
	char *redis_url;                 /* limiter = redis: redis://... (config/redis_url.h) */
	char *redis_password;            /* overrides the URL's; "" = the URL's */
	char *redis_key_prefix;          /* in front of every key sluice writes */
	int64_t redis_timeout_us;        /* longer without an answer = Redis down */
	int redis_failure_mode;          /* enum redis_failure_mode */

	/* Options PgBouncer files use (docs/migrating.md) */
	char *logfile;                   /* log lines also appended here; "" = stderr only */
	char *pidfile;                   /* process id written here once listening; "" = none */
	int syslog;                      /* bool: log lines also to syslog */
	char *syslog_ident;              /* program name in syslog */
	char *syslog_facility;           /* "daemon", "local0"...: checked by config_validate */
	char *user;                      /* Unix user to switch to after binding; "" = stay */
	char *ignore_startup_parameters; /* comma-separated startup parameters dropped */
	char *track_extra_parameters;    /* accepted; every parameter is tracked anyway */
	int reserve_pool_size;           /* servers a pool may add past its size for waiters */
	int64_t reserve_pool_timeout_us; /* a client waits this long before the reserve opens */
	int log_connections;             /* bool: logins at info instead of debug */
	int log_disconnections;          /* bool: client closes at info instead of debug */
	int log_pooler_errors;           /* bool: errors sent to clients at info, not debug */
	int log_stats;                   /* bool: the stats line every stats_period */
	char *auth_dbname;               /* [databases] entry auth_query runs on; "" = client's */
	int64_t transaction_timeout_us;  /* close a client whose transaction is open longer */

	/* Upstream topology (docs/topology.md) */
	int target_session_attrs;              /* enum target_session_attrs, per database too */
	int load_balance_hosts;                /* enum load_balance, per database too */
	int server_breaker_failures;           /* consecutive host failures that open its breaker */
	int64_t server_breaker_backoff_us;     /* first wait of an open breaker */
	int64_t server_breaker_backoff_max_us; /* the wait doubles per failed probe up to this */
	int64_t server_check_delay_us; /* an idle server older than this is checked before use */
	char *server_check_query;      /* that check; "" = none */
	int tcp_keepalive;             /* bool: SO_KEEPALIVE on server connections */
	int tcp_keepidle;              /* seconds idle before the first probe; 0 = the system's */
	int tcp_keepintvl;             /* seconds between probes; 0 = the system's */
	int tcp_keepcnt;               /* unanswered probes that end it; 0 = the system's */
	int tcp_user_timeout;          /* ms unacknowledged data may wait; 0 = the system's */

	struct db_def *dbs;         /* [databases] in file order, then URL-defined ones */
	size_t ndbs;                /* entries in dbs */
	struct user_def *users;     /* [users] in file order */
	size_t nusers;              /* entries in users */
	struct tenant_def *tenants; /* [tenant.NAME] sections in file order */
	size_t ntenants;
	struct tier_def *tiers; /* [tier.NAME] sections */
	size_t ntiers;
	struct auth_file auth; /* auth_file contents, read when the snapshot is built */
	struct hba hba;        /* auth_hba_file rules, read likewise */

	struct config_note *notes; /* warnings found while loading, logged at start and reload */
	size_t nnotes;
	char note_where[320]; /* while loading: "FILE:LINE" of the entry being applied */
};

/* A warning about the configuration: a PgBouncer key sluice ignores, a value it clamps. */
struct config_note {
	int level;  /* enum log_level: LOG_WARN or LOG_INFO */
	char *key;  /* what it is about, so each key is noted once */
	char *text; /* "FILE:LINE: ..." */
};

/*
 * Error from loading: "FILE:LINE: key 'KEY': message" or "SLUICE_X: message".
 * With `report` set (sluice --check), loading goes on after an error and
 * hands every one to it; `message` keeps the first.
 */
struct config_error {
	char message[512];
	int count;                                      /* errors found */
	void (*report)(void *arg, const char *message); /* NULL: stop at the first error */
	void *report_arg;
};

/*
 * Load `path` (may be NULL when the configuration comes only from the
 * environment), then apply SLUICE_<OPTION> overrides and SLUICE_DATABASE_URL,
 * then `upstream_url` (from `--upstream`, may be NULL), then read auth_file and
 * validate.  `envp` is the environment to read (NULL-terminated "K=V" list) so
 * tests can pass their own (NULL = empty).  Returns NULL and fills `err` on
 * any error.
 */
struct config *config_load(const char *path, const char *upstream_url, char *const *envp,
                           struct config_error *err);
void config_free(struct config *cfg);
/*
 * sluice --check: loads as config_load does, reading auth_file and
 * auth_hba_file but binding and connecting nothing, and hands every error to
 * `report` (not only the first).  Returns the configuration, or NULL when
 * there was an error; its notes are the warnings.
 */
struct config *config_check(const char *path, const char *upstream_url, char *const *envp,
                            void (*report)(void *arg, const char *message), void *arg,
                            int *nerrors);
/* Adds a note; one per `key` (a second with the same key is dropped).  Prefixed by note_where. */
void config_note(struct config *cfg, int level, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Set one [sluice] option from text, with validation (used by env and SET). */
int config_set(struct config *cfg, const char *key, const char *value, struct config_error *err);
/*
 * Checks that hold across options (min_pool_size <= default_pool_size, some
 * database defined, something to listen on...).  config_load runs it; a
 * caller of config_set runs it after its changes, since config_set judges
 * each value alone.
 */
int config_validate(const struct config *cfg, struct config_error *err);
/* Render an option's current value as ini text. */
void config_format_value(const struct config *cfg, const struct config_option *opt, char *buf,
                         size_t len);

/* [databases] entry for a client's database name, falling back to "*"; NULL if none. */
const struct db_def *config_find_db(const struct config *cfg, const char *name);
/* Is `dbname` the admin console (admin_db, or the alias "pgbouncer")? */
bool config_is_console_db(const struct config *cfg, const char *dbname);
const struct user_def *config_find_user(const struct config *cfg, const char *name);

/* Effective per-pool settings after db and user overrides. */
int config_pool_size(const struct config *cfg, const struct db_def *db, const struct user_def *u);
int config_pool_mode(const struct config *cfg, const struct db_def *db, const struct user_def *u);
int config_min_pool_size(const struct config *cfg, const struct db_def *db);
/*
 * Worker threads to start: `workers`, or for auto (0) one per core online,
 * or fewer when the process may run on fewer (taskset, a container's
 * cpuset): a worker per core past that would only take turns on the same ones.
 */
int config_workers(const struct config *cfg);
int config_target_session_attrs(const struct config *cfg, const struct db_def *db);
int config_load_balance_hosts(const struct config *cfg, const struct db_def *db);

/* Write docs/config.md content (generated from the table) to `out`. */
void config_write_markdown(FILE *out);

#endif
