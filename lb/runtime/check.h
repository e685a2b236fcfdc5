/* check.h - active health checks of the backends that have "health" configured.  A probe
 * is a real connection through the same upconn as client traffic: its source port comes
 * from the same bookkeeping and its TIME_WAIT is accounted for like any other. */
#ifndef TWLB_CHECK_H
#define TWLB_CHECK_H

#include "runtime/types.h"

/* Start one periodic probe per backend of <g> with health.enabled.  Returns how many, or
 * a negative errno. */
int check_start_all(struct gen *g);

/* Stop every probe of <g> (reload, drain): each counts in g->handles_closing until its
 * last handle has closed. */
void check_stop_all(struct gen *g);

#endif
