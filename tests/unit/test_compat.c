/*
 * What a PgBouncer user brings: the ini file's %include and long lines, the
 * table of PgBouncer's keys (config/compat.c) and its warnings, --check's
 * list of every error, and the log escaper that keeps client-chosen names
 * from forging log lines.
 */
#include "base/log.h"
#include "config/compat.h"
#include "config/config.h"
#include "config/databases.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/sluice-compat-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

/* Writes dir/name (creating a subdirectory if the name has one). */
static void put(const char *name, const char *text)
{
	char path[256];
	const char *slash = strrchr(name, '/');
	FILE *f;

	if (slash != NULL) {
		snprintf(path, sizeof(path), "%s/%.*s", dir, (int)(slash - name), name);
		mkdir(path, 0700);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static struct config *load(const char *name, struct config_error *err)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return config_load(path, NULL, NULL, err);
}

static bool has_note(const struct config *cfg, const char *fragment)
{
	for (size_t i = 0; i < cfg->nnotes; i++)
		if (strstr(cfg->notes[i].text, fragment) != NULL)
			return true;
	return false;
}

TestSuite(compat, .init = make_dir, .fini = remove_dir);

#define USERS "\"app\" \"app-secret\"\n"

/* ---- %include ---- */

Test(compat, include_nests_relative_to_the_including_file)
{
	struct config_error err;
	struct config *cfg;

	put("userlist.txt", USERS);
	put("main.ini",
	    "[pgbouncer]\nauth_file = userlist.txt\npool_mode = session\n"
	    "auth_type = md5\n%include conf.d/dbs.ini\n[pgbouncer]\nlisten_port = 7000\n");
	/* An included file continues the section it is included in, and may switch. */
	put("conf.d/dbs.ini", "default_pool_size = 7\n[databases]\n%include more.ini\n"
	                      "app = host=h dbname=app\n");
	put("conf.d/more.ini", "other = host=o\n");
	cfg = load("main.ini", &err);
	cr_assert_not_null(cfg, "%s", err.message);
	cr_assert_eq(cfg->default_pool_size, 7);
	cr_assert_not_null(config_find_db(cfg, "app"));
	cr_assert_str_eq(config_find_db(cfg, "other")->host, "o");
	cr_assert_eq(cfg->listen_port, 7000);
	config_free(cfg);
}

Test(compat, include_errors_name_the_included_file_and_line)
{
	struct config_error err;
	char want[512];

	put("userlist.txt", USERS);
	put("main.ini", "[sluice]\nauth_file = userlist.txt\n%include part.ini\n");
	put("part.ini", "[databases]\napp = host=h\nbogus_key_line\n");
	cr_assert_null(load("main.ini", &err));
	snprintf(want, sizeof(want),
	         "%s/part.ini:3: syntax error (expected [section] or key = value)", dir);
	cr_assert_str_eq(err.message, want);
}

Test(compat, include_loop_and_missing_file_are_errors)
{
	struct config_error err;
	char want[512];

	put("a.ini", "[sluice]\n%include b.ini\n");
	put("b.ini", "%include a.ini\n");
	cr_assert_null(load("a.ini", &err));
	snprintf(want, sizeof(want),
	         "%s/b.ini:1: %%include a.ini: a loop (%s/a.ini is already being read)", dir, dir);
	cr_assert_str_eq(err.message, want);

	put("d.ini", "[sluice]\n%include /dev/zero\n");
	cr_assert_null(load("d.ini", &err));
	snprintf(want, sizeof(want), "%s/d.ini:2: %%include /dev/zero: not a regular file", dir);
	cr_assert_str_eq(err.message, want);

	put("c.ini", "[sluice]\n%include nowhere.ini\n");
	cr_assert_null(load("c.ini", &err));
	snprintf(want, sizeof(want), "%s/c.ini:2: %%include nowhere.ini: No such file or directory",
	         dir);
	cr_assert_str_eq(err.message, want);
}

/* ---- long lines ---- */

Test(compat, a_4kB_databases_line_parses)
{
	struct config_error err;
	struct config *cfg;
	char *ini = malloc(16384), name[4000];
	const struct db_def *db;

	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	put("userlist.txt", USERS);
	snprintf(ini, 16384,
	         "[sluice]\nauth_file = userlist.txt\n[databases]\n"
	         "app = host=h port=5433 application_name=%s dbname=real pool_size=3 ; comment\n"
	         "next = host=n\n    dbname=%s\n",
	         name, name);
	put("long.ini", ini);
	cfg = load("long.ini", &err);
	cr_assert_not_null(cfg, "%s", err.message);
	db = config_find_db(cfg, "app");
	cr_assert_eq(strlen(db->application_name), sizeof(name) - 1);
	cr_assert_str_eq(db->dbname, "real");
	cr_assert_eq(db->port, 5433);
	cr_assert_eq(db->pool_size, 3);
	/* A long continuation line is joined to its entry. */
	cr_assert_eq(strlen(config_find_db(cfg, "next")->dbname), sizeof(name) - 1);
	config_free(cfg);
	free(ini);
}

/* ---- PgBouncer's keys ---- */

Test(compat, pgbouncer_keys_are_warned_once_unknown_keys_still_fail)
{
	struct config_error err;
	struct config *cfg;
	char want[512];

	put("userlist.txt", USERS);
	put("pgb.ini", "[databases]\n"
	               "app = host=h connect_query='SELECT 1' reserve_pool=2\n"
	               "two = host=h connect_query='SELECT 2'\n"
	               "[users]\napp = max_user_client_connections=0\n"
	               "[peers]\n1 = host=/tmp/p1\n"
	               "[pgbouncer]\nauth_file = userlist.txt\n"
	               "server_round_robin = 0\ntcp_defer_accept = 1\n"
	               "client_tls_ciphers = fast\nmax_packet_size = 2147483647\n");
	cfg = load("pgb.ini", &err);
	cr_assert_not_null(cfg, "%s", err.message);
	cr_assert(has_note(cfg, "pgb.ini:11: 'tcp_defer_accept' is a PgBouncer setting that sluice "
	                        "does not support (sluice does not tune TCP sockets); ignored"));
	cr_assert(has_note(cfg, "pgb.ini:2: database 'app': 'connect_query' is a PgBouncer"));
	cr_assert_not(has_note(cfg, "pgb.ini:3:"), "connect_query is warned about once");
	cr_assert_not(has_note(cfg, "server_round_robin"), "0 asks for what sluice does");
	cr_assert_not(has_note(cfg, "max_user_client_connections"), "0 asks for no limit");
	cr_assert(has_note(cfg, "[peers] is PgBouncer's list"));
	cr_assert(has_note(cfg, "pool_mode is not set: PgBouncer's default is session"));
	cr_assert(has_note(cfg, "max_packet_size = 2147483647 is above the 1GB"));
	cr_assert_eq(config_find_db(cfg, "app")->reserve_pool_size, 2);
	cr_assert_str_eq(cfg->client_tls_ciphers, "HIGH:!aNULL:!MD5", "fast = the default ciphers");
	cr_assert_eq(cfg->max_packet_size, INT64_C(2147483647));
	config_free(cfg);

	put("typo.ini", "[pgbouncer]\nauth_file = userlist.txt\nlog_conections = 1\n"
	                "[databases]\napp = host=h\n");
	cr_assert_null(load("typo.ini", &err));
	snprintf(want, sizeof(want), "%s/typo.ini:3: unknown key 'log_conections' in [sluice]",
	         dir);
	cr_assert_str_eq(err.message, want);
}

Test(compat, database_settings_become_connect_options)
{
	struct config_error err;
	struct config *cfg;

	put("userlist.txt", USERS);
	put("set.ini", "[pgbouncer]\nauth_file = userlist.txt\npool_mode = session\n"
	               "auth_type = md5\n[databases]\n"
	               "app = host=h client_encoding=UNICODE datestyle='ISO, DMY' "
	               "connect_options='-c work_mem=1MB' timezone=UTC\n");
	cfg = load("set.ini", &err);
	cr_assert_not_null(cfg, "%s", err.message);
	cr_assert_str_eq(config_find_db(cfg, "app")->connect_options,
	                 "-c work_mem=1MB -c client_encoding=UNICODE -c datestyle=ISO,\\ DMY "
	                 "-c timezone=UTC");
	cr_assert_eq(cfg->nnotes, 0, "%s", cfg->nnotes ? cfg->notes[0].text : "");
	config_free(cfg);
}

Test(compat, table_matches_the_options)
{
	size_t n, ndb, nuser;
	const struct compat_key *keys = compat_keys(&n);
	const struct entry_key *db_keys = databases_db_keys(&ndb);
	const struct entry_key *user_keys = databases_user_keys(&nuser);

	for (size_t i = 0; i < n; i++) {
		const struct compat_key *k = &keys[i];
		bool is_sluice = false;

		if (k->section == COMPAT_GLOBAL)
			is_sluice = config_option_find(k->name) != NULL;
		for (size_t j = 0; k->section == COMPAT_DATABASE && j < ndb; j++)
			is_sluice |= strcmp(db_keys[j].name, k->name) == 0;
		for (size_t j = 0; k->section == COMPAT_USER && j < nuser; j++)
			is_sluice |= strcmp(user_keys[j].name, k->name) == 0;
		/* A key that became a sluice option must lose its "ignored" row, and the reverse.
		 */
		cr_assert_eq(is_sluice, k->why == NULL, "compat.c: '%s' is %sa sluice key", k->name,
		             is_sluice ? "" : "not ");
	}
}

Test(compat, migrating_md_has_a_row_per_key)
{
	char path[512], line[1024], *doc = NULL;
	size_t n, len = 0;
	const struct compat_key *keys = compat_keys(&n);
	const char *root = getenv("SLUICE_SOURCE_ROOT");
	FILE *f, *mem = open_memstream(&doc, &len);

	snprintf(path, sizeof(path), "%s/docs/migrating.md", root ? root : ".");
	f = fopen(path, "r");
	cr_assert_not_null(f, "cannot read %s", path);
	while (fgets(line, sizeof(line), f) != NULL)
		fputs(line, mem);
	fclose(f);
	fclose(mem);
	for (size_t i = 0; i < n; i++) {
		char row[128];

		snprintf(row, sizeof(row), "| `%s` |", keys[i].name);
		cr_assert_not_null(strstr(doc, row), "docs/migrating.md has no row for %s",
		                   keys[i].name);
	}
	free(doc);
}

/* ---- --check ---- */

static void collect(void *arg, const char *message)
{
	FILE *out = arg;

	fprintf(out, "%s\n", message);
}

Test(compat, check_reports_every_error)
{
	char path[256], *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	int errors = 0;
	struct config *cfg;

	put("userlist.txt", USERS);
	put("bad.ini", "[sluice]\nauth_file = userlist.txt\npool_mode = sometimes\n"
	               "no equals sign here\nmax_client_conn = lots\n[databases]\n"
	               "app = host=h pool_size=0\nok = host=h\n[nonsense]\nx = 1\n");
	snprintf(path, sizeof(path), "%s/bad.ini", dir);
	cfg = config_check(path, NULL, NULL, collect, out, &errors);
	fclose(out);
	cr_assert_null(cfg);
	cr_assert_eq(errors, 5, "%s", text);
	cr_assert_not_null(strstr(text, "bad.ini:3: key 'pool_mode'"), "%s", text);
	cr_assert_not_null(strstr(text, "bad.ini:4: syntax error"), "%s", text);
	cr_assert_not_null(strstr(text, "bad.ini:5: key 'max_client_conn'"), "%s", text);
	cr_assert_not_null(strstr(text, "bad.ini:7: database 'app'"), "%s", text);
	cr_assert_not_null(strstr(text, "bad.ini:10: unknown section"), "%s", text);
	free(text);
}

Test(compat, check_passes_a_good_file)
{
	char path[256];
	int errors = -1;
	struct config *cfg;

	put("userlist.txt", USERS);
	put("good.ini", "[pgbouncer]\nauth_file = userlist.txt\npool_mode = session\n"
	                "auth_type = md5\n[databases]\napp =\n");
	snprintf(path, sizeof(path), "%s/good.ini", dir);
	cfg = config_check(path, NULL, NULL, collect, stderr, &errors);
	cr_assert_not_null(cfg);
	cr_assert_eq(errors, 0);
	cr_assert_str_eq(config_find_db(cfg, "app")->host, "/tmp", "no host: unix_socket_dir");
	config_free(cfg);
}

/* ---- the log escaper ---- */

static const char *esc(const char *s, size_t len, enum log_escape_mode mode, size_t cap)
{
	static char out[256];
	size_t used;

	log_escape(out, cap, s, len, mode, &used);
	return out;
}

Test(compat, escaper_text_and_json)
{
	const char user[] = "ev\nil\"\xff\x1b\\ok\xc3\xa9";

	cr_assert_str_eq(esc(user, sizeof(user) - 1, LOG_ESCAPE_TEXT, 256),
	                 "ev\\nil\"\\xff\\x1b\\\\ok\xc3\xa9");
	cr_assert_str_eq(esc(user, sizeof(user) - 1, LOG_ESCAPE_QUOTED, 256),
	                 "ev\\nil\\\"\\xff\\x1b\\\\ok\xc3\xa9");
	cr_assert_str_eq(esc(user, sizeof(user) - 1, LOG_ESCAPE_JSON, 256),
	                 "ev\\nil\\\"\\\\xff\\u001b\\\\ok\xc3\xa9");
	/* C1 controls (NEL), line and paragraph separators, DEL; a NUL inside the length. */
	cr_assert_str_eq(esc("a\xc2\x85"
	                     "b\xe2\x80\xa8"
	                     "c\x7f"
	                     "d\0e",
	                     12, LOG_ESCAPE_JSON, 256),
	                 "a\\u0085b\\u2028c\\u007fd\\u0000e");
	/* Overlong, surrogate and truncated sequences are not UTF-8. */
	cr_assert_str_eq(esc("\xc0\xaf\xed\xa0\x80\xe2\x82", 7, LOG_ESCAPE_TEXT, 256),
	                 "\\xc0\\xaf\\xed\\xa0\\x80\\xe2\\x82");
}

Test(compat, escaper_never_cuts_inside_a_character_or_escape)
{
	size_t used;
	char out[16];

	/* "é" is 2 bytes: with room for 4 bytes and the NUL, "ab" + "é" fit, "é" again does not. */
	cr_assert_eq(log_escape(out, 5, "ab\xc3\xa9\xc3\xa9", 6, LOG_ESCAPE_JSON, &used), 4);
	cr_assert_eq(used, 4);
	/* \u001b is 6 bytes: it does not fit in 5 and is not begun. */
	cr_assert_eq(log_escape(out, 6, "a\x1b", 2, LOG_ESCAPE_JSON, &used), 1);
	cr_assert_str_eq(out, "a");
	cr_assert_eq(used, 1);
}
