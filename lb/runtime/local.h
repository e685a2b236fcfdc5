/* local.h - failures of this machine, not of a backend: out of file descriptors, of
 * socket buffers, of memory.  They are counted and logged (at most once a second per
 * worker, with how many were not logged), and they never count against a backend's
 * health: a backend must not be ejected because twlb ran out of descriptors. */
#ifndef TWLB_LOCAL_H
#define TWLB_LOCAL_H

#include "runtime/types.h"

/* Is <err> (a negative errno or libuv error) a local resource error? */
int local_is_resource_error(int err);

/* Count a local error of worker <w> at <where> ("accept on web", "socket toward b1") and
 * log it, rate-limited. */
void local_error(struct worker *w, const char *where, int err);

#endif
