/* buffers.c - see buffers.h. */
#include "runtime/buffers.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* Write buffers kept for reuse per worker, beyond which they are freed. */
#define POOL_KEEP 256
/* Empty pipes kept for reuse per worker (two descriptors each), beyond which they are
 * closed. */
#define PIPES_KEEP 32
/* What a pipe holds: 64 slots instead of the default 16, so one splice(2) pair moves
 * about twice as much (strace, docs/benchmarks.md: 27-36 system calls per MiB against
 * 41-49 with the default).  Within /proc/sys/fs/pipe-max-size (1 MiB) for any user;
 * where the kernel refuses (pipe-user-pages-soft), the pipe keeps its default size. */
#define PIPE_BYTES (256 * 1024)

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

struct pipe_buf *buffers_pipe_get(struct worker *w)
{
    struct pipe_buf *p = w->pipes;
    if (p) {
        w->pipes = p->next;
        w->pipes_free--;
    } else {
        int fds[2];
        if (w->pipes_in_use >= BUFFERS_PIPES_MAX || w->draining || !(p = malloc(sizeof *p)))
            return NULL;
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
            free(p);
            return NULL;
        }
        p->r = fds[0];
        p->w = fds[1];
        (void)fcntl(p->w, F_SETPIPE_SZ, PIPE_BYTES);
    }
    w->pipes_in_use++;
    return p;
}

static void pipe_free(struct pipe_buf *p)
{
    close(p->r);
    close(p->w);
    free(p);
}

void buffers_pipe_put(struct worker *w, struct pipe_buf *p, int empty)
{
    w->pipes_in_use--;
    if (!empty || w->pipes_free >= PIPES_KEEP || w->draining) {
        pipe_free(p);
        return;
    }
    p->next = w->pipes;
    w->pipes = p;
    w->pipes_free++;
}

void buffers_pipes_trim(struct worker *w)
{
    while (w->pipes) {
        struct pipe_buf *p = w->pipes;
        w->pipes = p->next;
        pipe_free(p);
    }
    w->pipes_free = 0;
}

void buffers_free_all(struct worker *w)
{
    buffers_pipes_trim(w);
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
