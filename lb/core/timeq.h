/* timeq.h - deadlines of many owners, earliest first (a binary min-heap).
 *
 * A worker keeps one libuv timer armed for the earliest deadline of its queue instead of
 * one uv_timer_t (152 bytes) per connection.  An owner embeds a struct timeq_item (16
 * bytes) and may be scheduled, moved and cancelled in O(log n).
 *
 * Pure: no clocks (deadlines are numbers the caller chooses).  Return convention: 0 / -1
 * (out of memory). */
#ifndef TWLB_TIMEQ_H
#define TWLB_TIMEQ_H

#include <stddef.h>
#include <stdint.h>

struct timeq_item {
    uint64_t at;  /* the deadline */
    size_t pos;   /* 1 + index in the heap; 0: not scheduled */
};

struct timeq {
    struct timeq_item **heap;
    size_t n, cap;
};

void timeq_init(struct timeq *q);
void timeq_free(struct timeq *q); /* the items are the owners' */

/* Schedule <it> at <at>, or move it there if it is scheduled.  Returns 0 or -1. */
int timeq_set(struct timeq *q, struct timeq_item *it, uint64_t at);

/* Unschedule <it> (nothing when it is not scheduled). */
void timeq_cancel(struct timeq *q, struct timeq_item *it);

/* The earliest item, or NULL when empty. */
struct timeq_item *timeq_first(const struct timeq *q);

/* Remove and return the earliest item whose deadline is <= now, or NULL. */
struct timeq_item *timeq_pop_due(struct timeq *q, uint64_t now);

#endif
