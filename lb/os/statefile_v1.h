/* statefile_v1.h - the state file of twlb 0.1 (JSON, version 1), read once to import it.
 *
 * twlb 0.1 wrote every remembered port (backend TIME_WAIT with its last sequence number,
 * our own TIME_WAIT, quarantine) with the time left on graceful stop and reload.  The
 * state file is now the memory-mapped table of os/statefile.h; a file of version 1 found
 * at the configured path is imported at the first start (os/statefile.c) and replaced.
 * This module knows that format only: it hands plain entries to the caller, named by
 * pool, backend and inside address as in the config.
 *
 * Return convention: a count, or -1 after logging why. */
#ifndef TWLB_STATEFILE_V1_H
#define TWLB_STATEFILE_V1_H

#include <stdint.h>

#include "core/portmap.h"

struct statefile_entry {
    const char *pool, *backend, *inside; /* names as written in the config */
    struct portmap_entry e;              /* e.until_ms on the caller's monotonic clock */
};

/* What the config can hold (config_state_limits): an entry's remaining_ms is clamped to
 * max_remaining_ms; a file with more than max_entries entries, or more than
 * STATEFILE_ENTRY_BYTES per entry (plus STATEFILE_BASE_BYTES), is refused unread. */
struct statefile_limits {
    uint64_t max_remaining_ms;
    uint64_t max_entries;
    uint64_t busy_grace_ms;  /* a takeover: portstate_plan.busy_grace_ms (0: none) */
};
#define STATEFILE_ENTRY_BYTES 512
#define STATEFILE_BASE_BYTES 4096

/* Read the JSON file <path> and call <fn> for every entry still remembered now, in the order they
 * expire: until_ms is on the caller's clock <now_ms>, the time twlb was stopped
 * subtracted, at most now_ms + lim->max_remaining_ms.  <fn> returns 0 when it restored
 * the entry, -1 when it had no use for it (a path that no longer exists, a port out of
 * range): counted as skipped.  Returns the number restored, or -1 (logged) when the file
 * is missing, a symbolic link (not followed), not a regular file, over the limits, or
 * corrupt. */
int statefile_v1_load(const char *path, uint64_t now_ms, const struct statefile_limits *lim,
                   int (*fn)(void *arg, const struct statefile_entry *e), void *arg);

#endif
