/* fuzz_statefile.c - the state-file loader on any file content: statefile_v1_load() must
 * refuse or restore, never crash, and every entry it hands over must be within the
 * limits it was given and come in the order the ports expire. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz.h"
#include "os/log.h"
#include "os/statefile_v1.h"

static char path[] = "/tmp/twlb-fuzz-state-XXXXXX";
static int fd = -1;

#define NOW 1000000u
#define MAX_MS 60000u

struct seen {
    uint64_t last;
    int n;
};

static int on_entry(void *arg, const struct statefile_entry *e)
{
    struct seen *s = arg;
    if (e->e.until_ms <= NOW || e->e.until_ms > NOW + MAX_MS || e->e.until_ms < s->last ||
        !e->pool || !e->backend || !e->inside || e->e.port == 0 || e->e.state >= PM_NSTATES)
        abort();
    s->last = e->e.until_ms;
    return s->n++ % 2 ? 0 : -1; /* some restored, some of no use */
}

static void remove_file(void)
{
    unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOGL_OFF);
    fd = mkstemp(path);
    if (fd < 0)
        abort();
    atexit(remove_file);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0)
        LLVMFuzzerInitialize(NULL, NULL);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        return 0;
    struct statefile_limits lim = {.max_remaining_ms = MAX_MS, .max_entries = 64};
    struct seen s = {0};
    int n = statefile_v1_load(path, NOW, &lim, on_entry, &s);
    if (n > s.n || (n < 0 && s.n))
        abort();
    return 0;
}
