/*
 * The [sluice] option table.  Every option lives here once, with its type,
 * field, default, bounds, reload class and help; parsing, defaults, SHOW
 * CONFIG, the environment overrides and docs/config.md are all driven from it,
 * so adding an option is adding a row (plus the field in struct config).
 * Also the syntax of the values in it: durations and sizes with units.
 */
#include "config/options.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"

#define USEC_PER_SEC INT64_C(1000000)
#define MAX_DURATION (30 * 86400 * USEC_PER_SEC) /* 30 days: longer is surely a typo */
#define MAX_CONNS    1000000
#define MAX_POOL     10000
#define KB           INT64_C(1024)
#define GB           (KB * KB * KB)

/*
 * The _Generic makes a row whose field has the wrong C type fail to compile,
 * instead of writing an int64_t through an int pointer at run time.
 */
#define FIELD(ctype, field)                                                                        \
	_Generic(((struct config *)0)->field, ctype : offsetof(struct config, field))

#define OPT_INT(field, def, lo, hi, class, text)                                                   \
	{                                                                                          \
		.name = #field, .type = CONFIG_INT, .offset = FIELD(int, field),                   \
		.default_value = def, .min = lo, .max = hi, .reload = class, .help = text          \
	}
#define OPT_INT_AUTO(field, def, lo, hi, class, text)                                              \
	{                                                                                          \
		.name = #field, .type = CONFIG_INT, .offset = FIELD(int, field),                   \
		.default_value = def, .min = lo, .max = hi, .reload = class, .help = text,         \
		.takes_auto = true                                                                 \
	}
#define OPT_OCTAL(field, def, hi, class, text)                                                     \
	{                                                                                          \
		.name = #field, .type = CONFIG_OCTAL, .offset = FIELD(int, field),                 \
		.default_value = def, .min = 0, .max = hi, .reload = class, .help = text           \
	}
#define OPT_ENUM(field, def, names, text)                                                          \
	{                                                                                          \
		.name = #field, .type = CONFIG_ENUM, .offset = FIELD(int, field),                  \
		.default_value = def, .enum_names = names, .reload = RELOAD_LIVE, .help = text     \
	}
#define OPT_STRING(field, def, class, text)                                                        \
	{                                                                                          \
		.name = #field, .type = CONFIG_STRING, .offset = FIELD(char *, field),             \
		.default_value = def, .reload = class, .help = text                                \
	}
#define OPT_SIZE(field, def, lo, hi, text)                                                         \
	{                                                                                          \
		.name = #field, .type = CONFIG_SIZE, .offset = FIELD(int64_t, field),              \
		.default_value = def, .min = lo, .max = hi, .reload = RELOAD_LIVE, .help = text    \
	}
#define OPT_BOOL(field, def, text)                                                                 \
	{                                                                                          \
		.name = #field, .type = CONFIG_BOOL, .offset = FIELD(int, field),                  \
		.default_value = def, .min = 0, .max = 1, .reload = RELOAD_LIVE, .help = text      \
	}
/* Durations are keyed without the _us suffix their field carries. */
#define OPT_DURATION(key, def, text)                                                               \
	{                                                                                          \
		.name = #key, .type = CONFIG_DURATION, .offset = FIELD(int64_t, key##_us),         \
		.default_value = def, .min = 0, .max = MAX_DURATION, .reload = RELOAD_LIVE,        \
		.help = text                                                                       \
	}

struct unit {
	const char *name; /* suffix as written after the number */
	int64_t factor;   /* microseconds or bytes per unit */
};

/* Postgres' own duration units; "min" is read but never printed (see duration_print_units). */
static const struct unit duration_units[] = {
    {"us", 1},
    {"ms", 1000},
    {"s", USEC_PER_SEC},
    {"min", 60 * USEC_PER_SEC},
    {"h", 3600 * USEC_PER_SEC},
    {"d", 86400 * USEC_PER_SEC},
    {NULL, 0},
};

/*
 * Units used when printing a duration, largest first.  Minutes are left out
 * so that 60s and 600s print as PgBouncer users know them; whole hours and
 * days are still shortened because 86400s is harder to read than 1d.
 */
static const struct unit duration_print_units[] = {
    {"d", 86400 * USEC_PER_SEC},
    {"h", 3600 * USEC_PER_SEC},
    {"s", USEC_PER_SEC},
    {"ms", 1000},
    {"us", 1},
    {NULL, 0},
};

static const struct unit size_units[] = {
    {"B", 1},  {"kB", INT64_C(1) << 10}, {"MB", INT64_C(1) << 20}, {"GB", INT64_C(1) << 30},
    {NULL, 0},
};

static const struct unit size_print_units[] = {
    {"GB", INT64_C(1) << 30},
    {"MB", INT64_C(1) << 20},
    {"kB", INT64_C(1) << 10},
    {"", 1},
    {NULL, 0},
};

/* Index order matches the enums in config.h. */
static const char *const pool_mode_names[] = {"session", "transaction", "statement", NULL};
static const char *const auth_type_names[] = {"scram-sha-256", "md5", "plain", "trust",
                                              "cert",          "hba", NULL};
static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
static const char *const sslmode_names[] = {"disable",   "allow",       "prefer", "require",
                                            "verify-ca", "verify-full", NULL};
static const char *const limiter_names[] = {"local", "redis", NULL};
static const char *const redis_failure_mode_names[] = {"local", "open", "closed", NULL};

/* A duration that must be at least `lo` microseconds. */
#define OPT_DURATION_MIN(key, def, lo, text)                                                       \
	{                                                                                          \
		.name = #key, .type = CONFIG_DURATION, .offset = FIELD(int64_t, key##_us),         \
		.default_value = def, .min = lo, .max = MAX_DURATION, .reload = RELOAD_LIVE,       \
		.help = text                                                                       \
	}
static const char *const target_names[] = {
    "any", "read-write", "primary", "standby", "prefer-standby", "read-only", NULL};
static const char *const balance_names[] = {"disable", "random", "round-robin", NULL};

static const struct config_option options[] = {
    OPT_STRING(listen_addr, "127.0.0.1", RELOAD_RESTART,
               "Comma-separated addresses to accept TCP clients on; * = all; empty = no TCP."),
    OPT_INT(listen_port, "6432", 1, 65535, RELOAD_RESTART,
            "TCP port; also names the Unix socket file, .s.PGSQL.6432 for 6432."),
    OPT_STRING(unix_socket_dir, "/tmp", RELOAD_RESTART,
               "Directory for the Unix socket; empty = no Unix socket."),
    OPT_OCTAL(unix_socket_mode, "0777", 0777, RELOAD_RESTART,
              "Permissions of the Unix socket file, in octal."),
    OPT_INT_AUTO(workers, "auto", 1, 256, RELOAD_RESTART,
                 "Worker threads, each with its own event loop, clients and server "
                 "connections; auto = one per core the process may run on. Idle servers "
                 "move between them to where clients wait (SHOW WORKERS counts the moves)."),
    OPT_ENUM(client_tls_sslmode, "disable", sslmode_names,
             "TLS for clients: disable (refuse SSLRequest), allow/prefer (TLS when asked), "
             "require (TCP clients must use TLS), verify-ca/verify-full (and present a "
             "certificate signed by client_tls_ca_file)."),
    OPT_STRING(client_tls_cert_file, "", RELOAD_LIVE,
               "Certificate (PEM chain) sluice presents to clients; re-read on RELOAD."),
    OPT_STRING(client_tls_key_file, "", RELOAD_LIVE, "Private key of client_tls_cert_file."),
    OPT_STRING(client_tls_ca_file, "", RELOAD_LIVE,
               "CAs that sign client certificates (verify-ca, verify-full, auth_type cert)."),
    OPT_STRING(client_tls_ciphers, "HIGH:!aNULL:!MD5", RELOAD_LIVE,
               "OpenSSL cipher list for TLS 1.2 clients (TLS 1.3 uses OpenSSL's suites); "
               "TLS 1.2 is the oldest protocol accepted."),
    OPT_ENUM(server_tls_sslmode, "prefer", sslmode_names,
             "TLS to Postgres: disable, allow/prefer (TLS when the server offers it), "
             "require, verify-ca (server certificate signed by server_tls_ca_file), "
             "verify-full (and its name matches the host). Also per database (sslmode=)."),
    OPT_STRING(server_tls_ca_file, "", RELOAD_LIVE,
               "CAs for verifying Postgres' certificate; empty = the system's store. Also "
               "per database (sslrootcert=)."),
    OPT_STRING(server_tls_cert_file, "", RELOAD_LIVE,
               "Client certificate sluice presents to Postgres (cert authentication)."),
    OPT_STRING(server_tls_key_file, "", RELOAD_LIVE, "Private key of server_tls_cert_file."),
    OPT_STRING(server_tls_ciphers, "HIGH:!aNULL:!MD5", RELOAD_LIVE,
               "OpenSSL cipher list for TLS 1.2 to Postgres."),
    OPT_ENUM(auth_type, "scram-sha-256", auth_type_names,
             "How clients prove their password (scram-sha-256, md5, plain, cert); trust skips "
             "the check and is for tests only; hba takes the method from auth_hba_file."),
    OPT_STRING(auth_file, "", RELOAD_LIVE,
               "User list (PgBouncer userlist.txt format); a relative path is relative to "
               "this file's directory."),
    OPT_STRING(auth_user, "", RELOAD_LIVE,
               "Users missing from auth_file are looked up with auth_query, on a connection "
               "logged in as this user (password from auth_file or the database entry); "
               "empty = off."),
    OPT_STRING(auth_query, "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1",
               RELOAD_LIVE,
               "Returns (name, password or verifier) for the user name bound as $1; never "
               "built from the name."),
    OPT_DURATION(auth_query_cache_ttl, "30s",
                 "How long an auth_query answer (found or not) is reused; 0 = ask every time."),
    OPT_STRING(auth_hba_file, "", RELOAD_LIVE,
               "Host-based rules in pg_hba.conf's format (local/host/hostssl/hostnossl; trust, "
               "reject, md5, password, scram-sha-256, cert); when set they choose the method "
               "for every client, console included. Relative to this file's directory."),
    OPT_ENUM(pool_mode, "transaction", pool_mode_names,
             "When a server connection goes back to the pool: after the session, "
             "transaction or statement."),
    OPT_INT(default_pool_size, "20", 1, MAX_POOL, RELOAD_LIVE,
            "Server connections per (database, user) pool."),
    OPT_INT(min_pool_size, "0", 0, MAX_POOL, RELOAD_LIVE,
            "Server connections each pool keeps open even when idle; 0 = none."),
    OPT_INT(max_client_conn, "10000", 1, MAX_CONNS, RELOAD_LIVE,
            "Client connections accepted in total; more are refused."),
    OPT_INT(max_db_connections, "0", 0, MAX_CONNS, RELOAD_LIVE,
            "Server connections per database over all its pools; 0 = no cap."),
    OPT_INT(max_user_connections, "0", 0, MAX_CONNS, RELOAD_LIVE,
            "Server connections per user over all its pools; 0 = no cap."),
    OPT_INT(max_auto_databases, "1000", 0, MAX_CONNS, RELOAD_LIVE,
            "Database names the * entry serves at once (a name counts while it has a pool); "
            "a login to one more is refused with 53400; 0 = no cap."),
    OPT_STRING(server_reset_query, "DISCARD ALL", RELOAD_LIVE,
               "Run on a server connection when a session-mode client leaves; empty = none."),
    OPT_INT(connect_rate_per_ip, "50", 0, 1000000, RELOAD_LIVE,
            "Logins per second accepted from one TCP address (token bucket); more are refused "
            "with 53400 before authentication; 0 = no limit."),
    OPT_INT(connect_burst_per_ip, "100", 1, 1000000, RELOAD_LIVE,
            "Bucket size for connect_rate_per_ip: logins one address may make at once."),
    OPT_DURATION(auth_failure_delay, "100ms",
                 "After a failed login from a TCP address, its next failure is answered this "
                 "much later, doubling with each failure; a success or a quiet minute forgives "
                 "it; 0 = off."),
    OPT_DURATION(auth_failure_delay_max, "5s", "The longest auth_failure_delay grows to."),
    OPT_DURATION(client_login_timeout, "60s",
                 "A client must finish startup and authentication within this; 0 = off."),
    OPT_DURATION(query_wait_timeout, "120s",
                 "Longest wait in the queue for a server connection; 0 = off."),
    OPT_DURATION(idle_transaction_timeout, "0",
                 "Close a client idle inside an open transaction this long; 0 = off."),
    OPT_DURATION(client_idle_timeout, "0",
                 "Close a client idle outside a transaction this long; 0 = off."),
    OPT_DURATION(client_read_timeout, "10s",
                 "A client that holds a server and stops sending in the middle of a message is "
                 "closed (08P01) after this much silence, and the server closed; 0 = off."),
    OPT_DURATION(client_write_timeout, "60s",
                 "A client that holds a pooled server and reads none of the results sluice "
                 "holds for it (its server paused meanwhile) this long is closed, and the "
                 "server cancelled and reset for others; not in session mode; a console "
                 "client whose unread replies hold its next commands likewise; 0 = off."),
    OPT_DURATION(server_connect_timeout, "15s",
                 "Connecting and logging in to the server must finish within this; 0 = off."),
    OPT_DURATION(server_idle_timeout, "600s",
                 "Close server connections idle in the pool this long; 0 = off."),
    OPT_DURATION(server_lifetime, "1h",
                 "Close server connections older than this when released; 0 = off."),
    OPT_DURATION(server_reset_timeout, "5s",
                 "Reset or rollback after a client leaves must finish within this, else the "
                 "server is closed; 0 = a server left in a transaction or a request is closed "
                 "at once, and a clean one's reset (session mode) has no limit."),
    OPT_DURATION(pin_timeout, "0",
                 "A client pinned to its server (session advisory lock, temporary table, cursor "
                 "WITH HOLD, LOAD: docs/session-state.md) longer than this is closed (57P05) when "
                 "it is between transactions; 0 = no limit."),
    OPT_INT(listen_queue_size, "1000", 1, 10000000, RELOAD_LIVE,
            "Notifications sluice holds for one client of the shared listening connection "
            "(docs/session-state.md) once its socket and 1 MiB output buffer are full, or "
            "while it is in the middle of a request; a client over it is closed with 54000, "
            "so memory stays bounded and no notification is dropped silently."),
    OPT_DURATION(server_login_retry, "15s",
                 "Pause after Postgres refused a server login (a password, a missing "
                 "database) before the pool tries again (a reload ends the pause: it is how "
                 "a password gets fixed); an unreachable host is the circuit breaker's "
                 "instead (server_breaker_backoff)."),
    OPT_DURATION(autodb_idle_timeout, "1h",
                 "A pool of a database reached through * is freed once it has had no clients "
                 "and no server connections this long (at once after Postgres answered 3D000, "
                 "the database does not exist); 0 = as soon as it has none."),
    OPT_DURATION(query_timeout, "0",
                 "Cancel a statement (Query or Execute) running longer than this: the client "
                 "gets 57014 naming the limit, the server connection is kept; 0 = off. Also "
                 "per database and per user."),
    OPT_DURATION(cancel_grace, "5s",
                 "After a query_timeout cancel, Postgres must answer within this, else the "
                 "server connection is closed and the client gets 08006."),
    OPT_DURATION(rate_limit_wait, "0",
                 "A request over a tenant's rate waits up to this long for a token, then gets "
                 "53400; 0 = refuse at once. Also per tenant and tier."),
    OPT_DURATION(cancel_wait_timeout, "10s",
                 "Give up forwarding a cancel request to Postgres after this long; 0 = wait."),
    OPT_DURATION(shutdown_timeout, "30s",
                 "On SIGTERM, wait this long for clients to finish; 0 = no limit."),
    OPT_DURATION(shutdown_delay, "0",
                 "On SIGTERM, keep accepting this long after /readyz turns unready, so load "
                 "balancers stop sending first."),
    OPT_SIZE(max_packet_size, "1GB", KB, INT32_MAX,
             "Largest protocol message accepted from a client or server; above 1GB (PgBouncer's "
             "2147483647) is accepted, but Postgres' own limit of 1GB still applies."),
    OPT_ENUM(log_level, "info", log_level_names, "Least severe log level written."),
    OPT_ENUM(log_format, "text", log_format_names,
             "Log line format: text for people, json for log collectors."),
    OPT_STRING(admin_db, "sluice", RELOAD_LIVE,
               "Name of the virtual admin console database (\"pgbouncer\" is always an alias)."),
    OPT_STRING(admin_users, "", RELOAD_LIVE,
               "Comma-separated users allowed every admin console command."),
    OPT_STRING(stats_users, "", RELOAD_LIVE,
               "Comma-separated users allowed the read-only SHOW commands."),
    OPT_DURATION(stats_period, "60s",
                 "Averaging period for SHOW STATS and interval of the stats log line; 0 = off."),
    OPT_STRING(metrics_listen, "", RELOAD_RESTART,
               "host:port of the HTTP endpoint for /metrics, /healthz, /readyz; empty = off."),
    OPT_DURATION(slow_query_threshold, "100ms", "Log queries that take longer than this; 0 = off."),
    OPT_INT(slow_query_max_length, "1000", 16, 1000000, RELOAD_LIVE,
            "Longest query text written to the slow-query log, in bytes."),
    OPT_BOOL(log_query_literals, "off",
             "Write query literals to the slow-query log; off redacts them to '?'."),
    OPT_BOOL(query_stats, "on",
             "Keep statistics per statement fingerprint (SHOW QUERIES, /metrics, stats log)."),
    OPT_INT(query_stats_max, "5000", 10, 1000000, RELOAD_RESTART,
            "Statement fingerprints kept per worker; the least used are folded into an "
            "\"other\" row."),
    OPT_INT(max_prepared_statements, "200", 0, 100000, RELOAD_LIVE,
            "Named prepared statements kept per server connection in transaction mode (LRU); "
            "0 = no tracking."),
    OPT_SIZE(max_prepared_size, "16MB", 64 * KB, INT32_MAX,
             "Bytes of statement text sluice keeps in transaction mode for one client's named "
             "prepared statements (a Parse or PREPARE past it is refused with 54000 and the "
             "client closed) and for one server connection's (the least recently used are "
             "closed past it), so memory stays bounded."),
    /* Listening and restarts (docs/deploy.md). */
    {.name = "so_reuseport",
     .type = CONFIG_BOOL,
     .offset = FIELD(int, so_reuseport),
     .default_value = "off",
     .min = 0,
     .max = 1,
     .reload = RELOAD_RESTART,
     .help = "Set SO_REUSEPORT on TCP listeners, so several sluice processes can share a port "
             "(the kernel spreads connections among them)."},
    OPT_INT(listen_backlog, "1024", 1, 65535, RELOAD_RESTART,
            "Queue of connections not yet accepted, per listener (capped by the kernel's "
            "net.core.somaxconn)."),
    OPT_STRING(takeover_socket, "", RELOAD_RESTART,
               "Unix socket path where a new `sluice --takeover` receives this process's "
               "listening sockets for a restart without refused connections; empty = off."),
    OPT_BOOL(metrics_percentiles, "off",
             "Also export sluice_latency_percentile_seconds, percentiles since start per pool "
             "(the histograms' _bucket series are always exported)."),
    /* The options of PgBouncer's that sluice honours too (docs/migrating.md). */
    OPT_STRING(logfile, "", RELOAD_LIVE,
               "Also append log lines to this file; reopened on RELOAD and SIGHUP (after "
               "rotation); empty = stderr only."),
    OPT_STRING(pidfile, "", RELOAD_RESTART,
               "Write the process id here once listening; a start fails while a live process "
               "holds the file; removed at exit."),
    OPT_BOOL(syslog, "off", "Also send log lines to syslog."),
    OPT_STRING(syslog_ident, "sluice", RELOAD_RESTART, "Program name of the syslog lines."),
    OPT_STRING(syslog_facility, "daemon", RELOAD_RESTART,
               "syslog facility: daemon, user, auth, authpriv, local0 .. local7."),
    OPT_STRING(user, "", RELOAD_RESTART,
               "Unix user to run as once the listening sockets are open (started as root); "
               "empty = stay."),
    OPT_STRING(ignore_startup_parameters, "", RELOAD_LIVE,
               "Comma-separated startup parameters that are dropped: neither sent to Postgres "
               "nor kept in sync. Every other parameter is accepted and kept in sync."),
    OPT_STRING(track_extra_parameters, "IntervalStyle", RELOAD_LIVE,
               "Read for PgBouncer files: sluice keeps every parameter a client sets in sync, "
               "listed here or not."),
    OPT_INT(reserve_pool_size, "0", 0, MAX_POOL, RELOAD_LIVE,
            "Server connections a pool may open beyond its size once a client has waited "
            "reserve_pool_timeout; 0 = none. Also per database."),
    OPT_DURATION(reserve_pool_timeout, "5s",
                 "How long a client waits for a server before its pool may use the reserve."),
    OPT_BOOL(log_connections, "off", "Log each successful login at info (else at debug)."),
    OPT_BOOL(log_disconnections, "off",
             "Log each client's disconnection and its reason at info (else at debug)."),
    OPT_BOOL(log_pooler_errors, "on",
             "Log the errors sluice sends to clients at info (else at debug)."),
    OPT_BOOL(log_stats, "on",
             "Write the stats line every stats_period (SHOW STATS and /metrics work either "
             "way)."),
    OPT_STRING(auth_dbname, "", RELOAD_LIVE,
               "[databases] entry whose server auth_query runs on; empty = the database the "
               "client asked for."),
    OPT_DURATION(transaction_timeout, "0",
                 "Close a client whose transaction has been open this long, running or idle "
                 "(25P04); 0 = off."),
    /* The shared limiter: a reload moves each worker's Redis connection on its own loop. */
    OPT_ENUM(limiter, "local", limiter_names,
             "Where tenant rate limits are kept: local (each sluice process has its own "
             "buckets) or redis (one budget shared by every sluice on redis_url; "
             "docs/tenants.md)."),
    OPT_STRING(redis_url, "", RELOAD_LIVE,
               "Redis for limiter = redis: redis://[user:password@]host[:port][/db]. "
               "rediss:// (TLS) is refused: Debian 12's hiredis 0.14 has no TLS."),
    OPT_STRING(redis_password, "", RELOAD_LIVE,
               "Password for redis_url, instead of one in the URL (so it can come from "
               "SLUICE_REDIS_PASSWORD_FILE); empty = the URL's."),
    OPT_STRING(redis_key_prefix, "sluice:", RELOAD_LIVE,
               "Prefix of every Redis key sluice writes; fleets sharing one Redis with "
               "separate budgets use different prefixes."),
    OPT_DURATION_MIN(redis_timeout, "100ms", 1000,
                     "A Redis answer (or connect) later than this counts as Redis down; no "
                     "request waits longer than this because of Redis."),
    OPT_ENUM(redis_failure_mode, "local", redis_failure_mode_names,
             "While Redis is down: local (each instance enforces rate / instances last "
             "seen), open (admit), closed (refuse with 53400)."),
    /* Upstream topology (docs/topology.md). */
    OPT_ENUM(target_session_attrs, "any", target_names,
             "Which hosts of a database's host list new server connections may use, with "
             "libpq's meanings: any, read-write, primary, standby, prefer-standby, read-only. "
             "Also per database."),
    OPT_ENUM(load_balance_hosts, "disable", balance_names,
             "Order in which new server connections try a database's hosts: disable (as "
             "listed), random, or round-robin. Also per database."),
    OPT_INT(server_breaker_failures, "1", 1, 1000, RELOAD_LIVE,
            "Consecutive connect or login failures of a host (over every pool and worker) "
            "that open its circuit breaker: requests that only that host could serve then "
            "fail at once instead of waiting."),
    OPT_DURATION(server_breaker_backoff, "1s",
                 "How long an open breaker waits before one probe connection tests the host; "
                 "also how often a host of the wrong role is asked again whether it changed."),
    OPT_DURATION(server_breaker_backoff_max, "30s",
                 "The breaker's wait doubles after each failed probe (with jitter), up to "
                 "this."),
    OPT_DURATION(server_check_delay, "30s",
                 "A server idle longer than this answers server_check_query before a client "
                 "gets it; one that fails is closed and the client served by another; 0 = "
                 "check every time."),
    OPT_STRING(server_check_query, "select 1", RELOAD_LIVE,
               "The check of server_check_delay; empty = no check."),
    OPT_BOOL(tcp_keepalive, "on",
             "TCP keepalive on server connections, so a host that vanished is noticed."),
    OPT_INT(tcp_keepidle, "0", 0, 86400, RELOAD_LIVE,
            "Seconds a server connection is idle before the first keepalive probe; 0 = the "
            "system's default."),
    OPT_INT(tcp_keepintvl, "0", 0, 86400, RELOAD_LIVE,
            "Seconds between keepalive probes; 0 = the system's default."),
    OPT_INT(tcp_keepcnt, "0", 0, 1000, RELOAD_LIVE,
            "Unanswered keepalive probes that close a server connection; 0 = the system's "
            "default."),
    OPT_INT(tcp_user_timeout, "0", 0, 86400000, RELOAD_LIVE,
            "Milliseconds data sent to a server may stay unacknowledged before the "
            "connection is closed (TCP_USER_TIMEOUT); 0 = the system's default."),
};

const struct config_option *config_options(size_t *count)
{
	*count = sizeof(options) / sizeof(options[0]);
	return options;
}

const struct config_option *config_option_find(const char *name)
{
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
		if (strcmp(options[i].name, name) == 0)
			return &options[i];
	return NULL;
}

const char *pool_mode_name(int mode)
{
	if (mode < POOL_SESSION || mode > POOL_STATEMENT)
		return "unknown";
	return pool_mode_names[mode];
}

const char *target_session_attrs_name(int target)
{
	if (target < TARGET_ANY || target > TARGET_READ_ONLY)
		return "?";
	return target_names[target];
}

const char *load_balance_name(int mode)
{
	if (mode < BALANCE_DISABLE || mode > BALANCE_ROUND_ROBIN)
		return "?";
	return balance_names[mode];
}

const char *sslmode_name(int mode)
{
	if (mode < 0 || mode > SSLMODE_VERIFY_FULL)
		return "?";
	return sslmode_names[mode];
}

/* Factor of the unit that `p` spells (trailing blanks allowed); 0 if none. */
static int64_t unit_factor(const char *p, const struct unit *units)
{
	size_t len = strlen(p);

	while (len > 0 && isspace((unsigned char)p[len - 1]))
		len--;
	for (const struct unit *u = units; u->name != NULL; u++)
		if (strlen(u->name) == len && strncasecmp(p, u->name, len) == 0)
			return u->factor;
	return 0;
}

/*
 * "<digits>[.<digits>] [unit]" into bare * factor.  Only six fraction digits
 * count (finer than a microsecond of a microsecond unit means nothing), which
 * also keeps fraction * factor far from overflowing.
 */
static int parse_scaled(const char *text, const struct unit *units, int64_t bare, bool fraction,
                        int64_t *out)
{
	const char *p = text + strspn(text, " \t");
	int64_t whole = 0, frac = 0, frac_scale = 1, factor = bare;
	bool digits = false;

	for (; isdigit((unsigned char)*p); p++, digits = true) {
		if (whole > (INT64_MAX - 9) / 10)
			return -1;
		whole = whole * 10 + (*p - '0');
	}
	if (fraction && *p == '.') {
		for (p++; isdigit((unsigned char)*p); p++, digits = true) {
			if (frac_scale < USEC_PER_SEC) {
				frac = frac * 10 + (*p - '0');
				frac_scale *= 10;
			}
		}
	}
	if (!digits)
		return -1;
	p += strspn(p, " \t");
	if (*p != '\0' && (factor = unit_factor(p, units)) == 0)
		return -1;
	if (whole > (INT64_MAX - factor) / factor)
		return -1;
	*out = whole * factor + frac * factor / frac_scale;
	return 0;
}

int config_parse_duration(const char *text, int64_t *out_us)
{
	/* A bare number is seconds, as in PgBouncer, so its files keep working. */
	return parse_scaled(text, duration_units, USEC_PER_SEC, true, out_us);
}

int config_parse_size(const char *text, int64_t *out_bytes)
{
	return parse_scaled(text, size_units, 1, false, out_bytes);
}

/* Prints `v` in the largest unit that divides it exactly. */
static void format_scaled(int64_t v, const struct unit *units, char *buf, size_t len)
{
	const struct unit *u = units;

	if (v == 0) {
		snprintf(buf, len, "0");
		return;
	}
	while (u[1].name != NULL && v % u->factor != 0)
		u++;
	snprintf(buf, len, "%lld%s", (long long)(v / u->factor), u->name);
}

void config_format_duration(int64_t us, char *buf, size_t len)
{
	format_scaled(us, duration_print_units, buf, len);
}

void config_format_size(int64_t bytes, char *buf, size_t len)
{
	format_scaled(bytes, size_print_units, buf, len);
}
