/*
 * Session parameters in transaction mode: what a client put in its startup
 * packet (including options=-c ...) or changed with SET (reported or not)
 * follows it to whichever server it lands on, and never leaks to another
 * client sharing that server.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(session_state, .fini = harness_teardown, .timeout = 120);

static PGconn *connect_with(struct harness_sluice *h, const char *extra)
{
	char url[512], conninfo[1024];
	PGconn *c;

	harness_url(h, "app", "app-secret", "app", url, sizeof(url));
	snprintf(conninfo, sizeof(conninfo), "%s%s%s", url, strchr(url, '?') ? "&" : "?", extra);
	c = PQconnectdb(conninfo);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	return c;
}

static void expect_setting(PGconn *c, const char *name, const char *want)
{
	char sql[256];
	PGresult *res;

	snprintf(sql, sizeof(sql), "select current_setting('%s')", name);
	res = harness_exec_ok(c, sql);
	cr_assert_str_eq(PQgetvalue(res, 0, 0), want, "%s", name);
	PQclear(res);
}

Test(session_state, startup_parameters_follow_the_client)
{
	/*
	 * One server: both clients must take turns on it.  One worker too, so that
	 * the test reads this alone (test_workers.c hands servers between workers).
	 */
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 1");
	PGconn *a = connect_with(h, "options=-c%20search_path%3Dfoo,public%20-c%20work_mem%3D7MB"
	                            "&application_name=client_a");
	PGconn *b = connect_with(h, "application_name=client_b");
	long long pid_a = harness_query_int(a, "select pg_backend_pid()");

	cr_assert_eq(harness_query_int(b, "select pg_backend_pid()"), pid_a, "one shared server");
	expect_setting(a, "search_path", "foo,public");
	expect_setting(a, "work_mem", "7MB");
	expect_setting(a, "application_name", "client_a");
	expect_setting(b, "search_path", "\"$user\", public");
	expect_setting(b, "work_mem", "4MB");
	expect_setting(b, "application_name", "client_b");
	expect_setting(a, "search_path", "foo,public");
	cr_assert_str_eq(PQparameterStatus(a, "application_name"), "client_a");
	PQfinish(a);
	PQfinish(b);
}

Test(session_state, set_of_reported_parameter_follows_the_client)
{
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = connect_with(h, "application_name=a");
	PGconn *b = connect_with(h, "application_name=b");
	char zone[128];

	PQclear(harness_exec_ok(a, "set DateStyle = 'German'"));
	PQclear(harness_exec_ok(a, "set TimeZone = 'Asia/Tokyo'"));
	expect_setting(b, "DateStyle", "ISO, MDY");
	expect_setting(a, "DateStyle", "German, DMY");
	expect_setting(a, "TimeZone", "Asia/Tokyo");
	/* b still has the zone its login reported; copy it, libpq may replace the string. */
	snprintf(zone, sizeof(zone), "%s", PQparameterStatus(b, "TimeZone"));
	expect_setting(b, "TimeZone", zone);
	cr_assert_str_eq(PQparameterStatus(a, "DateStyle"), "German, DMY");
	PQfinish(a);
	PQfinish(b);
}

/* "setting source" of a setting, as pg_settings says (malloc'd). */
static char *setting_and_source(PGconn *c, const char *name)
{
	char sql[256];
	PGresult *res;
	char *out;

	snprintf(sql, sizeof(sql),
	         "select setting || ' ' || source from pg_settings where name = '%s'", name);
	res = harness_exec_ok(c, sql);
	out = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return out;
}

/*
 * A reported setting an earlier client changed goes back with RESET, not
 * with a SET of the default's value: the next client's session then looks
 * new in pg_settings too, its source included ("session" after a SET).
 * Found by protofuzz (its check that every pooled server looks new).
 */
Test(session_state, an_earlier_clients_setting_is_reset_not_set)
{
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 1");
	PGconn *a = connect_with(h, "application_name=a");
	PGconn *b = connect_with(h, "application_name=b");
	char *before = setting_and_source(b, "DateStyle");
	char *after;

	PQclear(harness_exec_ok(a, "set DateStyle = 'German'"));
	expect_setting(a, "DateStyle", "German, DMY");
	after = setting_and_source(b, "DateStyle");
	cr_assert_str_eq(after, before, "b's DateStyle");
	free(before);
	free(after);
	PQfinish(a);
	PQfinish(b);
}

static void expect_current_user(PGconn *c, const char *want, const char *what)
{
	PGresult *res = harness_exec_ok(c, "select current_user");

	cr_assert_str_eq(PQgetvalue(res, 0, 0), want, "%s", what);
	PQclear(res);
}

/*
 * SET ROLE (how row-level security is often switched per tenant) follows
 * its client and never reaches another one.  Postgres leaves `role` out of
 * pg_settings, so the read-back missed it: the server went back to the pool
 * with the role set, and the next client ran as that role.
 */
Test(session_state, set_role_follows_its_client_and_reaches_no_other)
{
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 1");
	PGconn *super = harness_pg_super("app");
	PGconn *a, *b;

	PQclear(harness_exec_ok(super, "do $$ begin if not exists (select 1 from pg_roles where "
	                               "rolname = 'sluice_tenant_role') then create role "
	                               "sluice_tenant_role nologin; end if; end $$"));
	PQclear(harness_exec_ok(super, "grant sluice_tenant_role to app"));
	a = connect_with(h, "application_name=a");
	b = connect_with(h, "application_name=b");
	PQclear(harness_exec_ok(a, "set role sluice_tenant_role"));
	expect_current_user(a, "sluice_tenant_role", "a after its SET ROLE");
	expect_current_user(b, "app", "b, on the server a used");
	expect_current_user(a, "sluice_tenant_role", "a again, after b");
	PQclear(harness_exec_ok(a, "reset role"));
	expect_current_user(a, "app", "a after RESET ROLE");
	PQfinish(a);
	PQfinish(b);
	PQfinish(super);
}

/*
 * SELECT ... INTO TEMP makes a temporary table under the verb SELECT and the
 * tag "SELECT 1": nothing marked the server, so it went back to the pool
 * with the table, and the next client read it.  The word TEMP now has the
 * session read back, which pins the server to its client; the next client
 * waits for a server of its own (here until query_wait_timeout).
 */
Test(session_state, a_temporary_table_made_by_select_into_reaches_no_other_client)
{
	struct harness_sluice *h =
	    harness_start_sluice("workers = 1\ndefault_pool_size = 1\nquery_wait_timeout = 1s");
	PGconn *a = connect_with(h, "application_name=a");
	PGconn *b = connect_with(h, "application_name=b");
	PGresult *res;

	PQclear(harness_exec_ok(a, "select 42 as v into temp sluice_into_t"));
	res = PQexec(b, "select v from sluice_into_t");
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "b read a's temporary table: %s",
	             PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
	cr_assert_str_eq(harness_sqlstate(res), "53300", "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_eq(harness_query_int(a, "select v from sluice_into_t"), 42);
	PQfinish(a);
	PQfinish(b);
}

Test(session_state, set_of_unreported_parameter_follows_the_client)
{
	/* search_path and extra_float_digits are not reported by Postgres 15. */
	struct harness_sluice *h = harness_start_sluice("default_pool_size = 1");
	PGconn *a = connect_with(h, "options=-c%20extra_float_digits%3D2");
	PGconn *b = connect_with(h, "application_name=b");

	/* pgJDBC: startup value 2, then SET 3 as its first query. */
	PQclear(harness_exec_ok(a, "SET extra_float_digits = 3"));
	PQclear(harness_exec_ok(a, "set search_path = foo, public; select 1"));
	expect_setting(b, "search_path", "\"$user\", public");
	expect_setting(b, "extra_float_digits", "1");
	expect_setting(a, "search_path", "foo, public");
	expect_setting(a, "extra_float_digits", "3");

	/* SET LOCAL ends with its transaction; a rolled-back SET never happened. */
	PQclear(harness_exec_ok(a, "begin; set local search_path = bar; commit"));
	PQclear(harness_exec_ok(a, "begin; set search_path = baz; rollback"));
	expect_setting(b, "search_path", "\"$user\", public");
	expect_setting(a, "search_path", "foo, public");

	/* A SET inside a committed transaction lasts; b changes its own too. */
	PQclear(harness_exec_ok(a, "begin; set search_path = qux; commit"));
	PQclear(harness_exec_ok(b, "set search_path = other"));
	expect_setting(a, "search_path", "qux");
	expect_setting(b, "search_path", "other");

	/* RESET goes back to the default, and stays there on the next turn. */
	PQclear(harness_exec_ok(a, "reset search_path"));
	expect_setting(b, "search_path", "other");
	expect_setting(a, "search_path", "\"$user\", public");
	PQclear(harness_exec_ok(b, "discard all"));
	expect_setting(a, "extra_float_digits", "3");
	expect_setting(b, "search_path", "\"$user\", public");
	PQfinish(a);
	PQfinish(b);
}

Test(session_state, unknown_startup_parameter_is_accepted)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	/* extra_float_digits and a custom placeholder GUC: PgBouncer refuses such logins. */
	PGconn *a =
	    connect_with(h, "options=-c%20myapp.tenant%3Dacme%20-c%20extra_float_digits%3D2");

	expect_setting(a, "myapp.tenant", "acme");
	expect_setting(a, "extra_float_digits", "2");
	PQfinish(a);
}

Test(session_state, invalid_parameter_is_reported_not_fatal)
{
	struct harness_sluice *h = harness_start_sluice(NULL);
	PGconn *a = connect_with(h, "options=-c%20no_such_setting%3D1");

	/* The query still runs, on the database defaults. */
	cr_assert_eq(harness_query_int(a, "select 41 + 1"), 42);
	cr_assert(harness_log_contains(h, "applying client parameters failed"));
	PQfinish(a);
}

/*
 * The batch that gives a server its next client's settings fails on a bad
 * value (here work_mem=bogus in b's options): the RESETs of what the previous
 * client set were in the same Query and were rolled back with it, so b ran
 * with a's search_path, and sluice's record of the server said the RESET had
 * happened, so the next client with no settings got a's search_path too.
 * The RESETs now go ahead in a Query of their own, and a failed batch has
 * the session read back.
 */
Test(session_state, a_failed_settings_batch_leaves_no_earlier_clients_setting)
{
	struct harness_sluice *h = harness_start_sluice("workers = 1\ndefault_pool_size = 1");
	PGconn *a = connect_with(h, "application_name=a");
	PGconn *b, *c;

	PQclear(harness_exec_ok(a, "set search_path = sluice_a_schema"));
	expect_setting(a, "search_path", "sluice_a_schema");
	b = connect_with(h, "options=-c%20work_mem%3Dbogus");
	cr_assert_eq(harness_query_int(b, "select 41 + 1"), 42);
	expect_setting(b, "search_path", "\"$user\", public");
	c = connect_with(h, "application_name=c");
	expect_setting(c, "search_path", "\"$user\", public");
	expect_setting(a, "search_path", "sluice_a_schema");
	PQfinish(a);
	PQfinish(b);
	PQfinish(c);
}

/*
 * A client whose parameters differ from its server's is linked, sluice sends
 * the SET batch ahead of its message, and that message gets the client closed
 * (here a malformed Parse, refused by sluice) before the batch is answered.
 * The reset then waited for the batch's ReadyForQuery, but that reply only
 * ever moved on a read-back, so the reset stood still until
 * server_reset_timeout closed the server.  Found by protofuzz.  One server:
 * the next query must run on the same backend.
 */
Test(session_state, client_closed_before_its_parameters_are_applied)
{
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n"
	                                                "workers = 1\n"
	                                                "default_pool_size = 1\n"
	                                                "server_reset_timeout = 2s");
	PGconn *a = connect_with(h, "application_name=a");
	PGconn *b = connect_with(h, "application_name=b");
	long long pid = harness_query_int(a, "select pg_backend_pid()");
	/* Named "s1", "select 1", 5 parameter types announced and none there. */
	static const char parse[] = "s1\0select 1\0\0\5";
	unsigned char buf[64];
	size_t n = 0;
	char state[6];

	harness_put_msg(buf, &n, 'P', parse, sizeof(parse) - 1);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_send_all(PQsocket(b), buf, n);
	harness_expect_error_and_close(dup(PQsocket(b)), state);
	cr_assert_str_eq(state, "08P01");
	PQfinish(b);
	cr_assert_eq(harness_query_int(a, "select pg_backend_pid()"), pid,
	             "the server was closed, not reset");
	PQfinish(a);
}

/* A Bind of `stmt` to the unnamed portal with one text parameter `value` (one byte). */
static void put_bind_one(unsigned char *buf, size_t *n, const char *stmt, char value)
{
	unsigned char body[128];
	size_t len = 0;

	body[len++] = '\0'; /* portal */
	memcpy(body + len, stmt, strlen(stmt) + 1);
	len += strlen(stmt) + 1;
	memcpy(body + len, "\0\0\0\1\0\0\0\1", 8); /* no formats, one parameter of 1 byte */
	len += 8;
	body[len++] = (unsigned char)value;
	body[len++] = '\0'; /* no result formats */
	body[len++] = '\0';
	harness_put_msg(buf, n, 'B', body, len);
}

/* Parse of `stmt` with `sql`, no parameter types. */
static void put_parse(unsigned char *buf, size_t *n, const char *stmt, const char *sql)
{
	unsigned char body[256];
	size_t len = 0;

	memcpy(body, stmt, strlen(stmt) + 1);
	len += strlen(stmt) + 1;
	memcpy(body + len, sql, strlen(sql) + 1);
	len += strlen(sql) + 1;
	body[len++] = '\0';
	body[len++] = '\0';
	harness_put_msg(buf, n, 'P', body, len);
}

/* The setting as a client sees it: '' when unset. */
static void expect_custom(PGconn *c, const char *want, const char *what)
{
	PGresult *res = harness_exec_ok(c, "select coalesce(current_setting('app.u', true), '')");

	cr_assert_str_eq(PQgetvalue(res, 0, 0), want, "%s", what);
	PQclear(res);
}

/*
 * Without prepared statement tracking, named statements are the server's:
 * one that sets a custom setting, parsed by a in one request, was run by b's
 * Bind in another.  Sluice saw no text when it ran, so it read nothing back
 * and the setting stayed on the server for its next client.  Found by
 * protofuzz.  Now a Bind on a server where such a statement was parsed makes
 * the state read back and reset (RESET ALL, as for a custom setting sluice
 * cannot name).  One server, one worker.
 */
Test(session_state, a_setting_made_by_an_untracked_named_statement_does_not_leak)
{
	struct harness_sluice *h = harness_start_sluice("client_tls_sslmode = disable\n"
	                                                "workers = 1\ndefault_pool_size = 1\n"
	                                                "max_prepared_statements = 0");
	PGconn *a = harness_connect_ok(h, "app", "app-secret", "app");
	PGconn *b = harness_connect_ok(h, "app", "app-secret", "app");
	unsigned char buf[512];
	size_t n = 0;

	put_parse(buf, &n, "set_u", "select set_config('app.u', $1, false)");
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_expect_transcript(a, buf, n, 1, "1 Z(I) ", "the Parse");
	/* b runs a's statement: untracked, it is the server's. */
	n = 0;
	put_bind_one(buf, &n, "set_u", 'y');
	harness_put_msg(buf, &n, 'E', "\0\0\0\0", 5);
	harness_put_msg(buf, &n, 'S', "", 0);
	harness_expect_transcript(b, buf, n, 1, "2 D(y) C(SELECT 1) Z(I) ", "b's Bind");
	expect_custom(a, "", "a, after b ran the named statement");
	PQfinish(a);
	PQfinish(b);
}
