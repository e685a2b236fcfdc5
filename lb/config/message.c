/* message.c - see message.h. */
#include "config/message.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void message_add(const struct config *c, struct message_pos *pos, struct cfg_errors *out,
                 const char *severity, const char *jpath, const char *fmt, ...)
{
    char msg[768], where[64] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!pos->read) {
        pos->read = 1;
        size_t len = 0;
        int e = 0;
        char *text = config_read_file(c->path, &len, &e);
        if (text)
            (void)jsonpos_scan(&pos->pos, text, len);
        free(text);
    }
    const struct jsonpos_entry *p = jsonpos_find(&pos->pos, jpath);
    if (p)
        snprintf(where, sizeof where, ":%d:%d", p->line, p->col);
    cfg_errors_add(out, "%s%s: %s%s%s: %s", c->path, where, severity ? severity : "",
                   severity ? ": " : "", jpath, msg);
}

void message_pos_free(struct message_pos *pos)
{
    jsonpos_free(&pos->pos);
    pos->read = 0;
}
