/* statefile_v1.c - see statefile_v1.h.  Format (JSON, one object):
 *   {"version": 1, "written_unix_ms": N,
 *    "entries": [{"pool": P, "backend": B, "inside": IP, "port": N,
 *                 "state": "remote_time_wait" | "local_time_wait" | "quarantined",
 *                 "remaining_ms": N, "isn_known": bool, "rcv_nxt": N}, ...]}
 * Times are stored as "remaining when written" plus the wall-clock time of writing, so a
 * restart (new monotonic base in libuv) can recompute them; the time spent stopped is
 * subtracted. */
#include "os/statefile_v1.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/clock.h"
#include "os/log.h"

/* Read <path> whole, refusing what the limits forbid.  Returns a malloc'ed buffer, or
 * NULL with <why> (*missing: the file does not exist, the normal first start). */
static char *read_bounded(const char *path, uint64_t max_bytes, size_t *len, char *why,
                          size_t whylen, int *missing)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    *missing = fd < 0 && errno == ENOENT;
    if (fd < 0) {
        snprintf(why, whylen, "%s", errno == ELOOP ? "is a symbolic link; not following it"
                                                   : strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "is not a regular file");
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        snprintf(why, whylen, "is %llu bytes, more than the %llu the configuration can need",
                 (unsigned long long)st.st_size, (unsigned long long)max_bytes);
        close(fd);
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whylen, "%s", strerror(errno));
            free(buf);
            buf = NULL;
        } else if (r == 0) {
            break;
        } else if ((n += (size_t)r) == cap) { /* it grew while we read */
            snprintf(why, whylen, "changed while being read");
            free(buf);
            buf = NULL;
        }
    }
    if (!buf && !why[0])
        snprintf(why, whylen, "out of memory");
    close(fd);
    *len = n;
    return buf;
}

struct loaded {
    struct statefile_entry se;
    size_t index; /* in the file: ties keep the file's order */
};

static int by_expiry(const void *a, const void *b)
{
    const struct loaded *x = a, *y = b;
    if (x->se.e.until_ms != y->se.e.until_ms)
        return x->se.e.until_ms < y->se.e.until_ms ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

int statefile_v1_load(const char *path, uint64_t now, const struct statefile_limits *lim,
                   int (*fn)(void *arg, const struct statefile_entry *e), void *arg)
{
    char whybuf[160] = "";
    const char *why = NULL;
    json_error_t jerr;
    json_t *root = NULL, *entries = NULL;
    json_int_t version = 0, written = 0;
    uint64_t max_bytes = STATEFILE_BASE_BYTES;
    if (lim->max_entries > (UINT64_MAX - max_bytes) / STATEFILE_ENTRY_BYTES)
        max_bytes = UINT64_MAX;
    else
        max_bytes += lim->max_entries * STATEFILE_ENTRY_BYTES;
    size_t len = 0;
    int missing = 0;
    char *text = read_bounded(path, max_bytes, &len, whybuf, sizeof whybuf, &missing);
    if (!text)
        why = whybuf;
    else if (!(root = json_loadb(text, len, 0, &jerr)))
        why = jerr.text;
    else if (json_unpack_ex(root, &jerr, 0, "{s:I, s:I, s:o}", "version", &version,
                            "written_unix_ms", &written, "entries", &entries) != 0)
        why = jerr.text;
    else if (version != 1)
        why = "unknown version";
    else if (!json_is_array(entries))
        why = "entries is not an array";
    else if (json_array_size(entries) > lim->max_entries) {
        snprintf(whybuf, sizeof whybuf, "has %zu entries, more than the %llu the "
                 "configuration can hold", json_array_size(entries),
                 (unsigned long long)lim->max_entries);
        why = whybuf;
    }
    free(text);
    if (why) {
        log_msg(missing ? LOGL_WARN : LOGL_ERROR, "state file %s: version 1 (JSON): %s",
                path, why);
        json_decref(root);
        return -1;
    }
    /* The time spent stopped comes off every entry; a file that does not say when it
     * was written (0, or in the future) loses nothing of it. */
    uint64_t wall = clock_unix_ms();
    int when_known = written > 0 && (uint64_t)written <= wall;
    uint64_t stopped = when_known ? wall - (uint64_t)written : 0;
    int restored = 0, skipped = 0, clamped = 0;
    struct loaded *keep = malloc((json_array_size(entries) + 1) * sizeof *keep);
    size_t nkeep = 0, i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        const char *pool, *backend, *inside, *state;
        json_int_t port, remaining, rcv_nxt;
        int isn_known;
        if (!keep || json_unpack(e, "{s:s, s:s, s:s, s:I, s:s, s:I, s:b, s:I}", "pool", &pool,
                                 "backend", &backend, "inside", &inside, "port", &port,
                                 "state", &state, "remaining_ms", &remaining, "isn_known",
                                 &isn_known, "rcv_nxt", &rcv_nxt) != 0) {
            skipped++;
            continue;
        }
        if (remaining <= 0 || (uint64_t)remaining <= stopped)
            continue; /* expired while we were down */
        uint64_t left = (uint64_t)remaining - stopped;
        if (left > lim->max_remaining_ms) {
            left = lim->max_remaining_ms; /* no port is remembered longer than the config says */
            clamped++;
        }
        enum pm_state st = PM_NSTATES;
        for (int s = 0; s < PM_NSTATES; s++)
            if (!strcmp(state, portmap_state_name((enum pm_state)s)))
                st = (enum pm_state)s;
        if (port < 1 || port > 65535 || rcv_nxt < 0 || rcv_nxt > 0xffffffffLL ||
            st == PM_NSTATES) {
            skipped++;
            continue;
        }
        keep[nkeep++] = (struct loaded){
            .se = {.pool = pool, .backend = backend, .inside = inside,
                   .e = {.port = (uint16_t)port, .state = st, .until_ms = now + left,
                         .isn_known = isn_known, .rcv_nxt = (uint32_t)rcv_nxt}},
            .index = i,
        };
    }
    /* Expiry is first in, first out per path: restore in the order the ports expire. */
    if (nkeep)
        qsort(keep, nkeep, sizeof *keep, by_expiry);
    for (size_t k = 0; k < nkeep; k++) {
        if (fn(arg, &keep[k].se) != 0)
            skipped++; /* a path that no longer exists, or a port outside its range */
        else
            restored++;
    }
    free(keep);
    json_decref(root);
    if (clamped)
        log_warn("state file %s: %d entries remembered longer than the configuration's "
                 "longest TIME_WAIT (%llu ms); cut to it", path, clamped,
                 (unsigned long long)lim->max_remaining_ms);
    if (when_known)
        log_info("state file %s: version 1 (JSON): restored %d remembered ports (%d skipped, "
                 "written %llu ms ago)", path, restored, skipped, (unsigned long long)stopped);
    else
        log_info("state file %s: version 1 (JSON): restored %d remembered ports (%d skipped, "
                 "written at an unknown time: none of their time taken off)", path, restored,
                 skipped);
    return restored;
}
