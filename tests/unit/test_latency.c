/*
 * SHOW LATENCY rows from a report: the console renders exactly these, so the
 * columns, the row order (pools, then tenants, then the total) and the
 * numbers are pinned here.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "observe/latency.h"

struct rows {
	char cells[64][LATENCY_SHOW_COLUMNS][32];
	int n;
};

static void collect(void *arg, const char *const values[LATENCY_SHOW_COLUMNS])
{
	struct rows *r = arg;

	cr_assert_lt(r->n, 64);
	for (int i = 0; i < LATENCY_SHOW_COLUMNS; i++)
		snprintf(r->cells[r->n][i], sizeof(r->cells[r->n][i]), "%s", values[i]);
	r->n++;
}

static void set_row(struct latency_row *row, const char *db, const char *user, const char *tenant)
{
	row->database = strdup(db);
	row->user = strdup(user);
	row->tenant = strdup(tenant);
}

Test(latency, show_columns)
{
	const char *const *cols = latency_show_columns();
	const char *want[] = {"database", "user",   "tenant", "kind",   "count",   "mean_us",
	                      "p50_us",   "p90_us", "p95_us", "p99_us", "p999_us", "max_us"};

	for (int i = 0; i < LATENCY_SHOW_COLUMNS; i++)
		cr_assert_str_eq(cols[i], want[i]);
}

Test(latency, show_rows_pools_tenants_total)
{
	struct latency_report *rep = calloc(1, sizeof(*rep));
	struct rows *r = calloc(1, sizeof(*r));

	rep->nrows = 2;
	rep->rows = calloc(2, sizeof(*rep->rows));
	set_row(&rep->rows[0], "app", "alice", "default");
	set_row(&rep->rows[1], "app", "bob", "default");
	for (int i = 1; i <= 100; i++)
		histogram_record(&rep->rows[0].h[LATENCY_QUERY], (uint64_t)i * 1000);
	histogram_record(&rep->rows[1].h[LATENCY_QUERY], 50);

	latency_show(rep, collect, r);
	/* 2 pools x 4 kinds, 1 tenant x 4 kinds, the total x 4 kinds. */
	cr_assert_eq(r->n, 16);
	cr_assert_str_eq(r->cells[0][0], "app");
	cr_assert_str_eq(r->cells[0][1], "alice");
	cr_assert_str_eq(r->cells[0][2], "default");
	cr_assert_str_eq(r->cells[0][3], "query");
	cr_assert_str_eq(r->cells[0][4], "100");
	cr_assert_str_eq(r->cells[0][5], "50500");
	cr_assert_str_eq(r->cells[0][11], "100000", "max is exact");
	/* p50 of 1..100 ms is 50 ms, within the histogram's 1/64. */
	cr_assert_lt(labs(atol(r->cells[0][6]) - 50000), 50000 / 64 + 1);
	cr_assert_str_eq(r->cells[1][3], "transaction");
	cr_assert_str_eq(r->cells[1][4], "0");
	cr_assert_str_eq(r->cells[4][1], "bob");
	cr_assert_str_eq(r->cells[4][6], "50", "small values are exact");
	/* The tenant rows merge both pools. */
	cr_assert_str_eq(r->cells[8][0], "*");
	cr_assert_str_eq(r->cells[8][1], "*");
	cr_assert_str_eq(r->cells[8][2], "default");
	cr_assert_str_eq(r->cells[8][4], "101");
	cr_assert_str_eq(r->cells[12][2], "*");
	cr_assert_str_eq(r->cells[12][4], "101");
	cr_assert_str_eq(r->cells[12][11], "100000");
	latency_report_free(rep);
	free(r);
}
