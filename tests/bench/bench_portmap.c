/* bench_portmap - port choice plus release per operation, and memory for 1,000 backends.
 * Run by `make bench`.  Clocks are read here, never in lb/. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/portmap.h"
#include "core/portstate.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct portmap_policy pol(enum isn_mode m, enum twrule_kind r)
{
    struct portmap_policy p = {.rule = {r, 60000}, .mode = m, .local_tw = PM_LOCAL_TW_AVOID,
                               .local_tw_ms = 60000, .quarantine_ms = 1000,
                               .kernel_margin = ISN_KERNEL_MARGIN};
    return p;
}

/* Steady state at 10,000 connections per virtual second, every one ended by the backend's
 * FIN: after 6.5 s all 64,511 ports are in backend TIME_WAIT (60 s), so from then on each
 * acquire is a TIME_WAIT reuse, or a refusal where the policy forbids it. */
/* The state file's observer (os/statefile.c: statefile_observer) without the file: the
 * same slot stores, into memory here (a MAP_SHARED page of the page cache in twlb). */
static void observe(void *arg, const struct portmap_entry *e)
{
    portstate_store((struct portstate_slot *)arg + (e->port - 1024), e,
                    1700000000000000000ull);
}

static void run_obs(const char *name, enum isn_mode mode, enum twrule_kind rule, long ops,
                    int with_slots)
{
    struct portmap_policy p = pol(mode, rule);
    portmap *pm = portmap_new(1024, 65535, &p);
    struct portstate_slot *slots = with_slots ? calloc(64512, sizeof *slots) : NULL;
    if (slots)
        portmap_observe(pm, observe, slots);
    struct portmap_pick pk;
    long ok = 0, reused = 0;
    uint64_t t = 0;
    double t0 = now_s();
    for (long i = 0; i < ops; i++) {
        t = (uint64_t)i / 10;
        uint64_t real = 1700000000000000000ull + t * 1000000ull;
        if (portmap_acquire(pm, t, real, t * 1000000ull + 1, &pk) == 0) {
            ok++;
            reused += pk.kind == PM_PICK_REMOTE_TW;
            struct portmap_release r = {.closer = PM_CLOSER_BACKEND, .isn_known = 1,
                                        .isn = (uint32_t)i, .syn_real_ns = real,
                                        .syn_mono_ns = t * 1000000ull + 1,
                                        .bytes_to_backend = 200};
            portmap_release(pm, pk.port, &r, t);
        }
    }
    double dt = now_s() - t0;
    printf("| %-28s | %6.1f | %5.0f | %6.1f%% | %6.1f%% | %6zu |\n", name, ops / dt / 1e6,
           dt / ops * 1e9, 100.0 * (double)ok / (double)ops, 100.0 * (double)reused / (double)ops,
           portmap_memory(pm) / 1024);
    portmap_free(pm);
    free(slots);
}

static void run(const char *name, enum isn_mode mode, enum twrule_kind rule, long ops)
{
    run_obs(name, mode, rule, ops, 0);
}

int main(void)
{
    long ops = 20000000;
    printf("port choice + release, one 64,511-port map, backend closes first, "
           "10,000 connections per virtual second, %ld operations\n\n", ops);
    printf("| policy | Mops/s | ns/op | got a port | TW reuse | KiB |\n");
    printf("|---|---|---|---|---|---|\n");
    run("explicit, bsd (reuses TW)", ISN_EXPLICIT, TWRULE_BSD, ops);
    run("kernel, bsd (predicts ISN)", ISN_KERNEL, TWRULE_BSD, ops);
    run("off, bsd (waits for expiry)", ISN_OFF, TWRULE_BSD, ops);
    run("explicit, strict", ISN_EXPLICIT, TWRULE_STRICT, ops);
    run_obs("explicit, bsd, state file", ISN_EXPLICIT, TWRULE_BSD, ops, 1);
    run_obs("kernel, bsd, state file", ISN_KERNEL, TWRULE_BSD, ops, 1);

    struct portmap_policy p = pol(ISN_EXPLICIT, TWRULE_BSD);
    enum { NB = 1000 };
    portmap **maps = malloc(NB * sizeof *maps);
    size_t idle = 0, busy = 0;
    for (int i = 0; i < NB; i++) {
        maps[i] = portmap_new(1024, 65535, &p);
        idle += portmap_memory(maps[i]);
    }
    struct portmap_pick pk;
    for (int i = 0; i < NB; i++) { /* a burst: 1,000 connections per backend, then TW */
        for (int k = 0; k < 1000; k++) {
            portmap_acquire(maps[i], 0, 0, 0, &pk);
            struct portmap_release r = {.closer = PM_CLOSER_BACKEND, .isn_known = 1};
            portmap_release(maps[i], pk.port, &r, 0);
        }
        busy += portmap_memory(maps[i]);
    }
    size_t after = 0;
    for (int i = 0; i < NB; i++) {
        portmap_expire(maps[i], 60001);
        after += portmap_memory(maps[i]);
        portmap_free(maps[i]);
    }
    free(maps);
    printf("\nmemory, %d backends x 64,511 ports: idle %.1f MiB; after 1,000 connections each "
           "(in TIME_WAIT) %.1f MiB; after expiry %.1f MiB\n",
           NB, idle / 1048576.0, busy / 1048576.0, after / 1048576.0);
    return 0;
}
