/* portmap.h - which source ports toward ONE backend, from ONE inside address, are
 * usable now, and under which condition.  Bookkeeping only: no sockets, no clocks;
 * the caller passes the time.  The proxy, the unit tests and the simulator all use
 * this same code.
 *
 * Every port of [lo, hi] is in one state:
 *   FREE         nobody remembers the 4-tuple (never used, expired, or reset)
 *   BUSY         a connection (or a connect in flight) uses it
 *   REMOTE_TW    the backend sent the first FIN and holds TIME_WAIT until <until>
 *   LOCAL_TW     twlb sent the first FIN; our own kernel holds TIME_WAIT
 *   QUARANTINED  the kernel refused it (EADDRINUSE/EADDRNOTAVAIL); set aside a while
 *
 * Memory grows with the ports that are BUSY / in TIME_WAIT / quarantined or that wait
 * in the free FIFO, never with the size of the range: never-used ports are a cursor,
 * and a portmap that becomes completely idle shrinks back to that cursor.
 *
 * Order of choice (portmap_acquire): never-used ports, then FREE ports least recently
 * released first, then TIME_WAIT ports whose reuse the backend will accept at once
 * (local TIME_WAIT first: the backend remembers nothing of it), oldest first.  A port
 * that the backend's rule would reject under the policy's ISN mode is never returned.
 * Each call is O(1) amortised (at most PORTMAP_SCAN TIME_WAIT entries examined). */
#ifndef TWLB_PORTMAP_H
#define TWLB_PORTMAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/isn.h"
#include "core/twrule.h"

enum pm_state { PM_FREE, PM_BUSY, PM_REMOTE_TW, PM_LOCAL_TW, PM_QUARANTINED, PM_NSTATES };
/* Metric label of a state: "free", "busy", "remote_time_wait", "local_time_wait",
 * "quarantined". */
const char *portmap_state_name(enum pm_state s);

/* Who sent the first FIN of a finished connection. */
enum pm_closer {
    PM_CLOSER_NONE,    /* never established, or ended by RST: no TIME_WAIT anywhere */
    PM_CLOSER_LOCAL,   /* twlb's side sent the first FIN: TIME_WAIT is ours */
    PM_CLOSER_BACKEND, /* the backend sent the first FIN: TIME_WAIT is the backend's */
};

/* What to do with our own TIME_WAIT when the connection did not use timestamps
 * (with timestamps the kernel reuses it safely on explicit bind, kernel-facts 4). */
enum pm_local_tw {
    PM_LOCAL_TW_AVOID,   /* leave the port alone until our TIME_WAIT expires */
    PM_LOCAL_TW_DESTROY, /* reuse it; the caller destroys our TIME_WAIT socket first
                            (SOCK_DESTROY, needs CAP_NET_ADMIN) */
};
int portmap_local_tw_parse(const char *s, enum pm_local_tw *out); /* 0 ok, -1 unknown */

struct portmap_policy {
    struct twrule rule;        /* the backend's TIME_WAIT behaviour */
    enum isn_mode mode;        /* resolved mode: ISN_EXPLICIT, ISN_KERNEL or ISN_OFF */
    enum pm_local_tw local_tw;
    uint64_t local_tw_ms;      /* our own TIME_WAIT length: 60000 on Linux */
    uint64_t quarantine_ms;    /* how long a refused port is set aside */
    uint32_t kernel_margin;    /* ISN_KERNEL safety margin, see isn_kernel_reuse_safe */
};

typedef struct portmap portmap; /* opaque */

/* A new map for ports lo..hi (1 <= lo <= hi <= 65535).  NULL on bad range or OOM. */
portmap *portmap_new(uint16_t lo, uint16_t hi, const struct portmap_policy *pol);
void portmap_free(portmap *pm); /* NULL ok */

/* Replace the policy (reload; or a backend demoted to strict).  Entries are kept. */
void portmap_set_policy(portmap *pm, const struct portmap_policy *pol);

enum pm_pick_kind {
    PM_PICK_FRESH,     /* nobody remembers the 4-tuple: any ISN works */
    PM_PICK_REMOTE_TW, /* backend holds TIME_WAIT: in ISN_EXPLICIT mode the SYN must
                          carry isn_reuse(.., rcv_nxt, ..); in ISN_KERNEL mode the
                          kernel's own ISN was predicted to be accepted */
    PM_PICK_LOCAL_TW,  /* our kernel holds TIME_WAIT on it */
};

struct portmap_pick {
    uint16_t port;
    enum pm_pick_kind kind;
    uint32_t rcv_nxt;     /* REMOTE_TW + ISN_EXPLICIT: the old connection's rcv_nxt;
                             LOCAL_TW with rcv_nxt_known: the same, in case the FINs
                             crossed and the backend holds a TIME_WAIT too */
    int rcv_nxt_known;    /* LOCAL_TW: we chose the old ISN, rcv_nxt is meaningful */
    int destroy_local_tw; /* LOCAL_TW: destroy our TIME_WAIT socket before bind */
    /* REMOTE_TW in ISN_KERNEL mode: what the prediction was made from (the old SYN's
     * time and bytes, and now_real_ns), for the debug log docs/reuse.md measures with */
    uint64_t old_syn_real_ns, old_bytes, decided_real_ns;
};

/* Choose a port the backend accepts now and mark it BUSY.  Returns 0 and fills
 * <out>, or -1 when no port is usable (the caller counts "exhausted").
 * now_ms: monotonic milliseconds; now_real_ns / now_mono_ns: CLOCK_REALTIME and
 * CLOCK_MONOTONIC in ns (only ISN_KERNEL uses them). */
int portmap_acquire(portmap *pm, uint64_t now_ms, uint64_t now_real_ns,
                    uint64_t now_mono_ns, struct portmap_pick *out);

/* Everything the map needs to know about a finished connection. */
struct portmap_release {
    enum pm_closer closer;
    int isn_known;          /* we chose the ISN (ISN_EXPLICIT and it stuck) */
    uint32_t isn;
    uint64_t syn_real_ns;   /* CLOCK_REALTIME when connect() was called */
    uint64_t syn_mono_ns;   /* CLOCK_MONOTONIC at the same moment */
    uint64_t bytes_to_backend;
    int timestamps;         /* the connection negotiated TCP timestamps */
    int never_connected;    /* the handshake never completed (a timeout, a refusal): a
                               port picked from REMOTE_TW goes back there as it was, since
                               the backend still holds that TIME_WAIT */
};

/* The connection on BUSY <port> ended.  CLOSER_BACKEND: REMOTE_TW until
 * now_ms + rule.time_wait_ms, remembering rcv_nxt = isn + bytes + 2 (when known) and
 * the SYN time (for ISN_KERNEL).  CLOSER_LOCAL: LOCAL_TW until now_ms + local_tw_ms
 * (reusable at once when timestamps were on, or with PM_LOCAL_TW_DESTROY).
 * CLOSER_NONE: FREE, at the tail of the free FIFO.  Ignored if <port> is not BUSY. */
void portmap_release(portmap *pm, uint16_t port, const struct portmap_release *r,
                     uint64_t now_ms);

/* The kernel refused BUSY <port>: QUARANTINED until now_ms + quarantine_ms. */
void portmap_quarantine(portmap *pm, uint16_t port, uint64_t now_ms);

/* Knowledge from before a restart, or from the map of an older generation: <e>'s state
 * is REMOTE_TW, LOCAL_TW or QUARANTINED, its until_ms on the caller's monotonic clock;
 * everything else of <e> is kept (rcv_nxt with isn_known, the SYN times and bytes for
 * ISN_KERNEL, timestamps), but of an unknown REMOTE_TW only until_ms: like a backend
 * TIME_WAIT with no rcv_nxt, no policy reuses it before then.  Overrides whatever the
 * map holds for the port unless it is BUSY, or an unknown REMOTE_TW and <e> is not
 * REMOTE_TW (our own kernel's TIME_WAIT says nothing of what the backend holds).
 * Returns 0, or -1 for a port outside the range, one it keeps, a bad state or OOM. */
struct portmap_entry;
int portmap_restore(portmap *pm, const struct portmap_entry *e);

/* No knowledge after a restart: treat every never-used port as possibly held in
 * TIME_WAIT by the backend until <until_ms> (no memory per port).  They count as
 * "unknown" (portmap_unknown_at) until then. */
void portmap_block_unknown(portmap *pm, uint64_t until_ms);

/* The earliest time (on now_ms's clock) at which portmap_acquire() could return a port
 * without any port being released first: now_ms when it could now; a TIME_WAIT or
 * quarantine ending, or (ISN_KERNEL) the moment the kernel's ISN clock is safely past an
 * old connection (isn_kernel_safe_at_ns); UINT64_MAX when only a release can help (every
 * port BUSY, or a wait beyond what the map can tell).  Looks at the same PORTMAP_SCAN
 * TIME_WAIT entries that acquire would.  Changes nothing.  Times as portmap_acquire. */
uint64_t portmap_next_usable_ms(const portmap *pm, uint64_t now_ms, uint64_t now_real_ns,
                                uint64_t now_mono_ns);

/* Move entries whose time is up back to FREE.  Called by acquire; call it before
 * reading counts. */
void portmap_expire(portmap *pm, uint64_t now_ms);

/* Ports per state (FREE includes never-used ports); sums to the range size. */
void portmap_counts(const portmap *pm, uint32_t counts[PM_NSTATES]);

/* Ports per state as portmap_expire(now_ms) + portmap_counts() would give them, without
 * changing the map: entries whose TIME_WAIT or quarantine is over by <now_ms> count as
 * FREE.  O(entries expired by now_ms) (only the expired head of each FIFO is walked). */
void portmap_counts_at(const portmap *pm, uint64_t now_ms, uint32_t counts[PM_NSTATES]);

/* Ports portmap_acquire() could hand out as of <now_ms> (a connection's ports usable
 * NOW), without changing the map: never-used ports (unless blocked after a restart),
 * FREE ports and every entry whose TIME_WAIT or quarantine is over by <now_ms> (as
 * portmap_counts_at counts them), our own TIME_WAIT where it may be reused (timestamps,
 * or PM_LOCAL_TW_DESTROY), and the backend's TIME_WAIT where the policy reuses it now:
 * explicit ISNs and a known rcv_nxt, or in kernel mode when isn_kernel_reuse_safe()
 * holds at <now_real_ns> / <now_mono_ns>; never under ISN_OFF or the strict rule.
 * Unknown ports (portmap_unknown_at) count only once their until_ms is over, as a
 * backend TIME_WAIT with nothing known.
 * Unlike acquire, which looks at PORTMAP_SCAN TIME_WAIT entries per call, every usable
 * one counts; the one approximation: in kernel mode at most PORTMAP_HEADROOM_SCAN
 * backend TIME_WAIT entries (the oldest, those closest to safe) are examined, and any
 * beyond them count as unusable, so for more than that many the figure is a lower
 * bound.  O(expired entries + PORTMAP_HEADROOM_SCAN). */
uint32_t portmap_headroom_at(const portmap *pm, uint64_t now_ms, uint64_t now_real_ns,
                             uint64_t now_mono_ns);

/* One remembered port: for the state file, the observer and the admin endpoint. */
struct portmap_entry {
    uint16_t port;
    enum pm_state state;
    uint64_t until_ms;     /* BUSY and FREE: 0 */
    int isn_known;         /* rcv_nxt is where the old connection's sequence ended */
    uint32_t rcv_nxt;
    int timestamps;        /* LOCAL_TW: the connection used TCP timestamps */
    int unknown;           /* REMOTE_TW with nothing known: restored after a crash */
    uint64_t syn_real_ns, syn_mono_ns, bytes; /* REMOTE_TW: the old SYN (ISN_KERNEL) */
};
/* Call <fn> for every non-FREE port, in no particular order. */
void portmap_foreach(const portmap *pm, void (*fn)(void *arg, const struct portmap_entry *e),
                     void *arg);

/* Every change of a port's state (acquire, release, quarantine, restore, expiry) calls
 * <fn>(arg, e) with the port's new entry (FREE: nothing else meaningful) before the map
 * call returns: the hook that keeps a persistent copy current (runtime/state.c).  NULL
 * fn: none.  The map is not changed by it; <fn> must not call back into the map. */
typedef void portmap_observer(void *arg, const struct portmap_entry *e);
void portmap_observe(portmap *pm, portmap_observer *fn, void *arg);

/* Ports that count as REMOTE_TW only because nothing is known about them (entries
 * restored with e.unknown, never-used ports under portmap_block_unknown) as of
 * <now_ms>: a subset of counts_at's REMOTE_TW. */
uint32_t portmap_unknown_at(const portmap *pm, uint64_t now_ms);

/* Bytes of memory the map holds now (for the benchmark and the memory test). */
size_t portmap_memory(const portmap *pm);

#define PORTMAP_SCAN 8
#define PORTMAP_HEADROOM_SCAN 4096

#endif
