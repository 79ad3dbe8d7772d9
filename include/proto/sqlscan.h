/*
 * A cheap look at SQL text, for what transaction pooling must notice
 * (docs/session-state.md): the first keyword of a Query or Parse, whether
 * the text calls set_config() or a session advisory-lock function, and the
 * names of SQL PREPARE / EXECUTE / DEALLOCATE and LISTEN / UNLISTEN.  It never
 * parses SQL: anything it cannot classify is SQL_VERB_OTHER, and callers
 * treat doubt conservatively (read the session state back from the server).
 */
#ifndef SLUICE_SQLSCAN_H
#define SLUICE_SQLSCAN_H

#include <stdbool.h>
#include <stddef.h>

enum sql_verb {
	SQL_VERB_OTHER,
	SQL_VERB_SET,
	SQL_VERB_RESET,
	SQL_VERB_DISCARD,
	SQL_VERB_CREATE,
	SQL_VERB_DECLARE,
	SQL_VERB_CLOSE,
	SQL_VERB_DROP,
	SQL_VERB_LOAD,
	SQL_VERB_PREPARE,
	SQL_VERB_EXECUTE,
	SQL_VERB_DEALLOCATE,
	SQL_VERB_LISTEN,
	SQL_VERB_UNLISTEN,
	SQL_VERB_EXPLAIN,
};

/* What a text mentions (sqlscan_mentions). */
#define SQL_MENTIONS_SET_CONFIG 0x1 /* set_config( ... ): may change a setting */
#define SQL_MENTIONS_ADVISORY   0x2 /* pg_advisory_* / pg_try_advisory_*: may lock or unlock */
#define SQL_MENTIONS_TEMP       0x4 /* the word TEMP or TEMPORARY: may create a temporary table */

/*
 * The first keyword of `text` (n bytes, no NUL needed), after whitespace,
 * comments and opening parentheses.  Returns SQL_VERB_OTHER for anything else,
 * including a keyword cut off by the end of the bytes.
 */
enum sql_verb sqlscan_verb(const char *text, size_t n);

/* SQL_MENTIONS_* bits; case-insensitive, one memchr pass over the text. */
unsigned sqlscan_mentions(const char *text, size_t n);

/*
 * Might running `text` change session state sluice tracks (a setting, a pin)?
 * The first keyword, or a mention of set_config or an advisory-lock function.
 */
bool sqlscan_may_change_session(const char *text, size_t n);

/* Case-insensitive: does `text` contain `word` (lower case)? */
bool sqlscan_contains(const char *text, size_t n, const char *word);

/*
 * The identifier after the first keyword (and after `skip`, a second keyword
 * that may follow it, such as PREPARE in "DEALLOCATE PREPARE name"): folded
 * to lower case unless double-quoted, "" quotes undoubled.  Writes it to
 * `name` (cap bytes with the NUL) and returns the offset just past it, or 0
 * when there is none or it does not fit.
 */
size_t sqlscan_name(const char *text, size_t n, const char *skip, char *name, size_t cap);

/*
 * In "PREPARE name [(types)] AS statement", with `from` just past the name
 * (sqlscan_name): whether the type list, if any, and AS come next.  Not so in
 * "PREPARE TRANSACTION 'id'", two-phase commit, which prepares no statement.
 */
bool sqlscan_prepare_has_as(const char *text, size_t n, size_t from);

/*
 * The prepared statement an SQL EXECUTE runs, in "EXECUTE name",
 * "EXPLAIN [options] EXECUTE name", "CREATE ... TABLE ... AS EXECUTE name"
 * and EXPLAIN of that: written to `name` as sqlscan_name does, `*start` set
 * to its first byte; returns the offset just past it, or 0 when the text is
 * none of these (or sluice cannot tell).
 */
size_t sqlscan_execute_target(const char *text, size_t n, char *name, size_t cap, size_t *start);

/*
 * Custom settings (names with a dot: "myapp.tenant") a text may set: the name
 * after SET [SESSION | LOCAL] or RESET at the start of each statement, and the
 * literal first argument of each set_config(.  Calls fn(arg, name) for each.
 * Returns -1 when a text may set one whose name it cannot read (set_config of
 * a non-literal name, dollar quoting), else 0.
 */
int sqlscan_custom_names(const char *text, size_t n, void (*fn)(void *arg, const char *name),
                         void *arg);

/*
 * Splits `text` into its statements at the semicolons outside strings,
 * quoted identifiers, dollar quotes and comments, and calls fn(arg, stmt,
 * len) for each (without its semicolon; an empty tail is skipped).  Returns
 * -1, having called fn for none or some, when sluice cannot tell where a
 * string ends (a backslash outside an E'' string may be an escape or not,
 * depending on standard_conforming_strings), else 0.
 */
int sqlscan_statements(const char *text, size_t n,
                       void (*fn)(void *arg, const char *stmt, size_t len), void *arg);

/* Offset of the first byte after whitespace and comments from `from`. */
size_t sqlscan_skip_space(const char *text, size_t n, size_t from);

#endif
