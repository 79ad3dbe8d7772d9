/*
 * Failed-login delays per source address (auth_failure_delay): after a
 * failed password from an address, the answer to its next failure is held
 * back, doubling from auth_failure_delay up to auth_failure_delay_max, so a
 * password guesser gets each answer slowly.  A success from the address, or
 * a quiet minute (or auth_failure_delay_max if longer) after its last answer,
 * forgives it.
 *
 * Failures are seen by whichever worker thread serves the client, so the
 * table is shared by all workers behind one mutex: a cold path (it is taken
 * on failed logins, and on successful ones only while some failure is still
 * remembered).  The table has a fixed size, set-associative: an address maps
 * by a keyed hash (SipHash) to one set of a few entries, and a new address replaces
 * the set's stalest entry, so memory stays fixed whatever an attacker sends.
 * IPv6 addresses count by their /64 network, the usual size of one site.
 */
#ifndef SLUICE_LOGIN_DELAY_H
#define SLUICE_LOGIN_DELAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/hash.h"

struct login_delay_entry;

struct login_delay {
	pthread_mutex_t lock;                /* guards entries */
	struct login_delay_entry *entries;   /* sets x ways; allocated at the first failure */
	struct hash_key key;                 /* addresses cannot be aimed at one set */
	_Atomic int64_t remembered_until_us; /* no failure is remembered after: skip the lock */
};

/* Addresses the table remembers at most. */
#define LOGIN_DELAY_CAPACITY 4096

int login_delay_init(struct login_delay *d);
void login_delay_fini(struct login_delay *d);

/*
 * A login from `addr` failed: returns how long to hold its answer, 0 for an
 * address's first failure, then base_us, doubling up to cap_us.  base_us 0
 * turns the delay off (and nothing is remembered).
 */
int64_t login_delay_failed(struct login_delay *d, const struct sockaddr *addr, int64_t base_us,
                           int64_t cap_us, int64_t now_us);
/* A login from `addr` succeeded: its failures are forgiven. */
void login_delay_succeeded(struct login_delay *d, const struct sockaddr *addr, int64_t now_us);
/* Addresses with failures remembered at now_us (for tests). */
size_t login_delay_count(struct login_delay *d, int64_t now_us);

#endif
