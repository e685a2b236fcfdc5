/* errors.h - a growing list of configuration error messages, each complete
 * ("file[:line:col]: path: problem"). */
#ifndef TWLB_CONFIG_ERRORS_H
#define TWLB_CONFIG_ERRORS_H

#include <stddef.h>

/* A growing list of error messages. */
struct cfg_errors {
    char **msg;
    size_t n, cap;
};
void cfg_errors_add(struct cfg_errors *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cfg_errors_free(struct cfg_errors *e);

#endif
