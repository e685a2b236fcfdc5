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
#include <stdlib.h>
#include <unistd.h>

#include "os/clock.h"
#include "os/log.h"

struct statefile_writer {
    json_t *entries;
    uint64_t now;
};

struct statefile_writer *statefile_writer_new(uint64_t now_ms)
{
    struct statefile_writer *w = calloc(1, sizeof *w);
    if (w && !(w->entries = json_array())) {
        free(w);
        return NULL;
    }
    if (w)
        w->now = now_ms;
    return w;
}

void statefile_writer_add(struct statefile_writer *w, const struct statefile_entry *se)
{
    const struct portmap_entry *e = &se->e;
    if (e->state == PM_BUSY || e->until_ms <= w->now)
        return;
    json_array_append_new(
        w->entries,
        json_pack("{s:s, s:s, s:s, s:i, s:s, s:I, s:b, s:I}", "pool", se->pool, "backend",
                  se->backend, "inside", se->inside, "port", (int)e->port, "state",
                  portmap_state_name(e->state), "remaining_ms",
                  (json_int_t)(e->until_ms - w->now), "isn_known", e->isn_known, "rcv_nxt",
                  (json_int_t)e->rcv_nxt));
}

int statefile_writer_commit(struct statefile_writer *w, const char *path)
{
    int n = (int)json_array_size(w->entries);
    json_t *root = json_pack("{s:i, s:I, s:o}", "version", 1, "written_unix_ms",
                             (json_int_t)clock_unix_ms(), "entries", w->entries);
    free(w);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && root && json_dumpf(root, f, JSON_COMPACT) == 0;
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

int statefile_load(const char *path, uint64_t now,
                   int (*fn)(void *arg, const struct statefile_entry *e), void *arg)
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
        return -1;
    }
    uint64_t wall = clock_unix_ms();
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
        struct statefile_entry se = {
            .pool = pool, .backend = backend, .inside = inside,
            .e = {.port = (uint16_t)port, .state = st,
                  .until_ms = now + (uint64_t)remaining - stopped,
                  .isn_known = isn_known, .rcv_nxt = (uint32_t)rcv_nxt},
        };
        if (port < 1 || port > 65535 || rcv_nxt < 0 || rcv_nxt > 0xffffffffLL ||
            st == PM_NSTATES || fn(arg, &se) != 0) {
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
