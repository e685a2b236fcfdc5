/* portstate.c - see portstate.h. */
#include "core/portstate.h"

#include <string.h>

_Static_assert(sizeof(struct portstate_slot) == 32, "a slot is 32 bytes: the file format");

/* ---- one slot ----------------------------------------------------------------------- */

/* A 16-bit check of everything but seq and check itself; never 0 (an empty slot's). */
static uint16_t check_of(const struct portstate_slot *s)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ s->state;
    h = (h ^ s->rcv_nxt) * 0xff51afd7ed558ccdull;
    h = (h ^ s->bytes ^ (uint64_t)(uint32_t)s->clock_us << 32) * 0xc4ceb9fe1a85ec53ull;
    h = (h ^ s->until_ms) * 0xff51afd7ed558ccdull;
    h = (h ^ s->syn_real_ns) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    uint16_t c = (uint16_t)(h ^ h >> 16 ^ h >> 32 ^ h >> 48);
    return c ? c : 1;
}

static int32_t clock_us_of(const struct portmap_entry *e, uint64_t base)
{
    if (!e->syn_mono_ns || !e->syn_real_ns)
        return PORTSTATE_CLOCK_NONE;
    int64_t d = ((int64_t)e->syn_real_ns - (int64_t)e->syn_mono_ns - (int64_t)base) / 1000;
    return d <= INT32_MIN || d > INT32_MAX ? PORTSTATE_CLOCK_NONE : (int32_t)d;
}

void portstate_store(struct portstate_slot *s, const struct portmap_entry *e,
                     uint64_t clock_base_ns)
{
    struct portstate_slot n;
    memset(&n, 0, sizeof n);
    if (e->state != PM_FREE && e->state < PM_NSTATES) {
        n.state = (uint8_t)(e->state | (e->isn_known ? PORTSTATE_F_ISN_KNOWN : 0) |
                            (e->timestamps ? PORTSTATE_F_TIMESTAMPS : 0) |
                            (e->unknown ? PORTSTATE_F_UNKNOWN : 0));
        n.rcv_nxt = e->rcv_nxt;
        n.bytes = (uint32_t)e->bytes;
        n.until_ms = e->until_ms;
        n.syn_real_ns = e->syn_real_ns;
        n.clock_us = e->syn_real_ns ? clock_us_of(e, clock_base_ns) : 0;
        n.check = check_of(&n);
    }
    /* A seqlock with one writer (the port's owner) and a reader that comes after it is
     * gone: odd first, then the fields, then even; a SIGKILL in between leaves it odd. */
    uint8_t odd = (uint8_t)(s->seq | 1);
    __atomic_store_n(&s->seq, odd, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    s->state = n.state;
    s->check = n.check;
    s->rcv_nxt = n.rcv_nxt;
    s->bytes = n.bytes;
    s->clock_us = n.clock_us;
    s->until_ms = n.until_ms;
    s->syn_real_ns = n.syn_real_ns;
    __atomic_store_n(&s->seq, (uint8_t)(odd + 1), __ATOMIC_RELEASE);
}

int portstate_load(const struct portstate_slot *s, uint64_t clock_base_ns,
                   struct portmap_entry *out)
{
    struct portstate_slot c = *s;
    uint16_t port = out->port;
    memset(out, 0, sizeof *out);
    out->port = port;
    out->state = PM_BUSY;
    if (c.seq & 1)
        return -1;
    c.seq = 0;
    static const struct portstate_slot empty;
    if (!memcmp(&c, &empty, sizeof c))
        return 0;
    enum pm_state st = (enum pm_state)(c.state & 7);
    if (c.check != check_of(&c) || st == PM_FREE || st >= PM_NSTATES)
        return -1;
    out->state = st;
    out->isn_known = (c.state & PORTSTATE_F_ISN_KNOWN) != 0;
    out->timestamps = (c.state & PORTSTATE_F_TIMESTAMPS) != 0;
    out->unknown = (c.state & PORTSTATE_F_UNKNOWN) != 0;
    out->rcv_nxt = c.rcv_nxt;
    out->bytes = c.bytes;
    out->until_ms = st == PM_BUSY ? 0 : c.until_ms;
    out->syn_real_ns = c.syn_real_ns;
    if (c.syn_real_ns && c.clock_us != PORTSTATE_CLOCK_NONE)
        out->syn_mono_ns = (uint64_t)((int64_t)c.syn_real_ns - (int64_t)clock_base_ns -
                                      (int64_t)c.clock_us * 1000);
    if (!out->syn_mono_ns)
        out->syn_real_ns = 0; /* no prediction without both */
    return 1;
}

/* ---- a restart ---------------------------------------------------------------------- */

int portstate_same_boot(const struct portstate_clock *then, const struct portstate_clock *now)
{
    if (then->boot_id_known && now->boot_id_known)
        return !memcmp(then->boot_id, now->boot_id, sizeof now->boot_id);
    if (now->boot_ms < then->boot_ms || now->mono_ms < then->mono_ms)
        return 0;
    int64_t b0 = (int64_t)then->real_ms - (int64_t)then->boot_ms;
    int64_t b1 = (int64_t)now->real_ms - (int64_t)now->boot_ms;
    return (b1 > b0 ? b1 - b0 : b0 - b1) <= PORTSTATE_BOOT_SLACK_MS;
}

const char *portstate_restart_name(enum portstate_restart k)
{
    switch (k) {
    case PORTSTATE_FRESH: return "first start";
    case PORTSTATE_SAME_BOOT: return "restart on the same boot";
    case PORTSTATE_REBOOT: return "restart after a clean stop and a reboot";
    case PORTSTATE_HOST_CRASH: return "restart after a host crash (another boot, no clean stop)";
    case PORTSTATE_UNREADABLE: return "unreadable state";
    case PORTSTATE_IMPORTED: return "import of a version 1 state file";
    }
    return "?";
}

void portstate_plan_fresh(struct portstate_plan *p)
{
    memset(p, 0, sizeof *p);
    p->kind = PORTSTATE_FRESH;
}

void portstate_plan_from(const struct portstate_prev *prev, const struct portstate_clock *now,
                         struct portstate_plan *p)
{
    memset(p, 0, sizeof *p);
    uint64_t risk = prev->risk_from_real_ms;
    if (portstate_same_boot(&prev->alive, now)) {
        p->kind = PORTSTATE_SAME_BOOT;
    } else {
        /* The old monotonic clock carried over by the wall clock of both heartbeats. */
        p->shift_ms = ((int64_t)prev->alive.real_ms - (int64_t)prev->alive.mono_ms) -
                      ((int64_t)now->real_ms - (int64_t)now->mono_ms);
        p->kind = prev->clean ? PORTSTATE_REBOOT : PORTSTATE_HOST_CRASH;
        if (!prev->clean && prev->alive.real_ms + PORTSTATE_SYNC_BOUND_MS > risk)
            risk = prev->alive.real_ms + PORTSTATE_SYNC_BOUND_MS;
    }
    p->risk_from_real_ms = risk > now->real_ms ? now->real_ms : risk; /* it ended before now */
}

void portstate_plan_unreadable(uint64_t last_alive_real_ms, const struct portstate_clock *now,
                               struct portstate_plan *p)
{
    memset(p, 0, sizeof *p);
    p->kind = PORTSTATE_UNREADABLE;
    uint64_t risk = last_alive_real_ms ? last_alive_real_ms + PORTSTATE_SYNC_BOUND_MS : 0;
    p->risk_from_real_ms = !risk || risk > now->real_ms ? now->real_ms : risk;
}

uint64_t portstate_unknown_until_ms(const struct portstate_plan *p,
                                    const struct portstate_clock *now, uint64_t tw_ms)
{
    if (!p->risk_from_real_ms || p->risk_from_real_ms + tw_ms <= now->real_ms)
        return 0;
    return now->mono_ms + (p->risk_from_real_ms + tw_ms - now->real_ms);
}

static void make_unknown(struct portmap_entry *e, uint64_t until_ms)
{
    uint16_t port = e->port;
    memset(e, 0, sizeof *e);
    e->port = port;
    e->state = PM_REMOTE_TW;
    e->until_ms = until_ms;
    e->unknown = 1;
}

int portstate_recover(const struct portstate_plan *p, const struct portstate_clock *now,
                      uint64_t tw_ms, int got, struct portmap_entry *e)
{
    if (got == 0 || p->kind == PORTSTATE_FRESH || p->kind == PORTSTATE_UNREADABLE ||
        (got > 0 && e->state == PM_FREE))
        return 0;
    uint64_t blocked = portstate_unknown_until_ms(p, now, tw_ms);
    if (got < 0 || e->state == PM_BUSY) {
        /* Its connection's end is unknown: the backend may hold TIME_WAIT from the crash
         * on (before now), with an rcv_nxt nobody knows.  After a host crash the block of
         * every port covers it. */
        if (p->kind == PORTSTATE_HOST_CRASH && blocked >= now->mono_ms + tw_ms)
            return 0;
        make_unknown(e, now->mono_ms + tw_ms + p->busy_grace_ms);
        return 1;
    }
    uint64_t until = e->until_ms;
    if (p->kind == PORTSTATE_REBOOT || p->kind == PORTSTATE_HOST_CRASH) {
        int64_t u = (int64_t)until + p->shift_ms;
        until = u > 0 ? (uint64_t)u : 0;
        e->syn_real_ns = e->syn_mono_ns = 0; /* the kernel's ISN secret is another */
    }
    if (until <= now->mono_ms)
        return 0; /* over */
    if (p->kind == PORTSTATE_HOST_CRASH) {
        /* It may have been reused after the file was last synced: what it says is no
         * longer known, only that it lasts this long; shorter is covered by the block. */
        if (until <= blocked)
            return 0;
        make_unknown(e, until);
    }
    e->until_ms = until;
    return 1;
}
