/* hist.h - a histogram of durations over one fixed set of buckets, for the histogram
 * metrics (connect times, queue waits).  Pure: the caller measures, this only counts.
 *
 * The buckets are upper bounds in seconds, 0.5 ms to 10 s in steps of x2 or x2.5
 * (hist_bounds_ns), plus everything above the last one (+Inf).  An observation lands in
 * the first bucket whose bound it does not exceed, as Prometheus' "le" means.  Counts
 * are per bucket (not cumulative: a renderer adds them up); the sum is kept in whole
 * nanoseconds, so merging the histograms of several workers is exact.  A struct hist is
 * plain data: zero it to start, copy it to snapshot it. */
#ifndef TWLB_HIST_H
#define TWLB_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_NBOUNDS 14

/* 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 seconds, in ns. */
extern const uint64_t hist_bounds_ns[HIST_NBOUNDS];

struct hist {
    uint64_t bucket[HIST_NBOUNDS + 1]; /* [i]: above bound i-1, at most bound i; the last:
                                          above the top bound */
    uint64_t count;
    uint64_t sum_ns;
};

/* Count one observation of <ns> nanoseconds. */
void hist_add(struct hist *h, uint64_t ns);

/* Add every count of <from> to <into>. */
void hist_merge(struct hist *into, const struct hist *from);

/* Bound <i> (< HIST_NBOUNDS) in seconds. */
double hist_bound_s(size_t i);

/* The sum of the observations, in seconds. */
double hist_sum_s(const struct hist *h);

/* An estimate of quantile <q> (0..1) in seconds, as Prometheus' histogram_quantile()
 * makes it: linear within the bucket that holds it (the first from 0); the top bound
 * when it lies above it.  Returns -1 when the histogram is empty. */
double hist_quantile(const struct hist *h, double q);

#endif
