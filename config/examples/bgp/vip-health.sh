#!/bin/sh
# vip-health.sh ADMIN BIRD_SOCKET MAINT_FILE [INTERVAL_S]
#
# Announce the VIP only while this node's twlb is healthy: every INTERVAL_S (default 0.2)
# ask twlb's admin endpoint for /healthz; when it answers and MAINT_FILE does not exist,
# "birdc enable vip" (BIRD announces the VIP), else "birdc disable vip" (BIRD withdraws
# it).  BIRD is told only on a change, and again every 5 s in case it restarted.
# Graceful stop: touch MAINT_FILE, wait for the withdrawal to reach the router, then
# SIGTERM twlb (it drains).
ADMIN=$1 SOCK=$2 MAINT=$3 INTERVAL=${4:-0.2}
state=unknown
n=0
while :; do
    if [ ! -e "$MAINT" ] && curl -sf --max-time 0.5 "http://$ADMIN/healthz" >/dev/null 2>&1; then
        want=enable
    else
        want=disable
    fi
    n=$((n + 1))
    if [ "$want" != "$state" ] || [ $((n % 25)) -eq 0 ]; then
        if birdc -s "$SOCK" "$want" vip >/dev/null 2>&1; then
            [ "$want" != "$state" ] && echo "$(date +%s.%N) vip $want"
            state=$want
        fi
    fi
    sleep "$INTERVAL"
done
