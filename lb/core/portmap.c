/* portmap.c - see portmap.h.
 *
 * Data structure: ports never used since the map was (re)started are the range
 * [cursor, hi], with no memory per port.  Every other port has an entry in a two-level
 * table (256 pages of 256 entries, a page allocated while any of its ports has an entry).
 * Entries sit on one of four intrusive FIFOs linked by port number (0 = none, as port 0
 * is never in a range): free (released, expired), remote TIME_WAIT, local TIME_WAIT and
 * quarantine, each in order of insertion, which for a fixed TIME_WAIT length is also the
 * order of expiry.  A BUSY entry is on no list.  When nothing is busy, in TIME_WAIT or
 * quarantined any more, the map drops every page and starts a fresh cursor. */
#include "core/portmap.h"

#include <stdlib.h>
#include <string.h>

#define NO_ENTRY 0xff
#define PAGE_BITS 8
#define PAGE_SIZE (1u << PAGE_BITS)
#define NPAGES (65536u >> PAGE_BITS)
/* An idle map shrinks only when it holds at least this many free entries: cheaper than
 * freeing and allocating a page around every lone connection. */
#define SHRINK_MIN_FREE 64

enum {
    F_ISN_KNOWN = 1,
    F_TIMESTAMPS = 2,
    F_WAS_REMOTE_TW = 4, /* BUSY, picked from REMOTE_TW: its memory is still in the entry */
};

struct entry {
    uint8_t state; /* enum pm_state, or NO_ENTRY */
    uint8_t flags;
    uint16_t prev, next;
    uint32_t rcv_nxt;
    uint64_t until_ms;
    uint64_t syn_real_ns, syn_mono_ns, bytes;
};

struct page {
    struct entry e[PAGE_SIZE];
    uint32_t used; /* entries present */
};

struct list {
    uint16_t head, tail;
    uint32_t n;
};

struct portmap {
    uint16_t lo, hi;
    struct portmap_policy pol;
    uint32_t cursor;         /* next never-used port; hi + 1 when none is left */
    uint32_t ahead;          /* entries at ports >= cursor (restored before first use) */
    uint64_t blocked_until;  /* never-used ports are unusable before this */
    int blocked;             /* as of the last expire */
    struct list free_l, remote_l, local_l, quar_l;
    uint32_t busy;
    uint32_t pages_used;
    struct page *pages[NPAGES];
};

const char *portmap_state_name(enum pm_state s)
{
    switch (s) {
    case PM_FREE: return "free";
    case PM_BUSY: return "busy";
    case PM_REMOTE_TW: return "remote_time_wait";
    case PM_LOCAL_TW: return "local_time_wait";
    case PM_QUARANTINED: return "quarantined";
    case PM_NSTATES: break;
    }
    return "?";
}

int portmap_local_tw_parse(const char *s, enum pm_local_tw *out)
{
    if (!strcmp(s, "avoid"))
        *out = PM_LOCAL_TW_AVOID;
    else if (!strcmp(s, "destroy"))
        *out = PM_LOCAL_TW_DESTROY;
    else
        return -1;
    return 0;
}

/* ---- entries ----------------------------------------------------------------------- */

static struct entry *get(const portmap *pm, uint16_t port)
{
    struct page *pg = pm->pages[port >> PAGE_BITS];
    if (!pg)
        return NULL;
    struct entry *e = &pg->e[port & (PAGE_SIZE - 1)];
    return e->state == NO_ENTRY ? NULL : e;
}

/* The entry for <port>, created (state BUSY, on no list) if absent.  NULL on OOM. */
static struct entry *make(portmap *pm, uint16_t port)
{
    struct page **pp = &pm->pages[port >> PAGE_BITS];
    if (!*pp) {
        struct page *pg = malloc(sizeof *pg);
        if (!pg)
            return NULL;
        for (unsigned i = 0; i < PAGE_SIZE; i++)
            pg->e[i].state = NO_ENTRY;
        pg->used = 0;
        *pp = pg;
        pm->pages_used++;
    }
    struct entry *e = &(*pp)->e[port & (PAGE_SIZE - 1)];
    if (e->state == NO_ENTRY) {
        memset(e, 0, sizeof *e);
        e->state = PM_BUSY;
        (*pp)->used++;
        if (port >= pm->cursor)
            pm->ahead++;
    }
    return e;
}

static struct list *list_of(portmap *pm, uint8_t state)
{
    switch (state) {
    case PM_FREE: return &pm->free_l;
    case PM_REMOTE_TW: return &pm->remote_l;
    case PM_LOCAL_TW: return &pm->local_l;
    case PM_QUARANTINED: return &pm->quar_l;
    }
    return NULL; /* BUSY */
}

static void unlink_entry(portmap *pm, uint16_t port, struct entry *e)
{
    struct list *l = list_of(pm, e->state);
    if (!l)
        return;
    if (e->prev)
        get(pm, e->prev)->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        get(pm, e->next)->prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = 0;
    l->n--;
}

/* Put <e> (on no list) into <state>, at the tail of that state's list. */
static void set_state(portmap *pm, uint16_t port, struct entry *e, enum pm_state state)
{
    if (e->state == PM_BUSY)
        pm->busy--;
    e->state = (uint8_t)state;
    struct list *l = list_of(pm, (uint8_t)state);
    if (!l) {
        pm->busy++;
        return;
    }
    e->prev = l->tail;
    e->next = 0;
    if (l->tail)
        get(pm, l->tail)->next = port;
    else
        l->head = port;
    l->tail = port;
    l->n++;
}

/* Forget everything but the policy: every port is never-used again. */
static void reset(portmap *pm)
{
    for (unsigned i = 0; i < NPAGES; i++) {
        free(pm->pages[i]);
        pm->pages[i] = NULL;
    }
    pm->pages_used = 0;
    pm->cursor = pm->lo;
    pm->ahead = 0;
    pm->free_l = pm->remote_l = pm->local_l = pm->quar_l = (struct list){0, 0, 0};
    pm->busy = 0;
}

static void maybe_shrink(portmap *pm, uint64_t now_ms)
{
    if (pm->busy == 0 && pm->remote_l.n == 0 && pm->local_l.n == 0 && pm->quar_l.n == 0 &&
        (pm->free_l.n >= SHRINK_MIN_FREE || pm->cursor > pm->hi) && now_ms >= pm->blocked_until)
        reset(pm);
}

/* ---- life cycle -------------------------------------------------------------------- */

portmap *portmap_new(uint16_t lo, uint16_t hi, const struct portmap_policy *pol)
{
    if (lo == 0 || lo > hi)
        return NULL;
    portmap *pm = calloc(1, sizeof *pm);
    if (!pm)
        return NULL;
    pm->lo = lo;
    pm->hi = hi;
    pm->pol = *pol;
    pm->cursor = lo;
    return pm;
}

void portmap_free(portmap *pm)
{
    if (!pm)
        return;
    for (unsigned i = 0; i < NPAGES; i++)
        free(pm->pages[i]);
    free(pm);
}

void portmap_set_policy(portmap *pm, const struct portmap_policy *pol) { pm->pol = *pol; }

size_t portmap_memory(const portmap *pm)
{
    return sizeof *pm + (size_t)pm->pages_used * sizeof(struct page);
}

/* ---- time -------------------------------------------------------------------------- */

static void expire_list(portmap *pm, struct list *l, uint64_t now_ms)
{
    while (l->head) {
        uint16_t port = l->head;
        struct entry *e = get(pm, port);
        if (e->until_ms > now_ms)
            break;
        unlink_entry(pm, port, e);
        e->flags = 0;
        set_state(pm, port, e, PM_FREE);
    }
}

void portmap_expire(portmap *pm, uint64_t now_ms)
{
    expire_list(pm, &pm->remote_l, now_ms);
    expire_list(pm, &pm->local_l, now_ms);
    expire_list(pm, &pm->quar_l, now_ms);
    pm->blocked = now_ms < pm->blocked_until && pm->cursor <= pm->hi;
    maybe_shrink(pm, now_ms);
}

/* ---- choice ------------------------------------------------------------------------ */

static void take(portmap *pm, uint16_t port, struct entry *e, enum pm_pick_kind kind,
                 struct portmap_pick *out)
{
    unlink_entry(pm, port, e);
    if (kind == PM_PICK_REMOTE_TW)
        e->flags |= F_WAS_REMOTE_TW;
    set_state(pm, port, e, PM_BUSY);
    memset(out, 0, sizeof *out);
    out->port = port;
    out->kind = kind;
}

int portmap_acquire(portmap *pm, uint64_t now_ms, uint64_t now_real_ns, uint64_t now_mono_ns,
                    struct portmap_pick *out)
{
    portmap_expire(pm, now_ms);

    /* 1. Never used: nobody anywhere remembers these 4-tuples. */
    if (now_ms >= pm->blocked_until) {
        while (pm->cursor <= pm->hi) {
            uint16_t port = (uint16_t)pm->cursor++;
            if (get(pm, port)) {
                pm->ahead--; /* restored earlier: it lives on a list already */
                continue;
            }
            if (!make(pm, port)) {
                pm->cursor--;
                return -1;
            }
            pm->busy++; /* make() creates the entry BUSY, on no list */
            memset(out, 0, sizeof *out);
            out->port = port;
            out->kind = PM_PICK_FRESH;
            return 0;
        }
    }

    /* 2. Free again, least recently released first. */
    if (pm->free_l.head) {
        uint16_t port = pm->free_l.head;
        take(pm, port, get(pm, port), PM_PICK_FRESH, out);
        return 0;
    }

    /* 3. Our own TIME_WAIT: the backend remembers nothing of it.  With timestamps the
     * kernel takes it over on explicit bind; without, only if we may destroy it. */
    uint16_t port = pm->local_l.head;
    for (int i = 0; port && i < PORTMAP_SCAN; i++) {
        struct entry *e = get(pm, port);
        uint16_t next = e->next;
        int ts = (e->flags & F_TIMESTAMPS) != 0;
        if (ts || pm->pol.local_tw == PM_LOCAL_TW_DESTROY) {
            int known = (e->flags & F_ISN_KNOWN) != 0;
            uint32_t rcv_nxt = e->rcv_nxt;
            take(pm, port, e, PM_PICK_LOCAL_TW, out);
            out->destroy_local_tw = !ts;
            out->rcv_nxt_known = known;
            out->rcv_nxt = rcv_nxt;
            return 0;
        }
        port = next;
    }

    /* 4. The backend's TIME_WAIT, only where it will accept our SYN at once. */
    if (pm->pol.mode == ISN_OFF || pm->pol.rule.kind == TWRULE_STRICT)
        return -1;
    port = pm->remote_l.head;
    for (int i = 0; port && i < PORTMAP_SCAN; i++) {
        struct entry *e = get(pm, port);
        uint16_t next = e->next;
        int ok = 0;
        if (pm->pol.mode == ISN_EXPLICIT)
            ok = (e->flags & F_ISN_KNOWN) != 0; /* isn_reuse() makes it "after" */
        else if (pm->pol.mode == ISN_KERNEL)
            ok = e->syn_mono_ns != 0 &&
                 isn_kernel_reuse_safe(e->syn_real_ns, e->syn_mono_ns, now_real_ns,
                                       now_mono_ns, e->bytes, pm->pol.kernel_margin);
        if (ok) {
            uint32_t rcv_nxt = e->rcv_nxt;
            uint64_t syn = e->syn_real_ns, bytes = e->bytes;
            take(pm, port, e, PM_PICK_REMOTE_TW, out);
            out->rcv_nxt = rcv_nxt;
            if (pm->pol.mode == ISN_KERNEL) {
                out->old_syn_real_ns = syn;
                out->old_bytes = bytes;
                out->decided_real_ns = now_real_ns;
            }
            return 0;
        }
        port = next;
    }
    return -1;
}

void portmap_release(portmap *pm, uint16_t port, const struct portmap_release *r,
                     uint64_t now_ms)
{
    if (port < pm->lo || port > pm->hi)
        return;
    struct entry *e = get(pm, port);
    if (!e || e->state != PM_BUSY)
        return;
    if (r->closer == PM_CLOSER_NONE && r->never_connected && (e->flags & F_WAS_REMOTE_TW) &&
        e->until_ms > now_ms) {
        /* The SYN was ignored or refused: the backend still holds the old connection's
         * TIME_WAIT, and the entry still holds what we knew of it. */
        e->flags &= (uint8_t)~F_WAS_REMOTE_TW;
        set_state(pm, port, e, PM_REMOTE_TW);
        maybe_shrink(pm, now_ms);
        return;
    }
    e->flags = 0;
    switch (r->closer) {
    case PM_CLOSER_BACKEND:
        e->until_ms = now_ms + pm->pol.rule.time_wait_ms;
        if (r->isn_known)
            e->flags |= F_ISN_KNOWN;
        /* SYN and FIN take one sequence number each. */
        e->rcv_nxt = r->isn + (uint32_t)r->bytes_to_backend + 2;
        e->syn_real_ns = r->syn_real_ns;
        e->syn_mono_ns = r->syn_mono_ns;
        e->bytes = r->bytes_to_backend;
        set_state(pm, port, e, PM_REMOTE_TW);
        break;
    case PM_CLOSER_LOCAL:
        e->until_ms = now_ms + pm->pol.local_tw_ms;
        if (r->timestamps)
            e->flags |= F_TIMESTAMPS;
        /* If the FINs crossed on the wire, the backend holds a TIME_WAIT too: keep where
         * its sequence ended, so a reuse can start above it (explicit mode). */
        if (r->isn_known) {
            e->flags |= F_ISN_KNOWN;
            e->rcv_nxt = r->isn + (uint32_t)r->bytes_to_backend + 2;
        }
        set_state(pm, port, e, PM_LOCAL_TW);
        break;
    case PM_CLOSER_NONE:
        set_state(pm, port, e, PM_FREE);
        break;
    }
    maybe_shrink(pm, now_ms);
}

void portmap_quarantine(portmap *pm, uint16_t port, uint64_t now_ms)
{
    if (port < pm->lo || port > pm->hi)
        return;
    struct entry *e = get(pm, port);
    if (!e || e->state != PM_BUSY)
        return;
    e->flags = 0;
    e->until_ms = now_ms + pm->pol.quarantine_ms;
    set_state(pm, port, e, PM_QUARANTINED);
}

int portmap_restore(portmap *pm, uint16_t port, enum pm_state state, uint64_t until_ms,
                    int isn_known, uint32_t rcv_nxt)
{
    if (port < pm->lo || port > pm->hi ||
        (state != PM_REMOTE_TW && state != PM_LOCAL_TW && state != PM_QUARANTINED))
        return -1;
    struct entry *e = get(pm, port);
    if (e && e->state == PM_BUSY)
        return -1;
    if (e) {
        unlink_entry(pm, port, e);
    } else {
        if (!(e = make(pm, port)))
            return -1;
        pm->busy++; /* set_state() below accounts for leaving BUSY */
    }
    e->flags = isn_known ? F_ISN_KNOWN : 0;
    e->rcv_nxt = rcv_nxt;
    e->until_ms = until_ms;
    e->syn_real_ns = e->syn_mono_ns = e->bytes = 0;
    set_state(pm, port, e, state);
    return 0;
}

void portmap_block_unknown(portmap *pm, uint64_t until_ms)
{
    if (until_ms > pm->blocked_until)
        pm->blocked_until = until_ms;
    pm->blocked = pm->cursor <= pm->hi;
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
 * expire_list() would move, as it also stops at the first one still running. */
static uint32_t expired_prefix(const portmap *pm, const struct list *l, uint64_t now_ms)
{
    uint32_t n = 0;
    for (uint16_t port = l->head; port;) {
        const struct entry *e = get(pm, port);
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
