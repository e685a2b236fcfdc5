#!/usr/bin/env python3
"""Bounded client load for the scale tests, run inside the client namespace.

  loadgen.py --vip IP --rate R --duration S [--long N] [--long-life S] [--ping-ms MS]
             [--ping-timeout S] [--short-port P] [--long-port P]

Opens N long connections first (each reads the peer line, then sends "p\\n" every
--ping-ms and expects it echoed within --ping-timeout seconds), then opens short
connections at R per second for S seconds (connect, read the peer line and EOF, 2 s
timeout each).  With --long-life L each long connection is closed by the client after L
seconds (the first ones after L x (i+1)/N, so that they end spread out) and replaced by a
new one at once: N stay open, each lasting L.  Prints one JSON object when done: "start"
(time.time() of the first short connection), "short": a list of [t_offset, node_or_null,
error_or_null, seconds_taken], "long": one record per long connection, [node,
broke_at_offset_or_null, error_or_null, opened_at_offset, ended_at_offset_or_null] (a
connection that could not be opened has node null and an error "open:..."; one the client
closed at the end of its life has ended_at set and no error).  "node" is the inside
address the backend saw."""
import argparse
import asyncio
import json
import sys
import time

TIMEOUT = 2.0


async def one_short(a, out, t0):
    t = time.time() - t0
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(a.vip, a.short_port), TIMEOUT)
        try:
            data = await asyncio.wait_for(r.read(), TIMEOUT)  # to EOF
        finally:
            w.close()
        line = data.decode(errors="replace").strip()
        d = round(time.time() - t0 - t, 4)
        if not line:
            out.append([round(t, 3), None, "empty", d])
        else:
            out.append([round(t, 3), line, None, d])
    except asyncio.TimeoutError:
        out.append([round(t, 3), None, "timeout", round(time.time() - t0 - t, 4)])
    except OSError as e:
        out.append([round(t, 3), None, type(e).__name__, round(time.time() - t0 - t, 4)])


async def one_long(a, rec, ready, stop, t0_box, life=0.0):
    """One long connection, recorded in <rec>; <life> > 0: the client closes it then."""
    now = lambda: round(time.time() - t0_box[0], 3) if t0_box[0] else 0.0  # noqa: E731
    rec[3] = now() if t0_box[0] else -1.0
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(a.vip, a.long_port), TIMEOUT)
        line = await asyncio.wait_for(r.readline(), TIMEOUT)
        rec[0] = line.decode().strip()
    except (OSError, asyncio.TimeoutError) as e:
        rec[1], rec[2] = (now() if t0_box[0] else -1), "open:" + type(e).__name__
        ready.set()
        return False
    ready.set()
    end = time.time() + life if life > 0 else None
    try:
        while not stop.is_set() and (end is None or time.time() < end):
            w.write(b"p\n")
            got = await asyncio.wait_for(r.readline(), a.ping_timeout)
            if got != b"p\n":
                raise ConnectionResetError("eof" if not got else "garbled")
            await asyncio.sleep(a.ping_ms / 1000)
        if end is not None and not stop.is_set():
            rec[4] = now()
    except (OSError, asyncio.TimeoutError) as e:
        rec[1] = now()
        rec[2] = type(e).__name__ + (":" + str(e) if isinstance(e, ConnectionResetError) else "")
    finally:
        w.close()
    return True


async def long_slot(a, i, longs, ready, stop, t0_box):
    """Slot <i> keeps one long connection open: with --long-life, a new one each time the
    last one ended (by its life or broken); the first lives long_life x (i+1)/N."""
    life = a.long_life * (i + 1) / a.long if a.long_life > 0 else 0.0
    first = True
    while True:
        rec = [None, None, None, None, None]
        longs.append(rec)
        ev = ready if first else asyncio.Event()
        await one_long(a, rec, ev, stop, t0_box, life)
        first = False
        if a.long_life <= 0 or stop.is_set():
            return
        if rec[2] is not None:
            await asyncio.sleep(0.1)  # broken or refused: do not spin
        life = a.long_life


async def main(a):
    stop = asyncio.Event()
    t0_box = [0.0]
    longs = []
    tasks = []
    for i in range(a.long):
        ev = asyncio.Event()
        tasks.append(asyncio.ensure_future(long_slot(a, i, longs, ev, stop, t0_box)))
        await ev.wait()
    shorts = []
    first_nodes = [r[0] for r in longs]
    t0 = t0_box[0] = time.time()
    print(json.dumps({"started": t0, "long_nodes": first_nodes}), flush=True)
    pend = set()
    n = int(a.rate * a.duration)
    for i in range(n):
        due = t0 + i / a.rate
        d = due - time.time()
        if d > 0:
            await asyncio.sleep(d)
        pend.add(asyncio.ensure_future(one_short(a, shorts, t0)))
        pend = {p for p in pend if not p.done()}
    if pend:
        await asyncio.wait(pend, timeout=TIMEOUT * 2)
    stop.set()
    await asyncio.wait(tasks, timeout=a.ping_timeout + 2) if tasks else None
    shorts.sort()
    print(json.dumps({"start": t0, "short": shorts, "long": longs}), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--vip", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--long", type=int, default=0)
    ap.add_argument("--long-life", type=float, default=0.0)
    ap.add_argument("--ping-ms", type=int, default=100)
    ap.add_argument("--ping-timeout", type=float, default=1.0)
    ap.add_argument("--short-port", type=int, default=8080)
    ap.add_argument("--long-port", type=int, default=8081)
    a = ap.parse_args()
    a.duration = min(a.duration, 120)
    a.rate = min(a.rate, 2000)
    sys.exit(asyncio.run(main(a)))
