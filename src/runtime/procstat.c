/*
 * /proc/self readers; see procstat.h.  Field positions are proc(5)'s: in
 * /proc/self/stat, after the ")" that ends the command name (which may itself
 * hold blanks and parentheses), utime and stime are fields 14 and 15,
 * starttime 22 (clock ticks after boot), vsize 23 and rss 24 (pages).
 */
#include "runtime/procstat.h"

#include <dirent.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/*
 * Under AddressSanitizer malloc is ASan's, which glibc's mallinfo2 does not
 * see; its allocator interface counts the same (declared here: gcc ships no
 * header for it).
 */
#if defined(__SANITIZE_ADDRESS__)
#define SLUICE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLUICE_ASAN 1
#endif
#endif
#ifdef SLUICE_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
size_t __sanitizer_get_free_bytes(void);
#endif

/* The whole of a small /proc file, NUL-terminated; returns its length or -1. */
static long read_small(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (f == NULL)
		return -1;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	return (long)n;
}

/* The machine's boot time from /proc/stat's "btime" line. */
static long long boot_time(void)
{
	char buf[16384], *at;

	if (read_small("/proc/stat", buf, sizeof(buf)) < 0 ||
	    (at = strstr(buf, "\nbtime ")) == NULL)
		return -1;
	return strtoll(at + 7, NULL, 10);
}

static int read_stat(struct procstat *ps)
{
	char buf[4096], *at;
	unsigned long long v[24];
	long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	long long btime = boot_time();

	if (read_small("/proc/self/stat", buf, sizeof(buf)) < 0 ||
	    (at = strrchr(buf, ')')) == NULL || ticks <= 0 || btime < 0)
		return -1;
	/* Past the state (field 3): v[k] is field k + 4. */
	at += 2;
	at = strchr(at, ' ');
	for (int k = 0; k < 21 && at != NULL; k++)
		v[k] = strtoull(at, &at, 10);
	if (at == NULL)
		return -1;
	ps->cpu_seconds = (double)(v[10] + v[11]) / (double)ticks;
	ps->start_time_seconds = (double)btime + (double)v[18] / (double)ticks;
	ps->virtual_bytes = (int64_t)v[19];
	ps->resident_bytes = (int64_t)v[20] * page;
	return 0;
}

static int64_t count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int64_t n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

int procstat_read(struct procstat *ps)
{
	struct rlimit rl;

	memset(ps, 0, sizeof(*ps));
	if (read_stat(ps) < 0 || (ps->open_fds = count_fds()) < 0)
		return -1;
	ps->max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
	                  ? (int64_t)rl.rlim_cur
	                  : -1;
	return 0;
}

void procstat_heap(int64_t *used, int64_t *retained)
{
#ifdef SLUICE_ASAN
	*used = (int64_t)__sanitizer_get_current_allocated_bytes();
	*retained = (int64_t)__sanitizer_get_free_bytes();
#else
	struct mallinfo2 mi = mallinfo2(); /* sums every arena (glibc >= 2.33) */

	*used = (int64_t)(mi.uordblks + mi.hblkhd);
	*retained = (int64_t)mi.fordblks;
#endif
}
