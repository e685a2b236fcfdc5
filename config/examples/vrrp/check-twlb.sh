#!/bin/sh
# check-twlb.sh ADMIN: keepalived's track script; healthy while twlb answers /healthz.
exec curl -sf --max-time 0.8 "http://$1/healthz" >/dev/null 2>&1
