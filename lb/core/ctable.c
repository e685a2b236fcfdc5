/* ctable.c - see ctable.h.  A chained hash table (grown to keep chains short, up to the
 * cap) and a list of the clients with no live connection, in the order their last
 * connection closed, which is the order their buckets become full (more or less) and the
 * order they give way at the cap. */
#include "core/ctable.h"

#include <stdlib.h>
#include <string.h>

#include "core/isn.h"

/* ---- the token bucket ---------------------------------------------------------------- */

static void refill(struct ctable_bucket *b, uint32_t rate, uint32_t burst, uint64_t now_ms)
{
    uint64_t cap = (uint64_t)(burst ? burst : 1) * 1000;
    if (now_ms > b->last_ms) {
        uint64_t dt = now_ms - b->last_ms;
        if (rate && dt > cap / rate)
            b->milli = cap;
        else
            b->milli += dt * rate; /* at most cap + milli: no overflow */
        b->last_ms = now_ms;
    }
    if (b->milli > cap) /* full, or the burst was lowered */
        b->milli = cap;
}

void ctable_bucket_fill(struct ctable_bucket *b, uint32_t burst, uint64_t now_ms)
{
    b->milli = (uint64_t)(burst ? burst : 1) * 1000;
    b->last_ms = now_ms;
}

int ctable_bucket_take(struct ctable_bucket *b, uint32_t rate, uint32_t burst,
                       uint64_t now_ms)
{
    refill(b, rate, burst, now_ms);
    if (b->milli < 1000)
        return -1;
    b->milli -= 1000;
    return 0;
}

int ctable_bucket_full(struct ctable_bucket *b, uint32_t rate, uint32_t burst,
                       uint64_t now_ms)
{
    refill(b, rate, burst, now_ms);
    return b->milli >= (uint64_t)(burst ? burst : 1) * 1000;
}

/* ---- the table ----------------------------------------------------------------------- */

struct entry {
    struct entry *hnext;         /* hash chain */
    struct entry *iprev, *inext; /* idle list (no live connection), oldest first */
    uint8_t addr[16];
    uint32_t live;
    struct ctable_bucket b;
};

struct ctable {
    struct entry **buckets;
    size_t nbuckets;    /* a power of two */
    size_t count, max;
    uint8_t key[16];
    struct ctable_limits lim; /* of the last admission */
    struct entry *idle_head, *idle_tail;
};

#define BUCKETS_MIN 16

ctable *ctable_new(size_t max_entries, const uint8_t key[16])
{
    ctable *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->nbuckets = BUCKETS_MIN;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    t->max = max_entries ? max_entries : 1;
    memcpy(t->key, key, sizeof t->key);
    return t;
}

void ctable_free(ctable *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nbuckets; i++)
        while (t->buckets[i]) {
            struct entry *e = t->buckets[i];
            t->buckets[i] = e->hnext;
            free(e);
        }
    free(t->buckets);
    free(t);
}

static size_t slot_of(const ctable *t, const uint8_t addr[16])
{
    return (size_t)isn_siphash24(t->key, addr, 16) & (t->nbuckets - 1);
}

static struct entry *find(const ctable *t, const uint8_t addr[16])
{
    struct entry *e = t->buckets[slot_of(t, addr)];
    while (e && memcmp(e->addr, addr, 16))
        e = e->hnext;
    return e;
}

static void idle_push(ctable *t, struct entry *e)
{
    e->inext = NULL;
    e->iprev = t->idle_tail;
    if (t->idle_tail)
        t->idle_tail->inext = e;
    else
        t->idle_head = e;
    t->idle_tail = e;
}

static void idle_remove(ctable *t, struct entry *e)
{
    if (e->iprev)
        e->iprev->inext = e->inext;
    else
        t->idle_head = e->inext;
    if (e->inext)
        e->inext->iprev = e->iprev;
    else
        t->idle_tail = e->iprev;
    e->iprev = e->inext = NULL;
}

/* Forget an idle client. */
static void drop(ctable *t, struct entry *e)
{
    struct entry **p = &t->buckets[slot_of(t, e->addr)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    idle_remove(t, e);
    t->count--;
    free(e);
}

/* Twice the buckets while there are more clients than buckets (never more buckets than
 * the cap needs).  Without memory for it the chains just get longer. */
static void grow(ctable *t)
{
    if (t->count <= t->nbuckets || t->nbuckets >= t->max)
        return;
    size_t n = t->nbuckets * 2;
    struct entry **nb = calloc(n, sizeof *nb);
    if (!nb)
        return;
    struct entry **old = t->buckets;
    size_t on = t->nbuckets;
    t->buckets = nb;
    t->nbuckets = n;
    for (size_t i = 0; i < on; i++)
        while (old[i]) {
            struct entry *e = old[i];
            old[i] = e->hnext;
            size_t s = slot_of(t, e->addr);
            e->hnext = nb[s];
            nb[s] = e;
        }
    free(old);
}

/* A new client with a full bucket and no live connection yet (not on the idle list:
 * the caller counts its connection at once).  At the cap an idle client gives way.
 * NULL when every client has a live connection, or on OOM. */
static struct entry *add(ctable *t, const uint8_t addr[16], uint64_t now_ms)
{
    if (t->count >= t->max) {
        ctable_expire(t, now_ms);
        if (t->count >= t->max) {
            if (!t->idle_head)
                return NULL;
            drop(t, t->idle_head);
        }
    }
    struct entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    memcpy(e->addr, addr, 16);
    ctable_bucket_fill(&e->b, t->lim.burst, now_ms);
    size_t s = slot_of(t, addr);
    e->hnext = t->buckets[s];
    t->buckets[s] = e;
    t->count++;
    grow(t);
    return e;
}

static void count_live(ctable *t, struct entry *e)
{
    if (e->live++ == 0 && (e->iprev || t->idle_head == e))
        idle_remove(t, e);
}

enum ctable_verdict ctable_admit(ctable *t, const uint8_t addr[16],
                                 const struct ctable_limits *lim, uint64_t now_ms)
{
    t->lim = *lim;
    struct entry *e = find(t, addr);
    if (!e) {
        if (!(e = add(t, addr, now_ms)))
            return CTABLE_FULL;
    } else if (lim->max_conns && e->live >= lim->max_conns) {
        return CTABLE_LIMIT;
    }
    if (lim->rate && ctable_bucket_take(&e->b, lim->rate, lim->burst, now_ms) < 0)
        return CTABLE_RATE; /* never for a new client: its bucket is full */
    count_live(t, e);
    return CTABLE_OK;
}

int ctable_take(ctable *t, const uint8_t addr[16], uint64_t now_ms)
{
    struct entry *e = find(t, addr);
    if (!e && !(e = add(t, addr, now_ms)))
        return -1;
    count_live(t, e);
    return 0;
}

void ctable_release(ctable *t, const uint8_t addr[16], uint64_t now_ms)
{
    struct entry *e = find(t, addr);
    if (!e || e->live == 0 || --e->live > 0)
        return;
    idle_push(t, e);
    if (!t->lim.rate || ctable_bucket_full(&e->b, t->lim.rate, t->lim.burst, now_ms))
        drop(t, e);
}

size_t ctable_expire(ctable *t, uint64_t now_ms)
{
    size_t n = 0;
    while (t->idle_head && (!t->lim.rate || ctable_bucket_full(&t->idle_head->b, t->lim.rate,
                                                               t->lim.burst, now_ms))) {
        drop(t, t->idle_head);
        n++;
    }
    return n;
}

size_t ctable_size(const ctable *t)
{
    return t->count;
}

uint32_t ctable_live(const ctable *t, const uint8_t addr[16])
{
    const struct entry *e = find(t, addr);
    return e ? e->live : 0;
}
