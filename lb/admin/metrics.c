/* metrics.c - see metrics.h: the table, and the readers of its samples. */
#include "admin/metrics.h"
#include "core/version.h"

#include "admin/procinfo.h"

const char *metric_type_name(enum metric_type t)
{
    switch (t) {
    case METRIC_COUNTER: return "counter";
    case METRIC_GAUGE: return "gauge";
    case METRIC_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

const char *const *metric_scope_labels(enum metric_scope s)
{
    static const char *const none[] = {NULL};
    static const char *const listener[] = {"listener", NULL};
    static const char *const backend[] = {"pool", "backend", NULL};
    static const char *const path[] = {"pool", "backend", "inside", NULL};
    static const char *const pool[] = {"pool", NULL};
    switch (s) {
    case METRIC_GLOBAL: return none;
    case METRIC_LISTENER: return listener;
    case METRIC_BACKEND: return backend;
    case METRIC_PATH: return path;
    case METRIC_POOL: return pool;
    }
    return none;
}

/* ---- label values ------------------------------------------------------------------ */

static const char *isn_mode_value(size_t k) { return isn_mode_name((enum isn_mode)(ISN_EXPLICIT + k)); }
static const char *direction_value(size_t k) { return k == 0 ? "to_backend" : "to_client"; }
static const char *state_value(size_t k) { return portmap_state_name((enum pm_state)k); }
static const char *version_value(size_t k) { return TWLB_VERSION; }
static const char *reason_value(size_t k)
{
    static const char *const names[] = {
#define X(e, label) [e] = label,
        REJECT_REASONS(X)
#undef X
    };
    return k < REJ_N ? names[k] : "?";
}
static const char *result_value(size_t k) { return k == 0 ? "ok" : "failed"; }

/* ---- readers ----------------------------------------------------------------------- */

static int64_t rd_local_errors(const struct metric_src *s, size_t k)
{
    return (int64_t)s->totals.local_errors_total;
}
static int64_t rd_one(const struct metric_src *s, size_t k)
{
    return 1;
}
static int64_t rd_isn_mode(const struct metric_src *s, size_t k)
{
    return s->isn_mode == (enum isn_mode)(ISN_EXPLICIT + k);
}
static int64_t rd_listener_connections(const struct metric_src *s, size_t k)
{
    return (int64_t)s->listener_connections;
}
static int64_t rd_listener_rejected(const struct metric_src *s, size_t k)
{
    return (int64_t)s->listener_rejected[k];
}
static int64_t rd_backend_active(const struct metric_src *s, size_t k) { return s->be.active; }
#define X(fld, mname, mhelp)                                                             \
    static int64_t rd_##fld(const struct metric_src *s, size_t k) { return (int64_t)s->be.st->fld; }
BACKEND_COUNTERS(X)
#undef X
static int64_t rd_bytes(const struct metric_src *s, size_t k)
{
    return (int64_t)(k == 0 ? s->be.st->bytes_to_backend : s->be.st->bytes_to_client);
}
static int64_t rd_spliced(const struct metric_src *s, size_t k)
{
    return (int64_t)(k == 0 ? s->be.st->spliced_to_backend : s->be.st->spliced_to_client);
}
static const struct hist *rd_connect_hist(const struct metric_src *s) { return s->be.connect; }
static int64_t rd_queue_length(const struct metric_src *s, size_t k)
{
    return (int64_t)s->pool.queue_length;
}
static const struct hist *rd_queue_wait(const struct metric_src *s) { return s->pool.queue_wait; }
static int64_t rd_ports(const struct metric_src *s, size_t k) { return s->path.counts[k]; }
static int64_t rd_reuses(const struct metric_src *s, size_t k)
{
    return (int64_t)s->path.reuses_total;
}
static int64_t rd_ports_unknown(const struct metric_src *s, size_t k) { return s->path.unknown; }
static int64_t rd_headroom(const struct metric_src *s, size_t k) { return s->path.headroom; }
static double rd_capacity(const struct metric_src *s, size_t k) { return s->path.capacity_cps; }
static int64_t rd_backend_up(const struct metric_src *s, size_t k) { return s->be.up; }
static int64_t rd_demoted(const struct metric_src *s, size_t k) { return s->be.demoted; }
static int64_t rd_backup(const struct metric_src *s, size_t k) { return s->be.backup; }
static double rd_eff_weight(const struct metric_src *s, size_t k)
{
    return s->be.weight_milli / 1000.0;
}
static int64_t rd_sessions_active(const struct metric_src *s, size_t k)
{
    return (int64_t)s->totals.sessions_active;
}
static int64_t rd_no_backend(const struct metric_src *s, size_t k)
{
    return (int64_t)s->totals.no_backend_total;
}
static int64_t rd_reload_ok(const struct metric_src *s, size_t k)
{
    return s->process.last_reload_ok;
}
static int64_t rd_reload_time(const struct metric_src *s, size_t k)
{
    return (int64_t)s->process.last_reload_unix_s;
}
static int64_t rd_reloads(const struct metric_src *s, size_t k)
{
    return (int64_t)(k == 0 ? s->process.reloads_ok : s->process.reloads_failed);
}
static int64_t rd_draining(const struct metric_src *s, size_t k) { return s->process.draining; }
static int64_t rd_open_fds(const struct metric_src *s, size_t k) { return procinfo_open_fds(); }
static int64_t rd_resident(const struct metric_src *s, size_t k) { return procinfo_resident_bytes(); }

/* ---- the table --------------------------------------------------------------------- */

#define COUNTER METRIC_COUNTER
#define GAUGE METRIC_GAUGE
#define HISTOGRAM METRIC_HISTOGRAM
#define ONE .nvalues = 1
#define JSON(how, key) .json = METRIC_JSON_##how, .json_key = key

/* Rendered in this order.  Config names are restricted to [A-Za-z0-9_.-] and addresses
 * to what inet_pton takes; prom.c escapes label values all the same. */
const struct metric_family metrics_table[] = {
    {"twlb_build_info", GAUGE, "1, labelled with the version of twlb that is running",
     METRIC_GLOBAL, .label = "version", .nvalues = 1, .value = version_value,
     .read = rd_one, JSON(CHOICE, "version")},
    {"twlb_isn_mode", GAUGE, "1 for the ISN mode in use", METRIC_GLOBAL, .label = "mode",
     .nvalues = ISN_OFF - ISN_EXPLICIT + 1, .value = isn_mode_value, .read = rd_isn_mode,
     JSON(CHOICE, "isn_mode")},
    {"twlb_listener_connections_total", COUNTER, "Client connections accepted",
     METRIC_LISTENER, ONE, .read = rd_listener_connections, JSON(INT, "connections_total")},
    {"twlb_rejected_total", COUNTER,
     "Client connections closed without being served, by reason (docs/operations.md)",
     METRIC_LISTENER, .label = "reason", .nvalues = REJ_N,
     .value = reason_value, .read = rd_listener_rejected, JSON(INT, "rejected_")},
    {"twlb_backend_connections_active", GAUGE, "Live backend connections", METRIC_BACKEND,
     ONE, .read = rd_backend_active, JSON(INT, "active")},
#define X(fld, mname, mhelp)                                                             \
    {mname, COUNTER, mhelp, METRIC_BACKEND, ONE, .read = rd_##fld, JSON(INT, #fld)},
    BACKEND_COUNTERS(X)
#undef X
    {"twlb_backend_connect_seconds", HISTOGRAM,
     "Time from connect() to the established connection, for successful backend "
     "connects of client sessions", METRIC_BACKEND, ONE, .read_hist = rd_connect_hist,
     JSON(HIST, "connect_seconds")},
    {"twlb_bytes_total", COUNTER, "Bytes forwarded, by direction", METRIC_BACKEND,
     .label = "direction", .nvalues = 2, .value = direction_value, .read = rd_bytes,
     JSON(INT, "bytes_")},
    {"twlb_spliced_bytes_total", COUNTER,
     "Of the bytes forwarded, those moved with splice(2), through a pipe in the kernel",
     METRIC_BACKEND, .label = "direction", .nvalues = 2, .value = direction_value,
     .read = rd_spliced, JSON(INT, "spliced_")},
    {"twlb_ports", GAUGE, "Source ports toward a backend from an inside address, by state",
     METRIC_PATH, .label = "state", .nvalues = PM_NSTATES, .value = state_value,
     .read = rd_ports, JSON(INT, "")},
    {"twlb_port_reuses_total", COUNTER,
     "Connections opened on a 4-tuple still in TIME_WAIT on the backend", METRIC_PATH, ONE,
     .read = rd_reuses, JSON(INT, "reuses_total")},
    {"twlb_ports_unknown", GAUGE,
     "Source ports counted as in backend TIME_WAIT only because a restart could not know "
     "their state (busy at a crash, a host crash, a lost state file), until that TIME_WAIT "
     "would end; part of twlb_ports{state=\"remote_time_wait\"}, never of "
     "twlb_port_headroom", METRIC_PATH, ONE,
     .read = rd_ports_unknown, JSON(INT, "unknown")},
    {"twlb_port_headroom", GAUGE,
     "Source ports toward a backend from an inside address that a new connection could "
     "use now: free, or in a TIME_WAIT that the rule and ISN mode let twlb reuse now",
     METRIC_PATH, ONE, .read = rd_headroom, JSON(INT, "headroom")},
    {"twlb_port_capacity_cps", GAUGE,
     "New connections per second the source ports toward a backend from an inside "
     "address sustain at the current mix of hold times and closes, under the backend's "
     "TIME_WAIT rule and the ISN mode (ports / mean port cycle; before the first "
     "connection: hold 0, the backend closing first)", METRIC_PATH, ONE,
     .read_real = rd_capacity, JSON(NUMBER, "capacity_cps")},
    {"twlb_backend_up", GAUGE,
     "1 when the backend may get new connections (healthy, not ejected, enabled)",
     METRIC_BACKEND, ONE, .read = rd_backend_up, JSON(BOOL, "up")},
    {"twlb_backend_demoted", GAUGE,
     "1 when a backend rejected explicit-ISN reuses and is treated as strict",
     METRIC_BACKEND, ONE, .read = rd_demoted, JSON(BOOL, "demoted")},
    {"twlb_queue_length", GAUGE, "Clients waiting in the pool's queue for a backend slot or a "
     "source port", METRIC_POOL, ONE, .read = rd_queue_length, JSON(INT, "queue_length")},
    {"twlb_queue_wait_seconds", HISTOGRAM, "How long the clients served from the pool's queue "
     "waited in it", METRIC_POOL, ONE, .read_hist = rd_queue_wait, JSON(HIST, "queue_wait_seconds")},
    {"twlb_backend_backup", GAUGE,
     "1 for a backup backend (gets new connections only while no non-backup one of its "
     "pool is usable)", METRIC_BACKEND, ONE, .read = rd_backup, JSON(BOOL, "backup")},
    {"twlb_backend_effective_weight", GAUGE,
     "The weight the backend is balanced with now: its weight, lower while it slow-starts",
     METRIC_BACKEND, ONE, .read_real = rd_eff_weight, JSON(NUMBER, "effective_weight")},
    {"twlb_sessions_active", GAUGE, "Client connections being served", METRIC_GLOBAL, ONE,
     .read = rd_sessions_active, JSON(INT, "sessions_active")},
    {"twlb_local_errors_total", COUNTER,
     "Accepts and backend sockets that failed for lack of descriptors, buffers or memory "
     "on this machine (never counted against a backend)", METRIC_GLOBAL, ONE,
     .read = rd_local_errors, JSON(INT, "local_errors_total")},
    {"twlb_no_backend_total", COUNTER,
     "Client connections closed because no backend or source port was usable",
     METRIC_GLOBAL, ONE, .read = rd_no_backend, JSON(INT, "no_backend_total")},
    /* The names of Prometheus' own prometheus_config_last_reload_successful and
     * _success_timestamp_seconds, as the Prometheus ecosystem's exporters use them. */
    {"twlb_config_last_reload_successful", GAUGE,
     "1 when the last reload (SIGHUP) applied its configuration, 0 when it failed and the "
     "running one was kept; 1 at start", METRIC_GLOBAL, ONE, .read = rd_reload_ok,
     JSON(BOOL, "config_last_reload_successful")},
    {"twlb_config_last_reload_timestamp_seconds", GAUGE,
     "Unix time of the last reload that succeeded, or of the start", METRIC_GLOBAL, ONE,
     .read = rd_reload_time, JSON(INT, "config_last_reload_timestamp_seconds")},
    {"twlb_config_reloads_total", COUNTER, "Reloads (SIGHUP) since the start, by result",
     METRIC_GLOBAL, .label = "result", .nvalues = 2, .value = result_value,
     .read = rd_reloads, JSON(INT, "config_reloads_")},
    {"twlb_draining", GAUGE,
     "1 from SIGTERM/SIGINT on: no new clients, live connections finishing (/healthz "
     "answers 503)", METRIC_GLOBAL, ONE, .read = rd_draining, JSON(BOOL, "draining")},
    /* The names every Prometheus client library uses for these (no twlb_ prefix). */
    {"process_open_fds", GAUGE, "Number of open file descriptors", METRIC_GLOBAL,
     ONE, .read = rd_open_fds, JSON(INT, "process_open_fds")},
    {"process_resident_memory_bytes", GAUGE, "Resident memory size in bytes",
     METRIC_GLOBAL, ONE, .read = rd_resident, JSON(INT, "process_resident_memory_bytes")},
};

const size_t metrics_count = sizeof metrics_table / sizeof metrics_table[0];
