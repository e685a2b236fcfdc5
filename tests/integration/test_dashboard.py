"""The admin dashboard, GET /: served by the real binary, and shown right in a real
browser (headless Chromium + Selenium, in dashboard_browser.py, which Debian's
python3-selenium confines to /usr/bin/python3)."""
import os
import subprocess

import harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
SYS_PY = "/usr/bin/python3"


def test_dashboard_page_is_served_without_token():
    n = h.new_net()
    with h.Env() as env:
        tok = env.path("token")
        with open(tok, "w") as f:
            f.write("s3cret\n")
        be = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        cfg = h.pool_config(n, [{"name": "b1", "address": be.addr}])
        cfg["admin"]["token_file"] = tok
        env.twlb(cfg)
        a = h.admin_addr(cfg)
        status, body = h.http_get(a, "/")
        assert status == 200, status
        assert body.startswith("<!DOCTYPE html>") and "fetch(\"/stats\"" in body, body[:200]
        # self-contained: no external script, style, image or font
        for ref in ("src=", "href=", "@import", "url("):
            assert ref not in body, ref
        with open(os.path.join(h.ROOT, "lb", "admin", "dashboard.html")) as f:
            assert body == f.read(), "GET / is not lb/admin/dashboard.html"
        assert h.http(a, "POST", "/")[0] == 405


def test_dashboard_in_browser_matches_stats():
    missing = [p for p in (SYS_PY, "/usr/bin/chromium", "/usr/bin/chromedriver") if not os.path.exists(p)]
    if not missing and subprocess.run([SYS_PY, "-c", "import selenium"],
                                      capture_output=True).returncode != 0:
        missing.append("python3-selenium")
    if missing:
        raise h.Skip("needs %s (make deps installs chromium, chromium-driver, python3-selenium)"
                     % ", ".join(missing))
    n = h.new_net()
    r = subprocess.run([SYS_PY, os.path.join(HERE, "dashboard_browser.py"), "--net", str(n)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("ok"), \
        "dashboard_browser.py exited %d:\n%s\n%s" % (r.returncode, r.stdout, r.stderr[-3000:])


def test_grafana_dashboard_names_only_what_metrics_serves():
    """docs/grafana-twlb.json: every metric and label its queries use is one that the real
    binary's /metrics serves, and its panels do not overlap."""
    import json
    import re
    with open(os.path.join(h.ROOT, "docs", "grafana-twlb.json")) as f:
        dash = json.load(f)
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        cfg = h.pool_config(n, [{"name": "b1", "address": be.addr}])
        env.twlb(cfg)
        h.request(h.listen_addr(cfg))
        labels = {}  # family -> label names seen on its samples
        for (name, ls), _ in h.metrics(h.admin_addr(cfg)).items():
            labels.setdefault(name, set()).update(k for k, _ in ls)
    exprs = [(p["title"], t["expr"], t.get("legendFormat", "")) for p in dash["panels"]
             for t in p.get("targets", [])]
    exprs += [("variable " + v["name"], v["definition"], "")
              for v in dash["templating"]["list"] if v["type"] == "query"]
    assert len(exprs) >= 15, exprs
    used = set()
    for title, expr, legend in exprs:
        names = set(re.findall(r"\btwlb_\w+", expr))
        assert names, (title, expr)
        for m in names:
            assert m in labels, "%s: %s is not served by /metrics" % (title, m)
        used |= names
        have = set().union(*(labels[m] for m in names))
        refs = set(re.findall(r"(\w+)\s*(?:=~|!=|=)\s*\"", expr))
        for grp in re.findall(r"\b(?:by|without|ignoring|on)\s*\(([^)]*)\)", expr):
            refs |= {x.strip() for x in grp.split(",") if x.strip()}
        refs |= set(re.findall(r"\{\{(\w+)\}\}", legend))
        refs |= set(re.findall(r"label_values\([^,]*,\s*(\w+)\)", expr))
        assert refs <= have, "%s: labels %s not on %s" % (title, refs - have, names)
    for m in ("twlb_ports", "twlb_backend_up", "twlb_syn_retransmits_total",
              "twlb_backend_connections_total", "twlb_listener_connections_total",
              "twlb_queue_length", "twlb_queue_wait_seconds_bucket", "twlb_rejected_total"):
        assert m in used, m
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), ids
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for cx in range(g["x"], g["x"] + g["w"]):
            for cy in range(g["y"], g["y"] + g["h"]):
                assert (cx, cy) not in cells, "panel %r overlaps another" % p["title"]
                cells.add((cx, cy))
