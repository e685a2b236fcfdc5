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
/* The kernel's tick (1/HZ, the jiffy its TCP timers count in), from the resolution of
 * CLOCK_MONOTONIC_COARSE; 1 ms (HZ=1000, the shortest) if that cannot be read. */
uint64_t clock_tick_ns(void);

/* CLOCK_REALTIME and CLOCK_MONOTONIC as one pair, for the kernel-mode step detector
 * (isn_kernel_reuse_safe compares how far each moved): monotonic, realtime, monotonic
 * again, tried again while the two monotonic readings are more than CLOCK_PAIR_NS apart
 * (an interrupt or preemption fell between them: measured up to 4.5 ms under load,
 * docs/reuse.md), at most 4 times; the tightest try is kept. */
#define CLOCK_PAIR_NS 10000u
void clock_pair_ns(uint64_t *real_ns, uint64_t *mono_ns);

#endif
