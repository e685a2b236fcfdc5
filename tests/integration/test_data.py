"""Data path: every byte arrives, in both directions, with half-close from either side,
through two workers, by splice(2) (bulk) and by copy (small exchanges, "splice": "off")."""
import fcntl
import hashlib
import os
import signal
import socket
import struct
import threading
import time

import harness as h

F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def data_config(n, backends, splice="auto", **extra):
    cfg = h.pool_config(n, backends, splice=splice, **extra)
    cfg["workers"] = 2
    return cfg


def spliced(ms, direction):
    return h.metric(ms, "twlb_spliced_bytes_total", direction=direction)


def nothing_held(admin, workers=2):
    """Once every connection is over or idle: no write buffer and no pipe in use."""
    def check():
        ws = h.stats(admin)["workers"]
        return len(ws) == workers and all(w["buffers_in_use"] == 0 and w["pipes_in_use"] == 0
                                    for w in ws)
    h.wait_for(check, 5, "no buffer or pipe in use")


def backend_socket(n, backlog=64):
    """A listening socket for a backend thread of the test on net <n>, and its address."""
    lsock = socket.socket()
    lsock.bind(("127.%d.1.1" % n, 0))
    lsock.listen(backlog)
    return lsock, "127.%d.1.1:%d" % (n, lsock.getsockname()[1])


def twlb_to(env, n, baddr):
    """twlb (data_config: 2 workers) in <env> on net <n>, toward the one backend at
    <baddr>: its config and the listener's host and port."""
    cfg = data_config(n, [{"name": "p", "address": baddr}])
    env.twlb(cfg)
    host, port = h.split_addr(h.listen_addr(cfg))
    return cfg, host, port


def backend_thread(lsock, count, handle):
    """Start a thread that accepts <count> connections on <lsock>, one after the other,
    and calls handle(conn, i) for each; it returns (thread, errors) where errors collects
    the socket errors the handler met."""
    errors = []

    def serve():
        for i in range(count):
            c, _ = lsock.accept()
            c.settimeout(10)
            try:
                handle(c, i)
            except OSError as e:
                errors.append(str(e))
            c.close()

    t = threading.Thread(target=serve)
    t.start()
    return t, errors


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
    """Checksummed payloads from 1 B to 64 MiB, echoed, the client half-closing: by
    splice (auto: the bulk ones are spliced, both ways) and by copy (off: none is)."""
    n = h.new_net()
    for splice in ("auto", "off"):
        with h.Env() as env:
            be = env.backend("e1", "127.%d.1.1:0" % n, "echo")
            cfg = data_config(n, [{"name": "e1", "address": be.addr}], splice=splice)
            env.twlb(cfg)
            total = 0
            for size in (1, 1024, 65536, 1 << 20, 16 << 20, 64 << 20):
                payload = os.urandom(size)
                got = echo_through(h.listen_addr(cfg), payload)
                assert len(got) == size, "%s, size %d: got %d bytes" % (splice, size, len(got))
                assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest(), size
                total += size
            ms = h.metrics(h.admin_addr(cfg))
            for d in ("to_backend", "to_client"):
                assert h.metric(ms, "twlb_bytes_total", backend="e1", direction=d) == total
                if splice == "auto":  # most of the 81 MiB went through a pipe
                    assert total // 2 < spliced(ms, d) < total, (d, spliced(ms, d), total)
                else:
                    assert spliced(ms, d) == 0, (d, spliced(ms, d))
            nothing_held(h.admin_addr(cfg))


def pipe_sizes(pid):
    """The capacity of every pipe end <pid> holds (F_GETPIPE_SZ through /proc/PID/fd: the
    same pipe, opened for reading without waiting; nothing is read)."""
    sizes = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        path = "/proc/%d/fd/%s" % (pid, fd)
        try:
            if not os.readlink(path).startswith("pipe:"):
                continue
            f = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:  # closed meanwhile
            continue
        try:
            sizes.append(fcntl.fcntl(f, F_GETPIPE_SZ))
        finally:
            os.close(f)
    return sizes


def test_splice_pipes_hold_1_mib():
    """The pipes a bulk transfer took (kept empty in the pool afterwards) hold 1 MiB each:
    one splice(2) pair moves up to that much (docs/design.md)."""
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e1", "127.%d.1.1:0" % n, "echo")
        cfg = data_config(n, [{"name": "e1", "address": be.addr}])
        p = env.twlb(cfg)
        payload = os.urandom(16 << 20)
        got = echo_through(h.listen_addr(cfg), payload)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest(), len(got)
        ms = h.metrics(h.admin_addr(cfg))
        assert spliced(ms, "to_backend") > len(payload) // 2, spliced(ms, "to_backend")
        sizes = pipe_sizes(p.pid)
        assert sizes.count(1 << 20) >= 2, sizes  # the two directions' pipes, at least


def test_pipe_bytes_and_max_pipes_apply_and_reload():
    """"pipe_bytes" sizes the pool's pipes (256 KiB here); a reload to 512 KiB applies to
    the next transfer and closes the pooled pipes of the old size; "max_pipes": 0 stops
    splicing, and every byte still arrives."""
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e1", "127.%d.1.1:0" % n, "echo")
        cfg = data_config(n, [{"name": "e1", "address": be.addr}])
        cfg["pipe_bytes"] = 256 << 10
        cfg["workers"] = 1  # every transfer meets the pipes the one before left pooled
        p = env.twlb(cfg)
        admin = h.admin_addr(cfg)
        payload = os.urandom(16 << 20)

        def transfer():
            got = echo_through(h.listen_addr(cfg), payload)
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest(), len(got)
            nothing_held(admin, workers=1)
            ms = h.metrics(admin)
            return spliced(ms, "to_backend"), spliced(ms, "to_client")

        def reload(**keys):
            ok = h.metric(h.metrics(admin), "twlb_config_reloads_total", result="ok")
            cfg.update(keys)
            env.write_config(cfg)
            p.send_signal(signal.SIGHUP)
            h.wait_for(lambda: h.metric(h.metrics(admin), "twlb_config_reloads_total",
                                        result="ok") == ok + 1, 5, "the reload")

        before = transfer()
        assert min(before) > len(payload) // 2, before
        sizes = pipe_sizes(p.pid)
        assert sizes.count(256 << 10) >= 2 and (1 << 20) not in sizes, sizes

        reload(pipe_bytes=512 << 10)
        after = transfer()
        assert after[0] - before[0] > len(payload) // 2, (before, after)
        sizes = pipe_sizes(p.pid)
        assert sizes.count(512 << 10) >= 2 and (256 << 10) not in sizes, sizes

        reload(max_pipes=0)
        assert transfer() == after  # copied: every byte arrived, none through a pipe


def test_pipe_bytes_above_pipe_max_size_falls_back_to_1_mib():
    """Above fs.pipe-max-size only CAP_SYS_RESOURCE may size a pipe, and twlb running as
    nobody has not got it: asked for 4 MiB, its pipes hold 1 MiB (fs.pipe-max-size's
    default), and the bulk transfer is spliced through them."""
    if os.geteuid() != 0:
        raise h.Skip("needs root (twlb dropping to nobody)")
    if int(open("/proc/sys/fs/pipe-max-size").read()) != 1 << 20:
        raise h.Skip("fs.pipe-max-size is not the default 1 MiB")
    n = h.new_net()
    with h.Env() as env:
        os.chmod(env.dir, 0o755)
        be = env.backend("e1", "127.%d.1.1:0" % n, "echo")
        cfg = data_config(n, [{"name": "e1", "address": be.addr}])
        cfg["pipe_bytes"] = 4 << 20
        cfg["user"] = "nobody"
        p = env.twlb(cfg)
        os.chmod(p.cfg_path, 0o644)
        payload = os.urandom(16 << 20)
        got = echo_through(h.listen_addr(cfg), payload)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest(), len(got)
        assert spliced(h.metrics(h.admin_addr(cfg)), "to_backend") > len(payload) // 2
        sizes = pipe_sizes(p.pid)
        assert sizes.count(1 << 20) >= 2 and (4 << 20) not in sizes, sizes


def test_pipes_the_kernel_will_not_size_are_not_used():
    """Past fs.pipe-user-pages-soft a user without CAP_SYS_RESOURCE gets pipes of 8 KiB
    that cannot grow: twlb running as nobody then copies instead (every byte arrives,
    none spliced), rather than splicing 8 KiB at a time."""
    if os.geteuid() != 0:
        raise h.Skip("needs root (a sysctl, and twlb dropping to nobody)")
    knob = "/proc/sys/fs/pipe-user-pages-soft"
    old = open(knob).read().strip()
    n = h.new_net()
    try:
        with open(knob, "w") as f:
            f.write("1")  # any pipe of a non-root user is past the limit
        with h.Env() as env:
            os.chmod(env.dir, 0o755)
            be = env.backend("e1", "127.%d.1.1:0" % n, "echo")
            cfg = data_config(n, [{"name": "e1", "address": be.addr}])
            cfg["user"] = "nobody"
            p = env.twlb(cfg)
            os.chmod(p.cfg_path, 0o644)
            payload = os.urandom(8 << 20)
            for _ in range(2):  # the second transfer comes after the retry pause
                got = echo_through(h.listen_addr(cfg), payload)
                assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
                time.sleep(1.1)
            ms = h.metrics(h.admin_addr(cfg))
            for d in ("to_backend", "to_client"):
                assert h.metric(ms, "twlb_bytes_total", backend="e1", direction=d) == \
                    2 * len(payload)
                assert spliced(ms, d) == 0, (d, spliced(ms, d))
            nothing_held(h.admin_addr(cfg))
    finally:
        with open(knob, "w") as f:
            f.write(old)


def test_proxy_header_then_spliced_bulk():
    """The PROXY header waits in a write buffer ahead of everything (no splice past it);
    then 16 MiB are spliced behind it, and the backend gets the header and every byte."""
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("pp", "127.%d.1.1:0" % n, "echo", "--proxy-protocol")
        cfg = data_config(n, [{"name": "pp", "address": b.addr, "proxy_protocol": "v2"}])
        env.twlb(cfg)
        payload = os.urandom(16 << 20)
        got = echo_through(h.listen_addr(cfg), payload)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest(), len(got)
        assert (h.read_line(b, 5) or "").startswith("proxy pp v2 src=")
        ms = h.metrics(h.admin_addr(cfg))
        header = h.metric(ms, "twlb_bytes_total", direction="to_backend") - len(payload)
        assert 16 <= header <= 52, header  # v2 with IPv4 addresses: 28 bytes
        assert spliced(ms, "to_backend") > len(payload) // 2, spliced(ms, "to_backend")


def test_spliced_connection_left_idle_holds_no_pipe():
    """A connection that moved bulk both ways by splice and stays open, idle, holds no
    pipe and no buffer: each pipe went back to the pool once drained."""
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e1", "127.%d.1.1:0" % n, "echo")
        cfg = data_config(n, [{"name": "e1", "address": be.addr}])
        env.twlb(cfg)
        s = socket.create_connection(h.split_addr(h.listen_addr(cfg)), timeout=30)
        try:
            payload = os.urandom(8 << 20)
            got = bytearray()

            def reader():
                while len(got) < len(payload):
                    d = s.recv(1 << 20)
                    if not d:
                        break
                    got.extend(d)

            t = threading.Thread(target=reader)
            t.start()
            s.sendall(payload)
            t.join(30)
            assert bytes(got) == payload, len(got)
            ms = h.metrics(h.admin_addr(cfg))
            assert spliced(ms, "to_backend") > 0 and spliced(ms, "to_client") > 0
            nothing_held(h.admin_addr(cfg))
            st = h.stats(h.admin_addr(cfg))
            assert sum(w["sessions_active"] for w in st["workers"]) == 1, st["workers"]
            s.sendall(b"still open\n")  # and it still works
            assert s.recv(100) == b"still open\n"
        finally:
            s.close()


def test_connect_done_inside_connect_starts_the_session_at_once():
    """A backend on this host: the connect is established when connect() returns, and the
    session starts at once, reading the client's first bytes speculatively (docs/design.md,
    "A connect that is done before it returns").  Both kinds of protocol still work:
    client first (the bytes are read at once) and server first (the speculative read finds
    nothing, the greeting comes back first), with two workers; every connect is counted."""
    n = h.new_net()
    lsock, baddr = backend_socket(n)
    rounds = 20

    def handle(c, i):
        if i % 2:  # server first: greet, wait for QUIT
            c.sendall(b"220 ready\r\n")
            if c.recv(100) != b"QUIT\r\n":
                raise OSError("no QUIT")
            c.sendall(b"221 bye\r\n")
        else:      # client first: answer what came
            c.sendall(b"echo " + c.recv(100))

    t, errors = backend_thread(lsock, 2 * rounds, handle)
    try:
        with h.Env() as env:
            cfg, host, port = twlb_to(env, n, baddr)
            for i in range(rounds):
                got = h.request(h.listen_addr(cfg), b"hello %d" % i, timeout=10)
                assert got == b"echo hello %d" % i
                s = socket.create_connection((host, port), timeout=10)
                assert s.recv(100) == b"220 ready\r\n"  # nothing sent before it
                s.sendall(b"QUIT\r\n")
                assert h.read_until_end(s, 10) == (b"221 bye\r\n", "eof")
                s.close()
            t.join(10)
            assert not errors, errors
            ms = h.metrics(h.admin_addr(cfg))
            assert h.metric(ms, "twlb_backend_connections_total") == 2 * rounds
            assert h.metric(ms, "twlb_backend_connects_inline_total") == 2 * rounds
    finally:
        lsock.close()
        t.join(5)


def test_a_connect_not_done_inside_connect_stops_the_asking_for_63_connects():
    """After a connect that was not ESTABLISHED when connect() returned, twlb does not ask
    TCP_INFO again for the backend's next 63 connects; the 64th asks, and the answers are
    yes again (docs/design.md, "A connect that is done before it returns").  A backend with
    an accept queue of one that does not accept yet makes such a connect here: the kernel
    drops the second SYN, and the connect completes by its EPOLLOUT once the queue has
    room and the SYN is resent (about 1 s later).  Every exchange still arrives."""
    n = h.new_net()
    # one connection may wait in the accept queue; the SYN of the next is dropped
    lsock, baddr = backend_socket(n, backlog=0)
    go = threading.Event()
    errors = []

    def backend():
        go.wait(10)
        lsock.settimeout(10)
        for _ in range(2 + 64 + 1):
            try:
                c, _ = lsock.accept()
                c.settimeout(10)
                c.sendall(b"echo " + c.recv(100))
                c.close()
            except OSError as e:
                errors.append(str(e))
                return

    def inline(cfg):
        ms = h.metrics(h.admin_addr(cfg))
        return (h.metric(ms, "twlb_backend_connects_inline_total"),
                h.metric(ms, "twlb_backend_connections_total"))

    t = threading.Thread(target=backend)
    t.start()
    try:
        with h.Env() as env:
            cfg = h.pool_config(n, [{"name": "p", "address": baddr}], connect_timeout_ms=5000)
            cfg["workers"] = 1  # the count is per worker and backend
            env.twlb(cfg)
            host, port = h.split_addr(h.listen_addr(cfg))
            a = socket.create_connection((host, port), timeout=10)
            a.sendall(b"a")
            h.wait_for(lambda: inline(cfg) == (1, 1), 5, "the first connect, done inline")
            b = socket.create_connection((host, port), timeout=10)
            b.sendall(b"b")
            time.sleep(0.3)  # its SYN was dropped: still connecting, nothing counted
            assert inline(cfg) == (1, 1)
            go.set()  # the queue empties; the second SYN, resent, gets through
            assert h.read_until_end(a, 10) == (b"echo a", "eof")
            assert h.read_until_end(b, 10) == (b"echo b", "eof")
            a.close()
            b.close()
            assert inline(cfg) == (1, 2)  # established by its EPOLLOUT
            for i in range(63):  # connects that do complete inline, but are not asked
                assert h.request(h.listen_addr(cfg), b"%d" % i, timeout=10) == b"echo %d" % i
            assert inline(cfg) == (1, 65)
            assert h.request(h.listen_addr(cfg), b"64th", timeout=10) == b"echo 64th"
            assert inline(cfg) == (2, 66)  # asked again: yes
            assert h.request(h.listen_addr(cfg), b"next", timeout=10) == b"echo next"
            assert inline(cfg) == (3, 67)  # and from then on every time
            t.join(10)
            assert not errors, errors
    finally:
        go.set()
        lsock.close()
        t.join(5)


def segs_in(sock):
    """Segments the kernel received on <sock> (struct tcp_info tcpi_segs_in, Linux 4.2+)."""
    return struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160),
                              140)[0]


def test_reply_and_fin_that_came_together_leave_in_one_segment():
    """A backend whose reply and FIN reach twlb together (one segment here: MSG_MORE, then
    shutdown) gets them to the client in one segment too (docs/design.md, "One segment
    for the last bytes and the FIN"), so the client wakes once for both.  Counted by the
    client's kernel (tcpi_segs_in), against a backend that sends its FIN 50 ms after the
    reply: that costs the client one segment more.  Same bytes both ways."""
    n = h.new_net()
    lsock, baddr = backend_socket(n)
    rounds = 10

    def handle(c, i):
        reply = b"reply %d " % i + b"x" * 500
        c.recv(100)
        if i % 2 == 0:  # together: held by MSG_MORE, sent with the FIN
            c.send(reply, socket.MSG_MORE)
        else:           # apart
            c.sendall(reply)
            time.sleep(0.05)
        c.shutdown(socket.SHUT_WR)
        if c.recv(100) != b"":
            raise OSError("no FIN from the client")

    t, errors = backend_thread(lsock, 2 * rounds, handle)
    try:
        with h.Env() as env:
            cfg, host, port = twlb_to(env, n, baddr)
            counts = {0: [], 1: []}
            for i in range(2 * rounds):
                s = socket.create_connection((host, port), timeout=10)
                s.sendall(b"request")
                got = h.read_until_end(s, 10)
                assert got == (b"reply %d " % i + b"x" * 500, "eof"), got
                counts[i % 2].append(segs_in(s))
                s.close()
            t.join(10)
            assert not errors, errors
            together, apart = counts[0], counts[1]
            # the FIN rides on the reply: one segment fewer, every time
            assert max(together) < max(apart), (together, apart)
    finally:
        lsock.close()
        t.join(5)


def test_half_close_from_backend_side():
    """The backend sends N bytes and shuts down its write side but keeps reading: the
    client gets N bytes + EOF, then sends M bytes, and the backend must get all M."""
    n = h.new_net()
    lsock, baddr = backend_socket(n, backlog=4)
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
            cfg, host, port = twlb_to(env, n, baddr)
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
            ms = h.metrics(h.admin_addr(cfg))
            # both directions were bulk: spliced, before and after the half-close
            assert spliced(ms, "to_client") > 0 and spliced(ms, "to_backend") > 0
            assert h.metric(ms, "twlb_bytes_total", direction="to_backend") == len(to_backend)
            assert h.metric(ms, "twlb_bytes_total", direction="to_client") == len(to_client)
    finally:
        lsock.close()
        t.join(5)


def test_half_close_from_client_side():
    """The client shuts down its write side first and still receives everything."""
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("s", "127.%d.1.1:0" % n, "bulk", "--sink")
        cfg = data_config(n, [{"name": "s", "address": be.addr}])
        env.twlb(cfg)
        payload = os.urandom(2 << 20)
        got = h.request(h.listen_addr(cfg), payload, shut=True, timeout=30)
        assert got == b"s %d\n" % len(payload), got
        ms = h.metrics(h.admin_addr(cfg))
        assert h.metric(ms, "twlb_bytes_total", direction="to_backend") == len(payload)
        assert spliced(ms, "to_backend") > 0
