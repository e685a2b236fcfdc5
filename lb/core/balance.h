/* balance.h - which backend of a pool gets the next connection.  Pure: no sockets and
 * no clocks; the caller passes each backend's live-connection count, its weight now and
 * which backends are usable (not down, draining, tried already, or out of source ports).
 *
 *   round_robin           next usable backend in order (weights ignored, but see slow
 *                         start below)
 *   weighted_round_robin  smooth weighted round robin, as nginx
 *   least_conn            fewest active/weight; ties broken round robin
 *   random_two            power of two choices: two distinct random usable backends
 *                         (weight-proportional draws), the one with fewer active/weight
 *   maglev                Maglev consistent hashing (table of 65537) on the client
 *                         address hash; the table depends only on the set of (name,
 *                         weight), not on the order of the backends; an unusable
 *                         backend's clients fall through to other slots drawn from their
 *                         own hash (see balance.c), so only its clients move.
 *
 * Slow start: weights may change between picks (a backend coming back ramps up).  A
 * backend whose weight is below its weight_full is warming up: the weighted algorithms
 * use its weight as it is; round_robin, and least_conn among equally loaded backends,
 * give it its turn only in the proportion weight / weight_full.  Weight 0 means "only
 * when nothing else is usable": such a backend is picked only when no usable backend has
 * a weight above 0 (then they count as equal).  maglev ignores weights at pick time: its
 * table is built once from the weights at balancer_new().
 *
 * Backup backends: balance_keep_primaries() takes the backups out of a pick while a
 * non-backup one is usable; the caller applies it before removing what is usable but
 * not wanted for this pick (tried already, out of ports). */
#ifndef TWLB_BALANCE_H
#define TWLB_BALANCE_H

#include <stddef.h>
#include <stdint.h>

enum balance_algo {
    BAL_ROUND_ROBIN,
    BAL_WEIGHTED_RR,
    BAL_LEAST_CONN,
    BAL_RANDOM_TWO,
    BAL_MAGLEV,
};
const char *balance_algo_name(enum balance_algo a);
int balance_algo_parse(const char *s, enum balance_algo *out); /* 0 ok, -1 unknown */

/* The balancer's view of one backend; the caller owns the array. */
struct balance_backend {
    const char *name;     /* maglev places backends by the hash of their name */
    uint32_t weight;      /* now; 0: only when nothing else is usable (see the top) */
    uint32_t active;      /* live connections now */
    uint32_t weight_full; /* its weight outside slow start; 0 (or <= weight): not warming */
    uint8_t backup;       /* a backup backend (balance_keep_primaries) */
};

typedef struct balancer balancer; /* opaque */

/* Build balancing state for <n> backends (n >= 1).  <seed> seeds random_two.
 * Returns NULL on OOM. */
balancer *balancer_new(enum balance_algo algo, const struct balance_backend *bk, size_t n,
                       uint64_t seed);
void balancer_free(balancer *b); /* NULL ok */

/* Index of the backend for the next connection among those with usable[i] != 0, or -1
 * when none is usable.  <bk> is the same array (same order and size) as at creation,
 * with current active counts.  <client_hash> is balance_hash_addr() of the client
 * address (only maglev uses it). */
int balancer_pick(balancer *b, const struct balance_backend *bk, const uint8_t *usable,
                  uint64_t client_hash);

/* Backup backends: when some backend with backup == 0 is usable, clear usable[] of every
 * backup; otherwise leave usable[] as it is (the usable backups, if any, serve; HAProxy's
 * "allbackups").  Returns how many usable backends are left. */
size_t balance_keep_primaries(const struct balance_backend *bk, uint8_t *usable, size_t n);

/* Stable 64-bit hash of a client address (the IP bytes only, not the port). */
uint64_t balance_hash_addr(const void *addr, size_t len);

#endif
