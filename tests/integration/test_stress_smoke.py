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


def test_run_py_prints_progress_and_plots_failures():
    """tests/stress/run.py itself, one short run of twlb-off (which turns clients away
    once its 200 ports are in the backend's TIME_WAIT): progress lines while it runs, and
    an SVG with ticked axes, a legend, the failed connections drawn, and no TTFB point
    for a second in which nothing replied."""
    import xml.etree.ElementTree as ET
    netns.require()
    out = os.path.join(h.ROOT, "results", "smoke-runpy")
    r = subprocess.run([sys.executable, os.path.join(h.ROOT, "tests", "stress", "run.py"),
                        "--duration", "6", "--scenarios", "1", "--proxies", "twlb-off",
                        "--out", out], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    progress = [line for line in r.stdout.splitlines() if line.startswith("  [s1 twlb-off]")]
    assert len(progress) >= 4, r.stdout
    assert " ok, " in progress[-1] and " failed, " in progress[-1], progress
    res = json.load(open(os.path.join(out, "s1-twlb-off", "result.json")))
    failed = sum(res["errors"].values())
    assert failed > 0, res  # 300 attempts, 200 ports
    svg = ET.parse(os.path.join(out, "scenario-1.svg")).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text or "" for t in svg.iter(ns + "text")]
    assert texts.count("time (s)") == 3 and "connections / s" in texts and "ms" in texts, texts
    for tick in ("0", "2", "4", "6", "0.1", "1", "10", "200"):
        assert tick in texts, (tick, texts)
    assert any(t.startswith("twlb-off: ") and "%d failed" % failed in t for t in texts), texts
    drawn = lambda panel, series: [e for e in svg.iter() if e.get("data-panel") == panel
                                   and e.get("data-series") == series]
    fails = drawn("cps", "twlb-off failed")
    assert fails and all(e.get("stroke-dasharray") for e in fails), fails
    points = lambda es: sum(len(e.get("points", "").split()) or 1 for e in es)
    replied = sum(1 for x in res["progress"] if x["cps"] > 0)
    silent = len(res["progress"]) - replied
    assert silent > 0, res["progress"]  # seconds with failures only
    assert points(drawn("ttfb", "twlb-off")) == replied, (replied, drawn("ttfb", "twlb-off"))
    assert points(drawn("cps", "twlb-off")) == len(res["progress"])
