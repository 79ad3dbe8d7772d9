/*
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) with OpenSSL primitives, both roles:
 * sluice is the SCRAM server for its clients and the SCRAM client towards
 * Postgres.  No channel binding (gs2 header "n,," or "y,," only).
 * Passwords are used as given (no SASLprep), like Postgres does for
 * passwords that SASLprep would reject; ASCII passwords are unaffected.
 */
#ifndef SLUICE_AUTH_SCRAM_H
#define SLUICE_AUTH_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth_file.h"

#define SCRAM_MECHANISM  "SCRAM-SHA-256"
#define SCRAM_NONCE_MAX  128
#define SCRAM_MSG_MAX    1024 /* any SCRAM message longer than this is refused */
#define SCRAM_ITERATIONS 4096

/* Derive a verifier from a password; salt NULL = 16 random bytes. */
int scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
                               int iterations, struct scram_secret *out);
/* Parse "SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>". */
int scram_secret_parse(const char *text, struct scram_secret *out);

enum scram_server_state { SCRAM_SERVER_INIT, SCRAM_SERVER_SENT_FIRST, SCRAM_SERVER_DONE };

struct scram_server {
	enum scram_server_state state;       /* one exchange only: DONE after final */
	struct scram_secret secret;          /* the user's verifier (copied at init) */
	char nonce[2 * SCRAM_NONCE_MAX + 1]; /* client nonce + server nonce */
	char cbind_flag;                     /* 'n' or 'y' from the gs2 header; c= echoes it */
	char client_first_bare[SCRAM_MSG_MAX + 1]; /* first part of the AuthMessage */
	char server_first[SCRAM_MSG_MAX + 1];      /* second part of the AuthMessage */
	uint8_t client_key[SCRAM_KEY_LEN];         /* recovered from the proof on success */
};

/* server_nonce NULL = random (tests pass RFC 7677's). */
void scram_server_init(struct scram_server *s, const struct scram_secret *secret,
                       const char *server_nonce);
/*
 * Client-first-message (the SASLInitialResponse data) in; server-first-message
 * out (NUL-terminated, fits SCRAM_MSG_MAX).  Returns 0, or -1 with *errmsg set
 * to a client-safe reason (malformed message, channel binding requested, ...).
 */
int scram_server_handle_first(struct scram_server *s, const char *msg, size_t len, char *out,
                              size_t outcap, const char **errmsg);
/*
 * Client-final-message in; server-final-message ("v=...") out.  Returns 0 when
 * the proof is valid (client_key filled), -1 otherwise (*errmsg set).
 */
int scram_server_handle_final(struct scram_server *s, const char *msg, size_t len, char *out,
                              size_t outcap, const char **errmsg);

/*
 * ClientKey and ServerKey derived from a password, by what they were derived
 * from: the salt, the iteration count and the password's SHA-256.  A role's
 * salt is fixed in pg_authid, so every server login of a user after the first
 * finds its keys here and skips PBKDF2 (4096 HMAC rounds, some 2 ms of CPU
 * on a loaded core), which a connection storm, a failover's reconnections or
 * logins to many databases would otherwise pay per connection.  Holding the
 * keys is no more than holding the password, which sluice has anyway; both
 * are wiped with the cache.  One per worker, not locked.
 */
#define SCRAM_KEY_CACHE_SIZE 16

struct scram_key_cache {
	struct scram_cached_keys {
		bool used;
		uint8_t salt_len;
		int iterations;
		uint8_t salt[SCRAM_MAX_SALT_LEN];
		uint8_t password_hash[SCRAM_KEY_LEN]; /* SHA-256 of the password */
		uint8_t client_key[SCRAM_KEY_LEN];
		uint8_t server_key[SCRAM_KEY_LEN];
	} keys[SCRAM_KEY_CACHE_SIZE];
	unsigned next; /* the entry a new derivation takes (round robin) */
};

/* Wipes every entry; the cache may be used again afterwards. */
void scram_key_cache_wipe(struct scram_key_cache *kc);

enum scram_client_state { SCRAM_CLIENT_INIT, SCRAM_CLIENT_SENT_FIRST, SCRAM_CLIENT_SENT_FINAL };

struct scram_client {
	enum scram_client_state state;          /* first, final, verify: in order */
	bool have_password;                     /* password mode, else pass-through keys */
	char password[256];                     /* password mode; wiped after final */
	uint8_t client_key[SCRAM_KEY_LEN];      /* pass-through: known keys instead of password */
	uint8_t server_key[SCRAM_KEY_LEN];      /* pass-through; wiped after final */
	char client_nonce[SCRAM_NONCE_MAX + 1]; /* empty if init failed: first refuses */
	char client_first_bare[SCRAM_MSG_MAX + 1];        /* first part of the AuthMessage */
	uint8_t expected_server_signature[SCRAM_KEY_LEN]; /* what server-final's v= must hold */
	struct scram_key_cache *key_cache; /* password mode: derived keys kept; NULL = none */
};

/*
 * client_nonce NULL = random (tests pass RFC 7677's).  key_cache: keys derived
 * before for the server's salt are taken from it, new ones kept there; NULL =
 * derive every time.
 */
int scram_client_init_password(struct scram_client *c, const char *password,
                               const char *client_nonce, struct scram_key_cache *key_cache);
/* Pass-through login with the ClientKey recovered from a client and the ServerKey. */
void scram_client_init_keys(struct scram_client *c, const uint8_t client_key[SCRAM_KEY_LEN],
                            const uint8_t server_key[SCRAM_KEY_LEN], const char *client_nonce);
/* "n,,n=,r=<nonce>" into out (NUL-terminated); returns its length or -1. */
int scram_client_first(struct scram_client *c, char *out, size_t outcap);
/* Server-first in, client-final out; returns its length or -1 (*errmsg set). */
int scram_client_final(struct scram_client *c, const char *server_first, size_t len, char *out,
                       size_t outcap, const char **errmsg);
/* Server-final in: 0 if the server proved it knows the verifier, else -1. */
int scram_client_verify_server(struct scram_client *c, const char *server_final, size_t len,
                               const char **errmsg);

#endif
