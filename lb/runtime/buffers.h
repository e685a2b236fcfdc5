/* buffers.h - data buffers of one worker.  An idle connection holds none: the pump reads
 * into the worker's scratch buffer and writes at once; only bytes the peer cannot take
 * yet go into a write buffer from the worker's pool, which returns there when written.
 * A direction that splices (pump.c) takes a pipe from the worker's pool of pipes while
 * bytes are in it, and gives it back when it is drained. */
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

/* A pipe for splice(2): the bytes move from socket to socket inside the kernel. */
struct pipe_buf {
    int r, w;              /* its read and write ends (non-blocking) */
    uint32_t asked;        /* the "pipe_bytes" it was made for */
    struct pipe_buf *next; /* in the free list */
};

/* An empty pipe from the pool, or a new one of the running configuration's "pipe_bytes";
 * NULL when none can be had now ("max_pipes" in use in this worker, a size the kernel
 * refuses, or no descriptor left): the caller copies instead.  Counted in use until put
 * back. */
struct pipe_buf *buffers_pipe_get(struct worker *w);
/* Give <p> back: an empty pipe goes to the pool, one with bytes in it (its session
 * ended before they were written) is closed. */
void buffers_pipe_put(struct worker *w, struct pipe_buf *p, int empty);
/* Close the pipes kept for reuse (descriptors are short). */
void buffers_pipes_trim(struct worker *w);

/* Free the scratch buffer and the pools (at exit; none may be in use). */
void buffers_free_all(struct worker *w);

#endif
