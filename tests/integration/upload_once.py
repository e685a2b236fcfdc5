"""One connection of the bounded test clients (reuse_client.py, openloop_client.py):
upload <upload> bytes and a newline, read the reply to EOF (the backend closes first).
Returns {"ok", "first" (the reply's first line), "error" (when it failed)}."""
import socket

CHUNK = b"x" * 65536


def upload_once(host, port, upload, timeout):
    r = {"ok": False, "first": ""}
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            left = upload
            while left > 0:
                n = min(left, len(CHUNK))
                s.sendall(CHUNK[:n])
                left -= n
            s.sendall(b"\n")
            got = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
            r["first"] = got.split(b"\n", 1)[0].decode(errors="replace")
            r["ok"] = len(got) > 0
    except OSError as e:
        r["error"] = type(e).__name__ + ": " + str(e)
    return r
