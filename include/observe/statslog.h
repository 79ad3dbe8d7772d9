/*
 * The stats log.  Every stats_period each worker writes, for each of its own
 * pools that saw work in the period, one line with the period's counts and
 * rates, its latency percentiles, and its non-empty histogram buckets in a
 * compact form ("b" keys: "idx:count,...", see docs/observability.md) that a
 * tool can add up across workers, instances and periods.  The worker's own
 * stats tick calls it (worker_hooks.stats_tick), so reading the pools needs
 * no cross-thread traffic at all.
 */
#ifndef SLUICE_STATSLOG_H
#define SLUICE_STATSLOG_H

#include "base/types.h"

/* The worker's stats_period tick: one line per pool that saw work in `seconds`. */
void statslog_tick(struct worker *w, double seconds);

#endif
