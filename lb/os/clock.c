/* clock.c - see clock.h. */
#include "os/clock.h"

#include <time.h>

static uint64_t read_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t clock_real_ns(void)
{
    return read_ns(CLOCK_REALTIME);
}

uint64_t clock_mono_ns(void)
{
    return read_ns(CLOCK_MONOTONIC);
}

uint64_t clock_boot_ns(void)
{
    return read_ns(CLOCK_BOOTTIME);
}

void clock_pair_ns(uint64_t *real_ns, uint64_t *mono_ns)
{
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 4 && best > CLOCK_PAIR_NS; i++) {
        uint64_t m0 = read_ns(CLOCK_MONOTONIC);
        uint64_t r = read_ns(CLOCK_REALTIME);
        uint64_t m1 = read_ns(CLOCK_MONOTONIC);
        if (m1 - m0 < best) {
            best = m1 - m0;
            *real_ns = r;
            *mono_ns = m0 + (m1 - m0) / 2;
        }
    }
}

uint64_t clock_tick_ns(void)
{
    struct timespec res;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) < 0 || res.tv_sec ||
        res.tv_nsec < 1000000)
        return 1000000;
    return (uint64_t)res.tv_nsec;
}

uint64_t clock_unix_ms(void)
{
    return read_ns(CLOCK_REALTIME) / 1000000ull;
}
