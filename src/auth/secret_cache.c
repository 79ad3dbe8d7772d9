/*
 * secret_cache; see secret_cache.h.
 */
#include "auth/secret_cache.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"

#define MIN_BUCKETS 16

struct secret_entry {
	struct secret_entry *next; /* bucket chain */
	struct list_node node;     /* sc->order */
	uint64_t hash;
	int64_t expires_us;
	char *secret;    /* NULL = no such user */
	size_t user_off; /* key: dbname '\0' user '\0' */
	char key[];
};

static uint64_t key_hash(const struct secret_cache *sc, const char *dbname, size_t dlen,
                         const char *user, size_t ulen)
{
	/* Two hashes chained, so "ab"+"c" and "a"+"bc" differ without copying the key. */
	uint64_t h = hash_sip13(sc->k0, sc->k1, (const unsigned char *)dbname, dlen);

	return hash_sip13(sc->k0 ^ h, sc->k1, (const unsigned char *)user, ulen);
}

int secret_cache_init(struct secret_cache *sc, size_t max)
{
	uint64_t key[2];

	memset(sc, 0, sizeof(*sc));
	list_init(&sc->order);
	sc->max = max > 0 ? max : 1;
	sc->nbuckets = MIN_BUCKETS;
	if (RAND_bytes((unsigned char *)key, sizeof(key)) != 1)
		return -1;
	sc->k0 = key[0], sc->k1 = key[1];
	sc->buckets = calloc(sc->nbuckets, sizeof(*sc->buckets));
	return sc->buckets != NULL ? 0 : -1;
}

static void entry_remove(struct secret_cache *sc, struct secret_entry *e)
{
	struct secret_entry **slot = &sc->buckets[e->hash & (sc->nbuckets - 1)];

	while (*slot != e)
		slot = &(*slot)->next;
	*slot = e->next;
	list_del(&e->node);
	sc->count--;
	if (e->secret != NULL) {
		OPENSSL_cleanse(e->secret, strlen(e->secret));
		free(e->secret);
	}
	free(e);
}

void secret_cache_fini(struct secret_cache *sc)
{
	while (!list_empty(&sc->order))
		entry_remove(sc, list_entry(sc->order.next, struct secret_entry, node));
	free(sc->buckets);
	sc->buckets = NULL;
}

/* Entries expire in insertion order (one TTL): drop those due from the head. */
static void prune(struct secret_cache *sc, int64_t now_us)
{
	while (!list_empty(&sc->order)) {
		struct secret_entry *e = list_entry(sc->order.next, struct secret_entry, node);

		if (e->expires_us > now_us)
			return;
		entry_remove(sc, e);
	}
}

static struct secret_entry *find(const struct secret_cache *sc, uint64_t hash, const char *dbname,
                                 const char *user)
{
	struct secret_entry *e;

	for (e = sc->buckets[hash & (sc->nbuckets - 1)]; e != NULL; e = e->next)
		if (e->hash == hash && strcmp(e->key, dbname) == 0 &&
		    strcmp(e->key + e->user_off, user) == 0)
			return e;
	return NULL;
}

bool secret_cache_get(struct secret_cache *sc, const char *dbname, const char *user, int64_t now_us,
                      const char **secret)
{
	struct secret_entry *e;

	prune(sc, now_us);
	e = find(sc, key_hash(sc, dbname, strlen(dbname), user, strlen(user)), dbname, user);
	if (e == NULL)
		return false;
	if (e->expires_us <= now_us) { /* out of order: the TTL was shortened by a reload */
		entry_remove(sc, e);
		return false;
	}
	*secret = e->secret;
	return true;
}

/* Doubles the table while it holds more entries than buckets (up to max's). */
static void grow(struct secret_cache *sc)
{
	size_t n = sc->nbuckets * 2;
	struct secret_entry **b;
	struct list_node *pos;

	if (sc->count < sc->nbuckets || sc->nbuckets >= sc->max ||
	    (b = calloc(n, sizeof(*b))) == NULL)
		return; /* a longer chain is only slower */
	for (pos = sc->order.next; pos != &sc->order; pos = pos->next) {
		struct secret_entry *e = list_entry(pos, struct secret_entry, node);

		e->next = b[e->hash & (n - 1)];
		b[e->hash & (n - 1)] = e;
	}
	free(sc->buckets);
	sc->buckets = b;
	sc->nbuckets = n;
}

int secret_cache_put(struct secret_cache *sc, const char *dbname, const char *user,
                     const char *secret, int64_t now_us, int64_t expires_us)
{
	size_t dlen = strlen(dbname), ulen = strlen(user);
	uint64_t hash = key_hash(sc, dbname, dlen, user, ulen);
	struct secret_entry *e;

	prune(sc, now_us);
	if ((e = find(sc, hash, dbname, user)) != NULL)
		entry_remove(sc, e);
	while (sc->count >= sc->max)
		entry_remove(sc, list_entry(sc->order.next, struct secret_entry, node));
	if ((e = malloc(sizeof(*e) + dlen + ulen + 2)) == NULL)
		return -1;
	e->hash = hash;
	e->expires_us = expires_us;
	e->user_off = dlen + 1;
	memcpy(e->key, dbname, dlen + 1);
	memcpy(e->key + e->user_off, user, ulen + 1);
	e->secret = NULL;
	if (secret != NULL && (e->secret = strdup(secret)) == NULL) {
		free(e);
		return -1;
	}
	e->next = sc->buckets[hash & (sc->nbuckets - 1)];
	sc->buckets[hash & (sc->nbuckets - 1)] = e;
	list_add_tail(&sc->order, &e->node);
	sc->count++;
	grow(sc);
	return 0;
}
