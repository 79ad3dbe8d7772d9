/*
 * auth_hba_file: parsing (with line-numbered errors) and first-match rules
 * by connection type, TLS, address, database and user.
 */
#include "auth/hba.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

static struct sockaddr_storage v4(const char *ip)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;

	in->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &in->sin_addr);
	return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

	in6->sin6_family = AF_INET6;
	inet_pton(AF_INET6, ip, &in6->sin6_addr);
	return ss;
}

static const char rules[] = "# comment line\n"
                            "local   all        all                    trust\n"
                            "hostssl app        admin   127.0.0.1/32   cert\n"
                            "host    app        admin   0.0.0.0/0      reject   # inline\n"
                            "host    app,other  app     10.1.0.0 255.255.0.0 scram-sha-256\n"
                            "hostnossl all      legacy  all            md5\n"
                            "host    all        all     ::1/128        password\n"
                            "host    all        all     127.0.0.0/8    scram-sha-256\n";

static int method_for(const struct hba *h, bool is_unix, bool tls, struct sockaddr_storage *ss,
                      const char *db, const char *user)
{
	const struct hba_rule *r =
	    hba_match(h, is_unix, tls, (struct sockaddr *)ss, db, NULL, user);

	return r == NULL ? -1 : (int)r->method;
}

Test(hba, first_matching_rule_decides)
{
	struct hba h;
	char err[256];
	struct sockaddr_storage lo = v4("127.0.0.1"), net = v4("10.1.200.3"), far = v4("8.8.8.8"),
	                        six = v6("::1"), mapped = v6("::ffff:127.0.0.5");

	cr_assert_eq(hba_parse(rules, "hba.conf", &h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(h.count, 7);
	cr_assert_eq(method_for(&h, true, false, NULL, "app", "anyone"), HBA_TRUST);
	cr_assert_eq(method_for(&h, false, true, &lo, "app", "admin"), HBA_CERT);
	cr_assert_eq(method_for(&h, false, false, &lo, "app", "admin"), HBA_REJECT,
	             "without TLS the hostssl line does not match");
	cr_assert_eq(method_for(&h, false, false, &net, "other", "app"), HBA_SCRAM);
	cr_assert_eq(method_for(&h, false, false, &far, "other", "app"), -1, "no rule: refused");
	cr_assert_eq(method_for(&h, false, false, &far, "x", "legacy"), HBA_MD5);
	cr_assert_eq(method_for(&h, false, true, &far, "x", "legacy"), -1,
	             "hostnossl needs no TLS");
	cr_assert_eq(method_for(&h, false, false, &six, "x", "y"), HBA_PASSWORD);
	cr_assert_eq(method_for(&h, false, false, &mapped, "x", "y"), HBA_SCRAM,
	             "an IPv4-mapped peer matches IPv4 rules");
	hba_fini(&h);
}

Test(hba, errors_name_the_file_and_line)
{
	struct hba h;
	char err[256];

	cr_assert_eq(hba_parse("host all all 10.0.0.0/33 trust\n", "f", &h, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "f:1: invalid prefix length in '10.0.0.0/33'");
	cr_assert_eq(hba_parse("\nhost all all db.example/8 trust\n", "f", &h, err, sizeof(err)),
	             -1);
	cr_assert_str_eq(err, "f:2: invalid address 'db.example/8' (host names are not supported)");
	cr_assert_eq(hba_parse("host all all 10.0.0.1 trust\n", "f", &h, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "f:1: address '10.0.0.1' needs a /prefix or a netmask");
	cr_assert_eq(hba_parse("local all all ident\n", "f", &h, err, sizeof(err)), -1);
	cr_assert(strstr(err, "f:1: unknown method 'ident'") == err, "%s", err);
	cr_assert_eq(hba_parse("host all all all cert\n", "f", &h, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "f:1: cert needs a hostssl line");
	cr_assert_eq(
	    hba_parse("host all all all md5 clientcert=verify-ca\n", "f", &h, err, sizeof(err)),
	    -1);
	cr_assert(strstr(err, "options after the method") != NULL, "%s", err);
	cr_assert_eq(hba_parse("hostgssenc all all all md5\n", "f", &h, err, sizeof(err)), -1);
	cr_assert(strstr(err, "unknown connection type 'hostgssenc'") != NULL, "%s", err);
	cr_assert_eq(hba_parse("host all\n", "f", &h, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "f:1: expected TYPE DATABASE USER [ADDRESS] METHOD");
}

/* A database of two names (the console's): a rule naming either matches both. */
Test(hba, a_rule_for_one_name_of_a_database_matches_its_alias)
{
	struct hba h;
	char err[256];
	struct sockaddr_storage lo = v4("127.0.0.1");
	const struct hba_rule *r;

	cr_assert_eq(hba_parse("host sluice all 127.0.0.1/32 reject\n"
	                       "host all    all 127.0.0.1/32 scram-sha-256\n",
	                       "hba.conf", &h, err, sizeof(err)),
	             0, "%s", err);
	r = hba_match(&h, false, false, (struct sockaddr *)&lo, "pgbouncer", "sluice", "admin");
	cr_assert(r != NULL && r->method == HBA_REJECT, "the alias escaped the console's rule");
	r = hba_match(&h, false, false, (struct sockaddr *)&lo, "sluice", "pgbouncer", "admin");
	cr_assert(r != NULL && r->method == HBA_REJECT);
	r = hba_match(&h, false, false, (struct sockaddr *)&lo, "pgbouncer", NULL, "admin");
	cr_assert(r != NULL && r->method == HBA_SCRAM, "without an alias the name alone counts");
	hba_fini(&h);
}
