/*
 * See strlist.h.
 */
#include "base/strlist.h"

#include <stdlib.h>
#include <string.h>

int strlist_split(const char *text, const char *seps, char ***list, size_t *count)
{
	char *copy = strdup(text), *save = NULL, *tok;

	if (copy == NULL)
		return -1;
	for (tok = strtok_r(copy, seps, &save); tok != NULL; tok = strtok_r(NULL, seps, &save)) {
		char **grown = realloc(*list, (*count + 1) * sizeof(*grown));

		if (grown == NULL) {
			free(copy);
			return -1;
		}
		*list = grown;
		if ((grown[*count] = strdup(tok)) == NULL) {
			free(copy);
			return -1;
		}
		(*count)++;
	}
	free(copy);
	return 0;
}

void strlist_free(char **list, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(list[i]);
	free(list);
}
