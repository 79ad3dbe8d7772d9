/*
 * The console's authentication; see console_auth.h.
 */
#include "config/console_auth.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Does the rule name any user of a comma-separated list (admin_users, stats_users)? */
static bool rule_has_listed_user(const struct hba_rule *r, const char *list)
{
	const char *p = list;

	while (*p != '\0') {
		char name[256];
		size_t n;

		p += strspn(p, ", \t");
		n = strcspn(p, ", \t");
		if (n > 0 && n < sizeof(name)) {
			snprintf(name, sizeof(name), "%.*s", (int)n, p);
			if (hba_rule_has_user(r, name))
				return true;
		}
		p += n;
	}
	return false;
}

static bool rule_trusts_console(const struct config *cfg, const struct hba_rule *r)
{
	if (r->method != HBA_TRUST)
		return false;
	if (!hba_rule_has_database(r, "pgbouncer") &&
	    (cfg->admin_db[0] == '\0' || !hba_rule_has_database(r, cfg->admin_db)))
		return false;
	return r->users == NULL || rule_has_listed_user(r, cfg->admin_users) ||
	       rule_has_listed_user(r, cfg->stats_users);
}

int console_auth_trust_line(const struct config *cfg)
{
	if (cfg->auth_hba_file[0] == '\0')
		return cfg->auth_type == AUTH_TRUST ? 0 : -1;
	for (size_t i = 0; i < cfg->hba.count; i++)
		if (rule_trusts_console(cfg, &cfg->hba.rules[i]))
			return cfg->hba.rules[i].line;
	return -1;
}
