/*
 * Tenants and tiers as configured: `[tenant.NAME]` sections name the users
 * and databases (globs) a tenant covers and its limits, either its own or a
 * `[tier.NAME]` section's.  A client belongs to the first tenant, in file
 * order, whose patterns match its user and database; unmatched clients
 * belong to "default" (which a `[tenant.default]` section may limit).
 * docs/tenants.md explains the model.
 */
#ifndef SLUICE_TENANT_H
#define SLUICE_TENANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;

#define TENANT_DEFAULT "default"

/* A rate: `count` events per `period_us`; count 0 = no limit, -1 = inherit. */
struct rate {
	int64_t count;
	int64_t period_us; /* one second or one minute */
};

/* The rate buckets a tenant can have. */
enum limit_kind { LIMIT_QUERY, LIMIT_TRANSACTION, LIMIT_CONNECT, LIMIT_KINDS };

/*
 * Limits of a tier or tenant.  Integers and durations use -1 for "inherit"
 * (from the tier, then from [databases]/[users]/[sluice] where such a key
 * exists); 0 means "no limit" / "off".
 */
struct tenant_limits {
	struct rate rate[LIMIT_KINDS]; /* query_rate, transaction_rate, connect_rate */
	int64_t burst[LIMIT_KINDS];    /* query_burst...: bucket size; -1 = one second's worth */
	int64_t max_client_conn;       /* clients logged in at once */
	int64_t fleet_max_client_conn; /* the same over the fleet (limiter = redis) */
	int64_t max_server_conn;       /* server connections over all its pools */
	int64_t min_server_conn;       /* servers of each pool group guaranteed to it */
	int64_t weight;                /* its share of a group's servers when tenants wait */
	int64_t statement_timeout_us;  /* sent to Postgres as a startup option */
	int64_t query_timeout_us;      /* sluice cancels statements running longer */
	int64_t rate_limit_wait_us;    /* longest delay before a 53400 */
	int64_t idle_transaction_timeout_us;
	int64_t client_idle_timeout_us;
	int64_t query_wait_timeout_us;
};

struct tier_def {
	char *name;
	struct tenant_limits limits;
	int line; /* where the section starts, for errors */
};

struct tenant_def {
	char *name;
	char **users; /* glob patterns; none = every user */
	size_t nusers;
	char **databases; /* glob patterns; none = every database */
	size_t ndatabases;
	char *tier;                  /* [tier.NAME] it takes its limits from; NULL = none */
	struct tenant_limits own;    /* as written in its section */
	struct tenant_limits limits; /* own, with the tier's filling what it left unset */
	int line;
};

/* Every field "inherit". */
void tenant_limits_init(struct tenant_limits *l);

/* "50/s", "100/min", "20" (per second), "0" (off). */
int tenant_parse_rate(const char *text, struct rate *out);
/* The inverse: "50/s", "100/min", "0". */
void tenant_format_rate(const struct rate *r, char *buf, size_t len);
/* Bucket size of a rate: the burst if set, else one second's worth (at least 1). */
int64_t tenant_burst(const struct tenant_limits *l, enum limit_kind kind);

/*
 * One `key = value` of a [tenant.NAME] (tier false) or [tier.NAME] section.
 * Returns 0, or -1 with `msg`.
 */
int config_tenant_entry(struct config *cfg, bool tier, const char *section, const char *key,
                        const char *value, int line, char *msg, size_t len);
/* After the file is read: resolve `tier =` references.  Returns 0, or the line of the bad one with
 * `msg`. */
int config_tenants_resolve(struct config *cfg, char *msg, size_t len);
void config_tenants_free(struct config *cfg);

/* The tenant for a client's user and database; NULL = "default" without a section. */
const struct tenant_def *config_find_tenant(const struct config *cfg, const char *user,
                                            const char *dbname);
const struct tenant_def *config_tenant_named(const struct config *cfg, const char *name);

/* weight when neither the tenant nor its tier sets one. */
#define TENANT_WEIGHT_DEFAULT 1
#define TENANT_WEIGHT_MAX     1000

/*
 * Warns (config_note) about each [databases] entry whose pool size is smaller
 * than the sum of min_server_conn over the tenants that may use it: those
 * guarantees cannot all hold at once (docs/tenants.md).
 */
void config_tenants_check_guarantees(struct config *cfg);

/* Keys of a tenant/tier section, for docs/config.md. */
void config_tenant_write_markdown(void *file);

#endif
