"""Upgrade without refusing clients (issue 11), through the real binary: a new twlb takes
over the listening sockets, the state file and the admin address of a running one (`twlb
-c FILE --takeover SOCK`, the old one's "upgrade_socket"), with the same configuration
file; the old one then drains and exits 0.  Under ~300 conn/s no client is refused, reset
or stalled; a long connection on the old process finishes during its drain; a takeover
that cannot happen says why and leaves the old process serving (its state file locked
again, its admin address back).  The carrying over of port knowledge toward a strict
backend is test_reuse.py's test_upgrade_carries_time_wait_records_over."""
import json
import signal
import os
import socket
import subprocess
import sys
import time

import harness as h

HERE = os.path.dirname(os.path.abspath(__file__))


def setup(env, workers=2, mode="close-first"):
    n = h.new_net()
    be = env.backend("b1", "127.%d.1.1:0" % n, mode)
    cfg = h.pool_config(n, [{"name": "b1", "address": be.addr}])
    cfg["workers"] = workers
    cfg["drain_timeout_ms"] = 20000
    cfg["reuse"]["state_file"] = env.path("twlb.state")
    cfg["upgrade_socket"] = env.path("twlb.sock")
    old = env.twlb(cfg, name="twlb.json")
    return cfg, env.path("twlb.json"), old


def takeover(env, path, sock, wait=True, name="new.log"):
    """`twlb -c <path> --takeover <sock>`; with <wait>, until the new one serves (it has
    sent READY: the old one's log says so) and its admin endpoint answers."""
    log = open(env.path(name), "w")
    p = env.popen([h.TWLB, "-c", path, "--takeover", sock], stdout=log,
                  stderr=subprocess.STDOUT)
    p.log_path = log.name
    if wait:
        h.wait_for(lambda: p.poll() is None and "takeover: serving" in open(p.log_path).read()
                   and _up(path), 10, "the new twlb serving")
    return p


def _up(path):
    try:
        return h.http_get(h.admin_addr(json.load(open(path))), "/healthz")[0] == 200
    except OSError:
        return False


def test_upgrade_under_300_connections_per_second_refuses_nobody():
    with h.Env() as env:
        cfg, path, old = setup(env)
        load = env.popen([sys.executable, os.path.join(HERE, "openloop_client.py"),
                          "--connect", h.listen_addr(cfg), "--count", "600", "--rate", "300",
                          "--timeout", "5"], text=True)
        time.sleep(0.7)  # the load is under way (open loop: it does not wait for us)
        new = takeover(env, path, cfg["upgrade_socket"])
        assert old.wait(15) == 0, open(old.log_path).read()
        out, _ = load.communicate(timeout=40)
        res = json.loads(out)["results"]
        bad = [r for r in res if not r["ok"] or r["first"] != "b1"]
        slow = [r for r in res if r["s"] > 1.0]
        assert not bad, bad[:5]
        assert not slow, slow[:5]
        log = open(old.log_path).read()
        assert "takeover: pid %d serves; draining" % new.pid in log, log
        assert new.poll() is None
        assert h.first_line(h.listen_addr(cfg)) == "b1"
        assert h.http_get(h.admin_addr(cfg), "/healthz")[0] == 200  # the same address
        olog, nlog = open(old.log_path).read(), open(new.log_path).read()
        assert "handed over to the new process" in olog, olog
        assert "restored" in nlog and "already running" not in nlog, nlog
        print("600 clients at 300/s: max %.3f s" % max(r["s"] for r in res))


def test_a_long_connection_on_the_old_process_finishes_during_its_drain():
    with h.Env() as env:
        cfg, path, old = setup(env, mode="echo")
        live = socket.create_connection(h.split_addr(h.listen_addr(cfg)), timeout=5)
        live.sendall(b"one\n")
        assert live.recv(10) == b"one\n"
        new = takeover(env, path, cfg["upgrade_socket"])
        h.wait_for(lambda: "takeover: pid %d serves; draining" % new.pid in
                   open(old.log_path).read(), 5, "the old one draining")
        # the new one serves new clients while the old one keeps its connection
        c = socket.create_connection(h.split_addr(h.listen_addr(cfg)), timeout=5)
        c.sendall(b"new\n")
        assert c.recv(10) == b"new\n"
        c.close()
        live.sendall(b"two\n")
        assert live.recv(10) == b"two\n"
        assert old.poll() is None, "the old twlb exited with a connection open"
        live.close()
        assert old.wait(10) == 0, open(old.log_path).read()
        assert new.poll() is None


def test_takeover_that_cannot_happen_says_why_and_leaves_the_old_one_serving():
    with h.Env() as env:
        cfg, path, old = setup(env)
        # no such socket
        r = subprocess.run([h.TWLB, "-c", path, "--takeover", env.path("nothing.sock")],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 1 and "cannot connect" in r.stderr, r.stderr
        # not a twlb upgrade socket
        plain = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        plain.bind(env.path("plain.sock"))
        plain.listen(1)
        r = subprocess.run([h.TWLB, "-c", path, "--takeover", env.path("plain.sock")],
                           capture_output=True, text=True, timeout=10)
        plain.close()
        assert r.returncode == 1 and "takeover" in r.stderr, r.stderr
        # a new process whose start fails after it got the sockets, the state file and
        # the admin address (its "user" does not exist): the old one takes them back
        bad = json.load(open(path))
        bad["user"] = "no-such-user-twlb"
        p = takeover(env, env.write_config(bad, "bad.json"), cfg["upgrade_socket"],
                     wait=False)
        assert p.wait(15) == 1
        h.wait_for(lambda: "still serving" in open(old.log_path).read(), 5, "the old one back")
        olog = open(old.log_path).read()
        assert "locked again after the failed takeover" in olog, olog
        assert old.poll() is None
        assert h.first_line(h.listen_addr(cfg)) == "b1"
        assert h.http_get(h.admin_addr(cfg), "/healthz")[0] == 200
        # and a second twlb on the same state file is still refused (the lock is back)
        other = json.load(open(path))
        del other["upgrade_socket"]
        other["listeners"][0]["bind"] = "127.0.0.1:%d" % h.free_port("127.0.0.1")
        other["admin"]["bind"] = "127.0.0.1:%d" % h.free_port("127.0.0.1")
        r = subprocess.run([h.TWLB, "-c", env.write_config(other, "other.json")],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 1 and "in use" in r.stderr, r.stderr


def test_sigusr2_under_systemd_notify_hands_the_unit_to_the_new_process():
    """The systemd way (`systemctl kill -s USR2 twlb`): SIGUSR2 makes the running twlb
    start its own binary with --takeover as its child (in the unit's cgroup); the new one
    sends MAINPID= (itself) and READY=1; the old one, draining a live connection, tells
    systemd nothing more (its STOPPING=1 would stop the unit) and exits 0."""
    from test_sdnotify import Notify
    with h.Env() as env:
        n = h.new_net()
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}])
        cfg["workers"] = 2
        cfg["drain_timeout_ms"] = 20000
        cfg["reuse"]["state_file"] = env.path("twlb.state")
        cfg["upgrade_socket"] = env.path("twlb.sock")
        note = Notify(env.path("notify.sock"))
        new_pid = None
        try:
            old = env.twlb(cfg, wait=False, extra_env={"NOTIFY_SOCKET": note.path})
            note.until("READY=1")
            live = socket.create_connection(h.split_addr(h.listen_addr(cfg)), timeout=5)
            live.sendall(b"one\n")
            assert live.recv(10) == b"one\n"
            old.send_signal(signal.SIGUSR2)
            new_pid = _next_mainpid(note, old.pid)
            assert new_pid != old.pid
            at = [i for i, m in enumerate(note.msgs) if "MAINPID" in m][0]
            if not any("READY" in m for m in note.msgs[at + 1:]):
                note.until("READY=1")
            h.wait_for(lambda: "takeover: pid %d serves; draining" % new_pid in
                       open(old.log_path).read(), 5, "the old one draining")
            assert h.first_line(h.listen_addr(cfg), data=b"new\n", shut=True) == "new"
            assert h.http_get(h.admin_addr(cfg), "/healthz")[0] == 200
            live.sendall(b"two\n")
            assert live.recv(10) == b"two\n"
            live.close()
            assert old.wait(10) == 0, open(old.log_path).read()
            note.sock.settimeout(0.3)  # anything the old one sent meanwhile
            try:
                while True:
                    note.msgs.append(dict(line.split("=", 1) for line in
                                          note.sock.recv(4096).decode().split("\n") if line))
            except socket.timeout:
                pass
            assert "STOPPING" not in [k for m in note.msgs for k in m], note.msgs
            os.kill(new_pid, 0)  # still serving
        finally:
            note.close()
            if new_pid:
                _stop_pid(new_pid)


def _next_mainpid(note, old_pid, timeout=10):
    """Receive until a MAINPID= message; its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in note.msgs:
            if "MAINPID" in m:
                return int(m["MAINPID"])
        note.sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = note.sock.recv(4096).decode()
        except socket.timeout:
            break
        note.msgs.append(dict(line.split("=", 1) for line in data.split("\n") if line))
    raise AssertionError("no MAINPID=; got %r" % note.msgs)


def _stop_pid(pid):
    """SIGTERM the new twlb (not our child: the old one started it), and SIGKILL it if it
    has not gone within 10 s."""
    try:
        os.kill(pid, signal.SIGTERM)
        h.wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                   open("/proc/%d/stat" % pid).read().split(")")[1].split()[0] == "Z",
                   10, "the new twlb gone")
    except (ProcessLookupError, AssertionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
