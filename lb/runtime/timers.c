/* timers.c - see timers.h. */
#include "runtime/timers.h"

#include <stddef.h>

#include "os/log.h"

#define WTIMER_OF(it) ((struct wtimer *)((char *)(it) - offsetof(struct wtimer, it)))

static void on_timer(uv_timer_t *h);

/* Arm the handle for the earliest deadline (or stop it). */
static void rearm(struct worker *w)
{
    struct timeq_item *first = timeq_first(&w->deadlines);
    if (!first) {
        uv_timer_stop(&w->timer);
        return;
    }
    uint64_t now = uv_now(w->loop);
    uv_timer_start(&w->timer, on_timer, first->at > now ? first->at - now : 0, 0);
}

static void on_timer(uv_timer_t *h)
{
    struct worker *w = h->data;
    uint64_t now = uv_now(w->loop);
    struct timeq_item *it;
    /* fn may set or cancel other deadlines, which is why each is popped first */
    while ((it = timeq_pop_due(&w->deadlines, now))) {
        struct wtimer *t = WTIMER_OF(it);
        t->fn(t);
    }
    rearm(w);
}

void timers_init(struct worker *w)
{
    timeq_init(&w->deadlines);
    uv_timer_init(w->loop, &w->timer);
    w->timer.data = w;
}

void timers_close(struct worker *w)
{
    if (!uv_is_closing((uv_handle_t *)&w->timer))
        uv_close((uv_handle_t *)&w->timer, NULL);
    timeq_free(&w->deadlines);
}

void timers_set(struct worker *w, struct wtimer *t, uint64_t at_ms)
{
    struct timeq_item *before = timeq_first(&w->deadlines);
    if (timeq_set(&w->deadlines, &t->it, at_ms) < 0) {
        /* No memory to remember the deadline: fire it now rather than never. */
        log_error("out of memory for a connection deadline");
        t->fn(t);
        return;
    }
    if (timeq_first(&w->deadlines) != before || before == &t->it)
        rearm(w);
}

void timers_cancel(struct worker *w, struct wtimer *t)
{
    int was_first = timeq_first(&w->deadlines) == &t->it;
    timeq_cancel(&w->deadlines, &t->it);
    if (was_first)
        rearm(w);
}
