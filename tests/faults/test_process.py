"""Faults of the process: descriptor exhaustion for seconds, 100 SIGHUPs under load with
health checks on, SIGTERM after reloads under load, corrupt and hostile state files, and
the admin slowloris (the case lives in tests/integration/test_hardening.py, which make
test runs; it is run here again by reference)."""
import json
import os
import resource
import signal
import socket
import subprocess
import threading
import time

import harness as h
from faultlib import alive

from test_hardening import test_slowloris_does_not_lock_operators_out  # noqa: F401

TWSTRESS = os.path.join(h.ROOT, "tests", "stress", "twstress")


def twstress(env, addr, *args):
    return env.popen([TWSTRESS, "--connect", addr, "--json", *args], text=True)


def twstress_report(p, timeout):
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, (p.returncode, out)
    return json.loads(out)


def test_descriptor_exhaustion_for_seconds_recovers_at_once_and_ejects_nothing():
    """The longer version of test_faults' case: twlb's descriptor limit is held just above
    what it uses for 8 s while clients keep coming (as fast as one client can); then the
    limit is restored.  The backend is never blamed (no connect error, no ejection), the
    first client after the pressure is served at once, and the next 50 all are."""
    n = h.new_net()
    with h.Env() as env:
        echo = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": echo.addr}])
        cfg["workers"] = 1
        p = env.twlb(cfg)
        addr, admin = h.listen_addr(cfg), h.admin_addr(cfg)
        host, port = h.split_addr(addr)
        soft, hard = resource.prlimit(p.pid, resource.RLIMIT_NOFILE)
        top = max(int(f) for f in os.listdir("/proc/%d/fd" % p.pid))
        resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (top + 12, hard))
        held, tries, served, errs = [], 0, 0, {}
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < 8:
                tries += 1
                try:
                    s = socket.create_connection((host, port), timeout=1)
                    s.settimeout(1)
                    s.sendall(b"x")
                    if s.recv(1) == b"x":
                        served += 1
                        if len(held) < 8:
                            held.append(s)  # keep the table full
                            continue
                    s.close()
                except OSError as e:
                    errs[type(e).__name__] = errs.get(type(e).__name__, 0) + 1
        finally:
            for s in held:
                s.close()
            resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (soft, hard))
        t1 = time.monotonic()
        assert h.request(addr, b"again\n", shut=True, timeout=2) == b"again\n"
        first = time.monotonic() - t1
        for i in range(50):
            assert h.request(addr, b"%d\n" % i, shut=True, timeout=2) == b"%d\n" % i
        ms = h.metrics(admin)
        local = h.metric(ms, "twlb_local_errors_total")
        print("    fd exhaustion 8 s: %d client tries, %d served during, %.0f local errors; "
              "first after in %.1f ms; client errors %s" % (tries, served, local, 1000 * first, errs))
        assert first < 1.0, first
        # Not asserted, reported (docs/reliability.md): the clients that libuv's EMFILE
        # trick accepts and closes are not counted in twlb_local_errors_total (libuv
        # does not call the connection callback when the trick succeeds).
        assert h.metric(ms, "twlb_backend_connect_errors_total") == 0
        assert h.metric(ms, "twlb_backend_ejections_total") == 0
        assert h.metric(ms, "twlb_backend_up") == 1
        alive(p, "after 8 s without descriptors")
        assert h.stop(p) == 0


def test_hundred_sighups_under_load_with_health_checks_lose_nothing():
    """300 connections/s for 12 s through three echo backends probed every 100 ms, and a
    SIGHUP every 100 ms (100 reloads, probes open at most of them): 0 failed client
    connections, every reload done, twlb alive and exits 0."""
    n = h.new_net()
    with h.Env() as env:
        bs = [env.backend("b%d" % i, "127.%d.1.%d:0" % (n, i), "echo") for i in (1, 2, 3)]
        cfg = h.pool_config(n, [{"name": "b%d" % i, "address": b.addr}
                                for i, b in zip((1, 2, 3), bs)],
                            health={"interval_ms": 100, "timeout_ms": 80})
        p = env.twlb(cfg)
        load = twstress(env, h.listen_addr(cfg), "--rate", "300", "--duration", "12",
                        "--request-bytes", "16", "--expect-bytes", "16",
                        "--bind", "127.%d.5.1" % n, "--bind", "127.%d.5.2" % n)
        time.sleep(0.5)
        for _ in range(100):
            p.send_signal(signal.SIGHUP)
            time.sleep(0.1)
        r = twstress_report(load, 30)
        h.wait_for(lambda: open(p.log_path).read().count("reloaded") == 100, 10,
                   "100 reloads")
        alive(p, "after 100 SIGHUPs")
        print("    100 SIGHUPs: %d connections of %d attempted, errors %s, connect p99 %.1f "
              "ms, max %.1f ms" % (r["connections"], r["attempted"], r["errors"],
                                   r["connect_ms"]["p99"], r["connect_ms"]["max"]))
        assert r["errors"] == {} and r["connections"] == r["attempted"] >= 3000, r
        assert h.stop(p, timeout=10) == 0, open(p.log_path).read()[-3000:]


def test_sigterm_after_reloads_under_load_exits_by_the_deadline_with_0():
    """50 connections in flight (held open 2 s each) with 5 reloads behind them, then
    SIGTERM: twlb exits by the drain deadline (2 s) with status 0."""
    n = h.new_net()
    with h.Env() as env:
        echo = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": echo.addr}])
        cfg["drain_timeout_ms"] = 2000
        p = env.twlb(cfg)
        host, port = h.split_addr(h.listen_addr(cfg))
        held = []
        load = twstress(env, h.listen_addr(cfg), "--concurrency", "50", "--duration", "8",
                        "--request-bytes", "8", "--expect-bytes", "8")
        for i in range(5):
            s = socket.create_connection((host, port), timeout=5)  # one per generation
            s.sendall(b"g")
            assert s.recv(1) == b"g"
            held.append(s)
            p.send_signal(signal.SIGHUP)
            h.wait_for(lambda: open(p.log_path).read().count("reloaded") == i + 1, 5,
                       "reload %d" % (i + 1))
            time.sleep(0.2)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(2.0 + 1.5)
        except subprocess.TimeoutExpired:
            raise AssertionError("twlb still running %.1f s after SIGTERM" % (
                time.monotonic() - t0))
        took = time.monotonic() - t0
        load.kill()
        load.wait(5)
        for s in held:
            s.close()
        print("    SIGTERM after 5 reloads under load: exit %d after %.2f s (deadline 2 s)" % (
            rc, took))
        assert rc == 0, open(p.log_path).read()[-3000:]
        assert took < 2.0 + 1.0, took


def _entry(n, **kw):
    e = {"pool": "app", "backend": "b1", "inside": "127.%d.4.1" % n, "port": 20000,
         "state": "remote_time_wait", "remaining_ms": 1000, "isn_known": False, "rcv_nxt": 1}
    e.update(kw)
    return e


def _hostile_state_files(n):
    ok = lambda entries: json.dumps({"version": 1, "written_unix_ms": int(time.time() * 1000),
                                     "entries": entries})
    return {
        "empty": b"",
        "garbage": os.urandom(4096),
        "truncated": ok([_entry(n)] * 5)[:-17].encode(),
        "not-an-object": b"[1, 2, 3]",
        "wrong-version": json.dumps({"version": 99, "entries": []}).encode(),
        "entries-not-array": json.dumps({"version": 1, "entries": {"a": 1}}).encode(),
        "port-out-of-range": ok([_entry(n, port=70000), _entry(n, port=-1)]).encode(),
        "port-outside-the-range": ok([_entry(n, port=80)]).encode(),
        "unknown-pool-backend": ok([_entry(n, pool="nope"), _entry(n, backend="nope")]).encode(),
        "unknown-inside": ok([_entry(n, inside="10.9.9.9"), _entry(n, inside="not-an-ip")]).encode(),
        "wrong-types": ok([_entry(n, port="20000", remaining_ms=None, state=7)]).encode(),
        "huge-numbers": ok([_entry(n, remaining_ms=10 ** 30, rcv_nxt=2 ** 64)]).encode(),
        "negative-remaining": ok([_entry(n, remaining_ms=-5)]).encode(),
        "unknown-state": ok([_entry(n, state="owned_by_mallory")]).encode(),
        "nan": ok([_entry(n)]).replace('"remaining_ms": 1000', '"remaining_ms": NaN').encode(),
        "deep-nesting": b"[" * 100000 + b"]" * 100000,
        "nul-bytes": b'{"version": 1, "entries": [\x00]}',
        "bad-utf8": b'{"version": 1, "entries": [], "x": "\xff\xfe"}',
        "duplicate-keys": b'{"version": 1, "version": 2, "entries": []}',
        "duplicate-entries": ok([_entry(n)] * 50).encode(),
    }


def test_corrupt_and_hostile_state_files_never_crash_and_traffic_flows():
    """Each of 20 corrupt or hostile state files, and a directory and a FIFO where the file
    should be: twlb starts within 5 s, serves a client, and exits 0 on SIGTERM (or 1
    with a message where the state cannot be saved: the directory); never a signal, never
    a hang.  (The symlink, temp-file and size cases are in test_hardening.py.)"""
    n = h.new_net()
    results = {}
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "echo")
        cases = dict(_hostile_state_files(n))
        cases["a-directory"] = None
        cases["a-fifo"] = None
        for name, content in cases.items():
            path = env.path("state-%s" % name)
            if name == "a-directory":
                os.mkdir(path)
            elif name == "a-fifo":
                os.mkfifo(path)
            else:
                with open(path, "wb") as f:
                    f.write(content)
            cfg = h.pool_config(n, [{"name": "b1", "address": b.addr}])
            cfg["reuse"]["state_file"] = path
            # a state file that cannot be used means "no knowledge": every port counts as
            # possibly in the backend's TIME_WAIT for one period; make that period 1 s
            cfg["pools"][0]["time_wait"] = {"rule": "bsd", "seconds": 1}
            t0 = time.monotonic()
            p = env.twlb(cfg, name="twlb-%s.json" % name)
            up = time.monotonic() - t0
            h.wait_for(lambda: h.request(h.listen_addr(cfg), b"ok\n", shut=True) == b"ok\n",
                       4, "%s: a client served" % name, interval=0.2)
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(5)
            except subprocess.TimeoutExpired:
                raise AssertionError("%s: twlb hangs at SIGTERM" % name)
            log = open(p.log_path).read()
            assert rc in (0, 1), (name, rc, log[-2000:])
            if rc == 1:
                assert "state" in log, (name, log[-2000:])
            results[name] = (rc, round(up, 2))
        print("    state files (exit, seconds to come up): %s" % results)
        assert all(up < 5 for _, up in results.values()), results
