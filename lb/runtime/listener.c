/* listener.c - see listener.h. */
#include "runtime/listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "os/log.h"
#include "runtime/session.h"

static void on_connection(uv_stream_t *h, int status)
{
    struct listener_rt *lis = h->data;
    if (status < 0) {
        log_warn("listener %s: accept: %s", lis->cfg->name, uv_strerror(status));
        return;
    }
    lis->connections_total++;
    session_accept(lis->gen, lis->cfg, h);
}

static void listener_closed(uv_handle_t *h)
{
    free(h->data); /* sessions keep no pointer to their listener */
}

static void listener_close(struct listener_rt *lis)
{
    if (lis)
        uv_close((uv_handle_t *)&lis->handle, listener_closed);
}

static struct listener_rt *listener_open(struct gen *g, const struct cfg_listener *lc,
                                         char *err, size_t errlen)
{
    struct listener_rt *lis = calloc(1, sizeof *lis);
    if (!lis) {
        snprintf(err, errlen, "listener %s: out of memory", lc->name);
        return NULL;
    }
    lis->gen = g;
    lis->cfg = lc;
    uv_tcp_init(g->w->loop, &lis->handle);
    lis->handle.data = lis;
    int r = uv_tcp_bind(&lis->handle, (const struct sockaddr *)&lc->bind.ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&lis->handle, (int)lc->backlog, on_connection);
    if (r < 0) {
        snprintf(err, errlen, "listener %s: cannot listen on %s: %s", lc->name, lc->bind.text,
                 uv_strerror(r));
        listener_close(lis);
        return NULL;
    }
    log_info("listener %s on %s -> pool %s", lc->name, lc->bind.text, lc->pool_name);
    return lis;
}

static int same_socket(const struct cfg_listener *a, const struct cfg_listener *b)
{
    return a->bind.len == b->bind.len && !memcmp(&a->bind.ss, &b->bind.ss, a->bind.len) &&
           a->backlog == b->backlog;
}

int listener_open_all(struct gen *g, struct gen *prev, char *err, size_t errlen)
{
    const struct config *c = g->cfg;
    size_t *from = calloc(c->n_listeners, sizeof *from); /* prev index + 1, 0: new */
    if (!from) {
        snprintf(err, errlen, "out of memory");
        return UV_ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < c->n_listeners && rc == 0; i++) {
        const struct cfg_listener *lc = &c->listeners[i];
        for (size_t j = 0; prev && j < prev->cfg->n_listeners && !g->listeners[i]; j++) {
            struct listener_rt *old = prev->listeners[j];
            if (old && same_socket(old->cfg, lc)) {
                g->listeners[i] = old;
                prev->listeners[j] = NULL;
                from[i] = j + 1;
            }
        }
        if (!g->listeners[i] && !(g->listeners[i] = listener_open(g, lc, err, errlen)))
            rc = UV_EADDRINUSE;
    }
    if (rc < 0) {
        for (size_t i = 0; i < c->n_listeners; i++) {
            if (from[i])
                prev->listeners[from[i] - 1] = g->listeners[i];
            else
                listener_close(g->listeners[i]);
            g->listeners[i] = NULL;
        }
    } else {
        for (size_t i = 0; i < c->n_listeners; i++) {
            g->listeners[i]->gen = g;
            g->listeners[i]->cfg = &c->listeners[i];
        }
    }
    free(from);
    return rc;
}

void listener_close_all(struct gen *g)
{
    for (size_t i = 0; i < g->cfg->n_listeners; i++) {
        listener_close(g->listeners[i]);
        g->listeners[i] = NULL;
    }
}
