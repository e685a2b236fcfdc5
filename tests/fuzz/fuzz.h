/* fuzz.h - the libFuzzer entry points every harness in tests/fuzz/ defines.  The same
 * harness links either with libFuzzer (clang -fsanitize=fuzzer: `make fuzz`) or with
 * replay.c (gcc -fsanitize=address,undefined: `make fuzz-replay`, part of `make test`). */
#ifndef TWLB_FUZZ_H
#define TWLB_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional: once, before the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif
