#!/usr/bin/env python3
"""The TIME_WAIT problem twlb exists to solve, shown on this kernel without twlb.

A client (198.18.0.1) connects from a fixed source port to a backend (198.18.0.2:9000)
that closes first, so the BACKEND holds TIME_WAIT; then the client reconnects at once
from the same port.  The backend's TIME_WAIT only lets the new SYN in when its sequence
number is "after" the old connection's last one (kernel-facts 1); with timestamps off
nothing else can save it.  The client's kernel picks ISN = hash(4-tuple) + realtime/64 ns
(kernel-facts 3), so for the same 4-tuple the new ISN is the old one plus dt/64: after
uploading 32 MiB the reconnect comes less than 33.5 M "ticks" later, the SYN is
"before", and:

  strict backend (timestamps off, rfc1337=1)  the SYN is ignored until TIME_WAIT ends
  bsd backend (timestamps off, rfc1337=0)     one SYN is lost, the retry gets in (~10 ms)
  no upload                                   the SYN is "after": accepted at once

Each test asserts its own premise (who holds TIME_WAIT, which side of the sequence rule
the reconnect falls on), so a kernel that changes shows up as a failure that says why.
Needs root (network namespaces); skips otherwise.  Runnable alone: prints PASS/FAIL/SKIP
per test and "N passed, N failed".  The whole file takes about 6 s and is bounded well
under 30 s.
"""
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import netns  # noqa: E402

CLIENT = "198.18.0.1"
BACKEND = "198.18.0.2"
BACKEND_PORT = 9000
SOURCE_PORT = 40000
UPLOAD = 32 << 20
STALL_S = 2.0       # how long the "before" reconnect must stay pending
TW_LEN_S = 60       # Linux TIME_WAIT (TCP_TIMEWAIT_LEN)

# Reads exactly <expect> bytes of each connection, answers how many it got, then closes
# FIRST, so the backend's side of the 4-tuple goes to TIME_WAIT.
SERVER = r"""
import socket, sys
addr, port, expect = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((addr, port))
l.listen(8)
print("listening", flush=True)
while True:
    c, _ = l.accept()
    c.settimeout(10)
    got = 0
    try:
        while got < expect:
            b = c.recv(min(1 << 20, expect - got))
            if not b:
                break
            got += len(b)
        c.sendall(b"%d\n" % got)
    except OSError:
        pass
    c.close()
"""

# Phase 1: connect from src:sport, upload <nbytes>, read to EOF (the backend's FIN comes
# first), close, wait until our side of the 4-tuple is gone, report.  Then wait for a
# line on stdin (the test inspects the backend meanwhile).  Phase 2: the same 4-tuple
# again, non-blocking, waiting at most <wait> s; report how it went and abort it.
CLIENT_CODE = r"""
import json, select, socket, struct, sys, time
src, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
nbytes, wait = int(sys.argv[5]), float(sys.argv[6])

def bound():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src, sport))
    return s

def tcp_info(s):
    # struct tcp_info: u8 tcpi_state at 0, u32 tcpi_total_retrans at 100
    b = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return b[0], struct.unpack_from("I", b, 100)[0]

def gone():
    # Our end passes through LAST_ACK; the 4-tuple cannot be connected again before
    # the backend's ACK removes it.
    with open("/proc/net/tcp") as f:
        next(f)
        return not any(l.split()[1].endswith(":%04X" % sport) for l in f)

s = bound()
s.settimeout(10)
t1 = time.time_ns()
s.connect((dst, dport))
chunk = memoryview(bytes(1 << 20))
left = nbytes
while left:
    n = min(left, len(chunk))
    s.sendall(chunk[:n])
    left -= n
reply = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    reply += b
s.close()
deadline = time.monotonic() + 2
while not gone() and time.monotonic() < deadline:
    time.sleep(0.001)
print(json.dumps({"reply": reply.decode().strip(), "gone": gone(),
                  "old_s": (time.time_ns() - t1) / 1e9}), flush=True)
sys.stdin.readline()

s = bound()
s.setblocking(False)
t2 = time.time_ns()
m0 = time.monotonic()
rc = s.connect_ex((dst, dport))
_, w, _ = select.select([], [s], [], wait)
elapsed = time.monotonic() - m0
state, retrans = tcp_info(s)
print(json.dumps({"connect_ex": rc, "writable": bool(w), "elapsed": elapsed,
                  "so_error": s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR),
                  "state": state, "total_retrans": retrans, "dt_ns": t2 - t1}), flush=True)
s.close()  # still in SYN_SENT: closing sends nothing
"""

TCP_ESTABLISHED, TCP_SYN_SENT, TCP_TIME_WAIT, TCP_CLOSE_WAIT = 1, 2, 6, 8
USER_HZ = 100  # /proc/net/tcp timers are in clock_t


def predicted(dt_ns, nbytes):
    """Where the new SYN falls for the backend (kernel-facts 3): "after" when the kernel's
    ISN clock advanced by 1..2^31 past the old connection's end (ISN + bytes + SYN + FIN),
    else "before"."""
    d = (dt_ns // 64 - (nbytes + 2)) % (1 << 32)
    return "after" if 1 <= d <= 1 << 31 else "before"


def read_json(p, timeout):
    """One JSON line from child <p>'s stdout within <timeout> s."""
    fd = p.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        r, _, _ = select.select([fd], [], [], max(0.0, left))
        if not r:
            raise AssertionError("no answer within %.0f s (got %r)" % (timeout, buf))
        b = os.read(fd, 4096)
        if not b:
            raise AssertionError("the client exited early (got %r)" % buf)
        buf += b
    return json.loads(buf)


def time_wait_left(t, host, local, remote):
    """Seconds left of <host>'s TIME_WAIT socket local -> remote ((ip, port) pairs), or
    None when there is none.  Read from /proc/net/tcp inside the host's namespace."""
    def fmt(ip, port):
        return "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(ip))[0], port)
    want = (fmt(*local), fmt(*remote))
    lines = t.run(host, ["cat", "/proc/net/tcp"], timeout=5).stdout.splitlines()[1:]
    for line in lines:
        f = line.split()
        if (f[1], f[2]) == want and int(f[3], 16) == TCP_TIME_WAIT:
            return int(f[5].split(":")[1], 16) / USER_HZ
    return None


def scenario(tw, nbytes, pause=0.0, wait=STALL_S):
    """Run the two connections against a backend with TIME_WAIT behaviour <tw>.  Returns
    (first, tw_before, second, tw_after): the client's two reports and the backend's
    TIME_WAIT seconds left before and after the reconnect (None: none)."""
    netns.require()
    with netns.Topology() as t:
        t.add_host("client", addrs=[CLIENT + "/24"])
        t.add_host("backend", addrs=[BACKEND + "/24"], tw=tw)
        srv = t.popen("backend", ["python3", "-c", SERVER, BACKEND, BACKEND_PORT, nbytes])
        r, _, _ = select.select([srv.stdout], [], [], 5)
        assert r and srv.stdout.readline() == b"listening\n", "the backend did not start"
        cli = t.popen("client", ["python3", "-c", CLIENT_CODE, CLIENT, SOURCE_PORT, BACKEND,
                                 BACKEND_PORT, nbytes, wait],
                      stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        tuple_ = ((BACKEND, BACKEND_PORT), (CLIENT, SOURCE_PORT))
        try:
            first = read_json(cli, 15)
            tw_before = time_wait_left(t, "backend", *tuple_)
            time.sleep(pause)  # the test's own parameter: time between the two connections
            cli.stdin.write(b"go\n")
            cli.stdin.flush()
            second = read_json(cli, wait + 5)
        except AssertionError as e:
            cli.kill()
            raise AssertionError("%s; client stderr: %s" % (e, cli.stderr.read().decode()))
        tw_after = time_wait_left(t, "backend", *tuple_)
        return first, tw_before, second, tw_after


def check_old_connection(first, tw_before, nbytes):
    assert first["reply"] == str(nbytes), "the backend read %r bytes" % first["reply"]
    assert first["gone"], "the client's old socket did not leave LAST_ACK within 2 s"
    assert tw_before is not None, "the backend does not hold TIME_WAIT: it did not close first"
    assert 0 < tw_before <= TW_LEN_S, tw_before


def test_reuse_before_stalls_against_rfc1337_backend():
    """32 MiB up, then the same 4-tuple at once: the SYN is "before" and an RFC 1337
    backend ignores it (and the client's RSTs) for as long as its TIME_WAIT lasts."""
    first, tw_before, second, tw_after = scenario("strict", UPLOAD)
    check_old_connection(first, tw_before, UPLOAD)
    side = predicted(second["dt_ns"], UPLOAD)
    assert side == "before", (
        "premise: the reconnect came %.2f s after the first SYN; the ISN clock advanced "
        "more than the %d bytes sent, too slow a run to show the problem" %
        (second["dt_ns"] / 1e9, UPLOAD))
    assert second["connect_ex"] == 115, second            # EINPROGRESS
    assert not second["writable"], "connected after %.3f s: %s" % (second["elapsed"], second)
    assert second["elapsed"] >= STALL_S - 0.1, second
    assert second["state"] == TCP_SYN_SENT, second
    assert second["total_retrans"] >= 1, "the SYN was never resent: %s" % second
    assert second["so_error"] == 0, second
    # rfc1337: the client's RSTs did not end the backend's TIME_WAIT; it runs on.
    assert tw_after is not None, "the backend's TIME_WAIT is gone"
    assert TW_LEN_S - 10 < tw_after <= TW_LEN_S, tw_after


def test_reuse_before_costs_one_syn_retransmit_without_rfc1337():
    """The same "before" SYN against a backend without rfc1337: the backend answers with
    an ACK, the client's RST kills the TIME_WAIT, and the SYN resent a few ms later gets
    in.  Same sequence rule, a lost round trip instead of a stall."""
    first, tw_before, second, _ = scenario("bsd", UPLOAD)
    check_old_connection(first, tw_before, UPLOAD)
    assert predicted(second["dt_ns"], UPLOAD) == "before", second
    assert second["writable"] and second["so_error"] == 0, second
    assert second["state"] == TCP_ESTABLISHED, second
    assert second["total_retrans"] >= 1, "accepted at the first SYN: %s" % second
    assert second["elapsed"] < 1.0, "waited for the 1 s SYN timer: %s" % second


def test_reuse_after_is_accepted_at_once():
    """Control: no upload and a short pause, the same 4-tuple against the same strict
    backend: the SYN is "after" and is accepted at once, first try."""
    first, tw_before, second, _ = scenario("strict", 0, pause=0.1)
    check_old_connection(first, tw_before, 0)
    assert predicted(second["dt_ns"], 0) == "after", second
    assert second["writable"] and second["so_error"] == 0, second
    # accepted: ESTABLISHED, or already CLOSE_WAIT when the backend (it expects 0 bytes)
    # answered and closed before TCP_INFO was read
    assert second["state"] in (TCP_ESTABLISHED, TCP_CLOSE_WAIT), second
    assert second["total_retrans"] == 0, second
    assert second["elapsed"] < 1.0, second


def test_topology_isolation_and_cleanup():
    """The building blocks themselves: only 198.18.0.0/15, no way out of the topology,
    per-host TIME_WAIT sysctls, and nothing left behind (processes, namespaces, and the
    leftovers of a run that was killed)."""
    netns.require()
    with netns.Topology() as t:
        for bad in ("10.0.0.1/24", "192.168.1.1/24", "127.0.0.2/8", "2001:db8::1/64"):
            try:
                t.add_host("bad", addrs=[bad])
            except ValueError:
                continue
            raise AssertionError("%s was accepted" % bad)
        assert "bad" not in t.hosts
        t.add_host("a", addrs=["198.18.0.1/24"])
        t.add_host("b", addrs=["198.18.0.2/24"], tw="strict")
        t.add_host("c", tw="bsd")
        t.link("b", "198.18.1.1/24", "c", "198.18.1.2/24")
        for host, want in (("a", "1 0"), ("b", "0 1"), ("c", "0 0")):
            got = t.run(host, ["sysctl", "-n", "net.ipv4.tcp_timestamps",
                               "net.ipv4.tcp_rfc1337"]).stdout.split()
            assert " ".join(got) == want, (host, got)
        assert t.run("a", ["ip", "route", "show", "default"]).stdout.strip() == ""
        probe = ("import socket, sys\n"
                 "for ip in sys.argv[1:]:\n"
                 "    s = socket.socket(); s.settimeout(2)\n"
                 "    print(ip, s.connect_ex((ip, 9)))\n")
        out = t.run("a", ["python3", "-c", probe, "198.18.0.2", "198.18.1.2", "192.0.2.1",
                          "127.0.0.1"], timeout=10).stdout.split()
        res = dict(zip(out[::2], (int(x) for x in out[1::2])))
        assert res["198.18.0.2"] == 111, res   # ECONNREFUSED: b answered over the bridge
        assert res["198.18.1.2"] == 101, res   # ENETUNREACH: c is only on b's link
        assert res["192.0.2.1"] == 101, res    # ENETUNREACH: no way out
        assert res["127.0.0.1"] == 111, res    # its own lo, up
        sleeper = t.popen("c", ["sleep", "30"])
        orphan = t.popen("c", ["sh", "-c", "sleep 30 & echo $!; wait"])
        orphan_pid = int(orphan.stdout.readline())
        ours = set(t.hosts.values())
    assert sleeper.returncode is not None and orphan.returncode is not None
    assert not netns._alive(orphan_pid), "a process started inside the namespace survived"
    assert not ours & set(netns._list_netns()), "namespaces left behind"

    # A run killed with SIGKILL: its namespace and the process inside must go, while a
    # namespace whose owner still runs (this process) stays.  Both are made under a
    # prefix of our own ("twlb-<our pid>-0-"): any other test run's sweep sees us as the
    # owner and leaves them alone (a plain "twlb-<dead pid>-..." could be deleted by a
    # parallel run before we look), and our sweep touches nothing but these two.
    dead = subprocess.Popen(["true"])
    dead.wait()
    prefix = "%s%d-0-" % (netns.PREFIX, os.getpid())
    stale, live = prefix + "%d-1-left" % dead.pid, prefix + "%d-999-live" % os.getpid()
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        inside = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "30"])
        h.wait_for(lambda: inside.pid in netns._ns_pids(stale), 5, "sleep inside " + stale)
        removed = netns.cleanup_leftovers(prefix)
        assert stale in removed and live not in removed, removed
        assert inside.wait(5) is not None
        left = set(netns._list_netns())
        assert stale not in left and live in left, left
        # A PID reused by a process younger than the namespace does not own it.
        me = netns._started_at(os.getpid())
        assert netns._owner_alive(os.getpid(), me + 1)
        assert not netns._owner_alive(os.getpid(), me - 60)
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def main():
    passed = failed = skipped = 0
    for name, fn in sorted((n, f) for n, f in globals().items() if n.startswith("test_")):
        t0 = time.monotonic()
        try:
            fn()
        except netns.Skip as e:
            skipped += 1
            print("SKIP %s: %s" % (name, e), flush=True)
            continue
        except Exception as e:  # noqa: BLE001 - any exception is a test result
            failed += 1
            print("FAIL %s (%.2fs): %s\n%s" % (name, time.monotonic() - t0, e,
                                               traceback.format_exc()), flush=True)
            continue
        passed += 1
        print("PASS %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)
    print("%d passed, %d failed%s" % (passed, failed,
                                      ", %d skipped" % skipped if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
