#!/usr/bin/env python3
"""Idle connections through a proxy, for the RSS column of `make bench`.

    idleconns.py PROXY_IP:PORT BACKEND_IP:PORT N SRC_IP...

Opens N connections to the proxy (round robin over the source addresses), waits until
this namespace shows N established connections to the backend (the proxy connected
through), prints "fresh <established>" and waits for a line on stdin (the caller
measures).  Then sends 16 bytes on every connection, reads the 16-byte echo back,
prints "exchanged <ok>" and waits for a line again; then closes everything, prints
"closed" and exits.  Every wait is bounded (30 s).  Python standard library only.
"""
import selectors
import socket
import struct
import sys
import time

WAIT_S = 30
MSG = b"0123456789abcde\n"
BATCH = 250


def hexaddr(ip, port):
    """The /proc/net/tcp spelling of ip:port (address in host byte order, x86)."""
    return "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(ip))[0], port)


def established_to(ip, port):
    want = hexaddr(ip, port)
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[2] == want and parts[3] == "01":
                n += 1
    return n


def main():
    pip, pport = sys.argv[1].rsplit(":", 1)
    bip, bport = sys.argv[2].rsplit(":", 1)
    n = int(sys.argv[3])
    srcs = sys.argv[4:]
    sel = selectors.DefaultSelector()
    socks = []
    deadline = time.monotonic() + WAIT_S
    for i in range(0, n, BATCH):  # in batches: no listen queue overflows
        for j in range(i, min(n, i + BATCH)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((srcs[j % len(srcs)], 0))
            s.setblocking(False)
            s.connect_ex((pip, int(pport)))
            socks.append(s)
            sel.register(s, selectors.EVENT_WRITE)
        pending = len(sel.get_map())
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(1):
                sel.unregister(key.fileobj)
                pending -= 1
        for s in socks[i:]:
            try:
                sel.unregister(s)
            except KeyError:
                pass
        while established_to(bip, int(bport)) < len(socks) and time.monotonic() < deadline:
            time.sleep(0.01)
    while established_to(bip, int(bport)) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    print("fresh", established_to(bip, int(bport)), flush=True)
    sys.stdin.readline()

    got = {}
    for s in socks:
        try:
            s.send(MSG)
            got[s] = b""
            sel.register(s, selectors.EVENT_READ)
        except OSError:
            pass
    deadline = time.monotonic() + WAIT_S
    left = len(got)
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(1):
            s = key.fileobj
            try:
                d = s.recv(64)
            except OSError:
                d = b""
            got[s] += d
            if not d or len(got[s]) >= len(MSG):
                sel.unregister(s)
                left -= 1
    ok = sum(1 for v in got.values() if v == MSG)
    time.sleep(1)
    print("exchanged", ok, flush=True)
    sys.stdin.readline()
    for s in socks:
        s.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
