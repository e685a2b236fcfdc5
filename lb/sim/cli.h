/* cli.h - `twlb simulate`: the command line of the capacity planner (docs/simulate.md).
 *
 * Contract: reads the options and the config (-c; its pool, backends and reuse.isn are
 * the defaults), runs the model (sim/model.h), prints the summary (text, or one JSON
 * object with --json) on stdout and writes --csv / --svg.  Errors go to stderr.  Returns
 * the process exit status: 0 done, 1 the config or a file failed, 2 bad usage. */
#ifndef TWLB_SIM_CLI_H
#define TWLB_SIM_CLI_H

/* `twlb simulate ...`; argv[0] is "simulate". */
int simulate_main(int argc, char **argv);

#endif
