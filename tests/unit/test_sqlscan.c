/* The cheap look at SQL text that transaction pooling relies on (proto/sqlscan.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "proto/sqlscan.h"

static enum sql_verb verb(const char *sql)
{
	return sqlscan_verb(sql, strlen(sql) + 1); /* a Query's text ends in its NUL */
}

Test(sqlscan, first_keyword)
{
	cr_assert_eq(verb("SET x = 1"), SQL_VERB_SET);
	cr_assert_eq(verb("  -- comment\n /* a /* nested */ one */ ((reset all))"), SQL_VERB_RESET);
	cr_assert_eq(verb("Listen chan"), SQL_VERB_LISTEN);
	cr_assert_eq(verb("deallocate all"), SQL_VERB_DEALLOCATE);
	cr_assert_eq(verb("settings"), SQL_VERB_OTHER);
	cr_assert_eq(verb("select 1"), SQL_VERB_OTHER);
	cr_assert_eq(verb(""), SQL_VERB_OTHER);
	/* Cut off by the end of the bytes: not known to be SET. */
	cr_assert_eq(sqlscan_verb("set", 3), SQL_VERB_OTHER);
	cr_assert_eq(verb("set"), SQL_VERB_SET);
}

Test(sqlscan, every_keyword)
{
	static const struct {
		const char *sql;
		enum sql_verb verb;
	} cases[] = {
	    {"SET a = 1", SQL_VERB_SET},
	    {"RESET a", SQL_VERB_RESET},
	    {"DISCARD ALL", SQL_VERB_DISCARD},
	    {"CREATE TABLE t ()", SQL_VERB_CREATE},
	    {"DECLARE c CURSOR", SQL_VERB_DECLARE},
	    {"CLOSE c", SQL_VERB_CLOSE},
	    {"DROP TABLE t", SQL_VERB_DROP},
	    {"LOAD 'x'", SQL_VERB_LOAD},
	    {"PREPARE p AS", SQL_VERB_PREPARE},
	    {"EXECUTE p", SQL_VERB_EXECUTE},
	    {"LISTEN c", SQL_VERB_LISTEN},
	    {"UNLISTEN *", SQL_VERB_UNLISTEN},
	    {"DEALLOCATE p", SQL_VERB_DEALLOCATE},
	    {"EXPLAIN SELECT 1", SQL_VERB_EXPLAIN},
	    {"SELECT 1", SQL_VERB_OTHER},
	    {"DELETE FROM t", SQL_VERB_OTHER},
	    {"COMMIT", SQL_VERB_OTHER},
	    {"LOADS", SQL_VERB_OTHER},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(verb(cases[i].sql), cases[i].verb, "%s", cases[i].sql);
}

Test(sqlscan, mentions)
{
	const char *a = "SELECT pg_catalog.SET_CONFIG('a.b', 'c', false)";
	const char *b = "select pg_try_advisory_lock(1), pg_advisory_unlock_all()";
	const char *c = "select reset_config, my_set_config(1), x_pg_advisory_lock()";

	cr_assert_eq(sqlscan_mentions(a, strlen(a)), SQL_MENTIONS_SET_CONFIG);
	cr_assert_eq(sqlscan_mentions(b, strlen(b)), SQL_MENTIONS_ADVISORY);
	cr_assert_eq(sqlscan_mentions(c, strlen(c)), 0);
	cr_assert_eq(sqlscan_mentions("select 1 into temp t", 20), SQL_MENTIONS_TEMP);
	cr_assert_eq(sqlscan_mentions("SELECT 1 INTO TEMPORARY t", 25), SQL_MENTIONS_TEMP);
	cr_assert_eq(sqlscan_mentions("select 1; create temp view v as select 1", 40),
	             SQL_MENTIONS_TEMP);
	cr_assert_eq(sqlscan_mentions("select temperature, template, temp_x, ntemp from t", 50), 0);
	cr_assert_eq(sqlscan_mentions("select 1 into TEMP", 18), SQL_MENTIONS_TEMP);
	cr_assert(sqlscan_may_change_session(a, strlen(a)));
	cr_assert_not(sqlscan_may_change_session("select 1", 8));
}

struct names {
	char text[256];
};

static void collect(void *arg, const char *name)
{
	struct names *n = arg;

	strcat(n->text, name);
	strcat(n->text, ";");
}

static int names(const char *sql, struct names *n)
{
	n->text[0] = '\0';
	return sqlscan_custom_names(sql, strlen(sql), collect, n);
}

Test(sqlscan, custom_names)
{
	struct names n;

	cr_assert_eq(names("SET SESSION MyApp.Who = 'x'; set local \"A\".b TO 1; "
	                   "select 'set x.y = 1'; reset app.z; set search_path = a",
	                   &n),
	             0);
	cr_assert_str_eq(n.text, "myapp.who;A.b;app.z;");
	cr_assert_eq(names("select set_config('My.Tenant', $1, false), "
	                   "pg_catalog.set_config ( 'it''s.x', 'v', true)",
	                   &n),
	             0);
	cr_assert_str_eq(n.text, "my.tenant;it's.x;");
	cr_assert_eq(names("select set_config($1, 'v', false)", &n), -1);
	cr_assert_eq(names("do $$ begin perform set_config('a.b', 'c', false); end $$", &n), -1);
	cr_assert_eq(names("select set_config('timezone', 'UTC', false)", &n), 0);
	cr_assert_str_eq(n.text, "");
}

Test(sqlscan, statement_name)
{
	char name[64];
	const char *sql = "PREPARE \"Odd \"\"one\"\" \" (int) AS select $1";

	cr_assert_neq(sqlscan_name(sql, strlen(sql), NULL, name, sizeof(name)), 0);
	cr_assert_str_eq(name, "Odd \"one\" ");
	sql = "deallocate prepare Foo_1;";
	cr_assert_eq(sqlscan_name(sql, strlen(sql), "prepare", name, sizeof(name)), 24);
	cr_assert_str_eq(name, "foo_1");
	cr_assert_eq(sqlscan_name("execute (", 9, NULL, name, sizeof(name)), 0);
}

/* Whether "PREPARE name ..." prepares a statement: not PREPARE TRANSACTION 'id'. */
static bool prepares(const char *sql)
{
	char name[64];
	size_t after = sqlscan_name(sql, strlen(sql), NULL, name, sizeof(name));

	return after != 0 && sqlscan_prepare_has_as(sql, strlen(sql), after);
}

Test(sqlscan, prepare_of_a_statement)
{
	cr_assert(prepares("prepare q as select 1"));
	cr_assert(prepares("PREPARE q (int, numeric(10, 2)) AS select $1"));
	cr_assert(prepares("prepare q/* c */(text)\n--x\n as select 1"));
	cr_assert(prepares("prepare transaction as select 1"));
	cr_assert(!prepares("prepare transaction 'gid'"));
	cr_assert(!prepares("PREPARE TRANSACTION 'gid';"));
	cr_assert(!prepares("prepare q select 1"));
	cr_assert(!prepares("prepare q (int"));
	cr_assert(!prepares("prepare q asx"));
}

/* The statement an EXECUTE runs: its name, where it starts and ends. */
static const char *target(const char *sql, size_t *start, size_t *end)
{
	static char name[64];

	*end = sqlscan_execute_target(sql, strlen(sql) + 1, name, sizeof(name), start);
	return *end != 0 ? name : NULL;
}

Test(sqlscan, execute_target)
{
	size_t start, end;
	const char *sql;

	cr_assert_str_eq(target("EXECUTE Q(1)", &start, &end), "q");
	cr_assert_eq(start, 8);
	cr_assert_eq(end, 9);
	cr_assert_str_eq(target("explain analyze verbose execute \"Q\"(1)", &start, &end), "Q");
	cr_assert_eq(start, 32);
	cr_assert_eq(end, 35);
	cr_assert_str_eq(target("EXPLAIN (ANALYZE, FORMAT 'json') EXECUTE q", &start, &end), "q");
	sql = "create temp table if not exists s.\"T\" (a, b) with (fillfactor = 70) "
	      "as /* c */ execute q_1 (2) with no data";
	cr_assert_str_eq(target(sql, &start, &end), "q_1");
	cr_assert_eq(strncmp(sql + start, "q_1 (2)", 7), 0);
	cr_assert_str_eq(target("explain analyze create table t as execute q", &start, &end), "q");
	cr_assert_null(target("create table t as select 1", &start, &end));
	cr_assert_null(target("create function f() returns int as $$ execute q $$", &start, &end));
	cr_assert_null(target("explain select 1", &start, &end));
	cr_assert_null(target("executes q", &start, &end));
	cr_assert_null(target("execute (", &start, &end));
}

struct split {
	char out[256]; /* the statements, each followed by '|' */
};

static void add_statement(void *arg, const char *stmt, size_t len)
{
	struct split *sp = arg;
	size_t at = strlen(sp->out);

	snprintf(sp->out + at, sizeof(sp->out) - at, "%.*s|", (int)len, stmt);
}

static const char *split(const char *sql, int *rc)
{
	static struct split sp;

	sp.out[0] = '\0';
	*rc = sqlscan_statements(sql, strlen(sql), add_statement, &sp);
	return sp.out;
}

Test(sqlscan, statements)
{
	int rc;

	cr_assert_str_eq(split("select 1; listen a;", &rc), "select 1| listen a|");
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(split("select ';' , \"a;b\", E'\\';'; listen x -- ;\n", &rc),
	                 "select ';' , \"a;b\", E'\\';'| listen x -- ;\n|");
	cr_assert_str_eq(split("do $f$ begin; end $f$; /* ; /* ; */ */ unlisten *", &rc),
	                 "do $f$ begin; end $f$| /* ; /* ; */ */ unlisten *|");
	cr_assert_str_eq(split("select $1; select a$b; listen c", &rc),
	                 "select $1| select a$b| listen c|");
	cr_assert_eq(rc, 0);
	/* Whether a backslash escapes depends on standard_conforming_strings: unsure. */
	split("select 'a\\'; listen x; '", &rc);
	cr_assert_eq(rc, -1);
	split("select $$ unterminated; listen x", &rc);
	cr_assert_eq(rc, -1);
}
