/* log.h - leveled logging and the access log.
 *
 * Messages go to stderr, or to log.file; the access log (one line per connection) to
 * log.access_log.  Files are opened in append mode and each line is one write(2), so
 * lines never interleave; log_reopen() (SIGUSR1) opens them again by name, which is what
 * log rotation needs.  A log path must name a regular file itself: a symbolic link is
 * refused, not followed (docs/operations.md, "Files").  This is process-wide configuration,
 * set at start-up and changed on the main thread only (SIGUSR1, a reload); the data path
 * only writes, on any thread. */
#ifndef TWLB_LOG_H
#define TWLB_LOG_H

#include <stddef.h>

/* LOGL_*, not LOG_*: <syslog.h> owns LOGL_INFO and LOGL_DEBUG. */
enum log_level { LOGL_OFF = -1, LOGL_ERROR, LOGL_WARN, LOGL_INFO, LOGL_DEBUG };
/* LOGL_OFF: log_set_level(LOGL_OFF) silences every message (the fuzzers use it); it is
 * never a message's level and has no name. */

/* "error", "warn", "info", "debug". */
/* The level named <s>: 0, or -1 when <s> names none. */
int log_level_parse(const char *s, enum log_level *out);

void log_set_level(enum log_level l);
void log_msg(enum log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOGL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOGL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOGL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOGL_DEBUG, __VA_ARGS__)

/* The current UTC time as "2026-11-24T13:30:00.123Z". */
#define LOG_TIME_LEN 32
void log_time(char out[LOG_TIME_LEN]);

/* Send messages to <path> (NULL: stderr).  Returns 0 or a negative errno: -ELOOP when
 * <path> is a symbolic link (never followed), -EINVAL when it is not a regular file. */
int log_open(const char *path);
/* Write the access log to <path> ("-": stderr; NULL: none), as JSON lines if <json>.
 * Returns 0 or a negative errno. */
int log_access_open(const char *path, int json);
/* Open both files again by name (after rotation).  Returns 0 or a negative errno; on
 * failure the old files stay in use. */
int log_reopen(void);

/* A reload that changes the log files (log.file, log.access_log, access_log_format), in
 * two steps so that a file that cannot be opened changes nothing: prepare opens what
 * differs from the files in use, then commit switches to them at once, or discard closes
 * them.  Writers on every thread go on meanwhile; a line goes to the old file or to the
 * new one, whole. */
struct log_files {
    struct {
        int change;  /* differs from what is in use */
        int off;     /* access log only: none from now on */
        int fd;      /* opened, or 2 for stderr */
        char *path;  /* NULL: stderr */
    } msg, access;
    int json;
};
/* 0, or a negative errno (log_open_strerror) with *failed the path that cannot be opened;
 * nothing is then left to discard. */
int log_files_prepare(struct log_files *lf, const char *file, const char *access_log,
                      int json, const char **failed);
/* 1 when committing <lf> changes anything (a file or the access log's format). */
int log_files_changes(const struct log_files *lf);
void log_files_commit(struct log_files *lf);
void log_files_discard(struct log_files *lf);
/* The file messages go to now, NULL: stderr. */
const char *log_file_path(void);
/* What a negative errno from log_open, log_access_open or log_reopen means, to follow the
 * file's name in a message. */
const char *log_open_strerror(int r);
/* Close the files (at exit). */
void log_close(void);

int log_access_enabled(void);
int log_access_json(void);
/* One access log line (without the newline). */
void log_access(const char *line, size_t len);

#endif
