/* slowstart.h - the weight of a backend that is warming up after coming back.  Pure: the
 * caller passes the times (milliseconds of one monotonic clock).
 *
 * A backend that becomes usable again (its health checks bring it back, an ejection ends,
 * the operator enables it) at <since_ms> balances, during <ramp_ms>, with
 *
 *     weight * SLOWSTART_SCALE * (now_ms - since_ms) / ramp_ms
 *
 * rounded down: linear from 0 to its full weight, which it has from since_ms + ramp_ms on.
 * Weights are in 1/SLOWSTART_SCALE of a configured weight unit, so even a backend of
 * weight 1 ramps in 1000 steps, not in one; the balancer compares weights only with one
 * another (core/balance.h), so scaling every backend of a pool alike changes nothing
 * else.  A weight of 0 (the first ramp_ms / (weight * SLOWSTART_SCALE) ms) is the
 * balancer's "only when nothing else is usable".
 *
 * HAProxy (server "slowstart") starts at 1/16 of the weight and grows in steps of 1/16,
 * recomputed at most once a second; twlb recomputes the weight at every pick, so the
 * ramp is as smooth as the scale allows. */
#ifndef TWLB_SLOWSTART_H
#define TWLB_SLOWSTART_H

#include <stdint.h>

#define SLOWSTART_SCALE 1000u
#define SLOWSTART_MAX_MS 3600000u /* the longest ramp the config allows (1 hour) */

/* The weight (in 1/SLOWSTART_SCALE units) of a backend of configured <weight> that came
 * back at <since_ms>, at <now_ms>, ramping over <ramp_ms>.  Its full weight
 * (weight * SLOWSTART_SCALE) when <ramp_ms> is 0 (no slow start), when <since_ms> is 0
 * (it never came back: at twlb's start nothing slow-starts), or once the ramp is over;
 * 0 when <now_ms> is before <since_ms>. */
uint32_t slowstart_weight(uint32_t weight, uint64_t since_ms, uint64_t now_ms,
                          uint32_t ramp_ms);

#endif
