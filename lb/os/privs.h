/* privs.h - least privilege: from root to a named user keeping two capabilities.
 *
 * twlb starts as root, opens what it needs (listeners, the admin socket, the log files,
 * the state file), then becomes "user" (and "group") keeping only CAP_NET_ADMIN (TCP_REPAIR
 * for explicit ISNs, SOCK_DESTROY) and CAP_NET_BIND_SERVICE (a reload may bind a port
 * below 1024).  On Linux credentials are per thread: glibc's setresuid/setresgid/setgroups
 * reach every thread of the process (its setxid broadcast), but capability sets, the
 * bounding set and PR_SET_KEEPCAPS do not: privs_thread_prepare() and
 * privs_thread_finish() must run on every thread, before and after privs_switch_ids().
 *
 * Return convention: 0 or a negative errno, with a message in <err>. */
#ifndef TWLB_PRIVS_H
#define TWLB_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

/* CAP_NET_ADMIN (12) and CAP_NET_BIND_SERVICE (10) as a /proc CapEff mask. */
#define PRIVS_KEPT_MASK ((1ull << 12) | (1ull << 10))

struct privs_target {
    uid_t uid;
    gid_t gid;
    char user[64], group[64];
};

/* Look up <user> and <group> (NULL: the user's primary group).  -ENOENT names what is
 * unknown. */
int privs_lookup(const char *user, const char *group, struct privs_target *out, char *err,
                 size_t errlen);
/* On each thread while still root: keep the permitted set across the uid change, and
 * shrink the bounding set to the two capabilities. */
int privs_thread_prepare(char *err, size_t errlen);
/* Once, on any thread: gid, no supplementary groups, uid (real, effective, saved). */
int privs_switch_ids(const struct privs_target *t, char *err, size_t errlen);
/* On each thread after the switch: permitted and effective = the two, nothing else. */
int privs_thread_finish(char *err, size_t errlen);

/* 1 when this thread has CAP_SYS_RESOURCE in its effective set (pipes above
 * fs.pipe-max-size, past fs.pipe-user-pages-soft), else 0. */
int privs_have_sys_resource(void);

#endif
