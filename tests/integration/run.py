#!/usr/bin/env python3
"""Runs every test_* function of every tests/integration/test_*.py through the real
binaries (tests/package/run.py runs its folder with the same main).  Optional arguments
are substrings that select tests.  Prints PASS/FAIL/SKIP per
test and, last, "N passed, N failed" (", N skipped"); exits non-zero on any failure."""
import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(here=HERE):
    only = sys.argv[1:]
    passed = failed = skipped = 0
    failures = []
    for fname in sorted(os.listdir(here)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(fname[:-3], os.path.join(here, fname))
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception:
            print("FAIL %s: cannot import\n%s" % (fname, traceback.format_exc()), flush=True)
            failed += 1
            continue
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            full = "%s::%s" % (fname[:-3], name)
            if only and not any(o in full for o in only):
                continue
            fn = getattr(mod, name)
            if not callable(fn):
                continue
            t0 = time.monotonic()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - any exception is a test result
                if type(e).__name__ == "Skip":
                    print("SKIP %s: %s" % (full, e), flush=True)
                    skipped += 1
                    continue
                failed += 1
                failures.append(full)
                print("FAIL %s (%.2fs): %s\n%s" % (full, time.monotonic() - t0, e,
                                                   traceback.format_exc()), flush=True)
                continue
            passed += 1
            print("PASS %s (%.2fs)" % (full, time.monotonic() - t0), flush=True)
    if failures:
        print("failed: " + ", ".join(failures))
    print("%d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
