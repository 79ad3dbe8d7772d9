/*
 * The stats log; see statslog.h.  Each pool keeps a copy of its counters and
 * histograms as they were at the previous tick (struct latency_period,
 * allocated at its first tick); a line reports the difference.
 */
#include "observe/statslog.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "observe/latency.h"
#include "observe/queries.h"
#include "base/log.h"
#include "pool/pool.h"
#include "pool/worker.h"

struct latency_period {
	struct pool_stats stats;           /* counters at the previous tick */
	struct histogram h[LATENCY_KINDS]; /* histograms at the previous tick */
};

/* The period's figures for one pool. */
struct period_delta {
	struct pool_stats stats;           /* counter differences */
	struct histogram h[LATENCY_KINDS]; /* histogram differences */
	double seconds;                    /* length of the period */
};

static void diff_stats(struct pool_stats *d, const struct pool_stats *now,
                       const struct pool_stats *then)
{
	d->xact_count = now->xact_count - then->xact_count;
	d->query_count = now->query_count - then->query_count;
	d->bytes_received = now->bytes_received - then->bytes_received;
	d->bytes_sent = now->bytes_sent - then->bytes_sent;
	d->client_logins = now->client_logins - then->client_logins;
	d->errors = now->errors - then->errors;
}

static double rate(uint64_t n, double seconds)
{
	return seconds > 0 ? (double)n / seconds : 0.0;
}

/* "idx:count,..." of a histogram, malloc'd; NULL on allocation failure. */
static char *bucket_text(const struct histogram *h)
{
	size_t need = histogram_format_buckets(h, NULL, 0) + 1;
	char *text = malloc(need);

	if (text != NULL)
		histogram_format_buckets(h, text, need);
	return text;
}

static void add_kind(struct evbuffer *text, struct evbuffer *json, const char *name,
                     const struct histogram *h)
{
	static const double qs[] = {0.5, 0.9, 0.95, 0.99, 0.999};
	static const char *const qnames[] = {"p50", "p90", "p95", "p99", "p999"};
	char *buckets;

	evbuffer_add_printf(text, " %s_n=%llu", name, (unsigned long long)h->count);
	evbuffer_add_printf(json, ",\"%s\":{\"n\":%llu", name, (unsigned long long)h->count);
	if (h->count > 0) {
		evbuffer_add_printf(text, " %s_mean_us=%.0f", name, histogram_mean(h));
		evbuffer_add_printf(json, ",\"mean_us\":%.0f", histogram_mean(h));
		for (int i = 0; i < 5; i++) {
			unsigned long long v = histogram_percentile(h, qs[i]);

			evbuffer_add_printf(text, " %s_%s_us=%llu", name, qnames[i], v);
			evbuffer_add_printf(json, ",\"%s_us\":%llu", qnames[i], v);
		}
		evbuffer_add_printf(text, " %s_max_us=%llu", name, (unsigned long long)h->max);
		evbuffer_add_printf(json, ",\"max_us\":%llu", (unsigned long long)h->max);
		buckets = bucket_text(h);
		if (buckets != NULL) {
			evbuffer_add_printf(text, " %s_b=%s", name, buckets);
			evbuffer_add_printf(json, ",\"b\":\"%s\"", buckets);
			free(buckets);
		}
	}
	evbuffer_add(json, "}", 1);
}

/* Tenant names come from the config: plain words, but escape them all the same. */
static void add_json_word(struct evbuffer *b, const char *s)
{
	evbuffer_add(b, "\"", 1);
	log_escape_append(b, s, strlen(s), LOG_ESCAPE_JSON);
	evbuffer_add(b, "\"", 1);
}

static void emit(struct pool *p, const struct period_delta *d)
{
	struct evbuffer *text = evbuffer_new(), *json = evbuffer_new();
	const struct pool_stats *st = &d->stats;
	struct log_ctx ctx = {.worker = p->w->id, .db = p->dbname, .user = p->user};

	if (text == NULL || json == NULL)
		goto out;
	evbuffer_add_printf(text, "tenant=%s period_s=%.3f", pool_tenant(p), d->seconds);
	evbuffer_add_printf(json, "\"event\":\"stats\",\"tenant\":");
	add_json_word(json, pool_tenant(p));
	evbuffer_add_printf(json, ",\"period_s\":%.3f", d->seconds);
	evbuffer_add_printf(text,
	                    " xacts=%llu xact_rate=%.2f queries=%llu query_rate=%.2f "
	                    "bytes_in=%llu bytes_out=%llu errors=%llu logins=%llu",
	                    (unsigned long long)st->xact_count, rate(st->xact_count, d->seconds),
	                    (unsigned long long)st->query_count, rate(st->query_count, d->seconds),
	                    (unsigned long long)st->bytes_received,
	                    (unsigned long long)st->bytes_sent, (unsigned long long)st->errors,
	                    (unsigned long long)st->client_logins);
	evbuffer_add_printf(
	    json,
	    ",\"xacts\":%llu,\"xact_rate\":%.2f,\"queries\":%llu,\"query_rate\":%.2f"
	    ",\"bytes_in\":%llu,\"bytes_out\":%llu,\"errors\":%llu,\"logins\":%llu",
	    (unsigned long long)st->xact_count, rate(st->xact_count, d->seconds),
	    (unsigned long long)st->query_count, rate(st->query_count, d->seconds),
	    (unsigned long long)st->bytes_received, (unsigned long long)st->bytes_sent,
	    (unsigned long long)st->errors, (unsigned long long)st->client_logins);
	for (int k = 0; k < LATENCY_KINDS; k++)
		add_kind(text, json, latency_kind_name(k), &d->h[k]);
	queries_log_top(p->w, p, text, json);
	evbuffer_add(text, "", 1);
	evbuffer_add(json, "", 1);
	log_emit_record(p->w->log, LOG_INFO, &ctx, "stats", (const char *)evbuffer_pullup(text, -1),
	                (const char *)evbuffer_pullup(json, -1));
out:
	if (text != NULL)
		evbuffer_free(text);
	if (json != NULL)
		evbuffer_free(json);
}

static void log_pool(struct pool *p, double seconds)
{
	struct latency_period *then = p->lat.period;
	struct period_delta *d;

	/* A pool's first tick compares with zero: it was created during the period. */
	if (then == NULL && (then = p->lat.period = calloc(1, sizeof(*then))) == NULL)
		return;
	d = malloc(sizeof(*d));
	if (d == NULL)
		return;
	d->seconds = seconds;
	diff_stats(&d->stats, &p->stats, &then->stats);
	for (int k = 0; k < LATENCY_KINDS; k++)
		histogram_diff(&d->h[k], &p->lat.h[k], &then->h[k]);
	/* Only pools that saw work: a quiet pool would repeat a line of zeros forever. */
	if (p->w->cfg->log_stats &&
	    (d->stats.query_count > 0 || d->stats.xact_count > 0 || d->stats.client_logins > 0 ||
	     d->h[LATENCY_WAIT].count > 0 || d->h[LATENCY_CONNECT].count > 0))
		emit(p, d);
	then->stats = p->stats;
	memcpy(then->h, p->lat.h, sizeof(then->h));
	free(d);
}

void statslog_tick(struct worker *w, double seconds)
{
	struct list_node *pos;

	/* Baselines move every tick, even when the level hides the lines, so rates stay true. */
	for (pos = w->pools.next; pos != &w->pools; pos = pos->next)
		log_pool(list_entry(pos, struct pool, node), seconds);
	queries_tick_done(w);
}
