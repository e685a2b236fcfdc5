/* capacity.c - see capacity.h. */
#include "core/capacity.h"

#include "core/isn.h"

/* Kernel ISN mode: ms from the moment <hold_ms> after the old SYN until the kernel's
 * ISN clock for the 4-tuple is inside isn_kernel_reuse_safe()'s window, that is
 * (advance - (bytes + 2)) mod 2^32 in [margin, 2^31 - margin], advance = t_ns / 64. */
/* How long after the close a reused port waits in kernel mode: until the kernel's ISN
 * clock, started at the old SYN <hold_ms> before the close, is safely past the old
 * connection (the same inverse of isn_kernel_reuse_safe the queue's timer uses). */
static double kernel_wait_ms(double hold_ms, double bytes, uint32_t margin)
{
    uint64_t hold_ns = (uint64_t)(hold_ms * 1e6);
    return (double)(isn_kernel_safe_at_ns(hold_ns, (uint64_t)bytes, margin) - hold_ns) / 1e6;
}

double capacity_blocked_ms(const struct portmap_policy *pol, enum pm_closer closer,
                           double hold_ms, double bytes, int timestamps)
{
    double tw = (double)pol->rule.time_wait_ms;
    switch (closer) {
    case PM_CLOSER_NONE:
        return 0;
    case PM_CLOSER_LOCAL:
        return timestamps || pol->local_tw == PM_LOCAL_TW_DESTROY ? 0
                                                                  : (double)pol->local_tw_ms;
    case PM_CLOSER_BACKEND:
        break;
    }
    if (pol->mode == ISN_OFF || pol->rule.kind == TWRULE_STRICT)
        return tw;
    if (pol->mode == ISN_EXPLICIT)
        return 0;
    double w = kernel_wait_ms(hold_ms, bytes, pol->kernel_margin);
    return w < tw ? w : tw;
}

double capacity_cycle_ms(const struct portmap_policy *pol, const struct capacity_mix *m)
{
    double hold = m->hold_ms > 0 ? m->hold_ms : 0;
    double cycle = hold;
    cycle += m->backend_first *
             capacity_blocked_ms(pol, PM_CLOSER_BACKEND, hold, m->bytes_to_backend, 0);
    cycle += m->local_first * (1 - m->local_timestamps) *
             capacity_blocked_ms(pol, PM_CLOSER_LOCAL, hold, 0, 0);
    return cycle > CAPACITY_MIN_CYCLE_MS ? cycle : CAPACITY_MIN_CYCLE_MS;
}

double capacity_cps(const struct portmap_policy *pol, uint32_t ports,
                    const struct capacity_mix *m)
{
    return (double)ports * 1000.0 / capacity_cycle_ms(pol, m);
}

/* The weight of the n-th observation: the plain mean until CAPACITY_EWMA_N, then
 * 1 / CAPACITY_EWMA_N. */
static void ewma(double *avg, double x, uint64_t n)
{
    double a = n < CAPACITY_EWMA_N ? 1.0 / (double)n : 1.0 / CAPACITY_EWMA_N;
    *avg += a * (x - *avg);
}

static double weight(uint64_t n)
{
    return (double)(n < CAPACITY_EWMA_N ? n : CAPACITY_EWMA_N);
}

void capacity_observe(struct capacity_obs *o, uint64_t hold_ms, const struct portmap_release *r)
{
    if (r->never_connected)
        return;
    o->n++;
    o->w = weight(o->n);
    ewma(&o->mix.hold_ms, (double)hold_ms, o->n);
    ewma(&o->mix.backend_first, r->closer == PM_CLOSER_BACKEND, o->n);
    ewma(&o->mix.local_first, r->closer == PM_CLOSER_LOCAL, o->n);
    if (r->closer == PM_CLOSER_BACKEND) {
        o->n_backend++;
        o->w_backend = weight(o->n_backend);
        ewma(&o->mix.bytes_to_backend, (double)r->bytes_to_backend, o->n_backend);
    } else if (r->closer == PM_CLOSER_LOCAL) {
        o->n_local++;
        o->w_local = weight(o->n_local);
        ewma(&o->mix.local_timestamps, r->timestamps != 0, o->n_local);
    }
}

/* <a> with weight <wa> and <b> with weight <wb>, averaged. */
static double mean2(double a, double wa, double b, double wb)
{
    return wa + wb > 0 ? (a * wa + b * wb) / (wa + wb) : 0;
}

void capacity_obs_merge(struct capacity_obs *into, const struct capacity_obs *from)
{
    struct capacity_mix *a = &into->mix;
    const struct capacity_mix *b = &from->mix;
    a->hold_ms = mean2(a->hold_ms, into->w, b->hold_ms, from->w);
    a->backend_first = mean2(a->backend_first, into->w, b->backend_first, from->w);
    a->local_first = mean2(a->local_first, into->w, b->local_first, from->w);
    a->bytes_to_backend = mean2(a->bytes_to_backend, into->w_backend, b->bytes_to_backend,
                                from->w_backend);
    a->local_timestamps = mean2(a->local_timestamps, into->w_local, b->local_timestamps,
                                from->w_local);
    into->n += from->n;
    into->n_backend += from->n_backend;
    into->n_local += from->n_local;
    into->w += from->w;
    into->w_backend += from->w_backend;
    into->w_local += from->w_local;
}

void capacity_obs_mix(const struct capacity_obs *o, struct capacity_mix *out)
{
    if (o->n) {
        *out = o->mix;
        return;
    }
    *out = (struct capacity_mix){.hold_ms = 0, .bytes_to_backend = 0, .backend_first = 1};
}
