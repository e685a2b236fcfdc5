/* portmap_read.c - see portmap.h: what a map holds, read without changing it (the
 * inside is portmap_int.h). */
#include "core/portmap_int.h"

size_t portmap_memory(const portmap *pm)
{
    return sizeof *pm + (size_t)pm->pages_used * sizeof(struct page);
}

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
 * expire_list() would move, as it also stops at the first one still running. */
static uint32_t expired_prefix(const portmap *pm, const struct list *l, uint64_t now_ms)
{
    uint32_t n = 0;
    for (uint16_t port = l->head; port;) {
        const struct entry *e = portmap_entry_of(pm, port);
        if (e->until_ms > now_ms)
            break;
        n++;
        port = e->next;
    }
    return n;
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
            struct portmap_entry v = {
                .port = (uint16_t)(p << PAGE_BITS | i),
                .state = (enum pm_state)e->state,
                .until_ms = e->state == PM_BUSY ? 0 : e->until_ms,
                .isn_known = (e->flags & F_ISN_KNOWN) != 0,
                .rcv_nxt = e->rcv_nxt,
            };
            fn(arg, &v);
        }
    }
}
