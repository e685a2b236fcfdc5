/* procinfo.h - figures of this process from /proc (Linux).  Each call reads /proc once;
 * small enough to run on the event loop for an admin request.
 * Return convention: the figure, or -1 when /proc cannot be read. */
#ifndef TWLB_PROCINFO_H
#define TWLB_PROCINFO_H

#include <stdint.h>

int64_t procinfo_open_fds(void);       /* open file descriptors (/proc/self/fd) */
int64_t procinfo_resident_bytes(void); /* resident memory (/proc/self/statm) */

#endif
