/*
 * The ini file.  It is read in two passes: inih only splits it into raw
 * entries (with line numbers and continuation lines joined), and the
 * entries are applied afterwards, [sluice] options here and the other
 * sections by their own modules, so every error can name the file, line and
 * key, and a value may span several lines before it is interpreted.
 */
#ifndef SLUICE_CONFIG_FILE_H
#define SLUICE_CONFIG_FILE_H

struct config;
struct config_error;

/*
 * Applies the ini file at `path` to `cfg`, then resolves the tenants' tiers.
 * A repeated key, an unknown section or key, or a bad value fails with
 * "FILE:LINE: ..." in `err`.
 */
int file_read(struct config *cfg, const char *path, struct config_error *err);

#endif
