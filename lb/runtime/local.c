/* local.c - see local.h. */
#include "runtime/local.h"

#include <errno.h>

#include "os/log.h"

#define LOG_EVERY_MS 1000

int local_is_resource_error(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

void local_error(struct worker *w, const char *where, int err)
{
    w->local_errors_total++;
    uint64_t now = worker_now_ms(w);
    if (w->local_logged_ms && now - w->local_logged_ms < LOG_EVERY_MS) {
        w->local_unlogged++;
        return;
    }
    log_error("%s: %s (this machine's limit, not the backend's fault)%s", where,
              uv_strerror(err), w->local_unlogged ? "; and more like it since the last line" : "");
    w->local_logged_ms = now ? now : 1;
    w->local_unlogged = 0;
}
