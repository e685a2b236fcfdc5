#!/usr/bin/env bash
# Two twlb builds side by side: the same backends, the same load generator (twstress),
# interleaved rounds, so a change can be checked for a slowdown.
#
#   tests/bench/ab.sh OLD_TWLB NEW_TWLB        (ROUNDS=3 DURATION=8 CONC=64)
#
# Prints per round and in total: short connections per second (backend closes first,
# 64-byte reply), bulk Gbit/s (one 256 MiB stream), and the proxy's CPU microseconds per
# short connection.  Addresses: 127.0.8.0/24 only.  Everything started here is stopped by
# PID on exit.
set -euo pipefail
ulimit -n 65536 2>/dev/null || true
cd "$(dirname "$0")/../.."
A=$1 B=$2
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-8} CONC=${CONC:-64} BULK_MB=${BULK_MB:-256}
work=$(mktemp -d /tmp/twlb-ab.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
BE=127.0.8.1
./backends/twbackend --listen $BE:9000 --name short --mode close-first --reply-bytes 64 >/dev/null &
pids+=($!)
./backends/twbackend --listen $BE:9001 --name bulk --mode bulk --send-bytes $((BULK_MB * 1048576)) >/dev/null &
pids+=($!)
start() { # name binary listen-ip inside-ip
    cat > "$work/$1.json" <<JSON
{ "listeners": [ { "name": "short", "bind": "$3:8080", "pool": "short" },
                 { "name": "bulk", "bind": "$3:8081", "pool": "bulk" } ],
  "pools": [
    { "name": "short", "inside": ["$4"], "source_ports": "20000-59999",
      "backends": [ { "name": "b", "address": "$BE:9000" } ] },
    { "name": "bulk", "inside": ["$4"], "source_ports": "10000-19999",
      "backends": [ { "name": "b", "address": "$BE:9001" } ] } ],
  "reuse": { "isn": "auto" }, "log": { "level": "warn" } }
JSON
    "$2" -c "$work/$1.json" &
    pids+=($!)
    eval "PID_$1=$!"
}
start a "$A" 127.0.8.2 127.0.8.10
start b "$B" 127.0.8.3 127.0.8.11
sleep 1
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, clock ticks
TCK=$(getconf CLK_TCK)
round() { # name ip
    local pid; eval "pid=\$PID_$1"
    local c0; c0=$(cpu "$pid")
    ./tests/stress/twstress --connect "$2:8080" --concurrency "$CONC" --duration "$DURATION" \
        --close server --expect-bytes 64 --json --bind 127.0.8.20 --bind 127.0.8.21 \
        > "$work/s.json"
    local c1; c1=$(cpu "$pid")
    ./tests/stress/twstress --connect "$2:8081" --concurrency 1 --duration "$DURATION" \
        --close server --expect-bytes 0 --json --bind 127.0.8.22 > "$work/b.json"
    python3 - "$work/s.json" "$work/b.json" "$c0" "$c1" "$TCK" "$1" "$BULK_MB" <<'PY'
import json, sys
s, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
c0, c1, tck, mb = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[7])
gbit = b["cps"] * mb * 8 / 1024                # whole streams per second x size
us = (c1 - c0) / tck * 1e6 / max(1, s["connections"])
print(f'{sys.argv[6]} {s["cps"]:.0f} {gbit:.2f} {us:.1f}')
PY
}
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then round a 127.0.8.2; round b 127.0.8.3; else round b 127.0.8.3; round a 127.0.8.2; fi
done | tee "$work/rows"
python3 - "$work/rows" "$A" "$B" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
for who, path in (("a", sys.argv[2]), ("b", sys.argv[3])):
    r = [x for x in rows if x[0] == who]
    print(f'{who} {path}: conn/s median {st.median(float(x[1]) for x in r):.0f}, '
          f'bulk Gbit/s median {st.median(float(x[2]) for x in r):.2f}, '
          f'CPU us/conn median {st.median(float(x[3]) for x in r):.1f}')
PY
