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
    out = json.loads(simulate("--rate", "2000", "--duration", "300", "--profile", "freebsd",
                              "--policy", "twlb-explicit", "--json"))
    assert out["sustainable_rate"] == 2000 and out["stalled"] == 0 and out["failed"] == 0, out


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


def test_bad_arguments():
    r = subprocess.run([h.TWLB, "simulate", "-c", SEED, "--rate", "10"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2 and "usage" in r.stderr
    r = subprocess.run([h.TWLB, "simulate", "-c", SEED, "--rate", "10", "--duration", "5",
                        "--profile", "solaris"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "bad --profile" in r.stderr
