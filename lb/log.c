/* log.c - leveled logging to stderr.  The level is process-wide configuration set once at
 * start (and on reload); it is read, never written, by the data path. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static enum log_level current_level = LOG_INFO;

void log_set_level(enum log_level l) { current_level = l; }
enum log_level log_get_level(void) { return current_level; }

const char *log_level_name(enum log_level l)
{
    switch (l) {
    case LOG_ERROR: return "error";
    case LOG_WARN: return "warn";
    case LOG_INFO: return "info";
    case LOG_DEBUG: return "debug";
    }
    return "?";
}

void log_msg(enum log_level l, const char *fmt, ...)
{
    if (l > current_level)
        return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, log_level_name(l));
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fputs per line so concurrent writers (future worker threads) do not interleave. */
    fprintf(stderr, "%s\n", line);
}
