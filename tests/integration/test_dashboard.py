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
