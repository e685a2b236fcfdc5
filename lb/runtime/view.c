/* view.c - see view.h.  A view is a snapshot (runtime/snapshot.h): the sum of every
 * worker's figures, taken on their own threads. */
#include "runtime/view.h"

#include "core/slowstart.h"
#include "runtime/backend.h"
#include "runtime/snapshot.h"

_Static_assert(SLOWSTART_SCALE == 1000, "view_backend.weight_milli is in thousandths");

static const struct snapshot *S(const struct view *v)
{
    return (const struct snapshot *)v;
}

const struct view *view_of(const struct snapshot *s)
{
    return (const struct view *)s;
}

const struct config *view_config(const struct view *v)
{
    return S(v)->cfg;
}

enum isn_mode view_isn_mode(const struct view *v)
{
    return S(v)->isn_mode;
}

void view_totals(const struct view *v, struct view_totals *out)
{
    struct view_totals t = {0};
    for (size_t i = 0; i < S(v)->nworkers; i++) {
        t.sessions_active += S(v)->workers[i].sessions_active;
        t.sessions_total += S(v)->workers[i].sessions_total;
        t.no_backend_total += S(v)->workers[i].no_backend_total;
        t.buffers_in_use += S(v)->workers[i].buffers_in_use;
        t.pipes_in_use += S(v)->workers[i].pipes_in_use;
        t.local_errors_total += S(v)->workers[i].local_errors_total;
    }
    *out = t;
}

size_t view_workers(const struct view *v)
{
    return S(v)->nworkers;
}

int view_worker(const struct view *v, size_t i, struct view_totals *out)
{
    if (i >= S(v)->nworkers)
        return -1;
    out->sessions_active = S(v)->workers[i].sessions_active;
    out->sessions_total = S(v)->workers[i].sessions_total;
    out->no_backend_total = S(v)->workers[i].no_backend_total;
    out->buffers_in_use = S(v)->workers[i].buffers_in_use;
    out->pipes_in_use = S(v)->workers[i].pipes_in_use;
    return 0;
}

uint64_t view_listener_connections(const struct view *v, size_t listener)
{
    return listener < S(v)->cfg->n_listeners ? S(v)->listener_conns[listener] : 0;
}

uint64_t view_listener_rejected(const struct view *v, size_t listener, enum reject_reason why)
{
    if (listener >= S(v)->cfg->n_listeners || why >= REJ_N)
        return 0;
    return S(v)->listener_rejected[listener * REJ_N + why];
}

static const struct snap_backend *find(const struct view *v, size_t pool, size_t backend,
                                       size_t *k)
{
    const struct config *c = S(v)->cfg;
    if (pool >= c->n_pools || backend >= c->pools[pool].n_backends)
        return NULL;
    *k = S(v)->be_base[pool] + backend;
    return &S(v)->be[*k];
}

int view_backend(const struct view *v, size_t pool, size_t backend, struct view_backend *out)
{
    size_t k;
    const struct snap_backend *b = find(v, pool, backend, &k);
    if (!b)
        return -1;
    out->st = &b->st;
    out->active = b->active;
    out->up = b->admin == BE_ENABLED && b->usable;
    out->demoted = b->demoted;
    out->rule = b->rule;
    out->admin = backend_admin_name(b->admin);
    out->health = !b->health_up ? "down" : b->usable ? "up" : "ejected";
    out->connect = &b->connect;
    out->backup = S(v)->cfg->pools[pool].backends[backend].backup;
    out->weight_milli = b->weight; /* SLOWSTART_SCALE units are thousandths (below) */
    return 0;
}

int view_path(const struct view *v, size_t pool, size_t backend, size_t inside,
              struct view_path *out)
{
    size_t k;
    const struct snap_backend *b = find(v, pool, backend, &k);
    const struct config *c = S(v)->cfg;
    if (!b || inside >= c->pools[pool].n_inside)
        return -1;
    const struct snap_path *p = &S(v)->path[S(v)->path_base[k] + inside];
    if (!p->present)
        return -1;
    for (int s = 0; s < PM_NSTATES; s++)
        out->counts[s] = p->counts[s];
    out->reuses_total = p->reuses_total;
    out->unknown = p->unknown;
    out->headroom = p->headroom;
    capacity_obs_mix(&p->obs, &out->mix);
    out->observed = p->obs.n;
    uint32_t ports = (uint32_t)c->pools[pool].port_hi - c->pools[pool].port_lo + 1;
    out->capacity_cps = capacity_cps(&b->pol, ports, &out->mix);
    return 0;
}

/* Main thread only: lifecycle.c writes it, the admin endpoint (same loop) reads it. */
static struct view_process process = {.last_reload_ok = 1};

void view_process(const struct view *v, struct view_process *out)
{
    *out = process;
}

void view_set_process(const struct view_process *p)
{
    process = *p;
}

int view_pool(const struct view *v, size_t pool, struct view_pool *out)
{
    if (pool >= S(v)->cfg->n_pools)
        return -1;
    out->queue_length = S(v)->pool[pool].queue_length;
    out->queue_wait = &S(v)->pool[pool].queue_wait;
    return 0;
}
