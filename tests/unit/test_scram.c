/*
 * SCRAM-SHA-256 in both roles: the RFC 7677 section 3 exchange byte for byte,
 * a client and a server from this module talking to each other, verifiers
 * produced by Postgres 15, and malformed input of every kind.  Malformed
 * messages are copied into exactly-sized heap buffers so that AddressSanitizer
 * catches any read past the length we pass.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "auth/scram.h"

/* RFC 7677 section 3. */
#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_NONCE        RFC_CLIENT_NONCE RFC_SERVER_NONCE
#define RFC_SALT         "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_BARE  "n=user,r=" RFC_CLIENT_NONCE
#define RFC_CLIENT_FIRST "n,," RFC_CLIENT_BARE
#define RFC_SERVER_FIRST "r=" RFC_NONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL "c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/*
 * The verifier Postgres would store for "pencil" with the RFC's salt and
 * iterations, computed independently with Python's hashlib and hmac.
 */
#define RFC_VERIFIER                                                                               \
	"SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"            \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

/* Stored by a real Postgres 15 (password_encryption = scram-sha-256). */
#define PG15_PENCIL                                                                                \
	"SCRAM-SHA-256$4096:763qvxk/"                                                              \
	"YVAsxtx+4PvLmQ==$5DHV6yvSa4oF9ktIvl4ezGu1F0QI2W9FxaHn3w5iKxI=:"                           \
	"Kqb8pBW01e7tAbal8jTH0CmBsg5N0+9WSkoGB1pdWs0="
#define PG15_QUOTED                                                                                \
	"SCRAM-SHA-256$4096:n3B+3tTqqc42qxQ/pXU+WA==$celbEaCp4cPTTrnmBlpq0g9V//"                   \
	"j7GMKvnnpIAFoA7Ok=:"                                                                      \
	"RS5u7X7NyzDFZdqwCj7IyHBjId8V++gtvsL1EzJgjUY="
#define PG15_QUOTED_PASSWORD "s3cr\"t p@ss"

#define BUF 2048

/* ---- helpers, independent of the code under test where they compute ---- */

/* An exactly-sized heap copy, so any over-read is an ASan error. */
static char *dup_exact(const char *msg, size_t len)
{
	char *p = malloc(len ? len : 1);

	cr_assert_not_null(p);
	memcpy(p, msg, len);
	return p;
}

static struct scram_secret parse_ok(const char *text)
{
	struct scram_secret s;

	cr_assert_eq(scram_secret_parse(text, &s), 0, "cannot parse %s", text);
	return s;
}

static void b64(const uint8_t *in, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

static void hmac(const uint8_t *key, size_t klen, const void *data, size_t len, uint8_t out[32])
{
	size_t outlen = 0;

	cr_assert_not_null(
	    EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, klen, data, len, out, 32, &outlen));
	cr_assert_eq(outlen, 32);
}

/* A client proof computed from first principles (RFC 5802 section 3) into b64 out. */
static void make_proof(const char *password, const struct scram_secret *sec, const char *am,
                       char *out)
{
	uint8_t salted[32], client_key[32], stored[32], sig[32], proof[32];
	unsigned int n = 0;

	cr_assert_eq(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), sec->salt,
	                               (int)sec->salt_len, sec->iterations, EVP_sha256(), 32,
	                               salted),
	             1);
	hmac(salted, 32, "Client Key", 10, client_key);
	cr_assert(EVP_Digest(client_key, 32, stored, &n, EVP_sha256(), NULL));
	hmac(stored, 32, am, strlen(am), sig);
	for (int i = 0; i < 32; i++)
		proof[i] = client_key[i] ^ sig[i];
	b64(proof, 32, out);
}

static void server_start(struct scram_server *s, const struct scram_secret *sec, const char *first,
                         char *out)
{
	const char *err = NULL;

	scram_server_init(s, sec, NULL);
	cr_assert_eq(scram_server_handle_first(s, first, strlen(first), out, BUF, &err), 0, "%s",
	             err);
}

static int server_first_raw(const struct scram_secret *sec, const char *msg, size_t len,
                            const char **err)
{
	struct scram_server s;
	char out[BUF];
	char *copy = dup_exact(msg, len);
	int rc;

	scram_server_init(&s, sec, "SNONCE");
	rc = scram_server_handle_first(&s, copy, len, out, sizeof(out), err);
	free(copy);
	return rc;
}

/* Server-final for msg after a standard first round ("n,,n=,r=CNONCE"). */
static int server_final_raw(const char *msg, size_t len, const char **err)
{
	struct scram_secret sec = parse_ok(RFC_VERIFIER);
	struct scram_server s;
	char out[BUF];
	char *copy;
	int rc;

	scram_server_init(&s, &sec, "SNONCE");
	cr_assert_eq(scram_server_handle_first(&s, "n,,n=,r=CNONCE", 14, out, sizeof(out), err), 0);
	copy = dup_exact(msg, len);
	rc = scram_server_handle_final(&s, copy, len, out, sizeof(out), err);
	free(copy);
	return rc;
}

/* A valid final for the standard first round, with an optional extension. */
static void valid_final(const char *ext, char *out)
{
	struct scram_secret sec = parse_ok(RFC_VERIFIER);
	char wp[256], am[BUF], proof[64];

	snprintf(wp, sizeof(wp), "c=biws,r=CNONCESNONCE%s", ext);
	snprintf(am, sizeof(am), "n=,r=CNONCE,r=CNONCESNONCE,s=%s,i=4096,%s", RFC_SALT, wp);
	make_proof("pencil", &sec, am, proof);
	snprintf(out, BUF, "%s,p=%s", wp, proof);
}

static int client_final_raw(const char *msg, size_t len, const char **err)
{
	struct scram_client c;
	char out[BUF];
	char *copy;
	int rc;

	cr_assert_eq(scram_client_init_password(&c, "pencil", RFC_CLIENT_NONCE, NULL), 0);
	cr_assert_gt(scram_client_first(&c, out, sizeof(out)), 0);
	copy = dup_exact(msg, len);
	rc = scram_client_final(&c, copy, len, out, sizeof(out), err);
	free(copy);
	return rc;
}

/* A client that has sent its final for the RFC exchange, ready for server-final. */
static void client_after_rfc_final(struct scram_client *c)
{
	const char *err = NULL;
	char out[BUF];

	cr_assert_eq(scram_client_init_password(c, "pencil", RFC_CLIENT_NONCE, NULL), 0);
	cr_assert_gt(scram_client_first(c, out, sizeof(out)), 0);
	/* RFC 7677's client sends n=user; ours sends n=, so sign what the RFC signed. */
	strcpy(c->client_first_bare, RFC_CLIENT_BARE);
	cr_assert_gt(scram_client_final(c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out,
	                                sizeof(out), &err),
	             0);
}

/* ---- RFC 7677 section 3 ---- */

Test(scram_rfc7677, verifier_matches_derivation)
{
	struct scram_secret parsed = parse_ok(RFC_VERIFIER), derived;
	uint8_t salt[16];

	cr_assert_eq(EVP_DecodeBlock(salt, (const unsigned char *)RFC_SALT, 24), 18);
	cr_assert_eq(scram_secret_from_password("pencil", salt, 16, 4096, &derived), 0);
	cr_assert_eq(parsed.iterations, 4096);
	cr_assert_eq(parsed.salt_len, 16);
	cr_assert_arr_eq(parsed.salt, salt, 16);
	cr_assert_arr_eq(parsed.stored_key, derived.stored_key, SCRAM_KEY_LEN);
	cr_assert_arr_eq(parsed.server_key, derived.server_key, SCRAM_KEY_LEN);
}

Test(scram_rfc7677, server_role)
{
	struct scram_secret sec = parse_ok(RFC_VERIFIER);
	struct scram_server s;
	const char *err = NULL;
	uint8_t stored[32];
	unsigned int n = 0;
	char out[BUF];

	scram_server_init(&s, &sec, RFC_SERVER_NONCE);
	cr_assert_eq(scram_server_handle_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), out,
	                                       sizeof(out), &err),
	             0, "%s", err);
	cr_assert_str_eq(out, RFC_SERVER_FIRST);
	cr_assert_eq(scram_server_handle_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out,
	                                       sizeof(out), &err),
	             0, "%s", err);
	cr_assert_str_eq(out, RFC_SERVER_FINAL);
	cr_assert_eq(s.state, SCRAM_SERVER_DONE);
	cr_assert(EVP_Digest(s.client_key, 32, stored, &n, EVP_sha256(), NULL));
	cr_assert_arr_eq(stored, sec.stored_key, 32);
}

Test(scram_rfc7677, client_role_password)
{
	struct scram_client c;
	const char *err = NULL;
	char out[BUF];

	cr_assert_eq(scram_client_init_password(&c, "pencil", RFC_CLIENT_NONCE, NULL), 0);
	cr_assert_eq(scram_client_first(&c, out, sizeof(out)), 28);
	cr_assert_str_eq(out, "n,,n=,r=" RFC_CLIENT_NONCE);
	strcpy(c.client_first_bare, RFC_CLIENT_BARE);
	cr_assert_eq(scram_client_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out,
	                                sizeof(out), &err),
	             (int)strlen(RFC_CLIENT_FINAL), "%s", err);
	cr_assert_str_eq(out, RFC_CLIENT_FINAL);
	cr_assert_eq(c.password[0], '\0', "password must be wiped after use");
	cr_assert_eq(
	    scram_client_verify_server(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err), 0,
	    "%s", err);
}

/* The RFC exchange's client-final for `password`, through `kc` (may be NULL). */
static void rfc_client_final(const char *password, struct scram_key_cache *kc, char *out,
                             size_t outcap)
{
	struct scram_client c;
	const char *err = NULL;

	cr_assert_eq(scram_client_init_password(&c, password, RFC_CLIENT_NONCE, kc), 0);
	cr_assert_gt(scram_client_first(&c, out, outcap), 0);
	strcpy(c.client_first_bare, RFC_CLIENT_BARE);
	cr_assert_gt(
	    scram_client_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out, outcap, &err),
	    0, "%s", err);
}

/*
 * Keys derived once for a password, salt and iteration count serve the next
 * login with the same three; another password, salt or count is derived anew.
 */
Test(scram_rfc7677, derived_keys_are_cached_by_password_salt_and_iterations)
{
	static struct scram_key_cache kc;
	char out[BUF], plain[BUF];

	rfc_client_final("pencil", &kc, out, sizeof(out));
	cr_assert_str_eq(out, RFC_CLIENT_FINAL, "the first login derives the keys");
	cr_assert(kc.keys[0].used && kc.keys[0].iterations == 4096 && kc.keys[0].salt_len == 16);
	cr_assert(!kc.keys[1].used);
	/* Spoil the kept ClientKey: a login that takes it from the cache proves it wrong. */
	kc.keys[0].client_key[0] ^= 1;
	rfc_client_final("pencil", &kc, out, sizeof(out));
	cr_assert_str_neq(out, RFC_CLIENT_FINAL, "the second login did not use the kept keys");
	cr_assert(!kc.keys[1].used, "the second login derived again");
	/* Another password with the same salt is not answered from the cache. */
	rfc_client_final("pencil2", NULL, plain, sizeof(plain));
	rfc_client_final("pencil2", &kc, out, sizeof(out));
	cr_assert_str_eq(out, plain);
	cr_assert(kc.keys[1].used);
	scram_key_cache_wipe(&kc);
	cr_assert(!kc.keys[0].used && !kc.keys[1].used);
	rfc_client_final("pencil", &kc, out, sizeof(out));
	cr_assert_str_eq(out, RFC_CLIENT_FINAL, "the wiped cache derives again");
}

/* Past SCRAM_KEY_CACHE_SIZE salts the oldest entry is replaced: the cache stays bounded. */
Test(scram_client, the_key_cache_is_bounded)
{
	static struct scram_key_cache kc;
	char out[BUF];

	for (int i = 0; i < SCRAM_KEY_CACHE_SIZE + 1; i++) {
		struct scram_client c;
		const char *err = NULL;
		char server_first[BUF], raw[7], b64[16];

		/* Salt "saltNN" (base64 of six bytes), two iterations to keep it quick. */
		snprintf(raw, sizeof(raw), "salt%02d", i);
		EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)raw, 6);
		snprintf(server_first, sizeof(server_first), "r=%s,s=%s,i=2", RFC_NONCE, b64);
		cr_assert_eq(scram_client_init_password(&c, "pw", RFC_CLIENT_NONCE, &kc), 0);
		cr_assert_gt(scram_client_first(&c, out, sizeof(out)), 0);
		cr_assert_gt(scram_client_final(&c, server_first, strlen(server_first), out,
		                                sizeof(out), &err),
		             0, "%s", err);
	}
	cr_assert_eq(memcmp(kc.keys[0].salt, "salt16", 6), 0, "the oldest was replaced");
	for (int i = 1; i < SCRAM_KEY_CACHE_SIZE; i++)
		cr_assert(kc.keys[i].used);
	scram_key_cache_wipe(&kc);
}

Test(scram_rfc7677, client_role_pass_through_keys)
{
	struct scram_secret sec = parse_ok(RFC_VERIFIER);
	struct scram_server s;
	struct scram_client c;
	const char *err = NULL;
	char out[BUF];

	/* Recover the ClientKey the way a pass-through login does: from a client's proof. */
	scram_server_init(&s, &sec, RFC_SERVER_NONCE);
	cr_assert_eq(scram_server_handle_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), out,
	                                       sizeof(out), &err),
	             0);
	cr_assert_eq(scram_server_handle_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out,
	                                       sizeof(out), &err),
	             0);
	scram_client_init_keys(&c, s.client_key, sec.server_key, RFC_CLIENT_NONCE);
	cr_assert_gt(scram_client_first(&c, out, sizeof(out)), 0);
	strcpy(c.client_first_bare, RFC_CLIENT_BARE);
	cr_assert_gt(scram_client_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out,
	                                sizeof(out), &err),
	             0, "%s", err);
	cr_assert_str_eq(out, RFC_CLIENT_FINAL);
	cr_assert_eq(
	    scram_client_verify_server(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err), 0,
	    "%s", err);
}

/* ---- this module talking to itself ---- */

/* Runs a whole exchange; returns the server's verdict on the client's proof. */
static int exchange(struct scram_client *c, struct scram_server *s, const struct scram_secret *sec)
{
	char c1[BUF], s1[BUF], c2[BUF], s2[BUF];
	const char *err = NULL;
	int n;

	scram_server_init(s, sec, NULL);
	n = scram_client_first(c, c1, sizeof(c1));
	cr_assert_gt(n, 0);
	cr_assert_eq(scram_server_handle_first(s, c1, (size_t)n, s1, sizeof(s1), &err), 0, "%s",
	             err);
	n = scram_client_final(c, s1, strlen(s1), c2, sizeof(c2), &err);
	cr_assert_gt(n, 0, "%s", err);
	if (scram_server_handle_final(s, c2, (size_t)n, s2, sizeof(s2), &err) < 0) {
		cr_assert_not_null(err);
		return -1;
	}
	cr_assert_eq(scram_client_verify_server(c, s2, strlen(s2), &err), 0, "%s", err);
	return 0;
}

Test(scram_loop, random_salt_and_nonces)
{
	struct scram_secret sec, pg;
	struct scram_client c;
	struct scram_server s, s2;

	cr_assert_eq(scram_secret_from_password("hunter2", NULL, 0, SCRAM_ITERATIONS, &sec), 0);
	cr_assert_eq(sec.salt_len, 16);
	cr_assert_eq(scram_client_init_password(&c, "hunter2", NULL, NULL), 0);
	cr_assert_eq(strlen(c.client_nonce), 24);
	cr_assert_eq(exchange(&c, &s, &sec), 0);

	/* Pass-through: the recovered ClientKey logs in to a server with the same verifier. */
	pg = sec;
	scram_client_init_keys(&c, s.client_key, sec.server_key, NULL);
	cr_assert_eq(exchange(&c, &s2, &pg), 0);
}

Test(scram_loop, wrong_password_rejected)
{
	struct scram_secret sec = parse_ok(RFC_VERIFIER);
	struct scram_client c;
	struct scram_server s;

	cr_assert_eq(scram_client_init_password(&c, "pencil!", NULL, NULL), 0);
	cr_assert_eq(exchange(&c, &s, &sec), -1);
	cr_assert_eq(s.state, SCRAM_SERVER_DONE);
	cr_assert_eq(scram_client_init_password(&c, "", NULL, NULL), 0);
	cr_assert_eq(exchange(&c, &s, &sec), -1);
}

Test(scram_loop, wrong_server_key_rejected_by_client)
{
	struct scram_secret sec = parse_ok(RFC_VERIFIER), fake;
	struct scram_client c;
	struct scram_server s;
	char c1[BUF], s1[BUF], c2[BUF], s2[BUF];
	const char *err = NULL;
	int n;

	/* A server that knows StoredKey but not ServerKey must not pass the client's check. */
	fake = sec;
	memset(fake.server_key, 0x5a, sizeof(fake.server_key));
	scram_server_init(&s, &fake, NULL);
	cr_assert_eq(scram_client_init_password(&c, "pencil", NULL, NULL), 0);
	n = scram_client_first(&c, c1, sizeof(c1));
	cr_assert_eq(scram_server_handle_first(&s, c1, (size_t)n, s1, sizeof(s1), &err), 0);
	n = scram_client_final(&c, s1, strlen(s1), c2, sizeof(c2), &err);
	cr_assert_eq(scram_server_handle_final(&s, c2, (size_t)n, s2, sizeof(s2), &err), 0);
	cr_assert_eq(scram_client_verify_server(&c, s2, strlen(s2), &err), -1);
	cr_assert_not_null(err);
}

Test(scram_loop, gs2_y_flag_and_extensions)
{
	struct scram_secret sec = parse_ok(RFC_VERIFIER);
	struct scram_server s;
	const char *err = NULL;
	char s1[BUF], wp[256], am[BUF + 512], fin[BUF], proof[64], out[BUF];

	/* "y,," means the client could bind but believes we cannot: allowed, c= is "eSws". */
	scram_server_init(&s, &sec, "SNONCE");
	cr_assert_eq(
	    scram_server_handle_first(&s, "y,,n=,r=CNONCE,x=ext", 20, s1, sizeof(s1), &err), 0,
	    "%s", err);
	snprintf(wp, sizeof(wp), "c=eSws,r=CNONCESNONCE,y=more");
	snprintf(am, sizeof(am), "n=,r=CNONCE,x=ext,%s,%s", s1, wp);
	make_proof("pencil", &sec, am, proof);
	snprintf(fin, sizeof(fin), "%s,p=%s", wp, proof);
	cr_assert_eq(scram_server_handle_final(&s, fin, strlen(fin), out, sizeof(out), &err), 0,
	             "%s", err);
	cr_assert_eq(strncmp(out, "v=", 2), 0);

	/* The same flag with c=biws does not match the header it was sent with. */
	scram_server_init(&s, &sec, "SNONCE");
	cr_assert_eq(scram_server_handle_first(&s, "y,,n=,r=CNONCE", 14, s1, sizeof(s1), &err), 0);
	valid_final("", fin);
	cr_assert_eq(scram_server_handle_final(&s, fin, strlen(fin), out, sizeof(out), &err), -1);
	cr_assert_not_null(strstr(err, "channel binding"));
}

Test(scram_loop, valid_final_helper_is_accepted)
{
	const char *err = NULL;
	char fin[BUF];

	valid_final("", fin);
	cr_assert_eq(server_final_raw(fin, strlen(fin), &err), 0, "%s", err);
	valid_final(",x=ext", fin);
	cr_assert_eq(server_final_raw(fin, strlen(fin), &err), 0, "%s", err);
}

/* ---- verifiers ---- */

Test(scram_secret, derive_format_parse_round_trip)
{
	struct scram_secret a, b;
	uint8_t salt[SCRAM_MAX_SALT_LEN];
	char s64[128], st64[64], sv64[64], text[512];

	for (size_t i = 0; i < sizeof(salt); i++)
		salt[i] = (uint8_t)(i * 37 + 1);
	for (size_t salt_len = 1; salt_len <= SCRAM_MAX_SALT_LEN; salt_len += 21) {
		cr_assert_eq(scram_secret_from_password("pw", salt, salt_len, 7, &a), 0);
		b64(a.salt, a.salt_len, s64);
		b64(a.stored_key, 32, st64);
		b64(a.server_key, 32, sv64);
		snprintf(text, sizeof(text), "SCRAM-SHA-256$%d:%s$%s:%s", a.iterations, s64, st64,
		         sv64);
		b = parse_ok(text);
		cr_assert_eq(b.iterations, 7);
		cr_assert_eq(b.salt_len, salt_len);
		cr_assert_arr_eq(b.salt, a.salt, salt_len);
		cr_assert_arr_eq(b.stored_key, a.stored_key, 32);
		cr_assert_arr_eq(b.server_key, a.server_key, 32);
	}
}

Test(scram_secret, postgres15_verifiers_authenticate)
{
	struct scram_secret pencil = parse_ok(PG15_PENCIL), quoted = parse_ok(PG15_QUOTED);
	struct scram_client c;
	struct scram_server s;

	cr_assert_eq(pencil.iterations, 4096);
	cr_assert_eq(pencil.salt_len, 16);
	cr_assert_eq(scram_client_init_password(&c, "pencil", NULL, NULL), 0);
	cr_assert_eq(exchange(&c, &s, &pencil), 0);
	cr_assert_eq(scram_client_init_password(&c, PG15_QUOTED_PASSWORD, NULL, NULL), 0);
	cr_assert_eq(exchange(&c, &s, &quoted), 0);
	cr_assert_eq(scram_client_init_password(&c, "pencil", NULL, NULL), 0);
	cr_assert_eq(exchange(&c, &s, &quoted), -1);
}

Test(scram_secret, malformed_verifiers_rejected)
{
	static const char *const bad[] = {
	    "",
	    "SCRAM-SHA-256",
	    "SCRAM-SHA-256$",
	    "SCRAM-SHA-1$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$0:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$99999999999:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$-1:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gR==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4q=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
	    "SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=x",
	    "SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU= ",
	    "SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=:AAAA",
	    "SCRAM-SHA-256$4096:" RFC_SALT ":WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7Bke ZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$+4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	};
	struct scram_secret s;
	char text[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(scram_secret_parse(bad[i], &s), -1, "accepted: %s", bad[i]);

	/* A 65-byte salt does not fit SCRAM_MAX_SALT_LEN. */
	uint8_t big[SCRAM_MAX_SALT_LEN + 1] = {0};
	char s64[128];

	b64(big, sizeof(big), s64);
	snprintf(text, sizeof(text),
	         "SCRAM-SHA-256$4096:%s$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	         s64);
	cr_expect_eq(scram_secret_parse(text, &s), -1);
	b64(big, SCRAM_MAX_SALT_LEN, s64);
	snprintf(text, sizeof(text),
	         "SCRAM-SHA-256$4096:%s$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	         s64);
	cr_expect_eq(scram_secret_parse(text, &s), 0);
	cr_expect_eq(scram_secret_parse(NULL, &s), -1);
}

Test(scram_secret, from_password_bounds)
{
	struct scram_secret s;
	uint8_t salt[SCRAM_MAX_SALT_LEN + 1] = {0};

	cr_assert_eq(scram_secret_from_password("pw", salt, 0, 4096, &s), -1);
	cr_assert_eq(scram_secret_from_password("pw", salt, sizeof(salt), 4096, &s), -1);
	cr_assert_eq(scram_secret_from_password("pw", NULL, 0, 0, &s), -1);
	cr_assert_eq(scram_secret_from_password(NULL, NULL, 0, 4096, &s), -1);
}

/* ---- malformed input, server role ---- */

Test(scram_malformed, client_first_every_truncation)
{
	static const char msg[] = "n,,n=,r=" RFC_CLIENT_NONCE;
	struct scram_secret sec = parse_ok(RFC_VERIFIER);
	const size_t nonce_at = strlen("n,,n=,r=");

	/* Cut inside the nonce, a message is still valid with a shorter nonce. */
	for (size_t len = 0; len < sizeof(msg) - 1; len++) {
		const char *err = NULL;
		int rc = server_first_raw(&sec, msg, len, &err);

		cr_assert_eq(rc, len > nonce_at ? 0 : -1, "prefix of %zu bytes", len);
		if (rc < 0)
			cr_assert_not_null(err);
	}
}

Test(scram_malformed, client_final_every_truncation)
{
	const char *err;
	char fin[BUF];
	size_t len;

	valid_final("", fin);
	len = strlen(fin);
	for (size_t k = 0; k < len; k++) {
		err = NULL;
		cr_assert_eq(server_final_raw(fin, k, &err), -1, "prefix of %zu bytes accepted", k);
		cr_assert_not_null(err);
	}
	cr_assert_eq(server_final_raw(fin, len, &err), 0);
}

Test(scram_malformed, client_first_rejects)
{
	static const char *const bad[] = {
	    "n,,n=,r=",           /* empty nonce */
	    "n,,n=,r=abc,",       /* trailing comma */
	    "n,,r=abc,n=",        /* attributes out of order */
	    "n,,n=,r=ab c",       /* space in nonce */
	    "n,,n=,r=ab\x7f",     /* DEL in nonce */
	    "n,,n=,r=ab\xc3\xa9", /* non-ASCII nonce */
	    "n,,n=,r=abc,1=x",    /* extension name not ALPHA */
	    "n,,n=,r=abc,x=",     /* empty extension value */
	    "n,,n=,r=abc,x",      /* extension without '=' */
	    "n,,m=ext,n=,r=abc",  /* mandatory extension */
	    "n,a=bob,n=,r=abc",   /* authzid */
	    "x,,n=,r=abc",        /* unknown cbind flag */
	    "n,n=,r=abc",         /* gs2 header too short */
	    "n,,",                /* no bare message */
	    "n,,n=",              /* no nonce */
	    "n,,n=user",          /* no nonce */
	    "n,,nn=,r=abc",       /* bad attribute name */
	    "n,,n=,s=abc",        /* wrong attribute */
	    "",                   /* empty */
	    "n",                  /* truncated */
	};
	struct scram_secret sec = parse_ok(RFC_VERIFIER);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *err = NULL;

		cr_expect_eq(server_first_raw(&sec, bad[i], strlen(bad[i]), &err), -1,
		             "accepted: %s", bad[i]);
		cr_expect_not_null(err);
	}
}

Test(scram_malformed, channel_binding_refused)
{
	static const char msg[] = "p=tls-server-end-point,,n=,r=" RFC_CLIENT_NONCE;
	struct scram_secret sec = parse_ok(RFC_VERIFIER);
	const char *err = NULL;

	cr_assert_eq(server_first_raw(&sec, msg, strlen(msg), &err), -1);
	cr_assert_not_null(strstr(err, "SCRAM-SHA-256-PLUS"), "%s", err);
}

Test(scram_malformed, nul_byte_refused)
{
	static const char msg[] = "n,,n=\0,r=abc";
	struct scram_secret sec = parse_ok(RFC_VERIFIER);
	const char *err = NULL;

	cr_assert_eq(server_first_raw(&sec, msg, sizeof(msg) - 1, &err), -1);
}

Test(scram_malformed, oversize_nonce)
{
	struct scram_secret sec = parse_ok(RFC_VERIFIER);
	const char *err = NULL;
	char *msg = malloc(10240 + 16);
	size_t len;

	cr_assert_not_null(msg);
	/* 10 KB: over SCRAM_MSG_MAX, refused before parsing. */
	len = (size_t)sprintf(msg, "n,,n=,r=");
	memset(msg + len, 'a', 10240);
	len += 10240;
	cr_assert_eq(server_first_raw(&sec, msg, len, &err), -1);
	/* Within SCRAM_MSG_MAX but over SCRAM_NONCE_MAX. */
	cr_assert_eq(server_first_raw(&sec, msg, 8 + SCRAM_NONCE_MAX + 1, &err), -1);
	cr_assert_eq(server_first_raw(&sec, msg, 8 + SCRAM_NONCE_MAX, &err), 0);
	/* A long user name that still fits is ignored; one that does not is refused. */
	memcpy(msg, "n,,n=", 5);
	memset(msg + 5, 'u', 2000);
	memcpy(msg + 2005, ",r=abc", 6);
	cr_assert_eq(server_first_raw(&sec, msg, 2011, &err), -1);
	memcpy(msg + 900, ",r=abc", 6);
	cr_assert_eq(server_first_raw(&sec, msg, 906, &err), 0);
	free(msg);
}

/* Copies tmpl into out with its '@' replaced by proof. */
static void fill_proof(const char *tmpl, const char *proof, char *out, size_t cap)
{
	const char *at = strchr(tmpl, '@');

	cr_assert_not_null(at);
	snprintf(out, cap, "%.*s%s%s", (int)(at - tmpl), tmpl, proof, at + 1);
}

Test(scram_malformed, client_final_rejects)
{
	static const char proof[] = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
	static const char *const bad[] = {
	    "c=eSws,r=CNONCESNONCE,p=@",                             /* c= of "y,," after "n,," */
	    "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=CNONCESNONCE,p=@", /* p= binding */
	    "c=biws,r=CNONCESNONCEX,p=@",                            /* nonce mismatch (longer) */
	    "c=biws,r=CNONCESNONC,p=@",                              /* nonce mismatch (shorter) */
	    "c=biws,r=CNONCE,p=@",                                   /* only the client's nonce */
	    "c=biws,r=XNONCESNONCE,p=@",                             /* nonce mismatch */
	    "r=CNONCESNONCE,c=biws,p=@",                             /* order */
	    "c=biws,r=CNONCESNONCE,p=@,x=y",                         /* attribute after proof */
	    "c=biws,r=CNONCESNONCE,p=@,",                            /* trailing comma */
	    "c=biws,r=CNONCESNONCE,p=@=",                            /* proof too long */
	    "c=biws,r=CNONCESNONCE,p=!@",                            /* proof not base64 */
	    "c=biws,r=CNONCESNONCE,,p=@",                            /* empty attribute */
	    "c=biws,r=CNONCESNONCE@",                                /* no proof */
	    "c=biws,p=@",                                            /* no nonce */
	};
	char msg[BUF];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *err = NULL;

		fill_proof(bad[i], proof, msg, sizeof(msg));
		cr_expect_eq(server_final_raw(msg, strlen(msg), &err), -1, "accepted: %s", msg);
		cr_assert_not_null(err);
		/* Refused by the parser, before any proof was checked. */
		cr_expect_null(strstr(err, "password authentication failed"), "%s: %s", msg, err);
	}
}

Test(scram_malformed, junk_after_valid_proof)
{
	static const char *const junk[] = {",x=y", ",", "=", "A", ",p=AAAA"};
	char fin[BUF], msg[BUF + 16];

	valid_final("", fin);
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		const char *err = NULL;

		snprintf(msg, sizeof(msg), "%s%s", fin, junk[i]);
		cr_expect_eq(server_final_raw(msg, strlen(msg), &err), -1, "accepted: %s", msg);
		cr_assert_not_null(err);
		cr_expect_null(strstr(err, "password authentication failed"), "%s: %s", msg, err);
	}
}

Test(scram_malformed, proof_bad_base64)
{
	static const char *const proofs[] = {
	    "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",   /* unpadded */
	    "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=",  /* non-zero trailing bits */
	    "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7And=Q=",  /* padding in the middle */
	    "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndV==",  /* 31 bytes */
	    "dHzbZapWIk4jUhN-Ute9ytag9zjfMHgsqmmiz7AndVQ=",  /* URL alphabet */
	    "dHzbZapWIk4jUhN+Ute9ytag 9zjfMHgsqmmiz7AndVQ=", /* whitespace */
	    "",
	    "====",
	};
	char msg[BUF];

	for (size_t i = 0; i < sizeof(proofs) / sizeof(proofs[0]); i++) {
		const char *err = NULL;

		snprintf(msg, sizeof(msg), "c=biws,r=CNONCESNONCE,p=%s", proofs[i]);
		cr_expect_eq(server_final_raw(msg, strlen(msg), &err), -1, "accepted: %s", msg);
		cr_assert_not_null(err);
		cr_expect_null(strstr(err, "password authentication failed"), "%s: %s", msg, err);
	}
}

Test(scram_malformed, server_state_machine)
{
	struct scram_secret sec = parse_ok(RFC_VERIFIER), empty;
	struct scram_server s;
	const char *err = NULL;
	char out[BUF], fin[BUF];

	/* Final before first. */
	scram_server_init(&s, &sec, NULL);
	valid_final("", fin);
	cr_assert_eq(scram_server_handle_final(&s, fin, strlen(fin), out, sizeof(out), &err), -1);

	/* First twice. */
	server_start(&s, &sec, "n,,n=,r=abc", out);
	cr_assert_eq(scram_server_handle_first(&s, "n,,n=,r=abc", 11, out, sizeof(out), &err), -1);

	/* One attempt only: a failed final is not retried. */
	scram_server_init(&s, &sec, "SNONCE");
	cr_assert_eq(scram_server_handle_first(&s, "n,,n=,r=CNONCE", 14, out, sizeof(out), &err),
	             0);
	cr_assert_eq(scram_server_handle_final(&s, "c=biws", 6, out, sizeof(out), &err), -1);
	cr_assert_eq(scram_server_handle_final(&s, fin, strlen(fin), out, sizeof(out), &err), -1);

	/* No usable verifier, a bad fixed nonce, or no room for the answer. */
	memset(&empty, 0, sizeof(empty));
	cr_assert_eq(server_first_raw(&empty, "n,,n=,r=abc", 11, &err), -1);
	scram_server_init(&s, &sec, "bad,nonce");
	cr_assert_eq(scram_server_handle_first(&s, "n,,n=,r=abc", 11, out, sizeof(out), &err), -1);
	scram_server_init(&s, &sec, NULL);
	cr_assert_eq(scram_server_handle_first(&s, "n,,n=,r=abc", 11, out, 10, &err), -1);
}

/* ---- malformed input, client role ---- */

Test(scram_malformed, server_first_every_truncation)
{
	static const char msg[] = RFC_SERVER_FIRST;
	const size_t iter_at = strlen(msg) - strlen("4096");

	/* Cut inside the iteration count, the message is valid with fewer iterations. */
	for (size_t len = 0; len < sizeof(msg) - 1; len++) {
		const char *err = NULL;
		int rc = client_final_raw(msg, len, &err);

		cr_assert_eq(rc > 0 ? 0 : -1, len > iter_at ? 0 : -1, "prefix of %zu bytes", len);
		if (rc < 0)
			cr_assert_not_null(err);
	}
}

Test(scram_malformed, server_first_rejects)
{
	static const char *const bad[] = {
	    "r=" RFC_CLIENT_NONCE ",s=" RFC_SALT ",i=4096",          /* nonce not extended */
	    "r=XOprNGfwEbeRWgbNEkqOabc,s=" RFC_SALT ",i=4096",       /* nonce mismatch */
	    "r=rOprNG,s=" RFC_SALT ",i=4096",                        /* shorter nonce */
	    "r=" RFC_NONCE ",s=" RFC_SALT ",i=0",                    /* zero iterations */
	    "r=" RFC_NONCE ",s=" RFC_SALT ",i=10000001",             /* too many */
	    "r=" RFC_NONCE ",s=" RFC_SALT ",i=99999999999999999999", /* overflow */
	    "r=" RFC_NONCE ",s=" RFC_SALT ",i=-4096",
	    "r=" RFC_NONCE ",s=" RFC_SALT ",i=+4096",
	    "r=" RFC_NONCE ",s=" RFC_SALT ",i=04096",
	    "r=" RFC_NONCE ",s=" RFC_SALT ",i=4096x",
	    "r=" RFC_NONCE ",s=" RFC_SALT ",i=",
	    "r=" RFC_NONCE ",s=" RFC_SALT,
	    "r=" RFC_NONCE ",s=,i=4096",                         /* empty salt */
	    "r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096",  /* bad padding */
	    "r=" RFC_NONCE ",s=W22Z*J0SNY7soEsUEjb6gQ==,i=4096", /* bad character */
	    "r=" RFC_NONCE ",i=4096,s=" RFC_SALT,                /* order */
	    "m=x,r=" RFC_NONCE ",s=" RFC_SALT ",i=4096",         /* mandatory extension */
	    "r=" RFC_NONCE ",s=" RFC_SALT ",i=4096,",            /* trailing comma */
	    "e=other-error",
	    "",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *err = NULL;

		cr_expect_eq(client_final_raw(bad[i], strlen(bad[i]), &err), -1, "accepted: %s",
		             bad[i]);
		cr_expect_not_null(err);
	}
}

Test(scram_malformed, server_first_oversize)
{
	char *msg = malloc(10240 + 128);
	const char *err = NULL;
	size_t len;

	cr_assert_not_null(msg);
	len = (size_t)sprintf(msg, "r=" RFC_CLIENT_NONCE);
	memset(msg + len, 'a', 10240);
	len += 10240;
	len += (size_t)sprintf(msg + len, ",s=" RFC_SALT ",i=4096");
	cr_assert_eq(client_final_raw(msg, len, &err), -1);

	/* A salt over SCRAM_MAX_SALT_LEN (65 bytes) in a message that fits. */
	uint8_t big[SCRAM_MAX_SALT_LEN + 1] = {0};
	char s64[128];

	b64(big, sizeof(big), s64);
	len = (size_t)sprintf(msg, "r=%s,s=%s,i=4096", RFC_NONCE, s64);
	cr_assert_eq(client_final_raw(msg, len, &err), -1);
	free(msg);
}

Test(scram_malformed, server_final_rejects)
{
	static const char *const bad[] = {
	    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=",  /* wrong signature */
	    "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",  /* wrong signature */
	    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4",   /* unpadded */
	    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,", /* trailing comma */
	    "v=",
	    "v",
	    "",
	    "e=invalid-proof",
	    "e=unknown-user",
	    "e=other-error",
	    "e=",
	    "x=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct scram_client c;
		const char *err = NULL;
		char *copy = dup_exact(bad[i], strlen(bad[i]));

		client_after_rfc_final(&c);
		cr_expect_eq(scram_client_verify_server(&c, copy, strlen(bad[i]), &err), -1,
		             "accepted: %s", bad[i]);
		cr_expect_not_null(err);
		free(copy);
	}
}

Test(scram_malformed, server_final_error_reported)
{
	struct scram_client c;
	const char *err = NULL;

	client_after_rfc_final(&c);
	cr_assert_eq(scram_client_verify_server(&c, "e=invalid-proof", 15, &err), -1);
	cr_assert_not_null(strstr(err, "rejected"), "%s", err);
}

Test(scram_malformed, server_final_every_truncation)
{
	static const char msg[] = RFC_SERVER_FINAL;

	for (size_t len = 0; len < sizeof(msg) - 1; len++) {
		struct scram_client c;
		const char *err = NULL;
		char *copy = dup_exact(msg, len);

		client_after_rfc_final(&c);
		cr_assert_eq(scram_client_verify_server(&c, copy, len, &err), -1);
		free(copy);
	}
}

Test(scram_malformed, client_state_and_init)
{
	struct scram_client c;
	const char *err = NULL;
	char out[BUF], big[300];
	uint8_t key[SCRAM_KEY_LEN] = {0};

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(scram_client_init_password(&c, big, NULL, NULL), -1);
	cr_assert_eq(scram_client_init_password(&c, "pw", "bad nonce", NULL), -1);
	cr_assert_eq(scram_client_init_password(&c, "pw", "", NULL), -1);
	scram_client_init_keys(&c, key, key, "bad,nonce");
	cr_assert_eq(scram_client_first(&c, out, sizeof(out)), -1);

	cr_assert_eq(scram_client_init_password(&c, "pw", "abc", NULL), 0);
	cr_assert_eq(scram_client_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out,
	                                sizeof(out), &err),
	             -1);
	cr_assert_eq(
	    scram_client_verify_server(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err), -1);
	cr_assert_eq(scram_client_first(&c, out, 5), -1);
	cr_assert_eq(scram_client_first(&c, out, sizeof(out)), 11);
	cr_assert_eq(scram_client_first(&c, out, sizeof(out)), -1);
	/* No room for client-final. */
	cr_assert_eq(scram_client_final(&c, "r=abcdef,s=" RFC_SALT ",i=1", 39, out, 40, &err), -1);
}
