#!/usr/bin/env python3
"""An open-loop client for the queue tests: starts --count connections at --rate per
second whatever happens to the earlier ones (one thread each), each uploading BYTES then
a newline and reading the reply to EOF (the backend closes first).  Prints one JSON
object: per connection ok, start offset, seconds, first reply line.  Bounded: at most
--count connections and --timeout seconds each.  Runs inside a test netns."""
import argparse
import json
import threading
import time

from upload_once import upload_once

p = argparse.ArgumentParser()
p.add_argument("--connect", required=True)
p.add_argument("--count", type=int, required=True)
p.add_argument("--rate", type=float, required=True)
p.add_argument("--upload", type=int, default=0)
p.add_argument("--timeout", type=float, default=10.0)
a = p.parse_args()
assert 0 < a.count <= 1000 and a.rate > 0 and a.timeout <= 60
host, port = a.connect.rsplit(":", 1)
results = [None] * a.count


def one(i, start):
    t0 = time.monotonic()
    r = {"at": round(t0 - start, 4), "s": 0.0, **upload_once(host, port, a.upload, a.timeout)}
    r["s"] = round(time.monotonic() - t0, 4)
    results[i] = r


start = time.monotonic()
threads = []
for i in range(a.count):
    delay = start + i / a.rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    th = threading.Thread(target=one, args=(i, start), daemon=True)
    th.start()
    threads.append(th)
for th in threads:
    th.join(a.timeout * 3 + 5)
print(json.dumps({"results": [r or {"ok": False, "error": "unfinished"} for r in results],
                  "seconds": round(time.monotonic() - start, 3)}))
