/* timeq.c - see timeq.h. */
#include "core/timeq.h"

#include <stdlib.h>

void timeq_init(struct timeq *q)
{
    q->heap = NULL;
    q->n = q->cap = 0;
}

void timeq_free(struct timeq *q)
{
    for (size_t i = 0; i < q->n; i++)
        q->heap[i]->pos = 0;
    free(q->heap);
    timeq_init(q);
}

static void place(struct timeq *q, size_t i, struct timeq_item *it)
{
    q->heap[i] = it;
    it->pos = i + 1;
}

static void up(struct timeq *q, size_t i)
{
    struct timeq_item *it = q->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (q->heap[parent]->at <= it->at)
            break;
        place(q, i, q->heap[parent]);
        i = parent;
    }
    place(q, i, it);
}

static void down(struct timeq *q, size_t i)
{
    struct timeq_item *it = q->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n)
            break;
        if (c + 1 < q->n && q->heap[c + 1]->at < q->heap[c]->at)
            c++;
        if (it->at <= q->heap[c]->at)
            break;
        place(q, i, q->heap[c]);
        i = c;
    }
    place(q, i, it);
}

int timeq_set(struct timeq *q, struct timeq_item *it, uint64_t at)
{
    if (it->pos) {
        uint64_t was = it->at;
        it->at = at;
        if (at < was)
            up(q, it->pos - 1);
        else
            down(q, it->pos - 1);
        return 0;
    }
    if (q->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 64;
        struct timeq_item **h = realloc(q->heap, cap * sizeof *h);
        if (!h)
            return -1;
        q->heap = h;
        q->cap = cap;
    }
    it->at = at;
    q->heap[q->n++] = it;
    up(q, q->n - 1);
    return 0;
}

void timeq_cancel(struct timeq *q, struct timeq_item *it)
{
    if (!it->pos)
        return;
    size_t i = it->pos - 1;
    it->pos = 0;
    struct timeq_item *last = q->heap[--q->n];
    if (i == q->n)
        return;
    place(q, i, last);
    if (i > 0 && q->heap[(i - 1) / 2]->at > last->at)
        up(q, i);
    else
        down(q, i);
}

struct timeq_item *timeq_first(const struct timeq *q)
{
    return q->n ? q->heap[0] : NULL;
}

struct timeq_item *timeq_pop_due(struct timeq *q, uint64_t now)
{
    struct timeq_item *it = timeq_first(q);
    if (!it || it->at > now)
        return NULL;
    timeq_cancel(q, it);
    return it;
}
