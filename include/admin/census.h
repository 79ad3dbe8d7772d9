/*
 * The census: what each worker has, counted for the console's SHOWs.  A SHOW
 * that needs counts runs census_each on every worker through the console's
 * gather; each worker fills only its own console_part with a struct
 * census (its pools with their clients and servers by state, clients
 * per user, buffered bytes).  Back on the console's worker the functions
 * below sum those censuses into the lists the SHOWs render (admin/show.c);
 * the lists borrow the censuses' strings, so they live as long as the op.
 */
#ifndef SLUICE_ADMIN_CENSUS_H
#define SLUICE_ADMIN_CENSUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/types.h"
#include "pool/record.h"

struct console_op;
struct console_part;

/* One pool as a worker counted it, or a sum of such (by pool or by database). */
struct census_pool {
	const struct pool *key;   /* identity on the worker that counted it */
	char *db, *user;          /* pool key; user is NULL once merged by database */
	int mode;                 /* enum pool_mode */
	bool paused;              /* PAUSE, KILL or SUSPEND in effect */
	int cl_idle, cl_active;   /* logged in: between transactions, linked to a server */
	int cl_waiting, cl_login; /* queued for a server, waiting for the first server login */
	int sv_active, sv_idle, sv_tested, sv_login, sv_being_canceled; /* servers by state */
	int sv_cancels;          /* cancel requests being forwarded */
	int sv_total;            /* servers in any state */
	int sv_close_needed;     /* to be closed when released */
	int64_t maxwait_us;      /* the oldest waiter's wait */
	struct pool_stats total; /* since the pool was created */
	struct pool_stats delta; /* over the last stats_period */
	struct pool_stats rate;  /* delta per second */
};

/* Clients of one client user. */
struct census_tally {
	char *key; /* user name */
	int64_t n; /* clients */
};

/* What one worker has: its console_part's census, freed with the op. */
struct census {
	struct census_pool *pools;  /* one per pool of the worker */
	size_t npools, pools_cap;   /* pools used, allocated */
	struct census_tally *users; /* clients per client user */
	size_t nusers, users_cap;   /* users used, allocated */
	int clients;                /* every live client, console included */
	int login_clients;          /* still logging in */
	int console_clients;        /* on the console */
	int servers;                /* every server */
	uint64_t io_bytes;          /* bytes buffered in client and server connections */
};

/* Pools of every worker summed; the caller frees recs (not the strings). */
struct census_merged {
	struct census_pool *recs; /* borrowed strings: valid while the op lives */
	size_t n, cap;            /* recs used, allocated */
};

/* User names for SHOW USERS and LISTS; the caller frees names (not the strings). */
struct census_names {
	const char **names; /* sorted, unique; borrowed like census_merged's */
	size_t n, cap;      /* names used, allocated */
};

/* Gather callback (console_each_fn): count what worker `w` has into part->census. */
void census_each(struct worker *w, struct console_op *op, struct console_part *part);
void census_free(struct census *census);

/* Pools of all workers, summed per (database, user), or per database when by_db. */
void census_merge_pools(const struct console_op *op, bool by_db, struct census_merged *m);
/* Add b's counts to a (merged by pool or database). */
void census_pool_sum(struct census_pool *a, const struct census_pool *b);
/* Every configured database has a row, with or without traffic (m sorted again). */
void census_add_configured_dbs(const struct config *cfg, struct census_merged *m);
/* The databases SHOW DATABASES lists: configured ones, then those reached through "*". */
void census_list_databases(const struct config *cfg, const struct console_op *op,
                           struct census_merged *m);
/* Users of the auth_file and [users], and any user seen in a pool or on a client. */
void census_list_users(const struct config *cfg, const struct console_op *op,
                       struct census_names *l);

#endif
