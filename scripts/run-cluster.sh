#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# scripts/run-cluster.sh — what `make run-cluster` executes: `make run` with high
# availability. A 3-member etcd cluster on loopback (Debian's etcd-server, data in a temp
# dir), three registryd nodes sharing it, and the two sample services, which register
# through the list of the three nodes; prints what to try; stays in the foreground until
# Ctrl-C, which stops the services first (they deregister), then the nodes, then etcd,
# and removes the temp dir. Everything it started is stopped by its PID.
#
# Fixed ports, so the commands it prints can be typed as they are (all on 127.0.0.1,
# checked free before anything starts):
#   etcd members etcd1..3   clients 2379 22379 32379, peers 2380 22380 32380
#   registryd node1..3      5381 5382 5383 (make run's 5380 + N),
#                           DNS 8601 8602 8603, HTTP 8501 8502 8503
#
# Kill a node or an etcd member from another terminal (the PIDs are printed) and watch
# the rest go on; `kill -USR1 <this script's PID>` starts whatever was killed again, on
# the same ports (an etcd member with its data). The programs run in sessions of their
# own (setsid), so the terminal's Ctrl-C reaches only this script, which stops them in
# order. Their logs reach this terminal prefixed with their names; etcd's go to files
# in the temp dir.
set -u
cd "$(dirname "$0")/.." || exit 1
. scripts/proc.sh
BUILD=${BUILD:-build}
ETCD=${ETCD:-$(command -v etcd || echo /usr/bin/etcd)}
REGCTL=./client/regctl
[ -x "$REGCTL" ] || REGCTL=$BUILD/regctl

ETCD_CLIENT_PORTS="2379 22379 32379"
ETCD_PEER_PORTS="2380 22380 32380"
NODE_PORTS="5381 5382 5383"
DNS_PORTS="8601 8602 8603"
HTTP_PORTS="8501 8502 8503"

say() { echo "run-cluster: $*" >&2; }
nth() { n=$1; shift; eval "echo \${$n}"; }      # nth 2 a b c -> b
get() { eval "echo \${$1:-}"; }                 # get etcd_pid2

for b in registryd tsserv sleepserv regctl; do
    if [ ! -x "$BUILD/$b" ]; then
        say "$BUILD/$b is missing; build it with 'make'"
        exit 1
    fi
done
if [ ! -x "$ETCD" ]; then
    say "etcd is not installed ($ETCD); 'make run-cluster' installs Debian's etcd-server,"
    say "or install it by hand: sudo apt-get install etcd-server"
    exit 1
fi

# This registryd must have the etcd store. An unknown flag is a usage error found while
# parsing, before anything is opened, as is --etcd with --db: nothing starts either way.
out=$(timeout 5 "$BUILD/registryd" --etcd http://127.0.0.1:9 --listen 127.0.0.1:0 \
      --db /dev/null/none 2>&1 >/dev/null)
case "$out" in
    *"unknown option"*etcd* | *"unrecognized option"*etcd* | *"invalid option"*etcd*)
        say "$BUILD/registryd does not support --etcd (it says: $out)."
        say "make run-cluster needs the etcd store of issue 11; 'make run' runs one node on SQLite."
        exit 1 ;;
esac

# Every port free (bound with SO_REUSEADDR, as etcd and registryd bind; DNS is UDP too)?
busy=$(python3 - $ETCD_CLIENT_PORTS $ETCD_PEER_PORTS $NODE_PORTS $HTTP_PORTS -- $DNS_PORTS <<'EOF'
import socket, sys
udp, busy = False, []
for a in sys.argv[1:]:
    if a == "--":
        udp = True
        continue
    for kind in ([socket.SOCK_STREAM, socket.SOCK_DGRAM] if udp else [socket.SOCK_STREAM]):
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", int(a)))
        except OSError:
            busy.append("127.0.0.1:%s%s" % (a, "/udp" if kind == socket.SOCK_DGRAM else ""))
        finally:
            s.close()
print(" ".join(busy))
EOF
)
if [ -n "$busy" ]; then
    say "these ports are in use:" $busy
    case " $busy " in *" 127.0.0.1:2379 "*)
        say "(2379 is etcd's default port: the distro's etcd.service? 'sudo systemctl stop etcd')" ;;
    esac
    say "make run-cluster needs them all (etcd 2379/22379/32379 + 2380/22380/32380, registryd"
    say "5381-5383, DNS 8601-8603, HTTP 8501-8503): stop what holds them (another make run-cluster?)."
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/registry-cluster.XXXXXX") || exit 1
TOKEN="registry-run-cluster-$$-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
ENDPOINTS="" INITIAL="" NODES=""
for k in 1 2 3; do
    c=$(nth $k $ETCD_CLIENT_PORTS) p=$(nth $k $ETCD_PEER_PORTS)
    ENDPOINTS="$ENDPOINTS${ENDPOINTS:+,}http://127.0.0.1:$c"
    INITIAL="$INITIAL${INITIAL:+,}etcd$k=http://127.0.0.1:$p"
    NODES="$NODES${NODES:+,}127.0.0.1:$(nth $k $NODE_PORTS)"
done
# etcd reads ETCD_* variables as flags and refuses to start when one repeats a flag
for v in $(env | sed -n 's/^\(ETCD_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done

etcd_pid1="" etcd_pid2="" etcd_pid3="" node_pid1="" node_pid2="" node_pid3=""
ts_pid="" sl_pid="" aux_pids="" npipe=0 restart_asked=""

# logpipe NAME: sets PIPE to a new FIFO whose lines reach the terminal as "NAME | line".
# The reader has a session of its own too, so a Ctrl-C cannot kill it under a writer.
logpipe() {
    npipe=$((npipe + 1))
    PIPE=$tmp/$1.$npipe.fifo
    mkfifo "$PIPE" || return 1
    setsid sed -u "s/^/$(printf '%-9s' "$1")| /" < "$PIPE" &
    aux_pids="$aux_pids $!"
}

# start_etcd I new|existing: member etcdI (its data dir survives restarts)
start_etcd() {
    c=$(nth "$1" $ETCD_CLIENT_PORTS) p=$(nth "$1" $ETCD_PEER_PORTS)
    setsid "$ETCD" --name "etcd$1" --data-dir "$tmp/etcd$1" \
        --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "$INITIAL" --initial-cluster-token "$TOKEN" \
        --initial-cluster-state "$2" --logger zap --log-outputs stderr \
        >> "$tmp/etcd$1.log" 2>&1 &
    eval "etcd_pid$1=\$!"
}

# start_node I: registryd nodeI on the etcd cluster; its stdout (the listening line)
# goes to a file, its log to the terminal
start_node() {
    logpipe "node$1" || return 1
    setsid "$BUILD/registryd" --etcd "$ENDPOINTS" --node-name "node$1" \
        --listen "127.0.0.1:$(nth "$1" $NODE_PORTS)" \
        --dns "127.0.0.1:$(nth "$1" $DNS_PORTS)" --http "127.0.0.1:$(nth "$1" $HTTP_PORTS)" \
        > "$tmp/node$1.out" 2> "$PIPE" &
    eval "node_pid$1=\$!"
}

# start_service PROG: registers through every node (REGISTRY_ADDR: the list)
start_service() {
    logpipe "$1" || return 1
    REGISTRY_ADDR=$NODES setsid "$BUILD/$1" > "$tmp/$1.out" 2> "$PIPE" &
    SVC_PID=$!
}

# etcd_wait SECONDS URL=PID...: every member healthy (has a leader, a quorum read works);
# prints the leader's name. Fails at once if a member's process is gone.
etcd_wait() {
    python3 - "$@" <<'EOF'
import json, sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[1])
members = [a.split("=") for a in sys.argv[2:]]

def call(url, path, body=None):
    req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=0.5) as r:
        return json.loads(r.read())

def running(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

while True:
    for url, pid in members:
        if not running(pid):
            sys.exit("etcd on %s (pid %s) exited" % (url, pid))
    try:
        if all(str(call(u, "/health").get("health")).lower() == "true" for u, _ in members):
            for i, (u, _) in enumerate(members):
                st = call(u, "/v3/maintenance/status", {})
                if st.get("leader") == st.get("header", {}).get("member_id"):
                    print("etcd%d" % (i + 1))
                    sys.exit(0)
    except (OSError, ValueError):
        pass
    if time.monotonic() > deadline:
        sys.exit("etcd did not become healthy within %s s" % sys.argv[1])
    time.sleep(0.1)
EOF
}

etcd_log_tails() {
    for k in 1 2 3; do
        [ -s "$tmp/etcd$k.log" ] || continue
        echo "--- etcd$k ($tmp/etcd$k.log, last lines) ---" >&2
        tail -n 5 "$tmp/etcd$k.log" >&2
    done
}

cleanup() {
    trap '' INT TERM HUP USR1
    # Services first (they deregister through a node), then the nodes (their stop goes
    # into the shared event log), then etcd.
    [ -n "$ts_pid$sl_pid" ] && say "stopping the services (they deregister)..."
    stop_pid "$ts_pid"; stop_pid "$sl_pid"
    ts_pid="" sl_pid=""
    [ -n "$node_pid1$node_pid2$node_pid3" ] && say "stopping the registryd nodes..."
    for k in 1 2 3; do stop_pid "$(get node_pid$k)"; eval "node_pid$k=''"; done
    [ -n "$etcd_pid1$etcd_pid2$etcd_pid3" ] && say "stopping etcd..."
    for k in 1 2 3; do stop_pid "$(get etcd_pid$k)" 2>/dev/null; eval "etcd_pid$k=''"; done
    # the log readers end when their writers are gone; stop any left over
    for p in $aux_pids; do stop_pid "$p" 2>/dev/null; done
    aux_pids=""
    rm -rf "$tmp"
}

on_signal() {
    echo
    cleanup
    say "stopped."
    exit 0
}

trap on_signal INT TERM HUP
trap 'restart_asked=1' USR1

say "starting etcd (3 members) and 3 registryd nodes; logs of etcd in $tmp"
for k in 1 2 3; do start_etcd $k new; done
if ! leader=$(etcd_wait 30 "$(nth 1 $(echo "$ENDPOINTS" | tr , ' '))=$etcd_pid1" \
        "$(nth 2 $(echo "$ENDPOINTS" | tr , ' '))=$etcd_pid2" \
        "$(nth 3 $(echo "$ENDPOINTS" | tr , ' '))=$etcd_pid3"); then
    say "the etcd cluster did not come up (see its logs below)."
    etcd_log_tails
    cleanup
    exit 1
fi

leader_pid=$(get "etcd_pid${leader#etcd}")

for k in 1 2 3; do start_node $k || { cleanup; exit 1; }; done
for k in 1 2 3; do
    if ! wait_listening "$tmp/node$k.out" "$(get node_pid$k)" > /dev/null; then
        sleep 0.2   # let its last log line through the pipe
        say "registryd node$k did not start (see its message above)."
        cleanup
        exit 1
    fi
done

start_service tsserv && ts_pid=$SVC_PID
start_service sleepserv && sl_pid=$SVC_PID
if [ -z "$ts_pid" ] || [ -z "$sl_pid" ] ||
   ! ts_addr=$(wait_listening "$tmp/tsserv.out" "$ts_pid") ||
   ! sl_addr=$(wait_listening "$tmp/sleepserv.out" "$sl_pid"); then
    say "a sample service did not start (see its message above)."
    cleanup
    exit 1
fi

# Wait until every node finds both services (registered through one, seen by all
# through etcd), so the first command typed already works.
tries=0
while [ $tries -lt 100 ]; do
    all=1
    for a in $(echo "$NODES" | tr , ' '); do
        for s in timestamp sleep; do
            "$BUILD/regctl" --registry "$a" --timeout 1 lookup "$s" >/dev/null 2>&1 || all=""
        done
    done
    [ -n "$all" ] && break
    sleep 0.1
    tries=$((tries + 1))
done
[ -n "$all" ] || say "warning: not every node sees both services after 10 s; try the commands anyway"

cat <<EOF

etcd      etcd1 http://127.0.0.1:2379  (pid $etcd_pid1)   data and logs in $tmp
          etcd2 http://127.0.0.1:22379 (pid $etcd_pid2)   leader: $leader (it may change)
          etcd3 http://127.0.0.1:32379 (pid $etcd_pid3)
registryd node1 127.0.0.1:5381 (pid $node_pid1)  DNS 127.0.0.1:8601  HTTP http://127.0.0.1:8501/
          node2 127.0.0.1:5382 (pid $node_pid2)  DNS 127.0.0.1:8602  HTTP http://127.0.0.1:8502/
          node3 127.0.0.1:5383 (pid $node_pid3)  DNS 127.0.0.1:8603  HTTP http://127.0.0.1:8503/
tsserv    (service "timestamp") listens on $ts_addr (pid $ts_pid)
sleepserv (service "sleep")     listens on $sl_addr (pid $sl_pid)
          both registered through REGISTRY_ADDR=$NODES

EOF

others=""
for k in 1 2 3; do [ "etcd$k" = "$leader" ] || others="$others $(get etcd_pid$k)"; done
tip() { if [ -n "${2:-}" ]; then printf '    %-52s # %s\n' "$1" "$2"; else printf '    %s\n' "$1"; fi; }
echo "In another terminal, try:"
tip "export REGISTRY_ADDR=$NODES"
tip "$REGCTL list" "any node, the same answer"
tip "$REGCTL --registry 127.0.0.1:5382 lookup timestamp --all"
tip "$REGCTL --registry 127.0.0.1:5383 call sleep '{\"sleep\": 1}'"
tip "$REGCTL watch" "leave it running; in a third terminal:"
tip "$REGCTL --registry 127.0.0.1:5382 register demo 127.0.0.1 9 --check none"
tip "kill $node_pid1" "node1 goes: node2 and node3 go on answering"
tip "$REGCTL --registry 127.0.0.1:5381,127.0.0.1:5382 lookup demo" "the client moves on"
tip "kill -9 $leader_pid" "etcd's leader ($leader): another is elected in ~2 s"
tip "kill -USR1 $$" "starts again whatever was killed, same ports"
tip "kill -9$others" "2 of 3 etcd members: writes are unavailable, lookups go on"
tip "$REGCTL --registry 127.0.0.1:5382 stats" "store.connected, store.nodes, ..."
tip "dig @127.0.0.1 -p 8602 timestamp.service.registry A"
tip "curl -s http://127.0.0.1:8503/v1/health/service/timestamp?passing"
cat <<EOF

The dashboards: http://127.0.0.1:8501/ (node1), :8502, :8503.
Logs follow here, each line prefixed with its program. Press Ctrl-C to stop everything.

EOF

# restart_dead: what kill -USR1 asks for; etcd members first (the nodes need them)
restart_dead() {
    for k in 1 2 3; do
        p=$(get etcd_pid$k)
        if [ -z "$p" ] || ! kill -0 "$p" 2>/dev/null; then
            start_etcd $k existing
            say "etcd$k started again (pid $(get etcd_pid$k))"
        fi
    done
    for k in 1 2 3; do
        p=$(get node_pid$k)
        if [ -z "$p" ] || ! kill -0 "$p" 2>/dev/null; then
            start_node $k || continue
            if wait_listening "$tmp/node$k.out" "$(get node_pid$k)" >/dev/null; then
                say "node$k started again (pid $(get node_pid$k))"
            else
                say "node$k did not start again (see its message above)"
            fi
        fi
    done
    if [ -z "$ts_pid" ] || ! kill -0 "$ts_pid" 2>/dev/null; then
        start_service tsserv && ts_pid=$SVC_PID && say "tsserv started again (pid $ts_pid)"
    fi
    if [ -z "$sl_pid" ] || ! kill -0 "$sl_pid" 2>/dev/null; then
        start_service sleepserv && sl_pid=$SVC_PID && say "sleepserv started again (pid $sl_pid)"
    fi
}

# Stay in the foreground until a signal, saying when something exits (killed from
# another terminal, or on its own). `wait` returns at once for a trapped signal.
gone=""
while :; do
    sleep 1 &
    wait $! 2>/dev/null
    if [ -n "$restart_asked" ]; then
        restart_asked="" gone=""
        restart_dead
    fi
    for name in etcd1 etcd2 etcd3 node1 node2 node3 tsserv sleepserv; do
        case $name in
            etcd*) p=$(get "etcd_pid${name#etcd}") ;;
            node*) p=$(get "node_pid${name#node}") ;;
            tsserv) p=$ts_pid ;;
            *) p=$sl_pid ;;
        esac
        [ -n "$p" ] || continue
        case " $gone " in *" $p "*) continue ;; esac
        if ! kill -0 "$p" 2>/dev/null; then
            wait "$p" 2>/dev/null
            say "$name (pid $p) exited (status $?); 'kill -USR1 $$' starts it again"
            gone="$gone $p"
        fi
    done
done
