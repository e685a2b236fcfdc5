#!/bin/sh
# The README's two commands on a fresh Debian 12 that has nothing but this repository:
#
#   sh tests/bootstrap.sh run     install what is missing, build, start the demo
#   sh tests/bootstrap.sh test    install what is missing, run every test
#
# A minimal Debian has no make and no compiler: install make with apt-get if it is
# missing, then `make deps` (run by both targets) installs everything else.  As root.
set -e
cd "$(dirname "$0")/.."
case "${1:-}" in
run | test) ;;
*) echo "usage: sh tests/bootstrap.sh run|test" >&2; exit 2 ;;
esac
if ! command -v make >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap: make is missing and installing it needs root" >&2
        exit 1
    fi
    echo "bootstrap: installing make"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make
fi
exec make "$1"
