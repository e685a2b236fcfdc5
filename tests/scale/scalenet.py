"""Shared pieces of the scale tests: the shipped example configs rendered into a temp
directory, BIRD / keepalived / twlb started inside namespaces by PID, /metrics read from
inside a namespace, and the load generator's results summed up.

Everything runs in namespaces made by tests/integration/netns.py (198.18.0.0/15 only,
removed at the end, also on failure); BIRD and keepalived get their own config, socket,
pid and log paths under the test's temp dir, never the system ones."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness as h  # noqa: E402
import netns  # noqa: E402

EXAMPLES = os.path.join(ROOT, "config", "examples")
PEERD = os.path.join(HERE, "peerd.py")
LOADGEN = os.path.join(HERE, "loadgen.py")


def need(*tools):
    """Skip only when namespaces are unavailable; a missing tool is a failure (make deps
    installs bird2, keepalived and nftables)."""
    netns.require()
    missing = [t for t in tools if not shutil.which(t)]
    assert not missing, "not installed: %s (run make deps)" % ", ".join(missing)


class Workdir:
    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix="twlb-scale-%s-" % name)
        os.chmod(self.dir, 0o755)
        self.keep = os.environ.get("TWLB_SCALE_KEEP")

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def render(self, example, out, **subs):
        """Copy config/examples/<example> to <out>, replacing every @KEY@; a placeholder
        left over is an error (the example and the test disagree)."""
        with open(os.path.join(EXAMPLES, example)) as f:
            text = f.read()
        for k, v in subs.items():
            text = text.replace("@%s@" % k, str(v))
        left = re.findall(r"@[A-Z0-9_]+@", text)
        assert not left, "%s: unreplaced %s" % (example, left)
        path = self.path(out)
        with open(path, "w") as f:
            f.write(text)
        if example.endswith(".sh"):
            os.chmod(path, 0o755)
        return path

    def close(self, failed=False):
        if self.keep or failed:
            print("scale: logs kept in %s" % self.dir, file=sys.stderr)
            return
        shutil.rmtree(self.dir, ignore_errors=True)


def start_peerd(t, host, addr):
    p = t.popen(host, [sys.executable, PEERD, "--addr", addr, "--lifetime", "300"], text=True)
    line = h.read_line(p, 10)
    assert line == "peerd listening", "peerd on %s: %r" % (host, line)
    return p


def start_twlb(t, host, cfg_path, log_path):
    log = open(log_path, "a")
    p = t.popen(host, [h.TWLB, "-c", cfg_path], stdout=log, stderr=subprocess.STDOUT)
    h.wait_for(lambda: p.poll() is None and healthz(t, host), 10, "twlb on %s" % host)
    return p


def healthz(t, host, admin="127.0.0.1:9901"):
    r = t.run(host, ["curl", "-sf", "--max-time", "1", "http://%s/healthz" % admin], timeout=5)
    return r.returncode == 0


def metrics(t, host, admin="127.0.0.1:9901"):
    """twlb's /metrics inside <host> as {(name, frozenset(labels)): value}."""
    r = t.run(host, ["curl", "-sf", "--max-time", "2", "http://%s/metrics" % admin], timeout=5)
    assert r.returncode == 0, "metrics from %s: %s" % (host, r.stderr)
    out = {}
    for line in r.stdout.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
            out[(m.group(1), labels)] = float(m.group(4))
    return out


def stop_pid(p, sig=signal.SIGTERM, timeout=10):
    """Stop one process we started, by its PID."""
    return h.stop(p, sig, timeout)


def start_loadgen(t, host, vip, rate, duration, long=0, long_life=0, ping_timeout=1.0):
    p = t.popen(host, [sys.executable, LOADGEN, "--vip", vip, "--rate", rate, "--duration",
                       duration, "--long", long, "--long-life", long_life,
                       "--ping-timeout", ping_timeout], text=True)
    line = h.read_line(p, 15)
    assert line and line.startswith("{"), "loadgen did not start: %r" % line
    hello = json.loads(line)
    p.started = hello["started"]
    p.long_nodes = hello["long_nodes"]
    return p


def finish_loadgen(p, timeout):
    out, _ = p.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    assert lines, "the load generator printed no result (exit status %s)" % p.returncode
    return json.loads(lines[-1])


def failures(res, t_from=None, t_to=None):
    """Short connections that failed, [(t_abs, error)], optionally in a time window."""
    out = []
    for off, node, err, _ in res["short"]:
        ta = res["start"] + off
        if err and (t_from is None or ta >= t_from) and (t_to is None or ta < t_to):
            out.append((ta, err))
    return out


def share(res, t_from=None, t_to=None):
    """Short connections served per node (inside address), in a time window."""
    c = {}
    for off, node, err, _ in res["short"]:
        ta = res["start"] + off
        if node and (t_from is None or ta >= t_from) and (t_to is None or ta < t_to):
            c[node] = c.get(node, 0) + 1
    return c


def not_opened(rec):
    """A long connection that failed before it was open: its connect failed ("open:"), or
    it ended before the first answer told which node served it (node "": cut in the
    middle of its opening, e.g. by the kill of the node it went to)."""
    node, err = rec[0], rec[2]
    return bool(err) and (err.startswith("open:") or not node)


def long_breaks(res, t_from, t_to, exclude=(), only=None):
    """Long connections on nodes other than <exclude> (or on <only>) that broke in
    [t_from, t_to): [(node, seconds after t_from, error)].  Not counted: a connection
    the client closed at the end of its life, one that could not be opened or ended
    before its first answer named its node (those are long_open_failures)."""
    out = []
    for rec in res["long"]:
        node, at, err = rec[:3]
        if at is None or at < 0 or node in exclude or (only and node not in only):
            continue
        if not_opened(rec):
            continue
        ta = res["start"] + at
        if t_from <= ta < t_to:
            out.append((node, round(ta - t_from, 3), err))
    return out


def long_open_failures(res, t_from, t_to):
    """Long connections that could not be opened, tried in [t_from, t_to): [(t_abs,
    error)], like failures() (the time the attempt started)."""
    out = []
    for rec in res["long"]:
        at, err = (rec + [None, None])[3], rec[2]
        if at is not None and at >= 0 and not_opened(rec):
            ta = res["start"] + at
            if t_from <= ta < t_to:
                out.append((ta, err))
    return out


def long_open_at(res, node, t_at):
    """Long connections on <node> open at <t_at> (absolute)."""
    n = 0
    for rec in res["long"]:
        nd, at, err, opened, ended = (rec + [None, None])[:5]
        if nd != node or opened is None or res["start"] + opened >= t_at:
            continue
        gone = at if at is not None else ended
        if gone is None or res["start"] + gone > t_at:
            n += 1
    return n


def long_carried(res, node, t_at):
    """Long connections on <node> that were open at <t_at> (absolute) and were ended by
    the client at the end of their life, unbroken, after it."""
    n = 0
    for rec in res["long"]:
        nd, at, err, opened, ended = (rec + [None, None])[:5]
        if nd == node and err is None and ended is not None and opened is not None \
                and res["start"] + opened < t_at < res["start"] + ended:
            n += 1
    return n


def syn_retransmits(t, hosts):
    return sum(h.metric(metrics(t, x), "twlb_syn_retransmits_total") for x in hosts)


def ns_syn_retrans(t, host):
    """TCPSynRetrans of <host>'s namespace: SYNs its connects had to resend (twlb's connects
    toward the backends; survives a killed twlb, unlike its /metrics)."""
    text = t.run(host, ["cat", "/proc/net/netstat"]).stdout.splitlines()
    for a, b in zip(text[::2], text[1::2]):
        if a.startswith("TcpExt:"):
            return int(dict(zip(a.split()[1:], b.split()[1:])).get("TCPSynRetrans", 0))
    return 0
