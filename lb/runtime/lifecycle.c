/* lifecycle.c - see lifecycle.h. */
#include "runtime/lifecycle.h"

#include <stdio.h>
#include <stdlib.h>

#include "os/clock.h"
#include "os/log.h"
#include "os/sdnotify.h"

/* How often `systemctl status` gets a fresh STATUS= line (only under Type=notify). */
#define STATUS_EVERY_MS 5000

struct lifecycle {
    uv_timer_t status_timer;
    lifecycle_view_fn *view;
    void *arg;
    struct view_process st;
};

/* One line for `systemctl status`: what the process does now.  Asks every worker for its
 * figures (group_view()), so only when systemd listens. */
static void status_line(const struct lifecycle *l, char *out, size_t len)
{
    out[0] = 0;
    if (!sdnotify_enabled())
        return;
    const struct view *v = l->view ? l->view(l->arg) : NULL;
    struct view_totals t = {0};
    size_t workers = 0;
    if (v) {
        view_totals(v, &t);
        workers = view_workers(v);
    }
    snprintf(out, len, "%s: %llu connection%s, %zu worker%s; reloads %llu ok, %llu failed%s",
             l->st.draining ? "draining" : "serving", (unsigned long long)t.sessions_active,
             t.sessions_active == 1 ? "" : "s", workers, workers == 1 ? "" : "s",
             (unsigned long long)l->st.reloads_ok, (unsigned long long)l->st.reloads_failed,
             l->st.last_reload_ok ? "" : " (the last one failed: running the previous "
                                        "configuration)");
}

static void on_status_timer(uv_timer_t *t)
{
    struct lifecycle *l = t->data;
    char line[256];
    status_line(l, line, sizeof line);
    sdnotify_status(line);
}

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
    char line[256];
    status_line(l, line, sizeof line);
    sdnotify_ready(line);
    if (sdnotify_enabled()) {
        uv_timer_start(&l->status_timer, on_status_timer, STATUS_EVERY_MS, STATUS_EVERY_MS);
        log_info("systemd: told READY=1");
    }
}

void lifecycle_reload_begin(struct lifecycle *l)
{
    if (l)
        sdnotify_reloading("reloading the configuration");
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
    char line[256];
    status_line(l, line, sizeof line);
    sdnotify_ready(line); /* also after a failed reload: the old configuration serves */
}

void lifecycle_stopping(struct lifecycle *l)
{
    if (!l)
        return;
    l->st.draining = 1;
    view_set_process(&l->st);
    char line[256];
    status_line(l, line, sizeof line);
    sdnotify_stopping(line);
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
