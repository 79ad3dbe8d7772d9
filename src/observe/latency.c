/*
 * Gathering what pools recorded (pool/record.h), merging it and SHOW LATENCY
 * rows; see latency.h.  Runs only when someone asks.
 */
#include "observe/latency.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/listen.h"
#include "pool/client.h"
#include "config/config.h"
#include "pool/pause.h"
#include "pool/pool.h"
#include "proto/frame.h"
#include "pool/server.h"
#include "pool/worker.h"

/* ---- gathering ---- */

/* What one worker copied: its pools, one row each, and its server moves. */
struct worker_part {
	struct latency_row *rows;
	size_t n;
	struct worker_moves moves;
};

struct gather_ctx {
	latency_report_fn done;     /* the caller's */
	void (*drop)(void *arg);    /* the caller's, when done cannot run; may be NULL */
	void *arg;                  /* its argument */
	int nparts;                 /* workers */
	struct worker_part parts[]; /* indexed by worker id; each written by its worker only */
};

static void add_classes(struct latency_row *row, const struct error_class *errors, size_t n,
                        uint64_t other)
{
	row->errors_other += other;
	for (size_t i = 0; i < n && errors[i].cls[0] != '\0'; i++) {
		size_t k;

		for (k = 0; k < LATENCY_REPORT_CLASSES && row->errors[k].cls[0] != '\0'; k++)
			if (memcmp(row->errors[k].cls, errors[i].cls, 2) == 0)
				break;
		if (k == LATENCY_REPORT_CLASSES) {
			row->errors_other += errors[i].count;
			continue;
		}
		memcpy(row->errors[k].cls, errors[i].cls, 3);
		row->errors[k].count += errors[i].count;
	}
}

/* Caps and console state, for dashboards that show use against the limit. */
static void copy_limits(struct latency_row *row, struct pool *p)
{
	const struct config *cfg = p->w->cfg;
	struct list_node *first = list_first(&p->waiting);

	if (first != NULL)
		row->maxwait_us = worker_now_us(p->w) -
		                  list_entry(first, struct client, wait_node)->wait_start_us;
	row->pool_size = pool_size(p);
	row->min_pool_size = config_min_pool_size(cfg, p->db);
	row->max_db_connections = p->db != NULL && p->db->max_db_connections != CONFIG_INHERIT
	                              ? p->db->max_db_connections
	                              : cfg->max_db_connections;
	row->paused = pause_db_paused(p->w, p->dbname) || p->paused;
	row->disabled = pause_db_disabled(p->w, p->dbname);
}

static void copy_pool(struct latency_row *row, struct pool *p)
{
	struct list_node *pos;

	row->database = strdup(p->dbname);
	row->user = strdup(p->user);
	row->tenant = strdup(pool_tenant(p));
	memcpy(row->h, p->lat.h, sizeof(row->h));
	row->stats = p->stats;
	add_classes(row, p->lat.errors, LATENCY_POOL_CLASSES, p->lat.errors_other);
	row->timeouts = p->lat.timeouts;
	row->cancels = p->lat.cancels;
	row->ratelimit_rejections = p->lat.ratelimit_rejections;
	row->servers_active = (int)list_count(&p->active);
	row->servers_idle = (int)list_count(&p->idle);
	/* The states as SHOW POOLS counts them (admin/census.c), so both tell the same. */
	for (pos = p->pending.next; pos != &p->pending; pos = pos->next) {
		const struct server *s = list_entry(pos, struct server, node);

		if (s->state == SERVER_CONNECTING || s->state == SERVER_LOGIN)
			row->servers_login++;
		else if (s->state == SERVER_RESETTING)
			row->servers_tested++;
		else if (s->state == SERVER_CANCELING)
			row->servers_canceling++;
	}
	if (p->listen != NULL) {
		row->listen_servers = p->listen->listening;
		row->listen_channels = p->listen->nchannels;
		row->listen_subs = p->listen->nsubs;
	}
	copy_limits(row, p);
}

/* Clients are on the worker's list, not the pool's: count them in one pass. */
static void count_clients(struct worker *w, struct worker_part *part)
{
	struct list_node *pos;

	for (pos = w->clients.next; pos != &w->clients; pos = pos->next) {
		const struct client *c = list_entry(pos, struct client, node);
		struct latency_row *row;

		if (c->pool == NULL || c->pool->lat.gather_slot >= part->n)
			continue;
		row = &part->rows[c->pool->lat.gather_slot];
		if (c->state == CLIENT_IDLE || c->state == CLIENT_ACTIVE)
			row->clients_active++;
		else if (c->state == CLIENT_WAITING || c->state == CLIENT_LOGIN)
			row->clients_waiting++;
	}
}

/* Runs on each worker's own thread: touches only that worker and its slot. */
static void gather_each(struct worker *w, void *arg)
{
	struct gather_ctx *g = arg;
	struct worker_part *part = &g->parts[w->id];
	size_t n = list_count(&w->pools), i = 0;
	struct list_node *pos;

	part->moves = w->moves;
	if (n == 0)
		return;
	part->rows = calloc(n, sizeof(*part->rows));
	if (part->rows == NULL)
		return;
	for (pos = w->pools.next; pos != &w->pools; pos = pos->next, i++) {
		struct pool *p = list_entry(pos, struct pool, node);

		p->lat.gather_slot = i;
		copy_pool(&part->rows[i], p);
	}
	part->n = n;
	count_clients(w, part);
}

/* Names are NULL only after an allocation failure; they then sort and print as "". */
static const char *str_or_empty(const char *s)
{
	return s != NULL ? s : "";
}

static int compare_rows(const void *a, const void *b)
{
	const struct latency_row *x = a, *y = b;
	int d = strcmp(str_or_empty(x->database), str_or_empty(y->database));

	return d != 0 ? d : strcmp(str_or_empty(x->user), str_or_empty(y->user));
}

static void free_row_strings(struct latency_row *row)
{
	free(row->database);
	free(row->user);
	free(row->tenant);
}

static void merge_row(struct latency_row *dst, struct latency_row *src)
{
	for (int k = 0; k < LATENCY_KINDS; k++)
		histogram_merge(&dst->h[k], &src->h[k]);
	dst->stats.xact_count += src->stats.xact_count;
	dst->stats.query_count += src->stats.query_count;
	dst->stats.bytes_received += src->stats.bytes_received;
	dst->stats.bytes_sent += src->stats.bytes_sent;
	dst->stats.xact_time_us += src->stats.xact_time_us;
	dst->stats.query_time_us += src->stats.query_time_us;
	dst->stats.wait_time_us += src->stats.wait_time_us;
	dst->stats.server_assignments += src->stats.server_assignments;
	dst->stats.client_logins += src->stats.client_logins;
	dst->stats.errors += src->stats.errors;
	dst->stats.pins += src->stats.pins;
	dst->stats.listen_notifications += src->stats.listen_notifications;
	dst->stats.listen_delivered += src->stats.listen_delivered;
	dst->stats.listen_dropped += src->stats.listen_dropped;
	dst->stats.listen_lost += src->stats.listen_lost;
	add_classes(dst, src->errors, LATENCY_REPORT_CLASSES, src->errors_other);
	dst->timeouts += src->timeouts;
	dst->cancels += src->cancels;
	dst->ratelimit_rejections += src->ratelimit_rejections;
	dst->clients_active += src->clients_active;
	dst->clients_waiting += src->clients_waiting;
	dst->servers_active += src->servers_active;
	dst->servers_idle += src->servers_idle;
	dst->servers_used += src->servers_used;
	dst->servers_tested += src->servers_tested;
	dst->servers_canceling += src->servers_canceling;
	dst->servers_login += src->servers_login;
	dst->listen_servers += src->listen_servers;
	dst->listen_channels += src->listen_channels;
	dst->listen_subs += src->listen_subs;
	/* Limits are the same on every worker; the longest wait is the longest of any. */
	if (src->maxwait_us > dst->maxwait_us)
		dst->maxwait_us = src->maxwait_us;
	dst->paused = dst->paused || src->paused;
	dst->disabled = dst->disabled || src->disabled;
}

/* All workers' rows in one sorted array, the rows of one (database, user) merged. */
static struct latency_report *merge_parts(struct gather_ctx *g)
{
	struct latency_report *rep = calloc(1, sizeof(*rep));
	size_t total = 0, out = 0;

	if (rep == NULL)
		return NULL;
	rep->moves = calloc((size_t)g->nparts, sizeof(*rep->moves));
	if (rep->moves != NULL) {
		rep->nworkers = g->nparts;
		for (int i = 0; i < g->nparts; i++)
			rep->moves[i] = g->parts[i].moves;
	}
	for (int i = 0; i < g->nparts; i++)
		total += g->parts[i].n;
	rep->rows = total ? calloc(total, sizeof(*rep->rows)) : NULL;
	if (total > 0 && rep->rows == NULL) {
		free(rep->moves);
		free(rep);
		return NULL;
	}
	for (int i = 0; i < g->nparts; i++) {
		if (g->parts[i].n > 0)
			memcpy(rep->rows + out, g->parts[i].rows,
			       g->parts[i].n * sizeof(*rep->rows));
		out += g->parts[i].n;
		free(g->parts[i].rows);
		g->parts[i].rows = NULL;
		g->parts[i].n = 0;
	}
	if (total > 1) /* with no pools, rows is NULL: qsort must not see it */
		qsort(rep->rows, total, sizeof(*rep->rows), compare_rows);
	out = 0;
	for (size_t i = 0; i < total; i++) {
		if (out > 0 && compare_rows(&rep->rows[out - 1], &rep->rows[i]) == 0) {
			merge_row(&rep->rows[out - 1], &rep->rows[i]);
			free_row_strings(&rep->rows[i]);
			continue;
		}
		if (out != i)
			rep->rows[out] = rep->rows[i];
		out++;
	}
	rep->nrows = out;
	return rep;
}

static void free_parts(struct gather_ctx *g)
{
	for (int i = 0; i < g->nparts; i++) {
		for (size_t k = 0; k < g->parts[i].n; k++)
			free_row_strings(&g->parts[i].rows[k]);
		free(g->parts[i].rows);
	}
}

static void gather_done(void *arg)
{
	struct gather_ctx *g = arg;
	struct latency_report *rep = merge_parts(g);

	if (rep == NULL) {
		/* Out of memory: an empty report still answers the caller. */
		free_parts(g);
		rep = calloc(1, sizeof(*rep));
	}
	g->done(rep, g->arg);
	free(g);
}

static void gather_dropped(void *arg)
{
	struct gather_ctx *g = arg;

	free_parts(g);
	if (g->drop != NULL)
		g->drop(g->arg);
	free(g);
}

int latency_gather(struct worker_shared *shared, struct inbox *reply_to, latency_report_fn done,
                   void (*drop)(void *arg), void *arg)
{
	struct gather_ctx *g =
	    calloc(1, sizeof(*g) + (size_t)shared->nworkers * sizeof(struct worker_part));

	if (g == NULL)
		return -1;
	g->done = done;
	g->drop = drop;
	g->arg = arg;
	g->nparts = shared->nworkers;
	if (gather_start(shared, reply_to, gather_each, gather_done, gather_dropped, g) < 0) {
		free(g);
		return -1;
	}
	return 0;
}

void latency_report_free(struct latency_report *rep)
{
	if (rep == NULL)
		return;
	for (size_t i = 0; i < rep->nrows; i++)
		free_row_strings(&rep->rows[i]);
	free(rep->rows);
	free(rep->moves);
	free(rep);
}

/* ---- SHOW LATENCY ---- */

static const char *const show_columns[LATENCY_SHOW_COLUMNS] = {
    "database", "user",   "tenant", "kind",   "count",   "mean_us",
    "p50_us",   "p90_us", "p95_us", "p99_us", "p999_us", "max_us",
};

const char *const *latency_show_columns(void)
{
	return show_columns;
}

static void show_row(const char *db, const char *user, const char *tenant, int kind,
                     const struct histogram *h, latency_row_fn row, void *arg)
{
	static const double qs[] = {0.5, 0.9, 0.95, 0.99, 0.999};
	char nums[8][24];
	const char *values[LATENCY_SHOW_COLUMNS] = {db, user, tenant, latency_kind_name(kind)};

	snprintf(nums[0], sizeof(nums[0]), "%llu", (unsigned long long)h->count);
	snprintf(nums[1], sizeof(nums[1]), "%.0f", histogram_mean(h));
	for (int i = 0; i < 5; i++)
		snprintf(nums[2 + i], sizeof(nums[2 + i]), "%llu",
		         (unsigned long long)histogram_percentile(h, qs[i]));
	snprintf(nums[7], sizeof(nums[7]), "%llu", (unsigned long long)h->max);
	for (int i = 0; i < 8; i++)
		values[4 + i] = nums[i];
	row(arg, values);
}

/* The merge of every row whose tenant is `tenant` (NULL = all rows). */
static void merge_tenant(const struct latency_report *rep, const char *tenant, int kind,
                         struct histogram *out)
{
	histogram_reset(out);
	for (size_t i = 0; i < rep->nrows; i++)
		if (tenant == NULL || strcmp(str_or_empty(rep->rows[i].tenant), tenant) == 0)
			histogram_merge(out, &rep->rows[i].h[kind]);
}

static bool tenant_seen_before(const struct latency_report *rep, size_t i)
{
	for (size_t k = 0; k < i; k++)
		if (strcmp(str_or_empty(rep->rows[k].tenant), str_or_empty(rep->rows[i].tenant)) ==
		    0)
			return true;
	return false;
}

void latency_show(const struct latency_report *rep, latency_row_fn row, void *arg)
{
	struct histogram *h = malloc(sizeof(*h));

	if (h == NULL)
		return;
	for (size_t i = 0; i < rep->nrows; i++) {
		const struct latency_row *r = &rep->rows[i];

		for (int k = 0; k < LATENCY_KINDS; k++)
			show_row(str_or_empty(r->database), str_or_empty(r->user),
			         str_or_empty(r->tenant), k, &r->h[k], row, arg);
	}
	for (size_t i = 0; i < rep->nrows; i++) {
		if (tenant_seen_before(rep, i))
			continue;
		for (int k = 0; k < LATENCY_KINDS; k++) {
			const char *tenant = str_or_empty(rep->rows[i].tenant);

			merge_tenant(rep, tenant, k, h);
			show_row("*", "*", tenant, k, h, row, arg);
		}
	}
	for (int k = 0; k < LATENCY_KINDS; k++) {
		merge_tenant(rep, NULL, k, h);
		show_row("*", "*", "*", k, h, row, arg);
	}
	free(h);
}
