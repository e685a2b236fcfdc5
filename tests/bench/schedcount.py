#!/usr/bin/env python3
"""Who wakes whom at the c50 load of `make bench`: `perf sched record -a` for 1.5 s in
the middle of a twstress run through each target, then per task name how often it was
switched out asleep (S) or preempted while runnable (R), and by whom; and, from /proc,
the proxy's and the backend's voluntary and involuntary context switches per connection.
Same namespace, backends and configs as proxies.py (TWLB_BIN= for another twlb build).

    DURATION=5 TARGETS="twlb w1,HAProxy nbthread 1" python3 tests/bench/schedcount.py

docs/benchmarks.md, "Why the connection rate is not 1.10x the peers here", shows what it
found.  perf sched records every CPU: run it on a quiet machine.
"""
import collections
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxies as P  # noqa: E402


def switches(pids):
    """(voluntary, involuntary) context switches over every thread of <pids>."""
    v = nv = 0
    for p in pids:
        for t in os.listdir("/proc/%d/task" % p):
            with open("/proc/%d/task/%s/status" % (p, t)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        v += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        nv += int(line.split()[1])
    return v, nv


def count(data):
    """sched_switch lines of <data>: {(task, state): n} and {(preempted, by): n}."""
    txt = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,cpu,event,trace"],
                         capture_output=True, text=True).stdout
    out, pre = collections.Counter(), collections.Counter()
    for line in txt.splitlines():
        if "sched_switch:" not in line:
            continue
        prev, nxt = line.split("sched_switch:")[1].split("==>")
        task = prev.split("prev_comm=")[1].split()[0]
        state = prev.split("prev_state=")[1].split()[0]
        out[(task, state)] += 1
        if state.startswith("R"):
            pre[(task, nxt.split("next_comm=")[1].split()[0])] += 1
    return out, pre


def main():
    names = [n for n in os.environ.get("TARGETS", "twlb w1,HAProxy nbthread 1").split(",") if n]
    h = P.Host()
    work = tempfile.mkdtemp(prefix="twlb-sched.")
    try:
        be = P.start_backends(h, work, ["short", "echo"])["short"]
        for t in [x for x in P.TARGETS if x[0] in names and x[1] != "direct"]:
            p = P.start(h, work, t[1], t[2], t[3], t[4])
            pids, bp = P.family(p.pid), P.family(be.pid)
            data = os.path.join(work, "sched-%s.data" % t[1])
            rec = subprocess.Popen(["bash", "-c", "sleep %g; exec perf sched record -a -o %s "
                                    "-- sleep 1.5" % (min(2, P.DURATION / 3), data)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            (v0, n0), (bv0, bn0) = switches(pids), switches(bp)
            r = P.twstress(h, t[3], P.LPORT["short"], 50, 128)
            (v1, n1), (bv1, bn1) = switches(pids), switches(bp)
            rec.wait()
            h.stop(p)
            n = max(1, r["connections"])
            print("%s: %.0f conn/s; per connection: proxy %.3f voluntary, %.3f involuntary; "
                  "backend %.3f voluntary, %.3f involuntary" % (
                      t[0], r["cps"], (v1 - v0) / n, (n1 - n0) / n, (bv1 - bv0) / n,
                      (bn1 - bn0) / n))
            out, pre = count(data)
            print("  in 1.5 s, switched out (task, state):",
                  ", ".join("%s %s %d" % (k[0], k[1], c) for k, c in out.most_common(8)))
            print("  preempted (task by task):",
                  ", ".join("%s by %s %d" % (k[0], k[1], c) for k, c in pre.most_common(6)))
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
