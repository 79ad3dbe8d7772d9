/*
 * The census: what each worker counts of its own pools, clients and servers
 * for the console's SHOWs, and the sums over every worker's census that the
 * SHOWs list (per pool, per database, per user).  See admin/census.h.
 */
#include "admin/census.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin/console.h"
#include "base/list.h"
#include "config/config.h"
#include "net/conn.h"
#include "pool/client.h"
#include "pool/pool.h"
#include "pool/record.h"
#include "pool/server.h"
#include "pool/worker.h"

/* ---- the census: what one worker counts ---- */

void census_free(struct census *cs)
{
	if (cs == NULL)
		return;
	for (size_t i = 0; i < cs->npools; i++) {
		free(cs->pools[i].db);
		free(cs->pools[i].user);
	}
	for (size_t i = 0; i < cs->nusers; i++)
		free(cs->users[i].key);
	free(cs->pools);
	free(cs->users);
	free(cs);
}

#define STATS_FIELDS(X)                                                                            \
	X(xact_count)                                                                              \
	X(query_count)                                                                             \
	X(bytes_received)                                                                          \
	X(bytes_sent)                                                                              \
	X(xact_time_us)                                                                            \
	X(query_time_us)                                                                           \
	X(wait_time_us)                                                                            \
	X(server_assignments)                                                                      \
	X(client_logins)                                                                           \
	X(errors)

static void stats_add(struct pool_stats *a, const struct pool_stats *b)
{
#define ADD(f) a->f += b->f;
	STATS_FIELDS(ADD)
#undef ADD
}

/* The last complete stats_period of a pool: delta and per-second rate. */
static void stats_window(const struct pool *p, struct pool_stats *delta, struct pool_stats *rate)
{
	int64_t us = p->stats_last_us - p->stats_prev_us;

	memset(delta, 0, sizeof(*delta));
	memset(rate, 0, sizeof(*rate));
	if (p->stats_prev_us == 0 || us <= 0 || p->w->cfg->stats_period_us == 0)
		return;
#define DELTA(f)                                                                                   \
	delta->f = p->stats_last.f - p->stats_prev.f;                                              \
	rate->f = (uint64_t)((double)delta->f * 1e6 / (double)us + 0.5);
	STATS_FIELDS(DELTA)
#undef DELTA
}

static void *grow(void *items, size_t *cap, size_t n, size_t size)
{
	void *bigger;
	size_t want;

	if (n < *cap)
		return items;
	want = *cap ? *cap * 2 : 16;
	bigger = realloc(items, want * size);
	if (bigger != NULL)
		*cap = want;
	return bigger;
}

static struct census_pool *census_add_pool(struct census *cs, const struct pool *p)
{
	struct census_pool *pools = grow(cs->pools, &cs->pools_cap, cs->npools, sizeof(*pools));
	struct census_pool *r;

	if (pools == NULL)
		return NULL;
	cs->pools = pools;
	r = &pools[cs->npools];
	memset(r, 0, sizeof(*r));
	r->db = strdup(p->dbname);
	r->user = strdup(p->user);
	if (r->db == NULL || r->user == NULL) {
		free(r->db);
		free(r->user);
		return NULL;
	}
	cs->npools++;
	r->key = p;
	return r;
}

static void count_server(struct census_pool *r, const struct server *s)
{
	r->sv_cancels += s->cancels_inflight;
	r->sv_close_needed += s->close_needed;
	switch (s->state) {
	case SERVER_ACTIVE:
		r->sv_active++;
		break;
	case SERVER_IDLE:
		r->sv_idle++;
		break;
	case SERVER_CONNECTING:
	case SERVER_LOGIN:
		r->sv_login++;
		break;
	case SERVER_RESETTING:
		r->sv_tested++;
		break;
	case SERVER_CANCELING:
		r->sv_being_canceled++;
		break;
	case SERVER_CLOSING:
	case SERVER_LISTENING: /* not on the pool's lists: SHOW LISTENERS has it */
		break;
	}
}

static uint64_t buffered(const struct conn *conn)
{
	return evbuffer_get_length(conn->in) + evbuffer_get_length(conn->out);
}

static void count_pool(struct census *cs, const struct pool *p, int64_t now)
{
	struct census_pool *r = census_add_pool(cs, p);
	const struct list_node *heads[] = {&p->idle, &p->active, &p->pending};
	struct list_node *first;

	if (r == NULL)
		return;
	r->mode = pool_mode(p);
	r->paused = p->paused;
	r->sv_total = p->nservers;
	r->total = p->stats;
	stats_window(p, &r->delta, &r->rate);
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		for (const struct list_node *n = heads[i]->next; n != heads[i]; n = n->next) {
			const struct server *s = list_entry(n, struct server, node);

			count_server(r, s);
			cs->io_bytes += buffered(&s->conn);
		}
	}
	first = list_first(&p->waiting);
	if (first != NULL)
		r->maxwait_us = now - list_entry(first, struct client, wait_node)->wait_start_us;
	cs->servers += p->nservers;
}

static struct census_pool *census_find(struct census *cs, const struct pool *p, size_t *hint)
{
	if (*hint < cs->npools && cs->pools[*hint].key == p)
		return &cs->pools[*hint];
	for (size_t i = 0; i < cs->npools; i++) {
		if (cs->pools[i].key == p) {
			*hint = i;
			return &cs->pools[i];
		}
	}
	return NULL;
}

static void tally_add(struct census *cs, const char *user)
{
	struct census_tally *users;

	for (size_t i = 0; i < cs->nusers; i++) {
		if (strcmp(cs->users[i].key, user) == 0) {
			cs->users[i].n++;
			return;
		}
	}
	users = grow(cs->users, &cs->users_cap, cs->nusers, sizeof(*users));
	if (users == NULL)
		return;
	cs->users = users;
	if ((users[cs->nusers].key = strdup(user)) == NULL)
		return;
	users[cs->nusers++].n = 1;
}

static void count_client(struct census *cs, const struct client *c, size_t *hint)
{
	struct census_pool *r;

	cs->clients++;
	cs->io_bytes += buffered(&c->conn);
	if (c->session != NULL) {
		cs->console_clients++;
		return;
	}
	if (c->state == CLIENT_LOGIN)
		cs->login_clients++;
	if (c->pool == NULL || (r = census_find(cs, c->pool, hint)) == NULL)
		return;
	tally_add(cs, c->user);
	switch (c->state) {
	case CLIENT_LOGIN:
		r->cl_login++;
		break;
	case CLIENT_IDLE:
		r->cl_idle++;
		break;
	case CLIENT_ACTIVE:
		r->cl_active++;
		break;
	case CLIENT_WAITING:
		r->cl_waiting++;
		break;
	case CLIENT_CLOSING:
		break;
	}
}

void census_each(struct worker *w, struct console_op *op, struct console_part *part)
{
	struct census *cs = calloc(1, sizeof(*cs));
	int64_t now = worker_now_us(w);
	struct list_node *pos, *tmp;
	size_t hint = 0;

	if (cs == NULL)
		return;
	list_for_each_safe(pos, tmp, &w->pools)
	{
		count_pool(cs, list_entry(pos, struct pool, node), now);
	}
	list_for_each_safe(pos, tmp, &w->clients)
	{
		count_client(cs, list_entry(pos, struct client, node), &hint);
	}
	part->census = cs;
}

/* ---- merging censuses ---- */

void census_pool_sum(struct census_pool *a, const struct census_pool *b)
{
	a->paused = a->paused || b->paused;
	a->cl_idle += b->cl_idle;
	a->cl_active += b->cl_active;
	a->cl_waiting += b->cl_waiting;
	a->cl_login += b->cl_login;
	a->sv_active += b->sv_active;
	a->sv_idle += b->sv_idle;
	a->sv_tested += b->sv_tested;
	a->sv_login += b->sv_login;
	a->sv_being_canceled += b->sv_being_canceled;
	a->sv_cancels += b->sv_cancels;
	a->sv_total += b->sv_total;
	a->sv_close_needed += b->sv_close_needed;
	if (b->maxwait_us > a->maxwait_us)
		a->maxwait_us = b->maxwait_us;
	stats_add(&a->total, &b->total);
	stats_add(&a->delta, &b->delta);
	stats_add(&a->rate, &b->rate);
}

static int rec_cmp(const void *x, const void *y)
{
	const struct census_pool *a = x, *b = y;
	int c = strcmp(a->db, b->db);

	if (c != 0 || a->user == NULL || b->user == NULL)
		return c;
	return strcmp(a->user, b->user);
}

/* Pools of all workers, summed per (database, user), or per database when by_db. */
void census_merge_pools(const struct console_op *op, bool by_db, struct census_merged *m)
{
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < op->nparts; i++) {
		const struct census *cs = op->parts[i].census;

		for (size_t j = 0; cs != NULL && j < cs->npools; j++) {
			const struct census_pool *r = &cs->pools[j];
			size_t k;

			for (k = 0; k < m->n; k++)
				if (strcmp(m->recs[k].db, r->db) == 0 &&
				    (by_db || strcmp(m->recs[k].user, r->user) == 0))
					break;
			if (k < m->n) {
				census_pool_sum(&m->recs[k], r);
				continue;
			}
			struct census_pool *recs = grow(m->recs, &m->cap, m->n, sizeof(*recs));

			if (recs == NULL)
				continue;
			m->recs = recs;
			recs[m->n] = *r;
			if (by_db)
				recs[m->n].user = NULL;
			m->n++;
		}
	}
	if (m->n > 1)
		qsort(m->recs, m->n, sizeof(*m->recs), rec_cmp);
}

/* Every configured database has a row, with or without traffic. */
void census_add_configured_dbs(const struct config *cfg, struct census_merged *m)
{
	for (size_t i = 0; i < cfg->ndbs; i++) {
		const char *name = cfg->dbs[i].name;
		size_t k;

		if (strcmp(name, "*") == 0)
			continue;
		for (k = 0; k < m->n && strcmp(m->recs[k].db, name) != 0; k++)
			;
		if (k < m->n)
			continue;
		struct census_pool *recs = grow(m->recs, &m->cap, m->n, sizeof(*recs));

		if (recs == NULL)
			return;
		m->recs = recs;
		memset(&recs[m->n], 0, sizeof(recs[m->n]));
		recs[m->n].db = cfg->dbs[i].name;
		recs[m->n].mode = config_pool_mode(cfg, &cfg->dbs[i], NULL);
		m->n++;
	}
	if (m->n > 1)
		qsort(m->recs, m->n, sizeof(*m->recs), rec_cmp);
}

/* The databases SHOW DATABASES lists: configured ones, then those reached through "*". */
void census_list_databases(const struct config *cfg, const struct console_op *op,
                           struct census_merged *m)
{
	struct census_merged seen;

	memset(m, 0, sizeof(*m));
	census_add_configured_dbs(cfg, m);
	census_merge_pools(op, true, &seen);
	for (size_t i = 0; i < seen.n; i++) {
		size_t k;

		for (k = 0; k < m->n && strcmp(m->recs[k].db, seen.recs[i].db) != 0; k++)
			;
		if (k < m->n) {
			census_pool_sum(&m->recs[k], &seen.recs[i]);
			continue;
		}
		struct census_pool *recs = grow(m->recs, &m->cap, m->n, sizeof(*recs));

		if (recs == NULL)
			break;
		m->recs = recs;
		recs[m->n++] = seen.recs[i];
	}
	free(seen.recs);
	if (m->n > 1)
		qsort(m->recs, m->n, sizeof(*m->recs), rec_cmp);
}

static void name_add(struct census_names *l, const char *name)
{
	const char **names;

	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->names[i], name) == 0)
			return;
	names = grow(l->names, &l->cap, l->n, sizeof(*names));
	if (names == NULL)
		return;
	l->names = names;
	names[l->n++] = name;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Users of the auth_file and [users], and any user seen in a pool or on a client. */
void census_list_users(const struct config *cfg, const struct console_op *op,
                       struct census_names *l)
{
	memset(l, 0, sizeof(*l));
	for (size_t i = 0; i < cfg->auth.count; i++)
		name_add(l, cfg->auth.users[i].user);
	for (size_t i = 0; i < cfg->nusers; i++)
		name_add(l, cfg->users[i].name);
	for (int i = 0; i < op->nparts; i++) {
		const struct census *cs = op->parts[i].census;

		for (size_t j = 0; cs != NULL && j < cs->npools; j++)
			name_add(l, cs->pools[j].user);
		for (size_t j = 0; cs != NULL && j < cs->nusers; j++)
			name_add(l, cs->users[j].key);
	}
	if (l->n > 1)
		qsort(l->names, l->n, sizeof(*l->names), name_cmp);
}
