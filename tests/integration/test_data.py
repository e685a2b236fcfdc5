"""Data path: every byte arrives, in both directions, with half-close from either side."""
import hashlib
import os
import socket
import threading

import harness as h


def echo_through(addr, payload, chunk=65536):
    """Send <payload> while reading the echo concurrently; shut down our write side at the
    end (client half-close) and read to EOF.  Returns the bytes received."""
    host, port = h.split_addr(addr)
    s = socket.create_connection((host, port), timeout=30)
    got = []

    def reader():
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            got.append(d)

    t = threading.Thread(target=reader)
    t.start()
    view = memoryview(payload)
    for i in range(0, len(payload), chunk):
        s.sendall(view[i:i + chunk])
    s.shutdown(socket.SHUT_WR)
    t.join(60)
    assert not t.is_alive(), "echo did not finish"
    s.close()
    return b"".join(got)


def test_echo_integrity_sizes():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e1", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e1", "address": be.addr}])
        env.twlb(cfg)
        total = 0
        for size in (1, 1024, 65536, 1 << 20, 16 << 20, 64 << 20):
            payload = os.urandom(size)
            got = echo_through(h.listen_addr(cfg), payload)
            assert len(got) == size, "size %d: got %d bytes" % (size, len(got))
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest(), size
            total += size
        ms = h.metrics(h.admin_addr(cfg))
        assert h.metric(ms, "twlb_bytes_total", backend="e1", direction="to_backend") == total
        assert h.metric(ms, "twlb_bytes_total", backend="e1", direction="to_client") == total


def test_half_close_from_backend_side():
    """The backend sends N bytes and shuts down its write side but keeps reading: the
    client gets N bytes + EOF, then sends M bytes, and the backend must get all M."""
    n = h.new_net()
    lsock = socket.socket()
    lsock.bind(("127.%d.1.1" % n, 0))
    lsock.listen(4)
    baddr = "127.%d.1.1:%d" % (n, lsock.getsockname()[1])
    to_client = os.urandom(3 << 20)
    to_backend = os.urandom(5 << 20)
    result = {}

    def backend():
        c, _ = lsock.accept()
        c.settimeout(30)
        c.sendall(to_client)
        c.shutdown(socket.SHUT_WR)  # backend's FIN first; keep reading
        got = []
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            got.append(d)
        result["got"] = b"".join(got)
        c.close()

    t = threading.Thread(target=backend)
    t.start()
    try:
        with h.Env() as env:
            cfg = h.pool_config(n, [{"name": "p", "address": baddr}])
            env.twlb(cfg)
            host, port = h.split_addr(h.listen_addr(cfg))
            s = socket.create_connection((host, port), timeout=30)
            got = []
            while True:
                d = s.recv(1 << 20)
                if not d:
                    break
                got.append(d)
            assert b"".join(got) == to_client, "client did not get the backend's bytes + EOF"
            s.sendall(to_backend)  # the other direction is still open
            s.shutdown(socket.SHUT_WR)
            t.join(30)
            s.close()
            assert result.get("got") == to_backend, "backend got %d of %d bytes" % (
                len(result.get("got", b"")), len(to_backend))
    finally:
        lsock.close()
        t.join(5)


def test_half_close_from_client_side():
    """The client shuts down its write side first and still receives everything."""
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("s", "127.%d.1.1:0" % n, "bulk", "--sink")
        cfg = h.pool_config(n, [{"name": "s", "address": be.addr}])
        env.twlb(cfg)
        payload = os.urandom(2 << 20)
        got = h.request(h.listen_addr(cfg), payload, shut=True, timeout=30)
        assert got == b"s %d\n" % len(payload), got
