#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# scripts/demo.sh — what `make demo` runs: the `make run` tour as a script. Starts
# registryd on a free port with a temporary database, starts tsserv and sleepserv
# (which register themselves), runs the commands a newcomer would type and shows their
# output, then stops everything (services first) and exits 0 — or non-zero naming the
# step that failed.
set -u
cd "$(dirname "$0")/.." || exit 1
. scripts/proc.sh
BUILD=${BUILD:-build}
REGCTL=./client/regctl
[ -x "$REGCTL" ] || REGCTL=$BUILD/regctl

for b in registryd tsserv sleepserv regctl; do
    if [ ! -x "$BUILD/$b" ]; then
        echo "demo: $BUILD/$b is missing; build it with 'make'" >&2
        exit 1
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/registry-demo.XXXXXX") || exit 1
reg_pid="" ts_pid="" sl_pid=""
failed=0

fail() {
    echo "demo: FAILED: $*" >&2
    failed=1
}

show_logs() {
    for f in registryd tsserv sleepserv; do
        [ -s "$tmp/$f.err" ] || continue
        echo "--- $f stderr (last lines) ---" >&2
        tail -n 20 "$tmp/$f.err" >&2
    done
}

cleanup() {
    trap '' INT TERM HUP
    for p in $ts_pid $sl_pid $reg_pid; do
        kill -TERM "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap 'cleanup; exit 1' INT TERM HUP

# step SHOWN CMD...: shows SHOWN (the command as a newcomer types it), runs CMD and
# shows its output, kept in $tmp/out for checks.
step() {
    echo "\$ $1"
    shift
    "$@" > "$tmp/out" 2>&1
    rc=$?
    cat "$tmp/out"
    echo
    return $rc
}

"$BUILD/registryd" --listen 127.0.0.1:0 --db "$tmp/registry.db" \
    > "$tmp/registryd.out" 2> "$tmp/registryd.err" &
reg_pid=$!
if ! addr=$(wait_listening "$tmp/registryd.out" "$reg_pid"); then
    fail "registryd did not start"
    show_logs
    cleanup
    exit 1
fi
echo "demo: registryd listens on $addr (temporary database)"
export REGISTRY_ADDR="$addr"

"$BUILD/tsserv" > "$tmp/tsserv.out" 2> "$tmp/tsserv.err" &
ts_pid=$!
"$BUILD/sleepserv" > "$tmp/sleepserv.out" 2> "$tmp/sleepserv.err" &
sl_pid=$!
if ! ts_addr=$(wait_listening "$tmp/tsserv.out" "$ts_pid") ||
   ! sl_addr=$(wait_listening "$tmp/sleepserv.out" "$sl_pid"); then
    fail "a sample service did not start"
    show_logs
    cleanup
    exit 1
fi
echo "demo: tsserv listens on $ts_addr, sleepserv on $sl_addr"

i=0
until "$BUILD/regctl" lookup timestamp >/dev/null 2>&1 && "$BUILD/regctl" lookup sleep >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -ge 100 ]; then
        fail "the services did not register within 10 s"
        show_logs
        cleanup
        exit 1
    fi
    sleep 0.1
done
echo "demo: both services registered themselves; REGISTRY_ADDR=$addr"
echo

step "./client/regctl list" "$REGCTL" list || fail "regctl list"
grep -q '^timestamp ' "$tmp/out" && grep -q '^sleep ' "$tmp/out" || fail "list lacks a service"

step "./client/regctl lookup timestamp" "$REGCTL" lookup timestamp || fail "regctl lookup timestamp"
[ "$(cat "$tmp/out")" = "$ts_addr" ] || fail "lookup timestamp did not give $ts_addr"

step "./client/regctl call timestamp hello" "$REGCTL" call timestamp hello || fail "regctl call timestamp hello"
grep -Eq '^\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8} [0-9]{4}\] hello$' "$tmp/out" ||
    fail "call timestamp: unexpected reply"

start=$(date +%s)
step "./client/regctl call sleep '{\"sleep\": 2}'" "$REGCTL" call sleep '{"sleep": 2}' || fail "regctl call sleep"
took=$(( $(date +%s) - start ))
[ "$(cat "$tmp/out")" = '{"ok":true,"slept":2}' ] || fail "call sleep: unexpected reply"
[ $took -ge 1 ] && [ $took -le 4 ] || fail "call sleep took ${took}s, not about 2 s"

echo "demo: stopping the services (they deregister)..."
stop_pid "$ts_pid" || fail "tsserv did not exit 0"
stop_pid "$sl_pid" || fail "sleepserv did not exit 0"
ts_pid="" sl_pid=""
"$REGCTL" lookup timestamp >/dev/null 2>&1
[ $? -eq 1 ] || fail "timestamp is still registered after tsserv stopped"
"$REGCTL" lookup sleep >/dev/null 2>&1
[ $? -eq 1 ] || fail "sleep is still registered after sleepserv stopped"

echo "demo: stopping registryd..."
stop_pid "$reg_pid" || fail "registryd did not exit 0"
reg_pid=""

if [ $failed -ne 0 ]; then
    show_logs
    rm -rf "$tmp"
    echo "demo: failed"
    exit 1
fi
rm -rf "$tmp"
echo "demo: all steps passed"
exit 0
