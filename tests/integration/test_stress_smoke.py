"""A short netns smoke test of twstress + twlb (the full suite is `make stress`), and the
simulator checked against the same run: ports-bound counts must agree within 10 %."""
import json
import os
import subprocess
import sys

import harness as h
import netns

sys.path.insert(0, os.path.join(h.ROOT, "tests", "stress"))
DURATION = 8


def stress_run(kind):
    """One scenario-1 run; like every harness test, it fails when twlb logged a sanitizer
    report (make integration-san), so its log (appended to by run.py) starts empty."""
    import run as stress  # tests/stress/run.py
    out = os.path.join(h.ROOT, "results", "smoke")
    workdir = os.path.join(out, "s1-%s" % kind)
    if os.path.exists(os.path.join(workdir, kind + ".log")):
        os.remove(os.path.join(workdir, kind + ".log"))
    res = stress.run_one(1, kind, DURATION, out)
    reports = h.sanitizer_reports(workdir)
    assert not reports, "sanitizer report from %s:\n%s" % (kind, reports)
    return res


def simulate(policy):
    cfg = os.path.join(h.ROOT, "results", "smoke", "sim.json")
    os.makedirs(os.path.dirname(cfg), exist_ok=True)
    with open(cfg, "w") as f:
        json.dump({"listeners": [{"name": "w", "bind": "127.0.0.1:1", "pool": "p"}],
                   "pools": [{"name": "p", "inside": ["198.18.0.1"], "source_ports": "30000-30199",
                              "backends": [{"name": "b0", "address": "198.18.20.2:9000"}]}]}, f)
    r = subprocess.run([h.TWLB, "simulate", "-c", cfg, "--rate", "50", "--duration",
                        str(DURATION), "--profile", "custom:bsd:60", "--policy", policy,
                        "--json"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_stress_smoke_and_simulator_agree():
    netns.require()
    real_off = stress_run("twlb-off")
    sim_off = simulate("twlb-off")
    # 200 ports, a 60 s TIME_WAIT, 50 conn/s for 8 s: only 200 connections fit
    assert sim_off["accepted"] == 200, sim_off
    ok_off = real_off["connections"]
    assert abs(ok_off - sim_off["accepted"]) <= 0.1 * sim_off["accepted"], (ok_off, sim_off)
    assert real_off["backend_syn_retransmits"] == 0
    real_ex = stress_run("twlb-explicit")
    sim_ex = simulate("twlb-explicit")
    assert sim_ex["failed"] == 0 and sim_ex["stalled"] == 0
    assert real_ex["connections"] >= 0.9 * sim_ex["accepted"], (real_ex["connections"], sim_ex)
    assert real_ex["backend_syn_retransmits"] == 0
    assert real_ex["ports"], "no port occupancy samples from /metrics"
    assert max(s.get("remote_time_wait", 0) for s in real_ex["ports"]) == 200
