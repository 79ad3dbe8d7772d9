/* Query insights: normalising, classifying, hashing and the entry percentiles. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "pool/qstats.h"

static char *normalised(const char *sql)
{
	size_t len = strlen(sql);
	char *out = malloc(len + 1);
	size_t n = qstats_normalise(sql, len, out);

	cr_assert_leq(n, len, "normalising must never lengthen the text");
	out[n] = '\0';
	return out;
}

static void expect_normalised(const char *sql, const char *want)
{
	char *got = normalised(sql);

	cr_assert_str_eq(got, want, "normalising [%s]", sql);
	free(got);
}

Test(qstats, literals_comments_and_whitespace)
{
	expect_normalised("select * from t where id = 42", "select * from t where id = ?");
	expect_normalised("  select\n\t a ,  'x'  from t ;  ", "select a , ? from t");
	expect_normalised("select 1; ;", "select ?");
	expect_normalised("select /* id: 7 */ a -- trailing\nfrom t", "select a from t");
	expect_normalised("select /* a /* nested */ b */ 1", "select ?");
	expect_normalised("select $1, $tag$body$tag$ from t", "select $1, ? from t");
	/* A quoted identifier keeps its spaces and what looks like a comment. */
	expect_normalised("select \"a  -- b\"  from t", "select \"a  -- b\" from t");
	/* Literal prefixes, at the end of the text too, and words that only look like them. */
	expect_normalised("select x'1f', U&'d', e from t where n = b",
	                  "select ?, ?, e from t where n = b");
	expect_normalised("select e", "select e");
	expect_normalised("select a.b--c\n, $1", "select a.b , $1");
	expect_normalised("", "");
	expect_normalised(" \n ;", "");
}

Test(qstats, one_fingerprint_whatever_the_literals)
{
	char *a = normalised("SELECT abalance FROM pgbench_accounts WHERE aid = 17;");
	char *b = normalised("SELECT abalance  FROM pgbench_accounts\nWHERE aid = 99123");
	char *c = normalised("SELECT abalance FROM pgbench_accounts WHERE bid = 17");

	cr_assert_eq(qstats_hash(a, strlen(a)), qstats_hash(b, strlen(b)));
	cr_assert_neq(qstats_hash(a, strlen(a)), qstats_hash(c, strlen(c)));
	cr_assert_neq(qstats_hash("", 0), 0, "0 means no fingerprint");
	free(a);
	free(b);
	free(c);
}

static void expect_type(const char *sql, enum query_type want)
{
	char *n = normalised(sql);

	cr_assert_str_eq(query_type_name(qstats_classify(n, strlen(n))), query_type_name(want),
	                 "type of [%s]", sql);
	free(n);
}

Test(qstats, statement_types)
{
	expect_type("select 1", QUERY_SELECT);
	expect_type("  (SELECT 1) UNION (SELECT 2)", QUERY_SELECT);
	expect_type("values (1)", QUERY_SELECT);
	expect_type("/* hi */ Insert into t values (1)", QUERY_INSERT);
	expect_type("update t set a = 1", QUERY_UPDATE);
	expect_type("delete from t", QUERY_DELETE);
	expect_type("with x as (select 1) select * from x", QUERY_SELECT);
	expect_type("with x as (select 1), y as (select 2) delete from t using x", QUERY_DELETE);
	expect_type("WITH RECURSIVE r(n) AS (SELECT 1) INSERT INTO t SELECT n FROM r",
	            QUERY_INSERT);
	expect_type("create table t (a int)", QUERY_DDL);
	expect_type("ALTER TABLE t ADD b int", QUERY_DDL);
	expect_type("truncate t", QUERY_DDL);
	expect_type("begin", QUERY_UTILITY);
	expect_type("SET search_path = a", QUERY_UTILITY);
	expect_type("copy t from stdin", QUERY_UTILITY);
	expect_type("explain select 1", QUERY_UTILITY);
	expect_type("merge into t using s on true when matched then do nothing", QUERY_OTHER);
	expect_type("", QUERY_OTHER);
	expect_type("?", QUERY_OTHER);
}

Test(qstats, percentiles_from_the_small_histogram)
{
	uint32_t hist[QSTATS_HIST_BUCKETS] = {0};
	uint64_t values[] = {100, 200, 1000, 5000, 100000};
	uint64_t p;

	cr_assert_eq(qstats_percentile(hist, 0, 0.5), 0);
	for (size_t i = 0; i < 5; i++)
		hist[histogram_index(values[i]) >> QSTATS_HIST_SHIFT]++;
	/* Within the 12.5% that a quarter of a power of two allows. */
	p = qstats_percentile(hist, 5, 0.5);
	cr_assert(p >= 875 && p <= 1125, "p50 %llu, true 1000", (unsigned long long)p);
	p = qstats_percentile(hist, 5, 0.99);
	cr_assert(p >= 87500 && p <= 112500, "p99 %llu, true 100000", (unsigned long long)p);
	p = qstats_percentile(hist, 5, 0.0);
	cr_assert(p >= 87 && p <= 113, "p0 %llu, true 100", (unsigned long long)p);
}
