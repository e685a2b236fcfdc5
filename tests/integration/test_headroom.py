"""The histogram and headroom metrics through the real binary, on loopback (each test its
own 127.N.0.0/16, harness.new_net()):

  twlb_backend_connect_seconds  a backend whose accept queue is full drops one SYN, so
                                one connect takes the kernel's 1 s retransmission: the
                                buckets are cumulative, that connect sits above 0.5 s and
                                the others below, and the count is
                                twlb_backend_connections_total.
  twlb_port_headroom            20 source ports toward a "strict" backend (time_wait 3 s)
                                that closes first: scripted connections fill them,
                                headroom falls to 0 (a further client is refused), and it
                                comes back port by port as each one's 3 s end, always equal
                                to what the port map counts free.  In kernel ISN mode the
                                ports come back when the kernel's ISN clock is past the
                                old connection, ~1.07 s after its SYN, not after the 60 s
                                TIME_WAIT.
  twlb_port_capacity_cps        equals ports / (measured hold + blocked time) within 2 %,
                                equals `twlb simulate`'s analytic capacity for the same
                                parameters within 2 %, and is where the simulated range
                                starts refusing connections: 3 % below it none, 5 % above
                                it some.

Every wait is bounded; processes are stopped by harness.Env (by PID), also on failure."""
import json
import subprocess
import sys
import threading
import time

import harness as h

PORTS = 20
TW_S = 3

# A backend whose first accept waits for "go" on stdin: with listen backlog 0 its
# accept queue holds one connection, so the kernel drops the next SYN (the client's
# retransmission comes 1 s later).  Then it answers "ok" to each line and closes first.
SLOW_FIRST_ACCEPT = r"""
import socket, sys
l = socket.socket()
l.bind((sys.argv[1], 0))
l.listen(0)
print(l.getsockname()[1], flush=True)
sys.stdin.readline()
while True:
    c, _ = l.accept()
    buf = b""
    while b"\n" not in buf:
        d = c.recv(100)
        if not d:
            break
        buf += d
    c.sendall(b"ok\n")
    c.close()
"""


def scrape(addr):
    """(/metrics as harness.metrics parses it, the text itself), from one request."""
    status, text = h.http_get(addr, "/metrics")
    assert status == 200, status
    out = h.parse_metrics(text)
    return out, text


def buckets(ms, name, **labels):
    """[(le, cumulative count)] of histogram <name> for <labels>, in bound order."""
    want = set(labels.items())
    out = []
    for (n, ls), v in ms.items():
        d = dict(ls)
        if n == name + "_bucket" and want <= set(ls):
            out.append((float(d["le"]), v))
    return sorted(out)


def cum(bs, le):
    return dict(bs)[le]


def simulate(cfg_path, *args):
    r = subprocess.run([h.TWLB, "simulate", "-c", cfg_path, "--json", *map(str, args)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def check_simulate_agrees(cfg_path, gauge, hold_ms, *extra):
    """`twlb simulate` for the same ports, rule, ISN mode and hold: the same analytic
    capacity, and the simulated range holds 0.97 x the gauge without refusing anyone and
    refuses some at 1.05 x (its sustainable limit is the gauge)."""
    common = ["--duration", 30, "--hold-ms", hold_ms, "--closer", "backend", *extra]
    below = simulate(cfg_path, "--rate", "%.3f" % (0.97 * gauge), *common)
    assert abs(below["capacity_cps"] - gauge) <= 0.02 * gauge, (below, gauge)
    assert below["failed"] == 0 and below["stalled"] == 0, below
    above = simulate(cfg_path, "--rate", "%.3f" % (1.05 * gauge), *common)
    assert above["failed"] > 0 and above["stalled"] == 0, above
    return below["capacity_cps"]


PARSE = r"""
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type,
                   "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"""


def prometheus_parse(text):
    """The exposition as Debian's python3-prometheus-client reads it (for /usr/bin/python3
    only), or Skip."""
    if subprocess.run(["/usr/bin/python3", "-c", "import prometheus_client"],
                      capture_output=True).returncode != 0:
        raise h.Skip("python3-prometheus-client is not installed for /usr/bin/python3")
    r = subprocess.run(["/usr/bin/python3", "-c", PARSE], input=text, capture_output=True,
                       text=True, check=True, timeout=30)
    return json.loads(r.stdout)


class Clients:
    """Client connections through twlb, each in its own thread: when it connected and
    when it saw the backend's close (EOF), and what it got."""

    def __init__(self, addr, src):
        self.addr, self.src = addr, src
        self.done = []  # (t_start, t_eof, reply), in order of ending
        self.lock = threading.Lock()
        self.threads = []

    def _one(self):
        t0 = time.monotonic()
        try:
            got = h.request(self.addr, b"hi\n", src=self.src, timeout=10)
        except OSError as e:
            got = repr(e).encode()
        with self.lock:
            self.done.append((t0, time.monotonic(), got))

    def start(self):
        t = threading.Thread(target=self._one, daemon=True)
        t.start()
        self.threads.append(t)

    def join(self, timeout=15):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "clients still running"


def test_connect_seconds_histogram():
    n = h.new_net()
    with h.Env() as env:
        slow = env.popen([sys.executable, "-c", SLOW_FIRST_ACCEPT, "127.%d.1.1" % n],
                         stdin=subprocess.PIPE, text=True)
        be = "127.%d.1.1:%d" % (n, int(h.read_line(slow, 5)))
        cfg = h.pool_config(n, [{"name": "b1", "address": be}], connect_timeout_ms=5000)
        cfg["workers"] = 2
        env.twlb(cfg)
        ad, lis = h.admin_addr(cfg), h.listen_addr(cfg)
        cl = Clients(lis, "127.%d.5.1" % n)
        cl.start()  # its connect fills the backend's accept queue
        h.wait_for(lambda: h.metric(h.metrics(ad), "twlb_backend_connections_total") == 1, 5,
                   "the first backend connect")
        cl.start()  # its SYN is dropped: the kernel sends it again after 1 s
        h.wait_for(lambda: h.metric(h.metrics(ad), "twlb_sessions_active") == 2, 5,
                   "the second client accepted and connecting")
        slow.stdin.write("go\n")
        slow.stdin.flush()
        cl.join()
        for _ in range(10):
            cl.start()
            cl.join()
        assert all(got == b"ok\n" for _, _, got in cl.done), cl.done
        ms, text = scrape(ad)
        name = "twlb_backend_connect_seconds"
        bs = buckets(ms, name, pool="app", backend="b1")
        les = [le for le, _ in bs]
        assert les == [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                       2.5, 5.0, 10.0, float("inf")], les
        counts = [v for _, v in bs]
        assert counts == sorted(counts), "buckets are not cumulative: %s" % bs
        total = h.metric(ms, "twlb_backend_connections_total", backend="b1")
        assert total == 12
        assert cum(bs, float("inf")) == h.metric(ms, name + "_count", backend="b1") == total
        # eleven connects at once (the backend listens on the same host), one after the
        # kernel's SYN retransmission (~1 s)
        assert cum(bs, 0.5) == 11 and cum(bs, 2.5) == 12, bs
        total_s = h.metric(ms, name + "_sum", backend="b1")
        assert 0.9 < total_s < 1.0 + 11 * 0.5 + 1.5, total_s
        assert h.metric(ms, "twlb_syn_retransmits_total", backend="b1") == 1
        st = h.stats(ad)["pools"][0]["backends"][0]["connect_seconds"]
        assert st["count"] == 12 and abs(st["sum"] - total_s) < 1e-6, st
        assert 0.5 < st["p99"] <= 2.5 and st["p50"] <= 0.5, st
        # the real Prometheus client reads the histogram as one family with those samples
        fam = prometheus_parse(text)["twlb_backend_connect_seconds"]
        assert fam["type"] == "histogram", fam["type"]
        got = {(s[0], s[1].get("le")): s[2] for s in fam["samples"]}
        assert got[(name + "_bucket", "+Inf")] == 12 and got[(name + "_count", None)] == 12
        assert got[(name + "_bucket", "0.5")] == 11


def refused(addr, src):
    """A client that gets nothing: twlb closed or reset it at once."""
    try:
        return h.request(addr, b"hi\n", src=src, timeout=5) == b""
    except ConnectionResetError:
        return True


def strict_config(n, **reuse):
    cfg = h.pool_config(n, [], source_ports="21000-%d" % (21000 + PORTS - 1),
                        connect_timeout_ms=3000, retries=0)
    cfg["workers"] = 2  # each owns 10 of the 20 ports; the figures are their sums
    cfg["reuse"].update(reuse)
    return cfg


def path_figures(ms, *names):
    return [h.metric(ms, m, backend="b1") for m in names]


def test_headroom_falls_to_zero_and_recovers_as_time_wait_expires():
    n = h.new_net()
    hold_ms = 300
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first", "--reply-delay-ms",
                        str(hold_ms))
        cfg = strict_config(n)
        cfg["pools"][0]["backends"] = [{"name": "b1", "address": b.addr,
                                        "time_wait": {"rule": "strict", "seconds": TW_S}}]
        p = env.twlb(cfg)
        ad, lis = h.admin_addr(cfg), h.listen_addr(cfg)
        ms, _ = scrape(ad)
        # nothing seen yet: all 20 usable, and the capacity of hold 0, backend closing first
        head, cap0 = path_figures(ms, "twlb_port_headroom", "twlb_port_capacity_cps")
        assert head == PORTS, head
        assert abs(cap0 - PORTS / TW_S) < 1e-6 * PORTS, cap0

        # the load: 20 clients, one every 100 ms, each held ~300 ms by the backend
        cl = Clients(lis, "127.%d.5.1" % n)
        for i in range(PORTS):
            cl.start()
            time.sleep(0.1)  # the script's own pace, not a wait for twlb
        cl.join()
        assert len(cl.done) == PORTS and all(g.startswith(b"b1\n") for _, _, g in cl.done), \
            cl.done
        ends = sorted(t for _, t, _ in cl.done)
        ms, _ = scrape(ad)
        assert path_figures(ms, "twlb_port_headroom")[0] == 0, "ports in TIME_WAIT count"
        # headroom 0 means a client now finds no port: refused, counted
        exhausted = h.metric(ms, "twlb_ports_exhausted_total", backend="b1")
        assert refused(lis, "127.%d.5.2" % n)
        ms, _ = scrape(ad)
        assert h.metric(ms, "twlb_ports_exhausted_total", backend="b1") > exhausted
        assert h.metric(ms, "twlb_no_backend_total") == 1

        # recovery: sample until every port is back (bounded), and compare each sample
        # with the ports whose 3 s are over by then, allowing 250 ms either way for the
        # client's view of the close vs twlb's release and the scrape itself
        samples = []
        deadline = ends[-1] + TW_S + 3
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            ms, _ = scrape(ad)
            t = (t0 + time.monotonic()) / 2
            head = path_figures(ms, "twlb_port_headroom")[0]
            free = h.metric(ms, "twlb_ports", backend="b1", state="free")
            samples.append((t, head, free))
            if head == PORTS:
                break
            time.sleep(0.05)  # the sampling period
        assert samples[-1][1] == PORTS, "headroom did not recover: %s" % samples[-5:]
        slack = 0.25
        for t, head, free in samples:
            assert head == free, (t, head, free)  # strict: usable = free, as the map says
            surely = sum(1 for e in ends if e + TW_S + slack <= t)
            maybe = sum(1 for e in ends if e + TW_S - slack <= t)
            assert surely <= head <= maybe, (t - ends[0], head, surely, maybe)
        back = next(t for t, head, _ in samples if head == PORTS)
        assert back - ends[-1] < TW_S + 0.5, back - ends[-1]
        assert any(0 < head < PORTS for _, head, _ in samples), "no gradual recovery seen"

        # capacity at the measured mix: 20 / (mean hold + 3 s)
        ms, text = scrape(ad)
        cap = path_figures(ms, "twlb_port_capacity_cps")[0]
        st = h.stats(ad)["pools"][0]["backends"][0]["ports"]["127.%d.4.1" % n]
        mix = st["capacity_mix"]
        assert mix["connections"] == PORTS and mix["backend_first"] == 1.0, mix
        client_hold = sum(e - s for s, e, _ in cl.done) / PORTS * 1000
        assert hold_ms <= mix["hold_ms"] <= client_hold + 50, (mix, client_hold)
        want = PORTS * 1000 / (client_hold + TW_S * 1000)
        assert abs(cap - want) <= 0.02 * want, (cap, want, client_hold)
        assert abs(st["capacity_cps"] - cap) < 1e-6 * cap and st["headroom"] == PORTS, st
        sim_cap = check_simulate_agrees(p.cfg_path, cap, round(mix["hold_ms"]))
        print("  strict 3 s, 20 ports: client hold %.1f ms, twlb hold %.1f ms, gauge %.4f/s, "
              "formula %.4f/s, simulate %.4f/s" % (client_hold, mix["hold_ms"], cap, want,
                                                   sim_cap))

        # the exposition parses, gauges and histogram included
        fams = prometheus_parse(text)
        for fam, typ in (("twlb_port_headroom", "gauge"), ("twlb_port_capacity_cps", "gauge"),
                         ("twlb_backend_connect_seconds", "histogram")):
            assert fams[fam]["type"] == typ, (fam, fams[fam]["type"])
        assert abs(fams["twlb_port_capacity_cps"]["samples"][0][2] - cap) < 1e-9 * cap


def test_kernel_mode_headroom_follows_the_isn_clock():
    """Kernel ISNs against a bsd backend (TIME_WAIT 60 s): a port the backend closed
    comes back when the kernel's ISN clock has passed the old rcv_nxt by the margin,
    (bytes + 2 + margin) x 64 ns after the SYN - about 1.07 s with the margin set here - and the capacity gauge
    is 20 ports over that.  The margin is read from the gauge before any traffic
    (ports / ((2 + margin) x 64 ns)), so the test follows a change of the default."""
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        cfg = strict_config(n, isn="kernel")
        cfg["pools"][0]["backends"] = [{"name": "b1", "address": b.addr,
                                        "time_wait": {"rule": "bsd", "seconds": 60}}]
        # a margin long enough to watch the ports come back one by one (the default,
        # 4 ms, brings them all back before a scrape could see it)
        cfg["reuse"]["kernel_margin_us"] = 1073742
        p = env.twlb(cfg)
        ad, lis = h.admin_addr(cfg), h.listen_addr(cfg)
        cap0 = path_figures(h.metrics(ad), "twlb_port_capacity_cps")[0]
        margin = PORTS / cap0 / 64e-9 - 2
        assert 1 << 20 <= margin <= 1 << 30, margin
        safe_after = (3 + 2 + margin) * 64e-9  # "hi\n": 3 bytes to the backend
        starts = []
        for i in range(PORTS):
            starts.append(time.monotonic())
            assert h.request(lis, b"hi\n", src="127.%d.5.1" % n).startswith(b"b1\n")
        assert starts[-1] - starts[0] < safe_after - 0.2, "too slow to fill in time"
        ms = h.metrics(ad)
        assert path_figures(ms, "twlb_port_headroom")[0] < PORTS
        samples = []
        deadline = starts[-1] + safe_after + 3
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            head = path_figures(h.metrics(ad), "twlb_port_headroom")[0]
            samples.append(((t0 + time.monotonic()) / 2, head))
            if head == PORTS:
                break
            time.sleep(0.02)  # the sampling period
        slack = 0.15
        for t, head in samples:
            surely = sum(1 for s in starts if s + safe_after + slack <= t)
            maybe = sum(1 for s in starts if s + safe_after - slack <= t)
            assert surely <= head <= maybe, (t - starts[0], head, surely, maybe)
        assert samples[-1][1] == PORTS, samples[-5:]
        # and the ports are reused for real, in the backend's TIME_WAIT
        assert h.request(lis, b"hi\n", src="127.%d.5.1" % n).startswith(b"b1\n")
        ms = h.metrics(ad)
        assert h.metric(ms, "twlb_port_reuses_total", backend="b1") == 1
        cap = path_figures(ms, "twlb_port_capacity_cps")[0]
        mix = h.stats(ad)["pools"][0]["backends"][0]["ports"]["127.%d.4.1" % n]["capacity_mix"]
        assert mix["backend_first"] == 1.0 and mix["bytes_to_backend"] == 3.0, mix
        hold = mix["hold_ms"]
        want = PORTS * 1000 / max(hold, safe_after * 1000)
        assert abs(cap - want) <= 0.02 * want, (cap, want, mix)
        sim_cap = check_simulate_agrees(p.cfg_path, cap, max(1, round(hold)),
                                        "--upload-bytes", 3)
        print("  kernel ISNs, 20 ports: margin %.0f, safe %.4f s after the SYN, hold %.2f ms, "
              "gauge %.3f/s, formula %.3f/s, simulate %.3f/s" % (margin, safe_after, hold, cap,
                                                                 want, sim_cap))
