"""Idle timeout and SIGTERM drain behave as configured."""
import signal
import socket
import time

import harness as h


def connect(addr):
    host, port = h.split_addr(addr)
    return socket.create_connection((host, port), timeout=5)


def test_idle_timeout_closes_idle_keeps_active():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}], idle_timeout_ms=500)
        env.twlb(cfg)
        idle = connect(h.listen_addr(cfg))
        active = connect(h.listen_addr(cfg))
        t0 = time.monotonic()
        idle.settimeout(3)
        # the active one talks every 100 ms for 1.6 s, three idle timeouts
        while time.monotonic() - t0 < 1.6:
            active.sendall(b"ping")
            assert active.recv(10) == b"ping"
            time.sleep(0.1)  # pacing, the test itself: one exchange every 100 ms
        assert idle.recv(10) == b"", "idle connection not closed"
        active.sendall(b"still")
        assert active.recv(10) == b"still", "active connection was closed"
        idle.close()
        active.close()


def test_idle_timeout_timing():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}], idle_timeout_ms=500)
        env.twlb(cfg)
        s = connect(h.listen_addr(cfg))
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        t0 = time.monotonic()
        s.settimeout(3)
        assert s.recv(10) == b""
        dt = time.monotonic() - t0
        assert 0.4 <= dt < 2.0, dt
        s.close()


def test_sigterm_drains_live_connections():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}])
        cfg["drain_timeout_ms"] = 2000
        p = env.twlb(cfg)
        live = connect(h.listen_addr(cfg))
        live.sendall(b"a")
        assert live.recv(1) == b"a"
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        # new connects are refused within 0.5 s

        def refused():
            try:
                connect(h.listen_addr(cfg)).close()
            except ConnectionRefusedError:
                return True
            return False
        h.wait_for(refused, 0.5 - (time.monotonic() - t0),
                   "the listener to refuse connections after SIGTERM")
        # the live one still works for about a second
        while time.monotonic() - t0 < 1.0:
            live.sendall(b"b")
            assert live.recv(1) == b"b"
            time.sleep(0.1)  # pacing, the test itself: one exchange every 100 ms
        live.close()  # the last connection ends: twlb exits at once, with 0
        assert p.wait(3) == 0
        assert time.monotonic() - t0 < 2.5


def test_sigterm_drain_deadline_closes_the_rest():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}])
        cfg["drain_timeout_ms"] = 500
        p = env.twlb(cfg)
        live = connect(h.listen_addr(cfg))
        live.sendall(b"a")
        assert live.recv(1) == b"a"
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert p.wait(3) == 0
        dt = time.monotonic() - t0
        assert 0.45 <= dt < 1.5, dt
        live.settimeout(2)
        try:
            assert live.recv(10) == b""
        except ConnectionResetError:
            pass
        live.close()
