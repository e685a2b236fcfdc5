/* snapshot.c - see snapshot.h. */
#include "runtime/snapshot.h"

#include <stdlib.h>
#include <string.h>

#include "os/clock.h"
#include "runtime/backend.h"

void snapshot_free(struct snapshot *s)
{
    if (!s)
        return;
    config_free(s->cfg);
    free(s->workers);
    free(s->listener_conns);
    free(s->pool);
    free(s->listener_rejected);
    free(s->be_base);
    free(s->be);
    free(s->path_base);
    free(s->path);
    free(s);
}

struct snapshot *snapshot_take(const struct worker *w)
{
    const struct gen *g = w->cur;
    const struct config *c = g->cfg;
    struct snapshot *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    size_t nbe = 0, npath = 0;
    for (size_t p = 0; p < c->n_pools; p++) {
        nbe += c->pools[p].n_backends;
        npath += c->pools[p].n_backends * c->pools[p].n_inside;
    }
    s->cfg = config_ref(g->cfg);
    s->nbe = nbe;
    s->npath = npath;
    s->isn_mode = g->isn_mode;
    s->now_ms = worker_now_ms(w);
    uint64_t real_ns, mono_ns; /* kernel-mode headroom */
    clock_pair_ns(&real_ns, &mono_ns);
    s->nworkers = 1;
    s->workers = calloc(1, sizeof *s->workers);
    s->listener_conns = calloc(c->n_listeners + 1, sizeof *s->listener_conns);
    s->pool = calloc(c->n_pools + 1, sizeof *s->pool);
    s->listener_rejected = calloc(c->n_listeners * REJ_N + 1, sizeof *s->listener_rejected);
    s->be_base = calloc(c->n_pools + 1, sizeof *s->be_base);
    s->be = calloc(nbe + 1, sizeof *s->be);
    s->path_base = calloc(nbe + 1, sizeof *s->path_base);
    s->path = calloc(npath + 1, sizeof *s->path);
    if (!s->workers || !s->listener_conns || !s->listener_rejected || !s->pool ||
        !s->be_base || !s->be || !s->path_base || !s->path) {
        snapshot_free(s);
        return NULL;
    }
    s->workers[0].sessions_active = w->sessions_active;
    s->workers[0].sessions_total = w->sessions_total;
    s->workers[0].no_backend_total = w->no_backend_total;
    s->workers[0].buffers_in_use = w->wbufs_in_use;
    s->workers[0].pipes_in_use = w->pipes_in_use;
    s->workers[0].local_errors_total = w->local_errors_total;
    for (size_t i = 0; i < c->n_listeners; i++) {
        const struct listener_stats *st = g->listeners[i] ? g->listeners[i]->stats : NULL;
        if (!st)
            continue;
        s->listener_conns[i] = st->connections_total;
        memcpy(&s->listener_rejected[i * REJ_N], st->rejected, sizeof st->rejected);
    }
    size_t k = 0, q = 0;
    for (size_t p = 0; p < c->n_pools; p++) {
        /* The queue of every generation's pool of that name (a reload leaves clients
         * queued in the old one until they are served), and the waits of the worker. */
        for (const struct gen *o = w->gens; o; o = o->next)
            for (size_t op = 0; op < o->cfg->n_pools; op++)
                if (!strcmp(o->cfg->pools[op].name, c->pools[p].name))
                    s->pool[p].queue_length += o->pools[op].q_len;
        if (g->pools[p].st)
            s->pool[p].queue_wait = g->pools[p].st->queue_wait;
        s->be_base[p] = k;
        for (size_t b = 0; b < c->pools[p].n_backends; b++, k++) {
            const struct backend_rt *be = &g->pools[p].backends[b];
            const struct backend_shared *sh = be->sh;
            struct snap_backend *sb = &s->be[k];
            sb->st = sh->st;
            sb->connect = sh->connect;
            sb->active = sh->active;
            sb->usable = health_usable(&sh->health, s->now_ms);
            sb->health_up = sh->health.up;
            sb->demoted = sh->demoted;
            sb->admin = sh->admin;
            sb->rule = sh->demoted ? TWRULE_STRICT : be->cfg->time_wait.rule;
            sb->weight = backend_weight(be, s->now_ms);
            backend_policy(g, be, &sb->pol);
            s->path_base[k] = q;
            for (size_t i = 0; i < c->pools[p].n_inside; i++, q++) {
                const portmap *pm = pathset_map(be->ps, i);
                if (!pm)
                    continue;
                s->path[q].present = 1;
                portmap_counts_at(pm, s->now_ms, s->path[q].counts);
                s->path[q].unknown = portmap_unknown_at(pm, s->now_ms);
                s->path[q].reuses_total = pathset_reuses(be->ps, i);
                s->path[q].headroom = portmap_headroom_at(pm, s->now_ms, real_ns, mono_ns);
                s->path[q].obs = *pathset_capacity_obs(be->ps, i);
            }
        }
    }
    return s;
}

int snapshot_add(struct snapshot *into, const struct snapshot *s)
{
    const struct config *c = into->cfg;
    if (s->cfg != into->cfg)
        return -1;
    struct snap_worker *ws = realloc(into->workers, (into->nworkers + s->nworkers) * sizeof *ws);
    if (!ws)
        return -1;
    into->workers = ws;
    memcpy(ws + into->nworkers, s->workers, s->nworkers * sizeof *ws);
    into->nworkers += s->nworkers;
    for (size_t i = 0; i < c->n_listeners; i++)
        into->listener_conns[i] += s->listener_conns[i];
    for (size_t p = 0; p < c->n_pools; p++) {
        into->pool[p].queue_length += s->pool[p].queue_length;
        hist_merge(&into->pool[p].queue_wait, &s->pool[p].queue_wait);
    }
    for (size_t i = 0; i < c->n_listeners * REJ_N; i++)
        into->listener_rejected[i] += s->listener_rejected[i];
    for (size_t k = 0; k < into->nbe; k++) {
        struct snap_backend *a = &into->be[k];
        const struct snap_backend *b = &s->be[k];
#define X(f, n, h) a->st.f += b->st.f;
        BACKEND_COUNTERS(X)
#undef X
        a->st.bytes_to_backend += b->st.bytes_to_backend;
        a->st.bytes_to_client += b->st.bytes_to_client;
        a->st.spliced_to_backend += b->st.spliced_to_backend;
        a->st.spliced_to_client += b->st.spliced_to_client;
        hist_merge(&a->connect, &b->connect);
        a->active += b->active;
        if (b->demoted) {
            a->demoted = 1;
            a->rule = b->rule;
            a->pol = b->pol;
        }
    }
    for (size_t q = 0; q < into->npath; q++) {
        struct snap_path *a = &into->path[q];
        const struct snap_path *b = &s->path[q];
        a->present |= b->present;
        for (int st = 0; st < PM_NSTATES; st++)
            a->counts[st] += b->counts[st];
        a->unknown += b->unknown;
        a->reuses_total += b->reuses_total;
        a->headroom += b->headroom;
        capacity_obs_merge(&a->obs, &b->obs);
    }
    return 0;
}
