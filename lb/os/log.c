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

/* One output: a file by name, or stderr. */
struct sink {
    int fd;     /* -1: not open */
    char *path; /* NULL: stderr */
};

static enum log_level current_level = LOGL_INFO;
static struct sink msg_sink = {2, NULL};
static struct sink access_sink = {-1, NULL};
static int access_json;

void log_set_level(enum log_level l) { current_level = l; }
int log_access_enabled(void) { return access_sink.fd >= 0; }
int log_access_json(void) { return access_json; }

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

static int sink_open(struct sink *s, const char *path)
{
    int fd = 2;
    if (path && strcmp(path, "-")) {
        fd = open_append(path);
        if (fd < 0)
            return fd;
    }
    char *copy = path && strcmp(path, "-") ? strdup(path) : NULL;
    if (s->fd > 2)
        close(s->fd);
    free(s->path);
    s->fd = fd;
    s->path = copy;
    return 0;
}

int log_open(const char *path) { return sink_open(&msg_sink, path); }

int log_access_open(const char *path, int json)
{
    access_json = json;
    if (!path) {
        if (access_sink.fd > 2)
            close(access_sink.fd);
        free(access_sink.path);
        access_sink.fd = -1;
        access_sink.path = NULL;
        return 0;
    }
    return sink_open(&access_sink, path);
}

static int sink_reopen(struct sink *s)
{
    if (s->fd < 0 || !s->path)
        return 0; /* stderr or closed: nothing to reopen */
    int fd = open_append(s->path);
    if (fd < 0)
        return fd;
    close(s->fd);
    s->fd = fd;
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
    if (msg_sink.fd > 2)
        close(msg_sink.fd);
    if (access_sink.fd > 2)
        close(access_sink.fd);
    free(msg_sink.path);
    free(access_sink.path);
    msg_sink = (struct sink){2, NULL};
    access_sink = (struct sink){-1, NULL};
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
    if (l > current_level)
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
    write_line(msg_sink.fd, line, len);
}

void log_access(const char *line, size_t len)
{
    if (access_sink.fd < 0)
        return;
    char buf[2048];
    if (len > sizeof buf - 1)
        len = sizeof buf - 1;
    memcpy(buf, line, len);
    buf[len++] = '\n';
    write_line(access_sink.fd, buf, len);
}
