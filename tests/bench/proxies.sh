#!/usr/bin/env bash
# make bench: twlb against HAProxy (mode tcp) and nginx (stream) on loopback, driven by
# the same load generator (twstress) in one run, each proxy single-threaded toward the
# same twbackend.  Prints a Markdown table with ratios to twlb.
#
#   DURATION=10 CONC=64 tests/bench/proxies.sh
#
# Addresses: 127.0.7.0/24 only.  Every process started here is stopped by PID on exit.
set -euo pipefail
ulimit -n 65536 2>/dev/null || true
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
CONC=${CONC:-64}
BULK_MB=${BULK_MB:-64}
work=$(mktemp -d /tmp/twlb-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

for b in lb/twlb backends/twbackend tests/stress/twstress; do
    [ -x "$b" ] || { echo "bench: $b is not built (run make)" >&2; exit 1; }
done
command -v haproxy >/dev/null || { echo "bench: haproxy missing (make deps-bench)" >&2; exit 1; }
command -v nginx >/dev/null || { echo "bench: nginx missing (make deps-bench)" >&2; exit 1; }

BE=127.0.7.1
./backends/twbackend --listen $BE:9000 --name short --mode close-first --reply-bytes 64 >/dev/null &
pids+=($!)
./backends/twbackend --listen $BE:9001 --name bulk --mode bulk --send-bytes $((BULK_MB * 1048576)) >/dev/null &
pids+=($!)

cat > "$work/twlb.json" <<JSON
{
  "listeners": [ { "name": "short", "bind": "127.0.7.2:8080", "pool": "short" },
                 { "name": "bulk", "bind": "127.0.7.2:8081", "pool": "bulk" } ],
  "pools": [
    { "name": "short", "inside": ["127.0.7.10"], "source_ports": "20000-59999",
      "backends": [ { "name": "b", "address": "$BE:9000" } ] },
    { "name": "bulk", "inside": ["127.0.7.10"], "source_ports": "10000-19999",
      "backends": [ { "name": "b", "address": "$BE:9001" } ] } ],
  "reuse": { "isn": "auto" },
  "admin": { "bind": "127.0.7.2:9901" },
  "log": { "level": "warn" }
}
JSON
./lb/twlb -c "$work/twlb.json" &
pids+=($!)

cat > "$work/haproxy.cfg" <<CFG
global
    maxconn 8000
    nbthread 1
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend short
    bind 127.0.7.3:8080
    default_backend short
frontend bulk
    bind 127.0.7.3:8081
    default_backend bulk
backend short
    server b $BE:9000 source 127.0.7.11:20000-59999
backend bulk
    server b $BE:9001 source 127.0.7.11:10000-19999
CFG
haproxy -db -f "$work/haproxy.cfg" &
pids+=($!)

mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<CFG
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 16000; }
stream {
    server { listen 127.0.7.4:8080; proxy_bind 127.0.7.12; proxy_pass $BE:9000; }
    server { listen 127.0.7.4:8081; proxy_bind 127.0.7.12; proxy_pass $BE:9001; }
}
CFG
nginx -p "$work/nginx" -c "$work/nginx.conf" &
pids+=($!)
sleep 1

run() { # name addr port mode
    local out
    if [ "$4" = short ]; then
        out=$(./tests/stress/twstress --connect "$2:$3" --concurrency "$CONC" \
              --duration "$DURATION" --close server --expect-bytes 64 --json \
              --bind 127.0.7.20 --bind 127.0.7.21 --bind 127.0.7.22 --bind 127.0.7.23)
    else
        out=$(./tests/stress/twstress --connect "$2:$3" --concurrency 4 \
              --duration "$DURATION" --close server --expect-bytes 0 --json --bind 127.0.7.24)
    fi
    echo "$out" > "$work/$1-$4.json"
    python3 - "$work/$1-$4.json" "$4" "$BULK_MB" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
errs = sum(r.get("errors", {}).values())
if sys.argv[2] == "short":
    print(f'{r["cps"]:.0f} {r["connect_ms"]["p99"]:.2f} {errs}')
else:
    print(f'{r["cps"] * int(sys.argv[3]) * 8 / 1024:.2f} {r["connect_ms"]["p99"]:.2f} {errs}')
PY
}

echo "| target | conn/s (64 B reply, backend closes first) | ratio | connect p99 ms | errors | bulk Gbit/s ($BULK_MB MiB per conn) | ratio |"
echo "|---|---|---|---|---|---|---|"
declare -A cps gbps
for t in "direct $BE 9000 9001" "twlb 127.0.7.2 8080 8081" "haproxy 127.0.7.3 8080 8081" "nginx 127.0.7.4 8080 8081"; do
    set -- $t
    read -r c p99 e <<<"$(run "$1" "$2" "$3" short)"
    read -r g _ ge <<<"$(run "$1" "$2" "$4" bulk)"
    cps[$1]=$c; gbps[$1]=$g
    rc=$(python3 -c "print(f'{$c / max(${cps[twlb]:-$c}, 1):.2f}')")
    rg=$(python3 -c "print(f'{$g / max(${gbps[twlb]:-$g}, 0.001):.2f}')")
    [ "$1" = direct ] && rc="-" && rg="-"
    echo "| $1 | $c | $rc | $p99 | $((e + ge)) | $g | $rg |"
done
echo
echo "ratio = target / twlb; $(nproc) cores shared by load generator, proxy and backend; DURATION=$DURATION CONC=$CONC"
