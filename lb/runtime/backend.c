/* backend.c - see backend.h. */
#include "runtime/backend.h"

#include <stdio.h>
#include <string.h>

#include "core/slowstart.h"
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
    pol->kernel_margin = isn_kernel_margin_of_us(c->reuse.kernel_margin_us);
}

/* Workers other than 0 follow the probes' verdict that worker 0 publishes; the change is
 * logged and counted there, once. */
static void follow_probes(struct backend_shared *sh, uint64_t now_ms)
{
    int up = __atomic_load_n(&sh->flags->up, __ATOMIC_ACQUIRE);
    /* Worker 0's time of the change, not ours, so a slow start runs alike everywhere;
     * looked at even when <up> did not change here: the backend may have been down and
     * up again since this worker last looked. */
    uint64_t since = __atomic_load_n(&sh->flags->up_since_ms, __ATOMIC_ACQUIRE);
    if (up == sh->health.up && (!up || since <= sh->health.back_since_ms))
        return;
    health_follow(&sh->health, up, since);
    sh->was_usable = health_usable(&sh->health, now_ms);
}

void backend_probe_result(struct backend_rt *be, int ok, uint64_t now_ms)
{
    struct backend_shared *sh = be->sh;
    int was_up = sh->health.up;
    health_check_result(&sh->health, ok, now_ms);
    if (sh->flags) {
        if (sh->health.up && !was_up) /* before <up>, which the others load first */
            __atomic_store_n(&sh->flags->up_since_ms, now_ms, __ATOMIC_RELEASE);
        __atomic_store_n(&sh->flags->up, sh->health.up, __ATOMIC_RELEASE);
    }
    backend_usable(be, now_ms);
}

void backend_state_log_flush(struct worker *w, uint64_t now_ms)
{
    if (now_ms - w->state_log_since_ms < BACKEND_STATE_LOG_WINDOW_MS)
        return;
    if (w->state_unlogged_down || w->state_unlogged_up) {
        char down[64] = "", up[64] = "";
        if (w->state_unlogged_down)
            snprintf(down, sizeof down, "%llu more backends went down",
                     (unsigned long long)w->state_unlogged_down);
        if (w->state_unlogged_up)
            snprintf(up, sizeof up, "%llu more backends came up",
                     (unsigned long long)w->state_unlogged_up);
        log_warn("and %s%s%s (state changes are logged at most %d a second; "
                 "twlb_backend_state_changes_total counts them all)", down,
                 *down && *up ? ", " : "", up, BACKEND_STATE_LOG_PER_S);
    }
    w->state_log_since_ms = now_ms;
    w->state_logged = 0;
    w->state_unlogged_down = w->state_unlogged_up = 0;
}

/* May a state-change line be logged now?  When thousands of backends flip at once (a
 * switch lost, a rack rebooted), a line each would flood the log: the first
 * BACKEND_STATE_LOG_PER_S of a window are, the rest are summed up. */
static int state_log_allowed(struct worker *w, uint64_t now_ms, int up)
{
    backend_state_log_flush(w, now_ms);
    if (w->state_logged < BACKEND_STATE_LOG_PER_S) {
        w->state_logged++;
        return 1;
    }
    if (up)
        w->state_unlogged_up++;
    else
        w->state_unlogged_down++;
    return 0;
}

int backend_usable(struct backend_rt *be, uint64_t now_ms)
{
    struct backend_shared *sh = be->sh;
    if (sh->flags && !sh->probes_here)
        follow_probes(sh, now_ms);
    int usable = health_usable(&sh->health, now_ms);
    if (usable != sh->was_usable) {
        sh->was_usable = usable;
        sh->st.state_changes_total++;
        if (state_log_allowed(be->pool->gen->w, now_ms, usable)) {
            if (usable)
                log_warn("pool %s: backend %s (%s) is up", be->pool->cfg->name,
                         be->cfg->name, be->cfg->addr.text);
            else
                log_warn("pool %s: backend %s (%s) is down%s", be->pool->cfg->name,
                         be->cfg->name, be->cfg->addr.text,
                         sh->health.up ? " (ejected after consecutive connect failures)"
                                       : "");
        }
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

/* Treat <be> as strict from now on (its port maps too). */
static void demote(struct gen *g, struct backend_rt *be)
{
    be->sh->demoted = 1;
    struct portmap_policy pol;
    backend_policy(g, be, &pol);
    pathset_set_policy(be->ps, &pol);
}

void backend_note_syn(struct gen *g, struct backend_rt *be, int reuse, int retransmitted)
{
    struct backend_shared *sh = be->sh;
    /* With several workers the count in a row is theirs together, so a backend is
     * demoted after the same number of rejects as with one. */
    unsigned *row = sh->flags ? &sh->flags->rejects_in_row : &sh->reuse_rejects_in_row;
    unsigned rejects = 0;
    if (retransmitted) {
        sh->st.syn_retransmits_total++;
        if (reuse)
            rejects = __atomic_add_fetch(row, 1, __ATOMIC_ACQ_REL);
    } else if (reuse) {
        __atomic_store_n(row, 0, __ATOMIC_RELEASE);
    }
    if (sh->demoted || g->isn_mode == ISN_OFF || rejects < REJECTS_BEFORE_DEMOTION)
        return;
    if (sh->flags && __atomic_exchange_n(&sh->flags->demoted, 1, __ATOMIC_ACQ_REL)) {
        demote(g, be); /* another worker said so first, and logged it */
        return;
    }
    /* Our ISNs are "after" by construction (explicit mode) or predicted to be (kernel
     * mode), so a backend that keeps ignoring them does not follow the rule it was
     * configured with.  Stop reusing its TIME_WAIT. */
    demote(g, be);
    log_error("pool %s: backend %s (%s) rejected %u TIME_WAIT reuses in a row although "
              "their ISNs obeyed the \"%s\" rule; treating it as \"strict\" from now on "
              "(fix its time_wait.rule in the config)",
              be->pool->cfg->name, be->cfg->name, be->cfg->addr.text, rejects,
              twrule_kind_name(be->cfg->time_wait.rule));
}

/* Another worker demoted <be>: follow before its next port is chosen. */
static void follow_demotion(struct gen *g, struct backend_rt *be)
{
    if (be->sh->flags && !be->sh->demoted &&
        __atomic_load_n(&be->sh->flags->demoted, __ATOMIC_ACQUIRE))
        demote(g, be);
}

int backend_acquire(struct gen *g, struct backend_rt *be, uint64_t now_ms,
                    struct pathset_pick *out)
{
    follow_demotion(g, be);
    uint64_t real, mono;
    clock_pair_ns(&real, &mono);
    if (pathset_acquire(be->ps, now_ms, real, mono, out) == 0)
        return 0;
    be->sh->st.ports_exhausted_total++;
    return -1;
}

static unsigned *slots_of(struct backend_shared *sh)
{
    return sh->flags ? &sh->flags->slots : &sh->slots;
}

int backend_at_limit(const struct backend_rt *be)
{
    uint32_t max = be->cfg->max_connections;
    return max && __atomic_load_n(slots_of(be->sh), __ATOMIC_RELAXED) >= max;
}

/* Take a slot of <be> (connecting + established), or -1 at its max_connections.  With
 * several workers the count is theirs together: add first, and give back on overshoot,
 * so the limit is never passed. */
static int slot_take(struct backend_rt *be)
{
    uint32_t max = be->cfg->max_connections;
    unsigned n = __atomic_add_fetch(slots_of(be->sh), 1, __ATOMIC_RELAXED);
    if (max && n > max) {
        __atomic_sub_fetch(slots_of(be->sh), 1, __ATOMIC_RELAXED);
        return -1;
    }
    return 0;
}

void backend_slot_give(struct backend_rt *be)
{
    __atomic_sub_fetch(slots_of(be->sh), 1, __ATOMIC_RELAXED);
}

uint32_t backend_weight(const struct backend_rt *be, uint64_t now_ms)
{
    const struct backend_shared *sh = be->sh;
    uint64_t since = sh->health.back_since_ms > sh->enabled_since_ms ? sh->health.back_since_ms
                                                                      : sh->enabled_since_ms;
    /* maglev is static (its table is built from the configured weights): no slow start,
     * as in HAProxy; the config refuses slow_start_ms there. */
    uint32_t ramp = be->pool->cfg->balance == BAL_MAGLEV ? 0 : be->cfg->slow_start_ms;
    return slowstart_weight(be->cfg->weight, since, now_ms, ramp);
}

int backend_pick(struct gen *g, struct pool_rt *pool, uint64_t client_hash, const uint32_t *tried,
                 size_t ntried, uint64_t now_ms, struct backend_rt **be,
                 struct pathset_pick *pick)
{
    const struct cfg_pool *pc = pool->cfg;
    int full = 0;
    for (size_t b = 0; b < pc->n_backends; b++) {
        struct backend_rt *cand = &pool->backends[b];
        pool->usable[b] = cand->sh->admin == BE_ENABLED && backend_usable(cand, now_ms);
        /* Live connections of every generation and worker count, also those from before
         * a reload. */
        pool->view[b].active = cand->sh->flags
                                   ? __atomic_load_n(&cand->sh->flags->active, __ATOMIC_RELAXED)
                                   : cand->sh->active;
        /* Slow start and backups (both reloadable: read from the config each time). */
        pool->view[b].weight = backend_weight(cand, now_ms);
        pool->view[b].weight_full = cand->cfg->weight * SLOWSTART_SCALE;
        pool->view[b].backup = (uint8_t)cand->cfg->backup;
    }
    /* Backups only while no non-backup is usable by health and the operator's word.  One
     * tried already for this client or out of ports still counts as usable (the retry or
     * the hand-over to another worker deals with that), so this comes first: whatever
     * makes a usable backend unwanted for this one pick (tried, a limit) goes after. */
    balance_keep_primaries(pool->view, pool->usable, pc->n_backends);
    for (size_t t = 0; t < ntried; t++)
        pool->usable[tried[t]] = 0;
    /* A backend at its limit is passed over: its clients spill to the others. */
    for (size_t b = 0; b < pc->n_backends; b++)
        if (pool->usable[b] && backend_at_limit(&pool->backends[b])) {
            pool->usable[b] = 0;
            full = 1;
        }
    int exhausted = 0;
    for (;;) {
        int i = balancer_pick(pool->bal, pool->view, pool->usable, client_hash);
        if (i < 0)
            return exhausted ? -2 : full ? -3 : -1;
        pool->usable[i] = 0; /* each backend at most once: the loop ends */
        if (slot_take(&pool->backends[i]) < 0) {
            full = 1;
            continue;
        }
        if (backend_acquire(g, &pool->backends[i], now_ms, pick) == 0) {
            *be = &pool->backends[i];
            return 0;
        }
        backend_slot_give(&pool->backends[i]);
        exhausted = 1;
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

/* The operator says the backend's configured rule holds after all: reuse again. */
static void trust(struct gen *g, struct backend_rt *be)
{
    struct backend_shared *sh = be->sh;
    if (sh->demoted)
        log_warn("pool %s: backend %s trusted again by the operator: its \"%s\" rule applies",
                 be->pool->cfg->name, be->cfg->name, twrule_kind_name(be->cfg->time_wait.rule));
    sh->demoted = 0;
    sh->reuse_rejects_in_row = 0;
    if (sh->flags) {
        __atomic_store_n(&sh->flags->demoted, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&sh->flags->rejects_in_row, 0, __ATOMIC_RELEASE);
    }
    struct portmap_policy pol;
    backend_policy(g, be, &pol);
    pathset_set_policy(be->ps, &pol);
}

int backend_set_admin(struct gen *g, struct backend_rt *be, const char *action, uint64_t now_ms)
{
    enum backend_admin to;
    if (!strcmp(action, "trust")) {
        trust(g, be);
        return 0;
    }
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
    if (to == BE_ENABLED && sh->admin != BE_ENABLED)
        sh->enabled_since_ms = now_ms; /* a slow start begins */
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

void backend_active_add(struct backend_rt *be, int delta)
{
    be->sh->active += (uint32_t)delta;
    if (be->sh->flags)
        __atomic_add_fetch(&be->sh->flags->active, (unsigned)delta, __ATOMIC_RELAXED);
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
