#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# tests/bench/instr.sh BUILD [REGISTRYD] — instructions per request, counted by callgrind:
# figures that do not move with the machine's other load (issue 15: "so a change is
# judged without the machine's noise"). Prints tab-separated lines
#     instr.hit   N     a lookup answered from the cache (1 service, pipeline 16)
#     instr.miss  N     a lookup that builds its answer (--cache-size 0, 100 services)
#     instr.reg   N     a durable registration (--sync full; loop and writer threads)
#     instr.http  N     GET /v1/health/service/NAME?passing (keep-alive, one connection)
# where N is the instructions the registryd process ran (every thread) divided by the
# requests, measured between callgrind_control's instrumentation on and off so start-up
# and preloading are not counted. valgrind slows registryd ~50x: counts are small runs.
set -u
BUILD=${1:-build}
REGISTRYD=${2:-$BUILD/registryd}
REGBENCH=$BUILD/regbench
command -v valgrind >/dev/null 2>&1 && command -v callgrind_control >/dev/null 2>&1 || {
    echo "instr: valgrind not installed" >&2
    exit 1
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/instr.XXXXXX") || exit 1
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM

# start NAME FLAGS...: registryd under callgrind, instrumentation off; sets addr, pid
start() {
    name=$1
    shift
    : >"$tmp/$name.out" # the background child creates it late; the loop below reads it
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$tmp/$name.cg" \
        "$REGISTRYD" --listen 127.0.0.1:0 --db "$tmp/$name.db" --log "$tmp/$name.log" \
        --max-instances-per-client 100000000 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pid=$!
    i=0
    while [ $i -lt 300 ]; do
        addr=$(sed -n 's/^listening on //p' "$tmp/$name.out" | head -n 1)
        [ -n "$addr" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    echo "instr: registryd $name did not start: $(tail -n 2 "$tmp/$name.err")" >&2
    return 1
}

# measure LABEL N: instructions between on and off, per request; stops registryd
measure_end() {
    label=$1 n=$2
    callgrind_control -i off "$pid" >/dev/null 2>&1
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=""
    total=$(sed -n 's/^totals: //p' "$tmp/$label.cg" | head -n 1)
    if [ -z "$total" ]; then
        echo "instr: no totals for $label" >&2
        return 1
    fi
    printf '%s\t%s\n' "instr.$label" $((total / n))
}

N=20000
if start hit --sync normal; then
    "$REGBENCH" --registry "$addr" --services 1 -c 1 -n 2000 -q >/dev/null 2>&1
    callgrind_control -i on "$pid" >/dev/null 2>&1
    "$REGBENCH" --registry "$addr" --services 1 --no-preload -c 1 -P 16 -n $N -q >/dev/null 2>&1
    measure_end hit $N
fi
if start miss --sync normal --cache-size 0; then
    "$REGBENCH" --registry "$addr" --services 100 -c 1 -n 2000 -q >/dev/null 2>&1
    callgrind_control -i on "$pid" >/dev/null 2>&1
    "$REGBENCH" --registry "$addr" --services 100 --no-preload -c 1 -P 16 -n $N -q >/dev/null 2>&1
    measure_end miss $N
fi
R=2000
if start reg --sync full; then
    callgrind_control -i on "$pid" >/dev/null 2>&1
    "$REGBENCH" --registry "$addr" --services 1 --no-preload -t register -c 10 -n $R -q \
        >/dev/null 2>&1
    measure_end reg $R
fi
if command -v curl >/dev/null 2>&1 && start http --sync normal --http 127.0.0.1:0; then
    url=$(sed -n 's/^http on //p' "$tmp/http.out" | head -n 1)
    "$REGBENCH" --registry "$addr" --services 1 -c 1 -n 100 -q >/dev/null 2>&1
    H=2000
    # H times the same URL, on one keep-alive connection (a curl config file)
    i=0
    while [ $i -lt $H ]; do
        printf 'url = "%sv1/health/service/bench-svc-0?passing"\noutput = /dev/null\n' "$url"
        i=$((i + 1))
    done >"$tmp/curl.cfg"
    callgrind_control -i on "$pid" >/dev/null 2>&1
    curl -s -K "$tmp/curl.cfg"
    measure_end http $H
fi
