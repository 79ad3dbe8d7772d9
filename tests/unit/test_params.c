/* Session parameter tracking: options parsing, fingerprints, the SET batch. */
#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <string.h>

#include "proto/params.h"

struct collected {
	char text[512];
};

static void collect(void *arg, const char *name, const char *value)
{
	struct collected *c = arg;

	strcat(c->text, name);
	strcat(c->text, "=");
	strcat(c->text, value);
	strcat(c->text, ";");
}

Test(params, options_forms)
{
	struct collected c = {""};

	cr_assert_eq(param_parse_options("-c search_path=a,b --statement-timeout=5s "
	                                 "-cwork_mem=64MB -c x=with\\ space",
	                                 collect, &c),
	             0);
	cr_assert_str_eq(c.text,
	                 "search_path=a,b;statement_timeout=5s;work_mem=64MB;x=with space;");
}

Test(params, options_malformed)
{
	struct collected c = {""};

	cr_assert_eq(param_parse_options("-c", collect, &c), -1);
	cr_assert_eq(param_parse_options("-c novalue", collect, &c), -1);
	cr_assert_eq(param_parse_options("-B 100", collect, &c), -1);
	cr_assert_eq(param_parse_options("   ", collect, &c), 0);
}

Test(params, set_find_case_insensitive)
{
	struct param_list l;

	param_list_init(&l);
	cr_assert(param_set(&l, "datestyle", "iso"));
	cr_assert_not(param_set(&l, "datestyle", "iso"), "unchanged");
	cr_assert(param_set(&l, "DateStyle", "ISO, MDY"), "canonical spelling adopted");
	cr_assert_str_eq(param_find(&l, "DATESTYLE")->name, "DateStyle");
	cr_assert_eq(l.count, 1);
	cr_assert(param_remove(&l, "datestyle"));
	cr_assert_eq(l.count, 0);
	cr_assert_eq(l.fingerprint, 0, "fingerprint returns to empty");
	param_list_fini(&l);
}

Test(params, fingerprint_order_independent)
{
	struct param_list a, b;

	param_list_init(&a);
	param_list_init(&b);
	param_set(&a, "x", "1");
	param_set(&a, "y", "2");
	param_set(&b, "y", "2");
	param_set(&b, "x", "1");
	cr_assert_eq(a.fingerprint, b.fingerprint);
	param_set(&b, "x", "3");
	cr_assert_neq(a.fingerprint, b.fingerprint);
	param_list_fini(&a);
	param_list_fini(&b);
}

/*
 * The effective fingerprint is remembered between links; a change to either
 * list must give the answer a fresh computation gives.
 */
static uint64_t effective_fresh(const struct param_list *defaults, const struct param_list *own)
{
	struct param_list copy;
	uint64_t fp;

	param_list_init(&copy);
	param_list_copy(&copy, own);
	fp = param_effective_fingerprint(defaults, &copy);
	param_list_fini(&copy);
	return fp;
}

Test(params, effective_fingerprint_follows_changes_to_either_list)
{
	struct param_list defaults, own;
	uint64_t before;

	param_list_init(&defaults);
	param_list_init(&own);
	cr_assert_eq(param_effective_fingerprint(&defaults, &own), 0);
	param_set(&defaults, "DateStyle", "ISO, MDY");
	param_set(&defaults, "application_name", "");
	cr_assert_eq(param_effective_fingerprint(&defaults, &own), defaults.fingerprint);
	param_set(&own, "application_name", "app");
	before = param_effective_fingerprint(&defaults, &own);
	cr_assert_eq(before, effective_fresh(&defaults, &own));
	cr_assert_eq(param_effective_fingerprint(&defaults, &own), before);
	param_set(&own, "application_name", "other");
	cr_assert_neq(param_effective_fingerprint(&defaults, &own), before);
	cr_assert_eq(param_effective_fingerprint(&defaults, &own),
	             effective_fresh(&defaults, &own));
	before = param_effective_fingerprint(&defaults, &own);
	param_set(&defaults, "DateStyle", "German");
	cr_assert_neq(param_effective_fingerprint(&defaults, &own), before);
	cr_assert_eq(param_effective_fingerprint(&defaults, &own),
	             effective_fresh(&defaults, &own));
	param_remove(&own, "application_name");
	cr_assert_eq(param_effective_fingerprint(&defaults, &own), defaults.fingerprint);
	param_list_fini(&defaults);
	param_list_fini(&own);
}

Test(params, effective_fingerprint_matches_synced_server)
{
	struct param_list defaults, own, server;
	struct evbuffer *sql = evbuffer_new(), *resets = evbuffer_new();

	param_list_init(&defaults);
	param_list_init(&own);
	param_list_init(&server);
	param_set(&defaults, "DateStyle", "ISO, MDY");
	param_set(&defaults, "application_name", "");
	param_set(&defaults, "server_version", "15.0");
	param_list_copy(&server, &defaults);
	param_set(&server, "search_path", "old");
	param_set(&server, "DateStyle", "German");
	param_set(&own, "application_name", "app");
	param_set(&own, "extra_float_digits", "3");

	cr_assert_neq(param_effective_fingerprint(&defaults, &own), server.fingerprint);
	cr_assert_eq(param_sync_sql(resets, sql, &defaults, &own, &server), 4);
	evbuffer_add(sql, "", 1);
	evbuffer_add(resets, "", 1);
	cr_assert_str_eq((char *)evbuffer_pullup(sql, -1),
	                 "SELECT pg_catalog.set_config('application_name', 'app', false), "
	                 "pg_catalog.set_config('extra_float_digits', '3', false);");
	/* An earlier client's DateStyle: RESET, so its source is the default's again. */
	cr_assert_str_eq((char *)evbuffer_pullup(resets, -1),
	                 "RESET \"DateStyle\";RESET \"search_path\";");
	/* What the server looks like after that batch: */
	param_set(&server, "application_name", "app");
	param_set(&server, "extra_float_digits", "3");
	param_set(&server, "DateStyle", "ISO, MDY");
	param_remove(&server, "search_path");
	cr_assert_eq(param_effective_fingerprint(&defaults, &own), server.fingerprint);
	evbuffer_free(sql);
	evbuffer_free(resets);
	param_list_fini(&defaults);
	param_list_fini(&own);
	param_list_fini(&server);
}

Test(params, sync_quotes_values_and_skips_read_only)
{
	struct param_list defaults, own, server;
	struct evbuffer *sql = evbuffer_new(), *resets = evbuffer_new();

	param_list_init(&defaults);
	param_list_init(&own);
	param_list_init(&server);
	param_set(&own, "application_name", "it's");
	param_set(&own, "server_version", "99");
	param_set(&own, "we\"ird", "x");
	cr_assert_eq(param_sync_sql(resets, sql, &defaults, &own, &server), 2);
	evbuffer_add(sql, "", 1);
	cr_assert_str_eq((char *)evbuffer_pullup(sql, -1),
	                 "SELECT pg_catalog.set_config('application_name', 'it''s', false), "
	                 "pg_catalog.set_config('we\"ird', 'x', false);");
	cr_assert_eq(evbuffer_get_length(resets), 0, "nothing to reset on a new server");
	evbuffer_free(sql);
	evbuffer_free(resets);
	param_list_fini(&defaults);
	param_list_fini(&own);
	param_list_fini(&server);
}

Test(params, classification)
{
	cr_assert(param_is_startup_only("user"));
	cr_assert(param_is_startup_only("_pq_.foo"));
	cr_assert_not(param_is_startup_only("search_path"));
	cr_assert(param_is_read_only("server_version"));
	cr_assert(param_is_read_only("IS_SUPERUSER"));
	cr_assert_not(param_is_read_only("TimeZone"));
}

/*
 * A setting the client wants another value of than the one an earlier
 * client left: RESET in the first Query, then set in the second, so a
 * failure of the second leaves the default, not the earlier client's value.
 */
Test(params, a_value_an_earlier_client_set_is_reset_before_it_is_set)
{
	struct param_list defaults, own, server;
	struct evbuffer *sets = evbuffer_new(), *resets = evbuffer_new();

	param_list_init(&defaults);
	param_list_init(&own);
	param_list_init(&server);
	param_set(&defaults, "application_name", "");
	param_list_copy(&server, &defaults);
	param_set(&server, "application_name", "a");
	param_set(&server, "search_path", "a_schema");
	param_set(&own, "application_name", "b");
	param_set(&own, "work_mem", "bogus");
	cr_assert_eq(param_sync_sql(resets, sets, &defaults, &own, &server), 4);
	evbuffer_add(resets, "", 1);
	cr_assert_str_eq((char *)evbuffer_pullup(resets, -1),
	                 "RESET \"application_name\";RESET \"search_path\";");
	evbuffer_free(sets);
	evbuffer_free(resets);
	param_list_fini(&defaults);
	param_list_fini(&own);
	param_list_fini(&server);
}

/*
 * An earlier client's SET ROLE is reset first: a RESET of a superuser-only
 * setting the role may not change would fail, and take the RESET of the
 * role with it (one Query is one transaction).
 */
Test(params, the_role_is_reset_first)
{
	struct param_list defaults, own, server;
	struct evbuffer *sets = evbuffer_new(), *resets = evbuffer_new();

	param_list_init(&defaults);
	param_list_init(&own);
	param_list_init(&server);
	param_set(&server, "log_statement", "all");
	param_set(&server, "role", "tenant_role");
	cr_assert_eq(param_sync_sql(resets, sets, &defaults, &own, &server), 2);
	evbuffer_add(resets, "", 1);
	cr_assert_str_eq((char *)evbuffer_pullup(resets, -1),
	                 "RESET \"role\";RESET \"log_statement\";");
	evbuffer_free(sets);
	evbuffer_free(resets);
	param_list_fini(&defaults);
	param_list_fini(&own);
	param_list_fini(&server);
}
