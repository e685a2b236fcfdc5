"""The short cases of the fault suite (tests/faults, make faults), run by make test too:
each takes under 2 s.  The rest of the suite (idle connections, 10,000 backends, 100
SIGHUPs, descriptor exhaustion for seconds, hostile state files) runs in make faults."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "faults"))

from test_backends import (  # noqa: E402,F401
    test_all_backends_refusing_refuses_clients_at_once_and_counts_them,
    test_backend_killed_mid_stream_resets_the_client,
    test_backend_resets_reach_every_client_as_resets,
    test_blackhole_backend_times_out_and_the_client_is_retried_elsewhere,
)
