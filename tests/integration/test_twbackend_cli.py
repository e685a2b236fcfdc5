"""twbackend's command line, through the real binary: --help on stdout, every bad
command line named, and the options still take effect."""
import subprocess

import harness as h


def cli(*args):
    r = subprocess.run([h.TWBACKEND, *args], capture_output=True, text=True, timeout=10)
    return r.returncode, r.stdout, r.stderr


def test_help_goes_to_stdout():
    for args in (["--help"], ["-h"]):
        rc, out, err = cli(*args)
        assert (rc, err) == (0, ""), (args, rc, err)
        assert out.startswith("usage: twbackend") and "exit status" in out, out


def test_bad_command_lines_name_what_is_wrong():
    base = ["--listen", "127.0.0.1:0", "--name", "b", "--mode", "close-first"]
    cases = [
        (base + ["--reply-bytes", "64k"], "twbackend: bad --reply-bytes 64k: want a whole number"),
        (base + ["--reply-bytes=-1"], "twbackend: bad --reply-bytes -1"),
        (base + ["--reply-delay-ms", "1.5"], "twbackend: bad --reply-delay-ms 1.5"),
        (base + ["--backlog", "70000"], "twbackend: bad --backlog 70000: want a whole number 0..65535"),
        (base + ["--max-conns", "ten"], "twbackend: bad --max-conns ten"),
        (base + ["--send-bytes", ""], "twbackend: bad --send-bytes "),
        (["--listen", "127.0.0.1:0", "--name", "b", "--mode", "bogus"],
         "twbackend: bad --mode bogus: want echo, close-first"),
        (base + ["--bogus"], "twbackend: unknown option --bogus"),
        (base + ["-x"], "twbackend: unknown option -x"),
        (base + ["--sink=1"], "twbackend: --sink=1 takes no value"),
        (base + ["--listen"], "twbackend: --listen needs a value"),
        (base + ["extra"], "twbackend: unexpected argument extra"),
        (["--name", "b", "--mode", "echo"], "twbackend: --listen, --name and --mode are needed"),
    ]
    for args, want in cases:
        rc, out, err = cli(*args)
        assert rc == 2 and out == "", (args, rc, out)
        assert err.startswith(want), (args, err)
    for addr in ("127.0.0.1:9x", "127.0.0.1:70000", "127.0.0.1", "[::1]:x"):
        rc, out, err = cli("--listen", addr, "--name", "b", "--mode", "echo")
        assert (rc, err) == (2, "twbackend: bad address %s\n" % addr), (addr, rc, err)


def test_options_take_effect():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("b", "127.%d.1.1:0" % n, "close-first", "--reply-bytes=10",
                         "--reply-delay-ms", "0")
        assert len(h.request(be.addr)) == 10
        nm = env.backend("named", "127.%d.1.2:0" % n, "name", "-v")
        assert h.name_line(nm.addr) == "named"
