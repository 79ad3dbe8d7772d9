/*
 * Environment overrides: SLUICE_<OPTION> for every [sluice] option, then
 * SLUICE_DATABASE_URL and SLUICE_DATABASE_URL_<NAME>, each also as a _FILE
 * variable naming a file that holds the value, so secrets can come from a
 * mounted file instead of the environment.  The environment is passed in
 * (a NULL-terminated "K=V" list) so tests can give their own.
 */
#ifndef SLUICE_CONFIG_ENV_H
#define SLUICE_CONFIG_ENV_H

struct config;
struct config_error;

/* SLUICE_<OPTION> (or SLUICE_<OPTION>_FILE) for every option, in table order. */
int env_apply_options(struct config *cfg, char *const *envp, struct config_error *err);
/* SLUICE_DATABASE_URL, then SLUICE_DATABASE_URL_<NAME>, each possibly as a _FILE variable. */
int env_apply_urls(struct config *cfg, char *const *envp, struct config_error *err);

#endif
