/*
 * The auth_hba_file (pg_hba.conf's format) as hba_load reads it: the text is
 * written to /tmp/sluice-fuzz-hba-PID and loaded, the way sluice loads it at
 * start and at every reload; then lookups are matched against the rules.
 *
 * Input: the file's text up to the first NUL, then lookups of three pieces
 * each (database NUL user NUL address NUL, the address as text: IPv4, IPv6,
 * or anything else for a Unix-socket client), the first byte of the address
 * piece's length deciding TLS.
 *
 * On success every rule must be well formed: a line number inside the file,
 * name lists that are NULL exactly when empty, an address with no bit
 * outside its mask.  On failure nothing may be left loaded and the error
 * must name FILE:LINE.  A match must be a rule of the list that names the
 * database and the user, and no earlier rule may name both and fit the
 * connection's kind.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "auth/hba.h"
#include "fuzz.h"

static void check_rule(const struct hba_rule *r, int lines)
{
	FUZZ_CHECK(r->line >= 1 && r->line <= lines);
	FUZZ_CHECK((r->databases == NULL) == (r->ndatabases == 0));
	FUZZ_CHECK((r->users == NULL) == (r->nusers == 0));
	for (size_t i = 0; i < r->ndatabases; i++)
		FUZZ_CHECK(r->databases[i] != NULL);
	for (size_t i = 0; i < r->nusers; i++)
		FUZZ_CHECK(r->users[i] != NULL);
	FUZZ_CHECK(hba_method_name(r->method) != NULL);
	if (r->type == HBA_LOCAL || r->any_address)
		return;
	FUZZ_CHECK(r->family == AF_INET || r->family == AF_INET6);
	for (int i = 0; i < 16; i++)
		FUZZ_CHECK((r->addr[i] & ~r->mask[i]) == 0);
}

/* Could rule r serve a client of this kind (before its address is looked at)? */
static bool kind_fits(const struct hba_rule *r, bool is_unix, bool tls)
{
	if (is_unix != (r->type == HBA_LOCAL))
		return false;
	return !((r->type == HBA_HOSTSSL && !tls) || (r->type == HBA_HOSTNOSSL && tls));
}

static void lookup(const struct hba *h, const char *db, const char *user, const char *addr,
                   size_t addr_len)
{
	struct sockaddr_in v4 = {.sin_family = AF_INET};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
	const struct sockaddr *sa = NULL;
	bool tls = addr_len % 2 == 1, is_unix = false;
	const struct hba_rule *m;

	if (inet_pton(AF_INET, addr, &v4.sin_addr) == 1)
		sa = (const struct sockaddr *)&v4;
	else if (inet_pton(AF_INET6, addr, &v6.sin6_addr) == 1)
		sa = (const struct sockaddr *)&v6;
	else
		is_unix = true, tls = false;
	m = hba_match(h, is_unix, tls, sa, db, NULL, user);
	if (m == NULL)
		return;
	FUZZ_CHECK(m >= h->rules && m < h->rules + h->count);
	FUZZ_CHECK(kind_fits(m, is_unix, tls));
	FUZZ_CHECK(hba_rule_has_database(m, db) && hba_rule_has_user(m, user));
	/* An earlier rule that names both and fits may only have lost on the address. */
	for (const struct hba_rule *r = h->rules; r < m; r++)
		if (kind_fits(r, is_unix, tls) && hba_rule_has_database(r, db) &&
		    hba_rule_has_user(r, user))
			FUZZ_CHECK(!is_unix && !r->any_address);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	size_t text_len;
	char *text = fuzz_next_cstr(&in, &text_len);
	const char *path = fuzz_write_file("hba", (const uint8_t *)text, text_len);
	struct hba h;
	char err[512];
	int lines = 1;

	if (path == NULL)
		abort();
	for (size_t i = 0; i < text_len; i++)
		lines += text[i] == '\n';
	err[0] = '\0';
	if (hba_load(path, &h, err, sizeof(err)) < 0) {
		FUZZ_CHECK(h.count == 0 && h.rules == NULL);
		FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':');
		free(text);
		return 0;
	}
	for (size_t i = 0; i < h.count; i++)
		check_rule(&h.rules[i], lines);
	while (in.left > 0) {
		char *db = fuzz_next_cstr(&in, NULL), *user = fuzz_next_cstr(&in, NULL);
		size_t addr_len;
		char *addr = fuzz_next_cstr(&in, &addr_len);

		lookup(&h, db, user, addr, addr_len);
		free(db);
		free(user);
		free(addr);
	}
	hba_fini(&h);
	free(text);
	return 0;
}
