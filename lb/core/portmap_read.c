/* portmap_read.c - see portmap.h: what a map holds, read without changing it (the
 * inside is portmap_int.h). */
#include "core/portmap_int.h"

size_t portmap_memory(const portmap *pm)
{
    return sizeof *pm + (size_t)pm->pages_used * sizeof(struct page);
}

/* ---- reading ----------------------------------------------------------------------- */

void portmap_counts(const portmap *pm, uint32_t counts[PM_NSTATES])
{
    uint32_t total = (uint32_t)pm->hi - pm->lo + 1;
    uint32_t never = pm->cursor <= pm->hi ? pm->hi - pm->cursor + 1 - pm->ahead : 0;
    counts[PM_BUSY] = pm->busy;
    counts[PM_REMOTE_TW] = pm->remote_l.n + (pm->blocked ? never : 0);
    counts[PM_LOCAL_TW] = pm->local_l.n;
    counts[PM_QUARANTINED] = pm->quar_l.n;
    counts[PM_FREE] = total - counts[PM_BUSY] - counts[PM_REMOTE_TW] - counts[PM_LOCAL_TW] -
                      counts[PM_QUARANTINED];
}

/* Entries at the head of <l> whose time is up by <now_ms>: exactly those
 * expire_list() would move, as it also stops at the first one still running.  With
 * <flag>, *flagged counts those of them that carry it; <next> (if not NULL) gets the
 * first entry still running (0: none). */
static uint32_t scan_expired(const portmap *pm, const struct list *l, uint64_t now_ms,
                             uint8_t flag, uint32_t *flagged, uint16_t *next)
{
    uint32_t n = 0, f = 0;
    uint16_t port = l->head;
    while (port) {
        const struct entry *e = portmap_entry_of(pm, port);
        if (e->until_ms > now_ms)
            break;
        n++;
        f += (e->flags & flag) != 0;
        port = e->next;
    }
    if (flagged)
        *flagged = f;
    if (next)
        *next = port;
    return n;
}

static uint32_t expired_prefix(const portmap *pm, const struct list *l, uint64_t now_ms)
{
    return scan_expired(pm, l, now_ms, 0, NULL, NULL);
}

void portmap_counts_at(const portmap *pm, uint64_t now_ms, uint32_t counts[PM_NSTATES])
{
    uint32_t total = (uint32_t)pm->hi - pm->lo + 1;
    uint32_t never = pm->cursor <= pm->hi ? pm->hi - pm->cursor + 1 - pm->ahead : 0;
    int blocked = now_ms < pm->blocked_until && pm->cursor <= pm->hi;
    counts[PM_BUSY] = pm->busy;
    counts[PM_REMOTE_TW] =
        pm->remote_l.n - expired_prefix(pm, &pm->remote_l, now_ms) + (blocked ? never : 0);
    counts[PM_LOCAL_TW] = pm->local_l.n - expired_prefix(pm, &pm->local_l, now_ms);
    counts[PM_QUARANTINED] = pm->quar_l.n - expired_prefix(pm, &pm->quar_l, now_ms);
    counts[PM_FREE] = total - counts[PM_BUSY] - counts[PM_REMOTE_TW] - counts[PM_LOCAL_TW] -
                      counts[PM_QUARANTINED];
}

uint32_t portmap_headroom_at(const portmap *pm, uint64_t now_ms, uint64_t now_real_ns,
                             uint64_t now_mono_ns)
{
    const struct portmap_policy *pol = &pm->pol;
    uint32_t never = pm->cursor <= pm->hi ? pm->hi - pm->cursor + 1 - pm->ahead : 0;
    int blocked = now_ms < pm->blocked_until && pm->cursor <= pm->hi;
    uint32_t n = (blocked ? 0 : never) + pm->free_l.n + expired_prefix(pm, &pm->quar_l, now_ms);

    /* our own TIME_WAIT: over, or reusable with timestamps / by destroying it */
    uint32_t flagged;
    uint32_t over = scan_expired(pm, &pm->local_l, now_ms, F_TIMESTAMPS, &flagged, NULL);
    n += pol->local_tw == PM_LOCAL_TW_DESTROY ? pm->local_l.n
                                              : over + (pm->local_ts - flagged);

    /* the backend's TIME_WAIT: over, or reused now under the policy */
    uint16_t port;
    over = scan_expired(pm, &pm->remote_l, now_ms, F_ISN_KNOWN, &flagged, &port);
    n += over;
    if (pol->mode == ISN_OFF || pol->rule.kind == TWRULE_STRICT)
        return n;
    if (pol->mode == ISN_EXPLICIT)
        return n + (pm->remote_known - flagged);
    for (uint32_t i = 0; port && i < PORTMAP_HEADROOM_SCAN; i++) {
        const struct entry *e = portmap_entry_of(pm, port);
        n += e->syn_mono_ns != 0 &&
             isn_kernel_reuse_safe(e->syn_real_ns, e->syn_mono_ns, now_real_ns, now_mono_ns,
                                   e->bytes, pol->kernel_margin);
        port = e->next;
    }
    return n;
}

uint32_t portmap_unknown_at(const portmap *pm, uint64_t now_ms)
{
    uint32_t over; /* the expired head, as counts_at */
    scan_expired(pm, &pm->remote_l, now_ms, F_UNKNOWN, &over, NULL);
    uint32_t n = pm->unknown - over;
    if (now_ms < pm->blocked_until && pm->cursor <= pm->hi)
        n += pm->hi - pm->cursor + 1 - pm->ahead;
    return n;
}

void portmap_foreach(const portmap *pm, void (*fn)(void *arg, const struct portmap_entry *e),
                     void *arg)
{
    for (unsigned p = 0; p < NPAGES; p++) {
        const struct page *pg = pm->pages[p];
        if (!pg)
            continue;
        for (unsigned i = 0; i < PAGE_SIZE; i++) {
            const struct entry *e = &pg->e[i];
            if (e->state == NO_ENTRY || e->state == PM_FREE)
                continue;
            struct portmap_entry v;
            portmap_view_of((uint16_t)(p << PAGE_BITS | i), e, &v);
            fn(arg, &v);
        }
    }
}
