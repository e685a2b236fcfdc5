#!/usr/bin/env python3
"""make scale-test: runs every test_* function of every tests/scale/test_*.py (twlb nodes
behind BGP/ECMP and a VRRP pair in network namespaces, the simulator against real runs)
with the integration suite's runner (tests/integration/run.py).  Optional arguments are
substrings that select tests.  Prints PASS/FAIL/SKIP per test and, last, "N passed, N
failed" (", N skipped"); exits non-zero on any failure."""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(HERE, "..", "integration")
sys.path.insert(0, HERE)
sys.path.insert(0, INTEGRATION)  # harness.py, netns.py


def _integration_runner():
    spec = importlib.util.spec_from_file_location("integration_run",
                                                  os.path.join(INTEGRATION, "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


if __name__ == "__main__":
    sys.exit(_integration_runner().main(here=HERE))
