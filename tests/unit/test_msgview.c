/* The relay's one look at a client message (proto/msgview.h). */
#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/msgview.h"

/* A message of `type` with `body` (len bytes), its bytes in two chains split at `cut`. */
static struct evbuffer *split_message(char type, const char *body, size_t len, size_t cut,
                                      struct frame *f, char *bytes)
{
	struct evbuffer *b = evbuffer_new();
	uint32_t l = (uint32_t)len + 4;

	bytes[0] = type;
	bytes[1] = (char)(l >> 24);
	bytes[2] = (char)(l >> 16);
	bytes[3] = (char)(l >> 8);
	bytes[4] = (char)l;
	memcpy(bytes + 5, body, len);
	/* References keep the two parts in two chains. */
	evbuffer_add_reference(b, bytes, cut, NULL, NULL);
	evbuffer_add_reference(b, bytes + cut, len + 5 - cut, NULL, NULL);
	cr_assert_eq(frame_peek(b, f, 1 << 20), FRAME_READY);
	return b;
}

static const char query[] = "SET search_path = app";

Test(msgview, query_in_one_chain_is_read_in_place)
{
	char bytes[64];
	struct frame f;
	struct evbuffer *b = split_message('Q', query, sizeof(query), 5 + sizeof(query), &f, bytes);
	struct msgview v;

	msgview_read(&v, b, &f, 0);
	cr_assert(v.whole);
	cr_assert_eq(v.msg, bytes, "no copy");
	cr_assert_eq(v.have, frame_total(&f));
	cr_assert_eq(v.text, bytes + 5);
	cr_assert_eq(v.n, sizeof(query), "the text's NUL counts");
	cr_assert_eq(v.verb, SQL_VERB_SET);
	evbuffer_free(b);
}

Test(msgview, split_query_is_made_contiguous_up_to_pull_max)
{
	char bytes[64];
	struct frame f;
	struct evbuffer *b = split_message('Q', query, sizeof(query), 8, &f, bytes);
	struct msgview v;

	msgview_read(&v, b, &f, frame_total(&f) - 1);
	cr_assert_not(v.whole, "longer than pull_max: the first chain's part");
	cr_assert_eq(v.have, 8);
	cr_assert_eq(v.n, 3);
	cr_assert_eq(v.verb, SQL_VERB_OTHER, "SET cut off is not known to be SET");
	msgview_read(&v, b, &f, frame_total(&f));
	cr_assert(v.whole);
	cr_assert_eq(memcmp(v.msg, bytes, frame_total(&f)), 0);
	cr_assert_eq(v.verb, SQL_VERB_SET);
	cr_assert_eq(evbuffer_get_length(b), frame_total(&f), "nothing consumed");
	evbuffer_free(b);
}

Test(msgview, message_not_all_here_is_not_pulled)
{
	char bytes[64];
	struct frame f;
	struct evbuffer *b = evbuffer_new();
	struct evbuffer *whole = split_message('Q', query, sizeof(query), 12, &f, bytes);
	struct msgview v;

	evbuffer_add(b, bytes, 12);
	msgview_read(&v, b, &f, 1 << 20);
	cr_assert_not(v.whole);
	cr_assert_eq(v.have, 12);
	cr_assert_eq(v.text, v.msg + 5);
	cr_assert_eq(v.n, 7);
	evbuffer_free(b);
	evbuffer_free(whole);
}

Test(msgview, parse_text_follows_the_statement_name)
{
	static const char named[] = "s1\0LISTEN x\0\0\0";
	char bytes[64];
	struct frame f;
	struct evbuffer *b =
	    split_message('P', named, sizeof(named) - 1, 5 + sizeof(named) - 1, &f, bytes);
	struct msgview v;

	msgview_read(&v, b, &f, 0);
	cr_assert(v.whole);
	cr_assert_eq(v.text, bytes + 5 + 3);
	cr_assert_eq(v.n, sizeof(named) - 1 - 3, "up to the end: NUL and parameter count too");
	cr_assert_eq(v.verb, SQL_VERB_LISTEN);
	evbuffer_free(b);
}

Test(msgview, parse_name_past_the_first_chain_has_no_text)
{
	static const char named[] = "a_long_name\0SET x = 1\0\0\0";
	char bytes[64];
	struct frame f;
	struct evbuffer *b = split_message('P', named, sizeof(named) - 1, 8, &f, bytes);
	struct msgview v;

	msgview_read(&v, b, &f, 0);
	cr_assert_not(v.whole);
	cr_assert_eq(v.msg, bytes);
	cr_assert_null(v.text);
	cr_assert_eq(v.verb, SQL_VERB_OTHER);
	evbuffer_free(b);
}

Test(msgview, other_messages_have_no_text)
{
	static const char bind[] = "\0\0\0\0\0\0\0";
	char bytes[64];
	struct frame f;
	struct evbuffer *b =
	    split_message('B', bind, sizeof(bind) - 1, 5 + sizeof(bind) - 1, &f, bytes);
	struct msgview v;

	msgview_read(&v, b, &f, 0);
	cr_assert(v.whole);
	cr_assert_eq(v.msg, bytes);
	cr_assert_null(v.text);
	evbuffer_free(b);
}

Test(msgview, empty_buffer_has_no_view)
{
	struct evbuffer *b = evbuffer_new();
	struct frame f = {.type = 'Q', .len = 10};
	struct msgview v;

	msgview_read(&v, b, &f, 1 << 20);
	cr_assert_null(v.msg);
	cr_assert_not(v.whole);
	cr_assert_null(v.text);
	evbuffer_free(b);
}

Test(msgview, at_a_known_place_needs_no_buffer)
{
	static const char unnamed[] = "\0DISCARD ALL\0\0\0";
	char bytes[64];
	struct frame f;
	struct evbuffer *b =
	    split_message('P', unnamed, sizeof(unnamed) - 1, 5 + sizeof(unnamed) - 1, &f, bytes);
	struct msgview v;

	msgview_at(&v, &f, bytes);
	cr_assert(v.whole);
	cr_assert_eq(v.have, frame_total(&f));
	cr_assert_eq(v.text, bytes + 6, "after the empty name");
	cr_assert_eq(v.verb, SQL_VERB_DISCARD);
	evbuffer_free(b);
}
