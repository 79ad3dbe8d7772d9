/*
 * The table of PgBouncer's keys; see compat.h.  Each reason says what
 * sluice does instead, so the warning is also the advice.
 */
#include "config/compat.h"

#include <string.h>
#include <strings.h>

#define SAME(sec, key)                                                                             \
	{                                                                                          \
		.section = sec, .name = key                                                        \
	}
#define IGNORED(sec, key, same, reason)                                                            \
	{                                                                                          \
		.section = sec, .name = key, .why = reason, .same_value = same                     \
	}

/* Reasons shared by several keys. */
#define WHY_OPENSSL  "sluice leaves this to OpenSSL's defaults"
#define WHY_TCP      "sluice does not tune TCP sockets"
#define WHY_DNS      "sluice resolves server host names at each new connection"
#define WHY_BUFFERS  "sluice's buffers grow as needed and are not tuned"
#define WHY_CLIENTS  "set max_client_conn in a [tenant.NAME] section"
#define WHY_PEERS    "sluice does not peer processes: one process serves all cores (workers)"
#define WHY_WINDOWS  "a Windows service setting"
#define WHY_PROTOCOL "sluice accepts TLS 1.2 and 1.3 only"

static const struct compat_key keys[] = {
    SAME(COMPAT_GLOBAL, "admin_users"),
    IGNORED(COMPAT_GLOBAL, "application_name_add_host", "0",
            "the client's address is in SHOW CLIENTS and the log context instead"),
    SAME(COMPAT_GLOBAL, "auth_dbname"),
    SAME(COMPAT_GLOBAL, "auth_file"),
    SAME(COMPAT_GLOBAL, "auth_hba_file"),
    IGNORED(COMPAT_GLOBAL, "auth_ident_file", "",
            "sluice has no ident maps (no peer authentication)"),
    IGNORED(COMPAT_GLOBAL, "auth_ldap_options", "", "sluice has no LDAP authentication"),
    SAME(COMPAT_GLOBAL, "auth_query"),
    SAME(COMPAT_GLOBAL, "auth_type"),
    SAME(COMPAT_GLOBAL, "auth_user"),
    SAME(COMPAT_GLOBAL, "autodb_idle_timeout"),
    SAME(COMPAT_GLOBAL, "cancel_wait_timeout"),
    SAME(COMPAT_GLOBAL, "client_idle_timeout"),
    SAME(COMPAT_GLOBAL, "client_login_timeout"),
    IGNORED(COMPAT_GLOBAL, "client_tls13_ciphers", "", WHY_OPENSSL),
    SAME(COMPAT_GLOBAL, "client_tls_ca_file"),
    SAME(COMPAT_GLOBAL, "client_tls_cert_file"),
    SAME(COMPAT_GLOBAL, "client_tls_ciphers"),
    IGNORED(COMPAT_GLOBAL, "client_tls_dheparams", "auto", WHY_OPENSSL),
    IGNORED(COMPAT_GLOBAL, "client_tls_ecdhcurve", "auto", WHY_OPENSSL),
    SAME(COMPAT_GLOBAL, "client_tls_key_file"),
    IGNORED(COMPAT_GLOBAL, "client_tls_protocols", "secure", WHY_PROTOCOL),
    SAME(COMPAT_GLOBAL, "client_tls_sslmode"),
    IGNORED(COMPAT_GLOBAL, "conffile", NULL,
            "sluice reads the file named on its command line, on RELOAD too"),
    SAME(COMPAT_GLOBAL, "default_pool_size"),
    IGNORED(COMPAT_GLOBAL, "disable_pqexec", "0",
            "sluice forwards the simple query protocol as Postgres accepts it"),
    IGNORED(COMPAT_GLOBAL, "dns_max_ttl", NULL, WHY_DNS),
    IGNORED(COMPAT_GLOBAL, "dns_nxdomain_ttl", NULL, WHY_DNS),
    IGNORED(COMPAT_GLOBAL, "dns_zone_check_period", "0", WHY_DNS),
    SAME(COMPAT_GLOBAL, "idle_transaction_timeout"),
    SAME(COMPAT_GLOBAL, "ignore_startup_parameters"),
    IGNORED(COMPAT_GLOBAL, "job_name", NULL, WHY_WINDOWS),
    SAME(COMPAT_GLOBAL, "listen_addr"),
    SAME(COMPAT_GLOBAL, "listen_backlog"),
    SAME(COMPAT_GLOBAL, "listen_port"),
    SAME(COMPAT_GLOBAL, "log_connections"),
    SAME(COMPAT_GLOBAL, "log_disconnections"),
    SAME(COMPAT_GLOBAL, "log_pooler_errors"),
    SAME(COMPAT_GLOBAL, "log_stats"),
    SAME(COMPAT_GLOBAL, "logfile"),
    IGNORED(COMPAT_GLOBAL, "login_notify_message", "", "sluice sends no welcome notice"),
    SAME(COMPAT_GLOBAL, "max_client_conn"),
    IGNORED(COMPAT_GLOBAL, "max_db_client_connections", "0", WHY_CLIENTS),
    SAME(COMPAT_GLOBAL, "max_db_connections"),
    SAME(COMPAT_GLOBAL, "max_packet_size"),
    SAME(COMPAT_GLOBAL, "max_prepared_statements"),
    IGNORED(COMPAT_GLOBAL, "max_user_client_connections", "0", WHY_CLIENTS),
    SAME(COMPAT_GLOBAL, "max_user_connections"),
    SAME(COMPAT_GLOBAL, "min_pool_size"),
    IGNORED(COMPAT_GLOBAL, "peer_id", "0", WHY_PEERS),
    SAME(COMPAT_GLOBAL, "pidfile"),
    IGNORED(COMPAT_GLOBAL, "pkt_buf", NULL, WHY_BUFFERS),
    IGNORED(COMPAT_GLOBAL, "pool_idle_timeout", "0",
            "sluice frees pools of * databases after autodb_idle_timeout, and keeps the others"),
    SAME(COMPAT_GLOBAL, "pool_mode"),
    SAME(COMPAT_GLOBAL, "query_timeout"),
    IGNORED(COMPAT_GLOBAL, "query_wait_notify", "0",
            "sluice sends no notice while a client waits; SHOW POOLS and /metrics show the wait"),
    SAME(COMPAT_GLOBAL, "query_wait_timeout"),
    SAME(COMPAT_GLOBAL, "reserve_pool_size"),
    SAME(COMPAT_GLOBAL, "reserve_pool_timeout"),
    IGNORED(COMPAT_GLOBAL, "resolv_conf", "", "sluice uses the system's resolver configuration"),
    IGNORED(COMPAT_GLOBAL, "sbuf_loopcnt", NULL,
            "each sluice worker reads what a connection has at once and moves on (backpressure "
            "is by watermarks)"),
    IGNORED(COMPAT_GLOBAL, "scram_iterations", NULL,
            "sluice takes SCRAM secrets as they are stored, with their own iteration count"),
    SAME(COMPAT_GLOBAL, "server_check_delay"),
    SAME(COMPAT_GLOBAL, "server_check_query"),
    SAME(COMPAT_GLOBAL, "server_connect_timeout"),
    IGNORED(COMPAT_GLOBAL, "server_fast_close", "0",
            "after RELOAD sluice closes changed servers when their client lets go of them"),
    SAME(COMPAT_GLOBAL, "server_idle_timeout"),
    SAME(COMPAT_GLOBAL, "server_lifetime"),
    SAME(COMPAT_GLOBAL, "server_login_retry"),
    SAME(COMPAT_GLOBAL, "server_reset_query"),
    IGNORED(COMPAT_GLOBAL, "server_reset_query_always", "0",
            "sluice runs server_reset_query in session mode only; transaction mode keeps "
            "each client's session state in sync instead"),
    IGNORED(COMPAT_GLOBAL, "server_round_robin", "0",
            "sluice hands out the most recently used idle server (LIFO)"),
    IGNORED(COMPAT_GLOBAL, "server_tls13_ciphers", "", WHY_OPENSSL),
    SAME(COMPAT_GLOBAL, "server_tls_ca_file"),
    SAME(COMPAT_GLOBAL, "server_tls_cert_file"),
    SAME(COMPAT_GLOBAL, "server_tls_ciphers"),
    SAME(COMPAT_GLOBAL, "server_tls_key_file"),
    IGNORED(COMPAT_GLOBAL, "server_tls_protocols", "secure", WHY_PROTOCOL),
    SAME(COMPAT_GLOBAL, "server_tls_sslmode"),
    IGNORED(COMPAT_GLOBAL, "service_name", NULL, WHY_WINDOWS),
    SAME(COMPAT_GLOBAL, "so_reuseport"),
    SAME(COMPAT_GLOBAL, "stats_period"),
    SAME(COMPAT_GLOBAL, "stats_users"),
    IGNORED(COMPAT_GLOBAL, "suspend_timeout", NULL,
            "SUSPEND in sluice waits for the servers' buffers without a time limit"),
    SAME(COMPAT_GLOBAL, "syslog"),
    SAME(COMPAT_GLOBAL, "syslog_facility"),
    SAME(COMPAT_GLOBAL, "syslog_ident"),
    IGNORED(COMPAT_GLOBAL, "tcp_defer_accept", "0", WHY_TCP),
    SAME(COMPAT_GLOBAL, "tcp_keepalive"),
    SAME(COMPAT_GLOBAL, "tcp_keepcnt"),
    SAME(COMPAT_GLOBAL, "tcp_keepidle"),
    SAME(COMPAT_GLOBAL, "tcp_keepintvl"),
    IGNORED(COMPAT_GLOBAL, "tcp_socket_buffer", "0", WHY_TCP),
    SAME(COMPAT_GLOBAL, "tcp_user_timeout"),
    SAME(COMPAT_GLOBAL, "track_extra_parameters"),
    SAME(COMPAT_GLOBAL, "transaction_timeout"),
    SAME(COMPAT_GLOBAL, "unix_socket_dir"),
    IGNORED(COMPAT_GLOBAL, "unix_socket_group", "",
            "sluice's socket keeps the group of the process; unix_socket_mode sets who may "
            "connect"),
    SAME(COMPAT_GLOBAL, "unix_socket_mode"),
    SAME(COMPAT_GLOBAL, "user"),
    IGNORED(COMPAT_GLOBAL, "verbose", "0", "use log_level = debug"),

    SAME(COMPAT_DATABASE, "dbname"),
    SAME(COMPAT_DATABASE, "host"),
    SAME(COMPAT_DATABASE, "port"),
    SAME(COMPAT_DATABASE, "user"),
    SAME(COMPAT_DATABASE, "password"),
    SAME(COMPAT_DATABASE, "application_name"),
    IGNORED(COMPAT_DATABASE, "auth_user", NULL, "sluice has one auth_user, in [sluice]"),
    IGNORED(COMPAT_DATABASE, "auth_query", NULL, "sluice has one auth_query, in [sluice]"),
    IGNORED(COMPAT_DATABASE, "auth_dbname", NULL, "sluice has one auth_dbname, in [sluice]"),
    SAME(COMPAT_DATABASE, "pool_size"),
    SAME(COMPAT_DATABASE, "min_pool_size"),
    SAME(COMPAT_DATABASE, "reserve_pool_size"),
    SAME(COMPAT_DATABASE, "reserve_pool"),
    IGNORED(COMPAT_DATABASE, "connect_query", NULL,
            "use connect_options = '-c name=value' for settings"),
    SAME(COMPAT_DATABASE, "pool_mode"),
    SAME(COMPAT_DATABASE, "max_db_connections"),
    IGNORED(COMPAT_DATABASE, "max_db_client_connections", "0", WHY_CLIENTS),
    IGNORED(COMPAT_DATABASE, "server_lifetime", NULL, "sluice has one server_lifetime"),
    SAME(COMPAT_DATABASE, "client_encoding"),
    SAME(COMPAT_DATABASE, "datestyle"),
    SAME(COMPAT_DATABASE, "timezone"),
    SAME(COMPAT_DATABASE, "query_wait_timeout"),
    SAME(COMPAT_DATABASE, "load_balance_hosts"),
    SAME(COMPAT_DATABASE, "target_session_attrs"),

    SAME(COMPAT_USER, "pool_size"),
    IGNORED(COMPAT_USER, "reserve_pool_size", NULL,
            "sluice sets reserve_pool_size globally and per database"),
    SAME(COMPAT_USER, "pool_mode"),
    SAME(COMPAT_USER, "max_user_connections"),
    SAME(COMPAT_USER, "query_timeout"),
    SAME(COMPAT_USER, "query_wait_timeout"),
    SAME(COMPAT_USER, "idle_transaction_timeout"),
    IGNORED(COMPAT_USER, "transaction_timeout", NULL, "sluice sets transaction_timeout globally"),
    SAME(COMPAT_USER, "client_idle_timeout"),
    IGNORED(COMPAT_USER, "max_user_client_connections", "0", WHY_CLIENTS),
};

const struct compat_key *compat_keys(size_t *count)
{
	*count = sizeof(keys) / sizeof(keys[0]);
	return keys;
}

const struct compat_key *compat_find(enum compat_section section, const char *name)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (keys[i].section == section && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

bool compat_is_harmless(const struct compat_key *k, const char *value)
{
	return k->why == NULL || (k->same_value != NULL && strcasecmp(k->same_value, value) == 0);
}
