/*
 * Reading the ini file with inih, then applying its entries; see file.h.
 *
 * inih reads through our line reader (ini_read_line_cb), which does three
 * things inih cannot:
 *   - `%include FILE` lines are followed here, so inih sees one stream and an
 *     included file continues the section it is included in;
 *   - a line longer than inih's buffer (INI_MAX_LINE, fixed when the
 *     distribution built it: 200 bytes on Debian) is handed over as `key =`
 *     and a stand-in for its value, and the value itself is kept here;
 *   - every line handed over has its file and line noted, and lines inih
 *     would reject are reported here (and handed over blank), so an error
 *     names the right file and every bad line is found, not just the first.
 */
#include "config/file.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <ini.h>

#include "config/compat.h"
#include "config/config.h"
#include "config/databases.h"
#include "config/msg.h"
#include "config/tenant.h"
#include "config/value.h"

/* Nested %include files, counting the first: deeper is surely a mistake. */
#define INCLUDE_DEPTH_MAX 16
/* Marks a value kept by the reader: STASH_MARK then its index. */
#define STASH_MARK '\x01'

enum section {
	SECTION_SLUICE,
	SECTION_DATABASES,
	SECTION_USERS,
	SECTION_TENANT,
	SECTION_TIER,
	SECTION_PEERS
};

/* One `key = value` of the file, continuation lines already joined. */
struct raw_entry {
	enum section section; /* [pgbouncer] is folded into SECTION_SLUICE */
	char *name;           /* NAME of [tenant.NAME] / [tier.NAME]; "" for the others */
	char *key;            /* option, database or user name */
	char *value;          /* text after '=', may hold a password */
	const char *path;     /* file of the key (an included one, maybe), for errors */
	int line;             /* line of the key, for errors */
};

/* Where a line handed to inih came from. */
struct line_loc {
	const char *path; /* in file_parse.paths */
	int line;
};

/* A file being read: the main one, or one it %includes. */
struct source {
	FILE *file;
	const char *path; /* in file_parse.paths */
	char *real;       /* realpath(), to catch a file that includes itself */
	int line;         /* lines read so far */
};

/* State of the inih pass over one file and what it includes. */
struct file_parse {
	struct config *cfg;                     /* receives the warnings (notes) */
	struct config_error *err;               /* receives every error */
	int errors;                             /* errors found so far */
	struct source stack[INCLUDE_DEPTH_MAX]; /* the file being read is on top */
	int depth;                              /* files on the stack */
	char **paths;                           /* every file read, owned */
	size_t npaths;
	struct line_loc *locs; /* one per line handed to inih, in order */
	size_t nlocs, loc_cap;
	char **stash; /* values of lines too long for inih */
	size_t nstash, stash_cap;
	char *buf; /* getline's buffer */
	size_t buf_cap;
	bool in_key;               /* after a key line: an indented line continues it (inih) */
	bool indented;             /* the line last handed over starts with a blank */
	bool peers_noted;          /* the [peers] warning is given once */
	bool pgbouncer_section;    /* the file has a [pgbouncer] section: a PgBouncer file */
	struct raw_entry *entries; /* in file order */
	size_t nentries;           /* used entries */
	size_t cap;                /* allocated entries */
};

static void parse_error(struct file_parse *fp, const char *path, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void parse_error(struct file_parse *fp, const char *path, int line, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fp->errors++;
	msg_set_error(fp->err, "%s:%d: %s", path, line, msg);
}

static const struct line_loc *last_loc(const struct file_parse *fp)
{
	static const struct line_loc none = {"?", 0};

	return fp->nlocs > 0 ? &fp->locs[fp->nlocs - 1] : &none;
}

/* Grows an array of `size`-byte items to hold one more; -1 when out of memory. */
static int grow(void **items, size_t *cap, size_t used, size_t size)
{
	void *bigger;
	size_t n = *cap ? *cap * 2 : 32;

	if (used < *cap)
		return 0;
	if ((bigger = realloc(*items, n * size)) == NULL)
		return -1;
	*items = bigger;
	*cap = n;
	return 0;
}

/* ---- files and %include ---- */

static const char *path_keep(struct file_parse *fp, const char *path)
{
	char *copy = strdup(path), **grown;

	if (copy == NULL ||
	    (grown = realloc(fp->paths, (fp->npaths + 1) * sizeof(*grown))) == NULL) {
		free(copy);
		return NULL;
	}
	fp->paths = grown;
	fp->paths[fp->npaths++] = copy;
	return copy;
}

/* A file that cannot be read: the main one names itself, an included one the %include line. */
static void open_error(struct file_parse *fp, const struct source *from, const char *path,
                       const char *name, int error)
{
	if (from == NULL) {
		fp->errors++;
		msg_set_error(fp->err, "%s: cannot open: %s", path, strerror(error));
	} else {
		parse_error(fp, from->path, from->line, "%%include %s: %s", name, strerror(error));
	}
}

/*
 * Opens `path` on top of the stack.  `from` is the including file (NULL for
 * the main one), `name` the file as its %include line wrote it.  A file
 * already on the stack would include itself forever.
 */
static int source_push(struct file_parse *fp, const char *path, const char *name,
                       const struct source *from)
{
	struct source *s;
	struct stat st;
	char *real;

	if (fp->depth == INCLUDE_DEPTH_MAX) {
		parse_error(fp, from->path, from->line, "%%include nested deeper than %d files",
		            INCLUDE_DEPTH_MAX);
		return -1;
	}
	if ((real = realpath(path, NULL)) == NULL) {
		open_error(fp, from, path, name, errno);
		return -1;
	}
	/* A device or pipe (/dev/zero) could be read forever: included files are files. */
	if (from != NULL && (stat(real, &st) != 0 || !S_ISREG(st.st_mode))) {
		parse_error(fp, from->path, from->line, "%%include %s: not a regular file", name);
		free(real);
		return -1;
	}
	for (int i = 0; i < fp->depth; i++) {
		if (strcmp(fp->stack[i].real, real) == 0) {
			parse_error(fp, from->path, from->line,
			            "%%include %s: a loop (%s is already being read)", name,
			            fp->stack[i].path);
			free(real);
			return -1;
		}
	}
	s = &fp->stack[fp->depth];
	*s = (struct source){.real = real};
	if ((s->path = path_keep(fp, path)) == NULL || (s->file = fopen(path, "r")) == NULL) {
		open_error(fp, from, path, name, s->path == NULL ? ENOMEM : errno);
		free(real);
		return -1;
	}
	fp->depth++;
	return 0;
}

static void source_pop(struct file_parse *fp)
{
	struct source *s = &fp->stack[--fp->depth];

	fclose(s->file);
	free(s->real);
}

/*
 * `%include FILE`: a relative FILE is taken from the directory of the file
 * that includes it, so a configuration directory works from anywhere.
 */
static void include_file(struct file_parse *fp, const char *arg)
{
	const struct source *from = &fp->stack[fp->depth - 1];
	const char *slash = strrchr(from->path, '/');
	char path[PATH_MAX], name[PATH_MAX];
	size_t len;

	arg = value_skip_space(arg);
	len = strlen(arg);
	while (len > 0 && isspace((unsigned char)arg[len - 1]))
		len--;
	if (len >= 2 && (arg[0] == '"' || arg[0] == '\'') && arg[len - 1] == arg[0]) {
		arg++;
		len -= 2;
	}
	if (len == 0) {
		parse_error(fp, from->path, from->line, "%%include needs a file name");
		return;
	}
	if (arg[0] == '/' || slash == NULL)
		snprintf(path, sizeof(path), "%.*s", (int)len, arg);
	else
		snprintf(path, sizeof(path), "%.*s/%.*s", (int)(slash - from->path), from->path,
		         (int)len, arg);
	snprintf(name, sizeof(name), "%.*s", (int)len, arg);
	source_push(fp, path, name, from);
}

/* ---- lines for inih ---- */

/* End of `s` without an inline comment (";" after a blank, as inih has it) and trailing blanks. */
static size_t value_end(const char *s)
{
	size_t n = strlen(s);

	for (size_t i = 1; i < n; i++) {
		if (s[i] == ';' && isspace((unsigned char)s[i - 1])) {
			n = i;
			break;
		}
	}
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	return n;
}

/* Where a key line's '=' or ':' is, as inih finds it; NULL when an inline comment comes first. */
static const char *key_separator(const char *s)
{
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '=' || *p == ':')
			return p;
		if (*p == ';' && p > s && isspace((unsigned char)p[-1]))
			return NULL;
	}
	return NULL;
}

/* Keeps a long line's value; returns its index, -1 when out of memory. */
static long stash_value(struct file_parse *fp, const char *value)
{
	size_t n = value_end(value);
	char *copy = malloc(n + 1);

	if (copy == NULL ||
	    grow((void **)&fp->stash, &fp->stash_cap, fp->nstash, sizeof(*fp->stash)) < 0) {
		free(copy);
		return -1;
	}
	memcpy(copy, value, n);
	copy[n] = '\0';
	fp->stash[fp->nstash] = copy;
	return (long)fp->nstash++;
}

/*
 * Writes what inih gets for the physical line `line` into str (num bytes):
 * the line itself, a blank line for one reported as bad, or for a long one
 * `key = <mark><index>` (or an indented `<mark><index>` continuing a value).
 */
static void line_hand(struct file_parse *fp, const char *line, char *str, int num)
{
	const struct line_loc *loc = last_loc(fp);
	const char *start = value_skip_space(line), *sep;
	bool fits = strlen(line) + 2 <= (size_t)num;
	bool continues = fp->in_key && start > line && *start != '\0';
	long idx;

	fp->indented = start > line;
	snprintf(str, (size_t)num, "\n");
	if (*start == '\0' || *start == ';' || *start == '#')
		return;
	if (continues) {
		if (fits)
			snprintf(str, (size_t)num, "%s\n", line);
		else if ((idx = stash_value(fp, start)) >= 0)
			snprintf(str, (size_t)num, " %c%ld\n", STASH_MARK, idx);
		return;
	}
	if (*start == '[') {
		fp->in_key = false;
		if (strchr(start, ']') == NULL)
			parse_error(fp, loc->path, loc->line, "section header without ']'");
		else if (!fits)
			parse_error(fp, loc->path, loc->line, "section name too long");
		else
			snprintf(str, (size_t)num, "%s\n", line);
		return;
	}
	if ((sep = key_separator(start)) == NULL) {
		parse_error(fp, loc->path, loc->line,
		            "syntax error (expected [section] or key = value)");
		return;
	}
	fp->in_key = true;
	if (fits) {
		snprintf(str, (size_t)num, "%s\n", line);
	} else if (sep - start + 16 > num) {
		parse_error(fp, loc->path, loc->line, "key too long");
	} else if ((idx = stash_value(fp, value_skip_space(sep + 1))) >= 0) {
		snprintf(str, (size_t)num, "%.*s= %c%ld\n", (int)(sep - start), start, STASH_MARK,
		         idx);
	}
}

/* inih's fgets: the next line of the file on top of the stack, following %include. */
static char *ini_read_line_cb(char *str, int num, void *stream)
{
	struct file_parse *fp = stream;

	while (fp->depth > 0) {
		struct source *src = &fp->stack[fp->depth - 1];
		ssize_t n = getline(&fp->buf, &fp->buf_cap, src->file);

		if (n < 0) {
			source_pop(fp);
			continue;
		}
		src->line++;
		while (n > 0 && (fp->buf[n - 1] == '\n' || fp->buf[n - 1] == '\r'))
			fp->buf[--n] = '\0';
		if (strncmp(fp->buf, "%include", 8) == 0 &&
		    (fp->buf[8] == '\0' || isspace((unsigned char)fp->buf[8]))) {
			include_file(fp, fp->buf + 8);
			continue;
		}
		if (grow((void **)&fp->locs, &fp->loc_cap, fp->nlocs, sizeof(*fp->locs)) < 0) {
			parse_error(fp, src->path, src->line, "out of memory");
			return NULL;
		}
		fp->locs[fp->nlocs++] = (struct line_loc){src->path, src->line};
		line_hand(fp, fp->buf, str, num);
		return str;
	}
	return NULL;
}

/* ---- entries ---- */

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
	else if (strcasecmp(name, "peers") == 0)
		*out = SECTION_PEERS;
	else
		return -1;
	return 0;
}

/* The value as the file meant it: a long line's value comes back from the stash. */
static const char *entry_value(const struct file_parse *fp, const char *value)
{
	if (value[0] == STASH_MARK) {
		size_t idx = strtoul(value + 1, NULL, 10);

		if (idx < fp->nstash)
			return fp->stash[idx];
	}
	return value;
}

/*
 * Appends " value" to the last entry: inih hands us a continuation line.
 * Some inih versions leave inline comments on continuation lines, so the
 * "; after a blank" rule is applied here too, the same for every line.
 */
static int entry_continue(struct raw_entry *last, const char *value)
{
	size_t old = strlen(last->value), add = value_end(value);
	char *joined;

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
	const struct line_loc *loc = last_loc(fp);
	struct raw_entry *e;

	if (grow((void **)&fp->entries, &fp->cap, fp->nentries, sizeof(*fp->entries)) < 0)
		return -1;
	e = &fp->entries[fp->nentries];
	e->section = section;
	e->path = loc->path;
	e->line = loc->line;
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
	const struct line_loc *loc = last_loc(fp);
	enum section sec;
	const char *suffix;
	int rc;

	value = entry_value(fp, value);
	fp->pgbouncer_section |= strcasecmp(section, "pgbouncer") == 0;
	if (*section == '\0') {
		parse_error(fp, loc->path, loc->line,
		            "key '%.60s' before any section (start with [sluice])", name);
		return 1;
	}
	if (section_find(section, &sec, &suffix) < 0) {
		parse_error(fp, loc->path, loc->line,
		            "unknown section [%.60s] (expected [sluice], [databases], [users], "
		            "[tenant.NAME], [tier.NAME])",
		            section);
		return 1;
	}
	if (fp->indented && last != NULL && last->section == sec &&
	    strcmp(last->name, suffix) == 0 && strcmp(last->key, name) == 0)
		rc = entry_continue(last, value);
	else
		rc = entry_push(fp, sec, suffix, name, value);
	if (rc < 0)
		parse_error(fp, loc->path, loc->line, "out of memory");
	return 1;
}

static void file_parse_fini(struct file_parse *fp)
{
	while (fp->depth > 0)
		source_pop(fp);
	for (size_t i = 0; i < fp->nentries; i++) {
		free(fp->entries[i].name);
		free(fp->entries[i].key);
		value_free_secret(fp->entries[i].value);
	}
	free(fp->entries);
	for (size_t i = 0; i < fp->nstash; i++)
		value_free_secret(fp->stash[i]);
	free(fp->stash);
	for (size_t i = 0; i < fp->npaths; i++)
		free(fp->paths[i]);
	free(fp->paths);
	free(fp->locs);
	free(fp->buf);
}

/* Line of an earlier entry with the same section and key; NULL if none. */
static const struct raw_entry *entry_first(const struct file_parse *fp, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (fp->entries[j].section == fp->entries[i].section &&
		    strcmp(fp->entries[j].name, fp->entries[i].name) == 0 &&
		    strcmp(fp->entries[j].key, fp->entries[i].key) == 0)
			return &fp->entries[j];
	return NULL;
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

/*
 * A database name may be written as a quoted SQL identifier in PgBouncer
 * files: "my-db", with "" for a quote inside.
 */
static const char *db_name(const char *key, char *buf, size_t cap)
{
	size_t n = strlen(key), out = 0;

	if (n < 2 || key[0] != '"' || key[n - 1] != '"')
		return key;
	for (size_t i = 1; i + 1 < n && out + 1 < cap; i++) {
		buf[out++] = key[i];
		if (key[i] == '"' && key[i + 1] == '"')
			i++;
	}
	buf[out] = '\0';
	return buf;
}

/*
 * PgBouncer's cipher shortcuts name OpenSSL's defaults, which sluice's own
 * default is meant to be too; "all" is OpenSSL's ALL.
 */
static const char *pgbouncer_value(const struct config_option *opt, const char *value)
{
	if (strcmp(opt->name, "client_tls_ciphers") != 0 &&
	    strcmp(opt->name, "server_tls_ciphers") != 0)
		return value;
	if (strcasecmp(value, "default") == 0 || strcasecmp(value, "secure") == 0 ||
	    strcasecmp(value, "fast") == 0 || strcasecmp(value, "normal") == 0)
		return opt->default_value;
	if (strcasecmp(value, "all") == 0)
		return "ALL";
	return value;
}

/* A [sluice] key: an option, a PgBouncer key sluice ignores (with a note), or an error. */
static int sluice_entry(struct config *cfg, const struct raw_entry *e, char *msg, size_t len)
{
	const struct config_option *opt = config_option_find(e->key);
	const struct compat_key *k;
	char quoted[1024];
	const char *value = unquote(e->value, quoted, sizeof(quoted));

	if (opt == NULL) {
		if ((k = compat_find(COMPAT_GLOBAL, e->key)) == NULL) {
			snprintf(msg, len, "unknown key '%.60s' in [sluice]", e->key);
			return -1;
		}
		if (!compat_is_harmless(k, value))
			config_note(
			    cfg, LOG_WARN, e->key,
			    "'%s' is a PgBouncer setting that sluice does not support (%s); "
			    "ignored",
			    e->key, k->why);
		return 0;
	}
	if (value_parse(opt, pgbouncer_value(opt, value), value_field(cfg, opt), msg, len) < 0) {
		msg_prefix(msg, len, "key '%.60s': ", e->key);
		return -1;
	}
	return 0;
}

static int entry_apply(struct file_parse *fp, const struct raw_entry *e, char *msg, size_t len)
{
	struct config *cfg = fp->cfg;
	char name[256];

	switch (e->section) {
	case SECTION_SLUICE:
		return sluice_entry(cfg, e, msg, len);
	case SECTION_DATABASES:
		return databases_define_db(cfg, db_name(e->key, name, sizeof(name)), e->value, msg,
		                           len);
	case SECTION_USERS:
		return databases_define_user(cfg, e->key, e->value, msg, len);
	case SECTION_TENANT:
	case SECTION_TIER:
		return config_tenant_entry(cfg, e->section == SECTION_TIER, e->name, e->key,
		                           e->value, e->line, msg, len);
	case SECTION_PEERS:
		if (!fp->peers_noted)
			config_note(
			    cfg, LOG_WARN, "[peers]",
			    "[peers] is PgBouncer's list of peered processes; sluice does not "
			    "peer (one process serves every core, see workers): ignored");
		fp->peers_noted = true;
		return 0;
	}
	return -1;
}

static bool has_global(const struct file_parse *fp, const char *key)
{
	for (size_t i = 0; i < fp->nentries; i++)
		if (fp->entries[i].section == SECTION_SLUICE &&
		    strcmp(fp->entries[i].key, key) == 0)
			return true;
	return false;
}

/*
 * Two defaults differ from PgBouncer's in a way that changes what clients
 * see; a PgBouncer file that relies on them is told so.
 */
static void note_pgbouncer_defaults(struct file_parse *fp)
{
	if (!fp->pgbouncer_section)
		return;
	if (!has_global(fp, "pool_mode"))
		config_note(fp->cfg, LOG_WARN, "pool_mode",
		            "%s: pool_mode is not set: PgBouncer's default is session, sluice's is "
		            "transaction; set pool_mode = session to keep session pooling",
		            fp->paths[0]);
	if (!has_global(fp, "auth_type"))
		config_note(fp->cfg, LOG_WARN, "auth_type",
		            "%s: auth_type is not set: PgBouncer's default is md5, sluice's is "
		            "scram-sha-256, which cannot check md5 hashes in auth_file",
		            fp->paths[0]);
}

/* Applies every entry; with --check it goes on after an error to find the others. */
static void file_apply(struct file_parse *fp)
{
	char msg[MSG_MAX];
	bool keep_going = fp->err->report != NULL;
	const struct raw_entry *first;

	for (size_t i = 0; i < fp->nentries && (keep_going || fp->errors == 0); i++) {
		const struct raw_entry *e = &fp->entries[i];

		snprintf(fp->cfg->note_where, sizeof(fp->cfg->note_where), "%s:%d", e->path,
		         e->line);
		/* A repeat is nearly always a forgotten edit; "last one wins" would hide it. */
		if ((first = entry_first(fp, i)) != NULL) {
			if (strcmp(first->path, e->path) == 0)
				parse_error(fp, e->path, e->line,
				            "'%.60s' is set twice (first on line %d)", e->key,
				            first->line);
			else
				parse_error(fp, e->path, e->line,
				            "'%.60s' is set twice (first at %s:%d)", e->key,
				            first->path, first->line);
			continue;
		}
		if (entry_apply(fp, e, msg, sizeof(msg)) < 0)
			parse_error(fp, e->path, e->line, "%s", msg);
	}
	fp->cfg->note_where[0] = '\0';
	note_pgbouncer_defaults(fp);
}

int file_read(struct config *cfg, const char *path, struct config_error *err)
{
	struct file_parse fp = {.cfg = cfg, .err = err};
	char msg[MSG_MAX];
	int rc, line;

	if (source_push(&fp, path, path, NULL) < 0) {
		file_parse_fini(&fp);
		return -1;
	}
	rc = ini_parse_stream(ini_read_line_cb, &fp, ini_entry_cb, &fp);
	/* Lines inih would reject were reported and blanked by the reader; this is a safety net. */
	if (rc > 0 && (size_t)rc <= fp.nlocs)
		parse_error(&fp, fp.locs[rc - 1].path, fp.locs[rc - 1].line,
		            "syntax error (expected [section] or key = value)");
	else if (rc < 0)
		parse_error(&fp, path, 0, "out of memory");
	if (fp.errors == 0 || err->report != NULL)
		file_apply(&fp);
	if ((fp.errors == 0 || err->report != NULL) &&
	    (line = config_tenants_resolve(cfg, msg, sizeof(msg))) != 0)
		parse_error(&fp, path, line, "%s", msg);
	rc = fp.errors > 0 ? -1 : 0;
	file_parse_fini(&fp);
	return rc;
}
