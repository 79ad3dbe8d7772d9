/*
 * The sluice(1) man page, generated so that it cannot drift from the option
 * tables: a fixed part (synopsis, command line, signals, exit status, files)
 * around docs/config.md (config_write_markdown) translated into roff.
 * packaging/sluice.1 is this output; a unit test keeps the two identical.
 */
#ifndef SLUICE_MANPAGE_H
#define SLUICE_MANPAGE_H

#include <stdio.h>

/* Writes the whole page, as `sluice --describe-config=man` prints it. */
void manpage_write(FILE *out);

#endif
