"""twstress through its real binary: --json fields are consistent, errors are counted by
errno name, and it stops by itself."""
import json
import os
import socket
import subprocess
import threading

import harness as h

TWSTRESS = os.path.join(h.ROOT, "tests", "stress", "twstress")


def run(*args, timeout=30):
    r = subprocess.run([TWSTRESS, *args, "--json"], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_closed_loop_counts_and_stops():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("b", "127.%d.1.1:0" % n, "close-first", "--reply-bytes", "64")
        r = run("--connect", be.addr, "--concurrency", "8", "--connections", "500",
                "--close", "server", "--expect-bytes", "64", "--bind", "127.%d.5.1" % n)
        assert r["attempted"] == 500, r
        assert r["connections"] == 500 and r["errors"] == {}, r
        assert r["cps"] > 0 and r["connect_ms"]["max"] >= r["connect_ms"]["p50"] > 0
        assert r["syn_retransmits"] == 0 and r["slow_connects"] == 0


def test_refused_and_timeouts_by_errno():
    n = h.new_net()
    port = h.free_port("127.%d.1.1" % n)
    r = run("--connect", "127.%d.1.1:%d" % (n, port), "--concurrency", "2",
            "--connections", "10")
    assert r["errors"] == {"ECONNREFUSED": 10}, r
    assert r["connections"] == 0
    with h.Env() as env:
        be = env.backend("h", "127.%d.1.2:0" % n, "hold")  # accepts, never answers
        r = run("--connect", be.addr, "--concurrency", "2", "--connections", "4",
                "--timeout-ms", "300", "--close", "server")
        assert r["errors"] == {"ETIMEDOUT": 4}, r


def test_open_loop_rate_and_duration():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("b", "127.%d.1.1:0" % n, "close-first")
        r = run("--connect", be.addr, "--rate", "200", "--duration", "2", "--close", "server",
                "--expect-bytes", "64")
        assert 380 <= r["attempted"] <= 420, r
        assert r["connections"] == r["attempted"] - sum(r["errors"].values())
        assert 1.9 <= r["duration_s"] < 3.5, r


def test_upload_comes_before_the_one_newline_of_the_request():
    """--upload-bytes: the filler, then the request, whose last byte is the only '\n': a
    backend that answers at the first '\n' (twbackend close-first, the stress scenarios'
    backend) gets the whole upload first.  The filler used to carry the request's end in
    every 64 KiB, so such a backend answered and closed after the first 64 KiB and the
    rest of the "upload" went after its FIN."""
    n = h.new_net()
    lsock = socket.socket()
    lsock.bind(("127.%d.1.1" % n, 0))
    lsock.listen(8)
    seen = []

    def backend():
        lsock.settimeout(20)
        for _ in range(3):
            c, _ = lsock.accept()
            c.settimeout(10)
            got = 0
            while True:
                b = c.recv(65536)
                if not b:
                    break
                i = b.find(b"\n")
                if i >= 0:
                    seen.append((got + i + 1, b[i + 1:]))
                    break
                got += len(b)
            c.sendall(b"done\n")
            c.close()

    t = threading.Thread(target=backend)
    t.start()
    try:
        r = run("--connect", "127.%d.1.1:%d" % (n, lsock.getsockname()[1]), "--concurrency",
                "1", "--connections", "3", "--upload-bytes", "300000", "--request-bytes", "4",
                "--close", "server", "--expect-bytes", "5")
        t.join(20)
        assert r["connections"] == 3 and r["errors"] == {}, r
        # the whole upload, then the request (GET and its newline), and nothing after it
        assert seen == [(300004, b"")] * 3, [(k, len(v)) for k, v in seen]
    finally:
        lsock.close()
        t.join(5)


def test_bulk_reply_pattern_and_discard_count_every_byte():
    """make bench's bulk load: twbackend sends "NAME\n" and then the pattern 'a' + offset
    % 26, in writes of up to 256 KiB that are slices of one precomputed buffer (each
    must start at the right offset); twstress --discard has the kernel drop what arrives
    (recv with MSG_TRUNC, nothing copied) and still counts every byte: the exact size
    passes, one byte more is a short reply."""
    n = h.new_net()
    size = 1000003  # several writes, the last one odd
    with h.Env() as env:
        be = env.backend("bk", "127.%d.1.1:0" % n, "bulk", "--send-bytes", str(size))
        with socket.create_connection(h.split_addr(be.addr), timeout=10) as s:
            s.sendall(b"GET\n")
            got = bytearray()
            while True:
                d = s.recv(1 << 20)
                if not d:
                    break
                got += d
        want = b"bk\n" + bytes(ord("a") + i % 26 for i in range(3, size))
        assert len(got) == size and got == want, (len(got), got[:80])
        r = run("--connect", be.addr, "--concurrency", "2", "--connections", "4", "--discard",
                "--close", "server", "--expect-bytes", str(size))
        assert r["connections"] == 4 and r["errors"] == {}, r
        r = run("--connect", be.addr, "--concurrency", "2", "--connections", "4", "--discard",
                "--close", "server", "--expect-bytes", str(size + 1))
        assert r["connections"] == 0 and r["errors"] == {"short_reply": 4}, r


def cli(*args):
    r = subprocess.run([TWSTRESS, *args], capture_output=True, text=True, timeout=10)
    return r.returncode, r.stdout, r.stderr


def test_text_summary_counts_slow_replies():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("b", "127.%d.1.1:0" % n, "close-first", "--reply-delay-ms", "600")
        rc, out, err = cli("--connect", be.addr, "--concurrency", "2", "--connections", "2",
                           "--close", "server")
        assert rc == 0, err
        assert "connections ok   2 of 2" in out, out
        assert "slow replies     2 (first byte > 500 ms)" in out, out
        rc, out, err = cli("--connect", be.addr, "--concurrency", "2", "--connections", "2",
                           "--close", "server", "--json")
        assert json.loads(out)["slow_replies"] == 2, out


def test_help_and_bad_command_lines():
    for args in (["--help"], ["-h"]):
        rc, out, err = cli(*args)
        assert (rc, err) == (0, "") and out.startswith("usage: twstress"), (args, rc, err)
        assert "exit status" in out
    dst = ["--connect", "127.0.0.1:9"]
    cases = [
        (["--rate", "10abc", *dst], "twstress: bad --rate 10abc: want a number > 0"),
        (["--rate=10abc", *dst], "twstress: bad --rate 10abc: want a number > 0"),
        (["--rate", "0", *dst], "twstress: bad --rate 0"),
        (["--concurrency", "4x", *dst], "twstress: bad --concurrency 4x: want a whole number 1..200000"),
        (["--duration", "5s", "--rate", "1", *dst], "twstress: bad --duration 5s"),
        (["--connections", "-1", "--rate", "1", *dst], "twstress: bad --connections -1"),
        (["--timeout-ms", "1e3", "--rate", "1", *dst], "twstress: bad --timeout-ms 1e3"),
        (["--request-bytes", "70000", "--rate", "1", *dst], "twstress: bad --request-bytes 70000: want a whole number 1..65536"),
        (["--upload-bytes", " 5", "--rate", "1", *dst], "twstress: bad --upload-bytes  5"),
        (["--expect-bytes", "", "--rate", "1", *dst], "twstress: bad --expect-bytes "),
        (["--close", "both", "--rate", "1", *dst], "twstress: bad --close both: want client or server"),
        (["--connect", "127.0.0.1:80x", "--rate", "1"], "twstress: bad --connect 127.0.0.1:80x"),
        (["--connect", "127.0.0.1:70000", "--rate", "1"], "twstress: bad --connect 127.0.0.1:70000"),
        (["--bind", "nohost", "--rate", "1", *dst], "twstress: bad --bind nohost"),
        (["--bogus", *dst], "twstress: unknown option --bogus"),
        (["-x", *dst], "twstress: unknown option -x"),
        (["--json=yes", *dst], "twstress: --json=yes takes no value"),
        (["--rate"], "twstress: --rate needs a value"),
        (["--rate", "1", *dst, "extra"], "twstress: unexpected argument extra"),
        (["--rate", "1"], "twstress: --connect ADDR:PORT is needed"),
        (dst, "twstress: --rate or --concurrency is needed"),
    ]
    for args, want in cases:
        rc, out, err = cli(*args)
        assert rc == 2 and out == "", (args, rc, out)
        assert err.startswith(want), (args, err)
