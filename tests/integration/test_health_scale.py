"""Health checks at scale through the real binary (issue #14): 500 backends that accept
nothing (listeners in this process that never accept, so every probe times out waiting
for its reply): the probes are spread over the interval (the sockets twlb holds open at
once, sampled from /proc/PID/fd, stay near n * timeout / interval, not n), and when they
all go down at once the log has a bounded number of "is down" lines and a summary."""
import os
import re
import socket
import threading
import time

import harness as h

N = 500
INTERVAL_MS = 1000
TIMEOUT_MS = 300


def blackholes(ip, n):
    """<n> listening sockets on <ip> that never accept (kept by the caller)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind((ip, 0))
        s.listen(4096)
        socks.append(s)
    return socks


def sample_fds(pid, stop, out):
    while not stop.is_set():
        try:
            out.append((time.monotonic(), h.proc_fds(pid)))
        except OSError:
            pass
        time.sleep(0.002)


def test_probes_are_spread_and_state_lines_bounded():
    n = h.new_net()
    with h.Env() as env:
        socks = blackholes("127.%d.1.1" % n, N)
        try:
            backends = [{"name": "b%d" % i, "address": "127.%d.1.1:%d" % (n, s.getsockname()[1])}
                        for i, s in enumerate(socks)]
            cfg = h.pool_config(n, backends,
                                health={"interval_ms": INTERVAL_MS, "timeout_ms": TIMEOUT_MS,
                                        "fall": 1, "rise": 1, "send": "ping\n",
                                        "expect": "pong"})
            cfg["workers"] = 1
            stop, samples = threading.Event(), []
            p = env.twlb(cfg, wait=False)
            t = threading.Thread(target=sample_fds, args=(p.pid, stop, samples))
            t.start()
            try:
                a = h.admin_addr(cfg)
                h.wait_for(lambda: h.http_get(a, "/healthz")[0] == 200, 10, "twlb up")
                t0 = time.monotonic()
                h.wait_for(lambda: h.metric(h.metrics(a), "twlb_backend_up") == 0, 10,
                           "every backend down", interval=0.2)
                took = time.monotonic() - t0
                time.sleep(2.5)  # two more rounds of probes, and the summary line
            finally:
                stop.set()
                t.join()
            base = min(v for _, v in samples)
            peak = max(v for _, v in samples)
            open_at_once = peak - base
            # spread: about N * TIMEOUT / INTERVAL = 150 probes open at once (+ the admin
            # connections of this test); all at once would be N
            print("probe sockets open at once: peak %d over a baseline of %d fds "
                  "(%d backends, interval %d ms, timeout %d ms); all down after %.2f s" % (
                      open_at_once, base, N, INTERVAL_MS, TIMEOUT_MS, took))
            assert open_at_once < N * TIMEOUT_MS // INTERVAL_MS * 3 // 2, open_at_once
            ms = h.metrics(a)
            assert h.metric(ms, "twlb_backend_state_changes_total") == N
            h.wait_for(lambda: "more backends went down" in open(p.log_path).read(), 3,
                       "the summary line")
            log = open(p.log_path).read()
            down = len(re.findall(r"backend b\d+ \(.*\) is down", log))
            summed = sum(int(x) for x in re.findall(r"and (\d+) more backends went down", log))
            print("log: %d \"is down\" lines, %d more in summary lines" % (down, summed))
            assert down + summed == N, (down, summed)
            assert down <= 20 * 4, down  # 20 a second over the few seconds it took
            assert h.stop(p) == 0
        finally:
            for s in socks:
                s.close()
