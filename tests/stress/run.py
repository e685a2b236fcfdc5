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
Results: OUT/results.md (Markdown table), OUT/*.svg (port occupancy and latency), raw JSON.
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
        if sc.get("restart") and kind.startswith("twlb"):
            time.sleep(duration / 2)
            p.send_signal(signal.SIGTERM)
            p.wait(15)
            p = t.popen("proxy", argv, stdout=open(os.path.join(workdir, kind + ".log"), "a"),
                        stderr=subprocess.STDOUT)
        res = json.loads(client.communicate(timeout=duration + 120)[0])
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


def svg(path, title, runs):
    """Port occupancy (twlb runs) and per-second TTFB p99 of every proxy."""
    colors = {"twlb-explicit": "#2a9d8f", "twlb-kernel": "#264653", "twlb-off": "#8d99ae",
              "haproxy": "#e76f51", "nginx": "#e9c46a"}
    W, H = 900, 600
    lines = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
             'font-family="sans-serif" font-size="12"><rect width="%d" height="%d" fill="white"/>'
             % (W, H, W, H), '<text x="60" y="20">%s</text>' % title]
    tmax = max((r["progress"][-1]["t"] for r in runs.values() if r["progress"]), default=1)
    pmax = max((s.get("free", 0) + s.get("busy", 0) + s.get("remote_time_wait", 0)
                + s.get("local_time_wait", 0) + s.get("quarantined", 0)
                for r in runs.values() for s in r["ports"]), default=1) or 1
    lines.append('<text x="60" y="45">twlb-explicit: source ports by state (of %d)</text>' % pmax)
    lines.append('<rect x="60" y="50" width="800" height="200" fill="none" stroke="#ccc"/>')
    pr = runs.get("twlb-explicit") or next((r for k, r in runs.items() if k.startswith("twlb")), None)
    for i, (state, col) in enumerate((("free", "#2a9d8f"), ("busy", "#e76f51"),
                                      ("remote_time_wait", "#264653"))):
        if pr and pr["ports"]:
            pts = " ".join("%.1f,%.1f" % (60 + 800 * s["t"] / tmax, 250 - 200 * s.get(state, 0) / pmax)
                           for s in pr["ports"])
            lines.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>' % (col, pts))
        lines.append('<text x="%d" y="268" fill="%s">%s</text>' % (60 + 160 * i, col, state))
    ymax = max((x["ttfb_p99_ms"] for r in runs.values() for x in r["progress"]), default=1) or 1
    lines.append('<text x="60" y="300">time to first byte, p99 per second (max %.0f ms, log scale)</text>' % ymax)
    lines.append('<rect x="60" y="305" width="800" height="220" fill="none" stroke="#ccc"/>')
    import math
    top = math.log10(max(ymax, 1.0)) + 0.2
    for i, (kind, r) in enumerate(runs.items()):
        pts = " ".join("%.1f,%.1f" % (60 + 800 * x["t"] / tmax,
                                      525 - 220 * max(0.0, math.log10(max(x["ttfb_p99_ms"], 0.01)) + 2) / (top + 2))
                       for x in r["progress"])
        lines.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>'
                     % (colors.get(kind, "#000"), pts))
        lines.append('<text x="%d" y="545" fill="%s">%s</text>' % (60 + 150 * i, colors.get(kind, "#000"), kind))
    lines.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(lines))


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
