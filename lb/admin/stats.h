/* stats.h - /stats: every family of metrics_table that has a json_key, as JSON, nested
 * per listener / pool / backend / inside address, with what names those objects:
 *
 *   {isn_mode, sessions_active, no_backend_total, process_...,
 *    listeners: [{name, bind, pool, connections_total}],
 *    pools: [{name, balance, source_ports ("LO-HI"), <pool-scope families>,
 *             backends: [{name, address, weight, time_wait_rule, admin,
 *             health, active, <BACKEND_COUNTERS>, connect_seconds: {count, sum, p50, p99},
 *             bytes_to_backend, bytes_to_client, up,
 *             demoted, ports: {<inside>: {free, busy, ..., reuses_total, unknown, headroom,
 *             capacity_cps, capacity_mix: {connections, hold_ms, bytes_to_backend,
 *             backend_first, local_first, local_timestamps}}}}]}]} */
#ifndef TWLB_STATS_H
#define TWLB_STATS_H

#include "runtime/view.h"

/* The JSON of <v> as of now: a malloc'ed string, or NULL when out of memory. */
char *stats_render(const struct view *v);

#endif
