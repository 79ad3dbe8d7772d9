/*
 * Client credentials: loading the auth_file (PgBouncer's userlist.txt format)
 * into a table of user secrets, looking users up, and the md5 password
 * helpers.  Plain passwords are expanded at load time into an md5 hash and a
 * SCRAM verifier, so every auth method can be served from any plain entry
 * without keeping work for the login path.
 */
#include "auth/auth_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth/scram.h"

/* The smallest users array; it then doubles whenever count reaches a power of two. */
#define AUTH_FILE_MIN_CAP 8

bool secret_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

/*
 * "md5" + hex(md5(a || b)) into out.  MD5 may be unavailable (a FIPS
 * provider); then out is "", which never equals a client's response.
 */
static void md5_hex_concat(const void *a, size_t alen, const void *b, size_t blen,
                           char out[MD5_PASSWD_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	bool ok;

	ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, a, alen) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1 &&
	     EVP_DigestFinal_ex(ctx, digest, &dlen) == 1 && dlen == 16;
	EVP_MD_CTX_free(ctx);
	out[0] = '\0';
	if (!ok)
		return;
	memcpy(out, "md5", 3);
	for (unsigned int i = 0; i < 16; i++) {
		out[3 + 2 * i] = hex[digest[i] >> 4];
		out[3 + 2 * i + 1] = hex[digest[i] & 15];
	}
	out[MD5_PASSWD_LEN] = '\0';
	OPENSSL_cleanse(digest, sizeof(digest));
}

void md5_password_hash(const char *password, const char *user, char out[MD5_PASSWD_LEN + 1])
{
	md5_hex_concat(password, strlen(password), user, strlen(user), out);
}

/*
 * Postgres accepts only lowercase hex in a stored md5 hash (anything else is a
 * plain password), and clients hash the lowercase text, so we do the same.
 */
static bool is_md5_hash(const char *s)
{
	if (strncmp(s, "md5", 3) != 0 || strlen(s) != MD5_PASSWD_LEN)
		return false;
	for (const char *p = s + 3; *p; p++) {
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	}
	return true;
}

void md5_salted_response(const char *md5hash, const uint8_t salt[4], char out[MD5_PASSWD_LEN + 1])
{
	/* A malformed stored hash yields "", so no response can ever match it. */
	if (!is_md5_hash(md5hash)) {
		out[0] = '\0';
		return;
	}
	md5_hex_concat(md5hash + 3, MD5_PASSWD_LEN - 3, salt, 4, out);
}

const struct user_secret *auth_file_find(const struct auth_file *af, const char *user)
{
	for (size_t i = 0; i < af->count; i++) {
		if (strcmp(af->users[i].user, user) == 0)
			return &af->users[i];
	}
	return NULL;
}

static void user_secret_fini(struct user_secret *u)
{
	if (u->plain) {
		OPENSSL_cleanse(u->plain, strlen(u->plain));
		free(u->plain);
	}
	free(u->user);
	/* The md5 hash and the SCRAM keys are password-equivalent for their methods. */
	OPENSSL_cleanse(u, sizeof(*u));
}

void auth_file_fini(struct auth_file *af)
{
	for (size_t i = 0; i < af->count; i++)
		user_secret_fini(&af->users[i]);
	free(af->users);
	af->users = NULL;
	af->count = 0;
}

/*
 * Fills u from a user name and a secret.  With classify, the secret is read in
 * auth_file syntax (md5 hash, SCRAM verifier or plain password); without, it
 * is always a plain password.  Copies both strings.  Returns 0, or -1 with
 * *why set.
 */
static int user_secret_init(struct user_secret *u, const char *user, const char *secret,
                            bool classify, const char **why)
{
	memset(u, 0, sizeof(*u));
	*why = "out of memory";
	if (!(u->user = strdup(user)))
		goto fail;
	if (classify && is_md5_hash(secret)) {
		u->kind = SECRET_MD5;
		memcpy(u->md5, secret, MD5_PASSWD_LEN + 1);
		return 0;
	}
	if (classify && strncmp(secret, SCRAM_MECHANISM "$", strlen(SCRAM_MECHANISM) + 1) == 0) {
		u->kind = SECRET_SCRAM;
		*why = "invalid SCRAM-SHA-256 verifier";
		if (scram_secret_parse(secret, &u->scram) < 0)
			goto fail;
		return 0;
	}
	u->kind = SECRET_PLAIN;
	if (!(u->plain = strdup(secret)))
		goto fail;
	md5_password_hash(secret, user, u->md5);
	/* A fresh random salt per load, so that SCRAM clients can log in with a plain entry. */
	*why = "cannot derive password hashes";
	if (u->md5[0] == '\0' ||
	    scram_secret_from_password(secret, NULL, 0, SCRAM_ITERATIONS, &u->scram) < 0)
		goto fail;
	return 0;
fail:
	user_secret_fini(u);
	return -1;
}

/*
 * Adds u, or replaces an existing entry for the same user: a later line wins,
 * as it would when reading the file top to bottom, and auth_file_add_plain can
 * override a file entry.  Takes ownership of u's contents on success.
 */
static int auth_file_put(struct auth_file *af, struct user_secret *u)
{
	struct user_secret *old = NULL;
	size_t n = af->count;

	for (size_t i = 0; i < n && !old; i++) {
		if (strcmp(af->users[i].user, u->user) == 0)
			old = &af->users[i];
	}
	if (old) {
		user_secret_fini(old);
		*old = *u;
		return 0;
	}
	/* Capacity is implicit: grow when count is 0 or a power of two >= the minimum. */
	if (n == 0 || (n >= AUTH_FILE_MIN_CAP && (n & (n - 1)) == 0)) {
		size_t cap = n == 0 ? AUTH_FILE_MIN_CAP : 2 * n;
		struct user_secret *users = realloc(af->users, cap * sizeof(*users));

		if (!users)
			return -1;
		af->users = users;
	}
	af->users[n] = *u;
	af->count = n + 1;
	return 0;
}

int user_secret_from_text(struct user_secret *u, const char *user, const char *secret)
{
	const char *why;

	if (user == NULL || secret == NULL || user[0] == '\0' || secret[0] == '\0')
		return -1;
	return user_secret_init(u, user, secret, true, &why);
}

void user_secret_free(struct user_secret *u)
{
	user_secret_fini(u);
}

int auth_file_add_plain(struct auth_file *af, const char *user, const char *password)
{
	struct user_secret u;
	const char *why;

	if (user == NULL || password == NULL || user[0] == '\0')
		return -1;
	/* The password comes from a URL or flag: it is literal even if it looks like a hash. */
	if (user_secret_init(&u, user, password, false, &why) < 0)
		return -1;
	if (auth_file_put(af, &u) < 0) {
		user_secret_fini(&u);
		return -1;
	}
	return 0;
}

/*
 * Reads one `"..."` token at *pp, where `""` stands for a literal quote, into
 * a new string.  Returns it and moves *pp past the closing quote, or returns
 * NULL with *why set.
 */
static char *parse_quoted(const char **pp, const char **why)
{
	const char *p = *pp + 1;
	size_t len = 0;
	char *out, *o;

	for (const char *q = p;; q++) {
		if (*q == '\0') {
			*why = "unterminated quoted string";
			return NULL;
		}
		if (*q == '"' && q[1] != '"')
			break;
		if (*q == '"')
			q++;
		len++;
	}
	if (!(out = malloc(len + 1))) {
		*why = "out of memory";
		return NULL;
	}
	for (o = out; o < out + len; p++) {
		*o++ = *p;
		if (*p == '"')
			p++;
	}
	*o = '\0';
	*pp = p + 1;
	return out;
}

static const char *skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/*
 * One line: `"user" "secret"` and anything after it ignored.  Blank and
 * comment lines leave *user NULL.  Returns 0, or -1 with *why set.
 */
static int parse_line(const char *line, char **user, char **secret, const char **why)
{
	const char *p = skip_blanks(line);

	*user = *secret = NULL;
	if (*p == '\0' || *p == ';' || *p == '#')
		return 0;
	if (*p != '"') {
		*why = "expected a quoted user name";
		return -1;
	}
	if (!(*user = parse_quoted(&p, why)))
		return -1;
	p = skip_blanks(p);
	if (*p == '\0' || *p == ';' || *p == '#')
		*why = "missing password";
	else if (*p != '"')
		*why = "expected a quoted password";
	else if ((*secret = parse_quoted(&p, why)) != NULL)
		return 0;
	free(*user);
	*user = NULL;
	return -1;
}

/*
 * Validates and stores one parsed line.  An empty user cannot log in, and an
 * empty password is refused rather than guessed at: Postgres never accepts
 * one, and treating it as "any password" would be a silent hole.
 */
static int auth_file_add_line(struct auth_file *af, const char *user, const char *secret,
                              const char **why)
{
	struct user_secret u;

	if (user[0] == '\0') {
		*why = "empty user name";
		return -1;
	}
	if (secret[0] == '\0') {
		*why = "empty password";
		return -1;
	}
	if (user_secret_init(&u, user, secret, true, why) < 0)
		return -1;
	if (auth_file_put(af, &u) < 0) {
		user_secret_fini(&u);
		*why = "out of memory";
		return -1;
	}
	return 0;
}

static void free_secret_string(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* Parses every line of f into af; returns 0, or the failing line number with *why set. */
static long auth_file_read(FILE *f, struct auth_file *af, const char **why)
{
	char *line = NULL, *user, *secret;
	size_t cap = 0;
	ssize_t n;
	long lineno = 0, bad = 0;

	while (!bad && (n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		user = secret = NULL;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		/* An embedded NUL would silently cut the line short. */
		if (strlen(line) != (size_t)n) {
			*why = "NUL byte in line";
			bad = lineno;
		} else if (parse_line(line, &user, &secret, why) < 0) {
			bad = lineno;
		} else if (user && auth_file_add_line(af, user, secret, why) < 0) {
			bad = lineno;
		}
		free(user);
		free_secret_string(secret);
	}
	if (!bad && ferror(f)) {
		*why = strerror(errno);
		bad = lineno + 1;
	}
	if (line)
		OPENSSL_cleanse(line, cap);
	free(line);
	return bad;
}

/*
 * *out is always overwritten: filled on success, left empty on failure, so
 * auth_file_fini is safe either way.  A reload should load into a fresh
 * struct and swap it in only on success.
 */
int auth_file_load(const char *path, struct auth_file *out, char *err, size_t errlen)
{
	struct auth_file af = {NULL, 0};
	const char *why = NULL;
	FILE *f;
	long bad;

	out->users = NULL;
	out->count = 0;
	if (!(f = fopen(path, "r"))) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	bad = auth_file_read(f, &af, &why);
	fclose(f);
	if (bad) {
		if (err && errlen)
			snprintf(err, errlen, "%s:%ld: %s", path, bad, why);
		auth_file_fini(&af);
		return -1;
	}
	*out = af;
	return 0;
}
