/* statefile.h - what the backends still remember survives a restart.
 *
 * On a graceful stop and after a reload twlb writes every remembered port (backend
 * TIME_WAIT with its last sequence number, our own TIME_WAIT, quarantine) with the time
 * left, and reads it back at start.  This module knows the file format only: the runtime
 * hands it plain entries and gets plain entries back, named by pool, backend and inside
 * address as in the config.  A configured state file that is missing or unreadable means
 * "no knowledge": the caller then treats every port as possibly in backend TIME_WAIT for
 * one TIME_WAIT period (portmap_block_unknown), because the previous run may have used
 * any of them.
 *
 * Return convention: a count, or -1 after logging why. */
#ifndef TWLB_STATEFILE_H
#define TWLB_STATEFILE_H

#include <stdint.h>

#include "core/portmap.h"

struct statefile_entry {
    const char *pool, *backend, *inside; /* names as written in the config */
    struct portmap_entry e;              /* e.until_ms on the caller's monotonic clock */
};

struct statefile_writer;

/* A writer for entries as of <now_ms> (the caller's monotonic clock).  NULL on OOM. */
struct statefile_writer *statefile_writer_new(uint64_t now_ms);
/* Keep <e> unless it is BUSY or over by now_ms. */
void statefile_writer_add(struct statefile_writer *w, const struct statefile_entry *e);
/* Write every kept entry to <path> atomically and free <w>: a new temporary file in the
 * same directory (mkstemp: a name nobody could plant, O_EXCL, mode 0600), fsync'ed, then
 * renamed over <path>.  A <path> that is a symbolic link is refused (an error naming
 * it), never followed or replaced.  Returns the number written, or -1: logged as an error
 * and counted (statefile_save_failures). */
int statefile_writer_commit(struct statefile_writer *w, const char *path);

/* How many saves have failed since the start (for the admin side and the exit status). */
uint64_t statefile_save_failures(void);

/* What the config can hold (config_state_limits): an entry's remaining_ms is clamped to
 * max_remaining_ms; a file with more than max_entries entries, or more than
 * STATEFILE_ENTRY_BYTES per entry (plus STATEFILE_BASE_BYTES), is refused unread. */
struct statefile_limits {
    uint64_t max_remaining_ms;
    uint64_t max_entries;
};
#define STATEFILE_ENTRY_BYTES 512
#define STATEFILE_BASE_BYTES 4096

/* Read <path> and call <fn> for every entry still remembered now, in the order they
 * expire: until_ms is on the caller's clock <now_ms>, the time twlb was stopped
 * subtracted, at most now_ms + lim->max_remaining_ms.  <fn> returns 0 when it restored
 * the entry, -1 when it had no use for it (a path that no longer exists, a port out of
 * range): counted as skipped.  Returns the number restored, or -1 (logged) when the file
 * is missing, a symbolic link (not followed), not a regular file, over the limits, or
 * corrupt. */
int statefile_load(const char *path, uint64_t now_ms, const struct statefile_limits *lim,
                   int (*fn)(void *arg, const struct statefile_entry *e), void *arg);

#endif
