/*
 * limiter = redis, the parts that need no Redis: redis_url parsing and
 * masking, the lease sizing (docs/tenants.md, "Lease math"), and the
 * configuration's checks of the shared limiter's options.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "config/config.h"
#include "config/redis_url.h"
#include "config/options.h"
#include "limit/redis_limiter.h"
#include "limit/redis_link.h"

#define SEC INT64_C(1000000)
#define MIN (60 * SEC)

static struct redis_url parse_ok(const char *text)
{
	struct redis_url u;
	char msg[256] = "";

	cr_assert_eq(redis_url_parse(text, &u, msg, sizeof(msg)), 0, "%s: %s", text, msg);
	return u;
}

static void parse_fails(const char *text, const char *why)
{
	struct redis_url u;
	char msg[256] = "";

	cr_assert_eq(redis_url_parse(text, &u, msg, sizeof(msg)), -1, "%s parsed", text);
	cr_assert(strstr(msg, why) != NULL, "%s: '%s' lacks '%s'", text, msg, why);
	cr_assert(strstr(msg, "hunter2") == NULL, "%s: the password leaked: %s", text, msg);
}

Test(redis_url, host_only_gets_the_defaults)
{
	struct redis_url u = parse_ok("redis://cache.internal");

	cr_assert_str_eq(u.host, "cache.internal");
	cr_assert_eq(u.port, 6379);
	cr_assert_eq(u.db, 0);
	cr_assert_not(u.tls);
	cr_assert_str_eq(u.user, "");
	cr_assert_str_eq(u.password, "");
}

Test(redis_url, every_part)
{
	struct redis_url u = parse_ok("rediss://limiter:p%40ss%3Aword@10.0.0.7:6380/3");

	cr_assert(u.tls);
	cr_assert_str_eq(u.user, "limiter");
	cr_assert_str_eq(u.password, "p@ss:word");
	cr_assert_str_eq(u.host, "10.0.0.7");
	cr_assert_eq(u.port, 6380);
	cr_assert_eq(u.db, 3);
}

Test(redis_url, password_without_user_and_ipv6)
{
	struct redis_url u = parse_ok("REDIS://:hunter2@[::1]:7000/");

	cr_assert_str_eq(u.user, "");
	cr_assert_str_eq(u.password, "hunter2");
	cr_assert_str_eq(u.host, "::1");
	cr_assert_eq(u.port, 7000);
	cr_assert_eq(u.db, 0);
}

Test(redis_url, bad_ones_say_why_without_the_password)
{
	parse_fails("http://x", "must start with redis://");
	parse_fails("redis://", "no host");
	parse_fails("redis://:hunter2@", "no host");
	parse_fails("redis://h:0", "bad port");
	parse_fails("redis://h:65536", "bad port");
	parse_fails("redis://h:63a", "bad port");
	parse_fails("redis://h/x", "bad database");
	parse_fails("redis://h/-1", "bad database");
	parse_fails("redis://h?timeout=1", "query parameters");
	parse_fails("redis://u:hunter2%zz@h", "bad password");
	parse_fails("redis://u:hunter2%00@h", "bad password");
	parse_fails("redis://user@h", "needs a password");
	parse_fails("redis://[::1:6379", "IPv6");
	parse_fails("redis://ho st", "bad character");
}

Test(redis_url, mask_hides_the_password_only)
{
	char buf[128];

	redis_url_mask("redis://u:hunter2@h:1/2", buf, sizeof(buf));
	cr_assert_str_eq(buf, "redis://u:********@h:1/2");
	redis_url_mask("redis://:hunter2@h", buf, sizeof(buf));
	cr_assert_str_eq(buf, "redis://:********@h");
	redis_url_mask("redis://h:6379/0", buf, sizeof(buf));
	cr_assert_str_eq(buf, "redis://h:6379/0");
}

Test(lease, a_tenth_of_a_second_of_the_rate_shared_by_the_instances)
{
	struct rate r = {.count = 3000, .period_us = SEC};

	cr_assert_eq(lease_size(&r, 3000, 1), 300);
	cr_assert_eq(lease_size(&r, 3000, 3), 100);
	cr_assert_eq(lease_size(&r, 3000, 4), 75);
}

Test(lease, slow_tenants_lease_one_token)
{
	struct rate per_min = {.count = 100, .period_us = MIN};
	struct rate twenty = {.count = 20, .period_us = SEC};

	cr_assert_eq(lease_size(&per_min, 10, 1), 1);
	cr_assert_eq(lease_size(&twenty, 20, 3), 1);
}

Test(lease, never_more_than_half_the_burst_across_the_fleet)
{
	struct rate r = {.count = 100000, .period_us = SEC};

	/* 10000 wanted, but a burst of 1000 split over 2 instances, halved: 250. */
	cr_assert_eq(lease_size(&r, 1000, 2), 250);
	cr_assert_eq(lease_size(&r, 1, 5), 1);
}

Test(lease, no_instance_seen_counts_as_one)
{
	struct rate r = {.count = 1000, .period_us = SEC};

	cr_assert_eq(lease_size(&r, 1000, 0), 100);
}

static struct config *load(const char *env0, const char *env1, struct config_error *err)
{
	char *envp[] = {"SLUICE_DATABASE_URL=postgres://app:pw@127.0.0.1:5432/app", (char *)env0,
	                (char *)env1, NULL};

	return config_load(NULL, NULL, envp, err);
}

Test(redis_config, limiter_redis_needs_a_good_url)
{
	struct config_error err;
	struct config *cfg;

	cr_assert_null(load("SLUICE_LIMITER=redis", NULL, &err));
	cr_assert(strstr(err.message, "needs redis_url") != NULL, "%s", err.message);
	cr_assert_null(
	    load("SLUICE_LIMITER=redis", "SLUICE_REDIS_URL=redis://:hunter2@h:99999", &err));
	cr_assert(strstr(err.message, "redis_url: bad port") != NULL, "%s", err.message);
	cr_assert(strstr(err.message, "hunter2") == NULL, "%s", err.message);
	cr_assert_null(load("SLUICE_LIMITER=redis", "SLUICE_REDIS_URL=rediss://h", &err));
	cr_assert(strstr(err.message, "rediss:// (TLS) is not supported") != NULL, "%s",
	          err.message);
	cr_assert(strstr(err.message, "hiredis 0.14, which has no TLS") != NULL, "%s", err.message);
	cfg = load("SLUICE_LIMITER=redis", "SLUICE_REDIS_URL=redis://h:6380/2", &err);
	cr_assert_not_null(cfg, "%s", err.message);
	cr_assert_eq(cfg->limiter, LIMITER_REDIS);
	cr_assert_eq(cfg->redis_failure_mode, REDIS_FAIL_LOCAL);
	cr_assert_eq(cfg->redis_timeout_us, 100000);
	config_free(cfg);
}

Test(redis_config, show_config_masks_the_passwords)
{
	struct config_error err;
	struct config *cfg =
	    load("SLUICE_REDIS_URL=redis://u:hunter2@h", "SLUICE_REDIS_PASSWORD=hunter2", &err);
	char buf[256];

	cr_assert_not_null(cfg, "%s", err.message);
	config_format_value(cfg, config_option_find("redis_url"), buf, sizeof(buf));
	cr_assert_str_eq(buf, "redis://u:********@h");
	config_format_value(cfg, config_option_find("redis_password"), buf, sizeof(buf));
	cr_assert_str_eq(buf, "********");
	config_free(cfg);
}

Test(redis_config, a_reload_makes_a_new_store_only_when_it_changes)
{
	struct config_error err;
	struct config *a = load("SLUICE_LIMITER=redis", "SLUICE_REDIS_URL=redis://h:6380/2", &err);
	struct config *slower =
	    load("SLUICE_LIMITER=redis", "SLUICE_REDIS_URL=redis://h:6380/2", &err);
	struct config *other =
	    load("SLUICE_LIMITER=redis", "SLUICE_REDIS_URL=redis://h:6380/3", &err);
	struct config *local = load(NULL, NULL, &err);
	struct logger log;
	struct limiter l;
	struct redis_fleet *f;
	char msg[256] = "", instance[96];

	cr_assert(a != NULL && slower != NULL && other != NULL && local != NULL, "%s", err.message);
	cr_assert_eq(config_option_find("redis_url")->reload, RELOAD_LIVE);
	cr_assert_eq(config_option_find("limiter")->reload, RELOAD_LIVE);
	slower->redis_timeout_us = 2 * SEC;
	log_init(&log, LOG_ERROR, LOG_FORMAT_TEXT, 2);
	limiter_init(&l, NULL);
	cr_assert_eq(limiter_configure(&l, a, &log, 2, msg, sizeof(msg)), 1, "%s", msg);
	f = limiter_fleet(&l);
	cr_assert_eq(f->id, 1);
	snprintf(instance, sizeof(instance), "%s", f->instance);
	/* The same store: the timeout changes in place, connections and leases stay. */
	cr_assert_eq(limiter_configure(&l, slower, &log, 2, msg, sizeof(msg)), 0);
	cr_assert_eq(atomic_load(&f->timeout_us), 2 * SEC);
	redis_fleet_unref(f);
	/* Another database is another store, for the same instance. */
	cr_assert_eq(limiter_configure(&l, other, &log, 2, msg, sizeof(msg)), 1);
	f = limiter_fleet(&l);
	cr_assert_eq(f->id, 2);
	cr_assert_eq(f->url.db, 3);
	cr_assert_str_eq(f->instance, instance);
	redis_fleet_unref(f);
	cr_assert_eq(limiter_configure(&l, local, &log, 2, msg, sizeof(msg)), 1);
	cr_assert_null(limiter_fleet(&l));
	limiter_fini(&l);
	log_fini(&log);
	config_free(a);
	config_free(slower);
	config_free(other);
	config_free(local);
}
