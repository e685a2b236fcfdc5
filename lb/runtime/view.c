/* view.c - see view.h.  A view is the worker itself, read through const pointers; the
 * current generation's config gives the indexes. */
#include "runtime/view.h"

#include "runtime/backend.h"

static const struct worker *W(const struct view *v)
{
    return (const struct worker *)v;
}

static const struct gen *G(const struct view *v)
{
    return W(v)->cur;
}

const struct view *view_of(const struct worker *w)
{
    return (const struct view *)w;
}

const struct config *view_config(const struct view *v)
{
    return G(v)->cfg;
}

enum isn_mode view_isn_mode(const struct view *v)
{
    return G(v)->isn_mode;
}

static uint64_t view_now_ms(const struct view *v)
{
    return worker_now_ms(W(v));
}

void view_totals(const struct view *v, struct view_totals *out)
{
    out->sessions_active = W(v)->sessions_active;
    out->sessions_total = W(v)->sessions_total;
    out->no_backend_total = W(v)->no_backend_total;
}

uint64_t view_listener_connections(const struct view *v, size_t listener)
{
    const struct gen *g = G(v);
    if (listener >= g->cfg->n_listeners || !g->listeners[listener])
        return 0;
    return g->listeners[listener]->connections_total;
}

static const struct backend_rt *find(const struct view *v, size_t pool, size_t backend)
{
    const struct gen *g = G(v);
    if (pool >= g->cfg->n_pools || backend >= g->cfg->pools[pool].n_backends)
        return NULL;
    return &g->pools[pool].backends[backend];
}

int view_backend(const struct view *v, size_t pool, size_t backend, struct view_backend *out)
{
    const struct backend_rt *be = find(v, pool, backend);
    if (!be)
        return -1;
    const struct backend_shared *sh = be->sh;
    int usable = health_usable(&sh->health, view_now_ms(v));
    out->st = &sh->st;
    out->active = sh->active;
    out->up = sh->admin == BE_ENABLED && usable;
    out->demoted = sh->demoted;
    out->rule = sh->demoted ? TWRULE_STRICT : be->cfg->time_wait.rule;
    out->admin = backend_admin_name(sh->admin);
    out->health = !sh->health.up ? "down" : usable ? "up" : "ejected";
    return 0;
}

int view_path(const struct view *v, size_t pool, size_t backend, size_t inside,
              uint32_t counts[PM_NSTATES], uint64_t *reuses_total)
{
    const struct backend_rt *be = find(v, pool, backend);
    const portmap *pm = be ? pathset_map(be->ps, inside) : NULL;
    if (!pm)
        return -1;
    portmap_counts_at(pm, view_now_ms(v), counts);
    *reuses_total = pathset_reuses(be->ps, inside);
    return 0;
}
