#!/bin/sh
# pinsync.sh BIRD_SOCKET VIP DEV INTERVAL_S MARK:PROTOCOL:NODE...
#   e.g. pinsync.sh /run/bird/bird.ctl 198.18.100.1 eth0 0.1 1:node1:198.18.2.1 2:node2:198.18.2.2
#
# On the router, with router-pin.nft loaded: each flow carries the mark of the node that
# took its first packet.  For every node (MARK 1..255, PROTOCOL its BGP protocol in the
# router's BIRD, NODE its address = the next hop) this script adds NODE -> MARK to the
# map, "ip rule fwmark MARK lookup 100+MARK", and keeps in that table a route to VIP via
# NODE exactly while the BGP session to the node is Established:
#
# - route withdrawn, session up: a graceful stop (maintenance file; twlb drains).  The
#   node is out of the multipath route, so new flows go elsewhere, but its established
#   flows keep going to it until they end or its drain deadline.
# - session down (hold time, or BFD if configured): the node died, or BIRD on it did, or
#   its last step of a graceful stop was to stop BIRD (its flows are gone by then).  The
#   route is removed: the node's pinned flows fall back to the multipath route, and the
#   node they reach answers their next packet with a reset, instead of them being sent
#   to a dead host until the client gives up.
#
# Marks must stay the same while the script is restarted: live flows keep theirs.  If
# birdc does not answer (BIRD restarting), nothing changes.  Prints one line per change.
if [ $# -lt 5 ]; then
    echo "usage: pinsync.sh BIRD_SOCKET VIP DEV INTERVAL_S MARK:PROTOCOL:NODE..." >&2
    exit 2
fi
SOCK=$1 VIP=$2 DEV=$3 INTERVAL=$4
shift 4
for n in "$@"; do
    mark=${n%%:*} rest=${n#*:}
    node=${rest#*:}
    case $mark in [1-9] | [1-9][0-9] | 1[0-9][0-9] | 2[0-4][0-9] | 25[0-5]) ;;
    *) echo "pinsync.sh: $n: MARK must be 1..255" >&2; exit 2 ;; esac
    nft add element ip twlb_pin node_mark "{ $node : $mark }" || exit 1
    while ip rule del fwmark "$mark" 2>/dev/null; do :; done
    ip rule add fwmark "$mark" lookup $((100 + mark)) priority 100 || exit 1
done   # a pin route left by an earlier run stays until the first round says otherwise
state=""   # "PROTOCOL=up PROTOCOL=down ..." as of the last round
while :; do
    if out=$(birdc -s "$SOCK" show protocols 2>/dev/null); then
        now=""
        for n in "$@"; do
            mark=${n%%:*} rest=${n#*:}
            proto=${rest%%:*} node=${rest#*:}
            s=down
            echo "$out" | awk -v p="$proto" '$1 == p && $NF == "Established" { f = 1 }
                                             END { exit !f }' && s=up
            now="$now $proto=$s"
            case " $state " in *" $proto=$s "*) continue ;; esac
            if [ $s = up ]; then
                ip route replace "$VIP/32" via "$node" dev "$DEV" table $((100 + mark))
            else
                ip route del "$VIP/32" table $((100 + mark)) 2>/dev/null
            fi
            echo "$(date +%s.%N) $proto $node mark $mark: session $s," \
                 "pin $([ $s = up ] && echo on || echo off)"
        done
        state=$now
    fi
    sleep "$INTERVAL"
done
