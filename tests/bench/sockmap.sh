#!/usr/bin/env bash
# Issue 9 experiment: would a sockmap data path (in-kernel redirect, no system call per
# message) beat a plain epoll read/write proxy on persistent connections?  Builds
# tests/bench/sockmap_proxy.c, starts redis-server and the proxy in both modes, and runs
# redis-benchmark (50 clients, SET and GET) through each, in interleaved rounds.  Prints
# req/s and the whole machine's busy CPU microseconds per request (from /proc/stat).
#
#   tests/bench/sockmap.sh          (ROUNDS=3 N=200000 EXTRA="" e.g. EXTRA="-P 16" N=2000000)
#
# Addresses: 127.0.10.1 only.  Everything started here is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3} N=${N:-200000} EXTRA=${EXTRA:-}
work=$(mktemp -d /tmp/twlb-sockmap.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
cc -std=c11 -O2 -Wall -Wextra -Werror -o "$work/sockmap_proxy" tests/bench/sockmap_proxy.c
# Debian's redis-tools ship the server as redis-check-rdb, which serves under this name
ln -s "$(command -v redis-check-rdb || echo /usr/bin/redis-check-rdb)" "$work/redis-server"
IP=127.0.10.1
"$work/redis-server" --port 7379 --bind $IP --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
"$work/sockmap_proxy" $IP 7380 $IP 7379 & pids+=($!)
"$work/sockmap_proxy" $IP 7381 $IP 7379 copy & pids+=($!)
for p in 7379 7380 7381; do
    for _ in $(seq 50); do redis-cli -h $IP -p $p ping >/dev/null 2>&1 && break; sleep 0.1; done
done
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; } # user nice system irq softirq
hz=$(getconf CLK_TCK)
for r in $(seq "$ROUNDS"); do
    for p in 7380 7381; do
        c0=$(busy)
        # shellcheck disable=SC2086
        rps=$(timeout 120 redis-benchmark -h $IP -p $p -c 50 -n "$N" -t set,get -q $EXTRA 2>/dev/null |
              tr '\r' '\n' | awk '/requests per second/ {printf "%s %s ", $1, $2}')
        c1=$(busy)
        echo "round $r $([ $p = 7380 ] && echo sockmap || echo copy): $rps machine us/request" \
             "$(awk -v d=$((c1 - c0)) -v hz="$hz" -v n="$N" 'BEGIN {printf "%.2f", d * 1e6 / hz / (2 * n)}')"
    done
done
