"""Restarts and crashes lose nothing (issue 11): the state file through the real binary.

The namespace tests use test_reuse.py's topology: the backend runs with tcp_timestamps=0
and tcp_rfc1337=1 and closes first, so it holds every 4-tuple in TIME_WAIT for 60 s and
ignores a SYN "before" the old connection's last sequence number until then (a stall of
about a minute, or SYN retransmissions; docs/kernel-facts.md 1).  twlb runs with the
DEFAULT configuration's state file (none configured: next to the configuration file), 24
source ports, under an open-loop load of 50 connections per second, each uploading 8 MiB:
a port comes round again every ~0.5 s, when the kernel's own ISN clock (15.6 M per
second) has moved less than the bytes sent, so only what twlb remembers keeps a reuse
"after".  A clean restart and a SIGKILL in the middle of the load must leave no stalled
connection and no SYN retransmission after the restart, with at least 90 % of the ports
usable at once; in explicit and in kernel ISN mode.

The loopback tests cover the rest: a first start with a configured file that does not
exist, unreadable and incompatible files, a damaged record, a host crash (another boot
id, no clean stop), a reboot after a clean stop, the import of twlb 0.1's JSON file,
"state_file": null, and a second twlb on the same file."""
import json
import os
import re
import signal
import socket
import subprocess
import time

import harness as h
import statefile
import test_reuse as reuse

PORTS = 24
LO = 30000
UPLOAD = 8 << 20
RATE = 50
OPENLOOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openloop_client.py")

# Polls /metrics inside the lb namespace every 10 ms; once ports have been reused
# <min_reuses> times and at most <max_busy> are busy, SIGKILLs twlb (by PID) and prints
# what it saw.  Killing when few connections are in flight keeps the test about the
# state file, not about the luck of the moment (busy ports are unknown after a crash,
# by design).
KILLER = r"""
import json, os, re, signal, sys, time, urllib.request
pid, min_reuses, max_busy = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        text = urllib.request.urlopen("http://127.0.0.1:9901/metrics", timeout=1).read().decode()
    except OSError:
        time.sleep(0.01)
        continue
    def total(name, where=""):
        return sum(float(m.group(2)) for m in re.finditer(r"^%s(\{[^}]*\})? (\S+)$" % name, text, re.M)
                   if where in (m.group(1) or ""))
    reuses, busy = total("twlb_port_reuses_total"), total("twlb_ports", 'state="busy"')
    if reuses >= min_reuses and busy <= max_busy:
        os.kill(pid, signal.SIGKILL)
        print(json.dumps({"reuses": reuses, "busy": busy,
                          "remote_time_wait": total("twlb_ports", 'state="remote_time_wait"')}))
        sys.exit(0)
    time.sleep(0.01)
print(json.dumps({"timeout": True}))
"""


def config(isn):
    cfg = reuse.config(isn)  # no state_file: the default one, next to the configuration
    assert "state_file" not in cfg["reuse"]
    cfg["pools"][0]["source_ports"] = "%d-%d" % (LO, LO + PORTS - 1)
    cfg["workers"] = 2
    if isn == "kernel":
        # A port whose reuse the kernel's clock does not allow yet is waited for, not
        # refused: 24 ports serve about 44 such connections a second (8 MiB each and the
        # default margin: safe 0.54 s after the SYN), a little under the 50/s offered.
        cfg["pools"][0]["queue"] = {"max": 1000, "timeout_ms": 20000}
    return cfg


def openloop(t, count, timeout=25):
    return t.popen("lb", ["python3", OPENLOOP, "--connect", "127.0.0.1:8080", "--count",
                          str(count), "--rate", str(RATE), "--upload", str(UPLOAD),
                          "--timeout", str(timeout)], stdout=subprocess.PIPE, text=True)


def results(p, timeout=90):
    out, _ = p.communicate(timeout=timeout)
    return json.loads(out)["results"]


def connects_over(ms, seconds):
    """Backend connects that took longer than <seconds> (a retransmitted SYN takes 1 s)."""
    le = lambda b: sum(v for labels, v in ms.get("twlb_backend_connect_seconds_bucket", [])
                       if 'le="%s"' % b in labels)
    return le("+Inf") - le(seconds)


def after_restart(t, isn, p, before=None):
    """The checks once twlb has restarted: what it knows at once, then (after <before>, the
    rest of a load that outlived a crash) 100 connections."""
    ms = reuse.metrics(t)
    unknown = reuse.total(ms, "twlb_ports_unknown")
    assert sum(v for _, v in ms["twlb_ports"]) == PORTS
    # at least 90 % usable at once: only ports busy at a crash are unknown
    assert unknown <= PORTS // 10, ("unknown", unknown, ms["twlb_ports"])
    # and an unknown port is no headroom (counts and headroom are of one snapshot)
    busy = reuse.total(ms, "twlb_ports", 'state="busy"')
    headroom = reuse.total(ms, "twlb_port_headroom")
    assert headroom + unknown + busy <= PORTS, (headroom, unknown, ms["twlb_ports"])
    # and what the backends hold is remembered, not forgotten (read from the log: the
    # rest of a load that outlived a crash is already taking ports again)
    m = re.findall(r"restart on the same boot: restored (\d+) remembered ports",
                   open(p.log_path).read())
    assert m and int(m[-1]) >= PORTS * 3 // 4, (m, ms["twlb_ports"])
    if before:
        before()
    res = results(openloop(t, 100))
    bad = [r for r in res if not (r["ok"] and r["first"] == "b1")]
    assert not bad, bad[:3]
    ms = reuse.metrics(t)
    assert reuse.total(ms, "twlb_syn_retransmits_total") == 0
    assert connects_over(ms, "1") == 0, ms.get("twlb_backend_connect_seconds_bucket")
    reuses = reuse.total(ms, "twlb_port_reuses_total")
    assert reuses >= 50, reuses  # ports the backend still held, reused at once
    slowest = max(r["s"] for r in res)
    print("    %s after the restart: %d ports unknown of %d, 100 connections, %d reuses of "
          "backend TIME_WAIT, 0 SYN retransmissions, no connect over 1 s, slowest client "
          "%.2f s%s" % (isn, unknown, PORTS, reuses, slowest,
                        " (waits in the queue for the kernel's ISN clock included)"
                        if isn == "kernel" else ""))
    return unknown


def restart_test(isn, crash):
    with reuse.topology() as t, h.Env() as env:
        reuse.start_backend(t)
        cfg = config(isn)
        p = reuse.start_twlb(t, env, cfg)
        state = env.path("twlb.json.state")
        assert os.path.exists(state), os.listdir(env.dir)
        load = openloop(t, 150)
        if crash:
            killer = t.popen("lb", ["python3", "-c", KILLER, str(p.pid), str(2 * PORTS), "1"],
                             stdout=subprocess.PIPE, text=True)
            seen = json.loads(killer.communicate(timeout=40)[0])
            assert "timeout" not in seen, seen
            p.wait(5)
            assert p.returncode == -signal.SIGKILL
        else:
            results(load)
            assert h.stop(p) == 0, open(p.log_path).read()[-2000:]
        on_disk = statefile.StateFile(state)
        assert on_disk.clean == (0 if crash else 1)
        p2 = reuse.start_twlb(t, env, cfg)
        log = open(p2.log_path).read()
        assert "restart on the same boot" in log, log[-3000:]
        unknown = after_restart(t, isn, p2, (lambda: load.wait(60)) if crash else None)
        # exactly the ports whose connection's end is unknown: busy (or torn) at the crash
        at_risk = sum(1 for _, _, sl in on_disk.records() if sl.state == "busy" or sl.seq & 1)
        assert unknown == at_risk, (unknown, on_disk.by_state())
        h.stop(p2)
        if crash:
            print("    killed with %d ports busy after %d reuses; on disk then: %s" % (
                seen["busy"], seen["reuses"], on_disk.by_state()))


def test_clean_restart_with_the_default_config_explicit():
    restart_test("explicit", crash=False)


def test_clean_restart_with_the_default_config_kernel():
    restart_test("kernel", crash=False)


def test_sigkill_under_load_explicit():
    restart_test("explicit", crash=True)


def test_sigkill_under_load_kernel():
    restart_test("kernel", crash=True)


# ---- on loopback -----------------------------------------------------------------------


def loop_config(n, backend, state=None, ports="20000-20009", tw=60):
    cfg = h.pool_config(n, [{"name": "b1", "address": backend}], source_ports=ports,
                        time_wait={"rule": "bsd", "seconds": tw})
    cfg["reuse"] = {"isn": "explicit"}
    if state is not False:
        cfg["reuse"]["state_file"] = state
    cfg["workers"] = 1
    return cfg


def ports_of(cfg):
    ms = h.metrics(h.admin_addr(cfg))
    return ({s: h.metric(ms, "twlb_ports", state=s) for s in ("free", "remote_time_wait", "busy")},
            h.metric(ms, "twlb_ports_unknown"))


def headroom_of(cfg):
    """twlb_port_headroom: the ports a new connection could use now (never an unknown one)."""
    return h.metric(h.metrics(h.admin_addr(cfg)), "twlb_port_headroom")


def serve_all(cfg, n):
    """<n> connections at once through a close-first backend, each held open until all
    have their answer: every one needs a port of its own, and the backend closes first
    (it holds the TIME_WAIT).  Returns the first line of each answer."""
    host, port = h.split_addr(h.listen_addr(cfg))
    socks, names = [], []
    try:
        for _ in range(n):
            s = socket.create_connection((host, port), timeout=5)
            socks.append(s)
            s.sendall(b"\n")
            buf = b""
            while b"\n" not in buf:
                d = s.recv(100)
                assert d, "closed before the answer"
                buf += d
            names.append(buf.split(b"\n")[0].decode())
        # the backend's FIN, passed on by twlb, before the client closes: so the backend
        # closed first for twlb too (a client that closed earlier could cross it, and one
        # that closed with bytes unread would send a reset, leaving no TIME_WAIT at all)
        for s in socks:
            assert h.read_until_end(s)[1] == "eof"
    finally:
        for s in socks:
            s.close()
    return names


def ten_in_backend_time_wait(env, n):
    """A twlb with a state file, stopped cleanly after 10 connections through a close-first
    backend left 10 ports in its TIME_WAIT.  Returns (cfg, state file path)."""
    b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
    state = env.path("state")
    cfg = loop_config(n, b.addr, state)
    p = env.twlb(cfg)
    assert serve_all(cfg, 10) == ["b1"] * 10
    h.wait_for(lambda: ports_of(cfg)[0]["remote_time_wait"] == 10, 5, "backend TW")
    assert h.stop(p) == 0
    return cfg, state


def blocked_for(log):
    """The "for up to N s" of the last line about ports without a trusted record."""
    m = re.findall(r"count as possibly in backend TIME_WAIT for up to (\d+) s", log)
    assert m, log[-3000:]
    return int(m[-1])


def test_first_start_with_a_missing_state_file_serves_at_full_capacity():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        state = env.path("does-not-exist-yet")
        cfg = loop_config(n, b.addr, state)
        p = env.twlb(cfg)
        by_state, unknown = ports_of(cfg)
        assert by_state["free"] == 10 and unknown == 0, (by_state, unknown)
        assert serve_all(cfg, 10) == ["b1"] * 10  # every port at once
        log = open(p.log_path).read()
        assert "none yet (a first start): every source port is usable at once" in log, log
        assert "down for" not in log
        assert statefile.StateFile(state).version == 2
        assert h.stop(p) == 0


def test_opting_out_with_null_keeps_no_file():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        cfg = loop_config(n, b.addr, None)
        p = env.twlb(cfg)
        assert serve_all(cfg, 3) == ["b1"] * 3
        assert h.stop(p) == 0
        assert not [f for f in os.listdir(env.dir) if "state" in f], os.listdir(env.dir)


def test_default_path_is_next_to_the_config_or_the_state_directory():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        cfg = loop_config(n, b.addr, False)
        p = env.twlb(cfg, name="lb.json")
        assert h.stop(p) == 0
        assert statefile.StateFile(env.path("lb.json.state")).clean == 1
        # under systemd, StateDirectory= gives $STATE_DIRECTORY (the first of a list)
        sd = env.path("sd")
        os.mkdir(sd)
        path = env.write_config(cfg, "lb2.json")
        r = subprocess.run([h.TWLB, "--check", path], capture_output=True, text=True,
                           env=dict(os.environ, STATE_DIRECTORY=sd + ":/nonexistent"))
        assert r.returncode == 0, r
        log = env.path("sd.log")
        p = env.popen([h.TWLB, "-c", path], env=dict(os.environ, STATE_DIRECTORY=sd),
                      stdout=open(log, "w"), stderr=subprocess.STDOUT)
        h.wait_for(lambda: os.path.exists(os.path.join(sd, "state")), 5, "$STATE_DIRECTORY/state")
        h.wait_for(lambda: h.http_get(h.admin_addr(cfg), "/healthz")[0] == 200, 5, "twlb up")
        assert h.stop(p) == 0


def kill_with_ports_in_backend_tw(env, cfg):
    """Run 10 connections whose backend closes first (remote TIME_WAIT), SIGKILL twlb."""
    p = env.twlb(cfg)
    assert serve_all(cfg, 10) == ["b1"] * 10
    h.wait_for(lambda: ports_of(cfg)[0]["remote_time_wait"] == 10, 5, "10 ports in backend TW")
    p.send_signal(signal.SIGKILL)
    p.wait(5)
    return p


def test_unreadable_file_is_kept_aside_and_only_recent_use_is_feared():
    """Garbage where the state file should be: an error naming it, the file kept as
    FILE.bad, a new file in its place.  Every port counts as possibly in backend TIME_WAIT
    only until the file's last write + 10 s + TIME_WAIT: written 40 s ago with a 60 s
    TIME_WAIT, about 30 s; written 75 s ago, not at all."""
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        state = env.path("state")
        for age, blocked in ((40, True), (75, False)):
            with open(state, "wb") as f:
                f.write(os.urandom(5000))
            then = time.time() - age
            os.utime(state, (then, then))
            cfg = loop_config(n, b.addr, state)
            p = env.twlb(cfg, name="twlb-%d.json" % age)
            log = open(p.log_path).read()
            assert "state file %s: is not a twlb state file; kept as %s.bad" % (state, state) \
                in log, log
            assert os.path.getsize(state + ".bad") == 5000
            by_state, unknown = ports_of(cfg)
            if blocked:
                assert unknown == 10 and by_state["remote_time_wait"] == 10, (by_state, unknown)
                assert headroom_of(cfg) == 0  # unknown ports are no headroom
                assert 25 <= blocked_for(log) <= 31, log
            else:
                assert unknown == 0 and by_state["free"] == 10, (by_state, unknown)
                assert headroom_of(cfg) == 10
                assert serve_all(cfg, 10) == ["b1"] * 10
            assert h.stop(p) == 0
            assert statefile.StateFile(state).clean == 1


def test_incompatible_version_is_refused_clearly():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        state = env.path("state")
        cfg = loop_config(n, b.addr, state, tw=5)
        kill_with_ports_in_backend_tw(env, cfg)
        sf = statefile.StateFile(state)
        sf.data[8:12] = (99).to_bytes(4, "little")  # a later twlb's format
        sf.save()
        p = env.twlb(cfg, name="twlb2.json")
        log = open(p.log_path).read()
        assert "has version 99 of the state file format; this twlb reads versions 1 and 2" \
            in log, log
        assert "its heartbeat" in log, log  # the stable fields tell when it was alive
        by_state, unknown = ports_of(cfg)
        assert unknown == 10, (by_state, unknown)
        assert blocked_for(log) == 5, log  # its heartbeat is this second: one TIME_WAIT
        h.wait_for(lambda: ports_of(cfg)[1] == 0, 8, "the unknown ports to be over")
        assert serve_all(cfg, 10) == ["b1"] * 10
        assert h.stop(p) == 0


def test_damaged_record_costs_only_its_port():
    n = h.new_net()
    with h.Env() as env:
        cfg, state = ten_in_backend_time_wait(env, n)
        sf = statefile.StateFile(state)
        seg, port, sl = sf.records()[3]
        assert sl.state == "remote_time_wait" and sl.isn_known
        off = seg.slot_off(port) + 4
        sf.data[off] ^= 0x40  # one bit of its rcv_nxt
        sf.save()
        p = env.twlb(cfg, name="twlb2.json")
        by_state, unknown = ports_of(cfg)
        assert unknown == 1 and by_state["remote_time_wait"] == 10, (by_state, unknown)
        # the other nine are reused at once (explicit ISNs above their rcv_nxt)
        assert serve_all(cfg, 9) == ["b1"] * 9
        ms = h.metrics(h.admin_addr(cfg))
        assert h.metric(ms, "twlb_port_reuses_total") == 9
        assert h.stop(p) == 0


def test_host_crash_fears_every_port_until_its_time_wait_is_over():
    """A SIGKILL, then the file seen as from another boot (its boot id changed): a host
    crash, the last seconds of stores possibly lost.  Every port counts as unknown until
    the last heartbeat + 10 s + TIME_WAIT; with a heartbeat older than that, none."""
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        for age, blocked in ((5, True), (75, False)):
            state = env.path("state-%d" % age)  # the block of the first is kept in its file
            cfg = loop_config(n, b.addr, state, ports="20000-20019")
            kill_with_ports_in_backend_tw(env, cfg)
            sf = statefile.StateFile(state)
            assert sf.clean == 0 and sf.boot_id_known
            sf.set_header(boot_id=bytes(16), alive_real_ms=int(time.time() * 1000) - age * 1000)
            sf.save()
            p = env.twlb(cfg, name="twlb-%d.json" % age)
            log = open(p.log_path).read()
            assert "restart after a host crash" in log, log
            by_state, unknown = ports_of(cfg)
            if blocked:
                assert unknown == 20 and by_state["remote_time_wait"] == 20, (by_state, unknown)
                # remembered ones included: after a host crash nothing of them is trusted
                assert headroom_of(cfg) == 0
                assert blocked_for(log) == 60, log
            else:
                assert unknown == 0 and by_state["free"] == 20, (by_state, unknown)
                assert headroom_of(cfg) == 20
            h.stop(p)
            if blocked:  # the block is in the new file: a crash now keeps it
                assert statefile.StateFile(state).risk_from_real_ms > 0


def test_reboot_after_a_clean_stop_keeps_what_the_backends_hold():
    """A clean stop, then the file seen as from another boot: the records come back with
    the time they had left (carried by the wall clock), and in explicit mode the ports
    are reused at once with ISNs above the remembered rcv_nxt."""
    n = h.new_net()
    with h.Env() as env:
        cfg, state = ten_in_backend_time_wait(env, n)
        sf = statefile.StateFile(state)
        # the old boot's monotonic clock was 1000 s ahead of this one: deadlines move
        # with it (the wall clock is what carries them over)
        shift = 1000000
        for seg, port, sl in sf.records():
            sl.until_ms += shift
            sf.put(seg, port, sl)
        sf.set_header(boot_id=bytes(16), alive_mono_ms=sf.alive_mono_ms + shift,
                      alive_boot_ms=sf.alive_boot_ms + shift)
        sf.save()
        p = env.twlb(cfg, name="twlb2.json")
        log = open(p.log_path).read()
        assert "restart after a clean stop and a reboot: restored 10 remembered ports" in log, log
        by_state, unknown = ports_of(cfg)
        assert unknown == 0 and by_state["remote_time_wait"] == 10, (by_state, unknown)
        assert serve_all(cfg, 10) == ["b1"] * 10
        assert h.metric(h.metrics(h.admin_addr(cfg)), "twlb_port_reuses_total") == 10
        assert h.stop(p) == 0


def test_records_deep_in_a_large_file_come_back_after_a_crash():
    """A restart reads only the parts of the old file that hold data (a hole reads as
    zeros, and a zeroed slot holds no record; 7.4 s saved with 10,000 paths).  Here the
    backend that is used comes after 79 backup backends of 10,000 ports each: its slots
    lie 25 MB into a 26 MB file, past the data the file system reports at its start.
    After a SIGKILL (the pages written through the mapping, perhaps not yet on disk) and
    a restart, its 10 TIME_WAITs are known again, and the reuse needs no stall."""
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        state = env.path("state")
        cfg = loop_config(n, b.addr, state, ports="20000-29999")
        spare = ["127.%d.1.9:%d" % (n, 10000 + i) for i in range(79)]  # nothing listens
        cfg["pools"][0]["backends"] = [{"name": "s%d" % i, "address": a, "backup": True}
                                       for i, a in enumerate(spare)] + \
            cfg["pools"][0]["backends"]
        p = env.twlb(cfg)
        assert serve_all(cfg, 10) == ["b1"] * 10
        tw = lambda: h.metric(h.metrics(h.admin_addr(cfg)), "twlb_ports", backend="b1",
                              state="remote_time_wait")
        h.wait_for(lambda: tw() == 10, 5, "backend TIME_WAITs")
        assert os.path.getsize(state) > 25_000_000, os.path.getsize(state)
        p.send_signal(signal.SIGKILL)
        p.wait(5)
        p = env.twlb(cfg)
        log = open(p.log_path).read()
        assert "restart on the same boot: restored 10 remembered ports" in log, log
        assert tw() == 10
        assert h.stop(p) == 0


def test_version_1_json_file_is_imported():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        state = env.path("state.json")
        inside = "127.%d.4.1" % n
        statefile.write_v1(state, [
            {"pool": "app", "backend": "b1", "inside": inside, "port": 20000 + i,
             "state": "remote_time_wait", "remaining_ms": 50000, "isn_known": True,
             "rcv_nxt": 1000 * i} for i in range(4)], written_unix_ms=0)
        cfg = loop_config(n, b.addr, state)
        p = env.twlb(cfg)
        log = open(p.log_path).read()
        assert "version 1 (JSON): restored 4 remembered ports" in log, log
        assert "written at an unknown time" in log and "down for" not in log, log
        by_state, _ = ports_of(cfg)
        assert by_state["remote_time_wait"] == 4, by_state
        assert statefile.StateFile(state).by_state() == {"remote_time_wait": 4}
        assert h.stop(p) == 0


def test_a_second_twlb_on_the_same_state_file_refuses_to_start():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        state = env.path("state")
        p = env.twlb(loop_config(n, b.addr, state))
        other = loop_config(n, b.addr, state)
        other["listeners"][0]["bind"] = "127.%d.2.2:%d" % (n, h.free_port("127.%d.2.2" % n))
        other["admin"]["bind"] = "127.%d.3.2:%d" % (n, h.free_port("127.%d.3.2" % n))
        q = env.twlb(other, wait=False, name="other.json")
        assert q.wait(10) == 1
        log = open(q.log_path).read()
        assert "state file %s: in use by another process" % state in log, log
        assert h.stop(p) == 0


def test_reloads_keep_the_file_current():
    """A reload that adds a backend (new slots at the end of the file), one that removes
    it and one that brings it back (its new map gets what its slots hold), one that widens
    the range (a new map seeded from the old one writes what it holds): after them a
    SIGKILL and a restart know every TIME_WAIT."""
    n = h.new_net()
    with h.Env() as env:
        b1 = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        b2 = env.backend("b2", "127.%d.1.2:0" % n, "close-first")
        state = env.path("state")
        cfg = loop_config(n, b1.addr, state)
        p = env.twlb(cfg)
        assert serve_all(cfg, 10) == ["b1"] * 10

        def reload(c):
            env.write_config(c)
            p.send_signal(signal.SIGHUP)
            h.wait_for(lambda: open(p.log_path).read().count("reloaded") == reload.n + 1, 5,
                       "the reload")
            reload.n += 1
        reload.n = 0

        def tw(c):
            ms = h.metrics(h.admin_addr(c))
            return {b: h.metric(ms, "twlb_ports", backend=b, state="remote_time_wait")
                    for b in ("b1", "b2")}

        def crash_and_restart(c):
            nonlocal p
            p.send_signal(signal.SIGKILL)
            p.wait(5)
            p = env.twlb(c)
            reload.n = 0

        cfg["pools"][0]["backends"].append({"name": "b2", "address": b2.addr})
        reload(cfg)
        assert sorted(serve_all(cfg, 10)) == ["b1"] * 5 + ["b2"] * 5  # round robin
        h.wait_for(lambda: tw(cfg) == {"b1": 10, "b2": 5}, 5, "backend TIME_WAITs")
        # b2 goes and comes back within this run: its new map gets what its slots hold
        removed = dict(cfg, pools=[dict(cfg["pools"][0], backends=cfg["pools"][0]["backends"][:1])])
        reload(removed)
        reload(cfg)
        assert tw(cfg) == {"b1": 10, "b2": 5}, tw(cfg)
        crash_and_restart(cfg)
        assert tw(cfg) == {"b1": 10, "b2": 5}, tw(cfg)

        cfg["pools"][0]["source_ports"] = "20000-20019"
        reload(cfg)
        assert tw(cfg) == {"b1": 10, "b2": 5}, tw(cfg)
        crash_and_restart(cfg)
        assert tw(cfg) == {"b1": 10, "b2": 5}, tw(cfg)
        assert h.stop(p) == 0
        assert len(statefile.StateFile(state).segments) == 2  # laid out anew at each start
