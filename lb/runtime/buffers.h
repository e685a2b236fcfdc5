/* buffers.h - data buffers of one worker.  An idle connection holds none: the pump reads
 * into the worker's scratch buffer and writes at once; only bytes the peer cannot take
 * yet go into a write buffer from the worker's pool, which returns there when written. */
#ifndef TWLB_BUFFERS_H
#define TWLB_BUFFERS_H

#include <stddef.h>

#include "runtime/types.h"

/* Bytes a peer could not take yet. */
struct wbuf {
    struct wbuf *next;   /* in the free list */
    size_t cap;
    char data[];
};

/* The worker's scratch buffer, at least <size> bytes; NULL on OOM.  Valid until the next
 * call: use it within one read callback. */
char *buffers_scratch(struct worker *w, size_t size);

/* A write buffer of at least <size> bytes (counted in use until put back); NULL on OOM. */
struct wbuf *buffers_get(struct worker *w, size_t size);
void buffers_put(struct worker *w, struct wbuf *b);

/* Free the scratch buffer and the pool (at exit; none may be in use). */
void buffers_free_all(struct worker *w);

#endif
