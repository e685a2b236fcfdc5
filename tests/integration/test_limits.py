"""Connection limits and the client queue through the real binary (issue 10):
max_connections at the top level and per listener hold extra clients in the kernel's
backlog; a backend's max_connections spills its clients to the others and then into the
pool's queue, which serves them in order, times them out, refuses them when full, and
forgets those that leave."""
import socket
import time

import harness as h


def connect(addr):
    host, port = h.split_addr(addr)
    s = socket.create_connection((host, port), timeout=5)
    s.settimeout(5)
    return s


def name_of(s, timeout=5):
    """The first line a "name" backend sent through <s>, or None when nothing came in
    <timeout> seconds; "reset" or "eof" when the connection ended instead."""
    s.settimeout(timeout)
    buf = b""
    try:
        while not buf.endswith(b"\n"):
            d = s.recv(100)
            if not d:
                return "eof"
            buf += d
    except socket.timeout:
        return None
    except ConnectionResetError:
        return "reset"
    return buf.strip().decode()


def name_backends(env, n, count):
    return [env.backend("b%d" % i, "127.%d.1.%d:0" % (n, i), "name") for i in range(1, count + 1)]


def active(cfg):
    return h.metric(h.metrics(h.admin_addr(cfg)), "twlb_sessions_active")


def limit_case(workers, where):
    n = h.new_net()
    with h.Env() as env:
        (b,) = name_backends(env, n, 1)
        cfg = h.pool_config(n, [{"name": "b1", "address": b.addr}])
        cfg["workers"] = workers
        if where == "top":
            cfg["max_connections"] = 3
        else:
            cfg["listeners"][0]["max_connections"] = 3
        env.twlb(cfg)
        addr = h.listen_addr(cfg)
        held = [connect(addr) for _ in range(3)]
        extra = None
        try:
            assert [name_of(s) for s in held] == ["b1"] * 3
            extra = connect(addr)  # the kernel completes the handshake: it is in the backlog
            assert name_of(extra, timeout=0.7) is None, "a 4th client was served over the limit"
            assert active(cfg) == 3
            held.pop(0).close()
            assert name_of(extra) == "b1", "the waiting client was not served once one closed"
            h.wait_for(lambda: active(cfg) == 3, 3, "3 live sessions")
        finally:
            for s in held + ([extra] if extra else []):
                s.close()


def test_top_level_max_connections_holds_the_extra_client_in_the_backlog():
    limit_case(1, "top")


def test_top_level_max_connections_counts_over_two_workers():
    limit_case(2, "top")


def test_listener_max_connections_two_workers():
    limit_case(2, "listener")


def queue_config(n, backends, qmax=8, timeout_ms=3000):
    cfg = h.pool_config(n, backends, queue={"max": qmax, "timeout_ms": timeout_ms})
    cfg["workers"] = 1  # FIFO order is per worker (docs/configuration.md)
    return cfg


def test_backend_limit_spills_to_the_other_backend_then_queues():
    n = h.new_net()
    with h.Env() as env:
        bs = name_backends(env, n, 2)
        cfg = queue_config(n, [{"name": "b%d" % i, "address": b.addr, "max_connections": 1}
                               for i, b in enumerate(bs, 1)])
        env.twlb(cfg)
        addr = h.listen_addr(cfg)
        a, b = connect(addr), connect(addr)
        c = None
        try:
            assert sorted([name_of(a), name_of(b)]) == ["b1", "b2"], "no spill to the other backend"
            c = connect(addr)
            assert name_of(c, timeout=0.7) is None, "a client was served over the backends' limits"
            h.wait_for(lambda: h.metric(h.metrics(h.admin_addr(cfg)), "twlb_queue_length") == 1,
                       2, "the queue to hold the client")
            b.close()
            got = name_of(c)
            assert got in ("b1", "b2"), got
        finally:
            for s in (a, b, c):
                if s:
                    s.close()


def test_queue_serves_in_arrival_order():
    n = h.new_net()
    with h.Env() as env:
        (b,) = name_backends(env, n, 1)
        cfg = queue_config(n, [{"name": "b1", "address": b.addr, "max_connections": 1}])
        env.twlb(cfg)
        addr = h.listen_addr(cfg)
        first = connect(addr)
        waiting = []
        try:
            assert name_of(first) == "b1"
            for i in range(4):
                waiting.append(connect(addr))
                n_q = i + 1
                h.wait_for(lambda: h.metric(h.metrics(h.admin_addr(cfg)),
                                            "twlb_queue_length") == n_q,
                           2, "client %d in the queue" % n_q)
            first.close()
            # one slot: each is served only when the one before it has closed
            for i, s in enumerate(waiting):
                assert name_of(s) == "b1", "client %d was not served" % i
                for later in waiting[i + 1:]:
                    assert name_of(later, timeout=0.05) is None, "a later client overtook"
                s.close()
        finally:
            for s in [first] + waiting:
                s.close()


def test_queue_timeout_and_full_queue_close_the_client():
    n = h.new_net()
    with h.Env() as env:
        (b,) = name_backends(env, n, 1)
        cfg = queue_config(n, [{"name": "b1", "address": b.addr, "max_connections": 1}],
                           qmax=1, timeout_ms=600)
        env.twlb(cfg)
        addr = h.listen_addr(cfg)
        first = connect(addr)
        try:
            assert name_of(first) == "b1"
            queued = connect(addr)
            h.wait_for(lambda: h.metric(h.metrics(h.admin_addr(cfg)), "twlb_queue_length") == 1,
                       2, "the queue to hold the client")
            t0 = time.monotonic()
            try:  # the reset may come before connect() returns
                full = connect(addr)
                assert name_of(full, timeout=2) in ("reset", "eof"), "a full queue took a client"
                full.close()
            except ConnectionResetError:
                pass
            assert time.monotonic() - t0 < 0.5, "a full queue did not refuse at once"
            assert name_of(queued, timeout=3) in ("reset", "eof"), "no queue timeout"
            waited = time.monotonic() - t0
            assert 0.4 < waited < 2.0, waited
            queued.close()
            ms = h.metrics(h.admin_addr(cfg))
            assert h.metric(ms, "twlb_queue_length") == 0
            assert h.metric(ms, "twlb_backend_connections_total") == 1
        finally:
            first.close()


def test_client_that_leaves_the_queue_costs_nothing():
    n = h.new_net()
    with h.Env() as env:
        (b,) = name_backends(env, n, 1)
        cfg = queue_config(n, [{"name": "b1", "address": b.addr, "max_connections": 1}])
        env.twlb(cfg)
        addr = h.listen_addr(cfg)
        first = connect(addr)
        try:
            assert name_of(first) == "b1"
            gone = [connect(addr) for _ in range(3)]
            h.wait_for(lambda: h.metric(h.metrics(h.admin_addr(cfg)), "twlb_queue_length") == 3,
                       2, "three queued clients")
            for s in gone:
                s.close()
            h.wait_for(lambda: h.metric(h.metrics(h.admin_addr(cfg)), "twlb_queue_length") == 0,
                       2, "the queue to forget the clients that left")
            first.close()
            later = connect(addr)
            assert name_of(later) == "b1"
            later.close()
            ms = h.metrics(h.admin_addr(cfg))
            # the first client and the later one; nothing for the three that left
            assert h.metric(ms, "twlb_backend_connections_total") == 2
        finally:
            first.close()
