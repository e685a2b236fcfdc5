/* fuzz_config.c - the configuration loader on any bytes: config_load_text() must return a
 * config or errors, never crash, leak or read past the text, and what it accepts must be
 * complete (the promises of config.h). */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "fuzz.h"
#include "os/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOGL_OFF);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cfg_errors errs = {0};
    struct config *c = config_load_text("fuzz.json", (const char *)data, size, &errs);
    if (c) {
        /* Accepted: complete, with names resolved. */
        if (errs.n || !c->n_listeners || !c->n_pools)
            abort();
        for (size_t i = 0; i < c->n_listeners; i++)
            if (c->listeners[i].pool >= c->n_pools)
                abort();
        for (size_t p = 0; p < c->n_pools; p++)
            if (!c->pools[p].n_backends || !c->pools[p].n_inside ||
                c->pools[p].port_lo > c->pools[p].port_hi || c->pools[p].port_lo == 0)
                abort();
        uint64_t ms, n;
        config_state_limits(c, &ms, &n);
        if (!ms || !n)
            abort();
    } else {
        /* Refused: at least one error, each naming the file. */
        if (!errs.n)
            abort();
        for (size_t i = 0; i < errs.n; i++)
            if (strncmp(errs.msg[i], "fuzz.json", 9))
                abort();
    }
    config_free(c);
    cfg_errors_free(&errs);
    return 0;
}
