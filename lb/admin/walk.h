/* walk.h - the objects of a view that metric samples are read from (metrics.h), in the
 * order /metrics and /stats list them: listeners, then pools, their backends and their
 * inside addresses, in config order (pools alone: METRIC_POOL).
 * Return convention: 0, or -1 when the object does not exist (also a path without a
 * port map). */
#ifndef TWLB_WALK_H
#define TWLB_WALK_H

#include "admin/metrics.h"

/* Fill <out> for the object of <scope> at <i> (listener; or pool), <j> (backend) and
 * <k> (inside address); unused indexes are ignored. */
int walk_at(const struct view *v, enum metric_scope scope, size_t i, size_t j, size_t k,
            struct metric_src *out);

/* Call <fn> for every object of <scope>. */
void walk_each(const struct view *v, enum metric_scope scope,
               void (*fn)(void *arg, const struct metric_src *src), void *arg);

#endif
