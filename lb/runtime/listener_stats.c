/* listener_stats.c - see listener_stats.h. */
#include "runtime/listener_stats.h"

#include <stdlib.h>

struct listener_stats *listener_stats_new(void)
{
    struct listener_stats *st = calloc(1, sizeof *st);
    if (st)
        st->refs = 1;
    return st;
}

struct listener_stats *listener_stats_ref(struct listener_stats *st)
{
    if (st)
        st->refs++;
    return st;
}

void listener_stats_unref(struct listener_stats *st)
{
    if (st && --st->refs == 0)
        free(st);
}

void listener_stats_reject(struct listener_stats *st, enum reject_reason why)
{
    if (st && why < REJ_N)
        st->rejected[why]++;
}

const char *listener_stats_reason_name(enum reject_reason why)
{
    static const char *const names[] = {
#define X(e, label) [e] = label,
        REJECT_REASONS(X)
#undef X
    };
    return why < REJ_N ? names[why] : "?";
}
