/* prom.h - /metrics: every family of metrics_table in the Prometheus text format 0.0.4,
 * each family one uninterrupted group (HELP, TYPE, then all its samples). */
#ifndef TWLB_PROM_H
#define TWLB_PROM_H

#include <stddef.h>

#include "admin/metrics.h"
#include "runtime/view.h"

/* The exposition of <v> as of now.  Returns a malloc'ed string (its length in *len), or
 * NULL when out of memory. */
char *prom_render(const struct view *v, size_t *len);

/* The same for the <n> families of <table> (prom_render: metrics_table; the unit tests:
 * a table of their own). */
char *prom_render_families(const struct view *v, const struct metric_family *table, size_t n,
                           size_t *len);

#endif
