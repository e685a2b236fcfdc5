"""config/twlb.schema.json against the loader.

- It is a valid draft 2020-12 schema, and every config in config/ (and config/examples/)
  passes it, with a real validator (Debian's python3-jsonschema) and `twlb --check`.
- Every config/bad/ file is either rejected by the schema or listed below as a mistake
  only the loader can see; a new bad config must be put in one list or the other.
- It has exactly the keys of the loader's key tables (dumped by build/rel/tools/
  config_keys from lb/config/keys.c), with the same types, required keys, bounds,
  defaults and words.
- The bounds and words are the loader's in fact: at each bound and one past it, and for
  each word and a wrong one, the schema and `twlb --check` say the same."""
import copy
import glob
import json
import os
import subprocess

import harness as h

ROOT = h.ROOT
SCHEMA = os.path.join(ROOT, "config", "twlb.schema.json")
KEYS_TOOL = os.path.join(ROOT, "build", "rel", "tools", "config_keys")

# config/bad files whose mistake is structural: the schema must reject them.
SCHEMA_REJECTS = {
    "bad-health.json", "bad-isn-mode.json", "empty-backends.json", "empty-inside.json",
    "missing-inside.json", "not-an-object.json", "pipe-bytes-too-small.json",
    "port-out-of-range.json",
    "several-errors.json", "source-ports-not-numeric.json",
    "time-wait-seconds-out-of-range.json", "unknown-backend-key.json",
    "unknown-balance.json", "unknown-time-wait-rule.json", "unknown-top-key.json",
    "wrong-type.json", "burst-without-rate.json",
}
# Mistakes a JSON Schema cannot express: the schema accepts them, the loader does not.
LOADER_ONLY = {
    "bad-address.json": "198.18.0.300 is no IPv4 address (hostnames may become valid)",
    "duplicate-backend-name.json": "uniqueness of a field across array elements",
    "duplicate-key.json": "a JSON parser keeps the last of duplicate keys",
    "duplicate-listener-name.json": "uniqueness of a field across array elements",
    "family-mismatch.json": "a relation between a backend and the pool's inside addresses",
    "listener-unknown-pool.json": "a reference to another object's name",
    "source-ports-reversed.json": "LO <= HI",
    "syntax-error.json": "not JSON at all",
    "admin-open-without-token.json": "a relation between admin.bind's address and token_file",
    "health-timeout-above-interval.json": "a relation between two fields, also inherited",
    "slow-start-with-maglev.json": "a relation between a pool's balance and its backends",
    "acl-host-bits.json": "bits set past a prefix's length",
    "acl-bad-prefix.json": "an octet above 255, a prefix length above 128",
}


def validator():
    import jsonschema  # Debian's python3-jsonschema, for /usr/bin/python3
    with open(SCHEMA) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema, jsonschema.Draft202012Validator(schema)


def key_tables():
    subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, "build/rel/tools/config_keys"],
                   check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run([KEYS_TOOL], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["tables"]


def twlb_check(cfg, env):
    """A config (dict) or a config file, checked as on a host where the unit has run
    (the production example keeps its state in /var/lib/twlb)."""
    path = env.write_config(cfg, "check.json") if isinstance(cfg, dict) else cfg
    rc, out, err = h.check_as_installed(path, env)
    return rc == 0, out + err


def good_configs():
    files = sorted(glob.glob(os.path.join(ROOT, "config", "*.json")) +
                   glob.glob(os.path.join(ROOT, "config", "examples", "*.json")))
    return [f for f in files if not f.endswith(".schema.json")]


def test_every_config_passes_the_schema_and_the_loader():
    _, v = validator()
    files = good_configs()
    assert len(files) >= 3, files
    with h.Env() as env:
        for f in files:
            with open(f) as fh:
                errs = [e.message for e in v.iter_errors(json.load(fh))]
            assert not errs, "%s fails the schema: %s" % (f, errs)
            ok, out = twlb_check(f, env)
            assert ok, "%s fails twlb --check:\n%s" % (f, out)


def test_bad_configs_are_rejected_or_listed():
    _, v = validator()
    seen = set()
    for f in sorted(glob.glob(os.path.join(ROOT, "config", "bad", "*.json"))):
        name = os.path.basename(f)
        seen.add(name)
        try:
            with open(f) as fh:
                doc = json.load(fh)
        except ValueError:
            assert name in LOADER_ONLY, "%s is not JSON but not listed" % name
            continue
        errs = list(v.iter_errors(doc))
        if name in SCHEMA_REJECTS:
            assert errs, "the schema accepts %s" % name
        elif name in LOADER_ONLY:
            assert not errs, "the schema rejects %s (%s): move it to SCHEMA_REJECTS" % (
                name, errs[0].message)
        else:
            raise AssertionError("config/bad/%s is in neither list of %s" % (name, __file__))
    assert seen >= SCHEMA_REJECTS | set(LOADER_ONLY), \
        "listed but missing: %s" % sorted((SCHEMA_REJECTS | set(LOADER_ONLY)) - seen)


def resolve(schema, node):
    """<node> with its $ref followed (local keys win, as they annotate the reference)."""
    node = dict(node)
    while "$ref" in node:
        ref = node.pop("$ref")
        assert ref.startswith("#/"), ref
        target = schema
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **node}
    return node


def compare(schema, tables, table, obj, where, visited):
    """The schema object <obj> must describe exactly key table <table>."""
    visited.add(table)
    keys = tables[table]
    assert obj.get("type") == "object", (where, obj.get("type"))
    assert obj.get("additionalProperties") is False, "%s allows unknown keys" % where
    props = obj.get("properties", {})
    names = [k["name"] for k in keys]
    assert sorted(props) == sorted(names), "%s: schema %s, loader %s" % (
        where, sorted(props), sorted(names))
    assert sorted(obj.get("required", [])) == sorted(k["name"] for k in keys if k["required"]), \
        "%s: required differs" % where
    for k in keys:
        at = "%s.%s" % (where, k["name"]) if where else k["name"]
        raw = props[k["name"]]
        p = resolve(schema, raw)
        assert p.get("description"), "%s has no description" % at
        assert p.get("type") == k["type"], (at, p.get("type"), k["type"])
        assert p.get("default") == k.get("default"), "%s: default %r, loader %r" % (
            at, p.get("default"), k.get("default"))
        for bound in ("minimum", "maximum", "minLength", "maxLength", "enum", "pattern"):
            if bound == "pattern" and "pattern" not in k:
                continue  # names and addresses: a $def's pattern, checked by the loader
            assert p.get(bound) == k.get(bound), "%s: %s %r, loader %r" % (
                at, bound, p.get(bound), k.get(bound))
        if k["store"] == "name":
            assert raw.get("$ref") == "#/$defs/name", at
        if k["store"] == "address":
            assert raw.get("$ref") == "#/$defs/address", at
        if k["type"] == "object":
            compare(schema, tables, k["table"], p, at, visited)
        elif k["type"] == "array":
            items = resolve(schema, p["items"])
            assert p.get("minItems") == 1, "%s: the loader wants at least one" % at
            if "table" in k:
                compare(schema, tables, k["table"], items, at + "[]", visited)
            else:
                assert items.get("type") == "string", at


def test_schema_has_exactly_the_loader_keys():
    schema, _ = validator()
    tables = key_tables()
    visited = set()
    compare(schema, tables, "", schema, "", visited)
    assert visited == set(tables), "tables not reached: %s" % (set(tables) - visited)


def table_paths(tables):
    """{table: [(key, is_array), ...]} the first path from the top to each table."""
    paths = {"": []}
    todo = [""]
    while todo:
        t = todo.pop(0)
        for k in tables[t]:
            if "table" in k and k["table"] not in paths:
                paths[k["table"]] = paths[t] + [(k["name"], k["type"] == "array")]
                todo.append(k["table"])
    return paths


BASE = {
    "listeners": [{"name": "l", "bind": "127.0.0.1:18080", "pool": "p"}],
    "pools": [{"name": "p", "inside": ["127.0.0.2"],
               "backends": [{"name": "b", "address": "127.0.1.1:9001"}]}],
}


def with_value(path, key, value):
    cfg = copy.deepcopy(BASE)
    obj = cfg
    for name, is_array in path:
        obj = obj.setdefault(name, [{}] if is_array else {})
        if is_array:
            obj = obj[0]
    obj[key] = value
    if path == [("pools", True)] and key == "name":
        cfg["listeners"][0]["pool"] = value  # the listener names its pool
    if path and path[-1][0] == "health" and key == "timeout_ms":
        obj["interval_ms"] = 3600000  # timeout_ms <= interval_ms (the loader checks)
    if not path and key == "group":
        cfg["user"] = "root"  # "group" needs "user"
    if path == [("listeners", True)] and key == "burst_per_client":
        obj["rate_per_client"] = 1  # a burst needs a rate
    return cfg


# Keys that name accounts of this host: the schema checks their form, `twlb --check`
# also looks them up, so a well-formed name that no account has is its error alone.
ACCOUNT_KEYS = {"user", "group"}


def test_bounds_words_and_defaults_agree_with_the_loader():
    _, v = validator()
    tables = key_tables()
    paths = table_paths(tables)
    cases = []  # (config, what, valid)
    for table, keys in tables.items():
        for k in keys:
            what = "%s%s%s" % (table, "." if table else "", k["name"])
            put = lambda val, t=table, n=k["name"]: with_value(paths[t], n, val)  # noqa: E731
            if "default" in k:
                cases.append((put(k["default"]), "%s = its default %r" % (what, k["default"]), True))
            if k["type"] == ["integer", "string"]:  # a number in bounds or "auto"
                for x, ok in ((k["minimum"], True), (k["maximum"], True), ("auto", True),
                              (k["minimum"] - 1, False), (k["maximum"] + 1, False),
                              ("many", False)):
                    cases.append((put(x), "%s = %r" % (what, x), ok))
            if k["type"] == "integer":
                for x, ok in ((k["minimum"], True), (k["maximum"], True),
                              (k["minimum"] - 1, False), (k["maximum"] + 1, False)):
                    cases.append((put(x), "%s = %d" % (what, x), ok))
            for w in k.get("enum", []):
                cases.append((put(w), "%s = %r" % (what, w), True))
            if "enum" in k:
                cases.append((put("no-such-word"), "%s = 'no-such-word'" % what, False))
            if k["type"] == "string" and "maxLength" in k:
                cases.append((put("x" * k["maxLength"]), "%s at its longest" % what, True))
                cases.append((put("x" * (k["maxLength"] + 1)), "%s too long" % what, False))
            if k["type"] == "string" and k.get("minLength") == 1:
                cases.append((put(""), "%s empty" % what, False))
    assert len(cases) > 80, len(cases)
    with h.Env() as env:
        for cfg, what, valid in cases:
            schema_ok = not list(v.iter_errors(cfg))
            loader_ok, out = twlb_check(cfg, env)
            assert schema_ok == valid, "schema %s %s" % ("rejects" if valid else "accepts", what)
            if valid and what.split(" ")[0] in ACCOUNT_KEYS and not loader_ok:
                assert "no such" in out, out
                continue
            assert loader_ok == valid, "twlb --check %s %s:\n%s" % (
                "rejects" if valid else "accepts", what, out)
