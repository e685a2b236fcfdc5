/* slowstart.c - see slowstart.h. */
#include "core/slowstart.h"

uint32_t slowstart_weight(uint32_t weight, uint64_t since_ms, uint64_t now_ms,
                          uint32_t ramp_ms)
{
    /* weight <= 1000 in the config; larger ones saturate rather than wrap */
    uint64_t full = (uint64_t)weight * SLOWSTART_SCALE;
    if (full > UINT32_MAX)
        full = UINT32_MAX;
    if (ramp_ms == 0 || since_ms == 0 || now_ms >= since_ms + ramp_ms)
        return (uint32_t)full;
    if (now_ms < since_ms)
        return 0;
    /* full < 2^32 and elapsed < ramp_ms < 2^32: the product fits in 64 bits */
    return (uint32_t)(full * (now_ms - since_ms) / ramp_ms);
}
