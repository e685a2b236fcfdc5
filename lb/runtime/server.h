/* server.h - one worker: builds the runtime objects from a config, opens the listeners,
 * and owns the decisions that need more than one session's view (which backend, which
 * inside address, which port, which ISN). */
#ifndef TWLB_SERVER_H
#define TWLB_SERVER_H

#include "runtime/types.h"

/* Build the runtime for <cfg> on <loop>: pools, balancers, port maps, the ISN mode
 * (auto resolved by probing TCP_REPAIR).  With <prev> (a reload), every (pool, backend,
 * inside address) that still exists shares its port map, counters and health with the
 * previous generation.  Returns NULL with a message in <err>. */
struct server *server_new(uv_loop_t *loop, const struct config *cfg, const struct server *prev,
                          char *err, size_t errlen);

/* Listen on every listener and start the admin endpoint and health checks.  With <prev>
 * (a reload), listeners and the admin socket whose address did not change are taken over
 * from it, still open.  On failure nothing of <prev> is touched.  Returns 0 or a negative
 * uv error with a message in <err>. */
int server_start(struct server *srv, struct server *prev, char *err, size_t errlen);

/* <srv> was replaced by a reload: close what it still listens on, let its sessions
 * finish; <on_gone> is called (to free it) once the last one is gone. */
void server_retire(struct server *srv, void (*on_gone)(struct server *srv));

/* Stop accepting and let live sessions finish; srv->on_drained is called once no
 * session is left.  The deadline is the caller's: it calls session_abort_all(). */
void server_drain(struct server *srv);

/* Close the remaining handles (admin, timers); run the loop after this to let the close
 * callbacks finish, then server_free(). */
void server_close(struct server *srv);
void server_free(struct server *srv);

/* The outcome of choosing where a new backend connection goes. */
struct server_pick {
    struct backend_rt *be;
    size_t path;              /* index of the inside address (be->paths[path]) */
    struct portmap_pick port;
};

/* Pick a backend of <pool> (skipping the <ntried> backends in <tried>, those whose
 * every path is out of usable ports, and counting the latter) and a source port toward
 * it.  The port is BUSY on return.  Returns 0, or -1 when nothing is usable. */
int server_pick(struct server *srv, struct pool_rt *pool, uint64_t client_hash,
                const uint32_t *tried, size_t ntried, struct server_pick *out);

/* A port toward <be> on one of its paths (inside addresses rotate).  Returns 0 with
 * <out> filled (the port is BUSY), or -1 and counts the backend exhausted. */
int server_acquire(struct server *srv, struct backend_rt *be, struct server_pick *out);

/* The socket for <pick>: our own TIME_WAIT destroyed where needed, the ISN chosen
 * (explicit mode: *isn_known = 1 and *isn), bound to the inside address and port.  A
 * port the kernel refuses is quarantined and another toward the same backend taken
 * (pick is updated).  Returns the fd; -ENOSPC when no port toward the backend is left
 * (pick holds none); another negative errno on other failures (pick holds its port). */
int server_sockprep_socket(struct server *srv, struct server_pick *pick, int *isn_known,
                           uint32_t *isn);

/* The 4-tuple as the ISN functions hash it. */
void server_isn_tuple(struct isn_tuple *t, const struct cfg_addr *inside, uint16_t sport,
                      const struct cfg_addr *backend);

/* A connect on <be> completed and its reuse-reject counter was updated: demote the
 * backend to the strict rule when explicit-ISN reuses keep being rejected. */
void server_note_reuse_result(struct server *srv, struct backend_rt *be);

/* Health as of <now_ms> (active checks, passive ejection); logs and counts changes. */
int server_backend_usable(struct server *srv, struct backend_rt *be, uint64_t now_ms);

/* A connect of real traffic to <be> succeeded (ok=1) or failed: feeds passive ejection. */
void server_connect_result(struct server *srv, struct backend_rt *be, int ok);

/* The operator's word on a backend: "enable", "disable" (no new connections, live ones
 * closed now) or "drain" (no new connections, live ones finish).  Returns 0, -1 for an
 * unknown pool or backend, -2 for an unknown action. */
int server_backend_admin(struct server *srv, const char *pool, const char *backend,
                         const char *action);
const char *server_backend_admin_name(enum backend_admin a);

/* A session ended, or a handle the server owns finished closing: lets a drain finish
 * and a retired generation go. */
void server_session_gone(struct server *srv);

#endif
