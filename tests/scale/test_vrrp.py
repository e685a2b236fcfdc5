"""VRRP pair: two twlb boxes share a floating VIP managed by keepalived (VRRPv3, 200 ms
adverts, a track script on twlb's /healthz); each keeps its own inside address, so no
TIME_WAIT state is shared or synced.

Topology (one bridge, 198.18.0.0/15 only):
  client 198.18.6.10; lb1 198.18.6.1 + inside 198.18.7.1; lb2 198.18.6.2 + inside 198.18.7.2
  be1 198.18.7.101; VIP 198.18.6.100 (keepalived moves it); twlb listens on VIP:8080
  on both boxes (net.ipv4.ip_nonlocal_bind=1: the backup's listener is ready before the
  VIP arrives).

Timeline of the bounded load (50 connections per second for 16 s):
  t=3   lb1's twlb stopped (SIGTERM: it closes its listener, drains, writes its state
        file): the track script fails, lb1 goes to FAULT, lb2 takes over
  t=6   lb1's twlb started again (lb1 becomes BACKUP: nopreempt)
  t=9   lb2 fails as a host: its link goes down and its twlb is killed; lb1 takes over
        when the adverts stop (3 x 200 ms + skew)
"""
import json
import os
import signal
import time

import scalenet as s

VIP = "198.18.6.100"
BE1 = "198.18.7.101"
RATE, DURATION = 50, 16
FAILOVER_TWLB_STOP_S = 2.5   # documented in docs/scale-out.md
FAILOVER_HOST_S = 2.0
RESULTS = {}


def inside(n):
    return "198.18.7.%d" % n


def start_twlb(t, w, n, procs):
    box = "lb%d" % n
    state = w.path("state-%s.json" % box)
    if not os.path.exists(state):
        with open(state, "w") as f:
            json.dump({"version": 1, "written_unix_ms": 0, "entries": []}, f)
    cfg = w.render("vrrp/twlb.json", "twlb-%s.json" % box, VIP_ADDR=VIP, INSIDE=inside(n),
                   BE1=BE1, STATE=state, LOG=w.path("twlb-%s.log" % box))
    procs["twlb" + box] = s.start_twlb(t, box, cfg, w.path("twlb-%s.out" % box))


def start_keepalived(t, w, n, procs):
    box = "lb%d" % n
    check = w.render("vrrp/check-twlb.sh", "check-twlb.sh")
    notify = w.render("vrrp/notify.sh", "notify.sh")
    cfg = w.render("vrrp/keepalived.conf", "keepalived-%s.conf" % box, NAME=box,
                   PRIORITY=150 if n == 1 else 100, VIP=VIP + "/24", DEV="eth0", CHECK=check,
                   NOTIFY=notify, ADMIN="127.0.0.1:9901",
                   NOTIFY_LOG=w.path("notify-%s.log" % box))
    procs["ka" + box] = t.popen(box, [
        "keepalived", "-n", "-l", "-D", "-P", "-f", cfg,
        "-p", w.path("ka-%s.pid" % box), "-r", w.path("ka-vrrp-%s.pid" % box)],
        stdout=open(w.path("keepalived-%s.log" % box), "w"), stderr=subprocess_stdout())


def subprocess_stdout():
    import subprocess
    return subprocess.STDOUT


def has_vip(t, box):
    return (" %s/" % VIP) in t.run(box, ["ip", "-o", "addr", "show", "dev", "eth0"]).stdout


def first_success_via(res, node, after):
    """When the first connection begun after <after> was answered by <node>: its end,
    so a SYN that waited for the VIP to move counts the wait."""
    ends = [res["start"] + off + d for off, got, err, d in res["short"]
            if res["start"] + off >= after and got == node]
    return min(ends) if ends else None


def slowest(res, t_from, t_to):
    ds = [d for off, got, err, d in res["short"] if t_from <= res["start"] + off < t_to]
    return round(max(ds), 3) if ds else None


def test_vrrp_pair_failover():
    s.need("keepalived", "curl")
    w = s.Workdir("vrrp")
    failed = True
    t = s.netns.Topology()
    try:
        t.add_host("client", addrs=["198.18.6.10/24"])
        t.add_host("be1", addrs=[BE1 + "/24"], tw="bsd")
        for n in (1, 2):
            box = "lb%d" % n
            t.add_host(box, addrs=["198.18.6.%d/24" % n, inside(n) + "/24"])
            t.sysctl(box, "net.ipv4.ip_nonlocal_bind", 1)
        procs = {"be1": s.start_peerd(t, "be1", BE1)}
        for n in (1, 2):
            start_twlb(t, w, n, procs)
        # lb1 first: with nopreempt, whichever box becomes MASTER first keeps the VIP,
        # and two keepalived started together race for it (lb1's higher priority makes
        # its master-down timer only ~40 ms shorter): CI once saw lb2 win
        start_keepalived(t, w, 1, procs)
        s.h.wait_for(lambda: has_vip(t, "lb1"), 15, "lb1 to take the VIP")
        start_keepalived(t, w, 2, procs)
        s.h.wait_for(lambda: has_vip(t, "lb1") and not has_vip(t, "lb2"), 15,
                     "lb1 to hold the VIP")
        time.sleep(1)  # lb2 has heard lb1's adverts and stays BACKUP
        assert has_vip(t, "lb1") and not has_vip(t, "lb2")
        syn0 = {n: s.ns_syn_retrans(t, "lb%d" % n) for n in (1, 2)}
        lg = s.start_loadgen(t, "client", VIP, RATE, DURATION)
        r = {}
        time.sleep(max(0, lg.started + 3 - time.time()))
        k1 = time.time()
        s.stop_pid(procs["twlblb1"], signal.SIGTERM)
        s.h.wait_for(lambda: has_vip(t, "lb2"), 10, "lb2 to take the VIP")
        r["vip_moved_after_twlb_stop_s"] = round(time.time() - k1, 3)
        time.sleep(max(0, lg.started + 6 - time.time()))
        start_twlb(t, w, 1, procs)
        time.sleep(max(0, lg.started + 9 - time.time()))
        syn_lb2 = s.ns_syn_retrans(t, "lb2") - syn0[2]
        r["syn_retransmits_metrics"] = s.syn_retransmits(t, ["lb2"])
        k2 = time.time()
        t.run("lb2", ["ip", "link", "set", "eth0", "down"], check=True)
        s.stop_pid(procs["twlblb2"], signal.SIGKILL)
        s.h.wait_for(lambda: has_vip(t, "lb1"), 10, "lb1 to take the VIP back")
        r["vip_moved_after_host_fail_s"] = round(time.time() - k2, 3)
        res = s.finish_loadgen(lg, DURATION + 30)
        with open(w.path("loadgen.json"), "w") as f:
            json.dump(res, f)
        r["share_before"] = s.share(res, res["start"], k1)
        r["failures_before"] = s.failures(res, res["start"], k1)
        f1 = first_success_via(res, inside(2), k1)
        r["failover_twlb_stop_s"] = round(f1 - k1, 3) if f1 else None
        r["failed_during_twlb_stop"] = len(s.failures(res, k1, k2))
        f2 = first_success_via(res, inside(1), k2)
        r["failover_host_s"] = round(f2 - k2, 3) if f2 else None
        r["slowest_connect_twlb_stop_s"] = slowest(res, k1, k2)
        r["slowest_connect_host_fail_s"] = slowest(res, k2, res["start"] + DURATION + 5)
        r["failed_during_host_fail"] = len(s.failures(res, k2, res["start"] + DURATION + 5))
        r["failures_after_failover"] = s.failures(res, f2 + 0.5, None) if f2 else None
        r["served_by_lb2"] = s.share(res, k1, k2)
        r["served_by_lb1_after"] = s.share(res, k2, None)
        r["syn_retransmits_ns"] = syn_lb2 + s.ns_syn_retrans(t, "lb1") - syn0[1]
        r["syn_retransmits_metrics"] += s.syn_retransmits(t, ["lb1"])
        r["notify_lb1"] = open(w.path("notify-lb1.log")).read().split("\n")[-4:]
        RESULTS["vrrp"] = r
        print("scale vrrp: %s" % json.dumps(r), flush=True)
        assert r["failures_before"] == [] and set(r["share_before"]) == {inside(1)}, r
        assert r["failover_twlb_stop_s"] is not None, "lb2 never served: %s" % r
        assert r["failover_twlb_stop_s"] <= FAILOVER_TWLB_STOP_S, r
        assert r["failover_host_s"] is not None, "lb1 never served again: %s" % r
        assert r["failover_host_s"] <= FAILOVER_HOST_S, r
        assert r["failures_after_failover"] == [], r
        assert r["syn_retransmits_ns"] == 0 and r["syn_retransmits_metrics"] == 0, r
        failed = False
    finally:
        t.close()
        w.close(failed)
