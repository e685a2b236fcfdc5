/* backend.h - choosing a backend and a source port, and what the runtime knows of each
 * backend: health as seen by traffic and probes, the operator's word, demotion to the
 * strict TIME_WAIT rule, and its live connections.
 *
 * Health changes are logged and counted here, once per change, by whoever notices first
 * (a pick, a probe, the worker's housekeeping tick); never by a renderer.
 *
 * Return convention: 0 or -1 (nothing usable); backend_set_admin() documents its own. */
#ifndef TWLB_BACKEND_H
#define TWLB_BACKEND_H

#include "runtime/types.h"

/* The port policy of <be> under generation <g>: its rule (strict once demoted), the ISN
 * mode, our own TIME_WAIT handling, quarantine, the kernel-mode margin. */
void backend_policy(const struct gen *g, const struct backend_rt *be,
                    struct portmap_policy *pol);

/* Backend state-change log lines: at most this many per window and worker; the rest
 * are counted and logged as one summary line when the window is over. */
#define BACKEND_STATE_LOG_PER_S 20
#define BACKEND_STATE_LOG_WINDOW_MS 1000

/* May <be> get new connections as of <now_ms> (health and ejection; not the operator's
 * word)?  Logs (rate-limited) and counts a change. */
int backend_usable(struct backend_rt *be, uint64_t now_ms);
/* The summary of the lines left out, once their window is over (the worker's tick). */
void backend_state_log_flush(struct worker *w, uint64_t now_ms);

/* A health probe of <be> ended (worker 0 runs them): rise/fall, then the verdict is
 * published to the other workers and a change logged and counted. */
void backend_probe_result(struct backend_rt *be, int ok, uint64_t now_ms);

/* A connect of real traffic to <be> succeeded (ok=1) or failed: passive ejection. */
void backend_connect_result(struct backend_rt *be, int ok, uint64_t now_ms);

/* A connect to <be> completed; <reuse>: on a 4-tuple in the backend's TIME_WAIT;
 * <retransmitted>: TCP_INFO saw the SYN sent again.  Counts, and demotes the backend to
 * the strict rule when explicit-ISN reuses keep being rejected. */
void backend_note_syn(struct gen *g, struct backend_rt *be, int reuse, int retransmitted);

/* A source port toward <be> of generation <g> (pathset_acquire with the clocks read;
 * a demotion by another worker is applied first).  Returns 0, or -1 and counts the
 * backend exhausted. */
int backend_acquire(struct gen *g, struct backend_rt *be, uint64_t now_ms,
                    struct pathset_pick *out);

/* The weight <be> balances with as of <now_ms>, in 1/SLOWSTART_SCALE units
 * (core/slowstart.h): its configured weight, lower during its slow start, which begins
 * when health checks bring it back (worker 0's time, the same in every worker), when an
 * ejection ends, or when the operator enables it. */
uint32_t backend_weight(const struct backend_rt *be, uint64_t now_ms);

/* Pick a backend of <pool> that is enabled, usable, below its max_connections and not
 * among the <ntried> indexes in <tried>, and a port toward it (the port is BUSY and a
 * slot of the backend taken on return: backend_slot_give() when the connection ends or
 * fails); a backup backend only when no non-backup one is enabled and usable (a full
 * non-backup sends its clients to the queue, not to the backups).  Backends whose every
 * path is out of ports are skipped and counted.  Returns 0; -1 when no backend is
 * usable; -2 when some were, but this worker had no port toward any of them; -3 when the
 * usable ones are at their max_connections. */
int backend_pick(struct gen *g, struct pool_rt *pool, uint64_t client_hash, const uint32_t *tried,
                 size_t ntried, uint64_t now_ms, struct backend_rt **be,
                 struct pathset_pick *pick);
/* Give back the slot backend_pick() took. */
void backend_slot_give(struct backend_rt *be);
/* Is <be> at its max_connections (every worker's connections counted)? */
int backend_at_limit(const struct backend_rt *be);

/* The operator's word: "enable", "disable" (no new connections, live ones of every
 * generation are aborted now), "drain" (no new connections, live ones finish) or
 * "trust" (clear a demotion: the configured TIME_WAIT rule applies again).  <now_ms>:
 * when the operator said it (the same for every worker), where the slow start of an
 * enabled backend begins.  Returns 0, or -2 for an unknown action. */
int backend_set_admin(struct gen *g, struct backend_rt *be, const char *action,
                      uint64_t now_ms);
const char *backend_admin_name(enum backend_admin a);

/* A client connection to <be> was established / has ended: the live-connection count
 * that least_conn and power-of-two balance on, over every worker. */
void backend_active_add(struct backend_rt *be, int delta);

/* Put a live client connection on <be>'s list / take it off (idempotent). */
void backend_link(struct backend_rt *be, struct be_link *l);
void backend_unlink(struct be_link *l);

#endif
