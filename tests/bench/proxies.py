#!/usr/bin/env python3
"""make bench: twlb against HAProxy (mode tcp) and nginx (stream), 1 and 2 workers each,
and a direct run without a proxy, in one interleaved comparison.

    ROUNDS=3 DURATION=8 python3 tests/bench/proxies.py [--doc docs/benchmarks.md]

Where: one network namespace made here (tests/integration/netns.py), everything on its
loopback (127.0.9.0/24); without root it says so and runs on the host's loopback.
Each round runs every target once, in an order rotated by one per round; each target is
started fresh for its turn and stopped (by PID) after it.  Per target and round:

  rss     5,000 idle connections through the proxy to an echo backend
          (tests/bench/idleconns.py): proxy RSS (VmRSS summed over its processes)
          minus its RSS before, / 5,000, fresh and after one 16-byte exchange
  c50     twstress, 50 in flight, 64 B request, 128 B reply, backend closes first:
          conn/s, connect p99, first-byte p99, proxy CPU us per connection
  c500    the same with 500 in flight
  bulk1   one stream at a time of BULK_MB MiB from a bulk backend: Gbit/s and proxy
          core-seconds per GB (10^9 bytes); the backend writes up to 256 KiB at a time
          from a precomputed pattern and twstress --discard drops what arrives in the
          kernel, so the load generator costs little and the proxy is what is measured
  bulk8   eight streams of BULK8_MB MiB each
  redis   redis-benchmark, 50 clients, SET and GET: REDIS_N requests each one at a time per
          connection, then REDIS_PN requests each pipelined 16 deep (-P 16), to a
          redis-server: requests/s, p99, proxy CPU us per request
  wrk     wrk, 1 thread, 50 keep-alive connections, DURATION seconds of GET / to nginx
          (one worker, a 128-byte body): requests/s, p99, proxy CPU us per request

WORKLOADS=c50,redis (say) runs only those.

Prints the medians over the rounds with the ratio to the best peer (HAProxy or nginx
with the same worker count), and for persistent connections also to HAProxy; with --doc, replaces the "make bench" section of that file.
"""
import datetime
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import netns  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = float(os.environ.get("DURATION", "8"))
IDLE = int(os.environ.get("IDLE_CONNS", "5000"))
BULK_MB = int(os.environ.get("BULK_MB", "256"))
BULK8_MB = int(os.environ.get("BULK8_MB", "64"))
ONLY = os.environ.get("TARGETS", "")  # comma-separated subset, for quick checks

BE = "127.0.9.1"
PORTS = {"short": 9000, "bulk": 9001, "bulk8": 9002, "echo": 9003, "redis": 9004,
         "http": 9005}
LPORT = {"short": 8080, "bulk": 8081, "bulk8": 8082, "echo": 8083, "redis": 8084,
         "http": 8085}
RANGES = {"short": "20000-59999", "bulk": "10000-10999", "bulk8": "11000-11999",
          "echo": "12000-19999", "redis": "5000-5999", "http": "6000-6999"}
# Persistent connections: redis-benchmark and wrk, 50 clients each (make bench).
REDIS_N = int(os.environ.get("REDIS_N", "100000"))  # requests per test, not pipelined
REDIS_PN = int(os.environ.get("REDIS_PN", "1000000"))  # requests per test, -P 16
WORKLOADS = os.environ.get("WORKLOADS", "rss,c50,c500,bulk1,bulk8,redis,wrk").split(",")
LOAD_MAX = 1.5  # 1-minute load average above which the run waits before it starts
BACKLOG = 4096  # every listener, every proxy and backend
CLIENTS = ["127.0.9.%d" % i for i in range(100, 108)]
TCK = os.sysconf("SC_CLK_TCK")

# name, kind, workers, listen address, inside address
TARGETS = [
    ("direct", "direct", 0, BE, None),
    ("twlb w1", "twlb", 1, "127.0.9.11", "127.0.9.31"),
    ("twlb w2", "twlb", 2, "127.0.9.12", "127.0.9.32"),
    ("HAProxy nbthread 1", "haproxy", 1, "127.0.9.13", "127.0.9.33"),
    ("HAProxy nbthread 2", "haproxy", 2, "127.0.9.14", "127.0.9.34"),
    ("nginx 1 worker", "nginx", 1, "127.0.9.15", "127.0.9.35"),
    ("nginx 2 workers", "nginx", 2, "127.0.9.16", "127.0.9.36"),
    # nginx passing half-closes on, as twlb and HAProxy do (c50 and c500 only)
    ("nginx 1 worker half-close", "nginx-hc", 1, "127.0.9.17", "127.0.9.37"),
    ("nginx 2 workers half-close", "nginx-hc", 2, "127.0.9.18", "127.0.9.38"),
]
HC_WORKLOADS = ("c50", "c500")  # what the nginx-hc rows measure


class Host:
    """Runs commands in the bench namespace, or on the host when there is none."""

    def __init__(self):
        ok, why = netns.available()
        self.topo = None
        self.where = "host loopback (no network namespace: %s)" % why
        self.procs = []
        if ok:
            self.topo = netns.Topology()
            self.topo.add_host("bench")
            self.topo.sysctl("bench", "net.ipv4.ip_local_port_range", "30000 65000")
            self.topo.sysctl("bench", "net.core.somaxconn", "8192")
            # Room for every TIME_WAIT of the run.  The default (131072 here) fills after
            # a few targets: each leaves up to 40,000 on the backend side (its port range)
            # and more on the client side, for 60 s.  Past it the kernel creates no
            # TIME_WAIT (TcpExt TCPTimeWaitOverflow), which makes a connection cheaper,
            # and how often that happened depended on which targets ran in the minute
            # before and on how each proxy chooses its ports (1.1-1.3 per connection for
            # HAProxy, 0-0.2 for twlb, measured): not a property of the proxy to compare.
            self.topo.sysctl("bench", "net.ipv4.tcp_max_tw_buckets", "2000000")
            self.where = "one network namespace (%s), everything on its loopback" % \
                self.topo.ns("bench")

    def popen(self, argv, **kw):
        if self.topo:
            return self.topo.popen("bench", argv, **kw)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen([str(a) for a in argv], **kw)
        self.procs.append(p)
        return p

    def run(self, argv, timeout):
        argv = [str(a) for a in argv]
        if self.topo:
            return self.topo.run("bench", argv, timeout=timeout)
        return subprocess.run(argv, timeout=timeout, capture_output=True, text=True)

    def stop(self, p):
        netns._stop_popens([p])
        if self.topo and p in self.topo.procs:
            self.topo.procs.remove(p)

    def close(self):
        if self.topo:
            self.topo.close()
        netns._stop_popens(self.procs)


# ---- /proc ----------------------------------------------------------------------------

def family(pid):
    """<pid> and its children (nginx: master and workers)."""
    pids = [pid]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        pids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def cpu_s(pids):
    t = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                v = f.read().rsplit(")", 1)[1].split()
            t += int(v[11]) + int(v[12])  # utime, stime (fields 14, 15)
        except OSError:
            pass
    return t / TCK


def rss_kib(pids):
    t = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        t += int(line.split()[1])
        except OSError:
            pass
    return t


# ---- the proxies ----------------------------------------------------------------------

def twlb_conf(workers, lip, inside):
    pools = [{"name": k, "inside": [inside], "source_ports": RANGES[k],
              "idle_timeout_ms": 600000,
              "backends": [{"name": "b", "address": "%s:%d" % (BE, PORTS[k])}]}
             for k in PORTS]
    if os.environ.get("TWLB_SPLICE"):  # "off": copy through user space (default auto)
        for p in pools:
            p["splice"] = os.environ["TWLB_SPLICE"]
    for p in pools:  # TWLB_POOL='{"buffer_bytes": 16384}': more keys for every pool
        p.update(json.loads(os.environ.get("TWLB_POOL", "{}")))
    top = {
        "workers": workers,
        "listeners": [{"name": k, "bind": "%s:%d" % (lip, LPORT[k]), "pool": k,
                       "backlog": BACKLOG}
                      for k in PORTS],
        "pools": pools, "reuse": {"isn": "auto"},
        "admin": {"bind": "%s:9901" % lip}, "log": {"level": "warn"}}
    # TWLB_TOP='{"reuse": {"isn": "kernel"}}': top-level keys to replace, for experiments
    top.update(json.loads(os.environ.get("TWLB_TOP", "{}")))
    return json.dumps(top, indent=1)


def haproxy_conf(workers, lip, inside):
    # HAProxy wants 2 fds per connection and a few more: stay under the hard limit
    mc = min(40000, resource.getrlimit(resource.RLIMIT_NOFILE)[1] // 2 - 200)
    out = ["global", "    maxconn %d" % mc, "    nbthread %d" % workers,
           "defaults", "    mode tcp", "    maxconn %d" % mc, "    timeout connect 2s",
           "    timeout client 600s", "    timeout server 600s"]
    for k in PORTS:
        out += ["frontend f_%s" % k, "    bind %s:%d backlog %d" % (lip, LPORT[k], BACKLOG),
                "    default_backend b_%s" % k,
                "backend b_%s" % k,
                "    server b %s:%d source %s:%s" % (BE, PORTS[k], inside, RANGES[k])]
    return "\n".join(out) + "\n"


def nginx_conf(workers, lip, inside, work, half_close=False):
    servers = "\n".join(
        "    server { listen %s:%d reuseport backlog=%d; proxy_bind %s; proxy_pass %s:%d; }"
        % (lip, LPORT[k], BACKLOG, inside, BE, PORTS[k]) for k in PORTS)
    return """load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes %d;
worker_rlimit_nofile %d;
daemon off;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 16000; }
stream {
    proxy_timeout 600s;%s
%s
}
""" % (workers, resource.getrlimit(resource.RLIMIT_NOFILE)[1], work, work,
       # pass a FIN on as twlb and HAProxy do (nginx's default, proxy_half_close off,
       # closes both connections once one side has closed and its bytes are out)
       "\n    proxy_half_close on;" if half_close else "", servers)


def kernel_counter(h, path, section, name):
    """A counter of the bench namespace from /proc/net/snmp or /proc/net/netstat (a line
    of names, then a line of values, per section: "Tcp", "TcpExt"); None when absent."""
    lines = h.run(["cat", path], timeout=10).stdout.splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        names = names.split()
        if names and names[0] == section + ":" and name in names:
            return int(values.split()[names.index(name)])
    return None


def tw_overflows(h):
    """TIME_WAITs the kernel did not create for want of room so far; None when unknown."""
    return kernel_counter(h, "/proc/net/netstat", "TcpExt", "TCPTimeWaitOverflow")


def start(h, work, kind, workers, lip, inside):
    if kind == "direct":
        return None
    tag = "%s%d" % (kind, workers)
    if kind == "twlb":
        path = os.path.join(work, tag + ".json")
        open(path, "w").write(twlb_conf(workers, lip, inside))
        argv = [os.environ.get("TWLB_BIN") or os.path.join(ROOT, "lb/twlb"), "-c", path]
    elif kind == "haproxy":
        path = os.path.join(work, tag + ".cfg")
        open(path, "w").write(haproxy_conf(workers, lip, inside))
        argv = ["haproxy", "-db", "-f", path]
    else:
        d = os.path.join(work, tag)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "nginx.conf")
        open(path, "w").write(nginx_conf(workers, lip, inside, d, kind == "nginx-hc"))
        argv = ["nginx", "-p", d, "-c", path]
    p = h.popen(argv, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, tag + ".err"), "a"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError("%s exited at start (%s)" % (tag, os.path.join(work, tag + ".err")))
        r = h.run([sys.executable, "-c",
                   "import socket; socket.create_connection(('%s', %d), 1).close()"
                   % (lip, LPORT["echo"])], timeout=5)
        if r.returncode == 0:
            time.sleep(0.5)  # nginx: let every worker come up
            return p
        time.sleep(0.2)
    raise RuntimeError("%s does not listen on %s:%d" % (tag, lip, LPORT["echo"]))


# ---- measurements ---------------------------------------------------------------------

def twstress(h, lip, port, conc, expect, request=64, nbind=4, discard=False):
    argv = [os.path.join(ROOT, "tests/stress/twstress"), "--connect", "%s:%d" % (lip, port),
            "--concurrency", conc, "--duration", DURATION, "--close", "server",
            "--expect-bytes", expect, "--request-bytes", request, "--json"]
    if discard:  # the client's kernel drops the bytes (MSG_TRUNC): no copy to pay for
        argv.append("--discard")
    for c in CLIENTS[:nbind]:
        argv += ["--bind", c]
    r = h.run(argv, timeout=DURATION + 60)
    if r.returncode != 0:
        raise RuntimeError("twstress: %s" % r.stderr.strip())
    return json.loads(r.stdout)


def measure_short(h, lip, pids, conc):
    c0 = cpu_s(pids)
    r = twstress(h, lip, PORTS["short"] if not pids else LPORT["short"], conc, 128)
    c1 = cpu_s(pids)
    return {"cps": r["cps"], "connect_p99": r["connect_ms"]["p99"],
            "ttfb_p99": r["ttfb_ms"]["p99"], "errors": sum(r["errors"].values()),
            "cpu_us": (c1 - c0) * 1e6 / max(1, r["connections"]) if pids else None}


def measure_bulk(h, lip, pids, key, streams, mb):
    c0 = cpu_s(pids)
    r = twstress(h, lip, PORTS[key] if not pids else LPORT[key], streams, 0, request=4,
                 nbind=1, discard=True)
    c1 = cpu_s(pids)
    gb = r["connections"] * mb * 1048576 / 1e9
    return {"gbps": gb * 8 / r["duration_s"], "errors": sum(r["errors"].values()),
            "cs_per_gb": (c1 - c0) / gb if pids and gb else None}


def measure_rss(h, lip, pids):
    if not pids:
        return {"fresh": None, "exchanged": None, "n": None}
    before = rss_kib(pids)
    p = h.popen([sys.executable, os.path.join(HERE, "idleconns.py"),
                 "%s:%d" % (lip, LPORT["echo"]), "%s:%d" % (BE, PORTS["echo"]), IDLE]
                + CLIENTS[4:], stdin=subprocess.PIPE, text=True)
    try:
        fresh_n = int(p.stdout.readline().split()[1])
        fresh = rss_kib(pids)
        p.stdin.write("\n"); p.stdin.flush()
        ex_n = int(p.stdout.readline().split()[1])
        exch = rss_kib(pids)
        p.stdin.write("\n"); p.stdin.flush()
        p.stdout.readline()
        p.wait(30)
    finally:
        h.stop(p)
    time.sleep(1)
    return {"fresh": (fresh - before) / IDLE, "exchanged": (exch - before) / IDLE,
            "n": min(fresh_n, ex_n)}


def redis_bench(h, lip, port, n, pipeline):
    """redis-benchmark, 50 clients, SET then GET: {test: (req/s, p99 ms)}."""
    r = h.run(["redis-benchmark", "-h", lip, "-p", port, "-c", 50, "-n", n, "-P", pipeline,
               "-t", "set,get", "--csv"], timeout=180)
    out = {}
    for line in r.stdout.splitlines():
        f = [x.strip('"') for x in line.strip().split(",")]
        if len(f) >= 7 and f[0] in ("SET", "GET"):
            out[f[0]] = (float(f[1]), float(f[6]))
    if r.returncode != 0 or len(out) != 2:
        raise RuntimeError("redis-benchmark via %s:%d: %s %s" % (lip, port, r.stdout[-300:],
                                                                 r.stderr.strip()[-300:]))
    return out


def measure_redis(h, lip, pids):
    """SET and GET at 50 clients, plain (one request in flight per connection) and
    pipelined 16 deep, through persistent connections to redis-server."""
    port = LPORT["redis"] if pids else PORTS["redis"]
    res = {}
    for tag, n, depth in (("plain", REDIS_N, 1), ("p16", REDIS_PN, 16)):
        c0 = cpu_s(pids)
        r = redis_bench(h, lip, port, n, depth)
        c1 = cpu_s(pids)
        res[tag] = {"set": r["SET"][0], "get": r["GET"][0], "set_p99": r["SET"][1],
                    "get_p99": r["GET"][1],
                    "cpu_us": (c1 - c0) * 1e6 / (2 * n) if pids else None}
    return res


def ms(text):
    """wrk's durations: 812.00us, 1.23ms, 2.01s."""
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * f
    return float(text)


def measure_wrk(h, lip, pids):
    """wrk, one thread, 50 keep-alive connections, GET of a 128-byte body from nginx."""
    port = LPORT["http"] if pids else PORTS["http"]
    c0 = cpu_s(pids)
    r = h.run(["wrk", "-t1", "-c50", "-d%ds" % max(1, int(DURATION)), "--latency",
               "http://%s:%d/" % (lip, port)], timeout=DURATION + 60)
    c1 = cpu_s(pids)
    rps = p99 = None
    total = errors = 0
    for line in r.stdout.splitlines():
        f = line.split()
        if line.startswith("Requests/sec:"):
            rps = float(f[1])
        elif len(f) == 2 and f[0] == "99%":
            p99 = ms(f[1])
        elif "requests in" in line:
            total = int(f[0])
        elif line.strip().startswith(("Socket errors", "Non-2xx")):
            errors += sum(int(x.strip(",")) for x in f if x.strip(",").isdigit())
    if r.returncode != 0 or rps is None:
        raise RuntimeError("wrk via %s:%d: %s %s" % (lip, port, r.stdout[-300:], r.stderr[-300:]))
    return {"rps": rps, "p99": p99, "errors": errors, "requests": total,
            "cpu_us": (c1 - c0) * 1e6 / max(1, total) if pids else None}


MEASURE = {  # workload: what it measures (in this order)
    "rss": lambda h, lip, pids: measure_rss(h, lip, pids),
    "c50": lambda h, lip, pids: measure_short(h, lip, pids, 50),
    "c500": lambda h, lip, pids: measure_short(h, lip, pids, 500),
    "bulk1": lambda h, lip, pids: measure_bulk(h, lip, pids, "bulk", 1, BULK_MB),
    "bulk8": lambda h, lip, pids: measure_bulk(h, lip, pids, "bulk8", 8, BULK8_MB),
    "redis": measure_redis,
    "wrk": measure_wrk,
}


def one(h, work, t):
    name, kind, workers, lip, inside = t
    p = start(h, work, kind, workers, lip, inside)
    try:
        pids = family(p.pid) if p else []
        res = {w: f(h, lip, pids) for w, f in MEASURE.items() if w in WORKLOADS
               and (kind != "nginx-hc" or w in HC_WORKLOADS)}
        if p and p.poll() is not None:
            raise RuntimeError("%s died during the run" % name)
        return res
    finally:
        if p:
            h.stop(p)


# ---- the table ------------------------------------------------------------------------

COLS = [  # header, getter, format, higher is better
    ("conn/s c50", lambda r: r["c50"]["cps"], "%.0f", True),
    ("connect p99 ms c50", lambda r: r["c50"]["connect_p99"], "%.2f", False),
    ("ttfb p99 ms c50", lambda r: r["c50"]["ttfb_p99"], "%.2f", False),
    ("conn/s c500", lambda r: r["c500"]["cps"], "%.0f", True),
    ("connect p99 ms c500", lambda r: r["c500"]["connect_p99"], "%.2f", False),
    ("ttfb p99 ms c500", lambda r: r["c500"]["ttfb_p99"], "%.2f", False),
    ("proxy CPU us/conn c50", lambda r: r["c50"]["cpu_us"], "%.1f", False),
    ("proxy CPU us/conn c500", lambda r: r["c500"]["cpu_us"], "%.1f", False),
    ("bulk 1 stream Gbit/s", lambda r: r["bulk1"]["gbps"], "%.2f", True),
    ("core-s/GB 1 stream", lambda r: r["bulk1"]["cs_per_gb"], "%.3f", False),
    ("bulk 8 streams Gbit/s", lambda r: r["bulk8"]["gbps"], "%.2f", True),
    ("core-s/GB 8 streams", lambda r: r["bulk8"]["cs_per_gb"], "%.3f", False),
    ("RSS KiB/conn fresh", lambda r: r["rss"]["fresh"], "%.2f", False),
    ("RSS KiB/conn after 1 exchange", lambda r: r["rss"]["exchanged"], "%.2f", False),
]

# Persistent connections, 50 clients: requests per second, p99 latency, proxy CPU.
PCOLS = [
    ("redis SET req/s", lambda r: r["redis"]["plain"]["set"], "%.0f", True),
    ("redis GET req/s", lambda r: r["redis"]["plain"]["get"], "%.0f", True),
    ("redis SET p99 ms", lambda r: r["redis"]["plain"]["set_p99"], "%.2f", False),
    ("proxy CPU us/req redis", lambda r: r["redis"]["plain"]["cpu_us"], "%.2f", False),
    ("redis SET -P 16 req/s", lambda r: r["redis"]["p16"]["set"], "%.0f", True),
    ("redis GET -P 16 req/s", lambda r: r["redis"]["p16"]["get"], "%.0f", True),
    ("proxy CPU us/req -P 16", lambda r: r["redis"]["p16"]["cpu_us"], "%.2f", False),
    ("wrk req/s", lambda r: r["wrk"]["rps"], "%.0f", True),
    ("wrk p99 ms", lambda r: r["wrk"]["p99"], "%.2f", False),
    ("proxy CPU us/req wrk", lambda r: r["wrk"]["cpu_us"], "%.2f", False),
]


def value(get, r):
    """A column's value in one round's result, None where that workload did not run."""
    try:
        return get(r)
    except KeyError:
        return None


def medians(rows, cols):
    out = {}
    for name in rows:
        out[name] = []
        for _, get, _, _ in cols:
            v = [x for x in (value(get, r) for r in rows[name]) if x is not None]
            out[name].append(statistics.median(v) if v else None)
    return out


def table(med, targets, cols, against=("haproxy", "nginx")):
    """Markdown: one row per target, then per twlb row one ratio row per entry of
    <against> (a tuple of kinds: twlb / the best of them with the same workers; "best"
    is the higher value for rates, the lower for costs)."""
    if all(v is None for n in med for v in med[n]):
        return ""  # none of these workloads ran
    hdr = "| target | " + " | ".join(c[0] for c in cols) + " |"
    lines = [hdr, "|---" * (len(cols) + 1) + "|"]
    for name, kind, workers, _, _ in targets:
        if all(v is None for v in med[name]):
            continue
        cells = [("-" if v is None else cols[i][2] % v) for i, v in enumerate(med[name])]
        lines.append("| %s | %s |" % (name, " | ".join(cells)))
    kinds = [against] if isinstance(against[0], str) else against
    for name, kind, workers, _, _ in targets:
        if kind != "twlb":
            continue
        for ks in kinds:
            peers = [n for n, k, w, _, _ in targets if k in ks and w == workers]
            if not peers:
                continue
            cells = []
            for i, (_, _, _, hib) in enumerate(cols):
                pv = [med[n][i] for n in peers if med[n][i] is not None]
                if med[name][i] is None or not pv:
                    cells.append("-")
                    continue
                best = max(pv) if hib else min(pv)
                cells.append("%.2f" % (med[name][i] / best) if best else "-")
            if all(c == "-" for c in cells):
                continue
            label = ("best peer that passes half-closes" if "nginx-hc" in ks else
                     "best peer" if len(ks) > 1 else {"haproxy": "HAProxy"}.get(ks[0], ks[0]))
            lines.append("| **%s / %s** | %s |" % (name, label, " | ".join(cells)))
    return "\n".join(lines)


def write_doc(path, text):
    """Replace what lies between the bench markers (or, the first time, the old "make
    bench" section) with <text>."""
    doc = open(path).read()
    b, e = "<!-- bench:begin -->\n", "<!-- bench:end -->"
    if b in doc and e in doc:
        doc = doc[:doc.index(b) + len(b)] + text + doc[doc.index(e):]
    else:
        start = doc.find("## Proxies side by side")
        end = doc.find("\n## ", start + 3) if start >= 0 else -1
        block = b + text + e + "\n"
        doc = (doc.rstrip() + "\n\n" + block if start < 0 else
               doc[:start] + block + (doc[end:] if end >= 0 else ""))
    open(path, "w").write(doc)


def redis_argv(work):
    """Debian's redis-tools ship the server as redis-check-rdb, which serves when it is
    called by another name (the redis-server package adds only the system service, which
    would start one on the host)."""
    link = os.path.join(work, "redis-server")
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(shutil.which("redis-check-rdb") or "/usr/bin/redis-check-rdb", link)
    return [link, "--bind", BE, "--port", PORTS["redis"], "--save", "", "--appendonly", "no",
            "--protected-mode", "no", "--tcp-backlog", BACKLOG, "--maxclients", 10000,
            "--dir", work, "--logfile", os.path.join(work, "redis.log")]


def http_backend_conf(work):
    """nginx as the HTTP server behind the proxies: one worker, keep-alive, 128 bytes."""
    return """daemon off;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    server { listen %s:%d backlog=%d; location / { return 200 "%s"; } }
}
""" % (work, work, BE, PORTS["http"], BACKLOG, "x" * 128)


def start_backends(h, work, keys):
    """The backends behind every target, on BE: <keys> among "short", "bulk", "bulk8",
    "echo" (twbackend), "redis" (redis-server) and "http" (nginx); {key: Popen}."""
    tb = os.path.join(ROOT, "backends/twbackend")
    modes = {"short": ["--mode", "close-first", "--reply-bytes", 128],
             "bulk": ["--mode", "bulk", "--send-bytes", BULK_MB * 1048576],
             "bulk8": ["--mode", "bulk", "--send-bytes", BULK8_MB * 1048576],
             "echo": ["--mode", "echo"]}
    out = {}
    for k in keys:
        if k in modes:
            argv = [tb, "--listen", "%s:%d" % (BE, PORTS[k]), "--quiet", "--backlog",
                    BACKLOG] + modes[k] + ["--name", k]
        elif k == "redis":
            argv = redis_argv(work)
        else:
            d = os.path.join(work, "http")
            os.makedirs(d, exist_ok=True)
            open(os.path.join(d, "nginx.conf"), "w").write(http_backend_conf(d))
            argv = ["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf")]
        out[k] = h.popen(argv, stdout=subprocess.DEVNULL)
    return out


def brief(r):
    """One round's figures on one line."""
    out = []
    for w, f, keys in (("c50", "c50 %.0f/s", ("cps",)), ("c500", "c500 %.0f/s", ("cps",)),
                       ("bulk1", "bulk1 %.2f", ("gbps",)), ("bulk8", "bulk8 %.2f Gbit/s", ("gbps",)),
                       ("wrk", "wrk %.0f/s", ("rps",))):
        if w in r:
            out.append(f % tuple(r[w][k] for k in keys))
    if "c50" in r and r["c50"]["cpu_us"] is not None:
        out.append("cpu %.1f us" % r["c50"]["cpu_us"])
    if "rss" in r and r["rss"]["fresh"] is not None:
        out.append("rss %.2f/%.2f KiB (%s conns)" % (r["rss"]["fresh"], r["rss"]["exchanged"],
                                                     r["rss"]["n"]))
    if "redis" in r:
        out.append("redis set/get %.0f/%.0f -P16 %.0f/%.0f" % (
            r["redis"]["plain"]["set"], r["redis"]["plain"]["get"], r["redis"]["p16"]["set"],
            r["redis"]["p16"]["get"]))
    return "  ".join(out)


def errors(r):
    return sum(r[w]["errors"] for w in ("c50", "c500", "bulk1", "bulk8", "wrk") if w in r)


def main():
    doc = None
    if "--doc" in sys.argv:
        doc = sys.argv[sys.argv.index("--doc") + 1]
    for b in ("lb/twlb", "backends/twbackend", "tests/stress/twstress"):
        if not os.access(os.path.join(ROOT, b), os.X_OK):
            sys.exit("bench: %s is not built (run make)" % b)
    for b in ("haproxy", "nginx"):
        if not any(os.access(os.path.join(d, b), os.X_OK)
                   for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin"]):
            sys.exit("bench: %s missing (make deps-bench)" % b)
    os.environ["PATH"] += ":/usr/sbin"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 3 * IDLE:
        sys.exit("bench: the open-file limit is %d, %d idle connections need %d" %
                 (hard, IDLE, 3 * IDLE))
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    targets = [t for t in TARGETS if not ONLY or t[0] in ONLY.split(",") or t[1] in ONLY.split(",")]
    # Something else running skews every figure: wait (bounded) for a quiet machine.
    quiet_by = time.monotonic() + float(os.environ.get("WAIT_QUIET", "300"))
    while os.getloadavg()[0] > LOAD_MAX and time.monotonic() < quiet_by:
        print("bench: load %.2f > %.1f, waiting for a quiet machine" %
              (os.getloadavg()[0], LOAD_MAX), flush=True)
        time.sleep(20)
    work = tempfile.mkdtemp(prefix="twlb-bench.")
    h = Host()
    t0 = time.monotonic()
    rows = {t[0]: [] for t in targets}
    try:
        start_backends(h, work, ["short", "bulk", "bulk8", "echo"]
                       + [k for w, k in (("redis", "redis"), ("wrk", "http")) if w in WORKLOADS])
        time.sleep(0.5)
        print("bench: %s; %d rounds, %g s per load run, %d cores; workloads %s" %
              (h.where, ROUNDS, DURATION, os.cpu_count(), ",".join(WORKLOADS)), flush=True)
        tw0 = tw_overflows(h)
        for rnd in range(ROUNDS):
            k = rnd % len(targets)
            for t in targets[k:] + targets[:k]:
                r = one(h, work, t)
                rows[t[0]].append(r)
                print("round %d %-20s %s  errors %d  load %.1f" % (
                    rnd + 1, t[0], brief(r), errors(r), os.getloadavg()[0]), flush=True)
        tw1 = tw_overflows(h)
        overflows = tw1 - tw0 if tw0 is not None and tw1 is not None else None
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)
    raw = os.path.join(ROOT, "build", "bench-proxies.json")
    os.makedirs(os.path.dirname(raw), exist_ok=True)
    json.dump(rows, open(raw, "w"), indent=1)
    tab = table(medians(rows, COLS), targets, COLS,
                against=(("haproxy", "nginx"), ("haproxy", "nginx-hc")))
    ptab = table(medians(rows, PCOLS), targets, PCOLS,
                 against=(("haproxy", "nginx"), ("haproxy",)))
    errs = {n: sum(errors(r) for r in rows[n]) for n in rows}
    cmd = "make bench" if os.environ.get("MAKELEVEL") else "python3 tests/bench/proxies.py"
    env = " ".join("%s=%s" % (k, os.environ[k]) for k in
                   ("ROUNDS", "DURATION", "IDLE_CONNS", "BULK_MB", "BULK8_MB", "TARGETS",
                    "WORKLOADS", "REDIS_N", "REDIS_PN")
                   if k in os.environ)
    for t in (tab, ptab):
        if t:
            print()
            print(t)
    print()
    print("medians of %d rounds; errors per target over all runs: %s; raw rows: %s; "
          "%.0f s in all" % (ROUNDS, ", ".join("%s %d" % kv for kv in errs.items()),
                             raw, time.monotonic() - t0))
    # Host() makes room for every TIME_WAIT; one not made would have been cheaper
    print("TIME_WAIT overflows during the run: %s" % overflows)
    if doc:
        text = """Run on %s: `%s%s` (%d rounds, %g s per load run, %d cores; %s).

New connections, bulk transfers and idle connections:

%s

Persistent connections, 50 clients each (redis-benchmark against redis-server, %d
requests per test plain and %d pipelined 16 deep; wrk, 1 thread, against nginx serving a
128-byte body):

%s

Errors over all runs: %s. TIME_WAITs the kernel could not create (TcpExt
TCPTimeWaitOverflow, every one of them would have made its connection cheaper): %s.
""" % (datetime.date.today().isoformat(), env + " " if env else "", cmd, ROUNDS, DURATION,
       os.cpu_count(), h.where.split(" (")[0] + ", everything on its loopback"
       if h.topo else h.where, tab, REDIS_N, REDIS_PN, ptab,
       ", ".join("%s %d" % kv for kv in errs.items()), overflows)
        write_doc(doc, text)
        print("bench: wrote %s" % doc)


if __name__ == "__main__":
    main()
