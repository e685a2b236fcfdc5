/* log.h - leveled logging to stderr.  One line per call, prefixed with an ISO time and
 * the level.  log_once_* exists for conditions that must be shouted once, not per
 * connection. */
#ifndef TWLB_LOG_H
#define TWLB_LOG_H

#include "config.h"

void log_set_level(enum log_level l);
enum log_level log_get_level(void);
void log_msg(enum log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
