/* gen.h - one config generation: the pools, backends and port paths built from a config.
 *
 * A reload builds the new generation next to the running one.  Building changes nothing
 * that the running generation uses: what the two share (a backend's counters, health and
 * operator state; port paths whose inside address and range did not change) is only
 * re-pointed to the new config by gen_commit(), once the new generation has started.  So
 * a reload that fails anywhere before the commit leaves the running one exactly as it was.
 *
 * Return convention: NULL or a negative errno with a message in <err>. */
#ifndef TWLB_GEN_H
#define TWLB_GEN_H

#include <stddef.h>

#include "runtime/types.h"

/* Build the objects of <cfg> for worker <w>.  With <prev>, every (pool, backend name,
 * backend address) that still exists shares its backend_shared and its unchanged paths.
 * The ISN mode is resolved (auto: explicit when TCP_REPAIR is allowed).  On success the
 * gen owns <cfg>; on failure <cfg> is still the caller's. */
struct gen *gen_new(struct worker *w, struct config *cfg, const struct gen *prev, char *err,
                    size_t errlen);

/* The generation has started and replaces the previous one: apply its port policy and
 * health thresholds to what it shares with older generations. */
void gen_commit(struct gen *g);

/* Free everything (the config too); listeners and probes must be closed already. */
void gen_free(struct gen *g);
/* Free the per-pool stats the worker's generations made (at exit). */
void gen_pool_stats_free(struct worker *w);

/* Lifecycle.  A session of <g> ended (the counts are decremented already), or a handle
 * <g> owned finished closing: this finishes a drain (the worker's on_drained) and frees a
 * retired generation once nothing can reach it (no session, no handle still closing:
 * libuv runs close callbacks in no particular order). */
void gen_session_gone(struct gen *g);
void gen_handle_closed(struct gen *g);

/* <g> was replaced by a reload (its listeners moved on or are closed, its probes are
 * stopping): unlink it from the worker once empty and free it. */
void gen_retire(struct gen *g);

/* The worker is draining and has no session left: call on_drained, once. */
void gen_check_drained(struct worker *w);

/* The backend named <backend> in pool <pool>, or NULL. */
struct backend_rt *gen_find_backend(const struct gen *g, const char *pool, const char *backend);

#endif
