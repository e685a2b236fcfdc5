/* health.c - see health.h. */
#include "core/health.h"

#include <string.h>

void health_init(struct health *h, uint32_t rise, uint32_t fall, uint32_t eject_after,
                 uint64_t eject_base_ms, uint64_t eject_max_ms)
{
    memset(h, 0, sizeof *h);
    h->rise = rise ? rise : 1;
    h->fall = fall ? fall : 1;
    h->eject_after = eject_after;
    h->eject_base_ms = eject_base_ms;
    h->eject_max_ms = eject_max_ms < eject_base_ms ? eject_base_ms : eject_max_ms;
    h->up = 1;
}

int health_usable(const struct health *h, uint64_t now_ms)
{
    return h->up && now_ms >= h->ejected_until;
}

int health_check_result(struct health *h, int ok, uint64_t now_ms)
{
    int before = health_usable(h, now_ms);
    if (ok == h->up) {
        h->streak = 0; /* a result that agrees with the state resets the streak */
    } else if (++h->streak >= (h->up ? h->fall : h->rise)) {
        h->up = ok;
        h->streak = 0;
    }
    if (ok) {
        /* A good check proves the backend answers: end any passive ejection. */
        h->ejected_until = 0;
        h->ejections_in_row = 0;
        h->fails_in_row = 0;
    }
    int after = health_usable(h, now_ms);
    if (after && !before)
        h->back_since_ms = now_ms;
    return before != after;
}

void health_follow(struct health *h, int up, uint64_t up_since_ms)
{
    /* Back when both the checks and an ejection of ours let it be. */
    if (up && up_since_ms > h->back_since_ms)
        h->back_since_ms = up_since_ms;
    if (up == h->up)
        return;
    h->up = up;
    h->streak = 0;
}

int health_connect_result(struct health *h, int ok, uint64_t now_ms)
{
    if (ok) {
        h->fails_in_row = 0;
        h->ejections_in_row = 0;
        return 0;
    }
    int before = health_usable(h, now_ms);
    if (h->eject_after == 0 || ++h->fails_in_row < h->eject_after)
        return 0;
    h->fails_in_row = 0;
    uint64_t backoff = h->eject_base_ms;
    for (uint32_t i = 0; i < h->ejections_in_row && backoff < h->eject_max_ms; i++)
        backoff *= 2;
    if (backoff > h->eject_max_ms)
        backoff = h->eject_max_ms;
    h->ejections_in_row++;
    h->ejected_until = now_ms + backoff;
    h->back_since_ms = h->ejected_until; /* usable again then, unless checks say otherwise */
    return before != health_usable(h, now_ms);
}
