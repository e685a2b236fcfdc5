"""Backends and clients that misbehave cost their own connection, never the process."""
import socket
import struct
import time

import harness as h


def test_backend_down_others_serve():
    n = h.new_net()
    with h.Env() as env:
        b1 = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        b3 = env.backend("b3", "127.%d.1.3:0" % n, "close-first")
        dead = "127.%d.1.2:%d" % (n, h.free_port("127.%d.1.2" % n))  # nothing listens
        cfg = h.pool_config(n, [{"name": "b1", "address": b1.addr},
                                {"name": "b2", "address": dead},
                                {"name": "b3", "address": b3.addr}])
        env.twlb(cfg)
        names = [h.first_line(h.listen_addr(cfg)) for _ in range(30)]
        assert all(x in ("b1", "b3") for x in names), names
        ms = h.metrics(h.admin_addr(cfg))
        assert h.metric(ms, "twlb_backend_connect_errors_total", backend="b2") >= 1
        assert h.metric(ms, "twlb_backend_connections_total", backend="b2") == 0
        # consecutive failures eject it: it stops costing a try per connection
        assert h.metric(ms, "twlb_backend_up", backend="b2") == 0


def test_blackhole_costs_one_connect_timeout():
    n = h.new_net()
    with h.Env() as env:
        bh = env.backend("bh", "127.%d.1.1:0" % n, "blackhole")
        ok = env.backend("ok", "127.%d.1.2:0" % n, "close-first")
        cfg = h.pool_config(n, [{"name": "bh", "address": bh.addr},
                                {"name": "ok", "address": ok.addr}],
                            connect_timeout_ms=300, retries=2)
        env.twlb(cfg)
        t0 = time.monotonic()
        name = h.first_line(h.listen_addr(cfg))  # round robin: the blackhole first
        dt = time.monotonic() - t0
        assert name == "ok", name
        assert 0.25 <= dt < 1.0, "took %.3f s" % dt
        ms = h.metrics(h.admin_addr(cfg))
        assert h.metric(ms, "twlb_backend_connect_errors_total", backend="bh") == 1


def test_all_backends_down_client_closed_quickly():
    n = h.new_net()
    with h.Env() as env:
        dead = ["127.%d.1.%d:%d" % (n, i, h.free_port("127.%d.1.%d" % (n, i))) for i in (1, 2)]
        cfg = h.pool_config(n, [{"name": "d%d" % i, "address": a} for i, a in enumerate(dead)])
        env.twlb(cfg)
        t0 = time.monotonic()
        try:
            got = h.request(h.listen_addr(cfg), b"hi\n", timeout=3)
        except ConnectionResetError:
            got = b""
        assert got == b""
        assert time.monotonic() - t0 < 1.0
        assert h.http_get(h.admin_addr(cfg), "/healthz")[0] == 200
        ms = h.metrics(h.admin_addr(cfg))
        assert h.metric(ms, "twlb_no_backend_total") >= 1


def test_client_reset_midstream_costs_only_itself():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}])
        env.twlb(cfg)
        host, port = h.split_addr(h.listen_addr(cfg))
        for _ in range(20):
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"x" * 100000)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST
        got = h.request(h.listen_addr(cfg), b"still here", shut=True)
        assert got == b"still here"
        h.wait_for(lambda: h.metric(h.metrics(h.admin_addr(cfg)), "twlb_sessions_active") == 0,
                   3, "every reset session to end")


def test_admin_errors():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}])
        env.twlb(cfg)
        a = h.admin_addr(cfg)
        assert h.http_get(a, "/nope")[0] == 404
        assert h.http(a, "POST", "/metrics")[0] == 405
        assert h.raw_http(a, b"GARBAGE\r\n\r\n") == 400
        assert h.raw_http(a, b"GET /metrics HTTP/9\r\n\r\n") == 400
        assert h.raw_http(a, b"GET " + b"/x" * 6000 + b" HTTP/1.1\r\n\r\n") == 431
        # a silent admin client does not block anything
        s = socket.create_connection(h.split_addr(a), timeout=5)
        s.sendall(b"GET /metr")
        assert h.http_get(a, "/healthz")[0] == 200
        assert h.request(h.listen_addr(cfg), b"ok", shut=True) == b"ok"
        s.close()
        st = h.stats(a)
        assert st["pools"][0]["backends"][0]["name"] == "e"
