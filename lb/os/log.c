/* log.c - see log.h. */
#include "os/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One output: a file by name, or stderr, or (the access log) none.  Every thread writes
 * to <fd>; the main thread changes it (SIGUSR1, a reload).  A descriptor a writer may
 * have just read is never closed: a change keeps the sink's own descriptor number and
 * dup2()s the new file onto it (atomically, for the kernel), so a line goes to the old
 * file or the new one, never to a descriptor that meanwhile names something else. */
struct sink {
    int fd;     /* what writers use (atomic): -1 none, 2 stderr, else == own */
    int own;    /* the sink's own descriptor (> 2), -1 until it first opened a file */
    char *path; /* NULL: stderr or none */
};

static enum log_level current_level = LOGL_INFO;
static struct sink msg_sink = {2, -1, NULL};
static struct sink access_sink = {-1, -1, NULL};
static int access_json;

void log_set_level(enum log_level l) { __atomic_store_n(&current_level, l, __ATOMIC_RELAXED); }
int log_access_enabled(void) { return __atomic_load_n(&access_sink.fd, __ATOMIC_RELAXED) >= 0; }
int log_access_json(void) { return __atomic_load_n(&access_json, __ATOMIC_RELAXED); }

static const char *log_level_name(enum log_level l)
{
    switch (l) {
    case LOGL_ERROR: return "error";
    case LOGL_WARN: return "warn";
    case LOGL_INFO: return "info";
    case LOGL_DEBUG: return "debug";
    case LOGL_OFF: break;
    }
    return "?";
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (enum log_level l = LOGL_ERROR; l <= LOGL_DEBUG; l++)
        if (!strcmp(log_level_name(l), s)) {
            *out = l;
            return 0;
        }
    return -1;
}

/* Open a log file for appending.  Not through a symbolic link (O_NOFOLLOW): twlb may run
 * as root, and a link planted in a writable log directory would make it append to any
 * file.  Only a regular file: a FIFO or a device planted there could block the writes
 * or go anywhere.  Rotation keeps working: logrotate renames the file (or copies and
 * truncates it) and SIGUSR1 opens the path again, a new regular file.  O_NONBLOCK keeps
 * the open itself from waiting on a FIFO; it is cleared once the file is known regular. */
static int open_append(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY |
                            O_NONBLOCK, 0640);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    (void)fcntl(fd, F_SETFL, O_APPEND);
    return fd;
}

const char *log_open_strerror(int r)
{
    if (r == -ELOOP)
        return "is a symbolic link (not followed: name the file itself)";
    if (r == -EINVAL)
        return "is not a regular file (leave log.file unset, or use \"-\" for the access "
               "log, to write to stderr)";
    return strerror(-r);
}

/* What a sink is to write to: a file by <path>, stderr (<path> NULL or "-"), or nothing
 * (<off>). */
static int same_target(const struct sink *s, const char *path, int off)
{
    int cur_off = s->fd < 0, want_stderr = !path || !strcmp(path, "-");
    if (off || cur_off)
        return off && cur_off;
    if (want_stderr || !s->path)
        return want_stderr && !s->path;
    return !strcmp(path, s->path);
}

/* Point <s> at <fd> (a new file's descriptor, 2 for stderr, -1 for nothing), which it
 * takes over, and <path>. */
static void sink_switch(struct sink *s, int fd, char *path)
{
    if (fd > 2) {
        if (s->own < 0) {
            s->own = fd;
        } else {
            dup2(fd, s->own); /* the file behind s->own changes, all at once */
            close(fd);
        }
        __atomic_store_n(&s->fd, s->own, __ATOMIC_RELEASE);
    } else {
        __atomic_store_n(&s->fd, fd, __ATOMIC_RELEASE);
        if (s->own >= 0) /* a late writer of the old descriptor writes to stderr; and the
                            old file is no longer held open */
            dup2(2, s->own);
    }
    free(s->path);
    s->path = path;
}

/* Open what <path> names for <s> (NULL: stderr): *fd and *copy, or a negative errno. */
static int target_open(const char *path, int *fd, char **copy)
{
    *fd = 2;
    *copy = NULL;
    if (path && strcmp(path, "-")) {
        if ((*fd = open_append(path)) < 0)
            return *fd;
        if (!(*copy = strdup(path))) {
            close(*fd);
            return -ENOMEM;
        }
    }
    return 0;
}

int log_open(const char *path)
{
    int fd;
    char *copy;
    int r = target_open(path, &fd, &copy);
    if (r == 0)
        sink_switch(&msg_sink, fd, copy);
    return r;
}

int log_access_open(const char *path, int json)
{
    int fd = -1;
    char *copy = NULL;
    int r = path ? target_open(path, &fd, &copy) : 0;
    if (r < 0)
        return r;
    __atomic_store_n(&access_json, json, __ATOMIC_RELAXED);
    sink_switch(&access_sink, fd, copy);
    return 0;
}

int log_files_prepare(struct log_files *lf, const char *file, const char *access_log,
                      int json, const char **failed)
{
    memset(lf, 0, sizeof *lf);
    lf->json = json;
    lf->msg.change = !same_target(&msg_sink, file, 0);
    lf->access.change = !same_target(&access_sink, access_log, !access_log);
    lf->access.off = !access_log;
    int r = 0;
    if (lf->msg.change && (r = target_open(file, &lf->msg.fd, &lf->msg.path)) < 0) {
        *failed = file;
        lf->msg.change = 0;
        return r;
    }
    if (lf->access.change && !lf->access.off &&
        (r = target_open(access_log, &lf->access.fd, &lf->access.path)) < 0) {
        *failed = access_log;
        lf->access.change = 0;
        log_files_discard(lf);
        return r;
    }
    return 0;
}

int log_files_changes(const struct log_files *lf)
{
    return lf->msg.change || lf->access.change || lf->json != log_access_json();
}

static const char *shown(const char *path, int off)
{
    return off ? "none" : path ? path : "stderr";
}

/* Each switch is said where the reader of either file will look. */
void log_files_commit(struct log_files *lf)
{
    if (lf->msg.change) {
        char *old = msg_sink.path ? strdup(msg_sink.path) : NULL;
        log_info("log: continuing in %s", shown(lf->msg.path, 0));
        sink_switch(&msg_sink, lf->msg.fd, lf->msg.path);
        log_info("log: continued from %s", shown(old, 0));
        free(old);
    }
    if (lf->access.change || lf->json != log_access_json())
        log_info("access log: %s%s", shown(lf->access.change ? lf->access.path : access_sink.path,
                                         lf->access.change ? lf->access.off
                                                           : access_sink.fd < 0),
                 lf->json ? " (json)" : " (text)");
    __atomic_store_n(&access_json, lf->json, __ATOMIC_RELAXED);
    if (lf->access.change)
        sink_switch(&access_sink, lf->access.off ? -1 : lf->access.fd, lf->access.path);
    memset(lf, 0, sizeof *lf);
}

void log_files_discard(struct log_files *lf)
{
    if (lf->msg.change && lf->msg.fd > 2)
        close(lf->msg.fd);
    if (lf->access.change && lf->access.fd > 2)
        close(lf->access.fd);
    free(lf->msg.path);
    free(lf->access.path);
    memset(lf, 0, sizeof *lf);
}

const char *log_file_path(void) { return msg_sink.path; }

static int sink_reopen(struct sink *s)
{
    if (s->fd < 0 || !s->path)
        return 0; /* stderr or closed: nothing to reopen */
    int fd = open_append(s->path);
    if (fd < 0)
        return fd;
    dup2(fd, s->own);
    close(fd);
    return 0;
}

int log_reopen(void)
{
    int r = sink_reopen(&msg_sink);
    int a = sink_reopen(&access_sink);
    return r < 0 ? r : a;
}

void log_close(void)
{
    if (msg_sink.own >= 0)
        close(msg_sink.own);
    if (access_sink.own >= 0)
        close(access_sink.own);
    free(msg_sink.path);
    free(access_sink.path);
    msg_sink = (struct sink){2, -1, NULL};
    access_sink = (struct sink){-1, -1, NULL};
}

/* One write per line: lines from several writers never interleave. */
static void write_line(int fd, const char *line, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, line, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* a log that cannot be written must not stop the proxy */
        line += w;
        len -= (size_t)w;
    }
}

void log_time(char out[LOG_TIME_LEN])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, LOG_TIME_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, LOG_TIME_LEN - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

void log_msg(enum log_level l, const char *fmt, ...)
{
    if (l > (enum log_level)__atomic_load_n(&current_level, __ATOMIC_RELAXED))
        return;
    char line[1024], t[LOG_TIME_LEN];
    log_time(t);
    int n = snprintf(line, sizeof line, "%s %-5s ", t, log_level_name(l));
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2;
    line[len++] = '\n';
    write_line(__atomic_load_n(&msg_sink.fd, __ATOMIC_ACQUIRE), line, len);
}

void log_access(const char *line, size_t len)
{
    int fd = __atomic_load_n(&access_sink.fd, __ATOMIC_ACQUIRE);
    if (fd < 0)
        return;
    char buf[2048];
    if (len > sizeof buf - 1)
        len = sizeof buf - 1;
    memcpy(buf, line, len);
    buf[len++] = '\n';
    write_line(fd, buf, len);
}
