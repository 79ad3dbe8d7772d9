/* Slow-query log redaction: every kind of literal becomes '?', everything else stays. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "pool/slowlog.h"

static void expect_redacted(const char *in, const char *want)
{
	size_t len = strlen(in);
	char *out = malloc(len + 1);
	size_t n = slowlog_redact(in, len, out);

	cr_assert_leq(n, len, "redaction must never lengthen the text");
	out[n] = '\0';
	cr_assert_str_eq(out, want, "redacting [%s]", in);
	free(out);
}

Test(slowlog, strings)
{
	expect_redacted("select * from t where name = 'bob'", "select * from t where name = ?");
	expect_redacted("select 'it''s', ''", "select ?, ?");
	expect_redacted("select E'a\\'b', e'\\\\'", "select ?, ?");
	expect_redacted("select B'101', X'ff', N'x', U&'d\\0061t'", "select ?, ?, ?, ?");
	expect_redacted("select '5'::int, interval '1 day'", "select ?::int, interval ?");
}

Test(slowlog, numbers)
{
	expect_redacted("select 1, -2, 3.5, .5, 6., 1e10, 2.5E-3", "select ?, -?, ?, ?, ?, ?, ?");
	expect_redacted("select 0x1F, 0o17, 0b101, 1_000_000", "select ?, ?, ?, ?");
	expect_redacted("select pg_sleep(0.05)", "select pg_sleep(?)");
	expect_redacted("select a+1 from t1 where x>=10", "select a+? from t1 where x>=?");
}

Test(slowlog, identifiers_and_parameters_stay)
{
	expect_redacted("select col2, t1.x, \"We1rd \"\"9\"\" col\" from s3.t_4",
	                "select col2, t1.x, \"We1rd \"\"9\"\" col\" from s3.t_4");
	expect_redacted("select $1, $22 from t where a$1 = $2",
	                "select $1, $22 from t where a$1 = $2");
	expect_redacted("update t set e = 1", "update t set e = ?");
	expect_redacted("select x from be where b = 'q'", "select x from be where b = ?");
}

Test(slowlog, dollar_quotes)
{
	expect_redacted("select $$a 'b' 1$$", "select ?");
	expect_redacted("do $body$ begin perform 1; end $body$", "do ?");
	expect_redacted("select $t$x$$y$t$, 2", "select ?, ?");
}

Test(slowlog, comments_stay)
{
	expect_redacted("select 1 -- note 2 'x'\n, 3", "select ? -- note 2 'x'\n, ?");
	expect_redacted("select /* a /* nested 4 */ 'y' */ 5",
	                "select /* a /* nested 4 */ 'y' */ ?");
}

Test(slowlog, truncated_literals_are_redacted_to_the_end)
{
	expect_redacted("select 'secret pass", "select ?");
	expect_redacted("select $$secret", "select ?");
	expect_redacted("select E'abc\\", "select ?");
	expect_redacted("insert into t values (12", "insert into t values (?");
}

Test(slowlog, empty)
{
	expect_redacted("", "");
}
