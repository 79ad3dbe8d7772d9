/*
 * SHOW TENANTS and SHOW RATELIMITS.  Tenant state is process-wide (the
 * runtime's registry, atomics and the limiter), so the console's worker
 * answers alone: no gather over the workers.  Every configured tenant is
 * listed, and "default"; a tenant that a reload removed stays listed while
 * it has state, with no limits.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "admin/tenants.h"
#include "admin/console.h"
#include "config/config.h"
#include "limit/limiter.h"
#include "runtime/runtime.h"
#include "pool/worker.h"

#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))

static const char *const kind_names[LIMIT_KINDS] = {"query_rate", "transaction_rate",
                                                    "connect_rate"};

/* Values of one row: text cells, each with room for a number. */
struct cells {
	size_t n;
	const char *vals[24];
	char buf[24][160];
};

static void cell(struct cells *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void cell(struct cells *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->buf[r->n], sizeof(r->buf[r->n]), fmt, ap);
	va_end(ap);
	r->vals[r->n] = r->buf[r->n];
	r->n++;
}

static void cell_patterns(struct cells *r, char *const *list, size_t n)
{
	char *out = r->buf[r->n];
	size_t used = 0, cap = sizeof(r->buf[r->n]);

	out[0] = '\0';
	for (size_t i = 0; i < n && used < cap; i++)
		used += (size_t)snprintf(out + used, cap - used, "%s%s", i ? "," : "", list[i]);
	r->vals[r->n] = n == 0 ? "*" : out;
	r->n++;
}

static void cell_duration(struct cells *r, int64_t us)
{
	if (us <= 0) {
		cell(r, "0");
		return;
	}
	config_format_duration(us, r->buf[r->n], sizeof(r->buf[r->n]));
	r->vals[r->n] = r->buf[r->n];
	r->n++;
}

static void cell_rate(struct cells *r, const struct tenant_limits *l, enum limit_kind k)
{
	if (l == NULL || l->rate[k].count <= 0) {
		cell(r, "0");
		return;
	}
	tenant_format_rate(&l->rate[k], r->buf[r->n], sizeof(r->buf[r->n]));
	r->vals[r->n] = r->buf[r->n];
	r->n++;
}

/* The tenants to list: configured ones and "default", then any other with state. */
typedef void (*tenant_fn)(struct console_conn *conn, struct tenant_state *t,
                          const struct tenant_def *def);

static void each_tenant(struct console_conn *conn, tenant_fn fn)
{
	const struct config *cfg = conn->w->cfg;
	struct quota_registry *reg = &conn->w->shared->quotas;
	bool default_listed = false;
	struct tenant_state *t;

	for (size_t i = 0; i < cfg->ntenants; i++) {
		fn(conn, quota_tenant(reg, cfg->tenants[i].name), &cfg->tenants[i]);
		default_listed |= strcmp(cfg->tenants[i].name, TENANT_DEFAULT) == 0;
	}
	if (!default_listed)
		fn(conn, quota_tenant(reg, TENANT_DEFAULT), NULL);
	/* Entries are never removed and new ones go to the head: the walk is safe unlocked. */
	pthread_mutex_lock(&reg->lock);
	t = reg->tenants;
	pthread_mutex_unlock(&reg->lock);
	for (; t != NULL; t = t->next)
		if (strcmp(t->name, TENANT_DEFAULT) != 0 &&
		    config_tenant_named(cfg, t->name) == NULL)
			fn(conn, t, NULL);
}

static uint64_t sum(_Atomic uint64_t *counts)
{
	uint64_t total = 0;

	for (int k = 0; k < LIMIT_KINDS; k++)
		total += atomic_load(&counts[k]);
	return total;
}

static const struct console_col tenants_cols[] = {
    {"tenant", ADMIN_TEXT},          {"tier", ADMIN_TEXT},
    {"users", ADMIN_TEXT},           {"databases", ADMIN_TEXT},
    {"clients", ADMIN_INT4},         {"max_client_conn", ADMIN_INT4},
    {"servers", ADMIN_INT4},         {"max_server_conn", ADMIN_INT4},
    {"min_server_conn", ADMIN_INT4}, {"weight", ADMIN_INT4},
    {"query_rate", ADMIN_TEXT},      {"transaction_rate", ADMIN_TEXT},
    {"connect_rate", ADMIN_TEXT},    {"statement_timeout", ADMIN_TEXT},
    {"query_timeout", ADMIN_TEXT},   {"rate_limit_wait", ADMIN_TEXT},
    {"admitted", ADMIN_INT8},        {"delayed", ADMIN_INT8},
    {"rejected", ADMIN_INT8},        {"refused_logins", ADMIN_INT8},
};

static void tenant_row(struct console_conn *conn, struct tenant_state *t,
                       const struct tenant_def *def)
{
	const struct tenant_limits *l = def != NULL ? &def->limits : NULL;
	struct quota_registry *reg = &conn->w->shared->quotas;
	struct quota *servers = quota_find(reg, "tenant", t->name);
	int nservers = atomic_load(&servers->used);
	struct cells r = {0};

	quota_put(reg, servers);

	cell(&r, "%s", t->name);
	cell(&r, "%s", def != NULL && def->tier != NULL ? def->tier : "");
	if (def != NULL && strcmp(def->name, TENANT_DEFAULT) != 0) {
		cell_patterns(&r, def->users, def->nusers);
		cell_patterns(&r, def->databases, def->ndatabases);
	} else {
		cell(&r, "(unmatched)");
		cell(&r, "(unmatched)");
	}
	cell(&r, "%d", atomic_load(&t->clients));
	cell(&r, "%lld", (long long)(l != NULL && l->max_client_conn > 0 ? l->max_client_conn : 0));
	cell(&r, "%d", nservers);
	cell(&r, "%lld", (long long)(l != NULL && l->max_server_conn > 0 ? l->max_server_conn : 0));
	cell(&r, "%lld", (long long)(l != NULL && l->min_server_conn > 0 ? l->min_server_conn : 0));
	cell(&r, "%lld",
	     (long long)(l != NULL && l->weight > 0 ? l->weight : TENANT_WEIGHT_DEFAULT));
	for (int k = 0; k < LIMIT_KINDS; k++)
		cell_rate(&r, l, k);
	cell_duration(&r, l != NULL ? l->statement_timeout_us : 0);
	cell_duration(&r, l != NULL && l->query_timeout_us >= 0 ? l->query_timeout_us
	                                                        : conn->w->cfg->query_timeout_us);
	cell_duration(&r, l != NULL && l->rate_limit_wait_us >= 0
	                      ? l->rate_limit_wait_us
	                      : conn->w->cfg->rate_limit_wait_us);
	cell(&r, "%" PRIu64, sum(t->admitted));
	cell(&r, "%" PRIu64, sum(t->delayed));
	cell(&r, "%" PRIu64, sum(t->rejected));
	cell(&r, "%" PRIu64,
	     atomic_load(&t->over_max_clients) + atomic_load(&t->rejected[LIMIT_CONNECT]));
	console_reply_row(conn, r.n, r.vals);
}

void tenants_render(struct console_conn *conn, struct console_op *op)
{
	(void)op;
	console_reply_header(conn, tenants_cols, NCOLS(tenants_cols));
	each_tenant(conn, tenant_row);
}

static const struct console_col ratelimits_cols[] = {
    {"tenant", ADMIN_TEXT},      {"limit", ADMIN_TEXT},           {"rate", ADMIN_TEXT},
    {"burst", ADMIN_INT8},       {"tokens", ADMIN_NUMERIC},       {"current_rate", ADMIN_NUMERIC},
    {"admitted", ADMIN_INT8},    {"delayed", ADMIN_INT8},         {"rejected", ADMIN_INT8},
    {"backend", ADMIN_TEXT},     {"lease", ADMIN_INT8},           {"instances", ADMIN_INT8},
    {"redis_state", ADMIN_TEXT}, {"redis_rtt_ms", ADMIN_NUMERIC},
};

static void ratelimit_rows(struct console_conn *conn, struct tenant_state *t,
                           const struct tenant_def *def)
{
	struct limiter *lim = &conn->w->shared->limiter;
	int64_t now = worker_now_us(conn->w);

	if (def == NULL)
		return;
	for (int k = 0; k < LIMIT_KINDS; k++) {
		const struct tenant_limits *l = &def->limits;
		int64_t burst = tenant_burst(l, k);
		struct limiter_status st;
		struct cells r = {0};

		if (l->rate[k].count <= 0)
			continue;
		cell(&r, "%s", t->name);
		cell(&r, "%s", kind_names[k]);
		cell_rate(&r, l, k);
		cell(&r, "%lld", (long long)burst);
		cell(&r, "%.2f", lim->ops->peek(lim, t, k, &l->rate[k], burst, now));
		cell(&r, "%.2f", tenant_current_rate(t, k, now));
		cell(&r, "%" PRIu64, atomic_load(&t->admitted[k]));
		cell(&r, "%" PRIu64, atomic_load(&t->delayed[k]));
		cell(&r, "%" PRIu64, atomic_load(&t->rejected[k]));
		lim->ops->status(lim, t, k, &l->rate[k], burst, &st);
		cell(&r, "%s", st.backend);
		cell(&r, "%lld", (long long)st.lease);
		cell(&r, "%d", st.live);
		cell(&r, "%s", st.state);
		cell(&r, "%.3f", st.rtt_ms);
		console_reply_row(conn, r.n, r.vals);
	}
}

void tenants_render_ratelimits(struct console_conn *conn, struct console_op *op)
{
	(void)op;
	console_reply_header(conn, ratelimits_cols, NCOLS(ratelimits_cols));
	each_tenant(conn, ratelimit_rows);
}
