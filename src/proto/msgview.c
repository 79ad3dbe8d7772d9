/* A client message looked at in place, once; see msgview.h. */
#include "proto/msgview.h"

#include <event2/buffer.h>
#include <string.h>

#include "proto/frame.h"

/* The view of message `f`, whose first `have` bytes lie contiguous at `msg`. */
static void view_of(struct msgview *v, const struct frame *f, const char *msg, size_t have)
{
	size_t total = frame_total(f), skip = FRAME_HEADER_LEN;
	const char *nul;

	v->msg = msg;
	v->have = have < total ? have : total;
	v->whole = v->have == total;
	v->text = NULL;
	v->n = 0;
	v->verb = SQL_VERB_OTHER;
	if ((f->type != 'Q' && f->type != 'P') || v->have <= FRAME_HEADER_LEN)
		return;
	if (f->type == 'P') {
		nul = memchr(v->msg + skip, '\0', v->have - skip);
		if (nul == NULL)
			return; /* the statement name goes on past what is here */
		skip = (size_t)(nul - v->msg) + 1;
	}
	v->text = v->msg + skip;
	v->n = v->have - skip;
	v->verb = sqlscan_verb(v->text, v->n);
}

void msgview_read(struct msgview *v, struct evbuffer *in, const struct frame *f, size_t pull_max)
{
	size_t total = frame_total(f);
	struct evbuffer_iovec chain;

	if (evbuffer_peek(in, -1, NULL, &chain, 1) < 1) {
		*v = (struct msgview){.verb = SQL_VERB_OTHER};
		return;
	}
	if (chain.iov_len < total && total <= pull_max && evbuffer_get_length(in) >= total) {
		void *whole = evbuffer_pullup(in, (ev_ssize_t)total);

		if (whole != NULL) { /* out of memory: the part in the first chain */
			chain.iov_base = whole;
			chain.iov_len = total;
		}
	}
	view_of(v, f, chain.iov_base, chain.iov_len);
}

void msgview_at(struct msgview *v, const struct frame *f, const void *msg)
{
	view_of(v, f, msg, frame_total(f));
}
