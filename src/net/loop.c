/*
 * A thread's event loop; see loop.h.  The reaper is an event like any other:
 * activated, it runs after the callbacks already active in this turn.  No
 * callback runs inside another, and an object going to a dead list has its
 * events deleted first (conn_halt), which takes them off the active queue
 * too: nothing is freed while a callback of its own is running or due.
 */
#include "net/loop.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <string.h>

#include "base/clock.h"
#include "net/conn.h"

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;

	l->reap(l->owner);
}

/*
 * Without a lock: only the loop's own thread touches it (other threads post
 * to an inbox, which wakes the loop through an eventfd).  A locked base
 * takes and releases its mutex around every callback, event_add, event_del
 * and event_active, eight pairs per transaction at one client.
 */
static struct event_base *new_base(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base;

	if (cfg == NULL)
		return NULL;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

int loop_init(struct loop *l, loop_reap_fn reap, void *owner)
{
	memset(l, 0, sizeof(*l));
	l->reap = reap;
	l->owner = owner;
	l->base = new_base();
	if (l->base == NULL)
		return -1;
	l->read_flags = EV_READ | EV_PERSIST;
	if (event_base_get_features(l->base) & EV_FEATURE_EARLY_CLOSE)
		l->read_flags |= EV_CLOSED;
	l->dns = evdns_base_new(l->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	                                     EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (l->dns == NULL)
		l->dns = evdns_base_new(l->base, 0);
	if (l->dns != NULL)
		evdns_base_load_hosts(l->dns, NULL);
	l->reaper = event_new(l->base, -1, 0, reaper_cb, l);
	if (l->reaper == NULL)
		return -1;
	return conn_flusher_init(l);
}

void loop_fini(struct loop *l)
{
	if (l->reaper != NULL) {
		l->reap(l->owner);
		event_free(l->reaper);
		l->reaper = NULL;
	}
	/*
	 * A bufferevent freed while a deferred callback of its was pending keeps
	 * a reference until that callback has run (its own callbacks are cleared
	 * by then): one more non-blocking turn lets libevent drop it, so TLS
	 * connections, and the SSL_CTX they hold, are really freed at exit.
	 */
	if (l->base != NULL)
		event_base_loop(l->base, EVLOOP_NONBLOCK);
	conn_flusher_fini(l);
	if (l->dns != NULL)
		evdns_base_free(l->dns, 0);
	if (l->base != NULL)
		event_base_free(l->base);
	l->dns = NULL;
	l->base = NULL;
}

void loop_run(struct loop *l)
{
	event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
}

void loop_break(struct loop *l)
{
	event_base_loopbreak(l->base);
}

void loop_exit_after(struct loop *l, int64_t us)
{
	struct timeval tv = {.tv_sec = (time_t)(us / 1000000),
	                     .tv_usec = (suseconds_t)(us % 1000000)};

	event_base_loopexit(l->base, &tv);
}

void loop_schedule_reap(struct loop *l)
{
	event_active(l->reaper, 0, 0);
}

/*
 * Every latency sample is stamped with this, so it must be precise.
 * libevent's cached loop time is either coarse (often 4 ms steps) or, with
 * EVENT_BASE_FLAG_PRECISE_TIMER, costs a timerfd_settime system call before
 * every epoll_wait, two per transaction at one client.  A vDSO clock_gettime
 * per call is cheaper than both (no syscall, no lock).  Monotonic: on the
 * wall clock a step back (NTP, a VM restored) stopped token buckets from
 * refilling, and kept deadlines from passing, for as long as the step.
 */
int64_t loop_now_us(void)
{
	return clock_monotonic_us();
}

int64_t loop_wall_us(int64_t now_us)
{
	return now_us == 0 ? 0 : now_us + (clock_wall_us() - clock_monotonic_us());
}
