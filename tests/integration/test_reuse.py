"""The reuse engine on real kernels, in network namespaces (198.18.0.0/15).

The backend namespace runs with tcp_timestamps=0 and tcp_rfc1337=1: a SYN that reuses a
4-tuple it holds in TIME_WAIT with a sequence number "before" the old one is ignored
until TIME_WAIT ends (about a minute).  The backend closes first; every connection
uploads 32 MiB, so the kernel's own ISN clock (15.6 M per second) falls behind the old
connection's last sequence number; twlb has only 8 source ports, so 40 connections in a
row must reuse each port about 5 times while the backend remembers it."""
import json
import os
import re
import select
import signal
import socket
import subprocess
import time

import harness as h
import netns
import statefile

LB, BE = "198.18.0.1", "198.18.0.2"
UPLOAD = 32 << 20
CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reuse_client.py")


def topology():
    t = netns.Topology()
    t.add_host("lb")
    t.add_host("be", tw="strict")
    t.link("lb", LB + "/24", "be", BE + "/24")
    return t


def start_backend(t):
    p = t.popen("be", [h.TWBACKEND, "--listen", BE + ":9000", "--name", "b1",
                       "--mode", "close-first", "--reply-bytes", "64"], text=True)
    line = h.read_line(p, 5)
    assert line and "listening" in line, line
    return p


def config(isn, state_file=None):
    cfg = {
        "listeners": [{"name": "web", "bind": "127.0.0.1:8080", "pool": "app"}],
        "pools": [{
            "name": "app", "inside": [LB], "source_ports": "30000-30007",
            "connect_timeout_ms": 5000, "retries": 0, "idle_timeout_ms": 30000,
            "time_wait": {"rule": "bsd", "seconds": 60},
            "backends": [{"name": "b1", "address": BE + ":9000"}],
        }],
        "reuse": {"isn": isn},
        "admin": {"bind": "127.0.0.1:9901"},
        "log": {"level": "info"},
    }
    if state_file:
        cfg["reuse"]["state_file"] = state_file
    return cfg


def start_twlb(t, env, cfg, name="twlb.json"):
    path = env.write_config(cfg, name)
    log = open(env.path(name + ".log"), "a")
    p = t.popen("lb", [h.TWLB, "-c", path], stdout=log, stderr=subprocess.STDOUT)
    p.log_path = log.name
    try:
        h.wait_for(lambda: p.poll() is not None or metrics(t) is not None, 10,
                   "twlb's admin endpoint", interval=0.05)
    except AssertionError as e:
        raise AssertionError("twlb did not start (%s):\n%s" % (e, open(log.name).read()))
    assert p.poll() is None, "twlb exited:\n" + open(log.name).read()
    return p


def metrics(t):
    r = t.run("lb", ["python3", "-c",
                     "import urllib.request;print(urllib.request.urlopen("
                     "'http://127.0.0.1:9901/metrics',timeout=3).read().decode())"], timeout=10)
    if r.returncode != 0:
        return None
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"([a-z_]+)(\{.*\})? (\S+)$", line)
        if m and not line.startswith("#"):
            out.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return out


def total(ms, name, contains=""):
    return sum(v for labels, v in ms.get(name, []) if contains in labels)


def run_client(t, count, upload, pause_ms=0, parallel=1):
    r = t.run("lb", ["python3", CLIENT, "--connect", "127.0.0.1:8080", "--count", str(count),
                     "--upload", str(upload), "--pause-ms", str(pause_ms), "--timeout", "4",
                     "--parallel", str(parallel)],
              timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["results"]


def test_explicit_isn_reuses_every_port_without_a_stall():
    with topology() as t, h.Env() as env:
        start_backend(t)
        start_twlb(t, env, config("explicit"))
        res = run_client(t, 40, UPLOAD)
        bad = [(i, r) for i, r in enumerate(res) if not (r["ok"] and r["first"] == "b1")]
        assert not bad, bad[:3]
        slowest = max(r["s"] for r in res)
        assert slowest < 2.0, "a connection took %.2f s (a stalled SYN?)" % slowest
        ms = metrics(t)
        assert total(ms, "twlb_syn_retransmits_total") == 0
        assert total(ms, "twlb_port_reuses_total") >= 32, ms.get("twlb_port_reuses_total")
        assert total(ms, "twlb_isn_mode", 'mode="explicit"') == 1
        # the uploads went through splice(2): its byte counts (rcv_nxt) are exact too
        assert total(ms, "twlb_spliced_bytes_total", 'direction="to_backend"') > 20 * UPLOAD


def test_two_workers_reuse_without_a_stall_and_never_share_a_port():
    """workers: 2, each with its own listener (SO_REUSEPORT) and half of the 8 ports;
    4 clients at once, 32 MiB each, against the strict backend: every connection is
    served at once, no SYN is retransmitted, and the access log shows that no source
    port carried two connections at the same time."""
    with topology() as t, h.Env() as env:
        start_backend(t)
        cfg = config("explicit")
        cfg["workers"] = 2
        cfg["log"]["access_log"] = env.path("access.log")
        cfg["log"]["access_log_format"] = "json"
        p = start_twlb(t, env, cfg)
        res = run_client(t, 40, UPLOAD, parallel=4)
        bad = [r for r in res if not (r["ok"] and r["first"] == "b1")]
        assert len(res) == 40 and not bad, bad[:3]
        assert max(r["s"] for r in res) < 4.0, max(r["s"] for r in res)
        ms = metrics(t)
        assert total(ms, "twlb_syn_retransmits_total") == 0
        assert total(ms, "twlb_backend_connections_total") == 40  # summed over workers
        assert total(ms, "twlb_port_reuses_total") >= 32
        assert total(ms, "twlb_spliced_bytes_total", 'direction="to_backend"') > 20 * UPLOAD
        # every port of the range is counted once: the workers' halves add up to 8
        assert sum(v for _, v in ms["twlb_ports"]) == 8, ms["twlb_ports"]
        h.stop(p)
        spans = {}
        for line in open(env.path("access.log")):
            e = json.loads(line)
            end = time.mktime(time.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S")) + \
                float("0." + e["time"][20:23])
            spans.setdefault(e["inside"], []).append((end - e["duration_ms"] / 1000.0, end))
        assert sum(len(v) for v in spans.values()) == 40
        assert len(spans) == 8, sorted(spans)
        for port, iv in spans.items():
            iv.sort()
            for (s0, e0), (s1, e1) in zip(iv, iv[1:]):
                # the next connection on a port starts after the last one ended (1 ms of
                # rounding in the log's timestamps)
                assert s1 >= e0 - 0.002, (port, (s0, e0), (s1, e1))


def test_kernel_mode_never_reuses_unsafely():
    with topology() as t, h.Env() as env:
        start_backend(t)
        start_twlb(t, env, config("kernel"))
        res = run_client(t, 40, UPLOAD, pause_ms=20)
        ok = [r for r in res if r["ok"]]
        assert len(ok) >= 8, "the 8 fresh ports must work"
        assert max(r["s"] for r in ok) < 2.0, "a stalled SYN"
        ms = metrics(t)
        assert total(ms, "twlb_syn_retransmits_total") == 0
        reuses = total(ms, "twlb_port_reuses_total")
        assert reuses < 32, reuses  # fewer reuses than explicit: it only reuses when safe
        # the rest were turned away at once, and counted
        assert total(ms, "twlb_ports_exhausted_total") >= 40 - len(ok) - reuses
        assert total(ms, "twlb_isn_mode", 'mode="kernel"') == 1


def test_kernel_margin_is_applied_and_reloadable():
    """reuse.kernel_margin_us decides how soon kernel mode reuses a port the backend
    holds in TIME_WAIT (docs/reuse.md, "The kernel-mode margin").  With 10 s, the 8 ports
    used once are not reused within the test: the next clients are turned away at once.
    After a reload to the default (4096 us) the same ports are reused, every connection
    is served at once and the strict backend retransmits no SYN of ours."""
    with topology() as t, h.Env() as env:
        start_backend(t)
        cfg = config("kernel")
        cfg["workers"] = 1  # one port map: 8 connections use the 8 ports
        cfg["reuse"]["kernel_margin_us"] = 10000000
        p = start_twlb(t, env, cfg)
        assert all(r["ok"] for r in run_client(t, 8, 0))
        # the backend closed first: wait until all 8 are in its TIME_WAIT for twlb
        h.wait_for(lambda: total(metrics(t), "twlb_ports", 'state="remote_time_wait"') == 8,
                   5, "8 ports in the backend's TIME_WAIT")
        res = run_client(t, 4, 0)
        assert not any(r["ok"] for r in res), res  # 10 s margin: nothing is safe yet
        ms = metrics(t)
        assert total(ms, "twlb_port_reuses_total") == 0
        assert total(ms, "twlb_ports_exhausted_total") >= 4
        del cfg["reuse"]["kernel_margin_us"]  # the default
        env.write_config(cfg, "twlb.json")
        p.send_signal(signal.SIGHUP)
        h.wait_for(lambda: open(p.log_path).read().count("reloaded") >= 1, 5, "the reload")
        res = run_client(t, 8, 0)
        # each port again, once the margin has passed since its last SYN (these
        # connections take well under a millisecond each, so without the pause the
        # ports would still be within the margin and refused: the margin at work)
        time.sleep(0.02)
        res += run_client(t, 8, 0)
        assert all(r["ok"] and r["first"] == "b1" for r in res), res
        assert max(r["s"] for r in res) < 1.0, "a stalled SYN"
        ms = metrics(t)
        assert total(ms, "twlb_port_reuses_total") == 16
        assert total(ms, "twlb_syn_retransmits_total") == 0
        assert total(ms, "twlb_backend_demoted") == 0
        h.stop(p)


def pending_after(t, seconds, upload):
    """A plain client (no twlb): the same 4-tuple twice, the backend closing first.
    Returns how the second connect went: "connected" or "pending"."""
    code = r"""
import select, socket, sys, time
def conn(upload):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("%(lb)s", 31000))
    s.setblocking(False)
    try:
        s.connect(("%(be)s", 9000))
    except BlockingIOError:
        pass
    _, w, _ = select.select([], [s], [], %(secs)s)
    if not w or s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
        s.close()
        return None
    s.setblocking(True)
    s.settimeout(10)
    chunk = b"x" * 65536
    left = upload
    while left > 0:
        n = s.send(chunk[:min(left, len(chunk))]); left -= n
    s.sendall(b"\n")
    while s.recv(65536):
        pass
    s.close()
    return True
assert conn(%(upload)d)
sys.path.insert(0, %(here)r)
import harness as h
# the backend closed first: it holds the TIME_WAIT once our last ACK is in, i.e. once
# our side of the 4-tuple (port 31000 = 0x7918) has left /proc/net/tcp
h.wait_for(lambda: not any(l.split()[1].endswith(":7918") for l in open("/proc/net/tcp")),
           5, "our side of the first connection to close")
t0 = time.monotonic()
print("connected" if conn(0) else "pending", round(time.monotonic() - t0, 2))
""" % {"lb": LB, "be": BE, "secs": seconds, "upload": upload,
       "here": os.path.dirname(os.path.abspath(__file__))}
    r = t.run("lb", ["python3", "-c", code], timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[0]


def test_plain_client_shows_the_stall():
    """Without twlb the problem is real on this kernel: after a 32 MiB upload the
    kernel's ISN for the same 4-tuple is "before" and the strict backend ignores the SYN
    (still pending after 2 s, aborted there); with no upload it is accepted at once."""
    with topology() as t:
        start_backend(t)
        assert pending_after(t, 2, UPLOAD) == "pending"
        # control: a fresh 4-tuple (other port) with nothing uploaded is accepted at once
    with topology() as t:
        start_backend(t)
        assert pending_after(t, 2, 0) == "connected"


def test_restart_remembers_backend_time_wait():
    with topology() as t, h.Env() as env:
        start_backend(t)
        state = env.path("state")
        cfg = config("explicit", state_file=state)
        # one worker: "8 connections use the 8 ports" holds for one bookkeeping; with two,
        # each has 4 ports and the kernel may send 5 connections to one of them
        cfg["workers"] = 1
        p = start_twlb(t, env, cfg)  # no file yet: a first start, every port usable
        res = run_client(t, 8, 1 << 20)
        assert all(r["ok"] for r in res), res
        assert h.stop(p) == 0
        saved = statefile.StateFile(state)
        assert saved.clean == 1
        recs = saved.records()
        assert len(recs) == 8, saved.by_state()
        assert all(sl.state == "remote_time_wait" and sl.isn_known for _, _, sl in recs)
        p = start_twlb(t, env, cfg)
        ms = metrics(t)
        assert total(ms, "twlb_ports", 'state="remote_time_wait"') == 8
        res = run_client(t, 8, 1 << 20)
        assert all(r["ok"] for r in res), res
        assert max(r["s"] for r in res) < 2.0
        ms = metrics(t)
        assert total(ms, "twlb_syn_retransmits_total") == 0
        assert total(ms, "twlb_port_reuses_total") == 8
        h.stop(p)


HOLD = ("import socket,sys\n"
        "s=socket.create_connection(('127.0.0.1',8080),timeout=10)\n"
        "print('connected',flush=True)\n"
        "sys.stdin.read()\n"
        "s.sendall(b'\\n');print(s.recv(100).split(b'\\n')[0].decode(),flush=True)\n")


def port_spans(path):
    """The access log's connections, by inside address:port: [(start, end)] sorted."""
    spans = {}
    for line in open(path):
        e = json.loads(line)
        end = time.mktime(time.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S")) + \
            float("0." + e["time"][20:23])
        spans.setdefault(e["inside"], []).append((end - e["duration_ms"] / 1000.0, end))
    for iv in spans.values():
        iv.sort()
    return spans


def test_upgrade_carries_time_wait_records_over():
    """An upgrade (twlb --takeover, the same config, the default-on state file) toward
    the strict backend: the 7 ports the old process left in backend TIME_WAIT are reused
    by the new one at once (explicit ISNs above the records' rcv_nxt: no SYN
    retransmitted), and the port of a connection still open on the old process is never
    used by the new one while it is (the shared access log: no port carries two
    connections at once)."""
    with topology() as t, h.Env() as env:
        start_backend(t)
        cfg = config("explicit", state_file=env.path("state"))
        cfg["workers"] = 1
        cfg["drain_timeout_ms"] = 20000
        cfg["upgrade_socket"] = env.path("twlb.sock")
        cfg["log"]["access_log"] = env.path("access.log")
        cfg["log"]["access_log_format"] = "json"
        old = start_twlb(t, env, cfg)
        res = run_client(t, 8, 1 << 20)  # every port once: all 8 in backend TIME_WAIT
        assert all(r["ok"] for r in res), res
        hold = t.popen("lb", ["python3", "-c", HOLD], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, text=True)
        assert h.read_line(hold, 5) == "connected"
        h.wait_for(lambda: total(metrics(t) or {}, "twlb_ports", 'state="busy"') == 1, 5,
                   "the held connection's port busy")
        path = env.path("twlb.json")
        log = open(env.path("new.log"), "w")
        new = t.popen("lb", [h.TWLB, "-c", path, "--takeover", cfg["upgrade_socket"]],
                      stdout=log, stderr=subprocess.STDOUT)
        h.wait_for(lambda: new.poll() is not None or
                   "takeover: serving" in open(log.name).read(), 10, "the new twlb serving")
        assert new.poll() is None, open(log.name).read()
        h.wait_for(lambda: metrics(t) is not None, 5, "the admin endpoint, handed over")
        ms = metrics(t)
        # 7 records carried over; the held port counts as unknown (the old one has it)
        assert total(ms, "twlb_ports", 'state="remote_time_wait"') == 8, ms["twlb_ports"]
        assert total(ms, "twlb_ports_unknown") == 1, ms.get("twlb_ports_unknown")
        res = run_client(t, 14, 1 << 20)
        assert all(r["ok"] for r in res), res
        assert max(r["s"] for r in res) < 2.0, max(r["s"] for r in res)
        ms = metrics(t)
        assert total(ms, "twlb_syn_retransmits_total") == 0
        assert total(ms, "twlb_port_reuses_total") == 14
        assert old.poll() is None  # still draining the held connection
        hold.stdin.close()
        assert h.read_line(hold, 5) == "b1"
        assert hold.wait(5) == 0
        assert old.wait(10) == 0, open(old.log_path).read()
        assert h.stop(new) == 0, open(log.name).read()
        spans = port_spans(env.path("access.log"))
        assert sum(len(v) for v in spans.values()) == 8 + 1 + 14, spans
        assert len(spans) == 8, sorted(spans)
        for port, iv in spans.items():
            for (s0, e0), (s1, e1) in zip(iv, iv[1:]):
                assert s1 >= e0 - 0.002, (port, (s0, e0), (s1, e1))


def test_missing_state_file_means_a_first_start_at_full_capacity():
    """Issue 11: a configured state file that does not exist yet (a first install) used
    to block every port for a whole TIME_WAIT period; it is a first start now."""
    with topology() as t, h.Env() as env:
        start_backend(t)
        state = env.path("missing")
        p = start_twlb(t, env, config("explicit", state_file=state))
        ms = metrics(t)
        assert total(ms, "twlb_ports", 'state="free"') == 8
        res = run_client(t, 8, 0)
        assert all(r["ok"] for r in res), res
        assert "a first start" in open(p.log_path).read()
        assert os.path.exists(state)
        h.stop(p)


def client_closes_first(t, count):
    """Connections on which the client closes first, so twlb sends the first FIN toward
    the backend and our own kernel keeps the TIME_WAIT."""
    code = r"""
import socket, sys
ok = 0
for i in range(%d):
    try:
        s = socket.create_connection(("127.0.0.1", 8080), timeout=3)
        s.sendall(b"x")
        s.shutdown(socket.SHUT_WR)
        if s.recv(10) == b"x":
            ok += 1
        s.close()
    except OSError:
        pass
print(ok)
""" % count
    r = t.run("lb", ["python3", "-c", code], timeout=60)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def echo_topology():
    t = netns.Topology()
    t.add_host("lb")
    t.add_host("be", tw="bsd")  # no timestamps: our TIME_WAIT blocks the port
    t.link("lb", LB + "/24", "be", BE + "/24")
    p = t.popen("be", [h.TWBACKEND, "--listen", BE + ":9000", "--name", "e", "--mode", "echo"],
                text=True)
    assert "listening" in (h.read_line(p, 5) or "")
    return t


def test_local_time_wait_avoid_destroy_and_reload_from_kernel():
    with echo_topology() as t, h.Env() as env:
        cfg = config("explicit")
        cfg["reuse"]["local_time_wait"] = "avoid"
        p = start_twlb(t, env, cfg)
        assert client_closes_first(t, 8) == 8
        ms = metrics(t)
        assert total(ms, "twlb_ports", 'state="local_time_wait"') == 8
        # avoid: without timestamps the 8 ports stay ours until TIME_WAIT ends
        assert client_closes_first(t, 2) == 0
        h.stop(p)
        # a restart finds our TIME_WAIT sockets in the kernel (inet_diag)
        p = start_twlb(t, env, cfg, name="twlb2.json")
        assert total(metrics(t), "twlb_ports", 'state="local_time_wait"') == 8
        assert client_closes_first(t, 2) == 0
        h.stop(p)
        # destroy: SOCK_DESTROY our TIME_WAIT, reuse the port at once
        cfg["reuse"]["local_time_wait"] = "destroy"
        p = start_twlb(t, env, cfg, name="twlb3.json")
        assert client_closes_first(t, 16) == 16
        assert total(metrics(t), "twlb_syn_retransmits_total") == 0
        h.stop(p)


def test_rejected_reuses_are_counted_and_demote_the_backend():
    """A backend that rejects explicit-ISN reuses: twlb is made to believe a wrong rcv_nxt
    (its state file edited by 2^31), so its "after" ISNs are "before" for the backend
    (timestamps off, rfc1337 off: bare ACK, RST, SYN resent ~10 ms later).  Each reuse
    costs a SYN retransmission that twlb counts; after three in a row it treats the
    backend as strict (logged once, metric) and reuses no more."""
    t = netns.Topology()
    with t, h.Env() as env:
        t.add_host("lb")
        t.add_host("be", tw="bsd")
        t.link("lb", LB + "/24", "be", BE + "/24")
        start_backend(t)
        state = env.path("state")
        cfg = config("explicit", state_file=state)
        cfg["pools"][0]["source_ports"] = "30000-30005"
        cfg["workers"] = 1  # 6 connections on 6 ports: one bookkeeping
        p = start_twlb(t, env, cfg)
        assert all(r["ok"] for r in run_client(t, 6, 0))
        assert h.stop(p) == 0
        assert statefile.skew_rcv_nxt(state) == 6
        # two workers now: the file is split between them by port (3 each), and the
        # rejects of both count toward one demotion, seen by both.  With 3 remembered
        # ports per worker, each of the 3 connections meets one whose rcv_nxt is wrong,
        # whichever worker the kernel gives it to.
        cfg["workers"] = 2
        p = start_twlb(t, env, cfg, name="twlb2.json")
        res = run_client(t, 3, 0)
        assert all(r["ok"] for r in res), res  # accepted after the RST, ~10 ms late
        ms = metrics(t)
        assert total(ms, "twlb_port_reuses_total") == 3
        assert total(ms, "twlb_syn_retransmits_total") == 3
        assert total(ms, "twlb_backend_demoted") == 1
        # strict from now on: ports in backend TIME_WAIT are not reused
        assert not run_client(t, 1, 0)[0]["ok"]
        assert total(metrics(t), "twlb_port_reuses_total") == 3
        h.stop(p)
        assert open(p.log_path).read().count("treating it as \"strict\"") == 1


def test_silently_ignored_reuses_demote_and_the_operator_can_trust_again():
    """Issue 11: an rfc1337 backend ignores a reused SYN it finds "before" until the
    connect times out, with nothing for TCP_INFO to count as retransmitted in time, so a
    backend mislabelled "bsd" was never demoted.  A connect timeout on a 4-tuple in the
    backend's TIME_WAIT now counts as a rejected reuse; after three in a row the backend
    is treated as strict; POST .../trust makes its configured rule apply again."""
    t = netns.Topology()
    with t, h.Env() as env:
        t.add_host("lb")
        t.add_host("be", tw="strict")
        t.link("lb", LB + "/24", "be", BE + "/24")
        start_backend(t)
        state = env.path("state")
        cfg = config("explicit", state_file=state)
        cfg["pools"][0]["source_ports"] = "30000-30002"
        cfg["pools"][0]["connect_timeout_ms"] = 300
        cfg["workers"] = 1
        p = start_twlb(t, env, cfg)
        assert all(r["ok"] for r in run_client(t, 3, 0))
        assert h.stop(p) == 0
        statefile.skew_rcv_nxt(state)  # twlb now believes a wrong rcv_nxt: its ISNs are "before"
        p = start_twlb(t, env, cfg, name="twlb2.json")
        res = run_client(t, 3, 0)
        assert not any(r["ok"] for r in res), res  # ignored until the timeout
        ms = metrics(t)
        assert total(ms, "twlb_backend_demoted") == 1, ms.get("twlb_backend_demoted")
        assert open(p.log_path).read().count("treating it as \"strict\"") == 1
        r = t.run("lb", ["python3", "-c",
                         "import urllib.request as u;print(u.urlopen(u.Request("
                         "'http://127.0.0.1:9901/pools/app/backends/b1/trust',method='POST'),"
                         "timeout=3).status)"], timeout=10)
        assert r.stdout.strip() == "200", (r.stdout, r.stderr)
        assert total(metrics(t), "twlb_backend_demoted") == 0
        assert "trusted again by the operator" in open(p.log_path).read()
        h.stop(p)
