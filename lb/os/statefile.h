/* statefile.h - what the backends still remember survives a restart.
 *
 * On a graceful stop twlb writes every remembered port (backend TIME_WAIT with its last
 * sequence number, our own TIME_WAIT, quarantine) with the time left, and reads it back
 * at start.  A configured state file that is missing or unreadable means "no knowledge":
 * every port of every path is treated as possibly in backend TIME_WAIT for one TIME_WAIT
 * period (portmap_block_unknown), because the previous run may have used any of them. */
#ifndef TWLB_STATEFILE_H
#define TWLB_STATEFILE_H

#include "runtime/types.h"

/* Write the state of <srv> to <path> atomically (temp file + rename).  Returns the
 * number of entries written or -1 (logged). */
int statefile_save(struct server *srv, const char *path);

/* Restore the state in <path> into <srv>'s port maps.  Returns the number of entries
 * restored; on a missing or corrupt file logs why, blocks unknown ports, returns -1. */
int statefile_load(struct server *srv, const char *path);

#endif
