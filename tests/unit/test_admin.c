/* The console's command lexer: tokens, quotes, comments and its bounds. */
#include <criterion/criterion.h>
#include <string.h>

#include "admin/console.h"

static struct console_lexer lx;

static void expect_tok(enum console_tok kind, const char *text)
{
	cr_assert_eq(console_lex_next(&lx), kind, "token kind for \"%s\"", text);
	cr_assert_str_eq(lx.text, text);
}

Test(console_lexer, words_symbols_and_quotes)
{
	console_lex_init(&lx,
	                 "  SET query_wait_timeout = '30s' -- comment\n TO \"My Db\" /* x */ ;");
	expect_tok(TOK_WORD, "SET");
	cr_assert(console_lex_is(&lx, "set"));
	expect_tok(TOK_WORD, "query_wait_timeout");
	expect_tok(TOK_EQUALS, "=");
	expect_tok(TOK_STRING, "30s");
	expect_tok(TOK_WORD, "TO");
	expect_tok(TOK_WORD, "My Db");
	expect_tok(TOK_OTHER, ";");
	expect_tok(TOK_END, "");
	expect_tok(TOK_END, "");
}

Test(console_lexer, doubled_quotes_and_odd_names)
{
	console_lex_init(&lx, "'it''s' \"a\"\"b\" db-1.x $9 ''");
	expect_tok(TOK_STRING, "it's");
	expect_tok(TOK_WORD, "a\"b");
	expect_tok(TOK_WORD, "db-1.x");
	expect_tok(TOK_WORD, "$9");
	expect_tok(TOK_STRING, "");
	expect_tok(TOK_END, "");
}

Test(console_lexer, errors_are_sticky_and_bounded)
{
	static char big[ADMIN_TOKEN_MAX * 2];

	console_lex_init(&lx, "SHOW 'unterminated");
	expect_tok(TOK_WORD, "SHOW");
	cr_assert_eq(console_lex_next(&lx), TOK_ERROR);
	cr_assert_not_null(lx.error);
	cr_assert_eq(console_lex_next(&lx), TOK_ERROR);

	memset(big, 'n', sizeof(big) - 1);
	console_lex_init(&lx, big);
	cr_assert_eq(console_lex_next(&lx), TOK_ERROR);
	big[0] = '"';
	console_lex_init(&lx, big);
	cr_assert_eq(console_lex_next(&lx), TOK_ERROR);
	console_lex_init(&lx, "/* never closed");
	cr_assert_eq(console_lex_next(&lx), TOK_END);
}

Test(console_lexer, every_byte_is_handled)
{
	char text[4];

	/* No input byte may stop the lexer from reaching an end. */
	for (int c = 1; c < 256; c++) {
		int guard = 0;

		text[0] = (char)c;
		text[1] = 'x';
		text[2] = (char)c;
		text[3] = '\0';
		console_lex_init(&lx, text);
		while (console_lex_next(&lx) != TOK_END && lx.kind != TOK_ERROR)
			cr_assert(++guard < 10, "no progress on byte %d", c);
	}
}
