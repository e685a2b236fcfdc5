/* statefile.h - the state file: what the backends (and our kernel) still remember of
 * every source port, current at every change, for the next start.
 *
 * The file is a table with a 32-byte slot per source port of every path (pool, backend,
 * inside address; the pool's whole source_ports range), memory-mapped MAP_SHARED.  Each
 * port map's observer (portmap_observe -> statefile_observer) stores a port's record into
 * its slot on every change of state: a store into a page of the page cache, no system
 * call, no lock (each port has one owner, core/portstate.h).  The pages outlive the
 * process, so a SIGKILL loses nothing; a keeper (statefile_heartbeat, statefile_sync,
 * driven by the runtime) writes a heartbeat into the header every second and syncs the
 * file to disk every PORTSTATE_SYNC_MS, which bounds what a host crash can lose.
 *
 * Layout (native byte order, version 2): a 4096-byte header (magic "twlbstat", version,
 * byte order, last heartbeat at fixed offsets every version keeps; clean-stop mark, boot
 * id, clock base, the risk carried from an earlier loss, end of the segments), then one
 * segment per path: a 256-byte description (pool and backend names, backend address,
 * inside address, port range, check) and its slots.
 *
 * At start (statefile_open) the previous file is read (the version 1 JSON file of twlb
 * 0.1 is imported), each record is judged by core/portstate.h (same boot, reboot, host
 * crash, unreadable), and a new file is laid out for the configuration with what still
 * matters, synced and renamed over the old one: the file never holds paths that are gone
 * and is never half written.  A reload adds the segments of new paths at the end
 * (statefile_add); the mapping never moves (a reserved address range), so workers keep
 * writing while it grows.  The file is locked (flock): a second twlb on the same file
 * refuses to start.  When the file cannot be written (a symbolic link, a read-only
 * directory, a full disk) the table lives in memory for this run: logged as an error and
 * counted (statefile_save_failures), and the drain then exits 1.
 *
 * Return convention: 0 or a negative errno, or a count. */
#ifndef TWLB_STATEFILE_H
#define TWLB_STATEFILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/portmap.h"
#include "core/portstate.h"
#include "os/statefile_v1.h"

/* One path of the configuration.  Identity: pool, backend name and address, inside
 * address and the range; time_wait_ms is the backend's (for what a restart cannot know). */
struct statefile_key {
    const char *pool, *backend;   /* names as in the config, at most 64 bytes */
    int backend_family;           /* AF_INET (2) or AF_INET6 (10), as pathset_inside */
    uint8_t backend_addr[16];
    uint16_t backend_port;
    int inside_family;
    uint8_t inside_addr[16];
    const char *inside;           /* the inside address as written (version 1 files) */
    uint16_t lo, hi;              /* the pool's whole source_ports range */
    uint64_t time_wait_ms;
};

struct statefile;
struct statefile_path;

/* Open the state file <path> for the paths <keys> (and the limits of a version 1 file),
 * as above.  Returns 0 with *out (maybe memory only, logged), -EBUSY with <err> when
 * another process holds the file, -ENOMEM. */
int statefile_open(const char *path, const struct statefile_key *keys, size_t n,
                   const struct statefile_limits *v1, struct statefile **out, char *err,
                   size_t errlen);

/* The path of <k>, or NULL when it was not opened or added.  Safe from any thread while
 * nothing is added (statefile_add runs while the workers wait). */
struct statefile_path *statefile_find(const struct statefile *sf, const struct statefile_key *k);

/* Add the paths of <keys> that the file lacks (a reload), with empty slots.  Returns the
 * number added, or a negative errno (those paths are then kept in memory only). */
int statefile_add(struct statefile *sf, const struct statefile_key *keys, size_t n);

/* The portmap_observer of a path (arg: its statefile_path): stores <e> into its slot.
 * Called on the thread that owns the port. */
void statefile_observer(void *path, const struct portmap_entry *e);

/* Into <pm>, a map that holds nothing yet (ports lo..hi of the path, on the caller's
 * thread): every record of those ports (TIME_WAIT, quarantine; as judged at open, on
 * today's clock), and the block of the ports nobody knows (portmap_block_unknown) when
 * the restart left some.  Returns the number of records restored. */
int statefile_restore(const struct statefile_path *p, portmap *pm, uint16_t lo, uint16_t hi,
                      uint64_t now_ms);

/* Every worker has started: from now on a map that holds nothing (a path that comes
 * back in a reload) gets whatever its slots hold, however the run began. */
void statefile_started(struct statefile *sf);

/* The heartbeat: the clocks of now into the header (the keeper, every second). */
void statefile_heartbeat(struct statefile *sf);
/* The file to disk (fdatasync; may block: off the serving threads).  0 or -errno (logged,
 * counted). */
int statefile_sync(struct statefile *sf);
/* A takeover (runtime/takeover.h).  give=1: the listening sockets go to a new process,
 * which opens this file next: unlock it and write no heartbeat, sync or clean mark from
 * now on (the workers' stores go on into this run's mapping; once the new process has
 * laid out its own file at the name, into a file nobody reads).  give=0: the takeover
 * failed; lock the file again.  Returns 0, or -errno when the file at the name is no
 * longer this one (the new process replaced it before failing) or cannot be locked: this
 * run's records then stay unsaved (logged, counted).  NULL ok. */
int statefile_handover(struct statefile *sf, int give);

/* Every port released (the workers have stopped): mark the file clean when <clean>, sync
 * it, close it and free <sf>.  NULL ok. */
void statefile_close(struct statefile *sf, int clean);

/* How many saves have failed since the start (for the exit status): a file that could not
 * be created, a sync or the final close that failed. */
uint64_t statefile_save_failures(void);

#endif
