/*
 * auth_hba_file parsing and matching; see hba.h.  Read with the rest of the
 * configuration, so RELOAD re-reads it.
 */
#include "auth/hba.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strlist.h"

#define HBA_MAX_BYTES (1 << 20) /* a rules file larger than 1 MB is surely a mistake */

static const char *const method_names[] = {
    [HBA_TRUST] = "trust",       [HBA_REJECT] = "reject",       [HBA_MD5] = "md5",
    [HBA_PASSWORD] = "password", [HBA_SCRAM] = "scram-sha-256", [HBA_CERT] = "cert",
};

const char *hba_method_name(enum hba_method m)
{
	return method_names[m];
}

void hba_fini(struct hba *h)
{
	for (size_t i = 0; i < h->count; i++) {
		strlist_free(h->rules[i].databases, h->rules[i].ndatabases);
		strlist_free(h->rules[i].users, h->rules[i].nusers);
	}
	free(h->rules);
	memset(h, 0, sizeof(*h));
}

/* "all" -> NULL list; "a,b" -> {"a", "b"}.  Returns -1 on allocation failure. */
static int parse_names(const char *field, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (strcmp(field, "all") == 0)
		return 0;
	return strlist_split(field, ",", out, n);
}

static void prefix_mask(uint8_t mask[16], int bits)
{
	memset(mask, 0, 16);
	for (int i = 0; i < 16 && bits > 0; i++, bits -= 8)
		mask[i] = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
}

/* ADDRESS (with /prefix) or ADDRESS NETMASK; consumes one or two fields. */
static int parse_address(struct hba_rule *r, char **fields, int nfields, int *used, char *why,
                         size_t len)
{
	char text[64], *slash;
	int bits, maxbits;
	long parsed;
	uint8_t mask[16];

	*used = 1;
	if (strcmp(fields[0], "all") == 0) {
		r->any_address = true;
		return 0;
	}
	snprintf(text, sizeof(text), "%s", fields[0]);
	slash = strchr(text, '/');
	if (slash != NULL)
		*slash = '\0';
	if (inet_pton(AF_INET, text, r->addr) == 1) {
		r->family = AF_INET;
		maxbits = 32;
	} else if (inet_pton(AF_INET6, text, r->addr) == 1) {
		r->family = AF_INET6;
		maxbits = 128;
	} else {
		snprintf(why, len, "invalid address '%.60s' (host names are not supported)",
		         fields[0]);
		return -1;
	}
	if (slash != NULL) {
		char *end;

		errno = 0;
		parsed = strtol(slash + 1, &end, 10);
		if (*end != '\0' || end == slash + 1 || parsed < 0 || parsed > maxbits) {
			snprintf(why, len, "invalid prefix length in '%.60s'", fields[0]);
			return -1;
		}
		bits = (int)parsed;
		prefix_mask(r->mask, bits);
	} else {
		if (nfields < 2 || inet_pton(r->family, fields[1], mask) != 1) {
			snprintf(why, len, "address '%.60s' needs a /prefix or a netmask",
			         fields[0]);
			return -1;
		}
		memcpy(r->mask, mask, 16);
		*used = 2;
	}
	for (int i = 0; i < 16; i++)
		r->addr[i] &= r->mask[i];
	return 0;
}

static int parse_method(const char *field, enum hba_method *out)
{
	for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++) {
		if (strcmp(field, method_names[i]) == 0) {
			*out = (enum hba_method)i;
			return 0;
		}
	}
	return -1;
}

static int parse_line(char *line, struct hba_rule *r, char *why, size_t len)
{
	char *fields[8], *save = NULL, *tok;
	int n = 0, next, used;

	for (tok = strtok_r(line, " \t\r", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t\r", &save)) {
		if (n == 8) {
			snprintf(why, len, "too many fields");
			return -1;
		}
		fields[n++] = tok;
	}
	if (n < 4) {
		snprintf(why, len, "expected TYPE DATABASE USER [ADDRESS] METHOD");
		return -1;
	}
	if (strcmp(fields[0], "local") == 0)
		r->type = HBA_LOCAL;
	else if (strcmp(fields[0], "host") == 0)
		r->type = HBA_HOST;
	else if (strcmp(fields[0], "hostssl") == 0)
		r->type = HBA_HOSTSSL;
	else if (strcmp(fields[0], "hostnossl") == 0)
		r->type = HBA_HOSTNOSSL;
	else {
		snprintf(why, len,
		         "unknown connection type '%.40s' (local, host, hostssl, hostnossl)",
		         fields[0]);
		return -1;
	}
	if (parse_names(fields[1], &r->databases, &r->ndatabases) < 0 ||
	    parse_names(fields[2], &r->users, &r->nusers) < 0) {
		snprintf(why, len, "out of memory");
		return -1;
	}
	next = 3;
	if (r->type == HBA_LOCAL) {
		r->any_address = true;
	} else {
		if (n < 5 || parse_address(r, fields + 3, n - 3, &used, why, len) < 0) {
			if (n < 5)
				snprintf(why, len, "%s needs an ADDRESS before the METHOD",
				         fields[0]);
			return -1;
		}
		next += used;
	}
	if (next >= n || parse_method(fields[next], &r->method) < 0) {
		snprintf(
		    why, len,
		    "unknown method '%.40s' (trust, reject, md5, password, scram-sha-256, cert)",
		    next < n ? fields[next] : "");
		return -1;
	}
	if (next + 1 < n) {
		snprintf(why, len, "options after the method are not supported ('%.40s')",
		         fields[next + 1]);
		return -1;
	}
	if (r->method == HBA_CERT && r->type != HBA_HOSTSSL) {
		snprintf(why, len, "cert needs a hostssl line");
		return -1;
	}
	return 0;
}

int hba_parse(const char *text, const char *path, struct hba *out, char *err, size_t len)
{
	char *copy = strdup(text), *line, *save = NULL;
	int lineno = 0;

	memset(out, 0, sizeof(*out));
	if (copy == NULL) {
		snprintf(err, len, "%s: out of memory", path);
		return -1;
	}
	for (line = copy; line != NULL; line = save) {
		char *hash, why[200] = "";
		struct hba_rule *grown, r = {0};

		save = strchr(line, '\n');
		if (save != NULL)
			*save++ = '\0';
		lineno++;
		if ((hash = strchr(line, '#')) != NULL)
			*hash = '\0';
		while (*line != '\0' && isspace((unsigned char)*line))
			line++;
		if (*line == '\0')
			continue;
		r.line = lineno;
		if (parse_line(line, &r, why, sizeof(why)) < 0 ||
		    (grown = realloc(out->rules, (out->count + 1) * sizeof(*grown))) == NULL) {
			if (why[0] == '\0') /* parse_line said nothing: the realloc failed */
				snprintf(why, sizeof(why), "out of memory");
			snprintf(err, len, "%s:%d: %s", path, lineno, why);
			strlist_free(r.databases, r.ndatabases);
			strlist_free(r.users, r.nusers);
			free(copy);
			hba_fini(out);
			return -1;
		}
		out->rules = grown;
		out->rules[out->count++] = r;
	}
	free(copy);
	return 0;
}

int hba_load(const char *path, struct hba *out, char *err, size_t len)
{
	FILE *f = fopen(path, "r");
	char *text;
	size_t n;
	int rc;

	memset(out, 0, sizeof(*out));
	if (f == NULL) {
		snprintf(err, len, "auth_hba_file %s: %s", path, strerror(errno));
		return -1;
	}
	text = malloc(HBA_MAX_BYTES + 1);
	n = text != NULL ? fread(text, 1, HBA_MAX_BYTES + 1, f) : 0;
	fclose(f);
	if (text == NULL || n > HBA_MAX_BYTES) {
		snprintf(err, len, "auth_hba_file %s: %s", path,
		         text == NULL ? "out of memory" : "larger than 1 MB");
		free(text);
		return -1;
	}
	text[n] = '\0';
	rc = hba_parse(text, path, out, err, len);
	free(text);
	return rc;
}

static bool name_listed(char *const *list, size_t n, const char *name)
{
	if (list == NULL)
		return true;
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], name) == 0)
			return true;
	return false;
}

bool hba_rule_has_database(const struct hba_rule *r, const char *db)
{
	return name_listed(r->databases, r->ndatabases, db);
}

bool hba_rule_has_user(const struct hba_rule *r, const char *user)
{
	return name_listed(r->users, r->nusers, user);
}

static bool address_matches(const struct hba_rule *r, const struct sockaddr *sa)
{
	const uint8_t *bytes;
	uint8_t mapped[16];
	size_t n;

	if (r->any_address)
		return true;
	if (sa->sa_family == AF_INET && r->family == AF_INET) {
		bytes = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
		n = 4;
	} else if (sa->sa_family == AF_INET6) {
		bytes = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		n = 16;
		/* An IPv4-mapped IPv6 peer is matched by IPv4 rules. */
		if (r->family == AF_INET && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)bytes)) {
			memcpy(mapped, bytes + 12, 4);
			bytes = mapped;
			n = 4;
		} else if (r->family != AF_INET6) {
			return false;
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < n; i++)
		if ((bytes[i] & r->mask[i]) != r->addr[i])
			return false;
	return true;
}

const struct hba_rule *hba_match(const struct hba *h, bool is_unix, bool tls,
                                 const struct sockaddr *addr, const char *db, const char *db_alias,
                                 const char *user)
{
	for (size_t i = 0; i < h->count; i++) {
		const struct hba_rule *r = &h->rules[i];

		if (is_unix != (r->type == HBA_LOCAL))
			continue;
		if ((r->type == HBA_HOSTSSL && !tls) || (r->type == HBA_HOSTNOSSL && tls))
			continue;
		if ((!name_listed(r->databases, r->ndatabases, db) &&
		     (db_alias == NULL || !name_listed(r->databases, r->ndatabases, db_alias))) ||
		    !name_listed(r->users, r->nusers, user))
			continue;
		if (!is_unix && (addr == NULL || !address_matches(r, addr)))
			continue;
		return r;
	}
	return NULL;
}
