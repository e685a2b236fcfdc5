#!/usr/bin/env python3
"""make soak: --connections checksummed connections of mixed sizes (1 B .. 4 MiB) through
twlb to echo backends, with a SIGHUP every --reload-every seconds.  Each client sends its
payload, half-closes, reads the echo to EOF and compares length and BLAKE2b digest with
what it sent.  At the end: 0 bytes lost or corrupted, 0 failed connections, and twlb's
RSS and descriptors flat (compared with a baseline taken after a warm-up).  Starting new
connections stops at --max-seconds (said so in the report).  Loopback only; several
127.x client and inside addresses.  Prints one JSON report last; exit 1 on any failure."""
import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as h  # noqa: E402

BLOCK = os.urandom(8 << 20)  # payloads are slices of this, at a random offset


def size_of(rng):
    r = rng.random()
    if r < 0.70:
        return rng.randint(1, 1024)
    if r < 0.95:
        return rng.randint(1025, 64 << 10)
    if r < 0.999:
        return rng.randint((64 << 10) + 1, 1 << 20)
    return rng.randint((1 << 20) + 1, 4 << 20)


async def one(addr, src, rng, res):
    size = size_of(rng)
    off = rng.randint(0, len(BLOCK) - size)
    payload = memoryview(BLOCK)[off:off + size]
    sent = hashlib.blake2b(payload, digest_size=16).digest()
    host, port = addr
    s = socket.socket()
    s.setsockopt(socket.SOL_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
    s.bind((src, 0))
    s.setblocking(False)
    got = hashlib.blake2b(digest_size=16)
    n = 0
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(s, (host, port)), 10)
        reader, writer = await asyncio.open_connection(sock=s)

        async def send():
            for i in range(0, size, 1 << 16):
                writer.write(payload[i:i + (1 << 16)])
                await writer.drain()
            writer.write_eof()

        async def recv():
            nonlocal n
            while True:
                d = await reader.read(1 << 16)
                if not d:
                    return
                got.update(d)
                n += len(d)

        await asyncio.wait_for(asyncio.gather(send(), recv()), 60)
        writer.close()
        if n != size or got.digest() != sent:
            res["corrupt" if n == size else "short"] += 1
            res["bytes_lost"] += abs(size - n)
        else:
            res["ok"] += 1
    except Exception as e:  # noqa: BLE001 - every failure is counted, by kind
        res["failed"] += 1
        res["errors"][type(e).__name__] = res["errors"].get(type(e).__name__, 0) + 1
        res["bytes_lost"] += size - n
        s.close()
    res["bytes"] += size


async def worker_main(addr, sources, count, concurrency, seed, deadline, progress):
    rng = random.Random(seed)
    res = {"ok": 0, "failed": 0, "short": 0, "corrupt": 0, "bytes": 0, "bytes_lost": 0,
           "errors": {}, "started": 0, "capped": False}
    sem = asyncio.Semaphore(concurrency)
    tasks = set()
    for i in range(count):
        if time.time() > deadline:
            res["capped"] = True
            break
        await sem.acquire()
        res["started"] += 1
        t = asyncio.ensure_future(one(addr, sources[i % len(sources)], random.Random(rng.random()), res))
        t.add_done_callback(lambda _t: (sem.release(), tasks.discard(_t)))
        tasks.add(t)
        if i % 1000 == 0:
            progress.value = res["ok"] + res["failed"]
    await asyncio.gather(*tasks)
    progress.value = res["ok"] + res["failed"]
    return res


def proc_entry(addr, sources, count, concurrency, seed, deadline, progress, out):
    out.put(asyncio.run(worker_main(addr, sources, count, concurrency, seed, deadline,
                                    progress)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=1000000)
    ap.add_argument("--max-seconds", type=float, default=3600)
    ap.add_argument("--reload-every", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=64, help="per client process")
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--warmup-seconds", type=float, default=150,
                    help="baseline after this long (capped at half the run): twlb's port "
                         "table fills over two TIME_WAIT periods (60 s each) and then stays")
    a = ap.parse_args()
    n = 200  # a test net of its own: 127.200.0.0/16
    with h.Env() as env:
        bs = [env.backend("b%d" % i, "127.%d.1.%d:0" % (n, i), "echo", "--quiet")
              for i in (1, 2, 3)]
        cfg = h.pool_config(n, [{"name": "b%d" % i, "address": b.addr}
                                for i, b in zip((1, 2, 3), bs)],
                            health={"interval_ms": 1000, "timeout_ms": 500})
        cfg["pools"][0]["inside"] = ["127.%d.4.%d" % (n, i) for i in range(1, 9)]
        cfg["pools"][0]["source_ports"] = "10000-32000"
        cfg["log"]["level"] = "warn"
        p = env.twlb(cfg)
        addr = h.split_addr(h.listen_addr(cfg))
        admin = h.admin_addr(cfg)
        sources = ["127.%d.5.%d" % (n, i) for i in range(1, 17)]
        t0 = time.time()
        deadline = t0 + a.max_seconds
        out = mp.Queue()
        progress, procs = [], []
        for k in range(a.procs):
            share = a.connections // a.procs + (1 if k < a.connections % a.procs else 0)
            v = mp.Value("q", 0)
            progress.append(v)
            pr = mp.Process(target=proc_entry, args=(addr, sources[k::a.procs], share,
                                                     a.concurrency, 1000 + k, deadline, v, out))
            pr.start()
            procs.append(pr)
        reloads, base, last_reload, last_print = 0, None, time.time(), 0
        while any(pr.is_alive() for pr in procs):
            time.sleep(0.2)
            assert p.poll() is None, "twlb died:\n" + open(p.log_path).read()[-3000:]
            now = time.time()
            done = sum(v.value for v in progress)
            if now - last_reload >= a.reload_every:
                p.send_signal(signal.SIGHUP)
                reloads += 1
                last_reload = now
            if base is None and (now - t0 >= min(a.warmup_seconds, a.max_seconds / 2)
                                 or done >= a.connections // 2):
                base = {"rss_kb": h.proc_rss_kb(p.pid), "fds": h.proc_fds(p.pid),
                        "at_connections": done, "at_seconds": round(now - t0)}
            if now - last_print >= 10:
                last_print = now
                print("soak: %.0f s, %d done (%.0f/s), %d reloads, twlb RSS %d kB, fds %d" % (
                    now - t0, done, done / (now - t0), reloads, h.proc_rss_kb(p.pid),
                    h.proc_fds(p.pid)), file=sys.stderr, flush=True)
            if now > deadline + 120:
                for pr in procs:
                    pr.kill()
                break
        results = [out.get(timeout=30) for _ in procs]
        for pr in procs:
            pr.join(5)
        elapsed = time.time() - t0
        h.wait_for(lambda: h.metric(h.metrics(admin), "twlb_sessions_active") == 0, 30,
                   "every session to end")
        time.sleep(2.5)  # two housekeeping ticks
        end = {"rss_kb": h.proc_rss_kb(p.pid), "fds": h.proc_fds(p.pid)}
        ms = h.metrics(admin)
        tot = {k: sum(r[k] for r in results) for k in
               ("ok", "failed", "short", "corrupt", "bytes", "bytes_lost", "started")}
        errors = {}
        for r in results:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        rc = h.stop(p, timeout=10)
        base = base or end
        report = dict(tot, errors=errors, asked=a.connections,
                      capped=any(r["capped"] for r in results), seconds=round(elapsed, 1),
                      rate_per_s=round(tot["ok"] / elapsed, 1), reloads=reloads,
                      baseline=base, end=end, twlb_exit=rc,
                      no_backend=h.metric(ms, "twlb_no_backend_total"),
                      local_errors=h.metric(ms, "twlb_local_errors_total"),
                      mib=round(tot["bytes"] / 2 ** 20, 1))
        print(json.dumps(report), flush=True)
        bad = []
        if tot["failed"] or tot["short"] or tot["corrupt"] or tot["bytes_lost"]:
            bad.append("lost or failed connections")
        if tot["ok"] != tot["started"]:
            bad.append("not every started connection succeeded")
        if end["fds"] > base["fds"]:
            bad.append("descriptors grew %d -> %d" % (base["fds"], end["fds"]))
        if end["rss_kb"] > base["rss_kb"] * 1.10 + 2048:
            bad.append("RSS grew %d -> %d kB" % (base["rss_kb"], end["rss_kb"]))
        if rc != 0:
            bad.append("twlb exit %s" % rc)
        print("soak: %s: %d connections (%s), %.1f MiB, %d reloads, %.0f/s%s" % (
            "FAIL " + "; ".join(bad) if bad else "PASS", tot["ok"],
            "capped at %.0f s" % a.max_seconds if report["capped"] else "all asked",
            report["mib"], reloads, report["rate_per_s"], ""), flush=True)
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
