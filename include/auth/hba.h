/*
 * auth_hba_file: host-based authentication rules in pg_hba.conf's format
 * (docs/security.md).  Each line is TYPE DATABASE USER [ADDRESS] METHOD:
 *
 *   TYPE      local | host | hostssl | hostnossl
 *   DATABASE  all, or a comma-separated list of names
 *   USER      all, or a comma-separated list of names
 *   ADDRESS   for host*: all, an address with /prefix, or address and netmask
 *   METHOD    trust | reject | md5 | password | scram-sha-256 | cert
 *
 * The first line that matches the connection decides; none matching means
 * the connection is refused, as in Postgres.
 */
#ifndef SLUICE_HBA_H
#define SLUICE_HBA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum hba_type { HBA_LOCAL, HBA_HOST, HBA_HOSTSSL, HBA_HOSTNOSSL };
enum hba_method { HBA_TRUST, HBA_REJECT, HBA_MD5, HBA_PASSWORD, HBA_SCRAM, HBA_CERT };

struct hba_rule {
	enum hba_type type;
	char **databases; /* NULL = all */
	size_t ndatabases;
	char **users; /* NULL = all */
	size_t nusers;
	bool any_address; /* "all", or a local rule */
	int family;       /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network address, masked */
	uint8_t mask[16]; /* netmask */
	enum hba_method method;
	int line;
};

struct hba {
	struct hba_rule *rules;
	size_t count;
};

/* Returns 0, or -1 with "PATH:LINE: reason" in err. */
int hba_load(const char *path, struct hba *out, char *err, size_t len);
/* The same from text (path names it in errors); for tests. */
int hba_parse(const char *text, const char *path, struct hba *out, char *err, size_t len);
void hba_fini(struct hba *h);

/*
 * The first rule matching; NULL = no rule (refuse).  addr is NULL for Unix
 * sockets.  db_alias, when not NULL, is another name of the same database
 * (the console's two): a rule naming either matches.
 */
const struct hba_rule *hba_match(const struct hba *h, bool is_unix, bool tls,
                                 const struct sockaddr *addr, const char *db, const char *db_alias,
                                 const char *user);

const char *hba_method_name(enum hba_method m);

/* Whether the rule's DATABASE field names `db`, its USER field `user` ("all" names any). */
bool hba_rule_has_database(const struct hba_rule *r, const char *db);
bool hba_rule_has_user(const struct hba_rule *r, const char *user);

#endif
