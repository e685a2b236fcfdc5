"""twlb --check and -c against every config in config/ and config/bad/."""
import glob
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
    """Every config in config/ and config/examples/ (not the JSON Schema)."""
    paths = sorted(glob.glob(os.path.join(h.ROOT, "config", "*.json")) +
                   glob.glob(os.path.join(h.ROOT, "config", "examples", "*.json")))
    paths = [p for p in paths if not p.endswith(".schema.json")]
    assert len(paths) >= 4, paths
    for path in paths:
        rc, out, err = check(os.path.relpath(path, h.ROOT))
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
