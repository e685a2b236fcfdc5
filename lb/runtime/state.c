/* state.c - see state.h. */
#include "runtime/state.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "core/portstate.h"
#include "os/kdiag.h"
#include "os/log.h"
#include "os/statefile.h"

/* ---- the paths of a config ---------------------------------------------------------- */

static void addr_bytes(const struct sockaddr_storage *ss, int *family, uint8_t out[16],
                       uint16_t *port)
{
    *family = ss->ss_family;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ss;
        memcpy(out, &a->sin_addr, 4);
        *port = ntohs(a->sin_port);
    } else {
        const struct sockaddr_in6 *a = (const void *)ss;
        memcpy(out, &a->sin6_addr, 16);
        *port = ntohs(a->sin6_port);
    }
}

/* The key of the path from inside address <i> of <pc> to <b>; 0, or -1 when the
 * families differ (no such path). */
static int key_of(const struct cfg_pool *pc, const struct cfg_backend *b, size_t i,
                  struct statefile_key *k)
{
    if (pc->inside[i].ss.ss_family != b->addr.ss.ss_family)
        return -1;
    memset(k, 0, sizeof *k);
    uint16_t none;
    k->pool = pc->name;
    k->backend = b->name;
    addr_bytes(&b->addr.ss, &k->backend_family, k->backend_addr, &k->backend_port);
    addr_bytes(&pc->inside[i].ss, &k->inside_family, k->inside_addr, &none);
    k->inside = pc->inside[i].text;
    k->lo = pc->port_lo;
    k->hi = pc->port_hi;
    k->time_wait_ms = (uint64_t)b->time_wait.seconds * 1000;
    return 0;
}

static struct statefile_key *keys_of(const struct config *cfg, size_t *n)
{
    size_t cap = 0;
    for (size_t p = 0; p < cfg->n_pools; p++)
        cap += cfg->pools[p].n_backends * cfg->pools[p].n_inside;
    struct statefile_key *keys = malloc((cap ? cap : 1) * sizeof *keys);
    *n = 0;
    for (size_t p = 0; keys && p < cfg->n_pools; p++) {
        const struct cfg_pool *pc = &cfg->pools[p];
        for (size_t b = 0; b < pc->n_backends; b++)
            for (size_t i = 0; i < pc->n_inside; i++)
                if (key_of(pc, &pc->backends[b], i, &keys[*n]) == 0)
                    (*n)++;
    }
    return keys;
}

static uint64_t takeover_grace_ms;

void state_takeover_grace(uint64_t drain_ms)
{
    takeover_grace_ms = drain_ms;
}

int state_open(const struct config *cfg, struct statefile **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->reuse.state_file)
        return 0;
    size_t n;
    struct statefile_key *keys = keys_of(cfg, &n);
    if (!keys) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct statefile_limits lim;
    config_state_limits(cfg, &lim.max_remaining_ms, &lim.max_entries);
    lim.busy_grace_ms = takeover_grace_ms;
    int r = statefile_open(cfg->reuse.state_file, keys, n, &lim, out, err, errlen);
    free(keys);
    return r;
}

void state_add(struct statefile *sf, const struct config *cfg)
{
    size_t n;
    struct statefile_key *keys = sf ? keys_of(cfg, &n) : NULL;
    if (keys && statefile_add(sf, keys, n) > 0)
        log_debug("state file: paths added for the reload");
    free(keys);
}

/* ---- the maps of a generation ------------------------------------------------------- */

static void write_through(void *arg, const struct portmap_entry *e)
{
    statefile_observer(arg, e);
}

static int shared_with(const struct backend_rt *prev, const portmap *pm)
{
    for (size_t j = 0; prev && j < pathset_size(prev->ps); j++)
        if (pathset_map(prev->ps, j) == pm)
            return 1;
    return 0;
}

void state_attach(struct gen *g, struct backend_rt *be, const struct backend_rt *prev)
{
    struct statefile *sf = g->w->store;
    if (!sf)
        return;
    const struct cfg_pool *pc = be->pool->cfg;
    uint16_t lo, hi;
    worker_slice(g->w, pc, &lo, &hi);
    uint64_t now = worker_now_ms(g->w);
    for (size_t i = 0; i < pc->n_inside; i++) {
        portmap *pm = pathset_map(be->ps, i);
        struct statefile_key k;
        if (!pm || shared_with(prev, pm) || key_of(pc, be->cfg, i, &k) < 0)
            continue; /* a shared map is hooked already */
        struct statefile_path *p = statefile_find(sf, &k);
        if (!p)
            continue;
        portmap_observe(pm, statefile_observer, p);
        uint32_t c[PM_NSTATES];
        portmap_counts(pm, c);
        if (c[PM_FREE] == (uint32_t)hi - lo + 1)
            statefile_restore(p, pm, lo, hi, now);
        else
            portmap_foreach(pm, write_through, p);
    }
}

/* ---- our own TIME_WAIT in the kernel ------------------------------------------------ */

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
void state_load(struct gen *g)
{
    const struct config *c = g->cfg;
    struct tw_load l = {.g = g, .now = worker_now_ms(g->w)};
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

/* ---- the keeper --------------------------------------------------------------------- */

struct state_keeper {
    uv_timer_t timer;
    uv_work_t work;
    struct statefile *sf;
    unsigned ticks;
    int syncing, stopping, clean, timer_closed;
};

static void finish(struct state_keeper *k)
{
    if (!k->timer_closed || k->syncing)
        return;
    statefile_close(k->sf, k->clean);
    free(k);
}

static void do_sync(uv_work_t *w)
{
    struct state_keeper *k = w->data;
    (void)statefile_sync(k->sf);
}

static void after_sync(uv_work_t *w, int status)
{
    struct state_keeper *k = w->data;
    k->syncing = 0;
    if (k->stopping)
        finish(k);
}

static void on_tick(uv_timer_t *t)
{
    struct state_keeper *k = t->data;
    statefile_heartbeat(k->sf);
    if (++k->ticks % (PORTSTATE_SYNC_MS / 1000) || k->syncing)
        return;
    k->work.data = k;
    if (uv_queue_work(t->loop, &k->work, do_sync, after_sync) == 0)
        k->syncing = 1;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct state_keeper *k = h->data;
    k->timer_closed = 1;
    finish(k);
}

struct state_keeper *state_keeper_start(uv_loop_t *loop, struct statefile *sf)
{
    struct state_keeper *k = sf ? calloc(1, sizeof *k) : NULL;
    if (!k)
        return NULL;
    k->sf = sf;
    uv_timer_init(loop, &k->timer);
    k->timer.data = k;
    uv_timer_start(&k->timer, on_tick, 1000, 1000);
    return k;
}

void state_keeper_stop(struct state_keeper *k, int clean)
{
    if (!k || k->stopping)
        return;
    k->stopping = 1;
    k->clean = clean;
    uv_timer_stop(&k->timer);
    uv_close((uv_handle_t *)&k->timer, on_timer_closed);
}
