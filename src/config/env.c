/*
 * SLUICE_* environment overrides; see env.h.
 */
#include "config/env.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "config/config.h"
#include "config/msg.h"
#include "config/url.h"
#include "config/value.h"

#define ENV_URL        "SLUICE_DATABASE_URL"
#define ENV_FILE       "_FILE"
#define ENV_FILE_MAX   (64 * 1024) /* a URL or a password; a bigger file is surely the wrong one */
#define ENV_ORIGIN_MAX 360         /* "SLUICE_X_FILE (path)" */

static const char *env_get(char *const *envp, const char *name)
{
	size_t len = strlen(name);

	for (; envp != NULL && *envp != NULL; envp++)
		if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=')
			return *envp + len + 1;
	return NULL;
}

/*
 * The content of the file a *_FILE variable names, less its trailing line
 * breaks (`echo` and editors add one, a Kubernetes Secret has none).  An
 * empty file is refused: it is a secret that did not arrive, and an empty
 * value can still be given as `SLUICE_X=`.
 */
static char *env_read_file(const char *path, char *msg, size_t len)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n = 0;
	bool ok = false;

	if (f == NULL) {
		snprintf(msg, len, "cannot read %.200s: %s", path, strerror(errno));
		return NULL;
	}
	if ((buf = malloc(ENV_FILE_MAX + 1)) != NULL)
		n = fread(buf, 1, ENV_FILE_MAX + 1, f);
	if (buf == NULL) {
		snprintf(msg, len, "out of memory");
	} else if (ferror(f)) {
		snprintf(msg, len, "cannot read %.200s: %s", path, strerror(errno));
	} else if (n > ENV_FILE_MAX) {
		snprintf(msg, len, "%.200s is larger than %d kB", path, ENV_FILE_MAX / 1024);
	} else if (memchr(buf, '\0', n) != NULL) {
		snprintf(msg, len, "%.200s contains a NUL byte", path);
	} else {
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
		buf[n] = '\0';
		if (!(ok = n > 0))
			snprintf(msg, len, "%.200s is empty", path);
	}
	fclose(f);
	if (ok)
		return buf;
	if (buf != NULL)
		OPENSSL_cleanse(buf, ENV_FILE_MAX + 1);
	free(buf);
	return NULL;
}

/*
 * The value of `var`, or the content of the file that `var`_FILE names, so
 * secrets can come from a mounted file instead of the environment.  Returns
 * 1 with *value (malloc'd, for value_free_secret) and `origin` naming the source
 * for error messages, 0 when neither is set, -1 with `err` set.
 */
static int env_value(char *const *envp, const char *var, char **value, char *origin,
                     struct config_error *err)
{
	char file_var[128], msg[MSG_MAX];
	const char *plain = env_get(envp, var), *path;

	snprintf(file_var, sizeof(file_var), "%s" ENV_FILE, var);
	path = env_get(envp, file_var);
	snprintf(origin, ENV_ORIGIN_MAX, "%s", var);
	if (plain != NULL && path != NULL) {
		msg_set_error(err, "%s and %s are both set: use one", var, file_var);
		return -1;
	}
	if (plain == NULL && path == NULL)
		return 0;
	if (plain != NULL) {
		*value = strdup(plain);
	} else if ((*value = env_read_file(path, msg, sizeof(msg))) == NULL) {
		msg_set_error(err, "%s: %s", file_var, msg);
		return -1;
	} else {
		snprintf(origin, ENV_ORIGIN_MAX, "%s (%.200s)", file_var, path);
	}
	if (*value == NULL) {
		msg_set_error(err, "out of memory");
		return -1;
	}
	return 1;
}

/* SLUICE_<OPTION> (or SLUICE_<OPTION>_FILE) for every option, in table order. */
int env_apply_options(struct config *cfg, char *const *envp, struct config_error *err)
{
	size_t n;
	const struct config_option *opts = config_options(&n);
	char var[96], origin[ENV_ORIGIN_MAX], msg[MSG_MAX], *val;
	int rc;

	for (size_t i = 0; i < n; i++) {
		size_t pos = (size_t)snprintf(var, sizeof(var), "SLUICE_");

		for (const char *c = opts[i].name; *c != '\0' && pos < sizeof(var) - 1; c++)
			var[pos++] = (char)toupper((unsigned char)*c);
		var[pos] = '\0';
		if ((rc = env_value(envp, var, &val, origin, err)) <= 0) {
			if (rc < 0)
				return -1;
			continue;
		}
		rc = value_parse(&opts[i], val, value_field(cfg, &opts[i]), msg, sizeof(msg));
		value_free_secret(val);
		if (rc < 0) {
			msg_set_error(err, "%s: %s", origin, msg);
			return -1;
		}
	}
	return 0;
}

/* Defines database `name` (NULL: from the URL) from `var` or `var`_FILE, if set. */
static int env_apply_url(struct config *cfg, char *const *envp, const char *var, const char *name,
                         struct config_error *err)
{
	char origin[ENV_ORIGIN_MAX], msg[MSG_MAX], *url;
	int rc = env_value(envp, var, &url, origin, err);

	if (rc <= 0)
		return rc;
	rc = url_define_db(cfg, name, url, msg, sizeof(msg));
	value_free_secret(url);
	if (rc < 0)
		msg_set_error(err, "%s: %s", origin, msg);
	return rc;
}

/*
 * SLUICE_DATABASE_URL, then SLUICE_DATABASE_URL_<NAME> for database <name>,
 * each possibly as a _FILE variable.  A trailing _FILE always means the file
 * variant, so a database named "x_file" cannot be defined this way.
 */
int env_apply_urls(struct config *cfg, char *const *envp, struct config_error *err)
{
	const size_t plen = strlen(ENV_URL "_"), flen = strlen(ENV_FILE);
	char name[128], var[160];
	const char *rest;
	size_t len;
	bool is_file;

	if (env_apply_url(cfg, envp, ENV_URL, NULL, err) < 0)
		return -1;
	for (char *const *e = envp; e != NULL && *e != NULL; e++) {
		if (strncmp(*e, ENV_URL "_", plen) != 0)
			continue;
		rest = *e + plen;
		len = strcspn(rest, "=");
		/* Not K=V, no name, or SLUICE_DATABASE_URL_FILE (done above). */
		if (rest[len] != '=' || len == 0 ||
		    (len == flen - 1 && strncmp(rest, ENV_FILE + 1, len) == 0))
			continue;
		is_file = len > flen && strncmp(rest + len - flen, ENV_FILE, flen) == 0;
		len -= is_file ? flen : 0;
		if (len >= sizeof(name))
			continue;
		snprintf(var, sizeof(var), ENV_URL "_%.*s", (int)len, rest);
		/* With both set, the plain variable's turn reports the conflict. */
		if (is_file && env_get(envp, var) != NULL)
			continue;
		for (size_t i = 0; i < len; i++)
			name[i] = (char)tolower((unsigned char)rest[i]);
		name[len] = '\0';
		if (env_apply_url(cfg, envp, var, name, err) < 0)
			return -1;
	}
	return 0;
}
