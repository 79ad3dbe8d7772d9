/*
 * redis_url for limiter = redis: `redis://[[user]:password@]host[:port][/db]`
 * or `rediss://` for TLS.  Parsed when the configuration is validated, so a
 * bad URL is a configuration error at start or reload, and again where the
 * connection is made (limit/redis_link.c), from the same text.  Passwords
 * never reach an error message or SHOW CONFIG (redis_url_mask).
 */
#ifndef SLUICE_CONFIG_REDIS_URL_H
#define SLUICE_CONFIG_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

#define REDIS_URL_HOST_MAX 256
#define REDIS_URL_CRED_MAX 256

struct redis_url {
	bool tls;                          /* rediss:// */
	char host[REDIS_URL_HOST_MAX];     /* name or address; an IPv6 address without brackets */
	int port;                          /* 6379 when not given */
	int db;                            /* SELECT after connecting; 0 when not given */
	char user[REDIS_URL_CRED_MAX];     /* ACL user; "" = AUTH with the password only */
	char password[REDIS_URL_CRED_MAX]; /* "" = no AUTH */
};

/*
 * Fills `out` from `text`; percent-escapes in user and password are decoded.
 * Returns 0, or -1 with `msg` saying what is wrong (the password masked).
 */
int redis_url_parse(const char *text, struct redis_url *out, char *msg, size_t len);
/* `text` with the password, if any, replaced by "********", for display. */
void redis_url_mask(const char *text, char *buf, size_t len);

#endif
