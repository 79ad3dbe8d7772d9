/*
 * Failed-login delays per address; see login_delay.h.
 */
#include "limit/login_delay.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "limit/ip_limit.h"

#define WAYS          8
#define SETS          (LOGIN_DELAY_CAPACITY / WAYS)
#define QUIET_US      60000000LL /* forgiven a minute after the last answer */
#define MAX_DOUBLINGS 40         /* base << 40 is past any sensible cap */

struct login_delay_entry {
	uint8_t addr[16];  /* IPv4 as ::ffff:a.b.c.d; IPv6 masked to its /64 */
	int64_t forget_us; /* forgiven from then on; 0 = free entry */
	uint32_t failures; /* consecutive failures not forgiven yet */
};

int login_delay_init(struct login_delay *d)
{
	memset(d, 0, sizeof(*d));
	hash_key_draw(&d->key);
	atomic_init(&d->remembered_until_us, 0);
	return pthread_mutex_init(&d->lock, NULL) == 0 ? 0 : -1;
}

void login_delay_fini(struct login_delay *d)
{
	free(d->entries);
	d->entries = NULL;
	pthread_mutex_destroy(&d->lock);
}

static struct login_delay_entry *set_of(const struct login_delay *d, const uint8_t key[16])
{
	uint64_t h = hash_keyed(&d->key, key, 16);

	return &d->entries[(h % SETS) * WAYS];
}

/* The address's entry, or NULL; forgotten entries are freed on the way. */
static struct login_delay_entry *find_locked(struct login_delay_entry *set, const uint8_t key[16],
                                             int64_t now_us)
{
	for (int i = 0; i < WAYS; i++) {
		if (set[i].forget_us != 0 && set[i].forget_us <= now_us)
			set[i].forget_us = 0;
		if (set[i].forget_us != 0 && memcmp(set[i].addr, key, 16) == 0)
			return &set[i];
	}
	return NULL;
}

/* A free entry of the set, else the one forgotten soonest (the stalest). */
static struct login_delay_entry *claim_locked(struct login_delay_entry *set, const uint8_t key[16])
{
	struct login_delay_entry *e = &set[0];

	for (int i = 0; i < WAYS && e->forget_us != 0; i++)
		if (set[i].forget_us < e->forget_us)
			e = &set[i];
	memcpy(e->addr, key, 16);
	e->failures = 0;
	return e;
}

static int64_t delay_for(uint32_t failures, int64_t base_us, int64_t cap_us)
{
	uint32_t doublings;
	int64_t delay;

	if (failures < 2)
		return 0;
	doublings = failures - 2;
	if (doublings > MAX_DOUBLINGS)
		doublings = MAX_DOUBLINGS;
	delay = base_us > INT64_MAX >> doublings ? INT64_MAX : base_us << doublings;
	return delay < cap_us ? delay : cap_us;
}

int64_t login_delay_failed(struct login_delay *d, const struct sockaddr *addr, int64_t base_us,
                           int64_t cap_us, int64_t now_us)
{
	struct login_delay_entry *e;
	uint8_t key[16];
	int64_t delay = 0, quiet = cap_us > QUIET_US ? cap_us : QUIET_US;

	if (base_us <= 0 || !ip_limit_key(addr, key))
		return 0;
	if (cap_us < base_us)
		cap_us = base_us;
	pthread_mutex_lock(&d->lock);
	if (d->entries == NULL)
		d->entries = calloc(SETS * WAYS, sizeof(*d->entries));
	/* Out of memory: answer at once rather than fail the login differently. */
	if (d->entries != NULL) {
		struct login_delay_entry *set = set_of(d, key);

		if ((e = find_locked(set, key, now_us)) == NULL)
			e = claim_locked(set, key);
		if (e->failures < UINT32_MAX)
			e->failures++;
		delay = delay_for(e->failures, base_us, cap_us);
		e->forget_us = now_us + delay + quiet;
		if (e->forget_us > atomic_load(&d->remembered_until_us))
			atomic_store(&d->remembered_until_us, e->forget_us);
	}
	pthread_mutex_unlock(&d->lock);
	return delay;
}

void login_delay_succeeded(struct login_delay *d, const struct sockaddr *addr, int64_t now_us)
{
	struct login_delay_entry *e;
	uint8_t key[16];

	/* The common case: no failure remembered anywhere, so no lock on the login path. */
	if (atomic_load(&d->remembered_until_us) <= now_us || !ip_limit_key(addr, key))
		return;
	pthread_mutex_lock(&d->lock);
	if (d->entries != NULL && (e = find_locked(set_of(d, key), key, now_us)) != NULL)
		e->forget_us = 0;
	pthread_mutex_unlock(&d->lock);
}

size_t login_delay_count(struct login_delay *d, int64_t now_us)
{
	size_t n = 0;

	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; d->entries != NULL && i < SETS * WAYS; i++)
		if (d->entries[i].forget_us > now_us)
			n++;
	pthread_mutex_unlock(&d->lock);
	return n;
}
