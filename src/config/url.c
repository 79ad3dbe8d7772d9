/*
 * Database URLs into [databases] entries; see url.h.
 */
#include "config/url.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "config/config.h"
#include "config/databases.h"
#include "config/msg.h"
#include "config/value.h"

/*
 * libpq quotes parts of a malformed URL in its messages, the password
 * included; our errors end up in logs, so the password is masked.
 */
static void redact_url_password(const char *url, char *msg)
{
	const char *auth = strstr(url, "://"), *end, *at = NULL, *colon;
	size_t len;
	char *pw, *hit;

	if (auth == NULL)
		return;
	auth += 3;
	end = auth + strcspn(auth, "/?");
	for (const char *p = auth; p < end; p++)
		if (*p == '@')
			at = p;
	colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (colon == NULL || (len = (size_t)(at - colon - 1)) == 0)
		return;
	if ((pw = strndup(colon + 1, len)) == NULL)
		return;
	/* Same length, so the message can't grow and the search moves on past each hit. */
	for (hit = strstr(msg, pw); hit != NULL; hit = strstr(hit + len, pw))
		memset(hit, '*', len);
	value_free_secret(pw);
}

/* Takes one parsed URL parameter into `db`. */
static int url_take(struct db_def *db, const char *key, const char *val, char *msg, size_t len)
{
	const struct entry_key *k = databases_url_key(key);

	if (k != NULL) {
		if (databases_entry_set(k, db, val, msg, len) == 0)
			return 0;
		msg_prefix(msg, len, "%s: ", key);
		return -1;
	}
	snprintf(msg, len,
	         "parameter '%.60s' is not supported (sluice takes host, port, dbname, user, "
	         "password, application_name, options, sslmode, sslrootcert, "
	         "target_session_attrs and load_balance_hosts)",
	         key);
	return -1;
}

/*
 * Clients log in with the URL's credentials: sluice checks the password
 * itself and then reuses it for the server login, so the one URL an
 * application already has is all the setup needed.  An auth_file, when
 * configured, is the only source of client credentials instead.
 */
static int url_add_login(struct config *cfg, const struct db_def *db, char *msg, size_t len)
{
	const struct user_secret *known;

	if (cfg->auth_file[0] != '\0' || db->user == NULL || db->password == NULL)
		return 0;
	known = auth_file_find(&cfg->auth, db->user);
	if (known != NULL) {
		if (known->kind == SECRET_PLAIN && strcmp(known->plain, db->password) == 0)
			return 0;
		snprintf(msg, len, "user '%.60s' is given two different passwords", db->user);
		return -1;
	}
	if (auth_file_add_plain(&cfg->auth, db->user, db->password) < 0) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	return 0;
}

/* Moves the parsed URL into `db`; the database is `name`, else the URL's dbname, else "*". */
static int url_fill(struct db_def *db, const PQconninfoOption *opts, const char *name, char *msg,
                    size_t len)
{
	const char *client_name;

	for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && url_take(db, o->keyword, o->val, msg, len) < 0)
			return -1;
	/* Without a dbname the URL serves every database name: the "*" entry. */
	client_name = name ? name : db->dbname ? db->dbname : "*";
	if ((db->host == NULL && (db->host = strdup("127.0.0.1")) == NULL) ||
	    (db->name = strdup(client_name)) == NULL) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	return databases_split_hosts(db, msg, len);
}

/*
 * libpq before 16 does not know load_balance_hosts and refuses the whole
 * URL, so the parameter is taken out of a URI's query before libpq reads
 * it.  Returns the URL without it (malloc'd) and its value in *value
 * (malloc'd, NULL when absent); NULL when out of memory.
 */
static char *take_load_balance(const char *url, char **value)
{
	static const char key[] = "load_balance_hosts=";
	const char *query = strchr(url, '?'), *p;
	char *out = strdup(url), *o;
	bool first = true;

	*value = NULL;
	if (out == NULL || query == NULL)
		return out;
	o = out + (query - url); /* the '?', rewritten with the parameters kept */
	for (p = query + 1; *p != '\0'; p += p[strcspn(p, "&")] == '&') {
		size_t n = strcspn(p, "&");

		if (strncmp(p, key, sizeof(key) - 1) == 0) {
			free(*value);
			if ((*value = strndup(p + sizeof(key) - 1, n - (sizeof(key) - 1))) ==
			    NULL) {
				free(out);
				return NULL;
			}
		} else {
			*o++ = first ? '?' : '&';
			first = false;
			memcpy(o, p, n);
			o += n;
		}
		p += n;
	}
	*o = '\0';
	return out;
}

/* Defines (or replaces) a database from a libpq URI or conninfo string. */
int url_define_db(struct config *cfg, const char *name, const char *url, char *msg, size_t len)
{
	char *pqerr = NULL, *balance = NULL, *rest = take_load_balance(url, &balance);
	PQconninfoOption *opts = rest != NULL ? PQconninfoParse(rest, &pqerr) : NULL;
	struct db_def db;
	int rc = -1;

	if (rest != NULL)
		value_free_secret(rest);
	if (opts == NULL) {
		free(balance);
		snprintf(msg, len, "%s", pqerr ? pqerr : "out of memory");
		msg[strcspn(msg, "\n")] = '\0';
		redact_url_password(url, msg);
		PQfreemem(pqerr);
		return -1;
	}
	databases_db_init(&db);
	if ((balance == NULL || url_take(&db, "load_balance_hosts", balance, msg, len) == 0) &&
	    url_fill(&db, opts, name, msg, len) == 0 && url_add_login(cfg, &db, msg, len) == 0) {
		rc = databases_db_upsert(cfg, &db);
		if (rc < 0)
			snprintf(msg, len, "out of memory");
	}
	if (rc < 0)
		databases_db_fini(&db);
	free(balance);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && strcmp(o->keyword, "password") == 0)
			OPENSSL_cleanse(o->val, strlen(o->val));
	PQconninfoFree(opts);
	return rc;
}
