"""make install and make deb, each into a temporary root (nothing is installed on this
machine): the files land where PREFIX, DESTDIR and Debian say; the installed binary
accepts the installed production config with --check; the installed man pages render
with man -l; systemd-analyze verify accepts the installed unit, whose paths and
Documentation= point at what was installed; the package's control fields, Depends
(runtime libraries, no -dev), conffiles and maintainer scripts are right."""
import json
import os
import re
import shutil
import subprocess
import tempfile

import harness as h

ROOT = h.ROOT


def make(*args):
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, *args], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, "make %s:\n%s%s" % (" ".join(args), r.stdout, r.stderr)
    return r.stdout


def version():
    out = subprocess.run([h.TWLB, "--version"], capture_output=True, text=True).stdout
    return re.match(r"twlb (\S+)\n", out).group(1)


def unit_values(path, key):
    with open(path) as f:
        return [v for line in f for v in [re.match(r"^%s=(.*)$" % key, line.strip())] if v
                for v in [v.group(1)]]


def check_tree(root, prefix, unitdir):
    """What every installation must give, under <root> (a DESTDIR)."""
    sbin = root + prefix + "/sbin/twlb"
    conf = root + "/etc/twlb/twlb.json"
    man = root + prefix + "/share/man"
    unit = root + unitdir + "/twlb.service"
    for path, mode in ((sbin, 0o755), (conf, 0o644), (unit, 0o644),
                       (man + "/man8/twlb.8.gz", 0o644), (man + "/man5/twlb.json.5.gz", 0o644),
                       (root + prefix + "/share/twlb/twlb.schema.json", 0o644)):
        assert os.path.isfile(path), "%s is not installed" % path
        assert os.stat(path).st_mode & 0o7777 == mode, (path, oct(os.stat(path).st_mode))
    for doc in ("README.md", "LICENSE", "CHANGELOG.md", "operations.md", "configuration.md"):
        assert os.path.isfile(root + prefix + "/share/doc/twlb/" + doc), doc

    # The production example, not the loopback demo: a real address, state kept.
    with open(conf) as f:
        cfg = json.load(f)
    with open(os.path.join(ROOT, "config", "examples", "production.json")) as f:
        assert cfg == json.load(f)
    bind = cfg["listeners"][0]["bind"]
    assert not bind.startswith("127.") and bind.endswith(":80"), bind
    assert cfg["admin"]["bind"].startswith("127.0.0.1:"), cfg["admin"]
    assert cfg["reuse"]["state_file"].startswith("/var/lib/twlb/"), cfg["reuse"]

    # The installed binary on the installed config.  Before the unit first ran, the
    # state directory it makes (StateDirectory=) may be missing: --check names it.
    r = subprocess.run([sbin, "--check", conf], capture_output=True, text=True, timeout=10)
    if os.path.isdir("/var/lib/twlb"):
        assert r.returncode == 0 and r.stdout == "configuration ok\n", (r.stdout, r.stderr)
    else:
        assert r.returncode == 1 and "reuse.state_file: the directory /var/lib/twlb does " \
            "not exist" in r.stderr, (r.stdout, r.stderr)
        with h.Env() as env:
            rc, out, err = h.check_as_installed(conf, env, twlb=sbin)
            assert (rc, out) == (0, "configuration ok\n"), (out, err)

    # The installed pages, compressed as installed.
    for page, head in (("/man8/twlb.8.gz", "twlb(8)"), ("/man5/twlb.json.5.gz", "twlb.json(5)")):
        r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", man + page],
                           capture_output=True, text=True, env={**os.environ, "MANWIDTH": "80"})
        assert r.returncode == 0 and r.stderr == "", (page, r.stderr)
        assert r.stdout.startswith(head), r.stdout[:60]

    # The unit runs the installed binary on /etc/twlb/twlb.json, and its
    # Documentation= names what is installed.
    for key in ("ExecStart", "ExecStartPre"):
        (cmd,) = unit_values(unit, key)
        assert cmd.split()[0] == prefix + "/sbin/twlb", (key, cmd)
        assert cmd.split()[-1] == "/etc/twlb/twlb.json", (key, cmd)
    (docs,) = unit_values(unit, "Documentation")
    for uri in docs.split():
        m = re.match(r"^man:(.+)\((\d)\)$", uri)
        if m:
            path = "%s/man%s/%s.%s.gz" % (man, m.group(2), m.group(1), m.group(2))
        else:
            assert uri.startswith("file:/"), uri
            path = root + uri[len("file:"):]
        assert os.path.isfile(path), "Documentation=%s: %s is not installed" % (uri, path)
    verify_unit(root, unitdir, man)


def verify_unit(root, unitdir, man):
    """systemd-analyze verify on the installed unit, in <root>: the binary and the man
    pages it names must be there.  The root gets this machine's own units (the unit
    wants multi-user.target and network-online.target)."""
    if not shutil.which("systemd-analyze"):
        raise AssertionError("systemd-analyze is missing: apt-get install systemd (make deps)")
    host_units = "/lib/systemd/system"
    shutil.copytree(host_units, root + host_units, symlinks=True, dirs_exist_ok=True)
    r = subprocess.run(["systemd-analyze", "verify", "--root=" + root, unitdir + "/twlb.service"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MANPATH": man})
    assert r.returncode == 0 and r.stderr.strip() == "", \
        "systemd-analyze verify:\n%s%s" % (r.stdout, r.stderr)


def test_make_install_default_prefix():
    d = tempfile.mkdtemp(prefix="twlb-install-")
    try:
        make("install", "DESTDIR=" + d)
        check_tree(d, "/usr/local", "/usr/local/lib/systemd/system")
        # A second install keeps the operator's edited config.
        conf = d + "/etc/twlb/twlb.json"
        with open(conf, "a") as f:
            f.write("\n")
        out = make("install", "DESTDIR=" + d)
        assert "keeping" in out, out
        with open(conf) as f:
            assert f.read().endswith("}\n\n")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_make_install_honours_prefix():
    d = tempfile.mkdtemp(prefix="twlb-install-")
    try:
        make("install", "DESTDIR=" + d, "PREFIX=/opt/twlb")
        # systemd does not look under /opt: the unit goes to /etc/systemd/system.
        check_tree(d, "/opt/twlb", "/etc/systemd/system")
        assert not os.path.exists(d + "/usr"), os.listdir(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def deb_path():
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    return os.path.join(ROOT, "build", "twlb_%s_%s.deb" % (version(), arch)), arch


def test_deb_control_and_scripts():
    make("deb")
    deb, arch = deb_path()
    info = subprocess.run(["dpkg-deb", "-f", deb], capture_output=True, text=True,
                          check=True).stdout
    fields = dict(re.findall(r"^(\S+): (.*)$", info, re.M))
    assert fields["Package"] == "twlb"
    assert fields["Version"] == version()
    assert fields["Architecture"] == arch
    deps = [d.strip().split()[0] for d in fields["Depends"].split(",")]
    for lib in ("libuv1", "libjansson4", "libc6"):
        assert lib in deps, (lib, fields["Depends"])
    assert not [d for d in deps if d.endswith("-dev")], fields["Depends"]
    with tempfile.TemporaryDirectory(prefix="twlb-deb-") as d:
        subprocess.run(["dpkg-deb", "-e", deb, d + "/DEBIAN"], check=True)
        with open(d + "/DEBIAN/conffiles") as f:
            assert f.read().split() == ["/etc/twlb/twlb.json"]
        scripts = {}
        for s in ("postinst", "prerm", "postrm"):
            path = d + "/DEBIAN/" + s
            assert os.stat(path).st_mode & 0o111, "%s is not executable" % s
            subprocess.run(["sh", "-n", path], check=True)
            with open(path) as f:
                scripts[s] = f.read()
        assert "useradd --system" in scripts["postinst"]
        assert "deb-systemd-helper enable twlb.service" in scripts["postinst"]
        assert "deb-systemd-invoke stop twlb.service" in scripts["prerm"]
        assert "deb-systemd-helper purge twlb.service" in scripts["postrm"]
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                             check=True).stdout
    owners = set(re.findall(r"^\S+ (\S+/\S+) ", listing, re.M))
    assert owners == {"root/root"}, owners


def test_deb_unpacked_works():
    make("deb")
    deb, _ = deb_path()
    d = tempfile.mkdtemp(prefix="twlb-deb-")
    try:
        subprocess.run(["dpkg-deb", "-x", deb, d], check=True)
        assert os.path.isfile(d + "/usr/share/doc/twlb/copyright")
        check_tree(d, "/usr", "/lib/systemd/system")
    finally:
        shutil.rmtree(d, ignore_errors=True)
