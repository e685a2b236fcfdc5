"""Operations through the real binary: health checks, backend control, reload under load,
PROXY protocol, access log and its rotation."""
import json
import os
import signal
import socket
import threading
import time

import harness as h


def test_active_health_checks_rise_and_fall():
    n = h.new_net()
    with h.Env() as env:
        addr = "127.%d.1.1:%d" % (n, h.free_port("127.%d.1.1" % n))
        b1 = env.backend("b1", addr, "close-first")
        b2 = env.backend("b2", "127.%d.1.2:0" % n, "close-first")
        cfg = h.pool_config(n, [{"name": "b1", "address": addr}, {"name": "b2", "address": b2.addr}],
                            health={"interval_ms": 100, "timeout_ms": 100, "rise": 2, "fall": 2,
                                    "send": "hi\n", "expect": "b"})
        env.twlb(cfg)
        a = h.admin_addr(cfg)
        up = lambda: h.metric(h.metrics(a), "twlb_backend_up", backend="b1")
        h.wait_for(lambda: up() == 1, 5, "b1 up")
        # probes took their ports from the bookkeeping: the backend closed first, so
        # they are in its TIME_WAIT, with no client traffic at all
        h.wait_for(lambda: h.metric(h.metrics(a), "twlb_ports", backend="b1",
                                    state="remote_time_wait") >= 2,
                   5, "two probe ports in b1's TIME_WAIT")
        h.stop(b1)
        h.wait_for(lambda: up() == 0, 3, "b1 marked down")
        names = {h.first_line(h.listen_addr(cfg)) for _ in range(6)}
        assert names == {"b2"}, names
        env.backend("b1", addr, "close-first")
        h.wait_for(lambda: up() == 1, 3, "b1 to come back")
        assert h.metric(h.metrics(a), "twlb_backend_state_changes_total", backend="b1") >= 2
        names = {h.first_line(h.listen_addr(cfg)) for _ in range(6)}
        assert names == {"b1", "b2"}, names


def test_health_expect_mismatch_marks_down():
    n = h.new_net()
    with h.Env() as env:
        b1 = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        cfg = h.pool_config(n, [{"name": "b1", "address": b1.addr,
                                 "health": {"interval_ms": 100, "fall": 1, "send": "x\n",
                                            "expect": "nope"}}])
        env.twlb(cfg)
        a = h.admin_addr(cfg)
        h.wait_for(lambda: h.metric(h.metrics(a), "twlb_backend_up", backend="b1") == 0,
                   5, "b1 marked down")
        st = h.stats(a)
        assert st["pools"][0]["backends"][0]["health"] == "down"


def test_drain_disable_enable():
    n = h.new_net()
    with h.Env() as env:
        bs = [env.backend("b%d" % i, "127.%d.1.%d:0" % (n, i), "name") for i in (1, 2)]
        cfg = h.pool_config(n, [{"name": "b%d" % i, "address": b.addr} for i, b in enumerate(bs, 1)])
        env.twlb(cfg)
        a, lst = h.admin_addr(cfg), h.listen_addr(cfg)
        live = socket.create_connection(h.split_addr(lst), timeout=5)
        assert live.recv(10) == b"b1\n"
        assert h.http(a, "POST", "/pools/app/backends/b1/drain")[0] == 200
        names = [h.name_line(lst) for _ in range(4)]
        assert names == ["b2"] * 4, names
        live.sendall(b"ping")  # draining: the live connection goes on
        assert live.recv(10) == b"ping"
        st = h.stats(a)
        assert st["pools"][0]["backends"][0]["admin"] == "draining"
        assert h.http(a, "POST", "/pools/app/backends/b1/disable")[0] == 200
        live.settimeout(3)
        try:
            assert live.recv(10) == b""  # disabled: live connections are closed
        except ConnectionResetError:
            pass
        assert h.http(a, "POST", "/pools/app/backends/b1/enable")[0] == 200
        names = {h.name_line(lst) for _ in range(4)}
        assert names == {"b1", "b2"}, names
        status, body = h.http(a, "POST", "/pools/app/backends/nope/drain")
        assert status == 404 and json.loads(body)["error"], body
        assert h.http(a, "POST", "/pools/nope/backends/b1/drain")[0] == 404
        assert h.http(a, "POST", "/pools/app/backends/b1/explode")[0] == 404
        assert h.http(a, "GET", "/pools/app/backends/b1/drain")[0] == 405
        live.close()


def test_admin_token_for_post():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "name")
        tok = env.path("token")
        with open(tok, "w") as f:
            f.write("s3cret\n")
        cfg = h.pool_config(n, [{"name": "b1", "address": b.addr}])
        cfg["admin"]["token_file"] = tok
        env.twlb(cfg)
        a = h.admin_addr(cfg)
        assert h.http(a, "POST", "/pools/app/backends/b1/drain")[0] == 401
        assert h.http(a, "POST", "/pools/app/backends/b1/drain",
                      headers={"Authorization": "Bearer wrong"})[0] == 401
        assert h.http(a, "POST", "/pools/app/backends/b1/drain",
                      headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert h.http_get(a, "/metrics")[0] == 200  # reading needs no token


def load(addr, stop, out, rate=300):
    """Echo connections at about <rate> per second until <stop>; counts failures and
    checks every byte."""
    host, port = h.split_addr(addr)
    i = 0
    while not stop.is_set():
        t0 = time.monotonic()
        payload = os.urandom(1000 + i % 5000)
        try:
            s = socket.create_connection((host, port), timeout=5)
            name = b""
            while not name.endswith(b"\n"):
                d = s.recv(1)
                if not d:
                    raise OSError("closed before the name")
                name += d
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
            s.close()
            if got != payload:
                out["lost"] += 1
            out["ok"] += 1
            out["names"].add(name.strip().decode())
        except OSError as e:
            out["failed"] += 1
            out["errors"].append(str(e))
        i += 1
        time.sleep(max(0, 1.0 / rate - (time.monotonic() - t0)))  # pacing: <rate> per second


def test_reload_under_load_loses_nothing():
    n = h.new_net()
    with h.Env() as env:
        bs = [env.backend("b%d" % i, "127.%d.1.%d:0" % (n, i), "name") for i in (1, 2, 3)]
        backends = [{"name": "b%d" % i, "address": b.addr} for i, b in enumerate(bs, 1)]
        cfg = h.pool_config(n, backends[:2], balance="weighted_round_robin")
        p = env.twlb(cfg)
        stop = threading.Event()
        out = {"ok": 0, "failed": 0, "lost": 0, "names": set(), "errors": []}
        threads = [threading.Thread(target=load, args=(h.listen_addr(cfg), stop, out, 150))
                   for _ in range(2)]
        for t in threads:
            t.start()

        def log_text():
            return open(p.log_path).read()

        def served(k):
            """Wait until the load has had <k> more connections served (under the
            configuration now in force)."""
            target = out["ok"] + k
            h.wait_for(lambda: out["ok"] >= target or out["failed"], 10,
                       "%d more connections served" % k)
        try:
            served(100)
            steps = [backends[:3],                                   # add b3
                     [dict(backends[0], weight=5), backends[2]],     # remove b2, re-weight b1
                     [backends[1], backends[2]]]                     # remove b1, b2 back
            for i, bset in enumerate(steps, 1):
                cfg["pools"][0]["backends"] = bset
                env.write_config(cfg)
                p.send_signal(signal.SIGHUP)
                h.wait_for(lambda: log_text().count("reloaded") == i, 5, "reload %d" % i)
                served(100)
            # an invalid file is refused and changes nothing
            with open(p.cfg_path, "w") as f:
                f.write('{"listeners": [')
            p.send_signal(signal.SIGHUP)
            h.wait_for(lambda: "keeping the running configuration" in log_text(), 5,
                       "the bad file refused")
            served(100)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert out["failed"] == 0, out["errors"][:5]
        assert out["lost"] == 0
        assert out["ok"] > 300, out["ok"]
        assert out["names"] == {"b1", "b2", "b3"}, out["names"]
        assert p.poll() is None, "twlb died"
        log = open(p.log_path).read()
        assert log.count("reloaded") == 3, log
        assert "keeping the running configuration" in log
        # the last good config is in force: b1 is gone
        names = {h.name_line(h.listen_addr(cfg)) for _ in range(6)}
        assert names == {"b2", "b3"}, names


def test_reload_keeps_port_bookkeeping():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        cfg = h.pool_config(n, [{"name": "b1", "address": b.addr}])
        p = env.twlb(cfg)
        for _ in range(5):
            h.first_line(h.listen_addr(cfg))
        a = h.admin_addr(cfg)
        # the last session releases its port just after the client has its answer
        h.wait_for(lambda: h.metric(h.metrics(a), "twlb_ports", backend="b1",
                                    state="remote_time_wait") == 5, 5, "5 ports in TIME_WAIT")
        cfg["pools"][0]["connect_timeout_ms"] = 1500
        env.write_config(cfg)
        p.send_signal(signal.SIGHUP)
        h.wait_for(lambda: "reloaded" in open(p.log_path).read(), 5, "the reload")
        ms = h.metrics(a)
        assert h.metric(ms, "twlb_ports", backend="b1", state="remote_time_wait") == 5
        assert h.metric(ms, "twlb_backend_connections_total", backend="b1") == 5


def test_proxy_protocol_v1_and_v2():
    n = h.new_net()
    for version in ("v1", "v2"):
        with h.Env() as env:
            b = env.backend("pp", "127.%d.1.1:0" % n, "echo", "--proxy-protocol")
            cfg = h.pool_config(n, [{"name": "pp", "address": b.addr, "proxy_protocol": version}])
            env.twlb(cfg)
            s = socket.socket()
            s.bind(("127.%d.5.7" % n, 0))
            s.settimeout(5)
            s.connect(h.split_addr(h.listen_addr(cfg)))
            cport = s.getsockname()[1]
            s.sendall(b"payload")
            assert s.recv(100) == b"payload"  # the header is not echoed to the client
            s.close()
            line = h.read_line(b, 5)
            lhost, lport = h.split_addr(h.listen_addr(cfg))
            assert line == "proxy pp %s src=127.%d.5.7:%d dst=%s:%d" % (
                version, n, cport, lhost, lport), line


def test_access_log_json_and_rotation():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        cfg = h.pool_config(n, [{"name": "b1", "address": b.addr}])
        logf = env.path("access.log")
        cfg["log"] = {"level": "info", "access_log": logf, "access_log_format": "json"}
        p = env.twlb(cfg)
        h.first_line(h.listen_addr(cfg), src="127.%d.5.9" % n)
        h.wait_for(lambda: os.path.getsize(logf) > 0, 5, "the access log record")
        rec = json.loads(open(logf).read().splitlines()[0])
        assert rec["listener"] == "web" and rec["backend"] == "b1"
        assert rec["client"].startswith("127.%d.5.9:" % n)
        assert rec["inside"].startswith("127.%d.4.1:2" % n)
        assert rec["first_fin"] == "backend" and rec["end"] == "done"
        assert rec["bytes_to_backend"] == 3 and rec["bytes_to_client"] == 64
        assert rec["reused_time_wait"] == "no" and rec["isn_mode"] == "off"
        os.rename(logf, logf + ".1")
        p.send_signal(signal.SIGUSR1)
        h.wait_for(lambda: os.path.exists(logf), 5, "the access log reopened")
        h.first_line(h.listen_addr(cfg))
        h.wait_for(lambda: os.path.getsize(logf) > 0, 5, "a record in the new access log")
        assert len(open(logf + ".1").read().splitlines()) == 1
        assert len(open(logf).read().splitlines()) == 1


def test_access_log_fields_and_end_reasons_are_documented():
    """docs/operations.md names every field of a real access log record, in both formats,
    and every reason a session can end with (lb/runtime/session.c's table), except
    handed_over, which is never logged (the worker that takes the client logs it)."""
    import re
    doc = open(os.path.join(h.ROOT, "docs", "operations.md")).read()
    bullet = doc[doc.index("- `log.access_log`:"):]
    bullet = bullet[:bullet.index("\n- ")]
    documented = set(re.findall(r"`(\w+)`", bullet))
    n = h.new_net()
    for fmt in ("json", "text"):
        with h.Env() as env:
            b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
            cfg = h.pool_config(n, [{"name": "b1", "address": b.addr}])
            logf = env.path("access.log")
            cfg["log"] = {"level": "info", "access_log": logf, "access_log_format": fmt}
            env.twlb(cfg)
            h.first_line(h.listen_addr(cfg))
            h.wait_for(lambda: os.path.getsize(logf) > 0, 5, "the access log record")
            line = open(logf).read().splitlines()[0]
            fields = (set(json.loads(line)) if fmt == "json"
                      else {kv.split("=", 1)[0] for kv in line.split()})
            assert len(fields) >= 15 and fields <= documented, (fmt, fields - documented)
    src = open(os.path.join(h.ROOT, "lb", "runtime", "session.c")).read()
    ends = set(re.findall(r'\[END_\w+\] = "(\w+)"', src)) - {"none", "handed_over"}
    assert len(ends) >= 11 and ends <= documented, (ends, ends - documented)
    assert "handed_over" not in documented


def test_reload_says_which_changes_wait_for_a_restart():
    """A reload applies what it can; a changed key that only a restart applies (workers;
    log.file was one until issue 11) is named in the log, and the process keeps
    serving with the workers it has."""
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}])
        cfg["workers"] = 1
        p = env.twlb(cfg)
        cfg["workers"] = 2
        env.write_config(cfg)
        p.send_signal(signal.SIGHUP)
        h.wait_for(lambda: "reloaded" in open(p.log_path).read(), 5, "the reload")
        log = open(p.log_path).read()
        assert "reload: workers: changed; takes effect at the next restart" in log, log
        assert len(h.stats(h.admin_addr(cfg))["workers"]) == 1
        assert h.first_line(h.listen_addr(cfg), data=b"x\n", shut=True) == "x"


def test_health_probes_send_the_proxy_header_the_backend_requires():
    """Issue 11: probes toward a backend that requires the PROXY header sent none, so the
    backend closed them, was marked down, and its clients were refused.  Now probes send
    a header without addresses (v1 "PROXY UNKNOWN", v2 LOCAL), as HAProxy does."""
    n = h.new_net()
    for version in ("v1", "v2"):
        with h.Env() as env:
            b = env.backend("pp", "127.%d.1.1:0" % n, "echo", "--proxy-protocol")
            cfg = h.pool_config(n, [{"name": "pp", "address": b.addr, "proxy_protocol": version}],
                                health={"interval_ms": 100, "timeout_ms": 80, "rise": 1,
                                        "fall": 1, "send": "ping\n", "expect": "ping"})
            env.twlb(cfg)
            admin = h.admin_addr(cfg)
            h.wait_for(lambda: "proxy pp %s" % version in (h.read_line(b, 1) or ""), 3,
                       "a probe's header at the backend")
            time.sleep(0.4)  # a few probe rounds
            # the backend took every probe's header (it logs and closes on a bad one)
            logs = "".join(open(env.path(f)).read() for f in os.listdir(env.dir)
                           if f.startswith("stderr-"))
            assert "bad PROXY header" not in logs, logs
            h.wait_for(lambda: h.stats(admin)["pools"][0]["backends"][0]["health"] == "up",
                       3, "the backend up")
            assert h.first_line(h.listen_addr(cfg), data=b"through\n", shut=True) == "through"
