#!/usr/bin/env python3
"""Self-test of tests/lint/lint.py on small lb/ trees made in a temp dir: a clean tree
passes; a cycle, a forbidden include and a long file each fail with a message that names
them.  Runs lint.py as `make lint` does (a subprocess), so the exit code is tested too."""
import os
import subprocess
import sys
import tempfile
import unittest

LINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lint.py")

# A tree that follows every rule: each layer includes only what it may.
CLEAN = {
    "core/portmap.h": '#include <stdint.h>\n#include "core/isn.h"\n',
    "core/portmap.c": '#include <string.h>\n#include "core/portmap.h"\n',
    "core/isn.h": "#include <stdint.h>\n",
    "core/isn.c": '#include "core/isn.h"\n',
    "os/log.h": '#include "core/isn.h"\n',
    "os/log.c": '#include <time.h>\n#include <sys/socket.h>\n#include "os/log.h"\n',
    "config/config.h": '#include "core/portmap.h"\n',
    "config/config.c": '#include <jansson.h>\n#include "config/config.h"\n#include "os/log.h"\n',
    "sim/simulate.c": '#include "sim/simulate.h"\n#include "config/config.h"\n'
                      '#include "os/log.h"\n',
    "sim/simulate.h": '#include "core/isn.h"\n',
    "runtime/types.h": '#include "config/config.h"\n',
    "runtime/view.h": '#include "runtime/types.h"\n',
    "runtime/server.c": '#include <uv.h>\n#include "runtime/view.h"\n#include "os/log.h"\n',
    "runtime/server.h": '#include "runtime/types.h"\n',
    "admin/admin.c": ' # include "admin/admin.h"\n#include "runtime/view.h"\n'
                     '#include "runtime/types.h"\n#include "config/config.h"\n',
    "admin/admin.h": '#include "core/isn.h"\n',
    "main.c": '#include "admin/admin.h"\n#include "runtime/server.h"\n#include "sim/simulate.h"\n',
}


def run_lint(files):
    """Write <files> (path under lb/ -> text) to a temp tree; run lint.py on it."""
    with tempfile.TemporaryDirectory(prefix="twlb-lint-") as root:
        for rel, text in files.items():
            path = os.path.join(root, "lb", rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        r = subprocess.run([sys.executable, LINT, "--root", root], capture_output=True,
                           text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def tree(changes):
    """CLEAN with some files (path under lb/ -> text) replaced or added."""
    files = dict(CLEAN)
    files.update(changes)
    return files


class Lint(unittest.TestCase):
    def fails(self, files, *expect):
        rc, out = run_lint(files)
        self.assertEqual(rc, 1, out)
        for e in expect:
            self.assertIn(e, out)
        return out

    def test_clean_tree_passes(self):
        rc, out = run_lint(CLEAN)
        self.assertEqual(rc, 0, out)
        self.assertIn("lint: ok", out)

    def test_exactly_600_lines_passes(self):
        rc, out = run_lint(tree({"core/isn.c": '#include "core/isn.h"\n' + "x\n" * 599}))
        self.assertEqual(rc, 0, out)

    def test_cycle_fails_and_is_printed(self):
        # within one layer, so that only rule (a) can fire
        out = self.fails(tree({"core/isn.c": '#include "core/isn.h"\n#include "core/portmap.h"\n'}),
                         "lint (a)", "cycle: core/isn -> core/portmap -> core/isn",
                         "lb/core/isn.c:2", "lb/core/portmap.h:2")
        self.assertNotIn("lint (b)", out)
        self.assertNotIn("lint (c)", out)

    def test_private_header_belongs_to_its_module(self):
        # runtime/session_int.h is the inside of runtime/session: no cycle with it, but a
        # third module that session includes and that includes the private header is one
        ok = tree({"runtime/session.c": '#include "runtime/session.h"\n'
                                        '#include "runtime/session_int.h"\n',
                   "runtime/session_int.h": '#include "runtime/session.h"\n',
                   "runtime/pump.c": '#include "runtime/session_int.h"\n'})
        rc, out = run_lint(ok)
        self.assertEqual(rc, 0, out)
        self.fails(tree({"runtime/session.c": '#include "runtime/session_int.h"\n'
                                              '#include "runtime/pump.h"\n',
                         "runtime/session_int.h": '#include "runtime/session.h"\n',
                         "runtime/pump.c": '#include "runtime/session_int.h"\n'}),
                   "cycle: runtime/pump -> runtime/session -> runtime/pump")

    def test_longer_cycle_through_layers(self):
        # os -> config -> ... -> os: both a cycle and a forbidden include
        self.fails(tree({"os/log.c": '#include "os/log.h"\n#include "config/config.h"\n',
                        "config/config.h": '#include "os/log.h"\n'}),
                   "lint (a)", "cycle: config/config -> os/log -> config/config",
                   'lb/os/log.c:2: os includes "config/config.h"')

    def test_forbidden_layer_include_fails(self):
        for rel, text, msg in (
                ("core/isn.c", '#include "os/log.h"\n', 'core includes "os/log.h"'),
                ("os/log.c", '#include "runtime/view.h"\n', 'os includes "runtime/view.h"'),
                ("config/config.c", '#include "os/statefile.h"\n',
                 'config includes "os/statefile.h"'),
                ("sim/simulate.c", '#include "runtime/types.h"\n', 'sim includes "runtime/types.h"'),
                ("runtime/server.c", '#include "admin/admin.h"\n', 'runtime includes "admin/admin.h"'),
                ("admin/admin.c", '#include "runtime/server.h"\n',
                 'admin includes "runtime/server.h"'),
                ("core/isn.h", '#include "isn.h"\n', "include headers by layer path")):
            with self.subTest(rel=rel):
                out = self.fails(tree({rel: text}), "lint (b)", msg)
                self.assertNotIn("lint (c)", out)

    def test_core_system_headers(self):
        for header in ("sys/socket.h", "netinet/in.h", "arpa/inet.h", "uv.h", "jansson.h",
                       "time.h", "sys/time.h"):
            with self.subTest(header=header):
                self.fails(tree({"core/isn.c": "#include <%s>\n" % header}),
                           "lint (b)", "core includes <%s>" % header)

    def test_main_may_include_anything(self):
        rc, out = run_lint(tree({"main.c": '#include "runtime/session.h"\n#include <uv.h>\n'}))
        self.assertEqual(rc, 0, out)

    def test_long_file_fails(self):
        self.fails(tree({"runtime/server.c": '#include "runtime/server.h"\n' + "x\n" * 600}),
                   "lint (c)", "lb/runtime/server.c: 601 lines, more than 600")

    def test_no_lb_folder(self):
        with tempfile.TemporaryDirectory() as root:
            r = subprocess.run([sys.executable, LINT, "--root", root], capture_output=True,
                               text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no lb/ folder", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=1)
