#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# scripts/run.sh — what `make run` executes: starts registryd on its default address
# (127.0.0.1:5380, database ./registry.db) and the two sample services, which register
# themselves; prints what to type next; stays in the foreground until Ctrl-C, which stops
# the services first (they deregister) and then registryd.
#
# The three programs run in sessions of their own (setsid), so the terminal's Ctrl-C
# reaches only this script, which then stops them in the right order; otherwise
# registryd could exit before the services had deregistered.
set -u
cd "$(dirname "$0")/.." || exit 1
. scripts/proc.sh
BUILD=${BUILD:-build}
ADDR=127.0.0.1:5380
DNS_ADDR=127.0.0.1:8600   # Consul's DNS port
HTTP_ADDR=127.0.0.1:8500  # Consul's HTTP port: Prometheus's consul_sd_configs finds it
REGCTL=./client/regctl
[ -x "$REGCTL" ] || REGCTL=$BUILD/regctl

for b in registryd tsserv sleepserv regctl; do
    if [ ! -x "$BUILD/$b" ]; then
        echo "run: $BUILD/$b is missing; build it with 'make'" >&2
        exit 1
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/registry-run.XXXXXX") || exit 1
reg_pid="" ts_pid="" sl_pid=""

cleanup() {
    trap '' INT TERM HUP
    # Services first, so their deregistrations reach a registry that is still up.
    [ -n "$ts_pid$sl_pid" ] && echo "run: stopping the services (they deregister)..."
    stop_pid "$ts_pid"
    stop_pid "$sl_pid"
    ts_pid="" sl_pid=""
    [ -n "$reg_pid" ] && echo "run: stopping registryd..."
    stop_pid "$reg_pid"
    reg_pid=""
    rm -rf "$tmp"
}

on_signal() {
    echo
    cleanup
    echo "run: stopped."
    exit 0
}

trap on_signal INT TERM HUP

# A clear message beats a bind error buried in a log.
if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", 5380), 1)' 2>/dev/null; then
    echo "run: $ADDR is already in use (another registryd, or 'make run' in another terminal?)." >&2
    echo "run: stop it, or start by hand on another port: $BUILD/registryd --listen 127.0.0.1:PORT" >&2
    rm -rf "$tmp"
    exit 1
fi

setsid "$BUILD/registryd" --listen "$ADDR" --db ./registry.db --dns "$DNS_ADDR" \
    --http "$HTTP_ADDR" > "$tmp/registryd.out" &
reg_pid=$!
if ! addr=$(wait_listening "$tmp/registryd.out" "$reg_pid"); then
    echo "run: registryd did not start (see its message above)." >&2
    if grep -qi 'in use' "$tmp/registryd.out" 2>/dev/null; then
        echo "run: $ADDR is already in use." >&2
    fi
    cleanup
    exit 1
fi

setsid "$BUILD/tsserv" --registry "$addr" > "$tmp/tsserv.out" &
ts_pid=$!
setsid "$BUILD/sleepserv" --registry "$addr" > "$tmp/sleepserv.out" &
sl_pid=$!
if ! ts_addr=$(wait_listening "$tmp/tsserv.out" "$ts_pid") ||
   ! sl_addr=$(wait_listening "$tmp/sleepserv.out" "$sl_pid"); then
    echo "run: a sample service did not start (see its message above)." >&2
    cleanup
    exit 1
fi

# Wait until both have registered, so the first command typed already works.
i=0
while [ $i -lt 100 ]; do
    if "$BUILD/regctl" --registry "$addr" lookup timestamp >/dev/null 2>&1 &&
       "$BUILD/regctl" --registry "$addr" lookup sleep >/dev/null 2>&1; then
        break
    fi
    sleep 0.1
    i=$((i + 1))
done

cat <<EOF

registryd listens on $addr (database ./registry.db), DNS on $DNS_ADDR (UDP and TCP),
          HTTP on http://$HTTP_ADDR/ (Consul's API, /api/, /metrics)
tsserv    (service "timestamp") listens on $ts_addr
sleepserv (service "sleep")     listens on $sl_addr

The dashboard (live, no reload needed): open http://$HTTP_ADDR/ in a browser.

In another terminal, try:
    $REGCTL list
    $REGCTL call timestamp hello
    $REGCTL call sleep '{"sleep": 2}'
    $REGCTL lookup timestamp --all
    $REGCTL watch
    dig @127.0.0.1 -p 8600 timestamp.service.registry A
    dig @127.0.0.1 -p 8600 _sleep._tcp.service.registry SRV
    curl -s http://$HTTP_ADDR/v1/health/service/timestamp?passing
    curl -s http://$HTTP_ADDR/metrics

Their logs follow here. Press Ctrl-C to stop all three.

EOF

# Stay in the foreground until a signal, or until registryd exits on its own.
wait "$reg_pid"
status=$?
if [ -n "$reg_pid" ]; then
    echo "run: registryd exited (status $status); stopping the services." >&2
    reg_pid=""
    cleanup
    exit 1
fi
