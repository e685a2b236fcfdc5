#!/usr/bin/env python3
"""A bounded client for the reuse-engine tests: N connections in a row (or spread over
--parallel threads, each in a row), each uploading BYTES then a newline, reading the
reply to EOF (the backend closes first).  Prints one JSON object: per connection ok,
seconds, first reply line.  Runs inside a test netns."""
import argparse
import json
import sys
import threading
import time

from upload_once import upload_once

p = argparse.ArgumentParser()
p.add_argument("--connect", required=True)
p.add_argument("--count", type=int, required=True)
p.add_argument("--upload", type=int, default=0)
p.add_argument("--pause-ms", type=int, default=0, help="pause after a failed connection")
p.add_argument("--timeout", type=float, default=5.0)
p.add_argument("--parallel", type=int, default=1, help="threads, each running its share")
a = p.parse_args()
host, port = a.connect.rsplit(":", 1)
results = []
lock = threading.Lock()
deadline = time.monotonic() + 300  # the whole run is bounded too


def one():
    t0 = time.monotonic()
    r = {"s": 0.0, **upload_once(host, port, a.upload, a.timeout)}
    r["s"] = round(time.monotonic() - t0, 4)
    with lock:
        results.append(r)
    if not r["ok"] and a.pause_ms:
        time.sleep(a.pause_ms / 1000)  # pacing, asked for by the test (--pause-ms)


def run(n):
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        one()


count = min(a.count, 10000)
par = max(1, min(a.parallel, 64))
threads = [threading.Thread(target=run, args=(count // par + (i < count % par),))
           for i in range(par)]
for th in threads:
    th.start()
for th in threads:
    th.join()
json.dump({"results": results}, sys.stdout)
