/*
 * Pause and disable state of one worker; see pause.h.
 */
#include "pool/pause.h"

#include <stdlib.h>
#include <string.h>

#include "pool/client.h"
#include "pool/pool.h"
#include "pool/server.h"
#include "pool/worker.h"

static struct pause_db *db_find(const struct pause_state *ps, const char *name)
{
	for (size_t i = 0; i < ps->ndbs; i++)
		if (strcmp(ps->dbs[i].name, name) == 0)
			return &ps->dbs[i];
	return NULL;
}

static struct pause_db *db_get(struct pause_state *ps, const char *name)
{
	struct pause_db *st = db_find(ps, name);

	if (st != NULL)
		return st;
	if (ps->ndbs == ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 8;
		struct pause_db *dbs = realloc(ps->dbs, cap * sizeof(*dbs));

		if (dbs == NULL)
			return NULL;
		ps->dbs = dbs;
		ps->cap = cap;
	}
	st = &ps->dbs[ps->ndbs];
	memset(st, 0, sizeof(*st));
	if ((st->name = strdup(name)) == NULL)
		return NULL;
	ps->ndbs++;
	return st;
}

void pause_state_fini(struct pause_state *ps)
{
	for (size_t i = 0; i < ps->ndbs; i++)
		free(ps->dbs[i].name);
	free(ps->dbs);
	memset(ps, 0, sizeof(*ps));
}

/* PAUSE/KILL (servers close) or SUSPEND (servers stay) for this database? */
static void pause_wanted(const struct pause_state *ps, const char *dbname, bool *hold,
                         bool *close_servers)
{
	const struct pause_db *st = db_find(ps, dbname);

	*close_servers = ps->paused || (st != NULL && st->paused);
	*hold = *close_servers || ps->suspended;
}

void pause_apply(struct pool *p)
{
	bool hold, close_servers;

	pause_wanted(&p->w->pause, p->dbname, &hold, &close_servers);
	if (hold != p->paused || close_servers != p->pause_closes)
		pool_set_paused(p, hold, close_servers);
}

/* Bring every pool of the worker in line with its state. */
static void apply(struct worker *w)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->pools)
	{
		pause_apply(list_entry(pos, struct pool, node));
	}
}

/* Suspend (or resume) reading from every server of the worker. */
static void servers_suspend(struct worker *w, bool on)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &w->pools)
	{
		struct pool *p = list_entry(pos, struct pool, node);
		struct list_node *heads[] = {&p->idle, &p->active, &p->pending};

		for (size_t i = 0; i < 3; i++)
			for (struct list_node *n = heads[i]->next; n != heads[i]; n = n->next) {
				struct server *s = list_entry(n, struct server, node);

				if (on)
					conn_suspend(&s->conn, SUSPEND_ADMIN);
				else
					conn_resume(&s->conn, SUSPEND_ADMIN);
			}
	}
}

void pause_hold(struct worker *w, const char *dbname)
{
	struct pause_db *st;

	if (dbname == NULL)
		w->pause.paused = true;
	else if ((st = db_get(&w->pause, dbname)) != NULL)
		st->paused = true;
	apply(w);
}

void pause_resume(struct worker *w, const char *dbname)
{
	struct pause_state *ps = &w->pause;
	struct list_node *pos, *tmp;
	bool was_suspended = ps->suspended;

	if (dbname != NULL) {
		struct pause_db *st = db_find(ps, dbname);

		if (st != NULL)
			st->paused = false;
	} else {
		ps->paused = false;
		ps->suspended = false;
		for (size_t i = 0; i < ps->ndbs; i++)
			ps->dbs[i].paused = false;
	}
	if (was_suspended && !ps->suspended) {
		list_for_each_safe(pos, tmp, &w->clients)
		{
			struct client *c = list_entry(pos, struct client, node);

			conn_resume(&c->conn, SUSPEND_ADMIN);
		}
		servers_suspend(w, false);
	}
	apply(w);
}

void pause_suspend(struct worker *w)
{
	struct list_node *pos, *tmp;

	w->pause.suspended = true;
	apply(w);
	list_for_each_safe(pos, tmp, &w->clients)
	{
		struct client *c = list_entry(pos, struct client, node);

		if (c->session == NULL && c->state != CLIENT_CLOSING)
			conn_suspend(&c->conn, SUSPEND_ADMIN);
	}
	servers_suspend(w, true);
}

void pause_set_disabled(struct worker *w, const char *dbname, bool disabled)
{
	struct pause_db *st = db_get(&w->pause, dbname);

	if (st != NULL)
		st->disabled = disabled;
}

bool pause_db_paused(const struct worker *w, const char *dbname)
{
	return w->pause.paused || pause_db_paused_alone(w, dbname);
}

bool pause_db_paused_alone(const struct worker *w, const char *dbname)
{
	const struct pause_db *st = db_find(&w->pause, dbname);

	return st != NULL && st->paused;
}

bool pause_any_paused(const struct worker *w)
{
	const struct pause_state *ps = &w->pause;

	for (size_t i = 0; i < ps->ndbs; i++)
		if (ps->dbs[i].paused)
			return true;
	return ps->paused || ps->suspended;
}

bool pause_db_disabled(const struct worker *w, const char *dbname)
{
	const struct pause_db *st = db_find(&w->pause, dbname);

	return st != NULL && st->disabled;
}
