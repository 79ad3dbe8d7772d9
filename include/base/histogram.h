/*
 * Latency histograms over microseconds with log-linear buckets.  Values below
 * 64 us get a bucket each; above that, every power of two is split into 32
 * equal buckets, so a bucket is at most 1/32 as wide as its lower edge and its
 * middle is within 1/64 (1.6%) of every value in it.  That holds from 1 us to
 * 2^32 us (71 minutes, past the 1 h we promise); larger values are counted in
 * the last bucket while sum and max keep them exactly.
 *
 * Memory is fixed (HISTOGRAM_BUCKETS counters) and recording is a clz, a
 * shift and plain increments: a histogram is written only by the thread that
 * owns it.  Readers copy it on that thread (gather_start) and merge copies,
 * which is exact because every histogram has the same buckets.
 */
#ifndef SLUICE_HISTOGRAM_H
#define SLUICE_HISTOGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HISTOGRAM_SUB_BITS  5                          /* 2^5 buckets per power of two */
#define HISTOGRAM_SUB_COUNT (1u << HISTOGRAM_SUB_BITS) /* 32 */
#define HISTOGRAM_TOP_EXP   31                         /* highest power of two covered */
#define HISTOGRAM_BUCKETS   ((HISTOGRAM_TOP_EXP - HISTOGRAM_SUB_BITS + 2) * HISTOGRAM_SUB_COUNT)
#define HISTOGRAM_MAX_VALUE ((UINT64_C(1) << (HISTOGRAM_TOP_EXP + 1)) - 1)

struct histogram {
	uint64_t count; /* values recorded */
	uint64_t sum;   /* their sum in us (never clamped) */
	uint64_t max;   /* the largest (never clamped) */
	uint64_t
	    buckets[HISTOGRAM_BUCKETS]; /* counts; bucket i starts at histogram_bucket_lower(i) */
};

/* Bucket of a value: below 64 the value itself; above, its top 6 bits and their position. */
static inline unsigned histogram_index(uint64_t v)
{
	unsigned e, shift;

	if (v > HISTOGRAM_MAX_VALUE)
		v = HISTOGRAM_MAX_VALUE;
	e = 63u - (unsigned)__builtin_clzll(v | 1);
	shift = e > HISTOGRAM_SUB_BITS ? e - HISTOGRAM_SUB_BITS : 0;
	return (shift << HISTOGRAM_SUB_BITS) + (unsigned)(v >> shift);
}

/* Hot path: no division and no allocation; the only branches are the clamp and max. */
static inline void histogram_record(struct histogram *h, uint64_t v)
{
	h->buckets[histogram_index(v)]++;
	h->count++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

/* The same for a signed duration; a negative one (clock step) counts as 0. */
static inline void histogram_record_us(struct histogram *h, int64_t us)
{
	histogram_record(h, us > 0 ? (uint64_t)us : 0);
}

/* Smallest value in bucket i; the bucket ends where bucket i + 1 starts (2^32 after the last). */
uint64_t histogram_bucket_lower(unsigned i);
uint64_t histogram_bucket_upper(unsigned i);

void histogram_reset(struct histogram *h);
/* dst += src, exact. */
void histogram_merge(struct histogram *dst, const struct histogram *src);
/*
 * dst = now - before, for the values recorded between two copies of one
 * histogram.  max becomes the largest value the difference can hold: the top
 * of its highest non-empty bucket, capped by now->max.
 */
void histogram_diff(struct histogram *dst, const struct histogram *now,
                    const struct histogram *before);

/*
 * The q-quantile (0 <= q <= 1) by nearest rank: the middle of the bucket that
 * holds the ceil(q * count)-th smallest value, capped by max (and exactly max
 * for the largest rank).  Within 1/64 of the true value.  0 when empty.
 */
uint64_t histogram_percentile(const struct histogram *h, double q);
/* Exact mean in us; 0 when empty. */
double histogram_mean(const struct histogram *h);

/*
 * Cumulative counts for Prometheus `le` bounds (us, ascending): out[k] counts
 * the values whose whole bucket lies at or below bounds[k].  A bucket that
 * straddles a bound is counted at the next bound, so a count never includes a
 * value above its bound (it may miss values up to 3% below it).
 */
void histogram_cumulative(const struct histogram *h, const uint64_t *bounds, size_t n,
                          uint64_t *out);

/*
 * Compact, mergeable text of the non-empty buckets: "idx:count,idx:count"
 * in ascending idx ("" when empty).  Writes at most len bytes including the
 * NUL and returns the length it needed, like snprintf.
 */
size_t histogram_format_buckets(const struct histogram *h, char *buf, size_t len);
/*
 * Adds the buckets of such a text into h (count too; sum and max from
 * bucket middles, as a tool merging log lines would).  Returns -1 on
 * malformed text, leaving h partly updated.
 */
int histogram_parse_buckets(struct histogram *h, const char *text);

#endif
