#!/usr/bin/python3
"""The admin dashboard (GET /) in a real browser: headless Chromium driven by Selenium.

Run by test_dashboard.py with /usr/bin/python3 (Debian's python3-selenium is visible only
to that interpreter); it can also be run by hand to refresh the screenshot in the docs:

    /usr/bin/python3 tests/integration/dashboard_browser.py --net 200 --screenshot docs/dashboard.png

It starts three close-first backends (one with nothing listening, so health checks mark
it down), an echo backend in a second pool (the client closes first, so twlb holds the
TIME_WAIT: "own TIME_WAIT"), twlb, and bounded traffic from twstress on loopback; loads
the page; and checks that what the page shows matches /stats:
  - while traffic runs: every counter on the page lies between a /stats read before the
    page's sample and one after it, and conn/s is near the offered rate;
  - once traffic has stopped: every port figure, headroom, health and admin state equals
    /stats, and conn/s reads 0.0;
  - with clients held at the echo backend's max_connections: the pool's queue, the
    listener's refused clients (with their reason) and the per-worker figures equal
    /stats; and once queued clients were served, their wait percentiles.
Prints what it checked; exits 0 when everything matched, 1 (with the mismatch) otherwise.
Everything it started is stopped (by PID) on the way out."""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

TWSTRESS = os.path.join(h.ROOT, "tests", "stress", "twstress")
STATES = ("free", "busy", "remote_time_wait", "local_time_wait", "quarantined")
WEB_RATE, ECHO_RATE, TRAFFIC_S = 100, 40, 6
HOLD, QUEUE_MAX = 7, 2  # clients held on the echo listener; its queue's max, per worker


def browser(profile_dir):
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
              "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
              "--window-size=1400,1250", "--user-data-dir=" + profile_dir):
        o.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=o)


READ_PAGE = """
const out = {samples: +document.body.dataset.samples, status: document.getElementById('status').textContent,
             figs: {}, titles: {}};
for (const e of document.querySelectorAll('[data-fig]')) {
  out.figs[e.dataset.fig] = e.textContent;
  if (e.parentElement.title) out.titles[e.dataset.fig] = e.parentElement.title;
}
return out;"""


def page(drv):
    return drv.execute_script(READ_PAGE)


def counters(st):
    """{fig key: value} of the monotonic counters of /stats the page shows."""
    out = {"g|no_backend_total": st["no_backend_total"]}
    for lst in st["listeners"]:
        out["l|%s|connections_total" % lst["name"]] = lst["connections_total"]
        out["l|%s|rejected_total" % lst["name"]] = sum(v for k, v in lst.items()
                                                       if k.startswith("rejected_"))
    for w in st["workers"]:
        for f in ("sessions_total", "no_backend_total"):
            out["w|%d|%s" % (w["index"], f)] = w[f]
    for p in st["pools"]:
        out["q|%s|served" % p["name"]] = p["queue_wait_seconds"]["count"]
        for b in p["backends"]:
            k = "b|%s|%s|" % (p["name"], b["name"])
            for f in ("connections_total", "connect_errors_total", "syn_retransmits_total",
                      "ports_exhausted_total"):
                out[k + f] = b[f]
            for inside, ports in b["ports"].items():
                out["p|%s|%s|%s|reuses_total" % (p["name"], b["name"], inside)] = ports["reuses_total"]
    return out


def gauges(st):
    """{fig key: text} of everything else the page shows from /stats."""
    out = {"g|isn_mode": st["isn_mode"], "g|sessions_active": str(st["sessions_active"]),
           "g|workers": str(len(st["workers"])),
           "g|draining": "draining" if st["draining"] else "serving"}
    for w in st["workers"]:
        for f in ("sessions_active", "buffers_in_use", "pipes_in_use"):
            out["w|%d|%s" % (w["index"], f)] = str(w[f])
    for p in st["pools"]:
        out["q|%s|queue_length" % p["name"]] = str(p["queue_length"])
        q = p["queue"]
        out["q|%s|settings" % p["name"]] = (
            "queue of %d per worker, %d ms at most:" % (q["max"], q["timeout_ms"]) if q
            else "no queue (a client nothing can serve now is reset):")
        lo, hi = (int(x) for x in p["source_ports"].split("-"))
        for b in p["backends"]:
            k = "b|%s|%s|" % (p["name"], b["name"])
            out[k + "health"] = b["health"]
            out[k + "admin"] = b["admin"]
            out[k + "active"] = str(b["active"])
            for inside, ports in b["ports"].items():
                pk = "p|%s|%s|%s|" % (p["name"], b["name"], inside)
                for s in STATES:
                    out[pk + s] = str(ports[s])
                out[pk + "headroom"] = str(ports["headroom"])
                out[pk + "capacity"] = "%.1f" % ports["capacity_cps"]
                out[pk + "total"] = str(hi - lo + 1)
    return out


def wait_samples(drv, more, timeout=10):
    """Wait until the page has rendered <more> new samples; returns the page read then."""
    start = page(drv)["samples"]
    return h.wait_for(lambda: (lambda pg: pg if pg["samples"] >= start + more else None)(page(drv)),
                      timeout, "%d more samples on the page" % more, interval=0.05)


def fail(msg):
    raise AssertionError(msg)


def check_during_traffic(drv, admin):
    s0 = h.stats(admin)
    pg = wait_samples(drv, 2)  # a sample fetched wholly after s0 ...
    s1 = h.stats(admin)        # ... and before s1
    c0, c1 = counters(s0), counters(s1)
    for k in c0:
        got = pg["figs"].get(k)
        if got is None:
            fail("page lacks %s" % k)
        if not c0[k] <= int(got) <= c1[k]:
            fail("%s: page %s, /stats %d before and %d after" % (k, got, c0[k], c1[k]))
    web = float(pg["figs"]["l|web|cps"])
    echo = float(pg["figs"]["l|echo|cps"])
    if not (0.5 * WEB_RATE <= web <= 1.5 * WEB_RATE and 0.5 * ECHO_RATE <= echo <= 1.5 * ECHO_RATE):
        fail("conn/s on the page: web %.1f (offered %d), echo %.1f (offered %d)"
             % (web, WEB_RATE, echo, ECHO_RATE))
    be = sum(float(pg["figs"]["b|web|%s|cps" % b]) for b in ("b1", "b2", "b3"))
    if abs(be - web) > 0.25 * WEB_RATE:
        fail("backend conn/s add up to %.1f, listener %.1f" % (be, web))
    print("during traffic: %d counters within /stats before/after; conn/s web %.1f echo %.1f"
          % (len(c0), web, echo))


def check_still(drv, admin):
    """While /stats holds still for one refresh of the page: every figure the page shows
    equals /stats, every counter lies within it.  (/stats after, the page)."""
    for attempt in range(5):  # a health probe may change a figure between the reads
        s0 = h.stats(admin)
        pg = wait_samples(drv, 2)
        s1 = h.stats(admin)
        g0, g1 = gauges(s0), gauges(s1)
        if g0 != g1:
            continue
        for k, want in g0.items():
            if pg["figs"].get(k) != want:
                fail("%s: page %r, /stats %r" % (k, pg["figs"].get(k), want))
        c0, c1 = counters(s0), counters(s1)
        for k in c0:
            if not c0[k] <= int(pg["figs"][k]) <= c1[k]:
                fail("%s: page %s, /stats %d..%d" % (k, pg["figs"][k], c0[k], c1[k]))
        return s1, pg, len(g0), len(c0)
    fail("/stats did not hold still for one refresh in 5 tries")


def check_after_traffic(drv, admin):
    def settled():
        st = h.stats(admin)
        busy = sum(p["busy"] for pool in st["pools"] for b in pool["backends"]
                   for p in b["ports"].values())
        return st["sessions_active"] == 0 and busy == 0
    h.wait_for(settled, 10, "no session or busy port left")
    time.sleep(0.2)
    s1, pg, ng, nc = check_still(drv, admin)
    cps = {k: v for k, v in pg["figs"].items() if k.endswith("|cps")}
    if any(v != "0.0" for k, v in cps.items() if not k.startswith("b|web|b3")):
        fail("conn/s after the traffic: %s" % cps)
    print("after traffic: %d figures equal to /stats, %d counters within, conn/s all 0.0"
          % (ng, nc))
    return s1, pg


def check_queue(drv, admin, echo_bind):
    """HOLD idle clients on the echo listener, whose backend takes 2 at once: 2 are served,
    the others wait in the pool's queue (QUEUE_MAX per worker) or are refused (queue_full).
    The page shows those figures as /stats does; once the served two leave, queued
    clients are served, and the page shows their wait percentiles."""
    host, port = echo_bind.rsplit(":", 1)
    held = []
    try:
        for _ in range(HOLD):
            try:
                held.append(socket.create_connection((host, int(port)), timeout=2))
            except ConnectionResetError:  # refused (queue_full) before connect() returned
                pass
            time.sleep(0.02)  # accepted in this order, so the first two are the served ones

        def placed():
            st = h.stats(admin)
            pool = [p for p in st["pools"] if p["name"] == "echo"][0]
            lst = [x for x in st["listeners"] if x["name"] == "echo"][0]
            return (pool["backends"][0]["active"] == 2
                    and pool["queue_length"] + lst["rejected_queue_full"] == HOLD - 2)
        h.wait_for(placed, 10, "2 echo clients served, the others queued or refused")
        st, pg, ng, nc = check_still(drv, admin)
        if ([p["queue"] for p in st["pools"]] != [None, {"max": QUEUE_MAX, "timeout_ms": 60000}]
                or not pg["figs"]["q|web|settings"].startswith("no queue")):
            fail("queue settings: /stats %s, page %r" % ([p["queue"] for p in st["pools"]],
                                                        pg["figs"]["q|web|settings"]))
        queued, refused = pg["figs"]["q|echo|queue_length"], pg["figs"]["l|echo|rejected_total"]
        if int(queued) < 1 or int(refused) < 1:
            fail("queue %s, refused %s on the page; /stats %s" % (queued, refused, st))
        why = pg["titles"].get("l|echo|rejected_total", "")
        if why != "queue_full %s" % refused:
            fail("refused clients' reasons on the page: %r (refused %s)" % (why, refused))
        print("queue: %s waiting, %s refused (%s) on the page as in /stats; %d figures equal"
              % (queued, refused, why, ng))
        for s in held[:2]:
            s.close()
        h.wait_for(lambda: h.stats(admin)["pools"][1]["queue_wait_seconds"]["count"] >= 1,
                   10, "a queued client served")
        for _ in range(5):
            s0 = h.stats(admin)
            pg = wait_samples(drv, 2)
            s1 = h.stats(admin)
            q0, q1 = s0["pools"][1]["queue_wait_seconds"], s1["pools"][1]["queue_wait_seconds"]
            if q0 != q1:
                continue
            for f in ("p50", "p99"):
                got = pg["figs"]["q|echo|wait_%s_ms" % f]
                if abs(float(got) - 1000 * q0[f]) > 0.051:
                    fail("queue wait %s: page %s ms, /stats %s s" % (f, got, q0[f]))
            print("queue: %d served from it, wait p50 %s ms, p99 %s ms on the page as in /stats"
                  % (q0["count"], pg["figs"]["q|echo|wait_p50_ms"],
                     pg["figs"]["q|echo|wait_p99_ms"]))
            return
        fail("the queue's figures did not hold still for one refresh in 5 tries")
    finally:
        for s in held:
            s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", type=int, default=200, help="test net 127.N.0.0/16")
    ap.add_argument("--screenshot", help="PNG of the page while traffic runs")
    a = ap.parse_args()
    n = a.net
    profile = tempfile.mkdtemp(prefix="twlb-chromium-")
    drv = None
    try:
        with h.Env() as env:
            b1 = env.backend("b1", "127.%d.1.1:0" % n, "close-first", "--reply-bytes", "64")
            b2 = env.backend("b2", "127.%d.1.2:0" % n, "close-first", "--reply-bytes", "64")
            e1 = env.backend("e1", "127.%d.1.4:0" % n, "echo")
            dead = "127.%d.1.3:%d" % (n, h.free_port("127.%d.1.3" % n))
            cfg = h.pool_config(n, [{"name": "b1", "address": b1.addr},
                                    {"name": "b2", "address": b2.addr},
                                    {"name": "b3", "address": dead,
                                     "health": {"interval_ms": 500, "timeout_ms": 200,
                                                "rise": 2, "fall": 1}}],
                                name="web", source_ports="20000-21499")
            cfg["listeners"][0]["pool"] = "web"
            cfg["pools"].append({"name": "echo", "inside": ["127.%d.4.2" % n],
                                 "source_ports": "30000-30499", "connect_timeout_ms": 1000,
                                 "queue": {"max": QUEUE_MAX, "timeout_ms": 60000},
                                 "backends": [{"name": "e1", "address": e1.addr,
                                               "max_connections": 2}]})
            echo_bind = "127.%d.2.2:%d" % (n, h.free_port("127.%d.2.2" % n))
            cfg["listeners"].append({"name": "echo", "bind": echo_bind, "pool": "echo"})
            env.twlb(cfg)
            admin = h.admin_addr(cfg)
            h.wait_for(lambda: h.stats(admin)["pools"][0]["backends"][2]["health"] == "down",
                       5, "b3 marked down")

            drv = browser(profile)
            drv.set_page_load_timeout(10)
            drv.get("http://%s/" % admin)
            wait_samples(drv, 2)
            if drv.title != "twlb dashboard":
                fail("title %r" % drv.title)

            common = ["--duration", str(TRAFFIC_S), "--timeout-ms", "2000", "--json"]
            web = env.popen([TWSTRESS, "--connect", h.listen_addr(cfg), "--rate", str(WEB_RATE),
                             "--close", "server", "--expect-bytes", "64", *common], text=True)
            echo = env.popen([TWSTRESS, "--connect", echo_bind, "--rate", str(ECHO_RATE),
                              "--close", "client", "--expect-bytes", "4", *common], text=True)
            time.sleep(2.5)  # two samples of steady traffic for conn/s
            check_during_traffic(drv, admin)
            if a.screenshot:
                wait_samples(drv, 1)
                drv.save_screenshot(a.screenshot)
                print("screenshot: %s" % a.screenshot)
            for p in (web, echo):
                out, _ = p.communicate(timeout=TRAFFIC_S + 10)
                if p.returncode != 0:
                    fail("twstress exited %d" % p.returncode)
            st, pg = check_after_traffic(drv, admin)
            ports = st["pools"][0]["backends"][0]["ports"]
            if not any(int(v) for k, v in pg["figs"].items() if k.endswith("|remote_time_wait")):
                fail("no backend TIME_WAIT shown after close-first traffic: %s" % ports)
            if not any(int(v) for k, v in pg["figs"].items() if k.endswith("|local_time_wait")):
                fail("no own TIME_WAIT shown after client-closes traffic")
            if pg["figs"]["b|web|b3|health"] != "down":
                fail("b3 health on the page: %r" % pg["figs"]["b|web|b3|health"])
            if pg["figs"]["g|workers"] != str(len(st["workers"])) or len(st["workers"]) < 1:
                fail("workers on the page: %r, /stats %d" % (pg["figs"]["g|workers"],
                                                             len(st["workers"])))
            check_queue(drv, admin, echo_bind)
            print("ok")
    except AssertionError as e:
        print("FAIL: %s" % e)
        return 1
    finally:
        if drv:
            drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
