"""Hostile files and hostile clients, through the real binary (issue #14): the state file
and the log files are never written through a planted symbolic link, a failed save is an
error and a non-zero exit, the state file is bounded by what the config can hold, the
admin endpoint refuses to run open off loopback, keeps answering operators under a
slowloris, and answers a bare-LF request; duplicated config entries give one error each."""
import json
import os
import socket
import stat
import subprocess
import threading
import time

import harness as h
import statefile


def check(path):
    r = subprocess.run([h.TWLB, "--check", path], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def state_config(n, backend_addr, state, **reuse):
    cfg = h.pool_config(n, [{"name": "b1", "address": backend_addr}])
    cfg["reuse"].update({"state_file": state}, **reuse)
    return cfg


def empty_state(path):
    """twlb 0.1's empty JSON state file (imported, then replaced by the mapped table)."""
    statefile.write_v1(path, [])


def log_of(p):
    return open(p.log_path).read()


# ---- the state file ------------------------------------------------------------------


def test_state_save_ignores_a_link_planted_at_the_old_temp_name():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "name")
        state, victim = env.path("state.json"), env.path("victim")
        empty_state(state)
        with open(victim, "w") as f:
            f.write("precious\n")
        os.symlink(victim, state + ".tmp")  # where twlb 0.1 wrote its temp file
        p = env.twlb(state_config(n, b.addr, state))
        assert h.stop(p) == 0, log_of(p)
        assert open(victim).read() == "precious\n", "the link's target was overwritten"
        assert os.path.islink(state + ".tmp")
        st = os.lstat(state)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert statefile.StateFile(state).version == 2
        leftovers = [f for f in os.listdir(env.dir) if f.startswith("state.json.")]
        assert leftovers == ["state.json.tmp"], leftovers


def test_symlinked_state_file_is_refused_and_exit_is_nonzero():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "name")
        state, target = env.path("state.json"), env.path("elsewhere.json")
        empty_state(target)
        before = open(target).read()
        os.symlink(target, state)
        p = env.twlb(state_config(n, b.addr, state))
        rc = h.stop(p)
        log = log_of(p)
        assert "state file %s: is a symbolic link; not following it" % state in log, log
        assert "state file %s: is a symbolic link; refusing to write" % state in log, log
        assert "exiting with status 1: the state file could not be saved" in log, log
        assert rc == 1, (rc, log)
        assert os.path.islink(state) and open(target).read() == before


def state_in_own_mount(env, name, setup):
    """A new directory <name> of <env> for the state file, and a wrapper for env.twlb
    that runs twlb in a mount namespace of its own where the shell command <setup> ("$0":
    the directory) ran first.  Returns (the state file's path, the wrapper); skips the
    test where this host cannot make a mount namespace."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        raise h.Skip("cannot make a mount namespace here")
    d = env.path(name)
    os.mkdir(d)
    return os.path.join(d, "state.json"), ["unshare", "-m", "sh", "-c",
                                           setup + ' && exec "$@"', d]


def test_unwritable_state_directory_refuses_the_start():
    """Root ignores directory modes: a read-only bind mount makes the directory
    unwritable.  Until preflight looked, twlb served with its records in memory only;
    now the start refuses, naming the file, the errno and what to do."""
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "name")
        state, wrap = state_in_own_mount(
            env, "ro", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0"')
        ro = os.path.dirname(state)
        empty_state(state)
        p = env.twlb(state_config(n, b.addr, state), wait=False, wrap=wrap)
        assert p.wait(10) == 1
        log = log_of(p)
        assert ("reuse.state_file: the directory %s is not writable by uid 0 (Read-only file "
                "system), so %s cannot be created" % (ro, state)) in log, log
        assert log.rstrip().endswith("1 error in %s; not starting" % p.cfg_path), log


def test_state_file_that_cannot_be_made_runs_in_memory_and_exit_is_nonzero():
    """A state file that cannot be made although its directory is writable (here a full
    file system: a 4 KiB tmpfs) is logged, and twlb serves with its records in memory
    only and exits non-zero (issue 14: the state could not be saved)."""
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "name")
        state, wrap = state_in_own_mount(env, "full", 'mount -t tmpfs -o size=4k tmpfs "$0"')
        cfg = state_config(n, b.addr, state)
        p = env.twlb(cfg, wrap=wrap)
        assert h.first_line(h.listen_addr(cfg), shut=True).startswith("b1")
        rc = h.stop(p)
        log = log_of(p)
        assert ("state file %s: cannot reserve its space: No space left on device" % state
                in log), log
        assert "this run's records were kept in memory only" in log, log
        assert rc == 1, (rc, log)


def test_one_huge_remaining_ms_does_not_block_the_other_ports():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "name")
        state = env.path("state.json")
        inside = "127.%d.4.1" % n
        entry = lambda port, ms: {"pool": "app", "backend": "b1", "inside": inside,
                                  "port": port, "state": "remote_time_wait",
                                  "remaining_ms": ms, "isn_known": False, "rcv_nxt": 1}
        with open(state, "w") as f:  # port order, the huge one first, as twlb writes it
            json.dump({"version": 1, "written_unix_ms": int(time.time() * 1000),
                       "entries": [entry(20000, 10 ** 15)] +
                                  [entry(p, 500) for p in range(20001, 20005)]}, f)
        cfg = state_config(n, b.addr, state, isn="off", local_time_wait_seconds=2,
                           quarantine_ms=500)
        cfg["pools"][0].update({"source_ports": "20000-20004", "retries": 0,
                                "time_wait": {"rule": "bsd", "seconds": 2}})
        p = env.twlb(cfg)
        log = log_of(p)
        assert "1 entries remembered longer than the configuration's longest TIME_WAIT " \
               "(2000 ms); cut to it" in log, log
        time.sleep(2.5)  # every entry has expired now, the cut one too
        names = [h.name_line(h.listen_addr(cfg), keep=[]) for _ in range(5)]
        assert names == ["b1"] * 5, names


def test_state_file_larger_than_the_config_can_hold_is_refused_at_once():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "name")
        state = env.path("state.json")
        with open(state, "w") as f:
            f.write('{"version": 1, "written_unix_ms": 0, "entries": []}')
            f.truncate(161 * 1000 * 1000)  # sparse: 161 MB that nobody needs to read
        cfg = state_config(n, b.addr, state)
        cfg["pools"][0]["source_ports"] = "20000-20099"  # 100 entries at most
        t0 = time.monotonic()
        p = env.twlb(cfg)
        took = time.monotonic() - t0
        log = log_of(p)
        # 100 entries x 512 bytes + 4096
        assert "state file %s: version 1 (JSON): is 161000000 bytes, more than the 55296 the " \
               "configuration can need" % state in log, log
        assert took < 3, took
        h.stop(p)


def test_state_file_with_more_entries_than_paths_times_ports_is_refused():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "name")
        state = env.path("state.json")
        e = {"pool": "app", "backend": "b1", "inside": "127.%d.4.1" % n, "port": 20000,
             "state": "remote_time_wait", "remaining_ms": 1000, "isn_known": False,
             "rcv_nxt": 1}
        with open(state, "w") as f:
            json.dump({"version": 1, "written_unix_ms": int(time.time() * 1000),
                       "entries": [e] * 11}, f, separators=(",", ":"))
        cfg = state_config(n, b.addr, state)
        cfg["pools"][0]["source_ports"] = "20000-20009"
        p = env.twlb(cfg)
        assert "has 11 entries, more than the 10 the configuration can hold" in log_of(p)
        h.stop(p)


# ---- log files -----------------------------------------------------------------------


def test_log_files_are_not_opened_through_a_symlink():
    n = h.new_net()
    with h.Env() as env:
        victim = env.path("victim")
        with open(victim, "w") as f:
            f.write("precious\n")
        for key in ("file", "access_log"):
            link = env.path("%s.log.link" % key)
            os.symlink(victim, link)
            cfg = h.pool_config(n, [{"name": "b1", "address": "127.%d.1.1:9" % n}])
            cfg["log"][key] = link
            r = subprocess.run([h.TWLB, "-c", env.write_config(cfg)], capture_output=True,
                               text=True, timeout=10)
            assert r.returncode == 1, (key, r.returncode, r.stderr)
            assert "cannot open log file %s: is a symbolic link (not followed" % link \
                in r.stderr, r.stderr
        assert open(victim).read() == "precious\n"


# ---- admin configuration ---------------------------------------------------------------


def test_admin_off_loopback_needs_a_token_or_an_explicit_yes():
    n = h.new_net()
    with h.Env() as env:
        cfg = h.pool_config(n, [{"name": "b1", "address": "127.%d.1.1:9" % n}])
        cfg["admin"]["bind"] = "198.18.0.1:9901"
        path = env.write_config(cfg, "open.json")
        rc, out, err = check(path)
        assert rc == 1, (rc, out, err)
        assert err.startswith(path + ":"), err
        assert ': admin.bind: "198.18.0.1:9901" is not a loopback address and ' \
               'admin.token_file is not set' in err, err
        r = subprocess.run([h.TWLB, "-c", path], capture_output=True, text=True, timeout=10)
        assert r.returncode == 1 and "admin.bind" in r.stderr, r.stderr
        cfg["admin"]["allow_without_token"] = True
        assert check(env.write_config(cfg, "yes.json"))[0] == 0
        del cfg["admin"]["allow_without_token"]
        cfg["admin"]["token_file"] = env.path("token")
        with open(env.path("token"), "w") as f:  # --check reads it (issue 11)
            f.write("s3cret\n")
        assert check(env.write_config(cfg, "token.json"))[0] == 0
        cfg["admin"]["bind"] = "[::1]:9901"
        del cfg["admin"]["token_file"]
        assert check(env.write_config(cfg, "v6.json"))[0] == 0
        cfg["admin"]["allow_without_token"] = "yes"
        rc, _, err = check(env.write_config(cfg, "str.json"))
        assert rc == 1 and 'admin.allow_without_token: "yes" is not true or false' in err, err


def test_token_longer_than_the_buffer_is_an_error_not_cut():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "name")
        tok = env.path("token")
        with open(tok, "w") as f:
            f.write("x" * 300 + "\n")
        cfg = h.pool_config(n, [{"name": "b1", "address": b.addr}])
        cfg["admin"]["token_file"] = tok
        r = subprocess.run([h.TWLB, "-c", env.write_config(cfg)], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 1, r.stderr
        assert "admin.token_file: %s: the token is 300 bytes, longer than the 255 allowed" \
            % tok in r.stderr, r.stderr
        with open(tok, "w") as f:  # the longest that fits works, whole
            f.write("y" * 255 + "\r\n")
        env.twlb(cfg)
        a = h.admin_addr(cfg)
        auth = lambda t: {"Authorization": "Bearer " + t}
        assert h.http(a, "POST", "/pools/app/backends/b1/drain", headers=auth("y" * 254))[0] == 401
        assert h.http(a, "POST", "/pools/app/backends/b1/drain", headers=auth("y" * 255))[0] == 200


# ---- the admin endpoint under hostile clients --------------------------------------------


def test_bare_lf_request_gets_a_400_at_once():
    n = h.new_net()
    with h.Env() as env:
        cfg = h.pool_config(n, [{"name": "b1", "address": "127.%d.1.1:9" % n}])
        env.twlb(cfg)
        t0 = time.monotonic()
        assert h.raw_http(h.admin_addr(cfg), b"GET /healthz HTTP/1.1\nHost: x\n\n", timeout=3) == 400
        assert time.monotonic() - t0 < 1


def test_silent_connection_is_closed_by_the_head_deadline():
    n = h.new_net()
    with h.Env() as env:
        cfg = h.pool_config(n, [{"name": "b1", "address": "127.%d.1.1:9" % n}])
        env.twlb(cfg)
        s = socket.create_connection(h.split_addr(h.admin_addr(cfg)), timeout=6)
        s.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the blank line
        t0 = time.monotonic()
        assert s.recv(100) == b""
        took = time.monotonic() - t0
        s.close()
        assert 1.5 < took < 3.5, took


def slowloris(addr, sources, per_source, stop, stats):
    """<per_source> connections from each of <sources>, each sending one byte of a request
    head a second; closed ones are opened again (at most 10 times the count in all)."""
    host, port = h.split_addr(addr)
    socks = []
    budget = 10 * per_source * len(sources)

    def opened(src):
        s = socket.socket()
        s.setblocking(False)
        s.bind((src, 0))
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        stats["opened"] += 1
        return [s, src, 0]

    for src in sources:
        for _ in range(per_source):
            socks.append(opened(src))
    head = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 1000
    while not stop.wait(1.0):
        for c in socks:
            try:
                c[0].send(head[c[2] % len(head):][:1])
                c[2] += 1
            except OSError:
                c[0].close()
                if stats["opened"] < budget:
                    c[:] = opened(c[1])
                else:
                    c[2] = -10 ** 9  # stays dead
    for c in socks:
        c[0].close()


def test_slowloris_does_not_lock_operators_out():
    n = h.new_net()
    with h.Env() as env:
        cfg = h.pool_config(n, [{"name": "b1", "address": "127.%d.1.1:9" % n}])
        env.twlb(cfg)
        a = h.admin_addr(cfg)
        stop = threading.Event()
        stats = {"opened": 0}
        sources = ["127.%d.5.%d" % (n, i) for i in (1, 2, 3)]
        t = threading.Thread(target=slowloris, args=(a, sources, 100, stop, stats))
        t.start()
        try:
            time.sleep(1.5)  # the slow ones hold their connections
            ok = 0
            host, port = h.split_addr(a)
            t0 = time.monotonic()
            for _ in range(100):
                try:
                    s = socket.create_connection((host, port), timeout=2,
                                                 source_address=("127.%d.6.1" % n, 0))
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    got, how = h.read_until_end(s, timeout=2)
                    s.close()
                    ok += (how == "eof" and got.startswith(b"HTTP/1.1 200") and
                           got.endswith(b"ok\n"))
                except OSError:
                    pass
                time.sleep(0.03)
            took = time.monotonic() - t0
        finally:
            stop.set()
            t.join(10)
        assert stats["opened"] >= 300, stats
        assert ok >= 95, "only %d of 100 legitimate /healthz succeeded (in %.1f s)" % (ok, took)


# ---- duplicates in a config ------------------------------------------------------------


def test_duplicates_give_one_error_each():
    n = h.new_net()
    with h.Env() as env:
        backends = [{"name": "same", "address": "127.%d.1.1:%d" % (n, 1000 + i)}
                    for i in range(2000)]
        cfg = h.pool_config(n, backends)
        path = env.write_config(cfg)
        t0 = time.monotonic()
        rc, out, err = check(path)
        took = time.monotonic() - t0
        lines = err.splitlines()
        assert rc == 1
        assert len(lines) == 2000, len(lines)  # 1999 duplicates and the summary
        assert lines[0].endswith('pools[0].backends[1].name: "same" duplicates '
                                 'pools[0].backends[0].name'), lines[0]
        assert lines[-1] == "twlb: 1999 errors in %s; not starting" % path, lines[-1]
        assert took < 5, took
        # the same address 2,000 times, names distinct
        for i, b in enumerate(backends):
            b.update(name="b%d" % i, address="127.%d.1.1:1000" % n)
        rc, out, err = check(env.write_config(cfg))
        assert rc == 1 and len(err.splitlines()) == 2000, len(err.splitlines())
