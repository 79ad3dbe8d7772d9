/*
 * A cheap look at SQL text; see sqlscan.h.  Every Query and Parse passes
 * through sqlscan_verb and sqlscan_mentions, so both stop early: the verb
 * reads one word, the mentions one memchr for '_' per underscore.
 */
#include "proto/sqlscan.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

struct keyword {
	const char *word;
	size_t len;
	enum sql_verb verb;
};

#define KW(w, v)                                                                                   \
	{                                                                                          \
		w, sizeof(w) - 1, v                                                                \
	}

static const struct keyword keywords[] = {
    KW("set", SQL_VERB_SET),
    KW("reset", SQL_VERB_RESET),
    KW("discard", SQL_VERB_DISCARD),
    KW("create", SQL_VERB_CREATE),
    KW("declare", SQL_VERB_DECLARE),
    KW("close", SQL_VERB_CLOSE),
    KW("drop", SQL_VERB_DROP),
    KW("load", SQL_VERB_LOAD),
    KW("prepare", SQL_VERB_PREPARE),
    KW("execute", SQL_VERB_EXECUTE),
    KW("listen", SQL_VERB_LISTEN),
    KW("unlisten", SQL_VERB_UNLISTEN),
    KW("deallocate", SQL_VERB_DEALLOCATE),
    KW("explain", SQL_VERB_EXPLAIN),
};

/*
 * Lengths of the keywords that start with `letter`, one bit each: a text that
 * starts with none of them (SELECT, INSERT, BEGIN...) is not compared with
 * the table at all.
 */
static unsigned keyword_lengths(char letter)
{
	switch (letter) {
	case 's':
		return 1u << 3; /* set */
	case 'r':
		return 1u << 5; /* reset */
	case 'd':
		return 1u << 7 | 1u << 4 | 1u << 10; /* discard, declare, drop, deallocate */
	case 'c':
		return 1u << 6 | 1u << 5; /* create, close */
	case 'l':
		return 1u << 4 | 1u << 6; /* load, listen */
	case 'p':
	case 'e':
		return 1u << 7; /* prepare; execute, explain */
	case 'u':
		return 1u << 8; /* unlisten */
	default:
		return 0;
	}
}

/* ASCII case-insensitive compare with a lower-case word: no locale lookups on the hot path. */
static bool ieq(const char *text, const char *lower, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = text[i];

		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch | 0x20);
		if (ch != lower[i])
			return false;
	}
	return true;
}

static bool is_alpha(char ch)
{
	return (ch | 0x20) >= 'a' && (ch | 0x20) <= 'z';
}

static bool is_word_char(char ch)
{
	return is_alpha(ch) || (ch >= '0' && ch <= '9') || ch == '_' || ch == '$' ||
	       (unsigned char)ch >= 0x80;
}

size_t sqlscan_skip_space(const char *text, size_t n, size_t i)
{
	while (i < n) {
		char ch = text[i];

		if (ch == ' ' || (ch >= '\t' && ch <= '\r')) {
			i++;
		} else if (text[i] == '-' && i + 1 < n && text[i + 1] == '-') {
			while (i < n && text[i] != '\n')
				i++;
		} else if (text[i] == '/' && i + 1 < n && text[i + 1] == '*') {
			/* Postgres nests block comments. */
			int depth = 0;

			do {
				if (i + 1 < n && text[i] == '/' && text[i + 1] == '*') {
					depth++;
					i += 2;
				} else if (i + 1 < n && text[i] == '*' && text[i + 1] == '/') {
					depth--;
					i += 2;
				} else {
					i++;
				}
			} while (depth > 0 && i < n);
		} else {
			break;
		}
	}
	return i;
}

enum sql_verb sqlscan_verb(const char *text, size_t n)
{
	size_t i = 0, start, len;

	for (;;) {
		i = sqlscan_skip_space(text, n, i);
		if (i < n && text[i] == '(')
			i++;
		else
			break;
	}
	start = i;
	while (i < n && is_alpha(text[i]))
		i++;
	len = i - start;
	/* A word cut off by the end of the bytes is not known to be that word. */
	if (len < 3 || len > 10 || i == n || is_word_char(text[i]) ||
	    (keyword_lengths((char)(text[start] | 0x20)) & (1u << len)) == 0)
		return SQL_VERB_OTHER;
	for (size_t k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++)
		if (keywords[k].len == len && keywords[k].word[0] == (text[start] | 0x20) &&
		    ieq(text + start, keywords[k].word, len))
			return keywords[k].verb;
	return SQL_VERB_OTHER;
}

/* Does `word` (lower case) end at text[end] and not continue an identifier before it? */
static bool word_before(const char *text, size_t end, const char *word)
{
	size_t len = strlen(word);

	if (end < len || !ieq(text + end - len, word, len))
		return false;
	return end == len || !is_word_char(text[end - len - 1]);
}

/*
 * The word TEMP or TEMPORARY anywhere: SELECT ... INTO TEMP, or CREATE TEMP
 * after the first statement of a Query, make a temporary table under a verb
 * and a CommandComplete tag that say nothing of it.  Found from its 'p' (a
 * memchr per case), then checked as a whole word, so "temperature" and
 * "template" are not it.
 */
static bool mentions_temp(const char *text, size_t n)
{
	static const char p_cases[] = {'p', 'P'};

	for (size_t i = 0; i < sizeof(p_cases); i++) {
		const char *p = text, *end = text + n, *u;

		while (p < end && (u = memchr(p, p_cases[i], (size_t)(end - p))) != NULL) {
			size_t after = (size_t)(u - text) + 1;

			if (word_before(text, after, "temp") &&
			    (after == n || !is_word_char(text[after]) ||
			     (n - after >= 5 && ieq(text + after, "orary", 5) &&
			      (after + 5 == n || !is_word_char(text[after + 5])))))
				return true;
			p = u + 1;
		}
	}
	return false;
}

unsigned sqlscan_mentions(const char *text, size_t n)
{
	const char *p = text, *end = text + n, *u;
	unsigned found = 0;

	while (p < end && (u = memchr(p, '_', (size_t)(end - p))) != NULL) {
		size_t at = (size_t)(u - text), left = n - at;
		char next = left > 1 ? (char)(u[1] | 0x20) : 0;

		if (next != 'c' && next != 'a') {
			p = u + 1;
			continue;
		}
		if (left >= 7 && ieq(u, "_config", 7) && word_before(text, at, "set"))
			found |= SQL_MENTIONS_SET_CONFIG;
		else if (left >= 9 && ieq(u, "_advisory", 9) &&
		         (word_before(text, at, "pg") || word_before(text, at, "pg_try")))
			found |= SQL_MENTIONS_ADVISORY;
		p = u + 1;
	}
	if (mentions_temp(text, n))
		found |= SQL_MENTIONS_TEMP;
	return found;
}

bool sqlscan_may_change_session(const char *text, size_t n)
{
	switch (sqlscan_verb(text, n)) {
	case SQL_VERB_OTHER:
	case SQL_VERB_EXECUTE:
	case SQL_VERB_EXPLAIN:
		return sqlscan_mentions(text, n) != 0;
	default:
		return true;
	}
}

bool sqlscan_contains(const char *text, size_t n, const char *word)
{
	size_t len = strlen(word);

	for (size_t i = 0; i + len <= n; i++)
		if (tolower((unsigned char)text[i]) == word[0] &&
		    strncasecmp(text + i, word, len) == 0)
			return true;
	return false;
}

/* After the word at text[i..]: its end, or 0 if it is not `word`. */
static size_t match_word(const char *text, size_t n, size_t i, const char *word)
{
	size_t len = strlen(word);

	if (i + len > n || strncasecmp(text + i, word, len) != 0 ||
	    (i + len < n && is_word_char(text[i + len])))
		return 0;
	return i + len;
}

static size_t quoted_name(const char *text, size_t n, size_t i, char *name, size_t cap)
{
	size_t len = 0;

	for (i++; i < n; i++) {
		if (text[i] == '"') {
			if (i + 1 < n && text[i + 1] == '"')
				i++;
			else
				break;
		}
		if (len + 1 >= cap)
			return 0;
		name[len++] = text[i];
	}
	if (i >= n || len == 0)
		return 0;
	name[len] = '\0';
	return i + 1;
}

/* An identifier at text[i]: quoted, or folded to lower case; returns its end or 0. */
static size_t read_identifier(const char *text, size_t n, size_t i, char *name, size_t cap)
{
	size_t len = 0;

	if (i < n && text[i] == '"')
		return quoted_name(text, n, i, name, cap);
	if (i >= n ||
	    !(isalpha((unsigned char)text[i]) || text[i] == '_' || (unsigned char)text[i] >= 0x80))
		return 0;
	while (i < n && is_word_char(text[i])) {
		if (len + 1 >= cap)
			return 0;
		name[len++] = (char)tolower((unsigned char)text[i++]);
	}
	name[len] = '\0';
	return i;
}

size_t sqlscan_name(const char *text, size_t n, const char *skip, char *name, size_t cap)
{
	size_t i = sqlscan_skip_space(text, n, 0), after;

	while (i < n && isalpha((unsigned char)text[i]))
		i++;
	i = sqlscan_skip_space(text, n, i);
	if (skip != NULL && (after = match_word(text, n, i, skip)) != 0)
		i = sqlscan_skip_space(text, n, after);
	return read_identifier(text, n, i, name, cap);
}

/* The end of the parenthesised group at text[i], strings and quoted names skipped; or 0. */
static size_t skip_group(const char *text, size_t n, size_t i)
{
	int depth = 0;

	for (; i < n; i++) {
		char ch = text[i];

		if (ch == '\'' || ch == '"') {
			for (i++; i < n && text[i] != ch; i++)
				;
		} else if (ch == '(') {
			depth++;
		} else if (ch == ')' && --depth == 0) {
			return i + 1;
		} else if (ch == ';' || ch == '$') {
			return 0;
		}
	}
	return 0;
}

bool sqlscan_prepare_has_as(const char *text, size_t n, size_t from)
{
	size_t i = sqlscan_skip_space(text, n, from);

	if (i < n && text[i] == '(' && (i = skip_group(text, n, i)) == 0)
		return false;
	i = sqlscan_skip_space(text, n, i);
	return match_word(text, n, i, "as") != 0;
}

/*
 * "CREATE ... AS " at text[i]: the offset after AS, or 0 when the first
 * top-level AS is not there or something sluice does not read (a string, a
 * dollar-quoted body, a second statement) comes first.
 */
static size_t after_create_as(const char *text, size_t n, size_t i)
{
	while ((i = sqlscan_skip_space(text, n, i)) < n) {
		size_t end;

		if ((end = match_word(text, n, i, "as")) != 0)
			return end;
		if (text[i] == '(') {
			end = skip_group(text, n, i);
		} else if (text[i] == '"') {
			for (end = i + 1; end < n && text[end] != '"'; end++)
				;
			end = end < n ? end + 1 : 0;
		} else if (is_word_char(text[i])) {
			for (end = i; end < n && is_word_char(text[end]); end++)
				;
		} else {
			end = text[i] == '.' || text[i] == ',' || text[i] == '=' ? i + 1 : 0;
		}
		if (end == 0)
			return 0;
		i = end;
	}
	return 0;
}

/* EXPLAIN's options at text[i]: "(option, ...)" or the old ANALYZE and VERBOSE words. */
static size_t after_explain_options(const char *text, size_t n, size_t i)
{
	size_t end;

	i = sqlscan_skip_space(text, n, i);
	if (i < n && text[i] == '(')
		return skip_group(text, n, i);
	while ((end = match_word(text, n, i, "analyze")) != 0 ||
	       (end = match_word(text, n, i, "analyse")) != 0 ||
	       (end = match_word(text, n, i, "verbose")) != 0)
		i = sqlscan_skip_space(text, n, end);
	return i;
}

size_t sqlscan_execute_target(const char *text, size_t n, char *name, size_t cap, size_t *start)
{
	size_t i = sqlscan_skip_space(text, n, 0), end;

	if ((end = match_word(text, n, i, "explain")) != 0) {
		if ((i = after_explain_options(text, n, end)) == 0)
			return 0;
		i = sqlscan_skip_space(text, n, i);
	}
	if ((end = match_word(text, n, i, "create")) != 0) {
		if ((i = after_create_as(text, n, end)) == 0)
			return 0;
		i = sqlscan_skip_space(text, n, i);
	}
	if ((end = match_word(text, n, i, "execute")) == 0)
		return 0;
	*start = sqlscan_skip_space(text, n, end);
	return read_identifier(text, n, *start, name, cap);
}

#define CUSTOM_NAME_MAX 128

/* "SET [SESSION | LOCAL] name" or "RESET name" at text[i..]: report a dotted name. */
static void statement_name(const char *text, size_t n, size_t i,
                           void (*fn)(void *arg, const char *name), void *arg)
{
	char name[CUSTOM_NAME_MAX];
	size_t end, at;
	enum sql_verb verb = sqlscan_verb(text + i, n - i);

	if (verb != SQL_VERB_SET && verb != SQL_VERB_RESET)
		return;
	at = sqlscan_skip_space(text, n, i);
	at += verb == SQL_VERB_SET ? 3 : 5;
	at = sqlscan_skip_space(text, n, at);
	if ((end = match_word(text, n, at, "session")) != 0 ||
	    (end = match_word(text, n, at, "local")) != 0)
		at = end;
	/* The name may be written as parts: a."b".c */
	for (size_t len = 0;;) {
		char part[CUSTOM_NAME_MAX];
		size_t next, plen;

		at = sqlscan_skip_space(text, n, at);
		if ((next = read_identifier(text, n, at, part, sizeof(part))) == 0)
			return;
		plen = strlen(part);
		if (len + plen + 2 > sizeof(name))
			return;
		if (len > 0)
			name[len++] = '.';
		memcpy(name + len, part, plen + 1);
		len += plen;
		at = sqlscan_skip_space(text, n, next);
		if (at >= n || text[at] != '.') {
			if (memchr(name, '.', len) != NULL)
				fn(arg, name);
			return;
		}
		at++;
	}
}

/* set_config( at text[i..] (just past the word): its literal name, or -1. */
static int set_config_name(const char *text, size_t n, size_t i,
                           void (*fn)(void *arg, const char *name), void *arg)
{
	char name[CUSTOM_NAME_MAX];
	size_t len = 0;

	i = sqlscan_skip_space(text, n, i);
	if (i >= n || text[i] != '(')
		return 0; /* not a call: a column or a word in a string */
	i = sqlscan_skip_space(text, n, i + 1);
	if (i >= n || text[i] != '\'')
		return -1;
	for (i++; i < n; i++) {
		if (text[i] == '\'') {
			if (i + 1 < n && text[i + 1] == '\'')
				i++;
			else
				break;
		}
		if (len + 1 >= sizeof(name))
			return -1;
		name[len++] = (char)tolower((unsigned char)text[i]);
	}
	if (i >= n)
		return -1;
	name[len] = '\0';
	if (memchr(name, '.', len) != NULL)
		fn(arg, name);
	return 0;
}

int sqlscan_custom_names(const char *text, size_t n, void (*fn)(void *arg, const char *name),
                         void *arg)
{
	bool statement_start = true;
	int rc = 0;

	for (size_t i = 0; i < n;) {
		size_t at = sqlscan_skip_space(text, n, i);

		if (at != i) {
			i = at;
			continue;
		}
		if (statement_start) {
			statement_name(text, n, i, fn, arg);
			statement_start = false;
		}
		if (text[i] == ';') {
			statement_start = true;
			i++;
		} else if (text[i] == '\'' || text[i] == '"') {
			char q = text[i];

			for (i++; i < n && text[i] != q; i++)
				;
			i++;
		} else if (text[i] == '$' && (i == 0 || !is_word_char(text[i - 1])) &&
		           !(i + 1 < n && isdigit((unsigned char)text[i + 1]))) {
			return -1; /* dollar quoting: a body sluice does not read */
		} else if (is_word_char(text[i])) {
			size_t start = i;

			while (i < n && is_word_char(text[i]))
				i++;
			if (i - start == 10 && strncasecmp(text + start, "set_config", 10) == 0 &&
			    (start < 1 || text[start - 1] != '.' ||
			     (start >= 11 &&
			      strncasecmp(text + start - 11, "pg_catalog.", 11) == 0)) &&
			    set_config_name(text, n, i, fn, arg) < 0)
				rc = -1;
		} else {
			i++;
		}
	}
	return rc;
}

/* A dollar-quoted string opening at text[i] ("$$" or "$tag$"): the offset past its end, or 0. */
static size_t dollar_string(const char *text, size_t n, size_t i)
{
	size_t j = i + 1, tag_len;

	while (j < n && text[j] != '$' && is_word_char(text[j]))
		j++;
	if (j >= n || text[j] != '$')
		return 0;
	tag_len = j + 1 - i;
	for (j++; j + tag_len <= n; j++)
		if (text[j] == '$' && memcmp(text + j, text + i, tag_len) == 0)
			return j + tag_len;
	return 0;
}

/* A quoted string or identifier opening at text[i]: the offset past it, or 0 when unsure. */
static size_t quoted_end(const char *text, size_t n, size_t i)
{
	char q = text[i];
	/* E'...' takes backslash escapes; elsewhere a backslash may mean either. */
	bool escapes = q == '\'' && i > 0 && (text[i - 1] | 0x20) == 'e' &&
	               (i == 1 || !is_word_char(text[i - 2]));

	for (i++; i < n; i++) {
		if (text[i] == '\\' && q == '\'') {
			if (!escapes)
				return 0;
			i++;
		} else if (text[i] == q) {
			return i +
			       1; /* a doubled quote reads as two strings: the same for splitting */
		}
	}
	return 0;
}

int sqlscan_statements(const char *text, size_t n,
                       void (*fn)(void *arg, const char *stmt, size_t len), void *arg)
{
	size_t start = 0, i = 0;

	while (i < n) {
		size_t at = sqlscan_skip_space(text, n, i);
		char ch;

		if (at != i) {
			i = at;
			continue;
		}
		ch = text[i];
		if (ch == ';') {
			fn(arg, text + start, i - start);
			start = ++i;
		} else if (ch == '\'' || ch == '"') {
			if ((i = quoted_end(text, n, i)) == 0)
				return -1;
		} else if (ch == '$' && (i == 0 || !is_word_char(text[i - 1])) &&
		           !(i + 1 < n && isdigit((unsigned char)text[i + 1]))) {
			if ((i = dollar_string(text, n, i)) == 0)
				return -1;
		} else {
			i++;
		}
	}
	if (sqlscan_skip_space(text, n, start) < n)
		fn(arg, text + start, n - start);
	return 0;
}
