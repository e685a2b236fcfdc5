/* state.c - see state.h. */
#include "runtime/state.h"

#include <netinet/in.h>
#include <string.h>

#include "os/kdiag.h"
#include "os/log.h"
#include "os/statefile.h"

struct save_ctx {
    struct statefile_writer *w;
    struct statefile_entry e;
};

static void save_entry(void *arg, const struct portmap_entry *e)
{
    struct save_ctx *c = arg;
    c->e.e = *e;
    statefile_writer_add(c->w, &c->e);
}

void state_collect(struct worker *w, struct statefile_writer *wr)
{
    const struct gen *g = w->cur;
    const struct config *cfg = g->cfg;
    struct save_ctx c = {.w = wr};
    for (size_t p = 0; p < cfg->n_pools; p++) {
        const struct cfg_pool *pc = &cfg->pools[p];
        for (size_t b = 0; b < pc->n_backends; b++)
            for (size_t i = 0; i < pc->n_inside; i++) {
                portmap *pm = pathset_map(g->pools[p].backends[b].ps, i);
                if (!pm)
                    continue;
                c.e.pool = pc->name;
                c.e.backend = pc->backends[b].name;
                c.e.inside = pc->inside[i].text;
                portmap_foreach(pm, save_entry, &c);
            }
    }
}

static portmap *find_map(const struct gen *g, const char *pool, const char *backend,
                         const char *inside)
{
    const struct config *cfg = g->cfg;
    for (size_t p = 0; p < cfg->n_pools; p++) {
        const struct cfg_pool *pc = &cfg->pools[p];
        if (strcmp(pc->name, pool))
            continue;
        for (size_t b = 0; b < pc->n_backends; b++) {
            if (strcmp(pc->backends[b].name, backend))
                continue;
            for (size_t i = 0; i < pc->n_inside; i++)
                if (!strcmp(pc->inside[i].text, inside))
                    return pathset_map(g->pools[p].backends[b].ps, i);
        }
    }
    return NULL;
}

static int restore_entry(void *arg, const struct statefile_entry *se)
{
    portmap *pm = find_map(arg, se->pool, se->backend, se->inside);
    return pm && portmap_restore(pm, &se->e) == 0 ? 0 : -1;
}

/* No (usable) knowledge: any port may still be in the backend's TIME_WAIT. */
static void block_everything(struct gen *g, uint64_t now)
{
    const struct config *cfg = g->cfg;
    for (size_t p = 0; p < cfg->n_pools; p++)
        for (size_t b = 0; b < cfg->pools[p].n_backends; b++) {
            struct backend_rt *be = &g->pools[p].backends[b];
            uint64_t until = now + (uint64_t)be->cfg->time_wait.seconds * 1000;
            for (size_t i = 0; i < cfg->pools[p].n_inside; i++) {
                portmap *pm = pathset_map(be->ps, i);
                if (pm)
                    portmap_block_unknown(pm, until);
            }
        }
}

struct tw_load {
    struct gen *g;
    size_t pool, inside;
    uint64_t now;
    int loaded;
};

static int same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && !memcmp(&x->sin_addr, &y->sin_addr, 4);
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
}

static void on_kernel_tw(void *arg, const struct kdiag_tw *tw)
{
    struct tw_load *l = arg;
    const struct cfg_pool *pc = &l->g->cfg->pools[l->pool];
    for (size_t b = 0; b < pc->n_backends; b++) {
        if (!same_endpoint(&pc->backends[b].addr.ss, &tw->remote))
            continue;
        portmap *pm = pathset_map(l->g->pools[l->pool].backends[b].ps, l->inside);
        struct portmap_entry e = {.port = tw->local_port, .state = PM_LOCAL_TW,
                                  .until_ms = l->now + tw->expires_ms};
        if (pm && portmap_restore(pm, &e) == 0)
            l->loaded++;
    }
}

/* Our own TIME_WAIT sockets toward the backends survive a restart in the kernel: load
 * them so a port whose TIME_WAIT our kernel still holds is treated as such. */
static void load_kernel_time_wait(struct gen *g, uint64_t now)
{
    const struct config *c = g->cfg;
    struct tw_load l = {.g = g, .now = now};
    for (size_t p = 0; p < c->n_pools; p++)
        for (size_t i = 0; i < c->pools[p].n_inside; i++) {
            const struct cfg_addr *in = &c->pools[p].inside[i];
            const void *addr = in->ss.ss_family == AF_INET
                                   ? (const void *)&((const struct sockaddr_in *)&in->ss)->sin_addr
                                   : (const void *)&((const struct sockaddr_in6 *)&in->ss)->sin6_addr;
            l.pool = p;
            l.inside = i;
            int r = kdiag_list_time_wait(in->ss.ss_family, addr, on_kernel_tw, &l);
            if (r < 0)
                log_warn("cannot list TIME_WAIT sockets of %s: %s", in->text, strerror(-r));
        }
    if (l.loaded)
        log_info("loaded %d of our own TIME_WAIT sockets toward the backends from the kernel",
                 l.loaded);
}

void state_load(struct gen *g)
{
    uint64_t now = worker_now_ms(g->w);
    const char *path = g->cfg->reuse.state_file;
    struct statefile_limits lim;
    config_state_limits(g->cfg, &lim.max_remaining_ms, &lim.max_entries);
    if (path && statefile_load(path, now, &lim, restore_entry, g) < 0)
        block_everything(g, now);
    load_kernel_time_wait(g, now);
}
