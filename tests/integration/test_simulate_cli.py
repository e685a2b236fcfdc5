"""`twlb simulate` through the real binary: the seed's arithmetic end to end, and the CSV
and SVG it writes."""
import csv
import json
import os
import subprocess
import xml.etree.ElementTree as ET

import harness as h

SEED = os.path.join(h.ROOT, "config", "simulate-seed.json")


def simulate(*args):
    r = subprocess.run([h.TWLB, "simulate", "-c", SEED, *args], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_seed_arithmetic_end_to_end():
    out = json.loads(simulate("--rate", "1000", "--duration", "600", "--json"))
    assert abs(out["sustainable_rate"] - 64511 / 240) < 64511 / 240 * 0.01, out
    assert out["ports"] == 64511 and out["attempted"] == 600000
    # the analytic capacity: ports / (TIME_WAIT + the 10 ms hold)
    assert abs(out["capacity_cps"] - 64511 / 240.01) < 0.01, out
    out = json.loads(simulate("--rate", "2000", "--duration", "300", "--profile", "freebsd",
                              "--policy", "twlb-explicit", "--json"))
    assert out["sustainable_rate"] == 2000 and out["stalled"] == 0 and out["failed"] == 0, out
    assert abs(out["capacity_cps"] - 64511 / 0.010) < 1, out  # reused as soon as it ends
    text = simulate("--rate", "1000", "--duration", "600")
    assert "analytic capacity 268.8 connections per second" in text, text


def test_csv_and_svg_are_written():
    with h.Env() as env:
        c, s = env.path("run.csv"), env.path("run.svg")
        simulate("--rate", "500", "--duration", "30", "--profile", "linux", "--policy", "naive",
                 "--csv", c, "--svg", s)
        rows = list(csv.DictReader(open(c)))
        assert len(rows) == 30
        for r in rows:
            assert sum(int(r[k]) for k in ("free", "busy", "remote_time_wait",
                                           "local_time_wait", "quarantined")) == 64511
            assert int(r["attempted"]) == 500
        root = ET.parse(s).getroot()
        assert root.tag.endswith("svg")
        assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 9
        texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
        # axes that read: titles with units, tick values on both axes, every series named
        for want in ("virtual time (s)", "source ports", "connections per second", "0",
                     "30", "500", "free", "backend TIME_WAIT", "stalled", "failed"):
            assert want in texts, (want, texts)
        dashed = [pl for pl in root.iter("{http://www.w3.org/2000/svg}polyline")
                  if pl.get("stroke-dasharray")]
        assert len(dashed) == 2  # stalled and failed stand out


def run_simulate(*args):
    return subprocess.run([h.TWLB, "simulate", *args], capture_output=True, text=True,
                          timeout=10)


def test_bad_arguments():
    r = run_simulate("-c", SEED, "--rate", "10")
    assert r.returncode == 2 and "usage" in r.stderr
    r = run_simulate("-c", SEED, "--rate", "10", "--duration", "5", "--profile", "solaris")
    assert r.returncode == 2 and "bad --profile" in r.stderr
    r = run_simulate("-c", SEED, "--rate", "10", "--duration", "5", "--bogus")
    assert r.returncode == 2 and "--bogus" in r.stderr and "usage" in r.stderr, r.stderr
    r = run_simulate("-c", SEED, "--rate", "10", "--duration", "5", "stray")
    assert r.returncode == 2 and "stray" in r.stderr, r.stderr
    r = run_simulate("-c", SEED, "--rate", "10", "--duration")
    assert r.returncode == 2 and "--duration needs a value" in r.stderr, r.stderr


def test_help_goes_to_stdout():
    for flag in ("--help", "-h"):
        r = run_simulate(flag)
        assert r.returncode == 0, (flag, r.returncode, r.stderr)
        assert r.stdout.startswith("usage: twlb simulate") and r.stderr == "", (flag, r)
    # --help wins over a command line that is not complete yet
    r = run_simulate("-c", SEED, "--rate", "10", "--help")
    assert r.returncode == 0 and "usage" in r.stdout


def test_bad_numbers_name_the_flag():
    good = {"--rate": "10", "--duration": "5", "--hold-ms": "10", "--upload-bytes": "100"}
    bad = [("--rate", "10abc"), ("--rate", "abc"), ("--rate", ""), ("--rate", "nan"),
           ("--rate", "inf"), ("--duration", "5s"), ("--duration", "-5"),
           ("--duration", "86401"), ("--hold-ms", "1.5"), ("--hold-ms", "4294967296"),
           ("--upload-bytes", "-1"), ("--upload-bytes", "1e3"),
           ("--upload-bytes", "99999999999999999999")]
    for flag, value in bad:
        args = dict(good, **{flag: value})
        r = run_simulate("-c", SEED, *[x for kv in args.items() for x in kv])
        assert r.returncode == 2, (flag, value, r.returncode, r.stderr)
        assert ("bad %s %s" % (flag, value)) in r.stderr, (flag, value, r.stderr)
        assert r.stdout == "", (flag, value, r.stdout)
    # the same numbers written well are taken, also as --flag=value
    r = run_simulate("-c", SEED, "--rate=10.5", "--duration=5", "--hold-ms=0",
                     "--upload-bytes=18446744073709551615", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rate"] == 10.5


def test_unwritable_outputs_fail():
    with h.Env() as env:
        for flag in ("--svg", "--csv"):
            r = run_simulate("-c", SEED, "--rate", "10", "--duration", "5",
                             flag, "/nonexistent/x." + flag[2:])
            assert r.returncode != 0, (flag, r.stdout)
            assert "/nonexistent/x." + flag[2:] in r.stderr, (flag, r.stderr)
            assert r.stdout == "", (flag, r.stdout)
        if os.path.exists("/dev/full"):  # opens, then fails to write
            r = run_simulate("-c", SEED, "--rate", "10", "--duration", "5",
                             "--csv", env.path("ok.csv"), "--svg", "/dev/full")
            assert r.returncode != 0 and "/dev/full" in r.stderr, r.stderr
