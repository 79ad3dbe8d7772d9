/*
 * The option table: every [sluice] option with its type, field, default,
 * bounds, reload class and one line of help.  It drives parsing, defaults,
 * SHOW CONFIG, docs/config.md and the man page.  Also the units of sizes and
 * durations, and the names of the enum options' values.
 */
#ifndef SLUICE_CONFIG_OPTIONS_H
#define SLUICE_CONFIG_OPTIONS_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

enum config_type {
	CONFIG_BOOL,     /* int field: on/off, true/false, yes/no, 1/0 */
	CONFIG_INT,      /* int field */
	CONFIG_SIZE,     /* int64_t field: bytes, accepts kB/MB/GB suffixes */
	CONFIG_DURATION, /* int64_t field: microseconds, accepts us/ms/s/min/h/d; bare = seconds */
	CONFIG_STRING,   /* char * field */
	CONFIG_ENUM,     /* int field: index into enum_names */
	CONFIG_OCTAL,    /* int field: file permissions, always octal ("0777" or "777") */
};

enum config_reload {
	RELOAD_LIVE,    /* takes effect on RELOAD / SIGHUP / SET */
	RELOAD_RESTART, /* needs a restart; a changed value is logged and ignored */
};

struct config_option {
	const char *name; /* ini key; SLUICE_<NAME upper-cased> in the environment */
	enum config_type type;
	size_t offset;                 /* offsetof(struct config, field) */
	const char *default_value;     /* as it would be written in the ini file */
	int64_t min, max;              /* bounds for INT/OCTAL/SIZE/DURATION (DURATION in us) */
	const char *const *enum_names; /* NULL-terminated, for CONFIG_ENUM */
	enum config_reload reload;
	const char *help; /* one line, used by docs/config.md and SHOW CONFIG */
	bool takes_auto;  /* CONFIG_INT that also takes "auto", stored as 0 (config_workers) */
};

const struct config_option *config_options(size_t *count);
const struct config_option *config_option_find(const char *name);

/* "250ms", "30s", "5min", "1h", "2d", "100us"; a bare number is seconds. */
int config_parse_duration(const char *text, int64_t *out_us);
/* "1024", "64kB", "16MB", "1GB". */
int config_parse_size(const char *text, int64_t *out_bytes);
/* The inverse, exact and short: "60s", "250ms", "1h", "0" (never "min"); "64kB", "1GB". */
void config_format_duration(int64_t us, char *buf, size_t len);
void config_format_size(int64_t bytes, char *buf, size_t len);
const char *pool_mode_name(int mode);
/* libpq's word for an enum sslmode: "disable" ... "verify-full". */
const char *sslmode_name(int mode);
const char *target_session_attrs_name(int target);
const char *load_balance_name(int mode);

#endif
