#!/usr/bin/env python3
"""make faults: every test_* of tests/faults/test_*.py through the real binaries, with the
integration suite's runner and harness (tests/integration/run.py, harness.py).  Optional
arguments are substrings that select tests.  Prints PASS/FAIL/SKIP per case and, last,
"N passed, N failed"; exits non-zero on any failure.  Every case is bounded in count and
time; loopback only (127.0.0.0/8).  docs/reliability.md has the table of results."""
import os
import resource
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(HERE, "..", "integration")
sys.path.insert(0, INTEGRATION)  # harness.py
sys.path.insert(0, HERE)  # faultlib.py


def _integration_runner():
    import importlib.util
    spec = importlib.util.spec_from_file_location("integration_run",
                                                  os.path.join(INTEGRATION, "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

if __name__ == "__main__":
    # 10,000 idle connections and 10,000 backends need more descriptors than the usual
    # soft limit, in this process (the clients) and in the twlb and backends it starts.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sys.exit(_integration_runner().main(here=HERE))
