/*
 * redis_url parsing; see redis_url.h.  Hand-written rather than libpq's URL
 * parser (which knows only postgres://) or hiredis' (which has none): the
 * grammar is small and every error must name what is wrong without echoing
 * a password.
 */
#include "config/redis_url.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define REDIS_DEFAULT_PORT 6379
#define REDIS_MAX_DB       1000000 /* databases is a server setting; past this is a typo */

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes [from, to) with %XX escapes into `out`; -1 on a bad escape, NUL or overflow. */
static int decode(const char *from, const char *to, char *out, size_t outlen)
{
	size_t n = 0;

	for (const char *p = from; p < to; p++) {
		int c = (unsigned char)*p;

		if (c == '%') {
			int hi;

			if (to - p < 3 || (hi = hex_value(p[1])) < 0 || hex_value(p[2]) < 0)
				return -1;
			c = hi * 16 + hex_value(p[2]);
			p += 2;
		}
		if (c == 0 || n + 1 >= outlen)
			return -1;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

/* Digits only, within [lo, hi]. */
static int parse_number(const char *from, const char *to, long lo, long hi, int *out)
{
	long v = 0;

	if (from == to)
		return -1;
	for (const char *p = from; p < to; p++) {
		if (!isdigit((unsigned char)*p) || v > hi)
			return -1;
		v = v * 10 + (*p - '0');
	}
	if (v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

static int parse_userinfo(const char *from, const char *to, struct redis_url *out, char *msg,
                          size_t len)
{
	const char *colon = memchr(from, ':', (size_t)(to - from));
	const char *user_end = colon != NULL ? colon : to;

	if (decode(from, user_end, out->user, sizeof(out->user)) < 0) {
		snprintf(msg, len, "bad user name (a %%XX escape, or longer than %d bytes)",
		         REDIS_URL_CRED_MAX - 1);
		return -1;
	}
	if (colon != NULL && decode(colon + 1, to, out->password, sizeof(out->password)) < 0) {
		snprintf(msg, len, "bad password (a %%XX escape, or longer than %d bytes)",
		         REDIS_URL_CRED_MAX - 1);
		return -1;
	}
	if (out->user[0] != '\0' && out->password[0] == '\0') {
		snprintf(msg, len, "a user name needs a password (redis://user:password@host)");
		return -1;
	}
	return 0;
}

static int parse_hostport(const char *from, const char *to, struct redis_url *out, char *msg,
                          size_t len)
{
	const char *host = from, *host_end, *port = NULL;

	if (from < to && *from == '[') {
		host = from + 1;
		host_end = memchr(host, ']', (size_t)(to - host));
		if (host_end == NULL || (host_end + 1 < to && host_end[1] != ':')) {
			snprintf(msg, len, "bad IPv6 address: write it as [addr]:port");
			return -1;
		}
		if (host_end + 1 < to)
			port = host_end + 2;
	} else {
		host_end = memchr(from, ':', (size_t)(to - from));
		if (host_end != NULL)
			port = host_end + 1;
		else
			host_end = to;
	}
	if (host == host_end || (size_t)(host_end - host) >= sizeof(out->host)) {
		snprintf(msg, len, "no host, or a host name longer than %d bytes",
		         REDIS_URL_HOST_MAX - 1);
		return -1;
	}
	for (const char *p = host; p < host_end; p++) {
		if (!isalnum((unsigned char)*p) && strchr(".-_:%", *p) == NULL) {
			snprintf(msg, len, "bad character in the host name");
			return -1;
		}
	}
	memcpy(out->host, host, (size_t)(host_end - host));
	out->host[host_end - host] = '\0';
	out->port = REDIS_DEFAULT_PORT;
	if (port != NULL && parse_number(port, to, 1, 65535, &out->port) < 0) {
		snprintf(msg, len, "bad port: a number from 1 to 65535");
		return -1;
	}
	return 0;
}

int redis_url_parse(const char *text, struct redis_url *out, char *msg, size_t len)
{
	const char *p, *auth_end, *at = NULL;

	memset(out, 0, sizeof(*out));
	if (strncasecmp(text, "redis://", 8) == 0) {
		p = text + 8;
	} else if (strncasecmp(text, "rediss://", 9) == 0) {
		out->tls = true;
		p = text + 9;
	} else {
		snprintf(msg, len, "must start with redis:// or rediss://");
		return -1;
	}
	if (strpbrk(p, "?#") != NULL) {
		snprintf(msg, len, "query parameters and fragments are not supported");
		return -1;
	}
	auth_end = p + strcspn(p, "/");
	for (const char *q = p; q < auth_end; q++)
		if (*q == '@')
			at = q; /* the last one: an unescaped '@' in a password stays in it */
	if (at != NULL && parse_userinfo(p, at, out, msg, len) < 0)
		return -1;
	if (parse_hostport(at != NULL ? at + 1 : p, auth_end, out, msg, len) < 0)
		return -1;
	if (*auth_end == '/' && auth_end[1] != '\0' &&
	    parse_number(auth_end + 1, auth_end + strlen(auth_end), 0, REDIS_MAX_DB, &out->db) <
	        0) {
		snprintf(msg, len, "bad database: /N with N a number from 0 to %d", REDIS_MAX_DB);
		return -1;
	}
	return 0;
}

void redis_url_mask(const char *text, char *buf, size_t len)
{
	const char *scheme = strstr(text, "://");
	const char *start = scheme != NULL ? scheme + 3 : text;
	const char *auth_end = start + strcspn(start, "/"), *at = NULL, *colon;

	for (const char *q = start; q < auth_end; q++)
		if (*q == '@')
			at = q;
	colon = at != NULL ? memchr(start, ':', (size_t)(at - start)) : NULL;
	if (colon == NULL) {
		snprintf(buf, len, "%s", text);
		return;
	}
	snprintf(buf, len, "%.*s:********%s", (int)(colon - text), text, at);
}
