/*
 * Histogram reading, merging and text forms; see histogram.h.  Recording is
 * inline in the header.  Nothing here runs on the per-message path.
 */
#include "base/histogram.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t histogram_bucket_lower(unsigned i)
{
	unsigned shift;

	if (i < 2 * HISTOGRAM_SUB_COUNT)
		return i;
	shift = (i >> HISTOGRAM_SUB_BITS) - 1;
	return (uint64_t)(HISTOGRAM_SUB_COUNT + (i & (HISTOGRAM_SUB_COUNT - 1))) << shift;
}

uint64_t histogram_bucket_upper(unsigned i)
{
	return histogram_bucket_lower(i + 1);
}

void histogram_reset(struct histogram *h)
{
	memset(h, 0, sizeof(*h));
}

void histogram_merge(struct histogram *dst, const struct histogram *src)
{
	if (src->count == 0)
		return;
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->max > dst->max)
		dst->max = src->max;
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
}

void histogram_diff(struct histogram *dst, const struct histogram *now,
                    const struct histogram *before)
{
	int top = -1;

	dst->count = now->count - before->count;
	dst->sum = now->sum - before->sum;
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++) {
		dst->buckets[i] = now->buckets[i] - before->buckets[i];
		if (dst->buckets[i] != 0)
			top = (int)i;
	}
	dst->max = 0;
	if (top >= 0) {
		dst->max = histogram_bucket_upper((unsigned)top) - 1;
		if (now->max < dst->max)
			dst->max = now->max;
	}
}

/* A bucket's representative: its middle, so the error is at most half its width. */
static uint64_t bucket_middle(unsigned i)
{
	uint64_t lo = histogram_bucket_lower(i);

	return lo + (histogram_bucket_upper(i) - lo - 1) / 2;
}

uint64_t histogram_percentile(const struct histogram *h, double q)
{
	uint64_t rank, seen = 0;
	double want;

	if (h->count == 0)
		return 0;
	if (q < 0)
		q = 0;
	want = q * (double)h->count;
	rank = (uint64_t)want;
	if ((double)rank < want)
		rank++; /* ceil without libm */
	if (rank < 1)
		rank = 1;
	if (rank >= h->count)
		return h->max; /* the largest value is known exactly */
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t v = bucket_middle(i);

			return v < h->max ? v : h->max;
		}
	}
	return h->max;
}

double histogram_mean(const struct histogram *h)
{
	return h->count ? (double)h->sum / (double)h->count : 0.0;
}

void histogram_cumulative(const struct histogram *h, const uint64_t *bounds, size_t n,
                          uint64_t *out)
{
	uint64_t below = 0;
	size_t k = 0;

	for (unsigned i = 0; i < HISTOGRAM_BUCKETS && k < n; i++) {
		/* The bucket's largest value, bucket_upper - 1, must be within the bound. */
		while (k < n && histogram_bucket_upper(i) - 1 > bounds[k])
			out[k++] = below;
		below += h->buckets[i];
	}
	while (k < n)
		out[k++] = below;
}

size_t histogram_format_buckets(const struct histogram *h, char *buf, size_t len)
{
	size_t need = 0;

	if (len > 0)
		buf[0] = '\0';
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++) {
		int n;

		if (h->buckets[i] == 0)
			continue;
		n = snprintf(need < len ? buf + need : NULL, need < len ? len - need : 0,
		             "%s%u:%llu", need > 0 ? "," : "", i,
		             (unsigned long long)h->buckets[i]);
		need += (size_t)n;
	}
	return need;
}

int histogram_parse_buckets(struct histogram *h, const char *text)
{
	const char *p = text;

	while (*p != '\0') {
		char *end;
		unsigned long idx;
		unsigned long long n;

		if (!isdigit((unsigned char)*p))
			return -1;
		errno = 0;
		idx = strtoul(p, &end, 10);
		if (end == p || *end != ':' || idx >= HISTOGRAM_BUCKETS || errno != 0)
			return -1;
		p = end + 1;
		if (!isdigit((unsigned char)*p))
			return -1;
		n = strtoull(p, &end, 10);
		if (end == p || (*end != ',' && *end != '\0') || errno != 0)
			return -1;
		p = *end == ',' ? end + 1 : end;
		h->buckets[idx] += n;
		h->count += n;
		h->sum += n * bucket_middle((unsigned)idx);
		if (n > 0 && bucket_middle((unsigned)idx) > h->max)
			h->max = bucket_middle((unsigned)idx);
	}
	return 0;
}
