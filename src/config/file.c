/*
 * Reading the ini file with inih, then applying its entries; see file.h.
 */
#include "config/file.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "config/config.h"
#include "config/databases.h"
#include "config/msg.h"
#include "config/tenant.h"
#include "config/value.h"

enum section { SECTION_SLUICE, SECTION_DATABASES, SECTION_USERS, SECTION_TENANT, SECTION_TIER };

/* One `key = value` of the file, continuation lines already joined. */
struct raw_entry {
	enum section section; /* [pgbouncer] is folded into SECTION_SLUICE */
	char *name;           /* NAME of [tenant.NAME] / [tier.NAME]; "" for the others */
	char *key;            /* option, database or user name */
	char *value;          /* text after '=', may hold a password */
	int line;             /* line of the key, for errors */
};

/* State of the inih pass over one file. */
struct file_parse {
	const char *path;          /* for error messages */
	FILE *file;                /* read by ini_read_line_cb */
	int lineno;                /* physical line last handed to inih */
	bool indented;             /* that line starts with a blank: inih's continuation */
	int too_long;              /* inih's line limit, once a longer line stopped the pass */
	struct raw_entry *entries; /* in file order */
	size_t nentries;           /* used entries */
	size_t cap;                /* allocated entries */
	int error_line;            /* line of the first error found by the handler; 0 = none */
	struct config_error *err;  /* receives that first error */
};

/* True when the stream is at the end of a line (consuming the line break). */
static bool at_line_end(FILE *f)
{
	int c = getc(f);

	if (c == '\r')
		c = getc(f);
	if (c == EOF || c == '\n')
		return true;
	ungetc(c, f);
	return false;
}

/*
 * fgets for inih that counts lines for our messages (the distribution's
 * inih is built without INI_HANDLER_LINENO) and notes indented lines, which
 * inih joins to the previous value.  A line longer than inih's buffer would
 * be split and misread, so it stops the pass instead.
 */
static char *ini_read_line_cb(char *str, int num, void *stream)
{
	struct file_parse *fp = stream;
	size_t n;

	if (fp->too_long || fgets(str, num, fp->file) == NULL)
		return NULL;
	fp->lineno++;
	n = strlen(str);
	if (n == (size_t)num - 1 && str[n - 1] != '\n' && !at_line_end(fp->file)) {
		fp->too_long = num - 2;
		return NULL;
	}
	fp->indented = str[0] == ' ' || str[0] == '\t';
	return str;
}

static void parse_fail(struct file_parse *fp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void parse_fail(struct file_parse *fp, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;

	if (fp->error_line != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fp->error_line = fp->lineno;
	msg_set_error(fp->err, "%s:%d: %s", fp->path, fp->lineno, msg);
}

static int section_find(const char *name, enum section *out, const char **suffix)
{
	*suffix = "";
	if (strncasecmp(name, "tenant.", 7) == 0) {
		*out = SECTION_TENANT;
		*suffix = name + 7;
	} else if (strncasecmp(name, "tier.", 5) == 0) {
		*out = SECTION_TIER;
		*suffix = name + 5;
	} else if (strcasecmp(name, "sluice") == 0 || strcasecmp(name, "pgbouncer") == 0)
		*out = SECTION_SLUICE;
	else if (strcasecmp(name, "databases") == 0)
		*out = SECTION_DATABASES;
	else if (strcasecmp(name, "users") == 0)
		*out = SECTION_USERS;
	else
		return -1;
	return 0;
}

/*
 * Appends " value" to the last entry: inih hands us a continuation line.
 * Some inih versions leave inline comments on continuation lines, so the
 * "; after a blank" rule is applied here too, the same for every line.
 */
static int entry_continue(struct raw_entry *last, const char *value)
{
	size_t old = strlen(last->value), add = strlen(value);
	char *joined;

	for (size_t i = 1; i < add; i++) {
		if (value[i] == ';' && isspace((unsigned char)value[i - 1])) {
			add = i;
			break;
		}
	}
	while (add > 0 && isspace((unsigned char)value[add - 1]))
		add--;
	if ((joined = malloc(old + add + 2)) == NULL)
		return -1;
	memcpy(joined, last->value, old);
	joined[old] = ' ';
	memcpy(joined + old + 1, value, add);
	joined[old + 1 + add] = '\0';
	value_free_secret(last->value);
	last->value = joined;
	return 0;
}

static int entry_push(struct file_parse *fp, enum section section, const char *name,
                      const char *key, const char *value)
{
	struct raw_entry *e;

	if (fp->nentries == fp->cap) {
		size_t cap = fp->cap ? fp->cap * 2 : 32;

		if ((e = realloc(fp->entries, cap * sizeof(*e))) == NULL)
			return -1;
		fp->entries = e;
		fp->cap = cap;
	}
	e = &fp->entries[fp->nentries];
	e->section = section;
	e->line = fp->lineno;
	e->name = strdup(name);
	e->key = strdup(key);
	e->value = strdup(value);
	if (e->name == NULL || e->key == NULL || e->value == NULL) {
		free(e->name);
		free(e->key);
		value_free_secret(e->value);
		return -1;
	}
	fp->nentries++;
	return 0;
}

static int ini_entry_cb(void *user, const char *section, const char *name, const char *value)
{
	struct file_parse *fp = user;
	struct raw_entry *last = fp->nentries ? &fp->entries[fp->nentries - 1] : NULL;
	enum section sec;
	const char *suffix;
	int rc;

	if (fp->error_line != 0)
		return 1; /* the first error is the one reported */
	if (*section == '\0') {
		parse_fail(fp, "key '%.60s' before any section (start with [sluice])", name);
		return 0;
	}
	if (section_find(section, &sec, &suffix) < 0) {
		parse_fail(fp,
		           "unknown section [%.60s] (expected [sluice], [databases], [users], "
		           "[tenant.NAME], [tier.NAME])",
		           section);
		return 0;
	}
	if (fp->indented && last != NULL && last->section == sec &&
	    strcmp(last->name, suffix) == 0 && strcmp(last->key, name) == 0)
		rc = entry_continue(last, value);
	else
		rc = entry_push(fp, sec, suffix, name, value);
	if (rc < 0)
		parse_fail(fp, "out of memory");
	return rc == 0;
}

static void file_parse_fini(struct file_parse *fp)
{
	for (size_t i = 0; i < fp->nentries; i++) {
		free(fp->entries[i].name);
		free(fp->entries[i].key);
		value_free_secret(fp->entries[i].value);
	}
	free(fp->entries);
}

/* Line of an earlier entry with the same section and key; 0 if none. */
static int entry_first_line(const struct file_parse *fp, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (fp->entries[j].section == fp->entries[i].section &&
		    strcmp(fp->entries[j].name, fp->entries[i].name) == 0 &&
		    strcmp(fp->entries[j].key, fp->entries[i].key) == 0)
			return fp->entries[j].line;
	return 0;
}

/*
 * A [sluice] value wholly in double or single quotes means the text inside:
 * `unix_socket_dir = ""` is the empty string, as in PgBouncer's examples.
 */
static const char *unquote(const char *value, char *buf, size_t cap)
{
	size_t n = strlen(value);

	if (n < 2 || n - 2 >= cap || (value[0] != '"' && value[0] != '\'') ||
	    value[n - 1] != value[0])
		return value;
	memcpy(buf, value + 1, n - 2);
	buf[n - 2] = '\0';
	return buf;
}

static int entry_apply(struct config *cfg, const struct raw_entry *e, char *msg, size_t len)
{
	const struct config_option *opt;
	char quoted[1024];

	switch (e->section) {
	case SECTION_SLUICE:
		if ((opt = config_option_find(e->key)) == NULL) {
			snprintf(msg, len, "unknown key '%.60s' in [sluice]", e->key);
			return -1;
		}
		if (value_parse(opt, unquote(e->value, quoted, sizeof(quoted)),
		                value_field(cfg, opt), msg, len) < 0) {
			msg_prefix(msg, len, "key '%.60s': ", e->key);
			return -1;
		}
		return 0;
	case SECTION_DATABASES:
		return databases_define_db(cfg, e->key, e->value, msg, len);
	case SECTION_USERS:
		return databases_define_user(cfg, e->key, e->value, msg, len);
	case SECTION_TENANT:
	case SECTION_TIER:
		return config_tenant_entry(cfg, e->section == SECTION_TIER, e->name, e->key,
		                           e->value, e->line, msg, len);
	}
	return -1;
}

static int file_apply(struct config *cfg, const struct file_parse *fp, struct config_error *err)
{
	char msg[MSG_MAX];
	int first;

	for (size_t i = 0; i < fp->nentries; i++) {
		const struct raw_entry *e = &fp->entries[i];

		/* A repeat is nearly always a forgotten edit; "last one wins" would hide it. */
		if ((first = entry_first_line(fp, i)) != 0) {
			msg_set_error(err, "%s:%d: '%.60s' is set twice (first on line %d)",
			              fp->path, e->line, e->key, first);
			return -1;
		}
		if (entry_apply(cfg, e, msg, sizeof(msg)) < 0) {
			msg_set_error(err, "%s:%d: %s", fp->path, e->line, msg);
			return -1;
		}
	}
	return 0;
}

/* Picks the first problem by line: inih's own syntax errors or ours. */
static int file_parse_result(struct file_parse *fp, int rc, struct config_error *err)
{
	if (rc > 0 && (fp->error_line == 0 || rc < fp->error_line)) {
		msg_set_error(err, "%s:%d: syntax error (expected [section] or key = value)",
		              fp->path, rc);
		return -1;
	}
	if (fp->error_line != 0)
		return -1;
	if (rc < 0) {
		msg_set_error(err, "%s: out of memory", fp->path);
		return -1;
	}
	if (fp->too_long) {
		msg_set_error(err,
		              "%s:%d: line longer than %d characters; continue a long value on "
		              "the next line, indented",
		              fp->path, fp->lineno, fp->too_long);
		return -1;
	}
	return 0;
}

int file_read(struct config *cfg, const char *path, struct config_error *err)
{
	struct file_parse fp = {.path = path, .err = err};
	char msg[MSG_MAX];
	int rc, line;

	if ((fp.file = fopen(path, "r")) == NULL) {
		msg_set_error(err, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	rc = ini_parse_stream(ini_read_line_cb, &fp, ini_entry_cb, &fp);
	fclose(fp.file);
	rc = file_parse_result(&fp, rc, err);
	if (rc == 0)
		rc = file_apply(cfg, &fp, err);
	if (rc == 0 && (line = config_tenants_resolve(cfg, msg, sizeof(msg))) != 0) {
		msg_set_error(err, "%s:%d: %s", path, line, msg);
		rc = -1;
	}
	file_parse_fini(&fp);
	return rc;
}
