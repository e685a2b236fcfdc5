/* statefile.c - see statefile.h.  Format (JSON, one object):
 *   {"version": 1, "written_unix_ms": N,
 *    "entries": [{"pool": P, "backend": B, "inside": IP, "port": N,
 *                 "state": "remote_time_wait" | "local_time_wait" | "quarantined",
 *                 "remaining_ms": N, "isn_known": bool, "rcv_nxt": N}, ...]}
 * Times are stored as "remaining when written" plus the wall-clock time of writing, so a
 * restart (new monotonic base in libuv) can recompute them; the time spent stopped is
 * subtracted. */
#include "os/statefile.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "os/log.h"

static uint64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct save_ctx {
    json_t *entries;
    const char *pool, *backend, *inside;
    uint64_t now;
};

static void save_entry(void *arg, const struct portmap_entry *e)
{
    struct save_ctx *c = arg;
    if (e->state == PM_BUSY || e->until_ms <= c->now)
        return;
    json_array_append_new(
        c->entries,
        json_pack("{s:s, s:s, s:s, s:i, s:s, s:I, s:b, s:I}", "pool", c->pool, "backend",
                  c->backend, "inside", c->inside, "port", (int)e->port, "state",
                  portmap_state_name(e->state), "remaining_ms",
                  (json_int_t)(e->until_ms - c->now), "isn_known", e->isn_known, "rcv_nxt",
                  (json_int_t)e->rcv_nxt));
}

int statefile_save(struct server *srv, const char *path)
{
    const struct config *cfg = srv->cfg;
    struct save_ctx c = {.entries = json_array(), .now = server_now_ms(srv)};
    for (size_t p = 0; p < cfg->n_pools; p++) {
        const struct cfg_pool *pc = &cfg->pools[p];
        for (size_t b = 0; b < pc->n_backends; b++)
            for (size_t i = 0; i < pc->n_inside; i++) {
                portmap *pm = srv->pools[p].backends[b].paths[i]->pm;
                if (!pm)
                    continue;
                c.pool = pc->name;
                c.backend = pc->backends[b].name;
                c.inside = pc->inside[i].text;
                portmap_foreach(pm, save_entry, &c);
            }
    }
    int n = (int)json_array_size(c.entries);
    json_t *root = json_pack("{s:i, s:I, s:o}", "version", 1, "written_unix_ms",
                             (json_int_t)unix_ms(), "entries", c.entries);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && json_dumpf(root, f, JSON_COMPACT) == 0;
    ok = f && fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    if (f && fclose(f) != 0)
        ok = 0;
    json_decref(root);
    if (!ok || rename(tmp, path) != 0) {
        log_error("state file %s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    log_info("state file %s: saved %d remembered ports", path, n);
    return n;
}

/* No (usable) knowledge: any port may still be in the backend's TIME_WAIT. */
static void block_everything(struct server *srv)
{
    const struct config *cfg = srv->cfg;
    uint64_t now = server_now_ms(srv);
    for (size_t p = 0; p < cfg->n_pools; p++)
        for (size_t b = 0; b < cfg->pools[p].n_backends; b++) {
            struct backend_rt *be = &srv->pools[p].backends[b];
            uint64_t until = now + (uint64_t)be->cfg->time_wait.seconds * 1000;
            for (size_t i = 0; i < cfg->pools[p].n_inside; i++)
                if (be->paths[i]->pm)
                    portmap_block_unknown(be->paths[i]->pm, until);
        }
}

static portmap *find_path(struct server *srv, const char *pool, const char *backend,
                          const char *inside)
{
    const struct config *cfg = srv->cfg;
    for (size_t p = 0; p < cfg->n_pools; p++) {
        const struct cfg_pool *pc = &cfg->pools[p];
        if (strcmp(pc->name, pool))
            continue;
        for (size_t b = 0; b < pc->n_backends; b++) {
            if (strcmp(pc->backends[b].name, backend))
                continue;
            for (size_t i = 0; i < pc->n_inside; i++)
                if (!strcmp(pc->inside[i].text, inside))
                    return srv->pools[p].backends[b].paths[i]->pm;
        }
    }
    return NULL;
}

int statefile_load(struct server *srv, const char *path)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    const char *why = NULL;
    json_t *entries = NULL;
    json_int_t version = 0, written = 0;
    if (!root)
        why = jerr.text;
    else if (json_unpack_ex(root, &jerr, 0, "{s:I, s:I, s:o}", "version", &version,
                            "written_unix_ms", &written, "entries", &entries) != 0)
        why = jerr.text;
    else if (version != 1)
        why = "unknown version";
    else if (!json_is_array(entries))
        why = "entries is not an array";
    if (why) {
        log_warn("state file %s: %s; assuming every source port may still be in backend "
                 "TIME_WAIT for one TIME_WAIT period",
                 path, why);
        json_decref(root);
        block_everything(srv);
        return -1;
    }
    uint64_t now = server_now_ms(srv), wall = unix_ms();
    uint64_t stopped = wall > (uint64_t)written ? wall - (uint64_t)written : 0;
    int restored = 0, skipped = 0;
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        const char *pool, *backend, *inside, *state;
        json_int_t port, remaining, rcv_nxt;
        int isn_known;
        if (json_unpack(e, "{s:s, s:s, s:s, s:I, s:s, s:I, s:b, s:I}", "pool", &pool, "backend",
                        &backend, "inside", &inside, "port", &port, "state", &state,
                        "remaining_ms", &remaining, "isn_known", &isn_known, "rcv_nxt",
                        &rcv_nxt) != 0) {
            skipped++;
            continue;
        }
        if (remaining <= 0 || (uint64_t)remaining <= stopped)
            continue; /* expired while we were down */
        enum pm_state st = PM_NSTATES;
        for (int s = 0; s < PM_NSTATES; s++)
            if (!strcmp(state, portmap_state_name((enum pm_state)s)))
                st = (enum pm_state)s;
        portmap *pm = find_path(srv, pool, backend, inside);
        if (!pm || port < 1 || port > 65535 || rcv_nxt < 0 || rcv_nxt > 0xffffffffLL ||
            portmap_restore(pm, (uint16_t)port, st, now + (uint64_t)remaining - stopped,
                            isn_known, (uint32_t)rcv_nxt) != 0) {
            skipped++; /* a path that no longer exists, or a port outside its range */
            continue;
        }
        restored++;
    }
    json_decref(root);
    log_info("state file %s: restored %d remembered ports (%d skipped, down for %llu ms)",
             path, restored, skipped, (unsigned long long)stopped);
    return restored;
}
