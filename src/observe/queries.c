/*
 * Gathering and merging query insights; see queries.h.  Runs only when
 * someone asks (SHOW QUERIES, /metrics) or at the stats log tick.
 */
#include "observe/queries.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "observe/gather.h"
#include "observe/latency.h"
#include "pool/pool.h"
#include "pool/worker.h"

/* ---- gathering ---- */

/* What one worker copied. */
struct worker_copy {
	struct qstats_entry *entries;          /* its entries in use */
	uint32_t n;                            /* how many */
	struct qstats_scope *scopes;           /* names strdup'd here, and the "other" rows */
	uint32_t nscopes;                      /* how many */
	struct qstats_type types[QUERY_TYPES]; /* its per-type figures */
	uint64_t evictions;                    /* its evictions */
};

struct query_copies {
	query_report_fn done;       /* the caller's */
	void (*drop)(void *arg);    /* the caller's, when done cannot run; may be NULL */
	void *arg;                  /* its argument */
	int nparts;                 /* workers */
	struct worker_copy parts[]; /* indexed by worker id; each written by its worker only */
};

static void copy_worker(struct worker *w, void *arg)
{
	struct query_copies *g = arg;
	struct worker_copy *part;
	const struct qstats *qs = w->qstats;

	if (w->id < 0 || w->id >= g->nparts || qs == NULL)
		return;
	part = &g->parts[w->id];
	memcpy(part->types, qs->types, sizeof(part->types));
	part->evictions = qs->evictions;
	part->entries = malloc((qs->count ? qs->count : 1) * sizeof(*part->entries));
	part->scopes = calloc(qs->nscopes, sizeof(*part->scopes));
	if (part->entries == NULL || part->scopes == NULL)
		return;
	memcpy(part->entries, qs->entries, qs->count * sizeof(*part->entries));
	part->n = qs->count;
	for (uint32_t i = 0; i < qs->nscopes; i++) {
		struct qstats_scope *sc = &part->scopes[i];

		sc->database = strdup(qs->scopes[i].database);
		sc->user = strdup(qs->scopes[i].user);
		sc->tenant = strdup(qs->scopes[i].tenant);
		sc->other = qs->scopes[i].other;
		part->nscopes = i + 1;
		if (sc->database == NULL || sc->user == NULL || sc->tenant == NULL)
			break;
	}
}

static void add_row(struct query_report *rep, const struct qstats_scope *sc, uint64_t fp,
                    enum query_type type, const struct qstats_figures *fig, const char *text,
                    size_t len)
{
	struct query_row *r = &rep->rows[rep->nrows++];

	r->fp = fp;
	r->database = sc->database != NULL ? sc->database : "";
	r->user = sc->user != NULL ? sc->user : "";
	r->tenant = sc->tenant != NULL ? sc->tenant : "";
	r->type = type;
	r->fig = *fig;
	memcpy(r->text, text, len);
	r->text[len] = '\0';
}

static int cmp_key(const void *a, const void *b)
{
	const struct query_row *x = a, *y = b;
	int c;

	if (x->fp != y->fp)
		return x->fp < y->fp ? -1 : 1;
	if ((c = strcmp(x->database, y->database)) != 0)
		return c;
	if ((c = strcmp(x->user, y->user)) != 0)
		return c;
	return strcmp(x->tenant, y->tenant);
}

static int cmp_time(const void *a, const void *b)
{
	const struct query_row *x = a, *y = b;

	if (x->fig.total_us != y->fig.total_us)
		return x->fig.total_us > y->fig.total_us ? -1 : 1;
	if (x->fig.calls != y->fig.calls)
		return x->fig.calls > y->fig.calls ? -1 : 1;
	return cmp_key(a, b);
}

/* Same key next to each other: add up, keep rows with calls. */
static void merge_rows(struct query_report *rep)
{
	size_t out = 0;

	qsort(rep->rows, rep->nrows, sizeof(*rep->rows), cmp_key);
	for (size_t i = 0; i < rep->nrows; i++) {
		if (out > 0 && cmp_key(&rep->rows[out - 1], &rep->rows[i]) == 0) {
			qstats_figures_add(&rep->rows[out - 1].fig, &rep->rows[i].fig);
			continue;
		}
		if (out != i)
			rep->rows[out] = rep->rows[i];
		out++;
	}
	rep->nrows = out;
	out = 0;
	for (size_t i = 0; i < rep->nrows; i++)
		if (rep->rows[i].fig.calls > 0)
			rep->rows[out++] = rep->rows[i];
	rep->nrows = out;
	qsort(rep->rows, rep->nrows, sizeof(*rep->rows), cmp_time);
}

static void fill_report(struct query_report *rep, struct query_copies *g)
{
	size_t nrows = 0;

	for (int i = 0; i < g->nparts; i++)
		nrows += g->parts[i].n + g->parts[i].nscopes;
	rep->rows = calloc(nrows ? nrows : 1, sizeof(*rep->rows));
	if (rep->rows == NULL)
		return;
	for (int i = 0; i < g->nparts; i++) {
		const struct worker_copy *part = &g->parts[i];

		for (int t = 0; t < QUERY_TYPES; t++) {
			rep->types[t].errors += part->types[t].errors;
			rep->types[t].rows += part->types[t].rows;
			histogram_merge(&rep->types[t].h, &part->types[t].h);
		}
		rep->evictions += part->evictions;
		for (uint32_t k = 0; k < part->nscopes; k++)
			add_row(rep, &part->scopes[k], 0, QUERY_OTHER, &part->scopes[k].other, "",
			        0);
		for (uint32_t k = 0; k < part->n; k++) {
			const struct qstats_entry *e = &part->entries[k];

			if (e->scope < part->nscopes)
				add_row(rep, &part->scopes[e->scope], e->fp, e->type, &e->fig,
				        e->text, e->text_len);
		}
	}
	merge_rows(rep);
}

static void free_source(struct query_copies *g)
{
	for (int i = 0; g != NULL && i < g->nparts; i++) {
		struct worker_copy *part = &g->parts[i];

		for (uint32_t k = 0; part->scopes != NULL && k < part->nscopes; k++) {
			free(part->scopes[k].database);
			free(part->scopes[k].user);
			free(part->scopes[k].tenant);
		}
		free(part->scopes);
		free(part->entries);
	}
	free(g);
}

static void gathered(void *arg)
{
	struct query_copies *g = arg;
	struct query_report *rep = calloc(1, sizeof(*rep));

	if (rep != NULL)
		fill_report(rep, g);
	if (rep == NULL || rep->rows == NULL) {
		free(rep);
		free_source(g);
		g->done(NULL, g->arg);
		return;
	}
	/* The rows point at the copied names: the report keeps the copies. */
	rep->source = g;
	g->done(rep, g->arg);
}

static void gather_dropped(void *arg)
{
	struct query_copies *g = arg;

	if (g->drop != NULL)
		g->drop(g->arg);
	free_source(g);
}

void query_report_free(struct query_report *rep)
{
	if (rep == NULL)
		return;
	free(rep->rows);
	free_source(rep->source);
	free(rep);
}

int queries_gather(struct worker_shared *shared, struct inbox *reply_to, query_report_fn done,
                   void (*drop)(void *arg), void *arg)
{
	struct query_copies *g =
	    calloc(1, sizeof(*g) + (size_t)shared->nworkers * sizeof(struct worker_copy));

	if (g == NULL)
		return -1;
	g->done = done;
	g->drop = drop;
	g->arg = arg;
	g->nparts = shared->nworkers;
	if (gather_start(shared, reply_to, copy_worker, gathered, gather_dropped, g) < 0) {
		free(g);
		return -1;
	}
	return 0;
}

/* ---- /metrics: the latency report, then this one ---- */

struct metrics_ctx {
	metrics_report_fn done;         /* the caller's */
	void (*drop)(void *arg);        /* the caller's, when done cannot run; may be NULL */
	void *arg;                      /* its argument */
	struct worker_shared *shared;   /* for the second gather */
	struct inbox *reply_to;         /* where both report */
	struct latency_report *latency; /* the first report */
};

static void metrics_queries_done(struct query_report *rep, void *arg)
{
	struct metrics_ctx *m = arg;

	m->done(m->latency, rep, m->arg);
	free(m);
}

static void metrics_dropped(void *arg)
{
	struct metrics_ctx *m = arg;

	latency_report_free(m->latency);
	if (m->drop != NULL)
		m->drop(m->arg);
	free(m);
}

static void metrics_latency_done(struct latency_report *rep, void *arg)
{
	struct metrics_ctx *m = arg;

	m->latency = rep;
	if (queries_gather(m->shared, m->reply_to, metrics_queries_done, metrics_dropped, m) < 0) {
		m->done(rep, NULL, m->arg);
		free(m);
	}
}

int queries_gather_metrics(struct worker_shared *shared, struct inbox *reply_to,
                           metrics_report_fn done, void (*drop)(void *arg), void *arg)
{
	struct metrics_ctx *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return -1;
	m->done = done;
	m->drop = drop;
	m->arg = arg;
	m->shared = shared;
	m->reply_to = reply_to;
	if (latency_gather(shared, reply_to, metrics_latency_done, metrics_dropped, m) < 0) {
		free(m);
		return -1;
	}
	return 0;
}

/* ---- text for labels and logs ---- */

size_t queries_utf8_clean(const char *s, char *out, size_t cap)
{
	size_t o = 0, i = 0, len = strlen(s);

	while (i < len && o + 1 < cap) {
		unsigned char ch = (unsigned char)s[i];
		size_t need = ch < 0x80             ? 1
		              : (ch & 0xe0) == 0xc0 ? 2
		              : (ch & 0xf0) == 0xe0 ? 3
		              : (ch & 0xf8) == 0xf0 ? 4
		                                    : 0;
		bool ok =
		    need > 0 && i + need <= len && o + need < cap && (need != 2 || ch >= 0xc2);

		for (size_t k = 1; ok && k < need; k++)
			ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
		if (!ok) {
			/* Not UTF-8 (a client_encoding other than UTF8): one '?' per byte. */
			out[o++] = (ch < 0x80 && need == 1) ? (char)ch : '?';
			i++;
			continue;
		}
		memcpy(out + o, s + i, need);
		o += need;
		i += need;
	}
	out[o] = '\0';
	return o;
}

static void add_json_text(struct evbuffer *b, const char *s)
{
	char clean[QSTATS_TEXT_MAX + 1];

	queries_utf8_clean(s, clean, sizeof(clean));
	evbuffer_add(b, "\"", 1);
	for (const char *p = clean; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			evbuffer_add_printf(b, "\\%c", *p);
		else if ((unsigned char)*p < 0x20)
			evbuffer_add_printf(b, "\\u%04x", (unsigned char)*p);
		else
			evbuffer_add(b, p, 1);
	}
	evbuffer_add(b, "\"", 1);
}

/* ---- the stats log ---- */

void queries_log_top(struct worker *w, struct pool *p, struct evbuffer *text, struct evbuffer *json)
{
	const struct qstats *qs = w->qstats;
	const struct qstats_entry *top[QUERIES_LOG_TOP];
	size_t n = 0;

	if (qs == NULL || p->lat.qscope == 0)
		return;
	for (uint32_t i = 0; i < qs->count; i++) {
		const struct qstats_entry *e = &qs->entries[i];
		size_t k;

		if (e->tick_calls == 0 || e->scope != p->lat.qscope - 1)
			continue;
		/* Insertion into the few kept, busiest first. */
		if (n == QUERIES_LOG_TOP && e->tick_us <= top[n - 1]->tick_us)
			continue;
		if (n < QUERIES_LOG_TOP)
			n++;
		for (k = n - 1; k > 0 && top[k - 1]->tick_us < e->tick_us; k--)
			top[k] = top[k - 1];
		top[k] = e;
	}
	if (n == 0)
		return;
	evbuffer_add_printf(text, " top_queries=");
	evbuffer_add_printf(json, ",\"top_queries\":[");
	for (size_t k = 0; k < n; k++) {
		char text_z[QSTATS_TEXT_MAX + 1];

		evbuffer_add_printf(
		    text, "%s%016llx:%llu:%llu", k ? "," : "", (unsigned long long)top[k]->fp,
		    (unsigned long long)top[k]->tick_calls, (unsigned long long)top[k]->tick_us);
		evbuffer_add_printf(
		    json,
		    "%s{\"fingerprint\":\"%016llx\",\"type\":\"%s\",\"calls\":%llu,"
		    "\"total_us\":%llu,\"query\":",
		    k ? "," : "", (unsigned long long)top[k]->fp, query_type_name(top[k]->type),
		    (unsigned long long)top[k]->tick_calls, (unsigned long long)top[k]->tick_us);
		memcpy(text_z, top[k]->text, top[k]->text_len);
		text_z[top[k]->text_len] = '\0';
		add_json_text(json, text_z);
		evbuffer_add(json, "}", 1);
	}
	evbuffer_add(json, "]", 1);
}

void queries_tick_done(struct worker *w)
{
	struct qstats *qs = w->qstats;

	for (uint32_t i = 0; qs != NULL && i < qs->count; i++) {
		qs->entries[i].tick_calls = 0;
		qs->entries[i].tick_us = 0;
	}
}
