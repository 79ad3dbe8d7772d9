/*
 * Session parameter tracking; see params.h.  Lists are small (a dozen
 * entries), so linear search beats any index; allocation happens only when
 * a value changes, never per message.
 */
#include "proto/params.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Handled by sluice itself: routing, auth, protocol options. */
static const char *const startup_only[] = {"user", "database", "options", "replication", NULL};

/* Reported by the server but not settable with SET. */
static const char *const read_only[] = {
    "server_version",        "server_encoding", "integer_datetimes", "is_superuser",
    "session_authorization", "in_hot_standby",  "scram_iterations",  NULL};

static bool name_in(const char *const *list, const char *name)
{
	for (; *list != NULL; list++)
		if (strcasecmp(*list, name) == 0)
			return true;
	return false;
}

bool param_is_startup_only(const char *name)
{
	return name_in(startup_only, name) || strncmp(name, "_pq_.", 5) == 0;
}

bool param_is_read_only(const char *name)
{
	return name_in(read_only, name);
}

void param_list_init(struct param_list *l)
{
	l->items = NULL;
	l->count = l->cap = 0;
	l->fingerprint = 0;
	l->effective_key = l->effective = 0;
}

void param_list_fini(struct param_list *l)
{
	for (size_t i = 0; i < l->count; i++) {
		free(l->items[i].name);
		free(l->items[i].value);
	}
	free(l->items);
	param_list_init(l);
}

void param_list_copy(struct param_list *dst, const struct param_list *src)
{
	param_list_fini(dst);
	for (size_t i = 0; i < src->count; i++)
		param_set(dst, src->items[i].name, src->items[i].value);
}

uint64_t param_hash(const char *name, const char *value)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const char *p = name; *p != '\0'; p++)
		h = (h ^ (uint8_t)tolower((unsigned char)*p)) * 0x100000001b3ULL;
	h = (h ^ 0xff) * 0x100000001b3ULL;
	for (const char *p = value; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	/* splitmix64 finaliser so XOR-combining entries does not cancel patterns */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	return h ^ (h >> 31);
}

struct param *param_find(const struct param_list *l, const char *name)
{
	for (size_t i = 0; i < l->count; i++)
		if (strcasecmp(l->items[i].name, name) == 0)
			return &l->items[i];
	return NULL;
}

static bool replace_string(char **slot, const char *value)
{
	char *copy = strdup(value);

	if (copy == NULL)
		return false;
	free(*slot);
	*slot = copy;
	return true;
}

bool param_set(struct param_list *l, const char *name, const char *value)
{
	struct param *p = param_find(l, name);

	if (p != NULL) {
		bool same_name = strcmp(p->name, name) == 0;

		if (strcmp(p->value, value) == 0 && same_name)
			return false;
		l->fingerprint ^= param_hash(p->name, p->value);
		/* Adopt the server's canonical spelling of the name as well. */
		if (!same_name)
			replace_string(&p->name, name);
		replace_string(&p->value, value);
		l->fingerprint ^= param_hash(p->name, p->value);
		return true;
	}
	if (l->count == l->cap) {
		/* Most clients set a handful (drivers send 2 to 5): start small. */
		size_t cap = l->cap ? l->cap * 2 : 4;
		struct param *items = realloc(l->items, cap * sizeof(*items));

		if (items == NULL)
			return false;
		l->items = items;
		l->cap = cap;
	}
	p = &l->items[l->count];
	p->name = strdup(name);
	p->value = strdup(value);
	if (p->name == NULL || p->value == NULL) {
		free(p->name);
		free(p->value);
		return false;
	}
	l->count++;
	l->fingerprint ^= param_hash(name, value);
	return true;
}

bool param_remove(struct param_list *l, const char *name)
{
	struct param *p = param_find(l, name);

	if (p == NULL)
		return false;
	l->fingerprint ^= param_hash(p->name, p->value);
	free(p->name);
	free(p->value);
	*p = l->items[--l->count];
	return true;
}

/* One key for a pair of fingerprints; mixing the first keeps (a, b) and (b, a) apart. */
static uint64_t pair_key(uint64_t a, uint64_t b)
{
	a ^= a >> 33;
	a *= 0xff51afd7ed558ccdULL;
	a ^= a >> 33;
	return a ^ b;
}

uint64_t param_effective_fingerprint(const struct param_list *defaults, struct param_list *own)
{
	uint64_t key = pair_key(defaults->fingerprint, own->fingerprint);
	uint64_t fp = defaults->fingerprint;

	/* Both start at 0 (no defaults, no own settings), whose answer is 0 too. */
	if (key == own->effective_key)
		return own->effective;
	for (size_t i = 0; i < own->count; i++) {
		const struct param *d = param_find(defaults, own->items[i].name);

		if (d != NULL)
			fp ^= param_hash(d->name, d->value);
		fp ^= param_hash(own->items[i].name, own->items[i].value);
	}
	own->effective_key = key;
	own->effective = fp;
	return fp;
}

/*
 * SQL string literal with doubled quotes.  Backslashes are literal because
 * standard_conforming_strings is on (the only setting Postgres 9.1+ defaults to).
 */
void param_sql_literal(struct evbuffer *sql, const char *value)
{
	evbuffer_add(sql, "'", 1);
	for (const char *p = value; *p != '\0'; p++) {
		if (*p == '\'')
			evbuffer_add(sql, "''", 2);
		else
			evbuffer_add(sql, p, 1);
	}
	evbuffer_add(sql, "'", 1);
}

static void add_identifier(struct evbuffer *sql, const char *name)
{
	evbuffer_add(sql, "\"", 1);
	for (const char *p = name; *p != '\0'; p++) {
		if (*p == '"')
			evbuffer_add(sql, "\"\"", 2);
		else
			evbuffer_add(sql, p, 1);
	}
	evbuffer_add(sql, "\"", 1);
}

/*
 * set_config() takes the value as raw text, exactly like a startup packet or
 * `options=-c`: SET would turn 'a,b' into one quoted list element.
 */
static void add_set(struct evbuffer *sql, size_t *nsets, const char *name, const char *value)
{
	evbuffer_add(sql, *nsets == 0 ? "SELECT " : ", ", *nsets == 0 ? 7 : 2);
	evbuffer_add(sql, "pg_catalog.set_config(", 22);
	param_sql_literal(sql, name);
	evbuffer_add(sql, ", ", 2);
	param_sql_literal(sql, value);
	evbuffer_add(sql, ", false)", 8);
	(*nsets)++;
}

/*
 * RESET name; -- role's first: RESET of a superuser-only setting fails for
 * a role without the right, and would take the RESET of that role with it.
 */
static void add_reset(struct evbuffer *sql, size_t *n, const char *name)
{
	if (strcasecmp(name, "role") == 0) {
		evbuffer_prepend(sql, "RESET \"role\";", 13);
	} else {
		evbuffer_add(sql, "RESET ", 6);
		add_identifier(sql, name);
		evbuffer_add(sql, ";", 1);
	}
	(*n)++;
}

/* The server's value is not its default: an earlier client set it. */
static bool set_away_from_default(const struct param_list *defaults, const struct param *have)
{
	const struct param *def = param_find(defaults, have->name);

	return def == NULL || strcmp(def->value, have->value) != 0;
}

size_t param_sync_sql(struct evbuffer *resets, struct evbuffer *sets,
                      const struct param_list *defaults, const struct param_list *own,
                      const struct param_list *server)
{
	size_t nsets = 0, nresets = 0;

	for (size_t i = 0; i < own->count; i++) {
		const struct param *want = &own->items[i];
		const struct param *have = param_find(server, want->name);

		if (param_is_read_only(want->name) ||
		    (have != NULL && strcmp(have->value, want->value) == 0))
			continue;
		if (have != NULL && set_away_from_default(defaults, have))
			add_reset(resets, &nresets, want->name);
		add_set(sets, &nsets, want->name, want->value);
	}
	for (size_t i = 0; i < server->count; i++) {
		const struct param *have = &server->items[i];

		if (param_find(own, have->name) != NULL || param_is_read_only(have->name))
			continue;
		/*
		 * Set for an earlier client: back to the server's default by RESET,
		 * which is the value its login reported (defaults) and its source
		 * too, so the session looks new (a SET of that value looks set).
		 */
		if (set_away_from_default(defaults, have))
			add_reset(resets, &nresets, have->name);
	}
	if (nsets > 0)
		evbuffer_add(sets, ";", 1);
	return nsets + nresets;
}

/* Copy the next option word, removing backslash escapes; returns the end. */
static const char *next_word(const char *p, char *out, size_t cap)
{
	size_t n = 0;

	while (*p != '\0' && !isspace((unsigned char)*p)) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		if (n + 1 < cap)
			out[n++] = *p;
		p++;
	}
	out[n] = '\0';
	return p;
}

static int emit_setting(char *setting, void (*fn)(void *, const char *, const char *), void *arg)
{
	char *eq = strchr(setting, '=');

	if (eq == NULL || eq == setting)
		return -1;
	*eq = '\0';
	for (char *p = setting; *p != '\0'; p++)
		if (*p == '-')
			*p = '_';
	fn(arg, setting, eq + 1);
	return 0;
}

int param_parse_options(const char *options,
                        void (*fn)(void *arg, const char *name, const char *value), void *arg)
{
	char word[1024];
	const char *p = options;

	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			return 0;
		p = next_word(p, word, sizeof(word));
		if (strcmp(word, "-c") == 0) {
			while (isspace((unsigned char)*p))
				p++;
			if (*p == '\0')
				return -1;
			p = next_word(p, word, sizeof(word));
			if (emit_setting(word, fn, arg) < 0)
				return -1;
		} else if (strncmp(word, "-c", 2) == 0) {
			if (emit_setting(word + 2, fn, arg) < 0)
				return -1;
		} else if (strncmp(word, "--", 2) == 0) {
			if (emit_setting(word + 2, fn, arg) < 0)
				return -1;
		} else {
			return -1;
		}
	}
}
