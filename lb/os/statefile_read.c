/* statefile_read.c - the file a previous run left (see statefile.h): found, locked,
 * checked, judged (core/portstate.h) and copied into this run's file.  Everything read
 * here is untrusted: every length and offset is checked against the file's size before
 * it is used. */
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

/* ---- the clocks and the boot ------------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

void sf_read_clock(struct portstate_clock *c, int with_boot_id)
{
    memset(c, 0, sizeof *c);
    c->real_ms = clock_real_ns() / 1000000;
    c->mono_ms = clock_mono_ns() / 1000000;
    c->boot_ms = clock_boot_ns() / 1000000;
    if (!with_boot_id)
        return;
    /* Hidden under systemd's ProcSubset=pid: then the boot clocks decide. */
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    char buf[64];
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf) : -1;
    if (fd >= 0)
        close(fd);
    int digits = 0;
    for (ssize_t i = 0; i < n && digits < 32; i++) {
        int v = hexval(buf[i]);
        if (v < 0)
            continue;
        c->boot_id[digits / 2] = (uint8_t)(c->boot_id[digits / 2] << 4 | v);
        digits++;
    }
    c->boot_id_known = digits == 32;
}

/* ---- finding and locking it --------------------------------------------------------- */

/* Open and lock <path> (the same file the name still points to).  Returns the descriptor,
 * -ENOENT, -EBUSY (another process holds it), or another -errno with <why> set. */
static int open_locked(const char *path, struct stat *st, const char **why)
{
    for (int tries = 0; tries < 5; tries++) {
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
            int e = errno;
            *why = e == ELOOP ? "is a symbolic link; not following it" : strerror(e);
            return -e;
        }
        if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
            close(fd);
            *why = "is not a regular file";
            return -EINVAL;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            *why = e == EWOULDBLOCK ? "in use" : strerror(e);
            return e == EWOULDBLOCK ? -EBUSY : -e;
        }
        /* The lock is on the file we opened; a twlb starting at the same time may have
         * renamed a new file over the name meanwhile: then lock that one. */
        struct stat now;
        if (stat(path, &now) == 0 && now.st_dev == st->st_dev && now.st_ino == st->st_ino)
            return fd;
        close(fd);
    }
    *why = "keeps being replaced";
    return -EAGAIN;
}

static uint64_t mtime_ms(const struct stat *st)
{
    return (uint64_t)st->st_mtim.tv_sec * 1000 + (uint64_t)st->st_mtim.tv_nsec / 1000000;
}

/* ---- a version 2 file --------------------------------------------------------------- */

/* When a file of our magic was last alive, whatever its version; 0 when it does not say
 * (another byte order is read swapped).  Not trusted beyond a sanity check. */
static uint64_t stable_alive(const uint8_t *map, size_t len, uint64_t now_real_ms)
{
    const struct sf_header *h = (const void *)map;
    if (len < 24 || memcmp(h->magic, SF_MAGIC, 8))
        return 0;
    uint64_t a = h->alive_real_ms;
    if (h->byte_order != SF_ORDER)
        a = __builtin_bswap64(a);
    /* 2020-01-01 .. a day from now: else it is not a time */
    return a >= 1577836800000ull && a <= now_real_ms + 86400000ull ? a : 0;
}

/* Check the header of a version 2 file; NULL, or why not. */
static const char *check_header(const uint8_t *map, size_t len, char *buf, size_t buflen)
{
    const struct sf_header *h = (const void *)map;
    if (len < SF_HEADER_BYTES || memcmp(h->magic, SF_MAGIC, 8))
        return "is not a twlb state file";
    if (h->byte_order != SF_ORDER)
        return "was written on a machine of the other byte order";
    if (h->version != SF_VERSION) {
        snprintf(buf, buflen, "has version %u of the state file format; this twlb reads "
                 "versions 1 and 2", h->version);
        return buf;
    }
    if (h->header_bytes != SF_HEADER_BYTES || h->segment_bytes != SF_SEGMENT_BYTES ||
        h->slot_bytes != sizeof(struct portstate_slot) ||
        h->check != sf_check((const uint8_t *)h + SF_HEADER_FIXED,
                             offsetof(struct sf_header, check) - SF_HEADER_FIXED))
        return "has a damaged header";
    return NULL;
}

/* The segment at <off> of a file whose segments end at <end>, or NULL when it is not a
 * valid one. */
static const struct sf_segment *segment_at(const uint8_t *map, size_t off, size_t end)
{
    if (off + SF_SEGMENT_BYTES > end)
        return NULL;
    struct sf_segment s;
    memcpy(&s, map + off, sizeof s);
    uint32_t c = s.check;
    s.check = 0;
    if (memcmp(s.magic, "path", 4) || c != sf_check(&s, sizeof s) || s.lo < 1 ||
        s.lo > s.hi || s.hi > 65535 || s.bytes != sf_segment_bytes((uint16_t)s.lo, (uint16_t)s.hi) ||
        s.bytes > end - off || memchr(s.pool, 0, SF_NAME_MAX) == NULL ||
        memchr(s.backend, 0, SF_NAME_MAX) == NULL)
        return NULL;
    return (const void *)(map + off);
}

int sf_read_prev(struct statefile *sf, struct sf_prev *prev, char *err, size_t errlen)
{
    memset(prev, 0, sizeof *prev);
    prev->fd = -1;
    const struct portstate_clock *now = &sf->opened;
    struct stat st;
    const char *why = NULL;
    int fd = open_locked(sf->path, &st, &why);
    if (fd == -ENOENT) {
        portstate_plan_fresh(&sf->plan);
        return 0;
    }
    if (fd == -EBUSY) {
        snprintf(err, errlen, "state file %s: in use by another process (another twlb "
                 "running with it?); two processes must not share one state file", sf->path);
        return -EBUSY;
    }
    if (fd < 0) {
        log_error("state file %s: %s; its records cannot be read", sf->path, why);
        portstate_plan_unreadable(0, now, &sf->plan);
        return 0;
    }
    prev->fd = fd;
    size_t len = (size_t)st.st_size;
    char head[16] = "";
    ssize_t got = pread(fd, head, sizeof head, 0);
    size_t sp = 0;
    while (got > 0 && sp < (size_t)got && strchr(" \t\r\n", head[sp]))
        sp++;
    if (got > 0 && sp < (size_t)got && head[sp] == '{') {
        prev->v1 = 1; /* twlb 0.1's JSON: imported by sf_copy_prev */
        portstate_plan_fresh(&sf->plan);
        sf->plan.kind = PORTSTATE_IMPORTED;
        return 0;
    }
    if (len == 0) {
        log_warn("state file %s: is empty; counting it as a first start", sf->path);
        portstate_plan_fresh(&sf->plan);
        return 0;
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    char buf[160];
    if (map == MAP_FAILED) {
        why = strerror(errno);
    } else {
        (void)madvise(map, len, MADV_RANDOM); /* segment headers 320 KB apart: no readahead */
        prev->map = map;
        prev->len = len;
        why = check_header(map, len, buf, sizeof buf);
    }
    if (why) {
        uint64_t alive = prev->map ? stable_alive(prev->map, len, now->real_ms) : 0;
        uint64_t last = alive ? alive : mtime_ms(&st);
        portstate_plan_unreadable(last, now, &sf->plan);
        prev->keep_aside = 1;
        log_error("state file %s: %s; kept as %s.bad; its run was last alive %lld s ago (%s)",
                  sf->path, why, sf->path,
                  (long long)((int64_t)(now->real_ms - last) / 1000),
                  alive ? "its heartbeat" : "its modification time");
        return 0;
    }
    const struct sf_header *h = map;
    struct portstate_prev pv = {
        .alive = {.real_ms = h->alive_real_ms, .mono_ms = h->alive_mono_ms,
                  .boot_ms = h->alive_boot_ms, .boot_id_known = (int)h->boot_id_known},
        .clean = h->clean == 1,
        .risk_from_real_ms = h->risk_from_real_ms,
    };
    memcpy(pv.alive.boot_id, h->boot_id, sizeof pv.alive.boot_id);
    portstate_plan_from(&pv, now, &sf->plan);
    return 0;
}

void sf_prev_release(struct sf_prev *prev)
{
    if (prev->map)
        munmap((void *)prev->map, prev->len);
    if (prev->fd >= 0)
        close(prev->fd);
    prev->map = NULL;
    prev->fd = -1;
}

/* ---- copying what still matters -------------------------------------------------------- */

struct place_index {
    struct statefile_path **slot;
    size_t mask;
};

static int place_index_build(struct place_index *ix, struct statefile *sf)
{
    size_t cap = 16;
    while (cap < 2 * sf->n)
        cap *= 2;
    if (!(ix->slot = calloc(cap, sizeof *ix->slot)))
        return -1;
    ix->mask = cap - 1;
    for (size_t i = 0; i < sf->n; i++) {
        size_t k = sf_where_hash(&sf->paths[i]->id, 0) & ix->mask;
        while (ix->slot[k])
            k = (k + 1) & ix->mask;
        ix->slot[k] = sf->paths[i];
    }
    return 0;
}

static struct statefile_path *place_find(const struct place_index *ix,
                                         const struct sf_segment *s)
{
    for (size_t k = sf_where_hash(s, 0) & ix->mask; ix->slot[k]; k = (k + 1) & ix->mask) {
        const struct sf_segment *id = &ix->slot[k]->id;
        if (!memcmp((const uint8_t *)id + SF_WHERE_START, (const uint8_t *)s + SF_WHERE_START,
                    SF_WHERE_END - SF_WHERE_START))
            return ix->slot[k];
    }
    return NULL;
}

struct copy_counts {
    int restored, unknown;
};

static void put(struct statefile *sf, struct statefile_path *p, int got,
                struct portmap_entry *e, struct copy_counts *n)
{
    if (!portstate_recover(&sf->plan, &sf->opened, p->time_wait_ms, got, e))
        return;
    portstate_store(&p->slots[e->port - p->lo], e, sf->clock_base_ns);
    p->records++;
    n->restored++;
    n->unknown += e->unknown;
}

/* The end of the run of slots from index <i> of the segment whose slots start at byte
 * <base> of the file (<n> slots) that may hold records, and in *<i> its start: holes are
 * skipped (a hole reads as zeros, and a zeroed slot holds no record).  A file of 10,000
 * paths is 3.2 GB that was never written but where a port was used: reading every slot
 * took 7.4 s.  Where the file system cannot tell (an error), every slot may hold one. */
static uint32_t data_run(int fd, size_t base, uint32_t n, uint32_t *i)
{
    const size_t slot = sizeof(struct portstate_slot);
    off_t from = (off_t)(base + (size_t)*i * slot);
    off_t data = lseek(fd, from, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) /* nothing but holes from here */
            *i = n;
        return n;
    }
    if ((size_t)data >= base + (size_t)n * slot) {
        *i = n;
        return n;
    }
    off_t hole = lseek(fd, data, SEEK_HOLE);
    *i = (uint32_t)(((size_t)data - base) / slot);
    if (hole < 0)
        return n;
    size_t end = ((size_t)hole - base + slot - 1) / slot;
    return end < n ? (uint32_t)end : n;
}

/* Every segment of a version 2 file in order (a later segment of the same place is
 * newer and wins); the walk stops at the first damaged one. */
static void copy_v2(struct statefile *sf, struct sf_prev *prev, struct copy_counts *n)
{
    const struct sf_header *h = (const void *)prev->map;
    struct place_index ix;
    if (place_index_build(&ix, sf) < 0) {
        prev->damaged = 1; /* out of memory: as if nothing could be read */
        prev->damaged_alive_ms = h->alive_real_ms;
        return;
    }
    size_t end = h->end < prev->len ? (size_t)h->end : prev->len;
    size_t off = SF_HEADER_BYTES;
    while (off < end) {
        const struct sf_segment *s = segment_at(prev->map, off, end);
        if (!s)
            break;
        struct statefile_path *p = place_find(&ix, s);
        if (p) {
            p->found = 1;
            const struct portstate_slot *slots = (const void *)(s + 1);
            uint32_t lo = s->lo > p->lo ? s->lo : p->lo, hi = s->hi < p->hi ? s->hi : p->hi;
            size_t base = (size_t)((const uint8_t *)slots - prev->map);
            uint32_t i = lo - s->lo, last = hi - s->lo + 1;
            while (i < last) {
                uint32_t stop = data_run(prev->fd, base, last, &i);
                for (; i < stop; i++) {
                    uint32_t port = s->lo + i;
                    struct portmap_entry e = {.port = (uint16_t)port};
                    int got = portstate_load(&slots[i], h->clock_base_ns, &e);
                    e.port = (uint16_t)port;
                    if (got != 0)
                        put(sf, p, got, &e, n);
                }
            }
        }
        off += s->bytes;
    }
    free(ix.slot);
    if (off != h->end) {
        prev->damaged = 1;
        prev->damaged_alive_ms = h->alive_real_ms;
        log_error("state file %s: damaged after byte %zu of %llu; the paths not found before "
                  "it count as unknown", sf->path, off, (unsigned long long)h->end);
    }
}

struct v1_ctx {
    struct statefile *sf;
    struct copy_counts *n;
};

static int v1_entry(void *arg, const struct statefile_entry *se)
{
    struct v1_ctx *c = arg;
    for (size_t i = 0; i < c->sf->n; i++) {
        struct statefile_path *p = c->sf->paths[i];
        if (strcmp(p->id.pool, se->pool) || strcmp(p->id.backend, se->backend) ||
            strcmp(p->inside, se->inside) || se->e.port < p->lo || se->e.port > p->hi)
            continue;
        struct portmap_entry e = se->e;
        put(c->sf, p, 1, &e, c->n);
        return 0;
    }
    return -1;
}

void sf_copy_prev(struct statefile *sf, const struct sf_prev *cprev,
                  const struct statefile_limits *v1, int *restored, int *unknown)
{
    struct sf_prev *prev = (struct sf_prev *)cprev;
    struct copy_counts n = {0, 0};
    if (prev->v1) {
        struct v1_ctx c = {sf, &n};
        if (statefile_v1_load(sf->path, sf->opened.mono_ms, v1, v1_entry, &c) < 0) {
            struct stat st;
            uint64_t last = prev->fd >= 0 && fstat(prev->fd, &st) == 0 ? mtime_ms(&st) : 0;
            portstate_plan_unreadable(last, &sf->opened, &sf->plan);
            prev->keep_aside = 1;
            log_error("state file %s: kept as %s.bad", sf->path, sf->path);
        }
    } else if (prev->map && sf->plan.kind != PORTSTATE_UNREADABLE) {
        copy_v2(sf, prev, &n);
    }
    *restored = n.restored;
    *unknown = n.unknown;
}
