"""Shared helpers for the integration tests: start the real binaries, talk to them, and
always stop what was started (by PID) and remove temp files, also when a test fails.

Addresses: loopback only (127.0.0.0/8); each test picks its own 127.x.y.z so tests never
share a port.  Every wait is bounded."""
import http.client as httpc
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# TWLB_BIN / TWBACKEND_BIN run the suite against other builds (make integration-san).
TWLB = os.environ.get("TWLB_BIN") or os.path.join(ROOT, "lb", "twlb")
TWBACKEND = os.environ.get("TWBACKEND_BIN") or os.path.join(ROOT, "backends", "twbackend")


class Skip(Exception):
    """Raised by a test that cannot run here; the runner prints SKIP with the reason."""


_next_net = [10]


def new_net():
    """A fresh 127.N.0.0/16 block for one test: 127.N.1.x backends, 127.N.2.1 listener,
    127.N.3.1 admin, 127.N.4.x inside addresses, 127.N.5.x clients."""
    n = _next_net[0]
    _next_net[0] += 1
    return n


def free_port(ip):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


class Env:
    """Processes and files of one test.  Use as a context manager."""

    def __init__(self):
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="twlb-test-")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        for p in reversed(self.procs):
            stop(p)
        try:
            reports = sanitizer_reports(self.dir)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
        if reports:
            raise AssertionError("sanitizer report in a process of this test:\n" + reports)

    def path(self, name):
        return os.path.join(self.dir, name)

    def popen(self, argv, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", open(self.path("stderr-%d.log" % len(self.procs)), "w"))
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def backend(self, name, addr, mode, *extra, wrap=None):
        argv = [TWBACKEND, "--listen", addr, "--name", name, "--mode", mode, *extra]
        p = self.popen((wrap or []) + argv, text=True)
        line = read_line(p, 5)
        m = re.match(r"twbackend (\S+) listening on (\S+)", line or "")
        assert m, "twbackend did not start: %r" % line
        p.addr = m.group(2).split(",")[0]
        return p

    def write_config(self, cfg, name="twlb.json"):
        path = self.path(name)
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        return path

    def twlb(self, cfg, wait=True, wrap=None, name="twlb.json", extra_env=None):
        path = self.write_config(cfg, name) if isinstance(cfg, dict) else cfg
        log = open(self.path("twlb-%d.log" % len(self.procs)), "w")
        env = dict(os.environ, **extra_env) if extra_env else None
        p = self.popen((wrap or []) + [TWLB, "-c", path], stdout=log, stderr=subprocess.STDOUT,
                       env=env)
        p.log_path = log.name
        p.cfg_path = path
        if wait and isinstance(cfg, dict):
            admin = cfg.get("admin", {}).get("bind")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                assert p.poll() is None, "twlb exited early:\n" + open(log.name).read()
                try:
                    if admin and http_get(admin, "/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.05)
            else:
                raise AssertionError("twlb did not come up:\n" + open(log.name).read())
        return p


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_reports(directory):
    """The first sanitizer report found in the logs under <directory>, or ""."""
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not name.endswith(".log") or not os.path.isfile(path):
            continue
        with open(path, errors="replace") as f:
            text = f.read()
        for mark in SANITIZER_MARKS:
            i = text.find(mark)
            if i >= 0:
                return "%s:\n%s" % (name, text[max(0, i - 200):i + 3000])
    return ""


def wait_for(cond, timeout, what="the condition", interval=0.02):
    """Poll <cond>() until it returns a true value (returned) or <timeout> seconds pass
    (AssertionError naming <what>).  Exceptions from <cond> count as "not yet"; the last
    one is shown on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - not ready yet
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s%s" % (
                timeout, what, " (last error: %r)" % last if last else ""))
        time.sleep(interval)


def read_line(p, timeout):
    """One line of a child's stdout, waiting at most <timeout> seconds."""
    import select
    deadline = time.monotonic() + timeout
    buf = ""
    fd = p.stdout.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0, deadline - time.monotonic()))
        if not r:
            break
        ch = os.read(fd, 1).decode(errors="replace")
        if not ch:
            break
        if ch == "\n":
            return buf
        buf += ch
    return buf or None


def stop(p, sig=signal.SIGTERM, timeout=3):
    """Stop one process we started: <sig>, then SIGKILL after <timeout> s."""
    if p.poll() is not None:
        return p.returncode
    try:
        p.send_signal(sig)
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait(5)


def split_addr(addr):
    host, port = addr.rsplit(":", 1)
    return host.strip("[]"), int(port)


def http(addr, method, path, body=None, headers=None, timeout=5):
    host, port = split_addr(addr)
    c = httpc.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def http_get(addr, path):
    return http(addr, "GET", path)


def raw_http(addr, data, timeout=5):
    """Send raw bytes to the admin endpoint and return the status code (or None)."""
    host, port = split_addr(addr)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
    m = re.match(rb"HTTP/1\.[01] (\d+)", got)
    return int(m.group(1)) if m else None


def metrics(addr):
    """/metrics as {(name, frozenset(labels)): value}."""
    status, text = http_get(addr, "/metrics")
    assert status == 200, status
    return parse_metrics(text)


def parse_metrics(text):
    """Prometheus text as {(name, frozenset(labels)): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        assert m, "bad metrics line %r" % line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric(ms, name, **labels):
    """Sum of <name> over the series whose labels include <labels>."""
    want = set(labels.items())
    return sum(v for (n, ls), v in ms.items() if n == name and want <= set(ls))


def stats(addr):
    status, text = http_get(addr, "/stats")
    assert status == 200, status
    return json.loads(text)


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def proc_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_tcp(n):
    """TCP sockets whose local address is on test net <n> (127.N.0.0/16: twlb's and the
    backends' sides, not a client bound to 127.0.0.1) that some process still holds open:
    everything but listeners and what only the kernel keeps (TIME_WAIT, orphans; their
    inode is 0).  0 means every connection of the test has been closed on both sides."""
    suffix = "%02X7F" % n  # /proc/net/tcp prints the address as a little-endian u32
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if local.split(":")[0].endswith(suffix) and state != "0A" and inode != "0":
                count += 1
    return count


def request(addr, data=b"hi\n", src=None, timeout=5, shut=False):
    """One connection: send <data>, read to EOF; returns the bytes received."""
    host, port = split_addr(addr)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(timeout)
    try:
        if src:
            s.bind((src, 0))
        s.connect((host, port))
        if data:
            s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        return got
    finally:
        s.close()


def first_line(addr, **kw):
    return request(addr, **kw).split(b"\n", 1)[0].decode()


def pool_config(n, backends, balance="round_robin", **pool_extra):
    """A one-listener, one-pool config on test net <n>."""
    pool = {
        "name": "app",
        "balance": balance,
        "inside": ["127.%d.4.1" % n],
        "source_ports": "20000-29999",
        "connect_timeout_ms": 1000,
        "retries": 2,
        "backends": backends,
    }
    pool.update(pool_extra)
    return {
        "listeners": [{"name": "web", "bind": "127.%d.2.1:%d" % (n, free_port("127.%d.2.1" % n)),
                       "pool": "app"}],
        "pools": [pool],
        "reuse": {"isn": "off"},
        "admin": {"bind": "127.%d.3.1:%d" % (n, free_port("127.%d.3.1" % n))},
        "log": {"level": "info"},
    }


# The directories the systemd unit makes (StateDirectory=, LogsDirectory=); a config
# written for an installed twlb names them.
UNIT_DIRS = ("/var/lib/twlb", "/var/log/twlb")


def check_as_installed(path, env, twlb=None):
    """`twlb --check` on the config file <path> as on a host where the unit has run: its
    paths into a directory of the unit that this host lacks are moved into <env>'s temp
    dir (twlb --check names a missing directory as an error).  (rc, stdout, stderr)."""
    with open(path) as f:
        text = f.read()
    for d in UNIT_DIRS:
        if '"%s/' % d in text and not os.path.isdir(d):
            stand_in = env.path(d.strip("/").replace("/", "-"))
            os.makedirs(stand_in, exist_ok=True)
            text = text.replace('"%s/' % d, '"%s/' % stand_in)
            path = env.path("installed-" + os.path.basename(path))
            with open(path, "w") as f:
                f.write(text)
    r = subprocess.run([twlb or TWLB, "--check", path], capture_output=True, text=True,
                       timeout=10)
    return r.returncode, r.stdout, r.stderr


def listen_addr(cfg):
    return cfg["listeners"][0]["bind"]


def admin_addr(cfg):
    return cfg["admin"]["bind"]


def name_line(addr, src=None, keep=None):
    """Through a "name" backend: connect, read the first line (the backend's name).  With
    <keep> (a list) the connection stays open and is appended to it."""
    host, port = split_addr(addr)
    s = socket.socket()
    s.settimeout(5)
    if src:
        s.bind((src, 0))
    s.connect((host, port))
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(100)
        assert d, "closed before the name"
        buf += d
    if keep is not None:
        keep.append(s)
    else:
        s.close()
    return buf.strip().decode()


# A backend that answers <reply> to the first bytes of each connection, then resets it
# (SO_LINGER 0): for the tests of cut connections.  argv: IP, reply.  Prints its port.
RESET_BACKEND = r"""
import socket, struct, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], 0))
l.listen(128)
print(l.getsockname()[1], flush=True)
while True:
    c, _ = l.accept()
    c.recv(100)
    c.sendall(sys.argv[2].encode())
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # a reset, not a FIN
"""


def reset_backend(env, ip, reply="partial"):
    """Start RESET_BACKEND on <ip> under <env>; returns its "ip:port"."""
    import sys
    p = env.popen([sys.executable, "-c", RESET_BACKEND, ip, reply], text=True)
    return "%s:%d" % (ip, int(read_line(p, 5)))


def read_until_end(s, timeout=5, limit=None):
    """Everything <s> receives and how it ended: "eof", "reset", "timeout" or "limit"."""
    got = bytearray()
    s.settimeout(timeout)
    try:
        while limit is None or len(got) < limit:
            d = s.recv(1 << 16)
            if not d:
                return bytes(got), "eof"
            got += d
        return bytes(got), "limit"
    except ConnectionResetError:
        return bytes(got), "reset"
    except socket.timeout:
        return bytes(got), "timeout"


def serve_one_by_one(socks, timeout=10):
    """Echo clients that twlb serves a few at a time (at max_connections): each sends its
    index, and each answered one is closed, which lets the next in.  Returns how many got
    their echo back (a reset counts as not)."""
    for i, s in enumerate(socks):
        s.sendall(b"%d\n" % i)
    pending, served = dict((s, i) for i, s in enumerate(socks)), 0
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select(list(pending), [], [], 0.5)
        for s in ready:
            i = pending.pop(s)
            try:
                served += s.recv(10) == b"%d\n" % i
            except OSError:
                pass
            s.close()
    for s in pending:
        s.close()
    return served
