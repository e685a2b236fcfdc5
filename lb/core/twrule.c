/* twrule.c - see twrule.h. */
#include "core/twrule.h"

#include <string.h>

const char *twrule_kind_name(enum twrule_kind k)
{
    switch (k) {
    case TWRULE_BSD: return "bsd";
    case TWRULE_TIMESTAMPS: return "timestamps";
    case TWRULE_STRICT: return "strict";
    }
    return "?";
}

int twrule_kind_parse(const char *s, enum twrule_kind *out)
{
    static const enum twrule_kind all[] = {TWRULE_BSD, TWRULE_TIMESTAMPS, TWRULE_STRICT};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(s, twrule_kind_name(all[i]))) {
            *out = all[i];
            return 0;
        }
    return -1;
}

int twrule_seq_after(uint32_t a, uint32_t b)
{
    uint32_t d = a - b; /* modulo 2^32 */
    return d >= 1 && d <= 0x80000000u;
}

int twrule_accepts(const struct twrule *r, uint32_t isn, uint32_t rcv_nxt)
{
    if (r->kind == TWRULE_STRICT)
        return 0;
    /* timestamps: the timestamp rule may accept more, but not within the same
     * millisecond nor after an inside-address failover, so only the sequence rule is
     * relied upon (kernel-facts 1). */
    return twrule_seq_after(isn, rcv_nxt);
}
