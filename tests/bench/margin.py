#!/usr/bin/env python3
"""The kernel-mode safety margin, measured (docs/reuse.md, "The kernel-mode margin").

In kernel ISN mode twlb reuses a 4-tuple the backend holds in TIME_WAIT only when the
kernel's own ISN (hash + CLOCK_REALTIME_ns / 64, kernel-facts 3) is predicted to be at
least `reuse.kernel_margin_us` past the old connection's rcv_nxt.  Two measurements, both
in network namespaces (tests/integration/netns.py, 198.18.0.0/15), both bounded:

  clock   how far twlb's clock readings are from the moment the kernel computes the ISN
          in connect(): tests/bench/margin_clock (the runtime's own clock and socket code)
          on one 4-tuple, SYNs captured on the wire; idle, then with every core busy
          (a bounded busy loop per core).  Also the jitter between the CLOCK_REALTIME and
          CLOCK_MONOTONIC readings that the step detector compares.
  sweep   twlb in kernel mode against a strict backend (tcp_timestamps=0,
          tcp_rfc1337=1: a "before" SYN stalls until TIME_WAIT ends), backend closes
          first, 8 source ports, random upload sizes and hold times, clients that retry
          at once when twlb has no usable port (so reuses happen right when a port turns
          safe); one run per margin, downward.  Counts stalls three ways (twlb's
          twlb_syn_retransmits_total, TcpExtTCPSynRetrans by nstat in twlb's namespace,
          SYNs seen twice on the wire) and, for every reuse, compares twlb's prediction
          (logged at debug level) with the ISNs captured on the backend's side.

    python3 tests/bench/margin.py clock [--samples 50000]
    python3 tests/bench/margin.py sweep [--margins-us 1000000,...] [--seconds 60] [--load]
    make margin            both with the defaults (under 20 minutes)

Needs root; not part of make test."""
import argparse
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness as h  # noqa: E402
import netns  # noqa: E402

LB, BE = "198.18.0.1", "198.18.0.2"
SEQ_NS = 64                      # one sequence number of the kernel's ISN clock, in ns
CLOCK_TOOL = os.environ.get("MARGIN_CLOCK_BIN") or os.path.join(
    ROOT, "build", "rel", "bench", "margin_clock")


# ---- helpers -------------------------------------------------------------------------

def pct(sorted_vals, p):
    """The p-th percentile (nearest rank) of an already sorted list."""
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals))) - 1))
    return sorted_vals[i]


def dist(vals):
    """median, p99, p99.99, max (and min) of a list of ns values."""
    v = sorted(vals)
    return {"n": len(v), "min": v[0], "median": pct(v, 50), "p99": pct(v, 99),
            "p99.99": pct(v, 99.99), "max": v[-1]}


def fmt_row(name, d):
    cells = []
    for k in ("median", "p99", "p99.99", "max"):
        ns = d[k]
        cells.append("%.1f us (%d)" % (ns / 1000.0, round(ns / SEQ_NS)))
    return "| %s | %s | %d |" % (name, " | ".join(cells), d["n"])


class BusyLoad:
    """One bounded busy loop per core (each ends by itself after <seconds>); stopped by
    PID on exit."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.procs = []

    def __enter__(self):
        code = "import time\nend=time.monotonic()+%f\nwhile time.monotonic()<end: pass\n" % \
            self.seconds
        for _ in range(os.cpu_count() or 1):
            self.procs.append(subprocess.Popen([sys.executable, "-c", code]))
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(5)
        return False


def two_hosts(be_tw="strict"):
    t = netns.Topology()
    t.add_host("lb")
    t.add_host("be", tw=be_tw)
    dev, _ = t.link("lb", LB + "/24", "be", BE + "/24")
    return t, dev


# ---- clock: read-to-SYN error --------------------------------------------------------

def clock_run(t, dev, samples, gap_us, port):
    r = t.run("lb", [CLOCK_TOOL, "--src", LB, "--port", str(port), "--dst", BE + ":9",
                     "--iface", dev, "--count", str(samples), "--gap-us", str(gap_us)],
              timeout=600)
    if r.returncode != 0:
        raise SystemExit("margin_clock failed: " + r.stderr)
    rows = [tuple(int(x) for x in line.split()) for line in r.stdout.splitlines()]
    return rows


def clock_analyse(rows):
    """Per sample: d (decision reading), r (recorded SYN time), k (the kernel's time,
    from the ISN).  Returns the distributions in ns (see docs/reuse.md)."""
    seen = [x for x in rows if x[4] >= 0]
    missing = len(rows) - len(seen)
    d0 = seen[0][0]
    u, prev = 0, seen[0][4]
    x, y, skew_d, skew_r = [], [], [], []
    for d_real, d_mono, r_real, r_mono, isn in seen:
        u += (isn - prev) % (1 << 32)
        prev = isn
        kt = u * SEQ_NS                       # kernel time since sample 0 (+-64 ns)
        x.append(kt - (d_real - d0))          # decide->ISN, relative to sample 0
        y.append(kt - (r_real - d0))          # record->ISN, relative to sample 0
        skew_d.append(d_real - d_mono)
        skew_r.append(r_real - r_mono)
    base = min(y)                             # the fastest record->ISN: the zero
    e_decide = [v - base for v in x]
    e_record = [v - base for v in y]
    rnd = random.Random(1)
    # A reuse: a decision now against the SYN time recorded for an earlier connection.
    # err > 0: the kernel's ISN is further on than predicted (safe at the lower edge).
    err = [x[i] - y[rnd.randrange(len(y))] for i in range(len(x))]
    med_d, med_r = sorted(skew_d)[len(skew_d) // 2], sorted(skew_r)[len(skew_r) // 2]
    jitter = [abs(v - med_d) for v in skew_d] + [abs(v - med_r) for v in skew_r]
    return {
        "samples": len(rows), "missing_syn": missing,
        "decide_to_isn": dist(e_decide), "record_to_isn": dist(e_record),
        "reuse_error": dist(err),
        "worst_low": min(x) - max(y), "worst_high": max(x) - min(y),
        "real_minus_mono_jitter": dist(jitter),
    }


def print_clock(label, a):
    print("\n### %s: %d samples, %d SYNs not seen" % (label, a["samples"], a["missing_syn"]))
    print("| ns after the reading (sequence numbers) | median | p99 | p99.99 | max | n |")
    print("|---|---|---|---|---|---|")
    print(fmt_row("decision -> ISN (backend_acquire)", a["decide_to_isn"]))
    print(fmt_row("recorded SYN time -> ISN (upconn)", a["record_to_isn"]))
    print(fmt_row("|realtime - monotonic| jitter", a["real_minus_mono_jitter"]))
    e = a["reuse_error"]
    print("reuse error (true - predicted advance) over random pairs: min %.1f us, median "
          "%.1f us, max %.1f us" % (e["min"] / 1e3, e["median"] / 1e3, e["max"] / 1e3))
    print("worst case of any pair: %.1f us (%d seq) below, %.1f us (%d seq) above the "
          "prediction" % (-a["worst_low"] / 1e3, round(-a["worst_low"] / SEQ_NS),
                          a["worst_high"] / 1e3, round(a["worst_high"] / SEQ_NS)))


def cmd_clock(args):
    if not os.path.exists(CLOCK_TOOL):
        raise SystemExit("%s is missing: make build/rel/bench/margin_clock" % CLOCK_TOOL)
    out = {}
    with netns.Topology() as t:
        t.add_host("lb")
        t.add_host("be", tw="strict")
        dev, _ = t.link("lb", LB + "/24", "be", BE + "/24")
        for label, load in (("idle", False), ("all cores busy", True)):
            t0 = time.monotonic()
            if load:
                with BusyLoad(args.max_seconds):
                    rows = clock_run(t, dev, args.samples, args.gap_us, 30000)
            else:
                rows = clock_run(t, dev, args.samples, args.gap_us, 30000)
            a = clock_analyse(rows)
            a["seconds"] = round(time.monotonic() - t0, 1)
            out[label] = a
            print_clock("%s (%.1f s)" % (label, a["seconds"]), a)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


# ---- main ----------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("clock")
    c.add_argument("--samples", type=int, default=50000)
    c.add_argument("--gap-us", type=int, default=200,
                   help="random pause 0..G us between samples")
    c.add_argument("--max-seconds", type=float, default=120,
                   help="bound of the busy loops")
    c.add_argument("--json")
    a = p.parse_args()
    netns.require()
    if a.cmd == "clock":
        cmd_clock(a)


if __name__ == "__main__":
    main()
