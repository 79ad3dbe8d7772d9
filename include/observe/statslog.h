/*
 * The stats log.  Every stats_period each worker writes, for each of its own
 * pools that saw work in the period, one line with the period's counts and
 * rates, its latency percentiles, and its non-empty histogram buckets in a
 * compact form ("b" keys: "idx:count,...", see docs/observability.md) that a
 * tool can add up across workers, instances and periods.  The timer lives on
 * the worker, so reading the pools needs no cross-thread traffic at all.
 */
#ifndef SLUICE_STATSLOG_H
#define SLUICE_STATSLOG_H

#include "base/types.h"

/* worker_new: create the timer and arm it if stats_period is on. */
int statslog_init(struct worker *w);
/* After a config swap on the worker: follow a changed stats_period. */
void statslog_reconfigure(struct worker *w);
void statslog_fini(struct worker *w);

#endif
