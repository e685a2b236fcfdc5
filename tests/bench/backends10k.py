#!/usr/bin/env python3
"""10,000 backends (issue #14 item 8): how long config loading, a reload, /metrics and
/stats take, and whether they stall the data path: a client doing request/response
through twlb at the same time records its worst round trip while each runs.

One pool of N backends (default 10,000; nothing listens there, health checks off) from
one inside address, and a second pool with one echo backend that the client uses, on
the same workers.  Loopback only (127.60.0.0/16).  Run: python3 tests/bench/backends10k.py
[N].  Prints one line per figure; docs/benchmarks.md has the numbers."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness as h  # noqa: E402

NET = 60


def config(n, echo_addr):
    backends = [{"name": "b%d" % i,
                 "address": "127.%d.%d.%d:%d" % (NET, 10 + i // 250, 1 + i % 250, 9000)}
                for i in range(n)]
    return {
        "listeners": [{"name": "big", "bind": "127.%d.2.1:%d" % (NET, h.free_port("127.%d.2.1" % NET)),
                       "pool": "big"},
                      {"name": "echo", "bind": "127.%d.2.2:%d" % (NET, h.free_port("127.%d.2.2" % NET)),
                       "pool": "echo"}],
        "pools": [{"name": "big", "inside": ["127.%d.4.1" % NET], "backends": backends},
                  {"name": "echo", "inside": ["127.%d.4.2" % NET],
                   "backends": [{"name": "e1", "address": echo_addr}]}],
        "reuse": {"isn": "off"},
        "admin": {"bind": "127.%d.3.1:%d" % (NET, h.free_port("127.%d.3.1" % NET))},
        "log": {"level": "debug"},
    }


class PingPong(threading.Thread):
    """Request/response on one connection through twlb; the worst round trip of each
    window (reset by take())."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.s = socket.create_connection(h.split_addr(addr), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stop = threading.Event()
        self.worst = 0.0
        self.count = 0
        self.lock = threading.Lock()

    def run(self):
        msg = b"x" * 64
        while not self.stop.is_set():
            t0 = time.monotonic()
            self.s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                got += self.s.recv(4096)
            dt = time.monotonic() - t0
            with self.lock:
                self.worst = max(self.worst, dt)
                self.count += 1
            time.sleep(0.001)

    def take(self):
        with self.lock:
            w, c = self.worst, self.count
            self.worst, self.count = 0.0, 0
        return w * 1000, c


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return (time.monotonic() - t0) * 1000, r


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    with h.Env() as env:
        echo = env.backend("e1", "127.%d.1.1:0" % NET, "echo")
        cfg = config(n, echo.addr)
        path = env.write_config(cfg)
        ms, r = timed(lambda: subprocess.run([h.TWLB, "--check", path], capture_output=True))
        assert r.returncode == 0, r.stderr
        print("config: %d backends, %d KiB; twlb --check: %.0f ms" % (
            n, os.path.getsize(path) // 1024, ms))
        t0 = time.monotonic()
        p = env.twlb(cfg)
        print("start to /healthz 200: %.0f ms; RSS %d MiB" % (
            (time.monotonic() - t0) * 1000, h.proc_rss_kb(p.pid) // 1024))
        a = h.admin_addr(cfg)
        pp = PingPong(cfg["listeners"][1]["bind"])
        pp.start()
        time.sleep(1)
        w, c = pp.take()
        time.sleep(2)
        w, c = pp.take()
        print("client round trips, quiet: worst %.2f ms over %d" % (w, c))
        for what in ("/metrics", "/stats"):
            worst_req = worst_rt = 0
            size = 0
            for _ in range(5):
                pp.take()
                ms, (status, body) = timed(lambda: h.http_get(a, what))
                assert status == 200
                size = len(body)
                time.sleep(0.05)
                worst_req = max(worst_req, ms)
                worst_rt = max(worst_rt, pp.take()[0])
            print("%s (%d KiB): worst of 5 requests %.0f ms; client worst round trip meanwhile "
                  "%.2f ms" % (what, size // 1024, worst_req, worst_rt))
        worst_rl = worst_rt = 0
        for i in range(5):
            pp.take()
            before = open(p.log_path).read().count("reloaded ")
            t0 = time.monotonic()
            p.send_signal(signal.SIGHUP)
            h.wait_for(lambda: open(p.log_path).read().count("reloaded ") > before, 30,
                       "the reload")
            worst_rl = max(worst_rl, (time.monotonic() - t0) * 1000)
            time.sleep(0.05)
            worst_rt = max(worst_rt, pp.take()[0])
        print("SIGHUP to \"reloaded\": worst of 5 %.0f ms; client worst round trip meanwhile "
              "%.2f ms" % (worst_rl, worst_rt))
        log = open(p.log_path).read()
        import re
        snaps = [float(x) for x in re.findall(r"snapshot of \d+ backends in ([\d.]+) ms", log)]
        preps = [float(x) for x in re.findall(r"reload prepared in ([\d.]+) ms", log)]
        print("on a worker's loop: snapshot max %.2f ms (median %.2f, %d taken); reload "
              "prepare max %.2f ms" % (max(snaps), sorted(snaps)[len(snaps) // 2], len(snaps),
                                      max(preps)))
        pp.stop.set()
        pp.join(2)
        assert h.stop(p, timeout=20) == 0


if __name__ == "__main__":
    main()
