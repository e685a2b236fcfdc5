/* prom.h - /metrics: every family of metrics_table in the Prometheus text format 0.0.4,
 * each family one uninterrupted group (HELP, TYPE, then all its samples). */
#ifndef TWLB_PROM_H
#define TWLB_PROM_H

#include <stddef.h>

#include "runtime/view.h"

/* The exposition of <v> as of now.  Returns a malloc'ed string (its length in *len), or
 * NULL when out of memory. */
char *prom_render(const struct view *v, size_t *len);

#endif
