#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# tests/fuzz/run.sh [--no-build] [--runs N] [--workers W] [SECONDS]
#
# Builds the libFuzzer targets (tests/fuzz/fuzz.mk) and fuzzes each one with W processes
# (default: the CPUs, at most 4) sharing its corpus, until they have run N inputs
# together (default: no count) or SECONDS have passed (default 60), whichever comes
# first; then prints per target the figures libFuzzer reports (executions, exec/s,
# coverage, corpus), the wall time, and "crashes: 0" or the crash files. `make fuzz`
# runs it with --runs 10000000 and SECONDS as a safety bound (see fuzz.mk).
#
# Before fuzzing, each target replays its regression inputs (tests/fuzz/regress/T-*):
# every crash ever found stays fixed. The growing corpus lives in build-fuzz/corpus/T
# (the seeds in tests/fuzz/corpus/T are only read); crash inputs are written to
# tests/fuzz/crashes/ (git-ignored). Copy one to tests/fuzz/regress/T-NAME to keep it:
# test_proto's regression test replays that directory under `make check` too.
#
# Exit status: 0 when no target crashed, 1 when one did, 2 when the build failed or on
# a usage error. Stopping at SECONDS before N inputs is reported, not an error.
set -u

cd "$(dirname "$0")/../.." || exit 2
usage() {
    echo "usage: $0 [--no-build] [--runs N] [--workers W] [SECONDS]" >&2
    exit 2
}
isnum() {
    case "$1" in ''|*[!0-9]*) return 1 ;; esac
}
build=1
runs=0
workers=""
secs=60
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --runs)
            [ $# -ge 2 ] || usage
            isnum "$2" || usage
            runs=$2
            shift ;;
        --workers)
            [ $# -ge 2 ] || usage
            isnum "$2" || usage
            [ "$2" -ge 1 ] || usage
            workers=$2
            shift ;;
        *) isnum "$1" || usage; secs=$1 ;;
    esac
    shift
done
if [ -z "$workers" ]; then
    workers=$(nproc 2>/dev/null || echo 1)
    [ "$workers" -gt 4 ] && workers=4
fi

if [ "$build" = 1 ]; then
    make --no-print-directory -f tests/fuzz/fuzz.mk build || exit 2
fi

out=build-fuzz
crashes=tests/fuzz/crashes
mkdir -p "$crashes" || exit 2
status=0

# Prints the value after "stat::NAME:" in the log.
stat() {
    grep -a "^stat::$1:" "$2" | sed "s/^stat::$1: *//" | tail -n 1
}

# 12345678 -> 12,345,678
commas() {
    echo "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta'
}

now() {
    date +%s.%N 2>/dev/null || date +%s
}

# The log of worker $2 of target $1.
wlog() {
    if [ "$2" -eq 1 ]; then echo "$out/fuzz_$1.log"; else echo "$out/fuzz_$1.$2.log"; fi
}

for t in decode frame dns http etcd; do
    bin=$out/fuzz_$t
    log=$(wlog "$t" 1)
    corpus=$out/corpus/$t
    mkdir -p "$corpus" || exit 2
    opts="-print_final_stats=1 -timeout=25 -rss_limit_mb=2048 -max_total_time=$secs"
    [ "$t" = decode ] && opts="$opts -dict=tests/fuzz/decode.dict"

    # 1. Regressions.
    regress=$(ls tests/fuzz/regress/"$t"-* tests/fuzz/regress/"$t"/* 2>/dev/null)
    if [ -n "$regress" ]; then
        # shellcheck disable=SC2086  # one argument per file
        if ! "$bin" $regress > "$log.regress" 2>&1; then
            echo "fuzz_$t: REGRESSION: a saved crash input crashes again:"
            grep -aE "check failed|ERROR: |runtime error|Running: " "$log.regress" | head -n 10 | sed 's/^/    /'
            status=1
        else
            echo "fuzz_$t: $(echo "$regress" | wc -l) regression input(s) pass"
        fi
    fi

    # 2. Fuzzing: `workers` processes on one corpus (libFuzzer reloads what the others
    # add), splitting the run count. A marker file tells this run's crash files from
    # older ones. When one worker fails, the others are stopped.
    marker=$out/.fuzz_$t.start
    : > "$marker"
    start=$(now)
    i=1
    while [ "$i" -le "$workers" ]; do
        wlog=$(wlog "$t" "$i")
        rm -f "$wlog.pid" "$wlog.rc"
        wopts=$opts
        if [ "$runs" -gt 0 ]; then
            share=$((runs / workers))
            [ "$i" -le $((runs % workers)) ] && share=$((share + 1))
            wopts="$wopts -runs=$share"
        fi
        # shellcheck disable=SC2086
        (
            "$bin" $wopts -artifact_prefix="$crashes/$t-" "$corpus" "tests/fuzz/corpus/$t" \
                > "$wlog" 2>&1 &
            echo $! > "$wlog.pid"
            wait $!
            echo $? > "$wlog.rc.tmp" && mv "$wlog.rc.tmp" "$wlog.rc"
        ) &
        i=$((i + 1))
    done
    rc=0
    while :; do
        finished=0
        i=1
        while [ "$i" -le "$workers" ]; do
            wlog=$(wlog "$t" "$i")
            if [ -f "$wlog.rc" ]; then
                finished=$((finished + 1))
                r=$(cat "$wlog.rc")
                if [ "$r" -ne 0 ] && [ "$rc" -eq 0 ]; then
                    rc=$r
                    j=1
                    while [ "$j" -le "$workers" ]; do
                        f=$(wlog "$t" "$j").pid
                        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
                        j=$((j + 1))
                    done
                fi
            fi
            i=$((i + 1))
        done
        [ "$finished" -eq "$workers" ] && break
        sleep 0.2
    done
    wait
    i=1
    while [ "$i" -le "$workers" ]; do
        rm -f "$(wlog "$t" "$i").pid" "$(wlog "$t" "$i").rc"
        i=$((i + 1))
    done
    wall=$(echo "$start $(now)" | awk '{printf "%.1f", $2 - $1}')

    # Figures: executions and new units summed over the workers, the others from the
    # worker that saw the most.
    total=0 newu=0 rss=0 cov=0 ft=0 eps=""
    i=1
    while [ "$i" -le "$workers" ]; do
        wlog=$(wlog "$t" "$i")
        n=$(stat number_of_executed_units "$wlog")
        total=$((total + ${n:-0}))
        n=$(stat new_units_added "$wlog")
        newu=$((newu + ${n:-0}))
        n=$(stat peak_rss_mb "$wlog")
        [ "${n:-0}" -gt "$rss" ] && rss=$n
        eps="$eps${eps:+ + }$(stat average_exec_per_sec "$wlog")"
        last=$(grep -aE '^#[0-9]+.*cov: ' "$wlog" | tail -n 1)
        n=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
        [ "${n:-0}" -gt "$cov" ] && cov=$n
        n=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
        [ "${n:-0}" -gt "$ft" ] && ft=$n
        i=$((i + 1))
    done
    rate=$(echo "$total $wall" | awk '{ if ($2 > 0) printf "%d", $1 / $2; else print "?" }')
    corp=$(find "$corpus" -type f | wc -l)
    echo "fuzz_$t: $(commas "$total") executions in ${wall}s with $workers worker(s)," \
         "$(commas "$rate") exec/s (per worker: $eps), cov $cov, ft $ft," \
         "corpus $corp files ($newu new), peak RSS $rss MB"
    if [ "$rc" -eq 0 ] && [ "$runs" -gt 0 ] && [ "$total" -lt "$runs" ]; then
        echo "fuzz_$t: note: the ${secs}s bound came before $(commas "$runs") executions"
    fi

    found=$(find "$crashes" -type f -name "$t-*" -newer "$marker" 2>/dev/null)
    if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
        status=1
        echo "fuzz_$t: FAILED (exit $rc); crashes:"
        for f in $found; do echo "    $f"; done
        i=1
        while [ "$i" -le "$workers" ]; do
            wlog=$(wlog "$t" "$i")
            i=$((i + 1))
            if grep -qaE "check failed|refused|ERROR: |runtime error" "$wlog"; then
                grep -aE "check failed|refused|ERROR: |SUMMARY|runtime error" "$wlog" | head -n 10 | sed 's/^/    /'
                echo "    (full log: $wlog)"
            fi
        done
    else
        echo "fuzz_$t: crashes: 0"
    fi
    rm -f "$marker"
done
exit $status
