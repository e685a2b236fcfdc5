/* check.h - active health checks of the backends that have "health" configured.  Probes
 * take their source ports from the same port bookkeeping as traffic. */
#ifndef TWLB_CHECK_H
#define TWLB_CHECK_H

#include "runtime/types.h"

/* Start one periodic probe per backend with health.enabled.  Returns how many, or a
 * negative errno. */
int check_start_all(struct server *srv);

/* Stop every probe (drain/exit); memory goes with the last close callback. */
void check_stop_all(struct server *srv);

#endif
