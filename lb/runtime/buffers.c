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
/* What a pipe holds: the top-level "pipe_bytes", by default 1 MiB, 256 slots instead of
 * the kernel's 16 (F_SETPIPE_SZ), so one splice(2) pair moves up to 1 MiB and a bulk
 * stream costs fewer wake-ups and calls: in make bench's bulk load, 0.22-0.25 proxy
 * core-seconds per GB against 0.29-0.33 with 256 KiB and 1.5-1.6x the best peer's
 * single-stream rate against 1.45x (docs/benchmarks.md).  1 MiB is
 * /proc/sys/fs/pipe-max-size's default, allowed to any user; only CAP_SYS_RESOURCE may
 * ask for more.  Pages are taken only while bytes are in the pipe.  When the size asked
 * for is refused, 1 MiB and then 256 KiB are tried (each only if smaller), then the
 * default stays.  A user past fs.pipe-user-pages-soft (64 MiB of pipes, unless it has
 * CAP_SYS_RESOURCE) may not grow a pipe at all, and a pipe made past that limit has 2
 * slots (8 KiB), smaller than the scratch buffer: it is not used, that burst is copied,
 * and so is every burst that needs a new pipe in the next PIPE_RETRY_MS (not three more
 * calls per read). */
#define PIPE_BYTES_DEFAULT (1024 * 1024)
#define PIPE_BYTES_FALLBACK (256 * 1024)
#define PIPE_BYTES_MIN (64 * 1024)
#define PIPE_RETRY_MS 1000
#define PIPES_MAX_DEFAULT 256

/* Ask for <bytes>, then the fallbacks below it; 0 when the pipe ends up big enough. */
static int size_pipe(int fd, uint32_t bytes)
{
    if (fcntl(fd, F_SETPIPE_SZ, (int)bytes) >= 0)
        return 0;
    if (bytes > PIPE_BYTES_DEFAULT && fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES_DEFAULT) >= 0)
        return 0;
    if (bytes > PIPE_BYTES_FALLBACK && fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES_FALLBACK) >= 0)
        return 0;
    return fcntl(fd, F_GETPIPE_SZ) >= PIPE_BYTES_MIN ? 0 : -1;
}

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

static void pipe_free(struct pipe_buf *p)
{
    close(p->r);
    close(p->w);
    free(p);
}

struct pipe_buf *buffers_pipe_get(struct worker *w)
{
    const struct config *c = w->cur ? w->cur->cfg : NULL;
    uint32_t bytes = c ? c->pipe_bytes : PIPE_BYTES_DEFAULT;
    uint32_t max = c ? c->max_pipes : PIPES_MAX_DEFAULT;
    struct pipe_buf *p;
    while ((p = w->pipes) && p->asked != bytes) { /* made before a reload changed the size */
        w->pipes = p->next;
        w->pipes_free--;
        pipe_free(p);
    }
    if (w->pipes_in_use >= max) { /* a reload may have lowered it: pooled ones wait */
        return NULL;
    } else if (p) {
        w->pipes = p->next;
        w->pipes_free--;
    } else {
        int fds[2];
        if (w->draining ||
            (w->pipes_refused_at && worker_now_ms(w) - w->pipes_refused_at < PIPE_RETRY_MS) ||
            !(p = malloc(sizeof *p)))
            return NULL;
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
            free(p);
            return NULL;
        }
        p->r = fds[0];
        p->w = fds[1];
        p->asked = bytes;
        if (size_pipe(p->w, bytes) < 0) {
            pipe_free(p);
            w->pipes_refused_at = worker_now_ms(w) | 1; /* never 0: 0 is "not refused" */
            return NULL;
        }
    }
    w->pipes_in_use++;
    return p;
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
