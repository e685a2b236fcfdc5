"""twstress through its real binary: --json fields are consistent, errors are counted by
errno name, and it stops by itself."""
import json
import os
import subprocess

import harness as h

TWSTRESS = os.path.join(h.ROOT, "tests", "stress", "twstress")


def run(*args, timeout=30):
    r = subprocess.run([TWSTRESS, *args, "--json"], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_closed_loop_counts_and_stops():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("b", "127.%d.1.1:0" % n, "close-first", "--reply-bytes", "64")
        r = run("--connect", be.addr, "--concurrency", "8", "--connections", "500",
                "--close", "server", "--expect-bytes", "64", "--bind", "127.%d.5.1" % n)
        assert r["attempted"] == 500, r
        assert r["connections"] == 500 and r["errors"] == {}, r
        assert r["cps"] > 0 and r["connect_ms"]["max"] >= r["connect_ms"]["p50"] > 0
        assert r["syn_retransmits"] == 0 and r["slow_connects"] == 0


def test_refused_and_timeouts_by_errno():
    n = h.new_net()
    port = h.free_port("127.%d.1.1" % n)
    r = run("--connect", "127.%d.1.1:%d" % (n, port), "--concurrency", "2",
            "--connections", "10")
    assert r["errors"] == {"ECONNREFUSED": 10}, r
    assert r["connections"] == 0
    with h.Env() as env:
        be = env.backend("h", "127.%d.1.2:0" % n, "hold")  # accepts, never answers
        r = run("--connect", be.addr, "--concurrency", "2", "--connections", "4",
                "--timeout-ms", "300", "--close", "server")
        assert r["errors"] == {"ETIMEDOUT": 4}, r


def test_open_loop_rate_and_duration():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("b", "127.%d.1.1:0" % n, "close-first")
        r = run("--connect", be.addr, "--rate", "200", "--duration", "2", "--close", "server",
                "--expect-bytes", "64")
        assert 380 <= r["attempted"] <= 420, r
        assert r["connections"] == r["attempted"] - sum(r["errors"].values())
        assert 1.9 <= r["duration_s"] < 3.5, r
