#!/bin/sh
# tests/fuzz/run.sh [--no-build] [SECONDS] — builds the libFuzzer targets (tests/fuzz/fuzz.mk)
# and runs each for SECONDS (default 60), then prints per target the figures libFuzzer
# reports (executions, exec/s, coverage, corpus) and "crashes: 0" or the crash files.
#
# Before fuzzing, each target replays its regression inputs (tests/fuzz/regress/T-*):
# every crash ever found stays fixed. The growing corpus lives in build-fuzz/corpus/T
# (the seeds in tests/fuzz/corpus/T are only read); crash inputs are written to
# tests/fuzz/crashes/ (git-ignored). Copy one to tests/fuzz/regress/T-NAME to keep it:
# test_proto's regression test replays that directory under `make check` too.
#
# Exit status: 0 when no target crashed, 1 when one did, 2 when the build failed.
set -u

cd "$(dirname "$0")/../.." || exit 2
build=1
if [ "${1:-}" = "--no-build" ]; then
    build=0
    shift
fi
secs=${1:-60}
case "$secs" in
    ''|*[!0-9]*) echo "usage: $0 [--no-build] [SECONDS]" >&2; exit 2 ;;
esac

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

for t in decode frame; do
    bin=$out/fuzz_$t
    log=$out/fuzz_$t.log
    corpus=$out/corpus/$t
    mkdir -p "$corpus" || exit 2
    opts="-print_final_stats=1 -timeout=25 -rss_limit_mb=2048"
    [ "$t" = decode ] && opts="$opts -dict=tests/fuzz/decode.dict"

    # 1. Regressions.
    regress=$(ls tests/fuzz/regress/"$t"-* 2>/dev/null)
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

    # 2. Fuzzing. A marker file tells this run's crash files from older ones.
    marker=$out/.fuzz_$t.start
    : > "$marker"
    # shellcheck disable=SC2086
    "$bin" $opts -max_total_time="$secs" -artifact_prefix="$crashes/$t-" \
        "$corpus" "tests/fuzz/corpus/$t" > "$log" 2>&1
    rc=$?

    last=$(grep -aE '^#[0-9]+.*cov: ' "$log" | tail -n 1)
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$last" | sed -n 's/.* corp: \([^ ]*\).*/\1/p')
    runs=$(stat number_of_executed_units "$log")
    eps=$(stat average_exec_per_sec "$log")
    newu=$(stat new_units_added "$log")
    rss=$(stat peak_rss_mb "$log")
    echo "fuzz_$t: ${secs}s, ${runs:-?} executions, ${eps:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}," \
         "corpus ${corp:-?} (${newu:-?} new), peak RSS ${rss:-?} MB"

    found=$(find "$crashes" -type f -name "$t-*" -newer "$marker" 2>/dev/null)
    if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
        status=1
        echo "fuzz_$t: FAILED (exit $rc); crashes:"
        for f in $found; do echo "    $f"; done
        grep -aE "check failed|refused|ERROR: |SUMMARY|runtime error" "$log" | head -n 10 | sed 's/^/    /'
        echo "    (full log: $log)"
    else
        echo "fuzz_$t: crashes: 0"
    fi
    rm -f "$marker"
done
exit $status
