#!/usr/bin/env python3
"""Where the machine's CPU goes per connection at the c50 load of `make bench`: the
proxy's CPU, the backend's, and the whole machine's (/proc/stat, so the load generator
and softirq work too), per target, in interleaved rounds.  It answers whether a proxy
that spends less CPU per connection can show more conn/s here: only when the machine
is the bottleneck, and then by its share of the whole.

    ROUNDS=2 DURATION=8 TARGETS="twlb w1,HAProxy nbthread 1" python3 tests/bench/cpusplit.py

TARGETS are names from proxies.py (default: every proxy with 1 and 2 workers, and
nginx with half-closes).  Same namespace, backends and configs as proxies.py.
"""
import os
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxies as P  # noqa: E402


def busy_jiffies():
    """(all, idle) jiffies over every CPU since boot."""
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v), v[3] + v[4]  # idle + iowait


def main():
    names = [n for n in os.environ.get("TARGETS", "").split(",") if n]
    targets = [t for t in P.TARGETS if t[0] in names] if names else \
        [t for t in P.TARGETS if t[1] != "direct"]
    rounds = int(os.environ.get("ROUNDS", "2"))
    h = P.Host()
    work = tempfile.mkdtemp(prefix="twlb-cpusplit.")
    try:
        be = P.start_backends(h, work, ["short", "echo"])["short"]
        print("%-28s %7s %9s %9s %9s %7s" % ("target", "conn/s", "proxy us", "backend us",
                                             "machine us", "busy"))
        for rnd in range(rounds):
            k = rnd % len(targets)
            for t in targets[k:] + targets[:k]:
                p = P.start(h, work, t[1], t[2], t[3], t[4])
                pids, bp = P.family(p.pid), P.family(be.pid)
                c0, b0, (a0, i0) = P.cpu_s(pids), P.cpu_s(bp), busy_jiffies()
                r = P.twstress(h, t[3], P.LPORT["short"], 50, 128)
                c1, b1, (a1, i1) = P.cpu_s(pids), P.cpu_s(bp), busy_jiffies()
                h.stop(p)
                n = max(1, r["connections"])
                busy = (a1 - a0) - (i1 - i0)
                print("%-28s %7.0f %9.1f %9.1f %9.1f %6.0f%%" % (
                    t[0], r["cps"], (c1 - c0) * 1e6 / n, (b1 - b0) * 1e6 / n,
                    busy / P.TCK * 1e6 / n, 100.0 * busy / max(1, a1 - a0)), flush=True)
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
