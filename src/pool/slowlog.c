/*
 * The slow-query log; see slowlog.h.  Capturing runs for every Query and
 * Parse while the log is on: one evbuffer_copyout into a buffer the client
 * keeps.  Redacting and formatting run only for queries over the threshold.
 */
#include "pool/slowlog.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/client.h"
#include "config/config.h"
#include "base/log.h"
#include "proto/params.h"
#include "pool/pool.h"
#include "proto/frame.h"
#include "proto/msgview.h"
#include "pool/worker.h"

/* Room before the text: the header, and a Parse's statement name up to this long. */
#define NAME_ROOM 64

/*
 * The client's buffer for this message's text, up to `want` bytes of it.  It
 * is sized to the longest message so far (in powers of two), not to
 * slow_query_max_length: idle clients hold thousands of these, most for a
 * short statement.  It only grows, so a steady workload allocates nothing.
 */
static struct query_capture *capture_buffer(struct client *c, size_t want, size_t msg_len)
{
	size_t most = FRAME_HEADER_LEN + NAME_ROOM + want + 1, cap = 32;
	struct query_capture *qc = c->capture;

	if (qc == NULL && c->w->spare_captures != NULL) {
		qc = c->w->spare_captures;
		c->w->spare_captures = qc->next_spare;
		c->capture = qc;
	}
	while (cap < msg_len && cap < most)
		cap *= 2;
	if (cap > most)
		cap = most;
	if (qc != NULL && qc->cap >= cap)
		return qc;
	qc = realloc(qc, sizeof(*qc) + cap);
	if (qc == NULL)
		return NULL;
	qc->cap = (uint32_t)cap;
	qc->len = 0;
	c->capture = qc;
	return qc;
}

void slowlog_release(struct client *c)
{
	struct query_capture *qc = c->capture;

	if (qc == NULL)
		return;
	c->capture = NULL;
	qc->next_spare = c->w->spare_captures;
	c->w->spare_captures = qc;
}

/* Cut an incomplete UTF-8 sequence off the end of a truncated text. */
static size_t trim_utf8(const char *s, size_t len)
{
	size_t i = len, need;
	unsigned char lead;

	while (i > 0 && len - i < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0)
		return len;
	lead = (unsigned char)s[i - 1];
	if (lead < 0xc0)
		return len; /* ASCII, or no lead byte found: nothing to trim */
	need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
	return len - (i - 1) < need ? i - 1 : len;
}

/*
 * The text of a message the relay viewed whole: copied straight from the
 * view, as far as the copy of the message's first qc->cap bytes would reach.
 */
static void capture_view(struct query_capture *qc, const struct msgview *v, size_t want)
{
	size_t skip = (size_t)(v->text - v->msg), n = v->have < qc->cap ? v->have : qc->cap, len;
	const char *nul;

	if (n < skip)
		return; /* a statement name longer than NAME_ROOM: no text */
	nul = memchr(v->text, '\0', n - skip);
	len = nul != NULL ? (size_t)(nul - v->text) : n - skip;
	if (nul == NULL || len > want) {
		len = trim_utf8(v->text, len < want ? len : want);
		qc->truncated = true;
	}
	memcpy(qc->text, v->text, len);
	qc->len = (uint32_t)len;
}

void slowlog_capture(struct client *c, struct evbuffer *in, const struct frame *f,
                     const struct msgview *v)
{
	const struct config *cfg = c->w->cfg;
	size_t want = (size_t)cfg->slow_query_max_length, n, skip = FRAME_HEADER_LEN, len;
	struct query_capture *qc;
	const char *nul;

	if ((f->type != 'Q' && f->type != 'P') || cfg->slow_query_threshold_us <= 0)
		return;
	qc = capture_buffer(c, want, frame_total(f));
	if (qc == NULL)
		return;
	qc->len = 0;
	qc->truncated = false;
	if (v->whole && v->text != NULL) {
		capture_view(qc, v, want);
		return;
	}
	n = frame_total(f) < qc->cap ? frame_total(f) : qc->cap;
	/* A large message may not be all here yet: take what is. */
	n = (size_t)evbuffer_copyout(in, qc->text, n);
	if (n <= FRAME_HEADER_LEN)
		return;
	if (f->type == 'P') {
		nul = memchr(qc->text + skip, '\0', n - skip);
		if (nul == NULL)
			return; /* a statement name longer than NAME_ROOM: no text */
		skip = (size_t)(nul - qc->text) + 1;
	}
	nul = memchr(qc->text + skip, '\0', n - skip);
	len = nul != NULL ? (size_t)(nul - qc->text) - skip : n - skip;
	if (nul == NULL || len > want) {
		len = trim_utf8(qc->text + skip, len < want ? len : want);
		qc->truncated = true;
	}
	memmove(qc->text, qc->text + skip, len);
	qc->len = (uint32_t)len;
}

/* ---- redaction ---- */

/* ASCII tests without <ctype.h>'s per-call table lookup: this runs for every byte. */
static bool is_ascii_letter(unsigned char ch)
{
	return (unsigned char)((ch | 0x20) - 'a') < 26;
}

static bool is_ascii_digit(unsigned char ch)
{
	return (unsigned char)(ch - '0') < 10;
}

static bool is_word_byte(unsigned char ch)
{
	return is_ascii_letter(ch) || is_ascii_digit(ch) || ch == '_' || ch == '$' || ch >= 0x80;
}

/*
 * End of a quoted token whose opening quote (' or ") is at q, where a doubled
 * quote stands for itself; `backslash` for E'' strings, where \ escapes.
 */
static size_t skip_quoted(const char *s, size_t len, size_t q, bool backslash)
{
	char quote = s[q];
	size_t i = q + 1;

	while (i < len) {
		if (backslash && s[i] == '\\') {
			i += 2;
		} else if (s[i] == quote) {
			if (i + 1 < len && s[i + 1] == quote)
				i += 2;
			else
				return i + 1;
		} else {
			i++;
		}
	}
	return len;
}

/* A dollar quote's tag at i ("$$" or "$tag$"); returns its length or 0. */
static size_t dollar_tag(const char *s, size_t len, size_t i)
{
	size_t k = i + 1;

	if (k < len && (isdigit((unsigned char)s[k])))
		return 0; /* $1: a parameter */
	while (k < len &&
	       (isalnum((unsigned char)s[k]) || s[k] == '_' || (unsigned char)s[k] >= 0x80))
		k++;
	return k < len && s[k] == '$' ? k - i + 1 : 0;
}

/* End of a dollar-quoted body starting at i with a tag of tag_len bytes. */
static size_t skip_dollar(const char *s, size_t len, size_t i, size_t tag_len)
{
	for (size_t k = i + tag_len; k + tag_len <= len; k++)
		if (s[k] == '$' && memcmp(s + k, s + i, tag_len) == 0)
			return k + tag_len;
	return len;
}

/* End of a number at i: digits, a fraction, an exponent, 0x/0o/0b and _ separators. */
static size_t skip_number(const char *s, size_t len, size_t i)
{
	if (i + 1 < len && s[i] == '0' && s[i + 1] != '\0' && strchr("xXoObB", s[i + 1]) != NULL) {
		i += 2;
		while (i < len && (isxdigit((unsigned char)s[i]) || s[i] == '_'))
			i++;
		return i;
	}
	while (i < len && (is_ascii_digit((unsigned char)s[i]) || s[i] == '_' || s[i] == '.'))
		i++;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		size_t k = i + 1;

		if (k < len && (s[k] == '+' || s[k] == '-'))
			k++;
		if (k < len && is_ascii_digit((unsigned char)s[k])) {
			while (k < len && is_ascii_digit((unsigned char)s[k]))
				k++;
			i = k;
		}
	}
	return i;
}

/* Does a number start at i: a digit, or '.' and a digit? */
static bool starts_number(const char *s, size_t len, size_t i)
{
	return is_ascii_digit((unsigned char)s[i]) ||
	       (s[i] == '.' && i + 1 < len && is_ascii_digit((unsigned char)s[i + 1]));
}

/* End of a comment at i (-- to the end of the line, or nested slash-star). */
static size_t skip_comment(const char *s, size_t len, size_t i)
{
	int depth = 0;

	if (s[i] == '-') {
		while (i < len && s[i] != '\n')
			i++;
		return i;
	}
	while (i < len) {
		if (i + 1 < len && s[i] == '/' && s[i + 1] == '*') {
			depth++;
			i += 2;
		} else if (i + 1 < len && s[i] == '*' && s[i + 1] == '/') {
			i += 2;
			if (--depth == 0)
				return i;
		} else {
			i++;
		}
	}
	return len;
}

/* End of a string literal starting at i, or 0 if none starts there. */
static size_t string_literal_end(const char *s, size_t len, size_t i, bool after_word)
{
	char ch = s[i];

	if (ch == '\'')
		return skip_quoted(s, len, i, false);
	if (after_word || i + 1 >= len)
		return 0;
	if ((ch == 'e' || ch == 'E') && s[i + 1] == '\'')
		return skip_quoted(s, len, i + 1, true);
	if (ch != '\0' && strchr("bBxXnN", ch) != NULL && s[i + 1] == '\'')
		return skip_quoted(s, len, i + 1, false);
	if ((ch == 'u' || ch == 'U') && i + 2 < len && s[i + 1] == '&' && s[i + 2] == '\'')
		return skip_quoted(s, len, i + 2, false);
	return 0;
}

/*
 * Classes of bytes for the tight loop of copy_plain_run: one table lookup a
 * byte instead of a chain of tests, as query_stats redacts every statement.
 */
enum {
	B_WORD = 1,   /* part of a word: letters, digits, '_', '$', bytes >= 0x80 (is_word_byte) */
	B_SPACE = 2,  /* whitespace as SQL's scanner sees it */
	B_START = 4,  /* outside a word, may start a literal, comment or quoted identifier */
	B_PREFIX = 8, /* a letter that opens a literal when a quote (or U&) follows: E'' B'' ... */
};

#define B_LETTER   (B_WORD)
#define B_PREFIXED (B_WORD | B_PREFIX)

static const uint8_t byte_class[256] = {
    [0] = B_START,
    ['\t' ... '\r'] = B_SPACE,
    [' '] = B_SPACE,
    ['"'] = B_START,
    ['$'] = B_WORD | B_START,
    ['\''] = B_START,
    ['-'] = B_START,
    ['.'] = B_START,
    ['/'] = B_START,
    ['0' ... '9'] = B_WORD | B_START,
    ['A'] = B_LETTER,
    ['B'] = B_PREFIXED,
    ['C' ... 'D'] = B_LETTER,
    ['E'] = B_PREFIXED,
    ['F' ... 'M'] = B_LETTER,
    ['N'] = B_PREFIXED,
    ['O' ... 'T'] = B_LETTER,
    ['U'] = B_PREFIXED,
    ['V' ... 'W'] = B_LETTER,
    ['X'] = B_PREFIXED,
    ['Y' ... 'Z'] = B_LETTER,
    ['_'] = B_WORD,
    ['a'] = B_LETTER,
    ['b'] = B_PREFIXED,
    ['c' ... 'd'] = B_LETTER,
    ['e'] = B_PREFIXED,
    ['f' ... 'm'] = B_LETTER,
    ['n'] = B_PREFIXED,
    ['o' ... 't'] = B_LETTER,
    ['u'] = B_PREFIXED,
    ['v' ... 'w'] = B_LETTER,
    ['x'] = B_PREFIXED,
    ['y' ... 'z'] = B_LETTER,
    [0x80 ... 0xff] = B_WORD,
};

/* Output of one redaction; `normalise` also drops comments and collapses spaces. */
struct redaction {
	char *out;                /* where the text goes */
	size_t o;                 /* bytes written */
	bool normalise;           /* slowlog_normalise rather than slowlog_redact */
	bool spaced;              /* normalising: the last byte written is a collapsed space */
	struct literal_spans *sp; /* NULL, or where the literals go */
};

static bool is_sql_space(unsigned char ch)
{
	return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

static void put_byte(struct redaction *r, char ch)
{
	r->out[r->o++] = ch;
	r->spaced = false;
}

/* Normalising: a run of spaces and comments becomes one space, none at the start. */
static void put_space(struct redaction *r)
{
	if (!r->spaced && r->o > 0) {
		r->out[r->o++] = ' ';
		r->spaced = true;
	}
}

/* The characters Postgres builds operators from. */
static bool is_operator_byte(char ch)
{
	return ch != '\0' && strchr("+-*/<>=~!@#%^&|`?", ch) != NULL;
}

/*
 * Would a '-' at i, before a number, be a sign that Postgres folds into the
 * constant?  Its grammar does so for a unary minus (the constant's location
 * is the sign's; pg_stat_statements shows `x + -5` as `x + $1`), so the sign
 * goes with the literal and `x + -5` and `x + 5` share a fingerprint.
 * Decided from the bytes before i alone: after an opening '(' or '[', a ','
 * or an operator the minus is unary.  Adjacent to an operator it is one only
 * where Postgres' lexer splits it off: a run of operator characters ending in
 * '-' keeps it unless the run holds none of ~!@#%^&|`?.  After a word or a
 * ')' it is binary; after a keyword (`select -1`) it is left as an operator,
 * telling keywords from names being beyond this scanner.  A '-' right after
 * another opens a comment, never a sign.
 */
static bool minus_is_sign(const char *s, size_t i)
{
	size_t k = i;

	if (i > 0 && s[i - 1] == '-')
		return false;
	while (k > 0 && is_operator_byte(s[k - 1]))
		k--;
	if (k < i) {
		for (size_t j = k; j < i; j++)
			if (strchr("~!@#%^&|`?", s[j]) != NULL)
				return false;
		return true;
	}
	while (k > 0 && is_sql_space((unsigned char)s[k - 1]))
		k--;
	return k > 0 && (s[k - 1] == '(' || s[k - 1] == '[' || s[k - 1] == ',' ||
	                 is_operator_byte(s[k - 1]));
}

/* A literal [i, end) became '?': note it, or that the text has no reusable shape. */
static void note_literal(struct literal_spans *sp, const char *s, size_t i, size_t end)
{
	if (sp == NULL || !sp->usable)
		return;
	if (sp->n == SLOWLOG_SPANS_MAX ||
	    !(is_ascii_digit((unsigned char)s[i]) || s[i] == '\'' ||
	      (s[i] == '-' && is_ascii_digit((unsigned char)s[i + 1])))) {
		sp->usable = false;
		return;
	}
	sp->start[sp->n] = (uint32_t)i;
	sp->end[sp->n++] = (uint32_t)end;
}

/*
 * Copy the run of bytes from i that redaction leaves alone (words that open
 * no literal, spaces, most operators) in one tight loop: query_stats redacts
 * every statement, not only slow ones.  Anything in doubt ends the run and
 * takes the token-by-token path, which decides exactly.  Returns where the
 * run ends.
 */
static size_t copy_plain_run(const char *s, size_t len, size_t i, struct redaction *r)
{
	bool word = i > 0 && is_word_byte((unsigned char)s[i - 1]), spaced = r->spaced;
	bool normalise = r->normalise;
	char *out = r->out;
	size_t o = r->o; /* in locals: stores through `out` may alias anything in *r */

	while (i < len) {
		unsigned char ch = (unsigned char)s[i];
		uint8_t cls = byte_class[ch];

		if (cls & B_WORD) {
			char *to = out + o - i; /* to[i] is out[o] for the whole word */
			size_t from = i;

			if (!word && ((cls & B_START) ||
			              ((cls & B_PREFIX) &&
			               (i + 1 >= len || s[i + 1] == '\'' || s[i + 1] == '&'))))
				break;
			/* Inside a word nothing opens a literal: the rest in a tight loop. */
			do {
				to[i] = s[i];
				i++;
			} while (i < len && (byte_class[(unsigned char)s[i]] & B_WORD));
			o += i - from;
			word = true;
			spaced = false;
			continue;
		}
		if (cls & B_START)
			break;
		word = false;
		i++;
		if (normalise && (cls & B_SPACE)) {
			if (!spaced && o > 0)
				out[o++] = ' ';
			spaced = o > 0;
			continue;
		}
		out[o++] = (char)ch;
		spaced = false;
	}
	r->o = o;
	r->spaced = spaced;
	return i;
}

static size_t redact(const char *s, size_t len, struct redaction *r)
{
	size_t i = 0;

	while (i < len) {
		unsigned char ch;
		bool after_word;
		size_t end, tag;

		i = copy_plain_run(s, len, i, r);
		if (i == len)
			break;
		ch = (unsigned char)s[i];
		after_word = i > 0 && is_word_byte((unsigned char)s[i - 1]);
		end = string_literal_end(s, len, i, after_word);

		if (end == 0 && ch == '$' && !after_word && (tag = dollar_tag(s, len, i)) > 0)
			end = skip_dollar(s, len, i, tag);
		if (end == 0 && !after_word && starts_number(s, len, i))
			end = skip_number(s, len, i);
		if (end == 0 && ch == '-' && i + 1 < len && starts_number(s, len, i + 1) &&
		    minus_is_sign(s, i))
			end = skip_number(s, len, i + 1);
		if (end > 0) {
			note_literal(r->sp, s, i, end);
			put_byte(r, '?');
			i = end;
			continue;
		}
		if (ch == '"')
			end = skip_quoted(s, len, i, false);
		else if ((ch == '-' && i + 1 < len && s[i + 1] == '-') ||
		         (ch == '/' && i + 1 < len && s[i + 1] == '*'))
			end = skip_comment(s, len, i);
		else
			end = i + 1;
		if (r->normalise && (ch == '-' || ch == '/') && end > i + 1) {
			put_space(r); /* a comment */
		} else if (r->normalise && is_sql_space(ch)) {
			put_space(r);
		} else {
			/* Identifiers, quoted identifiers, comments and operators stay as they are.
			 */
			memcpy(r->out + r->o, s + i, end - i);
			r->o += end - i;
			r->spaced = false;
		}
		i = end;
	}
	return r->o;
}

size_t slowlog_redact(const char *s, size_t len, char *out)
{
	struct redaction r = {.out = out};

	return redact(s, len, &r);
}

size_t slowlog_normalise_spans(const char *s, size_t len, char *out, struct literal_spans *sp)
{
	struct redaction r = {.out = out, .normalise = true, .sp = sp};
	size_t n;

	if (sp != NULL)
		*sp = (struct literal_spans){.usable = len <= UINT32_MAX};
	n = redact(s, len, &r);
	while (n > 0 && (out[n - 1] == ';' || out[n - 1] == ' '))
		n--;
	return n;
}

size_t slowlog_normalise(const char *s, size_t len, char *out)
{
	return slowlog_normalise_spans(s, len, out, NULL);
}

bool slowlog_same_shape(const char *p, size_t plen, const struct literal_spans *sp, const char *t,
                        size_t tlen)
{
	size_t pi = 0, ti = 0;

	if (!sp->usable)
		return false;
	for (unsigned k = 0; k < sp->n; k++) {
		size_t gap = sp->start[k] - pi, te, digits;
		bool number = p[sp->start[k]] != '\'';

		if (ti + gap >= tlen || memcmp(p + pi, t + ti, gap) != 0)
			return false;
		ti += gap;
		/* A sign goes with a number where minus_is_sign says so, which the
		 * bytes before it decide: the gap, the same in both texts, and before
		 * that a literal of the same kind, in which it never finds a sign. */
		digits = ti;
		if (number && t[ti] == '-' && ti + 1 < tlen && minus_is_sign(p, sp->start[k]))
			digits = ti + 1;
		if (number ? !is_ascii_digit((unsigned char)t[digits]) : t[ti] != '\'')
			return false;
		te = number ? skip_number(t, tlen, digits) : skip_quoted(t, tlen, ti, false);
		if (is_word_byte((unsigned char)t[te - 1]) !=
		    is_word_byte((unsigned char)p[sp->end[k] - 1]))
			return false;
		pi = sp->end[k];
		ti = te;
	}
	return plen - pi == tlen - ti && memcmp(p + pi, t + ti, plen - pi) == 0;
}

/* ---- the log line ---- */

/* A text-format value: bare when it is a plain word, else quoted with escapes. */
static void add_text_value(struct evbuffer *b, const char *s, size_t len)
{
	bool plain = len > 0;

	for (size_t i = 0; i < len && plain; i++)
		plain = isgraph((unsigned char)s[i]) && s[i] != '"' && s[i] != '=' && s[i] != '\\';
	if (plain) {
		evbuffer_add(b, s, len);
		return;
	}
	evbuffer_add(b, "\"", 1);
	log_escape_append(b, s, len, LOG_ESCAPE_QUOTED);
	evbuffer_add(b, "\"", 1);
}

static void add_json_string(struct evbuffer *b, const char *s, size_t len)
{
	evbuffer_add(b, "\"", 1);
	log_escape_append(b, s, len, LOG_ESCAPE_JSON);
	evbuffer_add(b, "\"", 1);
}

/* Both forms of one slow-query record. */
static void format_record(struct evbuffer *text, struct evbuffer *json, const struct client *c,
                          int64_t duration_us, int64_t wait_us, const char *query, size_t qlen,
                          bool truncated)
{
	const struct param *app = param_find(&c->params, "application_name");
	const char *app_name = app != NULL ? app->value : "";
	const char *tenant = pool_tenant(c->pool);
	double ms = (double)duration_us / 1000.0, wait_ms = (double)wait_us / 1000.0;

	evbuffer_add_printf(text, "duration_ms=%.3f wait_ms=%.3f tenant=", ms, wait_ms);
	add_text_value(text, tenant, strlen(tenant));
	evbuffer_add_printf(text, " application_name=");
	add_text_value(text, app_name, strlen(app_name));
	evbuffer_add_printf(text, " query=");
	add_text_value(text, query, qlen);
	if (truncated)
		evbuffer_add_printf(text, " truncated=true");

	evbuffer_add_printf(json, "\"event\":\"slow_query\",\"duration_ms\":%.3f,\"wait_ms\":%.3f",
	                    ms, wait_ms);
	evbuffer_add_printf(json, ",\"tenant\":");
	add_json_string(json, tenant, strlen(tenant));
	evbuffer_add_printf(json, ",\"application_name\":");
	add_json_string(json, app_name, strlen(app_name));
	evbuffer_add_printf(json, ",\"query\":");
	add_json_string(json, query, qlen);
	evbuffer_add_printf(json, ",\"truncated\":%s", truncated ? "true" : "false");
	evbuffer_add(text, "", 1);
	evbuffer_add(json, "", 1);
}

void slowlog_check(struct client *c, int64_t duration_us, int64_t wait_us)
{
	const struct query_capture *qc = c->capture;
	struct evbuffer *text, *json;
	char *query = NULL;
	size_t qlen = 0;
	struct log_ctx ctx;
	char addr[CLIENT_PEER_TEXT_LEN];

	if (c->pool == NULL || !log_enabled(c->w->log, LOG_WARN))
		return;
	text = evbuffer_new();
	json = evbuffer_new();
	if (qc != NULL && qc->len > 0 && (query = malloc(qc->len)) != NULL) {
		if (c->w->cfg->log_query_literals) {
			memcpy(query, qc->text, qc->len);
			qlen = qc->len;
		} else {
			qlen = slowlog_redact(qc->text, qc->len, query);
		}
	}
	if (text != NULL && json != NULL) {
		format_record(text, json, c, duration_us, wait_us, query != NULL ? query : "", qlen,
		              qc != NULL && qc->truncated);
		/* Not client_log_ctx: the record has its own tenant member. */
		ctx = (struct log_ctx){.worker = c->w->id,
		                       .kind = 'C',
		                       .id = c->id,
		                       .db = c->dbname,
		                       .user = c->user,
		                       .addr = client_peer_text(c, addr, sizeof(addr))};
		log_emit_record(c->w->log, LOG_WARN, &ctx, "slow query",
		                (const char *)evbuffer_pullup(text, -1),
		                (const char *)evbuffer_pullup(json, -1));
	}
	free(query);
	if (text != NULL)
		evbuffer_free(text);
	if (json != NULL)
		evbuffer_free(json);
}
