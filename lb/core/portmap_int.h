/* portmap_int.h - the inside of a port map, shared by the module's two files:
 * portmap.c (life cycle, choice, release, time) and portmap_read.c (what a map holds,
 * read without changing it).  Not for other modules.
 *
 * Data structure: ports never used since the map was (re)started are the range
 * [cursor, hi], with no memory per port.  Every other port has an entry in a two-level
 * table (256 pages of 256 entries, a page allocated while any of its ports has an entry).
 * Entries sit on one of four intrusive FIFOs linked by port number (0 = none, as port 0
 * is never in a range): free (released, expired), remote TIME_WAIT, local TIME_WAIT and
 * quarantine, each in order of insertion, which for a fixed TIME_WAIT length is also the
 * order of expiry.  A BUSY entry is on no list.  When nothing is busy, in TIME_WAIT or
 * quarantined any more, the map drops every page and starts a fresh cursor.  Every state
 * change goes through set_state() (or the fresh pick), which tells the observer. */
#ifndef TWLB_PORTMAP_INT_H
#define TWLB_PORTMAP_INT_H

#include "core/portmap.h"

#define NO_ENTRY 0xff
#define PAGE_BITS 8
#define PAGE_SIZE (1u << PAGE_BITS)
#define NPAGES (65536u >> PAGE_BITS)

enum {
    F_ISN_KNOWN = 1,
    F_TIMESTAMPS = 2,
    F_WAS_REMOTE_TW = 4, /* BUSY, picked from REMOTE_TW: its memory is still in the entry */
    F_UNKNOWN = 8,       /* REMOTE_TW restored with nothing known (counted in pm->unknown) */
};

struct entry {
    uint8_t state; /* enum pm_state, or NO_ENTRY */
    uint8_t flags;
    uint16_t prev, next;
    uint32_t rcv_nxt;
    uint64_t until_ms;
    uint64_t syn_real_ns, syn_mono_ns, bytes;
};

struct page {
    struct entry e[PAGE_SIZE];
    uint32_t used; /* entries present */
};

struct list {
    uint16_t head, tail;
    uint32_t n;
};

struct portmap {
    uint16_t lo, hi;
    struct portmap_policy pol;
    uint32_t cursor;         /* next never-used port; hi + 1 when none is left */
    uint32_t ahead;          /* entries at ports >= cursor (restored before first use) */
    uint64_t blocked_until;  /* never-used ports are unusable before this */
    int blocked;             /* as of the last expire */
    struct list free_l, remote_l, local_l, quar_l;
    uint32_t remote_known;   /* entries on remote_l with F_ISN_KNOWN */
    uint32_t local_ts;       /* entries on local_l with F_TIMESTAMPS */
    uint32_t unknown;        /* entries with F_UNKNOWN (on remote_l) */
    uint32_t busy;
    uint32_t pages_used;
    portmap_observer *obs;   /* portmap_observe() */
    void *obs_arg;
    struct page *pages[NPAGES];
};

/* The entry of <port>, or NULL when it has none. */
static inline struct entry *portmap_entry_of(const portmap *pm, uint16_t port)
{
    struct page *pg = pm->pages[port >> PAGE_BITS];
    if (!pg)
        return NULL;
    struct entry *e = &pg->e[port & (PAGE_SIZE - 1)];
    return e->state == NO_ENTRY ? NULL : e;
}

/* <e> of <port> as the outside sees it (portmap_entry). */
void portmap_view_of(uint16_t port, const struct entry *e, struct portmap_entry *v);

#endif
