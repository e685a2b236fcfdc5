/* statefile_int.h - the inside of the state file module, shared by statefile.c (the file
 * of this run: layout, growth, the observer, the keeper) and statefile_read.c (the file
 * a previous run left).  Not for other modules.  The format is described in
 * statefile.h; everything here is in native byte order. */
#ifndef TWLB_STATEFILE_INT_H
#define TWLB_STATEFILE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "os/statefile.h"

#define SF_MAGIC "twlbstat"
#define SF_VERSION 2
#define SF_ORDER 0x01020304u
#define SF_HEADER_BYTES 4096
#define SF_SEGMENT_BYTES 256
#define SF_NAME_MAX 72

struct sf_header {
    /* Every version keeps these four where they are: a file of another version still
     * tells when it was last alive (portstate_plan_unreadable). */
    char magic[8];            /* "twlbstat" */
    uint32_t version;         /* SF_VERSION */
    uint32_t byte_order;      /* SF_ORDER as this machine writes it */
    uint64_t alive_real_ms;   /* the last heartbeat: CLOCK_REALTIME */
    /* Changed while running, each by one aligned store (real first: a heartbeat cut in
     * two errs toward a later deadline). */
    uint64_t alive_mono_ms;   /* CLOCK_MONOTONIC of the heartbeat */
    uint64_t alive_boot_ms;   /* CLOCK_BOOTTIME of the heartbeat */
    uint64_t end;             /* bytes in use: the last segment ends here */
    uint32_t clean;           /* 1: stopped cleanly, every record is final */
    uint32_t pid;             /* of the process that wrote it */
    /* Fixed when the file is made, covered by check. */
    uint32_t header_bytes, segment_bytes, slot_bytes;
    uint32_t boot_id_known;
    uint8_t boot_id[16];
    uint64_t clock_base_ns;   /* CLOCK_REALTIME - CLOCK_MONOTONIC at creation (clock_us) */
    uint64_t risk_from_real_ms; /* portstate_plan: ports with no record are unknown until
                                   this + their TIME_WAIT (0: none) */
    uint64_t created_real_ms;
    uint32_t check;           /* sf_check() of the fixed part */
};
#define SF_HEADER_FIXED offsetof(struct sf_header, header_bytes)

/* One path: this description, then its slots for ports lo..hi. */
struct sf_segment {
    char magic[4];            /* "path" */
    uint32_t check;           /* sf_check() of the 256 bytes, with check 0 */
    uint64_t bytes;           /* this description and its slots, a multiple of 64 */
    uint32_t lo, hi;
    /* Where: with lo..hi, the identity of the path. */
    int32_t backend_family, inside_family;
    uint8_t backend_addr[16], inside_addr[16];
    uint32_t backend_port;
    char pool[SF_NAME_MAX], backend[SF_NAME_MAX]; /* NUL-terminated */
    uint8_t pad[44];
};
#define SF_WHERE_START offsetof(struct sf_segment, backend_family)
#define SF_WHERE_END offsetof(struct sf_segment, pad)

struct statefile_path {
    struct statefile *sf;
    struct portstate_slot *slots; /* ports lo..hi */
    uint16_t lo, hi;
    uint64_t time_wait_ms;
    uint64_t unknown_until_ms;    /* ports without a record are unknown until then */
    struct sf_segment id;         /* as written: the names, addresses and range */
    char *inside;                 /* as written in the config (version 1 files) */
    int own_slots;                /* slots malloc'ed: kept in memory only */
    int records;                  /* how many the previous run left: at the first start
                                     restoring walks only paths that have some */
    int found;                    /* the previous file had a segment for its place */
};

struct statefile {
    char *path;
    int fd;                       /* the file of this run, locked; -1: memory only */
    uint8_t *base;                /* the reserved address range; the mapping starts here */
    size_t reserved, mapped, size;
    struct sf_header *hdr;
    struct statefile_path **paths;
    size_t n, cap;
    struct statefile_path **table; /* by identity (sf_where_hash with the range) */
    size_t mask;
    struct portstate_plan plan;
    struct portstate_clock opened; /* the clocks at open */
    uint64_t clock_base_ns;
    int started;                  /* statefile_started(): every restore walks the slots */
    int handed;                   /* statefile_handover(): unlocked, no heartbeat, no sync */
};

/* Count a failed save (statefile_save_failures). */
void sf_count_failure(void);

/* The previous run's file, as statefile_read() found it. */
struct sf_prev {
    int fd;                       /* locked; -1: none */
    const uint8_t *map;           /* a version 2 file, mapped read-only */
    size_t len;
    int v1;                       /* a version 1 (JSON) file to import */
    int keep_aside;               /* unreadable: rename it to <path>.bad */
    int damaged;                  /* its segments could not all be walked */
    uint64_t damaged_alive_ms;    /* its heartbeat, for the paths not found */
};

uint32_t sf_check(const void *p, size_t len);
uint64_t sf_where_hash(const struct sf_segment *s, int with_range);
void sf_segment_of(const struct statefile_key *k, struct sf_segment *s);
size_t sf_segment_bytes(uint16_t lo, uint16_t hi);
void sf_read_clock(struct portstate_clock *c, int with_boot_id);

/* Read the file at sf->path (locking it), set sf->plan.  -EBUSY when another process
 * holds it (<err> says so). */
int sf_read_prev(struct statefile *sf, struct sf_prev *prev, char *err, size_t errlen);
/* Copy what the previous file still means into this run's slots (sf->plan); fills
 * *restored, *unknown.  Import a version 1 file with <v1>. */
void sf_copy_prev(struct statefile *sf, const struct sf_prev *prev,
                  const struct statefile_limits *v1, int *restored, int *unknown);
void sf_prev_release(struct sf_prev *prev);

#endif
