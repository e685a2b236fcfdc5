/* message.h - messages about a configuration that has loaded, in the form of the
 * loader's own errors, for checks made afterwards (runtime/preflight.h):
 *     FILE[:LINE:COL]: PATH: what             (an error)
 *     FILE[:LINE:COL]: warning: PATH: what    (with a severity)
 * PATH is a JSON path as in the loader's messages ("pools[0].source_ports").  The
 * positions are those of the file as it reads at the first message given a struct
 * message_pos, which then keeps them for the next ones (one read and one scan per
 * check, not per message); none when the file cannot be read. */
#ifndef TWLB_MESSAGE_H
#define TWLB_MESSAGE_H

#include "config/config.h"
#include "config/jsonpos.h"

struct message_pos {
    int read;                /* zeroed by the caller; set at the first message */
    struct jsonpos pos;
};

/* Add one message about <c>'s value at <jpath> to <out>; <severity> NULL for an error. */
void message_add(const struct config *c, struct message_pos *pos, struct cfg_errors *out,
                 const char *severity, const char *jpath, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

void message_pos_free(struct message_pos *pos);

#endif
