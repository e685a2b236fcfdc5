"""twlb --check catches what would make a start fail although the file is valid JSON
(issue 11), and the start says it the same way: a token file that cannot be read, a log
or state directory that does not exist (errors); "isn": "explicit" without
CAP_NET_ADMIN and source ports the kernel may hand out as ephemeral ports (warnings:
exit status 0, "configuration ok", as nginx -t and haproxy -c do).  The state directory
is that of the default state file too, unless "state_file" is null."""
import os
import re
import shutil
import signal
import subprocess

import harness as h


def run(*argv, **kw):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, **kw)
    return r.returncode, r.stdout, r.stderr


def base(n, env):
    cfg = h.pool_config(n, [{"name": "b1", "address": "127.%d.1.1:9" % n}])
    cfg["log"]["file"] = env.path("twlb.log")
    return cfg


POS = r"%s:\d+:\d+: "  # file:line:col of a message


def test_missing_token_file_and_directories_are_errors_at_check_and_start():
    n = h.new_net()
    with h.Env() as env:
        cfg = base(n, env)
        tok = env.path("token")
        cfg["admin"]["token_file"] = tok
        cfg["log"]["file"] = env.path("no-such-dir/twlb.log")
        cfg["log"]["access_log"] = env.path("no-logs/access.log")
        cfg["reuse"]["state_file"] = env.path("no-state/state.json")
        path = env.write_config(cfg)
        rc, out, err = run(h.TWLB, "--check", path)
        assert rc == 1 and out == "", (rc, out, err)
        lines = err.splitlines()
        want = [
            "admin.token_file: cannot read %s: No such file or directory" % tok,
            "log.file: the directory %s does not exist, so %s cannot be created"
            % (env.path("no-such-dir"), env.path("no-such-dir/twlb.log")),
            "log.access_log: the directory %s does not exist" % env.path("no-logs"),
            "reuse.state_file: the directory %s does not exist" % env.path("no-state"),
        ]
        assert len(lines) == len(want) + 1, err
        for line, w in zip(lines, want):
            assert re.match(POS % re.escape(path) + re.escape(w), line), (line, w)
        assert lines[-1] == "twlb: 4 errors in %s; not starting" % path, lines[-1]
        # the start refuses with the very same lines, before opening anything
        rc, out, err2 = run(h.TWLB, "-c", path)
        assert (rc, err2) == (1, err), (rc, err2)
        assert not os.path.exists(env.path("no-such-dir"))

        # each fixed in turn: an empty token is an error too, then all is well
        with open(tok, "w") as f:
            f.write("\n")
        for d in ("no-such-dir", "no-logs", "no-state"):
            os.mkdir(env.path(d))
        rc, out, err = run(h.TWLB, "--check", path)
        assert rc == 1 and re.match(POS % re.escape(path) + re.escape(
            "admin.token_file: %s is empty" % tok), err), err
        with open(tok, "w") as f:
            f.write("s3cret\n")
        assert run(h.TWLB, "--check", path) == (0, "configuration ok\n", "")
        # a part of the path that is a file, not a directory
        cfg["log"]["file"] = tok + "/twlb.log"
        rc, _, err = run(h.TWLB, "--check", env.write_config(cfg))
        assert rc == 1 and "log.file: the directory %s is not a directory" % tok in err, err


def test_default_state_file_directory_is_checked_and_null_skips_it():
    """Without reuse.state_file the default path is checked as a configured one would be:
    $STATE_DIRECTORY/state under systemd (the first directory of a list), else the
    configuration's path + ".state"; "state_file": null has nothing to check."""
    n = h.new_net()
    with h.Env() as env:
        cfg = base(n, env)
        cfg["reuse"].pop("state_file", None)
        path = env.write_config(cfg)
        plain = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
        # next to the configuration, whose directory exists; a check creates nothing
        assert run(h.TWLB, "--check", path, env=plain) == (0, "configuration ok\n", "")
        assert not os.path.exists(path + ".state")
        missing = env.path("no-state-dir")
        sd = dict(plain, STATE_DIRECTORY=missing + ":" + env.dir)
        rc, out, err = run(h.TWLB, "--check", path, env=sd)
        assert rc == 1 and out == "", (rc, out, err)
        want = ("reuse.state_file: the directory %s does not exist, so %s/state cannot be "
                "created (the default state file; " % (missing, missing))
        assert re.match(re.escape(path) + r"(:\d+:\d+)?: " + re.escape(want), err), err
        # the start refuses with the very same lines, before opening anything
        rc, _, err2 = run(h.TWLB, "-c", path, env=sd)
        assert (rc, err2) == (1, err), (rc, err2)
        os.mkdir(missing)
        assert run(h.TWLB, "--check", path, env=sd) == (0, "configuration ok\n", "")
        os.rmdir(missing)
        # null: no state file, so no directory to check
        cfg["reuse"]["state_file"] = None
        path = env.write_config(cfg)
        assert run(h.TWLB, "--check", path, env=sd) == (0, "configuration ok\n", "")


def test_unreadable_token_file_is_an_error_for_the_user_who_checks():
    """Checked as user nobody: a token file only root may read is named, with why."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        raise h.Skip("needs root and setpriv to run --check as nobody")
    n = h.new_net()
    with h.Env() as env:
        os.chmod(env.dir, 0o755)
        cfg = base(n, env)
        del cfg["log"]["file"]
        tok = env.path("token")
        with open(tok, "w") as f:
            f.write("s3cret\n")
        os.chmod(tok, 0o600)
        cfg["admin"]["token_file"] = tok
        path = env.write_config(cfg)
        os.chmod(path, 0o644)
        rc, out, err = run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           h.TWLB, "--check", path)
        assert rc == 1, (rc, out, err)
        assert "admin.token_file: cannot read %s: Permission denied" % tok in err, err
        assert run(h.TWLB, "--check", path) == (0, "configuration ok\n", "")


def test_files_this_user_cannot_write_are_errors_at_check_and_start():
    """As user nobody: a state file directory only root may write (a start writes the
    state file anew there; until this check it ran with its records in memory only),
    a log file that exists and only root may write, and the directory of an access log
    that does not exist yet.  Each is named with the uid and why; the start refuses
    with the same lines; a reload, which keeps the files it opened, does not look."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        raise h.Skip("needs root and setpriv to run twlb as nobody")
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    n = h.new_net()
    with h.Env() as env:
        os.chmod(env.dir, 0o755)
        for d in ("state", "logs"):
            os.mkdir(env.path(d), 0o755)
        cfg = base(n, env)
        cfg["log"]["file"] = env.path("logs/twlb.log")
        open(cfg["log"]["file"], "w").close()  # 0644, root's
        cfg["log"]["access_log"] = env.path("logs/access.log")
        cfg["reuse"]["state_file"] = env.path("state/state.json")
        path = env.write_config(cfg)
        os.chmod(path, 0o644)
        rc, out, err = run(*nobody, h.TWLB, "--check", path)
        assert rc == 1 and out == "", (rc, out, err)
        want = [
            "log.file: %s is not writable by uid 65534 (Permission denied), so %s cannot "
            "be written" % (cfg["log"]["file"], cfg["log"]["file"]),
            "log.access_log: the directory %s is not writable by uid 65534 (Permission "
            "denied), so %s cannot be created" % (env.path("logs"), cfg["log"]["access_log"]),
            "reuse.state_file: the directory %s is not writable by uid 65534 (Permission "
            "denied), so %s cannot be created" % (env.path("state"),
                                                  cfg["reuse"]["state_file"]),
        ]
        lines = err.splitlines()
        assert len(lines) == len(want) + 1, err
        for line, w in zip(lines, want):
            assert re.match(POS % re.escape(path) + re.escape(w), line), (line, w)
        assert lines[-1] == "twlb: 3 errors in %s; not starting" % path, lines[-1]
        rc, out, err2 = run(*nobody, h.TWLB, "-c", path)
        assert (rc, err2) == (1, err), (rc, err2)
        assert not os.path.exists(cfg["reuse"]["state_file"])
        # root may write them all
        assert run(h.TWLB, "--check", path) == (0, "configuration ok\n", "")
        # and nobody too, once the files and directories are its own
        for f in ("state", "logs", "logs/twlb.log"):
            os.chown(env.path(f), 65534, -1)
        assert run(*nobody, h.TWLB, "--check", path) == (0, "configuration ok\n", "")
        # a start as root that drops to nobody opens its files first: a reload (as
        # nobody) keeps them and does not ask whether nobody could open them again
        for f in ("state", "logs", "logs/twlb.log"):
            os.chown(env.path(f), 0, -1)
        cfg["user"] = "nobody"
        p = env.twlb(cfg)
        os.chmod(p.cfg_path, 0o644)
        p.send_signal(signal.SIGHUP)
        h.wait_for(lambda: "reloaded" in open(cfg["log"]["file"]).read(), 5, "the reload")
        assert "not writable" not in open(cfg["log"]["file"]).read()


def no_net_admin(argv):
    """<argv> run without CAP_NET_ADMIN (bounding set and inheritable set), or None."""
    if os.geteuid() != 0:
        return argv  # an ordinary user has no capability to begin with
    if shutil.which("setpriv"):
        return ["setpriv", "--inh-caps=-all", "--bounding-set=-net_admin"] + argv
    if shutil.which("capsh"):
        return ["capsh", "--drop=cap_net_admin", "--", "-c", " ".join(argv)]
    return None


def test_explicit_isn_without_cap_net_admin_is_a_warning_naming_it():
    n = h.new_net()
    with h.Env() as env:
        cfg = base(n, env)
        cfg["reuse"] = {"isn": "explicit", "local_time_wait": "destroy"}
        path = env.write_config(cfg)
        argv = no_net_admin([h.TWLB, "--check", path])
        if argv is None:
            raise h.Skip("neither setpriv nor capsh to drop CAP_NET_ADMIN")
        rc, out, err = run(*argv)
        assert (rc, out) == (0, "configuration ok\n"), (rc, out, err)
        lines = err.splitlines()
        assert len(lines) == 3, err
        assert re.match(POS % re.escape(path) + re.escape(
            'warning: reuse.isn: "explicit" needs CAP_NET_ADMIN (TCP_REPAIR)'), lines[0]), err
        assert re.match(POS % re.escape(path) + re.escape(
            'warning: reuse.local_time_wait: "destroy" needs CAP_NET_ADMIN (SOCK_DESTROY)'),
            lines[1]), err
        assert lines[2] == "twlb: 2 warnings in %s" % path, err
        # the start without the capability fails, as the warning says
        rc, _, err = run(*no_net_admin([h.TWLB, "-c", path]))
        assert rc == 1 and 'reuse.isn is "explicit" but TCP_REPAIR is not allowed' in err, err
        if os.geteuid() == 0:  # with the capability: nothing to say
            assert run(h.TWLB, "--check", path) == (0, "configuration ok\n", "")


def test_source_ports_in_the_kernel_ephemeral_range_are_a_warning():
    """In a network namespace of its own (the port sysctls are per namespace): a pool's
    range inside ip_local_port_range is named with the ports in both; reserving them in
    ip_local_reserved_ports silences it; a start logs the same warning and serves."""
    import netns
    netns.require()
    with netns.Topology() as t, h.Env() as env:
        t.add_host("lb")
        cfg = base(1, env)
        cfg["listeners"][0]["bind"] = "127.0.0.1:8080"
        cfg["admin"]["bind"] = "127.0.0.1:9901"
        cfg["pools"][0]["inside"] = ["127.0.0.1"]
        cfg["pools"][0]["backends"][0]["address"] = "127.0.0.1:9"
        cfg["pools"][0]["source_ports"] = "20000-29999"
        path = env.write_config(cfg)
        t.sysctl("lb", "net.ipv4.ip_local_port_range", "25000 40000")
        r = t.run("lb", [h.TWLB, "--check", path], timeout=20)
        assert (r.returncode, r.stdout) == (0, "configuration ok\n"), r
        want = ('warning: pools[0].source_ports: "20000-29999" overlaps the kernel\'s '
                'ephemeral ports (net.ipv4.ip_local_port_range 25000-40000): 5000 of its '
                'ports (25000-29999) may be taken')
        assert re.match(POS % re.escape(path) + re.escape(want), r.stderr), r.stderr
        assert r.stderr.splitlines()[-1] == "twlb: 1 warning in %s" % path, r.stderr

        # the start says it in its log, and runs
        p = t.popen("lb", [h.TWLB, "-c", path])
        log = env.path("twlb.log")
        h.wait_for(lambda: "running with" in open(log).read(), 10, "twlb running")
        assert want in open(log).read()
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0

        # reserved ports are not handed out: only the rest is named, then nothing
        t.sysctl("lb", "net.ipv4.ip_local_reserved_ports", "25000-29000")
        r = t.run("lb", [h.TWLB, "--check", path], timeout=20)
        assert "999 of its ports (29001-29999)" in r.stderr, r.stderr
        t.sysctl("lb", "net.ipv4.ip_local_reserved_ports", "25000-29999")
        r = t.run("lb", [h.TWLB, "--check", path], timeout=20)
        assert (r.returncode, r.stdout, r.stderr) == (0, "configuration ok\n", ""), r
        # and the kernel's default range (32768-60999) never meets the default 20000-29999
        t.sysctl("lb", "net.ipv4.ip_local_reserved_ports", "")
        t.sysctl("lb", "net.ipv4.ip_local_port_range", "32768 60999")
        r = t.run("lb", [h.TWLB, "--check", path], timeout=20)
        assert (r.returncode, r.stdout, r.stderr) == (0, "configuration ok\n", ""), r


def test_pipe_bytes_above_pipe_max_size_is_a_warning():
    """A pipe_bytes the kernel grants only with CAP_SYS_RESOURCE, which twlb drops when it
    becomes "user": the check names the key, the limit and what pipes will hold."""
    if int(open("/proc/sys/fs/pipe-max-size").read()) != 1 << 20:
        raise h.Skip("fs.pipe-max-size is not the default 1 MiB")
    n = h.new_net()
    with h.Env() as env:
        cfg = base(n, env)
        cfg["pipe_bytes"] = 4 << 20
        cfg["user"] = "nobody"
        path = env.write_config(cfg)
        rc, out, err = run(h.TWLB, "--check", path)
        assert (rc, out) == (0, "configuration ok\n"), (rc, out, err)
        want = ("warning: pipe_bytes: 4194304 is above fs.pipe-max-size (1048576), which only "
                "CAP_SYS_RESOURCE may pass (twlb drops it when it becomes \"user\"): pipes "
                "will hold 1 MiB")
        assert re.match(POS % re.escape(path) + re.escape(want), err), err
        assert err.splitlines()[-1] == "twlb: 1 warning in %s" % path, err
        cfg["pipe_bytes"] = 1 << 20  # what any user may ask for: nothing to say
        env.write_config(cfg)
        assert run(h.TWLB, "--check", path) == (0, "configuration ok\n", "")
