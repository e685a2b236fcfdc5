#!/usr/bin/env python3
"""The kernel-mode safety margin, measured (docs/reuse.md, "The kernel-mode margin").

In kernel ISN mode twlb reuses a 4-tuple the backend holds in TIME_WAIT only when the
kernel's own ISN (hash + CLOCK_REALTIME_ns / 64, kernel-facts 3) is predicted to be at
least `reuse.kernel_margin_us` past the old connection's rcv_nxt.  Two measurements, both
in network namespaces (tests/integration/netns.py, 198.18.0.0/15), both bounded:

  clock   how far twlb's clock readings are from the moment the kernel computes the ISN
          in connect(): tests/bench/margin_clock (the runtime's own clock and socket code)
          on one 4-tuple, SYNs captured on the wire; idle, then with every core busy
          (a bounded busy loop per core).  Also the jitter between the CLOCK_REALTIME and
          CLOCK_MONOTONIC readings that the step detector compares.
  sweep   twlb in kernel mode against a strict backend (tcp_timestamps=0,
          tcp_rfc1337=1: a "before" SYN stalls until TIME_WAIT ends), backend closes
          first, 8 source ports, random upload sizes and hold times, clients that retry
          at once when twlb has no usable port (so reuses happen right when a port turns
          safe); one run per margin, downward.  Counts stalls three ways (twlb's
          twlb_syn_retransmits_total, TcpExtTCPSynRetrans by nstat in twlb's namespace,
          SYNs seen twice on the wire) and, for every reuse, compares twlb's prediction
          (logged at debug level) with the ISNs captured on the backend's side.

    python3 tests/bench/margin.py clock [--samples 50000]
    python3 tests/bench/margin.py sweep [--margins-us 1000000,...] [--seconds 60] [--load]
    make margin            both with the defaults (under 20 minutes)

Needs root; not part of make test."""
import argparse
import bisect
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness as h  # noqa: E402
import netns  # noqa: E402

LB, BE = "198.18.0.1", "198.18.0.2"
SEQ_NS = 64                      # one sequence number of the kernel's ISN clock, in ns
CLOCK_TOOL = os.environ.get("MARGIN_CLOCK_BIN") or os.path.join(
    ROOT, "build", "rel", "bench", "margin_clock")


# ---- helpers -------------------------------------------------------------------------

def pct(sorted_vals, p):
    """The p-th percentile (nearest rank) of an already sorted list."""
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals))) - 1))
    return sorted_vals[i]


def dist(vals):
    """median, p99, p99.99, max (and min) of a list of ns values."""
    v = sorted(vals)
    return {"n": len(v), "min": v[0], "median": pct(v, 50), "p99": pct(v, 99),
            "p99.99": pct(v, 99.99), "max": v[-1]}


def fmt_row(name, d):
    cells = []
    for k in ("median", "p99", "p99.99", "max"):
        ns = d[k]
        cells.append("%.1f us (%d)" % (ns / 1000.0, round(ns / SEQ_NS)))
    return "| %s | %s | %d |" % (name, " | ".join(cells), d["n"])


class BusyLoad:
    """<per_core> bounded busy loops per core (each ends by itself after <seconds>);
    stopped by PID on exit."""

    def __init__(self, seconds, per_core=1):
        self.seconds = seconds
        self.per_core = per_core
        self.procs = []

    def __enter__(self):
        code = "import time\nend=time.monotonic()+%f\nwhile time.monotonic()<end: pass\n" % \
            self.seconds
        for _ in range((os.cpu_count() or 1) * self.per_core):
            self.procs.append(subprocess.Popen([sys.executable, "-c", code]))
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(5)
        return False


def two_hosts(be_tw="strict"):
    t = netns.Topology()
    t.add_host("lb")
    t.add_host("be", tw=be_tw)
    dev, _ = t.link("lb", LB + "/24", "be", BE + "/24")
    return t, dev


# ---- clock: read-to-SYN error --------------------------------------------------------

def clock_run(t, dev, samples, gap_us, port):
    r = t.run("lb", [CLOCK_TOOL, "--src", LB, "--port", str(port), "--dst", BE + ":9",
                     "--iface", dev, "--count", str(samples), "--gap-us", str(gap_us)],
              timeout=600)
    if r.returncode != 0:
        raise SystemExit("margin_clock failed: " + r.stderr)
    rows = [tuple(int(x) for x in line.split()) for line in r.stdout.splitlines()]
    return rows


def clock_analyse(rows):
    """Per sample: D (decision reading), R (SYN time read before connect(), as twlb did
    until the margin was measured), A (read after connect() returned, as twlb does now)
    and K (the kernel's time, from the ISN, to 64 ns).  Returns distributions in ns."""
    seen = [x for x in rows if x[6] >= 0]
    missing = len(rows) - len(seen)
    d0 = seen[0][0]
    u, prev = 0, seen[0][6]
    x, y, z, pair_raw, single_raw = [], [], [], [], []
    for d_real, d_mono, r_real, r_mono, a_real, a_mono, isn in seen:
        u += (isn - prev) % (1 << 32)
        prev = isn
        kt = u * SEQ_NS                       # kernel time since sample 0 (+-64 ns)
        x.append(kt - (d_real - d0))          # K - D, up to one constant
        y.append(kt - (r_real - d0))          # K - R, the same constant
        z.append(kt - (a_real - d0))          # K - A, the same constant
        pair_raw += [d_real - d_mono, a_real - a_mono]     # clock_pair_ns()
        single_raw.append(r_real - r_mono)                 # two plain reads
    base = min(y)                             # the fastest R -> K: the zero
    rnd = random.Random(1)
    pairs = [(i, rnd.randrange(len(x))) for i in range(len(x))]
    # A reuse judged at D_i of a 4-tuple whose old SYN time was kept at R_j (before) or
    # A_j (after): true advance - predicted advance = (K_i - D_i) - (K_j - kept_j).
    # Below zero the kernel's ISN is behind the prediction: unsafe at the lower edge.
    err_before = [x[i] - y[j] for i, j in pairs]
    err_after = [x[i] - z[j] for i, j in pairs]
    med = sorted(pair_raw)[len(pair_raw) // 2]
    jitter_pair = [abs(v - med) for v in pair_raw]
    # the plain pair reads realtime first, clock_pair_ns() in the middle of two
    # monotonic readings: their offsets differ by a constant; each against its median
    med_s = sorted(single_raw)[len(single_raw) // 2]
    jitter_single = [abs(v - med_s) for v in single_raw]
    return {
        "samples": len(rows), "missing_syn": missing,
        "decide_to_isn": dist([v - base for v in x]),
        "record_to_isn": dist([v - base for v in y]),
        "isn_to_after": dist([base - v for v in z]),
        "err_before": dist(err_before), "err_after": dist(err_after),
        "worst_before": [min(x) - max(y), max(x) - min(y)],
        "worst_after": [min(x) - max(z), max(x) - min(z)],
        "jitter_pair": dist(jitter_pair), "jitter_single": dist(jitter_single),
        "jitter_pair_over_1ms": sum(1 for v in jitter_pair if v > 1000000),
        "jitter_single_over_1ms": sum(1 for v in jitter_single if v > 1000000),
    }


def print_clock(label, a):
    print("\n### %s: %d samples, %d SYNs not seen" % (label, a["samples"], a["missing_syn"]))
    print("| interval, us (sequence numbers) | median | p99 | p99.99 | max | n |")
    print("|---|---|---|---|---|---|")
    print(fmt_row("decision reading -> ISN", a["decide_to_isn"]))
    print(fmt_row("reading before connect() -> ISN", a["record_to_isn"]))
    print(fmt_row("ISN -> reading after connect()", a["isn_to_after"]))
    print(fmt_row("realtime - monotonic jitter, clock_pair_ns()", a["jitter_pair"]))
    print(fmt_row("realtime - monotonic jitter, two plain reads", a["jitter_single"]))
    print("jitter above 1 ms: %d of %d paired readings, %d of %d plain ones" % (
        a["jitter_pair_over_1ms"], a["jitter_pair"]["n"], a["jitter_single_over_1ms"],
        a["jitter_single"]["n"]))
    for key, what in (("before", "SYN time read before connect()"),
                      ("after", "SYN time read after connect()")):
        e, w = a["err_" + key], a["worst_" + key]
        print("%s: true - predicted advance over %d random pairs: min %.1f us, median "
              "%.1f us, max %.1f us; any pair: %.1f us (%d seq) to +%.1f us (%d seq)" % (
                  what, e["n"], e["min"] / 1e3, e["median"] / 1e3, e["max"] / 1e3,
                  w[0] / 1e3, round(w[0] / SEQ_NS), w[1] / 1e3, round(w[1] / SEQ_NS)))


def cmd_clock(args):
    if not os.path.exists(CLOCK_TOOL):
        raise SystemExit("%s is missing: make build/rel/bench/margin_clock" % CLOCK_TOOL)
    out = {}
    with netns.Topology() as t:
        t.add_host("lb")
        t.add_host("be", tw="strict")
        dev, _ = t.link("lb", LB + "/24", "be", BE + "/24")
        for per_core in args.load:
            label = "idle" if per_core == 0 else "%d busy loop(s) per core" % per_core
            t0 = time.monotonic()
            if per_core:
                with BusyLoad(args.max_seconds, per_core):
                    rows = clock_run(t, dev, args.samples, args.gap_us, 30000)
            else:
                rows = clock_run(t, dev, args.samples, args.gap_us, 30000)
            a = clock_analyse(rows)
            a["seconds"] = round(time.monotonic() - t0, 1)
            out[label] = a
            print_clock("%s (%.1f s)" % (label, a["seconds"]), a)
            sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


# ---- capture: SYN, FIN and RST on the wire ------------------------------------------

# Classic BPF on an Ethernet frame: IPv4, TCP, not a fragment, SYN|FIN|RST set.
_BPF = [(0x28, 0, 0, 12), (0x15, 0, 8, 0x0800), (0x30, 0, 0, 23), (0x15, 0, 6, 6),
        (0x28, 0, 0, 20), (0x45, 4, 0, 0x1fff), (0xb1, 0, 0, 14), (0x50, 0, 0, 27),
        (0x45, 0, 1, 0x07), (0x06, 0, 0, 256), (0x06, 0, 0, 0)]


def cmd_capture(args):
    """Inside a namespace: every SYN/FIN/RST on <iface> (both directions) as a line
    "ts_ns src sport dst dport flags seq ack", kernel receive timestamps (CLOCK_REALTIME),
    until SIGTERM or --seconds."""
    import ctypes
    import signal
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
    prog = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in _BPF))
    sock.setsockopt(socket.SOL_SOCKET, 26,  # SO_ATTACH_FILTER
                    struct.pack("HL", len(_BPF), ctypes.addressof(prog)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    sock.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
    sock.bind((args.iface, 0))
    sock.settimeout(0.2)
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__(0, True))
    end = time.monotonic() + args.seconds
    with open(args.out, "w") as out:
        print("ready", flush=True)
        while not stop[0] and time.monotonic() < end:
            try:
                data, anc, _, _ = sock.recvmsg(256, 64)
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            ts = 0
            for level, kind, val in anc:
                if level == socket.SOL_SOCKET and kind == 35:
                    sec, nsec = struct.unpack("qq", val[:16])
                    ts = sec * 1000000000 + nsec
            ip = data[14:]
            ihl = (ip[0] & 15) * 4
            tcp = ip[ihl:]
            if len(tcp) < 20:
                continue
            sport, dport, seq, ack = struct.unpack("!HHII", tcp[:12])
            out.write("%d %s %d %s %d %d %d %d\n" % (
                ts, socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport,
                tcp[13], seq, ack))
    return 0


def read_capture(path):
    rows = []
    for line in open(path):
        f = line.split()
        rows.append((int(f[0]), f[1], int(f[2]), f[3], int(f[4]), int(f[5]), int(f[6]),
                     int(f[7])))
    return rows


SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10


def wire_connections(rows, client_ip, server_port):
    """The connections toward <server_port> seen on the wire, per source port in order:
    dicts with isn, syn_ts, syns (how many SYNs carried that ISN), synack_ts,
    client_fin_seq, server_fin_ts, client_fin_ts, rst."""
    conns = {}
    for ts, src, sport, dst, dport, flags, seq, ack in rows:
        if src == client_ip and dport == server_port:
            port, outbound = sport, True
        elif dst == client_ip and sport == server_port:
            port, outbound = dport, False
        else:
            continue
        lst = conns.setdefault(port, [])
        if outbound and flags & SYN and not flags & ACK:
            if lst and lst[-1]["isn"] == seq:
                lst[-1]["syns"] += 1
            else:
                lst.append({"port": port, "isn": seq, "syn_ts": ts, "syns": 1,
                            "synack_ts": None, "client_fin_seq": None,
                            "client_fin_ts": None, "server_fin_ts": None, "rst": False})
            continue
        if not lst:
            continue
        c = lst[-1]
        if not outbound and flags & SYN and flags & ACK and c["synack_ts"] is None:
            c["synack_ts"] = ts
        elif flags & FIN and outbound and c["client_fin_seq"] is None:
            c["client_fin_seq"], c["client_fin_ts"] = seq, ts
        elif flags & FIN and not outbound and c["server_fin_ts"] is None:
            c["server_fin_ts"] = ts
        if flags & RST:
            c["rst"] = True
    return conns


def signed32(v):
    v %= 1 << 32
    return v - (1 << 32) if v >= 1 << 31 else v


# ---- sweep: twlb in kernel mode against a strict backend -----------------------------

NPORTS = 8
REUSE_LINE = re.compile(r"kernel-isn reuse \S+:(\d+) -> \S+: old_syn_real_ns=(\d+) "
                        r"bytes=(\d+) decided_real_ns=(\d+) syn_real_ns=(\d+)")


def cmd_clients(args):
    """Inside twlb's namespace: <parallel> clients for <seconds>, each uploading a random
    size (log-uniform up to 8 MiB), holding a random time, then reading the reply to EOF
    (the backend closes first).  A client that twlb turns away (reset: no usable port)
    tries again after 0.2-2 ms, so reuses happen as soon as a port turns safe."""
    host, port = args.connect.rsplit(":", 1)
    chunk = b"x" * 65536
    lock = threading.Lock()
    stats = {"ok": 0, "turned_away": 0, "failed": 0, "slow": [], "slow_not_ok": [],
             "bytes": 0}
    end = time.monotonic() + args.seconds

    def worker(seed):
        rnd = random.Random(seed)
        n = 0
        while time.monotonic() < end and n < args.max_per_client:
            size = int(2 ** rnd.uniform(0, 23)) - 1
            hold = 0.0 if rnd.random() < 0.5 else rnd.uniform(0, 0.2)
            t0 = time.monotonic()
            outcome = "failed"
            try:
                with socket.create_connection((host, int(port)), timeout=10) as s:
                    left = size
                    while left > 0:
                        k = min(left, len(chunk))
                        s.sendall(chunk[:k])
                        left -= k
                    if hold:
                        time.sleep(hold)
                    s.sendall(b"\n")
                    got = 0
                    while True:
                        d = s.recv(65536)
                        if not d:
                            break
                        got += len(d)
                    outcome = "ok" if got else "turned_away"
            except (ConnectionResetError, BrokenPipeError):
                outcome = "turned_away"
            except OSError:
                outcome = "failed"
            dt = time.monotonic() - t0
            n += 1
            with lock:
                stats[outcome] += 1
                if outcome == "ok":
                    stats["bytes"] += size
                if dt - hold > 1.0:
                    stats["slow" if outcome == "ok" else "slow_not_ok"].append(
                        round(dt - hold, 3))
            if outcome != "ok":
                time.sleep(rnd.uniform(0.0002, 0.002))

    threads = [threading.Thread(target=worker, args=(args.seed * 1000 + i,))
               for i in range(args.parallel)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    json.dump(stats, sys.stdout)
    return 0


def nstat(t, host, counter):
    r = t.run(host, ["nstat", "-asz", counter], timeout=10)
    for line in r.stdout.splitlines():
        f = line.split()
        if f and f[0] == counter:
            return int(f[1])
    return 0


def admin_metrics(t):
    r = t.run("lb", [sys.executable, "-c",
                     "import urllib.request;print(urllib.request.urlopen("
                     "'http://127.0.0.1:9901/metrics',timeout=3).read().decode())"], timeout=10)
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"([a-z_]+)(\{.*\})? (\S+)$", line)
        if m and not line.startswith("#"):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out if r.returncode == 0 else None


def start_capture(t, host, dev, path, seconds):
    p = t.popen(host, [sys.executable, os.path.abspath(__file__), "capture", "--iface", dev,
                       "--out", path, "--seconds", str(seconds)], text=True)
    assert h.read_line(p, 10) == "ready", "the capture did not start"
    return p


def stop_capture(p):
    h.stop(p, timeout=5)


def stall_control(env):
    """The detectors must see a real stall: a plain client reuses one 4-tuple right
    after a 32 MiB upload, so the kernel's ISN is "before" and the strict backend
    ignores the SYN (test_reuse.py::test_plain_client_shows_the_stall).  Returns
    (nstat SYN retransmissions, SYNs seen more than once on the wire)."""
    t, dev = two_hosts()
    with t:
        be = t.popen("be", [h.TWBACKEND, "--listen", BE + ":9000", "--name", "b1",
                            "--mode", "close-first", "--reply-bytes", "64"], text=True)
        assert "listening" in (h.read_line(be, 5) or "")
        cap_path = env.path("control.cap")
        cap = start_capture(t, "be", dev, cap_path, 60)
        before = nstat(t, "lb", "TcpExtTCPSynRetrans")
        code = r"""
import select, socket, time
def conn(upload, wait):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("%s", 31000))
    s.setblocking(False)
    try:
        s.connect(("%s", 9000))
    except BlockingIOError:
        pass
    _, w, _ = select.select([], [s], [], wait)
    if not w or s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
        s.close(); return False
    s.setblocking(True); s.settimeout(10)
    s.sendall(b"x" * upload + b"\n")
    while s.recv(65536):
        pass
    s.close(); return True
assert conn(32 << 20, 5)
deadline = time.monotonic() + 5
while any(l.split()[1].endswith(":7918") for l in open("/proc/net/tcp")):
    assert time.monotonic() < deadline
    time.sleep(0.01)
print(conn(0, 2.5))
""" % (LB, BE)
        r = t.run("lb", [sys.executable, "-c", code], timeout=60)
        assert r.returncode == 0, r.stderr
        retrans = nstat(t, "lb", "TcpExtTCPSynRetrans") - before
        stop_capture(cap)
        conns = wire_connections(read_capture(cap_path), LB, 9000).get(31000, [])
        twice = sum(1 for c in conns if c["syns"] > 1)
        return r.stdout.strip(), retrans, twice


def twlb_config(margin_us, log_path):
    return {
        "listeners": [{"name": "web", "bind": "127.0.0.1:8080", "pool": "app"}],
        "pools": [{
            "name": "app", "inside": [LB], "source_ports": "30000-%d" % (30000 + NPORTS - 1),
            "connect_timeout_ms": 3000, "retries": 0, "idle_timeout_ms": 30000,
            "time_wait": {"rule": "bsd", "seconds": 60},
            "backends": [{"name": "b1", "address": BE + ":9000"}],
            "health": {"interval_ms": 3600000},
        }],
        "reuse": {"isn": "kernel", "kernel_margin_us": margin_us},
        "admin": {"bind": "127.0.0.1:9901"},
        "log": {"level": "debug", "file": log_path},
        "workers": 1,
    }


def sweep_one(env, margin_us, seconds, parallel, load, seed):
    margin = ((margin_us * 125 + 7) // 8)
    t, dev = two_hosts()
    with t:
        be = t.popen("be", [h.TWBACKEND, "--listen", BE + ":9000", "--name", "b1",
                            "--mode", "close-first", "--reply-bytes", "64", "--quiet"],
                     text=True)
        assert "listening" in (h.read_line(be, 5) or "")
        tag = "m%d" % margin_us
        cap_path, log_path = env.path(tag + ".cap"), env.path(tag + ".log")
        cap = start_capture(t, "be", dev, cap_path, seconds + 60)
        cfg_path = env.write_config(twlb_config(margin_us, log_path), tag + ".json")
        # *.log: h.Env fails the run on a sanitizer report in it (TWLB_BIN of an ASan build)
        out = open(env.path(tag + "-stderr.log"), "w")
        lb = t.popen("lb", [h.TWLB, "-c", cfg_path], stdout=out, stderr=subprocess.STDOUT)
        h.wait_for(lambda: lb.poll() is not None or admin_metrics(t), 10, "twlb's admin")
        assert lb.poll() is None, open(out.name).read()
        syn_before = nstat(t, "lb", "TcpExtTCPSynRetrans")
        load_cm = BusyLoad(seconds + 30, load) if load else None
        if load_cm:
            load_cm.__enter__()
        try:
            r = t.run("lb", [sys.executable, os.path.abspath(__file__), "clients",
                             "--connect", "127.0.0.1:8080", "--parallel", str(parallel),
                             "--seconds", str(seconds), "--seed", str(seed)],
                      timeout=seconds + 120)
        finally:
            if load_cm:
                load_cm.__exit__(None, None, None)
        assert r.returncode == 0, r.stderr
        clients = json.loads(r.stdout)
        # the last connections close; the backend's FINs are on the wire
        h.wait_for(lambda: (admin_metrics(t) or {}).get("twlb_sessions_active", 1) == 0, 15,
                   "the last sessions to end")
        ms = admin_metrics(t)
        syn_retrans = nstat(t, "lb", "TcpExtTCPSynRetrans") - syn_before
        h.stop(lb)
        stop_capture(cap)
        conns = wire_connections(read_capture(cap_path), LB, 9000)
        reuses = [tuple(int(g) for g in m.groups()) for m in
                  (REUSE_LINE.search(line) for line in open(log_path)) if m]
    return analyse_sweep(margin_us, margin, clients, ms, syn_retrans, conns, reuses)


def match_reuse(lst, keys, decided, old_syn):
    """The wire connections of one reuse on a port (<lst> in SYN order, <keys> their SYN
    times): the new one is the first whose SYN reached the backend after the decision
    (the kernel took its ISN after the decision reading, and the capture stamps the SYN
    after that); the old one is the last before it that was answered, and its kept SYN
    time (read after its connect()) must be close to its SYN on the wire."""
    i = bisect.bisect_left(keys, decided)
    if i >= len(lst):
        return None, None, "new SYN not on the wire"
    j = i - 1
    while j >= 0 and lst[j]["synack_ts"] is None:
        j -= 1
    if j < 0:
        return None, None, "no old connection on the wire"
    if abs(lst[j]["syn_ts"] - old_syn) > 50000000:
        return None, None, "old SYN 50 ms away from the kept time"
    if lst[j]["client_fin_seq"] is None:
        return None, None, "old connection without our FIN on the wire"
    return lst[i], lst[j], ""


def analyse_sweep(margin_us, margin, clients, ms, syn_retrans, conns, reuses):
    allc = [c for lst in conns.values() for c in lst]
    wire_twice = sum(1 for c in allc if c["syns"] > 1)
    connect_ms = sorted((c["synack_ts"] - c["syn_ts"]) / 1e6 for c in allc if c["synack_ts"])
    err, slack, true_d, wait_ms = [], [], [], []
    bytes_wrong = before = 0
    unmatched = {}
    keys = {port: [c["syn_ts"] for c in lst] for port, lst in conns.items()}
    for port, old_syn, nbytes, decided, syn in reuses:
        new, old, why = match_reuse(conns.get(port, []), keys.get(port, []), decided,
                                    old_syn)
        if why:
            unmatched[why] = unmatched.get(why, 0) + 1
            continue
        pred_adv = (decided - old_syn) // SEQ_NS
        true_adv = (new["isn"] - old["isn"]) % (1 << 32)
        err.append((true_adv - pred_adv) * SEQ_NS)          # ns; >= 0: safe side
        wire_bytes = (old["client_fin_seq"] - old["isn"] - 1) % (1 << 32)
        bytes_wrong += wire_bytes != nbytes
        pred_d = signed32(pred_adv - (nbytes + 2))
        slack.append((pred_d - margin) * SEQ_NS)            # ns past the margin
        d = signed32(new["isn"] - (old["client_fin_seq"] + 1))
        true_d.append(d)
        before += not (1 <= d <= 1 << 31)
        wait_ms.append((decided - old_syn) / 1e6)
    res = {
        "margin_us": margin_us, "margin_seq": margin, "clients": {
            k: v for k, v in clients.items() if not k.startswith("slow")},
        "slow_clients": clients["slow"], "slow_not_ok": clients["slow_not_ok"],
        "wire_connections": len(allc), "reuses_logged": len(reuses),
        "reuses_matched": len(err), "unmatched": unmatched, "bytes_mismatch": bytes_wrong,
        "syns_unanswered": sum(1 for c in allc if c["synack_ts"] is None),
        "twlb_syn_retransmits": ms.get("twlb_syn_retransmits_total", -1),
        "twlb_port_reuses": ms.get("twlb_port_reuses_total", -1),
        "twlb_demoted": ms.get("twlb_backend_demoted", -1),
        "nstat_syn_retrans": syn_retrans, "wire_syn_twice": wire_twice,
        "reuses_before": before,
        "connect_ms": {"median": pct(connect_ms, 50), "p99": pct(connect_ms, 99),
                       "max": connect_ms[-1] if connect_ms else None},
    }
    if err:
        res["err_ns"] = dist(err)
        res["slack_ns"] = dist(slack)
        res["true_d_min"] = min(true_d)
        res["reuse_age_ms"] = dist(wait_ms)
        res["true_d_over_margin"] = dist(sorted(d - margin for d in true_d))
    return res


def print_sweep_row(r):
    e = r.get("err_ns")
    print("| %d | %d | %d | %d | %d | %d / %d / %d | %s | %s | %.0f / %.0f / %s |" % (
        r["margin_us"], r["margin_seq"], r["clients"]["ok"], r["twlb_port_reuses"],
        r["reuses_matched"], r["twlb_syn_retransmits"], r["nstat_syn_retrans"],
        r["wire_syn_twice"],
        "%.1f / %.1f" % (e["min"] / 1e3, e["max"] / 1e3) if e else "-",
        "%.1f" % (r["slack_ns"]["min"] / 1e3) if e else "-",
        (r["connect_ms"]["median"] or 0) * 1e3, (r["connect_ms"]["p99"] or 0) * 1e3,
        "%.0f" % (r["connect_ms"]["max"] * 1e3) if r["connect_ms"]["max"] is not None
        else "-"))
    sys.stdout.flush()


def cmd_sweep(args):
    for path in (h.TWLB, h.TWBACKEND):
        if not os.path.exists(path):
            raise SystemExit("%s is missing: make" % path)
    t_start = time.monotonic()
    results = {"control": None, "runs": []}
    with h.Env() as env:
        got, retrans, twice = stall_control(env)
        results["control"] = {"second_connect": got, "nstat_syn_retrans": retrans,
                              "wire_syn_twice": twice}
        print("control (plain client, same 4-tuple right after 32 MiB): connected=%s, "
              "nstat TcpExtTCPSynRetrans +%d, SYNs seen twice on the wire: %d" % (
                  got, retrans, twice))
        if got != "False" or retrans < 1 or twice < 1:
            raise SystemExit("the stall detectors did not see the control stall")
        print("\n| margin us | seq | clients ok | reuses (twlb) | reuses checked | "
              "SYN retrans: twlb / nstat / wire | true - predicted, us (min / max) | "
              "decided past margin, us (min) | SYN to SYN-ACK us p50 / p99 / max |")
        print("|---|---|---|---|---|---|---|---|---|")
        for i, m in enumerate(args.margins_us):
            if time.monotonic() - t_start > args.max_total_seconds - args.seconds - 30:
                print("(stopping: the sweep's time is up)")
                break
            r = sweep_one(env, m, args.seconds, args.parallel, args.load, args.seed + i)
            results["runs"].append(r)
            print_sweep_row(r)
    results["seconds"] = round(time.monotonic() - t_start, 1)
    print("\nsweep: %.0f s" % results["seconds"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


# ---- main ----------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("clock")
    c.add_argument("--samples", type=int, default=50000)
    c.add_argument("--gap-us", type=int, default=200,
                   help="random pause 0..G us between samples")
    c.add_argument("--max-seconds", type=float, default=120,
                   help="bound of the busy loops")
    c.add_argument("--load", type=lambda v: [int(x) for x in v.split(",")], default=[0, 1, 4],
                   help="busy loops per core, one run each (0: idle)")
    c.add_argument("--json")
    c = sub.add_parser("sweep")
    c.add_argument("--margins-us", type=lambda v: [int(x) for x in v.split(",")],
                   # 2^24, 2^22, ... 2^4 sequence numbers, in us (rounded up)
                   default=[1073742, 268436, 67109, 16777, 4194, 1049, 262, 66, 16, 1])
    c.add_argument("--seconds", type=int, default=75, help="per margin")
    c.add_argument("--parallel", type=int, default=12, help="clients (twlb has 8 ports)")
    c.add_argument("--load", type=int, default=0, help="busy loops per core meanwhile")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--max-total-seconds", type=int, default=1140)
    c.add_argument("--json")
    c = sub.add_parser("capture")
    c.add_argument("--iface", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--seconds", type=float, default=600)
    c = sub.add_parser("clients")
    c.add_argument("--connect", required=True)
    c.add_argument("--parallel", type=int, default=12)
    c.add_argument("--seconds", type=float, default=60)
    c.add_argument("--max-per-client", type=int, default=100000)
    c.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if a.cmd == "capture":
        return cmd_capture(a)
    if a.cmd == "clients":
        return cmd_clients(a)
    netns.require()
    if a.cmd == "clock":
        cmd_clock(a)
    elif a.cmd == "sweep":
        cmd_sweep(a)


if __name__ == "__main__":
    main()
