#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# soak.sh -- `make soak`: the long mixed-load and crash test of registryd (issue 6).
#   sh tests/soak/soak.sh [BUILD_DIR] [soak.py options...]
# Duration: $SOAK_SECONDS (default 120). Everything else is in soak.py.
set -eu
build=${1:-build}
if [ $# -gt 0 ]; then shift; fi
exec python3 "$(dirname "$0")/soak.py" --build "$build" "$@"
