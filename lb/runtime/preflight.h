/* preflight.h - what would make twlb fail, or run other than the configuration says,
 * although the file is valid: checked before anything is opened, by `twlb --check`, at
 * start and on every reload, so that each says it the same way, naming the file, the
 * line:col and the JSON path (config/message.h).
 *
 * Errors (the start or the reload would fail later, less clearly):
 *   - admin.token_file that cannot be read, or holds no usable token (<token>);
 *   - log.file, log.access_log or reuse.state_file in a directory that does not exist
 *     (or is not a directory, or cannot be reached);
 *   - and, at a check or a start (not a reload, which keeps the open files), one this
 *     process cannot write: the log file (or its directory, when it does not exist yet),
 *     the state file's directory (a start writes the state file anew next to its name).
 * Warnings (twlb runs, but not as asked):
 *   - reuse.isn "explicit" or reuse.local_time_wait "destroy" while this process lacks
 *     CAP_NET_ADMIN: only for PREFLIGHT_CHECK, which may run as another user than the
 *     service (at a start or a reload the ISN mode's resolution refuses, runtime/gen.c);
 *   - pools[].source_ports that the kernel may also hand out as ephemeral ports
 *     (net.ipv4.ip_local_port_range, less ip_local_reserved_ports; core/portrange.h).
 *     Skipped when /proc/sys cannot be read (the systemd unit's ProcSubset=pid).
 *
 * Return convention: the number of errors added. */
#ifndef TWLB_PREFLIGHT_H
#define TWLB_PREFLIGHT_H

#include <stddef.h>

#include "config/config.h"

enum preflight_when { PREFLIGHT_CHECK, PREFLIGHT_START, PREFLIGHT_RELOAD };

/* Read the token of <path>: 0, or -1 with what is wrong in <err> ("cannot read PATH:
 * why"); main.c passes admin_read_token's check (runtime/ cannot include admin/). */
typedef int preflight_token_fn(const char *path, char *err, size_t errlen);

int preflight_run(const struct config *c, enum preflight_when when, preflight_token_fn *token,
                  struct cfg_errors *errs, struct cfg_errors *warns);

/* preflight_run(), and every message where the command line shows it: for --check
 * (PREFLIGHT_CHECK) and a start, errors on stderr followed by "twlb: N errors in FILE;
 * not starting", as config errors are; on a reload, in the log followed by "reload: N
 * errors in FILE; keeping the running configuration".  Warnings: on stderr with "twlb:
 * N warnings in FILE" for --check, in the log on a reload, and at a start into <later>
 * (the log is not open yet; the caller logs them).  Returns 0, or -1 on any error. */
int preflight_report(const struct config *c, enum preflight_when when,
                     preflight_token_fn *token, struct cfg_errors *later);

#endif
