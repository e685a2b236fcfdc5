#!/usr/bin/env python3
"""make lint: the structural rules of lb/ (lb/README.md), checked from the source text.

  (a) no cycle among modules.  A module is foo.c + foo.h in one folder, named by its layer
      path without the extension ("core/portmap"); a header alone (runtime/types.h) is a
      module too.  An edge A -> B is a line `#include "dir/b.h"` in a.c or a.h.
  (b) a layer includes only what lb/README.md allows it:
        core     core only; of the system headers no sockets, netinet, arpa, netdb,
                 linux, libuv, jansson or clocks (time.h, sys/time.h)
        os       core
        config   core, os/log.h
        sim      core, config, os
        runtime  core, os, config
        admin    core, os, config, runtime/view.h (and runtime/types.h, which view.h
                 includes)
        main.c   anything
      (a layer may always include its own folder); quoted includes name the layer path
      ("core/portmap.h", never "portmap.h").
  (c) no file in lb/ (.c, .h) has more than 600 lines.

python3 tests/lint/lint.py [--root DIR]   (DIR holds lb/; default: this repository)
Prints one line per violation, grouped by rule, and exits 1 if there is any; prints
"lint: ok" and exits 0 otherwise.  Python 3 standard library only."""
import argparse
import os
import re
import sys

MAX_LINES = 600

# layer -> what its quoted includes may name: a folder ("core") or one header path.
ALLOWED = {
    "core": {"core"},
    "os": {"os", "core"},
    "config": {"config", "core", "os/log.h"},
    "sim": {"sim", "core", "config", "os"},
    "runtime": {"runtime", "core", "os", "config"},
    "admin": {"admin", "core", "os", "config", "runtime/view.h", "runtime/types.h"},
    "main": None,  # lb/main.c: anything
}

# System headers the pure core may not include (prefix match on the <...> path).
CORE_FORBIDDEN_SYS = ("sys/socket.h", "sys/un.h", "netinet/", "arpa/", "netdb.h", "linux/",
                      "uv.h", "uv/", "jansson.h", "time.h", "sys/time.h", "sys/timerfd.h")

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def layer_of(rel):
    """The layer of lb/<rel>: its first folder, "main" for lb/main.c, None for a file
    directly in lb/ that is not main.c."""
    parts = rel.split("/")
    if len(parts) == 1:
        return "main" if parts[0] == "main.c" else None
    return parts[0]


def module_of(rel):
    """The module of a file: foo.c and foo.h are module foo; a private header foo_int.h
    (the inside of one module, shared by its files) is module foo too."""
    base = os.path.splitext(rel)[0]
    return base[:-4] if rel.endswith("_int.h") else base


def sources(lb):
    """Every .c and .h under <lb>, as paths relative to it, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(lb):
        dirnames.sort()
        for f in filenames:
            if f.endswith((".c", ".h")):
                out.append(os.path.relpath(os.path.join(dirpath, f), lb).replace(os.sep, "/"))
    return sorted(out)


def includes(path):
    """[(line number, "<" or '"', included path)] of one file."""
    out = []
    with open(path, errors="replace") as f:
        for i, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if m:
                out.append((i, m.group(1), m.group(2)))
    return out


def allowed(layer, target):
    rules = ALLOWED.get(layer)
    if rules is None:
        return True
    return target in rules or target.split("/")[0] in rules


def find_cycles(edges):
    """Every elementary cycle reachable as a strongly connected component, reported as
    one cycle per component: [[m1, m2, ..., m1], ...].  <edges>: module -> set of
    modules."""
    index, low, on, stack, comps = {}, {}, set(), [], []
    counter = [0]

    def strong(v):  # Tarjan, recursive: the module graph is small
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                comps.append(set(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    cycles = []
    for comp in comps:
        # one concrete cycle inside the component: shortest path back to the start
        start = min(comp)
        prev, frontier, found = {start: None}, [start], None
        while frontier and not found:
            nxt = []
            for v in frontier:
                for w in sorted(edges.get(v, ())):
                    if w == start:
                        found = v
                        break
                    if w in comp and w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found:
                    break
            frontier = nxt
        path = [start]
        v = found
        while v is not None and v != start:
            path.append(v)
            v = prev[v]
        path = [start] + list(reversed(path[1:])) + [start]
        cycles.append(path)
    return sorted(cycles)


def lint(root):
    """The violations under <root>/lb as (rule, message) pairs."""
    lb = os.path.join(root, "lb")
    if not os.path.isdir(lb):
        return [("setup", "%s: no lb/ folder" % root)]
    problems = []
    edges = {}
    where = {}  # (from module, to module) -> first "file:line" of the include
    for rel in sources(lb):
        path = os.path.join(lb, rel)
        layer = layer_of(rel)
        mod = module_of(rel)
        edges.setdefault(mod, set())
        with open(path, errors="replace") as f:
            n = sum(1 for _ in f)
        if n > MAX_LINES:
            problems.append(("c", "lb/%s: %d lines, more than %d: split it" % (rel, n, MAX_LINES)))
        for line, kind, target in includes(path):
            at = "lb/%s:%d" % (rel, line)
            if kind == "<":
                if layer == "core" and target.startswith(CORE_FORBIDDEN_SYS):
                    problems.append(("b", "%s: core includes <%s>: the core is pure (no "
                                     "sockets, libuv, jansson or clocks)" % (at, target)))
                continue
            if "/" not in target:
                problems.append(("b", '%s: "%s": include headers by layer path '
                                 '("dir/%s")' % (at, target, target)))
                continue
            if layer is None:
                problems.append(("b", "%s: a file directly in lb/ other than main.c" % at))
            elif not allowed(layer, target):
                may = ", ".join(sorted(ALLOWED[layer] - {layer}))
                problems.append(("b", '%s: %s includes "%s"; %s may include %s' % (
                    at, layer, target, layer, may or "nothing else")))
            to = module_of(target)
            if to != mod and mod != "main":
                edges[mod].add(to)
                where.setdefault((mod, to), at)
    for cyc in find_cycles(edges):
        steps = ", ".join("%s -> %s (%s)" % (a, b, where.get((a, b), "?"))
                          for a, b in zip(cyc, cyc[1:]))
        problems.append(("a", "cycle: %s\n    %s" % (" -> ".join(cyc), steps)))
    return problems


TITLES = {
    "a": "modules that include each other in a circle",
    "b": "includes a layer may not make (lb/README.md)",
    "c": "files longer than %d lines" % MAX_LINES,
    "setup": "setup",
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.abspath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..")),
        help="the folder holding lb/ (default: this repository)")
    args = ap.parse_args(argv)
    problems = lint(args.root)
    if not problems:
        print("lint: ok")
        return 0
    for rule in ("setup", "a", "b", "c"):
        mine = [m for r, m in problems if r == rule]
        if mine:
            print("lint (%s) %s:" % (rule, TITLES[rule]))
            for m in mine:
                print("  " + m)
    print("lint: %d problem%s" % (len(problems), "" if len(problems) == 1 else "s"))
    return 1


if __name__ == "__main__":
    sys.exit(main())
