/*
 * Named prepared statements in transaction mode; see prepared.h.
 */
#include "pool/prepared.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/hash.h"
#include "pool/client.h"
#include "config/config.h"
#include "pool/pool.h"
#include "pool/qstats.h"
#include "proto/build.h"
#include "proto/frame.h"
#include "proto/msgview.h"
#include "proto/sqlscan.h"
#include "proto/sqlstate.h"
#include "pool/relay.h"
#include "pool/requests.h"
#include "pool/server.h"
#include "pool/worker.h"

#define PREP_NAME_MAX     1024                    /* longest client statement name accepted */
#define SERVER_NAME_MAX   48                      /* "sluice_<id>_<generation>" */
#define DEALLOCATE_PEEK   512                     /* Query bytes inspected for DEALLOCATE name */
#define VERB_PEEK         64                      /* Query bytes read for its first keyword */
#define SQL_TEXT_MAX      (1024 * 1024)           /* longest SQL PREPARE / EXECUTE tracked */
#define QUOTED_NAME_MAX   (2 * PREP_NAME_MAX + 3) /* a client name quoted, with its NUL */
#define DUPLICATE_SQL_MAX (PREP_NAME_MAX + 256)   /* the DO block that raises 42P05 */
/* A Bind's bytes read for its portal and statement names. */
#define BIND_PEEK (FRAME_HEADER_LEN + 2 * (PREP_NAME_MAX + 1))
/* The statement and portal that carry the SQL sluice sends in extended messages. */
#define SQL_CARRIER "sluice_sql"
/* A statement no server has: binding it fails, and that failure is what a stale client sees. */
#define STALE_NAME "sluice_stale_result_type"
/* Statements whose stale plans every worker remembers; the oldest is forgotten past it. */
#define STALE_PLANS_MAX 1024

static void server_name(const struct pstmt *ps, uint32_t generation, char out[SERVER_NAME_MAX])
{
	snprintf(out, SERVER_NAME_MAX, "sluice_%llu_%u", (unsigned long long)ps->id, generation);
}

/* What the statement `e` is called on its server. */
static void entry_name(const struct server_stmt *e, char out[SERVER_NAME_MAX])
{
	snprintf(out, SERVER_NAME_MAX, "sluice_%llu_%u", (unsigned long long)e->name_id,
	         e->generation);
}

/*
 * Whether other workers can know the statement by its body: SQL PREPAREd
 * statements, and texts that EXECUTE one, name statements of this worker.
 */
static bool is_shared(const struct pstmt *ps)
{
	return !ps->sql && ps->dep == NULL;
}

/* Registry --------------------------------------------------------------- */

static void pstmt_unref(struct pstmt_registry *reg, struct pstmt *ps);

/* Unlink and free an entry nothing refers to any more. */
static void pstmt_forget(struct pstmt_registry *reg, struct pstmt *ps)
{
	struct pstmt **slot;

	for (slot = &reg->buckets[ps->hash & (reg->size - 1)]; *slot != NULL;
	     slot = &(*slot)->next) {
		if (*slot == ps) {
			*slot = ps->next;
			break;
		}
	}
	reg->count--;
	if (ps->dep != NULL)
		pstmt_unref(reg, ps->dep);
	free(ps->body);
	free(ps);
}

static void pstmt_unref(struct pstmt_registry *reg, struct pstmt *ps)
{
	if (--ps->refs <= 0)
		pstmt_forget(reg, ps);
}

static struct pstmt *registry_find(const struct pstmt_registry *reg, uint64_t hash,
                                   const uint8_t *body, size_t len, bool sql,
                                   const struct pstmt *dep)
{
	if (reg->size == 0)
		return NULL;
	for (struct pstmt *ps = reg->buckets[hash & (reg->size - 1)]; ps != NULL; ps = ps->next)
		if (ps->hash == hash && ps->len == len && ps->sql == sql && ps->dep == dep &&
		    memcmp(ps->body, body, len) == 0)
			return ps;
	return NULL;
}

static int registry_grow(struct pstmt_registry *reg)
{
	uint32_t size = reg->size ? reg->size * 2 : 256;
	struct pstmt **buckets = calloc(size, sizeof(*buckets));

	if (buckets == NULL)
		return -1;
	for (uint32_t i = 0; i < reg->size; i++) {
		struct pstmt *ps = reg->buckets[i];

		while (ps != NULL) {
			struct pstmt *next = ps->next;

			ps->next = buckets[ps->hash & (size - 1)];
			buckets[ps->hash & (size - 1)] = ps;
			ps = next;
		}
	}
	free(reg->buckets);
	reg->buckets = buckets;
	reg->size = size;
	return 0;
}

/* Takes ownership of body. */
static struct pstmt *registry_add(struct pstmt_registry *reg, uint64_t hash, uint8_t *body,
                                  size_t len)
{
	struct pstmt *ps;

	if (reg->count >= reg->size && registry_grow(reg) < 0)
		return NULL;
	ps = calloc(1, sizeof(*ps));
	if (ps == NULL)
		return NULL;
	ps->id = atomic_fetch_add_explicit(&reg->shared->next_id, 1, memory_order_relaxed);
	ps->reg = reg;
	ps->hash = hash;
	ps->body = body;
	ps->len = len;
	ps->session_state =
	    sqlscan_may_change_session((const char *)body, strnlen((char *)body, len));
	ps->next = reg->buckets[hash & (reg->size - 1)];
	reg->buckets[hash & (reg->size - 1)] = ps;
	reg->count++;
	return ps;
}

/*
 * The registry's statement for `body` (taken: kept or freed), added if new.
 * `dep` is the SQL statement the text EXECUTEs, named at body[ref_at, +ref_len).
 */
static struct pstmt *registry_intern(struct pstmt_registry *reg, uint8_t *body, size_t len,
                                     bool sql, struct pstmt *dep, size_t ref_at, size_t ref_len)
{
	struct pstmt *ps;
	uint64_t hash;

	hash = hash_keyed(&reg->shared->key, body, len);
	if ((ps = registry_find(reg, hash, body, len, sql, dep)) != NULL) {
		free(body);
		return ps;
	}
	if ((ps = registry_add(reg, hash, body, len)) == NULL) {
		free(body);
		return NULL;
	}
	ps->sql = sql;
	ps->ref_at = (uint32_t)ref_at;
	ps->ref_len = (uint32_t)ref_len;
	if (dep != NULL) {
		dep->refs++;
		ps->dep = dep;
	}
	/* New here, but its plan may have gone stale on another worker: its clients start after. */
	if (is_shared(ps) && stale_plans_epoch(&reg->shared->stale) != 0)
		ps->generation = stale_plans_generation(&reg->shared->stale, hash);
	return ps;
}

int prepared_shared_init(struct pstmt_shared *shared)
{
	hash_key_draw(&shared->key);
	atomic_init(&shared->next_id, 1);
	return stale_plans_init(&shared->stale, STALE_PLANS_MAX);
}

void prepared_shared_fini(struct pstmt_shared *shared)
{
	stale_plans_fini(&shared->stale);
}

void prepared_registry_init(struct pstmt_registry *reg, struct pstmt_shared *shared)
{
	memset(reg, 0, sizeof(*reg));
	reg->shared = shared;
}

void prepared_registry_fini(struct pstmt_registry *reg)
{
	for (uint32_t i = 0; i < reg->size; i++) {
		struct pstmt *ps = reg->buckets[i];

		while (ps != NULL) {
			struct pstmt *next = ps->next;

			free(ps->body);
			free(ps);
			ps = next;
		}
	}
	free(reg->buckets);
	prepared_registry_init(reg, reg->shared);
}

/* Client names ------------------------------------------------------------ */

static uint64_t name_hash(const struct stmt_map *map, const char *name)
{
	return hash_keyed(map->key, name, strlen(name));
}

static uint32_t name_bucket(const struct stmt_map *map, const char *name)
{
	return (uint32_t)name_hash(map, name) & (map->size - 1);
}

/*
 * The client's Parse or PREPARE of `name` went to the server: its name is
 * remembered (as a hash) until the reply, which forgets that name alone if
 * the statement was not made.
 */
static void pending_name(struct server *s, const struct client *c, const char *name)
{
	uint64_t h = name_hash(c->stmts, name);

	ring_push(&s->stmts.names, &h);
}

static struct client_stmt *map_find(const struct stmt_map *map, const char *name)
{
	if (map == NULL || map->size == 0)
		return NULL;
	for (struct client_stmt *cs = map->buckets[name_bucket(map, name)]; cs != NULL;
	     cs = cs->next)
		if (strcmp(cs->name, name) == 0)
			return cs;
	return NULL;
}

static int map_grow(struct stmt_map *map)
{
	struct stmt_map bigger = {.size = map->size ? map->size * 2 : 16, .key = map->key};

	bigger.buckets = calloc(bigger.size, sizeof(*bigger.buckets));
	if (bigger.buckets == NULL)
		return -1;
	for (uint32_t i = 0; i < map->size; i++) {
		struct client_stmt *cs = map->buckets[i];

		while (cs != NULL) {
			struct client_stmt *next = cs->next;
			uint32_t b = name_bucket(&bigger, cs->name);

			cs->next = bigger.buckets[b];
			bigger.buckets[b] = cs;
			cs = next;
		}
	}
	free(map->buckets);
	map->buckets = bigger.buckets;
	map->size = bigger.size;
	return 0;
}

static void action_unref(struct pstmt_registry *reg, struct sql_action *a)
{
	if (a == NULL || --a->refs > 0)
		return;
	if (a->ps != NULL)
		pstmt_unref(reg, a->ps);
	free(a);
}

static void client_stmt_free(struct pstmt_registry *reg, struct client_stmt *cs)
{
	pstmt_unref(reg, cs->ps);
	action_unref(reg, cs->action);
	free(cs->ref);
	free(cs->name);
	free(cs);
}

static void map_link(struct stmt_map *map, struct client_stmt *cs)
{
	uint32_t b = name_bucket(map, cs->name);

	cs->next = map->buckets[b];
	map->buckets[b] = cs;
	map->count++;
	map->bytes += cs->cost;
}

/* What naming `name` for ps (and action) holds, bodies counted whole even when shared. */
static size_t stmt_cost(const char *name, const struct pstmt *ps, const char *ref,
                        const struct sql_action *action)
{
	size_t cost = sizeof(struct client_stmt) + strlen(name) + 1 + ps->len;

	if (ref != NULL)
		cost += strlen(ref) + 1;
	if (action != NULL)
		cost +=
		    sizeof(*action) + strlen(action->name) + 1 + (action->ps ? action->ps->len : 0);
	return cost;
}

/*
 * Whether the client's names would hold more than max_prepared_size with
 * the name whose entry is `cs` (NULL: a new name) holding `cost` bytes:
 * each named statement keeps its text in the registry for as long as the
 * name lasts.
 */
static bool over_budget(const struct client *c, const struct client_stmt *cs, size_t cost)
{
	const struct stmt_map *map = c->stmts;
	size_t held = map != NULL ? map->bytes - (cs != NULL ? cs->cost : 0) : 0;

	return held + cost > (size_t)c->w->cfg->max_prepared_size;
}

/* map_put's failures: out of memory, or over max_prepared_size. */
#define MAP_NO_MEMORY (-1)
#define MAP_OVER      (-2)

static enum prep_result fail_over_budget(struct client *c)
{
	client_fail(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
	            "this client's prepared statements would hold more than "
	            "max_prepared_size (%lld bytes) in sluice",
	            (long long)c->w->cfg->max_prepared_size);
	return PREP_CLOSED;
}

/*
 * A failed map_put: the client is told why and closed; `ps`, if the failed
 * name was to be its first reference (registry_intern just made it), is freed.
 */
static enum prep_result fail_put(struct client *c, struct pstmt *ps, int rc)
{
	if (ps != NULL && ps->refs == 0)
		pstmt_forget(&c->w->prepared, ps);
	if (rc == MAP_OVER)
		return fail_over_budget(c);
	client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
	return PREP_CLOSED;
}

/* The client's map, made at its first name (NULL: out of memory). */
static struct stmt_map *own_map(struct client *c)
{
	if (c->stmts == NULL && (c->stmts = calloc(1, sizeof(*c->stmts))) != NULL)
		c->stmts->key = &c->w->prepared.shared->key;
	return c->stmts;
}

/*
 * Point the client's `name` at ps (replacing an older meaning); takes a
 * reference.  `ref`: the SQL statement name ps's text EXECUTEs, or NULL;
 * `action`: what its text does when sluice carries it out, or NULL (the
 * reference is taken too).
 */
static int map_put(struct client *c, const char *name, struct pstmt *ps, const char *ref,
                   struct sql_action *action)
{
	struct pstmt_registry *reg = &c->w->prepared;
	struct stmt_map *map = own_map(c);
	struct client_stmt *cs = map_find(map, name);
	size_t cost = stmt_cost(name, ps, ref, action);
	char *ref_copy = NULL;

	if (over_budget(c, cs, cost))
		return MAP_OVER;
	if (ref != NULL && (ref_copy = strdup(ref)) == NULL)
		return MAP_NO_MEMORY;
	if (action != NULL)
		action->refs++;
	if (cs != NULL) {
		ps->refs++;
		pstmt_unref(reg, cs->ps);
		cs->ps = ps;
		cs->generation = ps->generation;
		free(cs->ref);
		cs->ref = ref_copy;
		action_unref(reg, cs->action);
		cs->action = action;
		map->bytes += cost - cs->cost;
		cs->cost = (uint32_t)cost;
		return 0;
	}
	if (map == NULL || (map->count >= map->size && map_grow(map) < 0) ||
	    (cs = malloc(sizeof(*cs))) == NULL || (cs->name = strdup(name)) == NULL) {
		free(cs);
		free(ref_copy);
		action_unref(reg, action);
		return MAP_NO_MEMORY;
	}
	ps->refs++;
	cs->ps = ps;
	cs->generation = ps->generation;
	cs->cost = (uint32_t)cost;
	cs->ref = ref_copy;
	cs->action = action;
	map_link(map, cs);
	return 0;
}

/* Takes `name` out of the map; the caller owns what it returns. */
static struct client_stmt *map_unlink(struct stmt_map *map, const char *name)
{
	struct client_stmt **slot;

	if (map == NULL || map->size == 0)
		return NULL;
	for (slot = &map->buckets[name_bucket(map, name)]; *slot != NULL; slot = &(*slot)->next) {
		struct client_stmt *cs = *slot;

		if (strcmp(cs->name, name) == 0) {
			*slot = cs->next;
			map->count--;
			map->bytes -= cs->cost;
			return cs;
		}
	}
	return NULL;
}

static void map_remove(struct pstmt_registry *reg, struct stmt_map *map, const char *name)
{
	struct client_stmt *cs = map_unlink(map, name);

	if (cs != NULL)
		client_stmt_free(reg, cs);
}

static void map_clear(struct pstmt_registry *reg, struct stmt_map *map)
{
	if (map == NULL)
		return;
	for (uint32_t i = 0; i < map->size; i++) {
		struct client_stmt *cs = map->buckets[i];

		while (cs != NULL) {
			struct client_stmt *next = cs->next;

			client_stmt_free(reg, cs);
			cs = next;
		}
		map->buckets[i] = NULL;
	}
	map->count = 0;
	map->bytes = 0;
}

void prepared_map_free(struct stmt_map *map, struct pstmt_registry *reg)
{
	if (map == NULL)
		return;
	map_clear(reg, map);
	action_unref(reg, map->unnamed);
	action_unref(reg, map->portal);
	free(map->portal_name);
	free(map->buckets);
	free(map);
}

/* Server caches -------------------------------------------------------------- */

void prepared_cache_init(struct stmt_cache *cache)
{
	memset(cache, 0, sizeof(*cache));
	list_init(&cache->lru);
	ring_init(&cache->pending, sizeof(uint64_t));
	ring_init(&cache->names, sizeof(uint64_t));
	ring_init(&cache->bound, sizeof(uint64_t));
	ring_init(&cache->changes, sizeof(struct name_change *));
}

static struct server_stmt *cache_find(const struct stmt_cache *cache, uint64_t id)
{
	if (cache->size == 0)
		return NULL;
	for (struct server_stmt *e = cache->buckets[id & (cache->size - 1)]; e != NULL; e = e->next)
		if (e->ps->id == id)
			return e;
	return NULL;
}

/*
 * Adds `e` for `ps`, called sluice_<name_id>_<generation> on the server; the
 * caller puts it in the LRU.  The cache has room (cache_grow).
 */
static void cache_insert(struct stmt_cache *cache, struct server_stmt *e, struct pstmt *ps,
                         uint64_t name_id, uint32_t generation)
{
	ps->refs++;
	e->ps = ps;
	e->name_id = name_id;
	e->generation = generation;
	e->next = cache->buckets[ps->id & (cache->size - 1)];
	cache->buckets[ps->id & (cache->size - 1)] = e;
	cache->count++;
	cache->bytes += ps->len;
}

static void cache_remove(struct pstmt_registry *reg, struct stmt_cache *cache,
                         struct server_stmt *e)
{
	struct server_stmt **slot;

	for (slot = &cache->buckets[e->ps->id & (cache->size - 1)]; *slot != NULL;
	     slot = &(*slot)->next) {
		if (*slot == e) {
			*slot = e->next;
			break;
		}
	}
	list_del(&e->lru);
	cache->count--;
	cache->bytes -= e->ps->len;
	pstmt_unref(reg, e->ps);
	free(e);
}

static int cache_grow(struct stmt_cache *cache)
{
	uint32_t size = cache->size ? cache->size * 2 : 32;
	struct server_stmt **buckets = calloc(size, sizeof(*buckets));

	if (buckets == NULL)
		return -1;
	for (uint32_t i = 0; i < cache->size; i++) {
		struct server_stmt *e = cache->buckets[i];

		while (e != NULL) {
			struct server_stmt *next = e->next;

			e->next = buckets[e->ps->id & (size - 1)];
			buckets[e->ps->id & (size - 1)] = e;
			e = next;
		}
	}
	free(cache->buckets);
	cache->buckets = buckets;
	cache->size = size;
	return 0;
}

static void cache_clear(struct pstmt_registry *reg, struct stmt_cache *cache)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &cache->lru)
	{
		cache_remove(reg, cache, list_entry(pos, struct server_stmt, lru));
	}
}

static void change_free(struct pstmt_registry *reg, struct name_change *ch)
{
	if (ch->removed != NULL)
		client_stmt_free(reg, ch->removed);
	if (ch->added != NULL)
		pstmt_unref(reg, ch->added);
	free(ch);
}

static void carried_free(struct carried_stmt *carried, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		free(carried[i].body);
	free(carried);
}

void prepared_cache_fini(struct stmt_cache *cache, struct pstmt_registry *reg)
{
	struct name_change *ch;

	cache_clear(reg, cache);
	while (ring_pop(&cache->changes, &ch))
		change_free(reg, ch);
	ring_fini(&cache->changes);
	free(cache->buckets);
	ring_fini(&cache->pending);
	ring_fini(&cache->names);
	ring_fini(&cache->bound);
	carried_free(cache->carried, cache->ncarried);
	prepared_cache_init(cache);
}

/* Copies what the entry at `pos` is into `out`; false if it cannot travel. */
static bool carry(const struct list_node *pos, struct carried_stmt *out)
{
	const struct server_stmt *e = list_entry(pos, struct server_stmt, lru);

	if (!is_shared(e->ps) || (out->body = malloc(e->ps->len ? e->ps->len : 1)) == NULL)
		return false;
	memcpy(out->body, e->ps->body, e->ps->len);
	out->len = e->ps->len;
	out->name_id = e->name_id;
	out->generation = e->generation;
	return true;
}

bool prepared_cache_detach(struct stmt_cache *cache, struct pstmt_registry *reg)
{
	struct carried_stmt *carried = NULL;
	uint32_t n = 0;
	bool whole =
	    cache->count == 0 || (carried = calloc(cache->count, sizeof(*carried))) != NULL;

	/* Most recently used first: the receiver keeps the order. */
	for (struct list_node *pos = cache->lru.next; whole && pos != &cache->lru; pos = pos->next)
		if ((whole = carry(pos, &carried[n])))
			n++;
	prepared_cache_fini(cache, reg);
	if (!whole) {
		carried_free(carried, n);
		return false;
	}
	cache->carried = carried;
	cache->ncarried = n;
	return true;
}

bool prepared_cache_attach(struct stmt_cache *cache, struct pstmt_registry *reg)
{
	struct carried_stmt *carried = cache->carried;
	uint32_t n = cache->ncarried;
	bool whole = true;

	cache->carried = NULL;
	cache->ncarried = 0;
	/* Least recently used first, each to the head of the LRU. */
	for (uint32_t i = n; i-- > 0;) {
		struct server_stmt *e = calloc(1, sizeof(*e));
		struct pstmt *ps = NULL;

		if (e != NULL && (cache->count < cache->size || cache_grow(cache) == 0))
			ps = registry_intern(reg, carried[i].body, carried[i].len, false, NULL, 0,
			                     0);
		else
			free(carried[i].body);
		carried[i].body = NULL; /* taken by registry_intern, or freed */
		if (!(whole = ps != NULL)) {
			free(e);
			break;
		}
		cache_insert(cache, e, ps, carried[i].name_id, carried[i].generation);
		list_add_head(&cache->lru, &e->lru);
	}
	carried_free(carried, n);
	/* Statements the cache would not know of: the caller has them all dropped instead. */
	if (!whole)
		cache_clear(reg, cache);
	return whole;
}

/* Output to the server ----------------------------------------------------- */

static void body_released(const void *data, size_t len, void *arg)
{
	struct pstmt *ps = arg;

	pstmt_unref(ps->reg, ps);
}

static void send_parse(struct server *s, struct pstmt *ps, uint8_t marker)
{
	struct evbuffer *out = conn_out(&s->conn);
	char name[SERVER_NAME_MAX];
	uint8_t hdr[5];
	uint32_t len;

	server_name(ps, ps->generation, name);
	len = (uint32_t)(4 + strlen(name) + 1 + ps->len);
	hdr[0] = 'P';
	hdr[1] = (uint8_t)(len >> 24);
	hdr[2] = (uint8_t)(len >> 16);
	hdr[3] = (uint8_t)(len >> 8);
	hdr[4] = (uint8_t)len;
	evbuffer_add(out, hdr, sizeof(hdr));
	evbuffer_add(out, name, strlen(name) + 1);
	/* The query text is referenced, not copied, until the socket takes it. */
	ps->refs++;
	if (evbuffer_add_reference(out, ps->body, ps->len, body_released, ps) < 0) {
		ps->refs--;
		evbuffer_add(out, ps->body, ps->len);
	}
	relay_track_request(s, marker);
	ring_push(&s->stmts.pending, &ps->id);
}

static void write_header(struct evbuffer *out, uint8_t type, uint32_t len)
{
	const uint8_t hdr[5] = {type, (uint8_t)(len >> 24), (uint8_t)(len >> 16),
	                        (uint8_t)(len >> 8), (uint8_t)len};

	evbuffer_add(out, hdr, sizeof(hdr));
}

/*
 * "PREPARE sluice_<id>_<gen> <text after the client's name>" in a Query, or
 * in a Parse ('P') of the carrier statement, with no parameters.
 */
static void write_sql_prepare(struct evbuffer *out, uint8_t type, const struct pstmt *ps)
{
	static const uint8_t no_params[2];
	size_t extra = type == 'P' ? sizeof(SQL_CARRIER) + sizeof(no_params) : 0;
	char name[SERVER_NAME_MAX];

	server_name(ps, ps->generation, name);
	write_header(out, type, (uint32_t)(4 + extra + 8 + strlen(name) + 1 + ps->len + 1));
	if (type == 'P')
		evbuffer_add(out, SQL_CARRIER, sizeof(SQL_CARRIER));
	evbuffer_add(out, "PREPARE ", 8);
	evbuffer_add(out, name, strlen(name));
	evbuffer_add(out, " ", 1);
	evbuffer_add(out, ps->body, ps->len);
	evbuffer_add(out, "", 1);
	if (type == 'P')
		evbuffer_add(out, no_params, sizeof(no_params));
}

/* An SQL statement is prepared on a server with SQL, under the sluice name. */
static void send_sql_prepare(struct server *s, struct pstmt *ps, uint8_t marker)
{
	write_sql_prepare(conn_out(&s->conn), 'Q', ps);
	relay_track_request(s, marker);
	ring_push(&s->stmts.pending, &ps->id);
}

static void send_carrier_close(struct server *s, uint8_t what)
{
	struct msg_builder m;

	msg_begin(&m, 'C');
	msg_add_u8(&m, what);
	msg_add_cstr(&m, SQL_CARRIER);
	msg_finish(&m, conn_out(&s->conn));
	relay_track_request(s, REQ_INJECTED_CLOSE);
}

/*
 * SQL in extended messages: the same PREPARE ahead of an extended message
 * that EXECUTEs the statement (`ps`, with `exec_marker` REQ_INJECTED_EXECUTE,
 * or REQ_SQL_EXECUTE when it is the client's own PREPARE), or `text` whose
 * reply goes to the client (REQ_CARRIER_EXECUTE).  A Query there would end
 * the pipeline's implicit transaction, and the server skips it after an
 * error until Sync, which these messages follow like the client's.  It is
 * carried by a statement and a portal of its own, closed after (and the
 * statement before, in case a failed Execute left it), so the client's
 * unnamed ones stay.  If any fails, the client gets that error and its
 * messages up to Sync are skipped, as they would fail without the statement.
 */
static void send_carrier(struct server *s, struct pstmt *ps, const char *text, uint8_t exec_marker)
{
	struct evbuffer *out = conn_out(&s->conn);
	struct msg_builder m;

	send_carrier_close(s, 'S');
	if (ps != NULL) {
		write_sql_prepare(out, 'P', ps);
		relay_track_request(s, REQ_INJECTED_PARSE);
		ring_push(&s->stmts.pending, &ps->id);
	} else {
		msg_begin(&m, 'P');
		msg_add_cstr(&m, SQL_CARRIER);
		msg_add_cstr(&m, text);
		msg_add_u16(&m, 0); /* parameter types */
		msg_finish(&m, out);
		relay_track_request(s, REQ_CARRIER_PARSE);
	}
	msg_begin(&m, 'B');
	msg_add_cstr(&m, SQL_CARRIER);
	msg_add_cstr(&m, SQL_CARRIER);
	msg_add_u16(&m, 0); /* parameter formats */
	msg_add_u16(&m, 0); /* parameters */
	msg_add_u16(&m, 0); /* result formats */
	msg_finish(&m, out);
	relay_track_request(s, REQ_INJECTED_BIND);
	msg_begin(&m, 'E');
	msg_add_cstr(&m, SQL_CARRIER);
	msg_add_u32(&m, 0);
	msg_finish(&m, out);
	relay_track_request(s, exec_marker);
	if (ps != NULL)
		ring_push(&s->stmts.pending, &ps->id);
	send_carrier_close(s, 'P');
	send_carrier_close(s, 'S');
}

static void send_close(struct server *s, const struct server_stmt *e)
{
	struct msg_builder m;
	char name[SERVER_NAME_MAX];

	entry_name(e, name);
	msg_begin(&m, 'C');
	msg_add_u8(&m, 'S');
	msg_add_cstr(&m, name);
	msg_finish(&m, conn_out(&s->conn));
	relay_track_request(s, REQ_INJECTED_CLOSE);
}

/*
 * Make room for `len` more bytes of text under max_prepared_statements and
 * max_prepared_size by closing the least recently used: a statement no
 * client names any more is kept for the cache alone, in sluice as on the
 * server.
 */
static void evict_if_full(struct server *s, size_t len)
{
	struct stmt_cache *cache = &s->stmts;
	int max = s->w->cfg->max_prepared_statements;
	size_t max_bytes = (size_t)s->w->cfg->max_prepared_size;

	while (cache->count > 0 &&
	       (cache->count >= (uint32_t)max || cache->bytes + len > max_bytes)) {
		struct server_stmt *old = list_entry(cache->lru.prev, struct server_stmt, lru);

		send_close(s, old);
		cache_remove(&s->w->prepared, cache, old);
	}
}

/*
 * Have `ps` prepared on the server before the message about to be sent.
 * `marker` is REQ_TRACKED_PARSE for a client Parse (its reply goes to the
 * client) or REQ_INJECTED_PARSE (reply swallowed): only those settle the
 * statement ids in stmt_cache.pending.  An SQL statement is prepared with a
 * Query (REQ_SQL_PREPARE, REQ_INJECTED_SQL) or, before an extended message,
 * in extended messages (REQ_INJECTED_PARSE; REQ_SQL_EXECUTE for the client's
 * own PREPARE in a Parse).  A statement whose text
 * EXECUTEs an SQL statement has that one prepared first, each time, so the
 * LRU keeps it at least as long.  Returns false if `ps` already was.
 * `name` (unless NULL) gets what it is called on the server: a statement
 * that came with the server from another worker keeps that worker's name.
 */
static bool ensure_prepared(struct server *s, struct pstmt *ps, uint8_t marker,
                            char name[SERVER_NAME_MAX])
{
	struct stmt_cache *cache = &s->stmts;
	struct server_stmt *e;

	if (ps->dep != NULL)
		ensure_prepared(s, ps->dep, REQ_INJECTED_PARSE, NULL);
	e = cache_find(cache, ps->id);

	if (e != NULL && e->generation == ps->generation) {
		list_del(&e->lru);
		list_add_head(&cache->lru, &e->lru);
		if (name != NULL)
			entry_name(e, name);
		return false;
	}
	if (e != NULL) {
		/* A stale plan under the old name: drop it, prepare under the new one. */
		send_close(s, e);
		cache_remove(&s->w->prepared, cache, e);
	}
	if (name != NULL)
		server_name(ps, ps->generation, name);
	evict_if_full(s, ps->len);
	if (ps->sql && marker == REQ_INJECTED_PARSE)
		send_carrier(s, ps, NULL, REQ_INJECTED_EXECUTE);
	else if (ps->sql && marker == REQ_SQL_EXECUTE)
		send_carrier(s, ps, NULL, REQ_SQL_EXECUTE);
	else if (ps->sql)
		send_sql_prepare(s, ps, marker);
	else
		send_parse(s, ps, marker);
	e = calloc(1, sizeof(*e));
	if (e == NULL || (cache->count >= cache->size && cache_grow(cache) < 0)) {
		free(e);
		return true;
	}
	cache_insert(cache, e, ps, ps->id, ps->generation);
	list_add_head(&cache->lru, &e->lru);
	return true;
}

/* Client messages ------------------------------------------------------------- */

bool prepared_tracking(const struct client *c)
{
	return c->w->cfg->max_prepared_statements > 0 && c->pool != NULL &&
	       pool_mode(c->pool) != POOL_SESSION;
}

/* Copy up to cap bytes of the message (header included) without consuming it. */
static size_t peek(struct evbuffer *in, const struct frame *f, uint8_t *buf, size_t cap)
{
	size_t want = frame_total(f) < cap ? frame_total(f) : cap;
	ev_ssize_t n = evbuffer_copyout(in, buf, want);

	return n < 0 ? 0 : (size_t)n;
}

/*
 * Queues a reply sluice makes itself, sent now if nothing is ahead of it;
 * returns whether a ReadyForQuery was emitted now (PREP_READY).
 * One that answers a Query (REQ_FAKE_PREPARE, REQ_FAKE_DEALLOC) behind
 * extended messages with no Sync yet gets a Sync sent in its place
 * (REQ_INJECTED_SYNC): Postgres would run the Query, which sends their
 * replies and ends their batch; without it the fake waits behind replies the
 * server holds until a Sync, and the client waits for the fake.
 */
static bool push_fake(struct server *s, uint8_t marker)
{
	/*
	 * Postgres would run that Query, which ends the extended batch before
	 * it, answered or not: its implicit transaction commits (requests.batch_open).
	 */
	if ((marker == REQ_FAKE_PREPARE || marker == REQ_FAKE_DEALLOC) && !s->copy_in &&
	    ((requests_count(&s->requests) > 0 && requests_need_sync(&s->requests)) ||
	     s->requests.batch_open)) {
		build_sync(conn_out(&s->conn));
		requests_push(&s->requests, REQ_INJECTED_SYNC);
	}
	requests_push(&s->requests, marker);
	/* Never inside a message still streaming to the client: the relay sends it after. */
	if (s->fwd_remaining > 0)
		return false;
	return prepared_flush_fakes(s);
}

/* Whole message needed: grow the read watermark for messages larger than it. */
static enum prep_result need_whole(struct client *c, const struct frame *f)
{
	struct evbuffer *in = c->conn.in;

	if (evbuffer_get_length(in) >= frame_total(f))
		return PREP_DONE;
	if (frame_total(f) >= RELAY_READ_HIGH)
		conn_set_read_high(&c->conn, frame_total(f) + RELAY_READ_HIGH);
	return PREP_WAIT;
}

/* SQL read whole (up to SQL_TEXT_MAX, else PREP_PASS): PREP_DONE once it is all buffered. */
static enum prep_result need_text(struct client *c, const struct frame *f)
{
	if (frame_total(f) > SQL_TEXT_MAX)
		return PREP_PASS;
	if (need_whole(c, f) == PREP_WAIT)
		return PREP_WAIT;
	conn_set_read_high(&c->conn, RELAY_READ_HIGH);
	return PREP_DONE;
}

static bool parse_deallocate(const char *sql, char *name, size_t cap);
static enum prep_result unnamed_action(struct client *c, struct server *s, const struct frame *f);
static enum prep_result bind_action(struct client *c, struct server *s, const struct frame *f,
                                    const uint8_t *portal, struct sql_action *a);
static struct sql_action *parse_action(struct client *c, struct server *s, const char *text,
                                       size_t len, uint16_t nparams);
static void unbind_portal(struct client *c);
static void describe_no_rows(struct server *s);
static bool describe_close_action(struct client *c, struct server *s, const struct frame *f,
                                  const uint8_t *msg);
static int change_push(struct server *s, const char *name, struct client_stmt *removed,
                       struct pstmt *added);

/* `name` as a quoted identifier, NUL-terminated; returns its length. */
static size_t quote_ident(const char *name, char out[QUOTED_NAME_MAX])
{
	size_t n = 0;

	out[n++] = '"';
	for (const char *p = name; *p != '\0'; p++) {
		if (*p == '"')
			out[n++] = '"';
		out[n++] = *p;
	}
	out[n++] = '"';
	out[n] = '\0';
	return n;
}

/* The SQL statement the client's `name` means now, or NULL. */
static struct pstmt *sql_meaning(const struct client *c, const char *name)
{
	const struct client_stmt *cs = map_find(c->stmts, name);

	return cs != NULL && cs->ps->sql ? cs->ps : NULL;
}

/* A statement that may change session state, or EXECUTEs one: what it may change is noted. */
static void inspect_statement(struct server *s, const struct pstmt *ps)
{
	for (; ps != NULL; ps = ps->dep)
		if (ps->session_state) {
			const char *text = (const char *)ps->body;
			size_t n = strnlen(text, ps->len);

			server_inspect_sql(s, sqlscan_verb(text, n), text, n);
		}
}

/*
 * The registry statement for a Parse body that EXECUTEs the client's SQL
 * statement `ref`, named at body[at, at + len): the copy names it as the
 * servers do, so two clients' "EXECUTE q(1)" are two statements when their q
 * differ.  A name that means no SQL statement (never PREPAREd, DEALLOCATEd)
 * is written as a quoted identifier no server has: executing it fails with
 * Postgres' own 26000.
 */
static struct pstmt *intern_execute(struct client *c, const uint8_t *body, size_t body_len,
                                    size_t at, size_t len, const char *ref)
{
	struct pstmt *dep = sql_meaning(c, ref);
	char with[QUOTED_NAME_MAX];
	size_t with_len, copy_len;
	uint8_t *copy;

	if (dep != NULL) {
		server_name(dep, dep->generation, with);
		with_len = strlen(with);
	} else {
		with_len = quote_ident(ref, with);
	}
	copy_len = body_len - len + with_len;
	if ((copy = malloc(copy_len)) == NULL)
		return NULL;
	memcpy(copy, body, at);
	memcpy(copy + at, with, with_len);
	memcpy(copy + at + with_len, body + at + len, body_len - at - len);
	return registry_intern(&c->w->prepared, copy, copy_len, false, dep, at, with_len);
}

/*
 * A protocol statement whose text EXECUTEs an SQL statement runs, as in
 * Postgres, whatever the client's name means at each execution: after
 * DEALLOCATE none (26000), after a new PREPARE the new statement.
 */
static void resolve_execute(struct client *c, struct client_stmt *cs)
{
	struct pstmt *ps = cs->ps;

	if (sql_meaning(c, cs->ref) == ps->dep)
		return;
	ps = intern_execute(c, ps->body, ps->len, ps->ref_at, ps->ref_len, cs->ref);
	if (ps == NULL)
		return; /* out of memory: the meaning it had */
	ps->refs++;
	pstmt_unref(&c->w->prepared, cs->ps);
	cs->ps = ps;
	cs->generation = ps->generation;
	/* The same text but for the name it EXECUTEs: a few bytes either way, not checked. */
	c->stmts->bytes -= cs->cost;
	cs->cost = (uint32_t)stmt_cost(cs->name, ps, cs->ref, cs->action);
	c->stmts->bytes += cs->cost;
}

/* SQL that may EXECUTE a prepared statement: EXECUTE, EXPLAIN, CREATE TABLE AS. */
static bool may_execute(enum sql_verb verb)
{
	return verb == SQL_VERB_EXECUTE || verb == SQL_VERB_EXPLAIN || verb == SQL_VERB_CREATE;
}

/*
 * An unnamed Parse that EXECUTEs a name the client PREPAREd in SQL (psycopg
 * 3 sends EXECUTE with parameters this way; also EXPLAIN and CREATE TABLE AS
 * EXECUTE): the name is rewritten, and a server that lacks the statement
 * gets its PREPARE first, in extended messages.
 */
static enum prep_result unnamed_execute(struct client *c, struct server *s, const struct frame *f,
                                        const char *msg)
{
	const char *text = msg + FRAME_HEADER_LEN + 1;
	size_t text_len = strnlen(text, frame_total(f) - FRAME_HEADER_LEN - 1);
	size_t tail = frame_total(f) - FRAME_HEADER_LEN - 1 - text_len, start, after;
	struct evbuffer *out = conn_out(&s->conn);
	char name[PREP_NAME_MAX + 1], sname[SERVER_NAME_MAX];
	struct pstmt *ps;

	if (tail == 0 ||
	    (after = sqlscan_execute_target(text, text_len + 1, name, sizeof(name), &start)) == 0 ||
	    (ps = sql_meaning(c, name)) == NULL)
		return PREP_PASS;
	ensure_prepared(s, ps, REQ_INJECTED_PARSE, sname);
	inspect_statement(s, ps);
	write_header(out, 'P', (uint32_t)(4 + 1 + start + strlen(sname) + text_len - after + tail));
	evbuffer_add(out, "", 1);
	evbuffer_add(out, text, start);
	evbuffer_add(out, sname, strlen(sname));
	evbuffer_add(out, text + after, text_len - after + tail);
	evbuffer_drain(c->conn.in, frame_total(f));
	c->pool->stats.bytes_received += frame_total(f);
	relay_track_request(s, 'P');
	return PREP_DONE;
}

/* SQL that acts on prepared statements, or may (EXPLAIN EXECUTE, CREATE TABLE AS EXECUTE). */
static bool acts_on_statements(enum sql_verb verb)
{
	return verb == SQL_VERB_PREPARE || verb == SQL_VERB_DEALLOCATE || may_execute(verb);
}

/*
 * The first keyword of a Query's or Parse's text from the relay's view of
 * the whole message, as far as SQL that acts on prepared statements goes: a
 * keyword is looked for in the first VERB_PEEK bytes only, as peek_verb does
 * for a message the view does not hold whole.
 */
static enum sql_verb view_verb(const struct msgview *v)
{
	if (v->n > VERB_PEEK && acts_on_statements(v->verb))
		return sqlscan_verb(v->text, VERB_PEEK);
	return v->verb;
}

/*
 * The first keyword of the text at byte `at` of a message, read in place when
 * the buffer has it contiguous, as far as SQL that acts on prepared statements
 * goes (PREPARE, DEALLOCATE, EXECUTE, EXPLAIN, CREATE; any other may come back
 * SQL_VERB_OTHER).  -1: those bytes have not all arrived.
 */
static int peek_verb(struct evbuffer *in, const struct frame *f, size_t at)
{
	char head[FRAME_HEADER_LEN + 1 + VERB_PEEK];
	size_t n = frame_total(f) < at + VERB_PEEK ? frame_total(f) : at + VERB_PEEK;
	struct evbuffer_iovec v;
	const char *msg = head;

	char first;

	if (n <= at)
		return SQL_VERB_OTHER;
	if (evbuffer_peek(in, (ev_ssize_t)n, NULL, &v, 1) >= 1 && v.iov_len >= n)
		msg = v.iov_base;
	else if (evbuffer_copyout(in, head, n) < (ev_ssize_t)n)
		return -1;
	/* One byte settles most texts: a keyword that starts with another letter is none of ours.
	 */
	first = (char)(msg[at] | 0x20);
	if (first >= 'a' && first <= 'z' && first != 'p' && first != 'd' && first != 'e' &&
	    first != 'c')
		return SQL_VERB_OTHER;
	return (int)sqlscan_verb(msg + at, n - at);
}

/*
 * The unnamed statement is the client's own business, except SQL that acts
 * on the client's names, sent through the extended protocol (psycopg 3,
 * pgJDBC, node-postgres with parameters, libpq's PQexecParams): EXECUTE of
 * a name is rewritten; PREPARE and DEALLOCATE become an sql_action, whose
 * Parse, Bind and Describe are answered here.
 */
static enum prep_result handle_unnamed_parse(struct client *c, struct server *s,
                                             const struct frame *f, const struct msgview *v)
{
	struct evbuffer *in = c->conn.in;
	char sql[DEALLOCATE_PEEK + 1];
	int verb;

	/* Every Parse of the unnamed statement replaces it, even one that fails. */
	if (c->stmts != NULL && c->stmts->unnamed != NULL) {
		action_unref(&c->w->prepared, c->stmts->unnamed);
		c->stmts->unnamed = NULL;
	}
	if (v->whole)
		verb = (int)view_verb(v);
	else if ((verb = peek_verb(in, f, FRAME_HEADER_LEN + 1)) < 0)
		return PREP_WAIT;
	if (verb == SQL_VERB_PREPARE || verb == SQL_VERB_DEALLOCATE)
		return unnamed_action(c, s, f);
	if (prepared_map_count(c->stmts) == 0 || !may_execute((enum sql_verb)verb) ||
	    frame_total(f) > DEALLOCATE_PEEK)
		return PREP_PASS;
	if (evbuffer_get_length(in) < frame_total(f))
		return PREP_WAIT;
	evbuffer_copyout(in, sql, frame_total(f));
	sql[frame_total(f)] = '\0';
	return unnamed_execute(c, s, f, sql);
}

/* Drop the rest of a client message whose first `done` bytes were handled. */
static void drop_message(struct client *c, const struct frame *f, size_t done)
{
	struct evbuffer *in = c->conn.in;
	size_t rest = frame_total(f) - done, avail = evbuffer_get_length(in);
	size_t now = rest < avail ? rest : avail;

	evbuffer_drain(in, now);
	c->skip_remaining = (uint32_t)(rest - now);
	c->pool->stats.bytes_received += frame_total(f);
}

/*
 * The client's statement went stale since it last learnt the result type
 * (another server reported `cached plan must not change result type`):
 * like Postgres, refuse this execution once.  A Bind of a statement no server
 * has fails right there, aborting the transaction and skipping to Sync as a
 * real 0A000 does; prepared_stale_error() turns that error into the 0A000.
 */
static enum prep_result stale_bind(struct client *c, struct server *s, const struct frame *f,
                                   const uint8_t *portal, size_t portal_len, size_t prefix,
                                   struct client_stmt *cs)
{
	struct evbuffer *out = conn_out(&s->conn);
	static const uint8_t no_formats_params_results[6];

	write_header(out, 'B', (uint32_t)(4 + portal_len + 1 + sizeof(STALE_NAME) + 6));
	evbuffer_add(out, portal, portal_len + 1);
	evbuffer_add(out, STALE_NAME, sizeof(STALE_NAME));
	evbuffer_add(out, no_formats_params_results, sizeof(no_formats_params_results));
	evbuffer_drain(c->conn.in, prefix);
	drop_message(c, f, prefix);
	relay_track_request(s, REQ_STALE_BIND);
	ring_push(&s->stmts.bound, &cs->ps->id);
	cs->generation = cs->ps->generation;
	return PREP_DONE;
}

static enum prep_result handle_parse(struct client *c, struct server *s, const struct frame *f,
                                     const struct msgview *v)
{
	struct evbuffer *in = c->conn.in;
	struct pstmt_registry *reg = &c->w->prepared;
	uint8_t head[FRAME_HEADER_LEN + PREP_NAME_MAX + 1];
	size_t got, name_len, body_len, text_len, start, after;
	const uint8_t *nul;
	struct msg_reader r;
	char name[PREP_NAME_MAX + 1], ref[PREP_NAME_MAX + 1];
	uint8_t *body;
	uint16_t nparams;
	struct pstmt *ps;
	struct sql_action *a;
	int rc;

	/* The unnamed statement, which drivers parse for every query: the view shows it. */
	if (v->text != NULL && v->text - v->msg == FRAME_HEADER_LEN + 1)
		return handle_unnamed_parse(c, s, f, v);
	got = peek(in, f, head, sizeof(head));
	nul = memchr(head + FRAME_HEADER_LEN, 0, got - FRAME_HEADER_LEN);
	if (nul == NULL) {
		if (got == sizeof(head)) {
			client_fail(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED, "statement name too long");
			return PREP_CLOSED;
		}
		if (need_whole(c, f) == PREP_WAIT)
			return PREP_WAIT;
		/*
		 * All of it is here and its name does not end in it.  (PREP_DONE
		 * would tell the relay the message was consumed: it was not, and
		 * the relay read it again, forever, with the worker's loop stuck.)
		 */
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "malformed Parse message");
		return PREP_CLOSED;
	}
	name_len = (size_t)(nul - head) - FRAME_HEADER_LEN;
	if (name_len == 0)
		return handle_unnamed_parse(c, s, f, v);
	/* Refused before it is buffered whole: the text would be kept as long as the name. */
	if (over_budget(c, map_find(c->stmts, (const char *)head + FRAME_HEADER_LEN),
	                sizeof(struct client_stmt) + frame_total(f)))
		return fail_over_budget(c);
	if (need_whole(c, f) == PREP_WAIT)
		return PREP_WAIT;
	conn_set_read_high(&c->conn, RELAY_READ_HIGH);
	memcpy(name, head + FRAME_HEADER_LEN, name_len + 1);
	body_len = frame_total(f) - FRAME_HEADER_LEN - name_len - 1;
	body = malloc(body_len ? body_len : 1);
	if (body == NULL) {
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return PREP_CLOSED;
	}
	/* The one copy of a large Parse: straight into the statement's own buffer. */
	evbuffer_drain(in, FRAME_HEADER_LEN + name_len + 1);
	evbuffer_remove(in, body, body_len);
	msg_reader_init(&r, body, body_len);
	msg_read_cstr(&r);
	nparams = msg_read_u16(&r);
	if (r.failed || msg_remaining(&r) != (size_t)nparams * 4) {
		free(body);
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "malformed Parse message");
		return PREP_CLOSED;
	}
	c->pool->stats.bytes_received += frame_total(f);
	text_len = strnlen((const char *)body, body_len);
	if ((a = parse_action(c, s, (const char *)body, text_len, nparams)) != NULL) {
		/* Answered here; each Execute of it acts on the client's names. */
		ps = registry_intern(reg, body, body_len, false, NULL, 0, 0);
		rc = ps == NULL ? MAP_NO_MEMORY : map_put(c, name, ps, NULL, a);
		action_unref(reg, a);
		if (rc < 0)
			return fail_put(c, ps, rc);
		push_fake(s, REQ_FAKE_PARSE);
		return PREP_DONE;
	}
	if (may_execute(sqlscan_verb((const char *)body, text_len + 1)) &&
	    (after = sqlscan_execute_target((const char *)body, text_len + 1, ref, sizeof(ref),
	                                    &start)) != 0) {
		ps = intern_execute(c, body, body_len, start, after - start, ref);
		free(body);
	} else {
		ref[0] = '\0';
		ps = registry_intern(reg, body, body_len, false, NULL, 0, 0);
	}
	rc = ps == NULL ? MAP_NO_MEMORY : map_put(c, name, ps, ref[0] != '\0' ? ref : NULL, NULL);
	if (rc < 0)
		return fail_put(c, ps, rc);
	/* Already prepared there: the client still gets its ParseComplete, in order. */
	if (!ensure_prepared(s, ps, REQ_TRACKED_PARSE, NULL))
		push_fake(s, REQ_FAKE_PARSE);
	else
		pending_name(s, c, name);
	return PREP_DONE;
}

/* Bind and Describe of a named statement: rewrite the name, prepare first if needed. */
static enum prep_result handle_bind(struct client *c, struct server *s, const struct frame *f)
{
	struct evbuffer *in = c->conn.in;
	struct evbuffer *out = conn_out(&s->conn);
	uint8_t head[BIND_PEEK];
	size_t got = peek(in, f, head, sizeof(head)), portal_len, stmt_len, prefix, rest, moved;
	const uint8_t *p = head + FRAME_HEADER_LEN, *end = head + got;
	const uint8_t *portal_end = memchr(p, 0, (size_t)(end - p)), *stmt_end;
	struct client_stmt *cs;
	char name[SERVER_NAME_MAX];

	stmt_end = portal_end ? memchr(portal_end + 1, 0, (size_t)(end - portal_end - 1)) : NULL;
	if (stmt_end == NULL) {
		if (got == sizeof(head) || got == frame_total(f)) {
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "malformed or oversized Bind");
			return PREP_CLOSED;
		}
		return PREP_WAIT;
	}
	portal_len = (size_t)(portal_end - p);
	stmt_len = (size_t)(stmt_end - portal_end - 1);
	if (c->stmts == NULL) /* no names, no portal or unnamed statement of its own */
		return PREP_PASS;
	if (c->stmts->portal != NULL && strcmp(c->stmts->portal_name, (const char *)p) == 0)
		unbind_portal(c); /* replaced by this Bind */
	if (stmt_len == 0 && c->stmts->unnamed != NULL)
		return bind_action(c, s, f, p, c->stmts->unnamed);
	if (stmt_len == 0 || (cs = map_find(c->stmts, (const char *)portal_end + 1)) == NULL ||
	    cs->ps->sql)
		return PREP_PASS;
	if (cs->action != NULL)
		return bind_action(c, s, f, p, cs->action);
	if (cs->ref != NULL)
		resolve_execute(c, cs);
	prefix = FRAME_HEADER_LEN + portal_len + 1 + stmt_len + 1;
	if (c->w->cfg->query_stats)
		qstats_bind(c, cs->ps);
	if (cs->generation != cs->ps->generation)
		return stale_bind(c, s, f, p, portal_len, prefix, cs);
	ensure_prepared(s, cs->ps, REQ_INJECTED_PARSE, name);
	inspect_statement(s, cs->ps);
	write_header(out, 'B', (uint32_t)(f->len - stmt_len + strlen(name)));
	evbuffer_add(out, p, portal_len + 1);
	evbuffer_add(out, name, strlen(name) + 1);
	evbuffer_drain(in, prefix);
	relay_track_request(s, REQ_TRACKED_BIND);
	ring_push(&s->stmts.bound, &cs->ps->id);
	rest = frame_total(f) - prefix;
	moved = rest ? (size_t)evbuffer_remove_buffer(in, out, rest) : 0;
	c->fwd_remaining = (uint32_t)(rest - moved);
	c->pool->stats.bytes_received += prefix + moved;
	return PREP_DONE;
}

static enum prep_result handle_describe_close(struct client *c, struct server *s,
                                              const struct frame *f)
{
	struct evbuffer *in = c->conn.in;
	uint8_t msg[FRAME_CONTROL_MAX + 1];
	struct client_stmt *cs;
	char name[SERVER_NAME_MAX];
	struct msg_builder m;

	if (evbuffer_get_length(in) < frame_total(f))
		return PREP_WAIT;
	evbuffer_copyout(in, msg, frame_total(f));
	msg[frame_total(f)] = 0;
	if (describe_close_action(c, s, f, msg))
		return PREP_DONE;
	if (f->len < 6 || msg[FRAME_HEADER_LEN] != 'S' || msg[FRAME_HEADER_LEN + 1] == 0 ||
	    msg[frame_total(f) - 1] != 0)
		return PREP_PASS; /* portals, the unnamed statement, or malformed: Postgres judges
		                   */
	evbuffer_drain(in, frame_total(f));
	c->pool->stats.bytes_received += frame_total(f);
	if (f->type == 'C') {
		const char *name_closed = (const char *)msg + FRAME_HEADER_LEN + 1;
		struct client_stmt *gone = map_unlink(c->stmts, name_closed);

		/* Closing a name that does not exist is not an error in Postgres either. */
		if (gone == NULL) {
			push_fake(s, REQ_FAKE_CLOSE);
			return PREP_DONE;
		}
		/* Behind an error of the same batch Postgres skips it: the name comes back. */
		if (change_push(s, name_closed, gone, NULL) < 0) {
			client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
			return PREP_CLOSED;
		}
		push_fake(s, REQ_FAKE_UNNAME);
		return PREP_DONE;
	}
	cs = map_find(c->stmts, (const char *)msg + FRAME_HEADER_LEN + 1);
	if (cs != NULL && cs->action != NULL) {
		describe_no_rows(s);
		return PREP_DONE;
	}
	if (cs != NULL && cs->ps->sql)
		cs = NULL; /* SQL PREPAREd: only EXECUTE reaches it */
	if (cs != NULL) {
		if (cs->ref != NULL)
			resolve_execute(c, cs);
		/* The client asks for the result type again: it will know the new one. */
		cs->generation = cs->ps->generation;
		ensure_prepared(s, cs->ps, REQ_INJECTED_PARSE, name);
	}
	msg_begin(&m, 'D');
	msg_add_u8(&m, 'S');
	msg_add_cstr(&m, cs != NULL ? name : (const char *)msg + FRAME_HEADER_LEN + 1);
	msg_finish(&m, conn_out(&s->conn));
	relay_track_request(s, 'D');
	return PREP_DONE;
}

/* "DEALLOCATE [PREPARE] name": the name is the client's; answer locally. */
static bool parse_deallocate(const char *sql, char *name, size_t cap)
{
	const char *p = sql;
	size_t n = 0;

	while (isspace((unsigned char)*p))
		p++;
	if (strncasecmp(p, "deallocate", 10) != 0 || !isspace((unsigned char)p[10]))
		return false;
	p += 10;
	while (isspace((unsigned char)*p))
		p++;
	if (strncasecmp(p, "prepare", 7) == 0 && isspace((unsigned char)p[7]))
		for (p += 7; isspace((unsigned char)*p); p++)
			;
	if (*p == '"') {
		for (p++; *p != '\0' && n + 1 < cap; p++) {
			if (*p == '"' && p[1] != '"')
				break;
			name[n++] = *p;
			if (*p == '"')
				p++;
		}
		if (*p++ != '"')
			return false;
	} else {
		while ((isalnum((unsigned char)*p) || *p == '_' || *p == '$') && n + 1 < cap)
			name[n++] = (char)tolower((unsigned char)*p++);
	}
	name[n] = '\0';
	while (isspace((unsigned char)*p) || *p == ';')
		p++;
	return n > 0 && *p == '\0' && strcasecmp(name, "all") != 0;
}

/* The text of a whole Query, contiguous: its NUL-terminated SQL, or NULL. */
static const char *query_text(struct evbuffer *in, const struct frame *f)
{
	const uint8_t *msg = evbuffer_pullup(in, (ev_ssize_t)frame_total(f));

	if (msg == NULL || msg[frame_total(f) - 1] != '\0')
		return NULL;
	return (const char *)msg + FRAME_HEADER_LEN;
}

/* Send the client's Query `text` with the name at [start, after) replaced by ps's sluice name. */
static void send_renamed(struct client *c, struct server *s, const struct frame *f,
                         const char *text, size_t start, const struct pstmt *ps, size_t after)
{
	struct evbuffer *out = conn_out(&s->conn);
	char name[SERVER_NAME_MAX];
	size_t rest = f->len - 4 - after;

	server_name(ps, ps->generation, name);
	write_header(out, 'Q', (uint32_t)(4 + start + strlen(name) + rest));
	evbuffer_add(out, text, start);
	evbuffer_add(out, name, strlen(name));
	evbuffer_add(out, text + after, rest);
	evbuffer_drain(c->conn.in, frame_total(f));
	c->pool->stats.bytes_received += frame_total(f);
	c->pool->stats.query_count++;
}

/* The statement after PREPARE's name, as its registry body: trailing ';' and spaces cut. */
static size_t prepare_body(const char *rest)
{
	size_t len = strlen(rest);

	while (len > 0 && (isspace((unsigned char)rest[len - 1]) || rest[len - 1] == ';'))
		len--;
	/* A second statement would not be the prepared one: pass it through (it pins). */
	if (len == 0 || memchr(rest, ';', len) != NULL ||
	    (!isspace((unsigned char)rest[0]) && rest[0] != '('))
		return 0;
	return len;
}

/* A dollar-quoting tag ("$<letter><k>$") that does not occur in `text`. */
static void dollar_tag(const char *text, char letter, char tag[16])
{
	unsigned k = 0;

	do
		snprintf(tag, 16, "$%c%u$", letter, k++);
	while (strstr(text, tag) != NULL);
}

/*
 * PREPARE of a name the client has: Postgres refuses it with 42P05, which
 * aborts a transaction block too, so the server must fail it as well.  It is
 * sent a DO block that raises that error (inside an aborted transaction
 * Postgres' own 25P02 comes first, as it would for the PREPARE).
 */
static int duplicate_sql(const char *name, char sql[DUPLICATE_SQL_MAX])
{
	char outer[16], inner[16];

	dollar_tag(name, 'd', outer);
	dollar_tag(name, 'm', inner);
	return snprintf(sql, DUPLICATE_SQL_MAX,
	                "DO %sBEGIN RAISE EXCEPTION USING ERRCODE = '42P05', MESSAGE = "
	                "%sprepared statement \"%s\" already exists%s; END%s",
	                outer, inner, name, inner, outer);
}

static enum prep_result duplicate_prepare(struct client *c, struct server *s, const struct frame *f,
                                          const char *name)
{
	struct evbuffer *out = conn_out(&s->conn);
	char sql[DUPLICATE_SQL_MAX];
	int n = duplicate_sql(name, sql);

	write_header(out, 'Q', (uint32_t)(4 + n + 1));
	evbuffer_add(out, sql, (size_t)n + 1);
	evbuffer_drain(c->conn.in, frame_total(f));
	c->pool->stats.bytes_received += frame_total(f);
	c->pool->stats.query_count++;
	relay_track_request(s, 'Q');
	return PREP_DONE;
}

/*
 * "PREPARE name [(types)] AS statement", one statement: the text after the
 * name becomes a statement of the registry (shared by every client that
 * prepares the same text), prepared on servers as "sluice_<id>_<gen>".
 */
static enum prep_result handle_sql_prepare(struct client *c, struct server *s,
                                           const struct frame *f)
{
	struct pstmt_registry *reg = &c->w->prepared;
	const char *text = query_text(c->conn.in, f);
	char name[PREP_NAME_MAX + 1];
	size_t after, len;
	struct pstmt *ps;
	uint8_t *body;
	int rc;

	/* Not PREPARE TRANSACTION 'id' (two-phase commit), which the server runs as it is. */
	if (text == NULL ||
	    (after = sqlscan_name(text, f->len - 4, NULL, name, sizeof(name))) == 0 ||
	    !sqlscan_prepare_has_as(text, f->len - 4, after) ||
	    (len = prepare_body(text + after)) == 0)
		return PREP_PASS;
	/*
	 * In a transaction known to be aborted, Postgres refuses it (25P02) and
	 * no name is made: the server says so itself.  Sluice could otherwise
	 * answer it from a server that has the text.
	 */
	if (s->tx_status == 'E' && requests_count(&s->requests) == 0)
		return PREP_PASS;
	if (map_find(c->stmts, name) != NULL)
		return duplicate_prepare(c, s, f, name);
	if ((body = malloc(len)) == NULL)
		return PREP_PASS;
	memcpy(body, text + after, len);
	if ((ps = registry_intern(reg, body, len, true, NULL, 0, 0)) == NULL)
		return PREP_PASS;
	if ((rc = map_put(c, name, ps, NULL, NULL)) < 0)
		return fail_put(c, ps, rc);
	evbuffer_drain(c->conn.in, frame_total(f));
	c->pool->stats.bytes_received += frame_total(f);
	c->pool->stats.query_count++;
	/* Already prepared there: the client still gets its PREPARE, in order. */
	if (!ensure_prepared(s, ps, REQ_SQL_PREPARE, NULL))
		return push_fake(s, REQ_FAKE_PREPARE) ? PREP_READY : PREP_DONE;
	pending_name(s, c, name);
	return PREP_DONE;
}

/*
 * "EXECUTE name[(arguments)]" of a name the client PREPAREd, also after
 * EXPLAIN and in CREATE TABLE AS: renamed, prepared first if needed.
 */
static enum prep_result handle_sql_execute(struct client *c, struct server *s,
                                           const struct frame *f)
{
	const char *text = query_text(c->conn.in, f);
	char name[PREP_NAME_MAX + 1];
	size_t start, after;
	struct pstmt *ps;

	if (text == NULL ||
	    (after = sqlscan_execute_target(text, f->len - 4, name, sizeof(name), &start)) == 0 ||
	    (ps = sql_meaning(c, name)) == NULL)
		return PREP_PASS;
	ensure_prepared(s, ps, REQ_INJECTED_SQL, NULL);
	inspect_statement(s, ps);
	send_renamed(c, s, f, text, start, ps, after);
	relay_track_request(s, 'Q');
	return PREP_DONE;
}

static enum prep_result handle_deallocate(struct client *c, struct server *s, const struct frame *f)
{
	struct evbuffer *in = c->conn.in;
	char sql[DEALLOCATE_PEEK + 1], name[PREP_NAME_MAX + 1];

	if (frame_total(f) > DEALLOCATE_PEEK)
		return PREP_PASS;
	evbuffer_copyout(in, sql, frame_total(f));
	sql[frame_total(f)] = '\0';
	if (!parse_deallocate(sql + FRAME_HEADER_LEN, name, sizeof(name)) ||
	    map_find(c->stmts, name) == NULL)
		return PREP_PASS;
	evbuffer_drain(in, frame_total(f));
	map_remove(&c->w->prepared, c->stmts, name);
	c->pool->stats.query_count++;
	return push_fake(s, REQ_FAKE_DEALLOC) ? PREP_READY : PREP_DONE;
}

/*
 * A Query: only its first keyword is read (the relay's, or in place when the
 * buffer has it contiguous); SQL PREPARE, EXECUTE and DEALLOCATE need the
 * whole text, and EXPLAIN and CREATE (which may EXECUTE) from a client that
 * has names.
 */
static enum prep_result handle_query(struct client *c, struct server *s, const struct frame *f,
                                     const struct msgview *v)
{
	struct evbuffer *in = c->conn.in;
	char head[FRAME_HEADER_LEN + VERB_PEEK];
	struct evbuffer_iovec chain;
	const char *text = head + FRAME_HEADER_LEN;
	size_t n = frame_total(f) < sizeof(head) ? frame_total(f) : sizeof(head);
	enum prep_result r;
	enum sql_verb verb;

	if (v->whole) {
		verb = view_verb(v);
	} else {
		if (evbuffer_peek(in, (ev_ssize_t)n, NULL, &chain, 1) >= 1 && chain.iov_len >= n)
			text = (const char *)chain.iov_base + FRAME_HEADER_LEN;
		else if (evbuffer_copyout(in, head, n) < (ev_ssize_t)n)
			return PREP_PASS;
		verb = sqlscan_verb(text, n - FRAME_HEADER_LEN);
	}
	if (verb == SQL_VERB_EXPLAIN || verb == SQL_VERB_CREATE) {
		if (prepared_map_count(c->stmts) == 0)
			return PREP_PASS;
	} else if (verb != SQL_VERB_PREPARE && verb != SQL_VERB_EXECUTE &&
	           verb != SQL_VERB_DEALLOCATE) {
		return PREP_PASS;
	}
	if ((r = need_text(c, f)) != PREP_DONE)
		return r;
	if (verb == SQL_VERB_PREPARE)
		return handle_sql_prepare(c, s, f);
	if (verb == SQL_VERB_DEALLOCATE)
		return handle_deallocate(c, s, f);
	return handle_sql_execute(c, s, f);
}

/* SQL PREPARE / DEALLOCATE in a Parse ---------------------------------- */

/* The server's transaction is known to be aborted: Postgres refuses statements (25P02). */
static bool known_aborted(const struct server *s)
{
	return s->tx_status == 'E' && requests_count(&s->requests) == 0;
}

/*
 * Where Postgres refuses a Bind or Execute with 25P02 (an aborted
 * transaction), the server is sent a Parse it refuses the same way, so the
 * client gets Postgres' own error and the rest up to Sync is skipped.
 */
static void fail_aborted(struct server *s)
{
	struct msg_builder m;

	msg_begin(&m, 'P');
	msg_add_cstr(&m, SQL_CARRIER);
	msg_add_cstr(&m, "SELECT");
	msg_add_u16(&m, 0);
	msg_finish(&m, conn_out(&s->conn));
	relay_track_request(s, REQ_CARRIER_PARSE);
}

/*
 * The text of a Parse (NUL-terminated) that is an SQL PREPARE of one
 * statement, or a DEALLOCATE of one name, with no parameters: the action it
 * stands for, with one reference for the caller.  NULL when it is neither,
 * or inside an aborted transaction, where the server refuses it itself.
 */
static struct sql_action *parse_action(struct client *c, struct server *s, const char *text,
                                       size_t len, uint16_t nparams)
{
	enum sql_verb verb = sqlscan_verb(text, len);
	char name[PREP_NAME_MAX + 1];
	struct sql_action *a;
	struct pstmt *ps = NULL;
	size_t after, body_len;
	uint8_t *body;

	if ((verb != SQL_VERB_PREPARE && verb != SQL_VERB_DEALLOCATE) || nparams != 0 ||
	    known_aborted(s))
		return NULL;
	if (verb == SQL_VERB_DEALLOCATE && !parse_deallocate(text, name, sizeof(name)))
		return NULL;
	if (verb == SQL_VERB_PREPARE) {
		if ((after = sqlscan_name(text, len, NULL, name, sizeof(name))) == 0 ||
		    !sqlscan_prepare_has_as(text, len, after) ||
		    (body_len = prepare_body(text + after)) == 0 ||
		    (body = malloc(body_len)) == NULL)
			return NULL;
		memcpy(body, text + after, body_len);
		ps = registry_intern(&c->w->prepared, body, body_len, true, NULL, 0, 0);
		if (ps == NULL)
			return NULL;
	}
	if ((a = malloc(sizeof(*a) + strlen(name) + 1)) == NULL)
		return NULL; /* the statement, unreferenced, goes with the next DEALLOCATE ALL */
	a->refs = 1;
	a->ps = ps;
	if (ps != NULL)
		ps->refs++;
	strcpy(a->name, name);
	return a;
}

/* An unnamed Parse of PREPARE or DEALLOCATE: answered here if it is an sql_action. */
static enum prep_result unnamed_action(struct client *c, struct server *s, const struct frame *f)
{
	struct evbuffer *in = c->conn.in;
	enum prep_result r = need_text(c, f);
	const char *text, *nul;
	struct sql_action *a;
	size_t len;

	if (r != PREP_DONE)
		return r;
	text = (const char *)evbuffer_pullup(in, (ev_ssize_t)frame_total(f)) + FRAME_HEADER_LEN + 1;
	len = frame_total(f) - FRAME_HEADER_LEN - 1;
	/* Malformed (no NUL, no parameter count): Postgres judges it. */
	if ((nul = memchr(text, '\0', len)) == NULL || (size_t)(nul - text) + 3 > len)
		return PREP_PASS;
	a = parse_action(c, s, text, (size_t)(nul - text),
	                 (uint16_t)((uint8_t)nul[1] << 8 | (uint8_t)nul[2]));
	if (a == NULL)
		return PREP_PASS;
	if (own_map(c) == NULL) {
		action_unref(&c->w->prepared, a);
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return PREP_CLOSED;
	}
	c->stmts->unnamed = a;
	evbuffer_drain(in, frame_total(f));
	c->pool->stats.bytes_received += frame_total(f);
	push_fake(s, REQ_FAKE_PARSE);
	return PREP_DONE;
}

/* The client has a map: the portal and the actions bound to it live there. */
static void unbind_portal(struct client *c)
{
	action_unref(&c->w->prepared, c->stmts->portal);
	c->stmts->portal = NULL;
	free(c->stmts->portal_name);
	c->stmts->portal_name = NULL;
}

/* A Bind of an sql_action: answered here, the portal remembered. */
static enum prep_result bind_action(struct client *c, struct server *s, const struct frame *f,
                                    const uint8_t *portal, struct sql_action *a)
{
	char *name;

	drop_message(c, f, 0);
	if (known_aborted(s)) {
		fail_aborted(s);
		return PREP_DONE;
	}
	if ((name = strdup((const char *)portal)) == NULL) {
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return PREP_CLOSED;
	}
	a->refs++;
	unbind_portal(c);
	c->stmts->portal = a;
	c->stmts->portal_name = name;
	push_fake(s, REQ_FAKE_BIND);
	return PREP_DONE;
}

/* What Postgres answers to a Describe of a PREPARE or DEALLOCATE statement. */
static void describe_no_rows(struct server *s)
{
	push_fake(s, REQ_FAKE_PARAMS);
	push_fake(s, REQ_FAKE_NODATA);
}

/*
 * Describe or Close (the whole message in `msg`, NUL-terminated) of the
 * portal bound to an sql_action or of an unnamed one: answered here.
 */
static bool describe_close_action(struct client *c, struct server *s, const struct frame *f,
                                  const uint8_t *msg)
{
	const char *name = (const char *)msg + FRAME_HEADER_LEN + 1;
	bool portal;

	if (c->stmts == NULL || f->len < 6 || msg[frame_total(f) - 1] != 0)
		return false;
	portal = msg[FRAME_HEADER_LEN] == 'P' && c->stmts->portal != NULL &&
	         strcmp(name, c->stmts->portal_name) == 0;
	if (!portal &&
	    !(msg[FRAME_HEADER_LEN] == 'S' && name[0] == '\0' && c->stmts->unnamed != NULL))
		return false;
	drop_message(c, f, 0);
	if (f->type == 'D' && portal) {
		push_fake(s, REQ_FAKE_NODATA);
	} else if (f->type == 'D') {
		describe_no_rows(s);
	} else if (portal) {
		unbind_portal(c);
		push_fake(s, REQ_FAKE_CLOSE);
	} else {
		action_unref(&c->w->prepared, c->stmts->unnamed);
		c->stmts->unnamed = NULL;
		push_fake(s, REQ_FAKE_CLOSE);
	}
	return true;
}

/* A name change in flight, in step with its marker; takes `removed`. */
static int change_push(struct server *s, const char *name, struct client_stmt *removed,
                       struct pstmt *added)
{
	struct name_change *ch = malloc(sizeof(*ch) + strlen(name) + 1);

	if (ch == NULL) {
		if (removed != NULL)
			client_stmt_free(&s->w->prepared, removed);
		return -1;
	}
	ch->removed = removed;
	ch->added = added;
	if (added != NULL)
		added->refs++;
	strcpy(ch->name, name);
	if (ring_push(&s->stmts.changes, &ch) < 0) {
		change_free(&s->w->prepared, ch);
		return -1;
	}
	return 0;
}

void prepared_change_done(struct server *s, bool failed)
{
	struct name_change *ch;

	if (failed) {
		s->stmts.failed_changes++; /* undone with the others this error failed */
		return;
	}
	if (ring_pop(&s->stmts.changes, &ch))
		change_free(&s->w->prepared, ch);
}

/* Skipped or refused: Postgres made no such change, so the name is as it was. */
static void undo_change(struct client *c, struct name_change *ch)
{
	struct client_stmt *cs;

	if (ch->added != NULL && (cs = map_find(c->stmts, ch->name)) != NULL && cs->ps == ch->added)
		map_remove(&c->w->prepared, c->stmts, ch->name);
	if (ch->removed != NULL && map_find(c->stmts, ch->name) == NULL) {
		map_link(c->stmts, ch->removed); /* it came from there */
		ch->removed = NULL;
	}
}

/*
 * Newest first, so that a name DEALLOCATEd and PREPAREd again in the failed
 * part of a pipeline is back as it was.
 */
void prepared_undo_changes(struct server *s)
{
	struct stmt_cache *cache = &s->stmts;
	struct name_change *ch;

	if (s->client != NULL)
		for (uint32_t i = cache->failed_changes; i-- > 0;)
			undo_change(s->client, *(struct name_change **)ring_at(&cache->changes, i));
	for (; cache->failed_changes > 0; cache->failed_changes--)
		if (ring_pop(&cache->changes, &ch))
			change_free(&s->w->prepared, ch);
}

/*
 * Execute of a PREPARE: the name is the client's from now on (undone if
 * the server skips or refuses it).  A server that has the statement already
 * is sent nothing; the client still gets its PREPARE, in order.  A name the
 * client has is refused with 42P05 by the server, which aborts a
 * transaction block there too.
 */
static enum prep_result run_prepare(struct client *c, struct server *s, struct sql_action *a)
{
	char sql[DUPLICATE_SQL_MAX];
	int rc;

	if (map_find(c->stmts, a->name) != NULL) {
		duplicate_sql(a->name, sql);
		send_carrier(s, NULL, sql, REQ_CARRIER_EXECUTE);
		return PREP_DONE;
	}
	if ((rc = map_put(c, a->name, a->ps, NULL, NULL)) < 0)
		return fail_put(c, NULL, rc); /* the action holds its statement */
	if (change_push(s, a->name, NULL, a->ps) < 0) {
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return PREP_CLOSED;
	}
	if (!ensure_prepared(s, a->ps, REQ_SQL_EXECUTE, NULL))
		push_fake(s, REQ_FAKE_SQL_PREPARE);
	return PREP_DONE;
}

/*
 * Execute of a DEALLOCATE: a name of the client's is answered here.  Any
 * other goes to the server as written, which refuses it with Postgres' own
 * 26000 (or drops a statement the client made there itself, which pinned it).
 */
static enum prep_result run_deallocate(struct client *c, struct server *s, struct sql_action *a)
{
	struct client_stmt *cs = map_unlink(c->stmts, a->name);
	char sql[QUOTED_NAME_MAX + 16];

	if (cs == NULL) {
		memcpy(sql, "DEALLOCATE ", 11);
		quote_ident(a->name, sql + 11);
		send_carrier(s, NULL, sql, REQ_CARRIER_EXECUTE);
		return PREP_DONE;
	}
	if (change_push(s, a->name, cs, NULL) < 0) {
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return PREP_CLOSED;
	}
	push_fake(s, REQ_FAKE_EXECUTE);
	return PREP_DONE;
}

/* Execute of the portal bound to an sql_action: it is carried out now. */
static enum prep_result handle_execute(struct client *c, struct server *s, const struct frame *f)
{
	struct evbuffer *in = c->conn.in;
	uint8_t msg[FRAME_HEADER_LEN + 2 * (PREP_NAME_MAX + 1) + 4];
	struct sql_action *a = c->stmts != NULL ? c->stmts->portal : NULL;

	if (a == NULL || frame_total(f) > sizeof(msg) || f->len < 9)
		return PREP_PASS;
	if (evbuffer_get_length(in) < frame_total(f))
		return PREP_WAIT;
	evbuffer_copyout(in, msg, frame_total(f));
	if (msg[frame_total(f) - 5] != 0 ||
	    strcmp((const char *)msg + FRAME_HEADER_LEN, c->stmts->portal_name) != 0)
		return PREP_PASS;
	drop_message(c, f, 0);
	c->pool->stats.query_count++;
	if (known_aborted(s)) {
		fail_aborted(s);
		return PREP_DONE;
	}
	return a->ps != NULL ? run_prepare(c, s, a) : run_deallocate(c, s, a);
}

bool prepared_reads_execute(const struct client *c)
{
	return c->stmts != NULL && c->stmts->portal != NULL;
}

/* Another worker's server found the plan of statement `hash` stale: so do ours. */
static void learn_stale(void *arg, uint64_t hash, uint32_t generation)
{
	struct pstmt_registry *reg = arg;

	if (reg->size == 0)
		return;
	for (struct pstmt *ps = reg->buckets[hash & (reg->size - 1)]; ps != NULL; ps = ps->next)
		if (ps->hash == hash && is_shared(ps) && ps->generation < generation)
			ps->generation = generation;
}

/*
 * Plans were forgotten before this worker heard of them (more than
 * STALE_PLANS_MAX went stale meanwhile): any of its statements may be one,
 * and a client told once too often beats one decoding rows with a stale type.
 */
static void assume_all_stale(struct pstmt_registry *reg, uint32_t generation)
{
	for (uint32_t i = 0; i < reg->size; i++)
		for (struct pstmt *ps = reg->buckets[i]; ps != NULL; ps = ps->next)
			if (is_shared(ps) && ps->generation < generation)
				ps->generation = generation;
}

/*
 * Before a statement's generation decides anything here (a stale Bind, a
 * client learning the type, a plan to replace): take in what other workers'
 * servers reported.  One atomic load unless some plan went stale since.
 */
static void catch_up(struct pstmt_registry *reg)
{
	struct stale_plans *t = &reg->shared->stale;
	bool missed = false;

	if (stale_plans_epoch(t) == reg->stale_seen)
		return;
	reg->stale_seen = stale_plans_since(t, reg->stale_seen, learn_stale, reg, &missed);
	if (missed)
		assume_all_stale(reg, reg->stale_seen);
}

/*
 * What the handlers below do for a client with no statement names and
 * nothing sluice answers for it (no SQL PREPARE or DEALLOCATE of a Parse, no
 * portal bound to one), told from the message alone: an unnamed Parse is
 * read further only for PREPARE and DEALLOCATE (handle_unnamed_parse), a
 * Bind's statement name finds nothing (handle_bind), a Describe or Close
 * only of a named statement is answered (handle_describe_close), a Query
 * only of SQL PREPARE, EXECUTE and DEALLOCATE (handle_query).
 */
bool prepared_passes(const struct client *c, const struct frame *f, const struct msgview *v)
{
	const struct stmt_map *m = c->stmts; /* NULL: it never named a statement */
	const char *msg = v->msg, *portal_end;
	size_t total = frame_total(f), got = total < BIND_PEEK ? total : BIND_PEEK;
	enum sql_verb verb;

	if (c->server->requests.skip_to_sync)
		return true;
	if (!v->whole || (m != NULL && (m->count > 0 || m->unnamed != NULL || m->portal != NULL)))
		return false;
	switch (f->type) {
	case 'P':
		verb = view_verb(v);
		return v->text != NULL && v->text - msg == FRAME_HEADER_LEN + 1 &&
		       verb != SQL_VERB_PREPARE && verb != SQL_VERB_DEALLOCATE;
	case 'B':
		/* Both names within what handle_bind reads, or it refuses the Bind. */
		portal_end = memchr(msg + FRAME_HEADER_LEN, '\0', got - FRAME_HEADER_LEN);
		return portal_end != NULL &&
		       memchr(portal_end + 1, '\0', (size_t)(msg + got - portal_end - 1)) != NULL;
	case 'D':
	case 'C':
		return f->len < 6 || msg[FRAME_HEADER_LEN] != 'S' ||
		       msg[FRAME_HEADER_LEN + 1] == '\0' || msg[total - 1] != '\0';
	case 'Q':
		verb = view_verb(v);
		return verb != SQL_VERB_PREPARE && verb != SQL_VERB_EXECUTE &&
		       verb != SQL_VERB_DEALLOCATE;
	default:
		return false;
	}
}

enum prep_result prepared_client_message(struct client *c, const struct frame *f,
                                         const struct msgview *v)
{
	struct server *s = c->server;

	catch_up(&c->w->prepared);
	/*
	 * A server skipping to Sync after an error discards these anyway: forward
	 * as is.  Tracking them would also be wrong: nothing is queued for them,
	 * so a Parse would leave an id in stmt_cache.pending and a cache entry
	 * that no reply ever settles.
	 */
	if (s->requests.skip_to_sync || prepared_passes(c, f, v))
		return PREP_PASS;
	switch (f->type) {
	case 'P':
		return handle_parse(c, s, f, v);
	case 'B':
		return handle_bind(c, s, f);
	case 'D':
	case 'C':
		return handle_describe_close(c, s, f);
	case 'Q':
		return handle_query(c, s, f, v);
	case 'E':
		return handle_execute(c, s, f);
	default:
		return PREP_PASS;
	}
}

/* Server replies ------------------------------------------------------------ */

/*
 * Forget the client's name (by its hash) for a statement its own Parse
 * failed to create; its other names for the same text stay.  A name sluice
 * answers itself (an sql_action) was never the server's to create.
 */
static void map_forget_statement(struct pstmt_registry *reg, struct stmt_map *map, uint64_t id,
                                 uint64_t name)
{
	struct client_stmt *cs;

	if (map == NULL || map->size == 0)
		return;
	/* The name's own chain (name_bucket): only it can hold the name. */
	for (cs = map->buckets[(uint32_t)name & (map->size - 1)]; cs != NULL; cs = cs->next)
		if (cs->ps->id == id && cs->action == NULL && name_hash(map, cs->name) == name) {
			map_remove(reg, map, cs->name);
			return;
		}
}

void prepared_parse_done(struct server *s, bool failed, bool client_parse)
{
	struct stmt_cache *cache = &s->stmts;
	uint64_t id, name = 0;
	struct server_stmt *e;

	if (!ring_pop(&cache->pending, &id))
		return;
	if (client_parse && !ring_pop(&cache->names, &name))
		client_parse = false;
	/* A Parse the server skipped or refused did not create the statement. */
	if (failed && (e = cache_find(cache, id)) != NULL)
		cache_remove(&s->w->prepared, cache, e);
	/* As in Postgres, a Parse that failed leaves no statement under the client's name. */
	if (failed && client_parse && s->client != NULL)
		map_forget_statement(&s->w->prepared, s->client->stmts, id, name);
}

void prepared_sql_done(struct server *s, bool client_prepare, bool skipped)
{
	bool failed = s->stmts.sql_failed || skipped;

	s->stmts.sql_failed = false;
	prepared_parse_done(s, failed, client_prepare);
}

/* Requests queued behind the one at the head, other than the Sync that ends its batch. */
static bool pipelined_behind(const struct requests *q)
{
	uint32_t n = requests_count(q);

	return n > 2 || (n == 2 && *(const uint8_t *)ring_at(&q->kinds, 1) != 'S');
}

void prepared_server_tag(struct server *s, const char *tag)
{
	uint8_t head = requests_head(&s->requests);

	/*
	 * A PREPARE or DEALLOCATE sluice did not follow (a statement after the
	 * first of a Query, one in a Parse it did not read as such, a DEALLOCATE
	 * of a name not the client's, sent as written for Postgres' 26000) may
	 * have named one of the sluice_* statements that other clients' Binds
	 * rely on: the server's statements are no longer what its cache says,
	 * so it goes when its client is through with it.
	 */
	if ((head == 'Q' || head == REQ_LISTEN_QUERY || head == 'E' || head == REQ_LISTEN_EXECUTE ||
	     head == REQ_CARRIER_EXECUTE) &&
	    !s->close_needed && pool_mode(s->pool) != POOL_SESSION &&
	    s->w->cfg->max_prepared_statements > 0 &&
	    (strcmp(tag, "PREPARE") == 0 || strcmp(tag, "DEALLOCATE") == 0)) {
		slog(s, LOG_INFO, "a %s sluice did not follow: retired at release", tag);
		s->close_needed = true;
	}
	if (strcmp(tag, "DEALLOCATE ALL") != 0 && strcmp(tag, "DISCARD ALL") != 0)
		return;
	/*
	 * Requests pipelined behind it (the relay holds the input behind the
	 * forms it recognises, relay.c) were sent against the cache cleared
	 * below: the server may hold statements it no longer lists.
	 */
	if (pipelined_behind(&s->requests) && !s->close_needed) {
		slog(s, LOG_INFO, "requests pipelined behind a %s: retired at release", tag);
		s->close_needed = true;
	}
	/* The server dropped every statement, ours included; a client asked to drop its own. */
	cache_clear(&s->w->prepared, &s->stmts);
	if (s->client != NULL)
		map_clear(&s->w->prepared, s->client->stmts);
}

void prepared_bind_done(struct server *s)
{
	ring_pop(&s->stmts.bound, NULL);
}

void prepared_stale_skipped(struct server *s)
{
	const uint64_t *id = ring_peek(&s->stmts.bound);
	struct stmt_map *m = s->client != NULL ? s->client->stmts : NULL;

	if (id == NULL || m == NULL)
		return;
	for (uint32_t i = 0; i < m->size; i++)
		for (struct client_stmt *cs = m->buckets[i]; cs != NULL; cs = cs->next)
			if (cs->ps->id == *id && cs->generation == cs->ps->generation)
				cs->generation = cs->ps->generation - 1;
}

/* Every name the linked client has for `ps` now knows its new result type. */
static void client_saw_new_type(struct client *c, const struct pstmt *ps)
{
	if (c->stmts == NULL)
		return;
	for (uint32_t i = 0; i < c->stmts->size; i++)
		for (struct client_stmt *cs = c->stmts->buckets[i]; cs != NULL; cs = cs->next)
			if (cs->ps == ps)
				cs->generation = ps->generation;
}

void prepared_server_error(struct server *s, const char *sqlstate, const char *msg)
{
	const uint64_t *bound = ring_peek(&s->stmts.bound);
	struct server_stmt *e;

	if (strcmp(sqlstate, SQLSTATE_FEATURE_NOT_SUPPORTED) != 0 || msg == NULL ||
	    strstr(msg, "cached plan must not change result type") == NULL ||
	    requests_head(&s->requests) != REQ_TRACKED_BIND || bound == NULL)
		return;
	e = cache_find(&s->stmts, *bound);
	if (e == NULL)
		return;
	/*
	 * The statement's result type changed: a new name, so each server
	 * prepares it again on next use (closing the old), and every other client
	 * that knew the old type gets this error once, as it would from Postgres,
	 * on whichever worker it is.  Not again when another server already
	 * reported it under this name.
	 */
	if (e->generation == e->ps->generation) {
		if (is_shared(e->ps))
			e->ps->generation = stale_plans_report(&s->w->prepared.shared->stale,
			                                       e->ps->hash, e->generation);
		else
			e->ps->generation++;
		slog(s, LOG_INFO,
		     "result type of a prepared statement changed: it will be prepared again");
	}
	if (s->client != NULL)
		client_saw_new_type(s->client, e->ps);
}

void prepared_stale_error(struct server *s)
{
	const struct error_fields f = {.routine = "RevalidateCachedQuery"};

	if (s->client == NULL)
		return;
	/* What Postgres sends; drivers recognise it by code and routine (asyncpg, postgres.js). */
	build_error_fields(conn_out(&s->client->conn), "ERROR", SQLSTATE_FEATURE_NOT_SUPPORTED,
	                   "cached plan must not change result type", &f);
}

bool prepared_flush_fakes(struct server *s)
{
	struct client *c = s->client;
	bool ready = false;

	for (;;) {
		uint8_t head = requests_head(&s->requests);
		struct evbuffer *out = c != NULL ? conn_out(&c->conn) : NULL;

		if (!requests_is_fake(head))
			return ready;
		requests_pop(&s->requests);
		if (head == REQ_FAKE_EXECUTE || head == REQ_FAKE_SQL_PREPARE ||
		    head == REQ_FAKE_UNNAME)
			prepared_change_done(s, false);
		if (out == NULL)
			continue;
		if (head == REQ_FAKE_DEALLOC || head == REQ_FAKE_PREPARE) {
			build_command_complete(out,
			                       head == REQ_FAKE_DEALLOC ? "DEALLOCATE" : "PREPARE");
			build_ready(out, s->tx_status);
			ready = true;
		} else if (head == REQ_FAKE_EXECUTE || head == REQ_FAKE_SQL_PREPARE) {
			build_command_complete(out,
			                       head == REQ_FAKE_EXECUTE ? "DEALLOCATE" : "PREPARE");
		} else if (head == REQ_FAKE_PARAMS) {
			const uint8_t msg[7] = {'t', 0, 0, 0, 6, 0, 0}; /* no parameters */

			evbuffer_add(out, msg, sizeof(msg));
		} else {
			/* The marker is the message's type, but for a Close that ends a name. */
			const uint8_t msg[5] = {head == REQ_FAKE_UNNAME ? '3' : head, 0, 0, 0, 4};

			evbuffer_add(out, msg, sizeof(msg));
		}
	}
}
