/* dashboard.h - GET / on the admin endpoint: one self-contained HTML page (no external
 * asset) that fetches /stats once a second and draws, per pool, backend and inside
 * address, the source ports by state as an occupancy bar, headroom (free ports), health,
 * and connections per second computed in the page from successive samples.
 *
 * The page is lb/admin/dashboard.html; the Makefile turns it into a C array at build time
 * (xxd -i into $(BUILD)/gen/dashboard_html.c, which defines the two symbols below), so
 * the file is edited as HTML and the binary needs nothing at run time. */
#ifndef TWLB_DASHBOARD_H
#define TWLB_DASHBOARD_H

#include <stddef.h>

extern const char dashboard_html[];     /* the page, NUL-terminated */
extern const size_t dashboard_html_len; /* its length without the NUL */

/* A malloc'ed copy of the page (the HTTP server frees what it sends), its length in
 * *len; NULL when out of memory. */
char *dashboard_render(size_t *len);

#endif
