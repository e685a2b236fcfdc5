/* preflight.c - see preflight.h. */
#include "runtime/preflight.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/message.h"
#include "core/portrange.h"
#include "os/log.h"
#include "os/privs.h"
#include "os/sockprep.h"

#define PORT_RANGE_SYSCTL "/proc/sys/net/ipv4/ip_local_port_range"
#define RESERVED_SYSCTL "/proc/sys/net/ipv4/ip_local_reserved_ports"
#define PIPE_MAX_SYSCTL "/proc/sys/fs/pipe-max-size"

/* <path> cannot be written by this process: the file, where it exists and <create> is 0
 * (it is opened for appending; *<create> becomes 0), else the directory <dir> it would be
 * created in (the state file is always written anew next to its name; *<create> 1).
 * NULL, or why, in <buf>. */
static const char *unwritable(const char *path, const char *dir, int *create, char *buf,
                              size_t len)
{
    struct stat st;
    int file = !*create && stat(path, &st) == 0;
    *create = !file;
    if (faccessat(AT_FDCWD, file ? path : dir, file ? W_OK : W_OK | X_OK, AT_EACCESS) == 0)
        return NULL;
    int e = errno;
    if (snprintf(buf, len, "%s%s is not writable by uid %u (%s)", file ? "" : "the directory ",
                 file ? path : dir, (unsigned)geteuid(), strerror(e)) >= (int)len)
        snprintf(buf, len, "not writable by uid %u (%s)", (unsigned)geteuid(), strerror(e));
    return buf;
}

/* The directory <path> would be created in must exist, and with <write>, this process
 * must be able to write <path> (<create>: unwritable()): 0, or -1 with a message added. */
static int check_dir(const struct config *c, struct message_pos *pos, struct cfg_errors *errs,
                     const char *jpath, const char *path, int write, int create,
                     const char *hint)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        return 0; /* the working directory */
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir)
        n = sizeof dir - 1;
    memcpy(dir, path, n);
    dir[n] = 0;
    struct stat st;
    const char *why = NULL;
    char buf[4400];
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT)
            why = "does not exist";
        else if (errno == ENOTDIR)
            why = "is not a directory (a part of it is a file)";
        else
            why = (snprintf(buf, sizeof buf, "cannot be reached: %s", strerror(errno)), buf);
    } else if (!S_ISDIR(st.st_mode)) {
        why = "is not a directory";
    } else if (write && unwritable(path, dir, &create, buf, sizeof buf)) {
        message_add(c, pos, errs, NULL, jpath, "%s, so %s cannot be %s%s", buf, path,
                    create ? "created" : "written", hint);
        return -1;
    }
    if (!why)
        return 0;
    message_add(c, pos, errs, NULL, jpath, "the directory %s %s, so %s cannot be created%s",
                   dir, why, path, hint);
    return -1;
}

/* A small /proc file into <buf>: 0, or -1 (not readable here). */
static int read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t r = read(fd, buf, len - 1);
    close(fd);
    if (r < 0 || (size_t)r == len - 1) /* an error, or maybe cut short */
        return -1;
    buf[r] = 0;
    return 0;
}

static void check_ports(const struct config *c, struct message_pos *pos, struct cfg_errors *warns)
{
    char text[64];
    struct portrange eph;
    if (read_small(PORT_RANGE_SYSCTL, text, sizeof text) < 0 ||
        portrange_parse_pair(text, &eph) < 0)
        return; /* /proc/sys hidden (ProcSubset=pid) or unreadable: nothing to say */
    /* The reserved list can be long (one range per entry); without it every port of the
     * overlap counts. */
    static char list[1 << 17];
    static uint8_t reserved[PORTRANGE_BITMAP_BYTES];
    int have_reserved = read_small(RESERVED_SYSCTL, list, sizeof list) == 0 &&
                        portrange_parse_reserved(list, reserved) == 0;
    for (size_t p = 0; p < c->n_pools; p++) {
        const struct cfg_pool *pc = &c->pools[p];
        uint32_t first = 0, last = 0;
        uint32_t n = portrange_exposed((struct portrange){pc->port_lo, pc->port_hi}, eph,
                                       have_reserved ? reserved : NULL, &first, &last);
        if (!n)
            continue;
        char jpath[64];
        snprintf(jpath, sizeof jpath, "pools[%zu].source_ports", p);
        message_add(c, pos, warns, "warning", jpath,
                       "\"%u-%u\" overlaps the kernel's ephemeral ports "
                       "(net.ipv4.ip_local_port_range %u-%u): %u of its ports (%u-%u) may be "
                       "taken by other connections of this host when twlb binds them; move "
                       "one range, or list these ports in net.ipv4.ip_local_reserved_ports",
                       (unsigned)pc->port_lo, (unsigned)pc->port_hi, (unsigned)eph.lo,
                       (unsigned)eph.hi, (unsigned)n, (unsigned)first, (unsigned)last);
    }
}

static void check_caps(const struct config *c, struct message_pos *pos, struct cfg_errors *warns)
{
    int explicit = c->reuse.isn == ISN_EXPLICIT;
    int destroy = c->reuse.local_time_wait == PM_LOCAL_TW_DESTROY;
    if (!explicit && !destroy)
        return;
    if (sockprep_can_repair(AF_INET) || sockprep_can_repair(AF_INET6))
        return;
    if (explicit)
        message_add(c, pos, warns, "warning", "reuse.isn",
                       "\"explicit\" needs CAP_NET_ADMIN (TCP_REPAIR), which this check "
                       "(uid %u) does not have: twlb started without it refuses to start; "
                       "give the service CAP_NET_ADMIN, or use \"auto\" or \"kernel\"",
                       (unsigned)geteuid());
    if (destroy)
        message_add(c, pos, warns, "warning", "reuse.local_time_wait",
                       "\"destroy\" needs CAP_NET_ADMIN (SOCK_DESTROY), which this check "
                       "(uid %u) does not have: twlb started without it refuses to start; "
                       "give the service CAP_NET_ADMIN, or use \"avoid\"",
                       (unsigned)geteuid());
}

/* A pipe_bytes above fs.pipe-max-size is granted only with CAP_SYS_RESOURCE, which twlb
 * does not keep once it runs as "user" (privs.h), nor has under the shipped unit. */
static void check_pipes(const struct config *c, struct message_pos *pos,
                        struct cfg_errors *warns)
{
    char text[32];
    unsigned long max;
    if (read_small(PIPE_MAX_SYSCTL, text, sizeof text) < 0 || sscanf(text, "%lu", &max) != 1 ||
        c->pipe_bytes <= max || (!c->user && privs_have_sys_resource()))
        return;
    message_add(c, pos, warns, "warning", "pipe_bytes",
                "%u is above fs.pipe-max-size (%lu), which only CAP_SYS_RESOURCE may pass%s: "
                "pipes will hold %s; raise fs.pipe-max-size, or lower pipe_bytes",
                (unsigned)c->pipe_bytes, max,
                c->user ? " (twlb drops it when it becomes \"user\")" : " (this process lacks it)",
                max >= 1048576 ? "1 MiB" : "256 KiB or less");
}

int preflight_run(const struct config *c, enum preflight_when when, preflight_token_fn *token,
                  struct cfg_errors *errs, struct cfg_errors *warns)
{
    size_t before = errs->n;
    struct message_pos positions = {0}, *pos = &positions;
    if (c->admin.enabled && c->admin.token_file && token) {
        char err[512] = "";
        if (token(c->admin.token_file, err, sizeof err) < 0)
            message_add(c, pos, errs, NULL, "admin.token_file", "%s", err);
    }
    const char *logs = " (create the directory, writable by the user who starts twlb; "
                       "under systemd the unit's LogsDirectory= makes /var/log/twlb)";
    /* Writable by whom runs this: a start opens the files before any "user" drops
     * privileges.  Not at a reload: a file opened at the start stays open, and it may be
     * one that the user twlb runs as could not open again. */
    int write = when != PREFLIGHT_RELOAD;
    if (c->log.file)
        check_dir(c, pos, errs, "log.file", c->log.file, write, 0, logs);
    if (c->log.access_log && strcmp(c->log.access_log, "-"))
        check_dir(c, pos, errs, "log.access_log", c->log.access_log, write, 0, logs);
    /* the default path too (next to the config, or in $STATE_DIRECTORY); null: none */
    if (c->reuse.state_file)
        check_dir(c, pos, errs, "reuse.state_file", c->reuse.state_file, write, 1,
                  c->reuse.state_file_default
                      ? " (the default state file; create the directory, writable by the "
                        "user who starts twlb, set reuse.state_file, or \"state_file\": null "
                        "for none)"
                      : " (create the directory, writable by the user who starts twlb; "
                        "under systemd the unit's StateDirectory= makes /var/lib/twlb)");
    if (when == PREFLIGHT_CHECK)
        check_caps(c, pos, warns);
    check_ports(c, pos, warns);
    check_pipes(c, pos, warns);
    message_pos_free(pos);
    return (int)(errs->n - before);
}

int preflight_report(const struct config *c, enum preflight_when when,
                     preflight_token_fn *token, struct cfg_errors *later)
{
    struct cfg_errors errs = {0}, warns = {0};
    preflight_run(c, when, token, &errs, &warns);
    int reload = when == PREFLIGHT_RELOAD;
    for (size_t i = 0; i < warns.n; i++) {
        if (reload)
            log_warn("%s", warns.msg[i]);
        else if (when == PREFLIGHT_START && later)
            cfg_errors_add(later, "%s", warns.msg[i]);
        else
            fprintf(stderr, "%s\n", warns.msg[i]);
    }
    for (size_t i = 0; i < errs.n; i++) {
        if (reload)
            log_error("%s", errs.msg[i]);
        else
            fprintf(stderr, "%s\n", errs.msg[i]);
    }
    const char *s = errs.n == 1 ? "" : "s";
    if (errs.n && reload)
        log_error("reload: %zu error%s in %s; keeping the running configuration", errs.n, s,
                  c->path);
    else if (errs.n)
        fprintf(stderr, "twlb: %zu error%s in %s; not starting\n", errs.n, s, c->path);
    else if (warns.n && when == PREFLIGHT_CHECK)
        fprintf(stderr, "twlb: %zu warning%s in %s\n", warns.n, warns.n == 1 ? "" : "s",
                c->path);
    int rc = errs.n ? -1 : 0;
    cfg_errors_free(&errs);
    cfg_errors_free(&warns);
    return rc;
}
