/* A client message looked at in place, once; see msgview.h. */
#include "proto/msgview.h"

#include <event2/buffer.h>
#include <string.h>

#include "proto/frame.h"

void msgview_read(struct msgview *v, struct evbuffer *in, const struct frame *f, size_t pull_max)
{
	size_t total = frame_total(f), skip = FRAME_HEADER_LEN;
	struct evbuffer_iovec chain;
	const char *nul;

	v->msg = v->text = NULL;
	v->have = v->n = 0;
	v->whole = false;
	v->verb = SQL_VERB_OTHER;
	if (evbuffer_peek(in, -1, NULL, &chain, 1) < 1)
		return;
	if (chain.iov_len < total && total <= pull_max && evbuffer_get_length(in) >= total) {
		void *whole = evbuffer_pullup(in, (ev_ssize_t)total);

		if (whole != NULL) { /* out of memory: the part in the first chain */
			chain.iov_base = whole;
			chain.iov_len = total;
		}
	}
	v->msg = chain.iov_base;
	v->have = chain.iov_len < total ? chain.iov_len : total;
	v->whole = v->have == total;
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
