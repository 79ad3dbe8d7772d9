/*
 * PgBouncer's configuration keys (1.25, plus a few from its development
 * branch) and what sluice does with each, so that a pgbouncer.ini loads as it
 * is.  A key sluice honours under the same name is a row without `why`; the
 * others are read and ignored with one warning that says why (a key that is
 * neither sluice's nor PgBouncer's is still an error).  docs/migrating.md
 * has one row per key, which a unit test checks.
 */
#ifndef SLUICE_CONFIG_COMPAT_H
#define SLUICE_CONFIG_COMPAT_H

#include <stdbool.h>
#include <stddef.h>

enum compat_section {
	COMPAT_GLOBAL,   /* [pgbouncer] / [sluice] */
	COMPAT_DATABASE, /* a [databases] entry's key=value */
	COMPAT_USER,     /* a [users] entry's key=value */
};

struct compat_key {
	enum compat_section section;
	const char *name;       /* the key as PgBouncer spells it */
	const char *why;        /* NULL: sluice honours it (same name); else why it is ignored */
	const char *same_value; /* a value that asks for what sluice does anyway: no warning */
};

const struct compat_key *compat_keys(size_t *count);
/* The row for `name`, or NULL when PgBouncer has no such key in that section. */
const struct compat_key *compat_find(enum compat_section section, const char *name);
/* True when `value` asks for nothing sluice does not do: the key needs no warning. */
bool compat_is_harmless(const struct compat_key *k, const char *value);

#endif
