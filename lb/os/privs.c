/* privs.c - see privs.h. */
#include "os/privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

static const cap_value_t kept[] = {CAP_NET_ADMIN, CAP_NET_BIND_SERVICE};
#define NKEPT ((int)(sizeof kept / sizeof kept[0]))

int privs_lookup(const char *user, const char *group, struct privs_target *out, char *err,
                 size_t errlen)
{
    memset(out, 0, sizeof *out);
    errno = 0;
    const struct passwd *pw = getpwnam(user);
    if (!pw) {
        int e = errno ? errno : ENOENT;
        snprintf(err, errlen, "user \"%s\": %s", user,
                 e == ENOENT || e == ESRCH ? "no such user" : strerror(e));
        return -ENOENT;
    }
    out->uid = pw->pw_uid;
    out->gid = pw->pw_gid;
    snprintf(out->user, sizeof out->user, "%s", user);
    if (group) {
        errno = 0;
        const struct group *gr = getgrnam(group);
        if (!gr) {
            int e = errno ? errno : ENOENT;
            snprintf(err, errlen, "group \"%s\": %s", group,
                     e == ENOENT || e == ESRCH ? "no such group" : strerror(e));
            return -ENOENT;
        }
        out->gid = gr->gr_gid;
        snprintf(out->group, sizeof out->group, "%s", group);
    } else {
        snprintf(out->group, sizeof out->group, "%u", (unsigned)out->gid);
    }
    return 0;
}

int privs_thread_prepare(char *err, size_t errlen)
{
    if (prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) < 0) {
        int e = errno;
        snprintf(err, errlen, "prctl(PR_SET_KEEPCAPS): %s", strerror(e));
        return -e;
    }
    /* The bounding set limits what any later execve could gain; twlb never execs, but
     * a smaller one costs nothing.  Dropping needs CAP_SETPCAP: we are still root. */
    for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++) {
        if (c == CAP_NET_ADMIN || c == CAP_NET_BIND_SERVICE)
            continue;
        if (prctl(PR_CAPBSET_DROP, (long)c, 0L, 0L, 0L) < 0 && errno != EINVAL) {
            int e = errno;
            snprintf(err, errlen, "prctl(PR_CAPBSET_DROP, %d): %s", (int)c, strerror(e));
            return -e;
        }
    }
    return 0;
}

int privs_switch_ids(const struct privs_target *t, char *err, size_t errlen)
{
    /* glibc runs each of these on every thread of the process (setxid broadcast). */
    if (setgroups(0, NULL) < 0 || setresgid(t->gid, t->gid, t->gid) < 0 ||
        setresuid(t->uid, t->uid, t->uid) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot become user %s group %s: %s", t->user, t->group,
                 strerror(e));
        return -e;
    }
    return 0;
}

int privs_thread_finish(char *err, size_t errlen)
{
    cap_t caps = cap_init(); /* every set empty */
    int r = caps ? 0 : -1;
    if (r == 0)
        r = cap_set_flag(caps, CAP_PERMITTED, NKEPT, kept, CAP_SET);
    if (r == 0)
        r = cap_set_flag(caps, CAP_EFFECTIVE, NKEPT, kept, CAP_SET);
    if (r == 0)
        r = cap_set_proc(caps);
    if (r == 0)
        r = prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L); /* nothing more to keep */
    int e = errno ? errno : EPERM;
    if (caps)
        cap_free(caps);
    if (r < 0) {
        snprintf(err, errlen, "cannot keep CAP_NET_ADMIN and CAP_NET_BIND_SERVICE: %s",
                 strerror(e));
        return -e;
    }
    return 0;
}

int privs_have_sys_resource(void)
{
    cap_t caps = cap_get_proc();
    cap_flag_value_t v = CAP_CLEAR;
    if (caps) {
        if (cap_get_flag(caps, CAP_SYS_RESOURCE, CAP_EFFECTIVE, &v) < 0)
            v = CAP_CLEAR;
        cap_free(caps);
    }
    return v == CAP_SET;
}
