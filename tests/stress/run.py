#!/usr/bin/env python3
"""make stress: port-exhaustion scenarios on network namespaces, twlb in each ISN mode
against HAProxy (mode tcp, `source` with the same port range) and nginx (stream,
`proxy_bind`, the same range as the namespace's ip_local_port_range), same topology,
same load.

Topology (tests/integration/netns.py; 198.18.0.0/15 only, removed on exit or Ctrl-C):
  client ns  198.18.1.1  --veth--  198.18.1.2  proxy ns (inside address 198.18.0.1 on lo)
  proxy ns   198.18.2N.1 --veth--  198.18.2N.2 backend ns N (linux | bsd | strict)

Scenarios (bounded: DURATION seconds each, default 130 = two TIME_WAIT periods + 10 s):
  1  one strict backend, 200 source ports, 50 conn/s: every port reused ~15 times while
     the backend still holds it
  2  the same with 32 MiB uploads on 16 ports at 8 conn/s: each port is reused about every
     2 s, when the kernel's ISN clock (15.6 M per second) is still behind the 33.5 M
     sequence numbers the last connection used
  3  three backends, linux / bsd / strict, 300 ports, 90 conn/s
  4  scenario 1 with twlb restarted (SIGTERM, state file) in the middle

Usage: tests/stress/run.py [--duration S] [--scenarios 1,2,3,4] [--proxies ...] [--out DIR]
Prints a progress line every DURATION/5 seconds (at most 10) of each run.
Results: OUT/results.md (Markdown table), OUT/scenario-N.svg (connections per second,
completed and failed; twlb's ports by state; TTFB p99; with ticked axes and a legend),
raw JSON.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness as h  # noqa: E402
import netns  # noqa: E402

TWSTRESS = os.path.join(HERE, "twstress")
INSIDE = "198.18.0.1"
LISTEN = "198.18.1.2"

SCENARIOS = {
    1: dict(title="one strict backend, 200 ports, 50 conn/s", backends=["strict"],
            ports=(30000, 30199), rate=50, upload=0),
    2: dict(title="32 MiB uploads, 16 ports, 8 conn/s, strict backend", backends=["strict"],
            ports=(30000, 30015), rate=8, upload=32 << 20),
    3: dict(title="three backends linux/bsd/strict, 300 ports, 90 conn/s",
            backends=["linux", "bsd", "strict"], ports=(30000, 30299), rate=90, upload=0),
    4: dict(title="scenario 1 with a twlb restart halfway", backends=["strict"],
            ports=(30000, 30199), rate=50, upload=0, restart=True),
}


def build(sc):
    t = netns.Topology()
    t.add_host("client")
    t.add_host("proxy")
    t.link("client", "198.18.1.1/24", "proxy", LISTEN + "/24")
    netns._sh("ip", "addr", "add", INSIDE + "/32", "dev", "lo", ns=t.ns("proxy"))
    backends = []
    for i, tw in enumerate(sc["backends"]):
        name = "be%d" % i
        t.add_host(name, tw=tw)
        t.link("proxy", "198.18.%d.1/24" % (20 + i), name, "198.18.%d.2/24" % (20 + i))
        netns._sh("ip", "route", "add", INSIDE + "/32", "via", "198.18.%d.1" % (20 + i),
                  ns=t.ns(name))
        p = t.popen(name, [h.TWBACKEND, "--listen", "198.18.%d.2:9000" % (20 + i),
                           "--name", "b%d" % i, "--mode", "close-first", "--reply-bytes", "64"],
                    text=True)
        assert "listening" in (h.read_line(p, 5) or "")
        backends.append(("b%d" % i, "198.18.%d.2:9000" % (20 + i), tw))
    lo, hi = sc["ports"]
    # nginx (and any kernel-chosen port) draws from this range: the same ports for all
    netns._sh("sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=%d %d" % (lo, hi),
              ns=t.ns("proxy"))
    return t, backends


def syn_retrans(t):
    """TCPSynRetrans of the proxy namespace: the proxies' backend connects."""
    text = t.run("proxy", ["cat", "/proc/net/netstat"]).stdout.splitlines()
    for a, b in zip(text[::2], text[1::2]):
        if a.startswith("TcpExt:"):
            keys, vals = a.split()[1:], b.split()[1:]
            return int(dict(zip(keys, vals)).get("TCPSynRetrans", 0))
    return 0


def twlb_config(sc, backends, mode, state):
    rules = {"linux": "timestamps", "bsd": "bsd", "strict": "bsd"}
    return {
        "listeners": [{"name": "web", "bind": LISTEN + ":8080", "pool": "app"}],
        "pools": [{"name": "app", "inside": [INSIDE],
                   "source_ports": "%d-%d" % sc["ports"], "connect_timeout_ms": 3000,
                   "retries": 1, "idle_timeout_ms": 60000,
                   "backends": [{"name": n, "address": a,
                                 "time_wait": {"rule": rules[tw], "seconds": 60}}
                                for n, a, tw in backends]}],
        "reuse": {"isn": mode, "state_file": state},
        "admin": {"bind": "127.0.0.1:9901"},
        "log": {"level": "warn"},
    }


def start_proxy(t, kind, sc, backends, workdir):
    if kind.startswith("twlb"):
        mode = kind.split("-")[1]
        state = os.path.join(workdir, "state.json")
        with open(state, "w") as f:
            json.dump({"version": 1, "written_unix_ms": 0, "entries": []}, f)
        path = os.path.join(workdir, "twlb.json")
        with open(path, "w") as f:
            json.dump(twlb_config(sc, backends, mode, state), f)
        argv = [h.TWLB, "-c", path]
    elif kind == "haproxy":
        path = os.path.join(workdir, "haproxy.cfg")
        with open(path, "w") as f:
            f.write("global\n    maxconn 4000\n    nbthread 1\ndefaults\n    mode tcp\n"
                    "    timeout connect 3s\n    timeout client 60s\n    timeout server 60s\n"
                    "frontend f\n    bind %s:8080\n    default_backend b\nbackend b\n" % LISTEN)
            for n, a, _ in backends:
                f.write("    server %s %s source %s:%d-%d\n" % (n, a, INSIDE, *sc["ports"]))
        argv = ["haproxy", "-db", "-f", path]
    else:
        path = os.path.join(workdir, "nginx.conf")
        with open(path, "w") as f:
            f.write("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
                    "worker_processes 1;\ndaemon off;\npid %s/nginx.pid;\n"
                    "error_log %s/nginx.err warn;\nevents { worker_connections 4000; }\n"
                    "stream {\n  upstream b {\n" % (workdir, workdir))
            for _, a, _ in backends:
                f.write("    server %s;\n" % a)
            f.write("  }\n  server { listen %s:8080; proxy_bind %s; proxy_pass b;\n"
                    "    proxy_connect_timeout 3s; }\n}\n" % (LISTEN, INSIDE))
        argv = ["nginx", "-p", workdir, "-c", path]
    log = open(os.path.join(workdir, kind + ".log"), "a")
    p = t.popen("proxy", argv, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(0.7)
    assert p.poll() is None, open(log.name).read()
    return p, argv


def poll_ports(t, stop, samples):
    """twlb's port occupancy once a second, from /metrics."""
    t0 = time.monotonic()
    while not stop.is_set():
        r = t.run("proxy", ["python3", "-c", "import urllib.request;print(urllib.request."
                            "urlopen('http://127.0.0.1:9901/metrics',timeout=2).read().decode())"],
                  timeout=5)
        s = {"t": round(time.monotonic() - t0, 1)}
        for line in r.stdout.splitlines():
            m = re.match(r'twlb_ports\{.*state="(\w+)"\} (\d+)', line)
            if m:
                s[m.group(1)] = s.get(m.group(1), 0) + int(m.group(2))
        if len(s) > 1:
            samples.append(s)
        stop.wait(1.0)


def progress_line(label, prog, duration):
    """One line from the last second twstress wrote to its progress file."""
    try:
        with open(prog) as f:
            last = f.read().strip().splitlines()[-1]
        x = json.loads(last)
    except (OSError, IndexError, ValueError):
        return "  [%s] starting" % label
    return ("  [%s] %3.0f of %d s: %d ok, %d failed, %d/s now, TTFB p99 %s, %d in flight"
            % (label, x["t"], duration, x["ok"], x["errors"], x["cps"],
               "%.1f ms" % x["ttfb_p99_ms"] if x["cps"] else "-", x["inflight"]))


def run_one(sc_id, kind, duration, out):
    sc = SCENARIOS[sc_id]
    workdir = os.path.join(out, "s%d-%s" % (sc_id, kind))
    os.makedirs(workdir, exist_ok=True)
    t, backends = build(sc)
    try:
        p, argv = start_proxy(t, kind, sc, backends, workdir)
        syn0 = syn_retrans(t)
        stop, samples = threading.Event(), []
        poller = None
        if kind.startswith("twlb"):
            poller = threading.Thread(target=poll_ports, args=(t, stop, samples))
            poller.start()
        prog = os.path.join(workdir, "progress.jsonl")
        client = t.popen("client", [TWSTRESS, "--connect", LISTEN + ":8080", "--rate",
                                    str(sc["rate"]), "--duration", str(duration),
                                    "--timeout-ms", "5000", "--close", "server",
                                    "--upload-bytes", str(sc["upload"]), "--expect-bytes", "64",
                                    "--json", "--progress-file", prog],
                         text=True, stdout=subprocess.PIPE)
        restart = sc.get("restart") and kind.startswith("twlb")
        every = max(1, min(10, duration // 5))  # a progress line this often (seconds)
        t0 = time.monotonic()
        deadline, next_line = t0 + duration + 120, every
        while client.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            elapsed = time.monotonic() - t0
            if restart and elapsed >= duration / 2:
                restart = False
                print("  [s%d %s] %.0f s: restarting twlb (SIGTERM, state file)"
                      % (sc_id, kind, elapsed), flush=True)
                p.send_signal(signal.SIGTERM)
                p.wait(15)
                p = t.popen("proxy", argv, stdout=open(os.path.join(workdir, kind + ".log"), "a"),
                            stderr=subprocess.STDOUT)
            if elapsed >= next_line:
                next_line += every
                print(progress_line("s%d %s" % (sc_id, kind), prog, duration), flush=True)
        res = json.loads(client.communicate(timeout=max(1, deadline - time.monotonic()))[0])
        stop.set()
        if poller:
            poller.join(10)
        res["backend_syn_retransmits"] = syn_retrans(t) - syn0
        res["ports"] = samples
        res["progress"] = [json.loads(x) for x in open(prog)]
        with open(os.path.join(workdir, "result.json"), "w") as f:
            json.dump(res, f)
        h.stop(p)
        return res
    finally:
        t.close()


COLORS = {"twlb-explicit": "#2a9d8f", "twlb-kernel": "#264653", "twlb-off": "#8d99ae",
          "haproxy": "#e76f51", "nginx": "#c9a227"}
PORT_STATES = (("free", "#2a9d8f", "free"), ("busy", "#e76f51", "busy"),
               ("remote_time_wait", "#264653", "backend TIME_WAIT"),
               ("local_time_wait", "#8d99ae", "own TIME_WAIT"),
               ("quarantined", "#c9a227", "quarantined"))


def nice_ticks(lo, hi, want=6):
    """Round tick values (1, 2 or 5 times a power of ten apart) covering lo..hi."""
    import math
    span = max(hi - lo, 1e-9)
    raw = span / want
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, v = [], first
    while v <= hi + step * 1e-9 and len(ticks) < 50:
        ticks.append(round(v, 10))
        v += step
    return ticks


def fmt_tick(v):
    return "%g" % v if abs(v) < 1e5 else "%.0fk" % (v / 1000)


class Panel:
    """One chart: a frame with ticked, labelled axes; add() draws series in data units."""

    def __init__(self, out, name, x, y, w, h, title, xmax, ymax, ylabel, log_min=None):
        import math
        self.out, self.name, self.x, self.y, self.w, self.h = out, name, x, y, w, h
        self.xmax, self.log_min = max(xmax, 1e-9), log_min
        if log_min:
            self.lo, self.hi = math.log10(log_min), math.ceil(math.log10(max(ymax, log_min * 10)))
            yt = [10 ** e for e in range(int(self.lo), int(self.hi) + 1)]
        else:
            yt = nice_ticks(0, max(ymax, 1))
            self.lo, self.hi = 0, yt[-1]
        out.append('<text x="%d" y="%d" font-weight="bold">%s</text>' % (x, y - 8, title))
        out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>'
                   % (x, y, w, h))
        for v in yt:
            py = self.py(v)
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>' % (x + 1, py, x + w - 1, py))
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#888"/>' % (x - 4, py, x, py))
            out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (x - 6, py + 4, fmt_tick(v)))
        for v in nice_ticks(0, self.xmax, 10):
            if v > self.xmax:
                break
            px = self.px(v)
            out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#888"/>' % (px, y + h, px, y + h + 4))
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (px, y + h + 16, fmt_tick(v)))
        out.append('<text x="%d" y="%d" text-anchor="middle">time (s)</text>' % (x + w // 2, y + h + 30))
        out.append('<text transform="translate(%d,%d) rotate(-90)" text-anchor="middle">%s</text>'
                   % (x - 44, y + h // 2, ylabel))

    def px(self, t):
        return self.x + self.w * min(t, self.xmax) / self.xmax

    def py(self, v):
        import math
        if self.log_min:
            v = math.log10(max(v, self.log_min))
        return self.y + self.h - self.h * (min(v, self.hi) - self.lo) / ((self.hi - self.lo) or 1)

    def add(self, series, points, color, dash=None, width=1.6):
        """A line through [(t, value or None)]; None breaks it (no data that second).
        Tagged data-panel / data-series so that a test can find what was drawn."""
        seg = []
        tag = 'data-panel="%s" data-series="%s"' % (self.name, series)
        for t, v in points + [(None, None)]:
            if v is None:
                if len(seg) == 1:
                    self.out.append('<circle %s cx="%s" cy="%s" r="2" fill="%s"/>'
                                    % (tag, *seg[0].split(","), color))
                elif seg:
                    self.out.append('<polyline %s fill="none" stroke="%s" stroke-width="%s"%s points="%s"/>'
                                    % (tag, color, width, ' stroke-dasharray="%s"' % dash if dash else "",
                                       " ".join(seg)))
                seg = []
                continue
            seg.append("%.1f,%.1f" % (self.px(t), self.py(v)))


def per_second(progress):
    """[(t, ok that second, failed that second, ttfb p99 or None when nothing replied)]."""
    out, last_err = [], 0
    for x in progress:
        failed = x["errors"] - last_err
        last_err = x["errors"]
        out.append((x["t"], x["cps"], failed, x["ttfb_p99_ms"] if x["cps"] else None))
    return out


def svg(path, title, runs):
    """Three panels over time, every proxy in its own colour: connections per second
    (completed solid, failed dashed), twlb's source ports by state (from /metrics), and the
    time to first byte p99 per second (log scale; a second in which nothing replied is a
    gap, never a fast point).  The legend sums each run up."""
    W, X, PW = 1000, 90, 860
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (W, 0),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>' % (X, title)]
    series = {k: per_second(r["progress"]) for k, r in runs.items()}
    tmax = max((p[-1][0] for p in series.values() if p), default=1)
    y = 60
    cmax = max((max(ok, failed) for p in series.values() for _, ok, failed, _ in p), default=1)
    pa = Panel(out, "cps", X, y, PW, 180, "connections per second: completed (solid) and failed (dashed)",
               tmax, cmax * 1.1, "connections / s")
    for k, p in series.items():
        pa.add(k, [(t, ok) for t, ok, _, _ in p], COLORS.get(k, "#000"))
        if any(f for _, _, f, _ in p):
            pa.add(k + " failed", [(t, f) for t, _, f, _ in p], COLORS.get(k, "#000"), dash="5,3")
    y += 250
    pr_kind = "twlb-explicit" if runs.get("twlb-explicit", {}).get("ports") else next(
        (k for k, r in runs.items() if k.startswith("twlb") and r.get("ports")), None)
    if pr_kind:
        samples = runs[pr_kind]["ports"]
        pmax = max(sum(s.get(st, 0) for st, _, _ in PORT_STATES) for s in samples) or 1
        pp = Panel(out, "ports", X, y, PW, 160, "%s: source ports by state (from /metrics, of %d)"
                   % (pr_kind, pmax), tmax, pmax, "ports")
        for i, (st, col, label) in enumerate(PORT_STATES):
            pp.add(st, [(s["t"], s.get(st, 0)) for s in samples], col)
            out.append('<rect x="%d" y="%d" width="14" height="3" fill="%s"/>'
                       % (X + 150 * i, y + 206, col))
            out.append('<text x="%d" y="%d">%s</text>' % (X + 150 * i + 18, y + 211, label))
        y += 250
    ymax = max((v for p in series.values() for _, _, _, v in p if v is not None), default=1)
    pt = Panel(out, "ttfb", X, y, PW, 180, "time to first byte, p99 per second (ms, log scale; "
               "gap: nothing replied that second)", tmax, ymax, "ms", log_min=0.1)
    for k, p in series.items():
        pt.add(k, [(t, v) for t, _, _, v in p], COLORS.get(k, "#000"))
    y += 230
    out.append('<text x="%d" y="%d" font-weight="bold">legend (conn/s held over the run, '
               'failed connections, TTFB p99)</text>' % (X, y))
    for i, (k, r) in enumerate(runs.items()):
        ly = y + 18 + 18 * i
        failed = sum(r["errors"].values())
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>'
                   % (X, ly - 4, X + 24, ly - 4, COLORS.get(k, "#000")))
        out.append('<text x="%d" y="%d">%s: %.1f conn/s, %d failed%s, TTFB p99 %s</text>'
                   % (X + 30, ly, k, r["cps"], failed,
                      " (%s)" % ", ".join("%s %d" % e for e in sorted(r["errors"].items()))
                      if failed else "",
                      "%.1f ms" % r["ttfb_ms"]["p99"] if r["connections"] else "- (no reply)"))
    height = y + 18 + 18 * len(runs) + 10
    out[0] = out[0].replace('height="0"', 'height="%d"' % height)
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 130)))
    ap.add_argument("--scenarios", default=os.environ.get("SCENARIOS", "1,2,3,4"))
    ap.add_argument("--proxies", default=os.environ.get(
        "PROXIES", "twlb-explicit,twlb-kernel,twlb-off,haproxy,nginx"))
    ap.add_argument("--out", default=os.path.join(ROOT, "results", time.strftime("stress-%Y%m%d-%H%M%S")))
    a = ap.parse_args()
    a.duration = max(5, min(a.duration, 900))
    ok, why = netns.available()
    if not ok:
        print("SKIP: " + why)
        return 0
    os.makedirs(a.out, exist_ok=True)
    rows = ["| scenario | proxy | conn/s held | failed | backend SYN retransmits | replies > 500 ms | "
            "TTFB p99 ms | TTFB max ms |", "|---|---|---|---|---|---|---|---|"]
    for sid in [int(x) for x in a.scenarios.split(",")]:
        runs = {}
        for kind in a.proxies.split(","):
            if sid == 4 and not kind.startswith("twlb"):
                continue  # a restart of twlb: the others have no state to keep
            print("scenario %d, %s, %d s ..." % (sid, kind, a.duration), flush=True)
            r = run_one(sid, kind, a.duration, a.out)
            runs[kind] = r
            failed = sum(r["errors"].values())
            rows.append("| %d | %s | %.1f | %d | %d | %d | %.1f | %.1f |" % (
                sid, kind, r["cps"], failed, r["backend_syn_retransmits"], r.get("slow_replies", 0),
                r["ttfb_ms"]["p99"], r["ttfb_ms"]["max"]))
            print("  " + rows[-1], flush=True)
        svg(os.path.join(a.out, "scenario-%d.svg" % sid), "scenario %d: %s" % (sid, SCENARIOS[sid]["title"]), runs)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("Command: tests/stress/run.py --duration %d --scenarios %s\n\n" % (a.duration, a.scenarios))
        for sid in [int(x) for x in a.scenarios.split(",")]:
            f.write("- scenario %d: %s\n" % (sid, SCENARIOS[sid]["title"]))
        f.write("\n" + "\n".join(rows) + "\n")
    print("\n".join(rows))
    print("results in " + a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
