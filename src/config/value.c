/*
 * Typed values: one parser and one printer for every option type; see
 * value.h.  config_set and config_format_value, declared in config.h, are
 * the way in for the rest of the program.
 */
#include "config/value.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "config/msg.h"
#include "config/redis_url.h"

#define NKEYS(table) (sizeof(table) / sizeof((table)[0]))

/* Frees a string that may hold a secret, wiping it first. */
void value_free_secret(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

const char *value_skip_space(const char *p)
{
	while (isspace((unsigned char)*p))
		p++;
	return p;
}

/* Whole integer in `base`, optional blanks around it; no sign, no junk. */
static int parse_int(const char *text, int base, int64_t *out)
{
	const char *p = value_skip_space(text);
	char *end;
	long long v;

	if (!isdigit((unsigned char)*p))
		return -1;
	errno = 0;
	v = strtoll(p, &end, base);
	if (errno != 0 || *value_skip_space(end) != '\0')
		return -1;
	*out = v;
	return 0;
}

void *value_field(const struct config *cfg, const struct config_option *opt)
{
	return (char *)cfg + opt->offset;
}

/* A number of an INT, OCTAL, DURATION or SIZE option as it would be written. */
void value_format_number(enum config_type type, int64_t v, char *buf, size_t len)
{
	if (type == CONFIG_DURATION)
		config_format_duration(v, buf, len);
	else if (type == CONFIG_SIZE)
		config_format_size(v, buf, len);
	else if (type == CONFIG_OCTAL)
		snprintf(buf, len, "%#llo", (unsigned long long)v);
	else
		snprintf(buf, len, "%lld", (long long)v);
}

/* Appends "an integer from 1 to 256", "session, transaction, statement", ... */
static void describe_expected(const struct config_option *spec, char *msg, size_t len)
{
	const char *noun = "an integer", *units = "";
	char lo[32], hi[32];

	if (spec->type == CONFIG_DURATION) {
		noun = "a duration";
		units = " with unit us, ms, s, min, h or d";
	} else if (spec->type == CONFIG_SIZE) {
		noun = "a size";
		units = " with unit kB, MB or GB";
	} else if (spec->type == CONFIG_OCTAL) {
		noun = "an octal mode";
	}
	if (spec->type == CONFIG_BOOL) {
		msg_append(msg, len, "on/off, true/false, yes/no or 1/0");
	} else if (spec->type == CONFIG_ENUM) {
		for (const char *const *n = spec->enum_names; *n != NULL; n++)
			msg_append(msg, len, "%s%s", n == spec->enum_names ? "" : ", ", *n);
	} else if (spec->type == CONFIG_STRING) {
		msg_append(msg, len, "text");
	} else {
		value_format_number(spec->type, spec->min, lo, sizeof(lo));
		value_format_number(spec->type, spec->max, hi, sizeof(hi));
		msg_append(msg, len, "%s from %s to %s%s", noun, lo, hi, units);
		if (spec->takes_auto)
			msg_append(msg, len, ", or auto");
	}
}

static int parse_bool(const char *text, int *out)
{
	static const char *const yes[] = {"on", "true", "yes", "1"};
	static const char *const no[] = {"off", "false", "no", "0"};

	for (size_t i = 0; i < NKEYS(yes); i++) {
		if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
			*out = strcasecmp(text, yes[i]) == 0;
			return 0;
		}
	}
	return -1;
}

/* Number-like types; 0 on success, -1 when `text` is not a valid value. */
static int parse_number(const struct config_option *spec, const char *text, void *field)
{
	int64_t v;
	int rc;

	if (spec->type == CONFIG_BOOL)
		return parse_bool(text, field);
	if (spec->type == CONFIG_DURATION)
		rc = config_parse_duration(text, &v);
	else if (spec->type == CONFIG_SIZE)
		rc = config_parse_size(text, &v);
	else
		rc = parse_int(text, spec->type == CONFIG_OCTAL ? 8 : 10, &v);
	if (rc < 0 || v < spec->min || v > spec->max)
		return -1;
	if (spec->type == CONFIG_DURATION || spec->type == CONFIG_SIZE)
		*(int64_t *)field = v;
	else
		*(int *)field = (int)v;
	return 0;
}

/*
 * Stores `text` into `field` as `spec` describes.  On error writes a message
 * without any location prefix (callers add file:line or the variable name).
 */
int value_parse(const struct config_option *spec, const char *text, void *field, char *msg,
                size_t len)
{
	char *copy;

	if (spec->type == CONFIG_STRING) {
		if ((copy = strdup(text)) == NULL) {
			snprintf(msg, len, "out of memory");
			return -1;
		}
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	}
	if (spec->type == CONFIG_ENUM) {
		for (int i = 0; spec->enum_names[i] != NULL; i++) {
			if (strcasecmp(text, spec->enum_names[i]) == 0) {
				*(int *)field = i;
				return 0;
			}
		}
	} else if (spec->takes_auto && strcasecmp(text, "auto") == 0) {
		*(int *)field = 0;
		return 0;
	} else if (parse_number(spec, text, field) == 0) {
		return 0;
	}
	snprintf(msg, len, "invalid value '%.100s' (expected ", text);
	describe_expected(spec, msg, len);
	msg_append(msg, len, ")");
	return -1;
}

void config_format_value(const struct config *cfg, const struct config_option *opt, char *buf,
                         size_t len)
{
	const void *field = value_field(cfg, opt);

	switch (opt->type) {
	case CONFIG_BOOL:
		snprintf(buf, len, "%s", *(const int *)field ? "on" : "off");
		return;
	case CONFIG_INT:
	case CONFIG_OCTAL:
		if (opt->takes_auto && *(const int *)field == 0) {
			snprintf(buf, len, "auto");
			return;
		}
		value_format_number(opt->type, *(const int *)field, buf, len);
		return;
	case CONFIG_DURATION:
	case CONFIG_SIZE:
		value_format_number(opt->type, *(const int64_t *)field, buf, len);
		return;
	case CONFIG_STRING:
		/* SHOW CONFIG and reload logs: the Redis password never shows. */
		if (strcmp(opt->name, "redis_url") == 0)
			redis_url_mask(*(char *const *)field, buf, len);
		else if (strcmp(opt->name, "redis_password") == 0 && **(char *const *)field != '\0')
			snprintf(buf, len, "********");
		else
			snprintf(buf, len, "%s", *(char *const *)field);
		return;
	case CONFIG_ENUM:
		snprintf(buf, len, "%s", opt->enum_names[*(const int *)field]);
		return;
	}
	snprintf(buf, len, "?");
}

int config_set(struct config *cfg, const char *key, const char *value, struct config_error *err)
{
	const struct config_option *opt = config_option_find(key);
	char msg[MSG_MAX];

	if (err != NULL)
		*err = (struct config_error){0};
	if (opt == NULL) {
		msg_set_error(err, "unknown option '%.100s'", key);
		return -1;
	}
	if (value_parse(opt, value, value_field(cfg, opt), msg, sizeof(msg)) < 0) {
		msg_set_error(err, "key '%s': %s", key, msg);
		return -1;
	}
	return 0;
}
