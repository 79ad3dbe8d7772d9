/*
 * Session parameters (GUCs) tracked per client, per server and per pool, so a
 * client keeps its client_encoding, DateStyle, search_path, application_name
 * ... whichever server connection it lands on.  A 64-bit fingerprint (XOR of
 * per-entry hashes, names compared case-insensitively) makes the common "the
 * server already matches" check O(1) on every link.
 */
#ifndef SLUICE_PARAMS_H
#define SLUICE_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

struct param {
	char *name;  /* canonical spelling once a server has reported it */
	char *value; /* current value */
};

struct param_list {
	struct param *items; /* unordered */
	uint32_t count, cap;
	uint64_t fingerprint; /* XOR of param_hash(name, value) over items */
	/*
	 * The last param_effective_fingerprint over this list, and the key
	 * (both lists' fingerprints) it was computed for: a client is linked
	 * to a server on every transaction, and its settings rarely change.
	 */
	uint64_t effective_key, effective;
};

void param_list_init(struct param_list *l);
void param_list_fini(struct param_list *l);
void param_list_copy(struct param_list *dst, const struct param_list *src);
struct param *param_find(const struct param_list *l, const char *name);
/* Insert or update; returns true if the list changed. */
bool param_set(struct param_list *l, const char *name, const char *value);
bool param_remove(struct param_list *l, const char *name);
uint64_t param_hash(const char *name, const char *value);

/* Startup parameters sluice handles itself and never syncs. */
bool param_is_startup_only(const char *name);
/* Reported parameters a client cannot SET (server_version, is_superuser, ...). */
bool param_is_read_only(const char *name);

/*
 * Parse `options` from a startup packet: "-c name=value", "--name=value",
 * backslash escapes a space.  Calls fn for each setting; returns -1 on a
 * malformed string or an option other than -c/--.
 */
int param_parse_options(const char *options,
                        void (*fn)(void *arg, const char *name, const char *value), void *arg);

/*
 * Fingerprint of what the client should see: pool defaults overlaid with
 * the client's own values.  Remembered in `own` until either list changes.
 */
uint64_t param_effective_fingerprint(const struct param_list *defaults, struct param_list *own);

/* Append `value` to `sql` as a string literal ('' doubled). */
void param_sql_literal(struct evbuffer *sql, const char *value);

/*
 * The statements that turn `server` into the client's effective set, in two
 * parts sent as two Queries: `resets` RESETs every setting the server has
 * away from its default that the client does not want as it is (those it
 * will set too), `role` first (a RESET of a superuser-only setting fails
 * for a role without the right, and would take the role's RESET with it);
 * the values an earlier client set it could set itself, so these do not
 * fail on a bad value; `sets` is one SELECT of set_config() for
 * the client's values, which fails as a whole on one bad value.  Sent apart,
 * a failed `sets` leaves the server at its defaults, not with an earlier
 * client's settings (one Query is one transaction: its RESETs went too).
 * Returns the number of statements (0 = in sync).
 */
size_t param_sync_sql(struct evbuffer *resets, struct evbuffer *sets,
                      const struct param_list *defaults, const struct param_list *own,
                      const struct param_list *server);

#endif
