#!/usr/bin/env python3
"""Profile twlb (1 worker; TARGET="HAProxy nbthread 1" etc. for a peer) under the c50 load of `make bench`: perf record -g, or
strace -c -f with STRACE=1
(STRACE=setsockopt,getsockopt: every such call, not a summary).  Same namespace, backends and config as proxies.py.

    DURATION=8 python3 tests/bench/profile.py [OUT_DIR]

SYSCOUNT=1 counts system calls with perf stat on the syscall tracepoints instead of
strace: at full speed (strace slows every proxy about twentyfold, which changes what
depends on timing: how many events one epoll_wait returns, how long a connect takes),
into OUT_DIR/syscount.txt, and prints them per connection, with the TCP segments sent
in the namespace (every hop of the load: client, proxy, backend; /proc/net/snmp OutSegs).

LOAD=redis profiles redis-benchmark SET and GET (REDIS_N requests each, 50 clients, not
pipelined) and LOAD=wrk profiles wrk (50 keep-alive connections, DURATION seconds), as
in make bench.  LOAD=bulk profiles the "bulk 1 stream" load instead (streams of BULK_MB MiB, one at a
time, for DURATION seconds); TWLB_SPLICE=off runs twlb with "splice": "off" (proxies.py).

Writes OUT_DIR/perf.data and OUT_DIR/perf-report.txt (or OUT_DIR/strace.txt) and prints
the connections twstress completed (and, for bulk, the MiB moved), so counts can be
divided per connection or per MiB.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxies as P  # noqa: E402


# Named in SYSCOUNT=1's table (the total counts every call).
SYSCALLS = ["accept4", "socket", "setsockopt", "getsockopt", "bind", "connect", "ioctl",
            "epoll_ctl", "epoll_wait", "recvfrom", "read", "sendto", "write", "splice",
            "shutdown", "close", "getpeername"]


def out_segs(h):
    """TCP segments sent so far in the bench namespace (Tcp: OutSegs)."""
    return P.kernel_counter(h, "/proc/net/snmp", "Tcp", "OutSegs")


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/profile")
    os.makedirs(out, exist_ok=True)
    h = P.Host()
    try:
        load = os.environ.get("LOAD", "c50")
        bulk = load == "bulk"
        P.start_backends(h, out, ["short", "echo"] + {"redis": ["redis"], "wrk": ["http"],
                                                      "bulk": ["bulk"]}.get(load, []))
        t = [x for x in P.TARGETS if x[0] == os.environ.get("TARGET", "twlb w1")][0]
        p = P.start(h, out, t[1], t[2], t[3], t[4])
        if os.environ.get("SYSCOUNT"):
            ev = ["raw_syscalls:sys_enter"] + ["syscalls:sys_enter_" + c for c in SYSCALLS]
            tool = subprocess.Popen(["perf", "stat", "-x", ",", "-o",
                                     os.path.join(out, "syscount.txt"), "-e", ",".join(ev),
                                     "-p", ",".join(map(str, P.family(p.pid)))])
        elif os.environ.get("STRACE"):
            mode = ["-c"] if os.environ["STRACE"] == "1" else ["-e", "trace=" + os.environ["STRACE"]]
            tool = subprocess.Popen(["strace"] + mode + ["-f", "-o", os.path.join(out, "strace.txt"),
                                     "-p", ",".join(map(str, P.family(p.pid)))])
        else:
            tool = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g",
                                     "-o", os.path.join(out, "perf.data"),
                                     "-p", ",".join(map(str, P.family(p.pid)))],
                                    stderr=subprocess.DEVNULL)
        time.sleep(1)
        segs0 = out_segs(h)
        if load in ("redis", "wrk"):  # requests on 50 persistent connections
            pids = P.family(p.pid)
            if load == "redis":
                c0 = P.cpu_s(pids)
                P.redis_bench(h, t[3], P.LPORT["redis"], P.REDIS_N, 1)
                r = {"requests": 2 * P.REDIS_N, "cpu_us": (P.cpu_s(pids) - c0) * 1e6 / (2 * P.REDIS_N)}
            else:
                w = P.measure_wrk(h, t[3], pids)
                r = {"requests": w["requests"], "cpu_us": w["cpu_us"]}
            tool.send_signal(2)
            tool.wait(60)
            print("requests", r["requests"], "proxy CPU us/request %.2f" % r["cpu_us"])
            r["connections"] = r["requests"]  # SYSCOUNT: per request
        elif bulk:
            r = P.twstress(h, t[3], P.LPORT["bulk"], 1, 0, request=4, nbind=1, discard=True)
        else:
            r = P.twstress(h, t[3], P.LPORT["short"], 50, 128)
        if load not in ("redis", "wrk"):
            tool.send_signal(2)
            tool.wait(60)
            print("connections", r["connections"], "cps", r["cps"])
        if bulk:
            print("MiB", r["connections"] * P.BULK_MB)
        segs = out_segs(h) - segs0
        if os.environ.get("SYSCOUNT"):
            per = r["connections"] * (P.BULK_MB if bulk else 1)
            for line in open(os.path.join(out, "syscount.txt")):
                f = line.strip().split(",")
                if len(f) > 2 and f[0].replace(".", "").isdigit():
                    name = f[2].split(":")[-1].replace("sys_enter_", "")
                    print("%-14s %8.2f per %s" % (name if name != "sys_enter" else "all",
                                                 float(f[0]) / per,
                                                 "MiB" if bulk else "request"
                                                 if load in ("redis", "wrk") else "connection"))
            print("%-14s %8.2f per %s" % ("TCP segments", segs / per, "MiB" if bulk else "request"
                                          if load in ("redis", "wrk") else "connection"))
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
