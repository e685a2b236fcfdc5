/* walk.c - see walk.h.  Reads the view only (runtime/view.h). */
#include "admin/walk.h"

#include <string.h>

int walk_at(const struct view *v, enum metric_scope scope, size_t i, size_t j, size_t k,
            struct metric_src *out)
{
    const struct config *c = view_config(v);
    memset(out, 0, sizeof *out);
    out->scope = scope;
    switch (scope) {
    case METRIC_GLOBAL:
        view_totals(v, &out->totals);
        out->isn_mode = view_isn_mode(v);
        view_process(v, &out->process);
        return 0;
    case METRIC_LISTENER:
        if (i >= c->n_listeners)
            return -1;
        out->index[0] = i;
        out->labels[0] = c->listeners[i].name;
        out->listener_connections = view_listener_connections(v, i);
        for (size_t r = 0; r < REJ_N; r++)
            out->listener_rejected[r] = view_listener_rejected(v, i, (enum reject_reason)r);
        return 0;
    case METRIC_BACKEND:
    case METRIC_PATH:
        if (view_backend(v, i, j, &out->be) < 0)
            return -1;
        out->index[0] = i;
        out->index[1] = j;
        out->labels[0] = c->pools[i].name;
        out->labels[1] = c->pools[i].backends[j].name;
        if (scope == METRIC_BACKEND)
            return 0;
        if (view_path(v, i, j, k, &out->path) < 0)
            return -1;
        out->index[2] = k;
        out->labels[2] = c->pools[i].inside[k].text;
        return 0;
    case METRIC_POOL:
        if (view_pool(v, i, &out->pool) < 0)
            return -1;
        out->index[0] = i;
        out->labels[0] = c->pools[i].name;
        return 0;
    }
    return -1;
}

void walk_each(const struct view *v, enum metric_scope scope,
               void (*fn)(void *arg, const struct metric_src *src), void *arg)
{
    const struct config *c = view_config(v);
    struct metric_src src;
    switch (scope) {
    case METRIC_GLOBAL:
        if (walk_at(v, scope, 0, 0, 0, &src) == 0)
            fn(arg, &src);
        return;
    case METRIC_LISTENER:
    case METRIC_POOL:
        for (size_t i = 0; i < (scope == METRIC_POOL ? c->n_pools : c->n_listeners); i++)
            if (walk_at(v, scope, i, 0, 0, &src) == 0)
                fn(arg, &src);
        return;
    case METRIC_BACKEND:
    case METRIC_PATH:
        for (size_t p = 0; p < c->n_pools; p++)
            for (size_t b = 0; b < c->pools[p].n_backends; b++)
                for (size_t k = 0; k < (scope == METRIC_PATH ? c->pools[p].n_inside : 1); k++)
                    if (walk_at(v, scope, p, b, k, &src) == 0)
                        fn(arg, &src);
        return;
    }
}
