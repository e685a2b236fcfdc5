/* fuzz_statemap.c - the state file's reader (os/statefile_read.c, version 2: the mapped
 * table) on any file content: statefile_open() must accept it (as a previous run's file,
 * or as unreadable, kept aside), never crash or hang, and leave a valid file of its own;
 * what it restores stays within the paths' ranges, in a state a restart may hold, and no
 * longer than the judged deadline allows. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "core/portmap.h"
#include "os/log.h"
#include "os/statefile.h"

static char dir[] = "/tmp/twlb-fuzz-statemap-XXXXXX";
static char path[64];

/* Two paths toward 127.0.0.2:9000 and :9001 from 127.0.0.1, as the seeds hold them. */
static struct statefile_key keys[2];

static void remove_files(void)
{
    char p[96];
    unlink(path);
    snprintf(p, sizeof p, "%s.bad", path);
    unlink(p);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(getenv("FUZZ_LOG") ? LOGL_DEBUG : LOGL_OFF);
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof path, "%s/state", dir);
    atexit(remove_files);
    for (int i = 0; i < 2; i++) {
        struct statefile_key *k = &keys[i];
        k->pool = "p";
        k->backend = i ? "c" : "b";
        k->backend_family = k->inside_family = 2;
        memcpy(k->backend_addr, "\x7f\0\0\x02", 4);
        memcpy(k->inside_addr, "\x7f\0\0\x01", 4);
        k->backend_port = (uint16_t)(9000 + i);
        k->inside = "127.0.0.1";
        k->lo = (uint16_t)(i ? 100 : 1);
        k->hi = (uint16_t)(i ? 163 : 64);
        k->time_wait_ms = 60000;
    }
    return 0;
}

struct seen {
    uint64_t now_ms;
    int n;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        LLVMFuzzerInitialize(NULL, NULL);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    struct statefile_limits lim = {.max_remaining_ms = 60000, .max_entries = 128};
    struct statefile *sf;
    char err[256];
    if (statefile_open(path, keys, 2, &lim, &sf, err, sizeof err) != 0)
        abort(); /* nobody else holds the file */
    struct portmap_policy pol = {.rule = {TWRULE_BSD, 60000}, .mode = ISN_EXPLICIT,
                                 .local_tw_ms = 60000, .quarantine_ms = 1000};
    for (int i = 0; i < 2; i++) {
        const struct statefile_path *p = statefile_find(sf, &keys[i]);
        portmap *pm = portmap_new(keys[i].lo, keys[i].hi, &pol);
        if (!p || !pm)
            abort();
        int n = statefile_restore(p, pm, keys[i].lo, keys[i].hi, 0);
        uint32_t c[PM_NSTATES];
        portmap_counts(pm, c);
        if (n < 0 || n > keys[i].hi - keys[i].lo + 1 || c[PM_BUSY] != 0)
            abort();
        portmap_free(pm);
    }
    statefile_close(sf, 1);
    return 0;
}
