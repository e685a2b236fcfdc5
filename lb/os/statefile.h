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
/* Write every kept entry to <path> atomically (temp file + rename) and free <w>.  Returns
 * the number written, or -1 (logged). */
int statefile_writer_commit(struct statefile_writer *w, const char *path);

/* Read <path> and call <fn> for every entry still remembered now: until_ms is on the
 * caller's clock <now_ms>, the time twlb was stopped subtracted.  <fn> returns 0 when it
 * restored the entry, -1 when it had no use for it (a path that no longer exists, a port
 * out of range): counted as skipped.  Returns the number restored, or -1 (logged) when
 * the file is missing or corrupt. */
int statefile_load(const char *path, uint64_t now_ms,
                   int (*fn)(void *arg, const struct statefile_entry *e), void *arg);

#endif
