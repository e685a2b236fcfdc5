/* svg.h - the picture of one `twlb simulate` run: source ports per state over time, and
 * connections attempted / accepted at once / stalled / failed per virtual second.
 *
 * Contract: draws from the parameters and the per-second rows of a finished sim_run()
 * (sim/model.h); computes nothing of the model.  Writes to a stream the caller opened and
 * closes.  Returns 0, or -1 if writing failed (ferror() is set; errno says why). */
#ifndef TWLB_SIM_SVG_H
#define TWLB_SIM_SVG_H

#include <stdio.h>

#include "sim/model.h"

/* Write one standalone SVG document (900 x 560) to <f>. */
int sim_svg_write(FILE *f, const struct sim_params *p, const struct sim_result *r);

#endif
