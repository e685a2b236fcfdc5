#!/usr/bin/env bash
# make run: three demo backends and twlb on config/demo.json, in the foreground.
# Ctrl-C stops all of it (only the processes started here, by PID).
set -u
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-config/demo.json}
pids=()
cleanup() {
    trap - INT TERM EXIT
    [ -n "${twlb_pid:-}" ] && kill -TERM "$twlb_pid" 2>/dev/null && wait "$twlb_pid" 2>/dev/null
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    echo "demo stopped"
}
trap cleanup INT TERM EXIT

./lb/twlb --check "$CONFIG" || exit 1
i=1
for port in 9001 9002 9003; do
    ./backends/twbackend --listen 127.0.1.1:$port --name b$i --mode close-first \
        --reply-bytes 64 > /dev/null &
    pids+=($!)
    i=$((i + 1))
done
sleep 0.3
./lb/twlb -c "$CONFIG" &
twlb_pid=$!
sleep 0.5
cat <<'TXT'

twlb is running on config/demo.json: listener 127.0.0.1:8080 -> backends b1, b2, b3
(127.0.1.1:9001-9003, close-first: each replies with its name and closes first, as an
HTTP/1.0 server does, so the backends keep the TIME_WAIT that twlb tracks).

Send traffic (round robin; each worker keeps its own rotation, so with two workers two
connections in a row may reach the same backend):
    for i in 1 2 3 4 5 6; do exec 3<>/dev/tcp/127.0.0.1/8080; echo hi >&3; head -1 <&3; exec 3<&-; done
Read the metrics and the port occupancy:
    curl -s http://127.0.0.1:9901/metrics | grep -E 'twlb_(backend_connections_total|ports)'
    curl -s http://127.0.0.1:9901/stats
Ctrl-C stops twlb (it drains) and the backends.
TXT
wait "$twlb_pid"
