/*
 * Error messages built in the caller's buffer; see msg.h.
 */
#include "config/msg.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"

void msg_set_error(struct config_error *err, const char *fmt, ...)
{
	char text[sizeof(err->message)];
	va_list ap;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (err->count++ == 0)
		memcpy(err->message, text, sizeof(text));
	if (err->report != NULL)
		err->report(err->report_arg, text);
}

void msg_append(char *msg, size_t len, const char *fmt, ...)
{
	size_t used = strnlen(msg, len);
	va_list ap;

	if (used + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(msg + used, len - used, fmt, ap);
	va_end(ap);
}

void msg_prefix(char *msg, size_t len, const char *fmt, ...)
{
	char prefix[160];
	size_t plen, mlen;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	plen = strlen(prefix) < len ? strlen(prefix) : len - 1;
	mlen = strnlen(msg, len - 1);
	if (plen + mlen >= len)
		mlen = len - 1 - plen; /* the end of the message gives way */
	memmove(msg + plen, msg, mlen);
	memcpy(msg, prefix, plen);
	msg[plen + mlen] = '\0';
}
