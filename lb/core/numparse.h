/* numparse.h - numbers on command lines, strictly: the whole string, nothing after it, no
 * sign or space before it ("10abc" and " 5" are errors, not 10 and 5).  Shared by twlb
 * simulate, twstress and twbackend.  Pure.  Return convention: 0 / -1. */
#ifndef TWLB_NUMPARSE_H
#define TWLB_NUMPARSE_H

#include <stdint.h>

/* A whole decimal number in min..max. */
int numparse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* A finite decimal number (as strtod reads it: "2.5", "1e3"). */
int numparse_number(const char *s, double *out);

#endif
