/*
 * The process's own figures for /metrics, the process_* series every
 * Prometheus client library exports: CPU time, resident memory, open and
 * allowed descriptors, start time.  Read from /proc/self on the control loop
 * when a scrape asks, never on a worker's loop.  And malloc's live bytes, for
 * SHOW MEM.
 */
#ifndef SLUICE_PROCSTAT_H
#define SLUICE_PROCSTAT_H

#include <stdint.h>

struct procstat {
	double cpu_seconds;        /* user + system time of all threads */
	int64_t resident_bytes;    /* resident set size */
	int64_t virtual_bytes;     /* virtual memory size */
	int64_t open_fds;          /* descriptors open now */
	int64_t max_fds;           /* RLIMIT_NOFILE's soft limit */
	double start_time_seconds; /* since the Unix epoch */
};

/* Fill `ps`; returns -1 when /proc cannot be read (not Linux, or hidden). */
int procstat_read(struct procstat *ps);

/*
 * The allocator's own count, every arena: bytes malloc has handed out and
 * not had back (`used`) and bytes it holds freed (`retained`).  A leak grows
 * `used`; RSS also keeps what the allocator holds after a peak.  For a
 * console SHOW, not a hot path: it locks each arena while walking its free
 * lists.
 */
void procstat_heap(int64_t *used, int64_t *retained);

#endif
