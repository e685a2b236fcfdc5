/* limits.c - see limits.h. */
#include "runtime/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


struct live_count {
    struct live_count *next;
    char *key;
    unsigned n;
};

static unsigned *own_count(struct worker *w, const char *key)
{
    for (struct live_count *c = w->own_counts; c; c = c->next)
        if (!strcmp(c->key, key))
            return &c->n;
    struct live_count *c = calloc(1, sizeof *c);
    if (!c || !(c->key = strdup(key))) {
        free(c);
        return NULL;
    }
    c->next = w->own_counts;
    w->own_counts = c;
    return &c->n;
}

static unsigned *count_of(struct worker *w, const char *key)
{
    return w->shared_count ? w->shared_count(w->shared_arg, key) : own_count(w, key);
}

int limits_init(struct worker *w)
{
    /* Keys a listener name cannot take (names are [A-Za-z0-9_.-]). */
    w->live_all = count_of(w, "*all");
    w->paused_all = count_of(w, "*paused");
    w->queued_all = count_of(w, "*queued");
    return w->live_all && w->paused_all && w->queued_all ? 0 : -1;
}

void limits_free(struct worker *w)
{
    while (w->own_counts) {
        struct live_count *c = w->own_counts;
        w->own_counts = c->next;
        free(c->key);
        free(c);
    }
}

unsigned *limits_listener_count(struct worker *w, const char *name)
{
    char key[CFG_NAME_MAX + 16];
    snprintf(key, sizeof key, "listener:%s", name);
    return count_of(w, key);
}

/* Sequentially consistent: a worker that pauses counts itself in paused_all and then
 * reads the live counters, one that gives a slot back lowers a live counter and then
 * reads paused_all; at least one of them sees the other (limits_pause).  On x86 this
 * costs what relaxed order does: the updates are locked instructions either way. */
static unsigned load(const unsigned *n)
{
    return n ? __atomic_load_n(n, __ATOMIC_SEQ_CST) : 0;
}

int limits_full(const struct listener_rt *lis)
{
    uint32_t all = lis->gen->cfg->max_connections, own = lis->cfg->max_connections;
    return (all && load(lis->gen->w->live_all) >= all) || (own && load(lis->live) >= own);
}

static void add(unsigned *n, int d)
{
    if (n)
        __atomic_add_fetch(n, (unsigned)d, __ATOMIC_SEQ_CST);
}

int limits_take(struct listener_rt *lis)
{
    struct worker *w = lis->gen->w;
    uint32_t all = lis->gen->cfg->max_connections, own = lis->cfg->max_connections;
    unsigned a = w->live_all ? __atomic_add_fetch(w->live_all, 1, __ATOMIC_SEQ_CST) : 0;
    unsigned l = lis->live ? __atomic_add_fetch(lis->live, 1, __ATOMIC_SEQ_CST) : 0;
    if ((all && a > all) || (own && l > own)) {
        add(w->live_all, -1);
        add(lis->live, -1);
        return -1;
    }
    return (all && a == all) || (own && l == own);
}

void limits_untake(struct listener_rt *lis, int took_last)
{
    if (took_last) { /* another listener may have paused on the slot: as a client's end */
        limits_give(lis->gen->w, lis->live);
        return;
    }
    add(lis->gen->w->live_all, -1);
    add(lis->live, -1);
}

void limits_take_adopted(struct worker *w, unsigned *lis_count)
{
    add(w->live_all, 1);
    add(lis_count, 1);
}

void limits_give(struct worker *w, unsigned *lis_count)
{
    add(w->live_all, -1);
    add(lis_count, -1);
    if (!load(w->paused_all))
        return;
    limits_resume(w);
    if (w->wake_others)
        w->wake_others(w);
}

void limits_pause(struct listener_rt *lis)
{
    if (lis->paused_limit)
        return;
    uv_poll_stop(&lis->poll);
    lis->paused_limit = 1;
    add(lis->gen->w->paused_all, 1);
    /* A slot given back between the check that led here and the count above found
     * nobody paused and woke nobody: look again, now that we are counted. */
    if (!limits_full(lis)) {
        lis->paused_limit = 0;
        add(lis->gen->w->paused_all, -1);
        lis->poll_again(lis);
    }
}

void limits_resume(struct worker *w)
{
    struct gen *g = w->cur;
    if (w->draining || !g)
        return;
    for (size_t i = 0; i < g->cfg->n_listeners; i++) {
        struct listener_rt *lis = g->listeners[i];
        if (!lis || !lis->paused_limit || limits_full(lis))
            continue;
        lis->paused_limit = 0;
        add(w->paused_all, -1);
        lis->poll_again(lis);
    }
}
