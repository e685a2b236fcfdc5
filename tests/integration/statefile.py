"""The state file of twlb (version 2, lb/os/statefile_int.h) read and edited from the
tests: the header, each path's segment and the 32-byte slot of every port, with the
checks recomputed on every edit.  Native (little-endian) byte order, as on the test
machines.  Also the version 1 JSON file of twlb 0.1, to test its import."""
import json
import struct
import time

HEADER = struct.Struct("<8sIIQQQQII" "IIII16sQQQI")  # 116 bytes; the header is 4096
SEGMENT = struct.Struct("<4sIQII" "ii16s16sI72s72s44x")  # 256
SLOT = struct.Struct("<BBHIIiQQ")  # 32
HEADER_BYTES, FIXED = 4096, 56
STATES = {0: "free", 1: "busy", 2: "remote_time_wait", 3: "local_time_wait", 4: "quarantined"}
F_ISN_KNOWN, F_TIMESTAMPS, F_UNKNOWN = 0x10, 0x20, 0x40
M64 = (1 << 64) - 1


def fnv32(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def slot_check(state, rcv_nxt, nbytes, clock_us, until_ms, syn_real_ns):
    """core/portstate.c: check_of()."""
    h = 0x9e3779b97f4a7c15 ^ state
    h = ((h ^ rcv_nxt) * 0xff51afd7ed558ccd) & M64
    h = ((h ^ nbytes ^ ((clock_us & 0xFFFFFFFF) << 32)) * 0xc4ceb9fe1a85ec53) & M64
    h = ((h ^ until_ms) * 0xff51afd7ed558ccd) & M64
    h = ((h ^ syn_real_ns) * 0xc4ceb9fe1a85ec53) & M64
    h ^= h >> 29
    c = (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) & 0xFFFF
    return c or 1


class Slot:
    def __init__(self, raw):
        (self.seq, self.state_byte, self.check, self.rcv_nxt, self.bytes, self.clock_us,
         self.until_ms, self.syn_real_ns) = SLOT.unpack(raw)

    @property
    def state(self):
        return STATES.get(self.state_byte & 7, "?")

    @property
    def isn_known(self):
        return bool(self.state_byte & F_ISN_KNOWN)

    @property
    def unknown(self):
        return bool(self.state_byte & F_UNKNOWN)

    def pack(self):
        if self.state_byte:
            self.check = slot_check(self.state_byte, self.rcv_nxt, self.bytes, self.clock_us,
                                    self.until_ms, self.syn_real_ns)
        return SLOT.pack(self.seq, self.state_byte, self.check, self.rcv_nxt, self.bytes,
                         self.clock_us, self.until_ms, self.syn_real_ns)


class Segment:
    def __init__(self, data, off):
        (magic, self.check, self.size, self.lo, self.hi, self.backend_family,
         self.inside_family, self.backend_addr, self.inside_addr, self.backend_port,
         pool, backend) = SEGMENT.unpack_from(data, off)
        assert magic == b"path", (off, magic)
        self.off = off
        self.pool = pool.split(b"\0")[0].decode()
        self.backend = backend.split(b"\0")[0].decode()

    def slot_off(self, port):
        assert self.lo <= port <= self.hi, port
        return self.off + SEGMENT.size + (port - self.lo) * SLOT.size


class StateFile:
    """The file at <path>, read whole; save() writes the edits back in place."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = bytearray(f.read())
        (self.magic, self.version, self.byte_order, self.alive_real_ms, self.alive_mono_ms,
         self.alive_boot_ms, self.end, self.clean, self.pid, _hb, _sb, _slb,
         self.boot_id_known, self.boot_id, self.clock_base_ns, self.risk_from_real_ms,
         self.created_real_ms, self.check) = HEADER.unpack_from(self.data, 0)
        assert self.magic == b"twlbstat" and self.version == 2, (self.magic, self.version)
        self.segments = []
        off = HEADER_BYTES
        while off < self.end:
            s = Segment(self.data, off)
            self.segments.append(s)
            off += s.size

    def slot(self, seg, port):
        return Slot(bytes(self.data[seg.slot_off(port):seg.slot_off(port) + SLOT.size]))

    def put(self, seg, port, slot):
        self.data[seg.slot_off(port):seg.slot_off(port) + SLOT.size] = slot.pack()

    def records(self):
        """[(segment, port, Slot)] of every slot that is not empty."""
        out = []
        for s in self.segments:
            for port in range(s.lo, s.hi + 1):
                sl = self.slot(s, port)
                if sl.state_byte or sl.seq & 1:
                    out.append((s, port, sl))
        return out

    def by_state(self):
        n = {}
        for _, _, sl in self.records():
            key = sl.state + ("/unknown" if sl.unknown else "")
            n[key] = n.get(key, 0) + 1
        return n

    def set_header(self, **kw):
        """Change header fields: alive_real_ms, alive_mono_ms, alive_boot_ms, clean (not
        checked), boot_id, boot_id_known, risk_from_real_ms (checked: recomputed)."""
        for k, v in kw.items():
            setattr(self, k, v)
        HEADER.pack_into(self.data, 0, self.magic, self.version, self.byte_order,
                         self.alive_real_ms, self.alive_mono_ms, self.alive_boot_ms, self.end,
                         self.clean, self.pid, HEADER_BYTES, SEGMENT.size, SLOT.size,
                         self.boot_id_known, self.boot_id, self.clock_base_ns,
                         self.risk_from_real_ms, self.created_real_ms, 0)
        self.check = fnv32(self.data[FIXED:112])
        struct.pack_into("<I", self.data, 112, self.check)

    def save(self):
        with open(self.path, "r+b") as f:
            f.write(self.data)


def skew_rcv_nxt(path):
    """Move every remembered rcv_nxt by 2^31, so the ISNs twlb picks "after" it are
    "before" for the backend.  Returns the number of records changed."""
    sf = StateFile(path)
    n = 0
    for seg, port, sl in sf.records():
        if sl.isn_known:
            sl.rcv_nxt = (sl.rcv_nxt + (1 << 31)) % (1 << 32)
            sf.put(seg, port, sl)
            n += 1
    sf.save()
    return n


def write_v1(path, entries, written_unix_ms=None):
    """twlb 0.1's JSON state file."""
    if written_unix_ms is None:
        written_unix_ms = int(time.time() * 1000)
    with open(path, "w") as f:
        json.dump({"version": 1, "written_unix_ms": written_unix_ms, "entries": entries}, f)
