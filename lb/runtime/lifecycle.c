/* lifecycle.c - see lifecycle.h. */
#include "runtime/lifecycle.h"

#include <stdio.h>
#include <stdlib.h>

#include "os/clock.h"
#include "os/log.h"

struct lifecycle {
    uv_timer_t status_timer;
    lifecycle_view_fn *view;
    void *arg;
    struct view_process st;
};

struct lifecycle *lifecycle_new(uv_loop_t *loop, lifecycle_view_fn *view, void *arg)
{
    struct lifecycle *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->view = view;
    l->arg = arg;
    l->st.last_reload_ok = 1;
    l->st.last_reload_unix_s = clock_unix_ms() / 1000;
    uv_timer_init(loop, &l->status_timer);
    l->status_timer.data = l;
    view_set_process(&l->st);
    return l;
}

void lifecycle_ready(struct lifecycle *l)
{
    if (!l)
        return;
}

void lifecycle_reload_begin(struct lifecycle *l)
{
    if (!l)
        return;
}

void lifecycle_reload_end(struct lifecycle *l, int ok)
{
    if (!l)
        return;
    l->st.last_reload_ok = ok;
    if (ok) {
        l->st.last_reload_unix_s = clock_unix_ms() / 1000;
        l->st.reloads_ok++;
    } else {
        l->st.reloads_failed++;
    }
    view_set_process(&l->st);
}

void lifecycle_stopping(struct lifecycle *l)
{
    if (!l)
        return;
    l->st.draining = 1;
    view_set_process(&l->st);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void lifecycle_close(struct lifecycle *l)
{
    if (l)
        uv_close((uv_handle_t *)&l->status_timer, on_timer_closed);
}
