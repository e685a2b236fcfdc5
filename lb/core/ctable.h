/* ctable.h - the per-client limits of one listener: live connections and a token bucket
 * of new connections per client address.
 *
 * A client is its address (16 bytes, cidr_client_key(): IPv4 as ::ffff:a.b.c.d).  An
 * entry lives while it matters: a client with a live connection, or whose bucket is not
 * full again yet.  One with neither is in the same state as a client never seen, and is
 * dropped (at its last close when there is no rate limit, else by ctable_expire() once
 * its bucket has refilled).  The table holds at most <max_entries> clients; see
 * ctable_admit() for what happens at that cap.  Lookups hash the address with SipHash
 * under a secret key, so chosen client addresses cannot pile up in one bucket.
 *
 * Token bucket: <burst> tokens at most, refilled at <rate> tokens a second, one token per
 * new connection; a client may open <burst> connections at once and then <rate> a second.
 * Counted in thousandths of a token with whole milliseconds, so the refill is exact.
 *
 * Pure: time is passed in (milliseconds of any monotonic clock; a time earlier than the
 * last one seen refills nothing), no locking (the runtime holds a mutex around a table
 * that several threads share).  Return conventions as written at each function. */
#ifndef TWLB_CTABLE_H
#define TWLB_CTABLE_H

#include <stddef.h>
#include <stdint.h>

/* The limits of a listener; 0 turns one off. */
struct ctable_limits {
    uint32_t max_conns; /* live connections per client */
    uint32_t rate;      /* new connections per second per client */
    uint32_t burst;     /* the bucket's size; used when rate is set, at least 1 */
};

/* ---- the token bucket ---- */

struct ctable_bucket {
    uint64_t milli;   /* tokens x 1000 */
    uint64_t last_ms; /* when it was last refilled */
};

/* A full bucket as of <now_ms>. */
void ctable_bucket_fill(struct ctable_bucket *b, uint32_t burst, uint64_t now_ms);
/* Refill to <now_ms>; then take one token: 0, or -1 (none left, nothing taken). */
int ctable_bucket_take(struct ctable_bucket *b, uint32_t rate, uint32_t burst,
                       uint64_t now_ms);
/* Refill to <now_ms>; 1 when the bucket is full. */
int ctable_bucket_full(struct ctable_bucket *b, uint32_t rate, uint32_t burst,
                       uint64_t now_ms);

/* ---- the table ---- */

typedef struct ctable ctable; /* opaque */

enum ctable_verdict {
    CTABLE_OK,    /* admitted: the client has one more live connection */
    CTABLE_LIMIT, /* the client has max_conns live connections already */
    CTABLE_RATE,  /* the client's bucket is empty */
    CTABLE_FULL,  /* a client not in the table, and no room for it (or no memory) */
};

/* An empty table for at most <max_entries> (>= 1) clients, hashing under <key>.  NULL on
 * OOM. */
ctable *ctable_new(size_t max_entries, const uint8_t key[16]);
void ctable_free(ctable *t); /* NULL ok */

/* A new connection of client <addr> at <now_ms> under <lim> (which the table keeps for
 * later releases and expiry: the limits of the last admission are the table's).  The
 * live connection limit is checked first, so a connection refused for it takes no
 * token; a refused connection changes nothing.  A client not in the table when it holds
 * <max_entries> takes the place of the one whose last connection closed longest ago
 * (its bucket is forgotten, that is refilled at once); only when every client in the
 * table has a live connection is it refused, CTABLE_FULL. */
enum ctable_verdict ctable_admit(ctable *t, const uint8_t addr[16],
                                 const struct ctable_limits *lim, uint64_t now_ms);

/* One more live connection of <addr> without any check and without taking a token: a
 * client admitted once that moves to another thread.  0, or -1 when it has no room (not
 * counted then; its release must not be called). */
int ctable_take(ctable *t, const uint8_t addr[16], uint64_t now_ms);

/* A live connection of <addr> that was admitted (or taken) ended at <now_ms>.  Unknown
 * clients are ignored. */
void ctable_release(ctable *t, const uint8_t addr[16], uint64_t now_ms);

/* Drop the clients with no live connection whose bucket is full again, oldest first;
 * stops at the first that must stay (a bounded amount of work per call).  Returns how
 * many were dropped. */
size_t ctable_expire(ctable *t, uint64_t now_ms);

size_t ctable_size(const ctable *t);                         /* clients in the table */
uint32_t ctable_live(const ctable *t, const uint8_t addr[16]); /* 0 for unknown ones */

#endif
