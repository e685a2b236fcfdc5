"""A reload that says what happened and applies what it used to ignore, and a drain that
says it is one, through the real binary (issue 11): twlb_config_last_reload_successful,
_timestamp_seconds and twlb_config_reloads_total in /metrics and /stats after good and
bad reloads; log.file, log.access_log, access_log_format and a listener's backlog
changed by a reload; /healthz answering 503 "draining" while live connections finish
after SIGTERM."""
import os
import shutil
import signal
import socket
import subprocess
import time

import harness as h


def reload_figures(admin):
    ms = h.metrics(admin)
    return (h.metric(ms, "twlb_config_last_reload_successful"),
            h.metric(ms, "twlb_config_last_reload_timestamp_seconds"),
            h.metric(ms, "twlb_config_reloads_total", result="ok"),
            h.metric(ms, "twlb_config_reloads_total", result="failed"))


def sighup_and_wait(p, admin, ok, failed):
    """SIGHUP, then wait until the counters say the reload ended (ok/failed totals)."""
    p.send_signal(signal.SIGHUP)
    h.wait_for(lambda: reload_figures(admin)[2:] == (ok, failed), 5,
               "reload counters at ok=%d failed=%d" % (ok, failed))
    return reload_figures(admin)


def next_second():
    """Wait until the wall clock has entered a new second; returns it."""
    t0 = int(time.time())
    return h.wait_for(lambda: int(time.time()) > t0 and int(time.time()), 2, "a new second")


def test_reload_metrics_say_what_happened():
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}])
        cfg["workers"] = 2
        before = int(time.time())
        p = env.twlb(cfg)
        admin = h.admin_addr(cfg)
        ok, ts, n_ok, n_failed = reload_figures(admin)
        assert (ok, n_ok, n_failed) == (1, 0, 0), reload_figures(admin)
        assert before <= ts <= time.time(), (before, ts)  # at start: the start time

        # a good reload: successful, a new timestamp
        t1 = next_second()
        cfg["pools"][0]["connect_timeout_ms"] = 1500
        env.write_config(cfg)
        ok, ts1, _, _ = sighup_and_wait(p, admin, 1, 0)
        assert ok == 1 and t1 <= ts1 <= time.time(), (t1, ts1)

        # bad JSON: failed, the timestamp stays that of the last success
        next_second()
        with open(p.cfg_path, "w") as f:
            f.write('{"listeners": [')
        ok, ts, _, _ = sighup_and_wait(p, admin, 1, 1)
        assert (ok, ts) == (0, ts1)
        st = h.stats(admin)
        assert st["config_last_reload_successful"] is False, st
        assert st["config_last_reload_timestamp_seconds"] == ts1, st
        assert (st["config_reloads_ok"], st["config_reloads_failed"]) == (1, 1), st
        assert h.first_line(h.listen_addr(cfg), data=b"still\n", shut=True) == "still"

        # good again
        env.write_config(cfg)
        ok, ts2, _, _ = sighup_and_wait(p, admin, 2, 1)
        assert ok == 1 and ts2 > ts1

        # valid JSON, but a listener that cannot open (its address is taken): failed
        host = "127.%d.2.2" % n
        taken = socket.socket()
        taken.bind((host, 0))
        taken.listen(1)
        try:
            cfg["listeners"].append({"name": "second", "pool": "app",
                                     "bind": "%s:%d" % (host, taken.getsockname()[1])})
            env.write_config(cfg)
            next_second()
            ok, ts, _, _ = sighup_and_wait(p, admin, 2, 2)
            assert (ok, ts) == (0, ts2)
            assert "address already in use" in open(p.log_path).read()
        finally:
            taken.close()
        st = h.stats(admin)
        assert st["config_last_reload_successful"] is False and \
            st["config_reloads_failed"] == 2, st
        assert h.stop(p) == 0


def test_healthz_answers_503_while_draining():
    """A long-lived connection keeps twlb draining after SIGTERM: /healthz answers 503
    "draining" meanwhile (200 "ok" before), the live connection still works, new clients
    are refused, and when it ends twlb exits 0."""
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}])
        cfg["drain_timeout_ms"] = 20000
        p = env.twlb(cfg)
        admin = h.admin_addr(cfg)
        assert h.http_get(admin, "/healthz") == (200, "ok\n")
        assert h.metric(h.metrics(admin), "twlb_draining") == 0
        live = socket.create_connection(h.split_addr(h.listen_addr(cfg)), timeout=5)
        live.sendall(b"one\n")
        assert live.recv(10) == b"one\n"
        p.send_signal(signal.SIGTERM)
        h.wait_for(lambda: h.http_get(admin, "/healthz")[0] == 503, 5, "/healthz 503")
        assert h.http_get(admin, "/healthz") == (503, "draining\n")
        assert h.http(admin, "HEAD", "/healthz")[0] == 503
        assert h.metric(h.metrics(admin), "twlb_draining") == 1
        assert h.stats(admin)["draining"] is True
        # the live connection goes on; new ones are refused (the listeners are closed)
        live.sendall(b"two\n")
        assert live.recv(10) == b"two\n"
        try:
            socket.create_connection(h.split_addr(h.listen_addr(cfg)), timeout=2).close()
            refused = False
        except OSError:
            refused = True
        assert refused, "a new client was accepted while draining"
        assert p.poll() is None, "twlb exited with a connection open"
        assert h.http_get(admin, "/healthz")[0] == 503  # still, a while later
        live.close()
        assert p.wait(10) == 0


# ---- what a reload applies that it used to ignore ------------------------------------


def wait_text(path, needle, what, timeout=5):
    return h.wait_for(lambda: os.path.exists(path) and needle in open(path).read(), timeout,
                      what)


def served_from(cfg, src):
    """One connection through twlb from <src>; the echo proves it was served."""
    assert h.first_line(h.listen_addr(cfg), data=b"hi\n", src=src, shut=True) == "hi"


def test_reload_applies_log_file_and_access_log_changes():
    """log.file, log.access_log and access_log_format changed by a reload take effect
    (they waited for a restart): the messages move to the new file, saying so in both;
    the access log starts, changes format, stops and starts in another file.  A log
    file that cannot be opened fails the reload and changes nothing."""
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.%d.1.1:0" % n, "echo")
        cfg = h.pool_config(n, [{"name": "e", "address": be.addr}])
        p = env.twlb(cfg)  # messages on stderr (p.log_path), no access log
        admin = h.admin_addr(cfg)
        a_log, b_log, acc, acc2 = (env.path(x) for x in ("a.log", "b.log", "acc.log",
                                                          "acc2.log"))
        src = lambda k: "127.%d.5.%d" % (n, k)  # noqa: E731 - one client address per step

        cfg["log"].update({"file": a_log, "access_log": acc, "access_log_format": "json"})
        env.write_config(cfg)
        sighup_and_wait(p, admin, 1, 0)
        assert "log: continuing in %s" % a_log in open(p.log_path).read()
        wait_text(a_log, "log: continued from stderr", "the message log moved to a.log")
        assert "reloaded" in open(a_log).read()
        served_from(cfg, src(1))
        wait_text(acc, '"client":"%s:' % src(1), "a JSON access line")

        cfg["log"].update({"file": b_log, "access_log_format": "text"})
        env.write_config(cfg)
        sighup_and_wait(p, admin, 2, 0)
        wait_text(b_log, "log: continued from %s" % a_log, "the message log moved to b.log")
        assert "log: continuing in %s" % b_log in open(a_log).read()
        served_from(cfg, src(2))
        wait_text(acc, "client=%s:" % src(2), "a key=value access line in the same file")

        # a log file that cannot be opened (a symbolic link is never followed): the
        # reload fails as a whole, messages and access lines stay where they were
        os.symlink(env.path("elsewhere.log"), env.path("link.log"))
        cfg["log"].update({"file": env.path("link.log"), "access_log_format": "json"})
        env.write_config(cfg)
        sighup_and_wait(p, admin, 2, 1)
        wait_text(b_log, "cannot open log file %s: is a symbolic link" % env.path("link.log"),
                  "the failed reload logged in b.log")
        assert not os.path.exists(env.path("elsewhere.log"))
        served_from(cfg, src(3))
        wait_text(acc, "client=%s:" % src(3), "still key=value lines")
        # a log file in a directory that does not exist: the check before anything is
        # applied fails the reload, naming the key (preflight, as --check does)
        cfg["log"]["file"] = env.path("no-dir/c.log")
        env.write_config(cfg)
        sighup_and_wait(p, admin, 2, 2)
        wait_text(b_log, "log.file: the directory %s does not exist" % env.path("no-dir"),
                  "the failed reload's reason in b.log")

        # the access log off, then on again in another file
        cfg["log"] = {"level": "info", "file": b_log}
        env.write_config(cfg)
        sighup_and_wait(p, admin, 3, 2)
        served_from(cfg, src(4))
        h.wait_for(lambda: h.metric(h.metrics(admin), "twlb_sessions_active") == 0, 5,
                   "the session from %s ended" % src(4))
        cfg["log"]["access_log"] = acc2
        env.write_config(cfg)
        sighup_and_wait(p, admin, 4, 2)
        served_from(cfg, src(5))
        wait_text(acc2, "client=%s:" % src(5), "a line in acc2.log")
        for path in (acc, acc2):
            assert src(4) + ":" not in open(path).read(), "logged while the log was off"
        assert h.stop(p) == 0
        assert "drained; exiting" in open(b_log).read()


def listen_sockets(bind, queue=False):
    """[(backlog, inode)] of the listening sockets on <bind>, as ss reads them; with
    <queue>, [(clients waiting in the accept queue, inode)]."""
    out = subprocess.run(["ss", "-Hltne", "src", bind], capture_output=True, text=True,
                         timeout=5, check=True).stdout
    res = []
    for line in out.splitlines():
        f = line.split()
        ino = [x for x in f if x.startswith("ino:")]
        res.append((int(f[1] if queue else f[2]), int(ino[0][4:])))
    return sorted(res)


def test_reload_changes_the_backlog_on_the_same_socket():
    """A changed backlog used to open a second socket on the same address: with one
    worker the reload failed with "address already in use", with several the clients
    queued on the old sockets were lost (0 of 8 served).  Now every worker's socket
    stays (same inode) and takes the new backlog, the queued clients are served, and a
    reload that fails puts the old backlog back."""
    if not shutil.which("ss"):
        raise h.Skip("ss (iproute2) is not installed")
    for workers in (1, 2):
        n = h.new_net()
        with h.Env() as env:
            be = env.backend("e", "127.%d.1.1:0" % n, "echo")
            cfg = h.pool_config(n, [{"name": "e", "address": be.addr}])
            cfg["workers"] = workers
            cfg["listeners"][0]["backlog"] = 16
            cfg["max_connections"] = 1  # the others wait in the kernel's accept queue
            p = env.twlb(cfg)
            admin, bind = h.admin_addr(cfg), h.listen_addr(cfg)
            before = listen_sockets(bind)
            assert [b for b, _ in before] == [16] * workers, before
            first = socket.create_connection(h.split_addr(bind), timeout=5)
            first.sendall(b"0\n")
            assert first.recv(10) == b"0\n"
            queued = [socket.create_connection(h.split_addr(bind), timeout=5)
                      for _ in range(8)]
            h.wait_for(lambda: sum(q for q, _ in listen_sockets(bind, queue=True)) == 8, 5,
                       "8 clients in the accept queues")

            cfg["listeners"][0]["backlog"] = 64
            env.write_config(cfg)
            assert sighup_and_wait(p, admin, 1, 0)[0] == 1, open(p.log_path).read()
            after = listen_sockets(bind)
            assert after == sorted((64, ino) for _, ino in before), (before, after)
            # the clients queued before the reload are served, one after the other
            first.close()
            assert h.serve_one_by_one(queued) == 8

            # the backlog and a listener that cannot open: the reload fails, 64 stays
            taken = socket.socket()
            taken.bind(("127.%d.2.2" % n, 0))
            taken.listen(1)
            try:
                cfg["listeners"][0]["backlog"] = 128
                cfg["listeners"].append({"name": "second", "pool": "app", "bind":
                                         "127.%d.2.2:%d" % (n, taken.getsockname()[1])})
                env.write_config(cfg)
                assert sighup_and_wait(p, admin, 1, 1)[0] == 0
            finally:
                taken.close()
            assert listen_sockets(bind) == after
            assert h.first_line(bind, data=b"y\n", shut=True) == "y"
            assert h.stop(p) == 0
