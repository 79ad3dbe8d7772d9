/*
 * Query insights; see qstats.h.  The hot path per statement: one copy of its
 * text (or the slow log's copy), one normalisation and one hash for a Query
 * or Parse, a hash lookup for a Bind, a ring push when it is sent and a pop
 * when it finishes.  Nothing is allocated per message: the text goes through
 * the worker's scratch buffer, and the tables grow only up to query_stats_max.
 */
#include "pool/qstats.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/hash.h"
#include "config/config.h"
#include "pool/client.h"
#include "pool/pool.h"
#include "pool/prepared.h"
#include "pool/server.h"
#include "pool/slowlog.h"
#include "pool/worker.h"
#include "proto/frame.h"
#include "proto/msgview.h"

static const char *const type_names[QUERY_TYPES] = {"select", "insert",  "update", "delete",
                                                    "ddl",    "utility", "other"};

const char *query_type_name(enum query_type t)
{
	return t < QUERY_TYPES ? type_names[t] : "other";
}

/* ---- normalising and classifying ---- */

/* End of the "quoted identifier" at i ("" inside stands for a quote). */
static size_t ident_end(const char *s, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (s[i] != '"')
			continue;
		if (i + 1 < len && s[i + 1] == '"')
			i++;
		else
			return i + 1;
	}
	return len;
}

size_t qstats_normalise(const char *sql, size_t len, char *out)
{
	return slowlog_normalise(sql, len, out);
}

/* The word at *pos (letters and underscores), lower-cased into buf; skips what precedes it. */
static size_t next_word(const char *s, size_t len, size_t *pos, char *buf, size_t cap)
{
	size_t i = *pos, n = 0;

	while (i < len && !isalpha((unsigned char)s[i]) && s[i] != '(' && s[i] != ')' &&
	       s[i] != '"')
		i++;
	while (i < len && (isalnum((unsigned char)s[i]) || s[i] == '_')) {
		if (n + 1 < cap)
			buf[n++] = (char)tolower((unsigned char)s[i]);
		i++;
	}
	buf[n] = '\0';
	*pos = i;
	return n;
}

static bool word_in(const char *w, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(w, *list) == 0)
			return true;
	return false;
}

static enum query_type type_of_word(const char *w)
{
	static const char *const ddl[] = {"create", "alter",  "drop",     "truncate", "comment",
	                                  "grant",  "revoke", "security", "import",   NULL};
	static const char *const utility[] = {
	    "begin",   "start",   "commit",   "end",        "rollback", "abort",   "savepoint",
	    "release", "prepare", "execute",  "deallocate", "set",      "reset",   "show",
	    "discard", "listen",  "unlisten", "notify",     "copy",     "vacuum",  "analyze",
	    "analyse", "explain", "lock",     "checkpoint", "reindex",  "cluster", "fetch",
	    "move",    "close",   "declare",  "load",       "refresh",  NULL};

	if (strcmp(w, "select") == 0 || strcmp(w, "values") == 0 || strcmp(w, "table") == 0)
		return QUERY_SELECT;
	if (strcmp(w, "insert") == 0)
		return QUERY_INSERT;
	if (strcmp(w, "update") == 0)
		return QUERY_UPDATE;
	if (strcmp(w, "delete") == 0)
		return QUERY_DELETE;
	if (word_in(w, ddl))
		return QUERY_DDL;
	if (word_in(w, utility))
		return QUERY_UTILITY;
	return QUERY_OTHER;
}

/* After WITH: the first data-modifying or SELECT word outside the CTEs' parentheses. */
static enum query_type type_after_with(const char *s, size_t len, size_t i)
{
	int depth = 0;
	char w[16];

	while (i < len) {
		if (s[i] == '(' || s[i] == ')') {
			depth += s[i] == '(' ? 1 : -1;
			i++;
		} else if (s[i] == '"') {
			i = ident_end(s, len, i);
		} else if (next_word(s, len, &i, w, sizeof(w)) > 0 && depth == 0) {
			enum query_type t = type_of_word(w);

			if (t <= QUERY_DELETE)
				return t;
		} else if (i < len && !isalpha((unsigned char)s[i]) && s[i] != '(' && s[i] != ')' &&
		           s[i] != '"') {
			i++;
		}
	}
	return QUERY_SELECT;
}

enum query_type qstats_classify(const char *text, size_t len)
{
	size_t i = 0;
	char w[16];

	while (i < len && (text[i] == '(' || text[i] == ' '))
		i++;
	if (next_word(text, len, &i, w, sizeof(w)) == 0)
		return QUERY_OTHER;
	if (strcmp(w, "with") == 0)
		return type_after_with(text, len, i);
	return type_of_word(w);
}

uint64_t qstats_hash(const char *text, size_t len)
{
	uint64_t h = hash_fnv1a(text, len, 0);

	return h != 0 ? h : 1;
}

uint64_t qstats_percentile(const uint32_t *hist, uint64_t count, double q)
{
	uint64_t rank, seen = 0;

	if (count == 0)
		return 0;
	rank = (uint64_t)(q * (double)count + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > count)
		rank = count;
	for (unsigned g = 0; g < QSTATS_HIST_BUCKETS; g++) {
		seen += hist[g];
		if (seen >= rank) {
			uint64_t lo = histogram_bucket_lower(g << QSTATS_HIST_SHIFT);
			uint64_t hi = histogram_bucket_upper(((g + 1) << QSTATS_HIST_SHIFT) - 1);

			return lo + (hi - lo) / 2;
		}
	}
	return 0;
}

/* ---- the table ---- */

static struct qstats *qstats_new(int max)
{
	struct qstats *qs = calloc(1, sizeof(*qs));
	uint32_t nb = 64;

	if (qs == NULL)
		return NULL;
	qs->max = max > 0 ? (uint32_t)max : 1;
	while (nb < qs->max)
		nb *= 2;
	qs->nbuckets = nb;
	hash_key_draw(&qs->key);
	qs->buckets = malloc(nb * sizeof(*qs->buckets));
	qs->heap = malloc(qs->max * sizeof(*qs->heap));
	qs->scratch = malloc(2 * QSTATS_SCAN_MAX);
	qs->scopes = calloc(16, sizeof(*qs->scopes));
	qs->scopes_cap = 16;
	qs->shapes = calloc(1u << QSTATS_SHAPE_BITS, sizeof(*qs->shapes));
	if (qs->buckets == NULL || qs->heap == NULL || qs->scratch == NULL || qs->scopes == NULL ||
	    qs->shapes == NULL) {
		qstats_free(qs);
		return NULL;
	}
	memset(qs->buckets, 0xff, nb * sizeof(*qs->buckets));
	/* Scope 0 takes everyone once QSTATS_SCOPES_MAX triples are known. */
	qs->scopes[0].database = strdup("*");
	qs->scopes[0].user = strdup("*");
	qs->scopes[0].tenant = strdup("*");
	qs->nscopes = 1;
	if (qs->scopes[0].database == NULL || qs->scopes[0].user == NULL ||
	    qs->scopes[0].tenant == NULL) {
		qstats_free(qs);
		return NULL;
	}
	return qs;
}

void qstats_free(struct qstats *qs)
{
	if (qs == NULL)
		return;
	for (uint32_t i = 0; i < qs->nscopes; i++) {
		free(qs->scopes[i].database);
		free(qs->scopes[i].user);
		free(qs->scopes[i].tenant);
	}
	free(qs->scopes);
	free(qs->entries);
	free(qs->buckets);
	free(qs->heap);
	free(qs->scratch);
	free(qs->shapes);
	free(qs);
}

static struct qstats *qstats_get(struct worker *w)
{
	if (w->qstats == NULL)
		w->qstats = qstats_new(w->cfg->query_stats_max);
	return w->qstats;
}

static bool scope_is(const struct qstats_scope *sc, const struct pool *p)
{
	return strcmp(sc->database, p->dbname) == 0 && strcmp(sc->user, p->user) == 0 &&
	       strcmp(sc->tenant, pool_tenant(p)) == 0;
}

static uint16_t add_scope(struct qstats *qs, const struct pool *p)
{
	struct qstats_scope *sc;

	if (qs->nscopes >= QSTATS_SCOPES_MAX)
		return 0;
	if (qs->nscopes == qs->scopes_cap) {
		sc = realloc(qs->scopes, 2 * qs->scopes_cap * sizeof(*sc));
		if (sc == NULL)
			return 0;
		qs->scopes = sc;
		qs->scopes_cap *= 2;
	}
	sc = &qs->scopes[qs->nscopes];
	memset(sc, 0, sizeof(*sc));
	sc->database = strdup(p->dbname);
	sc->user = strdup(p->user);
	sc->tenant = strdup(pool_tenant(p));
	if (sc->database == NULL || sc->user == NULL || sc->tenant == NULL) {
		free(sc->database);
		free(sc->user);
		free(sc->tenant);
		return 0;
	}
	return (uint16_t)qs->nscopes++;
}

/* The pool's scope, found once and remembered in the pool. */
static uint16_t scope_of(struct qstats *qs, struct pool *p)
{
	uint16_t idx = 0;

	if (p->lat.qscope != 0)
		return (uint16_t)(p->lat.qscope - 1);
	for (uint32_t i = 1; i < qs->nscopes && idx == 0; i++)
		if (scope_is(&qs->scopes[i], p))
			idx = (uint16_t)i;
	if (idx == 0)
		idx = add_scope(qs, p);
	p->lat.qscope = (uint32_t)idx + 1;
	return idx;
}

/* Keyed: fingerprints are unkeyed FNV-1a of client text, whose low bits a client can aim. */
static uint32_t bucket_of(const struct qstats *qs, uint64_t fp, uint16_t scope)
{
	uint64_t k[2] = {fp, scope};

	return (uint32_t)hash_keyed(&qs->key, k, sizeof(k)) & (qs->nbuckets - 1);
}

/*
 * An entry is unique per (fingerprint, scope), so a slot in use that holds this
 * pair is the answer whatever put it in `recent`.  A text aimed at the low bits
 * only makes the hint miss: the keyed buckets still decide.
 */
static int32_t find(struct qstats *qs, uint64_t fp, uint16_t scope)
{
	uint32_t *hint = &qs->recent[fp & (QSTATS_RECENT - 1)];

	if (*hint < qs->count && qs->entries[*hint].fp == fp && qs->entries[*hint].scope == scope)
		return (int32_t)*hint;
	for (int32_t i = qs->buckets[bucket_of(qs, fp, scope)]; i >= 0; i = qs->entries[i].next)
		if (qs->entries[i].fp == fp && qs->entries[i].scope == scope) {
			*hint = (uint32_t)i;
			return i;
		}
	return -1;
}

static void unhash(struct qstats *qs, uint32_t slot)
{
	struct qstats_entry *e = &qs->entries[slot];
	int32_t *link = &qs->buckets[bucket_of(qs, e->fp, e->scope)];

	while (*link >= 0 && (uint32_t)*link != slot)
		link = &qs->entries[*link].next;
	if (*link >= 0)
		*link = e->next;
}

static void heap_swap(struct qstats *qs, uint32_t a, uint32_t b)
{
	uint32_t sa = qs->heap[a], sb = qs->heap[b];

	qs->heap[a] = sb;
	qs->heap[b] = sa;
	qs->entries[sb].heap = a;
	qs->entries[sa].heap = b;
}

static uint64_t heap_weight(const struct qstats *qs, uint32_t pos)
{
	return qs->entries[qs->heap[pos]].weight;
}

static void heap_up(struct qstats *qs, uint32_t pos)
{
	while (pos > 0 && heap_weight(qs, (pos - 1) / 2) > heap_weight(qs, pos)) {
		heap_swap(qs, pos, (pos - 1) / 2);
		pos = (pos - 1) / 2;
	}
}

static void heap_down(struct qstats *qs, uint32_t pos)
{
	for (;;) {
		uint32_t l = 2 * pos + 1, r = l + 1, least = pos;

		if (l < qs->count && heap_weight(qs, l) < heap_weight(qs, least))
			least = l;
		if (r < qs->count && heap_weight(qs, r) < heap_weight(qs, least))
			least = r;
		if (least == pos)
			return;
		heap_swap(qs, pos, least);
		pos = least;
	}
}

static int grow(struct qstats *qs)
{
	uint32_t cap = qs->cap ? qs->cap * 2 : 64;
	struct qstats_entry *e;

	if (cap > qs->max)
		cap = qs->max;
	e = realloc(qs->entries, cap * sizeof(*e));
	if (e == NULL)
		return -1;
	memset(e + qs->cap, 0, (cap - qs->cap) * sizeof(*e));
	qs->entries = e;
	qs->cap = cap;
	return 0;
}

void qstats_figures_add(struct qstats_figures *dst, const struct qstats_figures *src)
{
	if (src->calls == 0)
		return;
	dst->calls += src->calls;
	dst->errors += src->errors;
	dst->rows += src->rows;
	dst->total_us += src->total_us;
	if (dst->first_us == 0 || (src->first_us != 0 && src->first_us < dst->first_us))
		dst->first_us = src->first_us;
	if (src->last_us > dst->last_us)
		dst->last_us = src->last_us;
	for (unsigned g = 0; g < QSTATS_HIST_BUCKETS; g++)
		dst->hist[g] += src->hist[g];
}

/* A slot for a new entry: a free one, or the lightest, whose figures go to "other". */
static int32_t take_slot(struct qstats *qs)
{
	uint32_t slot;
	struct qstats_entry *e;

	if (qs->count < qs->max) {
		if (qs->count == qs->cap && grow(qs) < 0)
			return -1;
		slot = qs->count++;
		e = &qs->entries[slot];
		e->weight = 0;
		e->heap = slot;
		qs->heap[slot] = slot;
		heap_up(qs, slot);
		return (int32_t)slot;
	}
	/* Space-saving: the newcomer inherits the weight of the one it replaces. */
	slot = qs->heap[0];
	e = &qs->entries[slot];
	qstats_figures_add(&qs->scopes[e->scope].other, &e->fig);
	unhash(qs, slot);
	qs->evictions++;
	return (int32_t)slot;
}

/* Cut at most `max` bytes of text on a UTF-8 character boundary. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	return max;
}

static int32_t insert(struct qstats *qs, uint64_t fp, uint16_t scope, const char *text, size_t len)
{
	int32_t slot = take_slot(qs);
	struct qstats_entry *e;
	int32_t *b;

	if (slot < 0)
		return -1;
	e = &qs->entries[slot];
	if (++e->gen == 0)
		e->gen = 1;
	e->fp = fp;
	e->scope = scope;
	e->type = (uint8_t)qstats_classify(text, len);
	e->text_len = (uint8_t)utf8_cut(text, len, QSTATS_TEXT_MAX);
	memcpy(e->text, text, e->text_len);
	memset(&e->fig, 0, sizeof(e->fig));
	e->tick_calls = 0;
	e->tick_us = 0;
	b = &qs->buckets[bucket_of(qs, fp, scope)];
	e->next = *b;
	*b = slot;
	return slot;
}

static struct qstats_ref ref_of(const struct qstats *qs, int32_t slot, uint64_t fp)
{
	struct qstats_ref r = {.fp = fp};

	if (slot >= 0) {
		r.slot = (uint32_t)slot;
		r.gen = qs->entries[slot].gen;
	}
	return r;
}

/*
 * The set of shapes for a text, by its first 16 bytes (the end often holds a
 * literal); -1 for a text too long to keep.  Two ways per set, so that two
 * statements that alternate do not evict each other when their first bytes
 * pick the same set (pgbench's three UPDATEs differ only in the 16th byte).
 * Texts aimed at one set only make their shapes miss.
 */
static int shape_set(const char *sql, size_t len)
{
	const uint64_t mix = 0x9e3779b97f4a7c15ull;
	uint64_t a = 0, b = 0;

	if (len > QSTATS_SHAPE_TEXT)
		return -1;
	memcpy(&a, sql, len < 8 ? len : 8);
	if (len > 8)
		memcpy(&b, sql + 8, len < 16 ? len - 8 : 8);
	return (int)(((a ^ (b * mix)) * mix) >> (64 - QSTATS_SHAPE_BITS));
}

/*
 * The way of `set` that holds the shape of a text, or else the one used less
 * recently, emptied for the text's shape.
 */
static struct qstats_shape *shape_way(struct qstats *qs, int set, const char *sql, size_t len)
{
	struct qstats_shape *ways = qs->shapes[set];

	for (uint8_t way = 0; way < 2; way++)
		if (ways[way].fp != 0 &&
		    slowlog_same_shape(ways[way].text, ways[way].len, &ways[way].sp, sql, len)) {
			qs->shape_mru[set] = way;
			return &ways[way];
		}
	qs->shape_mru[set] ^= 1;
	ways[qs->shape_mru[set]].fp = 0;
	return &ways[qs->shape_mru[set]];
}

/* Text to an entry, made if new; a text of a known shape is not normalised again. */
static struct qstats_ref lookup(struct qstats *qs, uint16_t scope, const char *sql, size_t len)
{
	char *norm = qs->scratch + QSTATS_SCAN_MAX;
	struct qstats_shape *sh = NULL;
	uint64_t fp;
	int32_t slot;
	size_t n;
	int set;

	if (len > QSTATS_SCAN_MAX)
		len = QSTATS_SCAN_MAX;
	set = shape_set(sql, len);
	if (set >= 0) {
		sh = shape_way(qs, set, sql, len);
		/* Not found: evicted since, or another scope's; the way is made again. */
		if (sh->fp != 0 && (slot = find(qs, sh->fp, scope)) >= 0)
			return ref_of(qs, slot, sh->fp);
	}
	n = slowlog_normalise_spans(sql, len, norm, sh != NULL ? &sh->sp : NULL);
	fp = qstats_hash(norm, n);
	if (sh != NULL) {
		sh->fp = sh->sp.usable ? fp : 0;
		sh->len = (uint32_t)len;
		memcpy(sh->text, sql, len);
	}
	slot = find(qs, fp, scope);
	if (slot < 0)
		slot = insert(qs, fp, scope, norm, n);
	return ref_of(qs, slot, fp);
}

static bool ref_valid(const struct qstats *qs, struct qstats_ref r)
{
	return r.gen != 0 && r.slot < qs->count && qs->entries[r.slot].gen == r.gen;
}

/* ---- hooks ---- */

/*
 * The text of a Query or Parse: the slow log's copy when it made one of the
 * whole text, else the relay's view of the message when that holds it whole,
 * else a copy in the worker's scratch.
 */
static bool statement_text(struct client *c, struct qstats *qs, struct evbuffer *in,
                           const struct frame *f, const struct msgview *v, const char **text,
                           size_t *len)
{
	const struct query_capture *qc = c->capture;
	size_t n, skip = FRAME_HEADER_LEN;
	const char *nul;

	if (c->w->cfg->slow_query_threshold_us > 0 && qc != NULL && qc->len > 0 && !qc->truncated) {
		*text = qc->text;
		*len = qc->len;
		return true;
	}
	n = frame_total(f) < QSTATS_SCAN_MAX ? frame_total(f) : QSTATS_SCAN_MAX;
	if (v->whole && v->text != NULL) {
		/* As far as the scratch copy of the first QSTATS_SCAN_MAX bytes would reach. */
		skip = (size_t)(v->text - v->msg);
		if (n < skip)
			return false;
		nul = memchr(v->text, '\0', n - skip);
		*text = v->text;
		*len = nul != NULL ? (size_t)(nul - v->text) : n - skip;
		return true;
	}
	n = (size_t)evbuffer_copyout(in, qs->scratch, n);
	if (n <= FRAME_HEADER_LEN)
		return false;
	if (f->type == 'P') {
		nul = memchr(qs->scratch + skip, '\0', n - skip);
		if (nul == NULL)
			return false;
		skip = (size_t)(nul - qs->scratch) + 1;
	}
	nul = memchr(qs->scratch + skip, '\0', n - skip);
	*text = qs->scratch + skip;
	*len = nul != NULL ? (size_t)(nul - qs->scratch) - skip : n - skip;
	return true;
}

/*
 * A Bind of the unnamed statement runs what the last unnamed Parse prepared.
 * Read from the relay's view when it has the Bind whole: the Bind may not be
 * at the head of `in` then.
 */
static void bind_message(struct client *c, struct evbuffer *in, const struct frame *f,
                         const struct msgview *v)
{
	uint8_t copy[FRAME_HEADER_LEN + 64];
	const uint8_t *head = copy, *portal_end;
	size_t n = frame_total(f) < sizeof(copy) ? frame_total(f) : sizeof(copy);

	/* Only a Bind after a named Parse needs a look at which statement it binds. */
	if (c->qs_next.slot == c->qs_unnamed.slot && c->qs_next.gen == c->qs_unnamed.gen)
		return;
	if (v->whole)
		head = (const uint8_t *)v->msg;
	else
		n = (size_t)evbuffer_copyout(in, copy, n);
	if (n <= FRAME_HEADER_LEN)
		return;
	portal_end = memchr(head + FRAME_HEADER_LEN, 0, n - FRAME_HEADER_LEN);
	if (portal_end != NULL && portal_end + 1 < head + n && portal_end[1] == '\0')
		c->qs_next = c->qs_unnamed;
}

void qstats_client_message(struct client *c, struct evbuffer *in, const struct frame *f,
                           const struct msgview *v)
{
	struct qstats *qs;
	const char *text;
	size_t len;
	uint8_t head[FRAME_HEADER_LEN + 1];
	bool unnamed;

	if (f->type == 'B') {
		bind_message(c, in, f, v);
		return;
	}
	if ((f->type != 'Q' && f->type != 'P') || c->pool == NULL ||
	    (qs = qstats_get(c->w)) == NULL)
		return;
	c->qs_next = (struct qstats_ref){0};
	if (!statement_text(c, qs, in, f, v, &text, &len))
		return;
	c->qs_next = lookup(qs, scope_of(qs, c->pool), text, len);
	if (f->type != 'P')
		unnamed = false;
	else if (v->have > FRAME_HEADER_LEN)
		unnamed = v->msg[FRAME_HEADER_LEN] == '\0';
	else
		unnamed = evbuffer_copyout(in, head, sizeof(head)) == sizeof(head) &&
		          head[FRAME_HEADER_LEN] == '\0';
	if (unnamed)
		c->qs_unnamed = c->qs_next;
}

void qstats_bind(struct client *c, struct pstmt *ps)
{
	struct qstats *qs = qstats_get(c->w);
	uint16_t scope;
	int32_t slot;

	if (qs == NULL || c->pool == NULL)
		return;
	scope = scope_of(qs, c->pool);
	if (ps->qfp != 0 && (slot = find(qs, ps->qfp, scope)) >= 0) {
		c->qs_next = ref_of(qs, slot, ps->qfp);
		return;
	}
	/* First Bind on this worker, or the entry was evicted: the text is in the statement. */
	c->qs_next =
	    lookup(qs, scope, (const char *)ps->body, strnlen((const char *)ps->body, ps->len));
	ps->qfp = c->qs_next.fp;
}

void qstats_sent(struct server *s, struct client *c, uint8_t type)
{
	struct qstats *qs = c->w->qstats;
	struct qstats_pending p = {.ref = c->qs_next, .start_us = worker_now_us(s->w)};
	struct qstats_pending *slot;

	/* A server skipping to Sync after an error never runs it (requests_track). */
	if (qs == NULL || s->requests.skip_to_sync)
		return;
	if (ref_valid(qs, p.ref)) {
		struct qstats_entry *e = &qs->entries[p.ref.slot];

		e->weight++;
		heap_down(qs, e->heap);
		p.scope = e->scope;
		p.type = e->type;
	} else {
		p.ref.gen = 0;
		p.scope = scope_of(qs, s->pool);
		p.type = QUERY_OTHER;
	}
	slot = ring_push_slot(&s->qs.pending);
	if (slot != NULL) /* out of memory: this statement goes uncounted */
		*slot = p;
}

void qstats_error(struct server *s)
{
	struct qstats_pending *p = ring_peek(&s->qs.pending);

	if (p != NULL)
		p->failed = true;
}

void qstats_tag(struct server *s, const char *tag)
{
	struct qstats_pending *p = ring_peek(&s->qs.pending);
	const char *num = strrchr(tag, ' ');
	uint64_t rows = 0;

	if (p == NULL || num == NULL || num[1] == '\0')
		return;
	for (num++; *num != '\0'; num++) {
		if (!isdigit((unsigned char)*num))
			return;
		rows = rows * 10 + (uint64_t)(*num - '0');
	}
	p->rows += rows;
}

static void add_call(struct qstats_figures *fig, const struct qstats_pending *p, int64_t took,
                     int64_t now)
{
	fig->calls++;
	fig->errors += p->failed;
	fig->rows += p->rows;
	fig->total_us += (uint64_t)took;
	if (fig->first_us == 0)
		fig->first_us = now;
	fig->last_us = now;
	fig->hist[histogram_index((uint64_t)took) >> QSTATS_HIST_SHIFT]++;
}

void qstats_done(struct server *s, bool failed)
{
	struct qstats *qs = s->w->qstats;
	const struct qstats_pending *head = ring_peek(&s->qs.pending);
	struct qstats_pending p;
	struct qstats_type *t;
	int64_t now, from, took;

	if (head == NULL)
		return;
	p = *head;
	ring_drop_head(&s->qs.pending);
	/* Skipped after an earlier statement's error: it never ran. */
	if (failed && !p.failed)
		return;
	now = worker_now_us(s->w);
	from = p.start_us > s->qs.last_done_us ? p.start_us : s->qs.last_done_us;
	took = now > from ? now - from : 0;
	s->qs.last_done_us = now;
	if (qs == NULL || p.scope >= qs->nscopes)
		return;
	if (ref_valid(qs, p.ref)) {
		struct qstats_entry *e = &qs->entries[p.ref.slot];

		add_call(&e->fig, &p, took, now);
		e->tick_calls++;
		e->tick_us += (uint64_t)took;
	} else {
		add_call(&qs->scopes[p.scope].other, &p, took, now);
	}
	t = &qs->types[p.type < QUERY_TYPES ? p.type : QUERY_OTHER];
	histogram_record(&t->h, (uint64_t)took);
	t->errors += p.failed;
	t->rows += p.rows;
}

void qstats_reset(struct worker *w)
{
	struct qstats *qs = w->qstats;

	if (qs == NULL)
		return;
	/* Refs that clients and servers hold to the old entries stop matching. */
	for (uint32_t i = 0; i < qs->count; i++)
		if (++qs->entries[i].gen == 0)
			qs->entries[i].gen = 1;
	qs->count = 0;
	memset(qs->buckets, 0xff, qs->nbuckets * sizeof(*qs->buckets));
	for (uint32_t i = 0; i < qs->nscopes; i++)
		memset(&qs->scopes[i].other, 0, sizeof(qs->scopes[i].other));
	memset(qs->types, 0, sizeof(qs->types));
	qs->evictions = 0;
}

void qstats_server_init(struct qstats_server *qs)
{
	ring_init(&qs->pending, sizeof(struct qstats_pending));
	qs->last_done_us = 0;
}

void qstats_server_fini(struct qstats_server *qs)
{
	ring_fini(&qs->pending);
}
