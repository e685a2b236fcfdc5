/* portmap.c - see portmap.h: life cycle, choice, release and time.  The data structure
 * is described in portmap_int.h; reading a map without changing it is portmap_read.c. */
#include "core/portmap_int.h"

#include <stdlib.h>
#include <string.h>

/* An idle map shrinks only when it holds at least this many free entries: cheaper than
 * freeing and allocating a page around every lone connection. */
#define SHRINK_MIN_FREE 64

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
    return portmap_entry_of(pm, port);
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

/* Keep remote_known, local_ts and unknown: <e> joins (d = 1) or leaves (d = -1) its
 * state's list with the flags it has. */
static void count_flags(portmap *pm, const struct entry *e, int d)
{
    if (e->state == PM_REMOTE_TW && (e->flags & F_ISN_KNOWN))
        pm->remote_known += (uint32_t)d;
    else if (e->state == PM_LOCAL_TW && (e->flags & F_TIMESTAMPS))
        pm->local_ts += (uint32_t)d;
    if (e->flags & F_UNKNOWN)
        pm->unknown += (uint32_t)d;
}

static void unlink_entry(portmap *pm, uint16_t port, struct entry *e)
{
    struct list *l = list_of(pm, e->state);
    if (!l)
        return;
    count_flags(pm, e, -1);
    e->flags &= (uint8_t)~F_UNKNOWN;
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

void portmap_view_of(uint16_t port, const struct entry *e, struct portmap_entry *v)
{
    int remote = e->state == PM_REMOTE_TW;
    *v = (struct portmap_entry){
        .port = port,
        .state = (enum pm_state)e->state,
        .until_ms = e->state == PM_BUSY || e->state == PM_FREE ? 0 : e->until_ms,
        .isn_known = (e->flags & F_ISN_KNOWN) != 0,
        .rcv_nxt = e->rcv_nxt,
        .timestamps = (e->flags & F_TIMESTAMPS) != 0,
        .unknown = (e->flags & F_UNKNOWN) != 0,
        .syn_real_ns = remote ? e->syn_real_ns : 0,
        .syn_mono_ns = remote ? e->syn_mono_ns : 0,
        .bytes = remote ? e->bytes : 0,
    };
}

static void tell(const portmap *pm, uint16_t port, const struct entry *e)
{
    struct portmap_entry v;
    if (!pm->obs)
        return;
    portmap_view_of(port, e, &v);
    pm->obs(pm->obs_arg, &v);
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
        tell(pm, port, e);
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
    count_flags(pm, e, 1);
    tell(pm, port, e);
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
    pm->remote_known = pm->local_ts = pm->unknown = 0;
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

void portmap_observe(portmap *pm, portmap_observer *fn, void *arg)
{
    pm->obs = fn;
    pm->obs_arg = arg;
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
            tell(pm, port, get(pm, port));
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

int portmap_restore(portmap *pm, const struct portmap_entry *v)
{
    uint16_t port = v->port;
    if (port < pm->lo || port > pm->hi ||
        (v->state != PM_REMOTE_TW && v->state != PM_LOCAL_TW && v->state != PM_QUARANTINED))
        return -1;
    struct entry *e = get(pm, port);
    if (e && (e->state == PM_BUSY || ((e->flags & F_UNKNOWN) && v->state != PM_REMOTE_TW)))
        return -1; /* our kernel's TIME_WAIT says nothing of what the backend holds */
    if (e) {
        unlink_entry(pm, port, e);
    } else {
        if (!(e = make(pm, port)))
            return -1;
        pm->busy++; /* set_state() below accounts for leaving BUSY */
    }
    int remote = v->state == PM_REMOTE_TW, unknown = remote && v->unknown;
    /* unknown: nothing of the old connection is known, so no policy may reuse it before
     * until_ms (acquire, next_usable_ms and headroom_at all rely on it) */
    e->flags = unknown ? F_UNKNOWN
                       : (uint8_t)((v->isn_known ? F_ISN_KNOWN : 0) |
                                   (v->timestamps ? F_TIMESTAMPS : 0));
    e->rcv_nxt = unknown ? 0 : v->rcv_nxt;
    e->until_ms = v->until_ms;
    e->syn_real_ns = remote && !unknown ? v->syn_real_ns : 0;
    e->syn_mono_ns = remote && !unknown ? v->syn_mono_ns : 0;
    e->bytes = remote && !unknown ? v->bytes : 0;
    set_state(pm, port, e, v->state);
    return 0;
}

void portmap_block_unknown(portmap *pm, uint64_t until_ms)
{
    if (until_ms > pm->blocked_until)
        pm->blocked_until = until_ms;
    pm->blocked = pm->cursor <= pm->hi;
}

/* ---- waiting ----------------------------------------------------------------------- */

static uint64_t earlier(uint64_t a, uint64_t b) { return a < b ? a : b; }

uint64_t portmap_next_usable_ms(const portmap *pm, uint64_t now_ms, uint64_t now_real_ns,
                                uint64_t now_mono_ns)
{
    uint64_t at = UINT64_MAX;
    if (pm->cursor <= pm->hi && pm->hi - pm->cursor + 1 > pm->ahead)
        at = earlier(at, pm->blocked_until); /* never-used ports left (not all restored) */
    if (pm->free_l.head)
        return now_ms;
    const struct list *timed[] = {&pm->local_l, &pm->quar_l, &pm->remote_l};
    for (size_t k = 0; k < 3; k++)
        if (timed[k]->head)
            at = earlier(at, get(pm, timed[k]->head)->until_ms); /* FIFO: head ends first */
    uint16_t port = pm->local_l.head;
    for (int i = 0; port && i < PORTMAP_SCAN; i++) {
        const struct entry *e = get(pm, port);
        if ((e->flags & F_TIMESTAMPS) || pm->pol.local_tw == PM_LOCAL_TW_DESTROY)
            return now_ms;
        port = e->next;
    }
    if (pm->pol.mode != ISN_OFF && pm->pol.rule.kind != TWRULE_STRICT) {
        port = pm->remote_l.head;
        for (int i = 0; port && i < PORTMAP_SCAN; i++) {
            const struct entry *e = get(pm, port);
            if (pm->pol.mode == ISN_EXPLICIT && (e->flags & F_ISN_KNOWN))
                return now_ms;
            uint64_t dt = now_real_ns - e->syn_real_ns;
            uint64_t dmono = now_mono_ns > e->syn_mono_ns ? now_mono_ns - e->syn_mono_ns : 0;
            /* a stepped wall clock voids the prediction until the TIME_WAIT ends */
            if (pm->pol.mode == ISN_KERNEL && e->syn_mono_ns && now_real_ns >= e->syn_real_ns &&
                (dt > dmono ? dt - dmono : dmono - dt) <= isn_kernel_skew_limit_ns(pm->pol.kernel_margin)) {
                uint64_t safe = isn_kernel_safe_at_ns(dt, e->bytes, pm->pol.kernel_margin);
                /* on the monotonic clock, rounded up to the next millisecond */
                uint64_t wait_ms = (safe - dt + 999999) / 1000000;
                at = earlier(at, now_ms + wait_ms);
            }
            port = e->next;
        }
    }
    return at < now_ms ? now_ms : at;
}
