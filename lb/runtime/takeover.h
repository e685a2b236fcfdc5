/* takeover.h - a new twlb process takes over the listening sockets of a running one
 * ("upgrade_socket", twlb --takeover SOCK; docs/operations.md "Upgrade").
 *
 * The running process listens on a Unix socket (SOCK_SEQPACKET, mode 0600) at
 * "upgrade_socket".  A new process connects and asks (TAKEOVER 1).  The old one stops
 * polling its listening sockets (clients wait in their accept queues, none is refused),
 * waits until none of its sessions may still take a source port (connecting, queued,
 * retrying; at most TAKEOVER_SETTLE_MS) and stops its health probes, then sends OK with
 * its worker count and drain_timeout_ms and, per listener, the listening socket of
 * every worker (SCM_RIGHTS: the same sockets, with their accept queues).  Just before, it unlocks its state file
 * (statefile_handover: the new process opens it, reads every record of the ports and
 * lays out its own file at the name; a port still BUSY here counts there as unknown for
 * drain_timeout_ms plus a TIME_WAIT) and closes its admin listener (the new process binds
 * the same address).  The new process starts as many workers,
 * worker i taking socket i of each address (every SO_REUSEPORT socket moves, so none is
 * left behind to lose its share of clients), and sends READY once it serves.  The old
 * process then drains (/healthz 503, drain_timeout_ms) and exits 0.  If the new process
 * goes away before READY (its start failed), or READY does not come within
 * TAKEOVER_READY_MS, the old one polls its listeners again and serves on.
 *
 * Main thread only.  Return convention: 0 or a negative errno with a message in <err>. */
#ifndef TWLB_TAKEOVER_H
#define TWLB_TAKEOVER_H

#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "runtime/group.h"

#define TAKEOVER_SETTLE_MS 5000
#define TAKEOVER_READY_MS 30000

/* ---- the running process ---- */

struct takeover_server;

struct takeover_hooks {
    struct group *(*group)(void *arg);  /* the running group, NULL when stopping */
    void (*handed)(void *arg, pid_t to); /* READY came: drain and exit */
    /* give=1 just before the sockets go: free what the new process opens next (the admin
     * address); give=0 when the takeover failed after that: take it back. */
    void (*handover)(void *arg, int give);
    void *arg;
};

/* Listen on <path> (an old socket file there is replaced). */
int takeover_serve(uv_loop_t *loop, const char *path, const struct takeover_hooks *h,
                   struct takeover_server **out, char *err, size_t errlen);
/* Stop listening (the file is removed only if it is still ours) and close any
 * connection.  NULL ok.  Run the loop afterwards. */
void takeover_server_close(struct takeover_server *s);

/* SIGUSR2 (the systemd way: `systemctl kill -s USR2 twlb`): start <exe> -c <config>
 * --takeover <sock> as a child of this process, in its cgroup, so that its MAINPID= and
 * READY=1 are accepted (NotifyAccess=all); it then takes over as above.  Its exit status
 * is logged when it fails.  0 or -errno with <err>. */
int takeover_spawn(uv_loop_t *loop, const char *exe, const char *config, const char *sock,
                   char *err, size_t errlen);

/* ---- the new process ---- */

struct takeover_client {
    int fd;           /* the connection, kept until the old process exits */
    pid_t old_pid;
    unsigned nworkers;
    unsigned nsockets; /* listening sockets received */
    unsigned drain_ms; /* the old process's drain_timeout_ms: how long it may keep ports */
};

/* Connect to <path>, ask, and receive the listening sockets (given to
 * listener_inherit).  Blocks, at most TAKEOVER_SETTLE_MS + a few seconds. */
int takeover_connect(const char *path, struct takeover_client *c, char *err, size_t errlen);
/* The group serves: tell the old process (which then drains).  0 or -errno. */
int takeover_ready(struct takeover_client *c);
/* The new process's start failed: close (the old process serves on). */
void takeover_abandon(struct takeover_client *c);

#endif
