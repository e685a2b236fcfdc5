/* dashboard.c - see dashboard.h.  The page itself is generated from dashboard.html. */
#include "admin/dashboard.h"

#include <stdlib.h>
#include <string.h>

char *dashboard_render(size_t *len)
{
    char *s = malloc(dashboard_html_len + 1);
    if (!s)
        return NULL;
    memcpy(s, dashboard_html, dashboard_html_len + 1);
    *len = dashboard_html_len;
    return s;
}
