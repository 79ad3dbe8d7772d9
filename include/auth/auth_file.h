/*
 * Client credentials: the auth_file (PgBouncer's userlist.txt format) and the
 * password hashing helpers for md5.  SCRAM lives in auth_scram.h.
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN      32 /* SHA-256 output */
#define SCRAM_MAX_SALT_LEN 64
#define MD5_PASSWD_LEN     35 /* "md5" + 32 hex digits, without the NUL */

enum secret_kind { SECRET_PLAIN, SECRET_MD5, SECRET_SCRAM };

/* A SCRAM-SHA-256 verifier as Postgres stores it: SCRAM-SHA-256$iter:salt$StoredKey:ServerKey */
struct scram_secret {
	int iterations;                    /* PBKDF2 rounds sent to clients; 0 = no verifier */
	uint8_t salt[SCRAM_MAX_SALT_LEN];  /* PBKDF2 salt, first salt_len bytes used */
	size_t salt_len;                   /* 1..SCRAM_MAX_SALT_LEN in a valid verifier */
	uint8_t stored_key[SCRAM_KEY_LEN]; /* H(ClientKey): checks a client's proof */
	uint8_t server_key[SCRAM_KEY_LEN]; /* signs server-final; password-equivalent */
};

struct user_secret {
	char *user;                   /* role name, compared exactly */
	enum secret_kind kind;        /* what the auth_file line held */
	char *plain;                  /* SECRET_PLAIN: the password itself */
	char md5[MD5_PASSWD_LEN + 1]; /* SECRET_MD5: "md5..." (also filled for PLAIN) */
	struct scram_secret scram;    /* SECRET_SCRAM (also derived for PLAIN) */
};

struct auth_file {
	struct user_secret *users; /* one entry per distinct user, in file order */
	size_t count;              /* entries used in users */
};

/*
 * Parse a userlist file: lines of `"user" "secret"`, `;`/`#` comments, `""`
 * inside quotes for a literal quote.  A secret starting with "md5" + 32 hex is
 * an md5 hash, "SCRAM-SHA-256$" a verifier, anything else a plain password.
 * A later line for the same user replaces an earlier one; an empty user name
 * or password is an error.  On error returns -1 and writes "PATH:LINE: message"
 * into err.  *out is overwritten either way (empty on error).
 */
int auth_file_load(const char *path, struct auth_file *out, char *err, size_t errlen);
/*
 * One secret as a userlist line would give it (md5 hash, SCRAM verifier or
 * plain password), for credentials from elsewhere (auth_query).  Returns 0,
 * or -1 when it is empty or malformed.
 */
int user_secret_from_text(struct user_secret *u, const char *user, const char *secret);
void user_secret_free(struct user_secret *u);
/* Add one user with a plain password (used for --upstream / DATABASE_URL). */
int auth_file_add_plain(struct auth_file *af, const char *user, const char *password);
void auth_file_fini(struct auth_file *af);
const struct user_secret *auth_file_find(const struct auth_file *af, const char *user);

/* "md5" + hex(md5(password || user)), as stored in pg_authid. */
void md5_password_hash(const char *password, const char *user, char out[MD5_PASSWD_LEN + 1]);
/* Response to AuthenticationMD5Password: "md5" + hex(md5(hex_part_of(md5hash) || salt)). */
void md5_salted_response(const char *md5hash, const uint8_t salt[4], char out[MD5_PASSWD_LEN + 1]);

/* Constant-time comparison for secrets. */
bool secret_equal(const void *a, const void *b, size_t len);

#endif
