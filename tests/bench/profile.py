#!/usr/bin/env python3
"""Profile twlb (1 worker; TARGET="HAProxy nbthread 1" etc. for a peer) under the c50 load of `make bench`: perf record -g, or
strace -c -f with STRACE=1
(STRACE=setsockopt,getsockopt: every such call, not a summary).  Same namespace, backends and config as proxies.py.

    DURATION=8 python3 tests/bench/profile.py [OUT_DIR]

Writes OUT_DIR/perf.data and OUT_DIR/perf-report.txt (or OUT_DIR/strace.txt) and prints
the connections twstress completed, so counts can be divided per connection.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxies as P  # noqa: E402


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/profile")
    os.makedirs(out, exist_ok=True)
    h = P.Host()
    try:
        tb = os.path.join(P.ROOT, "backends/twbackend")
        h.popen([tb, "--listen", "%s:%d" % (P.BE, P.PORTS["short"]), "--quiet",
                 "--backlog", P.BACKLOG, "--mode", "close-first", "--reply-bytes", 128,
                 "--name", "short"], stdout=subprocess.DEVNULL)
        h.popen([tb, "--listen", "%s:%d" % (P.BE, P.PORTS["echo"]), "--quiet",
                 "--mode", "echo", "--name", "echo"], stdout=subprocess.DEVNULL)
        t = [x for x in P.TARGETS if x[0] == os.environ.get("TARGET", "twlb w1")][0]
        p = P.start(h, out, t[1], t[2], t[3], t[4])
        if os.environ.get("STRACE"):
            mode = ["-c"] if os.environ["STRACE"] == "1" else ["-e", "trace=" + os.environ["STRACE"]]
            tool = subprocess.Popen(["strace"] + mode + ["-f", "-o", os.path.join(out, "strace.txt"),
                                     "-p", ",".join(map(str, P.family(p.pid)))])
        else:
            tool = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g",
                                     "-o", os.path.join(out, "perf.data"),
                                     "-p", ",".join(map(str, P.family(p.pid)))],
                                    stderr=subprocess.DEVNULL)
        time.sleep(1)
        r = P.twstress(h, t[3], P.LPORT["short"], 50, 128)
        tool.send_signal(2)
        tool.wait(60)
        print("connections", r["connections"], "cps", r["cps"])
        h.stop(p)
    finally:
        h.close()
    if not os.environ.get("STRACE"):
        with open(os.path.join(out, "perf-report.txt"), "w") as f:
            subprocess.run(["perf", "report", "-i", os.path.join(out, "perf.data"),
                            "--no-children", "--stdio", "--percent-limit", "0.5",
                            "-g", "none", "--sort", "sym"], stdout=f,
                           stderr=subprocess.DEVNULL)
    print("bench: wrote", out)


if __name__ == "__main__":
    main()
