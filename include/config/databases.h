/*
 * [databases] and [users] entries: the tables of the keys a `key=value ...`
 * value may hold (each override borrowing type and bounds from the [sluice]
 * option it overrides), the parser of such a value, the entries' life cycle,
 * and the lookups the pools use (a database by name with the "*" fallback,
 * a user, the effective pool size and mode after the overrides).  URL
 * parameters map onto the same [databases] keys, so a URL can carry no
 * value a file entry would refuse.
 */
#ifndef SLUICE_CONFIG_DATABASES_H
#define SLUICE_CONFIG_DATABASES_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/*
 * Keys inside a [databases] or [users] value.  An override of a [sluice]
 * option names it in `global`, which supplies type, bounds and enum names, so
 * an override can never accept what the global option would refuse.
 */
struct entry_key {
	const char *name;      /* key inside the value: `pool_size=5` */
	enum config_type type; /* CONFIG_STRING or CONFIG_INT when global is NULL */
	size_t offset;         /* in struct db_def or struct user_def */
	const char *global;    /* [sluice] option this overrides; NULL = none */
	int64_t min, max;      /* bounds of a CONFIG_INT key without a global */
	const char *help;      /* one line for docs/config.md */
};

/* The keys of a [databases] value and of a [users] value, in table order. */
const struct entry_key *databases_db_keys(size_t *count);
const struct entry_key *databases_user_keys(size_t *count);
/* The [databases] key a URL parameter maps onto; NULL if none. */
const struct entry_key *databases_url_key(const char *param);
/* Type and bounds of an entry key, borrowed from the [sluice] option it overrides. */
struct config_option databases_entry_spec(const struct entry_key *k);
/* Stores one key of an entry; an empty string means "not set" (NULL). */
int databases_entry_set(const struct entry_key *k, void *entry, const char *value, char *msg,
                        size_t len);

/* A database with every override inheriting, no strings yet. */
void databases_db_init(struct db_def *db);
/* Frees the strings of `db` (wiping the password) and zeroes it. */
void databases_db_fini(struct db_def *db);
/*
 * Splits the host and port keys as written (libpq's syntax: "a,b,c" with one
 * port for all or one per host) into db->hosts.  -1 with `msg` (without the
 * entry's name) when the lists do not match or an item is empty or invalid.
 */
int databases_split_hosts(struct db_def *db, char *msg, size_t len);
/* Adds `db` (taking its strings) or replaces the entry of the same name. */
int databases_db_upsert(struct config *cfg, struct db_def *db);

/*
 * `name = key=value ...` of [databases] or [users] into `cfg`; a database
 * replaces one of the same name.  On error writes `msg`, naming the entry.
 */
int databases_define_db(struct config *cfg, const char *name, const char *text, char *msg,
                        size_t len);
int databases_define_user(struct config *cfg, const char *name, const char *text, char *msg,
                          size_t len);

#endif
