"""Faults on the backend side: a backend killed mid-stream, backends that reset, a
blackhole, every backend refusing, and a client that never reads while a backend sends
100 MiB.  Each asserts what the client sees and that twlb is fine afterwards."""
import os
import signal
import socket
import sys
import time

import harness as h

# libuv opens one /dev/null per event loop (worker), lazily, at its first TCP handle.
LIBUV_LAZY_FDS = os.cpu_count() or 2
from faultlib import alive, read_until_end, Sampler


def _fill_until_blocked(s, chunk=b"x" * 65536, limit=256 << 20, seconds=10.0):
    """Send without reading until nothing more can be sent for 0.5 s: every buffer on the
    way (ours, twlb's, the echo backend's both ways) is then full, so the backend holds
    unread bytes, and its death is a reset, not a FIN (bounded: <limit>, <seconds>)."""
    import select
    s.setblocking(False)
    sent = 0
    t0 = time.monotonic()
    while sent < limit and time.monotonic() - t0 < seconds:
        if not select.select([], [s], [], 0.5)[1]:
            break
        try:
            sent += s.send(chunk)
        except BlockingIOError:
            pass
    s.setblocking(True)
    return sent


def test_backend_killed_mid_stream_resets_the_client():
    """An echo backend is SIGKILLed while it holds unread bytes of a live stream (the
    client sends and does not read, so the echo stalls): the kernel resets twlb's
    connection, and twlb passes the reset on; the client never sees a clean end.  twlb
    then serves the next clients from the other backend."""
    n = h.new_net()
    with h.Env() as env:
        victim = env.backend("victim", "127.%d.1.1:0" % n, "echo")
        other = env.backend("other", "127.%d.1.2:0" % n, "name")
        cfg = h.pool_config(n, [{"name": "victim", "address": victim.addr},
                                {"name": "other", "address": other.addr}],
                            connect_timeout_ms=500)
        cfg["workers"] = 1
        p = env.twlb(cfg)
        host, port = h.split_addr(h.listen_addr(cfg))
        streams = []
        for _ in range(4):  # round robin: 2 on the victim, 2 on the other (a name first)
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"hello\n")
            first = s.recv(100)
            streams.append((s, first))
        on_victim = [s for s, first in streams if first.startswith(b"hello")]
        assert len(on_victim) == 2, [f for _, f in streams]
        for s in on_victim:
            assert _fill_until_blocked(s) > 0
        time.sleep(0.2)
        victim.kill()
        victim.wait(5)
        for s in on_victim:
            got, how = read_until_end(s, timeout=5)
            assert how == "reset", (how, len(got))
            s.close()
        alive(p, "after the backend was killed")
        for s, _ in streams:
            s.close()
        for i in range(6):
            assert h.name_line(h.listen_addr(cfg)) == "other"
        ms = h.metrics(h.admin_addr(cfg))
        assert h.metric(ms, "twlb_backend_connections_total", backend="other") >= 7
        assert h.stop(p) == 0


def test_backend_resets_reach_every_client_as_resets():
    """50 connections to a backend that answers a few bytes and resets: every client gets
    those bytes and a reset (never a clean FIN); twlb keeps no descriptor of them."""
    n = h.new_net()
    with h.Env() as env:
        raddr = h.reset_backend(env, "127.%d.1.1" % n)
        cfg = h.pool_config(n, [{"name": "r", "address": raddr}])
        p = env.twlb(cfg)
        fds0 = h.proc_fds(p.pid)
        host, port = h.split_addr(h.listen_addr(cfg))
        outcomes = {}
        for _ in range(50):
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"GET\n")
            got, how = read_until_end(s)
            s.close()
            outcomes[(got, how)] = outcomes.get((got, how), 0) + 1
        assert outcomes == {(b"partial", "reset"): 50}, outcomes
        alive(p, "after 50 backend resets")
        # libuv opens one /dev/null per event loop at its first TCP handle (its own reserve
        # for EMFILE), after the baseline here: one per worker at most
        h.wait_for(lambda: h.proc_fds(p.pid) <= fds0 + LIBUV_LAZY_FDS, 5,
                   "twlb's descriptors back to %d" % fds0)
        assert h.stop(p) == 0


def test_blackhole_backend_times_out_and_the_client_is_retried_elsewhere():
    """One backend never answers a SYN: each client that lands on it waits one connect
    timeout and is then served by the other backend.  No client fails."""
    n = h.new_net()
    with h.Env() as env:
        hole = env.backend("hole", "127.%d.1.1:0" % n, "blackhole")
        good = env.backend("good", "127.%d.1.2:0" % n, "name")
        cfg = h.pool_config(n, [{"name": "hole", "address": hole.addr},
                                {"name": "good", "address": good.addr}],
                            connect_timeout_ms=300, retries=2)
        cfg["workers"] = 1
        p = env.twlb(cfg)
        took = []
        for _ in range(10):
            t0 = time.monotonic()
            assert h.name_line(h.listen_addr(cfg)) == "good"
            took.append(time.monotonic() - t0)
        slow = [t for t in took if t >= 0.28]
        assert slow, took  # at least one client met the blackhole first ...
        assert max(took) < 0.3 * 3 + 0.5, took  # ... and none waited past its retries
        ms = h.metrics(h.admin_addr(cfg))
        assert h.metric(ms, "twlb_backend_connect_errors_total", backend="hole") == len(slow)
        assert h.metric(ms, "twlb_backend_connections_total", backend="good") == 10
        assert h.metric(ms, "twlb_local_errors_total") == 0
        alive(p, "after the blackhole")
        assert h.stop(p) == 0


def _closed_port(ip):
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: a connect is refused
    return port


def test_all_backends_refusing_refuses_clients_at_once_and_counts_them():
    """Every backend refuses: each client is reset at once (no hang, no timeout), and
    every one of them is counted: the first ones, which tried every backend, in the
    backends' connect errors (1 + retries each) and as end=connect_failed in the access
    log; the rest, once the failures ejected the backends, in twlb_no_backend_total."""
    n = h.new_net()
    with h.Env() as env:
        backends = [{"name": "r%d" % i,
                     "address": "127.%d.1.%d:%d" % (n, i, _closed_port("127.%d.1.%d" % (n, i)))}
                    for i in (1, 2, 3)]
        cfg = h.pool_config(n, backends, connect_timeout_ms=2000, retries=2)
        cfg["log"]["access_log"] = env.path("access.log")
        p = env.twlb(cfg)
        host, port = h.split_addr(h.listen_addr(cfg))
        took, ends = [], {}
        for _ in range(50):
            t0 = time.monotonic()
            try:
                s = socket.create_connection((host, port), timeout=5)
                s.sendall(b"hi\n")
                got, how = read_until_end(s, timeout=3)
                s.close()
            except ConnectionResetError:  # reset before connect() or send() returned
                got, how = b"", "reset"
            took.append(time.monotonic() - t0)
            assert got == b"", got
            ends[how] = ends.get(how, 0) + 1
        assert "timeout" not in ends, ends
        assert max(took) < 0.5, "a refused client waited %.2f s" % max(took)
        ms = h.metrics(h.admin_addr(cfg))
        no_backend = h.metric(ms, "twlb_no_backend_total")
        errors = h.metric(ms, "twlb_backend_connect_errors_total")
        assert h.metric(ms, "twlb_listener_connections_total") == 50
        assert no_backend > 0 and errors == 3 * (50 - no_backend), (no_backend, errors)
        def ends_logged():
            e = [l.rsplit(" end=", 1)[1] for l in
                 open(env.path("access.log")).read().splitlines() if " end=" in l]
            return e if len(e) == 50 else None
        ends = h.wait_for(ends_logged, 5, "50 access log lines")
        assert sorted(set(ends)) == ["connect_failed", "no_backend"], set(ends)
        assert ends.count("no_backend") == no_backend, ends
        assert h.metric(ms, "twlb_backend_ejections_total") >= 3  # each, at least once
        print("    all refusing: %d clients connect_failed (%d connect errors), %d no_backend; "
              "slowest %.1f ms" % (50 - no_backend, errors, no_backend, 1000 * max(took)))
        assert h.metric(ms, "twlb_sessions_active") == 0
        alive(p, "with every backend refusing")
        assert h.stop(p) == 0


def test_client_that_never_reads_keeps_memory_bounded_and_gets_every_byte():
    """A backend sends 100 MiB to a client that does not read for 3 s: twlb's memory
    stays within its per-connection buffers (buffer_bytes per direction), and when the
    client reads, every byte arrives, in order."""
    n = h.new_net()
    size = 100 << 20
    with h.Env() as env:
        bulk = env.backend("bulk", "127.%d.1.1:0" % n, "bulk", "--send-bytes", str(size))
        cfg = h.pool_config(n, [{"name": "bulk", "address": bulk.addr}])
        p = env.twlb(cfg)
        rss0 = h.proc_rss_kb(p.pid)
        host, port = h.split_addr(h.listen_addr(cfg))
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        with Sampler(p.pid) as smp:
            time.sleep(3)  # the test: the client does not read
        peak = max(smp.rss) - rss0
        assert peak < 4096, "twlb grew %d kB while the client did not read" % peak
        # now read it all and check the pattern: "bulk\n" then 'a' + pos % 26
        alpha = bytes(range(ord("a"), ord("a") + 26)) * 2600
        pos, bad = 0, None
        s.settimeout(10)
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            if pos == 0:
                assert d.startswith(b"bulk\n"), d[:20]
            start = max(0, 5 - pos)
            body = d[start:]
            off = (pos + start) % 26
            if body != alpha[off:off + len(body)] and bad is None:
                bad = pos
            pos += len(d)
        s.close()
        assert pos == size and bad is None, (pos, size, bad)
        alive(p, "after 100 MiB")
        print("    never-reading client: twlb RSS %d kB at start, +%d kB at most" % (rss0, peak))
        assert h.stop(p) == 0
