/* buffers.c - see buffers.h. */
#include "runtime/buffers.h"

#include <stdlib.h>

/* Write buffers kept for reuse per worker, beyond which they are freed. */
#define POOL_KEEP 256

char *buffers_scratch(struct worker *w, size_t size)
{
    if (w->scratch_size < size) {
        char *p = realloc(w->scratch, size);
        if (!p)
            return NULL;
        w->scratch = p;
        w->scratch_size = size;
    }
    return w->scratch;
}

struct wbuf *buffers_get(struct worker *w, size_t size)
{
    struct wbuf **pp = &w->wbufs;
    while (*pp && (*pp)->cap < size)
        pp = &(*pp)->next;
    struct wbuf *b = *pp;
    if (b) {
        *pp = b->next;
        w->wbufs_free--;
    } else if ((b = malloc(sizeof *b + size))) {
        b->cap = size;
    } else {
        return NULL;
    }
    w->wbufs_in_use++;
    return b;
}

void buffers_put(struct worker *w, struct wbuf *b)
{
    w->wbufs_in_use--;
    if (w->wbufs_free >= POOL_KEEP || w->draining) {
        free(b);
        return;
    }
    b->next = w->wbufs;
    w->wbufs = b;
    w->wbufs_free++;
}

void buffers_free_all(struct worker *w)
{
    while (w->wbufs) {
        struct wbuf *b = w->wbufs;
        w->wbufs = b->next;
        free(b);
    }
    w->wbufs_free = 0;
    free(w->scratch);
    w->scratch = NULL;
    w->scratch_size = 0;
}
