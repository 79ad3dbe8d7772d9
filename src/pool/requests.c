/*
 * See requests.h.  One byte per request in a ring that keeps its storage,
 * so a server's queue stops allocating once it has seen its deepest
 * pipeline.
 */
#include "pool/requests.h"

void requests_init(struct requests *q)
{
	ring_init(&q->kinds, sizeof(uint8_t));
	q->skip_to_sync = false;
	q->copy_data = false;
	q->syncs_unsure = false;
	q->batch_open = false;
}

void requests_fini(struct requests *q)
{
	ring_fini(&q->kinds);
	q->skip_to_sync = false;
}

uint8_t requests_last(const struct requests *q)
{
	const uint8_t *k = ring_last(&q->kinds);

	return k != NULL ? *k : 0;
}

uint8_t requests_pop_skipped(struct requests *q)
{
	uint8_t kind = requests_head(q);

	if (kind == 0 || kind == 'S' || kind == REQ_INJECTED_SYNC)
		return 0;
	requests_pop(q);
	if (ring_count(&q->kinds) == 0)
		q->skip_to_sync = true;
	return kind;
}

bool requests_copy_started(struct requests *q)
{
	uint32_t kept = 1, n = ring_count(&q->kinds);
	bool in_copy = true;

	q->copy_data = false;
	q->syncs_unsure = false;
	for (uint32_t i = 1; i < n; i++) {
		uint8_t kind = *(uint8_t *)ring_at(&q->kinds, i);

		/*
		 * Data behind this COPY's end is a later COPY's (or ignored): its
		 * marker stays, or a Sync inside that COPY's data would not be
		 * known to be unsure when it starts.
		 */
		if (kind == REQ_COPY_DATA && in_copy) {
			q->copy_data = true;
			continue;
		}
		if (in_copy && kind == 'S') {
			requests_sync_in_copy(q);
			continue;
		}
		if (in_copy && kind == REQ_COPY_END) {
			in_copy = false;
			continue;
		}
		*(uint8_t *)ring_at(&q->kinds, kept++) = kind;
	}
	ring_truncate(&q->kinds, kept);
	return !in_copy;
}

bool requests_need_sync(const struct requests *q)
{
	uint8_t last = requests_last(q);

	return last != 'S' && last != REQ_INJECTED_SYNC && last != 'Q' && last != 'F' &&
	       last != REQ_SQL_PREPARE && last != REQ_INJECTED_SQL && last != REQ_FAKE_PREPARE &&
	       last != REQ_FAKE_DEALLOC && last != REQ_LISTEN_QUERY &&
	       (ring_count(&q->kinds) > 0 || q->skip_to_sync);
}

bool requests_is_fake(uint8_t kind)
{
	return kind == REQ_FAKE_PARSE || kind == REQ_FAKE_CLOSE || kind == REQ_FAKE_UNNAME ||
	       kind == REQ_FAKE_DEALLOC || kind == REQ_FAKE_BIND || kind == REQ_FAKE_NODATA ||
	       kind == REQ_FAKE_EXECUTE || kind == REQ_FAKE_PREPARE ||
	       kind == REQ_FAKE_SQL_PREPARE || kind == REQ_FAKE_PARAMS;
}

bool requests_is_extended(uint8_t kind)
{
	return kind == 'P' || kind == 'B' || kind == 'D' || kind == 'E' || kind == 'C' ||
	       kind == REQ_TRACKED_PARSE || kind == REQ_INJECTED_PARSE ||
	       kind == REQ_INJECTED_CLOSE || kind == REQ_TRACKED_BIND || kind == REQ_STALE_BIND ||
	       kind == REQ_INJECTED_BIND || kind == REQ_INJECTED_EXECUTE ||
	       kind == REQ_SQL_EXECUTE || kind == REQ_CARRIER_PARSE ||
	       kind == REQ_CARRIER_EXECUTE ||
	       (requests_is_fake(kind) && kind != REQ_FAKE_DEALLOC && kind != REQ_FAKE_PREPARE) ||
	       kind == REQ_LISTEN_EXECUTE;
}
