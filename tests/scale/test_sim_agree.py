"""The simulator against a real run with 1 and 2 inside addresses: twlb (reuse.isn off, so
the ports are the bound) in a namespace in front of one backend with a 60 s TIME_WAIT that
closes first; 200 source ports per inside address, 60 connections per second for 10 s.
The simulator's accepted count for the same config must agree with what the client got
within 10 %, and so must the planner's answer: the smallest number of inside addresses
that holds the rate in the run's window."""
import json
import os
import subprocess

import scalenet as s

TWSTRESS = os.path.join(s.ROOT, "tests", "stress", "twstress")
INSIDE = ["198.18.0.1", "198.18.0.3"]
LISTEN = "198.18.1.2"
RATE, DURATION, PORTS = 60, 10, "30000-30199"


def config(n_inside, state):
    return {
        "listeners": [{"name": "web", "bind": LISTEN + ":8080", "pool": "app"}],
        "pools": [{"name": "app", "inside": INSIDE[:n_inside], "source_ports": PORTS,
                   "connect_timeout_ms": 3000, "retries": 0,
                   "time_wait": {"rule": "bsd", "seconds": 60},
                   "backends": [{"name": "b0", "address": "198.18.20.2:9000"}]}],
        "reuse": {"isn": "off", "state_file": state},
        "admin": {"bind": "127.0.0.1:9901"},
        "log": {"level": "warn"},
    }


def real_run(n_inside, w):
    t = s.netns.Topology()
    try:
        t.add_host("client")
        t.add_host("proxy")
        t.add_host("be", tw="bsd")
        t.link("client", "198.18.1.1/24", "proxy", LISTEN + "/24")
        t.link("proxy", "198.18.20.1/24", "be", "198.18.20.2/24")
        for a in INSIDE[:n_inside]:
            t.add_addr("proxy", a + "/32", dev="lo")
            t.route("be", a + "/32", "198.18.20.1")
        p = t.popen("be", [s.h.TWBACKEND, "--listen", "198.18.20.2:9000", "--name", "b0",
                           "--mode", "close-first", "--reply-bytes", "64"], text=True)
        assert "listening" in (s.h.read_line(p, 5) or "")
        state = w.path("state-%d.json" % n_inside)
        with open(state, "w") as f:
            json.dump({"version": 1, "written_unix_ms": 0, "entries": []}, f)
        cfg = w.path("twlb-%d.json" % n_inside)
        with open(cfg, "w") as f:
            json.dump(config(n_inside, state), f)
        s.start_twlb(t, "proxy", cfg, w.path("twlb-%d.log" % n_inside))
        c = t.run("client", [TWSTRESS, "--connect", LISTEN + ":8080", "--rate", RATE,
                             "--duration", DURATION, "--timeout-ms", "3000", "--close", "server",
                             "--expect-bytes", "64", "--json"], timeout=DURATION + 60)
        assert c.returncode == 0, c.stderr
        res = json.loads(c.stdout)
        res["syn_retransmits"] = s.syn_retransmits(t, ["proxy"])
        res["inside_used"] = sorted({dict(ls)["inside"] for (n, ls), v in s.metrics(t, "proxy").items()
                                     if n == "twlb_ports" and dict(ls).get("state") == "remote_time_wait" and v > 0})
        return res
    finally:
        t.close()


def simulate(cfg_path, *args):
    r = subprocess.run([s.h.TWLB, "simulate", "-c", cfg_path, "--profile", "custom:bsd:60",
                        "--json", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 3), r.stderr
    return json.loads(r.stdout)


def test_simulator_agrees_with_real_runs_for_1_and_2_inside_addresses():
    s.need()
    w = s.Workdir("sim")
    failed = True
    try:
        out = {}
        for n in (1, 2):
            real = real_run(n, w)
            sim = simulate(w.path("twlb-%d.json" % n), "--rate", str(RATE), "--duration",
                           str(DURATION))
            out[n] = {"real_ok": real["connections"], "real_errors": real["errors"],
                      "sim_accepted": sim["accepted"], "sim_failed": sim["failed"],
                      "inside": sim["inside"], "inside_used": real["inside_used"],
                      "syn_retransmits": real["syn_retransmits"]}
            print("scale sim-vs-real inside=%d: %s" % (n, json.dumps(out[n])), flush=True)
            assert sim["inside"] == n
            assert sim["accepted"] == min(RATE * DURATION, 200 * n), sim
            assert abs(real["connections"] - sim["accepted"]) <= 0.1 * sim["accepted"], out[n]
            assert real["inside_used"] == INSIDE[:n], out[n]
            assert real["syn_retransmits"] == 0, out[n]
        # the planner, asked for 35 per second over the same 10 s window (350 connections:
        # 200 ports per address hold 200), answers 2 addresses, and the real runs agree:
        # 2 held it, 1 did not
        plan = simulate(w.path("twlb-1.json"), "--target-rate", "35", "--duration",
                        str(DURATION))
        print("scale plan: %s" % json.dumps(plan), flush=True)
        assert plan["found"] and plan["inside_per_node"] == 2, plan
        assert abs(plan["capacity"] - out[2]["real_ok"] / DURATION) <= 0.1 * plan["capacity"], plan
        assert out[2]["real_ok"] >= 0.9 * 35 * DURATION, (out[2], plan)
        assert out[1]["real_ok"] < 35 * DURATION, (out[1], plan)
        failed = False
    finally:
        w.close(failed)
