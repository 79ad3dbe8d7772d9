/*
 * Lists of names split out of one configuration value ("a, b_*"), as used
 * by [tenant.NAME] patterns and auth_hba_file fields.
 */
#ifndef SLUICE_STRLIST_H
#define SLUICE_STRLIST_H

#include <stddef.h>

/*
 * Appends the pieces of `text` between any of the characters in `seps` to
 * *list (growing it; *count counts them).  Returns 0, or -1 when out of
 * memory (what was appended so far stays, for strlist_free).
 */
int strlist_split(const char *text, const char *seps, char ***list, size_t *count);
void strlist_free(char **list, size_t count);

#endif
