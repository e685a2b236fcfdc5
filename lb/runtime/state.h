/* state.h - what the port bookkeeping knows from outside the process: the state file
 * (written on drain and after a reload, read at start) and our own TIME_WAIT sockets
 * that the kernel still holds from a previous run (inet_diag, kernel-facts 5).
 *
 * Both loads run once per worker, at the first start, before the loop serves anything
 * (each worker keeps what falls in its share of the ports); the dump is a netlink round
 * trip per inside address and never runs on a serving loop. */
#ifndef TWLB_STATE_H
#define TWLB_STATE_H

#include "runtime/types.h"

struct statefile_writer;

/* Add what every path of w's current generation remembers to <wr> (on w's thread). */
void state_collect(struct worker *w, struct statefile_writer *wr);

/* At the first start: restore the state file of g's config (a missing or corrupt one
 * blocks every unknown port for one TIME_WAIT period), then our kernel's TIME_WAIT. */
void state_load(struct gen *g);

#endif
