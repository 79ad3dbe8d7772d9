/*
 * A client message at the head of an evbuffer, looked at in place once for
 * every module that reads it; for a Query or Parse also its SQL text and
 * first keyword.  The relay reads one per Query and Parse and hands it to the
 * session-state check, LISTEN, prepared statements, the slow log and query
 * insights, which each used to peek at the buffer and scan the keyword again.
 * The pointers are into the evbuffer: whoever drains, rewrites or pulls up
 * the message must read the view again.
 */
#ifndef SLUICE_PROTO_MSGVIEW_H
#define SLUICE_PROTO_MSGVIEW_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/sqlscan.h"

struct evbuffer;
struct frame;

struct msgview {
	const char *msg;    /* the message from its type byte on, contiguous; NULL: none */
	size_t have;        /* bytes at msg: the whole message, or the part in the first chain */
	bool whole;         /* have is the whole message */
	const char *text;   /* Query / Parse: the SQL (after a Parse's name); NULL: not in have */
	size_t n;           /* bytes from text to the end of have: NUL (and parameter types) too */
	enum sql_verb verb; /* sqlscan_verb(text, n); SQL_VERB_OTHER without text */
};

/*
 * Looks at message `f` at the head of `in`: in place in the first chain, or
 * made contiguous (evbuffer_pullup) when it is split over chains, all
 * buffered and at most `pull_max` bytes long; otherwise the part in the
 * first chain.  The text and keyword are read for a Query or Parse only.
 */
void msgview_read(struct msgview *v, struct evbuffer *in, const struct frame *f, size_t pull_max);
/* The same, for a message the caller knows lies whole and contiguous at `msg`. */
void msgview_at(struct msgview *v, const struct frame *f, const void *msg);

#endif
