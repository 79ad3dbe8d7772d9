/*
 * A server's request queue (pool/requests.h): whether a Sync must follow
 * what is queued for a ReadyForQuery to come.  A Query, a Sync, a function
 * call and every Query-like request sluice makes or answers itself end in
 * one; an extended message, or skipping to a Sync after an error, does not.
 */
#include <criterion/criterion.h>

#include "pool/requests.h"

static bool needs_sync_after(const uint8_t *kinds, size_t n)
{
	struct requests q;
	bool need;

	requests_init(&q);
	for (size_t i = 0; i < n; i++)
		requests_push(&q, kinds[i]);
	need = requests_need_sync(&q);
	requests_fini(&q);
	return need;
}

Test(requests, nothing_queued_needs_no_sync)
{
	cr_assert_not(needs_sync_after(NULL, 0));
}

Test(requests, a_query_like_last_request_needs_no_sync)
{
	const uint8_t query_like[] = {'S',
	                              'Q',
	                              'F',
	                              REQ_INJECTED_SYNC,
	                              REQ_SQL_PREPARE,
	                              REQ_INJECTED_SQL,
	                              REQ_FAKE_PREPARE,
	                              REQ_FAKE_DEALLOC,
	                              REQ_LISTEN_QUERY};

	for (size_t i = 0; i < sizeof(query_like); i++) {
		const uint8_t kinds[] = {'P', 'B', 'E', query_like[i]};

		cr_assert_not(needs_sync_after(kinds, sizeof(kinds)),
		              "a ReadyForQuery answers '%c' already", query_like[i]);
	}
}

Test(requests, an_extended_last_request_needs_a_sync)
{
	const uint8_t extended[] = {'P', 'B', 'D', 'E', 'C', REQ_FAKE_PARSE, REQ_INJECTED_EXECUTE};

	for (size_t i = 0; i < sizeof(extended); i++) {
		const uint8_t kinds[] = {'Q', extended[i]};

		cr_assert(needs_sync_after(kinds, sizeof(kinds)),
		          "nothing answers '%c' with a ReadyForQuery", extended[i]);
	}
}

Test(requests, skipping_to_a_sync_needs_one)
{
	struct requests q;

	requests_init(&q);
	q.skip_to_sync = true; /* an error in a batch, its requests already retired */
	cr_assert(requests_need_sync(&q));
	cr_assert_not(requests_track(&q, 'E'), "skipped: not queued");
	cr_assert(requests_need_sync(&q));
	requests_track(&q, 'S');
	cr_assert_not(requests_need_sync(&q));
	requests_fini(&q);
}

/*
 * Two COPYs pipelined: at the first one's CopyInResponse, the data marker
 * queued behind its end belongs to the second and stays, so a Sync inside
 * the second COPY's data is known to be unsure when that COPY starts.
 */
Test(requests, a_later_copys_data_outlives_the_first_copys_start)
{
	struct requests q;

	requests_init(&q);
	requests_push(&q, 'Q');
	requests_track_copy_end(&q);
	requests_push(&q, 'Q');
	requests_track_copy_data(&q, false);
	requests_track(&q, 'S');
	requests_track_copy_end(&q);
	requests_push(&q, 'Q');
	cr_assert(requests_copy_started(&q), "the first COPY's end was sent ahead");
	cr_assert_not(requests_copy_ended(&q), "no data inside the first COPY");
	requests_pop(&q);
	cr_assert(requests_copy_started(&q), "the second COPY's end was sent ahead");
	cr_assert(q.syncs_unsure, "its Sync came after its data");
	cr_assert_eq(requests_count(&q), 2, "the second COPY and the Query behind it");
	requests_fini(&q);
}

/*
 * batch_open follows what was sent: an extended message opens the batch
 * (its implicit transaction), a Sync or a Query ends it, and a reply
 * sluice fakes or a message the server skips after an error changes nothing.
 */
Test(requests, an_extended_message_opens_the_batch_and_a_sync_or_query_ends_it)
{
	struct requests q;

	requests_init(&q);
	cr_assert_not(q.batch_open);
	requests_track(&q, 'P');
	requests_track(&q, 'E');
	cr_assert(q.batch_open);
	requests_pop(&q);
	requests_pop(&q);
	cr_assert(q.batch_open, "answered up to a Flush, the batch is still open");
	requests_push(&q, REQ_FAKE_DEALLOC);
	cr_assert(q.batch_open, "a faked reply sends nothing");
	requests_push(&q, REQ_INJECTED_SYNC);
	cr_assert_not(q.batch_open);
	requests_track(&q, 'B');
	q.skip_to_sync = true;
	requests_track(&q, 'Q');
	cr_assert(q.batch_open, "a Query the server skips ends nothing");
	requests_track(&q, 'S');
	cr_assert_not(q.batch_open);
	requests_fini(&q);
}
