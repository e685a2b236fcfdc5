#!/bin/sh
# notify.sh LOG TYPE NAME STATE PRIORITY: keepalived calls it on every state change
# (keepalived appends TYPE NAME STATE PRIORITY); one timestamped line per change.
log=$1
shift
echo "$(date +%s.%N) $*" >> "$log"
