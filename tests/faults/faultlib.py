"""Helpers shared by the fault cases (tests/faults) and the short ones that make test
runs (tests/integration/test_fault_cases.py)."""
import os
import socket
import time

import harness as h


def alive(p, what):
    assert p.poll() is None, "twlb died (%s), exit %s:\n%s" % (
        what, p.returncode, open(p.log_path).read()[-3000:])


read_until_end = h.read_until_end  # one copy, in the harness


def raise_nofile(want=65536):
    """Raise this process's descriptor limit (children started later inherit it)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def log_tail(p, n=3000):
    return open(p.log_path).read()[-n:]


class Sampler:
    """Samples RSS (kB) and descriptor count of a pid while running (a thread)."""

    def __init__(self, pid, interval=0.05):
        import threading
        self.pid, self.interval = pid, interval
        self.rss, self.fds = [], []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(self.interval):
            try:
                self.rss.append(h.proc_rss_kb(self.pid))
                self.fds.append(h.proc_fds(self.pid))
            except OSError:
                return

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join(5)
        return False


def now():
    return time.monotonic()


def env_int(name, default):
    return int(os.environ.get(name, default))
