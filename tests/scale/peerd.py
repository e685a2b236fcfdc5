#!/usr/bin/env python3
"""A backend for the scale tests that says who connected: every connection gets one
line, the peer's IP address (the twlb node's inside address), then

  --short PORT   the backend closes first (it keeps the TIME_WAIT, as twlb's reuse
                 engine expects);
  --long PORT    echoes whatever it receives until the client closes.

Prints "peerd listening" once both listeners are up.  Bounded by --lifetime seconds."""
import argparse
import asyncio
import sys


async def short(reader, writer):
    ip = writer.get_extra_info("peername")[0]
    writer.write(("%s\n" % ip).encode())
    try:
        await writer.drain()
    finally:
        writer.close()


async def long(reader, writer):
    ip = writer.get_extra_info("peername")[0]
    writer.write(("%s\n" % ip).encode())
    try:
        while True:
            d = await reader.read(4096)
            if not d:
                break
            writer.write(d)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def main(a):
    await asyncio.start_server(short, a.addr, a.short, backlog=1024, reuse_address=True)
    await asyncio.start_server(long, a.addr, a.long, backlog=1024, reuse_address=True)
    print("peerd listening", flush=True)
    await asyncio.sleep(a.lifetime)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--short", type=int, default=9000)
    ap.add_argument("--long", type=int, default=9001)
    ap.add_argument("--lifetime", type=float, default=600)
    sys.exit(asyncio.run(main(ap.parse_args())))
