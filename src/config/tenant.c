/*
 * [tenant.NAME] and [tier.NAME] sections: parsing, tier resolution and the
 * lookup that places a client in a tenant.
 */
#include "config/tenant.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "config/config.h"
#include "base/strlist.h"

#define USEC_PER_SEC INT64_C(1000000)
#define MAX_RATE     INT64_C(100000000)
#define MAX_COUNT    INT64_C(1000000)
#define MAX_DURATION (30 * 86400 * USEC_PER_SEC)

enum key_kind { KEY_PATTERNS, KEY_TIER, KEY_RATE, KEY_COUNT, KEY_WEIGHT, KEY_DURATION };

struct tenant_key {
	const char *name;
	enum key_kind kind;
	size_t offset; /* in struct tenant_limits (KEY_RATE, KEY_COUNT, KEY_DURATION) */
	bool tenant_only;
	const char *help;
};

#define LIM(field) offsetof(struct tenant_limits, field)

static const struct tenant_key tenant_keys[] = {
    {"users", KEY_PATTERNS, 0, true,
     "Comma-separated user names or globs (`app_*`) this tenant covers; default every user."},
    {"databases", KEY_PATTERNS, 0, true,
     "Comma-separated database names or globs; default every database."},
    {"tier", KEY_TIER, 0, true, "Take every limit not set here from `[tier.NAME]`."},
    {"query_rate", KEY_RATE, LIM(rate[LIMIT_QUERY]), false,
     "Requests (Query, or Parse..Sync) per second or minute: `50/s`, `100/min`; 0 = no limit."},
    {"query_burst", KEY_COUNT, LIM(burst[LIMIT_QUERY]), false,
     "Token bucket size for query_rate; default one second's worth (at least 1)."},
    {"transaction_rate", KEY_RATE, LIM(rate[LIMIT_TRANSACTION]), false,
     "Transactions started per second or minute; 0 = no limit."},
    {"transaction_burst", KEY_COUNT, LIM(burst[LIMIT_TRANSACTION]), false,
     "Token bucket size for transaction_rate."},
    {"connect_rate", KEY_RATE, LIM(rate[LIMIT_CONNECT]), false,
     "Client logins per second or minute; 0 = no limit."},
    {"connect_burst", KEY_COUNT, LIM(burst[LIMIT_CONNECT]), false,
     "Token bucket size for connect_rate."},
    {"max_client_conn", KEY_COUNT, LIM(max_client_conn), false,
     "Clients of this tenant logged in at once; 0 = no cap."},
    {"fleet_max_client_conn", KEY_COUNT, LIM(fleet_max_client_conn), false,
     "Clients of this tenant logged in at once over every sluice of the fleet (limiter = "
     "redis; docs/tenants.md); 0 = no cap."},
    {"max_server_conn", KEY_COUNT, LIM(max_server_conn), false,
     "Server connections this tenant may hold over all its pools; 0 = no cap."},
    {"min_server_conn", KEY_COUNT, LIM(min_server_conn), false,
     "Server connections of each pool (database and server user) guaranteed to this tenant: "
     "other tenants never take the last ones it is entitled to, and its waiters are served "
     "first while it holds fewer; 0 = none."},
    {"weight", KEY_WEIGHT, LIM(weight), false,
     "Share of a pool's servers when several tenants wait, against the others' weights "
     "(1..1000); default 1."},
    {"statement_timeout", KEY_DURATION, LIM(statement_timeout_us), false,
     "Sent to Postgres as a startup option (`-c statement_timeout`); 0 = Postgres' default."},
    {"query_timeout", KEY_DURATION, LIM(query_timeout_us), false,
     "Overrides query_timeout for this tenant ([users] still wins)."},
    {"rate_limit_wait", KEY_DURATION, LIM(rate_limit_wait_us), false,
     "A request over a rate waits this long for a token before 53400; 0 = refuse at once."},
    {"idle_transaction_timeout", KEY_DURATION, LIM(idle_transaction_timeout_us), false,
     "Overrides idle_transaction_timeout for this tenant."},
    {"client_idle_timeout", KEY_DURATION, LIM(client_idle_timeout_us), false,
     "Overrides client_idle_timeout for this tenant."},
    {"query_wait_timeout", KEY_DURATION, LIM(query_wait_timeout_us), false,
     "Overrides query_wait_timeout for this tenant."},
};

#define NKEYS (sizeof(tenant_keys) / sizeof(tenant_keys[0]))

void tenant_limits_init(struct tenant_limits *l)
{
	for (int k = 0; k < LIMIT_KINDS; k++) {
		l->rate[k].count = -1;
		l->rate[k].period_us = USEC_PER_SEC;
		l->burst[k] = -1;
	}
	l->max_client_conn = -1;
	l->fleet_max_client_conn = -1;
	l->max_server_conn = -1;
	l->min_server_conn = -1;
	l->weight = -1;
	l->statement_timeout_us = -1;
	l->query_timeout_us = -1;
	l->rate_limit_wait_us = -1;
	l->idle_transaction_timeout_us = -1;
	l->client_idle_timeout_us = -1;
	l->query_wait_timeout_us = -1;
}

int tenant_parse_rate(const char *text, struct rate *out)
{
	char *end;
	long long n;

	while (isspace((unsigned char)*text))
		text++;
	if (!isdigit((unsigned char)*text))
		return -1;
	n = strtoll(text, &end, 10);
	if (n < 0 || n > MAX_RATE)
		return -1;
	while (isspace((unsigned char)*end))
		end++;
	out->count = n;
	out->period_us = USEC_PER_SEC;
	if (*end == '\0')
		return 0;
	if (*end++ != '/')
		return -1;
	while (isspace((unsigned char)*end))
		end++;
	if (strcmp(end, "s") == 0 || strcmp(end, "sec") == 0 || strcmp(end, "second") == 0)
		return 0;
	if (strcmp(end, "min") == 0 || strcmp(end, "m") == 0 || strcmp(end, "minute") == 0) {
		out->period_us = 60 * USEC_PER_SEC;
		return 0;
	}
	return -1;
}

void tenant_format_rate(const struct rate *r, char *buf, size_t len)
{
	if (r->count <= 0)
		snprintf(buf, len, "0");
	else
		snprintf(buf, len, "%lld/%s", (long long)r->count,
		         r->period_us == USEC_PER_SEC ? "s" : "min");
}

int64_t tenant_burst(const struct tenant_limits *l, enum limit_kind kind)
{
	const struct rate *r = &l->rate[kind];
	int64_t per_second;

	if (l->burst[kind] > 0)
		return l->burst[kind];
	per_second = (r->count * USEC_PER_SEC + r->period_us - 1) / r->period_us;
	return per_second > 0 ? per_second : 1;
}

/* -------------------------------------------------------------------------
 * Sections
 */

static const struct tenant_key *key_find(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(tenant_keys[i].name, name) == 0)
			return &tenant_keys[i];
	return NULL;
}

static struct tier_def *tier_find(struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->ntiers; i++)
		if (strcmp(cfg->tiers[i].name, name) == 0)
			return &cfg->tiers[i];
	return NULL;
}

static struct tenant_def *tenant_find(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->ntenants; i++)
		if (strcmp(cfg->tenants[i].name, name) == 0)
			return &cfg->tenants[i];
	return NULL;
}

/* The section's entry, created on its first key. */
static void *section_entry(struct config *cfg, bool tier, const char *name, int line)
{
	if (tier) {
		struct tier_def *t = tier_find(cfg, name), *grown;

		if (t != NULL)
			return t;
		grown = realloc(cfg->tiers, (cfg->ntiers + 1) * sizeof(*grown));
		if (grown == NULL)
			return NULL;
		cfg->tiers = grown;
		t = &cfg->tiers[cfg->ntiers];
		memset(t, 0, sizeof(*t));
		tenant_limits_init(&t->limits);
		t->line = line;
		if ((t->name = strdup(name)) == NULL)
			return NULL;
		cfg->ntiers++;
		return t;
	}
	struct tenant_def *d = tenant_find(cfg, name), *grown;

	if (d != NULL)
		return d;
	grown = realloc(cfg->tenants, (cfg->ntenants + 1) * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	cfg->tenants = grown;
	d = &cfg->tenants[cfg->ntenants];
	memset(d, 0, sizeof(*d));
	tenant_limits_init(&d->own);
	d->line = line;
	if ((d->name = strdup(name)) == NULL)
		return NULL;
	cfg->ntenants++;
	return d;
}

static int parse_limit(const struct tenant_key *k, struct tenant_limits *l, const char *value,
                       char *msg, size_t len)
{
	void *field = (char *)l + k->offset;
	char *end;
	long long n;

	switch (k->kind) {
	case KEY_RATE:
		if (tenant_parse_rate(value, field) < 0) {
			snprintf(msg, len,
			         "key '%s': expected a rate such as 50/s or 100/min, got '%.60s'",
			         k->name, value);
			return -1;
		}
		return 0;
	case KEY_COUNT:
		n = strtoll(value, &end, 10);
		if (end == value || *end != '\0' || n < 0 || n > MAX_COUNT) {
			snprintf(msg, len, "key '%s': expected a whole number 0..%lld, got '%.60s'",
			         k->name, (long long)MAX_COUNT, value);
			return -1;
		}
		*(int64_t *)field = n;
		return 0;
	case KEY_WEIGHT:
		n = strtoll(value, &end, 10);
		if (end == value || *end != '\0' || n < 1 || n > TENANT_WEIGHT_MAX) {
			snprintf(msg, len, "key '%s': expected a whole number 1..%d, got '%.60s'",
			         k->name, TENANT_WEIGHT_MAX, value);
			return -1;
		}
		*(int64_t *)field = n;
		return 0;
	case KEY_DURATION:
		if (config_parse_duration(value, field) < 0 || *(int64_t *)field > MAX_DURATION) {
			snprintf(msg, len,
			         "key '%s': expected a duration such as 500ms, 30s or 5min, got "
			         "'%.60s'",
			         k->name, value);
			return -1;
		}
		return 0;
	default:
		return -1;
	}
}

static void key_list(bool tier, char *msg, size_t len)
{
	size_t used = strlen(msg);

	for (size_t i = 0; i < NKEYS && used < len; i++) {
		if (tier && tenant_keys[i].tenant_only)
			continue;
		used += (size_t)snprintf(msg + used, len - used, "%s%s",
		                         used > 0 && msg[used - 1] != '(' ? ", " : "",
		                         tenant_keys[i].name);
	}
	if (used < len)
		snprintf(msg + used, len - used, ")");
}

int config_tenant_entry(struct config *cfg, bool tier, const char *section, const char *key,
                        const char *value, int line, char *msg, size_t len)
{
	const struct tenant_key *k = key_find(key);
	void *entry;

	if (*section == '\0') {
		snprintf(msg, len, "[%s.] needs a name", tier ? "tier" : "tenant");
		return -1;
	}
	if (k == NULL || (tier && k->tenant_only)) {
		snprintf(msg, len, "unknown key '%.60s' in [%s.%.60s] (expected ", key,
		         tier ? "tier" : "tenant", section);
		key_list(tier, msg, len);
		return -1;
	}
	if ((entry = section_entry(cfg, tier, section, line)) == NULL) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	if (tier)
		return parse_limit(k, &((struct tier_def *)entry)->limits, value, msg, len);

	struct tenant_def *d = entry;

	switch (k->kind) {
	case KEY_PATTERNS:
		if (strlist_split(value, ", \t",
		                  strcmp(key, "users") == 0 ? &d->users : &d->databases,
		                  strcmp(key, "users") == 0 ? &d->nusers : &d->ndatabases) < 0) {
			snprintf(msg, len, "out of memory");
			return -1;
		}
		return 0;
	case KEY_TIER:
		free(d->tier);
		if ((d->tier = strdup(value)) == NULL) {
			snprintf(msg, len, "out of memory");
			return -1;
		}
		return 0;
	default:
		return parse_limit(k, &d->own, value, msg, len);
	}
}

/* Each field the tenant left unset comes from the tier. */
static void merge_limits(struct tenant_limits *out, const struct tenant_limits *own,
                         const struct tenant_limits *tier)
{
	*out = *own;
	for (int k = 0; k < LIMIT_KINDS; k++) {
		if (own->rate[k].count < 0)
			out->rate[k] = tier->rate[k];
		if (own->burst[k] < 0)
			out->burst[k] = tier->burst[k];
	}
#define INHERIT(f)                                                                                 \
	if (own->f < 0)                                                                            \
	out->f = tier->f
	INHERIT(max_client_conn);
	INHERIT(fleet_max_client_conn);
	INHERIT(max_server_conn);
	INHERIT(min_server_conn);
	INHERIT(weight);
	INHERIT(statement_timeout_us);
	INHERIT(query_timeout_us);
	INHERIT(rate_limit_wait_us);
	INHERIT(idle_transaction_timeout_us);
	INHERIT(client_idle_timeout_us);
	INHERIT(query_wait_timeout_us);
#undef INHERIT
}

int config_tenants_resolve(struct config *cfg, char *msg, size_t len)
{
	struct tenant_limits none;

	tenant_limits_init(&none);
	for (size_t i = 0; i < cfg->ntenants; i++) {
		struct tenant_def *d = &cfg->tenants[i];
		const struct tier_def *t = NULL;

		if (d->tier != NULL && (t = tier_find(cfg, d->tier)) == NULL) {
			snprintf(msg, len,
			         "[tenant.%.60s] names tier '%.60s', which has no [tier.%.60s] "
			         "section",
			         d->name, d->tier, d->tier);
			return d->line;
		}
		merge_limits(&d->limits, &d->own, t != NULL ? &t->limits : &none);
	}
	return 0;
}

void config_tenants_free(struct config *cfg)
{
	for (size_t i = 0; i < cfg->ntenants; i++) {
		struct tenant_def *d = &cfg->tenants[i];

		free(d->name);
		free(d->tier);
		strlist_free(d->users, d->nusers);
		strlist_free(d->databases, d->ndatabases);
	}
	free(cfg->tenants);
	for (size_t i = 0; i < cfg->ntiers; i++)
		free(cfg->tiers[i].name);
	free(cfg->tiers);
}

static bool any_matches(char *const *patterns, size_t n, const char *name)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (fnmatch(patterns[i], name, 0) == 0)
			return true;
	return false;
}

const struct tenant_def *config_find_tenant(const struct config *cfg, const char *user,
                                            const char *dbname)
{
	for (size_t i = 0; i < cfg->ntenants; i++) {
		const struct tenant_def *d = &cfg->tenants[i];

		/* [tenant.default] only limits the unmatched; it never claims clients itself. */
		if (strcmp(d->name, TENANT_DEFAULT) == 0)
			continue;
		if (any_matches(d->users, d->nusers, user) &&
		    any_matches(d->databases, d->ndatabases, dbname))
			return d;
	}
	return tenant_find(cfg, TENANT_DEFAULT);
}

void config_tenants_check_guarantees(struct config *cfg)
{
	for (size_t i = 0; i < cfg->ndbs; i++) {
		const struct db_def *db = &cfg->dbs[i];
		int64_t sum = 0;
		char key[300];
		int size;

		/* "*" stands for names not known until clients ask for them. */
		if (strcmp(db->name, "*") == 0)
			continue;
		for (size_t t = 0; t < cfg->ntenants; t++) {
			const struct tenant_def *d = &cfg->tenants[t];

			if (d->limits.min_server_conn > 0 &&
			    (strcmp(d->name, TENANT_DEFAULT) == 0 ||
			     any_matches(d->databases, d->ndatabases, db->name)))
				sum += d->limits.min_server_conn;
		}
		size = config_pool_size(cfg, db, NULL);
		snprintf(key, sizeof(key), "min_server_conn:%s", db->name);
		if (sum > size)
			config_note(
			    cfg, LOG_WARN, key,
			    "database '%s': the tenants that may use it have min_server_conn "
			    "%lld in all, more than its pool size %d: the guarantees go to "
			    "the tenants that come first",
			    db->name, (long long)sum, size);
	}
}

const struct tenant_def *config_tenant_named(const struct config *cfg, const char *name)
{
	return tenant_find(cfg, name);
}

void config_tenant_write_markdown(void *file)
{
	FILE *out = file;

	for (size_t i = 0; i < NKEYS; i++)
		fprintf(out, "| `%s` | %s%s |\n", tenant_keys[i].name, tenant_keys[i].help,
		        tenant_keys[i].tenant_only ? " (tenant only)" : "");
}
