/* view.c - see view.h.  On the current runtime a view is the current struct server,
 * read through const pointers only: no port map is expired, no health change noticed
 * (the runtime does both on its own paths).  Until the worker rewrite, view_totals()
 * and the listener counts are the current generation's, as /metrics always showed. */
#include "runtime/view.h"

#include "core/health.h"
#include "runtime/server.h"

static const struct server *srv_of(const struct view *v) { return (const struct server *)v; }

const struct config *view_config(const struct view *v) { return srv_of(v)->cfg; }

enum isn_mode view_isn_mode(const struct view *v) { return srv_of(v)->isn_mode; }

uint64_t view_now_ms(const struct view *v) { return uv_now(srv_of(v)->loop); }

void view_totals(const struct view *v, struct view_totals *out)
{
    const struct server *srv = srv_of(v);
    out->sessions_active = srv->sessions_active;
    out->sessions_total = srv->sessions_total;
    out->no_backend_total = srv->no_backend_total;
}

uint64_t view_listener_connections(const struct view *v, size_t listener)
{
    const struct server *srv = srv_of(v);
    if (listener >= srv->cfg->n_listeners || !srv->listeners || !srv->listeners[listener])
        return 0;
    return srv->listeners[listener]->connections_total;
}

static const struct backend_rt *backend_at(const struct server *srv, size_t pool, size_t backend)
{
    if (pool >= srv->cfg->n_pools || backend >= srv->cfg->pools[pool].n_backends)
        return NULL;
    return &srv->pools[pool].backends[backend];
}

int view_backend(const struct view *v, size_t pool, size_t backend, struct view_backend *out)
{
    const struct server *srv = srv_of(v);
    const struct backend_rt *be = backend_at(srv, pool, backend);
    if (!be)
        return -1;
    const struct backend_shared *sh = be->sh;
    int usable = health_usable(&sh->health, view_now_ms(v));
    out->st = &sh->st;
    out->active = sh->active;
    out->up = sh->admin == BE_ENABLED && usable;
    out->demoted = sh->demoted;
    out->rule = sh->demoted ? TWRULE_STRICT : be->cfg->time_wait.rule;
    out->admin = server_backend_admin_name(sh->admin);
    out->health = !sh->health.up ? "down" : usable ? "up" : "ejected";
    return 0;
}

int view_path(const struct view *v, size_t pool, size_t backend, size_t inside,
              uint32_t counts[PM_NSTATES], uint64_t *reuses_total)
{
    const struct server *srv = srv_of(v);
    const struct backend_rt *be = backend_at(srv, pool, backend);
    if (!be || inside >= srv->cfg->pools[pool].n_inside || !be->paths[inside]->pm)
        return -1;
    portmap_counts_at(be->paths[inside]->pm, view_now_ms(v), counts);
    *reuses_total = be->paths[inside]->reuses_total;
    return 0;
}
