"""The man pages (docs/man/*.scd, built by `make man` with scdoc): each renders with
`man -l` without a warning; twlb.json(5) has a section per key table and, in it, every
key of the table and no other, each with the table's bounds, default and words; twlb(8)
documents every flag `twlb --help` and `twlb simulate --help` show, and no flag they do
not (except -h/--help, which must then work)."""
import os
import re
import subprocess

import harness as h
import test_schema

ROOT = h.ROOT
MAN8 = os.path.join(ROOT, "build", "man", "twlb.8")
MAN5 = os.path.join(ROOT, "build", "man", "twlb.json.5")


def render(path):
    subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT,
                    os.path.relpath(path, ROOT)], check=True, stdout=subprocess.DEVNULL)
    # A wide page, so that no key line wraps; --warnings makes groff report mistakes.
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", path], capture_output=True,
                       text=True, env={**os.environ, "MANWIDTH": "250", "MAN_KEEP_FORMATTING": ""})
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", "man -l %s warns:\n%s" % (path, r.stderr)
    return r.stdout


def test_pages_render():
    for path, head in ((MAN8, "twlb(8)"), (MAN5, "twlb.json(5)")):
        text = render(path)
        assert text.startswith(head), text[:80]
        for sec in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
            assert re.search(r"^%s$" % sec, text, re.M), "%s has no %s" % (path, sec)


def sections(text):
    """{subsection heading: [its lines]} of a rendered page (headings indented by 3)."""
    out, cur = {}, None
    for line in text.splitlines():
        if re.match(r"^ {3}\S", line):
            cur = line.strip()
            out[cur] = []
        elif re.match(r"^\S", line):
            cur = None
        elif cur is not None:
            out[cur].append(line)
    return out


def test_json_page_has_every_key_with_bounds_and_default():
    secs = sections(render(MAN5))
    tables = test_schema.key_tables()
    for table, keys in tables.items():
        head = table or "Top level"
        assert head in secs, "twlb.json(5) has no section %r (has %s)" % (head, sorted(secs))
        lines = {}
        for line in secs[head]:
            m = re.match(r"^ {7}(\w+) \((.*)\)$", line)
            if m:
                lines[m.group(1)] = m.group(2)
        assert sorted(lines) == sorted(k["name"] for k in keys), \
            "twlb.json(5), %s: keys %s, the loader's %s" % (head, sorted(lines),
                                                            sorted(k["name"] for k in keys))
        for k in keys:
            at, line = "%s %s" % (head, k["name"]), lines[k["name"]]
            if "minimum" in k:
                assert "%d..%d" % (k["minimum"], k["maximum"]) in line, (at, line)
            if "default" in k:
                d = k["default"]
                d = ("true" if d else "false") if isinstance(d, bool) else str(d)
                assert re.search(r"\bdefault %s\b" % re.escape(d), line), \
                    "%s: default %r not in %r" % (at, k["default"], line)
            for w in k.get("enum", []):
                assert re.search(r"\b%s\b" % re.escape(w), line), (at, w, line)
            if k["required"]:
                assert "required" in line, (at, line)
            if "maxLength" in k and k["store"] != "name":
                assert "%d..%d" % (k.get("minLength", 0), k["maxLength"]) in line, (at, line)


FLAG = r"(?<![\w-])(--?[a-z][a-z-]*)"


def help_flags(*argv):
    r = subprocess.run([h.TWLB, *argv, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout, (argv, r.returncode, r.stderr)
    return set(re.findall(FLAG, r.stdout))


def test_twlb_page_matches_help():
    text = render(MAN8)
    page = {}
    for sec in ("OPTIONS", "SIMULATE"):
        m = re.search(r"^%s\n(.*?)(?=^\S)" % sec, text, re.M | re.S)
        assert m, "twlb(8) has no %s section" % sec
        # Flags are the terms of the list (indented by 7), not words in the prose.
        page[sec] = {f for line in m.group(1).splitlines() if re.match(r"^ {7}-", line)
                     for f in re.findall(FLAG, line)}
    main, sim = help_flags(), help_flags("simulate")
    assert main and sim
    # twlb --help also shows the simulate line.
    for where, shown, documented, ours in (
            ("twlb --help", main, page["OPTIONS"] | page["SIMULATE"], page["OPTIONS"]),
            ("twlb simulate --help", sim, page["SIMULATE"], page["SIMULATE"])):
        missing = shown - {"-h", "--help"} - documented
        assert not missing, "%s shows %s, twlb(8) does not document them" % (
            where, sorted(missing))
        extra = ours - shown - {"-h", "--help"}
        assert not extra, "twlb(8) documents %s, %s does not show them" % (sorted(extra), where)
    # -h and --help are documented: they must print the usage and exit 0.
    for f in ("-h", "--help"):
        r = subprocess.run([h.TWLB, f], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and r.stdout.startswith("usage:"), (f, r)


def test_changelog_has_the_binary_version():
    """The version the binary prints (and the package carries) has its changelog entry."""
    r = subprocess.run([h.TWLB, "--version"], capture_output=True, text=True, timeout=10)
    m = re.match(r"twlb (\d+\.\d+\.\d+)\n$", r.stdout)
    assert m, r.stdout
    with open(os.path.join(ROOT, "docs", "CHANGELOG.md")) as f:
        assert re.search(r"^## %s - \d{4}-\d\d-\d\d$" % re.escape(m.group(1)), f.read(), re.M), \
            "docs/CHANGELOG.md has no section for %s" % m.group(1)
