#!/usr/bin/env python3
"""The packaging tests (tests/package/test_*.py): the schema against the loader's key
tables, the man pages, make install and make deb.  The same runner as the integration
tests; run with /usr/bin/python3, which sees Debian's python3-jsonschema."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import run  # noqa: E402 - tests/integration/run.py, found through the path above

if __name__ == "__main__":
    sys.exit(run.main(HERE))
