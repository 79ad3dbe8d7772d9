/*
 * Typed values: one parser and one printer for every option type (bool,
 * integer, octal, duration, size, string, enum), used alike for [sluice]
 * options, [databases] and [users] keys, SLUICE_* variables and SET, so a
 * value means the same wherever it is written.  Also the two text helpers
 * every parser of the folder shares: skipping blanks and freeing a string
 * that may hold a secret.
 */
#ifndef SLUICE_CONFIG_VALUE_H
#define SLUICE_CONFIG_VALUE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Frees a string that may hold a secret, wiping it first. */
void value_free_secret(char *s);
/* `p` past any leading blanks. */
const char *value_skip_space(const char *p);
/* The field of `cfg` that `opt` describes. */
void *value_field(const struct config *cfg, const struct config_option *opt);
/* A number of an INT, OCTAL, DURATION or SIZE option as it would be written. */
void value_format_number(enum config_type type, int64_t v, char *buf, size_t len);
/*
 * Stores `text` into `field` as `spec` describes.  On error writes a message
 * without any location prefix (callers add file:line or the variable name).
 */
int value_parse(const struct config_option *spec, const char *text, void *field, char *msg,
                size_t len);

#endif
