/* hist.c - see hist.h. */
#include "core/hist.h"

const uint64_t hist_bounds_ns[HIST_NBOUNDS] = {
    500000ull,     1000000ull,    2500000ull,    5000000ull,    10000000ull,
    25000000ull,   50000000ull,   100000000ull,  250000000ull,  500000000ull,
    1000000000ull, 2500000000ull, 5000000000ull, 10000000000ull,
};

void hist_add(struct hist *h, uint64_t ns)
{
    size_t i = 0;
    while (i < HIST_NBOUNDS && ns > hist_bounds_ns[i])
        i++;
    h->bucket[i]++;
    h->count++;
    h->sum_ns += ns;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    for (size_t i = 0; i <= HIST_NBOUNDS; i++)
        into->bucket[i] += from->bucket[i];
    into->count += from->count;
    into->sum_ns += from->sum_ns;
}

double hist_bound_s(size_t i)
{
    return i < HIST_NBOUNDS ? (double)hist_bounds_ns[i] / 1e9 : 0;
}

double hist_sum_s(const struct hist *h)
{
    return (double)h->sum_ns / 1e9;
}

double hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0)
        return -1;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    double rank = q * (double)h->count;
    uint64_t below = 0;
    for (size_t i = 0; i < HIST_NBOUNDS; i++) {
        uint64_t n = h->bucket[i];
        if (n && (double)(below + n) >= rank) {
            double lo = i ? hist_bound_s(i - 1) : 0, hi = hist_bound_s(i);
            return lo + (hi - lo) * ((rank - (double)below) / (double)n);
        }
        below += n;
    }
    return hist_bound_s(HIST_NBOUNDS - 1); /* in the +Inf bucket */
}
