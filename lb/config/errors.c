/* errors.c - see errors.h. */
#include "config/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cfg_errors_add(struct cfg_errors *e, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        char **m = realloc(e->msg, cap * sizeof *m);
        if (!m)
            return;
        e->msg = m;
        e->cap = cap;
    }
    e->msg[e->n] = strdup(buf);
    if (e->msg[e->n])
        e->n++;
}

void cfg_errors_free(struct cfg_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->msg[i]);
    free(e->msg);
    memset(e, 0, sizeof *e);
}
