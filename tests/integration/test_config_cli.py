"""twlb --check and -c against every config in config/ and config/bad/."""
import glob
import shutil
import os
import subprocess

import harness as h


def check(path):
    r = subprocess.run([h.TWLB, "--check", path], cwd=h.ROOT, capture_output=True, text=True,
                       timeout=10)
    return r.returncode, r.stdout, r.stderr


def test_every_bad_config_gives_its_documented_error():
    bad = sorted(glob.glob(os.path.join(h.ROOT, "config", "bad", "*.json")))
    assert len(bad) >= 20, "expected one file per kind of mistake"
    for path in bad:
        rel = os.path.relpath(path, h.ROOT)
        rc, out, err = check(rel)
        want = open(path[:-5] + ".expect").read()
        assert rc == 1, (rel, rc)
        assert out == "", (rel, out)
        assert err == want, "%s:\n--- got\n%s--- want\n%s" % (rel, err, want)
        assert err.splitlines()[-1].startswith("twlb: "), rel


def test_good_configs_pass_check():
    """Every config in config/ and config/examples/ (not the JSON Schema); the production
    example as on a host where the unit made /var/lib/twlb (h.check_as_installed)."""
    paths = sorted(glob.glob(os.path.join(h.ROOT, "config", "*.json")) +
                   glob.glob(os.path.join(h.ROOT, "config", "examples", "*.json")))
    paths = [p for p in paths if not p.endswith(".schema.json")]
    assert len(paths) >= 4, paths
    with h.Env() as env:
        for path in paths:
            rc, out, err = h.check_as_installed(os.path.relpath(path, h.ROOT), env)
            if path.endswith("simulate-seed.json"):
                # the capacity planner's input: its range 1025-65535 models a whole host
                # and may overlap this host's ephemeral ports, a warning (exit 0)
                err = "".join(line for line in err.splitlines(True)
                              if "warning: pools[0].source_ports: " not in line and
                              not line.startswith("twlb: 1 warning in "))
            assert (rc, out, err) == (0, "configuration ok\n", ""), (path, rc, out, err)


def test_run_refuses_bad_config_with_same_errors():
    rel = "config/bad/several-errors.json"
    r = subprocess.run([h.TWLB, "-c", rel], cwd=h.ROOT, capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1
    assert r.stderr == open(os.path.join(h.ROOT, rel[:-5] + ".expect")).read()


def test_unreadable_file():
    rc, out, err = check("config/bad/does-not-exist.json")
    assert rc == 1
    assert err.startswith("config/bad/does-not-exist.json: cannot read: No such file"), err
    rc, out, err = check("config")  # a directory said "Input/output error" before
    assert rc == 1
    assert err.startswith("config: is a directory, not a configuration file"), err


def twlb(*args):
    r = subprocess.run([h.TWLB, *args], cwd=h.ROOT, capture_output=True, text=True, timeout=10)
    return r.returncode, r.stdout, r.stderr


def test_check_spellings_like_nginx():
    good, bad = "config/demo.json", "config/bad/several-errors.json"
    want_bad = open(os.path.join(h.ROOT, bad[:-5] + ".expect")).read()
    for args in (["-t", good], ["-t", "-c", good], ["-c", good, "-t"], ["-tc", good],
                 ["--check", good], ["--check=" + good], ["--check", "--config", good],
                 ["--config=" + good, "--check"]):
        assert twlb(*args) == (0, "configuration ok\n", ""), args
    for args in (["-t", bad], ["-t", "-c", bad], ["--check=" + bad], ["--check", bad]):
        assert twlb(*args) == (1, "", want_bad), args


def test_help_and_version_go_to_stdout():
    for args in (["--help"], ["-h"], ["simulate", "--help"], ["simulate", "-h"]):
        rc, out, err = twlb(*args)
        assert (rc, err) == (0, ""), (args, rc, err)
        assert out.startswith("usage: twlb"), (args, out)
    rc, out, err = twlb("--help")
    assert "exit status:" in out and "--check" in out and "-t" in out, out
    for args in (["-V"], ["--version"]):
        rc, out, err = twlb(*args)
        assert (rc, err) == (0, "") and out.startswith("twlb "), (args, out, err)


def test_bad_command_lines_name_what_is_wrong():
    cases = {
        ("--bogus",): "twlb: unknown option --bogus",
        ("--bogus=1", "-c", "config/demo.json"): "twlb: unknown option --bogus=1",
        ("-x",): "twlb: unknown option -x",
        ("-c",): "twlb: -c needs a value",
        ("--config",): "twlb: --config needs a value",
        ("-t",): "twlb: -t/--check needs a file",
        ("--version=2",): "twlb: --version=2 takes no value",
        ("config/demo.json",): "twlb: unexpected argument config/demo.json",
        ("-t", "config/demo.json", "extra"): "twlb: unexpected argument extra",
        ("--check=config/demo.json", "-c", "config/bad/several-errors.json"):
            "twlb: two files to check",
        ("-c", "config/demo.json", "-c", "config/demo.json"): "twlb: -c/--config given twice",
        (): "twlb: no configuration",
    }
    for args, want in cases.items():
        rc, out, err = twlb(*args)
        assert rc == 2 and out == "", (args, rc, out)
        assert err.startswith(want), (args, err)
        assert "usage: twlb" in err, (args, err)


def test_host_names_in_addresses():
    """A backend and a listener written as NAME:PORT are resolved when the config is
    loaded (localhost, from /etc/hosts: no DNS query leaves the machine) and serve; /stats
    shows the name as written and the address in use."""
    n = h.new_net()
    with h.Env() as env:
        be = env.backend("e", "127.0.0.1:0", "echo")
        port = h.split_addr(be.addr)[1]
        lport = h.free_port("127.0.0.1")
        cfg = h.pool_config(n, [{"name": "e", "address": "localhost:%d" % port}],
                            inside=["127.0.0.1"])
        cfg["listeners"][0]["bind"] = "localhost:%d" % lport
        p = env.twlb(cfg)
        assert h.first_line("127.0.0.1:%d" % lport, data=b"hi\n", shut=True) == "hi"
        st = h.stats(h.admin_addr(cfg))
        b = st["pools"][0]["backends"][0]
        assert b["address"] == "localhost:%d" % port, b
        assert b["resolved"] == "127.0.0.1:%d" % port, b
        assert st["listeners"][0]["resolved"] == "127.0.0.1:%d" % lport, st["listeners"]
        h.stop(p)


def test_a_name_that_does_not_resolve_is_a_config_error():
    """Checked inside a network namespace whose resolv.conf names a server in the test
    range with no route to it, so the failed lookup sends nothing anywhere and fails at
    once; a bad IPv4 literal is never taken for a name."""
    import netns
    netns.require()
    with netns.Topology() as t, h.Env() as env:
        ns = t.add_host("dns")
        conf_dir = os.path.join("/etc/netns", ns)  # `ip netns exec` mounts it over /etc
        os.makedirs(conf_dir)
        try:
            with open(os.path.join(conf_dir, "resolv.conf"), "w") as f:
                f.write("nameserver 198.18.0.53\noptions timeout:1 attempts:1\n")
            cfg = h.pool_config(200, [{"name": "e", "address": "no-such-backend.test:9000"}])
            path = env.write_config(cfg)
            r = t.run("dns", [h.TWLB, "--check", path], timeout=20)
            assert r.returncode == 1, r
            assert 'pools[0].backends[0].address: "no-such-backend.test:9000" does not resolve' \
                in r.stderr, r.stderr
        finally:
            shutil.rmtree(conf_dir, ignore_errors=True)
        cfg = h.pool_config(201, [{"name": "e", "address": "198.18.0.300:9000"}])
        rc, out, err = check(env.write_config(cfg, "bad-ip.json"))
        assert rc == 1 and "is not an IPv4 or IPv6 address" in err, err
