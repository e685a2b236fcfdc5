/* config.h - the JSON configuration, decoded and validated.
 *
 * config_load() reads one file, checks every key against one table of known keys
 * (unknown keys are errors), and collects EVERY error as
 *     FILE[:LINE:COL]: JSON.PATH: what is wrong
 * before refusing.  A config that loads is complete: defaults are filled in, names
 * are resolved (listener -> pool index), and cross-field rules hold.  Boot-time
 * objects: allocated once, freed together by config_free().
 *
 * Every key's bounds, default and reloadability are written once, in the key tables of
 * keys.c (and documented in docs/configuration.md, which test_config checks); the
 * fields below do not repeat them.  The module is config.c (loading), keys.c (the
 * tables), jsonpos.c (positions for messages) and addr.c (addresses). */
#ifndef TWLB_CONFIG_H
#define TWLB_CONFIG_H

#include "config/errors.h"
#include "config/types.h"

/* Load and validate <path>.  Returns the config, or NULL with every problem in <errs>
 * (each message complete: "file[:line:col]: path: problem"). */
struct config *config_load(const char *path, struct cfg_errors *errs);
/* The same from <text> (<len> bytes, not necessarily NUL-terminated), named <path> in
 * messages and in config.path. */
struct config *config_load_text(const char *path, const char *text, size_t len,
                                struct cfg_errors *errs);

/* Configs are shared read-only by every worker: config_ref() takes one more reference,
 * config_free() drops one and frees with the last (NULL ok).  Both are thread-safe. */
struct config *config_ref(struct config *c);
void config_free(struct config *c);

/* What a state file for <c> can hold (reuse.state_file): *max_ms, the longest time a
 * port is remembered (the longest backend TIME_WAIT, our own TIME_WAIT, quarantine), and
 * *max_entries, one per (backend, inside address, source port). */
void config_state_limits(const struct config *c, uint64_t *max_ms, uint64_t *max_entries);

/* A reload applies a new config in place of <old>; some keys only take effect at the
 * next start (their table entry is not "reloadable").  Adds one message per such key
 * whose value differs ("log.file: changed; takes effect at the next restart"; array
 * elements matched by name, shown by their index in <neu>) to <out>, and returns the
 * count. */
int config_unreloadable_changes(const struct config *old, const struct config *neu,
                                struct cfg_errors *out);

/* The whole of <path>, NUL-terminated, its length in *len (at most 64 MiB): malloc'ed,
 * or NULL with an errno in *e. */
char *config_read_file(const char *path, size_t *len, int *e);

#endif
