/* portstate.h - one source port's record in the state file, and what a record left by an
 * earlier run means at the next start.
 *
 * The state file (os/statefile.c) holds a 32-byte slot for every source port of every
 * path (pool, backend, inside address).  The port map calls its observer on every change
 * of a port's state (portmap_observe), and the observer stores the new record into the
 * slot (portstate_store): the table is current at every store, in a MAP_SHARED mapping
 * whose pages outlive the process.  Only the worker that owns a port writes its slot, so
 * there is no lock; a sequence byte (odd while the slot is written) and a 16-bit check
 * tell a slot torn by a SIGKILL, or damaged on disk, from a good one.
 *
 * What a previous run's records mean now (portstate_plan_*, portstate_recover):
 *   no file           the first start: nothing is remembered, nothing to fear
 *   same boot         the page cache held every store, whatever the way the run ended:
 *                     TIME_WAIT and quarantine records as they were (CLOCK_MONOTONIC is
 *                     one clock for the whole boot); a port BUSY at the end (a crash) or a
 *                     torn slot counts as in backend TIME_WAIT with nothing known
 *                     ("unknown") for one TIME_WAIT period: its connection's end and
 *                     rcv_nxt are unknown
 *   another boot after a clean stop
 *                     the records as they were, their deadlines carried over by the wall
 *                     clock; the old SYN times are dropped (the kernel's ISN secret is
 *                     new), so kernel ISN mode waits for those TIME_WAITs to end
 *   another boot without a clean stop (a host crash)
 *                     the file may lack the stores of the last seconds before the crash:
 *                     every port counts as unknown until the last heartbeat on disk +
 *                     PORTSTATE_SYNC_BOUND_MS + its backends' TIME_WAIT
 *   a file that cannot be read (damaged, an incompatible version)
 *                     as a host crash, from the best guess of when it was last written
 *
 * Pure: no I/O, no clocks (times are passed in).  Returns as core/ does. */
#ifndef TWLB_PORTSTATE_H
#define TWLB_PORTSTATE_H

#include <stdint.h>

#include "core/portmap.h"

struct portstate_slot {
    uint8_t seq;          /* odd while its owner writes it */
    uint8_t state;        /* enum pm_state in the low 3 bits, PORTSTATE_F_* above them */
    uint16_t check;       /* of the fields below and state; 0 in an empty slot */
    uint32_t rcv_nxt;
    uint32_t bytes;       /* bytes sent, modulo 2^32: all the kernel ISN prediction uses */
    int32_t clock_us;     /* (syn_real - syn_mono) - the file's clock base, in us;
                             PORTSTATE_CLOCK_NONE: the SYN's monotonic time is unknown */
    uint64_t until_ms;    /* CLOCK_MONOTONIC ms of the boot that wrote it */
    uint64_t syn_real_ns; /* CLOCK_REALTIME of the old SYN (REMOTE_TW); 0: none */
};

#define PORTSTATE_F_ISN_KNOWN 0x10
#define PORTSTATE_F_TIMESTAMPS 0x20
#define PORTSTATE_F_UNKNOWN 0x40
#define PORTSTATE_CLOCK_NONE INT32_MIN

/* The state file's keeper writes the heartbeat every second and syncs the file to disk
 * every PORTSTATE_SYNC_MS; a host crash loses at most the stores of the last
 * PORTSTATE_SYNC_BOUND_MS (one sync period and as much again for a slow disk). */
#define PORTSTATE_SYNC_MS 5000
#define PORTSTATE_SYNC_BOUND_MS (2 * PORTSTATE_SYNC_MS)
/* Without boot ids: the moment of boot (wall time minus boot time) of one boot moves
 * only with a stepped wall clock; more than this apart means another boot. */
#define PORTSTATE_BOOT_SLACK_MS 5000

/* Store <e> (its port aside) into <s>: the observer's work.  <clock_base_ns> is the
 * file's (real - mono at its creation), the base of clock_us. */
void portstate_store(struct portstate_slot *s, const struct portmap_entry *e,
                     uint64_t clock_base_ns);

/* Read <s>: 1 with *out filled (out->port left alone), 0 when it is empty (FREE or never
 * written), -1 when it is torn or damaged (out->state is then PM_BUSY: unknown). */
int portstate_load(const struct portstate_slot *s, uint64_t clock_base_ns,
                   struct portmap_entry *out);

/* The clocks at one moment, in ms, and the boot they belong to. */
struct portstate_clock {
    uint64_t real_ms, mono_ms, boot_ms; /* CLOCK_REALTIME, _MONOTONIC, _BOOTTIME */
    int boot_id_known;                  /* /proc/sys/kernel/random/boot_id was readable */
    uint8_t boot_id[16];
};

/* Do <then> and <now> belong to the same boot?  By boot id when both are known, else by
 * the boot clock (never back within a boot) and the moment of boot. */
int portstate_same_boot(const struct portstate_clock *then, const struct portstate_clock *now);

enum portstate_restart {
    PORTSTATE_FRESH,      /* no file: the first start */
    PORTSTATE_SAME_BOOT,  /* a previous run on this boot, however it ended */
    PORTSTATE_REBOOT,     /* a clean stop, then another boot */
    PORTSTATE_HOST_CRASH, /* another boot, and no clean stop */
    PORTSTATE_UNREADABLE, /* a file that could not be read */
    PORTSTATE_IMPORTED,   /* twlb 0.1's JSON file: its entries are on today's clock */
};
const char *portstate_restart_name(enum portstate_restart k);

/* What the previous run's file said about itself. */
struct portstate_prev {
    struct portstate_clock alive;  /* its last heartbeat */
    int clean;                     /* it stopped cleanly: every record is final */
    uint64_t risk_from_real_ms;    /* it started after a loss itself (0: no) */
};

/* How to read the previous run's records. */
struct portstate_plan {
    enum portstate_restart kind;
    /* Ports with no record may be in backend TIME_WAIT until this wall time + their
     * TIME_WAIT (0: none).  Kept in the new file, so a crash within that time keeps it. */
    uint64_t risk_from_real_ms;
    int64_t shift_ms;              /* REBOOT: old until_ms + shift_ms = today's */
    /* A takeover (the previous run still drains, its connections live on): a port BUSY in
     * it may end its connection this much later still (its drain_timeout_ms), so it counts
     * as unknown that much longer than one TIME_WAIT.  0 otherwise.  Set by the caller. */
    uint64_t busy_grace_ms;
};

void portstate_plan_fresh(struct portstate_plan *p);
void portstate_plan_from(const struct portstate_prev *prev, const struct portstate_clock *now,
                         struct portstate_plan *p);
/* A file that could not be read; <last_alive_real_ms> is the best guess of when its run
 * last wrote it (its heartbeat if that much is readable, else its mtime; 0: none, then
 * now). */
void portstate_plan_unreadable(uint64_t last_alive_real_ms, const struct portstate_clock *now,
                               struct portstate_plan *p);

/* What record <e> of the previous file (read by portstate_load with result <got>, its
 * clock the old one) means today, for a path whose backend keeps TIME_WAIT <tw_ms>.
 * Returns 1 with *e on today's CLOCK_MONOTONIC (REMOTE_TW, LOCAL_TW or QUARANTINED), or
 * 0 when nothing is left to remember. */
int portstate_recover(const struct portstate_plan *p, const struct portstate_clock *now,
                      uint64_t tw_ms, int got, struct portmap_entry *e);

/* Until when (today's CLOCK_MONOTONIC ms) the ports of a path with TIME_WAIT <tw_ms> that
 * have no record count as unknown (portmap_block_unknown); 0: they do not. */
uint64_t portstate_unknown_until_ms(const struct portstate_plan *p,
                                    const struct portstate_clock *now, uint64_t tw_ms);

#endif
