"""Client ACLs, per-client limits and twlb_rejected_total, through the real binary (issue
10): who is refused is reset at once, counted with its reason, and never reaches a
backend.

The backend is twbackend in echo mode with --proxy-protocol, and twlb sends it a PROXY v1
header: every connection that reaches it prints "proxy pp v1 src=IP:PORT ...", so the
test knows the source address of each one, and its SIGUSR1 counter says how many there
were.  Clients are 127.N.5.x on loopback (the whole of 127/8 is loopback); IPv6 is ::1
on a [::1] listener; a dual-stack [::] listener runs in a network namespace of its own
(netns.py), where it holds only that namespace's addresses."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import harness as h

# ---- helpers -------------------------------------------------------------------------


def attempt(addr, src, keep=None, timeout=5):
    """One client: connect from <src>, send a line, read it back through the echo
    backend.  "served" (the line came back) or "refused" (a reset, or EOF without data).
    With <keep> (a list) a served connection stays open and is appended to it."""
    host, port = h.split_addr(addr)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        try:
            s.connect((host, port))  # the handshake is the kernel's: it completes
            s.sendall(b"ping\n")
            got = b""
            while not got.endswith(b"\n"):
                d = s.recv(100)
                if not d:
                    return "refused"
                got += d
        except (ConnectionResetError, BrokenPipeError):
            return "refused"
        assert got == b"ping\n", got
        if keep is not None:
            keep.append(s)
            s = None
        return "served"
    finally:
        if s:
            s.close()


def pp_backend(env, n):
    return env.backend("pp", "127.%d.1.1:0" % n, "echo", "--proxy-protocol")


def config(n, backend, workers=1, **listener):
    cfg = h.pool_config(n, [{"name": "pp", "address": backend.addr, "proxy_protocol": "v1"}])
    cfg["listeners"][0].update(listener)
    cfg["workers"] = workers
    return cfg


def proxied_sources(b, count, timeout=5):
    """The client addresses of the next <count> connections the backend saw."""
    out = []
    for _ in range(count):
        line = h.read_line(b, timeout)
        m = re.match(r"proxy pp v1 src=(\S+):\d+ dst=", line or "")
        assert m, "backend line %r" % line
        out.append(m.group(1))
    return out


def backend_accepted(env, b):
    """The backend's own count of connections accepted (SIGUSR1 prints it)."""
    path = env.path("stderr-%d.log" % env.procs.index(b))
    before = open(path).read().count("accepted")
    b.send_signal(signal.SIGUSR1)
    h.wait_for(lambda: open(path).read().count("accepted") > before, 5, "twbackend's counters")
    return int(re.findall(r"accepted (\d+)", open(path).read())[-1])


def rejected(cfg, reason):
    return h.metric(h.metrics(h.admin_addr(cfg)), "twlb_rejected_total", listener="web",
                    reason=reason)


def reload(p, cfg, env):
    before = open(p.log_path).read().count("reloaded")
    env.write_config(cfg)
    p.send_signal(signal.SIGHUP)
    h.wait_for(lambda: open(p.log_path).read().count("reloaded") > before, 5, "the reload")


def workers_with(cfg, key):
    return [w[key] for w in h.stats(h.admin_addr(cfg))["workers"]]


# ---- ACLs ----------------------------------------------------------------------------


def test_ipv4_allow_deny_edges_and_reload():
    """allow /31 and /32, deny inside the allow (deny wins), then a reload to deny
    0.0.0.0/0 (every IPv4 client; an open connection stays), then to allow 0.0.0.0/0.
    Refused clients are counted as acl, logged, and never reach the backend."""
    n = h.new_net()
    net = "127.%d.5." % n
    with h.Env() as env:
        b = pp_backend(env, n)
        cfg = config(n, b, workers=2, allow=[net + "2/31", net + "7/32", net + "0/32"],
                     deny=[net + "3"])
        p = env.twlb(cfg)
        a = h.listen_addr(cfg)
        want = {"2": "served",  # in the /31
                "3": "refused",  # in the /31 but denied: deny wins
                "1": "refused",  # just below the /31
                "4": "refused",  # just above it
                "7": "served", "6": "refused", "8": "refused",  # the /32 and its neighbours
                "0": "served"}
        got = {last: attempt(a, net + last) for last in want}
        assert got == want, got
        served = [net + k for k, v in want.items() if v == "served"]
        assert sorted(proxied_sources(b, len(served))) == sorted(served)
        assert rejected(cfg, "acl") == 5
        assert backend_accepted(env, b) == 3
        st = h.stats(h.admin_addr(cfg))["listeners"][0]
        assert st["rejected_acl"] == 5 and st["connections_total"] == 8, st
        log = open(p.log_path).read()
        assert "listener web: refused client %s3 (acl)" % net in log, log

        # Every IPv4 client is denied now; a connection opened before stays open.
        keep = []
        assert attempt(a, net + "2", keep=keep) == "served"
        proxied_sources(b, 1)
        cfg["listeners"][0].pop("allow")
        cfg["listeners"][0]["deny"] = ["0.0.0.0/0"]
        reload(p, cfg, env)
        for last in ("2", "7", "200"):
            assert attempt(a, net + last) == "refused", last
        keep[0].sendall(b"still\n")
        assert keep[0].recv(100) == b"still\n"
        keep[0].close()
        # The counter carried on over the reload (the listener kept its socket).
        assert rejected(cfg, "acl") == 8

        # allow 0.0.0.0/0: everyone, the denied /32 of the first config too.
        cfg["listeners"][0].pop("deny")
        cfg["listeners"][0]["allow"] = ["0.0.0.0/0"]
        reload(p, cfg, env)
        assert attempt(a, net + "3") == "served"
        assert proxied_sources(b, 1) == [net + "3"]
        assert backend_accepted(env, b) == 5
        assert rejected(cfg, "acl") == 8
        ms = h.metrics(h.admin_addr(cfg))
        assert h.metric(ms, "twlb_backend_connections_total") == 5
        for reason in ("client_limit", "client_rate", "max_connections", "queue_full",
                       "queue_timeout", "no_backend"):
            assert h.metric(ms, "twlb_rejected_total", reason=reason) == 0, reason


def free_port6():
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def test_ipv6_client_and_prefix_edges():
    """An IPv6 listener on ::1 and its one client, ::1, against /128, /127 and /0 edges,
    one reload each."""
    n = h.new_net()
    with h.Env() as env:
        b = pp_backend(env, n)
        cfg = config(n, b, allow=["::1/128"])
        cfg["listeners"][0]["bind"] = "[::1]:%d" % free_port6()
        p = env.twlb(cfg)
        a = cfg["listeners"][0]["bind"]
        cases = [  # (allow, deny, outcome for ::1)
            (["::1/128"], None, "served"),
            (["::2/128"], None, "refused"),  # the /128 next door
            (["::/127"], None, "served"),  # :: and ::1
            (["::2/127"], None, "refused"),  # ::2 and ::3
            (["::/0"], None, "served"),
            (["0.0.0.0/0"], None, "refused"),  # IPv4 prefixes never match IPv6 clients
            (None, ["::/0"], "refused"),
            (["::1"], ["::/127"], "refused"),  # deny wins
            (None, ["0.0.0.0/0", "::2/127"], "served"),
        ]
        want_acl = 0
        for i, (allow, deny, outcome) in enumerate(cases):
            lis = cfg["listeners"][0]
            lis.pop("allow", None)
            lis.pop("deny", None)
            if allow:
                lis["allow"] = allow
            if deny:
                lis["deny"] = deny
            if i:
                reload(p, cfg, env)
            got = attempt(a, "::1")
            assert got == outcome, (allow, deny, got)
            if outcome == "served":
                assert proxied_sources(b, 1) == ["::1"]
            else:
                want_acl += 1
        assert rejected(cfg, "acl") == want_acl
        assert backend_accepted(env, b) == len(cases) - want_acl


# The client side of the dual-stack test, run inside the namespace: each attempt of
# argv[1] (JSON: [[src, dst_host], ...], to port argv[2]) and then /metrics of argv[3].
DUAL_CLIENT = r"""
import json, socket, sys, urllib.request
plan, port, admin = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = []
for src, dst in plan:
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(fam)
    s.settimeout(5)
    try:
        s.bind((src, 0))
        s.connect((dst, port))
        s.sendall(b"ping\n")
        got = s.recv(100)
        out.append("served" if got == b"ping\n" else "refused")
    except (ConnectionResetError, BrokenPipeError):
        out.append("refused")
    finally:
        s.close()
text = urllib.request.urlopen("http://%s/metrics" % admin, timeout=5).read().decode()
print(json.dumps({"results": out, "metrics": text}))
"""


def test_dual_stack_listener_matches_ipv4_clients_as_ipv4():
    """A [::]:PORT listener (in a namespace of its own, so [::] is only that namespace's
    loopback) sees IPv4 clients as ::ffff:a.b.c.d: they must match the IPv4 prefixes,
    and ::/0 must not take them."""
    import netns
    netns.require()
    with netns.Topology() as t, h.Env() as env:
        t.add_host("lb")
        b = t.popen("lb", [h.TWBACKEND, "--listen", "127.0.0.1:9001", "--name", "pp",
                           "--mode", "echo", "--proxy-protocol"], text=True)
        assert "listening" in (h.read_line(b, 5) or "")
        cfg = {
            "listeners": [{"name": "web", "bind": "[::]:8080", "pool": "app",
                           "allow": ["127.0.0.2", "::ffff:127.0.0.4/127", "::1"]}],
            "pools": [{"name": "app", "inside": ["127.0.0.1"], "retries": 0,
                       "backends": [{"name": "pp", "address": "127.0.0.1:9001",
                                     "proxy_protocol": "v1"}]}],
            "reuse": {"isn": "off"}, "admin": {"bind": "127.0.0.1:9901"},
            "log": {"level": "info"},
        }
        path = env.write_config(cfg)
        log = open(env.path("twlb.log"), "w")
        p = t.popen("lb", [h.TWLB, "-c", path], stdout=log, stderr=subprocess.STDOUT)

        def run(plan):
            r = t.run("lb", [sys.executable, "-c", DUAL_CLIENT, json.dumps(plan), "8080",
                             "127.0.0.1:9901"], timeout=60)
            assert r.returncode == 0, r.stderr + open(log.name).read()
            return json.loads(r.stdout)

        h.wait_for(lambda: p.poll() is not None or run([]), 10, "twlb in the namespace")
        assert p.poll() is None, open(log.name).read()
        plan = [["127.0.0.2", "127.0.0.1"],  # allowed as IPv4 (127.0.0.2/32)
                ["127.0.0.3", "127.0.0.1"],  # next door: refused
                ["127.0.0.5", "127.0.0.1"],  # in the mapped /127 (127.0.0.4/31)
                ["127.0.0.6", "127.0.0.1"],  # past it
                ["::1", "::1"]]              # the IPv6 client
        r = run(plan)
        assert r["results"] == ["served", "refused", "served", "refused", "served"], r
        lines = [h.read_line(b, 5) for _ in range(3)]
        srcs = sorted(re.search(r"src=(\S+):\d+ ", x).group(1) for x in lines)
        # (the PROXY header gives the addresses as the listener saw them: v4-mapped)
        assert srcs == sorted(["::ffff:127.0.0.2", "::ffff:127.0.0.5", "::1"]), lines
        assert 'twlb_rejected_total{listener="web",reason="acl"} 2' in r["metrics"]

        # deny ::/0: the IPv6 client only; IPv4 clients are not IPv6 here.
        cfg["listeners"][0]["allow"] = ["0.0.0.0/0", "::/0"]
        cfg["listeners"][0]["deny"] = ["::/0", "127.0.0.3"]
        env.write_config(cfg)
        p.send_signal(signal.SIGHUP)
        h.wait_for(lambda: "reloaded" in open(log.name).read(), 5, "the reload")
        r = run(plan)
        assert r["results"] == ["served", "refused", "served", "served", "refused"], r
        lines = [h.read_line(b, 5) for _ in range(3)]
        srcs = sorted(re.search(r"src=(\S+):\d+ ", x).group(1) for x in lines)
        assert srcs == ["::ffff:127.0.0.2", "::ffff:127.0.0.5", "::ffff:127.0.0.6"], lines
        assert 'twlb_rejected_total{listener="web",reason="acl"} 4' in r["metrics"]
        assert 'twlb_backend_connections_total{pool="app",backend="pp"} 6' in r["metrics"]
        assert h.stop(p) == 0
        log.close()


# ---- per-client limits ----------------------------------------------------------------


def test_max_connections_per_client_across_workers():
    """max_connections_per_client 10 with 2 workers: 10 held connections of one client,
    spread over both workers, and the 11th is refused; another client is served; a
    slot frees when one closes."""
    n = h.new_net()
    one, other = "127.%d.5.1" % n, "127.%d.5.2" % n
    with h.Env() as env:
        b = pp_backend(env, n)
        cfg = config(n, b, workers=2, max_connections_per_client=10)
        env.twlb(cfg)
        a = h.listen_addr(cfg)
        keep, refused, served = [], 0, 0
        for _ in range(3):  # the kernel spreads them by 4-tuple: both workers, surely
            for _ in range(10):
                assert attempt(a, one, keep=keep) == "served"
                served += 1
            if min(workers_with(cfg, "sessions_active")) > 0:
                break
            for s in keep:
                s.close()
            keep = []
            h.wait_for(lambda: sum(workers_with(cfg, "sessions_active")) == 0, 5,
                       "the connections closed")
        assert min(workers_with(cfg, "sessions_active")) > 0, workers_with(
            cfg, "sessions_active")
        for _ in range(3):
            assert attempt(a, one) == "refused"
            refused += 1
        assert attempt(a, other) == "served"
        served += 1
        keep.pop().close()

        def one_more():
            nonlocal refused, served
            if attempt(a, one, keep=keep) == "served":
                served += 1
                return True
            refused += 1  # the closed one's session may not have ended yet
            return False
        h.wait_for(one_more, 5, "a slot of the client to free")
        assert attempt(a, one) == "refused"
        refused += 1
        assert rejected(cfg, "client_limit") == refused
        assert rejected(cfg, "client_rate") == 0
        assert backend_accepted(env, b) == served
        srcs = proxied_sources(b, served)
        assert srcs.count(other) == 1 and srcs.count(one) == served - 1
        for s in keep:
            s.close()


def test_rate_per_client_measured_across_workers():
    """rate_per_client 20 with a burst of 10 and 2 workers: one client trying 100 times a
    second for 3 s is served burst + rate * t times (within 3), over both workers; a
    second client has a bucket of its own (exactly its burst at once)."""
    n = h.new_net()
    one, other = "127.%d.5.1" % n, "127.%d.5.2" % n
    rate, burst = 20, 10
    with h.Env() as env:
        b = pp_backend(env, n)
        cfg = config(n, b, workers=2, rate_per_client=rate, burst_per_client=burst)
        env.twlb(cfg)
        a = h.listen_addr(cfg)
        results = []
        t0 = time.monotonic()
        while len(results) < 300 and time.monotonic() - t0 < 3.0:
            pause = t0 + len(results) * 0.01 - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the load, not waiting for a condition
            results.append((time.monotonic(), attempt(a, one)))
        span = results[-1][0] - results[0][0]
        served = sum(1 for _, r in results if r == "served")
        expect = burst + rate * span
        print("rate_per_client: %d attempts in %.2f s, %d served, burst + rate * t = %.1f"
              % (len(results), span, served, expect))
        # The client tried much faster than the rate (about 100 a second when the machine
        # is not loaded; 50 a second is still 2.5 times the rate).
        assert len(results) >= 150, len(results)
        assert abs(served - expect) <= 3, (served, expect)
        assert min(workers_with(cfg, "sessions_total")) > 0, workers_with(cfg, "sessions_total")
        # Another client: a full bucket of its own, then refused.
        burst_run = [attempt(a, other) for _ in range(burst + 2)]
        assert burst_run == ["served"] * burst + ["refused"] * 2, burst_run
        refused = len(results) - served + 2
        assert rejected(cfg, "client_rate") == refused
        assert rejected(cfg, "client_limit") == 0
        assert backend_accepted(env, b) == served + burst
        srcs = proxied_sources(b, served + burst)
        assert srcs.count(one) == served and srcs.count(other) == burst


def test_no_backend_is_counted_per_listener():
    """Where twlb_no_backend_total counts, twlb_rejected_total{reason="no_backend"} does
    too, for the listener of the client."""
    n = h.new_net()
    with h.Env() as env:
        b = pp_backend(env, n)
        cfg = config(n, b)
        env.twlb(cfg)
        a = h.listen_addr(cfg)
        assert attempt(a, "127.%d.5.1" % n) == "served"
        status, _ = h.http(h.admin_addr(cfg), "POST", "/pools/app/backends/pp/disable")
        assert status == 200
        for _ in range(3):
            assert attempt(a, "127.%d.5.1" % n) == "refused"
        ms = h.metrics(h.admin_addr(cfg))
        assert h.metric(ms, "twlb_rejected_total", reason="no_backend") == 3
        assert h.metric(ms, "twlb_no_backend_total") == 3
        assert h.metric(ms, "twlb_rejected_total", reason="acl") == 0


def test_a_client_handed_to_another_worker_keeps_its_place():
    """A worker with no source port left hands the client to the next one
    (session.c: hand_over).  The client must stay counted once: the sender gives its
    place back, the receiver takes it without a check.  One source port per worker
    (2 ports, 2 workers), so a second connection of a client that lands on the worker
    whose port is busy is handed over; our own TIME_WAIT is destroyed at close, so the
    ports come back at once for another try."""
    if os.geteuid() != 0:
        raise h.Skip("local_time_wait destroy needs CAP_NET_ADMIN")
    n = h.new_net()
    one = "127.%d.5.1" % n
    with h.Env() as env:
        b = pp_backend(env, n)
        cfg = config(n, b, workers=2, max_connections_per_client=2)
        cfg["pools"][0]["source_ports"] = "20000-20001"
        cfg["reuse"]["local_time_wait"] = "destroy"
        env.twlb(cfg)
        a = h.listen_addr(cfg)

        def sessions():
            return sum(workers_with(cfg, "sessions_total"))

        handed = False
        for _ in range(20):  # each try: one chance in two that both land on one worker
            before, keep = sessions(), []
            assert attempt(a, one, keep=keep) == "served"
            assert attempt(a, one, keep=keep) == "served"
            handed = sessions() - before == 3  # the sender's session counts too
            if handed:
                break
            for s in keep:
                s.close()
            h.wait_for(lambda: sum(workers_with(cfg, "sessions_active")) == 0, 5,
                       "both connections closed")
        assert handed, "no hand-over in 20 tries"
        # Counted twice, not once (then it would get past the limit and find no port).
        assert attempt(a, one) == "refused"
        assert rejected(cfg, "client_limit") == 1
        assert rejected(cfg, "no_backend") == 0
        # ...and not three times: with both closed, two fit again.
        for s in keep:
            s.close()
        h.wait_for(lambda: sum(workers_with(cfg, "sessions_active")) == 0, 5,
                   "both connections closed")
        keep = []
        assert [attempt(a, one, keep=keep) for _ in range(2)] == ["served"] * 2
        for s in keep:
            s.close()
        assert rejected(cfg, "client_limit") == 1
