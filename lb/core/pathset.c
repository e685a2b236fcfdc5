/* pathset.c - see pathset.h. */
#include "core/pathset.h"

#include <stdlib.h>
#include <string.h>

/* One path, shared by every path set that refers to it. */
struct path {
    unsigned refs;
    portmap *pm;           /* NULL: families differ, never used */
    uint64_t reuses_total;
    struct capacity_obs obs;  /* what its released connections did */
    struct pathset_inside inside;
    uint16_t lo, hi;
};

struct pathset {
    size_t n;
    size_t next;           /* the path tried first by the next acquire */
    struct path **paths;
};

static int same_inside(const struct pathset_inside *a, const struct pathset_inside *b)
{
    return a->family == b->family && a->len == b->len && memcmp(a->addr, b->addr, a->len) == 0;
}

static void path_put(struct path *p)
{
    if (p && --p->refs == 0) {
        portmap_free(p->pm);
        free(p);
    }
}

struct seed {
    portmap *to;
};

/* Busy ports belong to live connections of the old map, which release them there. */
static void seed_entry(void *arg, const struct portmap_entry *e)
{
    struct seed *s = arg;
    if (e->state != PM_BUSY)
        (void)portmap_restore(s->to, e); /* all of it: the SYN times for ISN_KERNEL too */
}

static struct path *path_make(int backend_family, const struct pathset_inside *in, uint16_t lo,
                              uint16_t hi, const struct portmap_policy *pol,
                              const pathset *prev)
{
    const struct path *old = NULL;
    for (size_t j = 0; prev && j < prev->n; j++)
        if (same_inside(&prev->paths[j]->inside, in))
            old = prev->paths[j];
    if (old && old->pm && old->lo == lo && old->hi == hi) {
        struct path *shared = (struct path *)old; /* the count is the only change */
        shared->refs++;
        return shared;
    }
    struct path *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->refs = 1;
    p->inside = *in;
    p->lo = lo;
    p->hi = hi;
    if (in->family != backend_family)
        return p;
    if (!(p->pm = portmap_new(lo, hi, pol))) {
        free(p);
        return NULL;
    }
    if (old && old->pm) {
        struct seed s = {p->pm};
        portmap_foreach(old->pm, seed_entry, &s);
        p->reuses_total = old->reuses_total;
        p->obs = old->obs;
    }
    return p;
}

pathset *pathset_new(int backend_family, const struct pathset_inside *inside, size_t n,
                     uint16_t lo, uint16_t hi, const struct portmap_policy *pol,
                     const pathset *prev)
{
    if (n == 0 || lo == 0 || lo > hi)
        return NULL;
    pathset *ps = calloc(1, sizeof *ps);
    if (!ps || !(ps->paths = calloc(n, sizeof *ps->paths))) {
        free(ps);
        return NULL;
    }
    ps->n = n;
    for (size_t i = 0; i < n; i++)
        if (!(ps->paths[i] = path_make(backend_family, &inside[i], lo, hi, pol, prev))) {
            pathset_free(ps);
            return NULL;
        }
    return ps;
}

void pathset_free(pathset *ps)
{
    if (!ps)
        return;
    for (size_t i = 0; i < ps->n; i++)
        path_put(ps->paths[i]);
    free(ps->paths);
    free(ps);
}

size_t pathset_size(const pathset *ps)
{
    return ps->n;
}

portmap *pathset_map(const pathset *ps, size_t i)
{
    return i < ps->n ? ps->paths[i]->pm : NULL;
}

uint64_t pathset_reuses(const pathset *ps, size_t i)
{
    return i < ps->n ? ps->paths[i]->reuses_total : 0;
}

const struct capacity_obs *pathset_capacity_obs(const pathset *ps, size_t i)
{
    static const struct capacity_obs none;
    return i < ps->n ? &ps->paths[i]->obs : &none;
}

void pathset_set_policy(pathset *ps, const struct portmap_policy *pol)
{
    for (size_t i = 0; i < ps->n; i++)
        if (ps->paths[i]->pm)
            portmap_set_policy(ps->paths[i]->pm, pol);
}

int pathset_acquire(pathset *ps, uint64_t now_ms, uint64_t now_real_ns, uint64_t now_mono_ns,
                    struct pathset_pick *out)
{
    for (size_t k = 0; k < ps->n; k++) {
        size_t i = (ps->next + k) % ps->n;
        portmap *pm = ps->paths[i]->pm;
        if (pm && portmap_acquire(pm, now_ms, now_real_ns, now_mono_ns, &out->port) == 0) {
            ps->next = i + 1;
            out->path = i;
            out->acquired_ms = now_ms;
            return 0;
        }
    }
    return -1;
}

uint64_t pathset_next_usable_ms(const pathset *ps, uint64_t now_ms, uint64_t now_real_ns,
                                uint64_t now_mono_ns)
{
    uint64_t at = UINT64_MAX;
    for (size_t i = 0; i < ps->n && at > now_ms; i++) {
        const portmap *pm = ps->paths[i]->pm;
        if (pm) {
            uint64_t t = portmap_next_usable_ms(pm, now_ms, now_real_ns, now_mono_ns);
            if (t < at)
                at = t;
        }
    }
    return at;
}

void pathset_release(pathset *ps, const struct pathset_pick *p, const struct portmap_release *r,
                     uint64_t now_ms)
{
    portmap *pm = pathset_map(ps, p->path);
    if (!pm)
        return;
    portmap_release(pm, p->port.port, r, now_ms);
    capacity_observe(&ps->paths[p->path]->obs,
                     now_ms > p->acquired_ms ? now_ms - p->acquired_ms : 0, r);
}

void pathset_quarantine(pathset *ps, const struct pathset_pick *p, uint64_t now_ms)
{
    portmap *pm = pathset_map(ps, p->path);
    if (pm)
        portmap_quarantine(pm, p->port.port, now_ms);
}

void pathset_count_reuse(pathset *ps, const struct pathset_pick *p)
{
    if (p->path < ps->n)
        ps->paths[p->path]->reuses_total++;
}

void pathset_expire(pathset *ps, uint64_t now_ms)
{
    for (size_t i = 0; i < ps->n; i++)
        if (ps->paths[i]->pm)
            portmap_expire(ps->paths[i]->pm, now_ms);
}
