/*
 * Error messages of the configuration parsers.  A message is built in the
 * caller's buffer: the innermost failure writes it, and each level out puts
 * its context in front (msg_prefix) or adds detail at the end (msg_append),
 * so no level needs a buffer of its own; the outermost level copies the
 * finished text, with the file and line or the variable in front, into the
 * struct config_error the loader returns (msg_set_error).
 */
#ifndef SLUICE_CONFIG_MSG_H
#define SLUICE_CONFIG_MSG_H

#include <stddef.h>

struct config_error;

#define MSG_MAX 400 /* room for a message before the "FILE:LINE: " prefix */

/*
 * Counts an error in `err`, keeps its message if it is the first, and hands
 * it to err->report when that is set (--check); nothing when `err` is NULL.
 */
void msg_set_error(struct config_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Adds text at the end of `msg`, as much as fits. */
void msg_append(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Puts text in front of `msg`; the end of the message gives way when both don't fit. */
void msg_prefix(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
