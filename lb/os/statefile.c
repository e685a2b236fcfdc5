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

static uint64_t save_failures;

uint64_t statefile_save_failures(void) { return save_failures; }

/* Write <root> to a new temporary file next to <path> and rename it over <path>.
 * Returns 0, or -1 with *what and errno set. */
static int write_atomically(json_t *root, const char *path, const char **what)
{
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        *what = "is a symbolic link; refusing to write through or replace it";
        errno = ELOOP;
        return -1;
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp) {
        *what = "cannot create a temporary file";
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC); /* O_CREAT|O_EXCL, mode 0600, a fresh name */
    if (fd < 0) {
        *what = "cannot create a temporary file";
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        *what = "cannot write";
        return -1;
    }
    int ok = root && json_dumpf(root, f, JSON_COMPACT) == 0;
    ok = fflush(f) == 0 && fsync(fd) == 0 && ok;
    int e = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        unlink(tmp);
        *what = "cannot write";
        errno = e ? e : EIO;
        return -1;
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        *what = "cannot replace";
        errno = e;
        return -1;
    }
    return 0;
}

int statefile_writer_commit(struct statefile_writer *w, const char *path)
{
    int n = (int)json_array_size(w->entries);
    json_t *root = json_pack("{s:i, s:I, s:o}", "version", 1, "written_unix_ms",
                             (json_int_t)clock_unix_ms(), "entries", w->entries);
    free(w);
    const char *what = "cannot write";
    int r = write_atomically(root, path, &what);
    int e = errno;
    json_decref(root);
    if (r < 0) {
        save_failures++;
        log_error("state file %s: %s: %s; the remembered ports are not saved (%llu failed "
                  "saves)", path, what, strerror(e), (unsigned long long)save_failures);
        return -1;
    }
    log_info("state file %s: saved %d remembered ports", path, n);
    return n;
}

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

int statefile_load(const char *path, uint64_t now, const struct statefile_limits *lim,
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
        log_msg(missing ? LOGL_WARN : LOGL_ERROR, "state file %s: %s; assuming every source port may still be in backend "
                  "TIME_WAIT for one TIME_WAIT period",
                  path, why);
        json_decref(root);
        return -1;
    }
    uint64_t wall = clock_unix_ms();
    uint64_t stopped = wall > (uint64_t)written ? wall - (uint64_t)written : 0;
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
    log_info("state file %s: restored %d remembered ports (%d skipped, down for %llu ms)",
             path, restored, skipped, (unsigned long long)stopped);
    return restored;
}
