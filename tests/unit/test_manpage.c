/*
 * packaging/sluice.1 is exactly what `sluice --describe-config=man` prints,
 * so the man page follows the option tables as docs/config.md does, and it
 * documents every option.  (tests/integration/packaging_lint.sh renders it.)
 */
#include "config/config.h"
#include "config/manpage.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r"), *mem;
	char *buf = NULL;
	size_t len = 0;
	int c;

	cr_assert_not_null(f, "cannot read %s (set SLUICE_SOURCE_ROOT)", path);
	mem = open_memstream(&buf, &len);
	while ((c = getc(f)) != EOF)
		putc(c, mem);
	fclose(mem);
	fclose(f);
	return buf;
}

Test(manpage, is_generated_from_the_tables)
{
	const char *root = getenv("SLUICE_SOURCE_ROOT");
	char path[512], *page, *generated = NULL;
	size_t len = 0, n;
	const struct config_option *opts = config_options(&n);
	FILE *mem = open_memstream(&generated, &len);

	manpage_write(mem);
	fclose(mem);
	snprintf(path, sizeof(path), "%s/packaging/sluice.1", root ? root : ".");
	page = read_all(path);
	for (size_t i = 0; i < n; i++) {
		char tag[128];

		/* Each option is a tagged paragraph of its own; '_' needs no escape in roff. */
		snprintf(tag, sizeof(tag), ".TP\n\\fB%s\\fR\n", opts[i].name);
		cr_assert_not_null(strstr(generated, tag), "the man page misses %s", opts[i].name);
	}
	cr_assert_str_eq(page, generated,
	                 "packaging/sluice.1 is stale: regenerate it with "
	                 "`build/sluice --describe-config=man > packaging/sluice.1`");
	free(page);
	free(generated);
}

Test(manpage, roff_requests_cannot_come_from_text)
{
	char *generated = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&generated, &len);

	manpage_write(mem);
	fclose(mem);
	/* Every line starting with '.' is a request we meant: a known macro or a comment. */
	for (char *line = generated; line != NULL && *line != '\0';) {
		char *next = strchr(line, '\n');
		static const char *const ok[] = {".TH ",  ".SH ",  ".SS ",   ".TP\n", ".PP\n",
		                                 ".IP ",  ".B ",   ".I ",    ".BR ",  ".br\n",
		                                 ".\\\"", ".nh\n", ".ad l\n"};
		bool known = line[0] != '.' && line[0] != '\'';

		for (size_t i = 0; !known && i < sizeof(ok) / sizeof(ok[0]); i++)
			known = strncmp(line, ok[i], strlen(ok[i])) == 0;
		cr_assert(known, "unexpected roff request: %.60s", line);
		line = next ? next + 1 : NULL;
	}
	free(generated);
}
