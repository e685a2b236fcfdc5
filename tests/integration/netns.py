"""Test topologies built from Linux network namespaces, for the integration tests and the
stress suite.  Python 3 standard library only; needs root and iproute2 (ip, sysctl).

    with netns.Topology() as t:
        t.add_host("client", addrs=["198.18.0.1/24"])
        t.add_host("backend", addrs=["198.18.0.2/24"], tw="strict")
        p = t.popen("backend", ["python3", "server.py"])
        r = t.run("client", ["python3", "client.py"], timeout=10)

Shape.  Hosts given `addrs` share one Ethernet segment: a bridge in a "hub" namespace,
each host joined to it by a veth pair whose ends are created directly inside the two
namespaces (eth0 in the host, p<N> in the hub).  A bridge rather than a mesh of veth
pairs because any number of clients, proxies and backends then reach each other by
address with no per-pair links and no routes, and adding a host costs one veth.  When
the path matters (a proxy between two networks, asymmetric routes), `link()` adds a
point-to-point veth pair between two hosts and `route()` a route.

Isolation.  Every namespace is named "<prefix>-<host>" with prefix "twlb-<pid>-<n>" (pid
of the test process, n counting its topologies), so parallel runs and leftovers never
collide.  No interface is ever created in the host's own namespace, and no namespace
has a default route or a link to the host: traffic to anything but the topology's own
addresses fails with ENETUNREACH instead of leaving.  lo is up everywhere, so 127.0.0.1
and ::1 in a namespace are that namespace's own.  Addresses must lie in 198.18.0.0/15
(RFC 2544 benchmarking), checked before anything is created.  Links carry IPv4 only:
IPv6 is disabled on every interface but lo (no DAD delay, no router or multicast
chatter on the segment).

TIME_WAIT behaviour per host, set in its own namespace (the sysctls are per namespace,
kernel-facts 1), always explicitly so the host's own settings never leak in:
    linux   tcp_timestamps=1 tcp_rfc1337=0   (Linux defaults: timestamp rule first)
    bsd     tcp_timestamps=0 tcp_rfc1337=0   (sequence rule only, FreeBSD-like)
    strict  tcp_timestamps=0 tcp_rfc1337=1   (a "before" SYN stalls until TIME_WAIT ends)

Cleanup.  close() (also run by the context manager, at exit, and on SIGINT, SIGTERM and
SIGHUP of the test process) stops every process the topology started, by PID (SIGTERM,
then SIGKILL after a grace period), then any process still inside its namespaces, then
deletes the namespaces, which removes every link with them.  A run killed with SIGKILL
leaves namespaces behind: cleanup_leftovers() removes those whose owning process is
gone; every Topology calls it when created.
"""
import atexit
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

try:
    from harness import Skip  # the runner prints SKIP for this exception
except ImportError:  # imported from outside tests/integration
    class Skip(Exception):
        """This test cannot run here; the message says why."""

PREFIX = "twlb-"
TEST_NET = ipaddress.ip_network("198.18.0.0/15")
NETNS_DIR = "/var/run/netns"  # where `ip netns add` mounts the namespaces
CMD_TIMEOUT = 20              # seconds for any one ip/sysctl command
STOP_GRACE = 3.0              # seconds between SIGTERM and SIGKILL

TW_SYSCTLS = {
    "linux": {"net.ipv4.tcp_timestamps": "1", "net.ipv4.tcp_rfc1337": "0"},
    "bsd": {"net.ipv4.tcp_timestamps": "0", "net.ipv4.tcp_rfc1337": "0"},
    "strict": {"net.ipv4.tcp_timestamps": "0", "net.ipv4.tcp_rfc1337": "1"},
}

# Set in every namespace before any link exists, so only lo (created with the
# namespace) keeps IPv6.
BASE_SYSCTLS = {
    "net.ipv6.conf.default.disable_ipv6": "1",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.all.accept_dad": "0",
}

_live = []          # open topologies, closed at exit or on a signal
_counter = [0]      # topologies made by this process
_available = []     # cached result of available()
_HOST_NAME = re.compile(r"^[a-z][a-z0-9_]{0,19}$")


# ---- commands ----------------------------------------------------------------------

def _sh(*argv, ns=None, check=True):
    """Run one command (inside namespace <ns> if given); returns its stdout.  Raises
    RuntimeError with its stderr when it fails and <check> is set."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=CMD_TIMEOUT)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.strip()))
    return r.stdout


def _ip(ns, *args, check=True):
    """`ip -n <ns> ...`: cheaper than `ip netns exec` (no fork, no /sys remount)."""
    return _sh("ip", "-n", ns, *args, check=check)


def _sysctl(ns, values, ignore_unknown=False):
    """Set sysctls inside <ns>; with <ignore_unknown>, keys this kernel lacks are skipped
    (IPv6 ones on a kernel without IPv6)."""
    if values:
        _sh("sysctl", "-q", *(["-e"] if ignore_unknown else []), "-w",
            *("%s=%s" % kv for kv in values.items()), ns=ns)


def _list_netns():
    out = _sh("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.split()]


def _ns_pids(ns):
    out = _sh("ip", "netns", "pids", ns, check=False)
    return [int(x) for x in out.split() if x.isdigit()]


def _test_addr(text):
    """An interface address "198.18.x.y/len" (or a bare address, as /32) inside
    198.18.0.0/15; anything else raises ValueError."""
    iface = ipaddress.ip_interface(text)
    if iface.version != 4 or iface.ip not in TEST_NET:
        raise ValueError("%s: test hosts use 198.18.0.0/15 only" % text)
    return iface


# ---- processes ---------------------------------------------------------------------

def _alive(pid):
    """True while <pid> runs; a zombie (dead, waiting for its parent to reap it) is not
    running."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stop_popens(procs, grace=STOP_GRACE):
    """SIGTERM every running Popen, SIGKILL what is left after <grace> s, reap all."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for p in running:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    for p in procs:
        for f in (p.stdin, p.stdout, p.stderr):
            if f:
                try:
                    f.close()
                except OSError:
                    pass


def _stop_pids(pids, grace=STOP_GRACE):
    """The same for bare PIDs (processes left inside our namespaces, not our children:
    nothing to reap)."""
    pids = [p for p in pids if p != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.02)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _delete_ns(ns):
    """Stop whatever still runs inside <ns>, then delete it (and its interfaces)."""
    _stop_pids(_ns_pids(ns))
    _sh("ip", "netns", "del", ns, check=False)


# ---- leftovers ---------------------------------------------------------------------

def _boot_time():
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return int(line.split()[1])
    return 0


def _started_at(pid):
    """Wall-clock start time of process <pid>, or None when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 (state); field 22 is the start time in clock ticks since boot
    return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _owner_alive(pid, created):
    """True when process <pid> exists and already existed when the namespace was made
    (at <created>): a PID reused by a younger process does not own it.  2 s of slack for
    btime's rounding."""
    started = _started_at(pid)
    return started is not None and started <= created + 2.0


def cleanup_leftovers(prefix=PREFIX):
    """Delete the namespaces "<prefix><pid>-<n>-..." whose owning process <pid> is gone
    (a test run killed with SIGKILL), after stopping any process still running inside
    them (backends that run forgot).  Returns the names removed."""
    removed = []
    pattern = re.compile(re.escape(prefix) + r"(\d+)-(\d+)(-|$)")
    for name in _list_netns():
        m = pattern.match(name)
        if not m:
            continue
        try:
            created = os.stat(os.path.join(NETNS_DIR, name)).st_mtime
        except OSError:
            continue  # being deleted by its owner right now
        if _owner_alive(int(m.group(1)), created):
            continue
        _delete_ns(name)
        removed.append(name)
    return removed


# ---- availability ------------------------------------------------------------------

def available():
    """(True, "") when this process can build topologies, else (False, why).  Tries
    for real once: creates and deletes a namespace."""
    if _available:
        return _available[0]
    if os.geteuid() != 0:
        why = "network namespaces need root"
    elif not shutil.which("ip"):
        why = "iproute2 (ip) is not installed"
    elif not shutil.which("sysctl"):
        why = "procps (sysctl) is not installed"
    else:
        probe = "%s%d-0-probe" % (PREFIX, os.getpid())
        r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                           timeout=CMD_TIMEOUT)
        why = "" if r.returncode == 0 else "ip netns add fails here: " + r.stderr.strip()
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=CMD_TIMEOUT)
    _available.append((not why, why))
    return _available[0]


def require():
    """Raise Skip (the runner prints "SKIP <test>: <reason>") when topologies cannot be
    built here."""
    ok, why = available()
    if not ok:
        raise Skip(why)


# ---- the topology ------------------------------------------------------------------

class Topology:
    """Namespaces, links and processes of one test; everything is undone by close()."""

    HUB = "hub"

    def __init__(self):
        require()
        cleanup_leftovers()
        _install_signal_handlers()
        _counter[0] += 1
        self.prefix = "%s%d-%d" % (PREFIX, os.getpid(), _counter[0])
        self.hosts = {}        # host name -> namespace name, hub included once made
        self.procs = []        # Popen objects started by popen()
        self._bridged = set()  # hosts with an eth0 on the hub's bridge
        self._nlinks = 0       # veth pairs made (names p<N> in the hub, v<N> for links)
        self._closed = False
        _live.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- building -----------------------------------------------------------------

    def ns(self, host):
        """The namespace name of <host>."""
        return self.hosts[host]

    def _new_ns(self, host, sysctls):
        ns = "%s-%s" % (self.prefix, host)
        _sh("ip", "netns", "add", ns)
        self.hosts[host] = ns  # from here on close() deletes it, whatever fails next
        _sysctl(ns, BASE_SYSCTLS, ignore_unknown=True)
        _sysctl(ns, sysctls)
        _ip(ns, "link", "set", "lo", "up")
        return ns

    def _hub(self):
        if self.HUB not in self.hosts:
            ns = self._new_ns(self.HUB, {})
            # STP off and no forward delay: a port forwards as soon as it is up
            _ip(ns, "link", "add", "br0", "type", "bridge", "stp_state", "0",
                "forward_delay", "0")
            _ip(ns, "link", "set", "br0", "up")
        return self.hosts[self.HUB]

    def add_host(self, name, addrs=(), tw="linux"):
        """A host: its own namespace with lo up and the TIME_WAIT behaviour <tw>
        ("linux", "bsd" or "strict").  With <addrs> (e.g. ["198.18.0.10/24"]) it is
        joined to the shared segment as eth0 carrying those addresses.  Returns the
        namespace name."""
        if not _HOST_NAME.match(name) or name == self.HUB:
            raise ValueError("host name %r: [a-z][a-z0-9_]*, at most 20, not %r"
                             % (name, self.HUB))
        if name in self.hosts:
            raise ValueError("host %r exists already" % name)
        if tw not in TW_SYSCTLS:
            raise ValueError("tw=%r: one of %s" % (tw, ", ".join(sorted(TW_SYSCTLS))))
        ifaces = [_test_addr(a) for a in addrs]
        ns = self._new_ns(name, TW_SYSCTLS[tw])
        if ifaces:
            hub = self._hub()
            self._nlinks += 1
            port = "p%d" % self._nlinks
            _ip(hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip(hub, "link", "set", port, "master", "br0", "up")
            for iface in ifaces:
                _ip(ns, "addr", "add", str(iface), "dev", "eth0")
            _ip(ns, "link", "set", "eth0", "up")
            self._bridged.add(name)
        return ns

    def link(self, a, addr_a, b, addr_b):
        """A point-to-point veth pair between hosts <a> and <b>, with addresses like
        "198.18.1.1/24".  Returns the interface names (the same name on both ends)."""
        ia, ib = _test_addr(addr_a), _test_addr(addr_b)
        self._nlinks += 1
        dev = "v%d" % self._nlinks
        _ip(self.hosts[a], "link", "add", dev, "type", "veth", "peer", "name", dev,
            "netns", self.hosts[b])
        for host, iface in ((a, ia), (b, ib)):
            _ip(self.hosts[host], "addr", "add", str(iface), "dev", dev)
            _ip(self.hosts[host], "link", "set", dev, "up")
        return dev, dev

    def add_addr(self, host, addr, dev=None):
        """One more address on <host>: on <dev>, by default eth0 when the host is on the
        segment, else lo (e.g. an "inside" address reached through a route)."""
        iface = _test_addr(addr)
        dev = dev or ("eth0" if host in self._bridged else "lo")
        _ip(self.hosts[host], "addr", "add", str(iface), "dev", dev)

    def route(self, host, dst, via):
        """A route on <host> to <dst> (e.g. "198.18.0.1/32") through <via>."""
        _test_addr(dst)
        _test_addr(via)
        _ip(self.hosts[host], "route", "add", dst, "via", via)

    def sysctl(self, host, key, value):
        """Set one sysctl in <host>'s namespace (net.* keys are per namespace)."""
        _sysctl(self.hosts[host], {key: str(value)})

    # -- processes ----------------------------------------------------------------

    def argv(self, host, argv):
        """<argv> prefixed so that it runs inside <host>'s namespace."""
        return ["ip", "netns", "exec", self.hosts[host]] + [str(a) for a in argv]

    def popen(self, host, argv, **kw):
        """Start <argv> inside <host> (stdout a pipe, stderr discarded unless given) and
        remember it: close() stops it.  `ip netns exec` execs the command itself, so the
        PID is the command's."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen(self.argv(host, argv), **kw)
        p.host = host
        self.procs.append(p)
        return p

    def run(self, host, argv, timeout=120, check=False, **kw):
        """Run <argv> inside <host> to completion (killed after <timeout> s, which then
        raises subprocess.TimeoutExpired); returns the CompletedProcess, text output
        captured."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.argv(host, argv), timeout=timeout, check=check, **kw)

    # -- teardown -----------------------------------------------------------------

    def close(self):
        """Stop every process started here, then delete every namespace (and with them
        every link).  Safe to call twice and from a signal handler."""
        if self._closed:
            return
        self._closed = True
        try:
            _stop_popens(self.procs)
        finally:
            self.procs = []
            for ns in self.hosts.values():
                try:
                    _delete_ns(ns)
                except Exception as e:  # noqa: BLE001 - keep deleting the others
                    print("netns: cannot delete %s: %s" % (ns, e), file=sys.stderr)
            self.hosts = {}
            if self in _live:
                _live.remove(self)


# ---- exit and signals --------------------------------------------------------------

def _close_all():
    for t in list(_live):
        t.close()


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_installed = {}


def _on_signal(signum, frame):
    # A second Ctrl-C must not interrupt the cleanup half-way: ignore ours meanwhile.
    for s in _installed:
        signal.signal(s, signal.SIG_IGN)
    try:
        _close_all()
    finally:
        for s in _installed:
            signal.signal(s, _on_signal)
    prev = _installed.get(signum)
    if callable(prev):
        prev(signum, frame)  # SIGINT: Python's KeyboardInterrupt
    raise SystemExit(128 + signum)


def _install_signal_handlers():
    """Once, from the main thread: clean up on SIGINT/SIGTERM/SIGHUP, then behave as
    before (a signal that was ignored stays ignored)."""
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    for s in _SIGNALS:
        prev = signal.getsignal(s)
        if prev in (signal.SIG_IGN, None):
            continue
        _installed[s] = prev
        signal.signal(s, _on_signal)


atexit.register(_close_all)
