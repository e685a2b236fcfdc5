/* clients.h - who may connect to a listener: its client ACL (allow, deny) and its
 * per-client limits (max_connections_per_client, rate_per_client), checked when a client
 * is accepted, before a session exists and before anything reaches a backend.
 *
 * The limits hold across workers.  Every worker accepts on its own SO_REUSEPORT socket,
 * so one client's connections land on several workers; the count and the token bucket of
 * a client must be one.  A client_table (a core/ctable.h table behind a mutex) is kept
 * per listener name in a registry the workers share (the group's; a worker started
 * without a group makes its own).  Each generation holds the table of each of its
 * listeners that has limits, so a reload that keeps the name keeps every client's count
 * and bucket, and the connections of the old generation are released into the same
 * table.  The table is freed when no generation holds it.  This is the accept path
 * only: one lock and one hash lookup per new connection, and one per close.
 *
 * Limits apply to connections accepted while they are configured: a reload that turns
 * them on does not count the connections already open.
 *
 * Return convention: NULL on OOM; enum reject_reason where said. */
#ifndef TWLB_CLIENTS_H
#define TWLB_CLIENTS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/types.h"

/* Clients a listener's table holds at most (core/ctable.h says what happens then:
 * idle clients give way; with every one of them connected, a new client is refused as
 * client_limit). */
#define CLIENTS_TABLE_MAX 65536

/* Refused clients logged per worker and second at most; the rest are summed up once a
 * second (twlb_rejected_total counts them all). */
#define CLIENTS_LOG_PER_S 10

struct clients_registry;
struct client_table;

struct clients_registry *clients_registry_new(void);
void clients_registry_free(struct clients_registry *r); /* once no table is held; NULL ok */

/* The table of listener <name>, made when none is held; one more holder.  NULL on OOM. */
struct client_table *clients_get(struct clients_registry *r, const char *name);
void clients_put(struct client_table *t); /* NULL ok */

/* Client <peer> was accepted on listener <li> of generation <g> at <now_ms> (monotonic).
 * REJ_N when it may be served, *slot then being the table it holds a live connection
 * in (to give back with clients_release), or NULL when the listener has no limits.
 * Otherwise the reason it is refused (REJ_ACL, REJ_CLIENT_LIMIT, REJ_CLIENT_RATE), and
 * nothing is held. */
enum reject_reason clients_admit(const struct gen *g, size_t li, const struct sockaddr *peer,
                                 uint64_t now_ms, struct client_table **slot);

/* One more live connection of <peer> without a check (a client another worker admitted
 * and handed over).  0, or -1 when the table has no room (nothing is held then). */
int clients_take(struct client_table *t, const struct sockaddr *peer, uint64_t now_ms);

/* The connection of <peer> that held a slot in <t> is gone. */
void clients_release(struct client_table *t, const struct sockaddr *peer, uint64_t now_ms);

/* Log that <peer> was refused on listener <listener> for <why>, unless this worker has
 * logged CLIENTS_LOG_PER_S such lines this second already. */
void clients_log_refused(struct worker *w, const char *listener, const struct sockaddr *peer,
                         enum reject_reason why);

/* Once a second (the worker's tick): sum up the refusals not logged; on worker 0, forget
 * the clients of the current generation's tables that nothing remembers any more. */
void clients_tick(struct worker *w, uint64_t now_ms);

#endif
