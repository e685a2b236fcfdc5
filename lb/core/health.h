/* health.h - whether a backend is up, from check results and connect outcomes.  Pure: no
 * sockets, no clocks (the caller passes now_ms).
 *
 * Active checks follow HAProxy's rise/fall semantics: a backend that is up goes down
 * after <fall> consecutive failed checks; a backend that is down comes back after <rise>
 * consecutive good checks.  Passive ejection: <eject_after> consecutive failed connects
 * of real traffic take the backend out for a backoff that doubles with each ejection in
 * a row (base_ms, 2*base_ms, ... up to max_ms); it returns when the backoff ends or when
 * an active check succeeds.
 *
 * back_since_ms is when the backend last became usable after having been unusable, which
 * is where a slow start begins (core/slowstart.h): the moment a check brought it back,
 * or the end of an ejection (set when the ejection starts, as that end is known then).
 * 0 while it never was unusable: a backend starts usable and does not slow-start. */
#ifndef TWLB_HEALTH_H
#define TWLB_HEALTH_H

#include <stdint.h>

struct health {
    uint32_t rise, fall;        /* active check thresholds, >= 1 */
    uint32_t eject_after;       /* consecutive connect failures that eject; 0 = never */
    uint64_t eject_base_ms, eject_max_ms;
    /* state */
    int up;                     /* per active checks (1 when there are none) */
    uint32_t streak;            /* consecutive results against the current state */
    uint32_t fails_in_row;      /* consecutive connect failures (passive) */
    uint32_t ejections_in_row;
    uint64_t ejected_until;     /* 0: not ejected */
    uint64_t back_since_ms;     /* usable again since (see above); 0: never was down */
};

/* Start up, not ejected. */
void health_init(struct health *h, uint32_t rise, uint32_t fall, uint32_t eject_after,
                 uint64_t eject_base_ms, uint64_t eject_max_ms);

/* An active check finished.  Returns 1 when this result changed health_usable(). */
int health_check_result(struct health *h, int ok, uint64_t now_ms);

/* A connect of real traffic finished.  Returns 1 when this result changed
 * health_usable() (an ejection started). */
int health_connect_result(struct health *h, int ok, uint64_t now_ms);

/* Another thread runs the checks: its verdict is <up>, and the checks last brought the
 * backend up at <up_since_ms> (its clock; 0: never).  Take both over, as if this health
 * had seen the checks itself (a passive ejection here still counts).  The time counts
 * even when <up> equals ours: a flap too short for this thread to see (down and up
 * again between two looks) still starts a slow start. */
void health_follow(struct health *h, int up, uint64_t up_since_ms);

/* May the backend get new connections now? */
int health_usable(const struct health *h, uint64_t now_ms);

#endif
