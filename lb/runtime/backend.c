/* backend.c - see backend.h. */
#include "runtime/backend.h"

#include <string.h>

#include "os/clock.h"
#include "os/log.h"

/* Explicit-ISN reuses that a backend must reject in a row before we stop believing its
 * configured rule and treat it as strict. */
#define REJECTS_BEFORE_DEMOTION 3

void backend_policy(const struct gen *g, const struct backend_rt *be,
                    struct portmap_policy *pol)
{
    const struct config *c = g->cfg;
    memset(pol, 0, sizeof *pol);
    pol->rule.kind = be->sh->demoted ? TWRULE_STRICT : be->cfg->time_wait.rule;
    pol->rule.time_wait_ms = (uint64_t)be->cfg->time_wait.seconds * 1000;
    pol->mode = g->isn_mode;
    pol->local_tw = c->reuse.local_time_wait;
    pol->local_tw_ms = (uint64_t)c->reuse.local_time_wait_seconds * 1000;
    pol->quarantine_ms = c->reuse.quarantine_ms;
    pol->kernel_margin = ISN_KERNEL_MARGIN;
}

int backend_usable(struct backend_rt *be, uint64_t now_ms)
{
    struct backend_shared *sh = be->sh;
    int usable = health_usable(&sh->health, now_ms);
    if (usable != sh->was_usable) {
        sh->was_usable = usable;
        sh->st.state_changes_total++;
        if (usable)
            log_warn("pool %s: backend %s (%s) is up", be->pool->cfg->name, be->cfg->name,
                     be->cfg->addr.text);
        else
            log_warn("pool %s: backend %s (%s) is down%s", be->pool->cfg->name,
                     be->cfg->name, be->cfg->addr.text,
                     sh->health.up ? " (ejected after consecutive connect failures)" : "");
    }
    return usable;
}

void backend_connect_result(struct backend_rt *be, int ok, uint64_t now_ms)
{
    uint32_t before = be->sh->health.ejections_in_row;
    health_connect_result(&be->sh->health, ok, now_ms);
    if (be->sh->health.ejections_in_row > before)
        be->sh->st.ejections_total++;
    backend_usable(be, now_ms);
}

void backend_note_syn(struct gen *g, struct backend_rt *be, int reuse, int retransmitted)
{
    struct backend_shared *sh = be->sh;
    if (retransmitted) {
        sh->st.syn_retransmits_total++;
        if (reuse)
            sh->reuse_rejects_in_row++;
    } else if (reuse) {
        sh->reuse_rejects_in_row = 0;
    }
    if (sh->demoted || g->isn_mode != ISN_EXPLICIT ||
        sh->reuse_rejects_in_row < REJECTS_BEFORE_DEMOTION)
        return;
    /* Our ISNs are "after" by construction, so a backend that keeps ignoring them does
     * not follow the rule it was configured with.  Stop reusing its TIME_WAIT. */
    sh->demoted = 1;
    log_error("pool %s: backend %s (%s) rejected %u TIME_WAIT reuses in a row although "
              "their ISNs obeyed the \"%s\" rule; treating it as \"strict\" from now on "
              "(fix its time_wait.rule in the config)",
              be->pool->cfg->name, be->cfg->name, be->cfg->addr.text,
              sh->reuse_rejects_in_row, twrule_kind_name(be->cfg->time_wait.rule));
    struct portmap_policy pol;
    backend_policy(g, be, &pol);
    pathset_set_policy(be->ps, &pol);
}

int backend_acquire(struct backend_rt *be, uint64_t now_ms, struct pathset_pick *out)
{
    if (pathset_acquire(be->ps, now_ms, clock_real_ns(), clock_mono_ns(), out) == 0)
        return 0;
    be->sh->st.ports_exhausted_total++;
    return -1;
}

int backend_pick(struct pool_rt *pool, uint64_t client_hash, const uint32_t *tried,
                 size_t ntried, uint64_t now_ms, struct backend_rt **be,
                 struct pathset_pick *pick)
{
    const struct cfg_pool *pc = pool->cfg;
    for (size_t b = 0; b < pc->n_backends; b++) {
        struct backend_rt *cand = &pool->backends[b];
        pool->usable[b] = cand->sh->admin == BE_ENABLED && backend_usable(cand, now_ms);
        /* Live connections of every generation count, also those from before a reload. */
        pool->view[b].active = cand->sh->active;
    }
    for (size_t t = 0; t < ntried; t++)
        pool->usable[tried[t]] = 0;
    for (;;) {
        int i = balancer_pick(pool->bal, pool->view, pool->usable, client_hash);
        if (i < 0)
            return -1;
        if (backend_acquire(&pool->backends[i], now_ms, pick) == 0) {
            *be = &pool->backends[i];
            return 0;
        }
        pool->usable[i] = 0; /* each backend at most once: the loop ends */
    }
}

const char *backend_admin_name(enum backend_admin a)
{
    switch (a) {
    case BE_ENABLED: return "enabled";
    case BE_DRAINING: return "draining";
    case BE_DISABLED: return "disabled";
    }
    return "?";
}

int backend_set_admin(struct backend_rt *be, const char *action)
{
    enum backend_admin to;
    if (!strcmp(action, "enable"))
        to = BE_ENABLED;
    else if (!strcmp(action, "disable"))
        to = BE_DISABLED;
    else if (!strcmp(action, "drain"))
        to = BE_DRAINING;
    else
        return -2;
    struct backend_shared *sh = be->sh;
    if (sh->admin != to)
        log_warn("pool %s: backend %s %s by the operator (was %s)", be->pool->cfg->name,
                 be->cfg->name, backend_admin_name(to), backend_admin_name(sh->admin));
    sh->admin = to;
    if (to == BE_DISABLED) {
        /* abort() unlinks the connection; take the next one first. */
        for (struct be_link *l = sh->conns.next, *next; l != &sh->conns; l = next) {
            next = l->next;
            l->abort(l);
        }
    }
    return 0;
}

void backend_link(struct backend_rt *be, struct be_link *l)
{
    struct be_link *head = &be->sh->conns;
    l->prev = head;
    l->next = head->next;
    head->next->prev = l;
    head->next = l;
}

void backend_unlink(struct be_link *l)
{
    if (!l->next)
        return;
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->next = l->prev = NULL;
}
