/* state.h - what the port bookkeeping knows from outside the process: the state file
 * (os/statefile.h: a record of every port, current at every change, read back at the
 * next start) and our own TIME_WAIT sockets that the kernel still holds from a previous
 * run (inet_diag, kernel-facts 5).
 *
 * The group opens the file on the main thread before any worker starts (state_open) and
 * adds the paths of a reload before the workers prepare it (state_add); each worker hooks
 * the maps of every generation it builds to their slots (state_attach) and, at its first
 * start, restores what the file and the kernel remember of its own ports before the loop
 * serves anything.  A keeper on the main loop writes the heartbeat and syncs the file. */
#ifndef TWLB_STATE_H
#define TWLB_STATE_H

#include <uv.h>

#include "runtime/types.h"

/* Open the state file of <cfg> (*out NULL when "state_file" is null).  0, or a negative
 * errno with <err> (another process holds the file, out of memory). */
int state_open(const struct config *cfg, struct statefile **out, char *err, size_t errlen);

/* This process takes over from one that drains for up to <drain_ms> (twlb --takeover):
 * the ports BUSY in its file count as unknown for that long plus a TIME_WAIT
 * (portstate_plan.busy_grace_ms).  Before state_open. */
void state_takeover_grace(uint64_t drain_ms);

/* Before a reload: the paths of <cfg> that the file lacks. */
void state_add(struct statefile *sf, const struct config *cfg);

/* Hook the maps of <be> (in generation g, being built on its worker's thread) to the
 * state file: every change of a port is stored.  A map that holds nothing yet gets what
 * the file remembers of its ports (the first start, a path that comes back); a map that
 * a reload seeded from an older one (a changed range) stores what it holds.  <prev>: the
 * same backend in the previous generation, or NULL. */
void state_attach(struct gen *g, struct backend_rt *be, const struct backend_rt *prev);

/* At the first start, once the generation is built: our kernel's TIME_WAIT sockets. */
void state_load(struct gen *g);

/* The keeper of <sf> on <loop>: a heartbeat every second, a sync every PORTSTATE_SYNC_MS
 * on the thread pool.  NULL sf: none. */
struct state_keeper;
struct state_keeper *state_keeper_start(uv_loop_t *loop, struct statefile *sf);
/* Stop the keeper and close the file (<clean>: every port is released), once no sync is
 * in flight (the loop runs until then). */
void state_keeper_stop(struct state_keeper *k, int clean);

#endif
