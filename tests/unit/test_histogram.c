/*
 * Latency histogram: bucket math, the 2% percentile bound over random and
 * adversarial inputs (powers of two, bucket edges, 1 us and 1 h), merging,
 * period differences, Prometheus cumulative counts and the compact text.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "base/histogram.h"

#define ONE_HOUR_US (3600ULL * 1000000ULL)

static struct histogram *hist_new(void)
{
	struct histogram *h = calloc(1, sizeof(*h));

	cr_assert_not_null(h);
	return h;
}

/* Deterministic xorshift64*, so a failure reproduces. */
static uint64_t next_random(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 2685821657736338717ULL;
}

/* Log-uniform in [1, 1 h]: every bucket region gets values. */
static uint64_t random_latency(uint64_t *state)
{
	unsigned bits = (unsigned)(next_random(state) % 32) + 1;
	uint64_t v = next_random(state) & ((1ULL << bits) - 1);

	if (v == 0)
		v = 1;
	return v > ONE_HOUR_US ? ONE_HOUR_US : v;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The nearest-rank quantile of sorted values, as histogram_percentile defines it. */
static uint64_t exact_quantile(const uint64_t *sorted, size_t n, double q)
{
	double want = q * (double)n;
	size_t rank = (size_t)want;

	if ((double)rank < want)
		rank++;
	if (rank < 1)
		rank = 1;
	return sorted[rank - 1];
}

/* Record `values`, then check every quantile against the sorted truth within 2% (in fact 1/64). */
static void check_quantiles(uint64_t *values, size_t n)
{
	static const double qs[] = {0.0, 0.001, 0.01, 0.1,   0.25,   0.5, 0.75,
	                            0.9, 0.95,  0.99, 0.999, 0.9999, 1.0};
	struct histogram *h = hist_new();

	for (size_t i = 0; i < n; i++)
		histogram_record(h, values[i]);
	qsort(values, n, sizeof(*values), compare_u64);
	for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
		uint64_t truth = exact_quantile(values, n, qs[k]);
		uint64_t got = histogram_percentile(h, qs[k]);
		double err = truth
		                 ? (double)(got > truth ? got - truth : truth - got) / (double)truth
		                 : (double)got;

		cr_assert_leq(err, 1.0 / 64, "q=%g: got %llu, truth %llu (error %.4f)", qs[k],
		              (unsigned long long)got, (unsigned long long)truth, err);
		cr_assert_leq(err, 0.02);
	}
	cr_assert_eq(histogram_percentile(h, 1.0), values[n - 1], "p100 is the exact max");
	free(h);
}

Test(histogram, small_values_are_exact)
{
	for (uint64_t v = 0; v < 64; v++) {
		cr_assert_eq(histogram_index(v), v);
		cr_assert_eq(histogram_bucket_lower((unsigned)v), v);
		cr_assert_eq(histogram_bucket_upper((unsigned)v), v + 1);
	}
}

Test(histogram, buckets_tile_the_range)
{
	cr_assert_eq(histogram_bucket_lower(0), 0);
	cr_assert_eq(histogram_bucket_upper(HISTOGRAM_BUCKETS - 1), HISTOGRAM_MAX_VALUE + 1);
	cr_assert_geq(HISTOGRAM_MAX_VALUE, ONE_HOUR_US, "1 h must be inside the range");
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++) {
		uint64_t lo = histogram_bucket_lower(i), hi = histogram_bucket_upper(i);

		cr_assert_lt(lo, hi, "bucket %u is empty", i);
		cr_assert_eq(histogram_index(lo), i, "lower edge of %u", i);
		cr_assert_eq(histogram_index(hi - 1), i, "last value of %u", i);
		if (i + 1 < HISTOGRAM_BUCKETS)
			cr_assert_eq(hi, histogram_bucket_lower(i + 1));
		/* Width at most 1/32 of the lower edge: the middle is within 1/64. */
		if (i >= 64)
			cr_assert_leq((double)(hi - lo) / (double)lo, 1.0 / 32 + 1e-12,
			              "bucket %u is too wide", i);
	}
}

Test(histogram, powers_of_two_and_their_neighbours)
{
	for (unsigned e = 0; e < 64; e++) {
		uint64_t p = 1ULL << e;
		uint64_t vs[] = {p - 1, p, p + 1};

		for (int k = 0; k < 3; k++) {
			uint64_t v = vs[k];
			unsigned i = histogram_index(v);

			cr_assert_lt(i, HISTOGRAM_BUCKETS);
			if (v <= HISTOGRAM_MAX_VALUE) {
				cr_assert_leq(histogram_bucket_lower(i), v);
				cr_assert_gt(histogram_bucket_upper(i), v);
			} else {
				cr_assert_eq(i, HISTOGRAM_BUCKETS - 1, "overflow goes last");
			}
		}
	}
}

Test(histogram, empty)
{
	struct histogram *h = hist_new();

	cr_assert_eq(histogram_percentile(h, 0.5), 0);
	cr_assert_float_eq(histogram_mean(h), 0.0, 1e-12);
	free(h);
}

Test(histogram, random_values_within_two_percent)
{
	enum { N = 200000 };
	uint64_t *values = malloc(N * sizeof(*values));
	uint64_t state = 0x9e3779b97f4a7c15ULL;

	for (size_t i = 0; i < N; i++)
		values[i] = random_latency(&state);
	check_quantiles(values, N);
	free(values);
}

Test(histogram, narrow_random_band_within_two_percent)
{
	/* Real latencies cluster: all values within one power of two. */
	enum { N = 50000 };
	uint64_t *values = malloc(N * sizeof(*values));
	uint64_t state = 42;

	for (size_t i = 0; i < N; i++)
		values[i] = 50000 + next_random(&state) % 1500;
	check_quantiles(values, N);
	free(values);
}

Test(histogram, adversarial_bucket_edges)
{
	/* Every bucket's first and last value: the extremes of the rounding. */
	uint64_t *values = malloc(2 * HISTOGRAM_BUCKETS * sizeof(*values));
	size_t n = 0;

	for (unsigned i = 1; i < HISTOGRAM_BUCKETS; i++) {
		values[n++] = histogram_bucket_lower(i);
		values[n++] = histogram_bucket_upper(i) - 1;
	}
	check_quantiles(values, n);
	free(values);
}

Test(histogram, adversarial_powers_of_two)
{
	uint64_t values[40];
	size_t n = 0;

	for (unsigned e = 0; e < 32; e++)
		values[n++] = 1ULL << e;
	values[n++] = ONE_HOUR_US;
	check_quantiles(values, n);
}

Test(histogram, one_microsecond_and_one_hour)
{
	uint64_t ones[1000], hours[1000], mixed[2];

	for (int i = 0; i < 1000; i++) {
		ones[i] = 1;
		hours[i] = ONE_HOUR_US;
	}
	check_quantiles(ones, 1000);
	check_quantiles(hours, 1000);
	mixed[0] = 1;
	mixed[1] = ONE_HOUR_US;
	check_quantiles(mixed, 2);
}

Test(histogram, skewed_distribution)
{
	/* 99% fast, 1% slow: the tail quantiles must land in the slow cluster exactly. */
	enum { N = 10000 };
	uint64_t *values = malloc(N * sizeof(*values));

	for (size_t i = 0; i < N; i++)
		values[i] = i % 100 == 0 ? 2000000 + i : 120 + i % 7;
	check_quantiles(values, N);
	free(values);
}

Test(histogram, beyond_range_keeps_sum_and_max)
{
	struct histogram *h = hist_new();
	uint64_t huge = 10 * HISTOGRAM_MAX_VALUE;

	unsigned last = HISTOGRAM_BUCKETS - 1;

	for (int i = 0; i < 3; i++)
		histogram_record(h, huge);
	cr_assert_eq(h->buckets[last], 3);
	cr_assert_eq(h->sum, 3 * huge);
	cr_assert_eq(h->max, huge);
	/* Inside the top bucket: its middle; the largest rank: the exact max. */
	cr_assert_eq(histogram_percentile(h, 0.5),
	             histogram_bucket_lower(last) +
	                 (histogram_bucket_upper(last) - histogram_bucket_lower(last) - 1) / 2);
	cr_assert_eq(histogram_percentile(h, 1.0), huge);
	histogram_record_us(h, -5);
	cr_assert_eq(h->buckets[0], 1, "a negative duration counts as 0");
	free(h);
}

Test(histogram, mean_is_exact)
{
	struct histogram *h = hist_new();

	histogram_record(h, 1);
	histogram_record(h, 2);
	histogram_record(h, 1000003);
	cr_assert_float_eq(histogram_mean(h), 1000006.0 / 3, 1e-9);
	free(h);
}

Test(histogram, merge_equals_recording_together)
{
	struct histogram *a = hist_new(), *b = hist_new(), *all = hist_new(), *m = hist_new();
	uint64_t state = 7;

	for (int i = 0; i < 5000; i++) {
		uint64_t v = random_latency(&state);

		histogram_record(i % 3 ? a : b, v);
		histogram_record(all, v);
	}
	histogram_merge(m, a);
	histogram_merge(m, b);
	histogram_reset(a);
	histogram_merge(m, a); /* merging an empty one changes nothing */
	cr_assert_eq(memcmp(m, all, sizeof(*m)), 0, "merge lost or invented something");
	for (double q = 0; q <= 1.0; q += 0.05)
		cr_assert_eq(histogram_percentile(m, q), histogram_percentile(all, q));
	free(a);
	free(b);
	free(all);
	free(m);
}

Test(histogram, diff_gives_the_period)
{
	struct histogram *h = hist_new(), *before = hist_new(), *later = hist_new(),
	                 *d = hist_new();
	uint64_t state = 11;

	for (int i = 0; i < 1000; i++)
		histogram_record(h, random_latency(&state));
	memcpy(before, h, sizeof(*h));
	for (int i = 0; i < 1000; i++) {
		uint64_t v = 100 + next_random(&state) % 900;

		histogram_record(h, v);
		histogram_record(later, v);
	}
	histogram_diff(d, h, before);
	cr_assert_eq(d->count, later->count);
	cr_assert_eq(d->sum, later->sum);
	cr_assert_eq(memcmp(d->buckets, later->buckets, sizeof(d->buckets)), 0);
	/* max is bounded by the top bucket of the period, not the all-time max. */
	cr_assert_geq(d->max, later->max);
	cr_assert_eq(histogram_index(d->max), histogram_index(later->max));
	free(h);
	free(before);
	free(later);
	free(d);
}

Test(histogram, cumulative_never_counts_above_the_bound)
{
	static const uint64_t bounds[] = {50, 100, 250, 1000, 50000, 100000, 60000000};
	enum { NB = sizeof(bounds) / sizeof(bounds[0]) };
	struct histogram *h = hist_new();
	uint64_t cum[NB], state = 3, *values = malloc(20000 * sizeof(*values));

	for (int i = 0; i < 20000; i++) {
		values[i] = random_latency(&state) % 70000000;
		histogram_record(h, values[i]);
	}
	histogram_cumulative(h, bounds, NB, cum);
	for (size_t k = 0; k < NB; k++) {
		uint64_t at_most = 0, below_edge = 0;

		for (int i = 0; i < 20000; i++) {
			at_most += values[i] <= bounds[k];
			/* Values whose bucket is wholly within the bound. */
			below_edge +=
			    histogram_bucket_upper(histogram_index(values[i])) - 1 <= bounds[k];
		}
		cr_assert_eq(cum[k], below_edge, "le=%llu", (unsigned long long)bounds[k]);
		cr_assert_leq(cum[k], at_most);
		if (k > 0)
			cr_assert_geq(cum[k], cum[k - 1]);
	}
	free(values);
	free(h);
}

Test(histogram, cumulative_of_pg_sleep_values)
{
	/* The integration test's case: 50 ms sleeps must not count at le=0.05. */
	static const uint64_t bounds[] = {50000, 100000};
	struct histogram *h = hist_new();
	uint64_t cum[2];

	histogram_record(h, 50001);
	histogram_record(h, 50900);
	histogram_record(h, 49999);
	histogram_cumulative(h, bounds, 2, cum);
	cr_assert_eq(cum[0], 0, "a bucket straddling 50 ms counts at the next bound");
	cr_assert_eq(cum[1], 3);
	free(h);
}

Test(histogram, compact_text_round_trip)
{
	struct histogram *h = hist_new(), *back = hist_new();
	uint64_t state = 5;
	size_t need;
	char *text;

	for (int i = 0; i < 3000; i++)
		histogram_record(h, random_latency(&state));
	need = histogram_format_buckets(h, NULL, 0);
	text = malloc(need + 1);
	cr_assert_eq(histogram_format_buckets(h, text, need + 1), need);
	cr_assert_eq(strlen(text), need);
	cr_assert_eq(histogram_parse_buckets(back, text), 0);
	cr_assert_eq(memcmp(back->buckets, h->buckets, sizeof(h->buckets)), 0);
	cr_assert_eq(back->count, h->count);
	/* Parsing twice merges: what a tool adding up log lines does. */
	cr_assert_eq(histogram_parse_buckets(back, text), 0);
	cr_assert_eq(back->count, 2 * h->count);
	free(text);
	free(h);
	free(back);
}

Test(histogram, compact_text_format)
{
	struct histogram *h = hist_new();
	char small[8], text[64];

	cr_assert_eq(histogram_format_buckets(h, text, sizeof(text)), 0);
	cr_assert_str_eq(text, "");
	histogram_record(h, 3);
	histogram_record(h, 3);
	histogram_record(h, 100);
	cr_assert_eq(histogram_format_buckets(h, text, sizeof(text)), strlen("3:2,82:1"));
	cr_assert_str_eq(text, "3:2,82:1");
	/* Too small a buffer: truncated but terminated, and the length needed is returned. */
	cr_assert_eq(histogram_format_buckets(h, small, sizeof(small)), 8);
	cr_assert_eq(strlen(small), 7);
	free(h);
}

Test(histogram, compact_text_rejects_garbage)
{
	struct histogram *h = hist_new();

	cr_assert_eq(histogram_parse_buckets(h, ""), 0);
	cr_assert_eq(histogram_parse_buckets(h, "1:2,"), 0);
	cr_assert_eq(histogram_parse_buckets(h, "x"), -1);
	cr_assert_eq(histogram_parse_buckets(h, "1:"), -1);
	cr_assert_eq(histogram_parse_buckets(h, "1:-2"), -1);
	cr_assert_eq(histogram_parse_buckets(h, "99999:1"), -1);
	cr_assert_eq(histogram_parse_buckets(h, "1;2"), -1);
	free(h);
}
