/* statefile.c - see statefile.h: the file of this run (layout, growth, the observer,
 * heartbeat, sync, close).  The previous run's file is read by statefile_read.c; the
 * inside of both is statefile_int.h.
 *
 * Why a mapped array of our own and not LMDB: LMDB's write transactions are serialized
 * by one writer lock, each a copy-on-write B-tree update and a meta-page flip (a few
 * microseconds even with MDB_NOSYNC|MDB_WRITEMAP), taken twice per connection by every
 * worker; a slot here is one store of 32 bytes into a page of the page cache by the one
 * thread that owns the port (about 10 ns), and a SIGKILL loses neither.  What LMDB would
 * add, crash consistency of the whole file on power loss, the heartbeat and the rules of
 * core/portstate.h provide for what matters here: which ports may be at risk. */
#include "os/statefile_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/clock.h"
#include "os/log.h"

/* Address space reserved for the mapping, so that it grows in place: 64 GiB is about
 * 200,000 paths of 10,000 ports.  Reserving costs no memory (PROT_NONE, no backing). */
#define SF_RESERVE (64ull << 30)

static uint64_t save_failures;

uint64_t statefile_save_failures(void)
{
    return __atomic_load_n(&save_failures, __ATOMIC_RELAXED);
}

void sf_count_failure(void)
{
    __atomic_add_fetch(&save_failures, 1, __ATOMIC_RELAXED);
}

/* ---- small pieces ------------------------------------------------------------------- */

uint32_t sf_check(const void *p, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ ((const uint8_t *)p)[i]) * 16777619u;
    return h;
}

uint64_t sf_where_hash(const struct sf_segment *s, int with_range)
{
    uint64_t h = 1469598103934665603ull;
    const uint8_t *b = (const uint8_t *)s;
    for (size_t i = SF_WHERE_START; i < SF_WHERE_END; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    if (with_range)
        h = (h ^ ((uint64_t)s->lo << 16 | s->hi)) * 1099511628211ull;
    return h;
}

size_t sf_segment_bytes(uint16_t lo, uint16_t hi)
{
    size_t slots = ((size_t)hi - lo + 1) * sizeof(struct portstate_slot);
    return SF_SEGMENT_BYTES + (slots + 63) / 64 * 64;
}

void sf_segment_of(const struct statefile_key *k, struct sf_segment *s)
{
    memset(s, 0, sizeof *s);
    memcpy(s->magic, "path", 4);
    s->lo = k->lo;
    s->hi = k->hi;
    s->bytes = sf_segment_bytes(k->lo, k->hi);
    s->backend_family = k->backend_family;
    s->inside_family = k->inside_family;
    memcpy(s->backend_addr, k->backend_addr, 16);
    memcpy(s->inside_addr, k->inside_addr, 16);
    s->backend_port = k->backend_port;
    snprintf(s->pool, SF_NAME_MAX, "%s", k->pool);
    snprintf(s->backend, SF_NAME_MAX, "%s", k->backend);
}

/* ---- paths -------------------------------------------------------------------------- */

static int same_path(const struct sf_segment *a, const struct sf_segment *b)
{
    return a->lo == b->lo && a->hi == b->hi &&
           !memcmp((const uint8_t *)a + SF_WHERE_START, (const uint8_t *)b + SF_WHERE_START,
                   SF_WHERE_END - SF_WHERE_START);
}

static struct statefile_path *table_get(const struct statefile *sf, const struct sf_segment *id)
{
    if (!sf->table)
        return NULL;
    for (size_t k = sf_where_hash(id, 1) & sf->mask; sf->table[k]; k = (k + 1) & sf->mask)
        if (same_path(&sf->table[k]->id, id))
            return sf->table[k];
    return NULL;
}

static int table_grow(struct statefile *sf, size_t want)
{
    size_t cap = sf->mask ? sf->mask + 1 : 16;
    if (sf->table && 2 * want <= cap)
        return 0;
    while (2 * want > cap)
        cap *= 2;
    struct statefile_path **t = calloc(cap, sizeof *t);
    if (!t)
        return -1;
    for (size_t i = 0; i < sf->n; i++) {
        size_t k = sf_where_hash(&sf->paths[i]->id, 1) & (cap - 1);
        while (t[k])
            k = (k + 1) & (cap - 1);
        t[k] = sf->paths[i];
    }
    free(sf->table);
    sf->table = t;
    sf->mask = cap - 1;
    return 0;
}

/* A new path for <k> (no slots yet), in the list and the table.  NULL on OOM. */
static struct statefile_path *path_add(struct statefile *sf, const struct statefile_key *k)
{
    if (sf->n == sf->cap) {
        size_t cap = sf->cap ? 2 * sf->cap : 16;
        struct statefile_path **a = realloc(sf->paths, cap * sizeof *a);
        if (!a)
            return NULL;
        sf->paths = a;
        sf->cap = cap;
    }
    struct statefile_path *p = calloc(1, sizeof *p);
    if (!p || table_grow(sf, sf->n + 1) < 0 || !(p->inside = strdup(k->inside ? k->inside : ""))) {
        free(p);
        return NULL;
    }
    p->sf = sf;
    sf_segment_of(k, &p->id);
    p->lo = k->lo;
    p->hi = k->hi;
    p->time_wait_ms = k->time_wait_ms;
    sf->paths[sf->n++] = p;
    size_t i = sf_where_hash(&p->id, 1) & sf->mask;
    while (sf->table[i])
        i = (i + 1) & sf->mask;
    sf->table[i] = p;
    return p;
}

struct statefile_path *statefile_find(const struct statefile *sf, const struct statefile_key *k)
{
    struct sf_segment id;
    sf_segment_of(k, &id);
    return table_get(sf, &id);
}

/* ---- the mapping -------------------------------------------------------------------- */

static int reserve(struct statefile *sf, size_t need)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t sizes[] = {(size_t)SF_RESERVE, 4 * need, need};
    for (size_t i = 0; i < 3; i++) {
        size_t len = (sizes[i] + page - 1) / page * page;
        if (len < need)
            continue;
        void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) {
            sf->base = p;
            sf->reserved = len;
            return 0;
        }
    }
    return -ENOMEM;
}

/* Extend the mapping over [0, len) of the file (or of memory, with no file). */
static int map_to(struct statefile *sf, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t want = (len + page - 1) / page * page;
    if (want <= sf->mapped)
        return 0;
    if (want > sf->reserved)
        return -ENOSPC;
    void *at = sf->base + sf->mapped, *p;
    if (sf->fd >= 0)
        p = mmap(at, want - sf->mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, sf->fd,
                 (off_t)sf->mapped);
    else
        p = mmap(at, want - sf->mapped, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    /* Each worker touches the slots of its own ports, and layout() one page per segment,
     * 320 KB apart: the kernel's readahead would fault in (and zero) a whole window for
     * each, 8 s for 10,000 paths.  One page per fault. */
    if (sf->fd >= 0)
        (void)madvise(p, want - sf->mapped, MADV_RANDOM);
    sf->mapped = want;
    return 0;
}

/* The file's bytes up to <len>, on disk (no hole: a store into a hole of a full disk
 * would be a SIGBUS).  0 or -errno. */
static int file_extend(int fd, size_t from, size_t len)
{
    if (ftruncate(fd, (off_t)len) != 0)
        return -errno;
    int e = posix_fallocate(fd, (off_t)from, (off_t)(len - from));
    return e ? -e : 0;
}

/* A new file next to sf->path, locked, of <len> bytes.  Returns its descriptor (name in
 * <tmp>), or -1 after logging why. */
static int create_file(struct statefile *sf, size_t len, char *tmp, size_t tmplen)
{
    struct stat st;
    if (lstat(sf->path, &st) == 0 && S_ISLNK(st.st_mode)) {
        log_error("state file %s: is a symbolic link; refusing to write through or replace it",
                  sf->path);
        return -1;
    }
    const char *what = "cannot create a temporary file";
    int e = ENAMETOOLONG, fd = -1;
    if (snprintf(tmp, tmplen, "%s.XXXXXX", sf->path) < (int)tmplen) {
        fd = mkostemp(tmp, O_CLOEXEC); /* O_CREAT|O_EXCL, mode 0600, a fresh name */
        e = errno;
    }
    if (fd >= 0) {
        int r = flock(fd, LOCK_EX | LOCK_NB) != 0 ? -errno : file_extend(fd, 0, len);
        if (r == 0)
            return fd;
        e = -r;
        what = "cannot reserve its space";
        close(fd);
        unlink(tmp);
    }
    log_error("state file %s: %s: %s", sf->path, what, strerror(e));
    return -1;
}

static void fsync_dir(const char *path)
{
    char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

/* The header and every segment's description; the slots are zero. */
static void layout(struct statefile *sf)
{
    struct sf_header *h = (struct sf_header *)sf->base;
    sf->hdr = h;
    memcpy(h->magic, SF_MAGIC, 8);
    h->version = SF_VERSION;
    h->byte_order = SF_ORDER;
    h->alive_real_ms = sf->opened.real_ms;
    h->alive_mono_ms = sf->opened.mono_ms;
    h->alive_boot_ms = sf->opened.boot_ms;
    h->end = sf->size;
    h->pid = (uint32_t)getpid();
    h->header_bytes = SF_HEADER_BYTES;
    h->segment_bytes = SF_SEGMENT_BYTES;
    h->slot_bytes = sizeof(struct portstate_slot);
    h->boot_id_known = (uint32_t)sf->opened.boot_id_known;
    memcpy(h->boot_id, sf->opened.boot_id, sizeof h->boot_id);
    h->clock_base_ns = sf->clock_base_ns;
    h->created_real_ms = sf->opened.real_ms;
    size_t off = SF_HEADER_BYTES;
    for (size_t i = 0; i < sf->n; i++) {
        struct statefile_path *p = sf->paths[i];
        struct sf_segment *s = (struct sf_segment *)(sf->base + off);
        *s = p->id;
        s->check = sf_check(s, sizeof *s);
        p->slots = (struct portstate_slot *)(s + 1);
        off += s->bytes;
    }
}

/* ---- open --------------------------------------------------------------------------- */

static void free_sf(struct statefile *sf)
{
    if (!sf)
        return;
    for (size_t i = 0; i < sf->n; i++) {
        if (sf->paths[i]->own_slots)
            free(sf->paths[i]->slots);
        free(sf->paths[i]->inside);
        free(sf->paths[i]);
    }
    if (sf->base)
        munmap(sf->base, sf->reserved);
    if (sf->fd >= 0)
        close(sf->fd);
    free(sf->paths);
    free(sf->table);
    free(sf->path);
    free(sf);
}

/* Put the new file in the old one's place (the old one aside first when it could not be
 * read).  On failure the file stays mapped but is no longer at its name. */
static void install(struct statefile *sf, const struct sf_prev *prev, const char *tmp)
{
    char aside[4200];
    const char *what = "cannot write";
    if (fdatasync(sf->fd) == 0) {
        what = "cannot keep the unreadable file aside";
        if (!prev->keep_aside ||
            (snprintf(aside, sizeof aside, "%s.bad", sf->path) < (int)sizeof aside &&
             rename(sf->path, aside) == 0)) {
            what = "cannot replace";
            if (rename(tmp, sf->path) == 0) {
                fsync_dir(sf->path);
                return;
            }
        }
    }
    int e = errno;
    unlink(tmp);
    close(sf->fd);
    sf->fd = -1;
    sf_count_failure();
    log_error("state file %s: %s: %s; this run's records are kept in memory only", sf->path,
              what, strerror(e));
}

int statefile_open(const char *path, const struct statefile_key *keys, size_t n,
                   const struct statefile_limits *v1, struct statefile **out, char *err,
                   size_t errlen)
{
    struct statefile *sf = calloc(1, sizeof *sf);
    *out = NULL;
    if (!sf || !(sf->path = strdup(path))) {
        free(sf);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    sf->fd = -1;
    sf_read_clock(&sf->opened, 1);
    sf->clock_base_ns = clock_real_ns() - clock_mono_ns();
    sf->size = SF_HEADER_BYTES;
    for (size_t i = 0; i < n; i++) {
        struct sf_segment id;
        sf_segment_of(&keys[i], &id);
        if (table_get(sf, &id))
            continue;
        if (!path_add(sf, &keys[i])) {
            free_sf(sf);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        sf->size += id.bytes;
    }
    if (reserve(sf, sf->size) < 0) {
        snprintf(err, errlen, "state file %s: cannot reserve %zu bytes of address space", path,
                 sf->size);
        free_sf(sf);
        return -ENOMEM;
    }
    struct sf_prev prev;
    int r = sf_read_prev(sf, &prev, err, errlen);
    if (r < 0) {
        free_sf(sf);
        return r;
    }
    sf->plan.busy_grace_ms = v1 ? v1->busy_grace_ms : 0;
    char tmp[4200];
    sf->fd = create_file(sf, sf->size, tmp, sizeof tmp);
    if (sf->fd >= 0 && map_to(sf, sf->size) < 0) {
        log_error("state file %s: cannot map it: %s", path, strerror(errno));
        close(sf->fd);
        unlink(tmp);
        sf->fd = -1;
    }
    if (sf->fd < 0) {
        sf_count_failure(); /* memory only: the drain exits 1 */
        if ((r = map_to(sf, sf->size)) < 0) {
            sf_prev_release(&prev);
            free_sf(sf);
            snprintf(err, errlen, "state file %s: out of memory", path);
            return r;
        }
    }
    layout(sf);
    int restored = 0, unknown = 0;
    sf_copy_prev(sf, &prev, v1, &restored, &unknown);
    struct portstate_plan damage;
    portstate_plan_unreadable(prev.damaged_alive_ms, &sf->opened, &damage);
    uint64_t blocked = 0, longest = 0;
    for (size_t i = 0; i < sf->n; i++) {
        struct statefile_path *p = sf->paths[i];
        uint64_t u = portstate_unknown_until_ms(&sf->plan, &sf->opened, p->time_wait_ms);
        uint64_t d = prev.damaged && !p->found
                         ? portstate_unknown_until_ms(&damage, &sf->opened, p->time_wait_ms)
                         : 0;
        p->unknown_until_ms = u > d ? u : d;
        if (p->unknown_until_ms) {
            blocked += (uint64_t)p->hi - p->lo + 1;
            if (p->unknown_until_ms - sf->opened.mono_ms > longest)
                longest = p->unknown_until_ms - sf->opened.mono_ms;
        }
    }
    sf->hdr->risk_from_real_ms = sf->plan.risk_from_real_ms;
    if (prev.damaged && damage.risk_from_real_ms > sf->hdr->risk_from_real_ms)
        sf->hdr->risk_from_real_ms = damage.risk_from_real_ms;
    sf->hdr->check = sf_check(sf->base + SF_HEADER_FIXED,
                              offsetof(struct sf_header, check) - SF_HEADER_FIXED);
    if (sf->fd >= 0)
        install(sf, &prev, tmp);
    sf_prev_release(&prev);
    const char *memo = sf->fd < 0 ? "; kept in memory only" : "";
    if (sf->plan.kind == PORTSTATE_FRESH)
        log_info("state file %s: none yet (a first start): every source port is usable at "
                 "once%s", path, memo);
    else if (sf->plan.kind == PORTSTATE_UNREADABLE)
        log_info("state file %s: made anew, without the old records%s", path, memo);
    else
        log_info("state file %s: %s: restored %d remembered ports%s", path,
                 portstate_restart_name(sf->plan.kind), restored, memo);
    if (unknown && sf->plan.busy_grace_ms)
        log_info("state file %s: %d ports busy in the process taken over count as in "
                 "backend TIME_WAIT for its drain (%llu ms) and one TIME_WAIT period", path,
                 unknown, (unsigned long long)sf->plan.busy_grace_ms);
    else if (unknown)
        log_warn("state file %s: %d ports count as in backend TIME_WAIT with nothing known, "
                 "for at most one TIME_WAIT period: busy when a run ended (a crash?), so "
                 "their connections' end is unknown", path, unknown);
    if (blocked)
        log_warn("state file %s: %llu ports of %zu paths have no record that can be trusted "
                 "(%s): they count as possibly in backend TIME_WAIT for up to %llu s", path,
                 (unsigned long long)blocked, sf->n, portstate_restart_name(sf->plan.kind),
                 (unsigned long long)(longest + 999) / 1000);
    *out = sf;
    return 0;
}

/* ---- a reload ----------------------------------------------------------------------- */

int statefile_add(struct statefile *sf, const struct statefile_key *keys, size_t n)
{
    struct portstate_clock now;
    sf_read_clock(&now, 0);
    size_t size = sf->size, first = sf->n;
    for (size_t i = 0; i < n; i++) {
        struct sf_segment id;
        sf_segment_of(&keys[i], &id);
        if (table_get(sf, &id))
            continue;
        if (!path_add(sf, &keys[i]))
            return -ENOMEM; /* those added so far have no slots: statefile_find says so */
        size += id.bytes;
    }
    if (first == sf->n)
        return 0;
    int r = sf->fd >= 0 ? file_extend(sf->fd, sf->size, size) : 0;
    if (r == 0)
        r = map_to(sf, size);
    if (r < 0) {
        sf_count_failure();
        log_error("state file %s: cannot grow it to %zu bytes: %s; the ports of %zu new paths "
                  "are kept in memory only", sf->path, size, strerror(-r), sf->n - first);
    }
    size_t off = sf->size;
    for (size_t i = first; i < sf->n; i++) {
        struct statefile_path *p = sf->paths[i];
        p->unknown_until_ms = portstate_unknown_until_ms(&sf->plan, &now, p->time_wait_ms);
        if (r < 0) {
            p->slots = calloc((size_t)p->hi - p->lo + 1, sizeof *p->slots);
            p->own_slots = 1;
            continue;
        }
        struct sf_segment *s = (struct sf_segment *)(sf->base + off);
        *s = p->id;
        s->check = sf_check(s, sizeof *s);
        p->slots = (struct portstate_slot *)(s + 1);
        off += s->bytes;
    }
    if (r == 0) {
        sf->size = size;
        __atomic_store_n(&sf->hdr->end, (uint64_t)size, __ATOMIC_RELEASE);
    }
    return r < 0 ? r : (int)(sf->n - first);
}

/* ---- running ------------------------------------------------------------------------ */

void statefile_observer(void *arg, const struct portmap_entry *e)
{
    struct statefile_path *p = arg;
    if (e->port >= p->lo && e->port <= p->hi && p->slots)
        portstate_store(&p->slots[e->port - p->lo], e, p->sf->clock_base_ns);
}

int statefile_restore(const struct statefile_path *p, portmap *pm, uint16_t lo, uint16_t hi,
                      uint64_t now_ms)
{
    int n = 0;
    for (uint32_t port = lo; p->slots && (p->records || p->sf->started) && port <= hi; port++) {
        if (port < p->lo || port > p->hi)
            continue;
        struct portmap_entry e = {.port = (uint16_t)port};
        if (portstate_load(&p->slots[port - p->lo], p->sf->clock_base_ns, &e) != 1)
            continue;
        e.port = (uint16_t)port;
        if (e.state != PM_BUSY && e.until_ms > now_ms && portmap_restore(pm, &e) == 0)
            n++;
    }
    if (p->unknown_until_ms > now_ms)
        portmap_block_unknown(pm, p->unknown_until_ms);
    return n;
}

void statefile_started(struct statefile *sf)
{
    sf->started = 1;
}

void statefile_heartbeat(struct statefile *sf)
{
    if (sf->handed)
        return; /* the new process's file now (statefile_handover) */
    struct portstate_clock c;
    sf_read_clock(&c, 0);
    __atomic_store_n(&sf->hdr->alive_real_ms, c.real_ms, __ATOMIC_RELEASE);
    __atomic_store_n(&sf->hdr->alive_mono_ms, c.mono_ms, __ATOMIC_RELEASE);
    __atomic_store_n(&sf->hdr->alive_boot_ms, c.boot_ms, __ATOMIC_RELEASE);
}

int statefile_sync(struct statefile *sf)
{
    if (sf->fd < 0 || sf->handed || fdatasync(sf->fd) == 0)
        return 0;
    int e = errno;
    sf_count_failure();
    log_error("state file %s: cannot sync it to disk: %s (a host crash now would lose the "
              "records of the last seconds)", sf->path, strerror(e));
    return -e;
}

void statefile_close(struct statefile *sf, int clean)
{
    if (!sf)
        return;
    if (sf->handed) {
        log_info("state file %s: handed over to the new process at the takeover", sf->path);
        free_sf(sf);
        return;
    }
    statefile_heartbeat(sf);
    if (clean)
        __atomic_store_n(&sf->hdr->clean, 1u, __ATOMIC_RELEASE);
    if (sf->fd >= 0) {
        if (fsync(sf->fd) != 0) {
            sf_count_failure();
            log_error("state file %s: cannot sync it to disk: %s", sf->path, strerror(errno));
        } else {
            log_info("state file %s: %s", sf->path, clean ? "closed cleanly" : "closed");
        }
    } else {
        sf_count_failure();
        log_error("state file %s: this run's records were kept in memory only; the next "
                  "start will not know them", sf->path);
    }
    free_sf(sf);
}
