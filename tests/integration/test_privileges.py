"""Least privilege through the real binary (issue #14): with "user", twlb opens what it
needs as root and then runs every thread as that user with CAP_NET_ADMIN and
CAP_NET_BIND_SERVICE only, read from /proc; explicit ISNs, SOCK_DESTROY, traffic and a
reload that binds a new privileged port still work; an unknown user is an error naming it."""
import glob
import os
import pwd
import signal
import socket
import subprocess

import harness as h

CAP_NET_BIND_SERVICE = 10
CAP_NET_ADMIN = 12
KEPT = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_BIND_SERVICE)  # 0x1400


def thread_creds(pid):
    """{tid: {"Uid": [...], "Gid": [...], "CapEff": int, ...}} for every thread."""
    out = {}
    for status in glob.glob("/proc/%d/task/*/status" % pid):
        tid = int(status.split("/")[4])
        d = {}
        try:
            with open(status) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("Uid", "Gid"):
                        d[k] = [int(x) for x in v.split()]
                    elif k == "Groups":
                        d[k] = v.split()
                    elif k.startswith("Cap"):
                        d[k] = int(v.strip(), 16)
        except FileNotFoundError:  # a thread pool thread that just ended
            continue
        out[tid] = d
    return out


def assert_least_privilege(pid, uid, gid):
    threads = thread_creds(pid)
    assert len(threads) >= 3, threads  # the main thread and two workers at least
    for tid, d in threads.items():
        assert d["Uid"] == [uid] * 4, (tid, d)
        assert d["Gid"] == [gid] * 4, (tid, d)
        assert d["Groups"] == [], (tid, d)
        assert d["CapEff"] == KEPT, (tid, hex(d["CapEff"]))
        assert d["CapPrm"] == KEPT, (tid, hex(d["CapPrm"]))
        assert d["CapInh"] == 0 and d["CapAmb"] == 0, (tid, d)
        assert d["CapBnd"] == KEPT, (tid, hex(d["CapBnd"]))
    return len(threads)


def free_low_port(ip):
    for port in range(900, 1000):
        with socket.socket() as s:
            try:
                s.bind((ip, port))
                return port
            except OSError:
                continue
    raise h.Skip("no free port below 1024 on %s" % ip)


def echo(addr, payload):
    host, port = h.split_addr(addr)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            d = s.recv(65536)
            assert d, "closed early"
            got += d
    return got


def test_user_keeps_only_two_capabilities_on_every_thread():
    if os.geteuid() != 0:
        raise h.Skip("needs root (twlb starts as root and drops to nobody)")
    nobody = pwd.getpwnam("nobody")
    n = h.new_net()
    with h.Env() as env:
        os.chmod(env.dir, 0o755)  # nobody reads the config again on SIGHUP
        b = env.backend("b1", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "b1", "address": b.addr}])
        cfg["reuse"] = {"isn": "explicit", "local_time_wait": "destroy"}
        cfg["workers"] = 2
        cfg["user"] = "nobody"
        p = env.twlb(cfg)
        os.chmod(p.cfg_path, 0o644)
        a, lst = h.admin_addr(cfg), h.listen_addr(cfg)
        assert_least_privilege(p.pid, nobody.pw_uid, nobody.pw_gid)
        log = open(p.log_path).read()
        assert "running as user nobody" in log, log
        # traffic; explicit ISNs (TCP_REPAIR) and SOCK_DESTROY of our own TIME_WAIT
        for i in range(200):
            payload = os.urandom(100 + i)
            assert echo(lst, payload) == payload
        ms = h.metrics(a)
        assert h.metric(ms, "twlb_isn_mode", mode="explicit") == 1
        assert h.metric(ms, "twlb_backend_connect_errors_total") == 0
        assert h.metric(ms, "twlb_local_errors_total") == 0
        # a reload that binds a new listener on a port below 1024
        low = free_low_port("127.%d.2.1" % n)
        cfg["listeners"].append({"name": "low", "bind": "127.%d.2.1:%d" % (n, low),
                                 "pool": "app"})
        env.write_config(cfg)
        os.chmod(p.cfg_path, 0o644)
        p.send_signal(signal.SIGHUP)
        h.wait_for(lambda: "reloaded" in open(p.log_path).read(), 5,
                   "the reload:\n" + open(p.log_path).read())
        assert "127.%d.2.1:%d" % (n, low) in open(p.log_path).read()
        for i in range(50):
            payload = os.urandom(64)
            assert echo("127.%d.2.1:%d" % (n, low), payload) == payload
            assert echo(lst, payload) == payload
        ms = h.metrics(a)
        assert h.metric(ms, "twlb_backend_connections_total") == 300, ms
        assert h.metric(ms, "twlb_backend_connect_errors_total") == 0
        # threads started since (the libuv thread pool) inherited the same
        assert_least_privilege(p.pid, nobody.pw_uid, nobody.pw_gid)
        assert h.stop(p) == 0, open(p.log_path).read()


def test_unknown_user_is_an_error_naming_it():
    n = h.new_net()
    with h.Env() as env:
        cfg = h.pool_config(n, [{"name": "b1", "address": "127.%d.1.1:9" % n}])
        cfg["user"] = "no-such-user-twlb"
        path = env.write_config(cfg)
        r = subprocess.run([h.TWLB, "--check", path], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1 and "no-such-user-twlb" in r.stderr, r
        r = subprocess.run([h.TWLB, "-c", path], capture_output=True, text=True, timeout=10)
        assert r.returncode == 1 and 'user "no-such-user-twlb": no such user' in r.stderr, r
        cfg["user"] = "nobody"
        cfg["group"] = "no-such-group-twlb"
        path = env.write_config(cfg)
        r = subprocess.run([h.TWLB, "--check", path], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1 and "no-such-group-twlb" in r.stderr, r
        del cfg["user"]
        path = env.write_config(cfg)
        r = subprocess.run([h.TWLB, "--check", path], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1 and 'group: "no-such-group-twlb" needs "user"' in r.stderr, r
