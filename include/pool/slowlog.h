/*
 * The slow-query log.  While slow_query_threshold is on, the relay shows each
 * Query and Parse message to slowlog_capture, which copies the start of its
 * text (slow_query_max_length bytes at most) into a buffer the client
 * allocates once.  A request slower than the threshold is then logged with
 * duration, queue wait, tenant, db/user, client address, application_name and
 * that text, its literals redacted to '?' unless log_query_literals is on.
 *
 * The text is the client's latest Query or Parse: for a statement prepared
 * once and executed many times it is the latest statement prepared.
 */
#ifndef SLUICE_SLOWLOG_H
#define SLUICE_SLOWLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/types.h"

struct evbuffer;
struct frame;
struct msgview;

/*
 * A client's captured text; allocated on first use, grown for longer
 * statements.  Between requests the client gives it back to its worker's
 * spares (slowlog_release) and takes one again at its next Query or Parse:
 * ten thousand idle clients hold none, and a steady workload still allocates
 * nothing.
 */
struct query_capture {
	struct query_capture *next_spare; /* on the worker's spare list */
	uint32_t cap;   /* bytes text can hold (up to slow_query_max_length and headers) */
	uint32_t len;   /* bytes captured */
	bool truncated; /* the statement is longer than what was captured */
	char text[];    /* not NUL-terminated */
};

/*
 * relay.c: `f` is at the front of `in`, about to be forwarded; keeps Query/Parse
 * text, from the relay's view `v` of it when that holds it whole.
 */
void slowlog_capture(struct client *c, struct evbuffer *in, const struct frame *f,
                     const struct msgview *v);
/* relay.c: c has nothing outstanding; its text buffer goes to the worker's spares. */
void slowlog_release(struct client *c);
/*
 * record.c: a request of c's took duration_us, after c had queued wait_us
 * for its server; logs it when over the threshold.
 */
void slowlog_check(struct client *c, int64_t duration_us, int64_t wait_us);

/*
 * Copies SQL with every literal replaced by '?': '...' strings (also E'',
 * B'', X'', N'', U&''), dollar-quoted bodies and numbers.  Identifiers,
 * "quoted identifiers", $1 parameters, comments and keywords stay.  An
 * unterminated literal (a truncated text) is redacted to the end.  `out`
 * needs len bytes (the result is never longer); returns its length.
 */
size_t slowlog_redact(const char *in, size_t len, char *out);
/*
 * The same redaction, and also comments dropped, every run of whitespace and
 * comments collapsed to one space, none at the start and no trailing space
 * or ';' (query_stats' fingerprints, in one pass).
 */
size_t slowlog_normalise(const char *in, size_t len, char *out);

/*
 * Where a normalisation replaced literals, so that a later text of the same
 * shape can be recognised without normalising it again (slowlog_same_shape).
 * Only numbers and plain '' strings may differ between texts of one shape; a
 * text with any other literal, or with more than SLOWLOG_SPANS_MAX, has none.
 */
#define SLOWLOG_SPANS_MAX 16
struct literal_spans {
	bool usable;                       /* false: the text has no shape to reuse */
	uint8_t n;                         /* literals */
	uint32_t start[SLOWLOG_SPANS_MAX]; /* first byte of each, in the text */
	uint32_t end[SLOWLOG_SPANS_MAX];   /* one past its last byte */
};

/* slowlog_normalise, also noting the literals' spans. */
size_t slowlog_normalise_spans(const char *in, size_t len, char *out, struct literal_spans *sp);

/*
 * Does `t` normalise to what `p` did, `sp` being p's spans?  True when the
 * bytes outside the literals are the same and each literal is one of the
 * same kind in t (any number, any '' string) whose last byte is a word byte
 * exactly when p's was.  The normaliser reads a byte past a token only to
 * tell what starts there, and a number or a quote starts both literals, so
 * it takes the same steps over both texts.
 */
bool slowlog_same_shape(const char *p, size_t plen, const struct literal_spans *sp, const char *t,
                        size_t tlen);

#endif
