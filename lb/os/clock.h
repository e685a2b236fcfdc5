/* clock.h - the one place that reads the system clocks.  The core never does: it gets
 * these values passed in.  libuv's uv_now() (cached per loop iteration) is the runtime's
 * millisecond clock; these are for what needs the kernel's own clocks (the ISN clock of
 * kernel-facts 3 runs on CLOCK_REALTIME), wall time and boot time (the state file). */
#ifndef TWLB_CLOCK_H
#define TWLB_CLOCK_H

#include <stdint.h>

uint64_t clock_real_ns(void); /* CLOCK_REALTIME, ns */
uint64_t clock_mono_ns(void); /* CLOCK_MONOTONIC, ns (libuv's uv_now() is this, in ms) */
uint64_t clock_boot_ns(void); /* CLOCK_BOOTTIME, ns: runs on through suspend */
uint64_t clock_unix_ms(void); /* wall time, ms since 1970 */

#endif
