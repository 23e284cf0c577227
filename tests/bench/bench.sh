#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2086  # $LOOKUP and $hflags are flag lists, split on purpose
# bench.sh — the fixed benchmark suite of issue 5, run by `make bench` as
#   sh tests/bench/bench.sh BUILD_DIR
# after the release build. It starts fresh registryd daemons (port 0, temporary
# databases) and a redis-server peer on a free loopback port, drives both with the same
# client (regbench), and prints one table at the end. Rows 1 and 2 alternate registry and
# Redis runs, several rounds, and report medians and the registry/Redis ratio: absolute
# numbers on a shared machine are noisy, ratios taken side by side are what count.
#
# A row that cannot run (a daemon flag not implemented, a failed start) is marked
# "not run" with the reason; the rest of the suite goes on. Every process started here
# is stopped by its PID on exit, and the temporary directory removed.
#
# Row D compares the DNS front-end (--dns) with dnsmasq under dnsperf (both installed by
# scripts/deps.sh from here) and takes lookup p99 with a DNS load beside it.
#
# Row H measures the HTTP front-end (--http) under wrk against etcd's HTTP gateway and
# nginx (issue 13), and lookup p99 beside SSE streams and a /metrics scraper.
#
# Knobs (environment): BENCH_ROUNDS (default 5), BENCH_SECONDS (seconds per measured
# run, default 2), BENCH_KEEP=1 keeps the temporary directory (logs) for inspection.
set -u

build=${1:-build}
regbench=$build/regbench
registryd=$build/registryd
rounds=${BENCH_ROUNDS:-5}
secs=${BENCH_SECONDS:-2}
warm=0.5

case $rounds in
    ''|*[!0-9]*|0) echo "bench: BENCH_ROUNDS must be a positive integer" >&2; exit 2 ;;
esac
case $secs in
    ''|*[!0-9]*|0) echo "bench: BENCH_SECONDS must be a positive integer" >&2; exit 2 ;;
esac
if [ ! -x "$regbench" ]; then
    echo "bench: $regbench not built (run make first)" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/regbench.XXXXXX") || exit 1
results=$tmp/results            # one line per measurement: LABEL<TAB>JSON | NA<TAB>why | VAL<TAB>n
: >"$results"
pids=""                         # every process this script started and has not reaped

# ---- process management -------------------------------------------------------------

# stop_pid PID: SIGTERM, up to 10 s for a clean exit, then SIGKILL. Only our own children.
# (sh has no local variables: helpers prefix theirs with their own initials)
stop_pid() {
    sp_p=$1
    kill -TERM "$sp_p" 2>/dev/null || { wait "$sp_p" 2>/dev/null; forget_pid "$sp_p"; return 0; }
    sp_n=0
    while kill -0 "$sp_p" 2>/dev/null && [ $sp_n -lt 200 ]; do
        sleep 0.05
        sp_n=$((sp_n + 1))
    done
    kill -KILL "$sp_p" 2>/dev/null
    wait "$sp_p" 2>/dev/null
    forget_pid "$sp_p"
}

forget_pid() {
    fp_rest=""
    for fp_q in $pids; do [ "$fp_q" = "$1" ] || fp_rest="$fp_rest $fp_q"; done
    pids=$fp_rest
}

cleanup() {
    for cl_p in $pids; do stop_pid "$cl_p"; done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "bench: $*" >&2; }

# free_port: a loopback port nobody listens on right now (bound to 0, then released).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_for FILE PATTERN PID: polls (deadline 15 s) until FILE holds a line matching
# PATTERN; fails early when PID has exited.
wait_for() {
    wf_n=0
    while [ $wf_n -lt 300 ]; do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || { grep -q "$2" "$1" 2>/dev/null && return 0; return 1; }
        sleep 0.05
        wf_n=$((wf_n + 1))
    done
    return 1
}

# start_registryd NAME [FLAGS...]: a fresh daemon on 127.0.0.1:0 with its own database and
# log. Sets REG_ADDR and REG_PID, or returns 1 with the reason in REG_ERR.
start_registryd() {
    sr_name=$1
    shift
    REG_ADDR="" REG_PID="" REG_ERR=""
    if [ ! -x "$registryd" ]; then
        REG_ERR="$registryd not built"
        return 1
    fi
    sr_out=$tmp/$sr_name.out
    # One load generator registers everything from one address: lift the per-client cap
    # (issue 10's --max-instances-per-client; the rows measure speed, not that limit).
    "$registryd" --listen 127.0.0.1:0 --db "$tmp/$sr_name.db" --log "$tmp/$sr_name.log" \
        --max-instances-per-client 100000000 "$@" \
        >"$sr_out" 2>"$tmp/$sr_name.err" &
    REG_PID=$!
    pids="$pids $REG_PID"
    if ! wait_for "$sr_out" '^listening on ' "$REG_PID"; then
        REG_ERR=$(head -n 1 "$tmp/$sr_name.err" 2>/dev/null)
        [ -n "$REG_ERR" ] || REG_ERR="registryd $* did not print its address"
        stop_pid "$REG_PID"
        return 1
    fi
    REG_ADDR=$(sed -n 's/^listening on //p' "$sr_out" | head -n 1)
    return 0
}

# start_redis: redis-server without persistence on a free loopback port. Sets REDIS_ADDR,
# REDIS_PID, or returns 1. Retries with a new port if another process took it first.
start_redis() {
    REDIS_ADDR="" REDIS_PID=""
    command -v redis-server >/dev/null 2>&1 || { REDIS_ERR="redis-server not installed"; return 1; }
    for rs_try in 1 2 3; do
        rs_port=$(free_port) || { REDIS_ERR="no free port"; return 1; }
        rs_log=$tmp/redis.$rs_try.log
        redis-server --port "$rs_port" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --dir "$tmp" --logfile "$rs_log" >/dev/null 2>&1 &
        REDIS_PID=$!
        pids="$pids $REDIS_PID"
        if wait_for "$rs_log" 'Ready to accept connections' "$REDIS_PID"; then
            REDIS_ADDR=127.0.0.1:$rs_port
            return 0
        fi
        stop_pid "$REDIS_PID"
    done
    REDIS_ERR="redis-server did not start (see its log)"
    return 1
}

# ---- measurements ---------------------------------------------------------------------

# rb LABEL [REGBENCH ARGS...]: one regbench run; its JSON line goes into the results
# under LABEL, or a "not run" line with regbench's last complaint.
rb() {
    rb_label=$1
    shift
    if timeout 600 "$regbench" --json "$@" >"$tmp/rb.out" 2>"$tmp/rb.err"; then
        rb_rc=0
    else
        rb_rc=$?
    fi
    if { [ $rb_rc -eq 0 ] || [ $rb_rc -eq 3 ]; } && [ -s "$tmp/rb.out" ]; then
        while IFS= read -r rb_line; do
            printf '%s\t%s\n' "$rb_label" "$rb_line" >>"$results"
        done <"$tmp/rb.out"
        [ $rb_rc -eq 3 ] &&
            say "$rb_label: wrong replies: $(grep -v preloaded "$tmp/rb.err" | head -n 1)"
        return 0
    fi
    rb_why=$(grep -v preloaded "$tmp/rb.err" | tail -n 1)
    [ $rb_rc -eq 124 ] && rb_why="timed out"
    [ -n "$rb_why" ] || rb_why="regbench exit $rb_rc"
    printf '%s\tNA\t%s\n' "$rb_label" "$rb_why" >>"$results"
    say "$rb_label: $rb_why"
    return 1
}

na() { printf '%s\tNA\t%s\n' "$1" "$2" >>"$results"; say "$1: not run: $2"; }

# peak resident set of PID in KiB (VmHWM), or nothing.
vmhwm() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status" 2>/dev/null; }

# snap LABEL ADDR: records the daemon's stats reply with the time it was taken, so the
# table can show rates (health checks/s, writes per commit) over a measurement.
snap() {
    python3 - "$1" "$2" >>"$results" <<'EOF' 2>/dev/null
import json, socket, sys, time
label, addr = sys.argv[1:]
host, port = addr.rsplit(":", 1)
s = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
s.sendall(b'{"op":"stats"}\n')
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
st = json.loads(buf)
print(label + "\tSTATS\t" + json.dumps({"t": time.time(), "stats": st}, separators=(",", ":")))
EOF
}

LOOKUP="-c 50 --duration $secs --warmup $warm"

# CPU busy time of the whole machine (user, nice, system, steal jiffies; interrupts left
# out as they are mostly our own loopback traffic), to tell how much other processes took
cpu_busy() { awk '/^cpu /{ print $2 + $3 + $4 + $9; exit }' /proc/stat 2>/dev/null; }

start=$(date +%s)
busy_start=$(cpu_busy)
if start_redis; then
    say "redis-server on $REDIS_ADDR (pid $REDIS_PID)"
else
    say "no Redis peer: $REDIS_ERR"
fi

# ---- rows 1, 2 and the durable-write row: one daemon, --sync full ---------------------
if start_registryd main --sync full; then
    say "registryd on $REG_ADDR (pid $REG_PID)"
    main_pid=$REG_PID main_addr=$REG_ADDR
    rb setup.registry --registry "$main_addr" -c 50 -n 1000
    [ -n "$REDIS_ADDR" ] && rb setup.redis --target redis --registry "$REDIS_ADDR" -c 50 -n 1000
    for p in 1 16; do
        row=r1
        [ $p -eq 16 ] && row=r2
        i=1
        while [ "$i" -le "$rounds" ]; do
            say "row ${row#r}: lookup, 50 connections, pipeline $p, round $i/$rounds"
            # alternate which server goes first so drift (thermal, other load) cancels out
            if [ $((i % 2)) -eq 1 ]; then order="registry redis"; else order="redis registry"; fi
            for t in $order; do
                if [ "$t" = registry ]; then
                    rb $row.registry --registry "$main_addr" --no-preload -P $p $LOOKUP
                elif [ -n "$REDIS_ADDR" ]; then
                    rb $row.redis --target redis --registry "$REDIS_ADDR" --no-preload -P $p $LOOKUP
                fi
            done
            i=$((i + 1))
        done
    done
    [ -n "$REDIS_ADDR" ] || { na r1.redis "$REDIS_ERR"; na r2.redis "$REDIS_ERR"; }

    # lookup p99 while durable registrations stream in on 4 more connections: at a steady
    # 2,000/s (a large rollout: does a lookup ever wait for a commit?), and flat out (what
    # the write path costs the loop when it saturates a 2-core machine)
    i=1
    while [ "$i" -le 3 ]; do
        say "lookups while durable registrations stream in, round $i/3"
        rb w.base --registry "$main_addr" --no-preload $LOOKUP
        rb w.paced --registry "$main_addr" --no-preload --bg-register 4 --bg-rate 2000 $LOOKUP
        rb w.load --registry "$main_addr" --no-preload --bg-register 4 $LOOKUP
        i=$((i + 1))
    done

    say "row 4: register --sync full, 50 connections"
    snap r4.pre "$main_addr"
    rb r4 --registry "$main_addr" --no-preload -t register -c 50 --duration $((secs * 2)) --warmup $warm
    snap r4.post "$main_addr"
    stop_pid "$main_pid"
else
    for r in r1.registry r2.registry w.base w.paced w.load r4; do na $r "$REG_ERR"; done
fi

# ---- rows 3 and 7: one daemon that grows to 100,000 services --------------------------
if start_registryd grow --sync full; then
    grow_pid=$REG_PID
    for n in 1 100 10000 100000; do
        say "row 3: lookup with $n registered services"
        rb r3.$n --registry "$REG_ADDR" --services $n -c 50 --duration $((secs + 1)) --warmup $warm
    done
    kb=$(vmhwm "$grow_pid")
    if [ -n "$kb" ]; then
        printf 'r7\tVAL\t%s\n' "$kb" >>"$results"
    else
        na r7 "no VmHWM for pid $grow_pid"
    fi
    stop_pid "$grow_pid"
else
    for r in r3.1 r3.100 r3.10000 r3.100000 r7; do na $r "$REG_ERR"; done
fi

# ---- row 5: lookups while 10,000 instances are health-checked -------------------------
# Half the instances point at a listener that accepts and closes, half at a closed port.
# --max-failures 1000 (its maximum) keeps the dead half from being evicted, so every sweep
# checks all 10,000 for the whole measurement; each failed check is then a check_failed
# event (log line + events row), the load the first --max-failures sweeps bring anyway.
python3 -c '
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(4096)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.close()
' >"$tmp/live.out" 2>"$tmp/live.err" &
live_pid=$!
pids="$pids $live_pid"
health_note=""
if ! wait_for "$tmp/live.out" '^[0-9]' "$live_pid"; then
    na r5.off "could not start the accept-and-close listener"
    na r5.on "could not start the accept-and-close listener"
    na r5.mix "could not start the accept-and-close listener"
else
    live_port=$(head -n 1 "$tmp/live.out")
    dead_port=$(free_port)
    hflags="--sync full --check-interval 1 --check-timeout 0.5"
    if start_registryd health $hflags --max-failures 1000 ||
       { health_note="default --max-failures (dead half evicted during the run)";
         start_registryd health $hflags; }; then
        health_pid=$REG_PID
        i=1
        while [ "$i" -le 2 ]; do
            say "row 5: lookups without health checks, round $i/2"
            rb r5.off --registry "$REG_ADDR" $LOOKUP --duration $((secs + 1))
            i=$((i + 1))
        done
        say "row 5: registering 10,000 health-checked instances"
        rb setup.checked --registry "$REG_ADDR" --no-preload --checked 10000 \
            --live-port "$live_port" --dead-port "$dead_port" -c 50 -n 1000
        snap r5.pre "$REG_ADDR"
        i=1
        while [ "$i" -le 2 ]; do
            say "row 5: lookups during the 10,000-instance sweep, round $i/2"
            rb r5.on --registry "$REG_ADDR" --no-preload $LOOKUP --duration $((secs + 1))
            # the sweep and 2,000 durable registrations/s at once (issue 15)
            say "row 5: lookups during the sweep and 2,000 registrations/s, round $i/2"
            rb r5.mix --registry "$REG_ADDR" --no-preload --bg-register 4 --bg-rate 2000 \
                $LOOKUP --duration $((secs + 1))
            i=$((i + 1))
        done
        snap r5.post "$REG_ADDR"
        [ -n "$health_note" ] && printf 'r5.note\tNOTE\t%s\n' "$health_note" >>"$results"
        stop_pid "$health_pid"
    else
        na r5.off "$REG_ERR"
        na r5.on "$REG_ERR"
        na r5.mix "$REG_ERR"
    fi
fi
stop_pid "$live_pid"

# ---- row 6: lookups with --log-lookups off and on -------------------------------------
if start_registryd logoff --sync full; then
    off_pid=$REG_PID off_addr=$REG_ADDR
    if start_registryd logon --sync full --log-lookups; then
        on_pid=$REG_PID on_addr=$REG_ADDR
        rb setup.logoff --registry "$off_addr" -c 50 -n 1000
        rb setup.logon --registry "$on_addr" -c 50 -n 1000
        i=1
        while [ "$i" -le 3 ]; do
            say "row 6: lookups with --log-lookups off / on, round $i/3"
            rb r6.off --registry "$off_addr" --no-preload $LOOKUP
            rb r6.on --registry "$on_addr" --no-preload $LOOKUP
            i=$((i + 1))
        done
        lines=$(grep -c '"lookup"' "$tmp/logon.log" 2>/dev/null || true)
        printf 'r6.lines\tVAL\t%s\n' "${lines:-0}" >>"$results"
        stop_pid "$on_pid"
    else
        na r6.on "$REG_ERR"
    fi
    stop_pid "$off_pid"
else
    na r6.off "$REG_ERR"
    na r6.on "$REG_ERR"
fi

# ---- row D: DNS front-end vs dnsmasq, and line-protocol p99 beside a DNS load -------
# Both servers hold the same 100 names (regbench's bench-svc-<i>, check none, 127.0.0.1,
# port 1024+i): A of <name>.service.registry and SRV of _<name>._tcp.service.registry.
# dnsperf (10 clients, 100 outstanding) alternates between them, 3 rounds of $secs s per
# query type, TTL 0 and no cache on both sides. dnsmasq is answering from its own
# --host-record / --srv-host tables: the yardstick of a tuned single-threaded DNS server.
sh "$(dirname "$0")/../../scripts/deps.sh" dnsperf dnsmasq >&2 || say "could not install dnsperf/dnsmasq"

# dp_parse LABEL FILE: dnsperf's report in FILE into the results as JSON (rps = queries/s,
# errors = lost + answers other than NOERROR, avg/max latency), or a "not run" line.
dp_parse() {
    python3 - "$1" "$2" >>"$results" <<'EOF'
import json, re, sys
label, path = sys.argv[1:]
t = open(path).read()
def num(pat):
    m = re.search(pat, t)
    return float(m.group(1)) if m else None
qps = num(r"Queries per second:\s*([\d.]+)")
if qps is None:
    why = [l.strip() for l in t.splitlines() if l.strip()][-1:] or ["no output"]
    print(f"{label}\tNA\tdnsperf: {why[0]}")
    sys.exit(0)
sent, done = num(r"Queries sent:\s*(\d+)"), num(r"Queries completed:\s*(\d+)")
lost = num(r"Queries lost:\s*(\d+)") or 0
noerr = num(r"NOERROR (\d+)") or 0
avg, mx = num(r"Average Latency \(s\):\s*([\d.]+)"), num(r"max ([\d.]+)\)")
r = {"rps": qps, "sent": sent, "lost": int(lost), "bad": int((done or 0) - noerr),
     "errors": int(lost + (done or 0) - noerr)}
if avg is not None:
    r["avg_us"] = avg * 1e6
if mx is not None:
    r["max_us"] = mx * 1e6
print(label + "\t" + json.dumps(r))
EOF
}
# dp LABEL PORT QTYPE: one dnsperf run of $secs s, 10 clients, over $tmp/dns.queries.QTYPE.
dp() {
    timeout $((secs + 30)) dnsperf -s 127.0.0.1 -p "$2" -d "$tmp/dns.queries.$3" -c 10 -q 100 \
        -l "$secs" >"$tmp/dp.out" 2>&1
    dp_parse "$1" "$tmp/dp.out"
}

# start_dnsmasq: dnsmasq in the foreground on a free loopback port with the 100 names.
# Sets DM_PORT and DM_PID, or returns 1 with the reason in DM_ERR.
start_dnsmasq() {
    DM_PORT="" DM_PID="" DM_ERR=""
    command -v dnsmasq >/dev/null 2>&1 || { DM_ERR="dnsmasq not installed"; return 1; }
    sm_recs=""
    sm_i=0
    while [ $sm_i -lt 100 ]; do
        sm_recs="$sm_recs --host-record=bench-svc-$sm_i.service.registry,127.0.0.1"
        sm_recs="$sm_recs --srv-host=_bench-svc-$sm_i._tcp.service.registry,bench-svc-$sm_i.service.registry,$((1024 + sm_i)),1,1"
        sm_i=$((sm_i + 1))
    done
    for sm_try in 1 2 3; do
        DM_PORT=$(free_port) || { DM_ERR="no free port"; return 1; }
        sm_log=$tmp/dnsmasq.$sm_try.log
        # --conf-file=/dev/null: not the system's /etc/dnsmasq.conf; --pid-file=: none
        dnsmasq --no-daemon --conf-file=/dev/null --pid-file= --no-resolv --no-hosts \
            --port="$DM_PORT" --listen-address=127.0.0.1 --bind-interfaces --cache-size=0 \
            $sm_recs >"$sm_log" 2>&1 &
        DM_PID=$!
        pids="$pids $DM_PID"
        if wait_for "$sm_log" 'dnsmasq: started' "$DM_PID"; then
            return 0
        fi
        stop_pid "$DM_PID"
    done
    DM_ERR="dnsmasq did not start: $(tail -n 1 "$sm_log")"
    return 1
}

dns_rows="d.a.reg d.a.dm d.srv.reg d.srv.dm d.base d.load"
if ! command -v dnsperf >/dev/null 2>&1; then
    for r in $dns_rows; do na $r "dnsperf not installed"; done
elif ! start_registryd dns --sync full --dns 127.0.0.1:0 ||
     ! wait_for "$tmp/dns.out" '^dns on ' "$REG_PID"; then
    [ -n "$REG_ERR" ] || { REG_ERR="registryd printed no 'dns on' line"; stop_pid "$REG_PID"; }
    for r in $dns_rows; do na $r "$REG_ERR"; done
else
    dns_pid=$REG_PID dns_addr=$REG_ADDR
    dns_port=$(sed -n 's/^dns on .*:\([0-9]*\)$/\1/p' "$tmp/dns.out" | head -n 1)
    say "registryd on $dns_addr, DNS on port $dns_port (pid $dns_pid)"
    rb setup.dns --registry "$dns_addr" -c 50 -n 1000
    i=0
    : >"$tmp/dns.queries.a"
    : >"$tmp/dns.queries.srv"
    while [ $i -lt 100 ]; do
        echo "bench-svc-$i.service.registry A" >>"$tmp/dns.queries.a"
        echo "_bench-svc-$i._tcp.service.registry SRV" >>"$tmp/dns.queries.srv"
        i=$((i + 1))
    done
    if start_dnsmasq; then
        say "dnsmasq on 127.0.0.1:$DM_PORT (pid $DM_PID)"
    else
        for r in d.a.dm d.srv.dm; do na $r "$DM_ERR"; done
    fi
    i=1
    while [ "$i" -le 3 ]; do
        say "row D: DNS A and SRV, registryd vs dnsmasq, round $i/3"
        if [ $((i % 2)) -eq 1 ]; then order="reg dm"; else order="dm reg"; fi
        for q in a srv; do
            for t in $order; do
                if [ $t = reg ]; then
                    dp d.$q.reg "$dns_port" $q
                elif [ -n "$DM_PID" ]; then
                    dp d.$q.dm "$DM_PORT" $q
                fi
            done
        done
        i=$((i + 1))
    done
    [ -n "$DM_PID" ] && stop_pid "$DM_PID"

    # line-protocol lookups alone, then with dnsperf (A queries, flat out) on the same
    # daemon from before the warm-up to after the measured run
    i=1
    while [ "$i" -le 2 ]; do
        say "row D: lookups without / with a DNS load beside them, round $i/2"
        rb d.base --registry "$dns_addr" --no-preload $LOOKUP
        timeout $((secs + 30)) dnsperf -s 127.0.0.1 -p "$dns_port" -d "$tmp/dns.queries.a" \
            -c 10 -q 100 -l $((secs + 1)) >"$tmp/dpbg.out" 2>&1 &
        bg_pid=$!
        pids="$pids $bg_pid"
        rb d.load --registry "$dns_addr" --no-preload $LOOKUP
        wait "$bg_pid" 2>/dev/null
        forget_pid "$bg_pid"
        dp_parse d.bg "$tmp/dpbg.out"
        i=$((i + 1))
    done
    stop_pid "$dns_pid"
fi

# ---- row H: the HTTP front-end (issue 13) ---------------------------------------------
# H1: wrk (2 threads, 50 connections, keep-alive) on GET /v1/health/service/web?passing
# (4 passing instances, about 2.5 KB of JSON) against registryd's --http, against etcd's
# own HTTP gateway reading a key whose value is that very answer (POST /v3/kv/range,
# serializable: etcd's fastest read), and against nginx serving the answer as a static
# file. 3 rounds of $secs + 1 s each, the order rotating; one unmeasured 1 s run per
# server first. wrk, nginx and etcd are installed by `make bench` (scripts/deps.sh).
# H2: line-protocol lookup p99 alone, then with 100 open SSE streams
# (GET /api/events/stream) and a /metrics scrape every second on the same daemon,
# alternating, 5 rounds.
# hb ARGS: tests/bench/httpbench.py (helpers: prepare, get, etcd-put, hold)
hb_py=$(dirname "$0")/httpbench.py
hb() { python3 "$hb_py" "$@"; }
wrk_secs=$((secs + 1))

# wrk_lua FILE [REQUEST LINES...]: a wrk script that reports as one JSON line (latencies
# in us, as wrk records them; errors are socket errors, timeouts and non-2xx/3xx answers)
wrk_lua() {
    wl_f=$1
    shift
    : >"$wl_f"
    for wl_l in "$@"; do printf '%s\n' "$wl_l" >>"$wl_f"; done
    cat >>"$wl_f" <<'LUA'
done = function(s, lat, req)
  local e = s.errors
  io.write(string.format('\n{"rps":%.1f,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,' ..
    '"errors":%d,"requests":%d,"resp_bytes":%.0f}\n', s.requests / (s.duration / 1e6),
    lat:percentile(50), lat:percentile(99), lat:percentile(99.9), lat.max,
    e.connect + e.read + e.write + e.status + e.timeout, s.requests,
    s.requests > 0 and s.bytes / s.requests or 0))
end
LUA
}

# wk LABEL SECONDS SCRIPT URL: one wrk run into the results (LABEL "-": unmeasured).
wk() {
    timeout $(($2 + 30)) wrk -t2 -c50 -d"$2"s -s "$3" "$4" >"$tmp/wrk.out" 2>&1
    [ "$1" = - ] && return 0
    wk_j=$(grep '^{"rps"' "$tmp/wrk.out" | tail -n 1)
    if [ -n "$wk_j" ]; then
        printf '%s\t%s\n' "$1" "$wk_j" >>"$results"
    else
        na "$1" "wrk: $(grep -v '^ *$' "$tmp/wrk.out" | tail -n 1)"
    fi
}

# start_etcd: a single etcd member on two free loopback ports with a temporary data dir.
# Sets ETCD_URL and ETCD_PID, or returns 1 with the reason in ETCD_ERR.
start_etcd() {
    ETCD_URL="" ETCD_PID="" ETCD_ERR=""
    command -v etcd >/dev/null 2>&1 || { ETCD_ERR="etcd not installed"; return 1; }
    for se_try in 1 2 3; do
        se_c=$(free_port) || { ETCD_ERR="no free port"; return 1; }
        se_p=$(free_port) || { ETCD_ERR="no free port"; return 1; }
        [ "$se_c" != "$se_p" ] || continue
        se_log=$tmp/etcd.$se_try.log
        etcd --name bench --data-dir "$tmp/etcd.$se_try" \
            --listen-client-urls "http://127.0.0.1:$se_c" \
            --advertise-client-urls "http://127.0.0.1:$se_c" \
            --listen-peer-urls "http://127.0.0.1:$se_p" \
            --initial-advertise-peer-urls "http://127.0.0.1:$se_p" \
            --initial-cluster "bench=http://127.0.0.1:$se_p" >"$se_log" 2>&1 &
        ETCD_PID=$!
        pids="$pids $ETCD_PID"
        if wait_for "$se_log" 'ready to serve client requests' "$ETCD_PID"; then
            ETCD_URL=http://127.0.0.1:$se_c
            return 0
        fi
        stop_pid "$ETCD_PID"
    done
    ETCD_PID=""
    ETCD_ERR="etcd did not start: $(tail -n 1 "$se_log")"
    return 1
}

# start_nginx FILE: nginx serving FILE as /body.json on a free loopback port. One worker
# process: registryd answers HTTP on one loop thread, so one nginx event loop is the
# like-for-like yardstick; and on 2 cores, wrk's 2 threads need the other core (a second
# worker would mostly take CPU from the client). access_log off (registryd logs no
# requests either); the rest are nginx's defaults. Sets NGX_URL and NGX_PID, or returns 1.
start_nginx() {
    NGX_URL="" NGX_PID="" NGX_ERR=""
    sn_bin=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; })
    [ -n "$sn_bin" ] || { NGX_ERR="nginx not installed"; return 1; }
    sn_d=$tmp/nginx
    mkdir -p "$sn_d/www"
    cp "$1" "$sn_d/www/body.json"
    # started as root, nginx's worker runs as nobody: it must reach the file
    chmod 711 "$tmp" "$sn_d"
    chmod 755 "$sn_d/www"
    chmod 644 "$sn_d/www/body.json"
    sn_size=$(wc -c <"$1")
    for _ in 1 2 3; do
        sn_port=$(free_port) || { NGX_ERR="no free port"; return 1; }
        cat >"$sn_d/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $sn_d/nginx.pid;
error_log $sn_d/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    client_body_temp_path $sn_d/client_body;
    proxy_temp_path $sn_d/proxy;
    fastcgi_temp_path $sn_d/fastcgi;
    uwsgi_temp_path $sn_d/uwsgi;
    scgi_temp_path $sn_d/scgi;
    server {
        listen 127.0.0.1:$sn_port;
        root $sn_d/www;
    }
}
NGX
        "$sn_bin" -p "$sn_d" -e "$sn_d/error.log" -c "$sn_d/nginx.conf" \
            >"$sn_d/stdout" 2>&1 &
        NGX_PID=$!
        pids="$pids $NGX_PID"
        sn_n=0
        while [ $sn_n -lt 100 ] && kill -0 "$NGX_PID" 2>/dev/null; do
            if hb get "http://127.0.0.1:$sn_port/body.json" "$sn_size"; then
                NGX_URL=http://127.0.0.1:$sn_port/body.json
                return 0
            fi
            sleep 0.1
            sn_n=$((sn_n + 1))
        done
        stop_pid "$NGX_PID"
    done
    NGX_PID=""
    NGX_ERR="nginx did not serve the file: $(tail -n 1 "$sn_d/error.log" 2>/dev/null)"
    return 1
}

h1_rows="h1.reg h1.etcd h1.nginx"
h2_rows="h2.base h2.load"
if ! start_registryd http --sync full --http 127.0.0.1:0 ||
   ! wait_for "$tmp/http.out" '^http on ' "$REG_PID"; then
    [ -n "$REG_ERR" ] || { REG_ERR="registryd printed no 'http on' line"; stop_pid "$REG_PID"; }
    for r in $h1_rows $h2_rows; do na $r "$REG_ERR"; done
else
    http_pid=$REG_PID http_addr=$REG_ADDR
    http_url=$(sed -n 's/^http on //p' "$tmp/http.out" | head -n 1)
    say "registryd on $http_addr, HTTP on $http_url (pid $http_pid)"
    if ! command -v wrk >/dev/null 2>&1; then
        for r in $h1_rows; do na $r "wrk not installed"; done
    elif ! body_size=$(hb prepare "$http_addr" "$http_url" web 4 "$tmp/body.json" \
                       2>"$tmp/prepare.err"); then
        for r in $h1_rows; do na $r "$(tail -n 1 "$tmp/prepare.err")"; done
    else
        printf 'h1.size\tVAL\t%s\n' "$body_size" >>"$results"
        h_peers="wrk $(wrk -v 2>&1 | sed -n 's/^wrk [^0-9]*\([0-9.]*\).*/\1/p' | head -n 1)"
        h_peers="$h_peers, etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')"
        h_peers="$h_peers, nginx $(nginx -v 2>&1 | sed -n 's|.*nginx/||p')"
        printf 'h.peers\tNOTE\t%s\n' "$h_peers" >>"$results"
        wrk_lua "$tmp/get.lua"
        if start_etcd && etcd_body=$(hb etcd-put "$ETCD_URL" web "$tmp/body.json" \
                                     2>"$tmp/etcdput.err"); then
            say "etcd on $ETCD_URL (pid $ETCD_PID)"
            wrk_lua "$tmp/etcd.lua" 'wrk.method = "POST"' "wrk.body = '$etcd_body'" \
                'wrk.headers["Content-Type"] = "application/json"'
        else
            [ -n "$ETCD_ERR" ] || ETCD_ERR="etcd: $(tail -n 1 "$tmp/etcdput.err")"
            na h1.etcd "$ETCD_ERR"
            ETCD_URL=""
        fi
        if start_nginx "$tmp/body.json"; then
            say "nginx on $NGX_URL (pid $NGX_PID)"
        else
            na h1.nginx "$NGX_ERR"
        fi
        reg_get="${http_url%/}/v1/health/service/web?passing"
        wk - 1 "$tmp/get.lua" "$reg_get"
        [ -n "$ETCD_URL" ] && wk - 1 "$tmp/etcd.lua" "$ETCD_URL/v3/kv/range"
        [ -n "$NGX_URL" ] && wk - 1 "$tmp/get.lua" "$NGX_URL"
        i=1
        while [ "$i" -le 3 ]; do
            say "row H1: wrk, 50 connections, registryd / etcd / nginx, round $i/3"
            case $i in 1) order="reg etcd nginx" ;; 2) order="etcd nginx reg" ;;
                       *) order="nginx reg etcd" ;; esac
            for t in $order; do
                case $t in
                    reg) wk h1.reg $wrk_secs "$tmp/get.lua" "$reg_get" ;;
                    etcd) [ -n "$ETCD_URL" ] && wk h1.etcd $wrk_secs "$tmp/etcd.lua" \
                              "$ETCD_URL/v3/kv/range" ;;
                    nginx) [ -n "$NGX_URL" ] && wk h1.nginx $wrk_secs "$tmp/get.lua" "$NGX_URL" ;;
                esac
            done
            i=$((i + 1))
        done
        # row 4's peer: etcd's durable writes through the same gateway, 50 connections
        if [ -n "$ETCD_URL" ]; then
            say "row 4: etcd put, wrk 50 connections"
            hb put-lua "$tmp/put.lua" && wrk_lua "$tmp/put.lua.done" &&
                cat "$tmp/put.lua.done" >>"$tmp/put.lua" &&
                wk r4.etcd $wrk_secs "$tmp/put.lua" "$ETCD_URL/v3/kv/put"
        else
            na r4.etcd "${ETCD_ERR:-etcd did not start}"
        fi
        [ -n "$ETCD_PID" ] && stop_pid "$ETCD_PID"
        [ -n "$NGX_PID" ] && stop_pid "$NGX_PID"
    fi

    # h2_load: one measured lookup run beside the 100 streams and the scraper
    h2_load() {
        # python3 itself, not through hb: $! must be the process to stop
        python3 "$hb_py" hold "$http_url" "$http_addr" 100 >"$tmp/hold.out" 2>"$tmp/hold.err" &
        hold_pid=$!
        pids="$pids $hold_pid"
        if wait_for "$tmp/hold.out" '^ready ' "$hold_pid"; then
            rb h2.load --registry "$http_addr" --no-preload $LOOKUP
            kill -TERM "$hold_pid" 2>/dev/null
            wait "$hold_pid" 2>/dev/null
            forget_pid "$hold_pid"
            h2_j=$(grep '^{' "$tmp/hold.out" | tail -n 1)
            [ -n "$h2_j" ] && printf 'h2.hold\t%s\n' "$h2_j" >>"$results"
        else
            na h2.load "SSE holder: $(tail -n 1 "$tmp/hold.err")"
            stop_pid "$hold_pid"
        fi
    }
    rb setup.http --registry "$http_addr" -c 50 -n 1000
    i=1
    # 5 rounds, not 3, and the order alternating: a p99 over 2 s moves with every other
    # process on a shared machine
    while [ "$i" -le 5 ]; do
        say "row H2: lookups without / with 100 SSE streams and a /metrics scrape, round $i/5"
        if [ $((i % 2)) -eq 1 ]; then
            rb h2.base --registry "$http_addr" --no-preload $LOOKUP
            h2_load
        else
            h2_load
            rb h2.base --registry "$http_addr" --no-preload $LOOKUP
        fi
        i=$((i + 1))
    done
    stop_pid "$http_pid"
fi

# ---- row I: instructions per request, counted by callgrind ----------------------------
# Figures the machine's other load does not move: a change to a hot path is judged by
# them first (tests/bench/instr.sh says what each counts).
if command -v valgrind >/dev/null 2>&1; then
    say "row I: instructions per request under callgrind (hit, miss, register, http)"
    sh tests/bench/instr.sh "$build" "$registryd" 2>"$tmp/instr.err" |
        awk -F '\t' '{ printf "%s\tVAL\t%s\n", $1, $2 }' >>"$results"
    for r in instr.hit instr.miss instr.reg instr.http; do
        grep -q "^$r	" "$results" || na $r "$(tail -n 1 "$tmp/instr.err" 2>/dev/null)"
    done
else
    for r in instr.hit instr.miss instr.reg instr.http; do na $r "valgrind not installed"; done
fi

[ -n "$REDIS_PID" ] && stop_pid "$REDIS_PID"
elapsed=$(($(date +%s) - start))
busy_end=$(cpu_busy)
times >"$tmp/times"             # in this shell, not a subshell: every child, all reaped by now
ours=$(tail -n 1 "$tmp/times")

# ---- the table ----------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
regver=$("$registryd" --version 2>/dev/null | head -n 1)
redver=$(redis-server --version 2>/dev/null | sed -n 's/.*v=\([0-9.]*\).*/\1/p')
dmver=$(dnsmasq --version 2>/dev/null | sed -n 's/^Dnsmasq version \([^ ]*\).*/\1/p')
python3 - "$results" "$rounds" "$secs" "$elapsed" "${cpu:-unknown cpu}" "$(nproc)" \
    "$(uname -sr)" "${regver:-registryd ?}" "${redver:-?}" "${busy_start:-0}" "${busy_end:-0}" \
    "$(getconf CLK_TCK)" "$ours" "${dmver:-?}" <<'EOF'
import json, re, statistics, sys

(path, rounds, secs, elapsed, cpu, ncpu, kernel, regver, redver,
 busy0, busy1, clk_tck, ours, dmver) = sys.argv[1:]
runs, na, vals, stats, notes = {}, {}, {}, {}, {}
for line in open(path):
    label, _, rest = line.rstrip("\n").partition("\t")
    kind, _, value = rest.partition("\t")
    if kind == "NA":
        na.setdefault(label, value)
    elif kind == "VAL":
        vals[label] = float(value)
    elif kind == "STATS":
        stats[label] = json.loads(value)
    elif kind == "NOTE":
        notes[label] = value
    else:
        runs.setdefault(label, []).append(json.loads(rest))

def med(label, key):
    xs = [r[key] for r in runs.get(label, []) if key in r]
    return statistics.median(xs) if xs else None

def errors(label):
    return sum(r.get("errors", 0) for r in runs.get(label, []))

def fmt(v, nd=0):
    if v is None:
        return "-"
    return f"{v:,.{nd}f}"

out = []
W = 46                          # width of the test column

def row(num, what, label, note=""):
    if label in runs:
        out.append(f"{num:>2}  {what:<{W}} {len(runs[label]):>4} {fmt(med(label, 'rps')):>10}"
                   f" {fmt(med(label, 'p50_us')):>7} {fmt(med(label, 'p99_us')):>7}"
                   f" {fmt(med(label, 'p999_us')):>8} {fmt(med(label, 'max_us')):>8}"
                   f" {errors(label):>6}  {note}")
    else:
        out.append(f"{num:>2}  {what:<{W}} not run: {na.get(label, 'no result')}")

def verdict(ok):
    return "PASS" if ok else "SHORT"

def ratio(a, b):
    return a / b if a is not None and b else None

def bg_note(label):
    xs = [x["bg_rps"] for x in runs.get(label, []) if "bg_rps" in x]
    p99 = med(label, "bg_p99_us")
    return (f"; {statistics.median(xs):,.0f} registrations/s alongside, their p99 {p99:,.0f} us"
            if xs and p99 is not None else "")

floors = []
print()
print(f"registry benchmark: {regver} vs Redis {redver}, dnsmasq {dmver}; {cpu}, {ncpu} cores,"
      f" {kernel}")
print(f"{rounds} rounds of {secs} s per side-by-side row; suite took {elapsed} s")
try:
    # CPU the machine spent on processes other than this suite's, from /proc/stat and the
    # shell's `times` for its children ("XmY.YYYs XmY.YYYs": user, system)
    mine = sum(int(m) * 60 + float(sec) for m, sec in re.findall(r"(\d+)m([\d.]+)s", ours))
    total = (int(busy1) - int(busy0)) / int(clk_tck)
    cap = int(elapsed) * int(ncpu)
    other = max(0.0, total - mine)
    print(f"CPU: this suite {mine:.0f} s, other processes {other:.0f} s, of {cap} s available")
    if cap and other > 0.1 * cap:
        print("WARNING: other processes kept the machine busy: figures and ratios are unreliable")
except (ValueError, ZeroDivisionError):
    pass
print()
print("runs: measurements per row; figures are medians over them; errors are summed")
print()
print(f"{'#':>2}  {'test':<{W}} {'runs':>4} {'req/s':>10} {'p50 us':>7} {'p99 us':>7}"
      f" {'p99.9 us':>8} {'max us':>8} {'errors':>6}  note")
print("-" * 124)

for num, p, lab in (("1", 1, "r1"), ("2", 16, "r2")):
    floor = 0.8 if p == 1 else 0.5
    r = ratio(med(lab + ".registry", "rps"), med(lab + ".redis", "rps"))
    note = f"registry/Redis {r:.2f} (floor >= {floor}: {verdict(r >= floor)})" if r else ""
    row(num, f"lookup registry, 50 conns, pipeline {p}", lab + ".registry")
    row("", f"GET redis, 50 conns, pipeline {p}", lab + ".redis", note)
    if r:
        floors.append((f"lookup x{p} vs Redis", verdict(r >= floor)))
p99 = med("r1.registry", "p99_us")
if p99 is not None:
    floors.append(("lookup p99 < 1 ms (row 1)", verdict(p99 < 1000)))

base = med("r3.100", "rps")
for n in ("1", "100", "10000", "100000"):
    note = ""
    if n == "100000":
        r = ratio(med("r3.100000", "rps"), base)
        if r:
            note = f"100,000/100 services {r:.2f} (floor >= 0.9: {verdict(r >= 0.9)})"
            floors.append(("100,000 services vs 100", verdict(r >= 0.9)))
    row("3", f"lookup, {int(n):,} service{'s' if n != '1' else ''} registered", "r3." + n, note)

rps4 = med("r4", "rps")
note = f"durable writes/s (floor >= 10,000: {verdict(rps4 >= 10000)})" if rps4 else ""
row("4", "register --sync full, 50 conns", "r4", note)
if rps4:
    floors.append(("durable registrations/s", verdict(rps4 >= 10000)))
r = ratio(rps4, med("r4.etcd", "rps"))
note = f"registryd/etcd put {r:.2f} (floor >= 2.5: {verdict(r >= 2.5)})" if r else ""
row("4", "etcd put (its gateway, 1,000 keys), wrk 50 conns", "r4.etcd", note)
if r:
    floors.append(("durable registrations vs etcd put", verdict(r >= 2.5)))

r = ratio(med("r5.on", "p99_us"), med("r5.off", "p99_us"))
r9 = ratio(med("r5.on", "p999_us"), med("r5.off", "p999_us"))
note = f"p99 sweep/none {r:.2f} (floor <= 1.2: {verdict(r <= 1.2)})" if r else ""
note += f", p99.9 {r9:.2f}" if r9 else ""
if "r5.note" in notes:
    note += ("; " if note else "") + notes["r5.note"]
row("5", "lookup, no health checks", "r5.off")
row("5", "lookup, sweep of 10,000 instances (half dead)", "r5.on", note)
if r:
    floors.append(("p99 during sweep", verdict(r <= 1.2)))
r = ratio(med("r5.mix", "p99_us"), med("r5.off", "p99_us"))
r9 = ratio(med("r5.mix", "p999_us"), med("r5.off", "p999_us"))
note = (f"p99 mix/none {r:.2f}, p99.9 {r9:.2f}" if r and r9 else "-") + bg_note("r5.mix")
row("5", "lookup, sweep + 2,000 registrations/s", "r5.mix", note)

r = ratio(med("r6.on", "rps"), med("r6.off", "rps"))
lines = vals.get("r6.lines")
note = f"req/s on/off {r:.2f}" if r else ""
if r and lines is not None:
    note += f"; {int(lines):,} lookup log lines"
row("6", "lookup, --log-lookups off", "r6.off")
row("6", "lookup, --log-lookups on", "r6.on", note)

if "r7" in vals:
    mib = vals["r7"] / 1024
    out.append(f"{'7':>2}  {'peak RSS (VmHWM), 100,000 instances':<{W}} {'':>4} {mib:>6.1f} MiB"
               f"{'':>42}  floor < 200 MiB: {verdict(mib < 200)}")
    floors.append(("RSS with 100,000 instances", verdict(mib < 200)))
else:
    out.append(f"{'7':>2}  {'peak RSS (VmHWM), 100,000 instances':<{W}}"
               f" not run: {na.get('r7', 'no result')}")

for lab, what in (("instr.hit", "instructions, a cached lookup (pipeline 16)"),
                  ("instr.miss", "instructions, a lookup building its answer"),
                  ("instr.reg", "instructions, a durable registration"),
                  ("instr.http", "instructions, GET /v1/health/service ?passing")):
    if lab in vals:
        out.append(f"{'I':>2}  {what:<{W}} {'':>4} {int(vals[lab]):>10,}")
    else:
        out.append(f"{'I':>2}  {what:<{W}} not run: {na.get(lab, 'no result')}")

row("W", "lookup, no writes", "w.base")
r = ratio(med("w.paced", "p99_us"), med("w.base", "p99_us"))
r9 = ratio(med("w.paced", "p999_us"), med("w.base", "p999_us"))
note = f"p99 writes/none {r:.2f} (floor <= 1.2: {verdict(r <= 1.2)})" if r else ""
note += f", p99.9 {r9:.2f}" if r9 else ""
row("W", "lookup + 2,000 durable registrations/s", "w.paced", note + bg_note("w.paced"))
if r:
    floors.append(("p99 while registrations stream in", verdict(r <= 1.2)))
r = ratio(med("w.load", "p99_us"), med("w.base", "p99_us"))
note = f"p99 writes/none {r:.2f}" if r else ""
row("W", "lookup + durable registrations flat out", "w.load", note + bg_note("w.load"))

# row D: dnsperf has no percentiles: req/s is queries/s, max us its max latency, errors
# the queries lost or answered other than NOERROR; the note gives the mean latency
def avg_note(label):
    xs = [x["avg_us"] for x in runs.get(label, []) if "avg_us" in x]
    return f"mean {statistics.median(xs):,.0f} us" if xs else ""

lost = sum(x.get("lost", 0) for k in ("d.a.reg", "d.a.dm", "d.srv.reg", "d.srv.dm")
           for x in runs.get(k, []))
for q, what in (("a", "A"), ("srv", "SRV")):
    r = ratio(med(f"d.{q}.reg", "rps"), med(f"d.{q}.dm", "rps"))
    note = avg_note(f"d.{q}.dm")
    if r:
        note += (f"; registryd/dnsmasq {r:.2f} (floor >= 1.0: {verdict(r >= 1.0)};"
                 f" goal 1.5: {'met' if r >= 1.5 else 'not met'})")
        floors.append((f"DNS {what} vs dnsmasq", verdict(r >= 1.0)))
    row("D", f"DNS {what} registryd, dnsperf 10 clients", f"d.{q}.reg", avg_note(f"d.{q}.reg"))
    row("D", f"DNS {what} dnsmasq, dnsperf 10 clients", f"d.{q}.dm", note)
if any(k in runs for k in ("d.a.reg", "d.srv.reg")):
    floors.append(("DNS: 0 queries lost", verdict(lost == 0)))
row("D", "lookup, no DNS load", "d.base")
r = ratio(med("d.load", "p99_us"), med("d.base", "p99_us"))
note = f"p99 dns/none {r:.2f}" if r else ""
bg = [x["rps"] for x in runs.get("d.bg", [])]
if bg:
    note += (f"; {statistics.median(bg):,.0f} DNS queries/s alongside,"
             f" {sum(x.get('errors', 0) for x in runs['d.bg'])} lost or failed")
row("D", "lookup + dnsperf A flat out on the same daemon", "d.load", note)

# row H: the HTTP front-end. H1 is wrk (errors: socket errors, timeouts, non-2xx/3xx);
# H2 regbench on the line protocol beside SSE streams and a /metrics scraper
r_etcd = ratio(med("h1.reg", "rps"), med("h1.etcd", "rps"))
r_ngx = ratio(med("h1.reg", "rps"), med("h1.nginx", "rps"))
row("H1", "GET /v1/health/service registryd, wrk 50 conns", "h1.reg")
note = (f"registryd/etcd {r_etcd:.2f} (floor >= 5: {verdict(r_etcd >= 5)})"
        if r_etcd else "")
row("H1", "POST /v3/kv/range etcd gateway, wrk 50 conns", "h1.etcd", note)
if r_etcd:
    floors.append(("HTTP vs etcd gateway", verdict(r_etcd >= 5)))
note = (f"registryd/nginx {r_ngx:.2f} (goal >= 1.0: {'met' if r_ngx >= 1.0 else 'not met'})"
        if r_ngx else "")
row("H1", "GET static file nginx (1 worker), wrk 50 conns", "h1.nginx", note)
row("H2", "lookup, no HTTP clients", "h2.base")
r = ratio(med("h2.load", "p99_us"), med("h2.base", "p99_us"))
note = f"p99 http/none {r:.2f} (floor <= 1.1: {verdict(r <= 1.1)})" if r else ""
held = runs.get("h2.hold", [])
if held:
    note += (f"; {min(x['streams'] - x['closed'] for x in held)} streams held,"
             f" {sum(x['scrapes'] for x in held)} scrapes"
             f" ({sum(x['scrape_errors'] for x in held)} failed, slowest"
             f" {max(x['scrape_max_ms'] for x in held):.1f} ms)")
row("H2", "lookup + 100 SSE streams + /metrics every 1 s", "h2.load", note)
if r:
    floors.append(("p99 beside SSE streams and scrapes", verdict(r <= 1.1)))

print("\n".join(out))
print("-" * 124)
def delta(a, b, *path):
    """b - a of a numeric stats field, or None when either snapshot lacks it."""
    try:
        x, y = stats[a]["stats"], stats[b]["stats"]
        for k in path:
            x, y = x[k], y[k]
        return y - x
    except (KeyError, TypeError):
        return None

commits = delta("r4.pre", "r4.post", "store", "commits")
changes = delta("r4.pre", "r4.post", "store", "changes")
if commits and changes is not None:
    mb = stats["r4.post"]["stats"].get("store", {}).get("max_batch", "?")
    print(f"row 4 group commit: {changes:,} changes in {commits:,} commits "
          f"(mean batch {changes / commits:.1f}, largest {mb})")
checks = delta("r5.pre", "r5.post", "health", "checks")
if checks is not None:
    dt = stats["r5.post"]["t"] - stats["r5.pre"]["t"]
    h = stats["r5.post"]["stats"].get("health", {})
    print(f"row 5 health checks: {checks:,} in {dt:.1f} s ({checks / dt:,.0f}/s; 10,000 instances"
          f" every 1 s need 10,000/s); failing {h.get('failing', '?')} of"
          f" {h.get('checked_instances', '?')}, preserving {h.get('preserving')},"
          f" skipped {h.get('skipped', '?')}")
if "h1.size" in vals:
    sizes = ", ".join(f"{t} {statistics.median(x['resp_bytes'] for x in runs[k]):,.0f}"
                      for t, k in (("registryd", "h1.reg"), ("etcd", "h1.etcd"),
                                   ("nginx", "h1.nginx")) if runs.get(k))
    print(f"row H1: the answer is {int(vals['h1.size']):,} bytes of JSON (4 instances);"
          f" bytes per response with headers: {sizes or '-'}; {notes.get('h.peers', '')}")
if floors:
    short = [n for n, v in floors if v != "PASS"]
    print(f"floor: {len(floors) - len(short)} of {len(floors)} met"
          + (f"; short: {', '.join(short)}" if short else ""))
EOF
