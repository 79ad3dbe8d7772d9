/*
 * The auth_file loader and the md5 helpers.  Each test writes its own file
 * under a fresh temporary directory; expected md5 values were computed
 * independently with `printf %s ... | md5sum`.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth_file.h"
#include "auth/scram.h"

/* Stored by a real Postgres 15 for the password "pencil". */
#define PG15_PENCIL                                                                                \
	"SCRAM-SHA-256$4096:763qvxk/"                                                              \
	"YVAsxtx+4PvLmQ==$5DHV6yvSa4oF9ktIvl4ezGu1F0QI2W9FxaHn3w5iKxI=:"                           \
	"Kqb8pBW01e7tAbal8jTH0CmBsg5N0+9WSkoGB1pdWs0="

/* printf %s pencil user | md5sum */
#define MD5_PENCIL_USER "md520c46e3762c864548e296b33c3406aa9"
/* printf %s secretalice | md5sum */
#define MD5_SECRET_ALICE "md54a0a68b43b6cd5cf266fa02f196e2371"

struct tmpfile {
	char dir[64];   /* mkdtemp directory */
	char path[128]; /* dir + "/userlist.txt" */
};

static void tmpfile_write(struct tmpfile *t, const char *content)
{
	FILE *f;

	strcpy(t->dir, "/tmp/sluice-authfile-XXXXXX");
	cr_assert_not_null(mkdtemp(t->dir));
	snprintf(t->path, sizeof(t->path), "%s/userlist.txt", t->dir);
	f = fopen(t->path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(content, 1, strlen(content), f), strlen(content));
	cr_assert_eq(fclose(f), 0);
}

static void tmpfile_remove(struct tmpfile *t)
{
	unlink(t->path);
	rmdir(t->dir);
}

static void load_ok(const char *content, struct auth_file *af)
{
	struct tmpfile t;
	char err[256] = "";

	tmpfile_write(&t, content);
	cr_assert_eq(auth_file_load(t.path, af, err, sizeof(err)), 0, "%s", err);
	tmpfile_remove(&t);
}

/* Loads content that must fail; checks the message is exactly "PATH:LINE: why". */
static void load_fails(const char *content, int line, const char *why)
{
	struct auth_file af = {(struct user_secret *)0x1, 99};
	struct tmpfile t;
	char err[256] = "", want[256];

	tmpfile_write(&t, content);
	cr_assert_eq(auth_file_load(t.path, &af, err, sizeof(err)), -1, "loaded: %s", content);
	snprintf(want, sizeof(want), "%s:%d: %s", t.path, line, why);
	cr_expect_str_eq(err, want);
	cr_expect_null(af.users);
	cr_expect_eq(af.count, 0);
	auth_file_fini(&af);
	tmpfile_remove(&t);
}

/* True if a SCRAM client with this password passes the verifier. */
static bool scram_accepts(const struct scram_secret *sec, const char *password)
{
	struct scram_client c;
	struct scram_server s;
	char c1[SCRAM_MSG_MAX + 1], s1[SCRAM_MSG_MAX + 1], c2[SCRAM_MSG_MAX + 1];
	char s2[SCRAM_MSG_MAX + 1];
	const char *err = NULL;
	int n;

	scram_server_init(&s, sec, NULL);
	cr_assert_eq(scram_client_init_password(&c, password, NULL, NULL), 0);
	n = scram_client_first(&c, c1, sizeof(c1));
	cr_assert_gt(n, 0);
	cr_assert_eq(scram_server_handle_first(&s, c1, (size_t)n, s1, sizeof(s1), &err), 0);
	n = scram_client_final(&c, s1, strlen(s1), c2, sizeof(c2), &err);
	cr_assert_gt(n, 0);
	return scram_server_handle_final(&s, c2, (size_t)n, s2, sizeof(s2), &err) == 0;
}

/* ---- md5 helpers ---- */

Test(md5, password_hash_known_value)
{
	char out[MD5_PASSWD_LEN + 1];

	md5_password_hash("pencil", "user", out);
	cr_assert_str_eq(out, MD5_PENCIL_USER);
	md5_password_hash("secret", "alice", out);
	cr_assert_str_eq(out, MD5_SECRET_ALICE);
}

Test(md5, salted_response_known_value)
{
	static const uint8_t salt[4] = {1, 2, 3, 4};
	char out[MD5_PASSWD_LEN + 1];

	/* printf '%s\x01\x02\x03\x04' 20c46e3762c864548e296b33c3406aa9 | md5sum */
	md5_salted_response(MD5_PENCIL_USER, salt, out);
	cr_assert_str_eq(out, "md54376eb6913b38f9aaff38dc7cf19ca76");
}

Test(md5, salted_response_refuses_malformed_hash)
{
	static const uint8_t salt[4] = {1, 2, 3, 4};
	char out[MD5_PASSWD_LEN + 1];

	md5_salted_response("md5short", salt, out);
	cr_assert_str_eq(out, "");
	md5_salted_response("xyz20c46e3762c864548e296b33c3406aa9", salt, out);
	cr_assert_str_eq(out, "");
}

Test(md5, secret_equal)
{
	cr_assert(secret_equal("abcdef", "abcdef", 6));
	cr_assert_not(secret_equal("abcdef", "abcdeg", 6));
	cr_assert(secret_equal("abcdef", "abcdeg", 5));
	cr_assert(secret_equal("", "", 0));
}

/* ---- loading ---- */

Test(auth_file, plain_md5_scram)
{
	struct auth_file af;
	const struct user_secret *u;

	load_ok("\"alice\" \"secret\"\n"
	        "\"user\" \"" MD5_PENCIL_USER "\"\n"
	        "\"pg\" \"" PG15_PENCIL "\"\n",
	        &af);
	cr_assert_eq(af.count, 3);

	u = auth_file_find(&af, "alice");
	cr_assert_not_null(u);
	cr_assert_eq(u->kind, SECRET_PLAIN);
	cr_assert_str_eq(u->plain, "secret");
	cr_assert_str_eq(u->md5, MD5_SECRET_ALICE);
	cr_assert_eq(u->scram.iterations, SCRAM_ITERATIONS);
	cr_assert_eq(u->scram.salt_len, 16);
	cr_assert(scram_accepts(&u->scram, "secret"));
	cr_assert_not(scram_accepts(&u->scram, "Secret"));

	u = auth_file_find(&af, "user");
	cr_assert_not_null(u);
	cr_assert_eq(u->kind, SECRET_MD5);
	cr_assert_null(u->plain);
	cr_assert_str_eq(u->md5, MD5_PENCIL_USER);

	u = auth_file_find(&af, "pg");
	cr_assert_not_null(u);
	cr_assert_eq(u->kind, SECRET_SCRAM);
	cr_assert_null(u->plain);
	cr_assert_eq(u->scram.iterations, 4096);
	cr_assert(scram_accepts(&u->scram, "pencil"));

	cr_assert_null(auth_file_find(&af, "bob"));
	cr_assert_null(auth_file_find(&af, "Alice"));
	auth_file_fini(&af);
	cr_assert_null(af.users);
	cr_assert_eq(af.count, 0);
}

Test(auth_file, comments_blanks_and_line_endings)
{
	struct auth_file af;

	load_ok("; a comment\n"
	        "# another \"comment\n"
	        "\n"
	        "   \t\n"
	        "  ; indented comment\n"
	        "\"a\" \"1\"\r\n"
	        "\t\"b\"\t\"2\"   \n"
	        "\"c\"\"\" \"3\"", /* no final newline */
	        &af);
	cr_assert_eq(af.count, 3);
	cr_assert_str_eq(auth_file_find(&af, "a")->plain, "1");
	cr_assert_str_eq(auth_file_find(&af, "b")->plain, "2");
	cr_assert_str_eq(auth_file_find(&af, "c\"")->plain, "3");
	auth_file_fini(&af);
}

Test(auth_file, quoted_quotes_and_extra_fields)
{
	struct auth_file af;
	const struct user_secret *u;

	load_ok("\"we\"\"ird\" \"pa\"\"ss\"\n"
	        "\"\"\"\" \"\"\"\"\"\"\n"
	        "\"carol\" \"pw\" \"ignored\" and more\n"
	        "\"dan\" \"pw2\"trailing\n"
	        "\"sp ace\" \"p w ; # x\"\n",
	        &af);
	cr_assert_eq(af.count, 5);
	u = auth_file_find(&af, "we\"ird");
	cr_assert_not_null(u);
	cr_assert_str_eq(u->plain, "pa\"ss");
	u = auth_file_find(&af, "\"");
	cr_assert_not_null(u);
	cr_assert_str_eq(u->plain, "\"\"");
	cr_assert_str_eq(auth_file_find(&af, "carol")->plain, "pw");
	cr_assert_str_eq(auth_file_find(&af, "dan")->plain, "pw2");
	cr_assert_str_eq(auth_file_find(&af, "sp ace")->plain, "p w ; # x");
	auth_file_fini(&af);
}

Test(auth_file, secret_classification_edges)
{
	struct auth_file af;

	/* Uppercase hex, a short hash and a SCRAM prefix without '$' are plain passwords. */
	load_ok("\"u1\" \"md520C46E3762C864548E296B33C3406AA9\"\n"
	        "\"u2\" \"md520c46e3762c864548e296b33c3406aa\"\n"
	        "\"u3\" \"md520c46e3762c864548e296b33c3406aa9x\"\n"
	        "\"u4\" \"SCRAM-SHA-256\"\n",
	        &af);
	for (size_t i = 0; i < af.count; i++)
		cr_expect_eq(af.users[i].kind, SECRET_PLAIN, "%s", af.users[i].user);
	auth_file_fini(&af);
}

Test(auth_file, duplicate_user_later_line_wins)
{
	struct auth_file af;
	const struct user_secret *u;

	load_ok("\"a\" \"first\"\n\"b\" \"x\"\n\"a\" \"" MD5_PENCIL_USER "\"\n", &af);
	cr_assert_eq(af.count, 2);
	u = auth_file_find(&af, "a");
	cr_assert_eq(u->kind, SECRET_MD5);
	cr_assert_null(u->plain);
	cr_assert_str_eq(u->md5, MD5_PENCIL_USER);
	auth_file_fini(&af);
}

Test(auth_file, many_users)
{
	struct auth_file af;
	char *content = malloc(1000 * 64), *p = content, user[32];

	cr_assert_not_null(content);
	for (int i = 0; i < 1000; i++)
		p += sprintf(p, "\"user%d\" \"" MD5_PENCIL_USER "\"\n", i);
	load_ok(content, &af);
	free(content);
	cr_assert_eq(af.count, 1000);
	for (int i = 0; i < 1000; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		cr_assert_not_null(auth_file_find(&af, user), "%s", user);
	}
	auth_file_fini(&af);
}

Test(auth_file, empty_file)
{
	struct auth_file af;

	load_ok("", &af);
	cr_assert_eq(af.count, 0);
	cr_assert_null(auth_file_find(&af, "x"));
	auth_file_fini(&af);
}

/* ---- errors ---- */

Test(auth_file, missing_file)
{
	struct auth_file af;
	char err[256] = "";

	cr_assert_eq(auth_file_load("/nonexistent/sluice/userlist.txt", &af, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "/nonexistent/sluice/userlist.txt: No such file or directory");
	cr_assert_eq(af.count, 0);
	/* A NULL error buffer is allowed. */
	cr_assert_eq(auth_file_load("/nonexistent/sluice/userlist.txt", &af, NULL, 0), -1);
}

Test(auth_file, malformed_lines)
{
	load_fails("\"a\" \"1\"\n\"b\" \"2\n", 2, "unterminated quoted string");
	load_fails("\"a\n", 1, "unterminated quoted string");
	load_fails("; ok\n\"a\" \"1\"\n\"dave\"\n", 3, "missing password");
	load_fails("\"dave\"   ; comment\n", 1, "missing password");
	load_fails("dave \"pw\"\n", 1, "expected a quoted user name");
	load_fails("\"dave\" pw\n", 1, "expected a quoted password");
	load_fails("\"\" \"pw\"\n", 1, "empty user name");
	load_fails("\"a\" \"\"\n", 1, "empty password");
	load_fails("\"a\" \"1\"\n\n\"b\" \"SCRAM-SHA-256$4096:broken\"\n", 3,
	           "invalid SCRAM-SHA-256 verifier");
}

Test(auth_file, nul_byte_in_line)
{
	struct auth_file af = {NULL, 0};
	struct tmpfile t;
	char err[256] = "", want[256];
	FILE *f;

	tmpfile_write(&t, "");
	f = fopen(t.path, "w");
	cr_assert_not_null(f);
	fwrite("\"a\" \"1\"\n\"b\0\" \"2\"\n", 1, 17, f);
	fclose(f);
	cr_assert_eq(auth_file_load(t.path, &af, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", t.path);
	cr_assert_str_eq(err, want);
	tmpfile_remove(&t);
}

Test(auth_file, error_message_truncated_safely)
{
	struct auth_file af;
	struct tmpfile t;
	char err[8];

	tmpfile_write(&t, "\"a\n");
	cr_assert_eq(auth_file_load(t.path, &af, err, sizeof(err)), -1);
	cr_assert_eq(strlen(err), sizeof(err) - 1);
	tmpfile_remove(&t);
}

/* ---- auth_file_add_plain ---- */

Test(auth_file, add_plain)
{
	struct auth_file af = {NULL, 0};
	const struct user_secret *u;

	cr_assert_eq(auth_file_add_plain(&af, "user", "pencil"), 0);
	u = auth_file_find(&af, "user");
	cr_assert_not_null(u);
	cr_assert_eq(u->kind, SECRET_PLAIN);
	cr_assert_str_eq(u->plain, "pencil");
	cr_assert_str_eq(u->md5, MD5_PENCIL_USER);
	cr_assert(scram_accepts(&u->scram, "pencil"));

	/* Overrides an existing entry, and a hash-looking password stays a password. */
	cr_assert_eq(auth_file_add_plain(&af, "user", MD5_PENCIL_USER), 0);
	cr_assert_eq(af.count, 1);
	u = auth_file_find(&af, "user");
	cr_assert_eq(u->kind, SECRET_PLAIN);
	cr_assert_str_eq(u->plain, MD5_PENCIL_USER);
	cr_assert_str_neq(u->md5, MD5_PENCIL_USER);

	cr_assert_eq(auth_file_add_plain(&af, "", "pw"), -1);
	cr_assert_eq(auth_file_add_plain(&af, "x", NULL), -1);
	auth_file_fini(&af);
	cr_assert_eq(af.count, 0);
}

Test(auth_file, add_plain_after_load)
{
	struct auth_file af;

	load_ok("\"a\" \"1\"\n", &af);
	cr_assert_eq(auth_file_add_plain(&af, "b", "2"), 0);
	cr_assert_eq(af.count, 2);
	cr_assert_str_eq(auth_file_find(&af, "a")->plain, "1");
	cr_assert_str_eq(auth_file_find(&af, "b")->plain, "2");
	auth_file_fini(&af);
}
