"""Faults that once took the process down: each test reproduces the recipe that crashed
twlb 0.1 and asserts that the process survives and exits the way it should.

Loopback only; every wait is bounded."""
import signal
import socket
import time

import harness as h


def _alive(p, what):
    assert p.poll() is None, "twlb died (%s), exit %s:\n%s" % (
        what, p.returncode, open(p.log_path).read()[-3000:])


def test_reload_while_health_probes_are_open():
    """Issue 14 crash 1: a SIGHUP while a probe is in flight freed the old generation
    before the probe's close callback ran (use-after-free).  A blackhole backend keeps a
    probe connecting for the whole timeout, so every reload meets an open probe."""
    n = h.new_net()
    with h.Env() as env:
        echo = env.backend("e", "127.%d.1.1:0" % n, "echo")
        hole = env.backend("b", "127.%d.1.2:0" % n, "blackhole")
        cfg = h.pool_config(n, [{"name": "e", "address": echo.addr},
                                {"name": "b", "address": hole.addr}],
                            health={"interval_ms": 200, "timeout_ms": 150})
        p = env.twlb(cfg)
        for i in range(12):
            # pacing, the test itself: the SIGHUPs land in every phase of the probes
            time.sleep(0.07 + 0.03 * (i % 4))
            p.send_signal(signal.SIGHUP)
        h.wait_for(lambda: "reloaded" in open(p.log_path).read().split("SIGHUP")[-1],
                   5, "the last reload to finish")
        _alive(p, "after 12 reloads with open probes")
        assert h.first_line(h.listen_addr(cfg), data=b"ping\n", shut=True) == "ping"
        assert h.stop(p) == 0, open(p.log_path).read()[-3000:]


def test_sigterm_after_reload_honours_the_drain_deadline():
    """Issue 14 crash 2: after a reload the retired generation had no drain timer, so its
    connections outlived the deadline, and its end closed the signal handles a second
    time (uv_close assertion, exit 134)."""
    n = h.new_net()
    with h.Env() as env:
        echo = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": echo.addr}])
        cfg["drain_timeout_ms"] = 800
        p = env.twlb(cfg)
        host, port = h.split_addr(h.listen_addr(cfg))
        old = socket.create_connection((host, port), timeout=5)
        old.sendall(b"a")
        assert old.recv(1) == b"a"
        p.send_signal(signal.SIGHUP)
        h.wait_for(lambda: "reloaded" in open(p.log_path).read(), 5, "the reload")
        new = socket.create_connection((host, port), timeout=5)
        new.sendall(b"b")
        assert new.recv(1) == b"b"
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        # both generations' connections are cut at the deadline, not later
        for s in (old, new):
            s.settimeout(3)
            try:
                got = s.recv(10)
            except ConnectionResetError:
                got = b""
            assert got == b"", got
        dt = time.monotonic() - t0
        assert 0.6 <= dt < 2.0, "connections closed after %.2f s, deadline 0.8 s" % dt
        try:
            rc = p.wait(3)
        except Exception:
            raise AssertionError("twlb did not exit after the drain deadline")
        assert rc == 0, "exit %s:\n%s" % (rc, open(p.log_path).read()[-3000:])
        old.close()
        new.close()


def test_sigterm_after_reload_exits_when_old_connections_end():
    """The same, ended by the clients instead of the deadline: exit 0, once."""
    n = h.new_net()
    with h.Env() as env:
        echo = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": echo.addr}])
        cfg["drain_timeout_ms"] = 5000
        p = env.twlb(cfg)
        host, port = h.split_addr(h.listen_addr(cfg))
        conns = []
        for i in range(3):
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"x")
            assert s.recv(1) == b"x"
            conns.append(s)
            p.send_signal(signal.SIGHUP)
            # the next connection lands in the next generation
            h.wait_for(lambda: open(p.log_path).read().count("reloaded") == i + 1, 5,
                       "reload %d" % (i + 1))
        p.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the test: 0.3 s into the drain, with connections open, twlb is up
        _alive(p, "while old generations drain")
        for s in conns:
            s.close()
        rc = p.wait(3)
        assert rc == 0, "exit %s:\n%s" % (rc, open(p.log_path).read()[-3000:])
