#!/bin/sh
# nhsync.sh VIP TABLE DEV [INTERVAL_S]
#
# BIRD 2.0 installs a multipath route whose next hops the kernel hashes with
# hash-threshold: when one next hop goes, the flows of the others move too (and break,
# because the node they move to has no socket for them).  A resilient next-hop group
# (Linux 5.13+) moves only the buckets of the next hop that went.  BIRD exports into
# TABLE (not used for forwarding); this loop copies the set of next hops it finds there
# into nexthop group 1000 (type resilient, 128 buckets) and points the main table's
# route to VIP at it.  Members are nexthop objects 1001, 1002, ... by gateway address.
VIP=$1 TABLE=$2 DEV=$3 INTERVAL=${4:-0.1}
last=""
while :; do
    gws=$(ip -o route show table "$TABLE" "$VIP/32" | grep -o 'via [0-9.]*' | awk '{print $2}' | sort -u | tr '\n' ' ')
    if [ "$gws" != "$last" ]; then
        if [ -z "$gws" ]; then
            ip route del "$VIP/32" 2>/dev/null
            ip nexthop del id 1000 2>/dev/null
        else
            ids=""
            for gw in $gws; do
                id=$((1000 + ${gw##*.}))
                ip nexthop replace id "$id" via "$gw" dev "$DEV"
                ids="$ids${ids:+/}$id"
            done
            if ip nexthop show id 1000 >/dev/null 2>&1; then
                ip nexthop replace id 1000 group "$ids" type resilient buckets 128 idle_timer 60
            else
                ip nexthop add id 1000 group "$ids" type resilient buckets 128 idle_timer 60
            fi
            ip route replace "$VIP/32" nhid 1000
        fi
        echo "$(date +%s.%N) nexthops: ${gws:-none}"
        last=$gws
    fi
    sleep "$INTERVAL"
done
