"""Test hosts in network namespaces, joined by veth pairs, with addresses in 198.18.0.0/15
only.  A Topology removes every namespace it made and stops every process it started (by
PID), also when the test fails or the runner is interrupted.

Each backend host gets its TIME_WAIT behaviour from sysctls of its own namespace:
  linux   defaults (timestamps on)
  bsd     net.ipv4.tcp_timestamps=0 (sequence rule only)
  strict  tcp_timestamps=0 and tcp_rfc1337=1 (a rejected SYN stalls until TIME_WAIT ends)
"""
import atexit
import os
import shutil
import signal
import subprocess

import harness as h

TW_SYSCTLS = {
    "linux": {},
    "bsd": {"net.ipv4.tcp_timestamps": "0"},
    "strict": {"net.ipv4.tcp_timestamps": "0", "net.ipv4.tcp_rfc1337": "1"},
}

_live = []
_counter = [0]


def available():
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    if not shutil.which("ip"):
        return False, "iproute2 (ip) is not installed"
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if r.returncode != 0:
        return False, "ip netns does not work here: " + r.stderr.strip()
    return True, ""


def require():
    ok, why = available()
    if not ok:
        raise h.Skip(why)


def _sh(*argv, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.strip()))
    return r.stdout


def cleanup_leftovers(prefix="twlb-"):
    """Remove namespaces of earlier runs whose owning process is gone."""
    for line in _sh("ip", "netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if name.startswith(prefix) and len(parts) >= 3 and parts[1].isdigit():
            if not os.path.exists("/proc/" + parts[1]):
                _sh("ip", "netns", "del", name, check=False)


class Topology:
    def __init__(self):
        require()
        cleanup_leftovers()
        _counter[0] += 1
        self.prefix = "twlb-%d-%d" % (os.getpid(), _counter[0])
        self.hosts = {}
        self.procs = []
        self.nlinks = 0
        _live.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def ns(self, host):
        return self.hosts[host]

    def add_host(self, name, tw="linux"):
        ns = "%s-%s" % (self.prefix, name)
        _sh("ip", "netns", "add", ns)
        self.hosts[name] = ns
        _sh("ip", "link", "set", "lo", "up", ns=ns)
        for k, v in TW_SYSCTLS[tw].items():
            _sh("sysctl", "-q", "-w", "%s=%s" % (k, v), ns=ns)
        return ns

    def link(self, a, addr_a, b, addr_b):
        """A veth pair between hosts <a> and <b>; addresses like "198.18.0.1/24"."""
        for addr in (addr_a, addr_b):
            first, second = (int(x) for x in addr.split(".")[:2])
            assert (first, second) in ((198, 18), (198, 19)), "test addresses: 198.18.0.0/15"
        self.nlinks += 1
        va, vb = "tw%da%d" % (os.getpid() % 10000, self.nlinks), "tw%db%d" % (os.getpid() % 10000, self.nlinks)
        _sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        _sh("ip", "link", "set", va, "netns", self.hosts[a])
        _sh("ip", "link", "set", vb, "netns", self.hosts[b])
        for host, dev, addr in ((a, va, addr_a), (b, vb, addr_b)):
            _sh("ip", "addr", "add", addr, "dev", dev, ns=self.hosts[host])
            _sh("ip", "link", "set", dev, "up", ns=self.hosts[host])

    def popen(self, host, argv, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen(["ip", "netns", "exec", self.hosts[host]] + list(argv), **kw)
        self.procs.append(p)
        return p

    def run(self, host, argv, timeout=120):
        r = subprocess.run(["ip", "netns", "exec", self.hosts[host]] + list(argv),
                           capture_output=True, text=True, timeout=timeout)
        return r

    def close(self):
        for p in reversed(self.procs):
            h.stop(p)
        self.procs = []
        for ns in self.hosts.values():
            _sh("ip", "netns", "del", ns, check=False)
        self.hosts = {}
        if self in _live:
            _live.remove(self)


def _close_all(*_):
    for t in list(_live):
        t.close()


atexit.register(_close_all)
for _sig in (signal.SIGTERM, signal.SIGINT):
    _prev = signal.getsignal(_sig)

    def _handler(signum, frame, _prev=_prev):
        _close_all()
        if callable(_prev):
            _prev(signum, frame)
        raise SystemExit(128 + signum)

    signal.signal(_sig, _handler)
