/* jsonpos.h - where each value of a JSON text is: line and column by JSON path.
 *
 * jansson's decoded values carry no position, so error messages that name a line:col
 * come from this second, tolerant pass over the same text.  Paths are written as in
 * error messages: "" for the top-level value, "pools[0].backends[1].address" below it
 * (object keys joined by ".", array elements by "[N]"; a key's escapes are kept as
 * written).  Line and column count from 1, in bytes.
 *
 * The scanner expects text that jansson has already accepted: on anything else it
 * stops early and keeps what it noted so far (a lookup then simply finds less).
 * Nesting deeper than 64 levels is not noted. */
#ifndef TWLB_JSONPOS_H
#define TWLB_JSONPOS_H

#include <stddef.h>

struct jsonpos_entry {
    char *path;
    int line, col;
};

struct jsonpos {
    struct jsonpos_entry *e;
    size_t n, cap;
};

/* Note the position of every value of <text>.  Returns 0, or -1 when the text was not
 * scanned to its end (malformed or out of memory); the entries noted stay usable. */
int jsonpos_scan(struct jsonpos *jp, const char *text, size_t len);

/* The position of the value at <path>, or NULL. */
const struct jsonpos_entry *jsonpos_find(const struct jsonpos *jp, const char *path);

void jsonpos_free(struct jsonpos *jp);

#endif
