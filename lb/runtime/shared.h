/* shared.h - what the workers of a group share, by name, for as long as the group
 * lives: a backend's flags (health verdict, demotion, live connections and slots; see
 * struct backend_flags) and plain counters (limits.h).  Each is created on first
 * request, under one mutex; after that the workers touch it with atomic operations
 * only.  Only group.c holds one.
 *
 * Return convention: NULL on OOM. */
#ifndef TWLB_SHARED_H
#define TWLB_SHARED_H

#include "runtime/types.h"

struct shared;

struct shared *shared_new(void);
void shared_free(struct shared *sh); /* NULL ok */

/* The flags of backend <b> (by name and address) of pool <pool>. */
struct backend_flags *shared_backend(struct shared *sh, const char *pool,
                                     const struct cfg_backend *b);
/* The counter named <key>, 0 when created. */
unsigned *shared_counter(struct shared *sh, const char *key);

#endif
