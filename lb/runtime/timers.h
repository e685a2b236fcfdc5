/* timers.h - the connections' deadlines of one worker: one libuv timer armed for the
 * earliest of them (core/timeq.h), instead of a uv_timer_t per connection.  A deadline
 * that passes calls its fn on the worker's loop. */
#ifndef TWLB_TIMERS_H
#define TWLB_TIMERS_H

#include "runtime/types.h"

void timers_init(struct worker *w);
/* Close the worker's timer handle (run the loop afterwards). */
void timers_close(struct worker *w);

/* Call t->fn(t) at <at_ms> (the loop's clock), or move it there. */
void timers_set(struct worker *w, struct wtimer *t, uint64_t at_ms);
void timers_cancel(struct worker *w, struct wtimer *t);

#endif
