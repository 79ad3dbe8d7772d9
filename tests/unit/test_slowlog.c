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
	expect_redacted("select 1, -2, 3.5, .5, 6., 1e10, 2.5E-3", "select ?, ?, ?, ?, ?, ?, ?");
	expect_redacted("select 0x1F, 0o17, 0b101, 1_000_000", "select ?, ?, ?, ?");
	expect_redacted("select pg_sleep(0.05)", "select pg_sleep(?)");
	expect_redacted("select a+1 from t1 where x>=10", "select a+? from t1 where x>=?");
}

/* Where Postgres folds a minus into the constant, the sign is part of the literal. */
Test(slowlog, a_unary_minus_goes_with_its_number)
{
	expect_redacted("update t set b = b + -4077 where a = -5",
	                "update t set b = b + ? where a = ?");
	expect_redacted("select f(-1, -.5), a[-2], x=-3, x<>-4, x*-5",
	                "select f(?, ?), a[?], x=?, x<>?, x*?");
	expect_redacted("select a -1, a-2, (b)-3, 'x'-4, $1-5, 6-7",
	                "select a -?, a-?, (b)-?, ?-?, $1-?, ?-?");
	/* Operators holding one of ~!@#%^&|`? keep a trailing '-' (Postgres' lexer). */
	expect_redacted("select a @-1, a @ -1, a ||-2, a %-3",
	                "select a @-?, a @ ?, a ||-?, a %-?");
	expect_redacted("select a - -1, a --1\n", "select a - ?, a --1\n");
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

static bool same_shape(const char *p, const char *t)
{
	char out[256];
	struct literal_spans sp;

	slowlog_normalise_spans(p, strlen(p), out, &sp);
	return slowlog_same_shape(p, strlen(p), &sp, t, strlen(t));
}

Test(slowlog, texts_of_one_shape_differ_only_in_numbers_and_strings)
{
	cr_assert(same_shape("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
	                     "SELECT abalance FROM pgbench_accounts WHERE aid = 7;"));
	cr_assert(same_shape("select * from t where name = 'bob' and n < 1.5e3",
	                     "select * from t where name = 'it''s' and n < 20"));
	cr_assert(same_shape("select $1", "select $1"));
	cr_assert(same_shape("update t set b = b + 12 where a = -3",
	                     "update t set b = b + -7 where a = 9"));
	cr_assert_not(same_shape("select a -1", "select a --1"), "-- opens a comment");
	cr_assert_not(same_shape("select a @ 1", "select a @ -1x"), "1x ends in a word");
	cr_assert_not(same_shape("select a 1", "select a -1"),
	              "after a word a minus is an operator");
	cr_assert_not(same_shape("select 1", "select 'x'"), "another kind of literal");
	cr_assert_not(same_shape("select a from t where x = 1", "select b from t where x = 1"));
	cr_assert_not(same_shape("select 1", "select 1, 2"));
	cr_assert_not(same_shape("select 1.", "select 1x"), "1. ends outside a word, 1 in one");
	cr_assert_not(same_shape("select E'a'", "select E'a'"), "E'' strings have no shape");
	cr_assert_not(same_shape("select $$a$$", "select $$a$$"), "nor dollar quotes");
}

/* A byte from the characters that steer the normaliser. */
static char tricky(unsigned *seed)
{
	static const char set[] = "aeExbuU_$0159.'\"-/* \n;(),&=+";

	return set[rand_r(seed) % (sizeof(set) - 1)];
}

/* A literal of the kind that opens with `first`: digits and what a number may hold, or a string. */
static size_t random_literal(char first, unsigned *seed, char *out)
{
	size_t n = 0, len = 1 + rand_r(seed) % 6;

	if (first == '\'') {
		out[n++] = '\'';
		for (size_t i = 0; i < len; i++)
			out[n++] = "ab' 1"[rand_r(seed) % 5];
		out[n++] = '\'';
		return n;
	}
	if (rand_r(seed) % 2 == 0)
		out[n++] = '-';
	out[n++] = (char)('0' + rand_r(seed) % 10);
	for (size_t i = 0; i < len; i++)
		out[n++] = "0123456789._exX"[rand_r(seed) % 15];
	return n;
}

/*
 * Whenever a text is said to have another's shape, both normalise to the same
 * text.  The candidates are the text with its literals replaced by random ones
 * of the same kind (mostly the same shape) and random texts.
 */
Test(slowlog, a_text_of_the_same_shape_normalises_the_same)
{
	unsigned seed = 19;
	int same = 0;

	for (int round = 0; round < 200000; round++) {
		char p[64], t[256], np[256], nt[256];
		size_t plen = 1 + (size_t)(rand_r(&seed) % 40), tlen = 0, pi = 0, a, b;
		struct literal_spans sp;

		for (size_t i = 0; i < plen; i++)
			p[i] = tricky(&seed);
		a = slowlog_normalise_spans(p, plen, np, &sp);
		if (round % 2 == 0) {
			for (unsigned k = 0; k < sp.n; k++) {
				memcpy(t + tlen, p + pi, sp.start[k] - pi);
				tlen += sp.start[k] - pi;
				tlen += random_literal(p[sp.start[k]], &seed, t + tlen);
				pi = sp.end[k];
			}
			memcpy(t + tlen, p + pi, plen - pi);
			tlen += plen - pi;
		} else {
			tlen = 1 + (size_t)(rand_r(&seed) % 40);
			for (size_t i = 0; i < tlen; i++)
				t[i] = tricky(&seed);
		}
		if (!slowlog_same_shape(p, plen, &sp, t, tlen))
			continue;
		same++;
		b = slowlog_normalise(t, tlen, nt);
		cr_assert(a == b && memcmp(np, nt, a) == 0, "[%.*s] and [%.*s] differ", (int)plen,
		          p, (int)tlen, t);
	}
	cr_assert_gt(same, 20000, "only %d texts of the same shape", same);
}
