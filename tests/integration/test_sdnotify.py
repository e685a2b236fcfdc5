"""systemd notification through the real binary (issue 11): twlb started with
NOTIFY_SOCKET pointing at a Unix datagram socket the test binds (as systemd does for a
Type=notify unit) sends READY=1 once its listeners are open, RELOADING=1 with
MONOTONIC_USEC then READY=1 around each SIGHUP (a failed reload too: the old
configuration serves), STOPPING=1 at SIGTERM, and STATUS= lines saying what it does;
without NOTIFY_SOCKET it sends nothing (every other test)."""
import signal
import socket
import time

import harness as h


class Notify:
    """The socket systemd would listen on, and the messages received, in order."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.msgs = []

    def close(self):
        self.sock.close()

    def until(self, key, timeout=5):
        """Receive until a message with <key> (e.g. "READY=1") arrives; returns it as a
        dict of its lines."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "no %s within %.0f s; got %r" % (key, timeout, self.msgs)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.split("\n") if line)
            self.msgs.append(fields)
            name, _, value = key.partition("=")
            if fields.get(name) == value:
                return fields

    def kinds(self):
        """The lifecycle messages received so far (STATUS-only ones left out)."""
        return [k for m in self.msgs for k in ("READY", "RELOADING", "STOPPING") if k in m]


def test_ready_reloading_stopping_in_order():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}])
        cfg["workers"] = 2
        cfg["drain_timeout_ms"] = 20000
        note = Notify(env.path("notify.sock"))
        try:
            p = env.twlb(cfg, wait=False, extra_env={"NOTIFY_SOCKET": note.path})
            ready = note.until("READY=1")
            # READY=1 comes once the listeners are open: a client is served at once
            assert h.first_line(h.listen_addr(cfg), data=b"up\n", shut=True) == "up"
            assert ready["STATUS"].startswith("serving: 0 connections, 2 workers"), ready
            assert note.kinds() == ["READY"], note.msgs

            # a good reload: RELOADING=1 (with CLOCK_MONOTONIC in us), then READY=1
            cfg["pools"][0]["retries"] = 1
            env.write_config(cfg)
            t0 = time.monotonic()
            p.send_signal(signal.SIGHUP)
            rel = note.until("RELOADING=1")
            assert abs(int(rel["MONOTONIC_USEC"]) / 1e6 - t0) < 2, (rel, t0)
            ready = note.until("READY=1")
            assert "reloads 1 ok, 0 failed" in ready["STATUS"], ready

            # a failed reload: the same pair, and the status says so
            with open(p.cfg_path, "w") as f:
                f.write("{")
            p.send_signal(signal.SIGHUP)
            note.until("RELOADING=1")
            ready = note.until("READY=1")
            assert "reloads 1 ok, 1 failed (the last one failed" in ready["STATUS"], ready

            # SIGTERM with a connection open: STOPPING=1, then twlb drains
            live = socket.create_connection(h.split_addr(h.listen_addr(cfg)), timeout=5)
            live.sendall(b"x\n")
            assert live.recv(10) == b"x\n"
            p.send_signal(signal.SIGTERM)
            stop = note.until("STOPPING=1")
            assert stop["STATUS"].startswith("draining: 1 connection, 2 workers"), stop
            assert note.kinds() == ["READY", "RELOADING", "READY", "RELOADING", "READY",
                                    "STOPPING"], note.msgs
            live.close()
            assert p.wait(10) == 0
        finally:
            note.close()


def test_status_lines_follow_the_connections():
    """Every few seconds a STATUS= line with the live connections (under Type=notify
    `systemctl status twlb` shows the latest)."""
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}])
        cfg["workers"] = 1
        note = Notify(env.path("notify.sock"))
        try:
            p = env.twlb(cfg, wait=False, extra_env={"NOTIFY_SOCKET": note.path})
            note.until("READY=1")
            conns = [socket.create_connection(h.split_addr(h.listen_addr(cfg)), timeout=5)
                     for _ in range(3)]
            for c in conns:
                c.sendall(b"x\n")
                assert c.recv(10) == b"x\n"
            msg = note.until("STATUS=serving: 3 connections, 1 worker; reloads 0 ok, 0 failed",
                             timeout=12)
            assert set(msg) == {"STATUS"}, msg  # a status line alone
            for c in conns:
                c.close()
            assert h.stop(p) == 0
        finally:
            note.close()
