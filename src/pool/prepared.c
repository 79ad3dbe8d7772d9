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
#include "proto/sqlscan.h"
#include "proto/sqlstate.h"
#include "pool/relay.h"
#include "pool/requests.h"
#include "pool/server.h"
#include "pool/worker.h"

#define PREP_NAME_MAX   1024          /* longest client statement name accepted */
#define SERVER_NAME_MAX 48            /* "sluice_<id>_<generation>" */
#define DEALLOCATE_PEEK 512           /* Query bytes inspected for DEALLOCATE name */
#define VERB_PEEK       64            /* Query bytes read for its first keyword */
#define SQL_TEXT_MAX    (1024 * 1024) /* longest SQL PREPARE / EXECUTE tracked */
/* A statement no server has: binding it fails, and that failure is what a stale client sees. */
#define STALE_NAME "sluice_stale_result_type"

static void server_name(const struct pstmt *ps, uint32_t generation, char out[SERVER_NAME_MAX])
{
	snprintf(out, SERVER_NAME_MAX, "sluice_%llu_%u", (unsigned long long)ps->id, generation);
}

/* Registry --------------------------------------------------------------- */

static void pstmt_unref(struct pstmt_registry *reg, struct pstmt *ps)
{
	struct pstmt **slot;

	if (--ps->refs > 0)
		return;
	for (slot = &reg->buckets[ps->hash & (reg->size - 1)]; *slot != NULL;
	     slot = &(*slot)->next) {
		if (*slot == ps) {
			*slot = ps->next;
			break;
		}
	}
	reg->count--;
	free(ps->body);
	free(ps);
}

static struct pstmt *registry_find(const struct pstmt_registry *reg, uint64_t hash,
                                   const uint8_t *body, size_t len, bool sql)
{
	if (reg->size == 0)
		return NULL;
	for (struct pstmt *ps = reg->buckets[hash & (reg->size - 1)]; ps != NULL; ps = ps->next)
		if (ps->hash == hash && ps->len == len && ps->sql == sql &&
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
	ps->id = ++reg->next_id;
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
	memset(reg, 0, sizeof(*reg));
}

/* Client names ------------------------------------------------------------ */

static uint32_t name_bucket(const struct stmt_map *map, const char *name)
{
	return (uint32_t)hash_keyed(map->key, name, strlen(name)) & (map->size - 1);
}

static struct client_stmt *map_find(const struct stmt_map *map, const char *name)
{
	if (map->size == 0)
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

/* Point `name` at ps (replacing an older meaning); takes a reference. */
static int map_put(struct pstmt_registry *reg, struct stmt_map *map, const char *name,
                   struct pstmt *ps)
{
	struct client_stmt *cs = map_find(map, name);
	uint32_t b;

	if (cs != NULL) {
		ps->refs++;
		pstmt_unref(reg, cs->ps);
		cs->ps = ps;
		cs->generation = ps->generation;
		return 0;
	}
	map->key = &reg->key;
	if (map->count >= map->size && map_grow(map) < 0)
		return -1;
	cs = malloc(sizeof(*cs));
	if (cs == NULL || (cs->name = strdup(name)) == NULL) {
		free(cs);
		return -1;
	}
	ps->refs++;
	cs->ps = ps;
	cs->generation = ps->generation;
	b = name_bucket(map, name);
	cs->next = map->buckets[b];
	map->buckets[b] = cs;
	map->count++;
	return 0;
}

static void map_remove(struct pstmt_registry *reg, struct stmt_map *map, const char *name)
{
	struct client_stmt **slot;

	if (map->size == 0)
		return;
	for (slot = &map->buckets[name_bucket(map, name)]; *slot != NULL; slot = &(*slot)->next) {
		struct client_stmt *cs = *slot;

		if (strcmp(cs->name, name) == 0) {
			*slot = cs->next;
			pstmt_unref(reg, cs->ps);
			free(cs->name);
			free(cs);
			map->count--;
			return;
		}
	}
}

static void map_clear(struct pstmt_registry *reg, struct stmt_map *map)
{
	for (uint32_t i = 0; i < map->size; i++) {
		struct client_stmt *cs = map->buckets[i];

		while (cs != NULL) {
			struct client_stmt *next = cs->next;

			pstmt_unref(reg, cs->ps);
			free(cs->name);
			free(cs);
			cs = next;
		}
		map->buckets[i] = NULL;
	}
	map->count = 0;
}

void prepared_map_fini(struct stmt_map *map, struct pstmt_registry *reg)
{
	map_clear(reg, map);
	free(map->buckets);
	memset(map, 0, sizeof(*map));
}

/* Server caches -------------------------------------------------------------- */

void prepared_cache_init(struct stmt_cache *cache)
{
	memset(cache, 0, sizeof(*cache));
	list_init(&cache->lru);
	ring_init(&cache->pending, sizeof(uint64_t));
	ring_init(&cache->bound, sizeof(uint64_t));
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

void prepared_cache_fini(struct stmt_cache *cache, struct pstmt_registry *reg)
{
	cache_clear(reg, cache);
	free(cache->buckets);
	ring_fini(&cache->pending);
	ring_fini(&cache->bound);
	prepared_cache_init(cache);
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

/* An SQL statement is prepared on a server with SQL, under the sluice name. */
static void send_sql_prepare(struct server *s, struct pstmt *ps, uint8_t marker)
{
	struct evbuffer *out = conn_out(&s->conn);
	char name[SERVER_NAME_MAX];
	uint8_t hdr[5];
	uint32_t len;

	server_name(ps, ps->generation, name);
	len = (uint32_t)(4 + 8 + strlen(name) + 1 + ps->len + 1);
	hdr[0] = 'Q';
	hdr[1] = (uint8_t)(len >> 24);
	hdr[2] = (uint8_t)(len >> 16);
	hdr[3] = (uint8_t)(len >> 8);
	hdr[4] = (uint8_t)len;
	evbuffer_add(out, hdr, sizeof(hdr));
	evbuffer_add(out, "PREPARE ", 8);
	evbuffer_add(out, name, strlen(name));
	evbuffer_add(out, " ", 1);
	evbuffer_add(out, ps->body, ps->len);
	evbuffer_add(out, "", 1);
	relay_track_request(s, marker);
	ring_push(&s->stmts.pending, &ps->id);
}

static void send_close(struct server *s, const struct pstmt *ps, uint32_t generation)
{
	struct msg_builder m;
	char name[SERVER_NAME_MAX];

	server_name(ps, generation, name);
	msg_begin(&m, 'C');
	msg_add_u8(&m, 'S');
	msg_add_cstr(&m, name);
	msg_finish(&m, conn_out(&s->conn));
	relay_track_request(s, REQ_INJECTED_CLOSE);
}

/* Make room under max_prepared_statements by closing the least recently used. */
static void evict_if_full(struct server *s)
{
	struct stmt_cache *cache = &s->stmts;
	int max = s->w->cfg->max_prepared_statements;

	while (cache->count > 0 && cache->count >= (uint32_t)max) {
		struct server_stmt *old = list_entry(cache->lru.prev, struct server_stmt, lru);

		send_close(s, old->ps, old->generation);
		cache_remove(&s->w->prepared, cache, old);
	}
}

/*
 * Have `ps` prepared on the server before the message about to be sent.
 * `marker` is REQ_TRACKED_PARSE for a client Parse (its reply goes to the
 * client) or REQ_INJECTED_PARSE (reply swallowed): only those settle the
 * statement ids in stmt_cache.pending.  Returns false if it already was.
 */
static bool ensure_prepared(struct server *s, struct pstmt *ps, uint8_t marker)
{
	struct stmt_cache *cache = &s->stmts;
	struct server_stmt *e = cache_find(cache, ps->id);

	if (e != NULL && e->generation == ps->generation) {
		list_del(&e->lru);
		list_add_head(&cache->lru, &e->lru);
		return false;
	}
	if (e != NULL) {
		/* A stale plan under the old name: drop it, prepare under the new one. */
		send_close(s, ps, e->generation);
		cache_remove(&s->w->prepared, cache, e);
	}
	evict_if_full(s);
	if (ps->sql)
		send_sql_prepare(s, ps, marker);
	else
		send_parse(s, ps, marker);
	e = calloc(1, sizeof(*e));
	if (e == NULL || (cache->count >= cache->size && cache_grow(cache) < 0)) {
		free(e);
		return true;
	}
	ps->refs++;
	e->ps = ps;
	e->generation = ps->generation;
	e->next = cache->buckets[ps->id & (cache->size - 1)];
	cache->buckets[ps->id & (cache->size - 1)] = e;
	list_add_head(&cache->lru, &e->lru);
	cache->count++;
	return true;
}

/* Client messages ------------------------------------------------------------- */

bool prepared_tracking(const struct client *c)
{
	return c->w->cfg->max_prepared_statements > 0 && c->pool != NULL &&
	       pool_mode(c->pool) != POOL_SESSION;
}

static void write_header(struct evbuffer *out, uint8_t type, uint32_t len)
{
	const uint8_t hdr[5] = {type, (uint8_t)(len >> 24), (uint8_t)(len >> 16),
	                        (uint8_t)(len >> 8), (uint8_t)len};

	evbuffer_add(out, hdr, sizeof(hdr));
}

/* Copy up to cap bytes of the message (header included) without consuming it. */
static size_t peek(struct evbuffer *in, const struct frame *f, uint8_t *buf, size_t cap)
{
	size_t want = frame_total(f) < cap ? frame_total(f) : cap;
	ev_ssize_t n = evbuffer_copyout(in, buf, want);

	return n < 0 ? 0 : (size_t)n;
}

static void push_fake(struct server *s, uint8_t marker)
{
	requests_push(&s->requests, marker);
	prepared_flush_fakes(s);
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

static bool parse_deallocate(const char *sql, char *name, size_t cap);

/*
 * An unnamed Parse of "EXECUTE name(...)" of a name the client PREPAREd in
 * SQL (psycopg 3 sends EXECUTE with parameters this way): the name is
 * rewritten.  A server that lacks the statement gets its PREPARE first, as a
 * Query, but only between requests (nothing outstanding): inside a pipeline
 * the Parse passes through and fails with 26000.
 */
static enum prep_result unnamed_execute(struct client *c, struct server *s, const struct frame *f,
                                        const char *msg)
{
	const char *text = msg + FRAME_HEADER_LEN + 1;
	size_t text_len = strnlen(text, frame_total(f) - FRAME_HEADER_LEN - 1);
	size_t tail = frame_total(f) - FRAME_HEADER_LEN - 1 - text_len, after;
	struct evbuffer *out = conn_out(&s->conn);
	char name[PREP_NAME_MAX + 1], sname[SERVER_NAME_MAX];
	struct client_stmt *cs;
	struct server_stmt *e;

	if (tail == 0 || (after = sqlscan_name(text, text_len, NULL, name, sizeof(name))) == 0 ||
	    (cs = map_find(&c->stmts, name)) == NULL || !cs->ps->sql)
		return PREP_PASS;
	e = cache_find(&s->stmts, cs->ps->id);
	if ((e == NULL || e->generation != cs->ps->generation) &&
	    (requests_count(&s->requests) > 0 || s->requests.skip_to_sync))
		return PREP_PASS;
	ensure_prepared(s, cs->ps, REQ_INJECTED_SQL);
	server_name(cs->ps, cs->ps->generation, sname);
	write_header(out, 'P', (uint32_t)(4 + 1 + 8 + strlen(sname) + text_len - after + tail));
	evbuffer_add(out, "", 1);
	evbuffer_add(out, "EXECUTE ", 8);
	evbuffer_add(out, sname, strlen(sname));
	evbuffer_add(out, text + after, text_len - after);
	evbuffer_add(out, text + text_len, tail);
	evbuffer_drain(c->conn.in, frame_total(f));
	c->pool->stats.bytes_received += frame_total(f);
	relay_track_request(s, 'P');
	return PREP_DONE;
}

/*
 * The unnamed statement is the client's own business, except `DEALLOCATE
 * name` of a tracked name sent through the extended protocol (psycopg 3,
 * libpq's PQexecParams): the name exists only in sluice, so the Parse, Bind,
 * Describe and Execute are answered here and only the Sync reaches Postgres.
 */
static enum prep_result handle_unnamed_parse(struct client *c, struct server *s,
                                             const struct frame *f)
{
	struct evbuffer *in = c->conn.in;
	char sql[DEALLOCATE_PEEK + 1], name[PREP_NAME_MAX + 1];

	c->fake_unnamed = false;
	if (frame_total(f) > DEALLOCATE_PEEK)
		return PREP_PASS;
	if (evbuffer_get_length(in) < frame_total(f))
		return PREP_WAIT;
	evbuffer_copyout(in, sql, frame_total(f));
	sql[frame_total(f)] = '\0';
	if (sqlscan_verb(sql + FRAME_HEADER_LEN + 1, frame_total(f) - FRAME_HEADER_LEN - 1) ==
	    SQL_VERB_EXECUTE)
		return unnamed_execute(c, s, f, sql);
	if (!parse_deallocate(sql + FRAME_HEADER_LEN + 1, name, sizeof(name)) ||
	    map_find(&c->stmts, name) == NULL)
		return PREP_PASS;
	evbuffer_drain(in, frame_total(f));
	c->pool->stats.bytes_received += frame_total(f);
	map_remove(&c->w->prepared, &c->stmts, name);
	c->fake_unnamed = true;
	push_fake(s, REQ_FAKE_PARSE);
	return PREP_DONE;
}

/* Drop the rest of a client message whose first `done` bytes were handled. */
static void drop_message(struct client *c, const struct frame *f, size_t done)
{
	struct evbuffer *in = c->conn.in;
	size_t rest = frame_total(f) - done, avail = evbuffer_get_length(in);
	size_t now = rest < avail ? rest : avail;

	evbuffer_drain(in, now);
	c->skip_remaining = rest - now;
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
	cs->generation = cs->ps->generation;
	return PREP_DONE;
}

static enum prep_result handle_parse(struct client *c, struct server *s, const struct frame *f)
{
	struct evbuffer *in = c->conn.in;
	struct pstmt_registry *reg = &c->w->prepared;
	uint8_t head[FRAME_HEADER_LEN + PREP_NAME_MAX + 1];
	size_t got = peek(in, f, head, sizeof(head)), name_len, body_len;
	const uint8_t *nul = memchr(head + FRAME_HEADER_LEN, 0, got - FRAME_HEADER_LEN);
	struct msg_reader r;
	char name[PREP_NAME_MAX + 1];
	uint8_t *body;
	uint16_t nparams;
	uint64_t hash;
	struct pstmt *ps;

	if (nul == NULL) {
		if (got == sizeof(head)) {
			client_fail(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED, "statement name too long");
			return PREP_CLOSED;
		}
		return need_whole(c, f);
	}
	name_len = (size_t)(nul - head) - FRAME_HEADER_LEN;
	if (name_len == 0)
		return handle_unnamed_parse(c, s, f);
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
	/* Drawn at the first Parse the worker sees: the registry starts zeroed with the worker. */
	if (!reg->key.drawn)
		hash_key_draw(&reg->key);
	hash = hash_keyed(&reg->key, body, body_len);
	ps = registry_find(reg, hash, body, body_len, false);
	if (ps != NULL)
		free(body);
	else if ((ps = registry_add(reg, hash, body, body_len)) == NULL)
		free(body);
	if (ps == NULL || map_put(reg, &c->stmts, name, ps) < 0) {
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return PREP_CLOSED;
	}
	ps->reg = reg;
	/* Already prepared there: the client still gets its ParseComplete, in order. */
	if (!ensure_prepared(s, ps, REQ_TRACKED_PARSE))
		push_fake(s, REQ_FAKE_PARSE);
	return PREP_DONE;
}

/* Bind and Describe of a named statement: rewrite the name, prepare first if needed. */
static enum prep_result handle_bind(struct client *c, struct server *s, const struct frame *f)
{
	struct evbuffer *in = c->conn.in;
	struct evbuffer *out = conn_out(&s->conn);
	uint8_t head[FRAME_HEADER_LEN + 2 * (PREP_NAME_MAX + 1)];
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
	if (portal_len == 0)
		c->fake_portal = false;
	if (stmt_len == 0 && c->fake_unnamed && portal_len == 0) {
		drop_message(c, f, 0);
		c->fake_portal = true;
		push_fake(s, REQ_FAKE_BIND);
		return PREP_DONE;
	}
	if (stmt_len == 0 || (cs = map_find(&c->stmts, (const char *)portal_end + 1)) == NULL ||
	    cs->ps->sql)
		return PREP_PASS;
	prefix = FRAME_HEADER_LEN + portal_len + 1 + stmt_len + 1;
	if (c->w->cfg->query_stats)
		qstats_bind(c, cs->ps);
	if (cs->generation != cs->ps->generation)
		return stale_bind(c, s, f, p, portal_len, prefix, cs);
	ensure_prepared(s, cs->ps, REQ_INJECTED_PARSE);
	if (cs->ps->session_state)
		server_inspect_sql(s, (const char *)cs->ps->body,
		                   strnlen((const char *)cs->ps->body, cs->ps->len));
	server_name(cs->ps, cs->ps->generation, name);
	write_header(out, 'B', (uint32_t)(f->len - stmt_len + strlen(name)));
	evbuffer_add(out, p, portal_len + 1);
	evbuffer_add(out, name, strlen(name) + 1);
	evbuffer_drain(in, prefix);
	relay_track_request(s, REQ_TRACKED_BIND);
	ring_push(&s->stmts.bound, &cs->ps->id);
	rest = frame_total(f) - prefix;
	moved = rest ? (size_t)evbuffer_remove_buffer(in, out, rest) : 0;
	c->fwd_remaining = rest - moved;
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
	if (f->type == 'D' && c->fake_portal && f->len == 6 && msg[FRAME_HEADER_LEN] == 'P' &&
	    msg[FRAME_HEADER_LEN + 1] == 0) {
		drop_message(c, f, 0);
		push_fake(s, REQ_FAKE_NODATA);
		return PREP_DONE;
	}
	if (f->len < 6 || msg[FRAME_HEADER_LEN] != 'S' || msg[FRAME_HEADER_LEN + 1] == 0 ||
	    msg[frame_total(f) - 1] != 0)
		return PREP_PASS; /* portals, the unnamed statement, or malformed: Postgres judges
		                   */
	evbuffer_drain(in, frame_total(f));
	c->pool->stats.bytes_received += frame_total(f);
	if (f->type == 'C') {
		/* Closing a name that does not exist is not an error in Postgres either. */
		map_remove(&c->w->prepared, &c->stmts, (const char *)msg + FRAME_HEADER_LEN + 1);
		push_fake(s, REQ_FAKE_CLOSE);
		return PREP_DONE;
	}
	cs = map_find(&c->stmts, (const char *)msg + FRAME_HEADER_LEN + 1);
	if (cs != NULL && cs->ps->sql)
		cs = NULL; /* SQL PREPAREd: only EXECUTE reaches it */
	if (cs != NULL) {
		/* The client asks for the result type again: it will know the new one. */
		cs->generation = cs->ps->generation;
		ensure_prepared(s, cs->ps, REQ_INJECTED_PARSE);
		server_name(cs->ps, cs->ps->generation, name);
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

/* Send the client's Query as `verb` + the sluice name of ps + the text after its name. */
static void send_renamed(struct client *c, struct server *s, const struct frame *f,
                         const char *verb, const struct pstmt *ps, size_t after)
{
	struct evbuffer *out = conn_out(&s->conn);
	const char *text = query_text(c->conn.in, f);
	char name[SERVER_NAME_MAX];
	size_t rest = f->len - 4 - after;

	server_name(ps, ps->generation, name);
	write_header(out, 'Q', (uint32_t)(4 + strlen(verb) + strlen(name) + rest));
	evbuffer_add(out, verb, strlen(verb));
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
	uint64_t hash;

	if (text == NULL ||
	    (after = sqlscan_name(text, f->len - 4, NULL, name, sizeof(name))) == 0 ||
	    (len = prepare_body(text + after)) == 0)
		return PREP_PASS;
	if (!reg->key.drawn)
		hash_key_draw(&reg->key);
	hash = hash_keyed(&reg->key, text + after, len);
	if ((ps = registry_find(reg, hash, (const uint8_t *)text + after, len, true)) == NULL) {
		if ((body = malloc(len)) == NULL)
			return PREP_PASS;
		memcpy(body, text + after, len);
		if ((ps = registry_add(reg, hash, body, len)) == NULL) {
			free(body);
			return PREP_PASS;
		}
		ps->sql = true;
	}
	ps->reg = reg;
	if (map_put(reg, &c->stmts, name, ps) < 0) {
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return PREP_CLOSED;
	}
	evbuffer_drain(c->conn.in, frame_total(f));
	c->pool->stats.bytes_received += frame_total(f);
	c->pool->stats.query_count++;
	/* Already prepared there: the client still gets its PREPARE, in order. */
	if (!ensure_prepared(s, ps, REQ_SQL_PREPARE))
		push_fake(s, REQ_FAKE_PREPARE);
	return PREP_DONE;
}

/* "EXECUTE name[(arguments)]" of a name the client PREPAREd: renamed, prepared first if needed. */
static enum prep_result handle_sql_execute(struct client *c, struct server *s,
                                           const struct frame *f)
{
	const char *text = query_text(c->conn.in, f);
	char name[PREP_NAME_MAX + 1];
	struct client_stmt *cs;
	size_t after;

	if (text == NULL ||
	    (after = sqlscan_name(text, f->len - 4, NULL, name, sizeof(name))) == 0 ||
	    (cs = map_find(&c->stmts, name)) == NULL || !cs->ps->sql)
		return PREP_PASS;
	ensure_prepared(s, cs->ps, REQ_INJECTED_SQL);
	send_renamed(c, s, f, "EXECUTE ", cs->ps, after);
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
	    map_find(&c->stmts, name) == NULL)
		return PREP_PASS;
	evbuffer_drain(in, frame_total(f));
	map_remove(&c->w->prepared, &c->stmts, name);
	c->pool->stats.query_count++;
	push_fake(s, REQ_FAKE_DEALLOC);
	return PREP_DONE;
}

/*
 * A Query: only its first keyword is read (in place when the buffer has it
 * contiguous); SQL PREPARE, EXECUTE and DEALLOCATE need the whole text.
 */
static enum prep_result handle_query(struct client *c, struct server *s, const struct frame *f)
{
	struct evbuffer *in = c->conn.in;
	char head[FRAME_HEADER_LEN + VERB_PEEK];
	struct evbuffer_iovec v;
	const char *text = head + FRAME_HEADER_LEN;
	size_t n = frame_total(f) < sizeof(head) ? frame_total(f) : sizeof(head);
	enum sql_verb verb;

	if (evbuffer_peek(in, (ev_ssize_t)n, NULL, &v, 1) >= 1 && v.iov_len >= n)
		text = (const char *)v.iov_base + FRAME_HEADER_LEN;
	else if (evbuffer_copyout(in, head, n) < (ev_ssize_t)n)
		return PREP_PASS;
	verb = sqlscan_verb(text, n - FRAME_HEADER_LEN);
	if ((verb != SQL_VERB_PREPARE && verb != SQL_VERB_EXECUTE && verb != SQL_VERB_DEALLOCATE) ||
	    frame_total(f) > SQL_TEXT_MAX)
		return PREP_PASS;
	if (need_whole(c, f) == PREP_WAIT)
		return PREP_WAIT;
	conn_set_read_high(&c->conn, RELAY_READ_HIGH);
	if (verb == SQL_VERB_PREPARE)
		return handle_sql_prepare(c, s, f);
	if (verb == SQL_VERB_EXECUTE)
		return handle_sql_execute(c, s, f);
	return handle_deallocate(c, s, f);
}

/* Execute of the unnamed portal bound to a DEALLOCATE sluice answers. */
static enum prep_result handle_execute(struct client *c, struct server *s, const struct frame *f)
{
	struct evbuffer *in = c->conn.in;
	uint8_t head[FRAME_HEADER_LEN + 1];

	if (!c->fake_portal || f->len != 9)
		return PREP_PASS; /* a named portal: "" + max rows is 4 + 1 + 4 bytes */
	if (evbuffer_copyout(in, head, sizeof(head)) < (ev_ssize_t)sizeof(head) ||
	    head[FRAME_HEADER_LEN] != 0)
		return PREP_PASS;
	drop_message(c, f, 0);
	c->pool->stats.query_count++;
	push_fake(s, REQ_FAKE_EXECUTE);
	return PREP_DONE;
}

enum prep_result prepared_client_message(struct client *c, const struct frame *f)
{
	struct server *s = c->server;

	/*
	 * A server skipping to Sync after an error discards these anyway: forward
	 * as is.  Tracking them would also be wrong: nothing is queued for them,
	 * so a Parse would leave an id in stmt_cache.pending and a cache entry
	 * that no reply ever settles.
	 */
	if (s->requests.skip_to_sync)
		return PREP_PASS;
	switch (f->type) {
	case 'P':
		return handle_parse(c, s, f);
	case 'B':
		return handle_bind(c, s, f);
	case 'D':
	case 'C':
		return handle_describe_close(c, s, f);
	case 'Q':
		return handle_query(c, s, f);
	case 'E':
		return handle_execute(c, s, f);
	default:
		return PREP_PASS;
	}
}

/* Server replies ------------------------------------------------------------ */

/* Forget the client's names for a statement its own Parse failed to create. */
static void map_forget_statement(struct pstmt_registry *reg, struct stmt_map *map, uint64_t id)
{
	for (uint32_t i = 0; i < map->size; i++) {
		struct client_stmt *cs = map->buckets[i];

		while (cs != NULL) {
			struct client_stmt *next = cs->next;

			if (cs->ps->id == id)
				map_remove(reg, map, cs->name);
			cs = next;
		}
	}
}

void prepared_parse_done(struct server *s, bool failed, bool client_parse)
{
	struct stmt_cache *cache = &s->stmts;
	uint64_t id;
	struct server_stmt *e;

	if (!ring_pop(&cache->pending, &id))
		return;
	/* A Parse the server skipped or refused did not create the statement. */
	if (failed && (e = cache_find(cache, id)) != NULL)
		cache_remove(&s->w->prepared, cache, e);
	/* As in Postgres, a Parse that failed leaves no statement under the client's name. */
	if (failed && client_parse && s->client != NULL)
		map_forget_statement(&s->w->prepared, &s->client->stmts, id);
}

void prepared_sql_done(struct server *s, bool client_prepare)
{
	bool failed = s->stmts.sql_failed;

	s->stmts.sql_failed = false;
	prepared_parse_done(s, failed, client_prepare);
}

void prepared_server_tag(struct server *s, const char *tag)
{
	if (strcmp(tag, "DEALLOCATE ALL") != 0 && strcmp(tag, "DISCARD ALL") != 0)
		return;
	/* The server dropped every statement, ours included; a client asked to drop its own. */
	cache_clear(&s->w->prepared, &s->stmts);
	if (s->client != NULL)
		map_clear(&s->w->prepared, &s->client->stmts);
}

void prepared_bind_done(struct server *s)
{
	ring_pop(&s->stmts.bound, NULL);
}

/* Every name the linked client has for `ps` now knows its new result type. */
static void client_saw_new_type(struct client *c, const struct pstmt *ps)
{
	for (uint32_t i = 0; i < c->stmts.size; i++)
		for (struct client_stmt *cs = c->stmts.buckets[i]; cs != NULL; cs = cs->next)
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
	 * that knew the old type gets this error once, as it would from Postgres.
	 * Not again when another server already reported it under this name.
	 */
	if (e->generation == e->ps->generation) {
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
		if (out == NULL)
			continue;
		if (head == REQ_FAKE_DEALLOC || head == REQ_FAKE_PREPARE) {
			build_command_complete(out,
			                       head == REQ_FAKE_DEALLOC ? "DEALLOCATE" : "PREPARE");
			build_ready(out, s->tx_status);
			ready = true;
		} else if (head == REQ_FAKE_EXECUTE) {
			build_command_complete(out, "DEALLOCATE");
		} else {
			const uint8_t msg[5] = {head, 0, 0, 0, 4};

			evbuffer_add(out, msg, sizeof(msg));
		}
	}
}
