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
