"""The metric list: docs/metrics.md is what the table (lb/admin/metrics.c) generates, and
live /metrics shows exactly the families of that table, each as one uninterrupted group
that a real Prometheus parser reads with its HELP, TYPE and samples."""
import json
import os
import re
import subprocess
import sys

import harness as h

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GENERATOR = "build/rel/tools/metrics_doc"
DOC = os.path.join(ROOT, "docs", "metrics.md")


def generated_doc():
    subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, GENERATOR], check=True,
                   stdout=subprocess.DEVNULL)
    return subprocess.run([os.path.join(ROOT, GENERATOR)], check=True, capture_output=True,
                          text=True).stdout


def doc_families(text):
    """{name: type} from the markdown table."""
    return dict(re.findall(r"^\| `((?:twlb|process)_\w+)` \| (counter|gauge|histogram) \|",
                           text, re.M))


def groups(text):
    """/metrics as [(name, help, type, [sample lines])], checking that every family is
    one uninterrupted group: HELP, TYPE, then only its own samples."""
    out = []
    for line in text.splitlines():
        m = re.match(r"# HELP (\S+) (.+)$", line)
        if m:
            assert m.group(1) not in [g[0] for g in out], "family %s twice" % m.group(1)
            out.append([m.group(1), m.group(2), None, []])
            continue
        m = re.match(r"# TYPE (\S+) (\S+)$", line)
        if m:
            assert out and out[-1][0] == m.group(1) and out[-1][2] is None and not out[-1][3], \
                "TYPE %s not right after its HELP" % m.group(1)
            out[-1][2] = m.group(2)
            continue
        assert out and out[-1][2], "sample before any HELP/TYPE: %r" % line
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        if out[-1][2] == "histogram":  # its samples are name_bucket, name_sum, name_count
            name = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name == out[-1][0], "sample %r inside the group of %s" % (line, out[-1][0])
        out[-1][3].append(line)
    return out


def live_metrics():
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        cfg = h.pool_config(n, [{"name": "b1", "address": b.addr}])
        env.twlb(cfg)
        h.request(h.listen_addr(cfg), b"hi\n", shut=True)
        status, text = h.http_get(h.admin_addr(cfg), "/metrics")
        assert status == 200, status
        return text


def test_metrics_doc_is_current():
    with open(DOC) as f:
        assert f.read() == generated_doc(), "docs/metrics.md is stale: run make metrics-doc"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "tools",
                                                     "metrics_into_operations.py"), "--check",
                        DOC, os.path.join(ROOT, "docs", "operations.md")])
    assert r.returncode == 0, "docs/operations.md lists other metrics: run make metrics-doc"


def test_live_families_are_the_table():
    table = doc_families(generated_doc())
    assert len(table) >= 18, table
    live = groups(live_metrics())
    for name, _help, typ, samples in live:
        assert name in table, "%s is served but not in the metric table" % name
        assert typ == table[name], (name, typ, table[name])
        assert samples, "%s has no sample" % name
    assert sorted(g[0] for g in live) == sorted(table), "families in the table but not served"


PARSE = r"""
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": sorted({s.name for s in f.samples}), "n": len(f.samples)})
print(json.dumps(out))
"""


def test_prometheus_client_parses_every_family():
    """The real Python client (Debian's python3-prometheus-client, only for
    /usr/bin/python3) reads HELP, TYPE and the samples of every family."""
    if subprocess.run(["/usr/bin/python3", "-c", "import prometheus_client"],
                      capture_output=True).returncode != 0:
        raise h.Skip("python3-prometheus-client is not installed for /usr/bin/python3")
    text = live_metrics()
    r = subprocess.run(["/usr/bin/python3", "-c", PARSE], input=text, capture_output=True,
                       text=True, check=True)
    parsed = json.loads(r.stdout)
    helps = re.findall(r"^# HELP (\S+) (.+)$", text, re.M)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    def sample_names(name):
        if types[name] == "histogram":
            return sorted(name + s for s in ("_bucket", "_count", "_sum"))
        return [name]
    assert [p["samples"] for p in parsed] == [sample_names(name) for name, _ in helps], \
        "the client split or merged families: %s" % [(p["name"], p["n"]) for p in parsed]
    for p, (name, help_) in zip(parsed, helps):
        # the client names a counter family without its _total suffix
        assert p["name"] in (name, re.sub(r"_total$", "", name)), (p["name"], name)
        assert p["type"] == types[name], (name, p["type"], types[name])
        assert p["help"] == help_, (name, p["help"])
        series = r"^%s(_bucket|_sum|_count)?[{ ]" if types[name] == "histogram" else r"^%s[{ ]"
        assert p["n"] == len(re.findall(series % name, text, re.M)), (name, p)


def stats_keys(obj, out=None):
    """Every object key of a /stats document, except the inside addresses of "ports"."""
    out = set() if out is None else out
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not re.match(r"[0-9a-f.:]+$", k) or not isinstance(v, dict):
                out.add(k)
            stats_keys(v, out)
    elif isinstance(obj, list):
        for v in obj:
            stats_keys(v, out)
    return out


def test_every_stats_key_is_documented():
    """Each key of a live /stats (a pool with a queue and one without, two workers) is a
    metric's /stats key in metrics.md (where "*" stands for a label value) or is named in
    operations.md's "/stats" section."""
    documented = set()  # a "*" in a key stands for each value its row's labels list
    with open(DOC) as f:
        for labels, key in re.findall(
                r"^\| `(?:twlb|process)_\w+` \| \w+ \| ([^|]*) \| `([^`]+)` \|", f.read(), re.M):
            values = re.findall(r"\w+", " ".join(re.findall(r"\(([^)]*)\)", labels)))
            documented |= {key.replace("*", v) for v in values} if "*" in key else {key}
    with open(os.path.join(ROOT, "docs", "operations.md")) as f:
        ops = f.read()
    section = ops[ops.index("\n## /stats\n"):]
    section = section[:section.index("\n## ", 5)]
    named = set(re.findall(r'"(\w+)"', section)) | set(re.findall(r"`(\w+)`", section))
    n = h.new_net()
    with h.Env() as env:
        b = env.backend("b1", "127.%d.1.1:0" % n, "close-first")
        cfg = h.pool_config(n, [{"name": "b1", "address": b.addr}])
        cfg["workers"] = 2
        cfg["pools"].append(dict(cfg["pools"][0], name="queued", source_ports="30000-30099",
                                 queue={"max": 4, "timeout_ms": 1000}))
        env.twlb(cfg)
        h.request(h.listen_addr(cfg))
        st = h.stats(h.admin_addr(cfg))
    assert [p["queue"] for p in st["pools"]] == [None, {"max": 4, "timeout_ms": 1000}]
    keys = stats_keys(st)
    assert len(keys) >= 60, sorted(keys)
    missing = sorted(keys - named - documented)
    assert not missing, "/stats keys in neither metrics.md nor operations.md: %s" % missing
