"""Scale faults: 10,000 idle client connections (twlb's memory and descriptors come back
down when they close) and 10,000 backends under health checks (twlb stays responsive,
its probes stay bounded).  Both raise this process's descriptor limit (faultlib)."""
import os
import select
import socket
import subprocess
import sys
import time

import harness as h
from faultlib import alive, raise_nofile, Sampler

# libuv opens one /dev/null per event loop (worker), lazily, at its first TCP handle.
LIBUV_LAZY_FDS = os.cpu_count() or 2

IDLE = 10000


def _open_idle(addr, sources, count, deadline_s=60):
    """<count> connections to <addr>, round robin over <sources>, each proven proxied by
    one echoed byte; returns the sockets.  Bounded by <deadline_s>."""
    host, port = h.split_addr(addr)
    socks, pending = [], {}
    t0 = time.monotonic()
    for i in range(count):
        s = socket.socket()
        s.setsockopt(socket.SOL_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT: port at connect()
        s.bind((sources[i % len(sources)], 0))
        s.settimeout(5)
        s.connect((host, port))
        s.sendall(b"i")
        s.setblocking(False)
        socks.append(s)
        pending[s.fileno()] = s
        if len(pending) >= 500 or i == count - 1:
            ep = select.epoll()
            for fd in pending:
                ep.register(fd, select.EPOLLIN)
            while pending:
                assert time.monotonic() - t0 < deadline_s, "opening took too long"
                for fd, _ in ep.poll(5):
                    c = pending.pop(fd)
                    assert c.recv(1) == b"i"
                    ep.unregister(fd)
            ep.close()
    return socks


def test_ten_thousand_idle_connections_rss_and_fds_come_back_down():
    """10,000 idle proxied connections from 10 client addresses: twlb holds 2 descriptors
    and a bounded amount of memory per connection, and both return to the baseline (within
    a small margin for the allocator) once the clients close."""
    # twlb holds two descriptors per connection.  Where RLIMIT_NOFILE cannot be raised
    # past 20,000 (no CAP_SYS_RESOURCE, as in this project's containers) the count is what
    # fits, and the case says so.
    limit = raise_nofile(65536)
    count = min(IDLE, (limit - 200) // 2)
    if count < IDLE // 2:
        raise h.Skip("RLIMIT_NOFILE is %d: too low for %d connections" % (limit, IDLE))
    n = h.new_net()
    with h.Env() as env:
        b1 = env.backend("b1", "127.%d.1.1:0" % n, "echo")
        b2 = env.backend("b2", "127.%d.1.2:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "b1", "address": b1.addr},
                                {"name": "b2", "address": b2.addr}])
        cfg["pools"][0]["inside"] = ["127.%d.4.%d" % (n, i) for i in (1, 2, 3, 4)]
        cfg["pools"][0]["idle_timeout_ms"] = 600000
        p = env.twlb(cfg)
        addr, admin = h.listen_addr(cfg), h.admin_addr(cfg)
        sources = ["127.%d.5.%d" % (n, i) for i in range(1, 11)]
        # warm-up: a first round of 3,000, so what is kept by design exists before the
        # baseline (each worker's cache of 1,024 free sessions, buffers)
        for s in _open_idle(addr, sources, 3000):
            s.close()
        h.wait_for(lambda: h.metric(h.metrics(admin), "twlb_sessions_active") == 0, 10,
                   "the warm-up to close")
        rss0, fds0 = h.proc_rss_kb(p.pid), h.proc_fds(p.pid)
        t0 = time.monotonic()
        socks = _open_idle(addr, sources, count)
        opened = time.monotonic() - t0
        h.wait_for(lambda: h.metric(h.metrics(admin), "twlb_sessions_active") == count, 10,
                   "%d sessions" % count)
        rss1, fds1 = h.proc_rss_kb(p.pid), h.proc_fds(p.pid)
        t1 = time.monotonic()
        assert h.http_get(admin, "/healthz")[0] == 200
        assert h.request(addr, b"still\n", shut=True) == b"still\n"
        answer_s = time.monotonic() - t1
        for s in socks:
            s.close()
        h.wait_for(lambda: h.metric(h.metrics(admin), "twlb_sessions_active") == 0, 20,
                   "every session to close")
        h.wait_for(lambda: h.proc_fds(p.pid) <= fds0 + LIBUV_LAZY_FDS, 10,
                   "descriptors back to %d" % fds0)  # libuv: one /dev/null per loop, lazily
        time.sleep(1.5)  # a housekeeping tick
        rss2, fds2 = h.proc_rss_kb(p.pid), h.proc_fds(p.pid)
        per_conn = (rss1 - rss0) * 1024 / count
        print("    %d idle (RLIMIT_NOFILE %d): opened in %.1f s; twlb RSS %d -> %d -> %d kB (%.0f B per "
              "connection), fds %d -> %d -> %d; answers while open in %.0f ms" % (
                  count, limit, opened, rss0, rss1, rss2, per_conn, fds0, fds1, fds2, 1000 * answer_s))
        assert fds1 >= fds0 + 2 * count - 5, (fds0, fds1)  # 2 per connection
        assert fds2 <= fds0, (fds0, fds2)
        if not os.environ.get("TWLB_SANITIZED"):  # ASan keeps freed memory in quarantine
            assert per_conn < 4096, "%.0f bytes per idle connection" % per_conn
            # back down: at most a quarter of what the connections took, and at most 3 MiB
            assert rss2 - rss0 <= min(0.25 * (rss1 - rss0), 3072), (rss0, rss1, rss2)
        alive(p, "after 10,000 idle connections")
        assert h.stop(p) == 0


MANY_LISTENER = r"""
import selectors, socket, sys
n, ips = int(sys.argv[1]), sys.argv[2:]
sel = selectors.EpollSelector()
addrs = []
for i in range(n):
    l = socket.socket()
    l.bind((ips[i % len(ips)], 0))
    l.listen(64)
    l.setblocking(False)
    sel.register(l, selectors.EVENT_READ)
    addrs.append("%s:%d" % l.getsockname())
print(" ".join(addrs), flush=True)
accepted = 0
while True:
    for key, _ in sel.select(1):
        try:
            c, _ = key.fileobj.accept()
            c.close()
            accepted += 1
        except BlockingIOError:
            pass
"""

BACKENDS = 10000


def test_ten_thousand_backends_with_health_checks_stay_responsive():
    """10,000 backends, every one probed each 2 s (a Python process listens on 10,000
    ports and accepts and closes): every backend comes up, the data path and /healthz
    keep answering, memory and descriptors stay bounded; then all 10,000 go away at once
    (10,000 state changes in one interval) and twlb still answers and marks them down."""
    limit = raise_nofile(65536)
    if limit < BACKENDS + 1000:
        raise h.Skip("RLIMIT_NOFILE is %d: too low for %d backends" % (limit, BACKENDS))
    n = h.new_net()
    with h.Env() as env:
        ips = ["127.%d.1.%d" % (n, i) for i in range(1, 11)]
        lst = env.popen([sys.executable, "-c", MANY_LISTENER, str(BACKENDS)] + ips, text=True)
        addrs = h.read_line(lst, 60).split()
        assert len(addrs) == BACKENDS
        echo = env.backend("echo", "127.%d.1.200:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "echo", "address": echo.addr}],
                            health={"interval_ms": 2000, "timeout_ms": 1000, "rise": 1,
                                    "fall": 1})
        # the many backends in a pool of their own, probed; the data path through "app"
        cfg["pools"].append({"name": "many", "inside": ["127.%d.4.2" % n],
                             "source_ports": "30000-39999",
                             "health": {"interval_ms": 2000, "timeout_ms": 1000,
                                        "rise": 1, "fall": 1},
                             "backends": [{"name": "m%d" % i, "address": a}
                                          for i, a in enumerate(addrs)]})
        t0 = time.monotonic()
        p = env.twlb(cfg)
        started = time.monotonic() - t0
        admin, addr = h.admin_addr(cfg), h.listen_addr(cfg)

        def up_count():
            return h.metric(h.metrics(admin), "twlb_backend_up", pool="many")

        worst = {"healthz": 0.0, "data": 0.0, "metrics": 0.0}

        def probe_latency(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                t = time.monotonic()
                assert h.http_get(admin, "/healthz")[0] == 200
                worst["healthz"] = max(worst["healthz"], time.monotonic() - t)
                t = time.monotonic()
                assert h.request(addr, b"x\n", shut=True) == b"x\n"
                worst["data"] = max(worst["data"], time.monotonic() - t)
                time.sleep(0.05)

        with Sampler(p.pid, 0.1) as smp:
            h.wait_for(lambda: up_count() == BACKENDS, 30, "all 10,000 up", interval=1)
            all_up_s = time.monotonic() - t0
            probe_latency(6.0)  # three probe rounds, the data path and /healthz polled
            t = time.monotonic()
            h.metrics(admin)
            worst["metrics"] = time.monotonic() - t
            # all 10,000 vanish at once: thousands of state changes in one interval
            lst.kill()
            lst.wait(5)
            steady = dict(worst)
            probe_latency(3.0)
            h.wait_for(lambda: up_count() == 0, 30, "all 10,000 down", interval=1)
            probe_latency(1.0)
        log = open(p.log_path).read()
        print("    10k backends: steady: worst /healthz %.0f ms, data %.0f ms" % (
            1000 * steady["healthz"], 1000 * steady["data"]))
        print("    10k backends: started in %.2f s, all up %.1f s after start; worst "
              "/healthz %.0f ms, data %.0f ms; one /metrics %.0f ms; RSS max %d kB, fds "
              "max %d; %d log lines" % (started, all_up_s, 1000 * worst["healthz"],
                                        1000 * worst["data"], 1000 * worst["metrics"],
                                        max(smp.rss), max(smp.fds), log.count("\n")))
        # Bounds, not a spread (probe spreading is being changed in check.c): the data
        # path and /healthz keep answering, memory and descriptors stay bounded.
        # Known gap, measured, not asserted: rendering /metrics for 10,000 backends takes
        # ~1-5 s and stalls a worker's data path meanwhile (docs/reliability.md).
        assert started < 10, started
        assert worst["data"] < 5.0, worst  # measured 0.3-2.4 s: see docs/reliability.md
        assert worst["healthz"] < 5.0, worst
        assert worst["metrics"] < 10, worst
        assert max(smp.fds) < 2 * BACKENDS + 100, max(smp.fds)  # at most one probe each
        if not os.environ.get("TWLB_SANITIZED"):  # ASan's shadow memory and quarantine
            assert max(smp.rss) < 512 * 1024, max(smp.rss)
        alive(p, "with 10,000 probed backends")
        assert h.stop(p, timeout=10) == 0
